package application_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"warehouse/adapters/memory"
	"warehouse/application"
	"warehouse/domain"
	"warehouse/ports"
	"warehouse/ports/portstest"
)

// notifier is a fake ports.ChangeNotifier that keeps every Changes it hears.
type notifier struct {
	mu    sync.Mutex
	heard []ports.Changes
}

func (n *notifier) Notify(_ context.Context, c ports.Changes) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.heard = append(n.heard, c)
}

// counts returns how often each movement and stock key was announced over all calls.
func (n *notifier) counts() (map[domain.MovementID]int, map[domain.StockKey]int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	ms, ks := map[domain.MovementID]int{}, map[domain.StockKey]int{}
	for _, c := range n.heard {
		for _, m := range c.Movements {
			ms[m]++
		}
		for _, k := range c.Stock {
			ks[k]++
		}
	}
	return ms, ks
}

func (n *notifier) calls() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.heard)
}

// failingStore is a ports.Store whose database is always down.
type failingStore struct{ err error }

var _ ports.Store = failingStore{}

func newFailingStore() failingStore {
	return failingStore{err: fmt.Errorf("%w: connection refused", ports.ErrUnavailable)}
}

func (s failingStore) Apply(context.Context, []domain.Event) ([]error, error) { return nil, s.err }
func (s failingStore) ChangesAfter(context.Context, int64, int) ([]domain.Change, error) {
	return nil, s.err
}
func (s failingStore) Head(context.Context) (int64, error) { return 0, s.err }
func (s failingStore) Follow(ctx context.Context) <-chan int64 {
	ch := make(chan int64)
	context.AfterFunc(ctx, func() { close(ch) })
	return ch
}
func (s failingStore) PruneChanges(context.Context, time.Time) (int64, error) { return 0, s.err }
func (s failingStore) Ping(context.Context) error                             { return s.err }
func (s failingStore) Movement(context.Context, domain.MovementID) (domain.Movement, error) {
	return domain.Movement{}, s.err
}
func (s failingStore) Stock(context.Context, domain.WarehouseID, domain.ProductID) (domain.Stock, error) {
	return domain.Stock{}, s.err
}
func (s failingStore) Movements(context.Context, ports.MovementFilter) (ports.MovementPage, error) {
	return ports.MovementPage{}, s.err
}
func (s failingStore) WarehouseStock(context.Context, ports.StockFilter) (ports.StockPage, error) {
	return ports.StockPage{}, s.err
}

// shortStore is a broken ports.Store that returns one result fewer than it was given.
type shortStore struct{ failingStore }

func (shortStore) Apply(_ context.Context, events []domain.Event) ([]error, error) {
	if len(events) == 0 {
		return nil, nil
	}
	return make([]error, len(events)-1), nil
}

func mustRecord(t *testing.T, r *application.Recorder, events ...domain.Event) []error {
	t.Helper()
	results, err := r.Record(context.Background(), events)
	if err != nil {
		t.Fatalf("record %d events: %v", len(events), err)
	}
	if len(results) != len(events) {
		t.Fatalf("record %d events: %d results", len(events), len(results))
	}
	return results
}

func TestRecorderResultsAndChanges(t *testing.T) {
	store := memory.NewStore()
	n := &notifier{}
	r := application.NewRecorder(store, n)

	// y is stored first; the batch under test then contains a conflicting re-send of it,
	// which must not announce y's movement or stock.
	y := portstest.NewSample()
	mustRecord(t, r, y.Arrival)
	n.heard = nil

	x := portstest.NewSample()
	supply := portstest.Supply(x.From, x.Product, 150)
	conflict := portstest.Renewed(y.Arrival)
	conflict.Quantity = 1
	refused := portstest.Event(domain.Departure, domain.MovementID(uuid.New()), domain.WarehouseID(uuid.New()), x.Product, 5, "2025-02-18T12:00:00Z")
	batch := []domain.Event{
		supply,                       // stored: supply movement, (From, P)
		x.Departure,                  // stored: x, (From, P) again
		x.Arrival,                    // stored: x again, (To, P)
		supply,                       // duplicate identity
		portstest.Renewed(x.Arrival), // duplicate data
		conflict,                     // conflict on y
		refused,                      // insufficient stock
	}
	results := mustRecord(t, r, batch...)
	want := []error{nil, nil, nil, domain.ErrDuplicate, domain.ErrDuplicate, domain.ErrConflict, domain.ErrInsufficientStock}
	for i := range want {
		if want[i] == nil && results[i] != nil || want[i] != nil && !errors.Is(results[i], want[i]) {
			t.Errorf("event %d: %v, want %v", i, results[i], want[i])
		}
	}

	ms, ks := n.counts()
	wantMs := map[domain.MovementID]int{supply.MovementID: 1, x.Movement: 1}
	wantKs := map[domain.StockKey]int{
		{Warehouse: x.From, Product: x.Product}: 1,
		{Warehouse: x.To, Product: x.Product}:   1,
	}
	if !maps.Equal(ms, wantMs) {
		t.Errorf("movements announced %v, want each of %v once", ms, wantMs)
	}
	if !maps.Equal(ks, wantKs) {
		t.Errorf("stock announced %v, want each of %v once", ks, wantKs)
	}

	// what was announced is what the store now says changed
	if m, err := store.Movement(context.Background(), x.Movement); err != nil || m.Status() != domain.Completed {
		t.Errorf("movement %s: %+v, %v; want completed", x.Movement, m, err)
	}
	if s, err := store.Stock(context.Background(), x.From, x.Product); err != nil || s.Quantity != 50 {
		t.Errorf("stock at From: %+v, %v; want 50", s, err)
	}
	if s, err := store.Stock(context.Background(), y.To, y.Product); err != nil || s.Quantity != 98 {
		t.Errorf("stock of y at To: %+v, %v; want 98 (the conflict changed nothing)", s, err)
	}
}

func TestRecorderNotifiesNothing(t *testing.T) {
	x := portstest.NewSample()
	tests := []struct {
		name  string
		setup []domain.Event
		batch []domain.Event
	}{
		{"empty batch", nil, nil},
		{"empty non-nil batch", nil, []domain.Event{}},
		{"all duplicates", []domain.Event{x.Arrival}, []domain.Event{x.Arrival, portstest.Renewed(x.Arrival), x.Arrival}},
		{"all refused", nil, []domain.Event{x.Departure}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := &notifier{}
			r := application.NewRecorder(memory.NewStore(), n)
			if len(tc.setup) > 0 {
				mustRecord(t, r, tc.setup...)
				n.heard = nil
			}
			results := mustRecord(t, r, tc.batch...)
			for i, res := range results {
				if res == nil {
					t.Errorf("event %d stored, want refused", i)
				}
			}
			if n.calls() != 0 {
				t.Errorf("notifier heard %+v, want nothing", n.heard)
			}
		})
	}
}

func TestRecorderWithoutNotifier(t *testing.T) {
	store := memory.NewStore()
	r := application.NewRecorder(store, nil)
	x := portstest.NewSample()
	results := mustRecord(t, r, x.Arrival)
	if results[0] != nil {
		t.Fatalf("arrival: %v", results[0])
	}
	if s, err := store.Stock(context.Background(), x.To, x.Product); err != nil || s.Quantity != 98 {
		t.Errorf("stock: %+v, %v; want 98", s, err)
	}
}

func TestRecorderStoreErrors(t *testing.T) {
	x := portstest.NewSample()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name    string
		ctx     context.Context
		store   ports.Store
		wantErr error // nil: any error
	}{
		{"database down", context.Background(), newFailingStore(), ports.ErrUnavailable},
		{"cancelled context", cancelled, memory.NewStore(), ports.ErrUnavailable},
		{"store returns too few results", context.Background(), shortStore{}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := &notifier{}
			r := application.NewRecorder(tc.store, n)
			results, err := r.Record(tc.ctx, []domain.Event{x.Arrival, x.Departure})
			if err == nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("Record: %v, want %v", err, tc.wantErr)
			}
			if results != nil {
				t.Errorf("results = %v with an error, want nil", results)
			}
			if n.calls() != 0 {
				t.Errorf("notifier heard %+v after a failed batch", n.heard)
			}
		})
	}
}

func TestRecorderConcurrentNotifications(t *testing.T) {
	n := &notifier{}
	r := application.NewRecorder(memory.NewStore(), n)
	const workers = 8
	samples := make([]portstest.Sample, workers)
	var wg sync.WaitGroup
	for i := range samples {
		samples[i] = portstest.NewSample()
		wg.Add(1)
		go func() {
			defer wg.Done()
			x := samples[i]
			// every worker re-sends its arrival: only one of the two is stored
			if _, err := r.Record(context.Background(), []domain.Event{x.Arrival, portstest.Renewed(x.Arrival)}); err != nil {
				t.Errorf("record: %v", err)
			}
		}()
	}
	wg.Wait()
	ms, ks := n.counts()
	for _, x := range samples {
		if ms[x.Movement] != 1 || ks[domain.StockKey{Warehouse: x.To, Product: x.Product}] != 1 {
			t.Errorf("sample %s announced %d times, its stock %d times; want once each",
				x.Movement, ms[x.Movement], ks[domain.StockKey{Warehouse: x.To, Product: x.Product}])
		}
	}
	if len(ms) != workers || len(ks) != workers {
		t.Errorf("announced %d movements and %d stock rows, want %d each", len(ms), len(ks), workers)
	}
}

func (s failingStore) StockAsOf(context.Context, domain.WarehouseID, domain.ProductID, time.Time) (domain.StockAsOf, error) {
	return domain.StockAsOf{}, s.err
}
func (s failingStore) WarehouseStockAsOf(context.Context, ports.StockFilter, time.Time) (ports.StockAsOfPage, error) {
	return ports.StockAsOfPage{}, s.err
}
func (s failingStore) StockHistory(context.Context, ports.HistoryFilter) (ports.HistoryPage, error) {
	return ports.HistoryPage{}, s.err
}
func (s failingStore) Routes(context.Context, ports.RouteFilter) (ports.RoutePage, error) {
	return ports.RoutePage{}, s.err
}
func (s failingStore) InTransit(context.Context, domain.WarehouseID) ([]domain.TransitLoad, error) {
	return nil, s.err
}
func (s failingStore) Event(context.Context, string, string) (domain.StoredEvent, error) {
	return domain.StoredEvent{}, s.err
}
