package domain_test

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"warehouse/domain"
)

// mustEvent builds a valid event with a fresh identity.
func mustEvent(t *testing.T, kind domain.EventKind, m domain.MovementID, w domain.WarehouseID, p domain.ProductID, qty int64, ts string) domain.Event {
	t.Helper()
	e, err := domain.NewEvent(domain.EventInput{
		ID:          uuid.NewString(),
		Source:      "WH-TEST",
		SpecVersion: domain.SpecVersion,
		Type:        domain.EventType,
		MovementID:  m.String(),
		WarehouseID: w.String(),
		ProductID:   p.String(),
		Event:       string(kind),
		Timestamp:   ts,
		Quantity:    qty,
	})
	if err != nil {
		t.Fatalf("NewEvent: %v", err)
	}
	return e
}

// pair is a departure of 100 from From and an arrival of 98 at To of one movement.
type pair struct {
	movement           domain.MovementID
	product            domain.ProductID
	from, to           domain.WarehouseID
	departure, arrival domain.Event
}

func newPair(t *testing.T) pair {
	t.Helper()
	x := pair{
		movement: domain.MovementID(uuid.New()),
		product:  domain.ProductID(uuid.New()),
		from:     domain.WarehouseID(uuid.New()),
		to:       domain.WarehouseID(uuid.New()),
	}
	x.departure = mustEvent(t, domain.Departure, x.movement, x.from, x.product, 100, "2025-02-18T12:12:56Z")
	x.arrival = mustEvent(t, domain.Arrival, x.movement, x.to, x.product, 98, "2025-02-18T14:34:56Z")
	return x
}

// mustSupply records a supplier arrival of qty of p at w.
func mustSupply(t *testing.T, l *domain.Ledger, w domain.WarehouseID, p domain.ProductID, qty int64) {
	t.Helper()
	if err := l.Apply(mustEvent(t, domain.Arrival, domain.MovementID(uuid.New()), w, p, qty, "2025-01-01T00:00:00Z")); err != nil {
		t.Fatalf("supply %d: %v", qty, err)
	}
}

func mustStock(t *testing.T, l *domain.Ledger, w domain.WarehouseID, p domain.ProductID, want int64) {
	t.Helper()
	if got, ok := l.Stock(domain.StockKey{Warehouse: w, Product: p}); !ok || got != want {
		t.Errorf("stock %s/%s = %d, %v; want %d, true", w, p, got, ok, want)
	}
}

func renewed(e domain.Event) domain.Event {
	e.ID = uuid.NewString()
	return e
}

func TestLedgerApply(t *testing.T) {
	msk := time.FixedZone("MSK", 3*3600)
	tests := []struct {
		name string
		// setup runs against a ledger already holding 150 of the product at x.from and the
		// arrival x.arrival; it returns the event under test.
		event   func(t *testing.T, l *domain.Ledger, x pair) domain.Event
		wantErr error
	}{
		{"the departure after its arrival", func(t *testing.T, l *domain.Ledger, x pair) domain.Event {
			return x.departure
		}, nil},
		{"same identity again", func(t *testing.T, l *domain.Ledger, x pair) domain.Event {
			return x.arrival
		}, domain.ErrDuplicate},
		{"same identity with other data", func(t *testing.T, l *domain.Ledger, x pair) domain.Event {
			e := mustEvent(t, domain.Departure, domain.MovementID(uuid.New()), x.from, x.product, 1, "2025-03-01T00:00:00Z")
			e.Source, e.ID = x.arrival.Source, x.arrival.ID
			return e
		}, domain.ErrDuplicate},
		{"same id from another source", func(t *testing.T, l *domain.Ledger, x pair) domain.Event {
			e := mustEvent(t, domain.Arrival, domain.MovementID(uuid.New()), x.to, x.product, 1, "2025-03-01T00:00:00Z")
			e.Source, e.ID = "WH-OTHER", x.arrival.ID
			return e
		}, nil},
		{"identical data under a new identity", func(t *testing.T, l *domain.Ledger, x pair) domain.Event {
			return renewed(x.arrival)
		}, domain.ErrDuplicate},
		{"identical data, another source", func(t *testing.T, l *domain.Ledger, x pair) domain.Event {
			e := renewed(x.arrival)
			e.Source = "WH-RESENDER"
			return e
		}, domain.ErrDuplicate},
		{"identical data, same instant in another zone", func(t *testing.T, l *domain.Ledger, x pair) domain.Event {
			e := renewed(x.arrival)
			e.Timestamp = e.Timestamp.In(msk)
			return e
		}, domain.ErrDuplicate},
		{"second arrival with other quantity", func(t *testing.T, l *domain.Ledger, x pair) domain.Event {
			e := renewed(x.arrival)
			e.Quantity = 97
			return e
		}, domain.ErrConflict},
		{"second arrival at another warehouse", func(t *testing.T, l *domain.Ledger, x pair) domain.Event {
			e := renewed(x.arrival)
			e.WarehouseID = domain.WarehouseID(uuid.New())
			return e
		}, domain.ErrConflict},
		{"second arrival with other timestamp", func(t *testing.T, l *domain.Ledger, x pair) domain.Event {
			e := renewed(x.arrival)
			e.Timestamp = e.Timestamp.Add(time.Microsecond)
			return e
		}, domain.ErrConflict},
		{"second arrival of another product", func(t *testing.T, l *domain.Ledger, x pair) domain.Event {
			e := renewed(x.arrival)
			e.ProductID = domain.ProductID(uuid.New())
			return e
		}, domain.ErrConflict},
		{"departure of another product", func(t *testing.T, l *domain.Ledger, x pair) domain.Event {
			other := domain.ProductID(uuid.New())
			mustSupply(t, l, x.from, other, 500)
			return mustEvent(t, domain.Departure, x.movement, x.from, other, 100, "2025-02-18T12:12:56Z")
		}, domain.ErrConflict},
		{"departure beyond stock", func(t *testing.T, l *domain.Ledger, x pair) domain.Event {
			return mustEvent(t, domain.Departure, x.movement, x.from, x.product, 151, "2025-02-18T12:12:56Z")
		}, domain.ErrInsufficientStock},
		{"departure of all the stock", func(t *testing.T, l *domain.Ledger, x pair) domain.Event {
			return mustEvent(t, domain.Departure, x.movement, x.from, x.product, 150, "2025-02-18T12:12:56Z")
		}, nil},
		{"departure from a warehouse that never held the product", func(t *testing.T, l *domain.Ledger, x pair) domain.Event {
			return mustEvent(t, domain.Departure, x.movement, domain.WarehouseID(uuid.New()), x.product, 1, "2025-02-18T12:12:56Z")
		}, domain.ErrInsufficientStock},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := domain.NewLedger()
			x := newPair(t)
			mustSupply(t, l, x.from, x.product, 150)
			if err := l.Apply(x.arrival); err != nil {
				t.Fatalf("arrival: %v", err)
			}
			e := tc.event(t, l, x)
			before := snapshot(l, e)

			err := l.Apply(e)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Apply: %v, want recorded", err)
				}
				wantStock := before.stock + e.Delta()
				if got, _ := l.Stock(e.StockKey()); got != wantStock {
					t.Errorf("stock = %d, want %d", got, wantStock)
				}
				if m, _ := l.Movement(e.MovementID); m.Status() == before.movement.Status() && before.known {
					t.Errorf("movement status stayed %s", m.Status())
				}
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Apply: %v, want %v", err, tc.wantErr)
			}
			if after := snapshot(l, e); !after.equal(before) {
				t.Errorf("a refused event changed the ledger: before %+v, after %+v", before, after)
			}
		})
	}
}

// state is what one event could change in a ledger.
type state struct {
	stock      int64
	stockKnown bool
	movement   domain.Movement
	known      bool
}

func snapshot(l *domain.Ledger, e domain.Event) state {
	var s state
	s.stock, s.stockKnown = l.Stock(e.StockKey())
	s.movement, s.known = l.Movement(e.MovementID)
	return s
}

func (s state) equal(o state) bool {
	legEq := func(a, b *domain.Leg) bool { return a == nil && b == nil || a != nil && b != nil && *a == *b }
	return s.stock == o.stock && s.stockKnown == o.stockKnown && s.known == o.known &&
		s.movement.ID == o.movement.ID && s.movement.ProductID == o.movement.ProductID &&
		legEq(s.movement.Departure, o.movement.Departure) && legEq(s.movement.Arrival, o.movement.Arrival)
}

func TestLedgerRefusedDepartureLeavesNoTrace(t *testing.T) {
	l := domain.NewLedger()
	x := newPair(t)
	if err := l.Apply(x.departure); !errors.Is(err, domain.ErrInsufficientStock) {
		t.Fatalf("departure from empty stock: %v, want insufficient stock", err)
	}
	if q, ok := l.Stock(domain.StockKey{Warehouse: x.from, Product: x.product}); ok {
		t.Errorf("stock row created by a refused departure: %d", q)
	}
	if m, ok := l.Movement(x.movement); ok {
		t.Errorf("movement recorded by a refused departure: %+v", m)
	}
	mustSupply(t, l, x.from, x.product, 99)
	if err := l.Apply(x.departure); !errors.Is(err, domain.ErrInsufficientStock) {
		t.Fatalf("departure of 100 from 99: %v, want insufficient stock", err)
	}
	mustStock(t, l, x.from, x.product, 99)
	mustSupply(t, l, x.from, x.product, 1)
	// the same event, retried: its identity was not recorded, so it is not a duplicate
	if err := l.Apply(x.departure); err != nil {
		t.Fatalf("retried departure: %v", err)
	}
	mustStock(t, l, x.from, x.product, 0)
	if m, _ := l.Movement(x.movement); m.Status() != domain.InTransit {
		t.Errorf("status = %s, want in_transit", m.Status())
	}
}

func TestLedgerSamplePair(t *testing.T) {
	for _, order := range []string{"departure first", "arrival first"} {
		t.Run(order, func(t *testing.T) {
			l := domain.NewLedger()
			x := newPair(t)
			mustSupply(t, l, x.from, x.product, 150)
			events := []domain.Event{x.departure, x.arrival}
			if order == "arrival first" {
				events = []domain.Event{x.arrival, x.departure}
			}
			for _, e := range events {
				if err := l.Apply(e); err != nil {
					t.Fatalf("%s: %v", e.Kind, err)
				}
			}
			mustStock(t, l, x.from, x.product, 50)
			mustStock(t, l, x.to, x.product, 98)
			m, ok := l.Movement(x.movement)
			if !ok || m.Status() != domain.Completed || m.ProductID != x.product {
				t.Fatalf("movement = %+v, %v", m, ok)
			}
			if secs, _ := m.ElapsedSeconds(); secs != 8520 {
				t.Errorf("elapsed = %d, want 8520", secs)
			}
			if d, _ := m.QuantityDifference(); d != -2 {
				t.Errorf("difference = %d, want -2", d)
			}
		})
	}
}

func TestLedgerArrivalThenDepartureFromIt(t *testing.T) {
	l := domain.NewLedger()
	w, p := domain.WarehouseID(uuid.New()), domain.ProductID(uuid.New())
	in := mustEvent(t, domain.Arrival, domain.MovementID(uuid.New()), w, p, 10, "2025-02-18T10:00:00Z")
	out := mustEvent(t, domain.Departure, domain.MovementID(uuid.New()), w, p, 10, "2025-02-18T11:00:00Z")
	more := mustEvent(t, domain.Departure, domain.MovementID(uuid.New()), w, p, 1, "2025-02-18T12:00:00Z")
	if err := l.Apply(in); err != nil {
		t.Fatalf("arrival: %v", err)
	}
	if err := l.Apply(out); err != nil {
		t.Fatalf("departure of what arrived: %v", err)
	}
	if err := l.Apply(more); !errors.Is(err, domain.ErrInsufficientStock) {
		t.Fatalf("departure from empty stock: %v, want insufficient stock", err)
	}
	mustStock(t, l, w, p, 0)
}

func TestLedgerLoad(t *testing.T) {
	l := domain.NewLedger()
	x := newPair(t)
	l.LoadIdentity(x.arrival.Identity())
	l.LoadStock(domain.StockKey{Warehouse: x.from, Product: x.product}, 100)
	l.LoadMovement(domain.Movement{}.Apply(x.arrival))

	if err := l.Apply(x.arrival); !errors.Is(err, domain.ErrDuplicate) {
		t.Errorf("loaded identity: %v, want duplicate", err)
	}
	conflicting := renewed(x.arrival)
	conflicting.Quantity++
	if err := l.Apply(conflicting); !errors.Is(err, domain.ErrConflict) {
		t.Errorf("against a loaded movement: %v, want conflict", err)
	}
	if err := l.Apply(x.departure); err != nil {
		t.Fatalf("departure against loaded stock: %v", err)
	}
	mustStock(t, l, x.from, x.product, 0)
	if m, _ := l.Movement(x.movement); m.Status() != domain.Completed {
		t.Errorf("status = %s, want completed", m.Status())
	}
	var n int
	for range l.Movements() {
		n++
	}
	if n != 1 {
		t.Errorf("Movements() yielded %d, want 1", n)
	}
}

// TestLedgerNeverNegative applies a random sequence of arrivals, departures and re-sends
// over a few stock rows and checks every result against a simple model of the rules.
func TestLedgerNeverNegative(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	l := domain.NewLedger()
	whs := []domain.WarehouseID{domain.WarehouseID(uuid.New()), domain.WarehouseID(uuid.New()), domain.WarehouseID(uuid.New())}
	p := domain.ProductID(uuid.New())
	model := map[domain.WarehouseID]int64{}
	var stored []domain.Event
	for i := range 2000 {
		var e domain.Event
		switch k := r.IntN(10); {
		case k < 3 || len(stored) == 0:
			e = mustEvent(t, domain.Arrival, domain.MovementID(uuid.New()), whs[r.IntN(3)], p, int64(1+r.IntN(20)), "2025-02-18T12:00:00Z")
		case k < 8:
			e = mustEvent(t, domain.Departure, domain.MovementID(uuid.New()), whs[r.IntN(3)], p, int64(1+r.IntN(30)), "2025-02-18T12:00:00Z")
		case k < 9:
			e = stored[r.IntN(len(stored))]
		default:
			e = renewed(stored[r.IntN(len(stored))])
		}
		want := error(nil)
		switch {
		case slices.ContainsFunc(stored, func(s domain.Event) bool { return s.MovementID == e.MovementID }):
			want = domain.ErrDuplicate
		case e.Kind == domain.Departure && model[e.WarehouseID] < e.Quantity:
			want = domain.ErrInsufficientStock
		}
		err := l.Apply(e)
		if want == nil && err != nil || want != nil && !errors.Is(err, want) {
			t.Fatalf("event %d (%s of %d at %s, stock %d): %v, want %v", i, e.Kind, e.Quantity, e.WarehouseID, model[e.WarehouseID], err, want)
		}
		if err == nil {
			model[e.WarehouseID] += e.Delta()
			stored = append(stored, e)
		}
		for _, w := range whs {
			got, _ := l.Stock(domain.StockKey{Warehouse: w, Product: p})
			if got < 0 || got != model[w] {
				t.Fatalf("after event %d: stock at %s = %d, want %d (never negative)", i, w, got, model[w])
			}
		}
	}
}

func TestStockKeyLess(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	// a few fixed ids whose bytes differ only late, or only in the high bit, plus random ones
	fixed := []string{
		"00000000-0000-0000-0000-000000000000",
		"00000000-0000-0000-0000-000000000001",
		"7fffffff-ffff-ffff-ffff-ffffffffffff",
		"80000000-0000-0000-0000-000000000000",
		"ffffffff-ffff-ffff-ffff-ffffffffffff",
		"0a000000-0000-0000-0000-000000000000",
		"a0000000-0000-0000-0000-000000000000",
	}
	ids := make([]uuid.UUID, 0, len(fixed)+8)
	for _, s := range fixed {
		ids = append(ids, uuid.MustParse(s))
	}
	for range 8 {
		var u uuid.UUID
		for i := range u {
			u[i] = byte(r.UintN(256))
		}
		ids = append(ids, u)
	}
	var keys []domain.StockKey
	for _, w := range ids {
		for _, p := range ids {
			keys = append(keys, domain.StockKey{Warehouse: domain.WarehouseID(w), Product: domain.ProductID(p)})
		}
	}
	// PostgreSQL compares uuid values byte by byte; lowercase hex with hyphens at fixed
	// places sorts the same way as text.
	textCompare := func(a, b domain.StockKey) int {
		if c := strings.Compare(strings.ToLower(a.Warehouse.String()), strings.ToLower(b.Warehouse.String())); c != 0 {
			return c
		}
		return strings.Compare(strings.ToLower(a.Product.String()), strings.ToLower(b.Product.String()))
	}
	for _, a := range keys {
		for _, b := range keys {
			if got, want := a.Less(b), textCompare(a, b) < 0; got != want {
				t.Errorf("(%s, %s).Less(%s, %s) = %v, want %v", a.Warehouse, a.Product, b.Warehouse, b.Product, got, want)
			}
		}
	}
}
