package domain

import (
	"fmt"
	"iter"
)

// Identity is an event's CloudEvents identity, unique in the ledger.
type Identity struct {
	Source string
	ID     string
}

// Identity returns the event's (source, id) pair.
func (e Event) Identity() Identity { return Identity{Source: e.Source, ID: e.ID} }

// Ledger judges events against what is already recorded: the processing rules in one
// place. The memory store keeps its whole state in a Ledger behind its mutex; the
// PostgreSQL store loads the rows a batch touches into one (read without locks), applies
// the batch, and writes back what changed optimistically, by compare-and-set and unique
// keys. A batch that loses that race to a concurrent one is judged again from a fresh
// Ledger, its stock rows locked this time. A Ledger is not safe for concurrent use.
type Ledger struct {
	identities map[Identity]struct{}
	movements  map[MovementID]Movement
	stock      map[StockKey]int64
}

// NewLedger returns an empty ledger.
func NewLedger() *Ledger {
	return &Ledger{
		identities: make(map[Identity]struct{}),
		movements:  make(map[MovementID]Movement),
		stock:      make(map[StockKey]int64),
	}
}

// LoadIdentity records that an event with this identity is stored.
func (l *Ledger) LoadIdentity(id Identity) { l.identities[id] = struct{}{} }

// LoadMovement records a stored movement.
func (l *Ledger) LoadMovement(m Movement) { l.movements[m.ID] = m }

// LoadStock records a stored stock quantity.
func (l *Ledger) LoadStock(k StockKey, quantity int64) { l.stock[k] = quantity }

// Movement returns a recorded movement.
func (l *Ledger) Movement(id MovementID) (Movement, bool) {
	m, ok := l.movements[id]
	return m, ok
}

// Stock returns a recorded stock quantity; ok is false when the key was never recorded.
func (l *Ledger) Stock(k StockKey) (quantity int64, ok bool) {
	quantity, ok = l.stock[k]
	return quantity, ok
}

// Movements iterates over every recorded movement in no particular order.
func (l *Ledger) Movements() iter.Seq[Movement] {
	return func(yield func(Movement) bool) {
		for _, m := range l.movements {
			if !yield(m) {
				return
			}
		}
	}
}

// Apply judges e against the ledger and records it when it is accepted. It returns nil
// when e was recorded, or an error wrapping ErrDuplicate, ErrConflict or
// ErrInsufficientStock when e changed nothing.
func (l *Ledger) Apply(e Event) error {
	if _, ok := l.identities[e.Identity()]; ok {
		return fmt.Errorf("%w: event (%s, %s) is already stored", ErrDuplicate, e.Source, e.ID)
	}
	m, known := l.movements[e.MovementID]
	if known {
		if leg := m.leg(e.Kind); leg != nil {
			if m.ProductID == e.ProductID && leg.same(e) {
				return fmt.Errorf("%w: movement %s already has this %s", ErrDuplicate, e.MovementID, e.Kind)
			}
			return fmt.Errorf("%w: movement %s already has %s with other data", ErrConflict, e.MovementID, e.Kind.article())
		}
		if m.ProductID != e.ProductID {
			return fmt.Errorf("%w: movement %s is of product %s, this %s names %s",
				ErrConflict, e.MovementID, m.ProductID, e.Kind, e.ProductID)
		}
	}
	k := e.StockKey()
	if e.Kind == Departure {
		if have := l.stock[k]; have < e.Quantity {
			return fmt.Errorf("%w: warehouse %s holds %d of product %s, departure of %d",
				ErrInsufficientStock, e.WarehouseID, have, e.ProductID, e.Quantity)
		}
	}
	l.stock[k] += e.Delta()
	l.identities[e.Identity()] = struct{}{}
	l.movements[e.MovementID] = m.Apply(e)
	return nil
}

func (m Movement) leg(k EventKind) *Leg {
	if k == Departure {
		return m.Departure
	}
	return m.Arrival
}

// same reports whether e carries this leg's data (the product is compared by the caller).
func (g *Leg) same(e Event) bool {
	return g.WarehouseID == e.WarehouseID && g.Timestamp.Equal(e.Timestamp) && g.Quantity == e.Quantity
}

// article names the kind with its indefinite article, for messages.
func (k EventKind) article() string {
	if k == Arrival {
		return "an arrival"
	}
	return "a departure"
}
