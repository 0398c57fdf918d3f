//go:build faults

package faults_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
)

// Where the server tools are on this machine (Debian packages).
const (
	pgBinDir  = "/usr/lib/postgresql/15/bin"
	rmqBinDir = "/usr/lib/rabbitmq/bin" // the real scripts; /usr/sbin ones su to rabbitmq and reset HOME
)

// Preferred ports and node name of the private instances; free ones are picked when these
// are taken (another run, another service).
const (
	preferredPGPort   = 5433
	preferredAMQPPort = 5673
	preferredDistPort = 25673
	preferredNode     = "faults"
	tempPrefix        = "warehouse-faults-"
)

// Start-up bounds of the private environment.
const (
	pgStartTimeout  = 60 * time.Second
	rmqStartTimeout = 120 * time.Second
	buildTimeout    = 5 * time.Minute
	stopTimeout     = 30 * time.Second
)

// suite is the private environment every test of the package shares: a temporary
// directory, the warehouse binary, a PostgreSQL and a RabbitMQ node. It is built on first
// use (mustEnv) and torn down by TestMain, by a signal or before the -timeout panics.
type suite struct {
	dir string // temporary root, removed at teardown
	bin string // the warehouse binary
	pg  *pgInstance
	rmq *rmqInstance
}

var (
	envOnce sync.Once
	envMu   sync.Mutex // guards env while it is built and torn down
	env     = &suite{}
	errEnv  error

	teardownOnce sync.Once
	errTeardown  error
)

func TestMain(m *testing.M) {
	flag.Parse()
	reapStale()
	stopSignals := onSignal()
	stopWatchdog := watchdog()
	code := m.Run()
	stopWatchdog()
	stopSignals()
	if err := teardown(); err != nil {
		fmt.Fprintln(os.Stderr, "faults: teardown:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// mustEnv returns the private environment, building it on first use. When it cannot be
// built the test is skipped, or fails under CI=true.
func mustEnv(t *testing.T) *suite {
	t.Helper()
	envOnce.Do(func() {
		start := time.Now()
		errEnv = setUp()
		if errEnv == nil {
			fmt.Fprintf(os.Stderr, "faults: private PostgreSQL on %d, RabbitMQ node %s on %d, binary built, in %.1fs (%s)\n",
				env.pg.port, env.rmq.node, env.rmq.port, time.Since(start).Seconds(), env.dir)
		}
	})
	switch {
	case errEnv == nil:
		return env
	case errors.Is(errEnv, errBuild):
		t.Fatalf("the fault tests cannot run: %v", errEnv) // a broken build is never skipped
	case os.Getenv("CI") == "true":
		t.Fatalf("the private PostgreSQL and RabbitMQ of the fault tests cannot start (CI=true): %v", errEnv)
	default:
		t.Skipf("the private PostgreSQL and RabbitMQ of the fault tests cannot start, skipping: %v", errEnv)
	}
	return nil
}

// errBuild marks a failure to build the warehouse binary.
var errBuild = errors.New("the binary does not build")

// setUp creates the temporary directory, then builds the binary and starts PostgreSQL and
// RabbitMQ at once (the broker takes ~10 s to boot). What started is recorded in env, so
// that teardown stops it even when another part failed.
func setUp() error {
	dir, err := os.MkdirTemp("", tempPrefix)
	if err != nil {
		return err
	}
	// postgres and rabbitmq must reach their subdirectories
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return err
	}
	envMu.Lock()
	env.dir = dir
	envMu.Unlock()

	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	step := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
				mu.Unlock()
			}
		}()
	}
	step("go build ./cmd/warehouse", func() error {
		if err := build(dir); err != nil {
			return fmt.Errorf("%w: %w", errBuild, err)
		}
		return nil
	})
	step("private PostgreSQL", func() error { return startPG(dir) })
	step("private RabbitMQ", func() error { return startRabbit(dir) })
	wg.Wait()
	return errors.Join(errs...)
}

// build compiles ./cmd/warehouse of this module into dir.
func build(dir string) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("the go command is not on PATH: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	bin := filepath.Join(dir, "warehouse")
	cmd := exec.CommandContext(ctx, goTool, "build", "-o", bin, "./cmd/warehouse")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %w\n%s", err, out)
	}
	envMu.Lock()
	env.bin = bin
	envMu.Unlock()
	return nil
}

// moduleRoot is the directory above this package that holds go.mod.
func moduleRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod above %s", wd)
		}
	}
}

// teardown kills the child processes, stops RabbitMQ and PostgreSQL and removes the
// temporary directory. It runs once, from whichever of TestMain, a signal or the watchdog
// comes first.
func teardown() error {
	teardownOnce.Do(func() {
		envMu.Lock()
		defer envMu.Unlock()
		killAll()
		var errs []error
		if env.rmq != nil {
			if err := env.rmq.stop(); err != nil {
				errs = append(errs, err)
			}
		}
		if env.pg != nil {
			if err := env.pg.stop(); err != nil {
				errs = append(errs, err)
			}
		}
		if env.dir != "" && len(errs) == 0 && os.Getenv("FAULTS_KEEP") == "" {
			if err := os.RemoveAll(env.dir); err != nil {
				errs = append(errs, err)
			}
		} else if env.dir != "" {
			fmt.Fprintln(os.Stderr, "faults: kept", env.dir)
		}
		errTeardown = errors.Join(errs...)
	})
	return errTeardown
}

// onSignal tears the environment down when the test binary is interrupted (Ctrl-C, or
// go test killing it), then exits.
func onSignal() (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-ch:
			fmt.Fprintf(os.Stderr, "faults: %v: tearing down the private PostgreSQL and RabbitMQ\n", sig)
			if err := teardown(); err != nil {
				fmt.Fprintln(os.Stderr, "faults: teardown:", err)
			}
			os.Exit(2)
		case <-done:
		}
	}()
	return func() { signal.Stop(ch); close(done) }
}

// watchdog tears down shortly before -test.timeout would panic, since a panicking test
// binary runs no cleanup: the private instances would outlive it.
func watchdog() (stop func()) {
	f := flag.Lookup("test.timeout")
	if f == nil {
		return func() {}
	}
	d, err := time.ParseDuration(f.Value.String())
	if err != nil || d <= time.Minute {
		return func() {}
	}
	timer := time.AfterFunc(d-30*time.Second, func() {
		fmt.Fprintln(os.Stderr, "faults: the test timeout is near: goroutines follow, then teardown")
		_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 2)
		if err := teardown(); err != nil {
			fmt.Fprintln(os.Stderr, "faults: teardown:", err)
		}
		os.Exit(2)
	})
	return func() { timer.Stop() }
}

// reapStale stops the instances of earlier runs whose test binary died without tearing
// down (kill -9 of go test), with the tools that own them, and removes their directories.
func reapStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), tempPrefix+"*"))
	for _, dir := range dirs {
		raw, err := os.ReadFile(filepath.Join(dir, "owner.pid"))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
		if err != nil || pid <= 0 || processAlive(pid) {
			continue
		}
		fmt.Fprintln(os.Stderr, "faults: stopping the leftovers of an earlier run in", dir)
		if _, err := os.Stat(filepath.Join(dir, "pg", "data", "postmaster.pid")); err == nil {
			p := &pgInstance{data: filepath.Join(dir, "pg", "data"), started: true}
			_ = p.stop()
		}
		if node, err := os.ReadFile(filepath.Join(dir, "rmq", "node")); err == nil {
			r := &rmqInstance{dir: filepath.Join(dir, "rmq"), node: strings.TrimSpace(string(node)), started: true}
			_ = r.stop()
		}
		_ = os.RemoveAll(dir)
	}
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// asUser builds a command run as user (when we are root) with extra environment. runuser
// resets HOME and friends, so the environment goes through env(1) after it.
func asUser(ctx context.Context, user, dir string, extraEnv []string, name string, args ...string) *exec.Cmd {
	var cmd *exec.Cmd
	if os.Geteuid() == 0 && user != "" {
		full := append([]string{"-u", user, "--", "env"}, extraEnv...)
		full = append(full, name)
		full = append(full, args...)
		cmd = exec.CommandContext(ctx, "runuser", full...)
		cmd.Env = os.Environ()
	} else {
		cmd = exec.CommandContext(ctx, name, args...)
		cmd.Env = append(os.Environ(), extraEnv...)
	}
	cmd.Dir = dir
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// chownTo gives path (recursively) to user when we are root.
func chownTo(path, user string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	out, err := exec.Command("chown", "-R", user+":", path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("chown %s: %w: %s", path, err, out)
	}
	return nil
}

// pickPort returns preferred when nothing listens there, else a free port.
func pickPort(preferred int) (int, error) {
	if ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", preferred)); err == nil {
		_ = ln.Close()
		return preferred, nil
	}
	return freePort()
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// ---------------------------------------------------------------------------------------
// PostgreSQL

// pgInstance is the private PostgreSQL cluster.
type pgInstance struct {
	dir, data, sock string
	port            int
	user            string
	extra           string // more server options (-c name=value ...), e.g. for replication
	started         bool
	mu              sync.Mutex // serializes start/stop
}

func startPG(dir string) error {
	port, err := pickPort(preferredPGPort)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), pgStartTimeout)
	defer cancel()
	p, err := newPG(ctx, filepath.Join(dir, "pg"), port, true)
	if err != nil {
		return err
	}
	envMu.Lock()
	env.pg = p
	envMu.Unlock()
	return p.start(ctx)
}

// newPG prepares a cluster's directory in dir (owned by postgres), with a fresh data
// directory from initdb when initdb is true (a standby gets its data from pg_basebackup).
func newPG(ctx context.Context, dir string, port int, initdb bool) (*pgInstance, error) {
	if _, err := os.Stat(filepath.Join(pgBinDir, "initdb")); err != nil {
		return nil, fmt.Errorf("PostgreSQL 15 binaries not found in %s: %w", pgBinDir, err)
	}
	p := &pgInstance{dir: dir, port: port, user: "postgres"}
	p.data = filepath.Join(p.dir, "data")
	p.sock = p.dir
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return nil, err
	}
	if err := chownTo(p.dir, p.user); err != nil {
		return nil, err
	}
	if initdb {
		cmd := asUser(ctx, p.user, p.dir, nil, filepath.Join(pgBinDir, "initdb"),
			"-D", p.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "-N")
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("initdb: %w\n%s", err, out)
		}
	}
	return p, nil
}

// url is the URL of database name on the private cluster.
func (p *pgInstance) url(name string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.port, name)
}

// start starts the cluster and waits until it accepts connections.
func (p *pgInstance) start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	// fsync=off: the tests stop PostgreSQL cleanly (-m fast) or throw it away at the end, so
	// durability on disk is not under test; without it a loaded machine makes every
	// CREATE DATABASE and shutdown checkpoint take seconds.
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off %s", p.port, p.sock, p.extra)
	cmd := asUser(ctx, p.user, p.dir, nil, filepath.Join(pgBinDir, "pg_ctl"),
		"-D", p.data, "-o", opts, "-l", filepath.Join(p.dir, "server.log"), "-w", "-t", "60", "start")
	out, err := cmd.CombinedOutput()
	p.started = true // even a failed start may leave a postmaster behind
	if err != nil {
		return fmt.Errorf("pg_ctl start: %w\n%s\n%s", err, out, tail(filepath.Join(p.dir, "server.log"), 20))
	}
	return nil
}

// stopFast is a clean shutdown that disconnects every session (the outage scenario).
func (p *pgInstance) stopFast(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	cmd := asUser(ctx, p.user, p.dir, nil, filepath.Join(pgBinDir, "pg_ctl"), "-D", p.data, "-m", "fast", "-w", "-t", "30", "stop")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pg_ctl stop -m fast: %w\n%s", err, out)
	}
	return nil
}

// restartAtEnd starts the cluster again when the test ends, if it is not running: a test
// that stops it leaves it running, whatever happened.
func (p *pgInstance) restartAtEnd(t *testing.T) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if !p.running(ctx) {
			if err := p.start(ctx); err != nil {
				t.Errorf("restore PostgreSQL: %v", err)
			}
		}
	})
}

// running reports whether the postmaster runs (pg_ctl status exits 0).
func (p *pgInstance) running(ctx context.Context) bool {
	cmd := asUser(ctx, p.user, p.dir, nil, filepath.Join(pgBinDir, "pg_ctl"), "-D", p.data, "status")
	return cmd.Run() == nil
}

// stop is the final, immediate shutdown.
func (p *pgInstance) stop() error {
	if !p.started {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	dir := p.dir
	if dir == "" {
		dir = filepath.Dir(p.data)
	}
	cmd := asUser(ctx, "postgres", dir, nil, filepath.Join(pgBinDir, "pg_ctl"), "-D", p.data, "-m", "immediate", "-w", "stop")
	out, err := cmd.CombinedOutput()
	if err != nil && bytes.Contains(out, []byte("Is server running?")) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pg_ctl stop -m immediate: %w\n%s", err, out)
	}
	return nil
}

// ---------------------------------------------------------------------------------------
// RabbitMQ

// rmqInstance is the private RabbitMQ node. It has its own HOME (and so its own Erlang
// cookie), configuration and data, and shares only epmd with the shared node.
type rmqInstance struct {
	dir       string // owned by rabbitmq: home, config, mnesia, logs
	node      string // e.g. faults@localhost
	port      int
	distPort  int
	promPort  int // rabbitmq_prometheus on 127.0.0.1; 0: not enabled
	started   bool
	beamPID   int
	serverEnv []string
}

func startRabbit(dir string) error {
	port, err := pickPort(preferredAMQPPort)
	if err != nil {
		return err
	}
	distPort, err := pickPort(preferredDistPort)
	if err != nil {
		return err
	}
	name := preferredNode
	if port != preferredAMQPPort || distPort != preferredDistPort || epmdKnows(preferredNode) {
		name = fmt.Sprintf("%s-%d", preferredNode, os.Getpid())
	}
	cookie, err := newCookie()
	if err != nil {
		return err
	}
	r, err := newRabbit(filepath.Join(dir, "rmq"), name+"@localhost", port, distPort, cookie)
	if err != nil {
		return err
	}
	// The private node exports its queues to Prometheus, for the alert test.
	if r.promPort, err = freePort(); err != nil {
		return err
	}
	if err := r.enablePrometheus(); err != nil {
		return err
	}
	envMu.Lock()
	env.rmq = r
	envMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), rmqStartTimeout)
	defer cancel()
	return r.boot(ctx)
}

// newCookie makes an Erlang cookie: the nodes of one cluster share one.
func newCookie() (string, error) {
	cookie := make([]byte, 20)
	if _, err := rand.Read(cookie); err != nil {
		return "", err
	}
	for i := range cookie {
		cookie[i] = 'A' + cookie[i]%26
	}
	return string(cookie), nil
}

// newRabbit prepares the directory of a private node (its home with the cookie, its
// configuration, data and logs, owned by rabbitmq) without starting it.
func newRabbit(dir, node string, port, distPort int, cookie string) (*rmqInstance, error) {
	if _, err := os.Stat(filepath.Join(rmqBinDir, "rabbitmq-server")); err != nil {
		return nil, fmt.Errorf("RabbitMQ scripts not found in %s: %w", rmqBinDir, err)
	}
	r := &rmqInstance{dir: dir, node: node, port: port, distPort: distPort}
	home := filepath.Join(r.dir, "home")
	if err := os.MkdirAll(home, 0o755); err != nil {
		return nil, err
	}
	// The cookie is written before anything starts: the server and rabbitmqctl must not
	// race to create different ones.
	files := map[string]string{
		filepath.Join(home, ".erlang.cookie"): cookie,
		filepath.Join(r.dir, "rabbitmq.conf"): fmt.Sprintf("listeners.tcp.default = 127.0.0.1:%d\n", r.port),
		filepath.Join(r.dir, "env.conf"):      "# replaces /etc/rabbitmq/rabbitmq-env.conf, which names the shared node\n",
		filepath.Join(r.dir, "plugins"):       "[].\n",
		filepath.Join(r.dir, "node"):          r.node + "\n",
	}
	for path, content := range files {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			return nil, err
		}
	}
	if err := os.Chmod(filepath.Join(home, ".erlang.cookie"), 0o400); err != nil {
		return nil, err
	}
	if err := chownTo(r.dir, "rabbitmq"); err != nil {
		return nil, err
	}
	r.serverEnv = []string{
		"RABBITMQ_NODENAME=" + r.node,
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		"RABBITMQ_NODE_PORT=" + strconv.Itoa(r.port),
		"RABBITMQ_DIST_PORT=" + strconv.Itoa(r.distPort),
		"RABBITMQ_CONFIG_FILE=" + filepath.Join(r.dir, "rabbitmq.conf"),
		"RABBITMQ_ADVANCED_CONFIG_FILE=" + filepath.Join(r.dir, "advanced.config"),
		"RABBITMQ_MNESIA_BASE=" + filepath.Join(r.dir, "mnesia"),
		"RABBITMQ_LOG_BASE=" + filepath.Join(r.dir, "log"),
		"RABBITMQ_PID_FILE=" + filepath.Join(r.dir, "beam.pid"),
		"RABBITMQ_ENABLED_PLUGINS_FILE=" + filepath.Join(r.dir, "plugins"),
	}
	return r, nil
}

// enablePrometheus turns on rabbitmq_prometheus on 127.0.0.1:promPort, before boot.
func (r *rmqInstance) enablePrometheus() error {
	conf := fmt.Sprintf("listeners.tcp.default = 127.0.0.1:%d\nprometheus.tcp.ip = 127.0.0.1\nprometheus.tcp.port = %d\n", r.port, r.promPort)
	for path, content := range map[string]string{
		filepath.Join(r.dir, "rabbitmq.conf"): conf,
		filepath.Join(r.dir, "plugins"):       "[rabbitmq_prometheus].\n",
	} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			return err
		}
	}
	return chownTo(r.dir, "rabbitmq")
}

// boot starts the node and waits until it has booted and its listener answers AMQP.
func (r *rmqInstance) boot(ctx context.Context) error {
	start := asUser(ctx, "rabbitmq", r.dir, append(r.commonEnv(), r.serverEnv...), filepath.Join(rmqBinDir, "rabbitmq-server"), "-detached")
	out, err := start.CombinedOutput()
	r.started = true
	if err != nil {
		return fmt.Errorf("rabbitmq-server -detached: %w\n%s", err, out)
	}
	if err := r.awaitStartup(ctx); err != nil {
		return err
	}
	if raw, err := os.ReadFile(filepath.Join(r.dir, "beam.pid")); err == nil {
		r.beamPID, _ = strconv.Atoi(strings.TrimSpace(string(raw)))
	}
	// the listener is ours, not the shared node's
	conn, err := amqp091.Dial(r.url())
	if err != nil {
		return fmt.Errorf("private RabbitMQ started but %s refuses AMQP: %w", r.url(), err)
	}
	return conn.Close()
}

// commonEnv is what both the server and rabbitmqctl need: the private cookie's HOME, no
// shared rabbitmq-env.conf, and epmd on the loopback like the shared node.
func (r *rmqInstance) commonEnv() []string {
	return []string{
		"HOME=" + filepath.Join(r.dir, "home"),
		"RABBITMQ_CONF_ENV_FILE=" + filepath.Join(r.dir, "env.conf"),
		"ERL_EPMD_ADDRESS=127.0.0.1",
		"ERL_FLAGS=-kernel inet_dist_use_interface {127,0,0,1}",
	}
}

func (r *rmqInstance) url() string { return fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", r.port) }

// awaitStartup polls until the node has booted: await_startup fails at once while the
// node is not registered with epmd yet.
func (r *rmqInstance) awaitStartup(ctx context.Context) error {
	var last error
	for {
		out, err := r.ctl(ctx, "await_startup", "--timeout", "60")
		if err == nil {
			return nil
		}
		last = fmt.Errorf("%w: %s", err, lastLines(out, 8))
		select {
		case <-ctx.Done():
			return fmt.Errorf("RabbitMQ node %s did not start: %w\n%s", r.node, last,
				tail(filepath.Join(r.dir, "log", r.node+".log"), 30))
		case <-time.After(time.Second):
		}
	}
}

// ctl runs rabbitmqctl against the private node.
func (r *rmqInstance) ctl(ctx context.Context, args ...string) (string, error) {
	full := append([]string{"-n", r.node, "-q"}, args...)
	cmd := asUser(ctx, "rabbitmq", r.dir, r.commonEnv(), filepath.Join(rmqBinDir, "rabbitmqctl"), full...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("rabbitmqctl %s: %w", strings.Join(args, " "), err)
	}
	return string(out), nil
}

// stop stops the node, and kills its beam process (ours, by PID) when rabbitmqctl cannot.
func (r *rmqInstance) stop() error {
	if !r.started {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	if r.beamPID == 0 {
		if raw, err := os.ReadFile(filepath.Join(r.dir, "beam.pid")); err == nil {
			r.beamPID, _ = strconv.Atoi(strings.TrimSpace(string(raw)))
		}
	}
	_, err := r.ctl(ctx, "stop")
	if r.beamPID > 0 && processAlive(r.beamPID) && ownBeam(r.beamPID, r.dir) {
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) && processAlive(r.beamPID) {
			time.Sleep(200 * time.Millisecond)
		}
		if processAlive(r.beamPID) {
			_ = syscall.Kill(r.beamPID, syscall.SIGKILL)
			return fmt.Errorf("RabbitMQ node %s did not stop (%w); killed its beam process %d", r.node, err, r.beamPID)
		}
	}
	return nil
}

// ownBeam checks that pid is the beam of our node (its environment names our directory)
// before we signal it: the PID could have been reused.
func ownBeam(pid int, dir string) bool {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	return err == nil && bytes.Contains(raw, []byte("RABBITMQ_MNESIA_BASE="+filepath.Join(dir, "mnesia")))
}

// epmdKnows asks epmd (NAMES request) whether a node called name is registered.
func epmdKnows(name string) bool {
	conn, err := net.DialTimeout("tcp", "127.0.0.1:4369", time.Second)
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write([]byte{0, 1, 110}); err != nil {
		return false
	}
	raw, _ := io.ReadAll(conn)
	if len(raw) < 4 {
		return false
	}
	for _, line := range strings.Split(string(raw[4:]), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "name" && f[1] == name {
			return true
		}
	}
	return false
}

// ---------------------------------------------------------------------------------------
// Files

// tail returns the last n lines of the file at path.
func tail(path string, n int) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	return lastLines(string(raw), n)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
