// Package postgres is the PostgreSQL adapter: the ports.Store of the ledger (events,
// movements, stock) on Bun with the pgx driver, its schema migrations, and the audit
// that recomputes stock from events. Driver errors stop here: callers see domain errors
// and ports.ErrUnavailable, never a pgx or Bun error.
package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"

	"warehouse/domain"
	"warehouse/ports"
)

// Options configures the connection pool.
type Options struct {
	// URL is a PostgreSQL URL (postgres://user:pass@host:port/db?sslmode=…).
	URL string
	// MaxConns bounds the pool.
	MaxConns int
	// StatementTimeout and LockTimeout bound every statement and lock wait on the server,
	// so a stuck database surfaces as an outage instead of a hang. Zero leaves the server's.
	StatementTimeout time.Duration
	LockTimeout      time.Duration
}

// Open returns a Bun database on a pgx pool. It does not connect yet: Ping does.
func Open(opts Options) (*bun.DB, error) {
	cfg, err := connConfig(opts)
	if err != nil {
		return nil, err
	}
	sqldb := stdlib.OpenDB(*cfg)
	if opts.MaxConns > 0 {
		sqldb.SetMaxOpenConns(opts.MaxConns)
		sqldb.SetMaxIdleConns(opts.MaxConns)
	}
	sqldb.SetConnMaxIdleTime(5 * time.Minute)
	return bun.NewDB(sqldb, pgdialect.New()), nil
}

// connConfig is the pgx configuration of every connection the adapter opens.
func connConfig(opts Options) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("parse DATABASE_URL: %w", redactParseError(err))
	}
	// Bun formats arguments into the SQL text itself, so every statement reaches the
	// driver without parameters: the simple protocol sends it in one round trip instead
	// of preparing (and caching) each distinct text.
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	if opts.StatementTimeout > 0 {
		cfg.RuntimeParams["statement_timeout"] = strconv.FormatInt(opts.StatementTimeout.Milliseconds(), 10)
	}
	if opts.LockTimeout > 0 {
		cfg.RuntimeParams["lock_timeout"] = strconv.FormatInt(opts.LockTimeout.Milliseconds(), 10)
	}
	cfg.RuntimeParams["application_name"] = "warehouse"
	return cfg, nil
}

// redactParseError drops pgx's parse error text, which may quote the URL with its password.
func redactParseError(err error) error {
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		return errors.New("malformed connection string")
	}
	return err
}

// translate turns a driver error into the errors the ports promise. Server errors of the
// connection, resource, operator and transaction-rollback classes (and every error that is
// not a server error: refused or broken connections, timeouts) mean "unavailable": the
// same work may succeed later. Other server errors are bugs and are returned as such.
func translate(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return domain.ErrNotFound
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code[:2] {
		case "08", "40", "53", "55", "57", "58":
			return fmt.Errorf("%w: postgres %s: %s", ports.ErrUnavailable, pe.Code, pe.Message)
		}
		return fmt.Errorf("postgres %s: %s (constraint %q)", pe.Code, pe.Message, pe.ConstraintName)
	}
	return fmt.Errorf("%w: postgres: %w", ports.ErrUnavailable, err)
}

// Ping checks that the database answers through the pool: it waits for a free
// connection like any query. Readiness uses a Pinger instead, whose connection is its own.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return translate(err)
	}
	return nil
}

// DB returns the underlying Bun database (for migrations and tests).
func (s *Store) DB() *bun.DB { return s.db }
