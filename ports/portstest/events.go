// Package portstest holds the contract suites that every implementation of a port must
// pass, and the event builders they share with other tests.
package portstest

import (
	"time"

	"github.com/google/uuid"

	"warehouse/domain"
)

// Sample is the sample departure/arrival pair of docs/contract.md: 100 leave WH-3322 at
// 12:12:56, 98 reach WH-3423 at 14:34:56 — 8520 s and 2 lost on the way.
type Sample struct {
	Movement  domain.MovementID
	Product   domain.ProductID
	From, To  domain.WarehouseID
	Departure domain.Event
	Arrival   domain.Event
}

// NewSample returns the sample pair with fresh random ids, so tests can share a store.
func NewSample() Sample {
	s := Sample{
		Movement: domain.MovementID(uuid.New()),
		Product:  domain.ProductID(uuid.New()),
		From:     domain.WarehouseID(uuid.New()),
		To:       domain.WarehouseID(uuid.New()),
	}
	s.Departure = Event(domain.Departure, s.Movement, s.From, s.Product, 100, "2025-02-18T12:12:56Z")
	s.Departure.Source = "WH-3322"
	s.Arrival = Event(domain.Arrival, s.Movement, s.To, s.Product, 98, "2025-02-18T14:34:56Z")
	s.Arrival.Source = "WH-3423"
	return s
}

// Event builds a valid event with a fresh identity; it panics on invalid input, which
// is a bug in the calling test.
func Event(kind domain.EventKind, m domain.MovementID, w domain.WarehouseID, p domain.ProductID, qty int64, ts string) domain.Event {
	e, err := domain.NewEvent(domain.EventInput{
		ID:          uuid.NewString(),
		Source:      "WH-TEST",
		SpecVersion: domain.SpecVersion,
		Type:        domain.EventType,
		Time:        time.Date(2025, 2, 18, 15, 0, 0, 0, time.UTC),
		MovementID:  m.String(),
		WarehouseID: w.String(),
		ProductID:   p.String(),
		Event:       string(kind),
		Timestamp:   ts,
		Quantity:    qty,
	})
	if err != nil {
		panic(err)
	}
	return e
}

// Supply builds a supplier arrival (an arrival that will never get a departure) that
// puts qty of p into w.
func Supply(w domain.WarehouseID, p domain.ProductID, qty int64) domain.Event {
	return Event(domain.Arrival, domain.MovementID(uuid.New()), w, p, qty, "2025-01-01T00:00:00Z")
}

// Renewed returns e under a new CloudEvents identity with the same data.
func Renewed(e domain.Event) domain.Event {
	e.ID = uuid.NewString()
	return e
}
