package cache_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"warehouse/adapters/cache"
	"warehouse/domain"
	"warehouse/ports"
)

// sheddingQueries answers every current read with ports.ErrOverloaded, counting the
// reads; the ledger's past is not cached, so it needs none of those.
type sheddingQueries struct {
	ports.History
	calls atomic.Int64
}

func (s *sheddingQueries) Movement(context.Context, domain.MovementID) (domain.Movement, error) {
	s.calls.Add(1)
	return domain.Movement{}, ports.ErrOverloaded
}

func (s *sheddingQueries) Stock(context.Context, domain.WarehouseID, domain.ProductID) (domain.Stock, error) {
	s.calls.Add(1)
	return domain.Stock{}, ports.ErrOverloaded
}

func (s *sheddingQueries) Movements(context.Context, ports.MovementFilter) (ports.MovementPage, error) {
	s.calls.Add(1)
	return ports.MovementPage{}, ports.ErrOverloaded
}

func (s *sheddingQueries) WarehouseStock(context.Context, ports.StockFilter) (ports.StockPage, error) {
	s.calls.Add(1)
	return ports.StockPage{}, ports.ErrOverloaded
}

// TestOverloadPassesThrough: a shed read reaches the caller as ports.ErrOverloaded, not
// turned into an outage, and is never cached: the next read asks again.
func TestOverloadPassesThrough(t *testing.T) {
	next := &sheddingQueries{}
	q := cache.NewQueries(next, cache.Options{Size: 100, TTL: time.Minute}, nil)
	ctx := context.Background()
	id := domain.MovementID(uuid.New())
	w, p := domain.WarehouseID(uuid.New()), domain.ProductID(uuid.New())
	for range 2 {
		_, errM := q.Movement(ctx, id)
		_, errS := q.Stock(ctx, w, p)
		_, errL := q.Movements(ctx, ports.MovementFilter{Limit: 1})
		_, errW := q.WarehouseStock(ctx, ports.StockFilter{Warehouse: w, Limit: 1})
		for name, err := range map[string]error{"Movement": errM, "Stock": errS, "Movements": errL, "WarehouseStock": errW} {
			if !errors.Is(err, ports.ErrOverloaded) || errors.Is(err, ports.ErrUnavailable) {
				t.Errorf("%s: %v, want ErrOverloaded passed through", name, err)
			}
		}
	}
	if n := next.calls.Load(); n != 8 {
		t.Errorf("%d reads reached the store, want 8: an overload answer was cached", n)
	}
}
