package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"warehouse/ports"
)

// MovementsQuery exposes the list query builder to the plan test.
var MovementsQuery = movementsQuery

// FetchStock and FetchMovements expose the coalesced reads' queries of many keys.
var (
	FetchStock     = (*Store).fetchStock
	FetchMovements = (*Store).fetchMovements
)

// StocksQuery and MovementsByIDQuery are the coalesced point reads' queries, for the plan test.
const (
	StocksQuery        = stocksQuery
	MovementsByIDQuery = movementsByIDQuery
)

// AdmitList takes a list-query slot as Movements and WarehouseStock do.
func (s *Store) AdmitList(ctx context.Context) (release func(), err error) { return s.admitList(ctx) }

// ListQueries is how many list queries may run at once.
func (s *Store) ListQueries() int { return cap(s.listSlots) }

// The queries of the ledger's past, for the plan test.
const (
	AsOfFolds          = asOfFolds
	FoldsBefore        = foldsBefore
	WarehouseAsOfQuery = warehouseAsOfQuery
	HistoryPages       = historyPages
	InTransitQuery     = inTransitQuery
	EventQuery         = eventQuery
)

// RoutesQuery builds the routes query of a filter, for the plan test.
var RoutesQuery = routesQuery

// HookRouteFetches calls hook with the number of distinct filters of every shared route
// query before it runs.
func (s *Store) HookRouteFetches(hook func(filters int)) {
	fetch := s.routeReads.fetch
	s.routeReads.fetch = func(ctx context.Context, keys []routeKey) (map[routeKey]ports.RoutePage, error) {
		hook(len(keys))
		return fetch(ctx, keys)
	}
}

// RouteReadsQueued is how many route reads wait for a query.
func (s *Store) RouteReadsQueued() int {
	s.routeReads.mu.Lock()
	defer s.routeReads.mu.Unlock()
	return len(s.routeReads.queue)
}

// RouteFilterRoundTrip is f through the comparable key that identical requests share.
func RouteFilterRoundTrip(f ports.RouteFilter) ports.RouteFilter { return routeKeyOf(f).filter() }

// JSONB marks a CopyBinary field to be written as jsonb.
type JSONB []byte

// CopyBinary copies rows into columns of table in tx with the write path's binary COPY.
// A field is nil (NULL), a [16]byte (uuid), a string (text), an int64 (bigint), a
// time.Time (timestamptz) or a JSONB.
func CopyBinary(ctx context.Context, tx pgx.Tx, table string, columns []string, rows [][]any) error {
	c := newBinaryCopy(0)
	for _, r := range rows {
		c.row(len(r))
		for _, f := range r {
			switch v := f.(type) {
			case nil:
				c.null()
			case [16]byte:
				c.uuid(v)
			case string:
				c.text(v)
			case int64:
				c.int8(v)
			case time.Time:
				c.timestamptz(v)
			case JSONB:
				c.jsonb(v)
			default:
				return fmt.Errorf("field of type %T", f)
			}
		}
	}
	return copyIn(ctx, tx, table, columns, c)
}
