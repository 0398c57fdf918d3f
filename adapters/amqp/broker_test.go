package amqp_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	amqp091 "github.com/rabbitmq/amqp091-go"

	amqpadapter "warehouse/adapters/amqp"
	"warehouse/adapters/memory"
	"warehouse/application"
	"warehouse/domain"
	"warehouse/ports"
)

// Helpers shared by the tests against the real broker.

// mustBrokerURL returns the broker's URL (AMQP_URL or the local default). It skips the
// test when the broker is unreachable, unless CI=true, where that is a failure.
func mustBrokerURL(t testing.TB) string {
	t.Helper()
	url := os.Getenv("AMQP_URL")
	if url == "" {
		url = "amqp://guest:guest@127.0.0.1:5672/"
	}
	conn, err := amqp091.DialConfig(url, amqp091.Config{Dial: amqp091.DefaultDial(3 * time.Second)})
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("RabbitMQ unreachable: %v", err)
		}
		t.Skipf("RabbitMQ unreachable: %v", err)
	}
	_ = conn.Close()
	return url
}

// broker is a test's own admin connection for declaring, inspecting and deleting.
type broker struct {
	t    testing.TB
	url  string
	conn *amqp091.Connection
}

func mustBroker(t testing.TB) *broker {
	t.Helper()
	url := mustBrokerURL(t)
	conn, err := amqp091.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &broker{t: t, url: url, conn: conn}
}

// channel opens a fresh channel: a failed passive declare closes the one it ran on.
func (b *broker) channel() *amqp091.Channel {
	b.t.Helper()
	ch, err := b.conn.Channel()
	if err != nil {
		b.t.Fatal(err)
	}
	return ch
}

// mustTopology returns uniquely named entities, deleted when the test ends.
func (b *broker) mustTopology() amqpadapter.Topology {
	b.t.Helper()
	suffix := make([]byte, 6)
	_, _ = rand.Read(suffix)
	name := "amqptest." + hex.EncodeToString(suffix)
	topo := amqpadapter.DefaultTopology(name, name, 200*time.Millisecond, 5)
	b.t.Cleanup(func() {
		ch, err := b.conn.Channel()
		if err != nil {
			b.t.Logf("cleanup: %v", err)
			return
		}
		defer ch.Close()
		for _, q := range []string{topo.Queue, topo.DeadLetterQueue, topo.RetryExchange} {
			_, _ = ch.QueueDelete(q, false, false, false)
		}
		for _, x := range []string{topo.Exchange, topo.DeadLetterExchange, topo.RetryExchange} {
			_ = ch.ExchangeDelete(x, false, false)
		}
	})
	return topo
}

// ready returns the number of ready messages in queue.
func (b *broker) ready(queue string) int {
	b.t.Helper()
	ch := b.channel()
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		b.t.Fatalf("inspect queue %s: %v", queue, err)
	}
	return q.Messages
}

// drain gets (and acks) every ready message of queue.
func (b *broker) drain(queue string) []amqp091.Delivery {
	b.t.Helper()
	ch := b.channel()
	defer ch.Close()
	var out []amqp091.Delivery
	for {
		d, ok, err := ch.Get(queue, true)
		if err != nil {
			b.t.Fatalf("get from %s: %v", queue, err)
		}
		if !ok {
			return out
		}
		out = append(out, d)
	}
}

func (b *broker) mustPublisher() *amqpadapter.Publisher {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := amqpadapter.DialPublisher(ctx, b.url, testLogger(b.t))
	if err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(func() { _ = p.Close() })
	return p
}

func (b *broker) publish(p *amqpadapter.Publisher, topo amqpadapter.Topology, routingKey string, body []byte) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Publish(ctx, topo.Exchange, routingKey, body, nil); err != nil {
		b.t.Fatalf("publish: %v", err)
	}
}

// running is a consumer started by mustStartConsumer.
type running struct {
	*amqpadapter.Consumer
	reg  *prometheus.Registry
	stop func() error
}

// mustStartConsumer runs a consumer until stop or the end of the test and waits until
// it is connected (and so has declared topo).
func (b *broker) mustStartConsumer(topo amqpadapter.Topology, rec ports.Recorder, edit func(*amqpadapter.ConsumerOptions)) *running {
	b.t.Helper()
	opts := amqpadapter.ConsumerOptions{
		URL: b.url, Topology: topo, Prefetch: 200, BatchSize: 100, BatchWait: 10 * time.Millisecond,
		RetryLimit: 2, ConsumerTag: "amqptest", ShutdownTimeout: 5 * time.Second,
	}
	if edit != nil {
		edit(&opts)
	}
	reg := prometheus.NewRegistry()
	c := amqpadapter.NewConsumer(opts, rec, testLogger(b.t), reg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(20 * time.Second):
				runErr = errors.New("Run did not return within 20s of cancellation")
			}
		})
		return runErr
	}
	b.t.Cleanup(func() {
		if err := stop(); err != nil {
			b.t.Errorf("Run: %v", err)
		}
	})
	waitFor(b.t, 10*time.Second, "consumer connected", func() bool {
		select {
		case err := <-done:
			b.t.Fatalf("Run returned early: %v", err)
		default:
		}
		return c.State() == amqpadapter.StateConnected
	})
	return &running{Consumer: c, reg: reg, stop: stop}
}

// metric returns the value of a counter or gauge, or the sample count of a histogram,
// with the given label values.
func (r *running) metric(t testing.TB, name string, labelValues ...string) float64 {
	t.Helper()
	families, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			for i, lp := range m.GetLabel() {
				if i >= len(labelValues) || lp.GetValue() != labelValues[i] {
					continue next
				}
			}
			if h := m.GetHistogram(); h != nil {
				return float64(h.GetSampleCount())
			}
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// recorder is the real use case over a memory store, with a switchable outage and a
// count of the events each Record call was given.
type recorder struct {
	store *memory.Store
	next  *application.Recorder

	mu       sync.Mutex
	down     bool
	delay    time.Duration
	calls    int
	attempts map[string]int // event id → how many committed batches held it
	poison   string         // an event id that makes every batch holding it fail (a store bug)
	batches  []recordCall   // every Record call, in order
	inFlight int            // Record calls under way
	overlap  int            // the most Record calls under way at once
}

// recordCall is one Record call: the ids of its events, and whether it returned an error.
type recordCall struct {
	ids    []string
	failed bool
}

func newRecorder() *recorder {
	s := memory.NewStore()
	return &recorder{store: s, next: application.NewRecorder(s, nil), attempts: map[string]int{}}
}

var _ ports.Recorder = (*recorder)(nil)

func (r *recorder) Record(ctx context.Context, events []domain.Event) ([]error, error) {
	r.mu.Lock()
	r.calls++
	down, delay, poison := r.down, r.delay, r.poison
	call := recordCall{ids: make([]string, len(events))}
	for i, e := range events {
		call.ids[i] = e.ID
		call.failed = call.failed || poison != "" && e.ID == poison
	}
	r.batches = append(r.batches, call)
	r.inFlight++
	r.overlap = max(r.overlap, r.inFlight)
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.inFlight--
		r.mu.Unlock()
	}()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %w", ports.ErrUnavailable, ctx.Err())
		}
	}
	if call.failed {
		return nil, errors.New("test store rejects this event: not an outage")
	}
	if down {
		return nil, fmt.Errorf("%w: test store is down", ports.ErrUnavailable)
	}
	results, err := r.next.Record(ctx, events)
	if err == nil {
		r.mu.Lock()
		for _, e := range events {
			r.attempts[e.ID]++
		}
		r.mu.Unlock()
	}
	return results, err
}

func (r *recorder) setDown(down bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down = down
}

// recordCalls returns the Record calls so far.
func (r *recorder) recordCalls() []recordCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.batches)
}

// maxOverlap returns the most Record calls that were under way at once.
func (r *recorder) maxOverlap() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.overlap
}

func (r *recorder) callCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls
}

func (r *recorder) attemptsOf(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.attempts[id]
}

// stock returns the stock of p at w, 0 when never seen.
func (r *recorder) stock(t testing.TB, w domain.WarehouseID, p domain.ProductID) int64 {
	t.Helper()
	s, err := r.store.Stock(context.Background(), w, p)
	if errors.Is(err, domain.ErrNotFound) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return s.Quantity
}

// movementEvent returns a valid event with a fresh id.
func movementEvent(t testing.TB, kind domain.EventKind, m domain.MovementID, w domain.WarehouseID, p domain.ProductID, qty int64) domain.Event {
	t.Helper()
	e, err := domain.NewEvent(domain.EventInput{
		ID: uuid.NewString(), Source: "WH-test", SpecVersion: domain.SpecVersion, Type: domain.EventType,
		Time:       time.Now().UTC().Truncate(time.Millisecond),
		Attributes: []byte(`{"subject":"test"}`),
		MovementID: m.String(), WarehouseID: w.String(), ProductID: p.String(),
		Event: string(kind), Timestamp: time.Now().UTC().Format(time.RFC3339Nano), Quantity: qty,
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func newIDs() (domain.MovementID, domain.WarehouseID, domain.ProductID) {
	return domain.MovementID(uuid.New()), domain.WarehouseID(uuid.New()), domain.ProductID(uuid.New())
}

func header(d amqp091.Delivery, key string) string {
	s, _ := d.Headers[key].(string)
	return s
}

// mustDeadLetters waits until the dead-letter queue holds n messages and returns them.
func (b *broker) mustDeadLetters(topo amqpadapter.Topology, n int) []amqp091.Delivery {
	b.t.Helper()
	waitFor(b.t, 10*time.Second, fmt.Sprintf("%d dead letters", n), func() bool { return b.ready(topo.DeadLetterQueue) >= n })
	dead := b.drain(topo.DeadLetterQueue)
	if len(dead) != n {
		b.t.Fatalf("got %d dead letters, want %d", len(dead), n)
	}
	return dead
}

// proxy forwards TCP connections to the broker, so a test can cut them: a connection
// loss without touching the shared broker.
type proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

// mustProxy starts a proxy to the broker of url and returns it with the URL to use.
func mustProxy(t testing.TB, rawURL string) (*proxy, string) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: u.Host}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		_ = ln.Close()
		p.cut()
		p.wg.Wait()
	})
	u.Host = ln.Addr().String()
	return p, u.String()
}

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = in.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, in, out)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(in, out)
		go p.pipe(out, in)
	}
}

func (p *proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	_ = dst.Close()
	_ = src.Close()
}

// cut closes every connection open through the proxy; new ones are still accepted.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}
