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
	for name, f := range map[string]ports.MovementFilter{
		"all":                  {Limit: 50},
		"next page":            {Limit: 50, After: cursor},
		"warehouse":            {Warehouse: &w, Limit: 50},
		"warehouse next page":  {Warehouse: &w, Limit: 50, After: cursor},
		"warehouse and status": {Warehouse: &w, Status: domain.InTransit, Limit: 50},
		"product":              {Product: &p, Limit: 50},
		"product and since":    {Product: &p, Since: since, Limit: 50},
		"status":               {Status: domain.Arrived, Limit: 50},
		"since until":          {Since: since, Until: since.Add(24 * time.Hour), Limit: 1000},
	} {
		query, args := postgres.MovementsQuery(f)
		mustIndexPlan(t, db, name, query, args...)
	}
	mustIndexPlan(t, db, "warehouse stock", `SELECT warehouse_id, product_id, quantity, updated_at FROM stock
		WHERE warehouse_id = ? AND product_id > ? ORDER BY product_id LIMIT ?`, w.String(), uuid.Nil.String(), 51)

	// The point reads that concurrent requests share look each key up by its primary key.
	keys := `'{` + w.String() + `,` + uuid.NewString() + `}'`
	mustIndexPlan(t, db, "stock of many keys", strings.NewReplacer("$1", keys, "$2", keys).Replace(postgres.StocksQuery))
	mustIndexPlan(t, db, "movements of many ids", strings.Replace(postgres.MovementsByIDQuery, "$1", keys, 1))
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
// index (see indexAccess) and uses at least one index, and logs the plan.
func mustIndexPlan(t *testing.T, db *bun.DB, name, query string, args ...any) {
	t.Helper()
	var raw string
	if err := db.NewRaw("EXPLAIN (FORMAT JSON) "+query, args...).Scan(context.Background(), &raw); err != nil {
		t.Fatalf("%s: explain: %v", name, err)
	}
	var plans []struct{ Plan planNode }
	if err := json.Unmarshal([]byte(raw), &plans); err != nil || len(plans) != 1 {
		t.Fatalf("%s: plan %q: %v", name, raw, err)
	}
	var scans, notIndexed []string
	indexes := 0
	plans[0].Plan.walk(func(n planNode) {
		if !strings.Contains(n.NodeType, "Scan") {
			return
		}
		scan := n.NodeType + " " + n.IndexName + " on " + n.RelationName
		scans = append(scans, scan)
		if n.IndexName != "" {
			indexes++
		}
		if n.RelationName != "" && !slices.Contains(indexAccess, n.NodeType) {
			notIndexed = append(notIndexed, scan)
		}
	})
	t.Logf("%-22s %s", name, strings.Join(scans, "; "))
	if len(notIndexed) > 0 || indexes == 0 {
		t.Errorf("%s: the plan reads a table without an index (%s): %s", name, strings.Join(notIndexed, "; "), strings.Join(scans, "; "))
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
