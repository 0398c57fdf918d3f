package postgres_test

import (
	"context"
	"testing"

	"warehouse/adapters/postgres"
	"warehouse/adapters/postgres/pgtest"
	"warehouse/domain"
	"warehouse/ports/portstest"
)

func TestAuditDetectsCorruption(t *testing.T) {
	db := pgtest.MustOpen(t, pgtest.MustDatabase(t))
	store := postgres.NewStore(db)
	ctx := context.Background()
	x := portstest.NewSample()
	if _, err := store.Apply(ctx, append([]domain.Event{portstest.Supply(x.From, x.Product, 150)}, x.Departure, x.Arrival)); err != nil {
		t.Fatal(err)
	}
	r, err := store.Audit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Sound() || r.Events != 3 || r.Movements != 2 || r.StockRows != 2 || r.StockQuantity != 50+98 {
		t.Fatalf("clean ledger: %+v", r)
	}

	if _, err := db.ExecContext(ctx, "UPDATE stock SET quantity = quantity + 1 WHERE warehouse_id = ?", x.To.String()); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "UPDATE movements SET arrival_quantity = 97 WHERE movement_id = ?", x.Movement.String()); err != nil {
		t.Fatal(err)
	}
	r, err = store.Audit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r.Sound() || len(r.Mismatches) != 1 || len(r.MovementMismatches) != 1 {
		t.Fatalf("corrupted ledger: %+v", r)
	}
	m := r.Mismatches[0]
	if m.WarehouseID.String() != x.To.String() || m.Stored == nil || *m.Stored != 99 || m.Computed == nil || *m.Computed != 98 {
		t.Errorf("mismatch = %+v, want stored 99 computed 98 at %s", m, x.To)
	}
	if r.MovementMismatches[0].String() != x.Movement.String() {
		t.Errorf("movement mismatch = %s, want %s", r.MovementMismatches[0], x.Movement)
	}
}
