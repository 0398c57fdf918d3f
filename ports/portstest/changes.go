package portstest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"warehouse/domain"
	"warehouse/ports"
)

// ChangeLog runs the ports.ChangeLog contract against a store that no other test writes
// meanwhile: the cases run one after another on it, each from the head it finds, and the
// last prunes the log.
func ChangeLog(t *testing.T, s ports.Store) {
	t.Helper()
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, s ports.Store)
	}{
		{"a batch's changes, refused events left out", testBatchChanges},
		{"reading from any position", testChangesFrom},
		{"a position ahead of the head", testAheadOfHead},
		{"followers hear of commits", testFollow},
		{"concurrent batches: commit order, no gaps", testConcurrentChanges},
		{"pruned changes are gone", testPrunedChanges},
	} {
		if !t.Run(tc.name, func(t *testing.T) { tc.run(t, s) }) {
			return // the later cases start from the head this one left
		}
	}
}

func mustHead(t *testing.T, s ports.ChangeLog) int64 {
	t.Helper()
	h, err := s.Head(context.Background())
	if err != nil {
		t.Fatalf("Head: %v", err)
	}
	return h
}

// mustChangesAfter pages through the log from after to its head, limit at a time.
func mustChangesAfter(t *testing.T, s ports.ChangeLog, after int64, limit int) []domain.Change {
	t.Helper()
	var all []domain.Change
	for {
		page, err := s.ChangesAfter(context.Background(), after, limit)
		if err != nil {
			t.Fatalf("ChangesAfter(%d, %d): %v", after, limit, err)
		}
		if len(page) == 0 {
			return all
		}
		all = append(all, page...)
		after = page[len(page)-1].StockPosition()
	}
}

func testBatchChanges(t *testing.T, s ports.Store) {
	head := mustHead(t, s)
	smp := NewSample()
	supply := Supply(smp.From, smp.Product, 150)
	tooMuch := Event(domain.Departure, domain.MovementID(uuid.New()), smp.From, smp.Product, 1000, "2025-02-18T12:00:00Z")
	mustResults(t, mustApply(t, s, supply, smp.Departure, tooMuch, smp.Arrival),
		nil, nil, domain.ErrInsufficientStock, nil)
	// A batch that stores nothing takes no position.
	mustResults(t, mustApply(t, s, smp.Departure), domain.ErrDuplicate)

	if got, want := mustHead(t, s), head+3*domain.ChangesPerEvent; got != want {
		t.Fatalf("head after 3 stored events = %d, want %d (from %d)", got, want, head)
	}
	got := mustChangesAfter(t, s, head, 100)
	stored := []domain.Event{supply, smp.Departure, smp.Arrival}
	if len(got) != len(stored) {
		t.Fatalf("%d changes after %d, want %d: %+v", len(got), head, len(stored), got)
	}
	wantStock := []int64{150, 50, 98}
	for i, c := range got {
		e := stored[i]
		if c.Position != head+1+int64(i)*domain.ChangesPerEvent {
			t.Errorf("change %d at position %d, want %d", i, c.Position, head+1+int64(i)*domain.ChangesPerEvent)
		}
		if c.Event != e.Identity() || c.Kind != e.Kind {
			t.Errorf("change %d is of %v %s, want %v %s", i, c.Event, c.Kind, e.Identity(), e.Kind)
		}
		if c.Stock.WarehouseID != e.WarehouseID || c.Stock.ProductID != e.ProductID || c.Stock.Quantity != wantStock[i] {
			t.Errorf("change %d: stock %+v, want %d of the event's row", i, c.Stock, wantStock[i])
		}
		if c.Stock.UpdatedAt.IsZero() {
			t.Errorf("change %d: stock has no commit time", i)
		}
		if c.Movement.ID != e.MovementID || c.Movement.ProductID != e.ProductID {
			t.Errorf("change %d: movement %s of %s, want %s of %s", i, c.Movement.ID, c.Movement.ProductID, e.MovementID, e.ProductID)
		}
	}
	// The movement as it stood right after each event: departure alone, then completed.
	dep, arr := got[1].Movement, got[2].Movement
	if dep.Status() != domain.InTransit || dep.Arrival != nil || !sameLeg(dep.Departure, smp.Departure) {
		t.Errorf("movement after its departure = %+v, want in transit with the departure leg", dep)
	}
	if arr.Status() != domain.Completed || !sameLeg(arr.Departure, smp.Departure) || !sameLeg(arr.Arrival, smp.Arrival) {
		t.Errorf("movement after its arrival = %+v, want completed with both legs", arr)
	}
}

// sameLeg reports whether l is the leg e reports.
func sameLeg(l *domain.Leg, e domain.Event) bool {
	return l != nil && l.WarehouseID == e.WarehouseID && l.Source == e.Source && l.Quantity == e.Quantity &&
		l.Timestamp.Equal(e.Timestamp)
}

func testChangesFrom(t *testing.T, s ports.Store) {
	head := mustHead(t, s)
	w, p := domain.WarehouseID(uuid.New()), domain.ProductID(uuid.New())
	for range 3 {
		var b []domain.Event
		for range 5 {
			b = append(b, Supply(w, p, 1))
		}
		mustApply(t, s, b...)
	}
	all := mustChangesAfter(t, s, head, 1000)
	if len(all) != 15 {
		t.Fatalf("%d changes, want 15", len(all))
	}
	for i, c := range all {
		if c.Stock.Quantity != int64(i+1) {
			t.Errorf("change %d: stock %d, want %d", i, c.Stock.Quantity, i+1)
		}
	}
	for _, limit := range []int{1, 2, 7} {
		if got := mustChangesAfter(t, s, head, limit); !sameChanges(got, all) {
			t.Errorf("paging %d at a time gives %d changes, not the same %d", limit, len(got), len(all))
		}
	}
	// From the middle of a batch, on the movement and on the stock position of an event.
	for _, i := range []int{6, 7, 14} {
		for _, after := range []int64{all[i].Position, all[i].StockPosition()} {
			got := mustChangesAfter(t, s, after, 1000)
			from := i + 1
			if after == all[i].Position {
				from = i // its stock change is still after
			}
			if !sameChanges(got, all[from:]) {
				t.Errorf("after %d: %d changes, want the %d from change %d", after, len(got), len(all)-from, from)
			}
		}
	}
}

func sameChanges(a, b []domain.Change) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Position != b[i].Position || a[i].Event != b[i].Event {
			return false
		}
	}
	return true
}

func testAheadOfHead(t *testing.T, s ports.Store) {
	head := mustHead(t, s)
	if got, err := s.ChangesAfter(context.Background(), head, 10); err != nil || len(got) != 0 {
		t.Errorf("ChangesAfter(head) = %d changes, %v; want none, nil", len(got), err)
	}
	if _, err := s.ChangesAfter(context.Background(), head+1, 10); !errors.Is(err, domain.ErrInvalid) {
		t.Errorf("ChangesAfter(head+1) err = %v, want ErrInvalid", err)
	}
}

func testFollow(t *testing.T, s ports.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	hints := s.Follow(ctx)
	head := mustHead(t, s)
	// The follower may start listening a moment later: store until it has heard of it.
	deadline := time.Now().Add(10 * time.Second)
	heard := false
	for !heard && time.Now().Before(deadline) {
		w, p := domain.WarehouseID(uuid.New()), domain.ProductID(uuid.New())
		mustApply(t, s, Supply(w, p, 1))
		head = mustHead(t, s)
		timeout := time.After(500 * time.Millisecond)
	wait:
		for {
			select {
			case h := <-hints:
				if h >= head {
					heard = true
					break wait
				}
			case <-timeout:
				break wait
			}
		}
	}
	if !heard {
		t.Errorf("no hint of head %d within 10 s of the commits", head)
	}
	cancel()
	for range hints { // closed once ctx ends
	}
}

// testConcurrentChanges writes batches from several goroutines on shared stock rows and
// checks that the log lists every stored event once, at contiguous positions, and that
// on every stock row the quantities follow one another in position order: positions are
// commit order.
func testConcurrentChanges(t *testing.T, s ports.Store) {
	keys := make([]domain.StockKey, 3)
	for i := range keys {
		keys[i] = domain.StockKey{Warehouse: domain.WarehouseID(uuid.New()), Product: domain.ProductID(uuid.New())}
		mustApply(t, s, Supply(keys[i].Warehouse, keys[i].Product, 1000))
	}
	start := mustHead(t, s)
	const writers, batches = 4, 15
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		stored  = map[domain.Identity]domain.Event{}
		failure error
	)
	for g := range writers {
		wg.Go(func() {
			for b := range batches {
				var events []domain.Event
				for i := range 4 {
					k := keys[(g+b+i)%len(keys)]
					kind := domain.Arrival
					if (b+i)%2 == 1 {
						kind = domain.Departure
					}
					events = append(events, Event(kind, domain.MovementID(uuid.New()), k.Warehouse, k.Product, int64(1+i), "2025-03-01T00:00:00Z"))
				}
				results, err := s.Apply(context.Background(), events)
				mu.Lock()
				if err != nil && failure == nil {
					failure = err
				}
				for i, r := range results {
					if r == nil {
						stored[events[i].Identity()] = events[i]
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if failure != nil {
		t.Fatalf("Apply: %v", failure)
	}
	got := mustChangesAfter(t, s, start, 50)
	if len(got) != len(stored) {
		t.Fatalf("%d changes for %d stored events", len(got), len(stored))
	}
	last := map[domain.StockKey]int64{}
	for _, k := range keys {
		last[k] = 1000
	}
	for i, c := range got {
		if want := start + 1 + int64(i)*domain.ChangesPerEvent; c.Position != want {
			t.Fatalf("change %d at position %d, want %d: a gap or a repeat", i, c.Position, want)
		}
		e, ok := stored[c.Event]
		if !ok {
			t.Fatalf("change %d is of %v, not a stored event (or listed twice)", i, c.Event)
		}
		delete(stored, c.Event)
		k := e.StockKey()
		if want := last[k] + e.Delta(); c.Stock.Quantity != want {
			t.Errorf("change %d (%s of %d): stock %d, want %d: the log is not in commit order", i, e.Kind, e.Quantity, c.Stock.Quantity, want)
		}
		last[k] = c.Stock.Quantity
	}
	if mustHead(t, s) != got[len(got)-1].StockPosition() {
		t.Errorf("head %d is not the last change's stock position %d", mustHead(t, s), got[len(got)-1].StockPosition())
	}
}

func testPrunedChanges(t *testing.T, s ports.Store) {
	ctx := context.Background()
	mustApply(t, s, Supply(domain.WarehouseID(uuid.New()), domain.ProductID(uuid.New()), 1))
	head := mustHead(t, s)
	n, err := s.PruneChanges(ctx, time.Now().Add(time.Minute))
	if err != nil {
		t.Fatalf("PruneChanges: %v", err)
	}
	if n < domain.ChangesPerEvent {
		t.Errorf("PruneChanges dropped %d changes, want at least the last batch's %d", n, domain.ChangesPerEvent)
	}
	if _, err := s.ChangesAfter(ctx, 0, 10); !errors.Is(err, ports.ErrGone) {
		t.Errorf("ChangesAfter(0) after a prune: err = %v, want ErrGone", err)
	}
	if _, err := s.ChangesAfter(ctx, head-1, 10); !errors.Is(err, ports.ErrGone) {
		t.Errorf("ChangesAfter(head-1) after a prune: err = %v, want ErrGone", err)
	}
	if got, err := s.ChangesAfter(ctx, head, 10); err != nil || len(got) != 0 {
		t.Errorf("ChangesAfter(head) after a prune = %d changes, %v; want none, nil", len(got), err)
	}
	e := Supply(domain.WarehouseID(uuid.New()), domain.ProductID(uuid.New()), 1)
	mustApply(t, s, e)
	got := mustChangesAfter(t, s, head, 10)
	if len(got) != 1 || got[0].Event != e.Identity() || got[0].Position != head+1 {
		t.Errorf("after a prune, the next batch's changes = %+v, want %v at %d", got, e.Identity(), head+1)
	}
	if _, err := s.ChangesAfter(ctx, head-1, 10); !errors.Is(err, ports.ErrGone) {
		t.Errorf("ChangesAfter(head-1) with later changes kept: err = %v, want ErrGone", err)
	}
}
