package ports

import (
	"context"
	"errors"
	"time"

	"warehouse/domain"
)

// ErrGone marks a change-log position older than what the log still holds: the changes
// after it were pruned, and a reader must start again from the current state. HTTP maps
// it to 410.
var ErrGone = errors.New("gone")

// ChangeLog is the ledger's changes in commit order (see domain.Change): every batch that
// stores events appends their changes at the next positions, in the same transaction, so
// the log has no gaps and never shows a change before the ones committed ahead of it.
// Implementations are safe for concurrent use, and the PostgreSQL one across processes.
type ChangeLog interface {
	// ChangesAfter returns the changes of the events whose stock change lies after
	// position after, oldest first: at most about limit of them (a store may return the
	// whole of its last batch). An empty answer means there is nothing after after yet.
	// It fails with an error wrapping ErrGone when changes after after were pruned, and
	// with one wrapping domain.ErrInvalid when after is ahead of the newest position.
	ChangesAfter(ctx context.Context, after int64, limit int) ([]domain.Change, error)
	// Head returns the newest position in the log: the stock change of the last stored
	// event, 0 while none is.
	Head(ctx context.Context) (int64, error)
	// Follow sends a position on the returned channel after commits that moved the head,
	// the newest it knows of (a hint: a reader reads the log up to it, or further), until
	// ctx ends. Hints may be merged or, across a lost connection, missed: a follower also
	// reads the log on a timer of its own. The channel is closed when ctx ends.
	Follow(ctx context.Context) <-chan int64
	// PruneChanges drops the changes of batches committed before before and returns how
	// many changes it dropped; a reader behind them then gets ErrGone.
	PruneChanges(ctx context.Context, before time.Time) (int64, error)
}

// StreamFilter selects the changes of one warehouse, one product or one stock row; zero
// fields select all.
type StreamFilter struct {
	Warehouse *domain.WarehouseID
	Product   *domain.ProductID
}

// Matches reports whether c is a change of the filter's warehouse and product: those of
// its event, which are also those of its stock row and one leg of its movement.
func (f StreamFilter) Matches(c domain.Change) bool {
	return (f.Warehouse == nil || *f.Warehouse == c.Stock.WarehouseID) &&
		(f.Product == nil || *f.Product == c.Stock.ProductID)
}

// ErrTooManyClients is a subscription refused because the stream's connection cap is
// reached. HTTP maps it to 503.
var ErrTooManyClients = errors.New("too many stream clients")

// ErrSlowClient ends a subscription whose reader fell behind by more than its buffer:
// the reader resumes from the last change it took.
var ErrSlowClient = errors.New("stream client too slow: buffer overflowed")

// FromNow is the position a reader that wants only the changes committed from now on
// subscribes after.
const FromNow int64 = -1

// ChangeStream delivers the change log to many readers: first what each missed, from the
// log, then live changes as they are committed.
type ChangeStream interface {
	// Subscribe returns the changes after position after (FromNow: only those committed
	// from now on) that match f. Its errors are those of ChangeLog.ChangesAfter, and
	// ErrTooManyClients.
	Subscribe(ctx context.Context, after int64, f StreamFilter) (Subscription, error)
	// Stats counts the stream's subscribers.
	Stats() StreamStats
}

// StreamStats counts a stream's subscribers.
type StreamStats struct {
	// Clients is how many subscriptions are open.
	Clients int
	// Dropped is how many subscriptions were ended for falling behind (ErrSlowClient).
	Dropped int64
}

// Subscription is one reader's view of the stream. It is used by one goroutine.
type Subscription interface {
	// Next returns the next change, with nothing skipped and nothing repeated: positions
	// grow. It blocks until one is committed or ctx ends, and fails with ErrSlowClient
	// when the reader fell too far behind, or with the stream's error when it stopped.
	Next(ctx context.Context) (domain.Change, error)
	// Pending returns how many changes Next can return without waiting, so that a
	// writer flushes once per burst rather than once per change.
	Pending() int
	// Close ends the subscription; it is safe to call more than once.
	Close()
}
