package bootstrap

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"warehouse/bench"
)

const benchUsage = `Usage: warehouse bench [flags]

Measures the service against this machine's own limits, in one run: draining a prefilled
queue, publisher and consumer together, and point reads cached and uncached, each next to
its ceiling (a bare consumer, a bare pipeline, a bare Fiber handler, raw pgx reads), plus
the peak RSS of the service processes. It runs this binary's consume and serve commands
against databases and queues of its own (removed at the end), prints a table and writes
results.json, README.md and SVG charts to --out. Needs PostgreSQL and RabbitMQ
(DATABASE_URL, AMQP_URL); BATCH_SIZE, BATCH_WAIT, AMQP_PREFETCH and DB_MAX_CONNS apply to
the service and the bare consumer alike.

Flags:
`

// Bench is `warehouse bench`: see benchUsage.
func Bench(ctx context.Context, args []string, stdout io.Writer) error {
	cfg, log, err := setup()
	if err != nil {
		return err
	}
	o := bench.Options{
		DatabaseURL: cfg.DatabaseURL, AMQPURL: cfg.AMQPURL,
		BatchSize: cfg.BatchSize, BatchWait: cfg.BatchWait, Prefetch: cfg.AMQPPrefetch, DBMaxConns: cfg.DBMaxConns,
		Log: log.With("component", "bench"),
	}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), benchUsage)
		fs.PrintDefaults()
	}
	fs.IntVar(&o.Events, "events", bench.DefaultEvents, "events in the stream of the drain and pipeline phases")
	fs.DurationVar(&o.ReadsDuration, "reads-duration", bench.DefaultReadsDuration, "measured duration of each read case")
	fs.IntVar(&o.Connections, "connections", bench.DefaultConnections, "concurrent HTTP connections (and pgx goroutines) of the read phase")
	fs.IntVar(&o.Rounds, "rounds", bench.DefaultRounds, "rounds of the drain and pipeline phases and of every read case, 1 to 9, each the ceiling then the service; the median round is reported")
	fs.StringVar(&o.OutDir, "out", bench.DefaultOutDir, "directory of results.json, README.md and the charts")
	fs.BoolVar(&o.Smoke, "smoke", false, fmt.Sprintf("tiny sizes (%d events, %s reads, %d round) to check that the benchmark works; the figures mean nothing",
		bench.SmokeEvents, bench.SmokeReadsDuration, bench.SmokeRounds))
	fs.StringVar(&o.ProfileDir, "profile", "", "write CPU and heap profiles of the service processes to this directory")
	var bareAddr string
	fs.StringVar(&bareAddr, "bare-server", "", "internal: serve the bare Fiber ceiling of the read phase on this address over DATABASE_URL (the benchmark runs it as a child)")
	if help, err := parseFlags(fs, args); help || err != nil {
		return err
	}
	if bareAddr != "" {
		return bench.ServeBare(ctx, bareAddr, cfg.DatabaseURL)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.Smoke {
		// a smoke run must not overwrite the committed results
		if !set["events"] {
			o.Events = bench.SmokeEvents
		}
		if !set["reads-duration"] {
			o.ReadsDuration = bench.SmokeReadsDuration
		}
		if !set["rounds"] {
			o.Rounds = bench.SmokeRounds
		}
		if !set["out"] {
			o.OutDir = filepath.Join(os.TempDir(), "warehouse-bench-smoke")
		}
	}
	if o.ProfileDir != "" {
		if err := os.MkdirAll(o.ProfileDir, 0o755); err != nil {
			return err
		}
	}
	if o.Binary, err = os.Executable(); err != nil {
		return fmt.Errorf("find the warehouse binary: %w", err)
	}
	_, err = bench.Run(ctx, o, stdout)
	return err
}
