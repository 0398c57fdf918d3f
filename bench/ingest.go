package bench

import (
	"context"
	"errors"
	"fmt"
	"maps"
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
	// PublishSeconds (pipeline) runs until the publisher had every confirm (a publisher
	// process: until it exited, having had them).
	PublishSeconds float64 `json:"publish_seconds,omitempty"`
	// Publisher (pipeline) says what published; PublisherCPUSeconds is its process's CPU
	// time from its first publish to its exit.
	Publisher           string  `json:"publisher,omitempty"`
	PublisherCPUSeconds float64 `json:"publisher_cpu_seconds,omitempty"`
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

// Sample is one point of the chart: committed and published events at T seconds. In the
// pipeline, whose publisher is a process of its own, published is the most of the events
// committed or ready in the queue and those its last progress line said confirmed.
type Sample struct {
	T         float64 `json:"t"`
	Committed int64   `json:"committed"`
	Published int64   `json:"published"`
}

// feed publishes the stream into the queue of a running consumer (the pipeline phase).
type feed struct {
	// run publishes the whole stream and returns once the publisher is done: every
	// message confirmed, or its process exited having had every confirm. It calls
	// started once, just before the first message goes out: the clock starts then.
	run func(ctx context.Context, started func()) error
	// published returns the events published so far, given those committed (see Sample).
	published func(committed int64) int64
	// cpuSeconds, when set, returns the publisher process's CPU time from started to its
	// exit; it is read once run has returned.
	cpuSeconds func() float64
	// what describes the publisher, for the report.
	what string
}

// profileSeconds is the CPU profile taken of a service child during an ingest phase.
func (r *runner) profileSeconds() int {
	if r.o.Smoke {
		return 1
	}
	return 5
}

// serviceDrain and bareDrain measure round i (0-based) of the drain, on a database or
// table, a topology and a child of the round's own (the pipeline's: see pipeline.go).

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
// stream (already in the queue, or published by f once it is ready). phase, with
// its round, names the child's log and profiles.
func (r *runner) serviceIngest(ctx context.Context, phase, dbURL string, t amqpadapter.Topology, f *feed) (IngestResult, error) {
	return r.serviceIngestEnv(ctx, phase, dbURL, t, f, nil)
}

// serviceIngestEnv is serviceIngest with env over the child's environment.
func (r *runner) serviceIngestEnv(ctx context.Context, phase, dbURL string, t amqpadapter.Topology, f *feed, env map[string]string) (IngestResult, error) {
	res := IngestResult{Events: len(r.stream.msgs)}
	addr, err := freeAddr(ctx)
	if err != nil {
		return res, err
	}
	childEnv := r.serviceEnv(dbURL, t)
	maps.Copy(childEnv, env)
	childEnv["CONSUMER_HTTP_ADDR"] = addr
	spawn := time.Now()
	c, err := r.startChild(ctx, "consume-"+phase, childEnv, addr, r.o.Binary, "consume")
	if err != nil {
		return res, err
	}
	defer c.stop()
	if err := c.waitReady(ctx, readyTimeout); err != nil {
		return res, err
	}
	ready := time.Now()
	res.StartupSeconds = ready.Sub(spawn).Seconds()
	var (
		cpu0     float64
		host0    hostCPU
		proc0    procCPU
		profiled = func() {}
	)
	start := func() {
		cpu0, _ = c.cpuSeconds()
		host0, _ = readHostCPU()
		proc0 = readProcCPU()
		profiled = r.profile(ctx, c, phase+"-consume", r.profileSeconds())
	}

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
	if err := r.ingest(ctx, ready, &res, progress, f, start); err != nil {
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

// bareIngest runs the bare consumer on t and table until it has stored the stream
// (already in the queue, or published by f once it is subscribed).
func (r *runner) bareIngest(ctx context.Context, phase, dbURL, table string, t amqpadapter.Topology, f *feed) (IngestResult, error) {
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
	var subscribed time.Time
	select {
	case subscribed = <-ready:
	case <-done:
		return res, runErr
	case <-time.After(readyTimeout):
		return res, errors.New("bare consumer did not subscribe in time")
	}
	var (
		host0 hostCPU
		proc0 procCPU
	)
	start := func() {
		host0, _ = readHostCPU()
		proc0 = readProcCPU()
	}
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
	err := r.ingest(ctx, subscribed, &res, progress, f, start)
	res.HostCPUBusy = host0.busySince()
	res.setProcCPU(readProcCPU().since(proc0))
	cancel()
	<-done
	if err != nil {
		return res, err
	}
	return r.finishBare(ctx, phase, "bare", res, dbURL, table), nil
}

// finishBare checks what a bare consumer stored into table of dbURL and logs its phase.
func (r *runner) finishBare(ctx context.Context, phase, who string, res IngestResult, dbURL, table string) IngestResult {
	res.Verified = r.verifyBare(ctx, res.Complete, dbURL, table)
	r.log.Info("phase done", "phase", phase, "who", who, "events_per_second", round(res.EventsPerSecond),
		"seconds", round(res.Seconds), "complete", res.Complete, "verified", res.Verified)
	return res
}

// ingest polls progress every sampleEvery (every pollEvery near the predicted end) until
// the whole stream is committed or the phase times out, recording a sample at each
// sampleEvery. Without a feed the clock starts at ready (the consumer is subscribed to
// a prefilled queue); with one, f starts at ready and the clock at its first publish.
// start is called as the clock starts. The bare and the service runs are timed by the
// same poll.
func (r *runner) ingest(ctx context.Context, ready time.Time, res *IngestResult, progress func(context.Context) (int64, error), f *feed, start func()) error {
	target := int64(len(r.stream.msgs))
	published := func(int64) int64 { return target }
	pctx, cancelPublish := context.WithCancel(ctx)
	defer cancelPublish()
	pubDone := make(chan struct{})
	var pubErr error
	var pubEnd time.Time
	t0 := ready
	if f == nil {
		close(pubDone)
	} else {
		published = f.published
		res.Publisher = f.what
		startedAt := make(chan time.Time, 1)
		go func() {
			defer close(pubDone)
			pubErr = f.run(pctx, func() { startedAt <- time.Now() })
			pubEnd = time.Now()
		}()
		// a publisher reads its whole file before it starts: a second per 20,000 events more
		timeout := time.NewTimer(readyTimeout + time.Duration(target/20_000)*time.Second)
		select {
		case t0 = <-startedAt:
			timeout.Stop()
		case <-pubDone:
			timeout.Stop()
			if pubErr == nil {
				pubErr = errors.New("the publisher ended before it started")
			}
			return fmt.Errorf("publish: %w", pubErr)
		case <-timeout.C:
			cancelPublish()
			<-pubDone
			return errors.New("publish: the publisher did not start in time")
		case <-ctx.Done():
			timeout.Stop()
			cancelPublish()
			<-pubDone
			return ctx.Err()
		}
	}
	start()

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
			res.Samples = append(res.Samples, Sample{T: now.Sub(t0).Seconds(), Committed: n, Published: published(n)})
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
	if f != nil && !pubEnd.IsZero() {
		res.PublishSeconds = pubEnd.Sub(t0).Seconds()
		if f.cpuSeconds != nil {
			res.PublisherCPUSeconds = f.cpuSeconds()
		}
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

// verifyBare says whether a bare consumer's table holds one row per event of the stream:
// "ok", or what it holds.
func (r *runner) verifyBare(ctx context.Context, complete bool, dbURL, table string) string {
	if !complete {
		return "not checked: incomplete"
	}
	if n, err := countRows(ctx, dbURL, table); err != nil || n != len(r.stream.msgs) {
		return fmt.Sprintf("%d rows stored, want %d (%v)", n, len(r.stream.msgs), err)
	}
	return "ok"
}
