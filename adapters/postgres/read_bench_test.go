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

// BenchmarkPointReads measures Stock and Movement reads from 32 goroutines.
func BenchmarkPointReads(b *testing.B) {
	store := postgres.NewStore(pgtest.MustOpen(b, pgtest.MustDatabase(b)))
	ctx := context.Background()
	var events []domain.Event
	for range 1000 {
		events = append(events, portstest.Supply(domain.WarehouseID(uuid.New()), domain.ProductID(uuid.New()), 5))
	}
	if _, err := store.Apply(ctx, events); err != nil {
		b.Fatal(err)
	}
	for _, kind := range []string{"stock", "movement"} {
		b.Run(kind, func(b *testing.B) {
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					e := events[i%len(events)]
					i++
					var err error
					if kind == "stock" {
						_, err = store.Stock(ctx, e.WarehouseID, e.ProductID)
					} else {
						_, err = store.Movement(ctx, e.MovementID)
					}
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reads/s")
		})
	}
}
