package application_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"warehouse/adapters/memory"
	"warehouse/application"
	"warehouse/domain"
	"warehouse/ports"
	"warehouse/ports/portstest"
)

// mustFill stores n arrivals of distinct products at one fresh warehouse, each its own
// movement, and returns the warehouse.
func mustFill(t *testing.T, s ports.Store, n int) domain.WarehouseID {
	t.Helper()
	w := domain.WarehouseID(uuid.New())
	events := make([]domain.Event, n)
	for i := range events {
		events[i] = portstest.Supply(w, domain.ProductID(uuid.New()), 1)
	}
	results, err := s.Apply(context.Background(), events)
	if err != nil {
		t.Fatalf("apply %d supplies: %v", n, err)
	}
	for i, res := range results {
		if res != nil {
			t.Fatalf("supply %d: %v", i, res)
		}
	}
	return w
}

func TestQueriesLimits(t *testing.T) {
	store := memory.NewStore()
	const stored = 1001 // one more than the largest page
	w := mustFill(t, store, stored)
	q := application.NewQueries(store)

	tests := []struct {
		name     string
		limit    int
		wantLen  int
		wantNext bool
		wantErr  error
	}{
		{"zero is no page size", 0, 0, false, domain.ErrInvalid},
		{"one", 1, 1, true, nil},
		{"the maximum", ports.MaxListLimit, ports.MaxListLimit, true, nil},
		{"one over the maximum", ports.MaxListLimit + 1, 0, false, domain.ErrInvalid},
		{"negative", -1, 0, false, domain.ErrInvalid},
	}
	for _, tc := range tests {
		t.Run("movements/"+tc.name, func(t *testing.T) {
			page, err := q.Movements(context.Background(), ports.MovementFilter{Warehouse: &w, Limit: tc.limit})
			if !errors.Is(err, tc.wantErr) || tc.wantErr == nil && err != nil {
				t.Fatalf("Movements: %v, want %v", err, tc.wantErr)
			}
			if len(page.Items) != tc.wantLen || (page.Next != nil) != tc.wantNext {
				t.Errorf("page of %d items, next %v; want %d items, next %v", len(page.Items), page.Next, tc.wantLen, tc.wantNext)
			}
		})
		t.Run("stock/"+tc.name, func(t *testing.T) {
			page, err := q.WarehouseStock(context.Background(), ports.StockFilter{Warehouse: w, Limit: tc.limit})
			if !errors.Is(err, tc.wantErr) || tc.wantErr == nil && err != nil {
				t.Fatalf("WarehouseStock: %v, want %v", err, tc.wantErr)
			}
			if len(page.Items) != tc.wantLen || (page.Next != nil) != tc.wantNext {
				t.Errorf("page of %d items, next %v; want %d items, next %v", len(page.Items), page.Next, tc.wantLen, tc.wantNext)
			}
		})
	}
}

func TestQueriesMovementFilters(t *testing.T) {
	at := time.Date(2025, 2, 18, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		filter  ports.MovementFilter
		wantErr error
	}{
		{"no filter", ports.MovementFilter{Limit: 10}, nil},
		{"status in_transit", ports.MovementFilter{Limit: 10, Status: domain.InTransit}, nil},
		{"status arrived", ports.MovementFilter{Limit: 10, Status: domain.Arrived}, nil},
		{"status completed", ports.MovementFilter{Limit: 10, Status: domain.Completed}, nil},
		{"unknown status", ports.MovementFilter{Limit: 10, Status: "lost"}, domain.ErrInvalid},
		{"status in other case", ports.MovementFilter{Limit: 10, Status: "COMPLETED"}, domain.ErrInvalid},
		{"since before until", ports.MovementFilter{Limit: 10, Since: at, Until: at.Add(time.Microsecond)}, nil},
		{"since equals until", ports.MovementFilter{Limit: 10, Since: at, Until: at}, domain.ErrInvalid},
		{"since equals until in another zone", ports.MovementFilter{Limit: 10, Since: at, Until: at.In(time.FixedZone("MSK", 3*3600))}, domain.ErrInvalid},
		{"since after until", ports.MovementFilter{Limit: 10, Since: at.Add(time.Hour), Until: at}, domain.ErrInvalid},
		{"since only", ports.MovementFilter{Limit: 10, Since: at}, nil},
		{"until only", ports.MovementFilter{Limit: 10, Until: at}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// a valid filter reaches the store; an invalid one must be refused before it does
			q := application.NewQueries(memory.NewStore())
			_, err := q.Movements(context.Background(), tc.filter)
			if !errors.Is(err, tc.wantErr) || tc.wantErr == nil && err != nil {
				t.Errorf("Movements(%+v) on a live store: %v, want %v", tc.filter, err, tc.wantErr)
			}
			if tc.wantErr == nil {
				return
			}
			_, err = application.NewQueries(newFailingStore()).Movements(context.Background(), tc.filter)
			if !errors.Is(err, tc.wantErr) || errors.Is(err, ports.ErrUnavailable) {
				t.Errorf("Movements(%+v) on a failing store: %v, want %v without asking the store", tc.filter, err, tc.wantErr)
			}
		})
	}
}

func TestQueriesFiltersReachTheStore(t *testing.T) {
	store := memory.NewStore()
	q := application.NewQueries(store)
	x := portstest.NewSample()
	results, err := store.Apply(context.Background(), []domain.Event{portstest.Supply(x.From, x.Product, 100), x.Departure})
	if err != nil || results[0] != nil || results[1] != nil {
		t.Fatalf("apply: %v %v", results, err)
	}
	since := x.Departure.Timestamp
	page, err := q.Movements(context.Background(), ports.MovementFilter{
		Warehouse: &x.From, Status: domain.InTransit, Since: since, Until: since.Add(time.Second), Limit: 10,
	})
	if err != nil {
		t.Fatalf("Movements: %v", err)
	}
	if len(page.Items) != 1 || page.Items[0].ID != x.Movement || page.Next != nil {
		t.Errorf("page = %+v, want only %s", page, x.Movement)
	}
}

func TestQueriesReads(t *testing.T) {
	store := memory.NewStore()
	q := application.NewQueries(store)
	x := portstest.NewSample()
	if _, err := store.Apply(context.Background(), []domain.Event{x.Arrival}); err != nil {
		t.Fatalf("apply: %v", err)
	}
	m, err := q.Movement(context.Background(), x.Movement)
	if err != nil || m.ID != x.Movement || m.Status() != domain.Arrived {
		t.Errorf("Movement: %+v, %v; want arrived %s", m, err, x.Movement)
	}
	s, err := q.Stock(context.Background(), x.To, x.Product)
	if err != nil || s.Quantity != 98 {
		t.Errorf("Stock: %+v, %v; want 98", s, err)
	}
	if _, err := q.Movement(context.Background(), domain.MovementID(uuid.New())); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("unknown movement: %v, want not found", err)
	}
	if _, err := q.Stock(context.Background(), x.From, x.Product); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("unknown stock row: %v, want not found", err)
	}
}

func TestQueriesStoreErrorsPassThrough(t *testing.T) {
	q := application.NewQueries(newFailingStore())
	ctx := context.Background()
	w, p, m := domain.WarehouseID(uuid.New()), domain.ProductID(uuid.New()), domain.MovementID(uuid.New())
	calls := map[string]func() error{
		"Movement": func() error { _, err := q.Movement(ctx, m); return err },
		"Stock":    func() error { _, err := q.Stock(ctx, w, p); return err },
		"Movements": func() error {
			_, err := q.Movements(ctx, ports.MovementFilter{Warehouse: &w, Limit: 5})
			return err
		},
		"WarehouseStock": func() error {
			_, err := q.WarehouseStock(ctx, ports.StockFilter{Warehouse: w, Limit: 5})
			return err
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			if err := call(); !errors.Is(err, ports.ErrUnavailable) {
				t.Errorf("%s: %v, want it to wrap ports.ErrUnavailable", name, err)
			}
		})
	}
}

// recordingQueries records the route filter the store is asked for.
type recordingQueries struct {
	ports.Queries
	routes []ports.RouteFilter
}

func (r *recordingQueries) Routes(_ context.Context, f ports.RouteFilter) (ports.RoutePage, error) {
	r.routes = append(r.routes, f)
	return ports.RoutePage{}, nil
}

// TestRoutesDefaultWindow: without bounds, routes cover the last 30 days up to the end of
// the current minute, so that every request of one minute asks the store the same thing.
func TestRoutesDefaultWindow(t *testing.T) {
	rec := &recordingQueries{Queries: memory.NewStore()}
	var now time.Time
	q := application.NewQueriesWithClock(rec, func() time.Time { return now })
	for _, at := range []string{"2026-03-01T10:15:00.000001+03:00", "2026-03-01T07:15:42Z", "2026-03-01T07:15:59.999999Z"} {
		var err error
		if now, err = time.Parse(time.RFC3339Nano, at); err != nil {
			t.Fatal(err)
		}
		if _, err := q.Routes(context.Background(), ports.RouteFilter{Limit: 10}); err != nil {
			t.Fatalf("%s: %v", at, err)
		}
	}
	wantUntil := time.Date(2026, 3, 1, 7, 16, 0, 0, time.UTC)
	for i, f := range rec.routes {
		if !f.Until.Equal(wantUntil) || !f.Since.Equal(wantUntil.Add(-30*24*time.Hour)) {
			t.Errorf("request %d: window [%s, %s), want [%s, %s)", i, f.Since, f.Until, wantUntil.Add(-30*24*time.Hour), wantUntil)
		}
	}
	// Bounds given are kept as they are.
	since, until := time.Date(2026, 1, 1, 0, 0, 0, 1000, time.UTC), time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	if _, err := q.Routes(context.Background(), ports.RouteFilter{Since: since, Until: until, Limit: 10}); err != nil {
		t.Fatal(err)
	}
	if got := rec.routes[len(rec.routes)-1]; !got.Since.Equal(since) || !got.Until.Equal(until) {
		t.Errorf("explicit window became [%s, %s)", got.Since, got.Until)
	}
}
