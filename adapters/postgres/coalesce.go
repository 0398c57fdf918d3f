package postgres

import (
	"context"
	"fmt"
	"sync"
	"time"

	"warehouse/domain"
)

// coalescer answers concurrent point reads of one kind with shared queries. At most
// maxInFlight queries run at once; a read that arrives while all of them are busy waits,
// and the next query answers every read waiting by then (up to maxBatch) at once. So a
// lone read is one query of one key, as before, and under load many reads share one round
// trip and one execution. No read is answered from before it arrived: the query that
// answers it starts after it was queued.
type coalescer[K comparable, V any] struct {
	// fetch reads the values of distinct keys; a key without a row is absent from the map.
	fetch       func(ctx context.Context, keys []K) (map[K]V, error)
	maxInFlight int
	maxBatch    int

	mu       sync.Mutex
	inFlight int
	queue    []*pointRead[K, V]
}

// pointRead is one caller's read: its key, and its answer once done is closed.
type pointRead[K comparable, V any] struct {
	ctx  context.Context
	key  K
	val  V
	err  error
	done chan struct{}
}

func newCoalescer[K comparable, V any](maxInFlight, maxBatch int, fetch func(context.Context, []K) (map[K]V, error)) *coalescer[K, V] {
	return &coalescer[K, V]{fetch: fetch, maxInFlight: max(1, maxInFlight), maxBatch: max(1, maxBatch)}
}

// get reads key: itself when a query slot is free, else in the next shared query.
// A key without a row is domain.ErrNotFound.
func (c *coalescer[K, V]) get(ctx context.Context, key K) (V, error) {
	r := &pointRead[K, V]{ctx: ctx, key: key, done: make(chan struct{})}
	c.mu.Lock()
	if c.inFlight == c.maxInFlight {
		c.queue = append(c.queue, r)
		c.mu.Unlock()
		select {
		case <-r.done:
			return r.val, r.err
		case <-ctx.Done():
			// The query that takes r answers nobody; done is closed and dropped.
			var zero V
			return zero, ctx.Err()
		}
	}
	c.inFlight++
	batch := append(make([]*pointRead[K, V], 0, 1+min(len(c.queue), c.maxBatch-1)), r)
	batch = append(batch, c.takeLocked(c.maxBatch-1)...)
	c.mu.Unlock()
	c.run(batch)
	// Reads that queued meanwhile are served by a goroutine of their own, so this caller
	// answers now instead of after their query.
	if next := c.next(); next != nil {
		go c.serve(next)
	}
	return r.val, r.err
}

// serve runs batches until the queue is empty.
func (c *coalescer[K, V]) serve(batch []*pointRead[K, V]) {
	for batch != nil {
		c.run(batch)
		batch = c.next()
	}
}

// next takes the waiting reads, or gives the query slot back when there are none.
func (c *coalescer[K, V]) next() []*pointRead[K, V] {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.queue) == 0 {
		c.inFlight--
		return nil
	}
	return c.takeLocked(c.maxBatch)
}

// takeLocked removes up to n reads from the head of the queue.
func (c *coalescer[K, V]) takeLocked(n int) []*pointRead[K, V] {
	n = min(len(c.queue), n)
	batch := make([]*pointRead[K, V], n)
	copy(batch, c.queue)
	rest := copy(c.queue, c.queue[n:])
	clear(c.queue[rest:])
	c.queue = c.queue[:rest]
	return batch
}

// run answers batch with one fetch of its distinct keys. A shared query outlives any one
// caller's cancellation (others wait on it) but not the latest of their deadlines.
func (c *coalescer[K, V]) run(batch []*pointRead[K, V]) {
	keys := make([]K, 0, len(batch))
	seen := make(map[K]struct{}, len(batch))
	live := batch[:0]
	var deadline time.Time
	bounded := true
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.err = err
			close(r.done)
			continue
		}
		live = append(live, r)
		if d, ok := r.ctx.Deadline(); !ok {
			bounded = false
		} else if d.After(deadline) {
			deadline = d
		}
		if _, ok := seen[r.key]; !ok {
			seen[r.key] = struct{}{}
			keys = append(keys, r.key)
		}
	}
	if len(live) == 0 {
		return
	}
	ctx := live[0].ctx // a read of its own: its cancellation stops the query
	if len(live) > 1 {
		ctx = context.WithoutCancel(ctx)
		if bounded {
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, deadline)
			defer cancel()
		}
	}
	vals, err := c.safeFetch(ctx, keys)
	for _, r := range live {
		switch v, ok := vals[r.key]; {
		case err != nil:
			r.err = err
		case !ok:
			r.err = domain.ErrNotFound
		default:
			r.val = v
		}
		close(r.done)
	}
}

// safeFetch calls fetch, turning a panic into an error: a panic must not strand the reads
// of the batch or lose the query slot.
func (c *coalescer[K, V]) safeFetch(ctx context.Context, keys []K) (vals map[K]V, err error) {
	defer func() {
		if p := recover(); p != nil {
			vals, err = nil, fmt.Errorf("point read of %d keys panicked: %v", len(keys), p)
		}
	}()
	return c.fetch(ctx, keys)
}
