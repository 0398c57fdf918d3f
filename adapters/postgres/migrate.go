package postgres

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/migrate"

	"warehouse/domain"
)

// migrationLockID keys the session advisory lock that serialises migrations from several
// processes starting at once. Unlike Bun's lock table it is released when the holder's
// connection dies, so a crashed migration never leaves the schema locked.
const migrationLockID = 0x77617265686f7573 // "warehous"

// MigrationStatus is one migration and whether it is applied.
type MigrationStatus struct {
	Name    string
	Comment string
	Applied bool
	// Group is the group the migration was applied in (0 while pending). Rollback reverts
	// the applied migrations of the highest group.
	Group int64
}

// Migrate applies every pending migration of fsys and returns the names applied.
func Migrate(ctx context.Context, db *bun.DB, fsys fs.FS) ([]string, error) {
	var applied []string
	err := withMigrator(ctx, db, fsys, func(m *migrate.Migrator) error {
		group, err := m.Migrate(ctx)
		if err != nil {
			return err
		}
		for _, mig := range group.Migrations {
			applied = append(applied, mig.Name+"_"+mig.Comment)
		}
		return nil
	})
	return applied, err
}

// Rollback reverts the last group of applied migrations and returns the names reverted.
func Rollback(ctx context.Context, db *bun.DB, fsys fs.FS) ([]string, error) {
	var reverted []string
	err := withMigrator(ctx, db, fsys, func(m *migrate.Migrator) error {
		group, err := m.Rollback(ctx)
		if err != nil {
			return err
		}
		for _, mig := range group.Migrations {
			reverted = append(reverted, mig.Name+"_"+mig.Comment)
		}
		return nil
	})
	return reverted, err
}

// Status lists every migration of fsys and whether it is applied. It creates nothing: on a
// database that was never migrated (no Bun migrations table) every migration is pending.
func Status(ctx context.Context, db *bun.DB, fsys fs.FS) ([]MigrationStatus, error) {
	var out []MigrationStatus
	migrated, err := tableExists(ctx, db, migrationsTable)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	if !migrated { // the migrator's Init would create Bun's tables
		ms := migrate.NewMigrations()
		if err := ms.Discover(fsys); err != nil {
			return nil, fmt.Errorf("discover migrations: %w", err)
		}
		for _, mig := range ms.Sorted() {
			out = append(out, MigrationStatus{Name: mig.Name, Comment: mig.Comment})
		}
		return out, nil
	}
	err = withMigrator(ctx, db, fsys, func(m *migrate.Migrator) error {
		ms, err := m.MigrationsWithStatus(ctx)
		if err != nil {
			return err
		}
		for _, mig := range ms {
			out = append(out, MigrationStatus{Name: mig.Name, Comment: mig.Comment, Applied: mig.IsApplied(), Group: mig.GroupID})
		}
		return nil
	})
	return out, err
}

// migrationsTable is where Bun's migrator records the applied migrations.
const migrationsTable = "bun_migrations"

// LedgerEvents returns how many events the ledger holds: 0 when there is no events table
// (never migrated, or reverted).
func LedgerEvents(ctx context.Context, db *bun.DB) (int64, error) {
	exists, err := tableExists(ctx, db, "events")
	if err != nil || !exists {
		return 0, err
	}
	var n int64
	if err := db.NewRaw("SELECT count(*) FROM events").Scan(ctx, &n); err != nil {
		return 0, fmt.Errorf("count events: %w", translate(err))
	}
	return n, nil
}

// tableExists reports whether the search path holds a table called name.
func tableExists(ctx context.Context, db *bun.DB, name string) (bool, error) {
	var exists bool
	if err := db.NewRaw("SELECT to_regclass(?) IS NOT NULL", name).Scan(ctx, &exists); err != nil {
		return false, fmt.Errorf("look up table %s: %w", name, translate(err))
	}
	return exists, nil
}

func withMigrator(ctx context.Context, db *bun.DB, fsys fs.FS, fn func(*migrate.Migrator) error) error {
	ms := migrate.NewMigrations()
	if err := ms.Discover(fsys); err != nil {
		return fmt.Errorf("discover migrations: %w", err)
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", translate(err))
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock(?)", int64(migrationLockID)); err != nil {
		return fmt.Errorf("migrate: lock: %w", translate(err))
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock(?)", int64(migrationLockID)) //nolint:errcheck // closing the connection releases it too

	m := migrate.NewMigrator(db, ms)
	if err := m.Init(ctx); err != nil {
		return fmt.Errorf("migrate: init: %w", translate(err))
	}
	if err := fn(m); err != nil {
		return fmt.Errorf("migrate: %w", translate(err))
	}
	return nil
}

// CheckDatabase connects to the database named in rawURL and creates nothing. It returns
// an error wrapping domain.ErrNotFound when the server says that database does not exist.
func CheckDatabase(ctx context.Context, rawURL string) error {
	cfg, err := pgx.ParseConfig(rawURL)
	if err != nil {
		return fmt.Errorf("parse DATABASE_URL: %w", redactParseError(err))
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err == nil {
		return conn.Close(ctx)
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "3D000" { // 3D000: invalid_catalog_name
		return fmt.Errorf("database %q %w", cfg.Database, domain.ErrNotFound)
	}
	return fmt.Errorf("connect to database %q: %w", cfg.Database, translate(err))
}

// EnsureDatabase creates the database named in rawURL when it does not exist, connecting
// to the server's "postgres" database to do so. It reports whether it created it.
func EnsureDatabase(ctx context.Context, rawURL string) (created bool, err error) {
	cfg, err := pgx.ParseConfig(rawURL)
	if err != nil {
		return false, fmt.Errorf("parse DATABASE_URL: %w", redactParseError(err))
	}
	name := cfg.Database
	if name == "" || name == "postgres" {
		return false, nil
	}
	if err := CheckDatabase(ctx, rawURL); !errors.Is(err, domain.ErrNotFound) {
		return false, err
	}
	admin := cfg.Copy()
	admin.Database = "postgres"
	aconn, err := pgx.ConnectConfig(ctx, admin)
	if err != nil {
		return false, fmt.Errorf("connect to database postgres to create %q: %w", name, translate(err))
	}
	defer aconn.Close(ctx)
	_, err = aconn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42P04" { // created meanwhile by another process
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("create database %q: %w", name, translate(err))
	}
	return true, nil
}

// WithDatabase returns rawURL naming another database (tests create one each).
func WithDatabase(rawURL, name string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", errors.New("DATABASE_URL is not a URL")
	}
	u.Path = "/" + strings.TrimPrefix(name, "/")
	return u.String(), nil
}
