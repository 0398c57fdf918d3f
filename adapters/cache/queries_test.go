package cache_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"warehouse/adapters/cache"
	"warehouse/domain"
	"warehouse/ports"
)

// fakeQueries is a ports.Queries over maps that counts the point reads reaching it. When
// gate is set, a read announces itself on entered, then waits for gate before answering
// with what it read on entry.
type fakeQueries struct {
	ports.History // nil: see TestHistoryIsNotCached for the ledger's past
	mu            sync.Mutex
	movements     map[domain.MovementID]domain.Movement
	stock         map[domain.StockKey]domain.Stock
	calls         atomic.Int64
	entered       chan struct{}
	gate          chan struct{}
}

func newFake() *fakeQueries {
	return &fakeQueries{
		movements: map[domain.MovementID]domain.Movement{},
		stock:     map[domain.StockKey]domain.Stock{},
	}
}

func (f *fakeQueries) wait() {
	if f.gate != nil {
		f.entered <- struct{}{}
		<-f.gate
	}
}

func (f *fakeQueries) Movement(_ context.Context, id domain.MovementID) (domain.Movement, error) {
	f.calls.Add(1)
	f.mu.Lock()
	m, ok := f.movements[id]
	f.mu.Unlock()
	f.wait()
	if !ok {
		return domain.Movement{}, domain.ErrNotFound
	}
	return m, nil
}

func (f *fakeQueries) Stock(_ context.Context, wh domain.WarehouseID, p domain.ProductID) (domain.Stock, error) {
	f.calls.Add(1)
	f.mu.Lock()
	s, ok := f.stock[domain.StockKey{Warehouse: wh, Product: p}]
	f.mu.Unlock()
	f.wait()
	if !ok {
		return domain.Stock{}, domain.ErrNotFound
	}
	return s, nil
}

func (f *fakeQueries) Movements(context.Context, ports.MovementFilter) (ports.MovementPage, error) {
	f.calls.Add(1)
	return ports.MovementPage{}, nil
}

func (f *fakeQueries) WarehouseStock(context.Context, ports.StockFilter) (ports.StockPage, error) {
	f.calls.Add(1)
	return ports.StockPage{}, nil
}

func (f *fakeQueries) putStock(s domain.Stock) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stock[domain.StockKey{Warehouse: s.WarehouseID, Product: s.ProductID}] = s
}

func (f *fakeQueries) putMovement(m domain.Movement) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.movements[m.ID] = m
}

func newStock(qty int64) domain.Stock {
	return domain.Stock{
		WarehouseID: domain.WarehouseID(uuid.New()),
		ProductID:   domain.ProductID(uuid.New()),
		Quantity:    qty,
		UpdatedAt:   time.Date(2025, 2, 18, 12, 0, 0, 0, time.UTC),
	}
}

func newMovement(completed bool) domain.Movement {
	m := domain.Movement{
		ID:        domain.MovementID(uuid.New()),
		ProductID: domain.ProductID(uuid.New()),
		Departure: &domain.Leg{
			WarehouseID: domain.WarehouseID(uuid.New()), Source: "WH-1",
			Timestamp: time.Date(2025, 2, 18, 12, 12, 56, 0, time.UTC), Quantity: 100,
		},
	}
	if completed {
		m.Arrival = &domain.Leg{
			WarehouseID: domain.WarehouseID(uuid.New()), Source: "WH-2",
			Timestamp: time.Date(2025, 2, 18, 14, 34, 56, 0, time.UTC), Quantity: 98,
		}
	}
	return m
}

func mustStock(t *testing.T, q ports.Queries, s domain.Stock) domain.Stock {
	t.Helper()
	got, err := q.Stock(context.Background(), s.WarehouseID, s.ProductID)
	if err != nil {
		t.Fatalf("Stock: %v", err)
	}
	return got
}

func mustMovement(t *testing.T, q ports.Queries, id domain.MovementID) domain.Movement {
	t.Helper()
	got, err := q.Movement(context.Background(), id)
	if err != nil {
		t.Fatalf("Movement: %v", err)
	}
	return got
}

// eventually polls cond until it holds or a generous deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestHit(t *testing.T) {
	f := newFake()
	reg := prometheus.NewRegistry()
	q := cache.NewQueries(f, cache.Options{Size: 10, TTL: time.Minute}, reg)
	s := newStock(5)
	f.putStock(s)
	m := newMovement(false)
	f.putMovement(m)

	for range 2 {
		if got := mustStock(t, q, s); got != s {
			t.Fatalf("Stock = %+v, want %+v", got, s)
		}
		if got := mustMovement(t, q, m.ID); got.ID != m.ID || *got.Departure != *m.Departure {
			t.Fatalf("Movement = %+v, want %+v", got, m)
		}
	}
	if n := f.calls.Load(); n != 2 {
		t.Fatalf("next called %d times for two reads of two keys, want 2", n)
	}
	want := `
# HELP cache_hits_total Reads answered from the cache, by kind (movement, stock or routes).
# TYPE cache_hits_total counter
cache_hits_total{kind="movement"} 1
cache_hits_total{kind="routes"} 0
cache_hits_total{kind="stock"} 1
# HELP cache_misses_total Reads the cache had to pass on, by kind (movement, stock or routes).
# TYPE cache_misses_total counter
cache_misses_total{kind="movement"} 1
cache_misses_total{kind="routes"} 0
cache_misses_total{kind="stock"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "cache_hits_total", "cache_misses_total"); err != nil {
		t.Fatal(err)
	}
}

func TestListsAndNotFoundAreNotCached(t *testing.T) {
	f := newFake()
	q := cache.NewQueries(f, cache.Options{Size: 10, TTL: time.Minute}, nil)
	ctx := context.Background()
	s := newStock(1)
	for range 2 {
		if _, err := q.Stock(ctx, s.WarehouseID, s.ProductID); !errors.Is(err, domain.ErrNotFound) {
			t.Fatalf("Stock err = %v, want ErrNotFound", err)
		}
		if _, err := q.Movements(ctx, ports.MovementFilter{Limit: 1}); err != nil {
			t.Fatal(err)
		}
		if _, err := q.WarehouseStock(ctx, ports.StockFilter{Limit: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.calls.Load(); n != 6 {
		t.Fatalf("next called %d times, want 6", n)
	}
	f.putStock(s)
	if got := mustStock(t, q, s); got != s {
		t.Fatalf("after the row appeared, Stock = %+v, want %+v", got, s)
	}
}

func TestExpiry(t *testing.T) {
	f := newFake()
	q := cache.NewQueries(f, cache.Options{Size: 10, TTL: 50 * time.Millisecond}, nil)
	s := newStock(5)
	f.putStock(s)
	mustStock(t, q, s)
	before := f.calls.Load()
	eventually(t, "a read after the TTL reaches next", func() bool {
		mustStock(t, q, s)
		return f.calls.Load() > before
	})
}

func TestCompletedMovementOutlivesTTL(t *testing.T) {
	f := newFake()
	const ttl = 50 * time.Millisecond
	q := cache.NewQueries(f, cache.Options{Size: 10, TTL: ttl}, nil)
	done, moving := newMovement(true), newMovement(false)
	f.putMovement(done)
	f.putMovement(moving)
	mustMovement(t, q, done.ID)
	mustMovement(t, q, moving.ID)
	start := f.calls.Load()

	// Once the in-transit movement has expired, the completed one must still be a hit.
	eventually(t, "the in_transit movement expires", func() bool {
		mustMovement(t, q, moving.ID)
		return f.calls.Load() > start
	})
	time.Sleep(2 * ttl) // certainly past the TTL of the completed entry as well
	before := f.calls.Load()
	mustMovement(t, q, done.ID)
	if n := f.calls.Load(); n != before {
		t.Fatalf("completed movement read reached next after the TTL (%d calls, want %d)", n, before)
	}
}

func TestZeroTTLCachesCompletedMovementsOnly(t *testing.T) {
	f := newFake()
	q := cache.NewQueries(f, cache.Options{Size: 10, TTL: 0}, nil)
	done, moving, s := newMovement(true), newMovement(false), newStock(3)
	f.putMovement(done)
	f.putMovement(moving)
	f.putStock(s)
	for range 2 {
		mustMovement(t, q, done.ID)
		mustMovement(t, q, moving.ID)
		mustStock(t, q, s)
	}
	if n := f.calls.Load(); n != 5 {
		t.Fatalf("next called %d times, want 5 (only the completed movement cached)", n)
	}
}

func TestNotifyInvalidates(t *testing.T) {
	f := newFake()
	q := cache.NewQueries(f, cache.Options{Size: 10, TTL: time.Hour}, nil)
	s := newStock(5)
	m := newMovement(false)
	f.putStock(s)
	f.putMovement(m)
	mustStock(t, q, s)
	mustMovement(t, q, m.ID)

	s2 := s
	s2.Quantity = 7
	f.putStock(s2)
	m2 := m
	m2.Arrival = &domain.Leg{WarehouseID: domain.WarehouseID(uuid.New()), Source: "WH-2", Timestamp: m.Departure.Timestamp, Quantity: 100}
	f.putMovement(m2)
	q.Notify(context.Background(), ports.Changes{
		Movements: []domain.MovementID{m.ID},
		Stock:     []domain.StockKey{{Warehouse: s.WarehouseID, Product: s.ProductID}},
	})
	if got := mustStock(t, q, s); got.Quantity != 7 {
		t.Fatalf("after Notify, quantity = %d, want 7", got.Quantity)
	}
	if got := mustMovement(t, q, m.ID); got.Status() != domain.Completed {
		t.Fatalf("after Notify, status = %s, want completed", got.Status())
	}
}

// TestNotifyDuringMiss is the race where a miss reads the old value, a write commits and
// Notify runs, and then the miss would store the old value for a whole TTL.
func TestNotifyDuringMiss(t *testing.T) {
	f := newFake()
	f.entered, f.gate = make(chan struct{}), make(chan struct{})
	q := cache.NewQueries(f, cache.Options{Size: 10, TTL: time.Hour}, nil)
	s := newStock(5)
	f.putStock(s)

	type result struct {
		s   domain.Stock
		err error
	}
	res := make(chan result, 1)
	go func() {
		got, err := q.Stock(context.Background(), s.WarehouseID, s.ProductID)
		res <- result{got, err}
	}()
	<-f.entered // the miss has read quantity 5 and is blocked

	s2 := s
	s2.Quantity = 9
	f.putStock(s2)
	q.Notify(context.Background(), ports.Changes{Stock: []domain.StockKey{{Warehouse: s.WarehouseID, Product: s.ProductID}}})
	close(f.gate)

	r := <-res
	if r.err != nil || r.s.Quantity != 5 {
		t.Fatalf("in-flight read = %+v, %v; want the quantity it read, 5", r.s, r.err)
	}
	f.entered = nil // reads no longer announce themselves
	f.gate = nil
	if got := mustStock(t, q, s); got.Quantity != 9 {
		t.Fatalf("read after Notify = %d, want 9: the stale value was cached", got.Quantity)
	}
}

func TestSingleFlight(t *testing.T) {
	f := newFake()
	const n = 20
	f.entered, f.gate = make(chan struct{}, n), make(chan struct{}) // a second call must not block
	q := cache.NewQueries(f, cache.Options{Size: 10, TTL: time.Hour}, nil)
	s := newStock(5)
	f.putStock(s)

	var started, done sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		started.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			started.Done()
			got, err := q.Stock(context.Background(), s.WarehouseID, s.ProductID)
			if err == nil && got != s {
				err = errors.New("wrong stock row")
			}
			errs <- err
		}()
	}
	started.Wait()
	<-f.entered
	// Give the other goroutines a moment to join the flight; any that come later find
	// the value cached, so the assertion below holds either way.
	time.Sleep(20 * time.Millisecond)
	close(f.gate)
	done.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if c := f.calls.Load(); c != 1 {
		t.Fatalf("next called %d times by %d concurrent misses, want 1", c, n)
	}
}

func TestWaiterHonoursItsContext(t *testing.T) {
	f := newFake()
	f.entered, f.gate = make(chan struct{}, 1), make(chan struct{})
	defer close(f.gate)
	q := cache.NewQueries(f, cache.Options{Size: 10, TTL: time.Hour}, nil)
	s := newStock(5)
	f.putStock(s)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := q.Stock(ctx, s.WarehouseID, s.ProductID); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
}

func TestDisabled(t *testing.T) {
	f := newFake()
	q := cache.NewQueries(f, cache.Options{Size: 0, TTL: time.Hour}, prometheus.NewRegistry())
	s := newStock(5)
	f.putStock(s)
	m := newMovement(true)
	f.putMovement(m)
	for range 3 {
		mustStock(t, q, s)
		mustMovement(t, q, m.ID)
	}
	q.Notify(context.Background(), ports.Changes{Movements: []domain.MovementID{m.ID}})
	if n := f.calls.Load(); n != 6 {
		t.Fatalf("next called %d times with the cache disabled, want 6", n)
	}
}

func TestBoundedSize(t *testing.T) {
	f := newFake()
	q := cache.NewQueries(f, cache.Options{Size: 2, TTL: time.Hour}, nil)
	a, b, c := newStock(1), newStock(2), newStock(3)
	for _, s := range []domain.Stock{a, b, c} {
		f.putStock(s)
		mustStock(t, q, s)
	}
	before := f.calls.Load()
	mustStock(t, q, c)
	mustStock(t, q, b)
	if n := f.calls.Load(); n != before {
		t.Fatalf("the two newest keys were not cached")
	}
	mustStock(t, q, a)
	if n := f.calls.Load(); n != before+1 {
		t.Fatalf("the first key was still cached with Size 2 and 3 keys")
	}
}

func TestSharedRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := newFake()
	s := newStock(1)
	f.putStock(s)
	for range 2 { // a second cache on the same registry shares the counters
		q := cache.NewQueries(f, cache.Options{Size: 2, TTL: time.Hour}, reg)
		mustStock(t, q, s)
	}
	want := `
# HELP cache_misses_total Reads the cache had to pass on, by kind (movement, stock or routes).
# TYPE cache_misses_total counter
cache_misses_total{kind="movement"} 0
cache_misses_total{kind="routes"} 0
cache_misses_total{kind="stock"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "cache_misses_total"); err != nil {
		t.Fatal(err)
	}
}

func TestPanicBecomesError(t *testing.T) {
	q := cache.NewQueries(panicking{}, cache.Options{Size: 2, TTL: time.Hour}, nil)
	_, err := q.Movement(context.Background(), domain.MovementID(uuid.New()))
	if err == nil || !strings.Contains(err.Error(), "panicked") {
		t.Fatalf("err = %v, want a panic error", err)
	}
}

type panicking struct{ ports.Queries }

func (panicking) Movement(context.Context, domain.MovementID) (domain.Movement, error) {
	panic("boom")
}
