package bench

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	amqpadapter "warehouse/adapters/amqp"
)

// IngestResult is one drain or pipeline measurement.
type IngestResult struct {
	Events   int  `json:"events"`
	Complete bool `json:"complete"` // every event committed before the phase timeout
	// Seconds runs from the consumer being subscribed (drain) or the first publish
	// (pipeline) to the poll that saw the last event committed.
	Seconds         float64 `json:"seconds"`
	EventsPerSecond float64 `json:"events_per_second"`
	// PublishSeconds (pipeline) runs until the publisher had every confirm.
	PublishSeconds float64 `json:"publish_seconds,omitempty"`
	// StartupSeconds (service) runs from starting the process to /readyz answering 200.
	StartupSeconds float64 `json:"startup_seconds,omitempty"`
	PeakRSSBytes   int64   `json:"peak_rss_bytes,omitempty"`
	// CPUSeconds is the service process's CPU time during the phase; HostCPUBusy the share
	// of all CPUs busy (everything on the machine: broker, database, benchmark).
	CPUSeconds  float64 `json:"cpu_seconds,omitempty"`
	HostCPUBusy float64 `json:"host_cpu_busy"`
	// PostgresCPUSeconds and BrokerCPUSeconds are the CPU time of all PostgreSQL server
	// processes and all RabbitMQ processes on this machine over the same interval as
	// HostCPUBusy (from /proc; processes that exited during it are not counted).
	PostgresCPUSeconds float64 `json:"postgres_cpu_seconds,omitempty"`
	BrokerCPUSeconds   float64 `json:"broker_cpu_seconds,omitempty"`
	// What the service reported on /metrics at the end.
	Stored          int64   `json:"stored,omitempty"`
	Duplicates      int64   `json:"duplicates,omitempty"`
	Rejected        int64   `json:"rejected,omitempty"`
	Retried         int64   `json:"retried,omitempty"`
	MeanBatchSize   float64 `json:"mean_batch_size,omitempty"`
	MeanBatchMillis float64 `json:"mean_batch_ms,omitempty"`
	// Verified is "ok" when the stored ledger is exactly the stream's, else the problem.
	Verified string   `json:"verified"`
	Samples  []Sample `json:"samples"`
}

// Sample is one point of the chart: committed and published events at T seconds.
type Sample struct {
	T         float64 `json:"t"`
	Committed int64   `json:"committed"`
	Published int64   `json:"published"`
}

// publishFunc publishes the stream while a consumer runs, counting confirms.
type publishFunc func(ctx context.Context, confirmed *atomic.Int64) error

// profileSeconds is the CPU profile taken of a service child during an ingest phase.
func (r *runner) profileSeconds() int {
	if r.o.Smoke {
		return 1
	}
	return 5
}

// serviceDrain, servicePipeline, bareDrain and barePipeline measure round i (0-based) of
// their phase, on a database or table, a topology and a child of the round's own.

func (r *runner) serviceDrain(ctx context.Context, i int) (IngestResult, string, error) {
	dbURL, err := r.createDatabase(ctx, "drain"+roundSuffix(i, "_"), true)
	if err != nil {
		return IngestResult{}, "", err
	}
	t, err := r.declare("drain" + roundSuffix(i, "-"))
	if err != nil {
		return IngestResult{}, "", err
	}
	if err := r.prefill(ctx, t.Exchange, t.Queue); err != nil {
		return IngestResult{}, "", err
	}
	r.checkpoint(ctx)
	res, err := r.serviceIngest(ctx, "drain"+roundSuffix(i, "-"), dbURL, t, nil)
	return res, dbURL, err
}

func (r *runner) servicePipeline(ctx context.Context, i int) (IngestResult, error) {
	dbURL, err := r.createDatabase(ctx, "pipeline"+roundSuffix(i, "_"), true)
	if err != nil {
		return IngestResult{}, err
	}
	t, err := r.declare("pipeline" + roundSuffix(i, "-"))
	if err != nil {
		return IngestResult{}, err
	}
	r.checkpoint(ctx)
	return r.serviceIngest(ctx, "pipeline"+roundSuffix(i, "-"), dbURL, t, func(ctx context.Context, c *atomic.Int64) error {
		return r.publishProject(ctx, t.Exchange, r.stream.project, c)
	})
}

func (r *runner) bareDrain(ctx context.Context, i int) (IngestResult, error) {
	table := "bare_drain" + roundSuffix(i, "_")
	dbURL, err := r.bareTable(ctx, table)
	if err != nil {
		return IngestResult{}, err
	}
	t, err := r.declare("bare-drain" + roundSuffix(i, "-"))
	if err != nil {
		return IngestResult{}, err
	}
	if err := r.prefill(ctx, t.Exchange, t.Queue); err != nil {
		return IngestResult{}, err
	}
	r.checkpoint(ctx)
	return r.bareIngest(ctx, "drain"+roundSuffix(i, "-"), dbURL, table, t, nil)
}

func (r *runner) barePipeline(ctx context.Context, i int) (IngestResult, error) {
	table := "bare_pipeline" + roundSuffix(i, "_")
	dbURL, err := r.bareTable(ctx, table)
	if err != nil {
		return IngestResult{}, err
	}
	t, err := r.declare("bare-pipeline" + roundSuffix(i, "-"))
	if err != nil {
		return IngestResult{}, err
	}
	r.checkpoint(ctx)
	return r.bareIngest(ctx, "pipeline"+roundSuffix(i, "-"), dbURL, table, t, func(ctx context.Context, c *atomic.Int64) error {
		return r.publishBare(ctx, t.Exchange, r.stream.msgs, c)
	})
}

// bareTable creates the plain table in the run's bare database (created on first use),
// shared by every bare phase and round.
func (r *runner) bareTable(ctx context.Context, table string) (string, error) {
	dbURL, err := r.createDatabase(ctx, "bare", false)
	if err != nil {
		return "", err
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, fmt.Sprintf(bareTableDDL, pgx.Identifier{table}.Sanitize()))
	return dbURL, err
}

// serviceIngest runs `warehouse consume` on t and dbURL until it has committed the
// stream (already in the queue, or published by publish once it is ready). phase, with
// its round, names the child's log and profiles.
func (r *runner) serviceIngest(ctx context.Context, phase, dbURL string, t amqpadapter.Topology, publish publishFunc) (IngestResult, error) {
	res := IngestResult{Events: len(r.stream.msgs)}
	addr, err := freeAddr(ctx)
	if err != nil {
		return res, err
	}
	env := r.serviceEnv(dbURL, t)
	env["CONSUMER_HTTP_ADDR"] = addr
	spawn := time.Now()
	c, err := r.startChild(ctx, "consume-"+phase, env, addr, r.o.Binary, "consume")
	if err != nil {
		return res, err
	}
	defer c.stop()
	if err := c.waitReady(ctx, readyTimeout); err != nil {
		return res, err
	}
	t0 := time.Now()
	res.StartupSeconds = t0.Sub(spawn).Seconds()
	cpu0, _ := c.cpuSeconds()
	host0, _ := readHostCPU()
	proc0 := readProcCPU()
	profiled := r.profile(ctx, c, phase+"-consume", r.profileSeconds())

	progress := func(ctx context.Context) (int64, error) {
		if err := c.alive(); err != nil {
			return 0, err
		}
		m, err := c.metrics(ctx, "movements_stored_total", "movements_duplicates_total", "movements_rejected_total")
		if err != nil {
			return 0, err
		}
		return int64(m["movements_stored_total"] + m["movements_duplicates_total"] + m["movements_rejected_total"]), nil
	}
	if err := r.ingest(ctx, t0, &res, progress, publish); err != nil {
		return res, err
	}
	res.HostCPUBusy = host0.busySince()
	res.setProcCPU(readProcCPU().since(proc0))
	if cpu1, err := c.cpuSeconds(); err == nil {
		res.CPUSeconds = cpu1 - cpu0
	}
	if m, err := c.metrics(ctx, "movements_stored_total", "movements_duplicates_total", "movements_rejected_total",
		"movements_retried_total", "consumer_batch_size_sum", "consumer_batch_size_count",
		"consumer_batch_duration_seconds_sum", "consumer_batch_duration_seconds_count"); err == nil {
		res.Stored, res.Duplicates = int64(m["movements_stored_total"]), int64(m["movements_duplicates_total"])
		res.Rejected, res.Retried = int64(m["movements_rejected_total"]), int64(m["movements_retried_total"])
		if n := m["consumer_batch_size_count"]; n > 0 {
			res.MeanBatchSize = m["consumer_batch_size_sum"] / n
		}
		if n := m["consumer_batch_duration_seconds_count"]; n > 0 {
			res.MeanBatchMillis = 1000 * m["consumer_batch_duration_seconds_sum"] / n
		}
	}
	if rss, err := c.peakRSS(); err == nil {
		res.PeakRSSBytes = rss
	}
	profiled()
	c.stop()
	res.Verified = "not checked: incomplete"
	if res.Complete {
		res.Verified = "ok"
		if err := verifyLedger(ctx, dbURL, len(r.stream.msgs), r.stream.expected); err != nil {
			res.Verified = err.Error()
		}
	}
	r.log.Info("phase done", "phase", phase, "who", "service", "events_per_second", round(res.EventsPerSecond),
		"seconds", round(res.Seconds), "complete", res.Complete, "peak_rss_mib", res.PeakRSSBytes>>20, "verified", res.Verified)
	return res, nil
}

// bareIngest runs the bare consumer on t and table until it has stored the stream.
func (r *runner) bareIngest(ctx context.Context, phase, dbURL, table string, t amqpadapter.Topology, publish publishFunc) (IngestResult, error) {
	res := IngestResult{Events: len(r.stream.msgs)}
	b := &bareConsumer{
		amqpURL: r.o.AMQPURL, dbURL: dbURL, queue: t.Queue, table: pgx.Identifier{table}.Sanitize(),
		prefetch: r.o.Prefetch, batchSize: r.o.BatchSize, batchWait: r.o.BatchWait, target: int64(len(r.stream.msgs)),
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ready := make(chan time.Time, 1)
	done := make(chan struct{})
	var runErr error
	go func() {
		defer close(done)
		runErr = b.run(cctx, func() { ready <- time.Now() })
	}()
	var t0 time.Time
	select {
	case t0 = <-ready:
	case <-done:
		return res, runErr
	case <-time.After(readyTimeout):
		return res, errors.New("bare consumer did not subscribe in time")
	}
	host0, _ := readHostCPU()
	proc0 := readProcCPU()
	progress := func(context.Context) (int64, error) {
		select {
		case <-done:
			if runErr != nil {
				return 0, runErr
			}
		default:
		}
		return b.stored.Load(), nil
	}
	err := r.ingest(ctx, t0, &res, progress, publish)
	res.HostCPUBusy = host0.busySince()
	res.setProcCPU(readProcCPU().since(proc0))
	cancel()
	<-done
	if err != nil {
		return res, err
	}
	res.Verified = "not checked: incomplete"
	if res.Complete {
		res.Verified = "ok"
		if n, err := countRows(ctx, dbURL, table); err != nil || n != len(r.stream.msgs) {
			res.Verified = fmt.Sprintf("%d rows stored, want %d (%v)", n, len(r.stream.msgs), err)
		}
	}
	r.log.Info("phase done", "phase", phase, "who", "bare", "events_per_second", round(res.EventsPerSecond),
		"seconds", round(res.Seconds), "complete", res.Complete, "verified", res.Verified)
	return res, nil
}

// ingest starts publish (if any) at t0 and polls progress every sampleEvery (every
// pollEvery near the predicted end) until the whole stream is committed or the phase
// times out, recording a sample at each sampleEvery. The bare and the service runs are
// timed by the same poll.
func (r *runner) ingest(ctx context.Context, t0 time.Time, res *IngestResult, progress func(context.Context) (int64, error), publish publishFunc) error {
	target := int64(len(r.stream.msgs))
	var published atomic.Int64
	pctx, cancelPublish := context.WithCancel(ctx)
	defer cancelPublish()
	pubDone := make(chan struct{})
	var pubErr error
	var pubEnd time.Time
	if publish == nil {
		published.Store(target)
		close(pubDone)
	} else {
		go func() {
			defer close(pubDone)
			pubErr = publish(pctx, &published)
			pubEnd = time.Now()
		}()
	}

	deadline := t0.Add(r.o.ingestTimeout())
	next := t0
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	var end time.Time
	var committed int64
	for {
		now := time.Now()
		n, err := progress(ctx)
		if err != nil {
			return err
		}
		committed = n
		if !now.Before(next) || n >= target {
			res.Samples = append(res.Samples, Sample{T: now.Sub(t0).Seconds(), Committed: n, Published: published.Load()})
			for !next.After(now) {
				next = next.Add(sampleEvery)
			}
		}
		if n >= target {
			res.Complete, end = true, now
			break
		}
		if now.After(deadline) {
			end = now
			r.log.Warn("phase timed out", "committed", n, "of", target, "after", r.o.ingestTimeout())
			break
		}
		// Every poll of the service costs it a /metrics scrape: poll at the pace of the
		// samples, and every pollEvery only once the end is predicted to be near.
		wait := time.Until(next)
		if elapsed := now.Sub(t0).Seconds(); n > 0 && elapsed > 0 {
			if eta := float64(target-n) / (float64(n) / elapsed); eta < endGame.Seconds() {
				wait = min(wait, pollEvery)
			}
		}
		timer.Reset(max(wait, time.Millisecond))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		}
		select {
		case <-pubDone:
			if pubErr != nil {
				return fmt.Errorf("publish: %w", pubErr)
			}
		default:
		}
	}
	if res.Complete {
		// the last confirms may trail the commits they led to
		select {
		case <-pubDone:
			if pubErr != nil {
				return fmt.Errorf("publish: %w", pubErr)
			}
		case <-time.After(confirmStall):
			return errors.New("publish: the last confirms never came")
		}
	}
	cancelPublish()
	<-pubDone
	res.Seconds = end.Sub(t0).Seconds()
	if res.Seconds > 0 {
		res.EventsPerSecond = float64(committed) / res.Seconds
	}
	if publish != nil && !pubEnd.IsZero() {
		res.PublishSeconds = pubEnd.Sub(t0).Seconds()
	}
	return nil
}

func countRows(ctx context.Context, dbURL, table string) (int, error) {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	var n int
	err = conn.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{table}.Sanitize()).Scan(&n)
	return n, err
}

func round(x float64) float64 {
	if x >= 100 {
		return float64(int64(x + 0.5))
	}
	return float64(int64(x*100+0.5)) / 100
}
