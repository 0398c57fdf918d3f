package postgres

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"warehouse/domain"
)

// These tests drive the coalescer with a fake fetch whose timing is controlled by gates
// (channels), so which reads share a fetch is deterministic. The only polling is on the
// coalescer's own state (queue length, inFlight) under its lock.

const coalesceWait = 2 * time.Second // upper bound for anything the tests wait for

// valueOf is the fake value of a key; keys starting with "missing" have no row.
func valueOf(key string) string { return "v:" + key }

func valuesOf(keys []string) map[string]string {
	m := make(map[string]string, len(keys))
	for _, k := range keys {
		if !strings.HasPrefix(k, "missing") {
			m[k] = valueOf(k)
		}
	}
	return m
}

// fetchLog records the keys of every fetch call, in call order.
type fetchLog struct {
	mu    sync.Mutex
	calls [][]string
}

// record stores a copy of keys and returns the index of this call.
func (l *fetchLog) record(keys []string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, slices.Clone(keys))
	return len(l.calls) - 1
}

func (l *fetchLog) snapshot() [][]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.calls)
}

// gate blocks fetches until opened; it is opened at test cleanup at the latest, so a
// failing test does not leave goroutines stuck on it.
type gate struct {
	ch   chan struct{}
	once sync.Once
}

func newGate(t *testing.T) *gate {
	g := &gate{ch: make(chan struct{})}
	t.Cleanup(g.open)
	return g
}

func (g *gate) open() { g.once.Do(func() { close(g.ch) }) }

type getResult struct {
	key string
	val string
	err error
}

// startGet runs c.get(ctx, key) in a goroutine; its result arrives on the returned channel.
func startGet(ctx context.Context, c *coalescer[string, string], key string) <-chan getResult {
	ch := make(chan getResult, 1)
	go func() {
		v, err := c.get(ctx, key)
		ch <- getResult{key: key, val: v, err: err}
	}()
	return ch
}

func await(t *testing.T, ch <-chan getResult) getResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(coalesceWait):
		t.Fatalf("get did not return within %v", coalesceWait)
		return getResult{}
	}
}

// awaitSignal waits for one value on ch.
func awaitSignal[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(coalesceWait):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

// assertPending fails if ch already has a result.
func assertPending(t *testing.T, ch <-chan getResult, what string) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("%s returned early: %+v", what, r)
	default:
	}
}

// waitFor polls cond (which reads coalescer state under its lock) until it holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(coalesceWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Microsecond)
	}
}

func queueLen(c *coalescer[string, string]) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue)
}

func inFlight(c *coalescer[string, string]) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inFlight
}

func waitQueued(t *testing.T, c *coalescer[string, string], n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d queued reads", n), func() bool { return queueLen(c) == n })
}

// waitIdle waits until no fetch slot is taken and nothing is queued.
func waitIdle(t *testing.T, c *coalescer[string, string]) {
	t.Helper()
	waitFor(t, "coalescer to become idle", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.inFlight == 0 && len(c.queue) == 0
	})
}

// blockingFirst returns a fetch that records its calls and blocks the first call until
// g opens (signalling entered when it starts); later calls answer at once.
func blockingFirst(log *fetchLog, g *gate, entered chan<- struct{}) func(context.Context, []string) (map[string]string, error) {
	return func(_ context.Context, keys []string) (map[string]string, error) {
		if log.record(keys) == 0 {
			entered <- struct{}{}
			<-g.ch
		}
		return valuesOf(keys), nil
	}
}

// holdSlot starts a read of "first" and returns once its fetch has begun (and signalled
// entered), so that it holds a query slot.
func holdSlot[T any](t *testing.T, ctx context.Context, c *coalescer[string, string], entered <-chan T) <-chan getResult {
	t.Helper()
	first := startGet(ctx, c, "first")
	awaitSignal(t, entered, "first fetch")
	return first
}

func sortedKeys(keys []string) []string {
	s := slices.Clone(keys)
	slices.Sort(s)
	return s
}

// 1. A lone read is one fetch of exactly its key; a key without a row is ErrNotFound.
func TestCoalescerLoneGet(t *testing.T) {
	var log fetchLog
	c := newCoalescer(2, 16, func(_ context.Context, keys []string) (map[string]string, error) {
		log.record(keys)
		return valuesOf(keys), nil
	})
	ctx := context.Background()

	v, err := c.get(ctx, "a")
	if err != nil || v != valueOf("a") {
		t.Fatalf("get(a) = %q, %v; want %q, nil", v, err, valueOf("a"))
	}
	if calls := log.snapshot(); len(calls) != 1 || !slices.Equal(calls[0], []string{"a"}) {
		t.Fatalf("fetch calls = %v; want [[a]]", calls)
	}

	v, err = c.get(ctx, "missing-1")
	if !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("get(missing-1) err = %v; want domain.ErrNotFound", err)
	}
	if v != "" {
		t.Fatalf("get(missing-1) value = %q; want zero value", v)
	}
	if calls := log.snapshot(); len(calls) != 2 || !slices.Equal(calls[1], []string{"missing-1"}) {
		t.Fatalf("fetch calls = %v; want second call [missing-1]", calls)
	}
	if n := inFlight(c); n != 0 {
		t.Fatalf("inFlight = %d after lone gets; want 0", n)
	}
}

// 2. Reads queued behind a busy slot share the next fetch, which gets their distinct keys once.
func TestCoalescerCoalescesQueuedReads(t *testing.T) {
	var log fetchLog
	g := newGate(t)
	entered := make(chan struct{}, 1)
	c := newCoalescer(1, 100, blockingFirst(&log, g, entered))
	ctx := context.Background()

	first := holdSlot(t, ctx, c, entered)

	const n = 20
	var queued []<-chan getResult
	want := map[string]bool{}
	for i := range n {
		key := fmt.Sprintf("k%d", i%7) // 7 distinct keys, with duplicates
		want[key] = true
		queued = append(queued, startGet(ctx, c, key))
	}
	waitQueued(t, c, n)
	if calls := log.snapshot(); len(calls) != 1 {
		t.Fatalf("fetch calls while the first is blocked = %v; want only the first", calls)
	}
	g.open()

	if r := await(t, first); r.err != nil || r.val != valueOf("first") {
		t.Fatalf("first get = %+v; want %q", r, valueOf("first"))
	}
	for _, ch := range queued {
		r := await(t, ch)
		if r.err != nil || r.val != valueOf(r.key) {
			t.Errorf("get(%s) = %q, %v; want %q, nil", r.key, r.val, r.err, valueOf(r.key))
		}
	}
	waitIdle(t, c)

	calls := log.snapshot()
	if len(calls) != 2 {
		t.Fatalf("fetch calls = %v; want 2", calls)
	}
	if !slices.Equal(calls[0], []string{"first"}) {
		t.Errorf("first fetch keys = %v; want [first]", calls[0])
	}
	got := sortedKeys(calls[1])
	var wantKeys []string
	for k := range want {
		wantKeys = append(wantKeys, k)
	}
	slices.Sort(wantKeys)
	if !slices.Equal(got, wantKeys) {
		t.Errorf("second fetch keys = %v; want each of %v exactly once", calls[1], wantKeys)
	}
}

// 3. maxBatch bounds the reads, hence keys, of one fetch; every queued read is answered.
func TestCoalescerMaxBatchBoundsFetch(t *testing.T) {
	var log fetchLog
	g := newGate(t)
	entered := make(chan struct{}, 1)
	c := newCoalescer(1, 3, blockingFirst(&log, g, entered))
	ctx := context.Background()

	first := holdSlot(t, ctx, c, entered)
	const n = 7
	var queued []<-chan getResult
	for i := range n {
		queued = append(queued, startGet(ctx, c, fmt.Sprintf("k%d", i)))
	}
	waitQueued(t, c, n)
	g.open()

	if r := await(t, first); r.err != nil || r.val != valueOf("first") {
		t.Fatalf("first get = %+v", r)
	}
	for _, ch := range queued {
		if r := await(t, ch); r.err != nil || r.val != valueOf(r.key) {
			t.Errorf("get(%s) = %q, %v; want %q, nil", r.key, r.val, r.err, valueOf(r.key))
		}
	}
	waitIdle(t, c)

	calls := log.snapshot()
	var sizes []int
	seen := map[string]int{}
	for _, keys := range calls {
		sizes = append(sizes, len(keys))
		if len(keys) > 3 {
			t.Errorf("fetch got %d keys %v; want at most maxBatch=3", len(keys), keys)
		}
		for _, k := range keys {
			seen[k]++
		}
	}
	// The first fetch is the lone read; the 7 queued reads take ceil(7/3) = 3 fetches.
	if !slices.Equal(sizes, []int{1, 3, 3, 1}) {
		t.Errorf("fetch sizes = %v (calls %v); want [1 3 3 1]", sizes, calls)
	}
	for i := range n {
		if k := fmt.Sprintf("k%d", i); seen[k] != 1 {
			t.Errorf("key %s fetched %d times; want 1", k, seen[k])
		}
	}
}

// 4. No more than maxInFlight fetches run at once, under many concurrent reads.
func TestCoalescerBoundsConcurrentFetches(t *testing.T) {
	const (
		maxInFlight = 2
		maxBatch    = 8
		n           = 200
	)
	var (
		cur, peak, entered atomic.Int32
		oversize           atomic.Int32
	)
	g := newGate(t)
	c := newCoalescer(maxInFlight, maxBatch, func(_ context.Context, keys []string) (map[string]string, error) {
		now := cur.Add(1)
		defer cur.Add(-1)
		for p := peak.Load(); now > p && !peak.CompareAndSwap(p, now); p = peak.Load() {
		}
		entered.Add(1)
		if len(keys) > maxBatch {
			oversize.Add(1)
		}
		<-g.ch
		for range 3 { // widen the window for overlapping fetches
			runtime.Gosched()
		}
		return valuesOf(keys), nil
	})
	ctx := context.Background()

	var chans []<-chan getResult
	for i := range n {
		chans = append(chans, startGet(ctx, c, fmt.Sprintf("k%d", i%50)))
	}
	// Deterministic phase: exactly maxInFlight fetches hold the slots, the rest queue.
	waitFor(t, "all slots busy and the rest queued", func() bool {
		return entered.Load() == maxInFlight && queueLen(c) == n-maxInFlight
	})
	if got := cur.Load(); got != maxInFlight {
		t.Fatalf("concurrent fetches = %d; want %d", got, maxInFlight)
	}
	g.open()

	for _, ch := range chans {
		if r := await(t, ch); r.err != nil || r.val != valueOf(r.key) {
			t.Errorf("get(%s) = %q, %v; want %q, nil", r.key, r.val, r.err, valueOf(r.key))
		}
	}
	waitIdle(t, c)
	if p := peak.Load(); p > maxInFlight {
		t.Errorf("peak concurrent fetches = %d; want at most %d", p, maxInFlight)
	}
	if o := oversize.Load(); o != 0 {
		t.Errorf("%d fetches got more than maxBatch keys", o)
	}
	// 2 lone fetches + the 198 queued reads in batches of at most 8 → at least 2+25.
	if e := entered.Load(); e < 2+(n-maxInFlight+maxBatch-1)/maxBatch || e > n {
		t.Errorf("fetch calls = %d; want between %d and %d", e, 2+(n-maxInFlight+maxBatch-1)/maxBatch, n)
	}
}

// 5. A fetch error reaches every read of its batch; later reads succeed again.
func TestCoalescerFetchErrorReachesWholeBatch(t *testing.T) {
	errBoom := errors.New("boom")
	var log fetchLog
	var fail atomic.Bool
	g := newGate(t)
	entered := make(chan struct{}, 1)
	c := newCoalescer(1, 100, func(_ context.Context, keys []string) (map[string]string, error) {
		if log.record(keys) == 0 {
			entered <- struct{}{}
			<-g.ch
			fail.Store(true) // the batch queued behind this fetch fails
			return valuesOf(keys), nil
		}
		if fail.Load() {
			// A partial result with an error must still be an error for every read.
			return valuesOf(keys), fmt.Errorf("query: %w", errBoom)
		}
		return valuesOf(keys), nil
	})
	ctx := context.Background()

	first := holdSlot(t, ctx, c, entered)
	var queued []<-chan getResult
	for _, k := range []string{"a", "b", "a", "c", "missing-1"} {
		queued = append(queued, startGet(ctx, c, k))
	}
	waitQueued(t, c, len(queued))
	g.open()

	if r := await(t, first); r.err != nil || r.val != valueOf("first") {
		t.Fatalf("first get = %+v; want success (its fetch succeeded)", r)
	}
	for _, ch := range queued {
		r := await(t, ch)
		if !errors.Is(r.err, errBoom) {
			t.Errorf("get(%s) err = %v; want errBoom", r.key, r.err)
		}
		if r.val != "" {
			t.Errorf("get(%s) value = %q alongside an error; want zero value", r.key, r.val)
		}
	}
	waitIdle(t, c)
	if calls := log.snapshot(); len(calls) != 2 {
		t.Fatalf("fetch calls = %v; want 2", calls)
	}

	fail.Store(false)
	if v, err := c.get(ctx, "a"); err != nil || v != valueOf("a") {
		t.Fatalf("get(a) after recovery = %q, %v; want %q, nil", v, err, valueOf("a"))
	}
	if _, err := c.get(ctx, "missing-2"); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("get(missing-2) after recovery err = %v; want ErrNotFound", err)
	}
}

// 6a. A queued read whose ctx is cancelled returns at once, is not fetched, and does not
// disturb the other reads of its batch.
func TestCoalescerCancelledQueuedRead(t *testing.T) {
	var log fetchLog
	g := newGate(t)
	entered := make(chan struct{}, 1)
	c := newCoalescer(1, 100, blockingFirst(&log, g, entered))
	bg := context.Background()

	first := holdSlot(t, bg, c, entered)

	ctxB, cancelB := context.WithCancel(bg)
	defer cancelB()
	ctxD, cancelD := context.WithCancel(bg)
	defer cancelD()
	ctxE, cancelE := context.WithCancel(bg)
	defer cancelE()
	b := startGet(ctxB, c, "b") // cancelled, nobody else wants b
	waitQueued(t, c, 1)
	cc := startGet(bg, c, "c") // live
	waitQueued(t, c, 2)
	d := startGet(ctxD, c, "d") // cancelled, nobody else wants d
	waitQueued(t, c, 3)
	e := startGet(ctxE, c, "c") // cancelled, but c is also asked for by a live read
	waitQueued(t, c, 4)

	cancelB()
	if r := await(t, b); !errors.Is(r.err, context.Canceled) || r.val != "" {
		t.Fatalf("cancelled get(b) = %+v; want context.Canceled", r)
	}
	// It returned while the fetch it waits behind is still blocked.
	assertPending(t, first, "first get")
	assertPending(t, cc, "get(c)")
	cancelD()
	cancelE()
	if r := await(t, d); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled get(d) = %+v; want context.Canceled", r)
	}
	if r := await(t, e); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled get(c) = %+v; want context.Canceled", r)
	}
	if calls := log.snapshot(); len(calls) != 1 {
		t.Fatalf("fetch calls before release = %v; want only the first", calls)
	}
	g.open()

	if r := await(t, first); r.err != nil || r.val != valueOf("first") {
		t.Fatalf("first get = %+v", r)
	}
	if r := await(t, cc); r.err != nil || r.val != valueOf("c") {
		t.Fatalf("live get(c) = %+v; want %q", r, valueOf("c"))
	}
	waitIdle(t, c)
	calls := log.snapshot()
	if len(calls) != 2 {
		t.Fatalf("fetch calls = %v; want 2", calls)
	}
	if !slices.Equal(calls[1], []string{"c"}) {
		t.Errorf("second fetch keys = %v; want [c] (no keys of cancelled reads only)", calls[1])
	}
}

// 6b. A read cancelled while its own batch's fetch runs returns at once; the others of the
// batch still get their values from that fetch.
func TestCoalescerCancelDuringBatchFetch(t *testing.T) {
	var log fetchLog
	g1, g2 := newGate(t), newGate(t)
	entered := make(chan int, 2)
	c := newCoalescer(1, 100, func(_ context.Context, keys []string) (map[string]string, error) {
		i := log.record(keys)
		if i < 2 {
			entered <- i
			<-[]*gate{g1, g2}[i].ch
		}
		return valuesOf(keys), nil
	})
	bg := context.Background()

	first := holdSlot(t, bg, c, entered)
	ctxB, cancelB := context.WithCancel(bg)
	defer cancelB()
	b := startGet(ctxB, c, "b")
	waitQueued(t, c, 1)
	cc := startGet(bg, c, "c")
	waitQueued(t, c, 2)
	g1.open()
	if i := awaitSignal(t, entered, "second fetch"); i != 1 {
		t.Fatalf("entered fetch %d; want 1", i)
	}
	if r := await(t, first); r.err != nil || r.val != valueOf("first") {
		t.Fatalf("first get = %+v", r)
	}

	cancelB()
	if r := await(t, b); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("get(b) cancelled during its fetch = %+v; want context.Canceled", r)
	}
	assertPending(t, cc, "get(c)")
	g2.open()
	if r := await(t, cc); r.err != nil || r.val != valueOf("c") {
		t.Fatalf("get(c) = %+v; want %q", r, valueOf("c"))
	}
	waitIdle(t, c)
	calls := log.snapshot()
	if len(calls) != 2 || !slices.Equal(sortedKeys(calls[1]), []string{"b", "c"}) {
		t.Fatalf("fetch calls = %v; want [[first] [b c]]", calls)
	}
}

// 7. The fetch ctx has the latest deadline of the batch's reads and is not cancelled when
// the first read's ctx is.
func TestCoalescerFetchContext(t *testing.T) {
	type fetchCtx struct {
		deadline    time.Time
		hasDeadline bool
		errAfter    error // ctx.Err() once the fetch is released
	}
	// setup returns a coalescer whose first fetch blocks on g1 and second on g2; the
	// second fetch reports its ctx on seen before blocking and the final state after.
	setup := func(t *testing.T) (c *coalescer[string, string], g1, g2 *gate, entered chan int, seen chan fetchCtx) {
		var log fetchLog
		g1, g2 = newGate(t), newGate(t)
		entered = make(chan int, 2)
		seen = make(chan fetchCtx, 4)
		c = newCoalescer(1, 100, func(ctx context.Context, keys []string) (map[string]string, error) {
			i := log.record(keys)
			if i < 2 {
				d, ok := ctx.Deadline()
				seen <- fetchCtx{deadline: d, hasDeadline: ok}
				entered <- i
				<-[]*gate{g1, g2}[i].ch
				seen <- fetchCtx{deadline: d, hasDeadline: ok, errAfter: ctx.Err()}
			}
			return valuesOf(keys), nil
		})
		return
	}

	t.Run("latest deadline, outlives first read", func(t *testing.T) {
		c, g1, g2, entered, seen := setup(t)
		now := time.Now()
		dA, dB, dC, dD := now.Add(30*time.Minute), now.Add(time.Hour), now.Add(3*time.Hour), now.Add(2*time.Hour)

		ctxA, cancelA := context.WithDeadline(context.Background(), dA)
		defer cancelA()
		first := holdSlot(t, ctxA, c, entered)
		if fc := awaitSignal(t, seen, "first fetch ctx"); !fc.hasDeadline || !fc.deadline.Equal(dA) {
			t.Errorf("lone fetch deadline = %v, %v; want %v", fc.deadline, fc.hasDeadline, dA)
		}

		ctxB, cancelB := context.WithDeadline(context.Background(), dB)
		defer cancelB()
		ctxC, cancelC := context.WithDeadline(context.Background(), dC)
		defer cancelC()
		ctxD, cancelD := context.WithDeadline(context.Background(), dD)
		defer cancelD()
		b := startGet(ctxB, c, "b") // first of the batch
		waitQueued(t, c, 1)
		cc := startGet(ctxC, c, "c")
		waitQueued(t, c, 2)
		d := startGet(ctxD, c, "d")
		waitQueued(t, c, 3)
		g1.open()
		awaitSignal(t, seen, "first fetch release")
		if r := await(t, first); r.err != nil {
			t.Fatalf("first get = %+v", r)
		}

		awaitSignal(t, entered, "second fetch")
		fc := awaitSignal(t, seen, "second fetch ctx")
		if !fc.hasDeadline || !fc.deadline.Equal(dC) {
			t.Errorf("batch fetch deadline = %v (set %v); want latest read deadline %v", fc.deadline, fc.hasDeadline, dC)
		}

		// Cancel the batch's first read (and another); the fetch must go on for c.
		cancelB()
		cancelD()
		if r := await(t, b); !errors.Is(r.err, context.Canceled) {
			t.Fatalf("get(b) = %+v; want context.Canceled", r)
		}
		if r := await(t, d); !errors.Is(r.err, context.Canceled) {
			t.Fatalf("get(d) = %+v; want context.Canceled", r)
		}
		g2.open()
		if fc := awaitSignal(t, seen, "second fetch release"); fc.errAfter != nil {
			t.Errorf("batch fetch ctx err = %v after its first read was cancelled; want nil", fc.errAfter)
		}
		if r := await(t, cc); r.err != nil || r.val != valueOf("c") {
			t.Fatalf("get(c) = %+v; want %q", r, valueOf("c"))
		}
		waitIdle(t, c)
	})

	t.Run("no deadline when a read has none", func(t *testing.T) {
		c, g1, g2, entered, seen := setup(t)
		bg := context.Background()
		first := holdSlot(t, bg, c, entered)
		if fc := awaitSignal(t, seen, "first fetch ctx"); fc.hasDeadline {
			t.Errorf("lone fetch without deadline got deadline %v", fc.deadline)
		}
		ctxB, cancelB := context.WithTimeout(bg, time.Hour)
		defer cancelB()
		b := startGet(ctxB, c, "b")
		waitQueued(t, c, 1)
		cc := startGet(bg, c, "c")
		waitQueued(t, c, 2)
		g1.open()
		awaitSignal(t, seen, "first fetch release")
		awaitSignal(t, entered, "second fetch")
		if fc := awaitSignal(t, seen, "second fetch ctx"); fc.hasDeadline {
			t.Errorf("batch fetch has deadline %v though one of its reads has none", fc.deadline)
		}
		g2.open()
		awaitSignal(t, seen, "second fetch release")
		for _, ch := range []<-chan getResult{first, b, cc} {
			if r := await(t, ch); r.err != nil || r.val != valueOf(r.key) {
				t.Errorf("get(%s) = %+v", r.key, r)
			}
		}
		waitIdle(t, c)
	})
}

// 8. Once every read has returned, the slots are given back and no serving goroutine is
// left, also when the last queued batch was cancelled entirely and ran no fetch.
func TestCoalescerReleasesSlotsWhenIdle(t *testing.T) {
	baseline := runtime.NumGoroutine()
	var log fetchLog
	g, g2 := newGate(t), newGate(t)
	// Lone "h" reads hold a slot until their round's gate opens; queued reads answer at once.
	holdGate := map[string]*gate{"h1": g, "h2": g, "h3": g2, "h4": g2}
	entered := make(chan string, 4)
	c := newCoalescer(2, 4, func(_ context.Context, keys []string) (map[string]string, error) {
		log.record(keys)
		if hg, ok := holdGate[keys[0]]; ok {
			entered <- keys[0]
			<-hg.ch
		}
		return valuesOf(keys), nil
	})
	bg := context.Background()

	// Round 1: both slots blocked, 10 live reads queued, then 4 reads that are cancelled
	// before their batch runs.
	h1, h2 := startGet(bg, c, "h1"), startGet(bg, c, "h2")
	awaitSignal(t, entered, "fetch 1")
	awaitSignal(t, entered, "fetch 2")
	var live []<-chan getResult
	for i := range 10 {
		live = append(live, startGet(bg, c, fmt.Sprintf("k%d", i)))
	}
	waitQueued(t, c, 10)
	ctxX, cancelX := context.WithCancel(bg)
	defer cancelX()
	var cancelled []<-chan getResult
	for i := range 4 {
		cancelled = append(cancelled, startGet(ctxX, c, fmt.Sprintf("x%d", i)))
	}
	waitQueued(t, c, 14)
	cancelX()
	for _, ch := range cancelled {
		if r := await(t, ch); !errors.Is(r.err, context.Canceled) {
			t.Fatalf("cancelled get(%s) = %+v", r.key, r)
		}
	}
	g.open()
	for _, ch := range append([]<-chan getResult{h1, h2}, live...) {
		if r := await(t, ch); r.err != nil || r.val != valueOf(r.key) {
			t.Errorf("get(%s) = %+v", r.key, r)
		}
	}
	waitIdle(t, c)
	for _, keys := range log.snapshot() {
		for _, k := range keys {
			if strings.HasPrefix(k, "x") {
				t.Errorf("cancelled read's key %s was fetched (call %v)", k, keys)
			}
		}
	}

	// Round 2: the only queued reads are all cancelled; the slot must still come back.
	h3, h4 := startGet(bg, c, "h3"), startGet(bg, c, "h4")
	awaitSignal(t, entered, "fetch 3")
	awaitSignal(t, entered, "fetch 4")
	if n := inFlight(c); n != 2 {
		t.Fatalf("inFlight = %d with both slots fetching; want 2", n)
	}
	ctxY, cancelY := context.WithCancel(bg)
	defer cancelY()
	var ys []<-chan getResult
	for i := range 3 {
		ys = append(ys, startGet(ctxY, c, fmt.Sprintf("y%d", i)))
	}
	waitQueued(t, c, 3)
	cancelY()
	for _, ch := range ys {
		if r := await(t, ch); !errors.Is(r.err, context.Canceled) {
			t.Fatalf("cancelled get(%s) = %+v", r.key, r)
		}
	}
	callsBefore := len(log.snapshot())
	g2.open()
	for _, ch := range []<-chan getResult{h3, h4} {
		if r := await(t, ch); r.err != nil || r.val != valueOf(r.key) {
			t.Fatalf("get(%s) = %+v", r.key, r)
		}
	}
	waitIdle(t, c)
	if got := len(log.snapshot()); got != callsBefore {
		t.Errorf("a batch of only cancelled reads ran %d fetches; want none", got-callsBefore)
	}

	// The slots are free: lone reads run at once, one fetch of their own key each.
	for _, k := range []string{"after1", "after2", "after3"} {
		if v, err := c.get(bg, k); err != nil || v != valueOf(k) {
			t.Fatalf("get(%s) after idle = %q, %v", k, v, err)
		}
		calls := log.snapshot()
		if last := calls[len(calls)-1]; !slices.Equal(last, []string{k}) {
			t.Fatalf("fetch for lone get(%s) = %v", k, last)
		}
		if n := inFlight(c); n != 0 {
			t.Fatalf("inFlight = %d right after a lone get returned; want 0", n)
		}
	}

	// Every goroutine started by the coalescer (and by this test) has ended.
	waitFor(t, "goroutines to return to baseline", func() bool { return runtime.NumGoroutine() <= baseline })
}

// A lone read runs its query under its own context, so cancelling it (a client gone)
// stops the query.
func TestCoalescerLoneReadCancelStopsFetch(t *testing.T) {
	c := newCoalescer(1, 16, func(ctx context.Context, _ []string) (map[string]string, error) {
		<-ctx.Done() // a query that only ends when cancelled
		return nil, ctx.Err()
	})
	ctx, cancel := context.WithCancel(context.Background())
	res := startGet(ctx, c, "a")
	waitFor(t, "the lone read to take the slot", func() bool { return inFlight(c) == 1 })
	cancel()
	if r := await(t, res); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled lone read err = %v; want context.Canceled", r.err)
	}
	waitIdle(t, c)
}

// A panicking fetch fails its batch with an error and gives the slot back.
func TestCoalescerFetchPanicBecomesError(t *testing.T) {
	panics := true
	c := newCoalescer(1, 16, func(_ context.Context, keys []string) (map[string]string, error) {
		if panics {
			panic("boom")
		}
		return valuesOf(keys), nil
	})
	if _, err := c.get(context.Background(), "a"); err == nil || !strings.Contains(err.Error(), "panicked: boom") {
		t.Fatalf("get with a panicking fetch err = %v; want a panic error", err)
	}
	if n := inFlight(c); n != 0 {
		t.Fatalf("inFlight = %d after a panic; want 0", n)
	}
	panics = false
	if v, err := c.get(context.Background(), "b"); err != nil || v != valueOf("b") {
		t.Fatalf("get after a panic = %q, %v; want %q, nil", v, err, valueOf("b"))
	}
}
