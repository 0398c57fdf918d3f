package postgres_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"warehouse/adapters/postgres"
	"warehouse/adapters/postgres/pgtest"
	"warehouse/domain"
	"warehouse/ports"
)

// TestListQueriesUseIndexes fills a database with 100 000 movements and stock rows, and
// checks that the plan of every list query shape reads each table through an index (an
// index scan, an index-only scan, or a bitmap heap scan of index matches), never by a
// sequential scan: a page must cost the same on a large ledger as on a small one. Most
// are plain index scans, which also read the rows they return: an index-only plan would
// need every returned column in the index.
func TestListQueriesUseIndexes(t *testing.T) {
	if testing.Short() {
		t.Skip("fills 100 000 rows")
	}

	db := pgtest.MustOpen(t, pgtest.MustDatabase(t))
	mustExec(t, db, `INSERT INTO movements (movement_id, product_id,
			departure_warehouse_id, departure_source, departure_at, departure_quantity,
			arrival_warehouse_id, arrival_source, arrival_at, arrival_quantity)
		SELECT gen_random_uuid(), ('00000000-0000-0000-0000-' || lpad(to_hex(i % 1000), 12, '0'))::uuid,
			CASE WHEN i % 3 <> 1 THEN ('00000000-0000-0000-0001-' || lpad(to_hex(i % 100), 12, '0'))::uuid END, 'WH',
			CASE WHEN i % 3 <> 1 THEN timestamptz '2025-01-01' + i * interval '1 minute' END, 10,
			CASE WHEN i % 3 <> 0 THEN ('00000000-0000-0000-0001-' || lpad(to_hex((i + 7) % 100), 12, '0'))::uuid END, 'WH',
			CASE WHEN i % 3 <> 0 THEN timestamptz '2025-01-01' + i * interval '1 minute' + interval '1 hour' END, 9
		FROM generate_series(1, 100000) AS i`)
	mustExec(t, db, `INSERT INTO stock (warehouse_id, product_id, quantity)
		SELECT ('00000000-0000-0000-0001-' || lpad(to_hex(i % 100), 12, '0'))::uuid, gen_random_uuid(), i
		FROM generate_series(1, 100000) AS i`)
	mustExec(t, db, `ANALYZE movements`)
	mustExec(t, db, `ANALYZE stock`)

	w := domain.WarehouseID(uuid.MustParse("00000000-0000-0000-0001-000000000005"))
	p := domain.ProductID(uuid.MustParse("00000000-0000-0000-0000-000000000005"))
	since := time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC)
	cursor := &domain.MovementCursor{Time: time.Date(2025, 2, 15, 0, 0, 0, 0, time.UTC), ID: domain.MovementID(uuid.New())}
	const (
		movedAt   = "movements_moved_at_idx"
		departure = "movements_departure_wh_idx"
		arrival   = "movements_arrival_wh_idx"
		product   = "movements_product_idx"
		status    = "movements_status_idx"
	)
	for name, c := range map[string]struct {
		f    ports.MovementFilter
		uses []string // the indexes the plan must read: the one made for the filter
	}{
		"all":                  {ports.MovementFilter{Limit: 50}, []string{movedAt}},
		"next page":            {ports.MovementFilter{Limit: 50, After: cursor}, []string{movedAt}},
		"warehouse":            {ports.MovementFilter{Warehouse: &w, Limit: 50}, []string{departure, arrival}},
		"warehouse next page":  {ports.MovementFilter{Warehouse: &w, Limit: 50, After: cursor}, []string{departure, arrival}},
		"warehouse and status": {ports.MovementFilter{Warehouse: &w, Status: domain.InTransit, Limit: 50}, []string{departure, arrival}},
		"product":              {ports.MovementFilter{Product: &p, Limit: 50}, []string{product}},
		"product and since":    {ports.MovementFilter{Product: &p, Since: since, Limit: 50}, []string{product}},
		"status":               {ports.MovementFilter{Status: domain.Arrived, Limit: 50}, []string{status}},
		"status completed":     {ports.MovementFilter{Status: domain.Completed, Limit: 50}, []string{status}},
		"since until":          {ports.MovementFilter{Since: since, Until: since.Add(24 * time.Hour), Limit: 1000}, []string{movedAt}},
	} {
		query, args := postgres.MovementsQuery(c.f)
		mustIndexPlan(t, db, name, c.uses, query, args...)
	}
	mustIndexPlan(t, db, "warehouse stock", []string{"stock_pkey"}, `SELECT warehouse_id, product_id, quantity, updated_at FROM stock
		WHERE warehouse_id = ? AND product_id > ? ORDER BY product_id LIMIT ?`, w.String(), uuid.Nil.String(), 51)

	// The point reads that concurrent requests share look each key up by its primary key.
	keys := `'{` + w.String() + `,` + uuid.NewString() + `}'`
	mustIndexPlan(t, db, "stock of many keys", []string{"stock_pkey"}, strings.NewReplacer("$1", keys, "$2", keys).Replace(postgres.StocksQuery))
	mustIndexPlan(t, db, "movements of many ids", []string{"movements_pkey"}, strings.Replace(postgres.MovementsByIDQuery, "$1", keys, 1))
}

func mustExec(t *testing.T, db *bun.DB, query string) {
	t.Helper()
	if _, err := db.ExecContext(context.Background(), query); err != nil {
		t.Fatalf("%s: %v", strings.Fields(query)[0], err)
	}
}

// indexAccess are the plan nodes that read a table through an index.
var indexAccess = []string{"Index Scan", "Index Only Scan", "Bitmap Heap Scan"}

// mustIndexPlan fails unless the plan of query reads every table it scans through an
// index (see indexAccess) and reads every index of uses (the ones made for its shape:
// some index is not enough, a plan that falls back on another would pass), and logs the
// plan.
func mustIndexPlan(t *testing.T, db *bun.DB, name string, uses []string, query string, args ...any) {
	t.Helper()
	var raw string
	if err := db.NewRaw("EXPLAIN (FORMAT JSON) "+query, args...).Scan(context.Background(), &raw); err != nil {
		t.Fatalf("%s: explain: %v", name, err)
	}
	var plans []struct{ Plan planNode }
	if err := json.Unmarshal([]byte(raw), &plans); err != nil || len(plans) != 1 {
		t.Fatalf("%s: plan %q: %v", name, raw, err)
	}
	var scans, notIndexed, indexes []string
	plans[0].Plan.walk(func(n planNode) {
		if !strings.Contains(n.NodeType, "Scan") {
			return
		}
		scan := n.NodeType + " " + n.IndexName + " on " + n.RelationName
		scans = append(scans, scan)
		if n.IndexName != "" {
			indexes = append(indexes, n.IndexName)
		}
		if n.RelationName != "" && !slices.Contains(indexAccess, n.NodeType) {
			notIndexed = append(notIndexed, scan)
		}
	})
	t.Logf("%-22s %s", name, strings.Join(scans, "; "))
	if len(notIndexed) > 0 || len(indexes) == 0 {
		t.Errorf("%s: the plan reads a table without an index (%s): %s", name, strings.Join(notIndexed, "; "), strings.Join(scans, "; "))
	}
	for _, index := range uses {
		if !slices.Contains(indexes, index) {
			t.Errorf("%s: the plan does not read %s: %s", name, index, strings.Join(scans, "; "))
		}
	}
}

type planNode struct {
	NodeType     string     `json:"Node Type"`
	RelationName string     `json:"Relation Name"`
	IndexName    string     `json:"Index Name"`
	Plans        []planNode `json:"Plans"`
}

func (n planNode) walk(fn func(planNode)) {
	fn(n)
	for _, c := range n.Plans {
		c.walk(fn)
	}
}
