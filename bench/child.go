package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	amqpadapter "warehouse/adapters/amqp"
)

// child is one process of the service under test.
type child struct {
	name    string
	cmd     *exec.Cmd
	addr    string // where /readyz and /metrics answer
	pprof   string // PPROF_ADDR, or ""
	logPath string
	exited  chan struct{}
	waitErr error
	client  *http.Client
}

// startChild runs `<bin> <args>` (bin is Options.Binary or Options.Self) with the
// environment of the bench process overridden by env, in the run's working directory (so
// that no .env of the caller leaks in), and stdout and stderr in <name>.log there. addr is
// where its HTTP server listens. When ctx ends the child gets SIGTERM, and SIGKILL
// stopTimeout later.
func (r *runner) startChild(ctx context.Context, name string, env map[string]string, addr, bin string, args ...string) (*child, error) {
	return r.spawn(ctx, name, env, addr, nil, bin, args...)
}

// spawn is startChild, with each line the child writes (stdout or stderr) also handed to
// tap, when set, as it comes: how the benchmark follows a child that serves no HTTP (a
// publisher). tap runs on the goroutine copying the child's output, one line at a time.
func (r *runner) spawn(ctx context.Context, name string, env map[string]string, addr string, tap func(line []byte), bin string, args ...string) (*child, error) {
	logPath := filepath.Join(r.work, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	c := &child{
		name: name, addr: addr, logPath: logPath, exited: make(chan struct{}),
		client: &http.Client{Timeout: 5 * time.Second},
	}
	if r.o.ProfileDir != "" {
		if c.pprof, err = freeAddr(ctx); err != nil {
			_ = logf.Close()
			return nil, err
		}
		env["PPROF_ADDR"] = c.pprof
	}
	c.cmd = exec.CommandContext(ctx, bin, args...) //nolint:gosec // the warehouse binary or this program (os.Executable), as given or as a test built them
	c.cmd.Cancel = func() error { return c.cmd.Process.Signal(syscall.SIGTERM) }
	c.cmd.WaitDelay = stopTimeout
	c.cmd.Dir = r.work
	c.cmd.Env = os.Environ()
	for _, k := range slices.Sorted(maps.Keys(env)) { // the last value of a key wins
		c.cmd.Env = append(c.cmd.Env, k+"="+env[k])
	}
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	if tap != nil {
		// one writer for both: exec then calls it from one goroutine at a time
		w := &lineTap{w: logf, tap: tap}
		c.cmd.Stdout, c.cmd.Stderr = w, w
	}
	dieWithParent(c.cmd)
	if err := c.cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("start %s %s: %w", bin, strings.Join(args, " "), err)
	}
	r.children = append(r.children, c)
	go func() {
		c.waitErr = c.cmd.Wait()
		_ = logf.Close()
		close(c.exited)
	}()
	return c, nil
}

// lineTap writes through to w and hands every complete line to tap (without its
// newline). A line longer than maxTapLine is no line the benchmark waits for: it is
// skipped.
type lineTap struct {
	w       io.Writer
	tap     func(line []byte)
	partial []byte
	skip    bool // the current line grew past maxTapLine
}

// maxTapLine bounds the unfinished line a lineTap keeps.
const maxTapLine = 64 << 10

func (t *lineTap) Write(p []byte) (int, error) {
	n, err := t.w.Write(p)
	rest := p
	for {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			break
		}
		if !t.skip {
			t.tap(append(t.partial, rest[:i]...))
		}
		t.partial, t.skip = t.partial[:0], false
		rest = rest[i+1:]
	}
	if !t.skip && len(t.partial)+len(rest) > maxTapLine {
		t.partial, t.skip = t.partial[:0], true
	}
	if !t.skip {
		t.partial = append(t.partial, rest...)
	}
	return n, err
}

// serviceEnv is the configuration of a child: its own database and topology, the same
// batching as the bare consumer, no token, info logs.
func (r *runner) serviceEnv(dbURL string, t amqpadapter.Topology) map[string]string {
	return map[string]string{
		"DATABASE_URL":              dbURL,
		"DB_MAX_CONNS":              strconv.Itoa(r.o.DBMaxConns),
		"AMQP_URL":                  r.o.AMQPURL,
		"AMQP_EXCHANGE":             t.Exchange,
		"AMQP_QUEUE":                t.Queue,
		"AMQP_DEAD_LETTER_EXCHANGE": t.DeadLetterExchange,
		"AMQP_DEAD_LETTER_QUEUE":    t.DeadLetterQueue,
		"AMQP_RETRY_EXCHANGE":       t.RetryExchange,
		"AMQP_DELIVERY_LIMIT":       strconv.Itoa(deliveryLimit),
		"RETRY_DELAY":               retryDelay.String(),
		"AMQP_PREFETCH":             strconv.Itoa(r.o.Prefetch),
		"BATCH_SIZE":                strconv.Itoa(r.o.BatchSize),
		"BATCH_WAIT":                r.o.BatchWait.String(),
		"API_TOKEN":                 "",
		"PPROF_ADDR":                "",
		"LOG_LEVEL":                 "info",
		"LOG_FORMAT":                "text",
	}
}

// waitReady polls /readyz every 10 ms until it answers 200, the child exits or timeout.
func (c *child) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-c.exited:
			return fmt.Errorf("%s exited before it was ready (%w): %s", c.name, c.waitErr, c.logTail())
		default:
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.addr+"/readyz", nil)
		if resp, err := c.client.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s: %s", c.name, timeout, c.logTail())
		}
		if !sleepCtx(ctx, 10*time.Millisecond) {
			return ctx.Err()
		}
	}
}

// alive returns an error when the child has exited.
func (c *child) alive() error {
	select {
	case <-c.exited:
		return fmt.Errorf("%s exited (%w): %s", c.name, c.waitErr, c.logTail())
	default:
		return nil
	}
}

// metrics scrapes /metrics and returns every sample of the wanted names, summed over
// their labels.
func (c *child) metrics(ctx context.Context, names ...string) (map[string]float64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.addr+"/metrics", nil)
	// Uncompressed: gzip made the scrapes cost the consumer a tenth of its CPU.
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s /metrics: status %d", c.name, resp.StatusCode)
	}
	out := make(map[string]float64, len(names))
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		end := bytes.IndexAny(line, "{ ")
		if end < 0 {
			continue
		}
		name := string(line[:end])
		if !slices.Contains(names, name) {
			continue
		}
		v, err := strconv.ParseFloat(string(line[bytes.LastIndexByte(line, ' ')+1:]), 64)
		if err != nil {
			continue
		}
		out[name] += v
	}
	return out, sc.Err()
}

// peakRSS returns the child's peak resident set (VmHWM) in bytes.
func (c *child) peakRSS() (int64, error) {
	return procStatusKB(c.cmd.Process.Pid, "VmHWM:")
}

// cpuSeconds returns the user+system CPU time the child has used so far.
func (c *child) cpuSeconds() (float64, error) {
	return procCPUSeconds(c.cmd.Process.Pid)
}

// stop sends SIGTERM and waits for the graceful stop, killing the child after stopTimeout.
func (c *child) stop() {
	select {
	case <-c.exited:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(stopTimeout)
	defer t.Stop()
	select {
	case <-c.exited:
	case <-t.C:
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
}

// logTail returns the last lines of the child's log, for error messages.
func (c *child) logTail() string {
	b, err := os.ReadFile(c.logPath)
	if err != nil {
		return "(no log)"
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 8 {
		lines = lines[len(lines)-8:]
	}
	return "log " + c.logPath + ":\n" + strings.Join(lines, "\n")
}

// profile fetches a CPU profile of seconds (when the child serves pprof) into
// ProfileDir/<name>.cpu.pprof, in the background; the returned func waits for it and
// then fetches the heap profile. Errors only cost the profile.
func (r *runner) profile(ctx context.Context, c *child, name string, seconds int) (wait func()) {
	if c.pprof == "" || r.o.ProfileDir == "" {
		return func() {}
	}
	fetch := func(path, file string, timeout time.Duration) {
		cl := &http.Client{Timeout: timeout}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.pprof+path, nil)
		resp, err := cl.Do(req)
		if err != nil {
			r.log.Warn("profile", "profile", file, "err", err)
			return
		}
		defer resp.Body.Close()
		f, err := os.Create(filepath.Join(r.o.ProfileDir, file))
		if err != nil {
			r.log.Warn("profile", "profile", file, "err", err)
			return
		}
		defer f.Close()
		_, _ = io.Copy(f, resp.Body)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fetch(fmt.Sprintf("/debug/pprof/profile?seconds=%d", seconds), name+".cpu.pprof", time.Duration(seconds+30)*time.Second)
	}()
	return func() {
		<-done
		fetch("/debug/pprof/heap", name+".heap.pprof", 30*time.Second)
	}
}

var errNoProc = errors.New("no /proc on this system")

// procStatusKB reads a "<field> <n> kB" line of /proc/<pid>/status, in bytes.
func procStatusKB(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, errNoProc
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, err
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// procCPUSeconds reads utime+stime of /proc/<pid>/stat (in USER_HZ, 100 on Linux).
func procCPUSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, errNoProc
	}
	st, err := parseProcStat(b)
	if err != nil {
		return 0, err
	}
	return float64(st.ticks) / clockTicks, nil
}

// hostCPU is a snapshot of /proc/stat's first line: busy and total jiffies of all CPUs.
type hostCPU struct{ busy, total int64 }

func readHostCPU() (hostCPU, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return hostCPU{}, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return hostCPU{}, false
	}
	var h hostCPU
	for i, s := range f[1:] {
		if i >= 8 { // guest time is already counted in user
			break
		}
		v, _ := strconv.ParseInt(s, 10, 64)
		h.total += v
		if i != 3 && i != 4 { // idle and iowait
			h.busy += v
		}
	}
	return h, true
}

// busySince returns the share of all CPUs that were busy since h, 0..1.
func (h hostCPU) busySince() float64 {
	now, ok := readHostCPU()
	if !ok || now.total <= h.total {
		return 0
	}
	return float64(now.busy-h.busy) / float64(now.total-h.total)
}
