package postgres

import (
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"warehouse/domain"
)

// eventRow is a row of events.
type eventRow struct {
	bun.BaseModel `bun:"table:events"`

	Source      string     `bun:"source"`
	ID          string     `bun:"id"`
	MovementID  uuid.UUID  `bun:"movement_id,type:uuid"`
	Event       string     `bun:"event"`
	WarehouseID uuid.UUID  `bun:"warehouse_id,type:uuid"`
	ProductID   uuid.UUID  `bun:"product_id,type:uuid"`
	Quantity    int64      `bun:"quantity"`
	OccurredAt  time.Time  `bun:"occurred_at"`
	EventTime   *time.Time `bun:"event_time"`
	Attributes  []byte     `bun:"attributes,type:jsonb,nullzero"`
}

func newEventRow(e domain.Event) eventRow {
	r := eventRow{
		Source: e.Source, ID: e.ID, MovementID: uuid.UUID(e.MovementID), Event: string(e.Kind),
		WarehouseID: uuid.UUID(e.WarehouseID), ProductID: uuid.UUID(e.ProductID),
		Quantity: e.Quantity, OccurredAt: e.Timestamp, Attributes: e.Attributes,
	}
	if !e.Time.IsZero() {
		t := e.Time
		r.EventTime = &t
	}
	return r
}

// movementRow is a row of movements; the leg columns are NULL until that leg is seen.
type movementRow struct {
	bun.BaseModel `bun:"table:movements"`

	MovementID           uuid.UUID  `bun:"movement_id,pk,type:uuid"`
	ProductID            uuid.UUID  `bun:"product_id,type:uuid"`
	DepartureWarehouseID *uuid.UUID `bun:"departure_warehouse_id,type:uuid"`
	DepartureSource      *string    `bun:"departure_source"`
	DepartureAt          *time.Time `bun:"departure_at,type:timestamptz"`
	DepartureQuantity    *int64     `bun:"departure_quantity,type:bigint"`
	ArrivalWarehouseID   *uuid.UUID `bun:"arrival_warehouse_id,type:uuid"`
	ArrivalSource        *string    `bun:"arrival_source"`
	ArrivalAt            *time.Time `bun:"arrival_at,type:timestamptz"`
	ArrivalQuantity      *int64     `bun:"arrival_quantity,type:bigint"`
}

// movementColumns lists movementRow's columns for hand-written SELECT and RETURNING lists.
const movementColumns = `movement_id, product_id,
	departure_warehouse_id, departure_source, departure_at, departure_quantity,
	arrival_warehouse_id, arrival_source, arrival_at, arrival_quantity`

func (r movementRow) domain() domain.Movement {
	m := domain.Movement{ID: domain.MovementID(r.MovementID), ProductID: domain.ProductID(r.ProductID)}
	if r.DepartureAt != nil {
		m.Departure = &domain.Leg{
			WarehouseID: domain.WarehouseID(deref(r.DepartureWarehouseID)), Source: deref(r.DepartureSource),
			Timestamp: r.DepartureAt.UTC(), Quantity: deref(r.DepartureQuantity),
		}
	}
	if r.ArrivalAt != nil {
		m.Arrival = &domain.Leg{
			WarehouseID: domain.WarehouseID(deref(r.ArrivalWarehouseID)), Source: deref(r.ArrivalSource),
			Timestamp: r.ArrivalAt.UTC(), Quantity: deref(r.ArrivalQuantity),
		}
	}
	return m
}

func newMovementRow(m domain.Movement) movementRow {
	r := movementRow{MovementID: uuid.UUID(m.ID), ProductID: uuid.UUID(m.ProductID)}
	if d := m.Departure; d != nil {
		w, src, at, q := uuid.UUID(d.WarehouseID), d.Source, d.Timestamp, d.Quantity
		r.DepartureWarehouseID, r.DepartureSource, r.DepartureAt, r.DepartureQuantity = &w, &src, &at, &q
	}
	if a := m.Arrival; a != nil {
		w, src, at, q := uuid.UUID(a.WarehouseID), a.Source, a.Timestamp, a.Quantity
		r.ArrivalWarehouseID, r.ArrivalSource, r.ArrivalAt, r.ArrivalQuantity = &w, &src, &at, &q
	}
	return r
}

// stockRow is a row of stock.
type stockRow struct {
	bun.BaseModel `bun:"table:stock"`

	WarehouseID uuid.UUID `bun:"warehouse_id,pk,type:uuid"`
	ProductID   uuid.UUID `bun:"product_id,pk,type:uuid"`
	Quantity    int64     `bun:"quantity"`
	UpdatedAt   time.Time `bun:"updated_at"`
}

func (r stockRow) domain() domain.Stock {
	return domain.Stock{
		WarehouseID: domain.WarehouseID(r.WarehouseID), ProductID: domain.ProductID(r.ProductID),
		Quantity: r.Quantity, UpdatedAt: r.UpdatedAt.UTC(),
	}
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
