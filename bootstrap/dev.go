package bootstrap

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	amqpadapter "warehouse/adapters/amqp"
	"warehouse/adapters/cache"
	httpadapter "warehouse/adapters/http"
	"warehouse/adapters/memory"
	"warehouse/application"
	"warehouse/domain"
	"warehouse/ports"
)

const devUsage = `Usage: warehouse dev [flags]

The whole service on the memory adapters, to try the API without PostgreSQL or RabbitMQ:
the read API, /docs, /openapi.json, /health, /readyz, /metrics, the change stream
(GET /api/stream, resumable with Last-Event-ID) and HTTP ingest (POST /api/events,
structured, binary and batch; open unless INGEST_TOKEN is set), with
the same decoder, recorder and ledger rules as the real service; only the adapters differ.

NOTHING IS PERSISTED: the ledger lives in this process and is gone when it stops.

It listens on 127.0.0.1 (it has no authentication of its own). --count loads that many
generated events first, as produce would publish them (--seed repeats a set), so that
every route has something to show; --file loads a JSON-lines file (produce --dry-run
writes one) instead.

Flags:
`

// devBatch is how many events the initial load records per batch.
const devBatch = 1000

// Dev is `warehouse dev`: the service on the memory store, for trying it out.
func Dev(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8000", "address to listen on (loopback by default: dev has no authentication of its own)")
	count := fs.Int("count", 0, "generated events to load before serving")
	seed := fs.Uint64("seed", 0, "seed of the generated events (default: time-based)")
	file := fs.String("file", "", "JSON-lines file of events to load instead of generating")
	warehouses := fs.Int("warehouses", 10, "warehouses in the generated network")
	products := fs.Int("products", 50, "products in the generated network")
	if help, err := parseFlags(fs, args, stdout, devUsage); help || err != nil {
		return err
	}
	switch {
	case *count < 0:
		return usageError(errors.New("--count must not be negative"))
	case *warehouses < 1 || *products < 1:
		return usageError(errors.New("--warehouses and --products must be at least 1"))
	}
	cfg, log, err := setup()
	if err != nil {
		return err
	}
	log = log.With("mode", "dev")
	log.WarnContext(ctx, "dev mode: the ledger is in memory, NOTHING IS PERSISTED; it is gone when the process stops")

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	store := memory.NewStore()
	var (
		queries  ports.Queries = application.NewQueries(store)
		notifier ports.ChangeNotifier
	)
	if cfg.CacheSize > 0 {
		cached := cache.NewQueries(queries, cache.Options{Size: cfg.CacheSize, TTL: cfg.CacheTTL}, reg)
		queries, notifier = cached, cached
	}
	recorder := application.NewRecorder(store, notifier)

	if *count > 0 || *file != "" {
		o := &produceOptions{count: *count, seed: *seed, seedSet: *seed != 0, countSet: *count > 0, file: *file,
			warehouses: *warehouses, products: *products, loss: 0.05, disorder: 0.1}
		if err := devLoad(ctx, o, recorder, log); err != nil {
			return err
		}
	}

	httpOpts := httpadapter.Options{
		ReadTimeout: cfg.HTTPReadTimeout, WriteTimeout: cfg.HTTPWriteTimeout, IdleTimeout: cfg.HTTPIdleTimeout,
		RequestTimeout: cfg.RequestTimeout, APIToken: cfg.APIToken,
		Ingest: httpadapter.IngestOptions{
			Token: cfg.IngestToken, Open: cfg.IngestToken == "", Rate: cfg.IngestRate,
			Publisher: application.NewDirectIngest(recorder), Decode: amqpadapter.DecodeAttributes,
			SplitBatch: amqpadapter.SplitBatch,
		},
	}
	stream := application.NewStream(store, streamOptions(cfg), log)
	httpOpts.Stream = httpadapter.StreamOptions{Stream: stream}
	streamCtx, stopStream := context.WithCancel(ctx)
	defer stopStream()
	streamDone := make(chan struct{})
	go func() { defer close(streamDone); _ = stream.Run(streamCtx) }()
	ready := httpadapter.Readiness{Checks: []httpadapter.Check{{Name: "ledger in memory, nothing persisted", Run: store.Ping}}}
	server := httpadapter.NewServer(httpOpts, queries, ready, reg, log)
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *addr, err)
	}
	served := make(chan error, 1)
	go func() { served <- server.Serve(ln) }()
	log.InfoContext(ctx, "dev listening", "addr", ln.Addr().String(), "ingest_open", cfg.IngestToken == "")
	select {
	case err := <-served:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	stopStream() // ends the streams, so that the shutdown does not wait for their clients
	<-streamDone
	shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	if err := server.Shutdown(shutdown); err != nil {
		log.WarnContext(ctx, "http shutdown", "err", err)
	}
	log.InfoContext(ctx, "stopped; the in-memory ledger is gone")
	return nil
}

// devLoad records the events of o's source (generated, or read from a file) in batches,
// as a consumer records what the broker delivers.
func devLoad(ctx context.Context, o *produceOptions, rec *application.Recorder, log *slog.Logger) error {
	src, err := o.source(io.Discard)
	if err != nil {
		return err
	}
	start := time.Now()
	var stored, refused int
	batch := make([]domain.Event, 0, devBatch)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		results, err := rec.Record(ctx, batch)
		if err != nil {
			return err
		}
		for _, r := range results {
			if r == nil {
				stored++
			} else {
				refused++
			}
		}
		batch = batch[:0]
		return nil
	}
	for {
		e, _, ok, err := src.next()
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		batch = append(batch, e)
		if len(batch) == devBatch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	log.InfoContext(ctx, "dev ledger loaded", "stored", stored, "refused", refused, "seed", o.seed, "file", o.file,
		"seconds", time.Since(start).Seconds())
	return nil
}
