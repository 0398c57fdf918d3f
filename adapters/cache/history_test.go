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
