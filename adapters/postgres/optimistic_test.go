package postgres_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"warehouse/adapters/postgres"
	"warehouse/adapters/postgres/pgtest"
	"warehouse/domain"
	"warehouse/ports/portstest"
)

// TestWritePathLocksOnlyAfterALostRace checks the write path as the README and the
// domain.Ledger comment describe it. A rival holds a stock row (an uncommitted update)
// while a batch is applied: a store that has lost no race reads the row without a lock
// and waits only at its compare-and-set write (an UPDATE); it loses that race, and is
// judged again. For a while after, the same store locks its stock rows before it reads
// them, and so waits at its locking statement (an INSERT … ON CONFLICT) instead.
func TestWritePathLocksOnlyAfterALostRace(t *testing.T) {
	ctx := context.Background()
	db := pgtest.MustOpen(t, pgtest.MustDatabase(t))
	store := postgres.NewStore(db)
	w, p := domain.WarehouseID(uuid.New()), domain.ProductID(uuid.New())
	mustStore(t, store, portstest.Supply(w, p, 100))
	const take = `UPDATE stock SET quantity = quantity - 30 WHERE warehouse_id = ? AND product_id = ?`

	rival := rivalTx(t, db, take, uuid.UUID(w), uuid.UUID(p))
	waited := applyWaiting(ctx, t, store, db, rival, portstest.Supply(w, p, 5))
	if !strings.HasPrefix(waited, "UPDATE stock") {
		t.Errorf("a store that lost no race waited at:\n%s\nwant its compare-and-set write (UPDATE stock): it must read without locks", waited)
	}
	mustQuantity(ctx, t, store, w, p, 75) // judged again on the rival's 70

	rival = rivalTx(t, db, take, uuid.UUID(w), uuid.UUID(p))
	waited = applyWaiting(ctx, t, store, db, rival, portstest.Supply(w, p, 5))
	if !strings.HasPrefix(waited, "INSERT INTO stock") || !strings.Contains(waited, "ON CONFLICT") {
		t.Errorf("right after a lost race the store waited at:\n%s\nwant its lock of the stock rows (INSERT … ON CONFLICT), taken before it reads them", waited)
	}
	mustQuantity(ctx, t, store, w, p, 50)
}

// applyWaiting applies events while rival is open and returns the statement the batch
// waited at for rival's lock; it then commits rival and requires every event stored.
func applyWaiting(ctx context.Context, t *testing.T, store *postgres.Store, db *bun.DB, rival bun.Tx, events ...domain.Event) string {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		results, err := store.Apply(ctx, events)
		for _, r := range results {
			err = r
		}
		done <- err
	}()
	var waited string
	for deadline := time.Now().Add(10 * time.Second); waited == ""; time.Sleep(5 * time.Millisecond) {
		var queries []string
		if err := db.NewRaw(`SELECT query FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(ctx, &queries); err != nil {
			t.Fatal(err)
		}
		if len(queries) > 0 {
			waited = strings.TrimSpace(queries[0])
		}
		select {
		case err := <-done:
			t.Fatalf("the batch finished (%v) without waiting for the rival", err)
		default:
		}
		if waited == "" && time.Now().After(deadline) {
			t.Fatal("the batch never waited for the rival's row")
		}
	}
	if err := rival.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("apply past the rival: %v", err)
	}
	return waited
}
