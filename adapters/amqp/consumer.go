package amqp

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	amqp091 "github.com/rabbitmq/amqp091-go"

	"warehouse/domain"
	"warehouse/ports"
)

// Consumer states reported by Consumer.State, as readiness shows them.
const (
	StateConnected    = "connected"
	StateReconnecting = "reconnecting"
	StatePaused       = "paused"
)

// Headers the consumer reads and writes.
const (
	// RetryHeader carries the number of delayed retries a message has been through: the
	// broker resets its own delivery count when a message comes back from the retry queue.
	RetryHeader = "x-retry-attempt"
	// ReasonHeader carries the short code of a dead letter: invalid, conflict,
	// insufficient_stock or internal.
	ReasonHeader = "x-rejection-reason"
	// DetailHeader carries the human-readable reason of a dead letter, at most 1 KiB.
	DetailHeader = "x-rejection-detail"
)

// Dead-letter reasons: the values of ReasonHeader and of the reason label of
// movements_rejected_total.
const (
	ReasonInvalid           = "invalid"
	ReasonConflict          = "conflict"
	ReasonInsufficientStock = "insufficient_stock"
	ReasonInternal          = "internal"
)

const (
	maxDetailLen = 1024
	// confirmTimeout bounds the wait for the confirms of one group of dead letters and retries.
	confirmTimeout = 5 * time.Second
	// closeTimeout bounds closing a connection and waiting for its notification goroutine.
	closeTimeout = 5 * time.Second
)

// Reconnect and retry backoffs, with jitter. The store backoff is capped lower: a batch
// held in memory should resume soon after the database is back.
var (
	reconnectBackoff = backoff{min: 100 * time.Millisecond, max: 10 * time.Second}
	holdBackoff      = backoff{min: 100 * time.Millisecond, max: 5 * time.Second}
)

// ConsumerOptions configures a Consumer. Zero values take the defaults noted.
type ConsumerOptions struct {
	// URL is the AMQP URL, vhost included. It may hold a password: it is never logged.
	URL string
	// Topology is declared on every (re)connect.
	Topology Topology
	// Prefetch is the per-consumer QoS; at least BatchSize (the default) and at most 65535.
	Prefetch int
	// BatchSize is the most deliveries in one batch (default 2000).
	BatchSize int
	// BatchWait is how long a batch stays open after its first delivery (default 20ms).
	BatchWait time.Duration
	// RetryLimit is how many delayed retries a departure gets for insufficient stock
	// before it is dead-lettered; 0 dead-letters it at once.
	RetryLimit int
	// ConsumerTag prefixes the consumer tag (default "warehouse"); a random suffix keeps
	// tags unique across processes.
	ConsumerTag string
	// Lanes is how many transactions a batch's events are recorded in at once at most,
	// split by product, one per minLaneEvents of the batch (see splitLanes); 1 records
	// every batch in one (default 2).
	Lanes int
	// ShutdownTimeout bounds each Record call, and so the batch finished during shutdown
	// (default 15s).
	ShutdownTimeout time.Duration
	// ControlKey signs the retry count the consumer puts on the copies it sends through
	// the retry queue; a count that a publisher set, without a valid signature, is
	// ignored. Every consumer of one queue must share it (bootstrap reads it from the
	// ledger). Empty: a random key of this consumer's own.
	ControlKey []byte

	frameMax int // the frame_max the consumer proposes; tests lower it
	minLane  int // a batch gets a lane per minLane events (minLaneEvents); tests lower it
}

// minLaneEvents is how many events of a batch each of its lanes stands for: a batch of
// fewer than twice as many is recorded in one transaction. In the benchmark's pipeline of
// single events, whose batches hold a few hundred events, splitting them made batches
// smaller and cost more CPU per event than it saved.
const minLaneEvents = 500

func (o ConsumerOptions) withDefaults() ConsumerOptions {
	if o.BatchSize < 1 {
		o.BatchSize = 2000
	}
	o.Prefetch = min(max(o.Prefetch, o.BatchSize), 65535)
	if o.BatchWait <= 0 {
		o.BatchWait = 20 * time.Millisecond
	}
	o.RetryLimit = max(o.RetryLimit, 0)
	if o.Lanes < 1 {
		o.Lanes = 2
	}
	if o.minLane <= 0 {
		o.minLane = minLaneEvents
	}
	if o.ConsumerTag == "" {
		o.ConsumerTag = "warehouse"
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = 15 * time.Second
	}
	if o.frameMax <= 0 {
		o.frameMax = clientFrameMax
	}
	if len(o.ControlKey) == 0 {
		o.ControlKey = make([]byte, 32)
		_, _ = crand.Read(o.ControlKey)
	}
	return o
}

// Consumer reads movement events from the queue in batches, records them through
// ports.Recorder and settles each delivery only once its effect is committed or it is
// safely dead-lettered or scheduled for a retry (docs/contract.md, "Processing"). It owns a
// consuming connection and a separate publishing one, and reconnects both on its own.
type Consumer struct {
	opts   ConsumerOptions
	rec    ports.Recorder
	log    *slog.Logger // with component=amqp
	root   *slog.Logger // as given, for the publisher, which adds the component itself
	m      metrics
	signer retrySigner
	state  atomic.Value // string

	holdMu     sync.Mutex
	heldSince  time.Time // zero while no batch is held
	heldReason string

	pub *Publisher // owned by the Run goroutine

	recording atomic.Bool // a batch's lanes are in the store (see yieldToLanes)
}

// NewConsumer returns a Consumer that records into rec, logs to log and registers its
// metrics on reg (nil registers nothing). Call Run to start it.
func NewConsumer(opts ConsumerOptions, rec ports.Recorder, log *slog.Logger, reg prometheus.Registerer) *Consumer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Consumer{
		opts: opts.withDefaults(),
		rec:  rec,
		log:  log.With("component", "amqp"),
		root: log,
		m:    newMetrics(reg),
	}
	c.signer = retrySigner{key: c.opts.ControlKey}
	c.state.Store(StateReconnecting)
	c.m.states.add(c)
	return c
}

// State reports "connected", "reconnecting" (no usable broker session, also before the
// first one) or "paused" (a batch is held because the store or the dead-letter publisher
// is unavailable). It is safe to call from any goroutine.
func (c *Consumer) State() string { return c.state.Load().(string) }

func (c *Consumer) setState(s string) { c.state.Store(s) }

// Node reports the broker node the consumer connected to last, its password hidden (of
// the nodes AMQP_URL lists, see ParseNodes); "" before the first connection.
func (c *Consumer) Node() string { return CurrentNode(c.opts.URL) }

// Held reports since when the consumer has held a batch it could not record or settle,
// and why ("store unavailable", "cannot publish dead letters and retries"); a zero time
// when it holds none. A batch held for long stops ingest: readiness reports it past a
// bound. It is safe to call from any goroutine.
func (c *Consumer) Held() (since time.Time, reason string) {
	c.holdMu.Lock()
	defer c.holdMu.Unlock()
	return c.heldSince, c.heldReason
}

// Held-batch reasons reported by Consumer.Held.
const (
	HeldStoreUnavailable = "store unavailable"
	HeldCannotPublish    = "cannot publish dead letters and retries"
)

// hold marks a batch held for reason (the first time it is held keeps its start).
func (c *Consumer) hold(reason string) {
	c.setState(StatePaused)
	c.holdMu.Lock()
	defer c.holdMu.Unlock()
	if c.heldSince.IsZero() {
		c.heldSince = time.Now()
		c.m.holds.start(c, c.heldSince)
	}
	c.heldReason = reason
}

// release marks the held batch done (or abandoned).
func (c *Consumer) release() {
	c.holdMu.Lock()
	defer c.holdMu.Unlock()
	if !c.heldSince.IsZero() {
		c.heldSince, c.heldReason = time.Time{}, ""
		c.m.holds.stop(c)
	}
}

// Run consumes until ctx is done, then finishes the batch in flight, settles it, closes
// its connections and returns nil. It reconnects with backoff after any loss of the
// broker. It returns an error only for a fatal start-up problem: an invalid topology or
// URL, a refused login, or a queue or exchange that exists with other arguments. Run
// must not be called twice at once.
func (c *Consumer) Run(ctx context.Context) error {
	if err := c.opts.Topology.Validate(); err != nil {
		return err
	}
	if _, err := ParseNodes(c.opts.URL); err != nil {
		return err
	}
	defer c.closePublisher()
	c.log.InfoContext(ctx, "consumer starting", "url", redactURL(c.opts.URL), "queue", c.opts.Topology.Queue,
		"prefetch", c.opts.Prefetch, "batch_size", c.opts.BatchSize, "batch_wait", c.opts.BatchWait)
	bo := reconnectBackoff
	started := false
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			c.m.reconnects.Inc()
		}
		s, err := c.open(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !started && isFatal(err) {
				return err
			}
			c.setState(StateReconnecting)
			if errors.Is(err, ErrTopologyMismatch) {
				c.log.ErrorContext(ctx, "consumer cannot declare its topology", "err", err)
			} else {
				c.log.WarnContext(ctx, "consumer cannot connect", "err", err)
			}
			if !sleep(ctx, bo.next(), nil) {
				return nil
			}
			continue
		}
		started = true
		bo.reset()
		c.setState(StateConnected)
		c.log.InfoContext(ctx, "consumer connected", "queue", c.opts.Topology.Queue, "node", CurrentNode(c.opts.URL))
		err = c.consume(ctx, s)
		s.close()
		if err == nil {
			c.log.InfoContext(ctx, "consumer stopped")
			return nil
		}
		c.setState(StateReconnecting)
		nodeLost(c.opts.URL)
		c.log.WarnContext(ctx, "consumer lost the broker, reconnecting", "err", err, "node", CurrentNode(c.opts.URL))
		if !sleep(ctx, bo.next(), nil) {
			return nil
		}
	}
}

// isFatal tells the start-up errors that no retry can fix.
func isFatal(err error) bool {
	return errors.Is(err, ErrTopologyMismatch) || errors.Is(err, errRefused)
}

// session is one consuming connection and channel: a generation. Deliveries are acked only
// on the session they came from, since tags restart at 1 on every channel.
type session struct {
	conn       *amqp091.Connection
	ch         *amqp091.Channel
	deliveries <-chan amqp091.Delivery
	guardKey   string // see droppedHeaders

	lost      chan struct{} // closed when the connection, channel or consumer is gone
	err       error         // why; written before lost is closed
	loseOnce  sync.Once
	watchDone chan struct{}
}

func (c *Consumer) open(ctx context.Context) (*session, error) {
	conn, guardKey, err := dialFrame(ctx, c.opts.URL, "warehouse consumer", c.opts.frameMax)
	if err != nil {
		return nil, err
	}
	ch, err := conn.Channel()
	if err != nil {
		_ = conn.CloseDeadline(time.Now().Add(closeTimeout))
		return nil, fmt.Errorf("open channel: %w", err)
	}
	if err := Declare(ch, c.opts.Topology); err != nil {
		_ = conn.CloseDeadline(time.Now().Add(closeTimeout))
		return nil, err
	}
	// Per-consumer prefetch: quorum queues refuse global QoS.
	if err := ch.Qos(c.opts.Prefetch, 0, false); err != nil {
		_ = conn.CloseDeadline(time.Now().Add(closeTimeout))
		return nil, fmt.Errorf("set prefetch %d: %w", c.opts.Prefetch, err)
	}
	s := &session{conn: conn, ch: ch, guardKey: guardKey, lost: make(chan struct{}), watchDone: make(chan struct{})}
	// Buffered and drained until closed: amqp091-go notifies synchronously, and an unread
	// channel blocks the connection's reader.
	go s.watch(conn.NotifyClose(make(chan *amqp091.Error, 1)),
		ch.NotifyClose(make(chan *amqp091.Error, 1)),
		ch.NotifyCancel(make(chan string, 4)))
	tag := c.opts.ConsumerTag + "-" + uuid.NewString()
	s.deliveries, err = ch.Consume(c.opts.Topology.Queue, tag, false, false, false, false, nil)
	if err != nil {
		s.close()
		return nil, fmt.Errorf("consume queue %q: %w", c.opts.Topology.Queue, err)
	}
	return s, nil
}

func (s *session) watch(connClose, chClose chan *amqp091.Error, cancels chan string) {
	defer close(s.watchDone)
	for connClose != nil || chClose != nil || cancels != nil {
		select {
		case e, ok := <-connClose:
			if !ok {
				connClose = nil
				s.lose(errors.New("connection closed"))
				continue
			}
			s.lose(fmt.Errorf("connection closed: %w", e))
		case e, ok := <-chClose:
			if !ok {
				chClose = nil
				s.lose(errors.New("channel closed"))
				continue
			}
			s.lose(fmt.Errorf("channel closed: %w", e))
		case tag, ok := <-cancels:
			if !ok {
				cancels = nil
				continue
			}
			// The channel stays open after a basic.cancel: only resubscribing helps.
			s.lose(fmt.Errorf("broker cancelled consumer %s (queue deleted?)", tag))
		}
	}
	s.lose(errors.New("session closed"))
}

func (s *session) lose(err error) {
	s.loseOnce.Do(func() {
		s.err = err
		close(s.lost)
	})
}

func (s *session) alive() bool {
	select {
	case <-s.lost:
		return false
	default:
		return true
	}
}

// close closes the connection (and with it the channel: the broker requeues whatever
// is unacked) and waits, bounded, for the watcher.
func (s *session) close() {
	_ = s.conn.CloseDeadline(time.Now().Add(closeTimeout))
	waitBounded(s.watchDone, closeTimeout)
}

// consume runs batches on s until ctx is done (nil) or s is lost (its error). A
// collector goroutine gathers and decodes the next batch while this one is recorded and
// settled (see collectAhead); batches are recorded one at a time, in delivery order.
func (c *Consumer) consume(ctx context.Context, s *session) error {
	batches := make(chan []*item)
	done := make(chan struct{})
	var cerr error
	go func() {
		cerr = c.collectAhead(ctx, s, batches, done)
		close(batches)
	}()
	defer func() {
		close(done)
		for range batches { // abandoned with the session: the broker redelivers them
		}
	}()
	unfinished := false
	for items := range batches {
		if unfinished && ctx.Err() != nil {
			return nil // shut down with a batch left unacked: the broker redelivers the rest too
		}
		if err := c.process(ctx, s, items); err != nil {
			return err
		}
		unfinished = !allAcked(items)
	}
	return cerr // written before batches closed
}

// allAcked reports whether every item was acked (or rejected).
func allAcked(items []*item) bool {
	for _, it := range items {
		if !it.acked {
			return false
		}
	}
	return true
}

// item is one delivery of the batch and what became of it.
type item struct {
	s       *session // the generation it came from
	d       amqp091.Delivery
	event   domain.Event
	invalid error  // the decoding error; nil for a valid event
	attempt int    // delayed retries so far, from a signed RetryHeader
	dropped string // which publisher headers were dropped before: unread, or by an earlier copy
	// Of a batch message (see BatchContentType): the other events of the same delivery,
	// which is acked once every one of them is settled, and this event's own bytes, which
	// its dead letter or retry carries as a message of its own. nil for a single event.
	group *group
	body  []byte

	v       verdict
	decided bool // v is set
	settled bool // ready to ack: nothing to publish, or published and confirmed
	acked   bool // acked, or rejected to the broker's dead-lettering
}

// collectAhead gathers the deliveries of s into batches and sends each on out, in
// delivery order: a batch is ready BatchWait after its first delivery or at BatchSize
// events, and while the previous one is still being recorded it keeps growing up to
// BatchSize. So a slow store gets larger batches, and at most one batch beyond the one in
// flight is taken off the channel (the rest wait in the prefetch window). When ctx is
// done it hands over what it holds and returns nil; when done is closed it returns nil at
// once, and when s is lost its error. Decoding here, beside the store's round trips,
// keeps it off the batch's critical path.
func (c *Consumer) collectAhead(ctx context.Context, s *session, out chan<- []*item, done <-chan struct{}) error {
	var (
		pending []*item
		due     bool // BatchWait has passed since pending's first delivery
	)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		var send chan<- []*item
		if len(pending) > 0 && (due || len(pending) >= c.opts.BatchSize) {
			send = out
		}
		var deliveries <-chan amqp091.Delivery
		if len(pending) < c.opts.BatchSize {
			deliveries = s.deliveries
		}
		select {
		case <-ctx.Done():
			if len(pending) > 0 {
				select {
				case out <- pending:
				case <-done:
				}
			}
			return nil
		case <-done:
			return nil
		case <-s.lost:
			return s.err
		case d, ok := <-deliveries:
			if !ok {
				s.lose(errors.New("deliveries closed (consumer cancelled)"))
				return s.err
			}
			if len(pending) == 0 {
				timer.Reset(c.opts.BatchWait)
				due = false
			}
			pending = append(pending, c.newItems(s, d)...)
		case <-timer.C:
			due = true
		case send <- pending:
			pending, due = nil, false
			timer.Stop()
		}
	}
}

// newItem decodes one delivery of s: its body, and in binary content mode the headers
// that carry CloudEvents attributes (see DecodeDelivery). Other headers are the
// publisher's, carried on in its copies as far as they fit (see outgoingFor), and a
// table the client could not read (see frameGuard) is only noted.
func (c *Consumer) newItem(s *session, d amqp091.Delivery) *item {
	it := c.deliveryItem(s, d)
	it.event, it.invalid = DecodeDelivery(d.Headers, d.ContentType, d.Body)
	return it
}

// deliveryItem is the item of delivery d before its body is decoded: the checks of the
// delivery itself (a signed retry count, headers dropped unread).
func (c *Consumer) deliveryItem(s *session, d amqp091.Delivery) *item {
	it := &item{s: s, d: d}
	it.attempt, it.dropped = c.signer.verify(d.Headers, d.Body)
	if n, ok := droppedHeaders(s.guardKey, d.Headers); ok {
		c.log.Warn("message headers larger than the frame size dropped", "bytes", n,
			"message_id", clipString(d.MessageId, 64), "routing_key", clipString(d.RoutingKey, 64))
		it.dropped = joinNotes(it.dropped, fmt.Sprintf("its headers (%d bytes) made its properties larger than the broker's frame size and were dropped unread", n))
	}
	return it
}

// newItems is newItem for a delivery that may be a batch message: one item per event of
// a batch (each judged on its own: stored, duplicate, retried or dead-lettered as a
// message of its own), else the one item of newItem. A batch that cannot be split (not
// an array, empty, over MaxBatchEvents or MaxBatchSize, or with CloudEvents attribute
// headers too) is one invalid item, dead-lettered whole.
func (c *Consumer) newItems(s *session, d amqp091.Delivery) []*item {
	if !isBatch(d.ContentType) {
		return []*item{c.newItem(s, d)}
	}
	it := c.deliveryItem(s, d) // its body is a batch: never decoded as one event
	if len(attributeHeaders(d.Headers)) > 0 {
		it.invalid = errMixedBatch
		return []*item{it}
	}
	parts, err := decodeBatchParts(d.Body, c.yieldToLanes)
	if err != nil {
		it.invalid = err
		return []*item{it}
	}
	g := &group{items: make([]*item, len(parts))}
	for i, p := range parts {
		g.items[i] = &item{s: s, d: d, attempt: it.attempt, dropped: it.dropped, group: g, body: p.body,
			event: p.event, invalid: p.err}
	}
	return g.items
}

// yieldToLanes parks the goroutine decoding batch messages for a moment while a batch's
// lanes are in the store, so that a lane whose PostgreSQL reply has arrived runs first. A
// consumer-only process has one P (see bootstrap's tuneRuntime), and a goroutine that
// never blocks keeps it until the scheduler preempts it, after 10 ms. runtime.Gosched is
// not enough: the yielding goroutine goes on the global run queue, which the scheduler
// looks at before the network poller, so it runs again at once. Parking on a timer lets
// the scheduler poll the network. Without it, decoding the next batch's 2000 events
// (6 µs each) held both lanes' replies for 10-15 ms of every ~60 ms batch, PostgreSQL
// idle meanwhile, in a profile of the batch pipeline; the batch was still ready 50-80 ms
// before it was needed. A park costs about 1 ms when nothing else is runnable (the
// poller's wait is in milliseconds), so with no batch in the store it is skipped: a lone
// batch message is not delayed.
func (c *Consumer) yieldToLanes() {
	if c.recording.Load() {
		time.Sleep(time.Microsecond)
	}
}

// group is the items of one batch message, in the order of its events.
type group struct{ items []*item }

// ready reports whether the delivery of it may be acked: it is settled, and so is every
// other event of its batch message.
func (it *item) ready() bool {
	if !it.settled {
		return false
	}
	if it.group != nil {
		for _, o := range it.group.items {
			if !o.settled {
				return false
			}
		}
	}
	return true
}

// markAcked records that the delivery of it was acked (or rejected): every event of it.
func (it *item) markAcked() {
	if it.group == nil {
		it.acked = true
		return
	}
	for _, o := range it.group.items {
		o.acked, o.settled = true, true
	}
}

// joinNotes joins the non-empty notes with "; ".
func joinNotes(notes ...string) string {
	var out []string
	for _, n := range notes {
		if n != "" {
			out = append(out, n)
		}
	}
	return strings.Join(out, "; ")
}

// process records the valid events of a batch and settles every delivery. It returns an
// error only when s is lost; after a shutdown it may leave deliveries unacked, which the
// broker redelivers once the channel closes.
func (c *Consumer) process(ctx context.Context, s *session, items []*item) error {
	events, valid := make([]domain.Event, 0, len(items)), make([]*item, 0, len(items))
	invalid := false
	for _, it := range items {
		if it.invalid != nil {
			it.v, it.decided = verdict{action: deadLetter, reason: ReasonInvalid, detail: it.invalid.Error()}, true
			invalid = true
			continue
		}
		events = append(events, it.event)
		valid = append(valid, it)
	}
	// Invalid messages are dead-lettered at once: they never wait on the store.
	if invalid {
		if done, err := c.settle(ctx, s, items); err != nil || !done {
			return err
		}
	}
	if len(events) > 0 {
		results, ok, err := c.record(ctx, s, events)
		if err != nil || !ok {
			return err
		}
		for i, it := range valid {
			c.decide(it, results[i])
		}
	}
	_, err := c.settle(ctx, s, items)
	return err
}

// record calls the recorder until the batch commits. The batch's events go in lanes by
// product (see splitLanes), one transaction each, at once; a lane that fails is tried
// again on its own, so the events of a lane that committed are never sent twice. While
// the store is unavailable the batch is held, no delivery beyond the next batch is taken
// and State says paused; it never nack-requeues. ok is false when ctx ended first; err is
// set when s was lost.
func (c *Consumer) record(ctx context.Context, s *session, events []domain.Event) (results []error, ok bool, err error) {
	results = make([]error, len(events))
	left := splitLanes(events, c.opts.Lanes, c.opts.minLane) // lanes not yet committed
	bo := holdBackoff
	for attempt := 1; ; attempt++ {
		// A batch in flight completes during shutdown, bounded by ShutdownTimeout.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opts.ShutdownTimeout)
		start := time.Now()
		c.recording.Store(true)
		left, err = c.recordLanes(rctx, events, left, results)
		c.recording.Store(false)
		cancel()
		c.m.batchDuration.Observe(time.Since(start).Seconds())
		if err == nil {
			c.m.lastCommit.SetToCurrentTime()
			c.m.batchSize.Observe(float64(len(events)))
			if attempt > 1 {
				c.log.InfoContext(ctx, "held batch recorded", "size", len(events), "attempts", attempt)
			}
			c.setState(StateConnected)
			c.release()
			return results, true, nil
		}
		c.hold(HeldStoreUnavailable)
		if ctx.Err() != nil {
			c.log.WarnContext(ctx, "batch left unacked at shutdown", "size", len(events), "err", err)
			c.release()
			return nil, false, nil
		}
		if !errors.Is(err, ports.ErrUnavailable) && attempt >= poisonAttempts {
			// Not an outage: some event breaks the store. Holding the batch would block
			// the queue for ever, so isolate the culprits and dead-letter them as internal.
			c.log.ErrorContext(ctx, "batch fails without an outage, recording events one by one", "size", len(events), "err", err)
			return c.recordEach(ctx, s, events, left, results)
		}
		c.log.WarnContext(ctx, "batch held, store unavailable", "size", len(events), "attempt", attempt, "err", err)
		if !sleep(ctx, bo.next(), s.lost) {
			c.release() // abandoned: the broker redelivers it
			if ctx.Err() != nil {
				return nil, false, nil
			}
			return nil, false, s.err
		}
	}
}

// recordLanes records each lane of events (their indexes) in a Record call of its own,
// all at once, and writes the results of those that commit into results. It returns the
// lanes that failed and their errors joined: an outage in any lane makes the error an
// outage.
func (c *Consumer) recordLanes(ctx context.Context, events []domain.Event, lanes [][]int, results []error) ([][]int, error) {
	errs := make([]error, len(lanes))
	recordLane := func(l int) {
		batch := events // a lane of every event (splitLanes keeps their order)
		if len(lanes[l]) < len(events) {
			batch = make([]domain.Event, len(lanes[l]))
			for j, i := range lanes[l] {
				batch[j] = events[i]
			}
		}
		res, err := c.rec.Record(ctx, batch)
		if err == nil && len(res) != len(batch) {
			err = fmt.Errorf("recorder returned %d results for %d events", len(res), len(batch))
		}
		if err != nil {
			errs[l] = err
			return
		}
		for j, i := range lanes[l] {
			results[i] = res[j]
		}
	}
	if len(lanes) == 1 {
		recordLane(0)
	} else {
		var wg sync.WaitGroup
		for l := range lanes {
			wg.Go(func() { recordLane(l) })
		}
		wg.Wait()
	}
	var failed [][]int
	for l, err := range errs {
		if err != nil {
			failed = append(failed, lanes[l])
		}
	}
	return failed, errors.Join(errs...)
}

// poisonAttempts is how many times a batch that fails with an error other than
// ports.ErrUnavailable is tried (its failing lanes whole) before the events of those
// lanes are recorded one by one.
const poisonAttempts = 3

// recordEach records the events of lanes one at a time, each in its own transaction, and
// writes their results into results. An event the store refuses with an error that is
// not an outage gets that error as its result, which verdictFor turns into an "internal"
// dead letter; an outage holds the event as record does.
func (c *Consumer) recordEach(ctx context.Context, s *session, events []domain.Event, lanes [][]int, results []error) ([]error, bool, error) {
	for _, lane := range lanes {
		for _, i := range lane {
			e := events[i]
			bo := holdBackoff
			for {
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opts.ShutdownTimeout)
				res, err := c.rec.Record(rctx, []domain.Event{e})
				cancel()
				if err == nil && len(res) == 1 {
					results[i] = res[0]
					break
				}
				if err != nil && !errors.Is(err, ports.ErrUnavailable) {
					results[i] = fmt.Errorf("store refused the event: %w", err)
					c.log.ErrorContext(ctx, "event refused by the store", "event_id", e.ID, "movement_id", e.MovementID.String(), "err", err)
					break
				}
				if ctx.Err() != nil {
					c.release()
					return nil, false, nil
				}
				if !sleep(ctx, bo.next(), s.lost) {
					c.release()
					if ctx.Err() != nil {
						return nil, false, nil
					}
					return nil, false, s.err
				}
			}
		}
	}
	c.m.lastCommit.SetToCurrentTime()
	c.setState(StateConnected)
	c.release()
	return results, true, nil
}

// decide turns the result of one recorded event into its verdict.
func (c *Consumer) decide(it *item, result error) {
	switch {
	case result == nil:
		c.m.stored.Inc()
		c.m.commitLag.Observe(time.Since(it.event.Timestamp).Seconds())
	case errors.Is(result, domain.ErrDuplicate):
		c.m.duplicates.Inc()
	}
	v := verdictFor(result)
	if v.action == retryLater && it.attempt+1 > c.opts.RetryLimit {
		v = verdict{action: deadLetter, reason: ReasonInsufficientStock,
			detail: fmt.Sprintf("%s: gave up after %d attempts (%d delayed retries)", v.detail, it.attempt+1, it.attempt)}
	}
	it.v, it.decided = v, true
}

// settle publishes the dead letters and retries of the decided items, waits for their
// confirms and acks every settled item. A message that no copy of could fit a frame is
// rejected without requeue instead, so that the broker's own dead-lettering takes it.
// While the publisher fails it holds the batch and retries with backoff. done is false
// when ctx ended first with items unsettled; err is set when s was lost.
func (c *Consumer) settle(ctx context.Context, s *session, items []*item) (done bool, err error) {
	bo := holdBackoff
	for attempt := 1; ; attempt++ {
		if !s.alive() {
			c.release()
			return false, s.err
		}
		var pending []*item
		var out []outgoing
		for _, it := range items {
			if !it.decided || it.settled {
				continue
			}
			if it.v.action == ack {
				it.settled = true
				continue
			}
			o, ok := c.outgoingFor(it, frameMaxOf(it.s))
			if !ok {
				c.reject(ctx, it)
				continue
			}
			pending = append(pending, it)
			out = append(out, o)
		}
		var perr error
		if len(out) > 0 {
			if perr = c.publish(ctx, s, out); perr == nil {
				for _, it := range pending {
					it.settled = true
					c.published(ctx, it)
				}
			}
		}
		c.ack(s, items)
		if perr == nil {
			if attempt > 1 {
				c.setState(StateConnected)
				c.release()
			}
			return true, nil
		}
		c.hold(HeldCannotPublish)
		if ctx.Err() != nil {
			c.log.WarnContext(ctx, "dead letters and retries left unacked at shutdown", "count", len(out), "err", perr)
			c.release()
			return false, nil
		}
		c.log.WarnContext(ctx, "batch held, cannot publish dead letters and retries", "count", len(out), "attempt", attempt, "err", perr)
		if !sleep(ctx, bo.next(), s.lost) {
			c.release()
			if ctx.Err() != nil {
				return false, nil
			}
			return false, s.err
		}
	}
}

// reject hands a message that cannot be copied to the broker's dead-lettering: a nack
// without requeue on the session it came from. The broker's dead letter carries x-death
// (reason "rejected") instead of the service's reason and detail, which go to the log.
//
// For an event of a batch message that is the whole message, its other events included
// (those stored are stored: a replay of the dead letter finds them duplicates).
func (c *Consumer) reject(ctx context.Context, it *item) {
	it.settled = true
	if it.acked {
		return // a sibling of its batch message rejected the delivery
	}
	if it.s != nil && it.s.alive() {
		if err := it.s.ch.Nack(it.d.DeliveryTag, false, false); err != nil {
			c.log.WarnContext(ctx, "reject failed", "err", err)
			return // the session is lost: the broker redelivers it
		}
	}
	it.markAcked()
	c.m.rejected.WithLabelValues(it.v.reason).Inc()
	c.log.ErrorContext(ctx, "message rejected to the broker's dead-lettering: no copy of it fits a frame",
		"reason", it.v.reason, "detail", clipDetail(it.v.detail), "message_id", clipString(it.d.MessageId, 64),
		"routing_key", clipString(it.d.RoutingKey, 64), "frame_max", it.s.conn.Config.FrameSize)
}

// publish sends one group on the publisher connection, dialing it when needed. Any
// failure but an unroutable message drops the publisher so that the next try redials,
// and any failure declares the topology again.
func (c *Consumer) publish(ctx context.Context, s *session, out []outgoing) error {
	if c.pub == nil {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dialTimeout)
		p, err := dialPublisher(dctx, c.opts.URL, c.root, c.opts.frameMax)
		cancel()
		if err != nil {
			return err
		}
		c.pub = p
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), confirmTimeout)
	defer cancel()
	err := c.pub.publish(pctx, out)
	if err == nil {
		return nil
	}
	if !errors.Is(err, ErrUnroutable) {
		c.closePublisher()
	}
	// Someone may have deleted the dead-letter or retry exchange or queue: that shows as
	// an unroutable message, a nack or a closed channel. Declaring the topology again is
	// idempotent; a mismatch closes the consuming channel, and the reconnect reports it.
	if s.alive() {
		if derr := Declare(s.ch, c.opts.Topology); derr != nil {
			return errors.Join(err, derr)
		}
	}
	return err
}

func (c *Consumer) closePublisher() {
	if c.pub != nil {
		_ = c.pub.Close()
		c.pub = nil
	}
}

// published counts and logs a confirmed dead letter or retry.
func (c *Consumer) published(ctx context.Context, it *item) {
	if it.v.action == retryLater {
		c.m.retried.Inc()
		c.log.DebugContext(ctx, "event scheduled for retry", "event_id", it.event.ID,
			"movement_id", it.event.MovementID.String(), "attempt", it.attempt+1)
		return
	}
	c.m.rejected.WithLabelValues(it.v.reason).Inc()
	attrs := []any{"reason", it.v.reason, "detail", clipDetail(it.v.detail),
		"message_id", it.d.MessageId, "routing_key", it.d.RoutingKey}
	if it.invalid == nil {
		attrs = append(attrs, "event_id", it.event.ID, "movement_id", it.event.MovementID.String())
	}
	if it.v.reason == ReasonInternal {
		c.log.ErrorContext(ctx, "message dead-lettered", attrs...)
	} else {
		c.log.WarnContext(ctx, "message dead-lettered", attrs...)
	}
}

// ack acks the settled items of s: the longest settled prefix with one multiple ack,
// the settled ones after a gap one by one. Nothing is acked once s is lost: a tag is
// meaningful only on its own channel, and the broker redelivers what was unacked.
func (c *Consumer) ack(s *session, items []*item) {
	if !s.alive() {
		return
	}
	prefix := 0
	for prefix < len(items) && items[prefix].ready() && items[prefix].s == s {
		prefix++
	}
	for i := prefix - 1; i >= 0; i-- {
		if items[i].acked {
			continue
		}
		// Every delivery of s before it is settled and this batch holds all unacked ones.
		if err := s.ch.Ack(items[i].d.DeliveryTag, true); err != nil {
			c.log.Warn("ack failed", "err", err)
			return
		}
		for _, it := range items[:i+1] {
			it.acked = true
		}
		break
	}
	for _, it := range items[prefix:] {
		if !it.ready() || it.acked || it.s != s {
			continue
		}
		if err := s.ch.Ack(it.d.DeliveryTag, false); err != nil {
			c.log.Warn("ack failed", "err", err)
			return
		}
		it.markAcked()
	}
}

// copyOf is a persistent copy of delivery d with headers h: the same body and
// properties, but no Expiration, so that a dead letter never expires, and no UserId,
// which the broker checks against the publishing connection's user.
func copyOf(d amqp091.Delivery, h amqp091.Table) amqp091.Publishing {
	return amqp091.Publishing{
		Headers:         h,
		ContentType:     d.ContentType,
		ContentEncoding: d.ContentEncoding,
		DeliveryMode:    amqp091.Persistent,
		Priority:        d.Priority,
		CorrelationId:   d.CorrelationId,
		ReplyTo:         d.ReplyTo,
		MessageId:       d.MessageId,
		Timestamp:       d.Timestamp,
		Type:            d.Type,
		AppId:           d.AppId,
		Body:            d.Body,
	}
}

// outgoingFor builds the dead letter or retry of a delivery: the same body and
// properties, the original routing key, persistent, with the service's headers and as
// many of the publisher's own as fit the copy's budget (see copyBudget). What was dropped,
// now or by an earlier copy, is said in the dead letter's detail, or carried (signed) on
// a retry. ok is false when not even a copy without publisher headers would fit a frame
// with room for what the broker adds to it within frameMax.
func (c *Consumer) outgoingFor(it *item, frameMax int) (o outgoing, ok bool) {
	d := it.d
	h := make(amqp091.Table, 8)
	exchange := c.opts.Topology.DeadLetterExchange
	if it.v.action == retryLater {
		exchange = c.opts.Topology.RetryExchange
		h[RetryHeader] = int32(it.attempt + 1)
		h[RetrySignatureHeader] = c.signer.sign(0, "", nil) // its size, for the budget
		h[DroppedHeader] = strings.Repeat("x", maxDetailLen)
	} else {
		h[ReasonHeader] = it.v.reason
		h[DetailHeader] = strings.Repeat("x", maxDetailLen) // the most it will hold
		h[DeadLetteredAtHeader] = time.Now().UTC().Format(time.RFC3339Nano)
		h[AttemptsHeader] = int32(it.attempt + 1)
	}
	budget := copyBudget(frameMax, copyOf(d, h))
	if budget < 0 {
		return outgoing{}, false
	}
	t := trimHeaders(publisherHeaders(d.Headers), budget)
	note := clipString(joinNotes(it.dropped, t.note()), maxDetailLen/2)
	if it.v.action == retryLater {
		delete(h, DroppedHeader)
		if note != "" {
			h[DroppedHeader] = note
		}
		h[RetrySignatureHeader] = c.signer.sign(it.attempt+1, note, d.Body)
	} else {
		h[DetailHeader] = joinNotes(clipString(it.v.detail, maxDetailLen-len(note)-2), note)
	}
	for k, v := range t.kept {
		h[k] = v
	}
	msg, key := copyOf(d, h), d.RoutingKey
	if it.group != nil {
		// An event of a batch message goes on as a structured message of its own.
		msg.Body, msg.ContentType = it.body, ContentType
		if it.invalid == nil {
			msg.MessageId, key = it.event.ID, "movement."+string(it.event.Kind)
		}
		if it.v.action == retryLater {
			h[RetrySignatureHeader] = c.signer.sign(it.attempt+1, note, it.body)
		}
	}
	return outgoing{exchange: exchange, key: key, msg: msg}, true
}

// frameMaxOf is the frame size negotiated on the session a delivery came from.
func frameMaxOf(s *session) int {
	if s == nil || s.conn == nil || s.conn.Config.FrameSize <= 0 {
		return clientFrameMax
	}
	return s.conn.Config.FrameSize
}

// retryAttempt reads RetryHeader; absent or malformed counts as 0. Only the signature
// (see retrySigner) says whether the service set it.
func retryAttempt(h amqp091.Table) int {
	n, ok := intHeader(h, RetryHeader)
	if !ok || n > 1<<20 {
		return 0
	}
	return n
}

// clipDetail keeps a header value within maxDetailLen bytes, cut at a rune boundary.
func clipDetail(s string) string { return clipString(s, maxDetailLen) }

type action int

const (
	ack action = iota
	retryLater
	deadLetter
)

// verdict is what happens to one delivery after its batch committed.
type verdict struct {
	action action
	reason string
	detail string
}

// verdictFor decides what happens to one delivery after its batch committed.
func verdictFor(result error) verdict {
	switch {
	case result == nil, errors.Is(result, domain.ErrDuplicate):
		return verdict{action: ack}
	case errors.Is(result, domain.ErrInsufficientStock):
		return verdict{action: retryLater, reason: ReasonInsufficientStock, detail: result.Error()}
	case errors.Is(result, domain.ErrConflict):
		return verdict{action: deadLetter, reason: ReasonConflict, detail: result.Error()}
	default: // a store bug, not bad input: park it where a person will look
		return verdict{action: deadLetter, reason: ReasonInternal, detail: result.Error()}
	}
}

// backoff is exponential with jitter: each wait is drawn from [cur/2, cur].
type backoff struct {
	min, max, cur time.Duration
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	return b.cur/2 + rand.N(b.cur/2+1)
}

func (b *backoff) reset() { b.cur = 0 }

// sleep waits d; false when ctx ended or lost closed first.
func sleep(ctx context.Context, d time.Duration, lost <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-lost:
		return false
	}
}

// metrics are the consumer's collectors; the movements_* ones are part of the contract.
type metrics struct {
	stored        prometheus.Counter
	rejected      *prometheus.CounterVec
	duplicates    prometheus.Counter
	retried       prometheus.Counter
	batchSize     prometheus.Histogram
	batchDuration prometheus.Histogram
	reconnects    prometheus.Counter
	holds         *holdTracker
	states        *stateTracker
	lastCommit    prometheus.Gauge
	commitLag     prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) metrics {
	m := metrics{
		stored: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "movements_stored_total", Help: "Movement events stored (recorded with no error).",
		})),
		rejected: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "movements_rejected_total", Help: "Messages dead-lettered by the consumer, by reason.",
		}, []string{"reason"})),
		duplicates: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "movements_duplicates_total", Help: "Movement events already stored (no-ops).",
		})),
		retried: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "movements_retried_total",
			Help: "Retry copies of departures short of stock published to the delayed retry queue: one per attempt, so a departure retried 10 times counts 10.",
		})),
		batchSize: register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "consumer_batch_size", Help: "Valid events per recorded batch.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14),
		})),
		batchDuration: register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "consumer_batch_duration_seconds", Help: "Latency of one Record call on a batch, failed ones included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		})),
		reconnects: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "consumer_reconnects_total", Help: "Attempts to reconnect the consumer to the broker.",
		})),
		holds:  register(reg, newHoldTracker()),
		states: register(reg, newStateTracker()),
		lastCommit: register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "consumer_last_commit_timestamp_seconds",
			Help: "Unix time at which the store last committed a batch of this process (0 before the first).",
		})),
		commitLag: register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "consumer_commit_lag_seconds",
			Help:    "Time from a stored event's business time (data.timestamp) to the commit that stored it.",
			Buckets: []float64{0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600, 7 * 24 * 3600},
		})),
	}
	for _, r := range []string{ReasonInvalid, ReasonConflict, ReasonInsufficientStock, ReasonInternal} {
		m.rejected.WithLabelValues(r)
	}
	return m
}

// register registers c on reg, reusing a collector already there (a second consumer in
// the same process shares the counters) and never panicking.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}

// stateTracker exports consumer_state: one series per state, 1 for the state of the
// process's consumers (the least healthy of its workers, as readiness sees it) and 0 for
// the others. It is one collector shared by the consumers of a registry (see register).
type stateTracker struct {
	mu        sync.Mutex
	consumers map[*Consumer]struct{}
	desc      *prometheus.Desc
}

func newStateTracker() *stateTracker {
	return &stateTracker{
		consumers: make(map[*Consumer]struct{}),
		desc: prometheus.NewDesc("consumer_state",
			"1 for the consumer's state (connected, reconnecting: no usable broker session, paused: a batch held), 0 for the others.",
			[]string{"state"}, nil),
	}
}

func (s *stateTracker) add(c *Consumer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.consumers[c] = struct{}{}
}

func (s *stateTracker) Describe(ch chan<- *prometheus.Desc) { ch <- s.desc }

func (s *stateTracker) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	consumers := make([]*Consumer, 0, len(s.consumers))
	for c := range s.consumers {
		consumers = append(consumers, c)
	}
	s.mu.Unlock()
	if len(consumers) == 0 {
		return
	}
	state := WorstState(consumers)
	for _, st := range []string{StateConnected, StateReconnecting, StatePaused} {
		v := 0.0
		if st == state {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(s.desc, prometheus.GaugeValue, v, st)
	}
}

// WorstState reports the least healthy state of consumers: one reconnecting worker makes
// the process reconnecting, one holding a batch makes it paused.
func WorstState(consumers []*Consumer) string {
	state := StateConnected
	for _, c := range consumers {
		switch s := c.State(); s {
		case StateReconnecting:
			return s
		case StatePaused:
			state = s
		}
	}
	return state
}

// holdTracker knows which consumers of a process hold a batch, and since when. It is one
// collector shared by the consumers of a registry (see register), exporting
// consumer_held_batches and consumer_held_batch_age_seconds.
type holdTracker struct {
	mu    sync.Mutex
	since map[*Consumer]time.Time

	count, age *prometheus.Desc
}

func newHoldTracker() *holdTracker {
	return &holdTracker{
		since: make(map[*Consumer]time.Time),
		count: prometheus.NewDesc("consumer_held_batches",
			"Batches held because the store is unavailable or their dead letters and retries cannot be published.", nil, nil),
		age: prometheus.NewDesc("consumer_held_batch_age_seconds",
			"How long the oldest held batch has been held; 0 when none is.", nil, nil),
	}
}

func (h *holdTracker) start(c *Consumer, at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.since[c] = at
}

func (h *holdTracker) stop(c *Consumer) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.since, c)
}

// Describe implements prometheus.Collector.
func (h *holdTracker) Describe(ch chan<- *prometheus.Desc) {
	ch <- h.count
	ch <- h.age
}

// Collect implements prometheus.Collector.
func (h *holdTracker) Collect(ch chan<- prometheus.Metric) {
	h.mu.Lock()
	n := len(h.since)
	var oldest time.Time
	for _, t := range h.since {
		if oldest.IsZero() || t.Before(oldest) {
			oldest = t
		}
	}
	h.mu.Unlock()
	age := 0.0
	if !oldest.IsZero() {
		age = time.Since(oldest).Seconds()
	}
	ch <- prometheus.MustNewConstMetric(h.count, prometheus.GaugeValue, float64(n))
	ch <- prometheus.MustNewConstMetric(h.age, prometheus.GaugeValue, age)
}
