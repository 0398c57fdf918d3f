package cache_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"warehouse/adapters/cache"
	"warehouse/domain"
	"warehouse/ports"
)

// countingHistory answers the ledger's past with a quantity that grows with every call,
// as a late event would change a past answer.
type countingHistory struct {
	ports.History
	calls atomic.Int64
}

func (h *countingHistory) StockAsOf(_ context.Context, w domain.WarehouseID, p domain.ProductID, t time.Time) (domain.StockAsOf, error) {
	return domain.StockAsOf{WarehouseID: w, ProductID: p, AsOf: t, Quantity: h.calls.Add(1)}, nil
}

func (h *countingHistory) StockHistory(context.Context, ports.HistoryFilter) (ports.HistoryPage, error) {
	h.calls.Add(1)
	return ports.HistoryPage{}, nil
}

// TestHistoryIsNotCached: answers about the past go to the next Queries every time, so
// one that a late event changed is never served stale.
func TestHistoryIsNotCached(t *testing.T) {
	f := newFake()
	h := &countingHistory{}
	f.History = h
	q := cache.NewQueries(f, cache.Options{Size: 100, TTL: time.Hour}, nil)
	w, p := domain.WarehouseID(uuid.New()), domain.ProductID(uuid.New())
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for want := int64(1); want <= 3; want++ {
		got, err := q.StockAsOf(context.Background(), w, p, at)
		if err != nil || got.Quantity != want {
			t.Fatalf("as-of call %d: %+v, %v; want a fresh answer (%d)", want, got, err, want)
		}
	}
	if _, err := q.StockHistory(context.Background(), ports.HistoryFilter{Warehouse: w, Product: p, Limit: 5}); err != nil || h.calls.Load() != 4 {
		t.Fatalf("history: %v, %d calls to the next Queries; want 4", err, h.calls.Load())
	}
}

func (h *countingHistory) Routes(_ context.Context, f ports.RouteFilter) (ports.RoutePage, error) {
	n := h.calls.Add(1)
	return ports.RoutePage{Items: []domain.Route{{Movements: n, From: domain.WarehouseID(uuid.New())}}}, nil
}

// TestRoutesCached: a route answer is served from the cache within CACHE_TTL, a change to
// any movement drops it, other filters are other answers, and TTL 0 caches nothing.
func TestRoutesCached(t *testing.T) {
	ctx := context.Background()
	f := ports.RouteFilter{Since: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Until: time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC), Limit: 50}
	movements := func(q *cache.Queries, f ports.RouteFilter) int64 {
		t.Helper()
		p, err := q.Routes(ctx, f)
		if err != nil || len(p.Items) != 1 {
			t.Fatalf("routes: %+v, %v", p, err)
		}
		return p.Items[0].Movements
	}
	next := newFake()
	h := &countingHistory{}
	next.History = h
	q := cache.NewQueries(next, cache.Options{Size: 100, TTL: time.Hour}, nil)
	if a, b := movements(q, f), movements(q, f); a != 1 || b != 1 {
		t.Errorf("the second read got answer %d, want the cached 1", b)
	}
	other := f
	other.Limit = 10
	if got := movements(q, other); got != 2 {
		t.Errorf("another filter got answer %d, want a fresh 2", got)
	}
	q.Notify(ctx, ports.Changes{Stock: []domain.StockKey{{}}})
	if got := movements(q, f); got != 1 {
		t.Errorf("after a stock-only change: answer %d, want the cached 1", got)
	}
	q.Notify(ctx, ports.Changes{Movements: []domain.MovementID{domain.MovementID(uuid.New())}})
	if got := movements(q, f); got != 3 {
		t.Errorf("after a movement changed: answer %d, want a fresh 3", got)
	}

	h2 := &countingHistory{}
	next2 := newFake()
	next2.History = h2
	q0 := cache.NewQueries(next2, cache.Options{Size: 100, TTL: 0}, nil)
	if a, b := movements(q0, f), movements(q0, f); a != 1 || b != 2 {
		t.Errorf("CACHE_TTL=0: answers %d and %d, want 1 and 2 (not cached)", a, b)
	}
}
