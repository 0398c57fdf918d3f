package ports

import (
	"context"

	"warehouse/domain"
)

// Recorder is the ingest use case that the consumer calls with each batch of valid events.
type Recorder interface {
	// Record applies the batch through the store and returns one result per event, with
	// the meaning of Store.Apply. A non-nil err means nothing was stored and the whole
	// batch may be retried.
	Record(ctx context.Context, events []domain.Event) (results []error, err error)
}
