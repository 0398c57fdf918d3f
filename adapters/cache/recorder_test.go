package cache_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"warehouse/adapters/cache"
	"warehouse/adapters/memory"
	"warehouse/application"
	"warehouse/domain"
)

// TestRecorderInvalidates wires the cache as the recorder's notifier over a memory store,
// as `warehouse run` does: a committed batch is visible at once despite a long TTL.
func TestRecorderInvalidates(t *testing.T) {
	store := memory.NewStore()
	q := cache.NewQueries(application.NewQueries(store), cache.Options{Size: 100, TTL: time.Hour}, nil)
	rec := application.NewRecorder(store, q)
	ctx := context.Background()
	wh, p, mv := uuid.NewString(), uuid.NewString(), uuid.NewString()

	mustRecord(t, rec, event(mv, wh, p, domain.Arrival, 10))
	whID, _ := domain.ParseWarehouseID(wh)
	pID, _ := domain.ParseProductID(p)
	mID, _ := domain.ParseMovementID(mv)
	if s, err := q.Stock(ctx, whID, pID); err != nil || s.Quantity != 10 {
		t.Fatalf("Stock = %+v, %v; want 10", s, err)
	}
	if m, err := q.Movement(ctx, mID); err != nil || m.Status() != domain.Arrived {
		t.Fatalf("Movement = %+v, %v; want arrived", m, err)
	}

	sender := uuid.NewString()
	mustRecord(t, rec,
		event(uuid.NewString(), wh, p, domain.Departure, 4),
		event(uuid.NewString(), sender, p, domain.Arrival, 10), // the sender's own supply
		event(mv, sender, p, domain.Departure, 10))
	if s, err := q.Stock(ctx, whID, pID); err != nil || s.Quantity != 6 {
		t.Fatalf("after a departure, Stock = %+v, %v; want 6", s, err)
	}
	if m, err := q.Movement(ctx, mID); err != nil || m.Status() != domain.Completed {
		t.Fatalf("after its departure, Movement = %+v, %v; want completed", m, err)
	}
}

func event(movement, warehouse, product string, kind domain.EventKind, qty int64) domain.Event {
	e, err := domain.NewEvent(domain.EventInput{
		ID: uuid.NewString(), Source: "WH-1", SpecVersion: domain.SpecVersion, Type: domain.EventType,
		MovementID: movement, WarehouseID: warehouse, ProductID: product, Event: string(kind),
		Timestamp: "2025-02-18T12:00:00Z", Quantity: qty,
	})
	if err != nil {
		panic(err)
	}
	return e
}

func mustRecord(t *testing.T, rec *application.Recorder, events ...domain.Event) {
	t.Helper()
	results, err := rec.Record(context.Background(), events)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range results {
		if r != nil {
			t.Fatalf("event %d: %v", i, r)
		}
	}
}
