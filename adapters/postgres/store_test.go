package postgres_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"warehouse/adapters/postgres"
	"warehouse/adapters/postgres/pgtest"
	"warehouse/domain"
	"warehouse/ports"
	"warehouse/ports/portstest"
)

func TestStoreContract(t *testing.T) {
	db := pgtest.MustOpen(t, pgtest.MustDatabase(t))
	store := postgres.NewStore(db)
	portstest.StoreWithFaults(t, func(*testing.T) ports.Store { return store }, portstest.Faults{
		FailStockWrites: func(t *testing.T, k domain.StockKey) func() { return mustFailStockWrites(t, db, k) },
	})
}

// mustFailStockWrites makes every write of the stock row k raise an error (a trigger, as
// a constraint of the server would), until the returned func or the end of the test.
func mustFailStockWrites(t *testing.T, db *bun.DB, k domain.StockKey) (restore func()) {
	t.Helper()
	name := "fail_stock_" + strings.ReplaceAll(uuid.NewString(), "-", "")
	ctx := context.Background()
	for _, stmt := range []string{
		`CREATE FUNCTION ` + name + `() RETURNS trigger LANGUAGE plpgsql AS $$
			BEGIN RAISE EXCEPTION 'test fault: stock row % % cannot be written', NEW.warehouse_id, NEW.product_id; END $$`,
		fmt.Sprintf(`CREATE TRIGGER %s BEFORE INSERT OR UPDATE ON stock FOR EACH ROW
			WHEN (NEW.warehouse_id = '%s' AND NEW.product_id = '%s') EXECUTE FUNCTION %s()`, name, k.Warehouse, k.Product, name),
	} {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			t.Fatalf("install the stock fault: %v", err)
		}
	}
	var once sync.Once
	restore = func() {
		once.Do(func() {
			if _, err := db.ExecContext(ctx, `DROP TRIGGER `+name+` ON stock; DROP FUNCTION `+name+`()`); err != nil {
				t.Errorf("remove the stock fault: %v", err)
			}
		})
	}
	t.Cleanup(restore)
	return restore
}

func TestHistoryContract(t *testing.T) {
	store := postgres.NewStore(pgtest.MustOpen(t, pgtest.MustDatabase(t)))
	portstest.History(t, func(*testing.T) ports.Store { return store })
}

func TestChangeLogContract(t *testing.T) {
	portstest.ChangeLog(t, postgres.NewStore(pgtest.MustOpen(t, pgtest.MustDatabase(t))))
}

// TestFollowSurvivesLostConnection: when the server ends the connection Follow listens
// on, Follow listens again on a new one and hints the head it reads then, so a follower
// hears of the commits made meanwhile and after.
func TestFollowSurvivesLostConnection(t *testing.T) {
	dbURL := pgtest.MustDatabase(t)
	db := pgtest.MustOpen(t, dbURL)
	store := postgres.NewStore(db)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hints := store.Follow(ctx)
	waitHint := func(want int64) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case h := <-hints:
				if h >= want {
					return
				}
			case <-timeout:
				t.Fatalf("no hint of head %d within 10 s", want)
			}
		}
	}
	waitHint(0) // listening
	k := domain.StockKey{Warehouse: domain.WarehouseID(uuid.New()), Product: domain.ProductID(uuid.New())}
	mustStoreOne := func() int64 {
		t.Helper()
		// A pooled connection killed below with Follow's may fail one call: try again.
		var err error
		for range 3 {
			if _, err = store.Apply(ctx, []domain.Event{portstest.Supply(k.Warehouse, k.Product, 1)}); err == nil {
				break
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		var h int64
		for range 3 {
			if h, err = store.Head(ctx); err == nil {
				return h
			}
		}
		t.Fatal(err)
		return 0
	}
	waitHint(mustStoreOne())
	var killed int
	// Follow's connection is idle after reading the head (a pooled one that read it
	// last goes too).
	if err := db.QueryRowContext(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'idle'
		AND query LIKE 'SELECT position FROM change_log_head%'`).Scan(&killed); err != nil || killed < 1 {
		t.Fatalf("terminating the LISTEN connection: %d terminated, %v", killed, err)
	}
	missed := mustStoreOne() // committed while Follow may be reconnecting
	waitHint(missed)
	waitHint(mustStoreOne())
}
