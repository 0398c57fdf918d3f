package postgres_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

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
