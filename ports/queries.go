package ports

import (
	"context"
	"time"

	"warehouse/domain"
)

// Limits of list queries.
const (
	DefaultListLimit = 50
	MaxListLimit     = 1000
)

// MovementFilter selects movements for Queries.Movements. Zero fields do not filter.
type MovementFilter struct {
	// Warehouse matches either end of a movement.
	Warehouse *domain.WarehouseID
	Product   *domain.ProductID
	Status    domain.MovementStatus
	// Since (inclusive) and Until (exclusive) bound the movement's time.
	Since, Until time.Time
	// OlderThan keeps the movements whose departure is older than this, relative to now:
	// application.Queries turns it into DepartedBefore, which is what stores read.
	OlderThan time.Duration
	// DepartedBefore keeps the movements with a departure timestamp before it; movements
	// without a departure are left out.
	DepartedBefore time.Time
	// After continues a previous page; nil starts from the newest movement.
	After *domain.MovementCursor
	// Limit is the page size, 1..MaxListLimit.
	Limit int
}

// MovementPage is one page of movements, newest first by (time, movement id).
type MovementPage struct {
	Items []domain.Movement
	// Next continues the listing; nil on the last page.
	Next *domain.MovementCursor
}

// StockFilter selects the stock rows of one warehouse for Queries.WarehouseStock.
type StockFilter struct {
	Warehouse domain.WarehouseID
	// After continues a previous page: only products greater than it; nil starts at the first.
	After *domain.ProductID
	// Limit is the page size, 1..MaxListLimit.
	Limit int
}

// StockPage is one page of a warehouse's stock, ordered by product id.
type StockPage struct {
	Items []domain.Stock
	// Next continues the listing; nil on the last page.
	Next *domain.ProductID
}

// Queries answers the read side of the API. Implementations are safe for concurrent use.
// Errors wrap domain.ErrNotFound for an unknown movement or stock row and ErrUnavailable
// when the backing store cannot be reached. A read the implementation sheds because too
// many are running (the store is healthy, only busy) fails with ErrOverloaded, never
// with ErrUnavailable; decorators pass it on unchanged and do not cache it.
type Queries interface {
	History

	// Movement returns one movement with the legs seen so far.
	Movement(ctx context.Context, id domain.MovementID) (domain.Movement, error)
	// Stock returns what warehouse holds of product; ErrNotFound when the product was never
	// seen at that warehouse.
	Stock(ctx context.Context, warehouse domain.WarehouseID, product domain.ProductID) (domain.Stock, error)
	// Movements lists movements newest first by (time, movement id), keyset-paginated.
	Movements(ctx context.Context, f MovementFilter) (MovementPage, error)
	// WarehouseStock lists one warehouse's stock rows ordered by product id.
	WarehouseStock(ctx context.Context, f StockFilter) (StockPage, error)
}

// Bounds of the route analytics window.
const (
	// DefaultRouteWindow is the window of Queries.Routes when the filter sets none.
	DefaultRouteWindow = 30 * 24 * time.Hour
	// MaxRouteWindow is the widest window Queries.Routes accepts.
	MaxRouteWindow = 366 * 24 * time.Hour
)

// StockAsOfPage is one page of a warehouse's stock as of a time, ordered by product id.
type StockAsOfPage struct {
	Items []domain.StockAsOf
	// Next continues the listing; nil on the last page.
	Next *domain.ProductID
}

// HistoryFilter selects the stored events of one stock row for Queries.StockHistory.
type HistoryFilter struct {
	Warehouse domain.WarehouseID
	Product   domain.ProductID
	// Since (inclusive) and Until (exclusive) bound the events' timestamps; zero does not.
	Since, Until time.Time
	// After continues a previous page: only events after that position; nil starts at
	// the oldest.
	After *domain.Position
	// Limit is the page size, 1..MaxListLimit.
	Limit int
}

// HistoryPage is one page of a stock row's history, oldest first by position.
type HistoryPage struct {
	// Items may be shared with concurrent readers of the same page (a store answers
	// identical requests with one read): read them, never change them.
	Items []domain.HistoryEntry
	// Next continues the listing; nil on the last page.
	Next *domain.Position
}

// RouteCursor is a position in the route order: the last route of a page.
type RouteCursor struct {
	Movements int64
	From, To  domain.WarehouseID
}

// RouteFilter selects the completed movements that Queries.Routes adds up.
type RouteFilter struct {
	// Since (inclusive) and Until (exclusive) bound the movements' departure time. Both
	// zero mean the last DefaultRouteWindow; the window is at most MaxRouteWindow.
	Since, Until time.Time
	// From and To keep one sender or one receiver; nil keeps all.
	From, To *domain.WarehouseID
	// Product keeps one product; nil keeps all.
	Product *domain.ProductID
	// After continues a previous page; nil starts at the busiest route.
	After *RouteCursor
	// Limit is the page size, 1..MaxListLimit.
	Limit int
}

// RoutePage is one page of routes, by movements (most first), then sender and receiver.
type RoutePage struct {
	Items []domain.Route
	// Next continues the listing; nil on the last page.
	Next *RouteCursor
}

// History answers questions about the ledger's past. Every answer is a fold of the
// stored events in business-time order (their timestamps), ties broken by the ledger's
// order (domain.Position), so that answers agree with each other and with the current
// stock: the stock as of a time after the newest event is the stock now, and the balance
// of a history entry is the stock as of its timestamp (when no other event of the row
// shares it). Implementations are safe for concurrent use; errors are those of Queries.
type History interface {
	// StockAsOf folds the events of one stock row whose timestamp is at or before asOf;
	// ErrNotFound when there is none.
	StockAsOf(ctx context.Context, w domain.WarehouseID, p domain.ProductID, asOf time.Time) (domain.StockAsOf, error)
	// WarehouseStockAsOf is StockAsOf for every product of one warehouse that has an
	// event at or before asOf, by product id, paginated like WarehouseStock.
	WarehouseStockAsOf(ctx context.Context, f StockFilter, asOf time.Time) (StockAsOfPage, error)
	// StockHistory lists the events of one stock row oldest first, each with the balance
	// after it. A page's balances are right whatever page came before it.
	StockHistory(ctx context.Context, f HistoryFilter) (HistoryPage, error)
	// Routes adds up the completed movements of each (sender, receiver) pair whose
	// departure is in the filter's window. Since and Until must both be set.
	Routes(ctx context.Context, f RouteFilter) (RoutePage, error)
	// InTransit lists, by product id, what left warehouse w and has not arrived.
	InTransit(ctx context.Context, w domain.WarehouseID) ([]domain.TransitLoad, error)
	// Event returns the stored event of that identity; ErrNotFound when unknown.
	Event(ctx context.Context, source, id string) (domain.StoredEvent, error)
}
