package ports

import (
	"context"

	"warehouse/domain"
)

// Changes names what a committed batch changed.
type Changes struct {
	Movements []domain.MovementID
	Stock     []domain.StockKey
}

// ChangeNotifier hears about committed changes, so that a cache in the same process can
// drop what they affect at once.
type ChangeNotifier interface {
	// Notify is called after commit. It must not block for long and cannot fail the batch.
	Notify(ctx context.Context, c Changes)
}
