package portstest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"warehouse/domain"
	"warehouse/ports"
)

// Store runs the ports.Store contract against stores made by newStore. Every subtest uses
// fresh random ids, so newStore may return the same shared store each time and the
// subtests run in parallel. The cases that need a broken store are skipped: see
// StoreWithFaults.
func Store(t *testing.T, newStore func(t *testing.T) ports.Store) {
	t.Helper()
	StoreWithFaults(t, newStore, Faults{})
}

// Faults breaks a store on purpose, for the cases of the contract that need a failure
// other than a cancelled context. A nil field skips the cases that need it.
type Faults struct {
	// FailStockWrites makes the store fail, until restore is called, every batch that
	// writes the stock row k, at that write: after the batch's events and movements
	// where the store writes those first. It is not an outage.
	FailStockWrites func(t *testing.T, k domain.StockKey) (restore func())
}

// StoreWithFaults runs the ports.Store contract as Store does, the cases that need a
// broken store included, breaking it with f.
func StoreWithFaults(t *testing.T, newStore func(t *testing.T) ports.Store, f Faults) {
	t.Helper()
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, s ports.Store)
	}{
		{"sample pair", testSamplePair},
		{"same event three times", testSameEventThrice},
		{"identical re-send under a new id", testIdenticalResend},
		{"conflicting re-send", testConflictingResend},
		{"a stored identity is a duplicate whatever its data", testIdentityWins},
		{"arrival before departure", testArrivalFirst},
		{"arrival before departure in one batch", testArrivalFirstInBatch},
		{"product mismatch", testProductMismatch},
		{"departure, then an arrival of another product", testProductMismatchAfterDeparture},
		{"insufficient stock", testInsufficientStock},
		{"never negative inside a batch", testNeverNegativeInBatch},
		{"duplicates inside one batch", testDuplicatesInBatch},
		{"concurrent batches on the same stock rows", testConcurrentBatches},
		{"concurrent batches on scarce stock", testConcurrentScarceStock},
		{"concurrent events of one movement", testConcurrentMovement},
		{"cancelled context", testCancelled},
		{"nothing stored when the batch fails", func(t *testing.T, s ports.Store) { testFailedBatch(t, s, f) }},
		{"list movements", testListMovements},
		{"list warehouse stock", testListStock},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, newStore(t))
		})
	}
}

func mustApply(t *testing.T, s ports.Store, events ...domain.Event) []error {
	t.Helper()
	results, err := s.Apply(context.Background(), events)
	if err != nil {
		t.Fatalf("apply %d events: %v", len(events), err)
	}
	if len(results) != len(events) {
		t.Fatalf("apply %d events: %d results", len(events), len(results))
	}
	return results
}

func mustResults(t *testing.T, got []error, want ...error) {
	t.Helper()
	for i := range want {
		switch {
		case want[i] == nil && got[i] != nil:
			t.Errorf("event %d: got %v, want stored", i, got[i])
		case want[i] != nil && !errors.Is(got[i], want[i]):
			t.Errorf("event %d: got %v, want %v", i, got[i], want[i])
		}
	}
}

func mustStock(t *testing.T, s ports.Store, w domain.WarehouseID, p domain.ProductID, want int64) {
	t.Helper()
	st, err := s.Stock(context.Background(), w, p)
	if err != nil {
		t.Fatalf("stock %s/%s: %v", w, p, err)
	}
	if st.Quantity != want {
		t.Errorf("stock %s/%s = %d, want %d", w, p, st.Quantity, want)
	}
	if st.WarehouseID != w || st.ProductID != p {
		t.Errorf("stock row names %s/%s, want %s/%s", st.WarehouseID, st.ProductID, w, p)
	}
	if st.UpdatedAt.IsZero() || st.UpdatedAt.Location() != time.UTC {
		t.Errorf("stock updated_at = %v, want a UTC time", st.UpdatedAt)
	}
}

func mustNoStock(t *testing.T, s ports.Store, w domain.WarehouseID, p domain.ProductID) {
	t.Helper()
	if st, err := s.Stock(context.Background(), w, p); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("stock %s/%s = %+v, %v; want not found", w, p, st, err)
	}
}

func mustMovement(t *testing.T, s ports.Store, id domain.MovementID) domain.Movement {
	t.Helper()
	m, err := s.Movement(context.Background(), id)
	if err != nil {
		t.Fatalf("movement %s: %v", id, err)
	}
	return m
}

func testSamplePair(t *testing.T, s ports.Store) {
	x := NewSample()
	mustApply(t, s, Supply(x.From, x.Product, 150))
	mustResults(t, mustApply(t, s, x.Departure, x.Arrival), nil, nil)

	m := mustMovement(t, s, x.Movement)
	if m.ID != x.Movement || m.ProductID != x.Product || m.Status() != domain.Completed {
		t.Errorf("movement = %+v, want completed %s of %s", m, x.Movement, x.Product)
	}
	if m.Departure == nil || m.Departure.WarehouseID != x.From || m.Departure.Source != "WH-3322" ||
		m.Departure.Quantity != 100 || !m.Departure.Timestamp.Equal(x.Departure.Timestamp) {
		t.Errorf("departure = %+v", m.Departure)
	}
	if m.Arrival == nil || m.Arrival.WarehouseID != x.To || m.Arrival.Source != "WH-3423" ||
		m.Arrival.Quantity != 98 || !m.Arrival.Timestamp.Equal(x.Arrival.Timestamp) {
		t.Errorf("arrival = %+v", m.Arrival)
	}
	if secs, ok := m.ElapsedSeconds(); !ok || secs != 8520 {
		t.Errorf("elapsed = %d, %v; want 8520", secs, ok)
	}
	if d, ok := m.QuantityDifference(); !ok || d != -2 {
		t.Errorf("difference = %d, %v; want -2", d, ok)
	}
	mustStock(t, s, x.From, x.Product, 50)
	mustStock(t, s, x.To, x.Product, 98)
	if _, err := s.Movement(context.Background(), domain.MovementID(uuid.New())); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("unknown movement: %v, want not found", err)
	}
}

func testSameEventThrice(t *testing.T, s ports.Store) {
	x := NewSample()
	mustResults(t, mustApply(t, s, x.Arrival), nil)
	mustResults(t, mustApply(t, s, x.Arrival), domain.ErrDuplicate)
	mustResults(t, mustApply(t, s, x.Arrival), domain.ErrDuplicate)
	mustStock(t, s, x.To, x.Product, 98)
}

func testIdenticalResend(t *testing.T, s ports.Store) {
	x := NewSample()
	mustResults(t, mustApply(t, s, x.Arrival, Renewed(x.Arrival)), nil, domain.ErrDuplicate)
	// the same instant written with another offset is the same data
	again := Renewed(x.Arrival)
	again.Timestamp = again.Timestamp.In(time.FixedZone("MSK", 3*3600))
	mustResults(t, mustApply(t, s, again), domain.ErrDuplicate)
	mustStock(t, s, x.To, x.Product, 98)
}

func testConflictingResend(t *testing.T, s ports.Store) {
	x := NewSample()
	mustResults(t, mustApply(t, s, x.Arrival), nil)
	for name, edit := range map[string]func(*domain.Event){
		"quantity":  func(e *domain.Event) { e.Quantity = 97 },
		"warehouse": func(e *domain.Event) { e.WarehouseID = domain.WarehouseID(uuid.New()) },
		"timestamp": func(e *domain.Event) { e.Timestamp = e.Timestamp.Add(time.Second) },
	} {
		e := Renewed(x.Arrival)
		edit(&e)
		if got := mustApply(t, s, e); !errors.Is(got[0], domain.ErrConflict) {
			t.Errorf("re-send with other %s: %v, want conflict", name, got[0])
		}
	}
	mustStock(t, s, x.To, x.Product, 98)
	if m := mustMovement(t, s, x.Movement); m.Arrival.Quantity != 98 {
		t.Errorf("arrival quantity = %d, want the first one (98)", m.Arrival.Quantity)
	}
}

func testIdentityWins(t *testing.T, s ports.Store) {
	x := NewSample()
	mustApply(t, s, Supply(x.From, x.Product, 100))
	mustResults(t, mustApply(t, s, x.Arrival), nil)
	sameLeg := x.Arrival
	sameLeg.Quantity = 1 // other data on the same leg: a conflict under a new identity
	otherMovement := x.Arrival
	otherMovement.MovementID = domain.MovementID(uuid.New()) // would be storable
	starved := x.Arrival
	starved.MovementID, starved.Kind, starved.Quantity = domain.MovementID(uuid.New()), domain.Departure, 1_000_000
	mustResults(t, mustApply(t, s, sameLeg), domain.ErrDuplicate)
	mustResults(t, mustApply(t, s, otherMovement), domain.ErrDuplicate)
	mustResults(t, mustApply(t, s, starved), domain.ErrDuplicate)
	mustResults(t, mustApply(t, s, otherMovement, sameLeg, Renewed(otherMovement)), domain.ErrDuplicate, domain.ErrDuplicate, nil)
	mustStock(t, s, x.To, x.Product, 98+98)
}

func testArrivalFirst(t *testing.T, s ports.Store) {
	x := NewSample()
	mustApply(t, s, Supply(x.From, x.Product, 100))
	mustResults(t, mustApply(t, s, x.Arrival), nil)
	m := mustMovement(t, s, x.Movement)
	if m.Status() != domain.Arrived || m.Departure != nil {
		t.Errorf("after arrival only: status %s, departure %+v", m.Status(), m.Departure)
	}
	if !m.Time().Equal(x.Arrival.Timestamp) {
		t.Errorf("time = %v, want the arrival's while no departure is known", m.Time())
	}
	mustResults(t, mustApply(t, s, x.Departure), nil)
	m = mustMovement(t, s, x.Movement)
	if m.Status() != domain.Completed || !m.Time().Equal(x.Departure.Timestamp) {
		t.Errorf("after both: status %s, time %v", m.Status(), m.Time())
	}
	mustStock(t, s, x.From, x.Product, 0)
	mustStock(t, s, x.To, x.Product, 98)
}

// testArrivalFirstInBatch: the legs of a movement out of order inside one batch are both
// stored and complete it; an arrival whose departure the batch refuses leaves it arrived.
func testArrivalFirstInBatch(t *testing.T, s ports.Store) {
	x := NewSample()
	mustApply(t, s, Supply(x.From, x.Product, 100))
	mustResults(t, mustApply(t, s, x.Arrival, x.Departure), nil, nil)
	m := mustMovement(t, s, x.Movement)
	if m.Status() != domain.Completed || m.Departure == nil || m.Arrival == nil {
		t.Fatalf("arrival then departure in one batch: status %s, departure %+v, arrival %+v; want both, completed", m.Status(), m.Departure, m.Arrival)
	}
	if !m.Time().Equal(x.Departure.Timestamp) {
		t.Errorf("time = %v, want the departure's %v", m.Time(), x.Departure.Timestamp)
	}
	wantSecs := int64(x.Arrival.Timestamp.Sub(x.Departure.Timestamp) / time.Second)
	if secs, ok := m.ElapsedSeconds(); !ok || secs != wantSecs {
		t.Errorf("elapsed = %d, %v; want %d", secs, ok, wantSecs)
	}
	if d, ok := m.QuantityDifference(); !ok || d != x.Arrival.Quantity-x.Departure.Quantity {
		t.Errorf("difference = %d, %v; want %d", d, ok, x.Arrival.Quantity-x.Departure.Quantity)
	}
	mustStock(t, s, x.From, x.Product, 100-x.Departure.Quantity)
	mustStock(t, s, x.To, x.Product, x.Arrival.Quantity)

	// the departure of the second movement finds no stock: only its arrival is stored
	y := NewSample()
	mustResults(t, mustApply(t, s, y.Arrival, y.Departure), nil, domain.ErrInsufficientStock)
	if m := mustMovement(t, s, y.Movement); m.Status() != domain.Arrived || m.Departure != nil || m.Arrival == nil {
		t.Errorf("arrival stored, departure refused: status %s, departure %+v; want arrived, no departure", m.Status(), m.Departure)
	}
	mustNoStock(t, s, y.From, y.Product)
	mustStock(t, s, y.To, y.Product, y.Arrival.Quantity)
}

func testProductMismatch(t *testing.T, s ports.Store) {
	x := NewSample()
	other := domain.ProductID(uuid.New())
	dep := Event(domain.Departure, x.Movement, x.From, other, 5, "2025-02-18T12:00:00Z")
	mustApply(t, s, Supply(x.From, other, 5))
	mustResults(t, mustApply(t, s, x.Arrival, dep), nil, domain.ErrConflict)
	mustStock(t, s, x.From, other, 5)
	if m := mustMovement(t, s, x.Movement); m.Status() != domain.Arrived {
		t.Errorf("status = %s, want arrived", m.Status())
	}
}

// testProductMismatchAfterDeparture: once a departure names the movement's product, an
// arrival of another product is a conflict, in the same batch or a later one, and changes
// no stock.
func testProductMismatchAfterDeparture(t *testing.T, s ports.Store) {
	for _, sameBatch := range []bool{true, false} {
		x := NewSample()
		other := domain.ProductID(uuid.New())
		arr := Event(domain.Arrival, x.Movement, x.To, other, 98, "2025-02-18T14:34:56Z")
		mustApply(t, s, Supply(x.From, x.Product, 150))
		if sameBatch {
			mustResults(t, mustApply(t, s, x.Departure, arr), nil, domain.ErrConflict)
		} else {
			mustResults(t, mustApply(t, s, x.Departure), nil)
			mustResults(t, mustApply(t, s, arr), domain.ErrConflict)
		}
		m := mustMovement(t, s, x.Movement)
		if m.Status() != domain.InTransit || m.ProductID != x.Product || m.Arrival != nil {
			t.Errorf("same batch %v: movement %+v, want in transit with %s and no arrival", sameBatch, m, x.Product)
		}
		mustStock(t, s, x.From, x.Product, 150-x.Departure.Quantity)
		mustNoStock(t, s, x.To, other)
		mustNoStock(t, s, x.To, x.Product)
	}
}

func testInsufficientStock(t *testing.T, s ports.Store) {
	x := NewSample()
	mustResults(t, mustApply(t, s, x.Departure), domain.ErrInsufficientStock)
	// a departure that was not applied leaves no trace
	mustNoStock(t, s, x.From, x.Product)
	if _, err := s.Movement(context.Background(), x.Movement); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("movement after refused departure: %v, want not found", err)
	}
	mustApply(t, s, Supply(x.From, x.Product, 99))
	mustResults(t, mustApply(t, s, x.Departure), domain.ErrInsufficientStock)
	mustStock(t, s, x.From, x.Product, 99)
	mustApply(t, s, Supply(x.From, x.Product, 1))
	mustResults(t, mustApply(t, s, x.Departure), nil) // the retried departure applies
	mustStock(t, s, x.From, x.Product, 0)
}

func testNeverNegativeInBatch(t *testing.T, s ports.Store) {
	w, p := domain.WarehouseID(uuid.New()), domain.ProductID(uuid.New())
	dep := func(q int64) domain.Event {
		return Event(domain.Departure, domain.MovementID(uuid.New()), w, p, q, "2025-02-18T12:00:00Z")
	}
	// -5 then +5 nets to zero but would be negative in between: the departure waits.
	mustResults(t, mustApply(t, s, dep(5), Supply(w, p, 5), dep(5), dep(1)),
		domain.ErrInsufficientStock, nil, nil, domain.ErrInsufficientStock)
	mustStock(t, s, w, p, 0)
}

func testDuplicatesInBatch(t *testing.T, s ports.Store) {
	x := NewSample()
	mustResults(t, mustApply(t, s, x.Arrival, x.Arrival, Renewed(x.Arrival)), nil, domain.ErrDuplicate, domain.ErrDuplicate)
	mustStock(t, s, x.To, x.Product, 98)
}

// concurrentTransfers runs workers × batches batches of perBatch/2 transfers (departure
// and arrival, in either order) of p between the warehouses whs, from several goroutines
// at once. It returns the events of each batch and the results the store gave them.
func concurrentTransfers(t *testing.T, s ports.Store, whs []domain.WarehouseID, p domain.ProductID, maxQty int) (events [][]domain.Event, results [][]error) {
	t.Helper()
	const workers, batches, perBatch = 4, 10, 20
	events = make([][]domain.Event, workers*batches)
	results = make([][]error, workers*batches)
	var wg sync.WaitGroup
	for g := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 7))
			for b := range batches {
				batch := make([]domain.Event, 0, perBatch)
				for range perBatch / 2 {
					from, to := whs[r.IntN(len(whs))], whs[r.IntN(len(whs))]
					m := domain.MovementID(uuid.New())
					q := int64(1 + r.IntN(maxQty))
					// arrival first half the time: both orders must work concurrently
					d := Event(domain.Departure, m, from, p, q, "2025-02-18T12:00:00Z")
					a := Event(domain.Arrival, m, to, p, q, "2025-02-18T13:00:00Z")
					if r.IntN(2) == 0 {
						batch = append(batch, a, d)
					} else {
						batch = append(batch, d, a)
					}
				}
				res, err := s.Apply(context.Background(), batch)
				if err != nil {
					t.Errorf("apply: %v", err)
					return
				}
				events[g*batches+b], results[g*batches+b] = batch, res
			}
		}()
	}
	wg.Wait()
	return events, results
}

// testConcurrentBatches runs batches from several goroutines on a few shared stock rows,
// each seeded with more than every departure from it could take: whatever the order the
// batches commit in, every event must be stored, and the stock is known from the events
// alone.
func testConcurrentBatches(t *testing.T, s ports.Store) {
	whs := []domain.WarehouseID{domain.WarehouseID(uuid.New()), domain.WarehouseID(uuid.New()), domain.WarehouseID(uuid.New())}
	p := domain.ProductID(uuid.New())
	const seed, maxQty = 10_000, 30 // 400 departures of at most 30 cannot take 10 000 from one row
	for _, w := range whs {
		mustResults(t, mustApply(t, s, Supply(w, p, seed)), nil)
	}
	events, results := concurrentTransfers(t, s, whs, p, maxQty)
	want := map[domain.WarehouseID]int64{}
	for _, w := range whs {
		want[w] = seed
	}
	for b, batch := range events {
		for i, e := range batch {
			if e.Kind == domain.Departure {
				want[e.WarehouseID] -= e.Quantity
			} else {
				want[e.WarehouseID] += e.Quantity
			}
			if results[b] != nil && results[b][i] != nil {
				t.Errorf("batch %d event %d (%s of %d): %v; want stored, there is stock enough", b, i, e.Kind, e.Quantity, results[b][i])
			}
		}
	}
	for _, w := range whs {
		mustStock(t, s, w, p, want[w])
	}
}

// testConcurrentScarceStock runs batches from several goroutines on a few stock rows too
// small for them: departures may be refused, never applied against too little stock. Which
// departures were stored is read back from the movements, and must agree with the results
// Apply gave; arrivals are always stored. The stock must then be the seed plus every
// arrival less every stored departure, and never negative.
func testConcurrentScarceStock(t *testing.T, s ports.Store) {
	whs := []domain.WarehouseID{domain.WarehouseID(uuid.New()), domain.WarehouseID(uuid.New()), domain.WarehouseID(uuid.New())}
	p := domain.ProductID(uuid.New())
	const seed = 100
	for _, w := range whs {
		mustResults(t, mustApply(t, s, Supply(w, p, seed)), nil)
	}
	events, results := concurrentTransfers(t, s, whs, p, 30)
	want := map[domain.WarehouseID]int64{}
	for _, w := range whs {
		want[w] = seed
	}
	refused := 0
	for b, batch := range events {
		for i, e := range batch {
			var res error
			if results[b] != nil {
				res = results[b][i]
			}
			m := mustMovement(t, s, e.MovementID) // every movement has its arrival
			leg := m.Arrival
			if e.Kind == domain.Departure {
				leg = m.Departure
			}
			stored := leg != nil && leg.WarehouseID == e.WarehouseID && leg.Quantity == e.Quantity
			switch {
			case e.Kind == domain.Arrival && (res != nil || !stored):
				t.Errorf("batch %d: arrival of %d: result %v, stored %v; want stored", b, e.Quantity, res, stored)
			case res == nil && !stored:
				t.Errorf("batch %d: departure of %d reported stored, but its movement has none: %+v", b, e.Quantity, m)
			case res != nil && stored:
				t.Errorf("batch %d: departure of %d reported %v, but its movement holds it", b, e.Quantity, res)
			case res != nil && !errors.Is(res, domain.ErrInsufficientStock):
				t.Errorf("batch %d: departure of %d: %v, want stored or insufficient stock", b, e.Quantity, res)
			}
			switch {
			case e.Kind == domain.Arrival:
				want[e.WarehouseID] += e.Quantity
			case stored:
				want[e.WarehouseID] -= e.Quantity
			default:
				refused++
			}
		}
	}
	t.Logf("%d departures refused", refused)
	for _, w := range whs {
		if want[w] < 0 {
			t.Errorf("warehouse %s would be negative: %d", w, want[w])
		}
		mustStock(t, s, w, p, want[w])
	}
}

// testConcurrentMovement races rival departures and arrivals of one movement, in
// separate batches: at most one of each kind may be stored, and both must name one product.
func testConcurrentMovement(t *testing.T, s ports.Store) {
	from, to := domain.WarehouseID(uuid.New()), domain.WarehouseID(uuid.New())
	p1, p2 := domain.ProductID(uuid.New()), domain.ProductID(uuid.New())
	mustApply(t, s, Supply(from, p1, 1000), Supply(from, p2, 1000))
	stock := map[domain.StockKey]int64{{Warehouse: from, Product: p1}: 1000, {Warehouse: from, Product: p2}: 1000}
	for round := range 15 {
		m := domain.MovementID(uuid.New())
		rivals := []domain.Event{
			Event(domain.Departure, m, from, p1, 10, "2025-02-18T12:00:00Z"),
			Event(domain.Departure, m, from, p1, 11, "2025-02-18T12:00:00Z"),
			Event(domain.Departure, m, from, p2, 10, "2025-02-18T12:00:00Z"),
			Event(domain.Arrival, m, to, p1, 10, "2025-02-18T13:00:00Z"),
			Event(domain.Arrival, m, to, p2, 9, "2025-02-18T13:00:00Z"),
		}
		results := make([]error, len(rivals))
		var wg sync.WaitGroup
		for i, e := range rivals {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := s.Apply(context.Background(), []domain.Event{e})
				if err != nil {
					t.Errorf("round %d event %d: %v", round, i, err)
					return
				}
				results[i] = res[0]
			}()
		}
		wg.Wait()
		var stored []domain.Event
		for i, res := range results {
			switch {
			case res == nil:
				stored = append(stored, rivals[i])
				stock[rivals[i].StockKey()] += rivals[i].Delta()
			case !errors.Is(res, domain.ErrConflict):
				t.Errorf("round %d event %d: %v, want stored or conflict", round, i, res)
			}
		}
		kinds := map[domain.EventKind]int{}
		for _, e := range stored {
			kinds[e.Kind]++
			if e.ProductID != stored[0].ProductID {
				t.Errorf("round %d: stored events name products %s and %s", round, stored[0].ProductID, e.ProductID)
			}
		}
		if len(stored) == 0 || kinds[domain.Departure] > 1 || kinds[domain.Arrival] > 1 {
			t.Fatalf("round %d: stored %d departures and %d arrivals", round, kinds[domain.Departure], kinds[domain.Arrival])
		}
		// what the store must hold, from the stored events alone
		got := mustMovement(t, s, m)
		var dep, arr *domain.Event
		for i := range stored {
			if stored[i].Kind == domain.Departure {
				dep = &stored[i]
			} else {
				arr = &stored[i]
			}
		}
		wantStatus := domain.Completed
		switch {
		case arr == nil:
			wantStatus = domain.InTransit
		case dep == nil:
			wantStatus = domain.Arrived
		}
		if got.ID != m || got.ProductID != stored[0].ProductID || got.Status() != wantStatus ||
			legOf(got.Departure) != legOfEvent(dep) || legOf(got.Arrival) != legOfEvent(arr) {
			t.Errorf("round %d: movement %s of %s, departure %s, arrival %s; want %s of %s, departure %s, arrival %s", round,
				got.Status(), got.ProductID, legOf(got.Departure), legOf(got.Arrival),
				wantStatus, stored[0].ProductID, legOfEvent(dep), legOfEvent(arr))
		}
	}
	for k, q := range stock {
		mustStock(t, s, k.Warehouse, k.Product, q)
	}
}

// legOfEvent writes the leg an event stores as legOf writes a stored leg.
func legOfEvent(e *domain.Event) string {
	if e == nil {
		return "none"
	}
	return legOf(&domain.Leg{WarehouseID: e.WarehouseID, Source: e.Source, Quantity: e.Quantity, Timestamp: e.Timestamp})
}

func legOf(l *domain.Leg) string {
	if l == nil {
		return "none"
	}
	return fmt.Sprintf("%s/%s/%d/%s", l.WarehouseID, l.Source, l.Quantity, l.Timestamp.UTC().Format(time.RFC3339Nano))
}

func testCancelled(t *testing.T, s ports.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	x := NewSample()
	if _, err := s.Apply(ctx, []domain.Event{x.Arrival}); err == nil {
		t.Error("apply with a cancelled context: no error")
	}
	if _, err := s.Movement(ctx, x.Movement); err == nil || errors.Is(err, domain.ErrNotFound) {
		t.Errorf("movement with a cancelled context: %v, want an outage error", err)
	}
	if _, err := s.Movement(context.Background(), x.Movement); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("after cancelled apply: %v, want not found", err)
	}
}

// testFailedBatch: a batch that fails once the store has begun to write it leaves nothing
// behind, not its events (the same batch, once the store works again, is stored whole,
// with no duplicate), not its movements, not its stock.
func testFailedBatch(t *testing.T, s ports.Store, f Faults) {
	if f.FailStockWrites == nil {
		t.Skip("this store cannot be made to fail once it has begun to write a batch")
	}
	x := NewSample()
	broken := domain.StockKey{Warehouse: domain.WarehouseID(uuid.New()), Product: x.Product}
	const stocked = 150
	mustApply(t, s, Supply(x.From, x.Product, stocked))
	supply := Supply(broken.Warehouse, broken.Product, 5)
	// the broken row is written after the others of the batch, whatever their order
	batch := []domain.Event{x.Departure, x.Arrival, supply}
	restore := f.FailStockWrites(t, broken)
	if results, err := s.Apply(context.Background(), batch); err == nil {
		restore()
		t.Fatalf("apply with a stock row that cannot be written: results %v, no error", results)
	}
	for _, m := range []domain.MovementID{x.Movement, supply.MovementID} {
		if got, err := s.Movement(context.Background(), m); !errors.Is(err, domain.ErrNotFound) {
			t.Errorf("movement %s after the failed batch: %+v, %v; want not found", m, got, err)
		}
	}
	mustStock(t, s, x.From, x.Product, stocked)
	mustNoStock(t, s, x.To, x.Product)
	mustNoStock(t, s, broken.Warehouse, broken.Product)

	restore()
	mustResults(t, mustApply(t, s, batch...), nil, nil, nil)
	mustStock(t, s, x.From, x.Product, stocked-x.Departure.Quantity)
	mustStock(t, s, x.To, x.Product, x.Arrival.Quantity)
	mustStock(t, s, broken.Warehouse, broken.Product, supply.Quantity)
}

// testListMovements stores movements in a fresh warehouse and walks every filter.
func testListMovements(t *testing.T, s ports.Store) {
	w, other := domain.WarehouseID(uuid.New()), domain.WarehouseID(uuid.New())
	p1, p2 := domain.ProductID(uuid.New()), domain.ProductID(uuid.New())
	base := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	type want struct {
		id     domain.MovementID
		at     time.Time
		status domain.MovementStatus
		prod   domain.ProductID
	}
	var all []want
	for _, p := range []domain.ProductID{p1, p2} {
		sup := Supply(w, p, 1000)
		mustApply(t, s, sup)
		all = append(all, want{sup.MovementID, sup.Timestamp, domain.Arrived, p})
	}
	var batch []domain.Event
	for i := range 30 {
		m := domain.MovementID(uuid.New())
		at := base.Add(time.Duration(i/2) * time.Hour) // pairs share a time: ties broken by id
		prod := p1
		if i%3 == 0 {
			prod = p2
		}
		ts := at.Format(time.RFC3339)
		switch i % 3 {
		case 0: // in transit from w
			batch = append(batch, Event(domain.Departure, m, w, prod, 1, ts))
			all = append(all, want{m, at, domain.InTransit, prod})
		case 1: // arrived at w from outside: ordered by its arrival time
			batch = append(batch, Event(domain.Arrival, m, w, prod, 1, ts))
			all = append(all, want{m, at, domain.Arrived, prod})
		case 2: // completed from w to other
			batch = append(batch, Event(domain.Departure, m, w, prod, 1, ts),
				Event(domain.Arrival, m, other, prod, 1, at.Add(time.Minute).Format(time.RFC3339)))
			all = append(all, want{m, at, domain.Completed, prod})
		}
	}
	for i, res := range mustApply(t, s, batch...) {
		if res != nil {
			t.Fatalf("event %d: %v", i, res)
		}
	}
	expect := func(f func(want) bool) []domain.MovementID {
		var ids []want
		for _, x := range all {
			if f(x) {
				ids = append(ids, x)
			}
		}
		// newest first, ties by id descending
		for i := 1; i < len(ids); i++ {
			for j := i; j > 0; j-- {
				a, b := ids[j-1], ids[j]
				if a.at.Before(b.at) || a.at.Equal(b.at) && uuid.UUID(a.id).String() < uuid.UUID(b.id).String() {
					ids[j-1], ids[j] = b, a
				}
			}
		}
		out := make([]domain.MovementID, len(ids))
		for i, x := range ids {
			out[i] = x.id
		}
		return out
	}
	walk := func(f ports.MovementFilter) []domain.MovementID {
		var got []domain.MovementID
		for pages := 0; ; pages++ {
			if pages > 100 {
				t.Fatal("pagination does not end")
			}
			page, err := s.Movements(context.Background(), f)
			if err != nil {
				t.Fatalf("movements %+v: %v", f, err)
			}
			if len(page.Items) > f.Limit {
				t.Fatalf("page of %d items, limit %d", len(page.Items), f.Limit)
			}
			for _, m := range page.Items {
				got = append(got, m.ID)
			}
			if page.Next == nil {
				return got
			}
			f.After = page.Next
		}
	}
	check := func(name string, f ports.MovementFilter, pred func(want) bool) {
		t.Helper()
		got, exp := walk(f), expect(pred)
		if fmt.Sprint(got) != fmt.Sprint(exp) {
			t.Errorf("%s: got %d items %v\nwant %d items %v", name, len(got), got, len(exp), exp)
		}
	}
	all3 := func(want) bool { return true }
	check("by warehouse, pages of 7", ports.MovementFilter{Warehouse: &w, Limit: 7}, all3)
	check("by warehouse, one page", ports.MovementFilter{Warehouse: &w, Limit: 1000}, all3)
	check("by the other end", ports.MovementFilter{Warehouse: &other, Limit: 4},
		func(x want) bool { return x.status == domain.Completed })
	check("by product", ports.MovementFilter{Warehouse: &w, Product: &p2, Limit: 3},
		func(x want) bool { return x.prod == p2 })
	check("product without warehouse", ports.MovementFilter{Product: &p1, Limit: 5},
		func(x want) bool { return x.prod == p1 })
	for _, st := range []domain.MovementStatus{domain.InTransit, domain.Arrived, domain.Completed} {
		check("status "+string(st), ports.MovementFilter{Warehouse: &w, Status: st, Limit: 3},
			func(x want) bool { return x.status == st })
	}
	since, until := base.Add(3*time.Hour), base.Add(9*time.Hour)
	check("since and until", ports.MovementFilter{Warehouse: &w, Since: since, Until: until, Limit: 4},
		func(x want) bool { return !x.at.Before(since) && x.at.Before(until) })
	check("since only", ports.MovementFilter{Product: &p2, Since: since, Limit: 2},
		func(x want) bool { return x.prod == p2 && !x.at.Before(since) })
}

func testListStock(t *testing.T, s ports.Store) {
	w := domain.WarehouseID(uuid.New())
	var batch []domain.Event
	want := map[domain.ProductID]int64{}
	for i := range 11 {
		p := domain.ProductID(uuid.New())
		batch = append(batch, Supply(w, p, int64(i+1)))
		want[p] = int64(i + 1)
	}
	// a refused departure from a new product leaves no row
	batch = append(batch, Event(domain.Departure, domain.MovementID(uuid.New()), w, domain.ProductID(uuid.New()), 1, "2025-02-18T12:00:00Z"))
	mustApply(t, s, batch...)
	var prev *domain.ProductID
	f := ports.StockFilter{Warehouse: w, Limit: 4}
	seen := 0
	for pages := 0; pages < 10; pages++ {
		page, err := s.WarehouseStock(context.Background(), f)
		if err != nil {
			t.Fatalf("warehouse stock: %v", err)
		}
		for _, st := range page.Items {
			if prev != nil && uuid.UUID(*prev).String() >= uuid.UUID(st.ProductID).String() {
				t.Errorf("product %s after %s: not ordered", st.ProductID, *prev)
			}
			pid := st.ProductID
			prev = &pid
			if q, ok := want[st.ProductID]; !ok || q != st.Quantity || st.WarehouseID != w {
				t.Errorf("row %+v: want quantity %d (known: %v)", st, q, ok)
			}
			seen++
		}
		if page.Next == nil {
			break
		}
		f.After = page.Next
	}
	if seen != len(want) {
		t.Errorf("walked %d rows, want %d", seen, len(want))
	}
	if page, err := s.WarehouseStock(context.Background(), ports.StockFilter{Warehouse: domain.WarehouseID(uuid.New()), Limit: 5}); err != nil || len(page.Items) != 0 || page.Next != nil {
		t.Errorf("unknown warehouse: %+v, %v; want an empty last page", page, err)
	}
}
