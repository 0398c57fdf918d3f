package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"warehouse/domain"
	"warehouse/ports"
)

// The ledger's past. Every query here reaches its rows through an index (TestHistory
// QueriesUseIndexes checks the plans on a large ledger) and takes a list slot (see
// admitList): they are heavier than a point read and must not crowd ingest out of the pool.

// foldBefore sums the events of one stock row whose position is before ($3, $4): the
// nearest checkpoint before that position, plus the events between it and the position,
// summed from events_history_idx alone. It returns the balance, the number of events and
// the latest time one of them was stored.
const foldBefore = `WITH cp AS (
		SELECT at, seq, balance, events, updated_at FROM stock_checkpoints
		WHERE warehouse_id = $1 AND product_id = $2 AND (at, seq) < ($3, $4)
		ORDER BY at DESC, seq DESC LIMIT 1
	), tail AS (
		SELECT sum(delta) AS delta, count(*) AS n, max(stored_at) AS stored FROM events
		WHERE warehouse_id = $1 AND product_id = $2 AND (occurred_at, seq) < ($3, $4)
		  AND (occurred_at, seq) > (coalesce((SELECT at FROM cp), '-infinity'), coalesce((SELECT seq FROM cp), 0))
	)
	SELECT coalesce((SELECT balance FROM cp), 0) + coalesce(tail.delta, 0),
	       coalesce((SELECT events FROM cp), 0) + tail.n,
	       greatest((SELECT updated_at FROM cp), tail.stored)
	FROM tail`

// asOfPosition is the position just after every event dated at or before t.
func asOfPosition(t time.Time) (time.Time, int64) { return t.UTC(), math.MaxInt64 }

// fold runs foldBefore for (w, p) before the position (t, seq).
func (s *Store) fold(ctx context.Context, w domain.WarehouseID, p domain.ProductID, t time.Time, seq int64) (
	balance, events int64, updated *time.Time, err error,
) {
	row := s.db.DB.QueryRowContext(ctx, foldBefore, pgx.QueryExecModeCacheStatement, [16]byte(w), [16]byte(p), t, seq)
	if err := row.Scan(&balance, &events, &updated); err != nil {
		return 0, 0, nil, translate(err)
	}
	return balance, events, updated, nil
}

// StockAsOf folds one stock row's events at or before asOf.
func (s *Store) StockAsOf(ctx context.Context, w domain.WarehouseID, p domain.ProductID, asOf time.Time) (domain.StockAsOf, error) {
	release, err := s.admitList(ctx)
	if err != nil {
		return domain.StockAsOf{}, fmt.Errorf("stock as of %s: %w", asOf.Format(time.RFC3339Nano), err)
	}
	defer release()
	t, seq := asOfPosition(asOf)
	q, n, updated, err := s.fold(ctx, w, p, t, seq)
	if err != nil {
		return domain.StockAsOf{}, fmt.Errorf("stock of product %s at warehouse %s as of %s: %w", p, w, asOf.Format(time.RFC3339Nano), err)
	}
	if n == 0 {
		return domain.StockAsOf{}, fmt.Errorf("stock of product %s at warehouse %s as of %s: %w", p, w, asOf.Format(time.RFC3339Nano), domain.ErrNotFound)
	}
	return domain.StockAsOf{WarehouseID: w, ProductID: p, Quantity: q, AsOf: asOf.UTC(), UpdatedAt: deref(updated).UTC()}, nil
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

// historyQuery reads one page of a stock row's events after the position ($3, $4) and
// dated before $5: a range of events_history_idx, limit + 1 rows.
const historyQuery = `SELECT occurred_at, seq, delta, movement_id, event, source, id, stored_at FROM events
	WHERE warehouse_id = $1 AND product_id = $2 AND (occurred_at, seq) > ($3, $4) AND occurred_at < $5
	ORDER BY occurred_at, seq LIMIT $6`

// StockHistory lists a stock row's events oldest first. The balance before the page is
// one fold (foldBefore), whatever page came before: no page reads the ones before it.
func (s *Store) StockHistory(ctx context.Context, f ports.HistoryFilter) (ports.HistoryPage, error) {
	release, err := s.admitList(ctx)
	if err != nil {
		return ports.HistoryPage{}, fmt.Errorf("history of product %s at warehouse %s: %w", f.Product, f.Warehouse, err)
	}
	defer release()
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
	page, err := s.historyPage(ctx, f, from, fromSeq, until)
	if err != nil {
		return ports.HistoryPage{}, fmt.Errorf("history of product %s at warehouse %s: %w", f.Product, f.Warehouse, err)
	}
	if len(page.Items) == 0 {
		return page, nil
	}
	first := page.Items[0].Position
	balance, _, _, err := s.fold(ctx, f.Warehouse, f.Product, first.Timestamp, first.Seq)
	if err != nil {
		return ports.HistoryPage{}, fmt.Errorf("balance before the history page: %w", err)
	}
	for i := range page.Items {
		balance += page.Items[i].Delta
		page.Items[i].Balance = balance
	}
	return page, nil
}

// historyPage reads the entries of one page, without their balances.
func (s *Store) historyPage(ctx context.Context, f ports.HistoryFilter, from time.Time, fromSeq int64, until time.Time) (ports.HistoryPage, error) {
	rows, err := s.db.DB.QueryContext(ctx, historyQuery, pgx.QueryExecModeCacheStatement,
		[16]byte(f.Warehouse), [16]byte(f.Product), from, fromSeq, until, f.Limit+1)
	if err != nil {
		return ports.HistoryPage{}, translate(err)
	}
	defer rows.Close()
	var page ports.HistoryPage
	for rows.Next() {
		var (
			h        domain.HistoryEntry
			movement uuid.UUID
			kind     string
		)
		if err := rows.Scan(&h.Position.Timestamp, &h.Position.Seq, &h.Delta, &movement, &kind, &h.Source, &h.EventID, &h.RecordedAt); err != nil {
			return ports.HistoryPage{}, translate(err)
		}
		if len(page.Items) == f.Limit {
			last := page.Items[len(page.Items)-1].Position
			page.Next = &last
			break
		}
		h.Position.Timestamp, h.RecordedAt = h.Position.Timestamp.UTC(), h.RecordedAt.UTC()
		h.MovementID, h.Kind = domain.MovementID(movement), domain.EventKind(kind)
		page.Items = append(page.Items, h)
	}
	if err := rows.Err(); err != nil {
		return ports.HistoryPage{}, translate(err)
	}
	return page, nil
}

// PostgreSQL's range of timestamptz, as bounds that need no NULL handling.
var (
	minTime = time.Date(-4712, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(294276, 1, 1, 0, 0, 0, 0, time.UTC)
)

// routesQuery adds up the completed movements departed in [$1, $2) by (sender, receiver),
// optionally of one sender ($3), receiver ($4) or product ($5), and returns the routes
// after the cursor ($6 movements, $7 sender, $8 receiver) in the route order. Transit
// seconds are truncated toward zero, as domain.Movement.ElapsedSeconds; the percentiles
// are nearest-rank (percentile_disc).
const routesQuery = `SELECT * FROM (
		SELECT departure_warehouse_id AS sender, arrival_warehouse_id AS receiver, count(*) AS movements,
		       sum(departure_quantity) AS sent, sum(arrival_quantity) AS received,
		       sum(greatest(departure_quantity - arrival_quantity, 0)) AS lost,
		       percentile_disc(0.5) WITHIN GROUP (ORDER BY secs) AS p50,
		       percentile_disc(0.9) WITHIN GROUP (ORDER BY secs) AS p90,
		       percentile_disc(0.99) WITHIN GROUP (ORDER BY secs) AS p99,
		       max(secs) AS longest
		FROM (SELECT departure_warehouse_id, arrival_warehouse_id, departure_quantity, arrival_quantity,
		             trunc(extract(epoch FROM arrival_at - departure_at))::bigint AS secs
		      FROM movements
		      WHERE status = 'completed' AND moved_at >= $1 AND moved_at < $2
		        AND ($3::uuid IS NULL OR departure_warehouse_id = $3)
		        AND ($4::uuid IS NULL OR arrival_warehouse_id = $4)
		        AND ($5::uuid IS NULL OR product_id = $5)) m
		GROUP BY 1, 2
	) r
	WHERE $6::bigint IS NULL OR movements < $6 OR (movements = $6 AND (sender, receiver) > ($7, $8))
	ORDER BY movements DESC, sender, receiver LIMIT $9`

// Routes adds up the routes in the window.
func (s *Store) Routes(ctx context.Context, f ports.RouteFilter) (ports.RoutePage, error) {
	release, err := s.admitList(ctx)
	if err != nil {
		return ports.RoutePage{}, fmt.Errorf("routes: %w", err)
	}
	defer release()
	optional := func(id *[16]byte) any {
		if id == nil {
			return nil
		}
		return *id
	}
	var (
		cursorN        *int64
		cursorFrom, to [16]byte
	)
	if f.After != nil {
		cursorN, cursorFrom, to = &f.After.Movements, [16]byte(f.After.From), [16]byte(f.After.To)
	}
	rows, err := s.db.DB.QueryContext(ctx, routesQuery, pgx.QueryExecModeCacheStatement,
		f.Since.UTC(), f.Until.UTC(), optional((*[16]byte)(f.From)), optional((*[16]byte)(f.To)), optional((*[16]byte)(f.Product)),
		cursorN, cursorFrom, to, f.Limit+1)
	if err != nil {
		return ports.RoutePage{}, fmt.Errorf("routes: %w", translate(err))
	}
	defer rows.Close()
	var page ports.RoutePage
	for rows.Next() {
		var (
			r              domain.Route
			sender, recver uuid.UUID
		)
		if err := rows.Scan(&sender, &recver, &r.Movements, &r.QuantitySent, &r.QuantityReceived, &r.QuantityLost,
			&r.Transit.P50, &r.Transit.P90, &r.Transit.P99, &r.Transit.Max); err != nil {
			return ports.RoutePage{}, fmt.Errorf("routes: %w", translate(err))
		}
		if len(page.Items) == f.Limit {
			last := page.Items[len(page.Items)-1]
			page.Next = &ports.RouteCursor{Movements: last.Movements, From: last.From, To: last.To}
			break
		}
		r.From, r.To = domain.WarehouseID(sender), domain.WarehouseID(recver)
		page.Items = append(page.Items, r)
	}
	if err := rows.Err(); err != nil {
		return ports.RoutePage{}, fmt.Errorf("routes: %w", translate(err))
	}
	return page, nil
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
