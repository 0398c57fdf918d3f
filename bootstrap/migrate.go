package bootstrap

import (
	"context"
	"fmt"
	"io"

	"github.com/uptrace/bun"

	"warehouse/adapters/postgres"
	"warehouse/migrations"
)

// Migrate runs `warehouse migrate up|down|status`.
func Migrate(ctx context.Context, args []string, stdout io.Writer) error {
	cfg, log, err := setup()
	if err != nil {
		return err
	}
	if len(args) != 1 {
		return errUsage
	}
	db, err := openDatabase(ctx, cfg, true)
	if err != nil {
		return err
	}
	defer db.Close()
	switch args[0] {
	case "up":
		applied, err := postgres.Migrate(ctx, db, migrations.FS)
		if err != nil {
			return err
		}
		log.InfoContext(ctx, "migrations applied", "count", len(applied), "names", applied)
		for _, n := range applied {
			fmt.Fprintln(stdout, "applied", n)
		}
	case "down":
		reverted, err := postgres.Rollback(ctx, db, migrations.FS)
		if err != nil {
			return err
		}
		for _, n := range reverted {
			fmt.Fprintln(stdout, "reverted", n)
		}
		if len(reverted) == 0 {
			fmt.Fprintln(stdout, "nothing to revert")
		}
	case "status":
		ms, err := postgres.Status(ctx, db, migrations.FS)
		if err != nil {
			return err
		}
		for _, m := range ms {
			state := "pending"
			if m.Applied {
				state = "applied"
			}
			fmt.Fprintf(stdout, "%-8s %s_%s\n", state, m.Name, m.Comment)
		}
	default:
		return errUsage
	}
	return nil
}

// openDatabase opens the pool (creating the database first when create is set) and checks
// that it answers.
func openDatabase(ctx context.Context, cfg Config, create bool) (*bun.DB, error) {
	if create {
		if _, err := postgres.EnsureDatabase(ctx, cfg.DatabaseURL); err != nil {
			return nil, err
		}
	}
	db, err := postgres.Open(postgres.Options{
		URL: cfg.DatabaseURL, MaxConns: cfg.DBMaxConns,
		StatementTimeout: cfg.DBStatementTimeout, LockTimeout: cfg.DBLockTimeout,
	})
	if err != nil {
		return nil, err
	}
	if err := postgres.NewStore(db).Ping(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("database: %w", err)
	}
	return db, nil
}
