package bootstrap

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/uptrace/bun"

	"warehouse/adapters/postgres"
	"warehouse/domain"
	"warehouse/migrations"
)

const migrateUsage = `Usage: warehouse migrate up | down [--yes] | status

  up        apply every pending migration, creating the database when it is missing
  down      revert the last group of migrations. The first migration creates the ledger,
            so reverting it drops every event, movement and stock row: on a ledger that
            holds events, down refuses (exit status 1) unless --yes is given
  status    list the migrations, applied or pending

status and down never create anything: they fail when the database does not exist.

`

// Migrate runs `warehouse migrate up|down [--yes]|status`.
func Migrate(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 || (args[0] != "up" && args[0] != "down" && args[0] != "status") {
		if helpRequested(args) {
			_, err := io.WriteString(stdout, migrateUsage)
			return err
		}
		return usageError(errors.New("want up, down or status"))
	}
	sub := args[0]
	fs := flag.NewFlagSet("migrate "+sub, flag.ContinueOnError)
	var yes bool
	if sub == "down" {
		fs.BoolVar(&yes, "yes", false, "revert even when the ledger holds events, which the revert may drop")
	}
	if help, err := parseFlags(fs, args[1:], stdout, migrateUsage); help || err != nil {
		return err
	}
	cfg, log, err := setup()
	if err != nil {
		return err
	}
	switch sub {
	case "up":
		return migrateUp(ctx, cfg, log, stdout)
	case "status":
		return migrateStatus(ctx, cfg, stdout)
	}
	return migrateDown(ctx, cfg, log, yes, stdout)
}

// migrateUp applies the pending migrations, creating the database when it is missing.
func migrateUp(ctx context.Context, cfg Config, log *slog.Logger, stdout io.Writer) error {
	db, err := openDatabase(ctx, cfg, true)
	if err != nil {
		return err
	}
	defer db.Close()
	applied, err := postgres.Migrate(ctx, db, migrations.FS)
	if err != nil {
		return err
	}
	log.InfoContext(ctx, "migrations applied", "count", len(applied), "names", applied)
	for _, n := range applied {
		fmt.Fprintln(stdout, "applied", n)
	}
	return nil
}

// migrateStatus lists the migrations, creating nothing.
func migrateStatus(ctx context.Context, cfg Config, stdout io.Writer) error {
	db, err := openExistingDatabase(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
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
	return nil
}

// migrateDown reverts the last group of migrations. Unless yes is set, it refuses when
// the ledger holds events, which reverting the first migration drops.
func migrateDown(ctx context.Context, cfg Config, log *slog.Logger, yes bool, stdout io.Writer) error {
	db, err := openExistingDatabase(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	ms, err := postgres.Status(ctx, db, migrations.FS)
	if err != nil {
		return err
	}
	last := lastGroup(ms)
	if len(last) == 0 { // answered here, as Rollback would first create Bun's tables
		fmt.Fprintln(stdout, "nothing to revert")
		return nil
	}
	if !yes {
		events, err := postgres.LedgerEvents(ctx, db)
		if err != nil {
			return err
		}
		if events > 0 {
			noun := "events"
			if events == 1 {
				noun = "event"
			}
			return fmt.Errorf("refusing to revert %s: the ledger holds %d %s, which the revert may drop; "+
				"run \"warehouse migrate down --yes\" to revert anyway", strings.Join(last, ", "), events, noun)
		}
	}
	reverted, err := postgres.Rollback(ctx, db, migrations.FS)
	if err != nil {
		return err
	}
	log.InfoContext(ctx, "migrations reverted", "count", len(reverted), "names", reverted, "yes", yes)
	for _, n := range reverted {
		fmt.Fprintln(stdout, "reverted", n)
	}
	if len(reverted) == 0 { // reverted meanwhile by another process
		fmt.Fprintln(stdout, "nothing to revert")
	}
	return nil
}

// lastGroup names the migrations that postgres.Rollback would revert.
func lastGroup(ms []postgres.MigrationStatus) []string {
	var group int64
	for _, m := range ms {
		group = max(group, m.Group)
	}
	var names []string
	for _, m := range ms {
		if m.Applied && m.Group == group {
			names = append(names, m.Name+"_"+m.Comment)
		}
	}
	return names
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

// openExistingDatabase is openDatabase for the tools that must not create the database
// (migrate status and down, audit): it says so when the database does not exist.
func openExistingDatabase(ctx context.Context, cfg Config) (*bun.DB, error) {
	if err := postgres.CheckDatabase(ctx, cfg.DatabaseURL); err != nil {
		if errors.Is(err, domain.ErrNotFound) {
			return nil, fmt.Errorf("%w; \"warehouse migrate up\" creates it", err)
		}
		return nil, fmt.Errorf("database: %w", err)
	}
	return openDatabase(ctx, cfg, false)
}
