package cache

import (
	"context"
	"time"

	"warehouse/domain"
	"warehouse/ports"
)

// The ledger's past passes through uncached. An answer about a past time changes when a
// late event with an earlier timestamp arrives, and a write names the stock rows it
// changed, not the past instants of each whose answers it changed: invalidating them
// would mean keeping, per row, every cached instant. Not caching them keeps every answer
// exact; they are indexed folds that the store answers without scanning history (see
// the postgres store's checkpoints), and they are far rarer than the current reads.

// StockAsOf passes through to the next Queries.
func (q *Queries) StockAsOf(ctx context.Context, w domain.WarehouseID, p domain.ProductID, asOf time.Time) (domain.StockAsOf, error) {
	return q.next.StockAsOf(ctx, w, p, asOf)
}

// WarehouseStockAsOf passes through to the next Queries.
func (q *Queries) WarehouseStockAsOf(ctx context.Context, f ports.StockFilter, asOf time.Time) (ports.StockAsOfPage, error) {
	return q.next.WarehouseStockAsOf(ctx, f, asOf)
}

// StockHistory passes through to the next Queries.
func (q *Queries) StockHistory(ctx context.Context, f ports.HistoryFilter) (ports.HistoryPage, error) {
	return q.next.StockHistory(ctx, f)
}

// Routes passes through to the next Queries.
func (q *Queries) Routes(ctx context.Context, f ports.RouteFilter) (ports.RoutePage, error) {
	return q.next.Routes(ctx, f)
}

// InTransit passes through to the next Queries.
func (q *Queries) InTransit(ctx context.Context, w domain.WarehouseID) ([]domain.TransitLoad, error) {
	return q.next.InTransit(ctx, w)
}

// Event passes through to the next Queries.
func (q *Queries) Event(ctx context.Context, source, id string) (domain.StoredEvent, error) {
	return q.next.Event(ctx, source, id)
}
