package ports

import (
	"context"

	"warehouse/domain"
)

// EventPublisher hands valid events to the ingest pipeline: the exchange the consumer
// reads, where they meet every other publisher's events and the same processing rules.
type EventPublisher interface {
	// PublishEvents publishes events, in order, and returns nil only once the broker has
	// confirmed every one of them. Any other outcome (a nack, a lost connection, ctx
	// done) is an error wrapping ErrUnavailable: some events may have been published,
	// and publishing them again is safe, since the ledger ignores an event whose
	// (source, id) it holds.
	PublishEvents(ctx context.Context, events []domain.Event) error
}
