package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// ErrUsage marks a bad command line: the command has printed its usage.
var ErrUsage = errors.New("bad command line")

const usage = `Usage: warehouse-bench [flags]

Measures the service against this machine's own limits, in one run: draining a prefilled
queue, publisher and consumer together, and point reads cached and uncached, each next to
its ceiling (a bare consumer, a bare pipeline, a bare Fiber handler, raw pgx reads), plus
the peak RSS of the service processes. It runs the warehouse binary's consume and serve
commands (--warehouse) against databases and queues of its own (removed at the end), prints
a table and writes results.json, README.md and SVG charts to --out. Needs PostgreSQL and
RabbitMQ (DATABASE_URL, AMQP_URL); BATCH_SIZE, BATCH_WAIT, AMQP_PREFETCH and DB_MAX_CONNS
apply to the service and the bare consumer alike. make bench builds both binaries and runs it.

Flags:
`

// Main is the benchmark command (cmd/warehouse-bench) with its arguments. o holds the
// settings the environment gives (DatabaseURL, AMQPURL, BatchSize, BatchWait, Prefetch,
// DBMaxConns, Log); the flags set the others. A bad flag or argument returns an error
// wrapping ErrUsage; -h prints the usage and returns nil.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer, o Options) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the benchmark binary: %w", err)
	}
	fs := flag.NewFlagSet("warehouse-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.Binary, "warehouse", filepath.Join(filepath.Dir(self), "warehouse"),
		"the warehouse binary whose consume and serve commands are measured")
	fs.IntVar(&o.Events, "events", DefaultEvents, "events in the stream of the drain and pipeline phases")
	fs.DurationVar(&o.ReadsDuration, "reads-duration", DefaultReadsDuration, "measured duration of each read case")
	fs.IntVar(&o.Connections, "connections", DefaultConnections, "concurrent HTTP connections (and pgx goroutines) of the read phase")
	fs.IntVar(&o.Rounds, "rounds", DefaultRounds, "rounds of the drain and pipeline phases and of every read case, 1 to 9, each the ceiling then the service; the median round is reported")
	fs.StringVar(&o.OutDir, "out", DefaultOutDir, "directory of results.json, README.md and the charts")
	fs.BoolVar(&o.Smoke, "smoke", false, fmt.Sprintf("tiny sizes (%d events, %s reads, %d round) to check that the benchmark works; the figures mean nothing",
		SmokeEvents, SmokeReadsDuration, SmokeRounds))
	fs.StringVar(&o.ProfileDir, "profile", "", "write CPU and heap profiles of the service processes to this directory")
	var bareAddr string
	fs.StringVar(&bareAddr, "bare-server", "", "internal: serve the bare Fiber ceiling of the read phase on this address over DATABASE_URL (the benchmark runs it as a child)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", ErrUsage, fs.Arg(0))
	}
	if bareAddr != "" {
		return ServeBare(ctx, bareAddr, o.DatabaseURL)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.Smoke {
		// a smoke run must not overwrite the committed results
		if !set["events"] {
			o.Events = SmokeEvents
		}
		if !set["reads-duration"] {
			o.ReadsDuration = SmokeReadsDuration
		}
		if !set["rounds"] {
			o.Rounds = SmokeRounds
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
	// the children run in a directory of their own: a relative path would not find it
	if o.Binary, err = filepath.Abs(o.Binary); err != nil {
		return err
	}
	o.Self = self
	_, err = Run(ctx, o, stdout)
	return err
}
