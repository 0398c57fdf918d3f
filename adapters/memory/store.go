// Package memory is an in-process ports.Store for unit tests and local experiments. It
// keeps the ledger in maps behind one mutex and behaves like the PostgreSQL store under
// the same contract suite (ports/portstest).
package memory

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"warehouse/domain"
	"warehouse/ports"
)

// Store implements ports.Store in memory.
type Store struct {
	now func() time.Time

	mu        sync.Mutex
	ledger    *domain.Ledger
	updatedAt map[domain.StockKey]time.Time
	seq       int64
	events    map[domain.StockKey][]*domain.StoredEvent // in ledger order
	byID      map[domain.Identity]*domain.StoredEvent
	broken    map[domain.StockKey]int // stock rows that cannot be written (FailStockWrites)
	log       changeLog
}

var _ ports.Store = (*Store)(nil)

// NewStore returns an empty store that stamps stock rows with the wall clock.
func NewStore() *Store { return NewStoreWithClock(time.Now) }

// NewStoreWithClock returns an empty store that stamps stock rows with now.
func NewStoreWithClock(now func() time.Time) *Store {
	return &Store{
		now: now, ledger: domain.NewLedger(), updatedAt: make(map[domain.StockKey]time.Time),
		events: make(map[domain.StockKey][]*domain.StoredEvent), byID: make(map[domain.Identity]*domain.StoredEvent),
		log: changeLog{max: DefaultMaxChanges},
	}
}

// Apply judges and records events in order under the store's lock, so concurrent batches
// are serialised as the PostgreSQL store's row locks serialise them.
func (s *Store) Apply(ctx context.Context, events []domain.Event) ([]error, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ports.ErrUnavailable, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if k, ok := s.brokenWrite(events); ok {
		return nil, fmt.Errorf("stock of product %s at warehouse %s cannot be written (a fault of FailStockWrites)", k.Product, k.Warehouse)
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	results := make([]error, len(events))
	stored := make([]domain.Event, 0, len(events))
	for i, e := range events {
		if results[i] = s.ledger.Apply(e); results[i] == nil {
			stored = append(stored, e)
			s.updatedAt[e.StockKey()] = now
			s.seq++
			se := &domain.StoredEvent{Event: e, Seq: s.seq, RecordedAt: now}
			s.events[e.StockKey()] = append(s.events[e.StockKey()], se)
			s.byID[e.Identity()] = se
		}
	}
	s.appendChanges(stored, now)
	return results, nil
}

// FailStockWrites breaks the store on purpose until restore is called: every batch that
// would write the stock row k fails as a whole, with nothing of it stored, as a batch of
// the PostgreSQL store fails when the server refuses one of its rows. The contract suite
// uses it (portstest.Faults) to check that a batch is all or nothing.
func (s *Store) FailStockWrites(k domain.StockKey) (restore func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.broken == nil {
		s.broken = make(map[domain.StockKey]int)
	}
	s.broken[k]++
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.broken[k]--; s.broken[k] == 0 {
				delete(s.broken, k)
			}
		})
	}
}

// brokenWrite reports the first broken stock row (see FailStockWrites) that the batch
// would write, judging it on a scratch ledger of the rows it touches so that the store is
// not changed. It costs nothing while no row is broken.
func (s *Store) brokenWrite(events []domain.Event) (domain.StockKey, bool) {
	if len(s.broken) == 0 {
		return domain.StockKey{}, false
	}
	scratch := domain.NewLedger()
	for _, e := range events {
		if _, ok := s.byID[e.Identity()]; ok {
			scratch.LoadIdentity(e.Identity())
		}
		if m, ok := s.ledger.Movement(e.MovementID); ok {
			scratch.LoadMovement(m.Clone())
		}
		if q, ok := s.ledger.Stock(e.StockKey()); ok {
			scratch.LoadStock(e.StockKey(), q)
		}
	}
	for _, e := range events {
		if scratch.Apply(e) == nil && s.broken[e.StockKey()] > 0 {
			return e.StockKey(), true
		}
	}
	return domain.StockKey{}, false
}

// Ping always succeeds while ctx is live.
func (s *Store) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", ports.ErrUnavailable, err)
	}
	return nil
}

// Movement returns one movement.
func (s *Store) Movement(ctx context.Context, id domain.MovementID) (domain.Movement, error) {
	if err := ctx.Err(); err != nil {
		return domain.Movement{}, fmt.Errorf("%w: %w", ports.ErrUnavailable, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.ledger.Movement(id)
	if !ok {
		return domain.Movement{}, fmt.Errorf("movement %s: %w", id, domain.ErrNotFound)
	}
	return m.Clone(), nil
}

// Stock returns one stock row.
func (s *Store) Stock(ctx context.Context, w domain.WarehouseID, p domain.ProductID) (domain.Stock, error) {
	if err := ctx.Err(); err != nil {
		return domain.Stock{}, fmt.Errorf("%w: %w", ports.ErrUnavailable, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k := domain.StockKey{Warehouse: w, Product: p}
	q, ok := s.ledger.Stock(k)
	if !ok {
		return domain.Stock{}, fmt.Errorf("stock of product %s at warehouse %s: %w", p, w, domain.ErrNotFound)
	}
	return domain.Stock{WarehouseID: w, ProductID: p, Quantity: q, UpdatedAt: s.updatedAt[k]}, nil
}

// Movements lists movements newest first by (time, id). It scans everything: fine for tests.
func (s *Store) Movements(ctx context.Context, f ports.MovementFilter) (ports.MovementPage, error) {
	if err := ctx.Err(); err != nil {
		return ports.MovementPage{}, fmt.Errorf("%w: %w", ports.ErrUnavailable, err)
	}
	s.mu.Lock()
	var items []domain.Movement
	for m := range s.ledger.Movements() {
		if matches(m, f) {
			items = append(items, m.Clone())
		}
	}
	s.mu.Unlock()
	slices.SortFunc(items, func(a, b domain.Movement) int {
		if c := b.Time().Compare(a.Time()); c != 0 {
			return c
		}
		return bytes.Compare(b.ID[:], a.ID[:])
	})
	var page ports.MovementPage
	if len(items) > f.Limit {
		items = items[:f.Limit]
		last := items[len(items)-1]
		page.Next = &domain.MovementCursor{Time: last.Time(), ID: last.ID}
	}
	page.Items = items
	return page, nil
}

func matches(m domain.Movement, f ports.MovementFilter) bool {
	if !f.DepartedBefore.IsZero() && (m.Departure == nil || !m.Departure.Timestamp.Before(f.DepartedBefore)) {
		return false
	}
	if f.Warehouse != nil && !atWarehouse(m.Departure, *f.Warehouse) && !atWarehouse(m.Arrival, *f.Warehouse) {
		return false
	}
	if f.Product != nil && m.ProductID != *f.Product {
		return false
	}
	if f.Status != "" && m.Status() != f.Status {
		return false
	}
	t := m.Time()
	if !f.Since.IsZero() && t.Before(f.Since) || !f.Until.IsZero() && !t.Before(f.Until) {
		return false
	}
	return f.After == nil || f.After.Before(m)
}

func atWarehouse(l *domain.Leg, w domain.WarehouseID) bool { return l != nil && l.WarehouseID == w }

// WarehouseStock lists a warehouse's stock by product id.
func (s *Store) WarehouseStock(ctx context.Context, f ports.StockFilter) (ports.StockPage, error) {
	if err := ctx.Err(); err != nil {
		return ports.StockPage{}, fmt.Errorf("%w: %w", ports.ErrUnavailable, err)
	}
	s.mu.Lock()
	var items []domain.Stock
	for k, at := range s.updatedAt {
		if k.Warehouse != f.Warehouse || f.After != nil && bytes.Compare(k.Product[:], f.After[:]) <= 0 {
			continue
		}
		q, _ := s.ledger.Stock(k)
		items = append(items, domain.Stock{WarehouseID: k.Warehouse, ProductID: k.Product, Quantity: q, UpdatedAt: at})
	}
	s.mu.Unlock()
	slices.SortFunc(items, func(a, b domain.Stock) int { return bytes.Compare(a.ProductID[:], b.ProductID[:]) })
	var page ports.StockPage
	if len(items) > f.Limit {
		items = items[:f.Limit]
		next := items[len(items)-1].ProductID
		page.Next = &next
	}
	page.Items = items
	return page, nil
}
