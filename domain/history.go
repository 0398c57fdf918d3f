package domain

import (
	"bytes"
	"math"
	"slices"
	"time"
)

// The ledger's past: every stored event has a place in business time (its Timestamp,
// when the goods moved) and in the ledger (its sequence number, the order in which the
// service committed it). Answers about the past are folds of the stored events in
// business-time order, ties broken by the ledger order.

// Position is an event's place in a stock row's history: its timestamp, then its ledger
// sequence number. Positions of the events of one stock row are distinct.
type Position struct {
	Timestamp time.Time
	Seq       int64
}

// Compare orders positions by timestamp, then by sequence number.
func (p Position) Compare(o Position) int {
	if c := p.Timestamp.Compare(o.Timestamp); c != 0 {
		return c
	}
	switch {
	case p.Seq < o.Seq:
		return -1
	case p.Seq > o.Seq:
		return 1
	}
	return 0
}

// StockAsOf is what a warehouse held of a product at a moment of business time: the fold
// of every stored event of that stock row whose timestamp is at or before AsOf.
type StockAsOf struct {
	WarehouseID WarehouseID
	ProductID   ProductID
	// Quantity may be negative: when a warehouse reports a departure with an earlier time
	// than the arrival it drew on (the ledger judged them in the order they came), the
	// fold in business time dips below zero where the current stock never did.
	Quantity int64
	AsOf     time.Time
	// UpdatedAt is when the service last stored an event that this answer folds.
	UpdatedAt time.Time
}

// HistoryEntry is one stored event of a stock row, with the balance of the row after it.
type HistoryEntry struct {
	MovementID MovementID
	Kind       EventKind
	Source     string
	EventID    string
	Position   Position
	// RecordedAt is when the service committed the event.
	RecordedAt time.Time
	// Delta is the signed change of the event: + for an arrival, − for a departure.
	Delta int64
	// Balance is the running quantity after this event in business-time order.
	Balance int64
}

// TransitStats summarises the transit times of a route in whole seconds (see
// Movement.ElapsedSeconds): nearest-rank percentiles and the maximum.
type TransitStats struct {
	P50, P90, P99, Max int64
}

// Route is what the completed movements from one warehouse to another add up to.
type Route struct {
	From, To         WarehouseID
	Movements        int64
	QuantitySent     int64
	QuantityReceived int64
	// QuantityLost sums the shortfalls of the movements that arrived short, as a positive
	// number; a movement that arrived with more than it left with does not offset it.
	QuantityLost int64
	Transit      TransitStats
}

// LossRate is the share of the quantity sent that was lost; 0 when nothing was sent.
func (r Route) LossRate() float64 {
	if r.QuantitySent == 0 {
		return 0
	}
	return float64(r.QuantityLost) / float64(r.QuantitySent)
}

// Compare orders routes by movements, most first, then by sender and receiver.
func (r Route) Compare(o Route) int {
	switch {
	case r.Movements > o.Movements:
		return -1
	case r.Movements < o.Movements:
		return 1
	}
	if c := bytes.Compare(r.From[:], o.From[:]); c != 0 {
		return c
	}
	return bytes.Compare(r.To[:], o.To[:])
}

// RouteOf folds completed movements from one warehouse to another into their route.
// Movements that are not completed, or that go elsewhere, are ignored.
func RouteOf(from, to WarehouseID, movements []Movement) Route {
	r := Route{From: from, To: to}
	var transit []int64
	for _, m := range movements {
		if m.Status() != Completed || m.Departure.WarehouseID != from || m.Arrival.WarehouseID != to {
			continue
		}
		r.Movements++
		r.QuantitySent += m.Departure.Quantity
		r.QuantityReceived += m.Arrival.Quantity
		if d, _ := m.QuantityDifference(); d < 0 {
			r.QuantityLost -= d
		}
		secs, _ := m.ElapsedSeconds()
		transit = append(transit, secs)
	}
	r.Transit = transitStats(transit)
	return r
}

// transitStats returns the nearest-rank percentiles of secs: the value at rank ⌈p·n⌉ of
// the sorted values, computed in float64 as PostgreSQL's percentile_disc computes it.
func transitStats(secs []int64) TransitStats {
	if len(secs) == 0 {
		return TransitStats{}
	}
	slices.Sort(secs)
	rank := func(p float64) int64 {
		i := int(math.Ceil(p*float64(len(secs)))) - 1
		return secs[min(max(i, 0), len(secs)-1)]
	}
	return TransitStats{P50: rank(0.5), P90: rank(0.9), P99: rank(0.99), Max: secs[len(secs)-1]}
}

// TransitLoad is what left a warehouse of one product and has not arrived yet.
type TransitLoad struct {
	ProductID ProductID
	Movements int64
	Quantity  int64
	// OldestDeparture is the timestamp of the earliest of those departures.
	OldestDeparture time.Time
}

// StoredEvent is an event as the ledger holds it: as received, and when it was committed.
type StoredEvent struct {
	Event
	Seq        int64
	RecordedAt time.Time
}
