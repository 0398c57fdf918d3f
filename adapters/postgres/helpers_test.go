package postgres_test

import (
	"context"
	"testing"

	"warehouse/adapters/postgres"
	"warehouse/domain"
)

// mustStore applies events in one batch and fails t unless every one is stored.
func mustStore(t testing.TB, store *postgres.Store, events ...domain.Event) {
	t.Helper()
	results, err := store.Apply(context.Background(), events)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range results {
		if r != nil {
			t.Fatalf("event %d: %v", i, r)
		}
	}
}

// mustQuantity fails t unless the stock of (w, p) is want.
func mustQuantity(ctx context.Context, t *testing.T, store *postgres.Store, w domain.WarehouseID, p domain.ProductID, want int64) {
	t.Helper()
	got, err := store.Stock(ctx, w, p)
	if err != nil {
		t.Fatal(err)
	}
	if got.Quantity != want {
		t.Fatalf("stock = %d, want %d", got.Quantity, want)
	}
}
