package application

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"warehouse/domain"
	"warehouse/ports"
)

// Queries implements ports.Queries on a store. It checks the rules of a read that no
// inbound adapter should have to know (page sizes, windows, the order of bounds) and
// resolves times relative to now, before the store sees the filter. Adapters parse;
// Queries validates.
type Queries struct {
	store ports.Queries
	now   func() time.Time
}

var _ ports.Queries = (*Queries)(nil)

// NewQueries returns Queries reading from store, with the wall clock as now.
func NewQueries(store ports.Queries) *Queries { return NewQueriesWithClock(store, time.Now) }

// NewQueriesWithClock returns Queries reading from store, with now as the clock that
// relative filters (older_than, the default route window) are resolved against.
func NewQueriesWithClock(store ports.Queries, now func() time.Time) *Queries {
	return &Queries{store: store, now: now}
}

// Movement returns one movement.
func (q *Queries) Movement(ctx context.Context, id domain.MovementID) (domain.Movement, error) {
	return q.store.Movement(ctx, id)
}

// Stock returns one stock row.
func (q *Queries) Stock(ctx context.Context, w domain.WarehouseID, p domain.ProductID) (domain.Stock, error) {
	return q.store.Stock(ctx, w, p)
}

// Movements lists movements. OlderThan becomes DepartedBefore, now less OlderThan.
func (q *Queries) Movements(ctx context.Context, f ports.MovementFilter) (ports.MovementPage, error) {
	if err := checkLimit(f.Limit); err != nil {
		return ports.MovementPage{}, err
	}
	if f.Status != "" {
		if _, err := domain.ParseMovementStatus(string(f.Status)); err != nil {
			return ports.MovementPage{}, err
		}
	}
	if err := checkWindow(f.Since, f.Until); err != nil {
		return ports.MovementPage{}, err
	}
	if f.OlderThan < 0 {
		return ports.MovementPage{}, &domain.FieldError{Field: "older_than", Rule: "must not be negative"}
	}
	if f.OlderThan > 0 {
		f.DepartedBefore = q.now().UTC().Add(-f.OlderThan)
	}
	return q.store.Movements(ctx, f)
}

// WarehouseStock lists a warehouse's stock.
func (q *Queries) WarehouseStock(ctx context.Context, f ports.StockFilter) (ports.StockPage, error) {
	if err := checkLimit(f.Limit); err != nil {
		return ports.StockPage{}, err
	}
	return q.store.WarehouseStock(ctx, f)
}

// StockAsOf folds one stock row's events at or before asOf.
func (q *Queries) StockAsOf(ctx context.Context, w domain.WarehouseID, p domain.ProductID, asOf time.Time) (domain.StockAsOf, error) {
	return q.store.StockAsOf(ctx, w, p, asOf.UTC())
}

// WarehouseStockAsOf is StockAsOf for a warehouse's products.
func (q *Queries) WarehouseStockAsOf(ctx context.Context, f ports.StockFilter, asOf time.Time) (ports.StockAsOfPage, error) {
	if err := checkLimit(f.Limit); err != nil {
		return ports.StockAsOfPage{}, err
	}
	return q.store.WarehouseStockAsOf(ctx, f, asOf.UTC())
}

// StockHistory lists one stock row's events with their balances.
func (q *Queries) StockHistory(ctx context.Context, f ports.HistoryFilter) (ports.HistoryPage, error) {
	if err := checkLimit(f.Limit); err != nil {
		return ports.HistoryPage{}, err
	}
	if err := checkWindow(f.Since, f.Until); err != nil {
		return ports.HistoryPage{}, err
	}
	return q.store.StockHistory(ctx, f)
}

// Routes adds up the routes in the window; a window with one bound only, or wider than
// MaxRouteWindow, is invalid. Without bounds the window is the DefaultRouteWindow up to
// the end of the current minute: every request of one minute asks the same question, so a
// dashboard polling the default window shares one cached answer (or one query) instead of
// asking a new one every microsecond.
func (q *Queries) Routes(ctx context.Context, f ports.RouteFilter) (ports.RoutePage, error) {
	if err := checkLimit(f.Limit); err != nil {
		return ports.RoutePage{}, err
	}
	switch {
	case f.Since.IsZero() && f.Until.IsZero():
		f.Until = q.now().UTC().Truncate(time.Minute).Add(time.Minute)
		f.Since = f.Until.Add(-ports.DefaultRouteWindow)
	case f.Since.IsZero() || f.Until.IsZero():
		return ports.RoutePage{}, &domain.FieldError{Field: "since", Rule: "and until must be given together, or neither"}
	}
	if err := checkWindow(f.Since, f.Until); err != nil {
		return ports.RoutePage{}, err
	}
	if f.Until.Sub(f.Since) > ports.MaxRouteWindow {
		return ports.RoutePage{}, &domain.FieldError{Field: "since", Rule: fmt.Sprintf("and until are more than %d days apart", ports.MaxRouteWindow/(24*time.Hour))}
	}
	return q.store.Routes(ctx, f)
}

// InTransit lists what left w and has not arrived.
func (q *Queries) InTransit(ctx context.Context, w domain.WarehouseID) ([]domain.TransitLoad, error) {
	return q.store.InTransit(ctx, w)
}

// Event returns one stored event.
func (q *Queries) Event(ctx context.Context, source, id string) (domain.StoredEvent, error) {
	return q.store.Event(ctx, source, id)
}

// checkLimit checks a page size: 1..ports.MaxListLimit.
func checkLimit(n int) error {
	if n < 1 || n > ports.MaxListLimit {
		return &domain.FieldError{Field: "limit", Rule: fmt.Sprintf("is not an integer from 1 to %d", ports.MaxListLimit), Value: strconv.Itoa(n)}
	}
	return nil
}

// checkWindow checks that since comes before until when both are set.
func checkWindow(since, until time.Time) error {
	if !since.IsZero() && !until.IsZero() && !since.Before(until) {
		return &domain.FieldError{Field: "since", Rule: "must be before until"}
	}
	return nil
}
