package bootstrap

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/uptrace/bun"

	amqpadapter "warehouse/adapters/amqp"
	"warehouse/adapters/postgres/pgtest"
	"warehouse/domain"
)

// Helpers of the end-to-end tests: the real service in process (runService with the
// `run` roles) against the shared PostgreSQL and RabbitMQ, each test with its own
// database and uniquely named exchanges and queues.

// e2eWait bounds every poll of these tests.
const e2eWait = 15 * time.Second

// e2eStopWait bounds how long runService may take to return once its context is cancelled.
const e2eStopWait = 20 * time.Second

// testService is one runService in a goroutine, with what a test needs to talk to it.
type testService struct {
	t      *testing.T
	cfg    Config
	base   string // http://127.0.0.1:port
	client *http.Client
	logs   *e2eLogBuffer

	cancel   context.CancelFunc
	done     chan error
	stopOnce sync.Once
	stopErr  error
	stopTook time.Duration

	// Shared by every service started on the same names and database (see startService).
	*e2eEnv
}

// e2eEnv is what outlives one service: the broker names, the database, the admin
// connection, the publisher and the dead letters drained so far.
type e2eEnv struct {
	db   *bun.DB
	conn *amqp091.Connection
	pub  *amqpadapter.Publisher

	mu     sync.Mutex
	ch     *amqp091.Channel // for basic.get on the dead-letter queue
	dead   []amqp091.Delivery
	nextID int
}

// mustService starts the service in the `run` roles (migrate, API, consumer) on a fresh
// database and uniquely named exchanges and queues, with short retry delays, and waits
// until it is ready and its consumer connected. edit, when not nil, changes the
// configuration first. The service is stopped when the test ends; the test fails if
// runService returns an error or does not return within 20 s.
func mustService(t *testing.T, edit func(*Config)) *testService {
	t.Helper()
	cfg, env := mustE2EEnv(t, edit)
	return startService(t, cfg, env)
}

// mustE2EEnv prepares what mustService starts the service on: the configuration (edited
// by edit when not nil), a fresh database, uniquely named exchanges and queues (deleted
// when the test ends) and a publisher.
func mustE2EEnv(t *testing.T, edit func(*Config)) (Config, *e2eEnv) {
	t.Helper()
	cfg, err := LoadConfig()
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	env := &e2eEnv{}
	env.conn = mustE2EBroker(t, cfg.AMQPURL)
	cfg.DatabaseURL = pgtest.MustDatabase(t)

	suffix := make([]byte, 6)
	_, _ = rand.Read(suffix)
	name := "e2e." + hex.EncodeToString(suffix)
	cfg.AMQPExchange = name
	cfg.AMQPQueue = name
	cfg.AMQPDeadLetterExchange = name + ".dlx"
	cfg.AMQPDeadLetterQueue = name + ".dead"
	cfg.AMQPRetryExchange = name + ".retry"
	cfg.RetryDelay = 300 * time.Millisecond
	cfg.RetryLimit = 3
	cfg.BatchWait = 10 * time.Millisecond
	cfg.PprofAddr = ""
	cfg.APIToken = ""
	if edit != nil {
		edit(&cfg)
	}
	if err := cfg.validate(); err != nil {
		t.Fatalf("test configuration: %v", err)
	}
	// Registered before the service starts, so it runs after the service has stopped
	// (cleanups run last in, first out): a running consumer would declare them again.
	t.Cleanup(func() { deleteE2ETopology(t, env.conn, cfg) })

	env.db = pgtest.MustOpen(t, cfg.DatabaseURL)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	env.pub, err = amqpadapter.DialPublisher(ctx, cfg.AMQPURL, nil)
	if err != nil {
		t.Fatalf("dial publisher: %v", err)
	}
	t.Cleanup(func() { _ = env.pub.Close() })
	return cfg, env
}

// startService runs runService with cfg on a new listener, sharing env (the same
// database and broker names) with the services started before it, and waits until it is
// ready.
func startService(t *testing.T, cfg Config, env *e2eEnv) *testService {
	t.Helper()
	return startServiceAs(t, cfg, env, roles{migrate: true, api: true, consume: true})
}

// startServiceAs is startService for a process of the roles r: one that does not
// consume is ready without a consumer.
func startServiceAs(t *testing.T, cfg Config, env *e2eEnv, r roles) *testService {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &e2eLogBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	s := &testService{
		t:      t,
		cfg:    cfg,
		base:   "http://" + ln.Addr().String(),
		client: &http.Client{Timeout: 5 * time.Second},
		logs:   logs,
		cancel: cancel,
		done:   make(chan error, 1),
		e2eEnv: env,
	}
	log := NewLogger(logs, "text", slog.LevelDebug)
	go func() { s.done <- runService(ctx, cfg, log, r, ln) }()
	t.Cleanup(func() {
		s.client.CloseIdleConnections()
		if err := s.stop(); err != nil {
			t.Errorf("service %s: %v", s.base, err)
		}
		_ = ln.Close()
		if t.Failed() {
			t.Logf("logs of the service at %s:\n%s", s.base, logs.String())
		}
	})
	s.waitReady(t, r.consume)
	return s
}

// stop cancels the service's context and waits for runService to return: an error when
// it returns one or takes longer than e2eStopWait. Later calls return the same result.
func (s *testService) stop() error {
	s.stopOnce.Do(func() {
		start := time.Now()
		s.cancel()
		timer := time.NewTimer(e2eStopWait)
		defer timer.Stop()
		select {
		case err := <-s.done:
			s.stopTook = time.Since(start)
			if err != nil {
				s.stopErr = fmt.Errorf("runService returned %w", err)
			}
		case <-timer.C:
			s.stopTook = time.Since(start)
			s.stopErr = fmt.Errorf("runService did not return within %s of cancellation", e2eStopWait)
		}
	})
	return s.stopErr
}

// waitReady polls /readyz until it answers 200, with the consumer connected when the
// process has one.
func (s *testService) waitReady(t *testing.T, consumer bool) {
	t.Helper()
	var last string
	deadline := time.Now().Add(e2eWait)
	for {
		select {
		case err := <-s.done:
			s.done <- err // for stop
			t.Fatalf("runService returned before the service was ready: %v\nlogs:\n%s", err, s.logs.String())
		default:
		}
		status, body, err := s.tryGet("/readyz")
		if err == nil {
			var ready struct {
				Consumer *string `json:"consumer"`
			}
			if status == http.StatusOK && json.Unmarshal(body, &ready) == nil &&
				(!consumer || ready.Consumer != nil && *ready.Consumer == amqpadapter.StateConnected) {
				return
			}
			last = fmt.Sprintf("%d %s", status, body)
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			t.Fatalf("service not ready after %s; last /readyz: %s", e2eWait, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// mustE2EBroker connects to the broker at url for declaring and inspecting. It skips
// the test when the broker is unreachable, unless CI=true, where that is a failure.
func mustE2EBroker(t *testing.T, url string) *amqp091.Connection {
	t.Helper()
	conn, err := amqp091.DialConfig(url, amqp091.Config{Dial: amqp091.DefaultDial(3 * time.Second)})
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("RabbitMQ is unreachable under CI=true: %v", err)
		}
		t.Skipf("RabbitMQ is unreachable, skipping: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// deleteE2ETopology deletes the test's queues and exchanges.
func deleteE2ETopology(t *testing.T, conn *amqp091.Connection, cfg Config) {
	ch, err := conn.Channel()
	if err != nil {
		t.Logf("cleanup of the broker topology: %v", err)
		return
	}
	defer ch.Close()
	for _, q := range []string{cfg.AMQPQueue, cfg.AMQPDeadLetterQueue, cfg.AMQPRetryExchange} {
		if _, err := ch.QueueDelete(q, false, false, false); err != nil {
			t.Logf("cleanup: delete queue %s: %v", q, err)
			return
		}
	}
	for _, x := range []string{cfg.AMQPExchange, cfg.AMQPDeadLetterExchange, cfg.AMQPRetryExchange} {
		if err := ch.ExchangeDelete(x, false, false); err != nil {
			t.Logf("cleanup: delete exchange %s: %v", x, err)
			return
		}
	}
}

// e2eLogBuffer collects a service's logs, shown only when the test fails.
type e2eLogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *e2eLogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *e2eLogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	const keep = 256 << 10
	if b.buf.Len() > keep {
		return "…(earlier logs cut)…\n" + string(b.buf.Bytes()[b.buf.Len()-keep:])
	}
	return b.buf.String()
}

// ---- publishing ----

// routingKeyOf is the routing key the built-in producer uses for e.
func routingKeyOf(e domain.Event) string { return "movement." + string(e.Kind) }

// publish sends events, each encoded with EncodeEvent, in order, and waits for the confirms.
func (s *testService) publish(t *testing.T, events ...domain.Event) {
	t.Helper()
	msgs := make([]amqpadapter.Message, len(events))
	for i, e := range events {
		msgs[i] = amqpadapter.Message{RoutingKey: routingKeyOf(e), Publishing: amqp091.Publishing{Body: amqpadapter.EncodeEvent(e)}}
	}
	s.publishMessages(t, msgs)
}

// publishRaw sends body as it is with routingKey.
func (s *testService) publishRaw(t *testing.T, routingKey string, body []byte) {
	t.Helper()
	s.publishMessages(t, []amqpadapter.Message{{RoutingKey: routingKey, Publishing: amqp091.Publishing{Body: body}}})
}

func (s *testService) publishMessages(t *testing.T, msgs []amqpadapter.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.pub.PublishBatch(ctx, s.cfg.AMQPExchange, msgs); err != nil {
		t.Fatalf("publish %d messages: %v", len(msgs), err)
	}
}

// ---- HTTP ----

func (s *testService) tryGet(path string) (int, []byte, error) {
	resp, err := s.client.Get(s.base + path)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// get returns the status and body of GET path.
func (s *testService) get(t *testing.T, path string) (int, []byte) {
	t.Helper()
	status, body, err := s.tryGet(path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return status, body
}

// getJSON requires GET path to answer 200 and decodes its body into out.
func (s *testService) getJSON(t *testing.T, path string, out any) {
	t.Helper()
	status, body := s.get(t, path)
	if status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, status, body)
	}
	if err := json.Unmarshal(body, out); err != nil {
		t.Fatalf("GET %s: decode %s: %v", path, body, err)
	}
}

// waitHTTP polls GET path until ok accepts the answer, for at most timeout.
func (s *testService) waitHTTP(t *testing.T, timeout time.Duration, path string, ok func(status int, body []byte) bool) []byte {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		status, body := s.get(t, path)
		if ok(status, body) {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: still %d %s after %s", path, status, body, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// metric returns the value of the sample of name with exactly the given labels (as
// written in the exposition, e.g. `{reason="conflict"}`, or "" for none) from /metrics;
// 0 when absent.
func (s *testService) metric(t *testing.T, name, labels string) float64 {
	t.Helper()
	status, body := s.get(t, "/metrics")
	if status != http.StatusOK {
		t.Fatalf("GET /metrics: %d", status)
	}
	prefix := name + labels + " "
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		v, err := strconv.ParseFloat(strings.Fields(line[len(prefix):])[0], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		return v
	}
	return 0
}

// waitMetric polls metric until it is at least want.
func (s *testService) waitMetric(t *testing.T, name, labels string, want float64) {
	t.Helper()
	e2eWaitFor(t, fmt.Sprintf("%s%s >= %v", name, labels, want), func() bool { return s.metric(t, name, labels) >= want })
}

// ---- dead letters ----

// deadLetters drains the dead-letter queue and returns every dead letter seen so far.
func (s *testService) deadLetters(t *testing.T) []amqp091.Delivery {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil || s.ch.IsClosed() {
		ch, err := s.conn.Channel()
		if err != nil {
			t.Fatalf("open a channel for the dead letters: %v", err)
		}
		s.ch = ch
	}
	for {
		d, ok, err := s.ch.Get(s.cfg.AMQPDeadLetterQueue, true)
		if err != nil {
			t.Fatalf("get from %s: %v", s.cfg.AMQPDeadLetterQueue, err)
		}
		if !ok {
			break
		}
		s.dead = append(s.dead, d)
	}
	return append([]amqp091.Delivery(nil), s.dead...)
}

// waitDeadLetter polls the dead-letter queue until a dead letter with this body arrives.
func (s *testService) waitDeadLetter(t *testing.T, body []byte) amqp091.Delivery {
	t.Helper()
	var found amqp091.Delivery
	e2eWaitFor(t, fmt.Sprintf("dead letter %q", clipBody(body)), func() bool {
		for _, d := range s.deadLetters(t) {
			if bytes.Equal(d.Body, body) {
				found = d
				return true
			}
		}
		return false
	})
	return found
}

// barrier publishes an invalid message and waits for its dead letter. Every message
// whose batch was decided before the barrier was published (for instance, one whose
// effect a metric already shows) then has its dead letter, if any, in s.deadLetters:
// the consumer settles its batches one after the other.
func (s *testService) barrier(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	s.nextID++
	body := fmt.Appendf(nil, "e2e barrier %d %s", s.nextID, s.cfg.AMQPQueue)
	s.mu.Unlock()
	s.publishRaw(t, "movement.arrival", body)
	s.waitDeadLetter(t, body)
}

// noDeadLetter fails when a dead letter carries the encoding of e.
func (s *testService) noDeadLetter(t *testing.T, e domain.Event) {
	t.Helper()
	body := amqpadapter.EncodeEvent(e)
	for _, d := range s.deadLetters(t) {
		if bytes.Equal(d.Body, body) {
			t.Errorf("event %s was dead-lettered: reason %v, detail %v", e.ID, d.Headers[amqpadapter.ReasonHeader], d.Headers[amqpadapter.DetailHeader])
		}
	}
}

func headerString(d amqp091.Delivery, key string) string {
	v, _ := d.Headers[key].(string)
	return v
}

func clipBody(b []byte) string {
	if len(b) > 80 {
		return string(b[:80]) + "…"
	}
	return string(b)
}

// queueDepth returns the number of messages ready in the service's queue.
func (s *testService) queueDepth(t *testing.T) int {
	t.Helper()
	ch, err := s.conn.Channel() // a failed passive declare closes its channel
	if err != nil {
		t.Fatalf("open a channel: %v", err)
	}
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(s.cfg.AMQPQueue, true, false, false, false, nil)
	if err != nil {
		t.Fatalf("queue %s: %v", s.cfg.AMQPQueue, err)
	}
	return q.Messages
}

// ---- database ----

// count runs a SELECT count(*) query.
func (s *testService) count(t *testing.T, query string, args ...any) int {
	t.Helper()
	var n int
	if err := s.db.QueryRowContext(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// dbStock returns the stock row of (w, p) from the database; ok is false when there is none.
func (s *testService) dbStock(t *testing.T, w domain.WarehouseID, p domain.ProductID) (qty int64, ok bool) {
	t.Helper()
	err := s.db.QueryRowContext(context.Background(),
		"SELECT quantity FROM stock WHERE warehouse_id = ? AND product_id = ?", w.String(), p.String()).Scan(&qty)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false
	}
	if err != nil {
		t.Fatalf("select stock: %v", err)
	}
	return qty, true
}

// waitDBStock polls the database until the stock of (w, p) is want.
func (s *testService) waitDBStock(t *testing.T, w domain.WarehouseID, p domain.ProductID, want int64) {
	t.Helper()
	var got int64
	var ok bool
	e2eWaitForMsg(t, func() bool {
		got, ok = s.dbStock(t, w, p)
		return ok && got == want
	}, func() string {
		return fmt.Sprintf("stock %s/%s = %d in the database (have %d, row exists %v)", w, p, want, got, ok)
	})
}

// dbEvents counts the events rows of movement m.
func (s *testService) dbEvents(t *testing.T, m domain.MovementID) int {
	t.Helper()
	return s.count(t, "SELECT count(*) FROM events WHERE movement_id = ?", m.String())
}

// waitDBStatus polls the movements table until movement m has status want.
func (s *testService) waitDBStatus(t *testing.T, m domain.MovementID, want string) {
	t.Helper()
	var got string
	e2eWaitForMsg(t, func() bool {
		err := s.db.QueryRowContext(context.Background(), "SELECT status FROM movements WHERE movement_id = ?", m.String()).Scan(&got)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			t.Fatalf("select movement: %v", err)
		}
		return got == want
	}, func() string { return fmt.Sprintf("movement %s %s in the database (have %q)", m, want, got) })
}

// ---- polling ----

// e2eWaitFor polls cond until it holds, for at most e2eWait.
func e2eWaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	e2eWaitForMsg(t, cond, func() string { return what })
}

func e2eWaitForMsg(t *testing.T, cond func() bool, what func() string) {
	t.Helper()
	deadline := time.Now().Add(e2eWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", e2eWait, what())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// mustExecSQL runs a statement on the test's database.
func mustExecSQL(t *testing.T, db *bun.DB, query string) {
	t.Helper()
	if _, err := db.ExecContext(context.Background(), query); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}
