package application

import (
	"context"
	"fmt"
	"strconv"

	"warehouse/domain"
	"warehouse/ports"
)

// Queries implements ports.Queries on a store, checking filters and applying the
// default page size before the store sees them.
type Queries struct {
	store ports.Queries
}

var _ ports.Queries = (*Queries)(nil)

// NewQueries returns Queries reading from store.
func NewQueries(store ports.Queries) *Queries { return &Queries{store: store} }

// Movement returns one movement.
func (q *Queries) Movement(ctx context.Context, id domain.MovementID) (domain.Movement, error) {
	return q.store.Movement(ctx, id)
}

// Stock returns one stock row.
func (q *Queries) Stock(ctx context.Context, w domain.WarehouseID, p domain.ProductID) (domain.Stock, error) {
	return q.store.Stock(ctx, w, p)
}

// Movements lists movements; a zero limit means the default.
func (q *Queries) Movements(ctx context.Context, f ports.MovementFilter) (ports.MovementPage, error) {
	var err error
	if f.Limit, err = pageLimit(f.Limit); err != nil {
		return ports.MovementPage{}, err
	}
	if f.Status != "" {
		if _, err := domain.ParseMovementStatus(string(f.Status)); err != nil {
			return ports.MovementPage{}, err
		}
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		return ports.MovementPage{}, &domain.FieldError{Field: "since", Rule: "must be before until"}
	}
	return q.store.Movements(ctx, f)
}

// WarehouseStock lists a warehouse's stock; a zero limit means the default.
func (q *Queries) WarehouseStock(ctx context.Context, f ports.StockFilter) (ports.StockPage, error) {
	var err error
	if f.Limit, err = pageLimit(f.Limit); err != nil {
		return ports.StockPage{}, err
	}
	return q.store.WarehouseStock(ctx, f)
}

func pageLimit(n int) (int, error) {
	switch {
	case n == 0:
		return ports.DefaultListLimit, nil
	case n < 1 || n > ports.MaxListLimit:
		return 0, &domain.FieldError{Field: "limit", Rule: fmt.Sprintf("is outside 1..%d", ports.MaxListLimit), Value: strconv.Itoa(n)}
	}
	return n, nil
}
