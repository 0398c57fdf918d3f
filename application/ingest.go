package application

import (
	"context"

	"warehouse/domain"
	"warehouse/ports"
)

// DirectIngest is ports.EventPublisher without a broker, for the dev mode: it records the
// events at once through the Recorder, as a consumer does with what the broker delivers.
// Events the ledger refuses (duplicates, conflicts, short of stock) are judged as the
// consumer judges them and change nothing; only a failure of the store is an error.
type DirectIngest struct {
	rec *Recorder
}

var _ ports.EventPublisher = (*DirectIngest)(nil)

// NewDirectIngest returns an EventPublisher that records through rec.
func NewDirectIngest(rec *Recorder) *DirectIngest { return &DirectIngest{rec: rec} }

// PublishEvents records events in one batch.
func (d *DirectIngest) PublishEvents(ctx context.Context, events []domain.Event) error {
	_, err := d.rec.Record(ctx, events)
	return err
}
