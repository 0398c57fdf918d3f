package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
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

// TestHistoryQueriesUseIndexes fills a ledger of 100 000 events over 100 stock rows (with
// checkpoints) and 100 000 movements over two years, and checks that no query of the
// ledger's past scans a table: as-of folds its row's events from events_history_idx
// alone, after the nearest checkpoint, and a route window of 30 days reads its movements
// through an index. (A window that covers most of the ledger is cheaper to read whole,
// and PostgreSQL then rightly scans the table.)
func TestHistoryQueriesUseIndexes(t *testing.T) {
	if testing.Short() {
		t.Skip("fills 200 000 rows")
	}
	db := pgtest.MustOpen(t, pgtest.MustDatabase(t))
	const wh, pr = "00000000-0000-0000-0001-", "00000000-0000-0000-0000-"
	key := func(prefix, expr string) string {
		return "('" + prefix + "' || lpad(to_hex(" + expr + "), 12, '0'))::uuid"
	}
	mustExec(t, db, `INSERT INTO events (source, id, movement_id, event, warehouse_id, product_id, quantity, occurred_at)
		SELECT 'WH', i::text, gen_random_uuid(), CASE WHEN i % 3 = 0 THEN 'departure' ELSE 'arrival' END,
			`+key(wh, "i % 10")+`, `+key(pr, "i % 100 / 10")+`, 1 + i % 7, timestamptz '2025-01-01' + i * interval '1 minute'
		FROM generate_series(1, 100000) AS i`)
	mustExec(t, db, `INSERT INTO stock (warehouse_id, product_id, quantity, events)
		SELECT warehouse_id, product_id, greatest(sum(delta), 0), count(*) FROM events GROUP BY 1, 2`)
	mustExec(t, db, `INSERT INTO stock_checkpoints (warehouse_id, product_id, at, seq, balance, events, updated_at)
		SELECT warehouse_id, product_id, occurred_at, seq, 0, 0, now() FROM events WHERE seq % 100 = 0`)
	mustExec(t, db, `INSERT INTO movements (movement_id, product_id,
			departure_warehouse_id, departure_source, departure_at, departure_quantity,
			arrival_warehouse_id, arrival_source, arrival_at, arrival_quantity)
		SELECT gen_random_uuid(), `+key(pr, "i % 1000")+`,
			`+key(wh, "i % 100")+`, 'WH', timestamptz '2025-01-01' + i * interval '10 minutes', 10,
			CASE WHEN i % 4 <> 0 THEN `+key(wh, "(i + 7) % 100")+` END, 'WH',
			CASE WHEN i % 4 <> 0 THEN timestamptz '2025-01-01' + i * interval '10 minutes' + interval '1 hour' END, 9
		FROM generate_series(1, 100000) AS i`)
	// VACUUM sets the visibility map, as autovacuum does on a live ledger: only then is
	// an index-only scan cheaper than visiting the table.
	for _, table := range []string{"events", "stock", "stock_checkpoints", "movements"} {
		mustExec(t, db, "VACUUM ANALYZE "+table)
	}

	w, p := "'"+wh+"000000000003'::uuid", "'"+pr+"000000000004'::uuid"
	at, pos := "'2025-02-01T00:00:00Z'::timestamptz", "9223372036854775807"
	bind := func(query string, args ...string) string {
		for i := len(args); i >= 1; i-- { // $10 before $1
			query = strings.ReplaceAll(query, fmt.Sprintf("$%d", i), args[i-1])
		}
		return query
	}
	const history, checkpoints = "events_history_idx", "stock_checkpoints_pkey"
	for name, c := range map[string]struct {
		query string
		uses  []string
	}{
		"stock as of":           {bind(postgres.AsOfFolds, "ARRAY["+w+"]", "ARRAY["+p+"]", "ARRAY["+at+"]"), []string{checkpoints, history}},
		"warehouse stock as of": {bind(postgres.WarehouseAsOfQuery, w, "'"+uuid.Nil.String()+"'::uuid", at, pos, "51"), []string{"stock_pkey", checkpoints, history}},
		"history first page": {bind(postgres.HistoryPages, "ARRAY["+w+"]", "ARRAY["+p+"]", "ARRAY['-infinity'::timestamptz]",
			"ARRAY[0::bigint]", "ARRAY['infinity'::timestamptz]", "ARRAY[51]"), []string{history}},
		"history next page": {bind(postgres.HistoryPages, "ARRAY["+w+"]", "ARRAY["+p+"]", "ARRAY["+at+"]",
			"ARRAY[5000::bigint]", "ARRAY['infinity'::timestamptz]", "ARRAY[51]"), []string{history}},
		"history opening balance": {bind(postgres.FoldsBefore, "ARRAY["+w+"]", "ARRAY["+p+"]", "ARRAY["+at+"]", "ARRAY[5000::bigint]"), []string{checkpoints, history}},
		"in transit":              {bind(postgres.InTransitQuery, w), []string{"movements_departure_wh_idx"}},
		"event":                   {bind(postgres.EventQuery, "'WH'", "'500'"), []string{"events_pkey"}},
	} {
		mustIndexPlan(t, db, name, c.uses, c.query)
	}
	wid := domain.WarehouseID(uuid.MustParse(wh + "000000000003"))
	window := func(f ports.RouteFilter) ports.RouteFilter {
		f.Since, f.Until, f.Limit = time.Date(2025, 1, 15, 0, 0, 0, 0, time.UTC), time.Date(2025, 2, 14, 0, 0, 0, 0, time.UTC), 50
		return f
	}
	for name, c := range map[string]struct {
		f    ports.RouteFilter
		uses []string
	}{
		"routes":                 {window(ports.RouteFilter{}), []string{"movements_moved_at_idx"}},
		"routes from one sender": {window(ports.RouteFilter{From: &wid}), []string{"movements_departure_wh_idx"}},
		"routes next page":       {window(ports.RouteFilter{After: &ports.RouteCursor{Movements: 3, From: wid, To: wid}}), []string{"movements_moved_at_idx"}},
	} {
		f := c.f
		query, args := postgres.RoutesQuery(f)
		literals := make([]string, len(args))
		for i, a := range args {
			switch v := a.(type) {
			case time.Time:
				literals[i] = "'" + v.Format(time.RFC3339Nano) + "'::timestamptz"
			case [16]byte:
				literals[i] = "'" + uuid.UUID(v).String() + "'::uuid"
			default:
				literals[i] = fmt.Sprint(v)
			}
		}
		mustIndexPlan(t, db, name, c.uses, bind(query, literals...))
	}
	query, args := postgres.MovementsQuery(ports.MovementFilter{
		Warehouse: &wid, Status: domain.InTransit, DepartedBefore: time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC), Limit: 50})
	mustIndexPlan(t, db, "stuck shipments", []string{"movements_departure_wh_idx"}, query, args...)
	query, args = postgres.MovementsQuery(ports.MovementFilter{
		Status: domain.InTransit, DepartedBefore: time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC), Limit: 50})
	mustIndexPlan(t, db, "stuck, whole network", []string{"movements_status_idx"}, query, args...)
	mustIndexOnlyFold(t, db, bind(postgres.AsOfFolds, "ARRAY["+w+"]", "ARRAY["+p+"]", "ARRAY["+at+"]"))
	mustIndexOnlyFold(t, db, bind(postgres.FoldsBefore, "ARRAY["+w+"]", "ARRAY["+p+"]", "ARRAY["+at+"]", "ARRAY[5000::bigint]"))
}

// mustIndexOnlyFold checks that the fold reads events through an index-only scan: the
// sum of a row's deltas never visits the table.
func mustIndexOnlyFold(t *testing.T, db *bun.DB, query string) {
	t.Helper()
	var raw string
	if err := db.NewRaw("EXPLAIN (FORMAT JSON) "+query).Scan(context.Background(), &raw); err != nil {
		t.Fatalf("explain: %v", err)
	}
	var plans []struct{ Plan planNode }
	if err := json.Unmarshal([]byte(raw), &plans); err != nil || len(plans) != 1 {
		t.Fatalf("plan %q: %v", raw, err)
	}
	found := false
	plans[0].Plan.walk(func(n planNode) {
		if n.RelationName != "events" {
			return
		}
		found = true
		if n.NodeType != "Index Only Scan" || n.IndexName != "events_history_idx" {
			t.Errorf("the fold reads events by %s %s, want an Index Only Scan of events_history_idx", n.NodeType, n.IndexName)
		}
	})
	if !found {
		t.Error("the fold does not read events")
	}
}
