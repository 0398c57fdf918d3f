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
