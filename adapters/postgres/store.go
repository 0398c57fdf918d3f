package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/uptrace/bun"

	"warehouse/domain"
	"warehouse/ports"
)

// Store implements ports.Store on PostgreSQL.
type Store struct {
	db            *bun.DB
	movementReads *coalescer[domain.MovementID, domain.Movement]
	stockReads    *coalescer[domain.StockKey, domain.Stock]
}

var _ ports.Store = (*Store)(nil)

// NewStore returns a Store on db, whose schema Migrate has brought up to date.
func NewStore(db *bun.DB) *Store {
	s := &Store{db: db}
	s.movementReads = newCoalescer(pointReadQueries, pointReadBatch, s.fetchMovements)
	s.stockReads = newCoalescer(pointReadQueries, pointReadBatch, s.fetchStock)
	return s
}

// errLostRace means a concurrent batch committed, between our reads and our writes, an
// event or movement leg that our judgement did not see: an event with the same identity
// or (movement, kind), or the other leg of one of our movements. The unique keys and the
// guarded movement upsert detect it; the batch is rolled back and judged again, and then
// sees the winner's commit.
var errLostRace = errors.New("lost a race with a concurrent batch")

// maxRaceRetries bounds the re-runs after errLostRace; each re-run sees the winner's
// commit, so a second loss needs a new concurrent writer every time.
const maxRaceRetries = 5

// Apply stores a batch in one transaction:
//  1. it reads the batch's movements (without locks);
//  2. it locks the batch's stock rows in sorted key order, inserting placeholders for new
//     keys (every batch locks in the same global order, so consumers cannot deadlock);
//  3. it judges the events in order in a domain.Ledger holding what it read;
//  4. it writes back the stored events, the movements they complete and the final stock,
//     each with one set-based statement, in sorted order.
//
// Stock is serialised by its row locks, which is what "never negative" needs. Movements
// are optimistic: a concurrent batch touching the same movement is caught by the unique
// keys of events and by the guarded movement upsert, and the batch is judged again.
// Placeholders that no stored event needed are deleted before commit; nobody sees them.
func (s *Store) Apply(ctx context.Context, events []domain.Event) ([]error, error) {
	if len(events) == 0 {
		return nil, nil
	}
	for attempt := 0; ; attempt++ {
		// The first attempt looks identities up only for events it would refuse; a
		// re-run after a lost race looks them all up (see judge).
		results, err := s.apply(ctx, events, attempt > 0)
		if errors.Is(err, errLostRace) && attempt < maxRaceRetries {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("apply batch of %d: %w", len(events), err)
		}
		return results, nil
	}
}

func (s *Store) apply(ctx context.Context, events []domain.Event, allIdentities bool) ([]error, error) {
	var results []error
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		movements, err := loadMovements(ctx, tx, events)
		if err != nil {
			return err
		}
		var identities []domain.Identity
		if allIdentities {
			if identities, err = loadIdentities(ctx, tx, events); err != nil {
				return err
			}
		}
		stock, placeholders, err := lockStock(ctx, tx, events)
		if err != nil {
			return err
		}
		ledger, res, stored := judge(events, movements, identities, stock)
		if !allIdentities {
			// An event whose (source, id) is already stored is a duplicate whatever its
			// data. Without the identity, a redelivery of a stored event is still judged
			// a duplicate by its movement leg, and an unseen identity clash on an event
			// judged storable fails the insert (a lost race: the re-run looks all
			// identities up). Only refused events need the check, and there are few.
			var refused []domain.Event
			for i, r := range res {
				if r != nil && !errors.Is(r, domain.ErrDuplicate) {
					refused = append(refused, events[i])
				}
			}
			if len(refused) > 0 {
				if identities, err = loadIdentities(ctx, tx, refused); err != nil {
					return err
				}
				if len(identities) > 0 {
					ledger, res, stored = judge(events, movements, identities, stock)
				}
			}
		}
		results = res
		return writeBack(ctx, tx, stored, ledger, placeholders)
	})
	if err != nil {
		if errors.Is(err, errLostRace) {
			return nil, err
		}
		return nil, translate(err)
	}
	return results, nil
}

// judge applies events in order to a ledger holding what the transaction read, and
// returns the ledger, one result per event, and the events stored.
func judge(events []domain.Event, movements []domain.Movement, identities []domain.Identity,
	stock map[domain.StockKey]int64,
) (*domain.Ledger, []error, []domain.Event) {
	l := domain.NewLedger()
	for _, m := range movements {
		l.LoadMovement(m)
	}
	for _, id := range identities {
		l.LoadIdentity(id)
	}
	for k, q := range stock {
		l.LoadStock(k, q)
	}
	results := make([]error, len(events))
	stored := make([]domain.Event, 0, len(events))
	for i, e := range events {
		if results[i] = l.Apply(e); results[i] == nil {
			stored = append(stored, e)
		}
	}
	return l, results, stored
}

// loadMovements reads the batch's stored movements.
func loadMovements(ctx context.Context, tx pgx.Tx, events []domain.Event) ([]domain.Movement, error) {
	ids := make([][16]byte, 0, len(events))
	seen := make(map[domain.MovementID]struct{}, len(events))
	for _, e := range events {
		if _, ok := seen[e.MovementID]; !ok {
			seen[e.MovementID] = struct{}{}
			ids = append(ids, [16]byte(e.MovementID))
		}
	}
	rows, err := query(ctx, tx, `SELECT `+movementColumns+` FROM movements WHERE movement_id = ANY($1::uuid[])`, ids)
	if err != nil {
		return nil, fmt.Errorf("load movements: %w", err)
	}
	defer rows.Close()
	var movements []domain.Movement
	for rows.Next() {
		var r movementRow
		if err := r.scan(rows); err != nil {
			return nil, fmt.Errorf("load movements: %w", err)
		}
		movements = append(movements, r.domain())
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load movements: %w", err)
	}
	return movements, nil
}

// loadIdentities returns the identities of events that are already stored.
func loadIdentities(ctx context.Context, tx pgx.Tx, events []domain.Event) ([]domain.Identity, error) {
	sources, ids := make([]string, len(events)), make([]string, len(events))
	for i, e := range events {
		sources[i], ids[i] = e.Source, e.ID
	}
	rows, err := query(ctx, tx, `SELECT e.source, e.id FROM unnest($1::text[], $2::text[]) AS t(source, id)
		JOIN events e ON e.source = t.source AND e.id = t.id`, sources, ids)
	if err != nil {
		return nil, fmt.Errorf("load identities: %w", err)
	}
	defer rows.Close()
	var stored []domain.Identity
	for rows.Next() {
		var id domain.Identity
		if err := rows.Scan(&id.Source, &id.ID); err != nil {
			return nil, fmt.Errorf("load identities: %w", err)
		}
		stored = append(stored, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load identities: %w", err)
	}
	return stored, nil
}

// lockStock locks (creating placeholders for) every stock row of the batch in sorted
// order. It returns the quantities of the rows that existed and the placeholders' keys.
func lockStock(ctx context.Context, tx pgx.Tx, events []domain.Event) (quantities map[domain.StockKey]int64, placeholders map[domain.StockKey]bool, err error) {
	keys := make([]domain.StockKey, 0, len(events))
	seen := make(map[domain.StockKey]struct{}, len(events))
	for _, e := range events {
		if _, ok := seen[e.StockKey()]; !ok {
			seen[e.StockKey()] = struct{}{}
			keys = append(keys, e.StockKey())
		}
	}
	slices.SortFunc(keys, domain.StockKey.Compare)
	ws, ps := make([][16]byte, len(keys)), make([][16]byte, len(keys))
	for i, k := range keys {
		ws[i], ps[i] = [16]byte(k.Warehouse), [16]byte(k.Product)
	}
	// The no-op DO UPDATE locks an existing row and waits for a concurrent inserter of a
	// new one; WITH ORDINALITY + ORDER BY makes the locks follow the sorted input.
	rows, err := query(ctx, tx, `INSERT INTO stock (warehouse_id, product_id, quantity)
		SELECT w, p, 0 FROM unnest($1::uuid[], $2::uuid[]) WITH ORDINALITY AS t(w, p, n) ORDER BY n
		ON CONFLICT (warehouse_id, product_id) DO UPDATE SET quantity = stock.quantity
		RETURNING warehouse_id, product_id, quantity, (xmax = 0) AS inserted`, ws, ps)
	if err != nil {
		return nil, nil, fmt.Errorf("lock stock: %w", err)
	}
	defer rows.Close()
	quantities = make(map[domain.StockKey]int64, len(keys))
	placeholders = make(map[domain.StockKey]bool)
	for rows.Next() {
		var (
			w, p     uuid.UUID
			q        int64
			inserted bool
		)
		if err := rows.Scan(&w, &p, &q, &inserted); err != nil {
			return nil, nil, fmt.Errorf("lock stock: %w", err)
		}
		k := domain.StockKey{Warehouse: domain.WarehouseID(w), Product: domain.ProductID(p)}
		if inserted {
			placeholders[k] = true
		} else {
			quantities[k] = q
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("lock stock: %w", err)
	}
	return quantities, placeholders, nil
}

// writeBack inserts the stored events, upserts the movements they touch and writes the
// final stock; then it deletes the stock placeholders that stayed unused. Rows go in
// sorted key order, so concurrent batches meet on the unique indexes in the same order.
func writeBack(ctx context.Context, tx pgx.Tx, stored []domain.Event, l *domain.Ledger, placeholders map[domain.StockKey]bool) error {
	if len(stored) > 0 {
		if err := insertEvents(ctx, tx, stored); err != nil {
			return err
		}
		if err := upsertMovements(ctx, tx, stored, l); err != nil {
			return err
		}
		if err := updateStock(ctx, tx, stored, l, placeholders); err != nil {
			return err
		}
	}
	if len(placeholders) == 0 {
		return nil
	}
	ws, ps := make([][16]byte, 0, len(placeholders)), make([][16]byte, 0, len(placeholders))
	for k := range placeholders {
		ws, ps = append(ws, [16]byte(k.Warehouse)), append(ps, [16]byte(k.Product))
	}
	if _, err := exec(ctx, tx, `DELETE FROM stock s USING unnest($1::uuid[], $2::uuid[]) AS t(w, p)
		WHERE s.warehouse_id = t.w AND s.product_id = t.p`, ws, ps); err != nil {
		return fmt.Errorf("drop stock placeholders: %w", err)
	}
	return nil
}

// eventColumns are the columns insertEvents copies, in eventRows' order.
var eventColumns = []string{"source", "id", "movement_id", "event", "warehouse_id", "product_id",
	"quantity", "occurred_at", "event_time", "attributes"}

// eventRows is a pgx.CopyFromSource over events, one row of eventColumns each.
type eventRows struct {
	events []domain.Event
	next   int
	row    [10]any
}

func (r *eventRows) Next() bool { r.next++; return r.next <= len(r.events) }
func (r *eventRows) Err() error { return nil }

func (r *eventRows) Values() ([]any, error) {
	e := &r.events[r.next-1]
	var eventTime, attrs any
	if !e.Time.IsZero() {
		eventTime = e.Time
	}
	if len(e.Attributes) > 0 {
		attrs = e.Attributes // raw JSON: pgx sends a []byte to jsonb as it is
	}
	r.row = [10]any{e.Source, e.ID, [16]byte(e.MovementID), string(e.Kind), [16]byte(e.WarehouseID),
		[16]byte(e.ProductID), e.Quantity, e.Timestamp, eventTime, attrs}
	return r.row[:], nil
}

// insertEvents inserts the stored events; one that a concurrent batch committed first
// (same identity or movement leg) violates a unique key and is reported as a lost race.
func insertEvents(ctx context.Context, tx pgx.Tx, stored []domain.Event) error {
	sorted := slices.Clone(stored)
	slices.SortFunc(sorted, func(a, b domain.Event) int {
		if c := slices.Compare(a.MovementID[:], b.MovementID[:]); c != 0 {
			return c
		}
		return strings.Compare(string(a.Kind), string(b.Kind))
	})
	// COPY streams the rows in binary without building ten parameter arrays, and the
	// server inserts them in multi-row batches; a unique violation aborts it like any
	// statement. No ON CONFLICT DO NOTHING, which would cost a speculative insertion per
	// row to handle a race that is rare: the batch is judged again instead.
	_, err := tx.CopyFrom(ctx, pgx.Identifier{"events"}, eventColumns, &eventRows{events: sorted})
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" { // unique_violation
		return errLostRace
	}
	if err != nil {
		return fmt.Errorf("insert events: %w", err)
	}
	return nil
}

// upsertMovements writes each touched movement as the ledger now sees it. A row that a
// concurrent batch created or completed meanwhile is merged leg by leg (each leg was
// written by exactly one batch: the events' unique keys saw to that); a product that
// differs from the stored one means a race this batch lost.
func upsertMovements(ctx context.Context, tx pgx.Tx, stored []domain.Event, l *domain.Ledger) error {
	ids := make([]domain.MovementID, 0, len(stored))
	seen := make(map[domain.MovementID]struct{}, len(stored))
	for _, e := range stored {
		if _, ok := seen[e.MovementID]; !ok {
			seen[e.MovementID] = struct{}{}
			ids = append(ids, e.MovementID)
		}
	}
	slices.SortFunc(ids, func(a, b domain.MovementID) int { return slices.Compare(a[:], b[:]) })
	n := len(ids)
	mid, pid := make([][16]byte, n), make([][16]byte, n)
	var d, a legColumns
	d.make(n)
	a.make(n)
	for i, id := range ids {
		m, _ := l.Movement(id)
		mid[i], pid[i] = [16]byte(id), [16]byte(m.ProductID)
		d.set(i, m.Departure)
		a.set(i, m.Arrival)
	}
	res, err := exec(ctx, tx, `INSERT INTO movements AS m (movement_id, product_id,
			departure_warehouse_id, departure_source, departure_at, departure_quantity,
			arrival_warehouse_id, arrival_source, arrival_at, arrival_quantity)
		SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::timestamptz[], $6::bigint[],
			$7::uuid[], $8::text[], $9::timestamptz[], $10::bigint[])
		ON CONFLICT (movement_id) DO UPDATE SET
			departure_warehouse_id = coalesce(m.departure_warehouse_id, excluded.departure_warehouse_id),
			departure_source = coalesce(m.departure_source, excluded.departure_source),
			departure_at = coalesce(m.departure_at, excluded.departure_at),
			departure_quantity = coalesce(m.departure_quantity, excluded.departure_quantity),
			arrival_warehouse_id = coalesce(m.arrival_warehouse_id, excluded.arrival_warehouse_id),
			arrival_source = coalesce(m.arrival_source, excluded.arrival_source),
			arrival_at = coalesce(m.arrival_at, excluded.arrival_at),
			arrival_quantity = coalesce(m.arrival_quantity, excluded.arrival_quantity)
		WHERE m.product_id = excluded.product_id`,
		mid, pid, d.warehouse, d.source, d.at, d.quantity, a.warehouse, a.source, a.at, a.quantity)
	if err != nil {
		return fmt.Errorf("upsert movements: %w", err)
	}
	if res.RowsAffected() != int64(n) {
		return errLostRace
	}
	return nil
}

// updateStock writes the final quantity of every stock row a stored event changed.
func updateStock(ctx context.Context, tx pgx.Tx, stored []domain.Event, l *domain.Ledger, placeholders map[domain.StockKey]bool) error {
	seen := make(map[domain.StockKey]struct{}, len(stored))
	var ws, ps [][16]byte
	var qs []int64
	for _, e := range stored {
		k := e.StockKey()
		if _, ok := seen[k]; ok {
			continue
		}
		seen[k] = struct{}{}
		delete(placeholders, k)
		q, _ := l.Stock(k)
		ws, ps, qs = append(ws, [16]byte(k.Warehouse)), append(ps, [16]byte(k.Product)), append(qs, q)
	}
	if _, err := exec(ctx, tx, `UPDATE stock s SET quantity = u.q, updated_at = now()
		FROM unnest($1::uuid[], $2::uuid[], $3::bigint[]) AS u(w, p, q)
		WHERE s.warehouse_id = u.w AND s.product_id = u.p`, ws, ps, qs); err != nil {
		return fmt.Errorf("update stock: %w", err)
	}
	return nil
}

// legColumns holds one leg of many movements as parallel arrays for unnest; a leg not
// seen yet is NULL in every column.
type legColumns struct {
	warehouse []*[16]byte
	source    []*string
	at        []*time.Time
	quantity  []*int64
}

func (c *legColumns) make(n int) {
	c.warehouse, c.source, c.at, c.quantity = make([]*[16]byte, n), make([]*string, n), make([]*time.Time, n), make([]*int64, n)
}

func (c *legColumns) set(i int, l *domain.Leg) {
	if l == nil {
		return
	}
	w := [16]byte(l.WarehouseID)
	c.warehouse[i], c.source[i], c.at[i], c.quantity[i] = &w, &l.Source, &l.Timestamp, &l.Quantity
}

// The write path runs on the pgx connection under database/sql (see inTx) and sends its
// arrays as binary parameters rather than through Bun, which would format thousands of
// array elements into SQL text for the server to parse again. UUIDs go as [16]byte, which
// pgx's uuid codec takes directly; a uuid.UUID would go through driver.Valuer and text
// formatting.
//
// The statements are planned for every batch (pgx's cache-describe mode: the unnamed
// statement, parsed, bound and run in one round trip), not prepared once and reused. A
// reused statement gets PostgreSQL's generic plan, made for no particular array and with
// the table statistics of the moment: on a young ledger that is a sequential scan of
// movements, which the generic plan kept while the table grew, until autoanalyze came
// round (batches of 300 events ran at 8,000 events/s instead of 20,000 in the benchmark
// of issue 6). Planning with the batch's arrays costs a fraction of a millisecond.
func exec(ctx context.Context, tx pgx.Tx, query string, args ...any) (pgconn.CommandTag, error) {
	return tx.Exec(ctx, query, append([]any{pgx.QueryExecModeCacheDescribe}, args...)...)
}

func query(ctx context.Context, tx pgx.Tx, query string, args ...any) (pgx.Rows, error) {
	return tx.Query(ctx, query, append([]any{pgx.QueryExecModeCacheDescribe}, args...)...)
}

// writeTx begins a batch's transaction. Every statement of a batch reaches its rows by
// key, so a sequential scan is never the right plan for it; but planned for an array of
// hundreds of keys on a table whose statistics lag behind its growth, a scan of movements
// or stock can look cheaper to PostgreSQL than as many index lookups (and costs ten times
// more when the table is large). The write path therefore forbids them for its own
// transaction (the begin query goes by the simple protocol, as the pool is configured).
var writeTx = pgx.TxOptions{BeginQuery: "BEGIN; SET LOCAL enable_seqscan = off"}

// inTx runs fn in a transaction on a pooled connection's own pgx connection: the write
// path needs pgx's COPY, which database/sql cannot express. The connection goes back to
// the pool afterwards; a broken one is discarded by the pool's validity check.
func (s *Store) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	conn, err := s.db.DB.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(driverConn any) error {
		pc, ok := driverConn.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("driver connection is %T, not pgx", driverConn)
		}
		return pgx.BeginTxFunc(ctx, pc.Conn(), writeTx, fn)
	})
}
