package cache

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"warehouse/domain"
	"warehouse/ports"
)

// The ledger's past passes through uncached, but for routes. An answer about a past time
// changes when a late event with an earlier timestamp arrives, and a write names the stock
// rows it changed, not the past instants of each whose answers it changed: invalidating
// them would mean keeping, per row, every cached instant. Not caching them keeps every
// answer exact; they are indexed folds that the store answers without scanning history
// (see the postgres store's checkpoints), coalesced under load.
//
// Routes are the exception: an answer adds up every completed movement of a window (tens
// of milliseconds of PostgreSQL's time for a month of a busy network), and dashboards ask
// the same window again and again. They are cached for CACHE_TTL, and any change to a
// movement drops them all at once (see Notify).

// StockAsOf passes through to the next Queries.
func (q *Queries) StockAsOf(ctx context.Context, w domain.WarehouseID, p domain.ProductID, asOf time.Time) (domain.StockAsOf, error) {
	return q.next.StockAsOf(ctx, w, p, asOf)
}

// WarehouseStockAsOf passes through to the next Queries.
func (q *Queries) WarehouseStockAsOf(ctx context.Context, f ports.StockFilter, asOf time.Time) (ports.StockAsOfPage, error) {
	return q.next.WarehouseStockAsOf(ctx, f, asOf)
}

// StockHistory passes through to the next Queries.
func (q *Queries) StockHistory(ctx context.Context, f ports.HistoryFilter) (ports.HistoryPage, error) {
	return q.next.StockHistory(ctx, f)
}

// Routes answers from the cache, or from the next Queries on a miss; concurrent misses on
// one window share one read. Not cached when CACHE_TTL is zero.
func (q *Queries) Routes(ctx context.Context, f ports.RouteFilter) (ports.RoutePage, error) {
	if !q.enabled || q.ttl <= 0 {
		return q.next.Routes(ctx, f)
	}
	key := q.routeKey(f)
	if p, err := q.routes.Get(ctx, key); err == nil && p.Items != nil {
		q.routeHits.Inc()
		return clonePage(p), nil
	}
	q.routeMisses.Inc()
	p, err := load(ctx, q, q.routes, key, func(ctx context.Context) (ports.RoutePage, error) {
		p, err := q.next.Routes(ctx, f)
		if p.Items == nil {
			p.Items = []domain.Route{} // an empty answer is cached too, told from a miss
		}
		return p, err
	}, func(ports.RoutePage) (time.Duration, bool) { return q.ttl, true })
	return clonePage(p), err
}

// clonePage copies a page, so that no caller shares the cached one.
func clonePage(p ports.RoutePage) ports.RoutePage {
	p.Items = slices.Clone(p.Items)
	if p.Next != nil {
		next := *p.Next
		p.Next = &next
	}
	return p
}

// routeKey is the cache key of a route filter under the current route epoch.
func (q *Queries) routeKey(f ports.RouteFilter) string {
	var b strings.Builder
	b.WriteString("r")
	b.WriteString(strconv.FormatUint(q.routeEpoch.Load(), 36))
	fmt.Fprintf(&b, "|%d|%d|%d", f.Since.UnixNano(), f.Until.UnixNano(), f.Limit)
	for _, id := range []*domain.WarehouseID{f.From, f.To} {
		b.WriteByte('|')
		if id != nil {
			b.Write(id[:])
		}
	}
	b.WriteByte('|')
	if f.Product != nil {
		b.Write(f.Product[:])
	}
	if f.After != nil {
		fmt.Fprintf(&b, "|%d|%s|%s", f.After.Movements, f.After.From[:], f.After.To[:])
	}
	return b.String()
}

// InTransit passes through to the next Queries.
func (q *Queries) InTransit(ctx context.Context, w domain.WarehouseID) ([]domain.TransitLoad, error) {
	return q.next.InTransit(ctx, w)
}

// Event passes through to the next Queries.
func (q *Queries) Event(ctx context.Context, source, id string) (domain.StoredEvent, error) {
	return q.next.Event(ctx, source, id)
}
