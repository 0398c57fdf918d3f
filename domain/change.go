package domain

import "time"

// Change is what one stored event changed, as the change stream tells it: its movement
// and its stock row as they stood right after it, in commit order. Every stored event
// makes two changes at consecutive positions of the change log: the movement at
// Position, the stock row at Position+1. Positions grow by two with every stored event,
// across every process that writes the ledger, and have no gaps.
type Change struct {
	// Position is the log position of the movement change; the stock change is at
	// Position+1.
	Position int64
	// Event is the stored event's identity.
	Event Identity
	// Kind is the stored event's kind.
	Kind EventKind
	// Movement is the movement right after the event.
	Movement Movement
	// Stock is the stock row of the event's warehouse and product right after it; its
	// UpdatedAt is the commit time of the batch.
	Stock Stock
}

// ChangesPerEvent is how many log positions one stored event takes.
const ChangesPerEvent = 2

// StockPosition is the log position of the stock change.
func (c Change) StockPosition() int64 { return c.Position + 1 }

// ChangesOf returns the change of each event of stored, in order, given l holding the
// state after all of them (as a Ledger that judged the batch does), the position of the
// batch's first change and its commit time. It walks the batch backwards, taking each
// event out of the state after it, so it needs no copy of the state before the batch.
func ChangesOf(stored []Event, l *Ledger, first int64, committed time.Time) []Change {
	changes := make([]Change, len(stored))
	stock := make(map[StockKey]int64, len(stored))
	movements := make(map[MovementID]Movement, len(stored))
	for i := len(stored) - 1; i >= 0; i-- {
		e := stored[i]
		k := e.StockKey()
		q, ok := stock[k]
		if !ok {
			q, _ = l.Stock(k)
		}
		m, ok := movements[e.MovementID]
		if !ok {
			m, _ = l.Movement(e.MovementID)
		}
		changes[i] = Change{
			Position: first + int64(i)*ChangesPerEvent,
			Event:    e.Identity(),
			Kind:     e.Kind,
			Movement: m,
			Stock:    Stock{WarehouseID: e.WarehouseID, ProductID: e.ProductID, Quantity: q, UpdatedAt: committed},
		}
		// The state before e: its leg not yet there, its delta not yet added. Legs are
		// never changed in place, so the copy shares them safely.
		stock[k] = q - e.Delta()
		if e.Kind == Departure {
			m.Departure = nil
		} else {
			m.Arrival = nil
		}
		movements[e.MovementID] = m
	}
	return changes
}
