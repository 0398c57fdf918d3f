// Package bench is the project's benchmark (`make bench`, cmd/warehouse-bench). It runs
// the service under test as child processes of the warehouse binary (`consume`, `serve`)
// and, in the same run on the same machine, the ceilings each figure is judged against: a
// bare consumer, a bare publisher and consumer pipeline, a bare Fiber handler and raw pgx
// point reads. HTTP ingest stands next to the project's AMQP publisher, and the drain
// with change stream clients next to the same drain without them. It prints a table and
// writes the same figures as JSON, Markdown and SVG charts.
//
// It is a driver like bootstrap: it may import adapters and the load generator, and only
// cmd/warehouse-bench imports it, so that the service binary carries neither it nor its
// plotting library. Every database, queue and exchange it creates has a name of its own
// run and is removed at the end; it only ever talks to the addresses it is given
// (127.0.0.1 by default) and to the children it starts.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"time"

	amqpadapter "warehouse/adapters/amqp"
)

// Defaults of the benchmark command and the sizes of --smoke.
const (
	DefaultEvents        = 100_000
	DefaultReadsDuration = 8 * time.Second
	DefaultConnections   = 64
	DefaultOutDir        = "docs/benchmarks"
	DefaultRounds        = 3

	SmokeEvents        = 2_000
	SmokeReadsDuration = 2 * time.Second
	SmokeRounds        = 1

	// maxRounds bounds Options.Rounds: each round of all the phases costs about two minutes.
	maxRounds = 9
	// maxLateRounds caps the rounds of the HTTP ingest and stream phases, which came
	// later: a round of both costs about 35 s at the default size (four publishes of the
	// stream and two drains), and `make bench` stays within about ten minutes.
	maxLateRounds = 2
)

// The phases of a run, in the order they run; Options.Phases may name a few of them.
const (
	PhaseDrain      = "drain"
	PhasePipeline   = "pipeline"
	PhaseHTTPIngest = "http-ingest"
	PhaseStream     = "stream"
	PhaseReads      = "reads" // with the ledger's past (history)
)

// AllPhases lists every phase in the order a run takes them.
var AllPhases = []string{PhaseDrain, PhasePipeline, PhaseHTTPIngest, PhaseStream, PhaseReads}

// Bounds of every wait, so that a broken service fails the run instead of hanging it.
const (
	// ingestTimeout bounds one drain or pipeline phase (its figure is then reported as
	// incomplete); smokeIngestTimeout the same under --smoke.
	ingestTimeout      = 90 * time.Second
	smokeIngestTimeout = 60 * time.Second
	// readyTimeout bounds a child's start until /readyz answers 200.
	readyTimeout = 30 * time.Second
	// stopTimeout bounds a child's graceful stop after SIGTERM before it is killed.
	stopTimeout = 20 * time.Second
	// cleanupTimeout bounds dropping the databases and deleting the queues.
	cleanupTimeout = 30 * time.Second
	// confirmStall bounds the wait for the next publisher confirm.
	confirmStall = 30 * time.Second
	// primeTimeout bounds the pass that loads every key into the cache.
	primeTimeout = 90 * time.Second

	// sampleEvery is the period of the chart's samples and of the progress polls;
	// pollEvery the period of the polls once the end is predicted within endGame (so the
	// end of a phase is known to pollEvery, at a few scrapes per second).
	sampleEvery = 250 * time.Millisecond
	pollEvery   = 50 * time.Millisecond
	endGame     = time.Second
)

// Shape of the generated stream: a fixed seed, so that every run measures the same events.
const (
	genWarehouses = 50
	genProducts   = 400
	genSeed       = 20250601
	genLoss       = 0.05
	genDisorder   = 0.1
	// genSpan is the event time the stream covers (as `warehouse produce` squeezes long runs).
	genSpan = 30 * 24 * time.Hour
	// retryDelay and deliveryLimit are the service's defaults, given to the children and
	// to the queues the benchmark declares, so that both declare the same arguments.
	retryDelay    = 5 * time.Second
	deliveryLimit = 20
	// publishWindow is the bare publisher's confirms in flight; the project's Publisher
	// pipelines rounds of about as many.
	publishWindow = 1024
)

// Options configures a run. Zero fields take the defaults above; BatchSize, BatchWait,
// Prefetch and DBMaxConns apply to the service and to the bare consumer alike.
type Options struct {
	// Binary is the warehouse binary run as the service under test (`consume`, `serve`).
	Binary string
	// Self is the benchmark's own binary, run with --bare-server as the bare Fiber
	// ceiling of the read phase (see ServeBare).
	Self string
	// DatabaseURL names the PostgreSQL server and credentials; the database in it is not
	// used: every phase gets a database of its own, created and dropped by the run.
	DatabaseURL string
	// AMQPURL is the broker, vhost included.
	AMQPURL string

	Events        int
	ReadsDuration time.Duration
	Connections   int
	OutDir        string
	// Rounds is how many times the drain and the pipeline phases and every read case run
	// (the HTTP ingest and stream phases at most twice: see maxLateRounds), 1 to 9: all
	// the drain rounds, then all the pipeline rounds, each round measuring the ceiling
	// and then the service on names of its own; then the read rounds, each
	// measuring per route the ceiling and then the service. The report shows, per phase and
	// read case, the round whose ratio service / ceiling is the median (the lower middle of
	// an even count), and lists every round's ratio; its checks hold for every round.
	Rounds int
	// Smoke runs tiny sizes (SmokeEvents, SmokeReadsDuration, SmokeRounds unless set) to
	// keep the code working; its figures mean nothing.
	Smoke bool
	// StreamClients is how many clients follow the change stream in the stream phase
	// (DefaultStreamClients, SmokeStreamClients under Smoke), 1 to 1000.
	StreamClients int
	// StreamFilter is what each stream client follows: StreamFilterWarehouse (the
	// default: one warehouse each) or StreamFilterNone (every change).
	StreamFilter string
	// Phases names the phases to run, in any order (they run in the order of AllPhases);
	// empty runs them all. The reads need the drain (they read its database).
	Phases []string
	// PipelineVariants runs only the pipeline's variants (see pipeVariants), Rounds
	// rounds, and prints their table; no report is written.
	PipelineVariants bool
	// ProfileDir, when set, receives CPU and heap profiles of the service children
	// (through PPROF_ADDR on a local port). Profiling costs a few per cent of CPU.
	ProfileDir string

	BatchSize  int
	BatchWait  time.Duration
	Prefetch   int
	DBMaxConns int

	// Log receives progress; nil discards it.
	Log *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Events <= 0 {
		o.Events = DefaultEvents
		if o.Smoke {
			o.Events = SmokeEvents
		}
	}
	if o.ReadsDuration <= 0 {
		o.ReadsDuration = DefaultReadsDuration
		if o.Smoke {
			o.ReadsDuration = SmokeReadsDuration
		}
	}
	if o.Connections <= 0 {
		o.Connections = DefaultConnections
	}
	if o.Rounds == 0 { // a negative count is left to validate
		o.Rounds = DefaultRounds
		if o.Smoke {
			o.Rounds = SmokeRounds
		}
	}
	if o.OutDir == "" {
		o.OutDir = DefaultOutDir
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 2000
	}
	if o.BatchWait <= 0 {
		o.BatchWait = 20 * time.Millisecond
	}
	if o.Prefetch <= 0 {
		o.Prefetch = 4000
	}
	if o.DBMaxConns <= 0 {
		o.DBMaxConns = 16
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return o
}

func (o Options) validate() error {
	var errs []error
	if o.Binary == "" {
		errs = append(errs, errors.New("bench: no service binary"))
	} else if _, err := os.Stat(o.Binary); err != nil {
		errs = append(errs, fmt.Errorf("bench: service binary (build it with make build, or pass --warehouse): %w", err))
	}
	if o.Self == "" {
		errs = append(errs, errors.New("bench: no benchmark binary for the bare Fiber ceiling"))
	} else if _, err := os.Stat(o.Self); err != nil {
		errs = append(errs, fmt.Errorf("bench: benchmark binary: %w", err))
	}
	if o.DatabaseURL == "" || o.AMQPURL == "" {
		errs = append(errs, errors.New("bench: DATABASE_URL and AMQP_URL are required"))
	}
	if o.Events > 10_000_000 {
		errs = append(errs, fmt.Errorf("bench: --events %d is over 10 000 000", o.Events))
	}
	if o.Connections > 1024 {
		errs = append(errs, fmt.Errorf("bench: --connections %d is over 1024", o.Connections))
	}
	if o.Rounds < 1 || o.Rounds > maxRounds {
		errs = append(errs, fmt.Errorf("bench: --rounds %d is not within 1..%d", o.Rounds, maxRounds))
	}
	if o.ReadsDuration > 5*time.Minute {
		errs = append(errs, fmt.Errorf("bench: --reads-duration %s is over 5m", o.ReadsDuration))
	}
	if o.Prefetch < o.BatchSize {
		errs = append(errs, fmt.Errorf("bench: prefetch %d is under the batch size %d", o.Prefetch, o.BatchSize))
	}
	if f := o.StreamFilter; f != "" && f != StreamFilterWarehouse && f != StreamFilterNone {
		errs = append(errs, fmt.Errorf("bench: --stream-filter %q is not %s or %s", f, StreamFilterWarehouse, StreamFilterNone))
	}
	if o.StreamClients < 0 || o.StreamClients > maxStreamClients {
		errs = append(errs, fmt.Errorf("bench: --stream-clients %d is not within 1..%d", o.StreamClients, maxStreamClients))
	}
	for _, p := range o.Phases {
		if !slices.Contains(AllPhases, p) {
			errs = append(errs, fmt.Errorf("bench: unknown phase %q (phases: %s)", p, strings.Join(AllPhases, ", ")))
		}
	}
	if o.runs(PhaseReads) && !o.runs(PhaseDrain) {
		errs = append(errs, errors.New("bench: the reads phase needs the drain phase (it reads the drained database)"))
	}
	return errors.Join(errs...)
}

// lateRounds is how many rounds the HTTP ingest and stream phases run: Rounds, at most
// maxLateRounds.
func (o Options) lateRounds() int { return min(o.Rounds, maxLateRounds) }

// runs reports whether the run includes phase.
func (o Options) runs(phase string) bool {
	return len(o.Phases) == 0 || slices.Contains(o.Phases, phase)
}

// phases lists the phases the run includes, in the order they run.
func (o Options) phases() []string {
	return slices.DeleteFunc(slices.Clone(AllPhases), func(p string) bool { return !o.runs(p) })
}

func (o Options) ingestTimeout() time.Duration {
	if o.Smoke {
		return smokeIngestTimeout
	}
	return ingestTimeout
}

// Run runs every phase, prints the table to stdout and writes results.json, README.md
// and the SVG charts to o.OutDir. It returns the report even when writing it failed.
// A phase that does not finish in time is reported as incomplete, not as an error; an
// error means the run could not measure (a service unreachable, a child that crashed).
func Run(ctx context.Context, o Options, stdout io.Writer) (*Report, error) {
	o = o.withDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	started := time.Now()
	work, err := os.MkdirTemp("", "warehouse-bench-")
	if err != nil {
		return nil, err
	}
	r := &runner{
		o:    o,
		log:  o.Log,
		id:   fmt.Sprintf("%s_%04x", started.UTC().Format("20060102_150405"), rand.Uint32()&0xffff),
		work: work,
	}
	r.log.Info("bench starting", "events", o.Events, "rounds", o.Rounds, "reads_duration", o.ReadsDuration,
		"connections", o.Connections, "smoke", o.Smoke, "run", r.id, "logs", work)

	if o.PipelineVariants {
		err := r.variants(ctx, stdout)
		r.cleanup(ctx)
		if err != nil && ctx.Err() == nil {
			return nil, fmt.Errorf("%w (logs kept in %s)", err, work)
		}
		_ = os.RemoveAll(work)
		return nil, err
	}
	rep, runErr := r.run(ctx)
	r.cleanup(ctx)
	if runErr != nil && ctx.Err() == nil {
		return rep, fmt.Errorf("%w (service logs kept in %s)", runErr, work)
	}
	_ = os.RemoveAll(work)
	if runErr != nil {
		return rep, runErr
	}
	rep.DurationSeconds = time.Since(started).Seconds()
	if err := rep.write(o.OutDir); err != nil {
		return rep, err
	}
	rep.printTable(stdout)
	fmt.Fprintf(stdout, "\nwrote %s (%s) in %s\n", o.OutDir, strings.Join(append([]string{"results.json", "README.md"}, rep.charts()...), ", "),
		time.Duration(rep.DurationSeconds*float64(time.Second)).Round(time.Second))
	return rep, nil
}

// runner holds the state of one run: what it generated and what it must clean up.
type runner struct {
	o    Options
	log  *slog.Logger
	id   string // unique per run, in every name it creates
	work string // child logs and working directory

	stream     *stream
	streamPath string // the stream as JSON lines, once written (see streamFile)
	databases  []string
	topologies []amqpadapter.Topology
	children   []*child
}

func (r *runner) run(ctx context.Context) (*Report, error) {
	rep := newReport(r.o, time.Now())
	if err := r.checkServices(ctx); err != nil {
		return nil, err
	}
	r.stream = generate(r.o.Events)
	rep.Settings.GeneratorStats = r.stream.stats
	r.log.Info("events generated", "events", len(r.stream.msgs), "stock_rows", len(r.stream.expected),
		"movements", len(r.stream.movements))

	// Ceiling, then service, round after round: a slow spell of the machine then weighs
	// on both sides of a ratio rather than on one figure, and the median round is shown.
	var (
		drains, pipelines, batches []Pair
		readsDB                    string
		err                        error
	)
	if r.o.runs(PhaseDrain) {
		drainDBs := make([]string, 0, r.o.Rounds)
		drains, err = phaseRounds("drain", "bare consumer", r.o.Rounds,
			func(i int) (IngestResult, error) { return r.bareDrain(ctx, i) },
			func(i int) (IngestResult, error) {
				res, db, err := r.serviceDrain(ctx, i)
				drainDBs = append(drainDBs, db)
				return res, err
			})
		if err != nil {
			return nil, err
		}
		rep.Drain = medianPair(drains)
		r.logRounds("drain", rep.Drain)
		// every service drain stored the same stream: the reads use the chosen round's
		// database, and the others go now rather than at the end
		readsDB = drainDBs[rep.Drain.Chosen]
		var others []string
		for i, db := range drainDBs {
			if i != rep.Drain.Chosen || !r.o.runs(PhaseReads) {
				others = append(others, databaseName(db))
			}
		}
		r.dropDatabases(ctx, others...)
	}

	if r.o.runs(PhasePipeline) {
		if rep.Pipeline, rep.PipelineBatch, pipelines, batches, err = r.pipelinePhase(ctx); err != nil {
			return nil, err
		}
	}

	var (
		publishes []publishRound
		streams   []Pair
	)
	if r.o.runs(PhaseHTTPIngest) {
		if rep.HTTPIngest, publishes, err = r.httpIngestPhase(ctx); err != nil {
			return nil, err
		}
	}
	if r.o.runs(PhaseStream) {
		if rep.Stream, streams, err = r.streamPhase(ctx); err != nil {
			return nil, err
		}
	}

	if r.o.runs(PhaseReads) {
		if rep.Reads, rep.History, err = r.reads(ctx, readsDB); err != nil {
			return nil, fmt.Errorf("reads: %w", err)
		}
	}
	// The checks of old first, in their order, then those of the later phases.
	rep.Checks = append(rep.Checks, checks(rep, drains, pipelines)...)
	if r.o.runs(PhasePipeline) {
		rep.Checks = append(rep.Checks, pipelineBatchChecks(rep.PipelineBatch, batches)...)
	}
	if r.o.runs(PhaseReads) {
		rep.Checks = append(rep.Checks, historyChecks(rep.History)...)
	}
	if r.o.runs(PhaseHTTPIngest) {
		rep.Checks = append(rep.Checks, httpIngestChecks(publishes)...)
	}
	if r.o.runs(PhaseStream) {
		rep.Checks = append(rep.Checks, streamChecks(rep.Stream, streams)...)
	}
	rep.build()
	return rep, nil
}

// phaseRounds runs n rounds of a phase, each measuring the ceiling and then the service.
func phaseRounds(phase, ceilingName string, n int, ceiling, service func(i int) (IngestResult, error)) ([]Pair, error) {
	pairs := make([]Pair, 0, n)
	for i := range n {
		var p Pair
		var err error
		if p.Ceiling, err = ceiling(i); err != nil {
			return nil, fmt.Errorf("%s round %d, %s: %w", phase, i+1, ceilingName, err)
		}
		if p.Service, err = service(i); err != nil {
			return nil, fmt.Errorf("%s round %d, service: %w", phase, i+1, err)
		}
		pairs = append(pairs, p)
	}
	return pairs, nil
}

// sleepCtx waits d or until ctx is done, and reports whether d elapsed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
