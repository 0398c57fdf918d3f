package postgres_test

import (
	"context"
	"testing"

	"github.com/google/uuid"

	"warehouse/adapters/postgres"
	"warehouse/adapters/postgres/pgtest"
	"warehouse/domain"
	"warehouse/ports/portstest"
)

// BenchmarkApply applies batches of 1000 events (supplier arrivals and transfers over
// 20 warehouses × 50 products) and reports events/s.
func BenchmarkApply(b *testing.B) {
	store := postgres.NewStore(pgtest.MustOpen(b, pgtest.MustDatabase(b)))
	ctx := context.Background()
	whs := make([]domain.WarehouseID, 20)
	for i := range whs {
		whs[i] = domain.WarehouseID(uuid.New())
	}
	prods := make([]domain.ProductID, 50)
	for i := range prods {
		prods[i] = domain.ProductID(uuid.New())
	}
	var seed []domain.Event
	for _, w := range whs {
		for _, p := range prods {
			seed = append(seed, portstest.Supply(w, p, 1_000_000))
		}
	}
	if _, err := store.Apply(ctx, seed); err != nil {
		b.Fatal(err)
	}
	const batch = 1000
	batches := make([][]domain.Event, b.N)
	for n := range batches {
		events := make([]domain.Event, 0, batch)
		for i := 0; i < batch/2; i++ {
			m := domain.MovementID(uuid.New())
			p := prods[(n*7+i)%len(prods)]
			from, to := whs[i%len(whs)], whs[(i+3)%len(whs)]
			events = append(events,
				portstest.Event(domain.Departure, m, from, p, 5, "2025-02-18T12:00:00Z"),
				portstest.Event(domain.Arrival, m, to, p, 5, "2025-02-18T13:00:00Z"))
		}
		batches[n] = events
	}
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		results, err := store.Apply(ctx, batches[n])
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range results {
			if r != nil {
				b.Fatal(r)
			}
		}
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "events/s")
}
