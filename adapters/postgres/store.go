package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/google/uuid"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"

	"warehouse/domain"
	"warehouse/ports"
)

// Store implements ports.Store on PostgreSQL.
type Store struct {
	db *bun.DB
}

var _ ports.Store = (*Store)(nil)

// NewStore returns a Store on db, whose schema Migrate has brought up to date.
func NewStore(db *bun.DB) *Store { return &Store{db: db} }

// errLostRace means another transaction stored an event with the identity of one of ours
// but of another movement (which our locks do not cover) between our check and our
// insert. The batch is rolled back and judged again, when the check will see it.
var errLostRace = errors.New("lost an identity race with a concurrent batch")

// maxRaceRetries bounds the re-runs after errLostRace; each re-run sees the winner's
// commit, so a second loss needs a new concurrent writer every time.
const maxRaceRetries = 5

// Apply stores a batch in one transaction. It locks the batch's movement rows, then its
// stock rows, each in sorted key order (every batch takes its locks in the same global
// order, so concurrent consumers cannot deadlock), loads what it locked into a
// domain.Ledger, judges the events in order there, and writes back the stored events and
// the final state of what changed with set-based statements.
//
// Rows that do not exist yet are locked by inserting placeholders (a locked row is the only
// thing another transaction waits for); placeholders no stored event needed are deleted
// before commit, so nobody ever sees them.
func (s *Store) Apply(ctx context.Context, events []domain.Event) ([]error, error) {
	if len(events) == 0 {
		return nil, nil
	}
	for attempt := 0; ; attempt++ {
		results, err := s.apply(ctx, events)
		if errors.Is(err, errLostRace) && attempt < maxRaceRetries {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("apply batch of %d: %w", len(events), err)
		}
		return results, nil
	}
}

type lockedMovement struct {
	movementRow `bun:",extend"`
	Inserted    bool `bun:"inserted"`
}

type lockedStock struct {
	WarehouseID uuid.UUID `bun:"warehouse_id,type:uuid"`
	ProductID   uuid.UUID `bun:"product_id,type:uuid"`
	Quantity    int64     `bun:"quantity"`
	Inserted    bool      `bun:"inserted"`
}

func (s *Store) apply(ctx context.Context, events []domain.Event) ([]error, error) {
	results := make([]error, len(events))
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		ledger := domain.NewLedger()
		movements, err := lockMovements(ctx, tx, events, ledger)
		if err != nil {
			return err
		}
		if err := loadIdentities(ctx, tx, events, ledger); err != nil {
			return err
		}
		stock, err := lockStock(ctx, tx, events, ledger)
		if err != nil {
			return err
		}

		stored := make([]domain.Event, 0, len(events))
		for i, e := range events {
			if results[i] = ledger.Apply(e); results[i] == nil {
				stored = append(stored, e)
			}
		}
		return writeBack(ctx, tx, stored, ledger, movements, stock)
	})
	if err != nil {
		if errors.Is(err, errLostRace) {
			return nil, err
		}
		return nil, translate(err)
	}
	return results, nil
}

// lockMovements locks (creating placeholders for) every movement of the batch in sorted
// order and loads the existing ones into the ledger. It returns the placeholders' ids.
func lockMovements(ctx context.Context, tx bun.Tx, events []domain.Event, l *domain.Ledger) (placeholders map[domain.MovementID]bool, err error) {
	product := make(map[domain.MovementID]domain.ProductID, len(events))
	for _, e := range events {
		if _, ok := product[e.MovementID]; !ok {
			product[e.MovementID] = e.ProductID
		}
	}
	ids := make([]domain.MovementID, 0, len(product))
	for id := range product {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b domain.MovementID) int { return slices.Compare(a[:], b[:]) })
	mids, pids := make([]string, len(ids)), make([]string, len(ids))
	for i, id := range ids {
		mids[i], pids[i] = id.String(), product[id].String()
	}
	var rows []lockedMovement
	// The no-op DO UPDATE locks an existing row (and waits for a concurrent inserter);
	// WITH ORDINALITY + ORDER BY makes the locks follow the sorted input order.
	err = tx.NewRaw(`INSERT INTO movements (movement_id, product_id)
		SELECT m, p FROM unnest(?::uuid[], ?::uuid[]) WITH ORDINALITY AS t(m, p, n) ORDER BY n
		ON CONFLICT (movement_id) DO UPDATE SET departure_source = movements.departure_source
		RETURNING `+movementColumns+`, (xmax = 0) AS inserted`,
		pgdialect.Array(mids), pgdialect.Array(pids)).Scan(ctx, &rows)
	if err != nil {
		return nil, fmt.Errorf("lock movements: %w", err)
	}
	placeholders = make(map[domain.MovementID]bool)
	for _, r := range rows {
		if r.Inserted {
			placeholders[domain.MovementID(r.MovementID)] = true
		} else {
			l.LoadMovement(r.movementRow.domain())
		}
	}
	return placeholders, nil
}

// loadIdentities loads the identities of the batch that are already stored.
func loadIdentities(ctx context.Context, tx bun.Tx, events []domain.Event, l *domain.Ledger) error {
	sources, ids := make([]string, len(events)), make([]string, len(events))
	for i, e := range events {
		sources[i], ids[i] = e.Source, e.ID
	}
	var found []struct {
		Source string `bun:"source"`
		ID     string `bun:"id"`
	}
	err := tx.NewRaw(`SELECT e.source, e.id FROM events e
		JOIN unnest(?::text[], ?::text[]) AS t(source, id) ON e.source = t.source AND e.id = t.id`,
		pgdialect.Array(sources), pgdialect.Array(ids)).Scan(ctx, &found)
	if err != nil {
		return fmt.Errorf("load identities: %w", err)
	}
	for _, f := range found {
		l.LoadIdentity(domain.Identity{Source: f.Source, ID: f.ID})
	}
	return nil
}

// lockStock locks (creating placeholders for) every stock row of the batch in sorted
// order and loads the quantities into the ledger. It returns the placeholders' keys.
func lockStock(ctx context.Context, tx bun.Tx, events []domain.Event, l *domain.Ledger) (map[domain.StockKey]bool, error) {
	keys := make([]domain.StockKey, 0, len(events))
	seen := make(map[domain.StockKey]struct{}, len(events))
	for _, e := range events {
		if _, ok := seen[e.StockKey()]; !ok {
			seen[e.StockKey()] = struct{}{}
			keys = append(keys, e.StockKey())
		}
	}
	slices.SortFunc(keys, func(a, b domain.StockKey) int {
		switch {
		case a.Less(b):
			return -1
		case b.Less(a):
			return 1
		}
		return 0
	})
	ws, ps := make([]string, len(keys)), make([]string, len(keys))
	for i, k := range keys {
		ws[i], ps[i] = k.Warehouse.String(), k.Product.String()
	}
	var rows []lockedStock
	err := tx.NewRaw(`INSERT INTO stock (warehouse_id, product_id, quantity)
		SELECT w, p, 0 FROM unnest(?::uuid[], ?::uuid[]) WITH ORDINALITY AS t(w, p, n) ORDER BY n
		ON CONFLICT (warehouse_id, product_id) DO UPDATE SET quantity = stock.quantity
		RETURNING warehouse_id, product_id, quantity, (xmax = 0) AS inserted`,
		pgdialect.Array(ws), pgdialect.Array(ps)).Scan(ctx, &rows)
	if err != nil {
		return nil, fmt.Errorf("lock stock: %w", err)
	}
	placeholders := make(map[domain.StockKey]bool)
	for _, r := range rows {
		k := domain.StockKey{Warehouse: domain.WarehouseID(r.WarehouseID), Product: domain.ProductID(r.ProductID)}
		if r.Inserted {
			placeholders[k] = true
		} else {
			l.LoadStock(k, r.Quantity)
		}
	}
	return placeholders, nil
}

// writeBack inserts the stored events and writes the final state of every movement and
// stock row they changed; then it deletes the placeholders that stayed unused.
func writeBack(ctx context.Context, tx bun.Tx, stored []domain.Event, l *domain.Ledger,
	movePlaceholders map[domain.MovementID]bool, stockPlaceholders map[domain.StockKey]bool,
) error {
	if len(stored) > 0 {
		rows := make([]eventRow, len(stored))
		for i, e := range stored {
			rows[i] = newEventRow(e)
		}
		res, err := tx.NewInsert().Model(&rows).On("CONFLICT DO NOTHING").Exec(ctx)
		if err != nil {
			return fmt.Errorf("insert events: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n != int64(len(rows)) {
			return errLostRace
		}

		var mrows []movementRow
		var srows []stockRow
		doneM := make(map[domain.MovementID]bool, len(stored))
		doneS := make(map[domain.StockKey]bool, len(stored))
		for _, e := range stored {
			if !doneM[e.MovementID] {
				doneM[e.MovementID] = true
				m, _ := l.Movement(e.MovementID)
				mrows = append(mrows, newMovementRow(m))
				delete(movePlaceholders, e.MovementID)
			}
			if k := e.StockKey(); !doneS[k] {
				doneS[k] = true
				q, _ := l.Stock(k)
				srows = append(srows, stockRow{WarehouseID: uuid.UUID(k.Warehouse), ProductID: uuid.UUID(k.Product), Quantity: q})
				delete(stockPlaceholders, k)
			}
		}
		if _, err := tx.NewUpdate().Model(&mrows).Bulk().Exec(ctx); err != nil {
			return fmt.Errorf("update movements: %w", err)
		}
		if _, err := tx.NewUpdate().Model(&srows).Column("quantity").Set("updated_at = now()").Bulk().Exec(ctx); err != nil {
			return fmt.Errorf("update stock: %w", err)
		}
	}
	if len(movePlaceholders) > 0 {
		ids := make([]string, 0, len(movePlaceholders))
		for id := range movePlaceholders {
			ids = append(ids, id.String())
		}
		if _, err := tx.NewRaw(`DELETE FROM movements WHERE movement_id = ANY(?::uuid[])`, pgdialect.Array(ids)).Exec(ctx); err != nil {
			return fmt.Errorf("drop movement placeholders: %w", err)
		}
	}
	if len(stockPlaceholders) > 0 {
		ws, ps := make([]string, 0, len(stockPlaceholders)), make([]string, 0, len(stockPlaceholders))
		for k := range stockPlaceholders {
			ws, ps = append(ws, k.Warehouse.String()), append(ps, k.Product.String())
		}
		if _, err := tx.NewRaw(`DELETE FROM stock s USING unnest(?::uuid[], ?::uuid[]) AS t(w, p)
			WHERE s.warehouse_id = t.w AND s.product_id = t.p`, pgdialect.Array(ws), pgdialect.Array(ps)).Exec(ctx); err != nil {
			return fmt.Errorf("drop stock placeholders: %w", err)
		}
	}
	return nil
}
