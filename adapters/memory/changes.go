package memory

import (
	"context"
	"fmt"
	"sort"
	"time"

	"warehouse/domain"
	"warehouse/ports"
)

// The change log in memory: the changes of every stored event in the store's order, the
// oldest dropped once it holds more than maxChanges events' worth.

// DefaultMaxChanges is how many stored events' changes the store keeps for replay.
const DefaultMaxChanges = 1 << 20

// changeLog is the store's part that keeps changes. s.mu guards it.
type changeLog struct {
	changes   []domain.Change // oldest first
	head      int64
	max       int
	followers map[chan int64]struct{}
}

// SetMaxChanges bounds the changes kept for replay to those of n stored events.
func (s *Store) SetMaxChanges(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log.max = n
	s.log.trim()
}

// appendChanges logs the changes of stored, which the store's ledger holds now, and
// tells the followers. s.mu is held.
func (s *Store) appendChanges(stored []domain.Event, now time.Time) {
	if len(stored) == 0 {
		return
	}
	s.log.changes = append(s.log.changes, domain.ChangesOf(stored, s.ledger, s.log.head+1, now)...)
	s.log.head += int64(len(stored)) * domain.ChangesPerEvent
	s.log.trim()
	for ch := range s.log.followers {
		offer(ch, s.log.head)
	}
}

func (l *changeLog) trim() {
	if n := len(l.changes) - l.max; l.max > 0 && n > 0 {
		l.changes = append(l.changes[:0:0], l.changes[n:]...)
	}
}

// offer sends h on ch, replacing a hint not yet taken, without blocking. Only the store
// sends on ch, under its lock.
func offer(ch chan int64, h int64) {
	select {
	case ch <- h:
	default:
		select {
		case <-ch:
		default:
		}
		select {
		case ch <- h:
		default:
		}
	}
}

// ChangesAfter implements ports.ChangeLog.
func (s *Store) ChangesAfter(ctx context.Context, after int64, limit int) ([]domain.Change, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ports.ErrUnavailable, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l := &s.log
	switch {
	case after > l.head:
		return nil, fmt.Errorf("%w: position %d is ahead of the change log's head %d", domain.ErrInvalid, after, l.head)
	case after == l.head:
		return nil, nil
	}
	oldest := l.head + 1 - int64(len(l.changes))*domain.ChangesPerEvent // position of the oldest change kept
	if after < oldest-1 {
		return nil, fmt.Errorf("%w: changes after position %d were pruned; the oldest kept is %d", ports.ErrGone, after, oldest)
	}
	i := sort.Search(len(l.changes), func(i int) bool { return l.changes[i].StockPosition() > after })
	n := min(limit, len(l.changes)-i)
	return append([]domain.Change(nil), l.changes[i:i+n]...), nil
}

// Head implements ports.ChangeLog.
func (s *Store) Head(ctx context.Context) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("%w: %w", ports.ErrUnavailable, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.head, nil
}

// Follow implements ports.ChangeLog.
func (s *Store) Follow(ctx context.Context) <-chan int64 {
	ch := make(chan int64, 1)
	s.mu.Lock()
	if s.log.followers == nil {
		s.log.followers = make(map[chan int64]struct{})
	}
	s.log.followers[ch] = struct{}{}
	s.mu.Unlock()
	go func() {
		<-ctx.Done()
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.log.followers, ch)
		close(ch)
	}()
	return ch
}

// PruneChanges implements ports.ChangeLog.
func (s *Store) PruneChanges(ctx context.Context, before time.Time) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("%w: %w", ports.ErrUnavailable, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l := &s.log
	i := sort.Search(len(l.changes), func(i int) bool { return !l.changes[i].Stock.UpdatedAt.Before(before) })
	l.changes = append(l.changes[:0:0], l.changes[i:]...)
	return int64(i) * domain.ChangesPerEvent, nil
}
