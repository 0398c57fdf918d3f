package bench

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	amqp091 "github.com/rabbitmq/amqp091-go"

	amqpadapter "warehouse/adapters/amqp"
)

// The pipeline phase: a consumer runs on an empty queue while a publisher, a process of
// its own as a real producer is, publishes the run's stream into it (read from a
// JSON-lines file, see streamFile); the clock runs from the publisher's first message to
// the poll that sees the last event committed. Each round measures the ceiling (the bare
// publisher, --bare-publish, into the bare consumer), the service (`warehouse produce
// --file` into `warehouse consume`), and the service fed batch messages (`warehouse
// produce --per-message`), each on a database and topology of its own.

// Settings and target of the batch pipeline.
const (
	// batchPerMessage is the events per message of the batch pipeline.
	batchPerMessage = 100
	// targetBatchPipeline is its events/s over the single-event service pipeline's, in
	// the same round.
	targetBatchPipeline = 3.0
)

// pubKind is what publishes in a pipeline run.
type pubKind int

const (
	// pubProduce is `warehouse produce --file`, a process of its own.
	pubProduce pubKind = iota
	// pubBareProcess is this program's --bare-publish mode, a process of its own.
	pubBareProcess
	// pubProject is the project's Publisher in the benchmark process, in PublishBatch
	// calls of projectChunk messages (the pipeline of old, kept for --pipeline-variants).
	pubProject
	// pubWindow is publishBare in the benchmark process (the ceiling of old, idem).
	pubWindow
)

// pipeSpec is one way of running the pipeline: which consumer, which publisher.
type pipeSpec struct {
	// bare runs the bare consumer in the benchmark process instead of `warehouse
	// consume`; bareChild runs it as a process of its own (--bare-consume).
	bare, bareChild bool
	pub             pubKind
	// batch is produce's --batch (0: its default); window the bare publisher's confirms
	// in flight (0: publishWindow); perMessage produce's --per-message (0 or 1: single
	// events).
	batch, window, perMessage int
	// env is set over `warehouse consume`'s environment (serviceEnv).
	env map[string]string
}

// BatchPipeline is the pipeline fed batch messages: Service is its figure and Ceiling
// the single-event service pipeline of the same round, from the round whose ratio is the
// median.
type BatchPipeline struct {
	// PerMessage is the events per message; Prefetch the consumer's AMQP_PREFETCH, in
	// messages.
	PerMessage int `json:"events_per_message"`
	Prefetch   int `json:"prefetch"`
	Pair
}

// batchPrefetch is the consumer's prefetch in the batch pipeline: prefetch counts
// messages, and BATCH_SIZE events; the service wants it at least BATCH_SIZE, which is
// what it gets (Options.Prefetch messages of batchPerMessage events would be a hundred
// times the events the single-event consumer may hold).
func (o Options) batchPrefetch() int { return o.BatchSize }

// pipelinePhase runs the phase's rounds: in each, the ceiling, the service and the
// service fed batch messages. It returns the median rounds and every round (for the
// checks): singles pair the service with the ceiling, batches the batch pipeline with
// the service.
func (r *runner) pipelinePhase(ctx context.Context) (Pair, BatchPipeline, []Pair, []Pair, error) {
	batch := BatchPipeline{PerMessage: batchPerMessage, Prefetch: r.o.batchPrefetch()}
	var singles, batches []Pair
	for i := range r.o.Rounds {
		var p, b Pair
		var err error
		if p.Ceiling, err = r.runPipeline(ctx, "bare-pipeline", i, pipeSpec{bare: true, pub: pubBareProcess}); err != nil {
			return Pair{}, batch, nil, nil, fmt.Errorf("pipeline round %d, bare: %w", i+1, err)
		}
		if p.Service, err = r.runPipeline(ctx, "pipeline", i, pipeSpec{pub: pubProduce}); err != nil {
			return Pair{}, batch, nil, nil, fmt.Errorf("pipeline round %d, service: %w", i+1, err)
		}
		if b.Service, err = r.runPipeline(ctx, "pipeline-batch", i, pipeSpec{pub: pubProduce, perMessage: batchPerMessage,
			env: map[string]string{"AMQP_PREFETCH": strconv.Itoa(batch.Prefetch)}}); err != nil {
			return Pair{}, batch, nil, nil, fmt.Errorf("pipeline round %d, batch messages: %w", i+1, err)
		}
		b.Ceiling = p.Service
		singles, batches = append(singles, p), append(batches, b)
	}
	single := medianPair(singles)
	batch.Pair = medianPair(batches)
	r.logRounds("pipeline", single)
	r.logRounds("pipeline, batch messages", batch.Pair)
	return single, batch, singles, batches, nil
}

// runPipeline measures one pipeline run of round i (0-based) as spec says, on a database
// (or bare table) and a topology of its own, named after name.
func (r *runner) runPipeline(ctx context.Context, name string, i int, spec pipeSpec) (IngestResult, error) {
	phase := name + roundSuffix(i, "-")
	dbName := strings.ReplaceAll(name, "-", "_") + roundSuffix(i, "_")
	var (
		dbURL, table string
		err          error
	)
	if spec.bare || spec.bareChild {
		table = dbName
		dbURL, err = r.bareTable(ctx, table)
	} else {
		dbURL, err = r.createDatabase(ctx, dbName, true)
		if err == nil {
			defer r.dropDatabases(context.WithoutCancel(ctx), databaseName(dbURL))
		}
	}
	if err != nil {
		return IngestResult{}, err
	}
	t, err := r.declare(phase)
	if err != nil {
		return IngestResult{}, err
	}
	qw, err := r.watchQueue(t.Queue)
	if err != nil {
		return IngestResult{}, err
	}
	defer qw.close()
	f, err := r.pipelineFeed(phase, dbURL, t, spec, qw)
	if err != nil {
		return IngestResult{}, err
	}
	r.checkpoint(ctx)
	switch {
	case spec.bareChild:
		return r.bareChildIngest(ctx, phase, dbURL, table, t, f)
	case spec.bare:
		return r.bareIngest(ctx, phase, dbURL, table, t, f)
	}
	return r.serviceIngestEnv(ctx, phase, dbURL, t, f, spec.env)
}

// pipelineFeed is the publisher spec names, publishing the stream to t's exchange.
func (r *runner) pipelineFeed(phase, dbURL string, t amqpadapter.Topology, spec pipeSpec, qw *queueWatch) (*feed, error) {
	perMessage := max(spec.perMessage, 1)
	queued := func(committed int64) int64 { return committed + int64(perMessage*qw.ready()) }
	window := spec.window
	if window <= 0 {
		window = publishWindow
	}
	switch spec.pub {
	case pubProduce:
		file, err := r.streamFile()
		if err != nil {
			return nil, err
		}
		args := []string{"produce", "--file", file, "--exchange", t.Exchange, "--rate", "0"}
		what := "warehouse produce --file"
		if spec.batch > 0 {
			args = append(args, "--batch", strconv.Itoa(spec.batch))
			what += fmt.Sprintf(" --batch %d", spec.batch)
		}
		if perMessage > 1 {
			args = append(args, "--per-message", strconv.Itoa(perMessage))
			what += fmt.Sprintf(" --per-message %d", perMessage)
		}
		// the service's configuration: produce declares the same topology again
		env := r.serviceEnv(dbURL, t)
		env["LOG_LEVEL"] = "info" // its "produce started" starts the clock
		return r.processFeed("produce-"+phase, what+" (a process)", "produce started", env, queued, r.o.Binary, args...), nil
	case pubBareProcess:
		file, err := r.streamFile()
		if err != nil {
			return nil, err
		}
		env := map[string]string{"AMQP_URL": r.o.AMQPURL, "LOG_LEVEL": "warn"}
		return r.processFeed("bare-publish-"+phase, fmt.Sprintf("bare amqp091 publisher, %d confirms in flight (a process)", window),
			barePublishing, env, queued, r.o.Self,
			"--bare-publish", file, "--bare-exchange", t.Exchange, "--bare-window", strconv.Itoa(window)), nil
	case pubProject:
		var confirmed atomic.Int64
		return &feed{what: fmt.Sprintf("the project's Publisher, PublishBatch of %d messages (in the benchmark process)", projectChunk),
			published: func(c int64) int64 { return max(queued(c), confirmed.Load()) },
			run: func(ctx context.Context, started func()) error {
				started()
				return r.publishProject(ctx, t.Exchange, r.stream.project, &confirmed)
			}}, nil
	default:
		var confirmed atomic.Int64
		return &feed{what: fmt.Sprintf("bare amqp091 publisher, %d confirms in flight (in the benchmark process)", window),
			published: func(c int64) int64 { return max(queued(c), confirmed.Load()) },
			run: func(ctx context.Context, started func()) error {
				conn, err := r.dialBroker()
				if err != nil {
					return err
				}
				defer conn.Close()
				return publishWindowed(ctx, conn, t.Exchange, r.stream.msgs, window, started, &confirmed)
			}}, nil
	}
}

// processFeed is a publisher process: bin with args, env over the benchmark's
// environment. Its clock starts when it writes a line holding startLine; it must then
// exit 0, its last "confirmed N" saying every event. Its CPU time runs from that line to
// its exit. The events it has published are
// the most of queued (given those committed) and the last "confirmed N" it wrote (the
// progress lines of produce, every 2 s, and of the bare publisher, every
// bareProgressEvery).
func (r *runner) processFeed(name, what, startLine string, env map[string]string, queued func(int64) int64, bin string, args ...string) *feed {
	var (
		cpu      float64
		reported atomic.Int64
	)
	f := &feed{what: what, cpuSeconds: func() float64 { return cpu },
		published: func(committed int64) int64 { return max(queued(committed), reported.Load()) }}
	f.run = func(ctx context.Context, started func()) error {
		var once sync.Once
		startedCh := make(chan struct{})
		tap := func(line []byte) {
			if bytes.Contains(line, []byte(startLine)) {
				once.Do(func() {
					started()
					close(startedCh)
				})
			}
			if n, ok := confirmedCount(line); ok {
				reported.Store(n)
			}
		}
		c, err := r.spawn(ctx, name, env, "", tap, bin, args...)
		if err != nil {
			return err
		}
		var cpu0 float64
		select {
		case <-startedCh:
			cpu0, _ = c.cpuSeconds()
		case <-c.exited:
		}
		<-c.exited // ctx ends it: SIGTERM, then SIGKILL stopTimeout later
		if c.waitErr != nil {
			return fmt.Errorf("%s: %w: %s", name, c.waitErr, c.logTail())
		}
		select {
		case <-startedCh:
		default:
			return fmt.Errorf("%s exited without publishing: %s", name, c.logTail())
		}
		if st := c.cmd.ProcessState; st != nil {
			cpu = (st.UserTime() + st.SystemTime()).Seconds() - cpu0
		}
		if n, want := reported.Load(), int64(len(r.stream.msgs)); n != want {
			return fmt.Errorf("%s exited having reported %d events confirmed, want %d: %s", name, n, want, c.logTail())
		}
		return nil
	}
	return f
}

// confirmedCount reads the number after "confirmed " in a publisher's line.
func confirmedCount(line []byte) (int64, bool) {
	const word = "confirmed "
	i := bytes.Index(line, []byte(word))
	if i < 0 {
		return 0, false
	}
	digits := line[i+len(word):]
	end := 0
	for end < len(digits) && digits[end] >= '0' && digits[end] <= '9' {
		end++
	}
	n, err := strconv.ParseInt(string(digits[:end]), 10, 64)
	return n, err == nil
}

// queueWatch reads the messages ready in a queue, on a connection of its own held
// through a pipeline run.
type queueWatch struct {
	conn  *amqp091.Connection
	ch    *amqp091.Channel
	queue string
	last  int
}

func (r *runner) watchQueue(queue string) (*queueWatch, error) {
	conn, err := r.dialBroker()
	if err != nil {
		return nil, err
	}
	ch, err := conn.Channel()
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	return &queueWatch{conn: conn, ch: ch, queue: queue}, nil
}

// ready returns the messages ready in the queue, or the last count read when the
// broker does not answer (a sample is no reason to fail a run).
func (q *queueWatch) ready() int {
	if st, err := q.ch.QueueDeclarePassive(q.queue, true, false, false, false, nil); err == nil {
		q.last = st.Messages
	}
	return q.last
}

func (q *queueWatch) close() { _ = q.conn.Close() }

// pipelineBatchRow adds the batch pipeline's row: its events/s next to the single-event
// service pipeline of the same round (in the ceiling column), against targetBatchPipeline.
func (rep *Report) pipelineBatchRow() {
	b := rep.PipelineBatch
	row := Row{Phase: "pipeline", Case: fmt.Sprintf("batch messages of %d events → committed", b.PerMessage), Figure: "events/s",
		Value: b.Service.EventsPerSecond, Target: fmt.Sprintf("≥ %.2f × single events", targetBatchPipeline)}
	single := b.Ceiling.EventsPerSecond
	row.Ceiling = &single
	if single > 0 {
		ratio := b.Service.EventsPerSecond / single
		row.Ratio = &ratio
	}
	ok := row.Ratio != nil && *row.Ratio >= targetBatchPipeline && b.Service.Complete && b.Ceiling.Complete
	row.Pass = &ok
	notes := []string{"ceiling column: the single-event service pipeline, same round"}
	if !b.Service.Complete {
		notes = append(notes, "the batch pipeline did not finish in time")
	}
	if n := roundsNote(b.Rounds); n != "" {
		notes = append(notes, n)
	}
	if n := cpuBoundNote(b.Ceiling, b.Service); n != "" {
		notes = append(notes, n)
	}
	row.Note = strings.Join(notes, "; ")
	rep.Rows = append(rep.Rows, row)
}

// pipelineCPU is the CPU time of a pipeline run per 100,000 events: the consumer, its
// publisher, PostgreSQL and RabbitMQ (the benchmark's own polling aside); false when a
// part was not measured.
func pipelineCPU(r IngestResult) (float64, bool) {
	if r.Events <= 0 || r.CPUSeconds <= 0 || r.PublisherCPUSeconds <= 0 || r.PostgresCPUSeconds <= 0 || r.BrokerCPUSeconds <= 0 {
		return 0, false
	}
	return (r.CPUSeconds + r.PublisherCPUSeconds + r.PostgresCPUSeconds + r.BrokerCPUSeconds) * 100_000 / float64(r.Events), true
}

// cpuBoundNote says what the CPU the two pipelines spend per event allows batch messages:
// on a machine whose cores they share, the single-event pipeline's CPU per event over the
// batch pipeline's is their ratio when the host is as busy in both, and that divided by
// the single-event run's busy share is the most batch messages could reach with every
// core busy.
func cpuBoundNote(single, batch IngestResult) string {
	s, ok1 := pipelineCPU(single)
	b, ok2 := pipelineCPU(batch)
	if !ok1 || !ok2 || single.HostCPUBusy <= 0 {
		return ""
	}
	return fmt.Sprintf("CPU s per 100,000 events (consumer, publisher, PostgreSQL, RabbitMQ): single %.1f, batch %.1f (%.2f×); "+
		"host busy %.0f%% and %.0f%%: with every core busy, batch messages could reach at most %.2f×",
		s, b, s/b, single.HostCPUBusy*100, batch.HostCPUBusy*100, s/b/single.HostCPUBusy)
}

// pipelineBatchChecks are the batch pipeline's conditions: the ledger exact and nothing
// dead-lettered, retried or deduplicated in every round, and its speed target in the
// median round.
func pipelineBatchChecks(b BatchPipeline, rounds []Pair) []Check {
	name := fmt.Sprintf("pipeline, %d events per message", b.PerMessage)
	cs := []Check{
		everyRound(name+": service stored exactly the stream (event count, every stock row)", rounds,
			func(p Pair) bool { return p.Service.Verified == "ok" }, func(p Pair) string { return p.Service.Verified }),
		everyRound(name+": no dead letters, retries or duplicates", rounds,
			func(p Pair) bool { return p.Service.Rejected+p.Service.Retried+p.Service.Duplicates == 0 },
			func(p Pair) string {
				return fmt.Sprintf("rejected %d, retried %d, duplicates %d", p.Service.Rejected, p.Service.Retried, p.Service.Duplicates)
			}),
	}
	speed := Check{Name: fmt.Sprintf("%s: at least %.0f× the events/s of single events (median round)", name, targetBatchPipeline), Speed: true}
	if len(b.Rounds) > 0 {
		rr := b.Rounds[b.Chosen]
		speed.OK = rr.Ceiling > 0 && rr.Ratio >= targetBatchPipeline && b.Service.Complete && b.Ceiling.Complete
		speed.Detail = fmt.Sprintf("%.2f×: %s events/s in messages of %d, %s single", rr.Ratio,
			group(int64(rr.Service+0.5)), b.PerMessage, group(int64(rr.Ceiling+0.5)))
		if len(b.Rounds) > 1 {
			ratios := make([]string, len(b.Rounds))
			for i, r := range b.Rounds {
				ratios[i] = fmt.Sprintf("%.2f×", r.Ratio)
			}
			speed.Detail += "; every round: " + strings.Join(ratios, ", ")
		}
	}
	return append(cs, speed)
}

// pipelineNote is the pipeline's paragraph of the method notes, for a run of settings s.
func pipelineNote(s Settings) string {
	return strings.NewReplacer("{permsg}", strconv.Itoa(batchPerMessage), "{prefetch}", strconv.Itoa(s.BatchSize),
		"{target}", fmt.Sprintf("%g", targetBatchPipeline), "{window}", strconv.Itoa(publishWindow)).Replace(`- **Pipeline.** The consumer runs first, on an empty queue; then the publisher starts, a process of its own as a
  real producer is, and publishes the run's stream from a JSON-lines file the benchmark wrote once (one structured
  event per line, in the stream's order). The clock starts when the publisher says it sends its first message (it has
  read the file and connected) and stops at the poll that sees every event committed. The service's publisher is
  ` + "`warehouse produce --file --rate 0`" + ` with its defaults (calls of 5000 events, each a sliding window of 1024
  confirms, each confirmed before the next, so the stream stays in order), into ` + "`warehouse consume`" + `.
  **Ceiling:** this benchmark's binary in its ` + "`--bare-publish`" + ` mode (plain amqp091, the same messages, one sliding
  window of {window} confirms) into the bare consumer. Publisher CPU s is the publisher process's CPU time from its
  first message to its exit. The chart's published curves count the events committed, ready in the queue or confirmed
  by the publisher's last progress line (every 2 s from ` + "`warehouse produce`" + `, every 100 ms from the bare publisher),
  whichever is most. **Batch messages:** the same stream by ` + "`warehouse produce --per-message {permsg}`" + ` (CloudEvents
  batch messages, ` + "`application/cloudevents-batch+json`" + `) into ` + "`warehouse consume`" + ` with ` + "`AMQP_PREFETCH={prefetch}`" + `:
  the prefetch counts messages and ` + "`BATCH_SIZE`" + ` events, and the service takes no prefetch under ` + "`BATCH_SIZE`" + `, so
  {prefetch} messages is its least, which still lets the consumer hold the whole stream at the default size (its peak
  RSS shows what that costs). Its row stands next to the single-event service pipeline of the same round (the
  ceiling column), against a target of {target}×; its ledger must be exact like the others'. The row's note adds what
  CPU allows: the CPU seconds both pipelines spent per 100,000 events (consumer, publisher, PostgreSQL and RabbitMQ,
  which share the machine's cores) and the most batch messages could reach with every core busy: the single-event
  pipeline's CPU per event over the batch pipeline's, divided by the share of the host the single-event run kept
  busy. Each round runs the
  ceiling, the service, then the batch messages, each on a database (or bare table) and topology of its
  own.`)
}

// pipelineVariantNotes is what the pipeline's variants cost: a run of --pipeline-variants
// by hand, not the run of the report it is written into.
const pipelineVariantNotes = `
## What the pipeline's variants cost

Measured by hand on this machine (2 CPUs) on 2026-12-07, 12:18–12:27 UTC, with
` + "`warehouse-bench --pipeline-variants --rounds 5`" + ` (100,000 events, the settings above): every variant in each of 5
rounds, in this order, each on a database and queue of its own and each checked (every event stored, the ledger
exact, nothing dead-lettered, retried or deduplicated). *Of* is the variant it changes one thing of, and *× of* the
median over the rounds of its events/s over that variant's in the same round (steadier than the medians: single
rounds ran from 9,335 to 21,965 events/s). CPU seconds are per run of 100,000 events.

| # | variant | of | events/s, median of 5 | × of | consumer CPU s | publisher CPU s | PostgreSQL CPU s | RabbitMQ CPU s | host CPU busy |
|---|---|---|---|---|---|---|---|---|---|
| 1 | the ceiling of old: bare consumer and bare publisher (1024 confirms in flight), both in the benchmark process | — | 13,413 | — | in the benchmark | in the benchmark | 1.46 | 7.53 | 90% |
| 2 | the bare publisher in a process of its own (**the ceiling now**) | 1 | 13,239 | 1.02 | in the benchmark | 1.49 | 1.39 | 7.06 | 93% |
| 3 | its window 4096 confirms instead of 1024 | 2 | 12,902 | 0.95 | in the benchmark | 1.62 | 1.41 | 7.30 | 93% |
| 4 | the bare consumer in a process of its own too (the benchmark only polls) | 2 | 12,817 | 0.98 | 3.97 | 1.48 | 1.61 | 7.12 | 93% |
| 5 | the service of old: ` + "`warehouse consume`" + ` and the project's Publisher in the benchmark process, ` + "`PublishBatch`" + ` of 16,384 messages, each confirmed before the next | — | 10,860 | — | 3.28 | in the benchmark | 4.21 | 7.84 | 93% |
| 6 | the bare publisher instead, in the benchmark process (one sliding window, no chunks) | 5 | 11,111 | 0.97 | 3.10 | in the benchmark | 4.12 | 7.29 | 93% |
| 7 | the bare publisher in a process of its own | 6 | 12,120 | 1.08 | 2.67 | 1.44 | 3.80 | 6.83 | 91% |
| 8 | ` + "`warehouse produce --file`" + ` instead, its default ` + "`--batch 5000`" + ` (**the service now**) | 7 | 11,428 | 0.92 | 2.99 | 2.08 | 3.96 | 6.91 | 93% |
| 9 | ` + "`--batch 10000`" + ` | 8 | 11,225 | 1.00 | 3.15 | 2.11 | 3.99 | 7.01 | 93% |
| 10 | ` + "`--per-message 100`" + `, prefetch 4000 messages | 8 | 19,388 | 1.77 | 1.68 | 0.73 | 3.59 | 0.42 | 63% |
| 11 | prefetch 2000 messages (**the batch pipeline now**) | 10 | 20,172 | 1.02 | 1.60 | 0.71 | 3.46 | 0.45 | 64% |
| 12 | consumer batches of 10,000 events (` + "`BATCH_SIZE`" + `, prefetch and ` + "`STREAM_BUFFER`" + ` as large) | 11 | 21,683 | 1.02 | 2.19 | 0.76 | 2.60 | 0.39 | 66% |

What it says, on this machine on that day:

- **The publisher in a process of its own** gives the service 8 % (7 against 6; faster in 4 rounds of 5); the
  ceiling's own publisher process, its window's size and the bare consumer's process are within the noise of
  these rounds (2–4). In an earlier run the same morning (11:12–11:20) the publisher's process gave the ceiling
  8 % and the service 4 %, and ` + "`warehouse produce`" + ` measured 0.99 of the bare publisher where here it measures 0.92
  (8 against 7). None of them halves anything: the figures of about 6.9k and 7.5k events/s are those of the
  runs of 2026-11-26, in which RabbitMQ spent about 14 s of CPU per 100,000 events of the pipeline; here it
  spends 7–8 s. The single-event pipeline is bound by the broker's work per message (against about 1.2 s of
  RabbitMQ CPU to deliver the same stream from a prefilled queue in the drain), on 2 CPUs it shares with
  everything else: the host is 90–93 % busy.
- **Batch messages** take that work away (0.4 s of RabbitMQ CPU) and give 1.77× (10). That is since the
  consumer gathers and decodes the next batch while the store applies one, and splits a batch message by a
  scan instead of encoding/json's Decoder: in the run of 11:12–11:20, before both, the same variant gave 1.18×,
  with 2.4 s of consumer CPU. The consumer's 1.6–1.7 s of CPU now overlaps the store; what bounds the pipeline
  is the store applying one batch at a time (3.5 s of PostgreSQL CPU, most of it in the backend that applies
  the batches, and the host a third idle), which no setting of the benchmark moves: prefetch (11) and batches
  of 10,000 (12) are within the noise. More consumers lose the stream's order (by hand on the same day,
  ` + "`CONSUMER_WORKERS`" + ` 2 and 4 with ` + "`--per-message 100`" + ` stored 9,761 and 6,888 events/s, with 1,148 and 6,151
  events retried).
- **Since then** the consumer applies a batch in two transactions at once, split by product (` + "`CONSUMER_LANES`" + `,
  which keeps each product's order): the store is no longer one backend applying one batch at a time. In the
  ` + "`make bench`" + ` run of 14:13 the batch pipeline measured 2.50× of the single-event one, with the host 82 % busy,
  and 2.47× at 15:47 (85 % busy, on a slower machine), after the write path shed CPU that both pipelines
  spend (no movement upsert, its COPY data written by hand); these variants were not run again.
`
