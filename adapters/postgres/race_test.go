package postgres_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"warehouse/adapters/postgres"
	"warehouse/adapters/postgres/pgtest"
	"warehouse/domain"
	"warehouse/ports/portstest"
)

// A batch judges its stock without locks and writes it by compare-and-set. These tests
// commit a rival change to a stock row after the batch read it and before it writes it
// (the rival holds the row until the batch waits on it), and check that the batch's
// write does not overwrite the rival's: the batch loses the race, is judged again on the
// rival's quantity, and every change counts once.
func TestStockWriteLosesToRivalCommit(t *testing.T) {
	ctx := context.Background()
	db := pgtest.MustOpen(t, pgtest.MustDatabase(t))

	// a store of its own per case: one that has lost a race locks from the first attempt
	t.Run("existing row changed", func(t *testing.T) {
		store := postgres.NewStore(db)
		w, p := domain.WarehouseID(uuid.New()), domain.ProductID(uuid.New())
		mustStore(t, store, portstest.Supply(w, p, 100))
		rival := rivalTx(t, db, `UPDATE stock SET quantity = quantity - 30 WHERE warehouse_id = ? AND product_id = ?`, uuid.UUID(w), uuid.UUID(p))
		// 80 of the 100 the batch reads, but only 70 once the rival commits: judged
		// again, the departure of 80 is refused and the arrival of 5 is stored.
		m := domain.MovementID(uuid.New())
		dep := portstest.Event(domain.Departure, m, w, p, 80, "2025-02-18T12:00:00Z")
		arr := portstest.Supply(w, p, 5)
		results := applyPastRival(ctx, t, store, db, rival, dep, arr)
		if !errors.Is(results[0], domain.ErrInsufficientStock) || results[1] != nil {
			t.Fatalf("results = %v; want the departure refused for insufficient stock, the arrival stored", results)
		}
		mustQuantity(ctx, t, store, w, p, 75)
	})

	t.Run("new row created", func(t *testing.T) {
		store := postgres.NewStore(db)
		w, p := domain.WarehouseID(uuid.New()), domain.ProductID(uuid.New())
		rival := rivalTx(t, db, `INSERT INTO stock (warehouse_id, product_id, quantity) VALUES (?, ?, 40)`, uuid.UUID(w), uuid.UUID(p))
		results := applyPastRival(ctx, t, store, db, rival, portstest.Supply(w, p, 7))
		if results[0] != nil {
			t.Fatalf("result = %v; want the arrival stored", results[0])
		}
		mustQuantity(ctx, t, store, w, p, 47)
	})
}

// rivalTx begins a transaction that runs query and stays open.
func rivalTx(t *testing.T, db *bun.DB, query string, args ...any) bun.Tx {
	t.Helper()
	tx, err := db.BeginTx(context.Background(), &sql.TxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback() })
	if _, err := tx.ExecContext(context.Background(), query, args...); err != nil {
		t.Fatal(err)
	}
	return tx
}

// applyPastRival applies events while rival is open, commits rival once the batch waits
// for it, and returns the batch's results.
func applyPastRival(ctx context.Context, t *testing.T, store *postgres.Store, db *bun.DB, rival bun.Tx, events ...domain.Event) []error {
	t.Helper()
	type outcome struct {
		results []error
		err     error
	}
	done := make(chan outcome, 1)
	go func() {
		results, err := store.Apply(ctx, events)
		done <- outcome{results, err}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var waiting int
		if err := db.NewRaw(`SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(ctx, &waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		select {
		case o := <-done:
			t.Fatalf("the batch finished (%v, %v) without waiting for the rival", o.results, o.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the batch never waited for the rival's row")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := rival.Commit(); err != nil {
		t.Fatal(err)
	}
	o := <-done
	if o.err != nil {
		t.Fatal(o.err)
	}
	return o.results
}
