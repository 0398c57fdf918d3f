package application

import (
	"context"
	"fmt"

	"warehouse/domain"
	"warehouse/ports"
)

// Recorder implements ports.Recorder on a store, telling a notifier what each committed
// batch changed.
type Recorder struct {
	store    ports.Store
	notifier ports.ChangeNotifier
}

var _ ports.Recorder = (*Recorder)(nil)

// NewRecorder returns a Recorder. A nil notifier means nobody listens (consume-only processes).
func NewRecorder(store ports.Store, notifier ports.ChangeNotifier) *Recorder {
	return &Recorder{store: store, notifier: notifier}
}

// Record applies events and notifies the changes of those stored.
func (r *Recorder) Record(ctx context.Context, events []domain.Event) ([]error, error) {
	if len(events) == 0 {
		return nil, nil
	}
	results, err := r.store.Apply(ctx, events)
	if err != nil {
		return nil, fmt.Errorf("apply batch of %d: %w", len(events), err)
	}
	if len(results) != len(events) {
		return nil, fmt.Errorf("apply batch of %d: store returned %d results", len(events), len(results))
	}
	if r.notifier != nil {
		if c := changesOf(events, results); len(c.Movements) > 0 {
			r.notifier.Notify(ctx, c)
		}
	}
	return results, nil
}

// changesOf lists each movement and stock row changed by a stored event once.
func changesOf(events []domain.Event, results []error) ports.Changes {
	var c ports.Changes
	seenM := make(map[domain.MovementID]struct{}, len(events))
	seenS := make(map[domain.StockKey]struct{}, len(events))
	for i, e := range events {
		if results[i] != nil {
			continue
		}
		if _, ok := seenM[e.MovementID]; !ok {
			seenM[e.MovementID] = struct{}{}
			c.Movements = append(c.Movements, e.MovementID)
		}
		if _, ok := seenS[e.StockKey()]; !ok {
			seenS[e.StockKey()] = struct{}{}
			c.Stock = append(c.Stock, e.StockKey())
		}
	}
	return c
}
