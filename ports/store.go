package ports

import (
	"context"

	"warehouse/domain"
)

// Store keeps events, movements and stock. It is safe for concurrent use by several
// goroutines and, for the PostgreSQL store, by several processes: the result of any
// interleaving of batches is that of some serial order of them.
type Store interface {
	Queries
	Pinger
	ChangeLog

	// Apply stores a batch of valid events in one transaction, with their changes in the
	// change log, and returns one result per event, in order: nil when stored, or an error wrapping domain.ErrDuplicate,
	// domain.ErrConflict or domain.ErrInsufficientStock when that event changed nothing.
	// Events are judged in order, each against the ledger as left by the ones before it:
	//   - the same (source, id) as a stored event is a duplicate;
	//   - a second event for a stored (movement_id, event) is a duplicate when its data is
	//     identical field by field, else a conflict;
	//   - an arrival and a departure of one movement naming different products: the later
	//     one is a conflict;
	//   - a departure larger than the stock it leaves is insufficient stock; stock is never
	//     negative after any event, not only at the end of the batch.
	// A non-nil err means nothing was stored; it wraps ErrUnavailable when the database
	// could not be reached, and the caller may retry the same batch: a commit whose outcome
	// was unknown is settled by the ledger's unique keys.
	Apply(ctx context.Context, events []domain.Event) (results []error, err error)
}

// Pinger checks that a dependency answers; readiness probes call it.
type Pinger interface {
	// Ping returns nil when the dependency answers, else an error wrapping ErrUnavailable.
	Ping(ctx context.Context) error
}
