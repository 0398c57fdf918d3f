package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"

	"github.com/google/uuid"

	"warehouse/adapters/postgres"
	"warehouse/adapters/postgres/pgtest"
	"warehouse/domain"
	"warehouse/ports/portstest"
)

// pointReadFixture stores supplies of 4 warehouses × 5 products and 10 movements, and
// returns the store with the stock it holds and the movements' ids.
func pointReadFixture(t *testing.T) (*postgres.Store, map[domain.StockKey]int64, []domain.MovementID) {
	t.Helper()
	store := postgres.NewStore(pgtest.MustOpen(t, pgtest.MustDatabase(t)))
	stock := map[domain.StockKey]int64{}
	var events []domain.Event
	var ws []domain.WarehouseID
	var ps []domain.ProductID
	for i := range 4 {
		ws = append(ws, domain.WarehouseID(uuid.New()))
		for j := range 5 {
			if i == 0 {
				ps = append(ps, domain.ProductID(uuid.New()))
			}
			q := int64(10*i + j + 5)
			events = append(events, portstest.Supply(ws[i], ps[j], q))
			stock[domain.StockKey{Warehouse: ws[i], Product: ps[j]}] = q
		}
	}
	var ids []domain.MovementID
	for i := range 10 {
		m := domain.MovementID(uuid.New())
		ids = append(ids, m)
		events = append(events, portstest.Event(domain.Departure, m, ws[0], ps[i%5], 1, fmt.Sprintf("2025-02-18T12:%02d:00Z", i)))
		stock[domain.StockKey{Warehouse: ws[0], Product: ps[i%5]}]--
	}
	mustStore(t, store, events...)
	return store, stock, ids
}

// The query of many stock keys answers each key present with its own row and leaves the
// missing ones out.
func TestFetchStockOfManyKeys(t *testing.T) {
	store, stock, _ := pointReadFixture(t)
	var keys []domain.StockKey
	for k := range stock {
		keys = append(keys, k)
	}
	missing := domain.StockKey{Warehouse: domain.WarehouseID(uuid.New()), Product: keys[0].Product}
	keys = append(keys, missing)
	got, err := postgres.FetchStock(store, context.Background(), keys)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(stock) {
		t.Fatalf("got %d rows for %d keys (%d stored)", len(got), len(keys), len(stock))
	}
	for k, q := range stock {
		st, ok := got[k]
		if !ok || st.Quantity != q || st.WarehouseID != k.Warehouse || st.ProductID != k.Product || st.UpdatedAt.IsZero() {
			t.Errorf("stock %v = %+v, %v; want quantity %d", k, st, ok, q)
		}
	}
	if _, ok := got[missing]; ok {
		t.Errorf("a missing key was answered")
	}
}

// The query of many movement ids answers each stored movement as the one-key read does.
func TestFetchMovementsOfManyIDs(t *testing.T) {
	store, _, ids := pointReadFixture(t)
	ctx := context.Background()
	got, err := postgres.FetchMovements(store, ctx, append([]domain.MovementID{domain.MovementID(uuid.New())}, ids...))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(ids) {
		t.Fatalf("got %d movements; want %d", len(got), len(ids))
	}
	for _, id := range ids {
		one, err := postgres.FetchMovements(store, ctx, []domain.MovementID{id})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got[id], one[id]) || got[id].Departure == nil {
			t.Errorf("movement %s: many-key read %+v, one-key read %+v", id, got[id], one[id])
		}
	}
}

// Many concurrent point reads (coalesced into shared queries) each get their own answer.
func TestConcurrentPointReads(t *testing.T) {
	store, stock, ids := pointReadFixture(t)
	ctx := context.Background()
	var keys []domain.StockKey
	for k := range stock {
		keys = append(keys, k)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 64 {
		wg.Go(func() {
			for i := range 50 {
				k := keys[(g+i)%len(keys)]
				if i%7 == 0 {
					k.Warehouse = domain.WarehouseID(uuid.New())
					if _, err := store.Stock(ctx, k.Warehouse, k.Product); !errors.Is(err, domain.ErrNotFound) {
						errs <- fmt.Errorf("missing stock: err %w", err)
						return
					}
					continue
				}
				st, err := store.Stock(ctx, k.Warehouse, k.Product)
				if err != nil || st.Quantity != stock[k] {
					errs <- fmt.Errorf("stock %v = %d, %w; want %d", k, st.Quantity, err, stock[k])
					return
				}
				id := ids[(g*3+i)%len(ids)]
				m, err := store.Movement(ctx, id)
				if err != nil || m.ID != id {
					errs <- fmt.Errorf("movement %s = %s, %w", id, m.ID, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
