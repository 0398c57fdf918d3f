package domain

import (
	"bytes"
	"time"
)

// MovementStatus is where a movement stands, derived from the events seen.
type MovementStatus string

// The movement statuses the API reports.
const (
	InTransit MovementStatus = "in_transit" // departure only
	Arrived   MovementStatus = "arrived"    // arrival only, departure not yet seen
	Completed MovementStatus = "completed"  // both
)

// ParseMovementStatus checks a status name.
func ParseMovementStatus(s string) (MovementStatus, error) {
	switch st := MovementStatus(s); st {
	case InTransit, Arrived, Completed:
		return st, nil
	}
	return "", invalidField("status", "is not in_transit, arrived or completed", s)
}

// Leg is one end of a movement: what one warehouse reported.
type Leg struct {
	WarehouseID WarehouseID
	// Source is the CloudEvents source of the event that reported it.
	Source    string
	Timestamp time.Time
	Quantity  int64
}

// Movement is the departure and arrival of one product between two warehouses.
// At least one of Departure and Arrival is set.
type Movement struct {
	ID        MovementID
	ProductID ProductID
	Departure *Leg
	Arrival   *Leg
}

// Status derives the movement's status from the legs seen.
func (m Movement) Status() MovementStatus {
	switch {
	case m.Departure != nil && m.Arrival != nil:
		return Completed
	case m.Departure != nil:
		return InTransit
	default:
		return Arrived
	}
}

// Time is the movement's place in time, used for ordering and filtering lists: its
// departure timestamp, or its arrival timestamp while no departure is known.
func (m Movement) Time() time.Time {
	if m.Departure != nil {
		return m.Departure.Timestamp
	}
	if m.Arrival != nil {
		return m.Arrival.Timestamp
	}
	return time.Time{}
}

// ElapsedSeconds is the arrival time minus the departure time in whole seconds,
// truncated toward zero and negative when the clocks disagree; ok is false until both
// legs are known. It does not go through time.Duration, which saturates after 292 years.
func (m Movement) ElapsedSeconds() (secs int64, ok bool) {
	if m.Departure == nil || m.Arrival == nil {
		return 0, false
	}
	a, d := m.Arrival.Timestamp, m.Departure.Timestamp
	secs = a.Unix() - d.Unix()
	nanos := int64(a.Nanosecond()) - int64(d.Nanosecond())
	switch {
	case secs > 0 && nanos < 0:
		secs--
	case secs < 0 && nanos > 0:
		secs++
	}
	return secs, true
}

// QuantityDifference is the arrival quantity minus the departure quantity: negative
// means goods were lost in transit. ok is false until both legs are known.
func (m Movement) QuantityDifference() (diff int64, ok bool) {
	if m.Departure == nil || m.Arrival == nil {
		return 0, false
	}
	return m.Arrival.Quantity - m.Departure.Quantity, true
}

// Clone returns the movement with legs of its own, so that a holder of one copy cannot
// change the other through the shared pointers.
func (m Movement) Clone() Movement {
	if m.Departure != nil {
		d := *m.Departure
		m.Departure = &d
	}
	if m.Arrival != nil {
		a := *m.Arrival
		m.Arrival = &a
	}
	return m
}

// Apply returns the movement with e's leg recorded. It does not check for conflicts:
// that is the Ledger's job, and the store's, whose writes a concurrent batch cannot
// silently overtake.
func (m Movement) Apply(e Event) Movement {
	m.ID, m.ProductID = e.MovementID, e.ProductID
	leg := &Leg{WarehouseID: e.WarehouseID, Source: e.Source, Timestamp: e.Timestamp, Quantity: e.Quantity}
	if e.Kind == Departure {
		m.Departure = leg
	} else {
		m.Arrival = leg
	}
	return m
}

// MovementCursor is a position in the newest-first movement order: (Time, ID) of the
// last item of a page.
type MovementCursor struct {
	Time time.Time
	ID   MovementID
}

// Before reports whether m comes after the cursor in newest-first order (later pages).
func (c MovementCursor) Before(m Movement) bool {
	t := m.Time()
	if !t.Equal(c.Time) {
		return t.Before(c.Time)
	}
	return bytes.Compare(m.ID[:], c.ID[:]) < 0
}
