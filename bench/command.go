package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// ErrUsage marks a bad command line: the command has printed its usage.
var ErrUsage = errors.New("bad command line")

const usage = `Usage: warehouse-bench [flags]

Measures the service against this machine's own limits, in one run: draining a prefilled
queue, a publisher process and the consumer together (single events, and batch messages
next to them), and point reads cached and uncached, each next to its ceiling (a bare
consumer, a bare pipeline, a bare Fiber handler, raw pgx reads), plus the peak RSS of
the service processes; HTTP ingest (POST /api/events) next to the AMQP
publisher; and a drain with and without change stream clients (GET /api/stream), with
their latency from commit to client. It runs the warehouse binary's consume and serve
commands (--warehouse) against databases and queues of its own (removed at the end), prints
a table and writes results.json, README.md and SVG charts to --out. Needs PostgreSQL and
RabbitMQ (DATABASE_URL, AMQP_URL); BATCH_SIZE, BATCH_WAIT, AMQP_PREFETCH and DB_MAX_CONNS
apply to the service and the bare consumer alike. make bench builds both binaries and runs it.

Flags:
`

// bareFlags are the internal flags of the bare pipeline's processes.
type bareFlags struct {
	publish, exchange, consume, table string
	window                            int
	target                            int64
}

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
	fs.IntVar(&o.Connections, "connections", DefaultConnections, "concurrent HTTP connections (and pgx goroutines) of the read phase, and of HTTP ingest")
	fs.IntVar(&o.Rounds, "rounds", DefaultRounds, fmt.Sprintf("rounds of the drain and pipeline phases and of every read case, 1 to 9, each the ceiling then the service; the median round is reported (http-ingest and stream: at most %d)", maxLateRounds))
	fs.StringVar(&o.OutDir, "out", DefaultOutDir, "directory of results.json, README.md and the charts")
	fs.BoolVar(&o.Smoke, "smoke", false, fmt.Sprintf("tiny sizes (%d events, %s reads, %d round, %d stream clients) to check that the benchmark works; the figures mean nothing",
		SmokeEvents, SmokeReadsDuration, SmokeRounds, SmokeStreamClients))
	fs.StringVar(&o.StreamFilter, "stream-filter", StreamFilterWarehouse, "what each stream client follows: warehouse (one warehouse each, as dashboards) or none (every change)")
	fs.IntVar(&o.StreamClients, "stream-clients", DefaultStreamClients, fmt.Sprintf("clients of the change stream in the stream phase, 1 to %d", maxStreamClients))
	var phases string
	fs.StringVar(&phases, "phases", "", "run only these phases, comma-separated ("+strings.Join(AllPhases, ", ")+
		"; reads needs drain); the report then holds only theirs, and goes to a temporary directory unless --out is given")
	fs.StringVar(&o.ProfileDir, "profile", "", "write CPU and heap profiles of the service processes to this directory")
	fs.BoolVar(&o.PipelineVariants, "pipeline-variants", false, "run only the pipeline, every way it can be run (publisher in this process or its own, chunked or windowed confirms, batch messages), --rounds times, and print what each costs")
	var bareAddr string
	fs.StringVar(&bareAddr, "bare-server", "", "internal: serve the bare Fiber ceiling of the read phase on this address over DATABASE_URL (the benchmark runs it as a child)")
	var bare bareFlags
	fs.StringVar(&bare.publish, "bare-publish", "", "internal: publish this JSON-lines file to --bare-exchange on AMQP_URL, the pipeline ceiling's publisher (the benchmark runs it as a child)")
	fs.StringVar(&bare.exchange, "bare-exchange", "", "internal: the exchange of --bare-publish")
	fs.IntVar(&bare.window, "bare-window", publishWindow, "internal: the confirms in flight of --bare-publish")
	fs.StringVar(&bare.consume, "bare-consume", "", "internal: run the bare consumer on this queue into --bare-table of DATABASE_URL until --bare-target rows are stored")
	fs.StringVar(&bare.table, "bare-table", "", "internal: the table of --bare-consume")
	fs.Int64Var(&bare.target, "bare-target", 0, "internal: the rows --bare-consume stores")
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
	if bare.publish != "" {
		return BarePublish(ctx, o.AMQPURL, bare.publish, bare.exchange, bare.window, stdout)
	}
	if bare.consume != "" {
		return BareConsume(ctx, o, bare.consume, bare.table, bare.target, stdout)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if phases != "" {
		for _, p := range strings.Split(phases, ",") {
			if p = strings.TrimSpace(p); p != "" && !slices.Contains(o.Phases, p) {
				o.Phases = append(o.Phases, p)
			}
		}
		if len(o.Phases) == len(AllPhases) {
			o.Phases = nil
		}
	}
	if len(o.Phases) > 0 && !set["out"] {
		// a partial run must not overwrite the committed results
		o.OutDir = filepath.Join(os.TempDir(), "warehouse-bench-partial")
	}
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
		if !set["stream-clients"] {
			o.StreamClients = SmokeStreamClients
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
