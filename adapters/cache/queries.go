package cache

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	gocache "github.com/eko/gocache/lib/v4/cache"
	"github.com/eko/gocache/lib/v4/store"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"warehouse/domain"
	"warehouse/ports"
)

// Options bounds the cache.
type Options struct {
	// Size is the most entries kept (movements and stock rows together); 0 disables the
	// cache and every read goes to the next Queries.
	Size int
	// TTL is the longest an entry that may still change is served. A completed movement
	// never changes and stays until evicted. TTL <= 0 caches completed movements only.
	TTL time.Duration
}

// stripes is the number of generation counters keys are spread over. A Notify bumps the
// stripe of each key it names; a miss whose stripe moved while it read does not store
// its value. Keys sharing a stripe only cost each other an extra miss.
const stripes = 1024

// Queries implements ports.Queries by caching the Movement and Stock answers of another
// ports.Queries, and ports.ChangeNotifier by dropping the entries a change affects. A
// cache failure is a miss, never a failed read; not-found answers are not cached, and
// concurrent misses on one key reach the next Queries once. That shared read keeps the
// deadline of the caller that started it but not its cancellation, so one caller giving
// up does not fail the others; each caller still returns when its own context ends. It
// is safe for concurrent use.
type Queries struct {
	next    ports.Queries
	enabled bool
	ttl     time.Duration

	movements *gocache.Cache[domain.Movement]
	stock     *gocache.Cache[domain.Stock]
	routes    *gocache.Cache[ports.RoutePage]
	// routeEpoch is part of every route key: a change to any movement bumps it, so that
	// every cached route answer is dropped at once (they are few, and each may cover it).
	routeEpoch atomic.Uint64

	flight singleflight.Group
	seed   maphash.Seed
	gens   [stripes]generation

	movementHits, movementMisses prometheus.Counter
	stockHits, stockMisses       prometheus.Counter
	routeHits, routeMisses       prometheus.Counter
}

// generation counts the invalidations of the keys of one stripe. Its mutex makes "check
// the generation, then store" atomic with respect to "bump, then delete" in Notify.
type generation struct {
	mu sync.Mutex
	n  uint64
}

var (
	_ ports.Queries        = (*Queries)(nil)
	_ ports.ChangeNotifier = (*Queries)(nil)
)

// NewQueries returns a cache in front of next, bounded by opts, with its hit and miss
// counters (cache_hits_total and cache_misses_total by kind) registered on reg when reg
// is not nil. Counters already registered on reg by another cache are shared.
func NewQueries(next ports.Queries, opts Options, reg prometheus.Registerer) *Queries {
	hits := registerCounterVec(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cache_hits_total",
		Help: "Reads answered from the cache, by kind (movement, stock or routes).",
	}, []string{"kind"}))
	misses := registerCounterVec(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cache_misses_total",
		Help: "Reads the cache had to pass on, by kind (movement, stock or routes).",
	}, []string{"kind"}))
	q := &Queries{
		next:           next,
		enabled:        opts.Size > 0,
		ttl:            opts.TTL,
		seed:           maphash.MakeSeed(),
		movementHits:   hits.WithLabelValues("movement"),
		movementMisses: misses.WithLabelValues("movement"),
		stockHits:      hits.WithLabelValues("stock"),
		stockMisses:    misses.WithLabelValues("stock"),
		routeHits:      hits.WithLabelValues("routes"),
		routeMisses:    misses.WithLabelValues("routes"),
	}
	if q.enabled {
		// One store for both kinds, so Size bounds the whole cache; the key prefixes keep
		// the kinds apart.
		s := NewLRUStore(opts.Size, opts.TTL)
		if reg != nil {
			// Errors mean a second cache in the process registered them first: its
			// figures stand for both.
			_ = reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "cache_entries",
				Help: "Entries the read cache holds (at most CACHE_SIZE; expired ones count until read or pushed out).",
			}, func() float64 { return float64(s.Len()) }))
			_ = reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "cache_evictions_total",
				Help: "Cache entries pushed out to make room for others (CACHE_SIZE reached); deletions and expiry not counted.",
			}, func() float64 { return float64(s.Evicted()) }))
		}
		q.movements = gocache.New[domain.Movement](s)
		q.stock = gocache.New[domain.Stock](s)
		q.routes = gocache.New[ports.RoutePage](s)
	}
	return q
}

// Movement returns the movement from the cache, or from the next Queries on a miss.
func (q *Queries) Movement(ctx context.Context, id domain.MovementID) (domain.Movement, error) {
	if !q.enabled {
		return q.next.Movement(ctx, id)
	}
	key := movementKey(id)
	// gocache's typed Get answers a value of another type with a zero value and no error;
	// checking the identity of what came back turns that (and any other mix-up) into a miss.
	if m, err := q.movements.Get(ctx, key); err == nil && m.ID == id {
		q.movementHits.Inc()
		return m.Clone(), nil
	}
	q.movementMisses.Inc()
	m, err := load(ctx, q, q.movements, key, func(ctx context.Context) (domain.Movement, error) {
		m, err := q.next.Movement(ctx, id)
		return m.Clone(), err // the cached copy is not shared with the first caller
	}, q.movementExpiry)
	return m.Clone(), err
}

// Stock returns the stock row from the cache, or from the next Queries on a miss.
func (q *Queries) Stock(ctx context.Context, wh domain.WarehouseID, p domain.ProductID) (domain.Stock, error) {
	if !q.enabled {
		return q.next.Stock(ctx, wh, p)
	}
	key := stockKey(domain.StockKey{Warehouse: wh, Product: p})
	if s, err := q.stock.Get(ctx, key); err == nil && s.WarehouseID == wh && s.ProductID == p {
		q.stockHits.Inc()
		return s, nil
	}
	q.stockMisses.Inc()
	return load(ctx, q, q.stock, key, func(ctx context.Context) (domain.Stock, error) {
		return q.next.Stock(ctx, wh, p)
	}, func(domain.Stock) (time.Duration, bool) { return q.ttl, q.ttl > 0 })
}

// Movements passes through: lists are not cached.
func (q *Queries) Movements(ctx context.Context, f ports.MovementFilter) (ports.MovementPage, error) {
	return q.next.Movements(ctx, f)
}

// WarehouseStock passes through: lists are not cached.
func (q *Queries) WarehouseStock(ctx context.Context, f ports.StockFilter) (ports.StockPage, error) {
	return q.next.WarehouseStock(ctx, f)
}

// Notify drops the cached movements and stock rows that c names, and makes sure that no
// read already in flight stores what it read before the change.
func (q *Queries) Notify(ctx context.Context, c ports.Changes) {
	if !q.enabled {
		return
	}
	if len(c.Movements) > 0 {
		q.routeEpoch.Add(1)
	}
	for _, id := range c.Movements {
		q.invalidate(ctx, q.movements.Delete, movementKey(id))
	}
	for _, k := range c.Stock {
		q.invalidate(ctx, q.stock.Delete, stockKey(k))
	}
}

func (q *Queries) invalidate(ctx context.Context, del func(context.Context, any) error, key string) {
	g := q.generation(key)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n++
	_ = del(ctx, key) // the in-process store cannot fail to delete; the bump alone stops stale sets
}

// movementExpiry keeps a completed movement until evicted: it never changes.
func (q *Queries) movementExpiry(m domain.Movement) (time.Duration, bool) {
	if m.Status() == domain.Completed {
		return NoExpiry, true
	}
	return q.ttl, q.ttl > 0
}

func (q *Queries) generation(key string) *generation {
	return &q.gens[maphash.String(q.seed, key)%stripes]
}

// load reads key through next once for all concurrent callers that saw the same
// generation, and stores the answer unless a Notify for its stripe came in meanwhile.
// expiry says how long a value may be kept, and whether at all.
func load[T any](ctx context.Context, q *Queries, c *gocache.Cache[T], key string,
	read func(context.Context) (T, error), expiry func(T) (time.Duration, bool),
) (T, error) {
	g := q.generation(key)
	g.mu.Lock()
	gen := g.n
	g.mu.Unlock()

	// Callers that start after a Notify see a new generation and thus a new flight, so
	// nobody joins a read that began before a change they already observed.
	flightKey := key + "#" + strconv.FormatUint(gen, 36)
	ch := q.flight.DoChan(flightKey, func() (v any, err error) {
		// The flight outlives a caller that gives up, but not that caller's deadline;
		// each waiter still honours its own context below.
		fctx, cancel := detach(ctx)
		defer cancel()
		// DoChan would re-raise a panic on a fresh goroutine and kill the process.
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("query panicked: %v\n%s", r, debug.Stack())
			}
		}()
		start := time.Now()
		val, err := read(fctx)
		if err != nil {
			return val, err
		}
		ttl, ok := expiry(val)
		if ok && ttl != NoExpiry {
			// The value is as old as the read's start: count the read against its TTL.
			ttl -= time.Since(start)
			ok = ttl > 0
		}
		if ok {
			g.mu.Lock()
			if g.n == gen {
				_ = c.Set(fctx, key, val, store.WithExpiration(ttl)) // a failed set only costs a later miss
			}
			g.mu.Unlock()
		}
		return val, nil
	})
	select {
	case r := <-ch:
		v, _ := r.Val.(T)
		return v, r.Err
	case <-ctx.Done():
		var zero T
		return zero, fmt.Errorf("%w: %w", ports.ErrUnavailable, ctx.Err())
	}
}

// detach returns a context that ignores ctx's cancellation but keeps its deadline.
func detach(ctx context.Context) (context.Context, context.CancelFunc) {
	d := context.WithoutCancel(ctx)
	if dl, ok := ctx.Deadline(); ok {
		return context.WithDeadline(d, dl)
	}
	return context.WithCancel(d)
}

func movementKey(id domain.MovementID) string { return "m" + string(id[:]) }

func stockKey(k domain.StockKey) string {
	return "s" + string(k.Warehouse[:]) + string(k.Product[:])
}

// registerCounterVec registers cv on reg, or returns the collector already registered
// under the same description.
func registerCounterVec(reg prometheus.Registerer, cv *prometheus.CounterVec) *prometheus.CounterVec {
	if reg == nil {
		return cv
	}
	if err := reg.Register(cv); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing
			}
		}
	}
	return cv
}
