package domain_test

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"warehouse/domain"
)

// TestChangesOf checks the backward walk against a forward replay: the state recorded
// for each event is the state a ledger holds right after applying it.
func TestChangesOf(t *testing.T) {
	w1, w2 := domain.WarehouseID(uuid.New()), domain.WarehouseID(uuid.New())
	p := domain.ProductID(uuid.New())
	m1, m2 := domain.MovementID(uuid.New()), domain.MovementID(uuid.New())
	ts := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ev := func(id string, k domain.EventKind, m domain.MovementID, w domain.WarehouseID, q int64) domain.Event {
		return domain.Event{Source: "s", ID: id, Kind: k, MovementID: m, WarehouseID: w, ProductID: p, Quantity: q, Timestamp: ts}
	}
	before := []domain.Event{ev("0", domain.Arrival, domain.MovementID(uuid.New()), w1, 100)}
	batch := []domain.Event{
		ev("1", domain.Departure, m1, w1, 30),
		ev("2", domain.Arrival, m2, w1, 5),
		ev("3", domain.Arrival, m1, w2, 28),
		ev("4", domain.Departure, m2, w1, 10), // m2 arrived first, then its departure
	}
	l := domain.NewLedger()
	for _, e := range before {
		if err := l.Apply(e); err != nil {
			t.Fatal(err)
		}
	}
	var want []domain.Change
	for _, e := range batch {
		if err := l.Apply(e); err != nil {
			t.Fatal(err)
		}
		m, _ := l.Movement(e.MovementID)
		q, _ := l.Stock(e.StockKey())
		want = append(want, domain.Change{Event: e.Identity(), Kind: e.Kind, Movement: m.Clone(),
			Stock: domain.Stock{WarehouseID: e.WarehouseID, ProductID: p, Quantity: q}})
	}
	committed := time.Now()
	got := domain.ChangesOf(batch, l, 41, committed)
	if len(got) != len(want) {
		t.Fatalf("%d changes, want %d", len(got), len(want))
	}
	for i := range got {
		w := want[i]
		w.Position, w.Stock.UpdatedAt = 41+int64(2*i), committed
		g := got[i]
		if g.Position != w.Position || g.StockPosition() != w.Position+1 || g.Event != w.Event || g.Kind != w.Kind || g.Stock != w.Stock {
			t.Errorf("change %d = %+v, want %+v", i, g, w)
		}
		if g.Movement.Status() != w.Movement.Status() || !sameLeg(g.Movement.Departure, w.Movement.Departure) || !sameLeg(g.Movement.Arrival, w.Movement.Arrival) {
			t.Errorf("change %d: movement %+v, want %+v", i, g.Movement, w.Movement)
		}
	}
	// The walk must not have changed the ledger's movements.
	if m, _ := l.Movement(m1); m.Departure == nil || m.Arrival == nil {
		t.Errorf("ledger's movement changed by ChangesOf: %+v", m)
	}
}

func sameLeg(a, b *domain.Leg) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }
