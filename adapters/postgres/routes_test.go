package postgres_test

import (
	"context"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"warehouse/adapters/postgres"
	"warehouse/adapters/postgres/pgtest"
	"warehouse/domain"
	"warehouse/ports"
	"warehouse/ports/portstest"
)

// TestRouteFilterKey: every field of a route filter survives the comparable key that
// identical requests share, so that two requests share a query only when they ask the
// same question.
func TestRouteFilterKey(t *testing.T) {
	from, to := domain.WarehouseID(uuid.New()), domain.WarehouseID(uuid.New())
	p := domain.ProductID(uuid.New())
	since := time.Date(2025, 2, 1, 0, 0, 0, 1000, time.UTC)
	for name, f := range map[string]ports.RouteFilter{
		"window only": {Since: since, Until: since.Add(time.Hour), Limit: 10},
		"every field": {Since: since, Until: since.Add(time.Hour), From: &from, To: &to, Product: &p,
			After: &ports.RouteCursor{Movements: 7, From: from, To: to}, Limit: 3},
		"sender only":   {Since: since, Until: since.Add(time.Hour), From: &from, Limit: 1},
		"receiver only": {Since: since, Until: since.Add(time.Hour), To: &to, Limit: 1},
	} {
		if got := postgres.RouteFilterRoundTrip(f); !reflect.DeepEqual(got, f) {
			t.Errorf("%s: %+v came back as %+v", name, f, got)
		}
	}
}

// TestRoutesShareQueries: identical route requests that arrive while the route queries
// are busy are answered together by the next query, each with the full answer.
func TestRoutesShareQueries(t *testing.T) {
	store := postgres.NewStore(pgtest.MustOpen(t, pgtest.MustDatabase(t)))
	a, b, p := domain.WarehouseID(uuid.New()), domain.WarehouseID(uuid.New()), domain.ProductID(uuid.New())
	events := []domain.Event{portstest.Supply(a, p, 100)}
	for i, lost := range []int64{0, 2, 0} {
		m := domain.MovementID(uuid.New())
		at := time.Date(2025, 2, 18, 10+i, 0, 0, 0, time.UTC)
		events = append(events,
			portstest.Event(domain.Departure, m, a, p, 10, at.Format(time.RFC3339)),
			portstest.Event(domain.Arrival, m, b, p, 10-lost, at.Add(90*time.Minute).Format(time.RFC3339)))
	}
	mustStore(t, store, events...)
	f := ports.RouteFilter{Since: time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC), Until: time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC), Limit: 10}
	want := ports.RoutePage{Items: []domain.Route{{From: a, To: b, Movements: 3, QuantitySent: 30, QuantityReceived: 28,
		QuantityLost: 2, Transit: domain.TransitStats{P50: 5400, P90: 5400, P99: 5400, Max: 5400}}}}

	gate := make(chan struct{})
	var fetches, filters atomic.Int64
	store.HookRouteFetches(func(n int) {
		if fetches.Add(1) <= 2 {
			<-gate // the two route queries in flight wait until the others have queued
		}
		filters.Add(int64(n))
	})
	const requests = 12
	ctx := context.Background()
	var wg sync.WaitGroup
	pages := make([]ports.RoutePage, requests)
	errs := make([]error, requests)
	for i := range requests {
		wg.Go(func() { pages[i], errs[i] = store.Routes(ctx, f) })
		if i == 1 {
			for fetches.Load() < 2 {
				time.Sleep(time.Millisecond)
			}
		}
	}
	for deadline := time.Now().Add(10 * time.Second); store.RouteReadsQueued() < requests-2; {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d route reads queued", store.RouteReadsQueued(), requests-2)
		}
		time.Sleep(time.Millisecond)
	}
	close(gate)
	wg.Wait()
	for i := range requests {
		if errs[i] != nil || !reflect.DeepEqual(pages[i], want) {
			t.Errorf("request %d: %+v, %v; want %+v", i, pages[i], errs[i], want)
		}
	}
	if n := fetches.Load(); n != 3 {
		t.Errorf("%d requests ran %d route queries, want 3 (two in flight, then one for the %d that waited)", requests, n, requests-2)
	}
	if n := filters.Load(); n != 3 {
		t.Errorf("the route queries asked %d distinct filters, want 3", n)
	}
}
