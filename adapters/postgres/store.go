package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
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
	lockUntil     atomic.Int64 // UnixNano until which Apply locks first (see lockingSpell)
	movementReads *coalescer[domain.MovementID, domain.Movement]
	stockReads    *coalescer[domain.StockKey, domain.Stock]
	asOfReads     *coalescer[asOfKey, domain.StockAsOf]
	historyReads  *coalescer[historyKey, ports.HistoryPage]
	routeReads    *coalescer[routeKey, ports.RoutePage]
	// listSlots admits list queries (see admitList): one token per query running.
	listSlots chan struct{}
	listWait  time.Duration
}

var _ ports.Store = (*Store)(nil)

// StoreOptions bounds the list queries of a Store. Zero fields take the defaults.
type StoreOptions struct {
	// ListQueries is how many list queries (Movements, WarehouseStock) may run at once.
	// The default leaves room in the pool for the coalesced point reads and for ingest:
	// the pool size less 2×4 point-read queries, 2 as-of and 2 history-page queries and 2
	// connections for writes, at least 1 (2 of a pool of 16); 8 when the pool is unbounded.
	ListQueries int
	// ListWait is how long a list query waits for a slot before it fails with
	// ports.ErrOverloaded; DefaultListWait when zero.
	ListWait time.Duration
}

// DefaultListWait is the default StoreOptions.ListWait: long enough to ride out a burst,
// short enough that a shed request answers well within any client's patience.
const DefaultListWait = 200 * time.Millisecond

// Connections of the pool the default ListQueries leaves to ingest, and its value for an
// unbounded pool.
const (
	writeConns         = 2
	unboundedListSlots = 8
)

// NewStore returns a Store on db, whose schema Migrate has brought up to date, with the
// default StoreOptions.
func NewStore(db *bun.DB) *Store { return NewStoreWithOptions(db, StoreOptions{}) }

// NewStoreWithOptions returns a Store on db bounded by opts.
func NewStoreWithOptions(db *bun.DB, opts StoreOptions) *Store {
	if opts.ListQueries <= 0 {
		opts.ListQueries = defaultListQueries(db.DB.Stats().MaxOpenConnections)
	}
	if opts.ListWait <= 0 {
		opts.ListWait = DefaultListWait
	}
	s := &Store{db: db, listSlots: make(chan struct{}, opts.ListQueries), listWait: opts.ListWait}
	s.movementReads = newCoalescer(pointReadQueries, pointReadBatch, s.fetchMovements)
	s.stockReads = newCoalescer(pointReadQueries, pointReadBatch, s.fetchStock)
	s.asOfReads = newCoalescer(pastQueries, pointReadBatch, s.fetchAsOf)
	s.historyReads = newCoalescer(pastQueries, pastPageBatch, s.fetchHistory)
	s.routeReads = newCoalescer(routeQueries, routeBatch, s.fetchRoutes)
	return s
}

// defaultListQueries leaves room in a pool of maxConns (0: unbounded) for the point
// reads of both kinds and for ingest.
func defaultListQueries(maxConns int) int {
	if maxConns <= 0 {
		return unboundedListSlots
	}
	return max(1, maxConns-2*pointReadQueries-2*pastQueries-writeConns)
}

// errLostRace means a concurrent batch committed, between our reads and our writes, an
// event or movement leg that our judgement did not see: an event with the same identity
// or (movement, kind), or the other leg of one of our movements. The primary keys and the
// guarded movement update detect it; the batch is rolled back and judged again, and then
// sees the winner's commit.
var errLostRace = errors.New("lost a race with a concurrent batch")

// maxRaceRetries bounds the re-runs after errLostRace; each re-run sees the winner's
// commit, so a second loss needs a new concurrent writer every time.
const maxRaceRetries = 5

// Apply stores a batch in one transaction:
//  1. it reads the batch's movements and stock rows (without locks);
//  2. it judges the events in order in a domain.Ledger holding what it read;
//  3. it writes back the stored events, the movements they complete and the final stock,
//     by COPY (events, new movements) or one set-based statement (known movements,
//     stock), in sorted key order.
//
// Both movements and stock are optimistic: the stock update is a compare-and-set on the
// quantity the batch judged against (a departure stored in the batch is valid for that
// starting quantity and no other), a new stock row is a plain insert, and a concurrent
// batch that wrote the same movement is caught by the primary keys of events and
// movements and by the guarded movement update. When any of them fails the batch has
// lost a race: it rolls back and is judged again, this time locking its stock rows first
// (see lockStock), so a busy stock row costs one wasted attempt rather than an unbounded
// series of them; and for a while (lockingSpell) every batch locks from its first
// attempt. A consumer that runs alone never loses, and pays for no lock.
func (s *Store) Apply(ctx context.Context, events []domain.Event) ([]error, error) {
	if len(events) == 0 {
		return nil, nil
	}
	for attempt := 0; ; attempt++ {
		// The first attempt locks its stock rows only while races are recent, and looks
		// identities up only for events it would refuse; a re-run does both (see apply).
		lock := attempt > 0 || time.Now().UnixNano() < s.lockUntil.Load()
		results, err := s.apply(ctx, events, lock, attempt > 0)
		if errors.Is(err, errLostRace) {
			s.lockUntil.Store(time.Now().Add(lockingSpell).UnixNano())
			if attempt < maxRaceRetries {
				continue
			}
		}
		if err != nil {
			return nil, fmt.Errorf("apply batch of %d: %w", len(events), err)
		}
		return results, nil
	}
}

// lockingSpell is how long after a lost race the store's batches lock their stock rows
// from the first attempt: where consumers contend for the same rows, waiting on a lock
// costs less than judging a batch twice; where one consumer runs alone, it never locks.
const lockingSpell = 10 * time.Second

func (s *Store) apply(ctx context.Context, events []domain.Event, lock, rerun bool) ([]error, error) {
	var results []error
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		movements, err := loadMovements(ctx, tx, events)
		if err != nil {
			return err
		}
		var identities []domain.Identity
		if rerun {
			if identities, err = loadIdentities(ctx, tx, events); err != nil {
				return err
			}
		}
		var stock stockRows
		if lock {
			stock, err = lockStock(ctx, tx, events)
		} else {
			stock, err = readStock(ctx, tx, events)
		}
		if err != nil {
			return err
		}
		ledger, res, stored := judge(events, movements, identities, stock)
		if !rerun {
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
		read := make(map[domain.MovementID]bool, len(movements))
		for _, m := range movements {
			read[m.ID] = true
		}
		return writeBack(ctx, tx, stored, ledger, read, stock)
	})
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "40001") {
			// deadlock_detected, serialization_failure: two optimistic batches met in
			// opposite orders on a unique key; the re-run takes its locks in order.
			err = errLostRace
		}
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
	stock stockRows,
) (*domain.Ledger, []error, []domain.Event) {
	l := domain.NewLedger()
	for _, m := range movements {
		l.LoadMovement(m)
	}
	for _, id := range identities {
		l.LoadIdentity(id)
	}
	for k, q := range stock.quantities {
		if !stock.placeholders[k] {
			l.LoadStock(k, q)
		}
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

// stockRows is what a batch read of its stock rows before judging.
type stockRows struct {
	// quantities holds every row that exists, placeholders included (at 0): the
	// quantity the batch's final stock is a compare-and-set against.
	quantities map[domain.StockKey]int64
	// events counts the events of each row that exists, compared too: any commit to a
	// row changes it, even one whose events add up to nothing.
	events map[domain.StockKey]int64
	// checkpointAt is the time of the newest checkpoint of each row that has one.
	checkpointAt map[domain.StockKey]time.Time
	// placeholders are the rows lockStock inserted to lock keys that had none; no
	// event has been judged against them, and those no stored event needs are deleted.
	placeholders map[domain.StockKey]bool
}

// sortedStockKeys returns the distinct stock keys of events in sorted order.
func sortedStockKeys(events []domain.Event) []domain.StockKey {
	keys := make([]domain.StockKey, 0, len(events))
	seen := make(map[domain.StockKey]struct{}, len(events))
	for _, e := range events {
		if _, ok := seen[e.StockKey()]; !ok {
			seen[e.StockKey()] = struct{}{}
			keys = append(keys, e.StockKey())
		}
	}
	slices.SortFunc(keys, domain.StockKey.Compare)
	return keys
}

// keyArrays splits keys into warehouse and product arrays for unnest.
func keyArrays(keys []domain.StockKey) (ws, ps [][16]byte) {
	ws, ps = make([][16]byte, len(keys)), make([][16]byte, len(keys))
	for i, k := range keys {
		ws[i], ps[i] = [16]byte(k.Warehouse), [16]byte(k.Product)
	}
	return ws, ps
}

// readStock reads the batch's stock rows as they are committed, without locking them.
func readStock(ctx context.Context, tx pgx.Tx, events []domain.Event) (stockRows, error) {
	ws, ps := keyArrays(sortedStockKeys(events))
	rows, err := query(ctx, tx, `SELECT s.warehouse_id, s.product_id, s.quantity, false, s.events, s.checkpoint_at
		FROM unnest($1::uuid[], $2::uuid[]) AS t(w, p)
		JOIN stock s ON s.warehouse_id = t.w AND s.product_id = t.p`, ws, ps)
	if err != nil {
		return stockRows{}, fmt.Errorf("read stock: %w", err)
	}
	return scanStock(rows, len(ws))
}

// lockStock locks (creating placeholders for) every stock row of the batch in sorted
// order: every batch that locks does so in the same global order, so they cannot
// deadlock, and a batch that holds its locks cannot lose the stock compare-and-set.
func lockStock(ctx context.Context, tx pgx.Tx, events []domain.Event) (stockRows, error) {
	ws, ps := keyArrays(sortedStockKeys(events))
	// The no-op DO UPDATE locks an existing row and waits for a concurrent inserter of a
	// new one; WITH ORDINALITY + ORDER BY makes the locks follow the sorted input.
	rows, err := query(ctx, tx, `INSERT INTO stock (warehouse_id, product_id, quantity)
		SELECT w, p, 0 FROM unnest($1::uuid[], $2::uuid[]) WITH ORDINALITY AS t(w, p, n) ORDER BY n
		ON CONFLICT (warehouse_id, product_id) DO UPDATE SET quantity = stock.quantity
		RETURNING warehouse_id, product_id, quantity, (xmax = 0) AS inserted, events, checkpoint_at`, ws, ps)
	if err != nil {
		return stockRows{}, fmt.Errorf("lock stock: %w", err)
	}
	return scanStock(rows, len(ws))
}

// scanStock reads rows of (warehouse, product, quantity, placeholder, events,
// checkpoint_at) and closes them.
func scanStock(rows pgx.Rows, n int) (stockRows, error) {
	defer rows.Close()
	st := stockRows{
		quantities: make(map[domain.StockKey]int64, n), events: make(map[domain.StockKey]int64, n),
		checkpointAt: make(map[domain.StockKey]time.Time), placeholders: make(map[domain.StockKey]bool),
	}
	for rows.Next() {
		var (
			w, p         uuid.UUID
			q, events    int64
			placeholder  bool
			checkpointAt *time.Time
		)
		if err := rows.Scan(&w, &p, &q, &placeholder, &events, &checkpointAt); err != nil {
			return stockRows{}, fmt.Errorf("stock: %w", err)
		}
		k := domain.StockKey{Warehouse: domain.WarehouseID(w), Product: domain.ProductID(p)}
		st.quantities[k], st.events[k] = q, events
		if checkpointAt != nil {
			st.checkpointAt[k] = *checkpointAt
		}
		if placeholder {
			st.placeholders[k] = true
		}
	}
	if err := rows.Err(); err != nil {
		return stockRows{}, fmt.Errorf("stock: %w", err)
	}
	return st, nil
}

// writeBack inserts the stored events, writes the movements they touch (read lists those
// the batch read) and the final stock; then it deletes the stock placeholders that stayed
// unused, and logs the changes. Rows go in sorted key order, so concurrent batches meet
// on the unique indexes in the same order.
func writeBack(ctx context.Context, tx pgx.Tx, stored []domain.Event, l *domain.Ledger, read map[domain.MovementID]bool, stock stockRows) error {
	if len(stored) > 0 {
		if err := insertEvents(ctx, tx, stored); err != nil {
			return err
		}
		if err := writeMovements(ctx, tx, stored, l, read); err != nil {
			return err
		}
		rows := rowsOf(stored)
		if err := writeStock(ctx, tx, rows, l, stock); err != nil {
			return err
		}
		// After the stock rows: the batch holds their locks, so no other batch changes
		// the checkpoints of its rows until it commits.
		if err := writeCheckpoints(ctx, tx, stored, rows, stock); err != nil {
			return err
		}
	}
	// the ledger holds a placeholder's key only if a stored event changed it
	var unused []domain.StockKey
	for k := range stock.placeholders {
		if _, ok := l.Stock(k); !ok {
			unused = append(unused, k)
		}
	}
	if len(unused) > 0 {
		ws, ps := keyArrays(unused)
		if _, err := exec(ctx, tx, `DELETE FROM stock s USING unnest($1::uuid[], $2::uuid[]) AS t(w, p)
			WHERE s.warehouse_id = t.w AND s.product_id = t.p`, ws, ps); err != nil {
			return fmt.Errorf("drop stock placeholders: %w", err)
		}
	}
	if len(stored) == 0 {
		return nil
	}
	// Last: from here to the commit the batch holds the change log's head.
	return logChanges(ctx, tx, stored, l)
}

// eventColumns are the columns insertEvents copies, in the order it writes them.
var eventColumns = []string{"source", "id", "movement_id", "event", "warehouse_id", "product_id",
	"quantity", "occurred_at", "event_time", "attributes"}

// insertEvents inserts the stored events; one whose identity a concurrent batch committed
// first violates the primary key and is reported as a lost race. (A second event for a
// movement leg that a concurrent batch filled is caught by writeMovements.) Rows go in
// identity order, so concurrent batches meet on the key in the same order.
func insertEvents(ctx context.Context, tx pgx.Tx, stored []domain.Event) error {
	sorted := slices.Clone(stored)
	slices.SortFunc(sorted, func(a, b domain.Event) int {
		if c := strings.Compare(a.Source, b.Source); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	// COPY streams the rows in binary without building ten parameter arrays, and the
	// server inserts them in multi-row batches; a unique violation aborts it like any
	// statement. No ON CONFLICT DO NOTHING, which would cost a speculative insertion per
	// row to handle a race that is rare: the batch is judged again instead.
	c := newBinaryCopy(len(sorted) * 320)
	for i := range sorted {
		e := &sorted[i]
		c.row(len(eventColumns))
		c.text(e.Source)
		c.text(e.ID)
		c.uuid(e.MovementID)
		c.text(string(e.Kind))
		c.uuid(e.WarehouseID)
		c.uuid(e.ProductID)
		c.int8(e.Quantity)
		c.timestamptz(e.Timestamp)
		if e.Time.IsZero() {
			c.null()
		} else {
			c.timestamptz(e.Time)
		}
		if len(e.Attributes) > 0 {
			c.jsonb(e.Attributes) // raw JSON, as the codec checked it
		} else {
			c.null()
		}
	}
	return copyIn(ctx, tx, "events", eventColumns, c)
}

// writeMovements writes the legs the batch stored into their movement rows: a movement
// the batch did not read is inserted whole (COPY), one it read gets only its new legs
// (updateMovements). Neither needs ON CONFLICT, whose arbiter lookup and speculative
// insertion cost every row of the batch to catch a race that is rare: a movement that a
// concurrent batch created meanwhile violates the primary key, and one it completed
// meanwhile fails the update's guard; either way the batch has lost a race and is judged
// again. So two events for one leg never both commit, without a unique key on the
// events' (movement_id, event) to pay on every insert. Rows go in movement order, so
// concurrent batches meet on the key in the same order.
func writeMovements(ctx context.Context, tx pgx.Tx, stored []domain.Event, l *domain.Ledger, read map[domain.MovementID]bool) error {
	type legs struct{ departure, arrival bool }
	added := make(map[domain.MovementID]legs, len(stored))
	var created, updated []domain.MovementID
	for _, e := range stored {
		a, seen := added[e.MovementID]
		if !seen {
			if read[e.MovementID] {
				updated = append(updated, e.MovementID)
			} else {
				created = append(created, e.MovementID)
			}
		}
		if e.Kind == domain.Departure {
			a.departure = true
		} else {
			a.arrival = true
		}
		added[e.MovementID] = a
	}
	byID := func(a, b domain.MovementID) int { return slices.Compare(a[:], b[:]) }
	if len(updated) > 0 {
		slices.SortFunc(updated, byID)
		n := len(updated)
		mid, pid := make([][16]byte, n), make([][16]byte, n)
		var d, a legColumns
		d.make(n)
		a.make(n)
		for i, id := range updated {
			m, _ := l.Movement(id)
			mid[i], pid[i] = [16]byte(id), [16]byte(m.ProductID)
			if added[id].departure {
				d.set(i, m.Departure)
			}
			if added[id].arrival {
				a.set(i, m.Arrival)
			}
		}
		if err := updateMovements(ctx, tx, mid, pid, d, a); err != nil {
			return err
		}
	}
	if len(created) > 0 {
		slices.SortFunc(created, byID)
		c := newBinaryCopy(len(created) * 200)
		for _, id := range created {
			m, _ := l.Movement(id)
			c.row(len(movementCopyColumns))
			c.uuid(m.ID)
			c.uuid(m.ProductID)
			for _, leg := range [2]*domain.Leg{m.Departure, m.Arrival} {
				if leg == nil {
					for range 4 { // warehouse, source, time, quantity
						c.null()
					}
					continue
				}
				c.uuid(leg.WarehouseID)
				c.text(leg.Source)
				c.timestamptz(leg.Timestamp)
				c.int8(leg.Quantity)
			}
		}
		return copyIn(ctx, tx, "movements", movementCopyColumns, c)
	}
	return nil
}

// updateMovements adds legs to movement rows the batch read: only the legs it stored are
// sent, a leg not sent is NULL in its arrays, which the update keeps (coalesce) and the
// guard ignores. A row is written only while none of the legs sent is already there and
// the product is the same (the update waits for, and then sees, a concurrent batch's
// commit: it locks the row); a row not written means a race this batch lost.
func updateMovements(ctx context.Context, tx pgx.Tx, mid, pid [][16]byte, d, a legColumns) error {
	res, err := exec(ctx, tx, `UPDATE movements AS m SET
			departure_warehouse_id = coalesce(m.departure_warehouse_id, u.dw),
			departure_source = coalesce(m.departure_source, u.ds),
			departure_at = coalesce(m.departure_at, u.dat),
			departure_quantity = coalesce(m.departure_quantity, u.dq),
			arrival_warehouse_id = coalesce(m.arrival_warehouse_id, u.aw),
			arrival_source = coalesce(m.arrival_source, u.asrc),
			arrival_at = coalesce(m.arrival_at, u.aat),
			arrival_quantity = coalesce(m.arrival_quantity, u.aq)
		FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::timestamptz[], $6::bigint[],
			$7::uuid[], $8::text[], $9::timestamptz[], $10::bigint[]) AS u(id, p, dw, ds, dat, dq, aw, asrc, aat, aq)
		WHERE m.movement_id = u.id AND m.product_id = u.p
			AND (u.dat IS NULL OR m.departure_at IS NULL)
			AND (u.aat IS NULL OR m.arrival_at IS NULL)`,
		mid, pid, d.warehouse, d.source, d.at, d.quantity, a.warehouse, a.source, a.at, a.quantity)
	if err != nil {
		return fmt.Errorf("update movements: %w", err)
	}
	if res.RowsAffected() != int64(len(mid)) {
		return errLostRace
	}
	return nil
}

// movementCopyColumns are the columns writeMovements copies, in the order it writes
// them (the generated moved_at and status are computed by the server); a leg not seen is
// NULL in all its columns.
var movementCopyColumns = []string{"movement_id", "product_id",
	"departure_warehouse_id", "departure_source", "departure_at", "departure_quantity",
	"arrival_warehouse_id", "arrival_source", "arrival_at", "arrival_quantity"}

// writeStock writes the final quantity and event count of every stock row a stored
// event changed, in sorted key order: an existing row by compare-and-set on the quantity
// and event count the batch read, a new one by a plain insert. A row that changed since,
// or that a concurrent batch created, means a race this batch lost.
func writeStock(ctx context.Context, tx pgx.Tx, rows storedRows, l *domain.Ledger, stock stockRows) error {
	var upd, ins stockColumns
	for _, k := range rows.keys {
		q, _ := l.Stock(k)
		if was, ok := stock.quantities[k]; ok {
			upd.add(k, q, rows.counts[k])
			upd.expected = append(upd.expected, was)
			upd.expectedEvents = append(upd.expectedEvents, stock.events[k])
		} else {
			ins.add(k, q, rows.counts[k])
		}
	}
	if len(upd.ws) > 0 {
		res, err := exec(ctx, tx, `UPDATE stock s SET quantity = u.q, events = s.events + u.n, updated_at = now()
			FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[])
				AS u(w, p, q, n, was, was_events)
			WHERE s.warehouse_id = u.w AND s.product_id = u.p AND s.quantity = u.was AND s.events = u.was_events`,
			upd.ws, upd.ps, upd.qs, upd.ns, upd.expected, upd.expectedEvents)
		if err != nil {
			return fmt.Errorf("update stock: %w", err)
		}
		if res.RowsAffected() != int64(len(upd.ws)) {
			return errLostRace
		}
	}
	if len(ins.ws) > 0 {
		_, err := exec(ctx, tx, `INSERT INTO stock (warehouse_id, product_id, quantity, events)
			SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::bigint[])`, ins.ws, ins.ps, ins.qs, ins.ns)
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "23505" { // unique_violation
			return errLostRace
		}
		if err != nil {
			return fmt.Errorf("insert stock: %w", err)
		}
	}
	return nil
}

// stockColumns holds stock rows as parallel arrays for unnest.
type stockColumns struct {
	ws, ps                   [][16]byte
	qs, ns                   []int64
	expected, expectedEvents []int64
}

func (c *stockColumns) add(k domain.StockKey, q, n int64) {
	c.ws, c.ps = append(c.ws, [16]byte(k.Warehouse)), append(c.ps, [16]byte(k.Product))
	c.qs, c.ns = append(c.qs, q), append(c.ns, n)
}

// storedRows is the stock rows that a batch's stored events change, in sorted key order,
// and how many of those events each row gets.
type storedRows struct {
	keys   []domain.StockKey
	counts map[domain.StockKey]int64
}

// rowsOf finds the stock rows of stored, once for every statement that writes them.
func rowsOf(stored []domain.Event) storedRows {
	r := storedRows{keys: make([]domain.StockKey, 0, len(stored)), counts: make(map[domain.StockKey]int64, len(stored))}
	for _, e := range stored {
		k := e.StockKey()
		if r.counts[k] == 0 {
			r.keys = append(r.keys, k)
		}
		r.counts[k]++
	}
	slices.SortFunc(r.keys, domain.StockKey.Compare)
	return r
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
	return s.withPgx(ctx, func(c *pgx.Conn) error { return pgx.BeginTxFunc(ctx, c, writeTx, fn) })
}

// withPgx runs fn on a pooled connection's own pgx connection, which decodes rows into
// typed values directly, without database/sql's conversions in between.
func (s *Store) withPgx(ctx context.Context, fn func(*pgx.Conn) error) error {
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
		return fn(pc.Conn())
	})
}
