package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	amqpadapter "warehouse/adapters/amqp"
	"warehouse/adapters/cache"
	httpadapter "warehouse/adapters/http"
	"warehouse/adapters/postgres"
	"warehouse/application"
	"warehouse/migrations"
	"warehouse/ports"
)

// roles says what one process does.
type roles struct {
	migrate bool // apply migrations (creating the database) before starting
	api     bool // serve the read API on HTTP_ADDR
	consume bool // consume events; without api, ops endpoints go on CONSUMER_HTTP_ADDR
}

// usage is the --help text of the command that runs these roles.
func (r roles) usage() string {
	switch {
	case r.api && r.consume:
		return runUsage
	case r.api:
		return serveUsage
	}
	return consumeUsage
}

const (
	runUsage = `Usage: warehouse run

Applies the pending migrations (creating the database when it is missing), then serves the
HTTP API on HTTP_ADDR and consumes events from AMQP_QUEUE in one process, until SIGINT or
SIGTERM; then it finishes the batch in flight and stops. It takes no arguments: the
configuration comes from the environment and from .env (see .env.example).
`
	serveUsage = `Usage: warehouse serve

Serves the HTTP API (reads, the change stream, /health, /readyz, /metrics, /openapi.json,
/docs) on HTTP_ADDR until SIGINT or SIGTERM. Scale it horizontally; it consumes nothing,
and streams what any consume process commits. It takes no
arguments: the configuration comes from the environment and from .env.
`
	consumeUsage = `Usage: warehouse consume

Consumes events from AMQP_QUEUE into the ledger, with /health, /readyz and /metrics on
CONSUMER_HTTP_ADDR, until SIGINT or SIGTERM; then it finishes the batch in flight and
stops. It takes no arguments: the configuration comes from the environment and from .env.
`
)

// Run is `warehouse run`: migrate, then serve the API and consume in one process.
func Run(ctx context.Context, args []string, stdout io.Writer) error {
	return runRoles(ctx, args, stdout, roles{migrate: true, api: true, consume: true})
}

// Serve is `warehouse serve`: the HTTP API only.
func Serve(ctx context.Context, args []string, stdout io.Writer) error {
	return runRoles(ctx, args, stdout, roles{api: true})
}

// Consume is `warehouse consume`: the consumer only, with health and metrics on
// CONSUMER_HTTP_ADDR.
func Consume(ctx context.Context, args []string, stdout io.Writer) error {
	return runRoles(ctx, args, stdout, roles{consume: true})
}

func runRoles(ctx context.Context, args []string, stdout io.Writer, r roles) error {
	if helpRequested(args) {
		_, err := io.WriteString(stdout, r.usage())
		return err
	}
	if len(args) != 0 {
		return usageError(fmt.Errorf("unexpected argument %q: the configuration comes from the environment", clipArg(args[0])))
	}
	cfg, log, err := setup()
	if err != nil {
		return err
	}
	tuneRuntime(r, cfg.ConsumerWorkers, log)
	return runService(ctx, cfg, log, r, nil)
}

// A consumer-only process is tuned for what it is: one sequential pipeline per worker
// (collect, decode, judge, write) that mostly waits on PostgreSQL.
//   - GOMAXPROCS defaults to CONSUMER_WORKERS (capped at the CPUs): with more Ps than work,
//     the Go scheduler spins idle threads awake on every delivery; on a 2-core machine
//     shared with PostgreSQL and RabbitMQ one P cut the consumer's CPU by a quarter and
//     raised throughput by 4-10%.
//   - GOGC=400 under a 96 MiB soft memory limit: its live heap is a batch or two, so the
//     default GOGC=100 collected every few batches and the scavenger handed pages back to
//     the OS only to fault them in again (~15% of its CPU in the drain profile).
//
// GOMAXPROCS, GOGC and GOMEMLIMIT set in the environment win.
const (
	consumerGCPercent   = 400
	consumerMemoryLimit = 96 << 20
)

func tuneRuntime(r roles, workers int, log *slog.Logger) {
	if r.api || !r.consume {
		return
	}
	if _, set := os.LookupEnv("GOMAXPROCS"); !set {
		procs := min(max(workers, 1), runtime.NumCPU())
		runtime.GOMAXPROCS(procs)
		log.Debug("consumer GOMAXPROCS", "procs", procs)
	}
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(consumerGCPercent)
		log.Debug("consumer GC percent", "gogc", consumerGCPercent)
	}
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set {
		debug.SetMemoryLimit(consumerMemoryLimit)
		log.Debug("consumer soft memory limit", "bytes", consumerMemoryLimit)
	}
}

// runService builds and runs the components of r until ctx is done or one of them fails,
// then shuts down in order: readiness turns 503, the consumer finishes its batch, the HTTP
// server drains, the database closes — all within SHUTDOWN_TIMEOUT. When ln is not nil the
// HTTP server uses it instead of listening on the configured address (tests).
func runService(ctx context.Context, cfg Config, log *slog.Logger, r roles, ln net.Listener) error {
	log.InfoContext(ctx, "starting", append([]any{"api", r.api, "consume", r.consume}, cfg.Redacted()...)...)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	db, err := openDatabase(ctx, cfg, r.migrate)
	if err != nil {
		return err
	}
	defer db.Close()
	// The pool's connections in use and idle, and the waits for one: go_sql_* {db_name}.
	reg.MustRegister(collectors.NewDBStatsCollector(db.DB, "warehouse"))
	if r.migrate {
		applied, err := postgres.Migrate(ctx, db, migrations.FS)
		if err != nil {
			return err
		}
		log.InfoContext(ctx, "schema up to date", "applied", len(applied))
	}
	store := postgres.NewStoreWithOptions(db, postgres.StoreOptions{ListWait: cfg.DBListWait})
	// Readiness pings on a connection of its own: a pool busy with reads is not an outage.
	pinger, err := postgres.OpenPinger(postgres.Options{URL: cfg.DatabaseURL})
	if err != nil {
		return err
	}
	defer pinger.Close()

	var (
		queries  ports.Queries = application.NewQueries(store)
		notifier ports.ChangeNotifier
	)
	if r.api && cfg.CacheSize > 0 {
		cached := cache.NewQueries(queries, cache.Options{Size: cfg.CacheSize, TTL: cfg.CacheTTL}, reg)
		queries, notifier = cached, cached
	}

	var consumers []*amqpadapter.Consumer
	ready := httpadapter.Readiness{Checks: []httpadapter.Check{{Name: "postgres", Run: pinger.Ping}}}
	if r.consume {
		// Every consumer of the ledger signs and checks retry counts with its key.
		key, err := postgres.ControlKey(ctx, db)
		if err != nil {
			return err
		}
		recorder := application.NewRecorder(store, notifier)
		for range cfg.ConsumerWorkers {
			consumers = append(consumers, amqpadapter.NewConsumer(amqpadapter.ConsumerOptions{
				URL:             cfg.AMQPURL,
				Topology:        topologyOf(cfg),
				Prefetch:        cfg.AMQPPrefetch,
				BatchSize:       cfg.BatchSize,
				BatchWait:       cfg.BatchWait,
				RetryLimit:      cfg.RetryLimit,
				Lanes:           cfg.ConsumerLanes,
				ShutdownTimeout: cfg.ShutdownTimeout,
				ControlKey:      key,
			}, recorder, log, reg))
		}
		ready.ConsumerState = func() string { return amqpadapter.WorstState(consumers) }
		ready.RequireConsumer = !r.api
		ready.ConsumerHeld = func() (time.Time, string) { return oldestHeld(consumers) }
		ready.ConsumerNode = consumers[0].Node // the workers share the process's node (see amqpadapter.ParseNodes)
		ready.HoldLimit = cfg.ConsumerHoldLimit
	}

	httpOpts := httpadapter.Options{
		ReadTimeout: cfg.HTTPReadTimeout, WriteTimeout: cfg.HTTPWriteTimeout, IdleTimeout: cfg.HTTPIdleTimeout,
		RequestTimeout: cfg.RequestTimeout, APIToken: cfg.APIToken,
	}
	if r.api && cfg.IngestToken != "" {
		// POST /api/events publishes to the exchange the consumers read, with confirms.
		ingestPub := amqpadapter.NewEventPublisher(cfg.AMQPURL, cfg.AMQPExchange, log)
		defer ingestPub.Close() //nolint:errcheck // closing at exit
		httpOpts.Ingest = httpadapter.IngestOptions{
			Token: cfg.IngestToken, Rate: cfg.IngestRate, Publisher: ingestPub, Decode: amqpadapter.DecodeAttributes,
			SplitBatch: amqpadapter.SplitBatch,
		}
	}
	var stream *application.Stream
	if r.api {
		stream = application.NewStream(store, streamOptions(cfg), log)
		httpOpts.Stream = httpadapter.StreamOptions{Stream: stream}
	}
	var server *httpadapter.Server
	addr := cfg.HTTPAddr
	if r.api {
		server = httpadapter.NewServer(httpOpts, queries, ready, reg, log)
	} else {
		server = httpadapter.NewOpsServer(httpOpts, ready, reg, log)
		addr = cfg.ConsumerHTTPAddr
	}
	if ln == nil {
		if ln, err = (&net.ListenConfig{}).Listen(ctx, "tcp", addr); err != nil {
			return fmt.Errorf("listen on %s: %w", addr, err)
		}
	}

	// The HTTP server and the consumers run in one group: the first to fail cancels runCtx,
	// as a signal cancels ctx. The consumers are a group of their own within it (one that
	// fails stops the others), so that the shutdown can wait for them alone.
	g, runCtx := errgroup.WithContext(ctx)
	g.Go(func() error {
		log.InfoContext(ctx, "http listening", "addr", ln.Addr().String())
		if err := server.Serve(ln); err != nil {
			return fmt.Errorf("http server: %w", err)
		}
		return nil
	})
	if stream != nil {
		// Ends with runCtx, and with it every stream, so that the HTTP shutdown does not
		// wait for clients that never hang up.
		g.Go(func() error { return stream.Run(runCtx) })
	}
	g.Go(func() error { pruneChanges(runCtx, store, cfg.StreamRetention, log); return nil })
	consumersDone := make(chan struct{})
	g.Go(func() error {
		defer close(consumersDone)
		cg, consumeCtx := errgroup.WithContext(runCtx)
		for _, c := range consumers {
			cg.Go(func() error {
				if err := c.Run(consumeCtx); err != nil {
					return fmt.Errorf("consumer: %w", err)
				}
				return nil
			})
		}
		return cg.Wait()
	})
	stopPprof := startPprof(cfg.PprofAddr, log)
	defer stopPprof()

	// Shutdown order: readiness turns 503, the consumers finish and settle their batch
	// (HTTP still serves meanwhile), then the HTTP server drains, and the deferred closes
	// of the pinger and the database come last.
	<-runCtx.Done()
	log.InfoContext(ctx, "shutting down", "timeout", cfg.ShutdownTimeout)
	server.SetDraining(true)
	deadline, cancelDeadline := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancelDeadline()
	consumersStopped := true
	select {
	case <-consumersDone:
	case <-deadline.Done():
		consumersStopped = false
		log.WarnContext(ctx, "consumer did not stop before the shutdown deadline")
	}
	if err := server.Shutdown(deadline); err != nil {
		log.WarnContext(ctx, "http shutdown", "err", err)
	}
	if !consumersStopped {
		// Waiting for the group would outlast SHUTDOWN_TIMEOUT: the batch the consumer
		// holds stays unacked, and the broker delivers it again.
		return fmt.Errorf("consumer did not stop within SHUTDOWN_TIMEOUT %s", cfg.ShutdownTimeout)
	}
	err = g.Wait()
	log.InfoContext(ctx, "stopped")
	return err
}

// oldestHeld reports the batch held longest by the consumers, if any.
func oldestHeld(consumers []*amqpadapter.Consumer) (since time.Time, reason string) {
	for _, c := range consumers {
		if t, r := c.Held(); !t.IsZero() && (since.IsZero() || t.Before(since)) {
			since, reason = t, r
		}
	}
	return since, reason
}

// topologyOf maps the configuration to the broker topology.
func topologyOf(cfg Config) amqpadapter.Topology {
	return amqpadapter.Topology{
		Exchange:           cfg.AMQPExchange,
		Queue:              cfg.AMQPQueue,
		DeadLetterExchange: cfg.AMQPDeadLetterExchange,
		DeadLetterQueue:    cfg.AMQPDeadLetterQueue,
		RetryExchange:      cfg.AMQPRetryExchange,
		RetryDelay:         cfg.RetryDelay,
		DeliveryLimit:      cfg.AMQPDeliveryLimit,
	}
}

// startPprof serves /debug/pprof on addr when it is set (opt-in, meant for 127.0.0.1) and
// returns a function that stops it.
func startPprof(addr string, log *slog.Logger) (stop func()) {
	if addr == "" {
		return func() {}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("pprof server", "err", err)
		}
	}()
	log.Info("pprof listening", "addr", addr)
	return func() { _ = srv.Close() }
}

// streamOptions maps the configuration to the change stream's options.
func streamOptions(cfg Config) application.StreamOptions {
	return application.StreamOptions{MaxClients: cfg.StreamMaxClients, Buffer: cfg.StreamBuffer}
}

// pruneEvery is how often a process prunes the change log.
const pruneEvery = time.Minute

// pruneChanges drops the changes older than retention from the change log, now and every
// pruneEvery, until ctx ends. Every process does it (the deletes are cheap and
// idempotent), so the log is pruned whichever processes run.
func pruneChanges(ctx context.Context, log ports.ChangeLog, retention time.Duration, lg *slog.Logger) {
	t := time.NewTicker(pruneEvery)
	defer t.Stop()
	for {
		n, err := log.PruneChanges(ctx, time.Now().Add(-retention))
		switch {
		case err != nil && ctx.Err() == nil:
			lg.WarnContext(ctx, "pruning the change log", "err", err)
		case n > 0:
			lg.DebugContext(ctx, "pruned the change log", "changes", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
