// Package pgtest gives integration tests a fresh, migrated PostgreSQL database of their
// own. It skips the test when PostgreSQL is unreachable, except under CI=true, where an
// absent database is a failure.
package pgtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"warehouse/adapters/postgres"
	"warehouse/migrations"
)

// DefaultURL is the local default of DATABASE_URL, used when the variable is unset.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/warehouse?sslmode=disable"

// BaseURL returns DATABASE_URL or the local default.
func BaseURL() string {
	if u := os.Getenv("DATABASE_URL"); u != "" {
		return u
	}
	return DefaultURL
}

// MustDatabase creates a database with a unique name, migrates it, and drops it when the
// test ends. It returns the database's URL.
func MustDatabase(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := fmt.Sprintf("warehouse_test_%d_%08x", time.Now().Unix(), rand.Uint32())
	dbURL, err := postgres.WithDatabase(BaseURL(), name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := postgres.EnsureDatabase(ctx, dbURL); err != nil {
		Unreachable(t, err)
	}
	db := MustOpen(t, dbURL)
	if _, err := postgres.Migrate(ctx, db, migrations.FS); err != nil {
		t.Fatalf("migrate %s: %v", name, err)
	}
	t.Cleanup(func() {
		admin, err := postgres.WithDatabase(BaseURL(), "postgres")
		if err != nil {
			return
		}
		adb, err := postgres.Open(postgres.Options{URL: admin, MaxConns: 1})
		if err != nil {
			return
		}
		defer adb.Close()
		_, _ = adb.ExecContext(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	return dbURL
}

// MustOpen opens dbURL and closes it when the test ends.
func MustOpen(t testing.TB, dbURL string) *bun.DB {
	t.Helper()
	db, err := postgres.Open(postgres.Options{URL: dbURL, MaxConns: 8, StatementTimeout: 30 * time.Second, LockTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// Unreachable skips the test, or fails it under CI=true.
func Unreachable(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("PostgreSQL is unreachable under CI=true: %v", err)
	}
	t.Skipf("PostgreSQL is unreachable, skipping: %v", err)
}
