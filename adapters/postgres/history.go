package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"warehouse/domain"
	"warehouse/ports"
)

// The ledger's past. Every query here reaches its rows through an index (TestHistory
// QueriesUseIndexes checks the plans on a large ledger) and takes a list slot (see
// admitList): they are heavier than a point read and must not crowd ingest out of the pool.

// asOfPosition is the position just after every event dated at or before t.
func asOfPosition(t time.Time) (time.Time, int64) { return t.UTC(), math.MaxInt64 }

// asOfKey is one as-of read: a stock row and an instant in microseconds (the ledger's
// precision), comparable so that concurrent reads of the same can share an answer.
type asOfKey struct {
	key domain.StockKey
	at  int64
}

// asOfFolds folds many (row, instant) pairs in one query, each as the nearest checkpoint
// at or before the instant plus the events between it and the instant, summed from
// events_history_idx alone; rows with no event by then are left out. It returns each
// pair's ordinality, balance, event count and the latest time one of its events was stored.
const asOfFolds = `SELECT k.n, f.balance, f.events, f.updated_at
	FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[]) WITH ORDINALITY AS k(w, p, t, n)
	CROSS JOIN LATERAL (
		WITH cp AS (
			SELECT at, seq, balance, events, updated_at FROM stock_checkpoints c
			WHERE c.warehouse_id = k.w AND c.product_id = k.p AND c.at <= k.t
			ORDER BY c.at DESC, c.seq DESC LIMIT 1
		), tail AS (
			SELECT sum(delta) AS delta, count(*) AS n, max(stored_at) AS stored FROM events e
			WHERE e.warehouse_id = k.w AND e.product_id = k.p AND e.occurred_at <= k.t
			  AND (e.occurred_at, e.seq) > (coalesce((SELECT at FROM cp), '-infinity'), coalesce((SELECT seq FROM cp), 0))
		)
		SELECT coalesce((SELECT balance FROM cp), 0) + coalesce(tail.delta, 0) AS balance,
		       coalesce((SELECT events FROM cp), 0) + tail.n AS events,
		       greatest((SELECT updated_at FROM cp), tail.stored) AS updated_at
		FROM tail
	) f
	WHERE f.events > 0`

// fetchAsOf folds the distinct as-of reads of keys.
func (s *Store) fetchAsOf(ctx context.Context, keys []asOfKey) (map[asOfKey]domain.StockAsOf, error) {
	ws, ps, ts := make([][16]byte, len(keys)), make([][16]byte, len(keys)), make([]time.Time, len(keys))
	for i, k := range keys {
		ws[i], ps[i], ts[i] = [16]byte(k.key.Warehouse), [16]byte(k.key.Product), time.UnixMicro(k.at).UTC()
	}
	rows, err := s.db.DB.QueryContext(ctx, asOfFolds, pgx.QueryExecModeCacheStatement, ws, ps, ts)
	if err != nil {
		return nil, translate(err)
	}
	defer rows.Close()
	found := make(map[asOfKey]domain.StockAsOf, len(keys))
	for rows.Next() {
		var (
			n, q, events int64
			updated      *time.Time
		)
		if err := rows.Scan(&n, &q, &events, &updated); err != nil {
			return nil, translate(err)
		}
		k := keys[n-1]
		found[k] = domain.StockAsOf{WarehouseID: k.key.Warehouse, ProductID: k.key.Product, Quantity: q,
			AsOf: time.UnixMicro(k.at).UTC(), UpdatedAt: deref(updated).UTC()}
	}
	return found, translate(rows.Err())
}

// StockAsOf folds one stock row's events at or before asOf. Concurrent as-of reads are
// coalesced like the point reads (see coalescer), one fold per read in a shared query.
func (s *Store) StockAsOf(ctx context.Context, w domain.WarehouseID, p domain.ProductID, asOf time.Time) (domain.StockAsOf, error) {
	at := asOf.UTC().Truncate(time.Microsecond)
	st, err := s.asOfReads.get(ctx, asOfKey{key: domain.StockKey{Warehouse: w, Product: p}, at: at.UnixMicro()})
	if err != nil {
		return domain.StockAsOf{}, fmt.Errorf("stock of product %s at warehouse %s as of %s: %w", p, w, at.Format(time.RFC3339Nano), err)
	}
	return st, nil
}

// warehouseAsOfQuery walks a warehouse's stock rows by product id (every row with events
// has one) and folds each at the position; rows with no event before it are skipped.
const warehouseAsOfQuery = `SELECT s.product_id, f.balance, f.events, f.updated_at
	FROM stock s CROSS JOIN LATERAL (
		WITH cp AS (
			SELECT at, seq, balance, events, updated_at FROM stock_checkpoints c
			WHERE c.warehouse_id = s.warehouse_id AND c.product_id = s.product_id AND (c.at, c.seq) < ($3, $4)
			ORDER BY c.at DESC, c.seq DESC LIMIT 1
		), tail AS (
			SELECT sum(delta) AS delta, count(*) AS n, max(stored_at) AS stored FROM events e
			WHERE e.warehouse_id = s.warehouse_id AND e.product_id = s.product_id AND (e.occurred_at, e.seq) < ($3, $4)
			  AND (e.occurred_at, e.seq) > (coalesce((SELECT at FROM cp), '-infinity'), coalesce((SELECT seq FROM cp), 0))
		)
		SELECT coalesce((SELECT balance FROM cp), 0) + coalesce(tail.delta, 0) AS balance,
		       coalesce((SELECT events FROM cp), 0) + tail.n AS events,
		       greatest((SELECT updated_at FROM cp), tail.stored) AS updated_at
		FROM tail
	) f
	WHERE s.warehouse_id = $1 AND s.product_id > $2 AND f.events > 0
	ORDER BY s.product_id LIMIT $5`

// WarehouseStockAsOf is StockAsOf for a warehouse's products, by product id.
func (s *Store) WarehouseStockAsOf(ctx context.Context, f ports.StockFilter, asOf time.Time) (ports.StockAsOfPage, error) {
	release, err := s.admitList(ctx)
	if err != nil {
		return ports.StockAsOfPage{}, fmt.Errorf("list stock of warehouse %s as of %s: %w", f.Warehouse, asOf.Format(time.RFC3339Nano), err)
	}
	defer release()
	after := uuid.Nil
	if f.After != nil {
		after = uuid.UUID(*f.After)
	}
	t, seq := asOfPosition(asOf)
	rows, err := s.db.DB.QueryContext(ctx, warehouseAsOfQuery, pgx.QueryExecModeCacheStatement,
		[16]byte(f.Warehouse), [16]byte(after), t, seq, f.Limit+1)
	if err != nil {
		return ports.StockAsOfPage{}, fmt.Errorf("list stock of warehouse %s as of %s: %w", f.Warehouse, asOf.Format(time.RFC3339Nano), translate(err))
	}
	defer rows.Close()
	var page ports.StockAsOfPage
	for rows.Next() {
		var (
			p       uuid.UUID
			q, n    int64
			updated *time.Time
		)
		if err := rows.Scan(&p, &q, &n, &updated); err != nil {
			return ports.StockAsOfPage{}, fmt.Errorf("list stock as of: %w", translate(err))
		}
		if len(page.Items) == f.Limit {
			next := page.Items[len(page.Items)-1].ProductID
			page.Next = &next
			break
		}
		page.Items = append(page.Items, domain.StockAsOf{
			WarehouseID: f.Warehouse, ProductID: domain.ProductID(p), Quantity: q, AsOf: asOf.UTC(), UpdatedAt: deref(updated).UTC(),
		})
	}
	if err := rows.Err(); err != nil {
		return ports.StockAsOfPage{}, fmt.Errorf("list stock as of: %w", translate(err))
	}
	return page, nil
}

// historyKey is one history page read: a stock row, the position after which the page
// starts and the time before which it ends (in microseconds), and its size. Comparable,
// so that concurrent reads of pages are coalesced like the point reads.
type historyKey struct {
	key           domain.StockKey
	from, fromSeq int64
	until         int64
	limit         int
}

// historyPages reads many pages in one query: for each, by ordinality, the row's events
// after the position ($3, $4) and dated before $5, limit $6 (a range of
// events_history_idx each). It asks for one row more than the page, to know whether
// another page follows.
const historyPages = `SELECT k.n, e.occurred_at, e.seq, e.delta, e.movement_id, e.event, e.source, e.id, e.stored_at
	FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::bigint[], $5::timestamptz[], $6::int[])
		WITH ORDINALITY AS k(w, p, t, s, u, l, n)
	CROSS JOIN LATERAL (SELECT occurred_at, seq, delta, movement_id, event, source, id, stored_at FROM events
		WHERE warehouse_id = k.w AND product_id = k.p AND (occurred_at, seq) > (k.t, k.s) AND occurred_at < k.u
		ORDER BY occurred_at, seq LIMIT k.l) e
	ORDER BY k.n, e.occurred_at, e.seq`

// foldsBefore folds many (row, position) pairs in one query: for each, by ordinality,
// the nearest checkpoint before the position plus the events between the two, from
// events_history_idx alone. A page's opening balance is this fold at its first entry.
const foldsBefore = `SELECT k.n, f.balance
	FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::bigint[]) WITH ORDINALITY AS k(w, p, t, s, n)
	CROSS JOIN LATERAL (
		WITH cp AS (
			SELECT at, seq, balance FROM stock_checkpoints c
			WHERE c.warehouse_id = k.w AND c.product_id = k.p AND (c.at, c.seq) < (k.t, k.s)
			ORDER BY c.at DESC, c.seq DESC LIMIT 1
		)
		SELECT coalesce((SELECT balance FROM cp), 0) + coalesce(sum(e.delta), 0) AS balance FROM events e
		WHERE e.warehouse_id = k.w AND e.product_id = k.p AND (e.occurred_at, e.seq) < (k.t, k.s)
		  AND (e.occurred_at, e.seq) > (coalesce((SELECT at FROM cp), '-infinity'), coalesce((SELECT seq FROM cp), 0))
	) f`

// StockHistory lists a stock row's events oldest first, with their balances. Concurrent
// page reads are coalesced (see coalescer): two statements answer a batch of them, one
// for the pages and one for the balances before them.
func (s *Store) StockHistory(ctx context.Context, f ports.HistoryFilter) (ports.HistoryPage, error) {
	// The page starts after the cursor, or at since: the position (since, 0) comes before
	// every event dated since, whose seqs are positive.
	from, fromSeq := minTime, int64(0)
	if !f.Since.IsZero() {
		from = f.Since.UTC()
	}
	if f.After != nil && (domain.Position{Timestamp: from, Seq: fromSeq}).Compare(*f.After) < 0 {
		from, fromSeq = f.After.Timestamp.UTC(), f.After.Seq
	}
	until := maxTime
	if !f.Until.IsZero() {
		until = f.Until.UTC()
	}
	page, err := s.historyReads.get(ctx, historyKey{
		key:  domain.StockKey{Warehouse: f.Warehouse, Product: f.Product},
		from: from.UnixMicro(), fromSeq: fromSeq, until: until.UnixMicro(), limit: f.Limit,
	})
	if errors.Is(err, domain.ErrNotFound) {
		return ports.HistoryPage{}, nil // an empty page
	}
	if err != nil {
		return ports.HistoryPage{}, fmt.Errorf("history of product %s at warehouse %s: %w", f.Product, f.Warehouse, err)
	}
	return page, nil // its items are shared with the other readers of the same page (see ports.HistoryPage)
}

// fetchHistory reads the pages of keys, with their balances; an empty page is absent.
// Both statements run on one pgx connection: a page is many rows, and pgx decodes them
// into typed values without database/sql's conversions.
func (s *Store) fetchHistory(ctx context.Context, keys []historyKey) (map[historyKey]ports.HistoryPage, error) {
	pages := make(map[historyKey]ports.HistoryPage, len(keys))
	err := s.withPgx(ctx, func(c *pgx.Conn) error {
		if err := readPages(ctx, c, keys, pages); err != nil {
			return err
		}
		return openPages(ctx, c, keys, pages)
	})
	if err != nil {
		return nil, translate(err)
	}
	return pages, nil
}

// readPages reads the entries of the pages of keys into pages, without their balances.
func readPages(ctx context.Context, c *pgx.Conn, keys []historyKey, pages map[historyKey]ports.HistoryPage) error {
	n := len(keys)
	ws, ps, ts, ss, us, ls := make([][16]byte, n), make([][16]byte, n), make([]time.Time, n), make([]int64, n), make([]time.Time, n), make([]int32, n)
	for i, k := range keys {
		ws[i], ps[i] = [16]byte(k.key.Warehouse), [16]byte(k.key.Product)
		ts[i], ss[i], us[i], ls[i] = time.UnixMicro(k.from).UTC(), k.fromSeq, time.UnixMicro(k.until).UTC(), int32(k.limit+1)
	}
	rows, err := c.Query(ctx, historyPages, pgx.QueryExecModeCacheStatement, ws, ps, ts, ss, us, ls)
	if err != nil {
		return err
	}
	var (
		j        int64
		h        domain.HistoryEntry
		movement [16]byte
		kind     string
	)
	_, err = pgx.ForEachRow(rows, []any{&j, &h.Position.Timestamp, &h.Position.Seq, &h.Delta, &movement, &kind, &h.Source, &h.EventID,
		&h.RecordedAt}, func() error {
		k := keys[j-1]
		p := pages[k]
		if len(p.Items) == k.limit {
			last := p.Items[len(p.Items)-1].Position
			p.Next = &last
			pages[k] = p
			return nil
		}
		e := h
		e.Position.Timestamp, e.RecordedAt = e.Position.Timestamp.UTC(), e.RecordedAt.UTC()
		e.MovementID, e.Kind = domain.MovementID(movement), domain.EventKind(kind)
		p.Items = append(p.Items, e)
		pages[k] = p
		return nil
	})
	return err
}

// openPages sets the balances of the pages: from 0 for a page at its row's start, else
// from the fold before its first entry, all such folds in one statement.
func openPages(ctx context.Context, c *pgx.Conn, keys []historyKey, pages map[historyKey]ports.HistoryPage) error {
	var (
		idx    []int
		ws, ps [][16]byte
		ts     []time.Time
		ss     []int64
	)
	start := minTime.UnixMicro()
	for i, k := range keys {
		p, ok := pages[k]
		if !ok || k.from == start && k.fromSeq == 0 {
			continue
		}
		first := p.Items[0].Position
		idx = append(idx, i)
		ws, ps = append(ws, [16]byte(k.key.Warehouse)), append(ps, [16]byte(k.key.Product))
		ts, ss = append(ts, first.Timestamp), append(ss, first.Seq)
	}
	opening := make(map[historyKey]int64, len(idx))
	if len(idx) > 0 {
		rows, err := c.Query(ctx, foldsBefore, pgx.QueryExecModeCacheStatement, ws, ps, ts, ss)
		if err != nil {
			return err
		}
		var j, balance int64
		if _, err := pgx.ForEachRow(rows, []any{&j, &balance}, func() error {
			opening[keys[idx[j-1]]] = balance
			return nil
		}); err != nil {
			return err
		}
	}
	for k, p := range pages {
		balance := opening[k]
		for i := range p.Items {
			balance += p.Items[i].Delta
			p.Items[i].Balance = balance
		}
	}
	return nil
}

// PostgreSQL's range of timestamptz, as bounds that need no NULL handling.
var (
	minTime = time.Date(-4712, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(294276, 1, 1, 0, 0, 0, 0, time.UTC)
)

// routesQuery builds the query of f: the completed movements departed in [since, until)
// (and of one sender, receiver or product when f says so) added up by (sender,
// receiver), the routes after f's cursor in the route order, limit + 1 of them. Transit
// seconds are truncated toward zero, as domain.Movement.ElapsedSeconds; the percentiles
// are nearest-rank (percentile_disc). Only the filters f sets are in the text: with
// "$n IS NULL OR …" instead, PostgreSQL estimates one movement and sorts them all on disk
// rather than hashing them, five times slower.
func routesQuery(f ports.RouteFilter) (string, []any) {
	args := []any{f.Since.UTC(), f.Until.UTC()}
	conds := []string{"status = 'completed'", "moved_at >= $1", "moved_at < $2"}
	add := func(col string, id [16]byte) {
		args = append(args, id)
		conds = append(conds, fmt.Sprintf("%s = $%d", col, len(args)))
	}
	if f.From != nil {
		add("departure_warehouse_id", [16]byte(*f.From))
	}
	if f.To != nil {
		add("arrival_warehouse_id", [16]byte(*f.To))
	}
	if f.Product != nil {
		add("product_id", [16]byte(*f.Product))
	}
	after := ""
	if f.After != nil {
		args = append(args, f.After.Movements, [16]byte(f.After.From), [16]byte(f.After.To))
		n := len(args)
		after = fmt.Sprintf(" WHERE movements < $%d OR (movements = $%d AND (sender, receiver) > ($%d, $%d))", n-2, n-2, n-1, n)
	}
	args = append(args, f.Limit+1)
	return `SELECT * FROM (
		SELECT departure_warehouse_id AS sender, arrival_warehouse_id AS receiver, count(*) AS movements,
		       sum(departure_quantity) AS sent, sum(arrival_quantity) AS received,
		       sum(greatest(departure_quantity - arrival_quantity, 0)) AS lost,
		       percentile_disc(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP (ORDER BY secs) AS percentiles,
		       max(secs) AS longest
		FROM (SELECT departure_warehouse_id, arrival_warehouse_id, departure_quantity, arrival_quantity,
		             trunc(extract(epoch FROM arrival_at - departure_at))::bigint AS secs
		      FROM movements WHERE ` + strings.Join(conds, " AND ") + `) m
		GROUP BY 1, 2
	) r` + after + fmt.Sprintf(` ORDER BY movements DESC, sender, receiver LIMIT $%d`, len(args)), args
}

// routeKey is a route filter as a comparable value, so that identical concurrent
// requests (a dashboard's panels, its users) share one query.
type routeKey struct {
	since, until            int64 // Unix nanoseconds
	from, to, product       [16]byte
	hasFrom, hasTo, hasProd bool
	after                   ports.RouteCursor
	hasAfter                bool
	limit                   int
}

func routeKeyOf(f ports.RouteFilter) routeKey {
	k := routeKey{since: f.Since.UnixNano(), until: f.Until.UnixNano(), limit: f.Limit}
	if f.From != nil {
		k.from, k.hasFrom = [16]byte(*f.From), true
	}
	if f.To != nil {
		k.to, k.hasTo = [16]byte(*f.To), true
	}
	if f.Product != nil {
		k.product, k.hasProd = [16]byte(*f.Product), true
	}
	if f.After != nil {
		k.after, k.hasAfter = *f.After, true
	}
	return k
}

func (k routeKey) filter() ports.RouteFilter {
	f := ports.RouteFilter{Since: time.Unix(0, k.since).UTC(), Until: time.Unix(0, k.until).UTC(), Limit: k.limit}
	if k.hasFrom {
		w := domain.WarehouseID(k.from)
		f.From = &w
	}
	if k.hasTo {
		w := domain.WarehouseID(k.to)
		f.To = &w
	}
	if k.hasProd {
		p := domain.ProductID(k.product)
		f.Product = &p
	}
	if k.hasAfter {
		a := k.after
		f.After = &a
	}
	return f
}

// Routes adds up the routes in the window. Requests for the same filter that arrive
// while one is computed share the next query (see coalescer): an answer adds up every
// completed movement of its window, tens of milliseconds of PostgreSQL's time for a
// month of a busy network, and must not be paid once per panel of a dashboard.
// It fails with ports.ErrOverloaded when no list slot frees in time (see admitList).
func (s *Store) Routes(ctx context.Context, f ports.RouteFilter) (ports.RoutePage, error) {
	page, err := s.routeReads.get(ctx, routeKeyOf(f))
	if err != nil {
		return ports.RoutePage{}, fmt.Errorf("routes: %w", err)
	}
	return page, nil
}

// fetchRoutes answers distinct route filters one query each, on one connection and one
// list slot.
func (s *Store) fetchRoutes(ctx context.Context, keys []routeKey) (map[routeKey]ports.RoutePage, error) {
	release, err := s.admitList(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	pages := make(map[routeKey]ports.RoutePage, len(keys))
	err = s.withPgx(ctx, func(c *pgx.Conn) error {
		for _, k := range keys {
			page, err := readRoutes(ctx, c, k.filter())
			if err != nil {
				return err
			}
			pages[k] = page
		}
		return nil
	})
	if err != nil {
		return nil, translate(err)
	}
	return pages, nil
}

// readRoutes runs the routes query of f.
func readRoutes(ctx context.Context, c *pgx.Conn, f ports.RouteFilter) (ports.RoutePage, error) {
	query, args := routesQuery(f)
	// Planned for each call (the unnamed statement), with the window it is asked for.
	rows, err := c.Query(ctx, query, append([]any{pgx.QueryExecModeCacheDescribe}, args...)...)
	if err != nil {
		return ports.RoutePage{}, err
	}
	var (
		page           ports.RoutePage
		r              domain.Route
		sender, recver [16]byte
		percentiles    []int64
	)
	_, err = pgx.ForEachRow(rows, []any{&sender, &recver, &r.Movements, &r.QuantitySent, &r.QuantityReceived,
		&r.QuantityLost, &percentiles, &r.Transit.Max}, func() error {
		if len(percentiles) != 3 {
			return fmt.Errorf("%d percentiles, want 3", len(percentiles))
		}
		if len(page.Items) == f.Limit {
			last := page.Items[len(page.Items)-1]
			page.Next = &ports.RouteCursor{Movements: last.Movements, From: last.From, To: last.To}
			return nil
		}
		r.From, r.To = domain.WarehouseID(sender), domain.WarehouseID(recver)
		r.Transit.P50, r.Transit.P90, r.Transit.P99 = percentiles[0], percentiles[1], percentiles[2]
		page.Items = append(page.Items, r)
		return nil
	})
	return page, err
}

// inTransitQuery reads what left a warehouse and has not arrived, through
// movements_departure_wh_idx.
const inTransitQuery = `SELECT product_id, count(*), sum(departure_quantity), min(departure_at)
	FROM movements WHERE departure_warehouse_id = $1 AND status = 'in_transit'
	GROUP BY product_id ORDER BY product_id`

// InTransit lists what left w and has not arrived, by product id.
func (s *Store) InTransit(ctx context.Context, w domain.WarehouseID) ([]domain.TransitLoad, error) {
	release, err := s.admitList(ctx)
	if err != nil {
		return nil, fmt.Errorf("in transit from warehouse %s: %w", w, err)
	}
	defer release()
	rows, err := s.db.DB.QueryContext(ctx, inTransitQuery, pgx.QueryExecModeCacheStatement, [16]byte(w))
	if err != nil {
		return nil, fmt.Errorf("in transit from warehouse %s: %w", w, translate(err))
	}
	defer rows.Close()
	out := []domain.TransitLoad{}
	for rows.Next() {
		var (
			t domain.TransitLoad
			p uuid.UUID
		)
		if err := rows.Scan(&p, &t.Movements, &t.Quantity, &t.OldestDeparture); err != nil {
			return nil, fmt.Errorf("in transit: %w", translate(err))
		}
		t.ProductID, t.OldestDeparture = domain.ProductID(p), t.OldestDeparture.UTC()
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("in transit: %w", translate(err))
	}
	return out, nil
}

// eventQuery reads one event by its identity, the primary key.
const eventQuery = `SELECT movement_id, event, warehouse_id, product_id, quantity, occurred_at, event_time, attributes, seq, stored_at
	FROM events WHERE source = $1 AND id = $2`

// Event returns the stored event of that identity.
func (s *Store) Event(ctx context.Context, source, id string) (domain.StoredEvent, error) {
	release, err := s.admitList(ctx)
	if err != nil {
		return domain.StoredEvent{}, fmt.Errorf("event %q of source %q: %w", id, source, err)
	}
	defer release()
	var (
		e         domain.StoredEvent
		m, w, p   uuid.UUID
		kind      string
		eventTime *time.Time
		attrs     []byte
	)
	err = s.db.DB.QueryRowContext(ctx, eventQuery, pgx.QueryExecModeCacheStatement, source, id).
		Scan(&m, &kind, &w, &p, &e.Quantity, &e.Timestamp, &eventTime, &attrs, &e.Seq, &e.RecordedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return domain.StoredEvent{}, fmt.Errorf("event %q of source %q: %w", id, source, domain.ErrNotFound)
	}
	if err != nil {
		return domain.StoredEvent{}, fmt.Errorf("event %q of source %q: %w", id, source, translate(err))
	}
	e.ID, e.Source, e.Kind = id, source, domain.EventKind(kind)
	e.MovementID, e.WarehouseID, e.ProductID = domain.MovementID(m), domain.WarehouseID(w), domain.ProductID(p)
	e.Timestamp, e.RecordedAt = e.Timestamp.UTC(), e.RecordedAt.UTC()
	if eventTime != nil {
		e.Time = eventTime.UTC()
	}
	e.Attributes = attrs
	return e, nil
}
