package postgres_test

import (
	"context"
	"errors"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"warehouse/adapters/postgres"
	"warehouse/adapters/postgres/pgtest"
	"warehouse/domain"
	"warehouse/ports"
)

// TestListAdmission: when every list slot is taken and every pooled connection busy, the
// next list query fails fast with ErrOverloaded (not ErrUnavailable: the database is
// fine), while the readiness Pinger, on its own connection, still answers.
func TestListAdmission(t *testing.T) {
	dbURL := pgtest.MustDatabase(t)
	const poolSize = 4
	db, err := postgres.Open(postgres.Options{URL: dbURL, MaxConns: poolSize})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	const wait = 50 * time.Millisecond
	store := postgres.NewStoreWithOptions(db, postgres.StoreOptions{ListQueries: 2, ListWait: wait})
	pinger := mustPinger(t, dbURL)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Every list slot taken, as by lists in flight, and every pooled connection busy.
	var releases []func()
	for range store.ListQueries() {
		release, err := store.AdmitList(ctx)
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, release)
	}
	var conns []interface{ Close() error }
	for range poolSize {
		conn, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
	}

	start := time.Now()
	_, errMovements := store.Movements(ctx, ports.MovementFilter{Limit: 10})
	_, errStock := store.WarehouseStock(ctx, ports.StockFilter{Warehouse: domain.WarehouseID(uuid.New()), Limit: 10})
	_, errRoutes := store.Routes(ctx, ports.RouteFilter{Since: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), Until: time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC), Limit: 10})
	if took := time.Since(start); took > 15*wait {
		t.Errorf("three shed lists took %v, want about 3×%v", took, wait)
	}
	for name, err := range map[string]error{"Movements": errMovements, "WarehouseStock": errStock, "Routes": errRoutes} {
		if !errors.Is(err, ports.ErrOverloaded) || errors.Is(err, ports.ErrUnavailable) {
			t.Errorf("%s with every slot taken: %v, want ErrOverloaded and not ErrUnavailable", name, err)
		}
	}

	// The pool cannot ping now; the Pinger can, many times at once.
	short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
	if err := store.Ping(short); err == nil {
		t.Error("the pool ping answered although every pooled connection was busy")
	}
	cancelShort()
	var wg sync.WaitGroup
	errs := make([]error, 50)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			errs[i] = pinger.Ping(pctx)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("ping %d with the pool busy: %v", i, err)
		}
	}

	// Once a slot and a connection free, lists run again.
	releases[0]()
	_ = conns[0].Close()
	if _, err := store.Movements(ctx, ports.MovementFilter{Limit: 10}); err != nil {
		t.Errorf("list after a slot freed: %v", err)
	}
	for _, r := range releases[1:] {
		r()
	}
	for _, c := range conns[1:] {
		_ = c.Close()
	}
}

// TestListAdmissionDefaults: the default number of list slots leaves the pool room for
// the coalesced point reads (4 of each kind), the coalesced as-of and history reads (2 each) and ingest.
func TestListAdmissionDefaults(t *testing.T) {
	for _, tc := range []struct{ pool, want int }{{16, 2}, {32, 18}, {15, 1}, {4, 1}, {0, 8}} {
		db, err := postgres.Open(postgres.Options{URL: pgtest.DefaultURL, MaxConns: tc.pool})
		if err != nil {
			t.Fatal(err)
		}
		if got := postgres.NewStore(db).ListQueries(); got != tc.want {
			t.Errorf("pool of %d: %d list slots, want %d", tc.pool, got, tc.want)
		}
		_ = db.Close()
	}
}

// TestPingerOutage: the Pinger reports a database that went away as unavailable.
func TestPingerOutage(t *testing.T) {
	dbURL := pgtest.MustDatabase(t)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := mustCutProxy(t, u.Host)
	u.Host = proxy.ln.Addr().String()
	pinger := mustPinger(t, u.String())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := pinger.Ping(ctx); err != nil {
		t.Fatalf("ping through the proxy: %v", err)
	}
	proxy.cut()
	if err := pinger.Ping(ctx); !errors.Is(err, ports.ErrUnavailable) {
		t.Fatalf("ping after the cut: %v, want ErrUnavailable", err)
	}
}

func mustPinger(t *testing.T, dbURL string) *postgres.Pinger {
	t.Helper()
	p, err := postgres.OpenPinger(postgres.Options{URL: dbURL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}
