package application

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"warehouse/domain"
	"warehouse/ports"
)

// Stream implements ports.ChangeStream on a change log. One follower per process (Run)
// reads each new change once, when the log's followers hint that a commit moved its head
// or on a timer, and hands it to every live subscriber's bounded buffer without waiting:
// a subscriber whose buffer is full is dropped (ports.ErrSlowClient) and resumes from the
// log. A new subscriber first replays the log from its position on its own reads, and
// joins the live ones once it has caught up with the follower, so that nothing is
// skipped or repeated at the seam. Nobody waits on a slow reader: neither the follower,
// nor the other readers, nor ingest.
type Stream struct {
	log  ports.ChangeLog
	opts StreamOptions
	lg   *slog.Logger

	ready   chan struct{} // closed once Run has read the head
	mu      sync.Mutex
	last    int64 // newest position handed to the live subscribers
	live    map[*subscription]struct{}
	open    int   // subscriptions open, replaying or live
	dropped int64 // subscriptions dropped for being slow
	err     error // why the stream stopped; nil while it runs
}

var _ ports.ChangeStream = (*Stream)(nil)

// StreamOptions tunes a Stream; zero fields take the defaults.
type StreamOptions struct {
	// MaxClients caps the open subscriptions (DefaultStreamMaxClients).
	MaxClients int
	// Buffer is how many changes a live subscriber may fall behind before it is dropped
	// (DefaultStreamBuffer).
	Buffer int
	// Poll is how often the follower reads the log without a hint (DefaultStreamPoll).
	Poll time.Duration
	// ReadLimit is how many changes one read of the log asks for (DefaultStreamReadLimit).
	ReadLimit int
}

// Defaults of StreamOptions.
const (
	DefaultStreamMaxClients = 1000
	DefaultStreamBuffer     = 4096
	DefaultStreamPoll       = time.Second
	DefaultStreamReadLimit  = 1000
)

// ErrStreamStopped ends the subscriptions of a stream whose follower stopped (the
// process is shutting down): readers reconnect, to this process or another.
var ErrStreamStopped = fmt.Errorf("%w: change stream stopped", ports.ErrUnavailable)

// NewStream returns a Stream on log; Run must run for it to serve subscribers.
func NewStream(log ports.ChangeLog, opts StreamOptions, lg *slog.Logger) *Stream {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&opts.MaxClients, DefaultStreamMaxClients)
	def(&opts.Buffer, DefaultStreamBuffer)
	def(&opts.ReadLimit, DefaultStreamReadLimit)
	if opts.Poll <= 0 {
		opts.Poll = DefaultStreamPoll
	}
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	return &Stream{log: log, opts: opts, lg: lg.With("component", "stream"), ready: make(chan struct{}),
		live: make(map[*subscription]struct{})}
}

// Run follows the log until ctx ends, then ends every subscription with
// ErrStreamStopped. It returns nil when ctx ends.
func (s *Stream) Run(ctx context.Context) error {
	defer s.stop()
	hints := s.log.Follow(ctx)
	for {
		head, err := s.log.Head(ctx)
		if err == nil {
			s.mu.Lock()
			s.last = head
			s.mu.Unlock()
			close(s.ready)
			break
		}
		s.lg.WarnContext(ctx, "change stream: reading the head", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(s.opts.Poll):
		}
	}
	tick := time.NewTicker(s.opts.Poll)
	defer tick.Stop()
	for {
		hint := int64(-1)
		select {
		case <-ctx.Done():
			return nil
		case h, ok := <-hints:
			if !ok {
				return nil
			}
			hint = h
		case <-tick.C:
		}
		if err := s.catchUp(ctx, hint); err != nil && ctx.Err() == nil {
			s.lg.WarnContext(ctx, "change stream: reading the change log", "err", err)
		}
	}
}

// catchUp hands the changes after s.last to the live subscribers, up to the log's head.
// Without subscribers it only moves s.last to the hint: a subscriber replays from the
// log up to there itself.
func (s *Stream) catchUp(ctx context.Context, hint int64) error {
	s.mu.Lock()
	idle := len(s.live) == 0
	if idle && hint > s.last {
		s.last = hint
	}
	after := s.last
	s.mu.Unlock()
	if idle {
		return nil
	}
	for {
		page, err := s.log.ChangesAfter(ctx, after, s.opts.ReadLimit)
		if errors.Is(err, ports.ErrGone) {
			// Pruned under the follower (it was stalled for the whole retention): the
			// live subscribers have missed changes and must resume from the log.
			s.dropAll(err)
			head, herr := s.log.Head(ctx)
			if herr != nil {
				return herr
			}
			s.mu.Lock()
			s.last = max(s.last, head)
			s.mu.Unlock()
			return nil
		}
		if err != nil || len(page) == 0 {
			return err
		}
		s.broadcast(page)
		after = page[len(page)-1].StockPosition()
	}
}

// broadcast hands page to every live subscriber, dropping those whose buffer is full.
func (s *Stream) broadcast(page []domain.Change) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for sub := range s.live {
	changes:
		for _, c := range page {
			if c.StockPosition() <= sub.from || !sub.filter.Matches(c) {
				continue
			}
			select {
			case sub.ch <- c:
			default:
				s.drop(sub, ports.ErrSlowClient)
				s.dropped++
				break changes
			}
		}
	}
	s.last = max(s.last, page[len(page)-1].StockPosition())
}

// drop ends a live subscription with err. s.mu is held.
func (s *Stream) drop(sub *subscription, err error) {
	delete(s.live, sub)
	sub.err = err
	close(sub.ch)
}

func (s *Stream) dropAll(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for sub := range s.live {
		s.drop(sub, err)
	}
}

func (s *Stream) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = ErrStreamStopped
	for sub := range s.live {
		s.drop(sub, ErrStreamStopped)
	}
}

// Stats implements ports.ChangeStream.
func (s *Stream) Stats() ports.StreamStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return ports.StreamStats{Clients: s.open, Dropped: s.dropped}
}

// Subscribe implements ports.ChangeStream. It waits for Run to have read the head, as
// long as ctx allows. A position to replay from is checked at once: the first page of
// the replay is read before it returns.
func (s *Stream) Subscribe(ctx context.Context, after int64, f ports.StreamFilter) (ports.Subscription, error) {
	select {
	case <-s.ready:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: change stream not started: %w", ports.ErrUnavailable, ctx.Err())
	}
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return nil, s.err
	}
	if open := s.open; open >= s.opts.MaxClients {
		s.mu.Unlock()
		return nil, fmt.Errorf("%w: %d open", ports.ErrTooManyClients, open)
	}
	s.open++
	sub := &subscription{stream: s, filter: f, sent: after, ch: make(chan domain.Change, s.opts.Buffer), replaying: true}
	if after == ports.FromNow {
		sub.sent = s.last
		s.join(sub)
	}
	s.mu.Unlock()
	if sub.replaying {
		page, err := s.log.ChangesAfter(ctx, after, s.opts.ReadLimit)
		if err != nil {
			sub.Close()
			return nil, err
		}
		sub.pending = page
	}
	return sub, nil
}

// join makes sub live from its position on. s.mu is held.
func (s *Stream) join(sub *subscription) {
	sub.replaying = false
	sub.from = sub.sent
	if s.err != nil {
		sub.err = s.err
		close(sub.ch)
		return
	}
	s.live[sub] = struct{}{}
}

// subscription implements ports.Subscription.
type subscription struct {
	stream *Stream
	filter ports.StreamFilter

	// Used by the reader only.
	sent      int64           // stock position of the last change taken (or the start)
	replaying bool            // reading the log, not yet live
	pending   []domain.Change // the replay's current page

	// Set before joining, then read by the follower under stream.mu.
	from int64
	// Written by the follower under stream.mu; ch is closed after err is set.
	ch  chan domain.Change
	err error

	closeOnce sync.Once
}

// Next implements ports.Subscription.
func (sub *subscription) Next(ctx context.Context) (domain.Change, error) {
	s := sub.stream
	for sub.replaying {
		for len(sub.pending) > 0 {
			c := sub.pending[0]
			sub.pending = sub.pending[1:]
			if c.StockPosition() <= sub.sent {
				continue
			}
			sub.sent = c.StockPosition()
			if sub.filter.Matches(c) {
				return c, nil
			}
		}
		s.mu.Lock()
		if sub.sent >= s.last || s.err != nil {
			s.join(sub)
			s.mu.Unlock()
			break
		}
		s.mu.Unlock()
		page, err := s.log.ChangesAfter(ctx, sub.sent, s.opts.ReadLimit)
		if err != nil {
			return domain.Change{}, err
		}
		if len(page) == 0 {
			// The follower heard of a head the log does not show this reader yet (a
			// replica behind the primary): take the rest live.
			s.mu.Lock()
			s.join(sub)
			s.mu.Unlock()
			break
		}
		sub.pending = page
	}
	for {
		select {
		case c, ok := <-sub.ch:
			if !ok {
				return domain.Change{}, sub.closedErr()
			}
			if c.StockPosition() <= sub.sent {
				continue
			}
			sub.sent = c.StockPosition()
			return c, nil
		case <-ctx.Done():
			return domain.Change{}, ctx.Err()
		}
	}
}

// closedErr is why the follower closed ch.
func (sub *subscription) closedErr() error {
	sub.stream.mu.Lock()
	defer sub.stream.mu.Unlock()
	return sub.err
}

// Pending returns how many changes can be taken without waiting.
func (sub *subscription) Pending() int {
	if sub.replaying {
		return len(sub.pending)
	}
	return len(sub.ch)
}

// Close implements ports.Subscription.
func (sub *subscription) Close() {
	sub.closeOnce.Do(func() {
		s := sub.stream
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, ok := s.live[sub]; ok {
			delete(s.live, sub)
			close(sub.ch)
		}
		s.open--
	})
}
