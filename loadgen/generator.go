package loadgen

import (
	"container/heap"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"maps"
	"math/rand/v2"
	"time"

	"warehouse/domain"
)

// Shape of the generated network and stream. The transit delay is what a truck between
// two warehouses of one region plausibly takes; the late report is how long a sender's
// system may lag behind the receiver's when a departure reaches the broker after its arrival.
const (
	// DefaultInterval is the mean event time between two generated events.
	DefaultInterval = 12 * time.Minute

	minTransit    = time.Hour
	maxTransit    = 6 * time.Hour
	minLateReport = 10 * time.Minute
	maxLateReport = 2 * time.Hour

	// A new movement is a supplier delivery with a probability that falls from 1 (nothing
	// in stock) to minSupplyShare as the number of stocked rows reaches stockedTarget;
	// otherwise it is a transfer. This keeps enough rows stocked for varied transfers.
	minSupplyShare = 0.2
	stockedTarget  = 50
	minSupply      = 10
	maxSupply      = 500
	// maxLoss bounds the units a lossy transfer loses on the way.
	maxLoss = 5
	// recentEvents is how many of the latest events a duplicate may copy.
	recentEvents = 64

	subjectDestination = "ru.retail.warehouses"
	dataSchema         = "ru.retail.warehouses.movement.v1.0"
)

// Options configures a Generator. Shares are probabilities in [0, 1]; values
// outside are clamped.
type Options struct {
	// Warehouses and Products size the network (at least 1 each; transfers need 2
	// warehouses, so with 1 every event is a supply).
	Warehouses, Products int
	// Seed makes the stream reproducible: the same options give the same events,
	// ids included. The network (warehouse and product ids) depends on Seed only.
	Seed uint64
	// LossShare is the share of transfers whose arrival is a few units short.
	LossShare float64
	// DuplicateShare is the share of events that re-send an earlier event: the same
	// message again (same source and id) or the same data under a new id.
	DuplicateShare float64
	// OutOfOrderShare is the share of transfers whose arrival is emitted before their
	// departure, as when the sender reports late.
	OutOfOrderShare float64
	// Start is the event time of the stream's beginning; zero means 2025-01-01T00:00:00Z.
	Start time.Time
	// Interval is the mean event time between two events; zero means DefaultInterval, and
	// it is at least a millisecond. Event n (from 0) falls in the slot (Start + n×Interval,
	// Start + (n+1)×Interval], so the first n events never pass Start + n×Interval.
	Interval time.Duration
	// SourcePrefix names warehouses as CloudEvents sources: prefix + a 4-digit number
	// ("WH-0001"); empty means "WH-". It must be valid in a source (no control characters).
	SourcePrefix string
}

// Stats counts what a Generator has emitted so far.
type Stats struct {
	// Events is every event emitted, duplicates included.
	Events int
	// Supplies are supplier arrivals (arrivals that never get a departure).
	Supplies int
	// Departures and Arrivals count the two ends of transfers.
	Departures, Arrivals int
	// OutOfOrder counts transfer arrivals emitted before their departure.
	OutOfOrder int
	// Lossy counts transfer arrivals short of their departure; LostUnits sums the shortfall.
	Lossy     int
	LostUnits int64
	// Duplicates counts re-sent events: the store judges each one a duplicate.
	Duplicates int
}

// Generator produces a realistic, consistent stream of movement events for load tests
// and demos. It tracks the stock the service will hold after each event it emits, in
// stream order, and never sends a departure larger than that stock minus what earlier,
// not yet emitted departures have reserved: a departure decided now but emitted later
// (after its arrival) keeps its units reserved, so no other departure can take them.
// Replayed in stream order through the Ledger, a stream has no conflict and no
// insufficient stock; only the duplicates it injects are refused. A Generator is not
// safe for concurrent use.
type Generator struct {
	opts  Options
	rng   *rand.Rand
	clock time.Time // envelope time of the latest event
	// slotEnd is the end of the next event's slot: Start + (n+1)×Interval after n events,
	// kept as a time so that an endless stream never overflows a Duration.
	slotEnd time.Time

	warehouses  []generatedWarehouse
	warehouseAt map[domain.WarehouseID]int
	products    []domain.ProductID

	// expected is the stock the service holds after every emitted event; available is
	// expected minus the departures decided but not yet emitted. stocked lists the keys
	// with available > 0, for a uniform random choice; stockedAt indexes it.
	expected  map[domain.StockKey]int64
	available map[domain.StockKey]int64
	stocked   []domain.StockKey
	stockedAt map[domain.StockKey]int

	pending pendingQueue
	seq     uint64 // orders pending events due at the same instant
	recent  []domain.Event
	stats   Stats
}

type generatedWarehouse struct {
	id     domain.WarehouseID
	source string
	// attributes per kind: the optional envelope attributes, as the codec keeps them.
	arrival, departure []byte
}

// NewGenerator returns a Generator for opts.
func NewGenerator(opts Options) *Generator {
	opts.Warehouses = max(opts.Warehouses, 1)
	opts.Products = max(opts.Products, 1)
	opts.LossShare = clamp01(opts.LossShare)
	opts.DuplicateShare = clamp01(opts.DuplicateShare)
	opts.OutOfOrderShare = clamp01(opts.OutOfOrderShare)
	if opts.Start.IsZero() {
		// a fixed instant, so that a seed alone reproduces a stream
		opts.Start = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	opts.Interval = max(opts.Interval, time.Millisecond) // envelope times move by whole milliseconds
	if opts.SourcePrefix == "" {
		opts.SourcePrefix = "WH-"
	}
	start := opts.Start.UTC().Truncate(time.Millisecond)
	g := &Generator{
		opts:      opts,
		rng:       rand.New(rand.NewPCG(opts.Seed, 2)),
		clock:     start,
		slotEnd:   start.Add(opts.Interval),
		expected:  make(map[domain.StockKey]int64),
		available: make(map[domain.StockKey]int64),
		stockedAt: make(map[domain.StockKey]int),

		warehouseAt: make(map[domain.WarehouseID]int, opts.Warehouses),
	}
	// The network has its own stream, so that it depends on the seed alone.
	net := rand.New(rand.NewPCG(opts.Seed, 1))
	for i := range opts.Warehouses {
		src := fmt.Sprintf("%s%04d", opts.SourcePrefix, i+1)
		id := domain.WarehouseID(randomUUID(net))
		g.warehouseAt[id] = i
		g.warehouses = append(g.warehouses, generatedWarehouse{
			id:        id,
			source:    src,
			arrival:   attributes(src, "ARRIVAL"),
			departure: attributes(src, "DEPARTURE"),
		})
	}
	for range opts.Products {
		g.products = append(g.products, domain.ProductID(randomUUID(net)))
	}
	return g
}

// Next returns the next event of the stream. The envelope times of new events strictly
// increase, and no event is reported (Time) before it happened (Timestamp); a duplicate
// that re-sends the very same message repeats its original's envelope time. No time of
// the event is later than NotAfter before the call.
func (g *Generator) Next() domain.Event {
	// Event time falls at a random whole millisecond of the event's slot (the slot's end
	// at the latest, its start excluded): jittered steps that average Interval, but never a
	// random walk that could drift past Start + n×Interval. Consecutive slots are Interval
	// (at least 1 ms) apart, so envelope times of new events strictly increase.
	end := g.slotEnd.Truncate(time.Millisecond)
	g.clock = end.Add(-time.Duration(g.rng.Int64N(max(1, int64(g.opts.Interval/time.Millisecond)))) * time.Millisecond)
	g.slotEnd = g.slotEnd.Add(g.opts.Interval)
	if len(g.recent) > 0 && g.rng.Float64() < g.opts.DuplicateShare {
		return g.duplicate()
	}
	for {
		if len(g.pending) > 0 && !g.pending[0].due.After(g.clock) {
			p := heap.Pop(&g.pending).(*pendingEvent)
			return g.emitPending(p)
		}
		if e, ok := g.newMovement(); ok {
			return e
		}
	}
}

// NotAfter returns the latest instant that the times (envelope time and timestamp) of the
// next event can hold: the end of its slot. A publisher that must not send an event dated
// in the future waits until then before drawing it.
func (g *Generator) NotAfter() time.Time { return g.slotEnd }

// Expected returns the stock the service holds once it has stored every event emitted
// so far, one entry per stock row those events created (zero included). Duplicates
// change nothing; departures decided but not yet emitted are not subtracted.
func (g *Generator) Expected() map[domain.StockKey]int64 { return maps.Clone(g.expected) }

// Stats returns what the generator has emitted so far.
func (g *Generator) Stats() Stats { return g.stats }

// Warehouses returns the network's warehouse ids, in source order ("WH-0001" first).
func (g *Generator) Warehouses() []domain.WarehouseID {
	ids := make([]domain.WarehouseID, len(g.warehouses))
	for i, w := range g.warehouses {
		ids[i] = w.id
	}
	return ids
}

// newMovement starts a supply or a transfer. It reports false when the transfer's
// first event is not due yet (an out-of-order transfer emits its arrival later).
func (g *Generator) newMovement() (domain.Event, bool) {
	target := min(len(g.warehouses)*len(g.products), stockedTarget)
	share := max(minSupplyShare, 1-float64(len(g.stocked))/float64(target))
	if len(g.warehouses) < 2 || len(g.stocked) == 0 || g.rng.Float64() < share {
		return g.supply(), true
	}
	return g.transfer()
}

// supply delivers goods from outside the network to a random warehouse.
func (g *Generator) supply() domain.Event {
	w := &g.warehouses[g.rng.IntN(len(g.warehouses))]
	p := g.products[g.rng.IntN(len(g.products))]
	qty := int64(minSupply + g.rng.IntN(maxSupply-minSupply+1))
	e := g.event(w, p, domain.MovementID(randomUUID(g.rng)), domain.Arrival, g.clock, qty)
	g.stats.Supplies++
	return g.emit(e)
}

// transfer sends part of a stocked (warehouse, product) to another warehouse. The units
// leave the generator's available stock at once, whatever order the events go out in.
func (g *Generator) transfer() (domain.Event, bool) {
	// the best stocked of a few random rows: warehouses ship from what they hold plenty of
	k := g.stocked[g.rng.IntN(len(g.stocked))]
	for range 2 {
		if o := g.stocked[g.rng.IntN(len(g.stocked))]; g.available[o] > g.available[k] {
			k = o
		}
	}
	have := g.available[k]
	// a tenth to a half of what is there, at least 1
	lo := max(1, have/10)
	qty := min(lo+g.rng.Int64N(max(1, have/2-lo+1)), have, domain.MaxQuantity)
	g.setAvailable(k, have-qty)

	from := g.warehouseAt[k.Warehouse]
	to := g.rng.IntN(len(g.warehouses) - 1)
	if to >= from {
		to++
	}
	arrived := qty
	if qty >= 2 && g.rng.Float64() < g.opts.LossShare {
		arrived -= 1 + g.rng.Int64N(min(qty-1, maxLoss))
	}
	m := domain.MovementID(randomUUID(g.rng))
	left := g.clock
	transit := minTransit + time.Duration(g.rng.Int64N(int64(maxTransit-minTransit)/int64(time.Second)))*time.Second
	dep := g.event(&g.warehouses[from], k.Product, m, domain.Departure, left, qty)
	arr := g.event(&g.warehouses[to], k.Product, m, domain.Arrival, left.Add(transit), arrived)

	if g.rng.Float64() < g.opts.OutOfOrderShare {
		g.schedule(arr.Timestamp, arr, qty, &dep)
		return domain.Event{}, false
	}
	g.schedule(arr.Timestamp, arr, qty, nil)
	return g.emit(dep), true
}

// emitPending emits a scheduled event, stamped with the time it is reported; an
// out-of-order arrival schedules its departure, reported late.
func (g *Generator) emitPending(p *pendingEvent) domain.Event {
	e := p.event
	e.Time = g.clock
	if e.Kind == domain.Arrival {
		g.stats.Arrivals++
		if d := p.departed - e.Quantity; d > 0 {
			g.stats.Lossy++
			g.stats.LostUnits += d
		}
	}
	if p.then != nil {
		g.stats.OutOfOrder++
		late := minLateReport + time.Duration(g.rng.Int64N(int64(maxLateReport-minLateReport)/int64(time.Second)))*time.Second
		g.schedule(g.clock.Add(late), *p.then, 0, nil)
	}
	return g.emit(e)
}

// emit records e's effect on the stock the service will hold and returns it.
func (g *Generator) emit(e domain.Event) domain.Event {
	k := e.StockKey()
	switch e.Kind {
	case domain.Departure:
		g.stats.Departures++
		g.expected[k] -= e.Quantity // available already went down when it was decided
	default:
		g.expected[k] += e.Quantity
		g.setAvailable(k, g.available[k]+e.Quantity)
	}
	g.stats.Events++
	if len(g.recent) < recentEvents {
		g.recent = append(g.recent, e)
	} else {
		g.recent[g.stats.Events%recentEvents] = e
	}
	return e
}

// duplicate re-sends a recent event: half the time the very same message, else the same
// data under a new id, as a producer that retried without keeping its id would.
func (g *Generator) duplicate() domain.Event {
	e := g.recent[g.rng.IntN(len(g.recent))]
	if g.rng.IntN(2) == 0 {
		e.ID = formatUUID(randomUUID(g.rng))
		e.Time = g.clock
	}
	g.stats.Duplicates++
	g.stats.Events++
	return e
}

// schedule queues e for emission once the clock reaches due. For an arrival, departed
// is what left the sender; then, if set, is the departure to schedule when e goes out.
func (g *Generator) schedule(due time.Time, e domain.Event, departed int64, then *domain.Event) {
	g.seq++
	heap.Push(&g.pending, &pendingEvent{due: due, seq: g.seq, event: e, departed: departed, then: then})
}

func (g *Generator) setAvailable(k domain.StockKey, q int64) {
	g.available[k] = q
	i, listed := g.stockedAt[k]
	switch {
	case q > 0 && !listed:
		g.stockedAt[k] = len(g.stocked)
		g.stocked = append(g.stocked, k)
	case q <= 0 && listed:
		last := len(g.stocked) - 1
		g.stocked[i] = g.stocked[last]
		g.stockedAt[g.stocked[i]] = i
		g.stocked = g.stocked[:last]
		delete(g.stockedAt, k)
	}
}

// event builds a valid event of w at ts (whole seconds, as warehouses report them),
// sent now. The caller stamps a later envelope time when it is sent later.
func (g *Generator) event(w *generatedWarehouse, p domain.ProductID, m domain.MovementID, kind domain.EventKind, ts time.Time, qty int64) domain.Event {
	attrs := w.arrival
	if kind == domain.Departure {
		attrs = w.departure
	}
	return domain.Event{
		ID:          formatUUID(randomUUID(g.rng)),
		Source:      w.source,
		Time:        g.clock,
		Attributes:  attrs,
		MovementID:  m,
		WarehouseID: w.id,
		ProductID:   p,
		Kind:        kind,
		Timestamp:   ts.Truncate(time.Second),
		Quantity:    qty,
	}
}

// attributes returns the optional envelope attributes of the sample message, as a compact
// JSON object in the order the codec keeps them.
func attributes(source, kind string) []byte {
	b := fmt.Appendf(nil, `{"datacontenttype":"application/json","dataschema":%q,"subject":`, dataSchema)
	b = appendJSONString(b, source+":"+kind)
	return fmt.Appendf(b, `,"destination":%q}`, subjectDestination)
}

// appendJSONString writes s as a JSON string, escaping only what JSON requires, as the
// codec writes attributes back (so that an event survives a round trip byte for byte).
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = fmt.Appendf(b, `\u%04x`, c)
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// pendingEvent is an event waiting for the clock to reach due.
type pendingEvent struct {
	due      time.Time
	seq      uint64
	event    domain.Event
	departed int64
	then     *domain.Event
}

// pendingQueue is a min-heap of pending events by (due, seq).
type pendingQueue []*pendingEvent

func (q pendingQueue) Len() int { return len(q) }
func (q pendingQueue) Less(i, j int) bool {
	if !q[i].due.Equal(q[j].due) {
		return q[i].due.Before(q[j].due)
	}
	return q[i].seq < q[j].seq
}
func (q pendingQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *pendingQueue) Push(x any)   { *q = append(*q, x.(*pendingEvent)) }
func (q *pendingQueue) Pop() any {
	old := *q
	x := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	return x
}

// randomUUID returns a version 4 UUID drawn from rng, so that a seed reproduces it.
func randomUUID(rng *rand.Rand) [16]byte {
	var u [16]byte
	binary.BigEndian.PutUint64(u[:8], rng.Uint64())
	binary.BigEndian.PutUint64(u[8:], rng.Uint64())
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u
}

// formatUUID writes u in the canonical 36-character form.
func formatUUID(u [16]byte) string {
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:], u[10:])
	return string(b[:])
}

func clamp01(x float64) float64 { return min(max(x, 0), 1) }
