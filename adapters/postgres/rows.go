package postgres

import (
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"warehouse/domain"
)

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

// scan reads a row of movementColumns from rows (database/sql's or pgx's).
func (r *movementRow) scan(rows interface{ Scan(dest ...any) error }) error {
	return rows.Scan(&r.MovementID, &r.ProductID,
		&r.DepartureWarehouseID, &r.DepartureSource, &r.DepartureAt, &r.DepartureQuantity,
		&r.ArrivalWarehouseID, &r.ArrivalSource, &r.ArrivalAt, &r.ArrivalQuantity)
}

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
