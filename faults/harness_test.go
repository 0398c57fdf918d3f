//go:build faults

package faults_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx" for the probe connection
	amqp091 "github.com/rabbitmq/amqp091-go"

	amqpadapter "warehouse/adapters/amqp"
	"warehouse/adapters/postgres"
	"warehouse/domain"
	"warehouse/loadgen"
	"warehouse/ports/portstest"
)

// Settings every scenario shares. The consumer runs with its defaults otherwise
// (BATCH_SIZE 2000, AMQP_PREFETCH 4000, RETRY_LIMIT 10).
const (
	scenarioTimeout = 100 * time.Second
	retryDelay      = 500 * time.Millisecond
	deliveryLimit   = 20
	shutdownTimeout = 10 * time.Second

	// The default load: ~2500 events/s for ~3 s, so that faults land while events flow.
	loadEvents = 8000
	loadBatch  = 100
	loadPace   = 40 * time.Millisecond

	pollEvery = 50 * time.Millisecond
)

// ---------------------------------------------------------------------------------------
// Scenario: one test's database, exchange and queues on the private instances.

type scenario struct {
	t     *testing.T
	name  string
	env   *suite
	ctx   context.Context
	dir   string // logs of this test
	dbURL string
	// amqpURL is the broker of every connection: the private node, or a cluster's nodes.
	amqpURL string
	// ctl runs rabbitmqctl against a node of the broker that answers.
	ctl func(ctx context.Context, args ...string) (string, error)
	// extraEnv is added to every child's environment (the last of a name wins).
	extraEnv []string
	topo     amqpadapter.Topology
	probe    *sql.DB // application_name=faults, so pg_terminate_backend spares it

	mu        sync.Mutex
	consumers []*consumer
	amqpConn  *amqp091.Connection // for passive declares; redialed when lost
	failures  []string            // what errorf and fatalf reported, repeated at the end
}

// newScenario creates a database (with `warehouse migrate up`) and declares a topology
// of unique names, bounded by scenarioTimeout.
func newScenario(t *testing.T, name string) *scenario {
	t.Helper()
	return newScenarioOn(t, name, scenarioOn{})
}

// scenarioOn names other instances than the private PostgreSQL and RabbitMQ node.
type scenarioOn struct {
	dbURL   func(db string) string // the URL of a database, given its name
	amqpURL string
	ctl     func(ctx context.Context, args ...string) (string, error)
}

// newScenarioOn is newScenario on the instances of on; a zero field means the private
// instance.
func newScenarioOn(t *testing.T, name string, on scenarioOn) *scenario {
	t.Helper()
	e := mustEnv(t)
	dbURL := on.dbURL
	if dbURL == nil {
		dbURL = e.pg.url
	}
	if on.amqpURL == "" {
		on.amqpURL, on.ctl = e.rmq.url(), e.rmq.ctl
	}
	ctx, cancel := context.WithTimeout(context.Background(), scenarioTimeout)
	t.Cleanup(cancel)
	suffix := randHex(4)
	queue := "faults." + name + "." + suffix
	s := &scenario{
		t: t, name: name, env: e, ctx: ctx,
		dir:   filepath.Join(e.dir, "tests", name+"-"+suffix),
		dbURL: dbURL("faults_" + name + "_" + suffix), amqpURL: on.amqpURL, ctl: on.ctl,
		topo: amqpadapter.DefaultTopology(queue, queue, retryDelay, deliveryLimit),
	}
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Registered first, so it runs last: after the consumers are gone, show what they said.
	t.Cleanup(func() {
		if t.Failed() {
			s.dumpLogs()
			s.repeatFailures()
		}
		s.mu.Lock()
		if s.amqpConn != nil {
			_ = s.amqpConn.Close()
		}
		s.mu.Unlock()
	})

	migrate := exec.CommandContext(ctx, e.bin, "migrate", "up")
	migrate.Dir, migrate.Env = s.dir, s.childEnv("127.0.0.1:0")
	if out, err := migrate.CombinedOutput(); err != nil {
		t.Fatalf("warehouse migrate up: %v\n%s", err, out)
	}
	db, err := sql.Open("pgx", s.dbURL+"&application_name=faults")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(4)
	t.Cleanup(func() { _ = db.Close() })
	s.probe = db

	// Declared before publishing, so that nothing published before the consumer's first
	// start is unroutable; the consumer declares the same arguments.
	ch := s.channel()
	defer ch.Close()
	if err := amqpadapter.Declare(ch, s.topo); err != nil {
		t.Fatalf("declare topology: %v", err)
	}
	return s
}

// childEnv is the whole environment of a warehouse child process: nothing inherited but
// PATH, and it runs in s.dir, where there is no .env.
func (s *scenario) childEnv(consumerAddr string) []string {
	httpPort, _ := freePort()
	return append([]string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + s.dir,
		"DATABASE_URL=" + s.dbURL,
		"AMQP_URL=" + s.amqpURL,
		"AMQP_EXCHANGE=" + s.topo.Exchange,
		"AMQP_QUEUE=" + s.topo.Queue,
		"AMQP_DELIVERY_LIMIT=" + strconv.Itoa(deliveryLimit),
		"RETRY_DELAY=" + retryDelay.String(),
		"SHUTDOWN_TIMEOUT=" + shutdownTimeout.String(),
		"LOG_FORMAT=json",
		"LOG_LEVEL=info",
		"CONSUMER_HTTP_ADDR=" + consumerAddr,
		"HTTP_ADDR=127.0.0.1:" + strconv.Itoa(httpPort),
	}, s.extraEnv...)
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// channel opens a channel on the scenario's own broker connection, redialing it when the
// broker dropped it.
func (s *scenario) channel() *amqp091.Channel {
	s.t.Helper()
	ch, err := s.tryChannel()
	if err != nil {
		s.fatalf("broker channel: %v", err)
	}
	return ch
}

func (s *scenario) tryChannel() (*amqp091.Channel, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.amqpConn == nil || s.amqpConn.IsClosed() {
		ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
		defer cancel()
		conn, err := amqpadapter.Dial(ctx, s.amqpURL, "faults") // a cluster's next node when one is down
		if err != nil {
			return nil, err
		}
		s.amqpConn = conn
	}
	return s.amqpConn.Channel()
}

// queueState is a passive declare: ready messages and consumers; exists is false when
// the queue is gone.
func (s *scenario) queueState(name string) (ready, consumers int, exists bool, err error) {
	ch, err := s.tryChannel()
	if err != nil {
		return 0, 0, false, err
	}
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(name, true, false, false, false, nil)
	var ae *amqp091.Error
	if errors.As(err, &ae) && ae.Code == amqp091.NotFound {
		return 0, 0, false, nil
	}
	if err != nil {
		return 0, 0, false, err
	}
	return q.Messages, q.Consumers, true, nil
}

// queueMessages asks rabbitmqctl for ready + unacknowledged messages per queue, which a
// passive declare does not tell.
func (s *scenario) queueMessages() (map[string]int, error) {
	out, err := s.ctl(s.ctx, "list_queues", "name", "messages", "--formatter", "json")
	if err != nil {
		return nil, fmt.Errorf("%w: %s", err, lastLines(out, 5))
	}
	var rows []struct {
		Name     string `json:"name"`
		Messages int    `json:"messages"`
	}
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		return nil, fmt.Errorf("list_queues output %q: %w", lastLines(out, 3), err)
	}
	m := make(map[string]int, len(rows))
	for _, r := range rows {
		m[r.Name] = r.Messages
	}
	return m, nil
}

// waitUntil polls cond until it holds, failing the test when the scenario's deadline
// comes first.
func (s *scenario) waitUntil(what string, cond func() bool) {
	s.t.Helper()
	for !cond() {
		select {
		case <-s.ctx.Done():
			s.fatalf("timed out waiting until %s", what)
		case <-time.After(pollEvery):
		}
	}
}

// sleep waits d unless the scenario's deadline comes first.
func (s *scenario) sleep(d time.Duration) {
	select {
	case <-s.ctx.Done():
	case <-time.After(d):
	}
}

// eventCount is the number of stored events, -1 when the database does not answer.
func (s *scenario) eventCount() int64 {
	ctx, cancel := context.WithTimeout(s.ctx, time.Second)
	defer cancel()
	var n int64
	if err := s.probe.QueryRowContext(ctx, "SELECT count(*) FROM events").Scan(&n); err != nil {
		return -1
	}
	return n
}

// ---------------------------------------------------------------------------------------
// Child processes

// procs are the running children, killed by teardown whatever happens to the tests.
var procs = struct {
	sync.Mutex
	m map[*os.Process]struct{}
}{m: map[*os.Process]struct{}{}}

func killAll() {
	procs.Lock()
	defer procs.Unlock()
	for p := range procs.m {
		_ = p.Kill()
	}
}

// consumer is one `warehouse consume` process, restartable on the same health address and
// log file.
type consumer struct {
	s       *scenario
	name    string
	amqpURL string // AMQP_URL: the broker, or a proxy in front of it
	addr    string // CONSUMER_HTTP_ADDR (HTTP_ADDR for run)
	command string // the warehouse subcommand: consume (the default) or run
	logPath string
	starts  int

	mu    sync.Mutex
	cmd   *exec.Cmd
	done  chan struct{} // closed when the current process has exited
	state *os.ProcessState
}

// startConsumer starts a consumer and waits until its /readyz answers 200.
func (s *scenario) startConsumer(name string) *consumer {
	s.t.Helper()
	return s.startConsumerVia(name, s.amqpURL)
}

// startConsumerVia starts a consumer that reaches the broker at amqpURL.
func (s *scenario) startConsumerVia(name, amqpURL string) *consumer {
	s.t.Helper()
	return s.startProcess(name, "consume", amqpURL)
}

// startProcess starts `warehouse command` (consume or run) reaching the broker at
// amqpURL and waits until its /readyz answers 200.
func (s *scenario) startProcess(name, command, amqpURL string) *consumer {
	s.t.Helper()
	port, err := freePort()
	if err != nil {
		s.fatalf("%v", err)
	}
	c := &consumer{s: s, name: name, amqpURL: amqpURL, command: command, addr: fmt.Sprintf("127.0.0.1:%d", port), logPath: filepath.Join(s.dir, name+".log")}
	s.mu.Lock()
	s.consumers = append(s.consumers, c)
	s.mu.Unlock()
	s.t.Cleanup(func() { c.kill() })
	c.start()
	c.waitReady()
	return c
}

// start starts (or restarts) the process, appending to its log.
func (c *consumer) start() {
	t := c.s.t
	t.Helper()
	f, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	c.starts++
	fmt.Fprintf(f, "=== start %d of %s at %s ===\n", c.starts, c.name, time.Now().Format(time.RFC3339Nano))
	command, env := "consume", append(c.s.childEnv(c.addr), "AMQP_URL="+c.amqpURL) // the last one wins
	if c.command == "run" {
		// run serves the API, /readyz included, on HTTP_ADDR
		command, env = "run", append(env, "HTTP_ADDR="+c.addr)
	}
	cmd := exec.Command(c.s.env.bin, command)
	cmd.Dir, cmd.Env = c.s.dir, env
	cmd.Stdout, cmd.Stderr = f, f
	// Dies with the test binary, whatever kills it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		t.Fatalf("start %s: %v", c.name, err)
	}
	procs.Lock()
	procs.m[cmd.Process] = struct{}{}
	procs.Unlock()
	done := make(chan struct{})
	c.mu.Lock()
	c.cmd, c.done, c.state = cmd, done, nil
	c.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		_ = f.Close()
		procs.Lock()
		delete(procs.m, cmd.Process)
		procs.Unlock()
		c.mu.Lock()
		c.state = cmd.ProcessState
		c.mu.Unlock()
		close(done)
	}()
}

// signal sends sig to the running process.
func (c *consumer) signal(sig os.Signal) {
	c.s.t.Helper()
	c.mu.Lock()
	cmd := c.cmd
	c.mu.Unlock()
	if err := cmd.Process.Signal(sig); err != nil {
		c.s.fatalf("signal %v to %s: %v", sig, c.name, err)
	}
}

// waitExit waits at most d for the process to exit and returns its state (nil on timeout).
func (c *consumer) waitExit(d time.Duration) *os.ProcessState {
	c.mu.Lock()
	done := c.done
	c.mu.Unlock()
	select {
	case <-done:
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.state
	case <-time.After(d):
		return nil
	}
}

// alive reports whether the current process still runs.
func (c *consumer) alive() bool {
	c.mu.Lock()
	done := c.done
	c.mu.Unlock()
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// kill kills the process, if it runs, and waits for it.
func (c *consumer) kill() {
	c.mu.Lock()
	cmd, done := c.cmd, c.done
	c.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
}

var httpClient = &http.Client{Timeout: time.Second}

// readyStatus is the HTTP status of /readyz, 0 when nothing answers.
func (c *consumer) readyStatus() int {
	resp, err := httpClient.Get("http://" + c.addr + "/readyz")
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}

// readyBody returns the body of /readyz, "" when it cannot.
func (c *consumer) readyBody() string {
	resp, err := httpClient.Get("http://" + c.addr + "/readyz")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

func (c *consumer) waitReady() {
	c.s.t.Helper()
	c.s.waitUntil(c.name+" answers /readyz with 200", func() bool {
		if !c.alive() {
			c.s.fatalf("%s exited during start-up:\n%s", c.name, tail(c.logPath, 20))
		}
		return c.readyStatus() == http.StatusOK
	})
}

// metric reads one unlabelled counter from /metrics; -1 when it cannot.
func (c *consumer) metric(name string) float64 {
	resp, err := httpClient.Get("http://" + c.addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

// logRecord is the part of a JSON log line the tests read.
type logRecord struct {
	Time  time.Time `json:"time"`
	Level string    `json:"level"`
	Msg   string    `json:"msg"`
	Err   string    `json:"err"`
}

// logs returns the JSON records of every start of c, in order.
func (c *consumer) logs() []logRecord {
	f, err := os.Open(c.logPath)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []logRecord
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var r logRecord
		if json.Unmarshal(sc.Bytes(), &r) == nil && r.Msg != "" {
			out = append(out, r)
		}
	}
	return out
}

// firstLog returns the time of the first record with msg after t0.
func (c *consumer) firstLog(msg string, after time.Time) (time.Time, bool) {
	for _, r := range c.logs() {
		if r.Msg == msg && r.Time.After(after) {
			return r.Time, true
		}
	}
	return time.Time{}, false
}

// countLevel counts the records of level.
func (c *consumer) countLevel(level string) int {
	n := 0
	for _, r := range c.logs() {
		if r.Level == level {
			n++
		}
	}
	return n
}

// grep counts the log lines that contain any of words, case-insensitively, and returns
// the first of them.
func (c *consumer) grep(words ...string) (n int, first string) {
	raw, err := os.ReadFile(c.logPath)
	if err != nil {
		return 0, ""
	}
	for _, line := range strings.Split(string(raw), "\n") {
		lower := strings.ToLower(line)
		for _, w := range words {
			if strings.Contains(lower, strings.ToLower(w)) {
				if n == 0 {
					first = line
				}
				n++
				break
			}
		}
	}
	return n, first
}

// errorf marks the test failed, as t.Errorf does, and keeps the message for
// repeatFailures.
func (s *scenario) errorf(format string, args ...any) {
	s.t.Helper()
	msg := fmt.Sprintf(format, args...)
	s.keep(msg)
	s.t.Error(msg)
}

// fatalf is errorf that stops the test, as t.Fatalf does.
func (s *scenario) fatalf(format string, args ...any) {
	s.t.Helper()
	msg := fmt.Sprintf(format, args...)
	s.keep(msg)
	s.t.Fatal(msg)
}

func (s *scenario) keep(msg string) {
	s.mu.Lock()
	s.failures = append(s.failures, msg)
	s.mu.Unlock()
}

// repeatFailures logs again, after the processes' logs, why the test failed: a CI
// report that shows only the end of the output then still shows the reason.
func (s *scenario) repeatFailures() {
	s.mu.Lock()
	failures := append([]string(nil), s.failures...)
	s.mu.Unlock()
	if len(failures) == 0 {
		s.t.Logf("--- %s failed: see the messages above the processes' logs ---", s.t.Name())
		return
	}
	for i, f := range failures {
		if len(f) > 600 {
			failures[i] = f[:600] + " …"
		}
	}
	s.t.Logf("--- %s failed because ---\n%s", s.t.Name(), strings.Join(failures, "\n"))
}

func (s *scenario) dumpLogs() {
	s.mu.Lock()
	cs := append([]*consumer(nil), s.consumers...)
	s.mu.Unlock()
	for _, c := range cs {
		s.t.Logf("--- last lines of %s (%s) ---\n%s", c.name, c.logPath, tail(c.logPath, 40))
	}
}

// ---------------------------------------------------------------------------------------
// A TCP proxy that can hold back what one side sends.

// proxy forwards connections to target. While held, the bytes of the held side (the
// clients', or with holdServer the target's) are read but not forwarded; cut closes
// every connection, dropping them.
type proxy struct {
	ln         net.Listener
	target     string
	holdServer bool
	held       atomic.Bool
	mu         sync.Mutex
	conns      []net.Conn
}

// startProxy starts a proxy to target, closed when the test ends.
func startProxy(t *testing.T, target string, holdServer bool) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, holdServer: holdServer}
	go p.accept()
	t.Cleanup(func() { _ = ln.Close(); p.cut() })
	return p
}

// port is the proxy's own port.
func (p *proxy) port() int { return p.ln.Addr().(*net.TCPAddr).Port }

// mustProxy starts a proxy to the private broker that holds back what clients send (acks
// among them), and returns it with its AMQP URL.
func (s *scenario) mustProxy() (*proxy, string) {
	s.t.Helper()
	p := startProxy(s.t, fmt.Sprintf("127.0.0.1:%d", s.env.rmq.port), false)
	return p, fmt.Sprintf("amqp://guest:guest@%s/", p.ln.Addr())
}

func (p *proxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		upstream, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			_ = client.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, client, upstream)
		p.mu.Unlock()
		go p.pipe(upstream, client, !p.holdServer)
		go p.pipe(client, upstream, p.holdServer)
	}
}

// pipe copies src to dst; when holdable, it waits while the proxy is held before writing.
func (p *proxy) pipe(dst, src net.Conn, holdable bool) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			for holdable && p.held.Load() {
				time.Sleep(time.Millisecond)
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// cut closes every proxied connection; held bytes are never delivered.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

// ---------------------------------------------------------------------------------------
// Load

// stream is a consistent sequence of events with what the ledger must hold once it has
// every one of them: replayed in stream order through domain.Ledger, no event is refused
// but the duplicates the generator injects.
type stream struct {
	events     []domain.Event
	msgs       []amqpadapter.Message
	stored     int64 // events the ledger stores (duplicates left out)
	duplicates int64
	stock      map[domain.StockKey]int64
	warehouses []domain.WarehouseID
}

// newStream generates n events over 3 warehouses and 2 products (6 hot stock rows):
// supplier arrivals and transfers between them, departures never exceeding the stock of
// the stream so far, some arrivals before their departure, some lossy, and a share of
// re-sent events.
func newStream(t *testing.T, n int, duplicateShare float64) *stream {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	g := loadgen.NewGenerator(loadgen.Options{
		Warehouses: 3, Products: 2, Seed: seed,
		LossShare: 0.1, DuplicateShare: duplicateShare, OutOfOrderShare: 0.1,
		Start: time.Now().UTC().Add(-30 * 24 * time.Hour).Truncate(time.Second), Interval: time.Minute,
	})
	st := &stream{warehouses: g.Warehouses()}
	ledger := domain.NewLedger()
	for i := range n {
		e := g.Next()
		switch err := ledger.Apply(e); {
		case err == nil:
			st.stored++
		case errors.Is(err, domain.ErrDuplicate):
			st.duplicates++
		default:
			t.Fatalf("generated stream (seed %d) is not consistent at event %d: %v", seed, i, err)
		}
		st.add(e)
	}
	st.stock = g.Expected()
	for k, q := range st.stock {
		if got, _ := ledger.Stock(k); got != q {
			t.Fatalf("generator (seed %d) expects %d of %v, the ledger replay %d", seed, q, k, got)
		}
	}
	if stats := g.Stats(); int64(stats.Events-stats.Duplicates) != st.stored {
		t.Fatalf("generator (seed %d) counts %d new events, the ledger replay %d", seed, stats.Events-stats.Duplicates, st.stored)
	}
	t.Logf("stream: seed %d, %d events, %d to store, %d duplicates, %d stock rows", seed, n, st.stored, st.duplicates, len(st.stock))
	return st
}

// supplyStream is n supplier arrivals spread over keys: events that change nothing but
// their own rows, for loads that may be partly lost.
func supplyStream(n int, keys []domain.StockKey) *stream {
	st := &stream{stock: map[domain.StockKey]int64{}}
	for i := range n {
		k := keys[i%len(keys)]
		e := portstest.Supply(k.Warehouse, k.Product, int64(1+i%7))
		st.add(e)
		st.stored++
		st.stock[k] += e.Quantity
	}
	return st
}

func (st *stream) add(e domain.Event) {
	st.events = append(st.events, e)
	st.msgs = append(st.msgs, amqpadapter.Message{
		RoutingKey: "movement." + string(e.Kind),
		Publishing: amqp091.Publishing{MessageId: e.ID, Body: amqpadapter.EncodeEvent(e), Timestamp: time.Now().UTC()},
	})
}

func (st *stream) stockTotal() int64 {
	var n int64
	for _, q := range st.stock {
		n += q
	}
	return n
}

// loader publishes messages in batches with confirms: the first burst ones at once, the
// rest paced. It publishes a batch again (on a new connection) until it is confirmed: a
// re-published message is a duplicate the ledger ignores.
type loader struct {
	s         *scenario
	msgs      []amqpadapter.Message
	batch     int
	burst     int
	pace      time.Duration
	confirmed atomic.Int64
	failures  atomic.Int64 // failed publications of a batch, each followed by a re-publication
	lastErr   atomic.Value // string
	done      chan struct{}
	err       error
	cancel    context.CancelFunc
}

// publish starts publishing msgs in batches of batch: the first burst without a pause,
// then one batch every pace.
func (s *scenario) publish(msgs []amqpadapter.Message, batch, burst int, pace time.Duration) *loader {
	ctx, cancel := context.WithCancel(s.ctx)
	l := &loader{s: s, msgs: msgs, batch: batch, burst: burst, pace: pace, done: make(chan struct{}), cancel: cancel}
	go l.run(ctx)
	s.t.Cleanup(func() { cancel(); <-l.done })
	return l
}

func (l *loader) run(ctx context.Context) {
	defer close(l.done)
	var pub *amqpadapter.Publisher
	defer func() {
		if pub != nil {
			_ = pub.Close()
		}
	}()
	wait := 100 * time.Millisecond
	backoff := func(err error) {
		l.failures.Add(1)
		l.lastErr.Store(err.Error())
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
	for i := 0; i < len(l.msgs); {
		if err := ctx.Err(); err != nil {
			l.err = err
			return
		}
		if pub == nil {
			dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			p, err := amqpadapter.DialPublisher(dctx, l.s.amqpURL, nil)
			cancel()
			if err != nil {
				backoff(err)
				continue
			}
			pub = p
		}
		end := min(i+l.batch, len(l.msgs))
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := pub.PublishBatch(pctx, l.s.topo.Exchange, l.msgs[i:end])
		cancel()
		if err != nil {
			_ = pub.Close()
			pub = nil
			backoff(err)
			continue
		}
		wait = 100 * time.Millisecond
		l.confirmed.Store(int64(end))
		i = end
		if l.pace > 0 && i >= l.burst && i < len(l.msgs) {
			select {
			case <-ctx.Done():
			case <-time.After(l.pace):
			}
		}
	}
}

// waitConfirmed waits until at least n messages are confirmed.
func (l *loader) waitConfirmed(n int) {
	l.s.t.Helper()
	l.s.waitUntil(fmt.Sprintf("%d messages are confirmed", n), func() bool {
		select {
		case <-l.done:
			if l.err != nil {
				l.s.fatalf("publisher stopped: %v", l.err)
			}
		default:
		}
		return l.confirmed.Load() >= int64(n)
	})
}

// wait waits until every message is confirmed.
func (l *loader) wait() {
	l.s.t.Helper()
	select {
	case <-l.done:
	case <-l.s.ctx.Done():
		l.s.fatalf("publisher still publishing at the deadline: %d of %d confirmed, %d failed publications, last error %v",
			l.confirmed.Load(), len(l.msgs), l.failures.Load(), l.lastErr.Load())
	}
	if l.err != nil {
		l.s.fatalf("publisher: %v", l.err)
	}
}

// stop stops publishing and waits for the publisher to return.
func (l *loader) stop() {
	l.cancel()
	<-l.done
}

// ---------------------------------------------------------------------------------------
// Monitor: what the database and one consumer's /readyz say, every pollEvery.

type sample struct {
	at      time.Time
	count   int64 // stored events; grows with every commit that stores one
	countOK bool
	ready   int // /readyz status, 0 when nothing answered
}

type monitor struct {
	mu      sync.Mutex
	samples []sample
	stop    func()
}

func (s *scenario) watch(c *consumer) *monitor {
	m := &monitor{}
	ctx, cancel := context.WithCancel(s.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(pollEvery)
		defer tick.Stop()
		for {
			smp := sample{at: time.Now()}
			qctx, qcancel := context.WithTimeout(ctx, 500*time.Millisecond)
			smp.countOK = s.probe.QueryRowContext(qctx, "SELECT count(*) FROM events").Scan(&smp.count) == nil
			qcancel()
			smp.ready = c.readyStatus()
			m.mu.Lock()
			m.samples = append(m.samples, smp)
			m.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	m.stop = func() { cancel(); <-done }
	s.t.Cleanup(m.stop)
	return m
}

func (m *monitor) snapshot() []sample {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]sample(nil), m.samples...)
}

// commitAfter is how long after t0 the first commit came: the first sample whose event
// count exceeds the last one read at or before t0.
func (m *monitor) commitAfter(t0 time.Time) (time.Duration, bool) {
	ss := m.snapshot()
	var base int64 = -1
	for _, smp := range ss {
		if !smp.at.After(t0) && smp.countOK {
			base = smp.count
		}
	}
	for _, smp := range ss {
		if smp.at.After(t0) && smp.countOK && smp.count > base {
			return smp.at.Sub(t0), true
		}
	}
	return 0, false
}

// readyAfter is how long after t0 /readyz first answered 200.
func (m *monitor) readyAfter(t0 time.Time) (time.Duration, bool) {
	for _, smp := range m.snapshot() {
		if smp.at.After(t0) && smp.ready == http.StatusOK {
			return smp.at.Sub(t0), true
		}
	}
	return 0, false
}

// notReady counts the samples in [from, to] where /readyz answered 503.
func (m *monitor) notReady(from, to time.Time) int {
	n := 0
	for _, smp := range m.snapshot() {
		if !smp.at.Before(from) && !smp.at.After(to) && smp.ready == http.StatusServiceUnavailable {
			n++
		}
	}
	return n
}

// ---------------------------------------------------------------------------------------
// Ledger check

// want is what the ledger must hold once everything published is consumed.
type want struct {
	// stored is the exact number of events, or the least when storedMax is larger.
	stored, storedMax int64
	// stock is the exact quantity of every listed row.
	stock map[domain.StockKey]int64
	// otherRows allows stock rows that stock does not list (a partly lost load).
	otherRows bool
	// deadLetters is the number of messages expected in the dead-letter queue.
	deadLetters int
}

// totals is what settle found, for the FAULT line.
type totals struct {
	events, stockTotal, rows int64
	dead, logErrors          int
	settled                  time.Duration // from the call of settle to a quiet, complete ledger
}

func (tt totals) String() string {
	return fmt.Sprintf("events=%d stock_total=%d stock_rows=%d dead=%d log_errors=%d audit=sound",
		tt.events, tt.stockTotal, tt.rows, tt.dead, tt.logErrors)
}

// settle waits until the consumers have taken everything (the ledger holds enough events,
// the queue and the retry queue are empty, acks included, and nothing changes for a
// moment), then checks the ledger: event count, stock per row, the audit, and the
// dead-letter queue.
func (s *scenario) settle(w want) totals {
	s.t.Helper()
	start := time.Now()
	if w.storedMax < w.stored {
		w.storedMax = w.stored
	}
	s.waitUntil(fmt.Sprintf("the ledger holds %d events and the queues are empty", w.stored), func() bool {
		n := s.eventCount()
		if n > w.storedMax {
			s.fatalf("DOUBLE COUNT: the ledger holds %d events, at most %d were published", n, w.storedMax)
		}
		if n < w.stored {
			return false
		}
		for _, q := range []string{s.topo.Queue, s.topo.RetryExchange} {
			if ready, _, exists, err := s.queueState(q); err != nil || !exists || ready > 0 {
				return false
			}
		}
		counts, err := s.queueMessages() // unacknowledged ones too
		if err != nil || counts[s.topo.Queue] > 0 || counts[s.topo.RetryExchange] > 0 {
			return false
		}
		time.Sleep(300 * time.Millisecond)
		return s.eventCount() == n
	})
	tt := totals{settled: time.Since(start)}

	// the audit: every stock row and movement recomputed from the events
	db, err := postgres.Open(postgres.Options{URL: s.dbURL, MaxConns: 2})
	if err != nil {
		s.fatalf("%v", err)
	}
	defer db.Close()
	actx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	report, err := postgres.NewStore(db).Audit(actx)
	if err != nil {
		s.fatalf("audit: %v", err)
	}
	tt.events, tt.stockTotal, tt.rows = report.Events, report.StockQuantity, report.StockRows
	if !report.Sound() {
		s.errorf("AUDIT NOT SOUND: %d stock mismatches (first %+v), %d negative rows, %d movement mismatches (first %v)",
			len(report.Mismatches), first(report.Mismatches), report.NegativeRows, len(report.MovementMismatches), first(report.MovementMismatches))
	}
	if report.NegativeRows != 0 {
		s.errorf("%d stock rows are negative", report.NegativeRows)
	}
	switch {
	case w.storedMax == w.stored && report.Events != w.stored:
		s.errorf("the ledger holds %d events, want exactly %d (lost %d)", report.Events, w.stored, w.stored-report.Events)
	case report.Events < w.stored || report.Events > w.storedMax:
		s.errorf("the ledger holds %d events, want %d to %d", report.Events, w.stored, w.storedMax)
	}
	s.checkStock(w)
	tt.dead = s.checkDeadLetters(w.deadLetters)
	s.mu.Lock()
	for _, c := range s.consumers {
		tt.logErrors += c.countLevel("ERROR")
	}
	s.mu.Unlock()
	return tt
}

func first[T any](xs []T) any {
	if len(xs) == 0 {
		return nil
	}
	return xs[0]
}

// checkStock compares every stock row with w.stock.
func (s *scenario) checkStock(w want) {
	s.t.Helper()
	rows, err := s.probe.QueryContext(s.ctx, "SELECT warehouse_id, product_id, quantity FROM stock")
	if err != nil {
		s.fatalf("read stock: %v", err)
	}
	defer rows.Close()
	got := map[domain.StockKey]int64{}
	for rows.Next() {
		var wh, p uuid.UUID
		var q int64
		if err := rows.Scan(&wh, &p, &q); err != nil {
			s.fatalf("%v", err)
		}
		got[domain.StockKey{Warehouse: domain.WarehouseID(wh), Product: domain.ProductID(p)}] = q
	}
	if err := rows.Err(); err != nil {
		s.fatalf("%v", err)
	}
	var bad []string
	for k, q := range w.stock {
		if g, ok := got[k]; !ok || g != q {
			bad = append(bad, fmt.Sprintf("%s/%s: stored %d (row exists: %v), want %d", k.Warehouse, k.Product, g, ok, q))
		}
	}
	if !w.otherRows {
		for k, g := range got {
			if _, ok := w.stock[k]; !ok {
				bad = append(bad, fmt.Sprintf("%s/%s: unexpected row with %d", k.Warehouse, k.Product, g))
			}
		}
	}
	sort.Strings(bad)
	if len(bad) > 0 {
		s.errorf("STOCK WRONG on %d rows:\n%s", len(bad), strings.Join(bad, "\n"))
	}
}

// checkDeadLetters compares the dead-letter queue's length with want, describing a few
// dead letters when they differ. It returns the length.
func (s *scenario) checkDeadLetters(want int) int {
	s.t.Helper()
	n, _, _, err := s.queueState(s.topo.DeadLetterQueue)
	if err != nil {
		s.fatalf("dead-letter queue: %v", err)
	}
	if n == want || want < 0 { // < 0: any number (the caller looks at them)
		return n
	}
	s.errorf("%d dead letters, want %d; the first ones:\n%s", n, want, s.peekDeadLetters(5))
	return n
}

// peekDeadLetters describes up to max dead letters and leaves them in the queue.
func (s *scenario) peekDeadLetters(max int) string {
	ch, err := s.tryChannel()
	if err != nil {
		return err.Error()
	}
	defer ch.Close() // returns what was got
	var b strings.Builder
	for range max {
		d, ok, err := ch.Get(s.topo.DeadLetterQueue, false)
		if err != nil || !ok {
			break
		}
		fmt.Fprintf(&b, "  reason=%v detail=%v x-death=%v body=%.200s\n",
			d.Headers[amqpadapter.ReasonHeader], d.Headers[amqpadapter.DetailHeader], d.Headers["x-death"] != nil, d.Body)
	}
	return b.String()
}

// storedAmong counts the events of ids that the ledger holds.
func (s *scenario) storedAmong(ids []domain.Identity) int64 {
	s.t.Helper()
	if len(ids) == 0 {
		return 0
	}
	sources := make([]string, len(ids))
	eventIDs := make([]string, len(ids))
	for i, id := range ids {
		sources[i], eventIDs[i] = id.Source, id.ID
	}
	var n int64
	err := s.probe.QueryRowContext(s.ctx, `SELECT count(*) FROM events e
		JOIN unnest($1::text[], $2::text[]) AS r(source, id) ON e.source = r.source AND e.id = r.id`,
		sources, eventIDs).Scan(&n)
	if err != nil {
		s.fatalf("look up stored events: %v", err)
	}
	return n
}

// countEventsOf counts the stored events of the given warehouses.
func (s *scenario) countEventsOf(warehouses []domain.WarehouseID) int64 {
	s.t.Helper()
	ids := make([]string, len(warehouses))
	for i, w := range warehouses {
		ids[i] = w.String()
	}
	var n int64
	if err := s.probe.QueryRowContext(s.ctx, "SELECT count(*) FROM events WHERE warehouse_id = ANY($1::uuid[])", ids).Scan(&n); err != nil {
		s.fatalf("count events: %v", err)
	}
	return n
}

// secs formats a duration as seconds with two decimals; "n/a" when !ok.
func secs(d time.Duration, ok bool) string {
	if !ok {
		return "n/a"
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}
