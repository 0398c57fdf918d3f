package bootstrap

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"warehouse/adapters/postgres"
	"warehouse/adapters/postgres/pgtest"
)

// mustAdmin opens the server's "postgres" database, skipping the test when PostgreSQL is
// unreachable (failing it under CI=true).
func mustAdmin(t *testing.T) *bun.DB {
	t.Helper()
	adminURL, err := postgres.WithDatabase(pgtest.BaseURL(), "postgres")
	if err != nil {
		t.Fatal(err)
	}
	db := pgtest.MustOpen(t, adminURL)
	if err := db.PingContext(context.Background()); err != nil {
		pgtest.Unreachable(t, err)
	}
	return db
}

// databaseExists reports whether the server holds a database called name.
func databaseExists(t *testing.T, admin *bun.DB, name string) bool {
	t.Helper()
	var n int
	if err := admin.NewRaw("SELECT count(*) FROM pg_database WHERE datname = ?", name).Scan(context.Background(), &n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}

// mustDatabaseName returns a fresh database name that the server does not hold, with its
// URL, and drops that database when the test ends if something created it.
func mustDatabaseName(t *testing.T) (admin *bun.DB, name, dbURL string) {
	t.Helper()
	admin = mustAdmin(t)
	name = fmt.Sprintf("warehouse_test_%d_%08x", time.Now().Unix(), rand.Uint32())
	dbURL, err := postgres.WithDatabase(pgtest.BaseURL(), name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = admin.ExecContext(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	return admin, name, dbURL
}

// mustAbsentDatabase returns the URL of a database that does not exist.
func mustAbsentDatabase(t *testing.T) string {
	t.Helper()
	_, _, dbURL := mustDatabaseName(t)
	return dbURL
}

// mustTables lists the tables of the public schema of dbURL.
func mustTables(t *testing.T, dbURL string) []string {
	t.Helper()
	var names []string
	if err := pgtest.MustOpen(t, dbURL).NewRaw("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1").
		Scan(context.Background(), &names); err != nil {
		t.Fatal(err)
	}
	return names
}

func TestMigrateStatusCreatesNothing(t *testing.T) {
	t.Setenv("LOG_LEVEL", "warn")
	t.Run("missing database", func(t *testing.T) {
		admin, name, dbURL := mustDatabaseName(t)
		t.Setenv("DATABASE_URL", dbURL)
		var out bytes.Buffer
		err := Migrate(context.Background(), []string{"status"}, &out)
		if err == nil || !strings.Contains(err.Error(), "not found") {
			t.Errorf("migrate status = %v, want an error saying the database is not found\n%s", err, out.String())
		}
		if databaseExists(t, admin, name) {
			t.Errorf("migrate status created database %s", name)
		}
	})
	t.Run("empty database", func(t *testing.T) {
		_, _, dbURL := mustDatabaseName(t)
		if _, err := postgres.EnsureDatabase(context.Background(), dbURL); err != nil {
			t.Fatal(err)
		}
		t.Setenv("DATABASE_URL", dbURL)
		var out bytes.Buffer
		if err := Migrate(context.Background(), []string{"status"}, &out); err != nil {
			t.Fatalf("migrate status = %v", err)
		}
		if !strings.Contains(out.String(), "pending  20250601120000_create_ledger") {
			t.Errorf("status output lacks the pending migration:\n%s", out.String())
		}
		if tables := mustTables(t, dbURL); len(tables) > 0 {
			t.Errorf("migrate status created tables %v", tables)
		}
	})
}

func TestMigrateDownCreatesNothing(t *testing.T) {
	t.Setenv("LOG_LEVEL", "warn")
	t.Run("missing database", func(t *testing.T) {
		admin, name, dbURL := mustDatabaseName(t)
		t.Setenv("DATABASE_URL", dbURL)
		err := Migrate(context.Background(), []string{"down", "--yes"}, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "not found") {
			t.Errorf("migrate down = %v, want an error saying the database is not found", err)
		}
		if databaseExists(t, admin, name) {
			t.Errorf("migrate down created database %s", name)
		}
	})
	t.Run("empty database", func(t *testing.T) {
		_, _, dbURL := mustDatabaseName(t)
		if _, err := postgres.EnsureDatabase(context.Background(), dbURL); err != nil {
			t.Fatal(err)
		}
		t.Setenv("DATABASE_URL", dbURL)
		var out bytes.Buffer
		if err := Migrate(context.Background(), []string{"down"}, &out); err != nil || out.String() != "nothing to revert\n" {
			t.Fatalf("migrate down = %v, printed %q; want nothing to revert", err, out.String())
		}
		if tables := mustTables(t, dbURL); len(tables) > 0 {
			t.Errorf("migrate down created tables %v", tables)
		}
	})
}

func TestMigrateDownRefusesNonEmptyLedger(t *testing.T) {
	_, store, stored := mustAuditLedger(t)
	n := len(stored)
	dbURL := pgtestURL(t)

	var out bytes.Buffer
	err := Migrate(context.Background(), []string{"down"}, &out)
	if err == nil {
		t.Fatalf("migrate down on a ledger of %d events = nil, want a refusal\n%s", n, out.String())
	}
	if got := ExitCode(err); got != 1 {
		t.Errorf("exit code = %d, want 1", got)
	}
	for _, want := range []string{fmt.Sprintf("%d events", n), "20250601120000_create_ledger", "--yes"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not say %q", err, want)
		}
	}
	var events int
	if err := store.DB().NewRaw("SELECT count(*) FROM events").Scan(context.Background(), &events); err != nil || events != n {
		t.Fatalf("after the refusal: %d events, err %v; want the %d events kept", events, err, n)
	}

	out.Reset()
	if err := Migrate(context.Background(), []string{"down", "--yes"}, &out); err != nil {
		t.Fatalf("migrate down --yes = %v", err)
	}
	if !strings.Contains(out.String(), "reverted 20250601120000_create_ledger") {
		t.Errorf("migrate down --yes printed %q, want the reverted migration", out.String())
	}
	if tables := mustTables(t, dbURL); strings.Contains(strings.Join(tables, " "), "events") {
		t.Errorf("after migrate down --yes the tables are %v, want no events table", tables)
	}
}

func TestMigrateDownEmptyLedger(t *testing.T) {
	t.Setenv("LOG_LEVEL", "warn")
	dbURL := pgtest.MustDatabase(t)
	t.Setenv("DATABASE_URL", dbURL)
	var out bytes.Buffer
	if err := Migrate(context.Background(), []string{"down"}, &out); err != nil {
		t.Fatalf("migrate down on an empty ledger = %v, want it to proceed", err)
	}
	if !strings.Contains(out.String(), "reverted 20250601120000_create_ledger") {
		t.Errorf("migrate down printed %q, want the reverted migration", out.String())
	}
	// with no events table left, down proceeds too (nothing to revert)
	out.Reset()
	if err := Migrate(context.Background(), []string{"down"}, &out); err != nil || !strings.Contains(out.String(), "nothing to revert") {
		t.Errorf("second migrate down = %v, printed %q; want nothing to revert", err, out.String())
	}
}

func TestMigrateUsageExitCodes(t *testing.T) {
	// usage is checked before the database: this one would not answer
	t.Setenv("DATABASE_URL", "postgres://postgres@127.0.0.1:1/warehouse?sslmode=disable")
	for _, args := range [][]string{
		nil, {"sideways"}, {"--yes", "down"}, {"down", "--force"}, {"down", "now"}, {"down", "--yes=maybe"},
		{"up", "--yes"}, {"status", "--yes"}, {"status", "all"},
	} {
		t.Run("args "+strings.Join(args, " "), func(t *testing.T) {
			err := Migrate(context.Background(), args, io.Discard)
			if got := ExitCode(err); got != 2 {
				t.Errorf("exit code = %d (%v), want 2 on a usage error", got, err)
			}
		})
	}
}

// pgtestURL is the DATABASE_URL a helper set for this test.
func pgtestURL(t *testing.T) string {
	t.Helper()
	cfg, err := LoadConfig()
	if err != nil {
		t.Fatal(err)
	}
	return cfg.DatabaseURL
}
