package domain

import (
	"bytes"
	"time"
)

// StockKey names one stock row: a product at a warehouse.
type StockKey struct {
	Warehouse WarehouseID
	Product   ProductID
}

// Compare orders keys by warehouse, then product, byte-wise as PostgreSQL orders uuid
// values, for slices.SortFunc. The PostgreSQL store writes stock rows in this order, and
// locks them in it when it locks them (after a lost race), so concurrent batches cannot
// deadlock.
func (k StockKey) Compare(o StockKey) int {
	if c := bytes.Compare(k.Warehouse[:], o.Warehouse[:]); c != 0 {
		return c
	}
	return bytes.Compare(k.Product[:], o.Product[:])
}

// Less reports whether k sorts before o in Compare's order.
func (k StockKey) Less(o StockKey) bool { return k.Compare(o) < 0 }

// Stock is how much of a product a warehouse holds now.
type Stock struct {
	WarehouseID WarehouseID
	ProductID   ProductID
	Quantity    int64
	// UpdatedAt is when the service last changed this row.
	UpdatedAt time.Time
}
