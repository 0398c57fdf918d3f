package postgres

import "context"

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

// CheckpointEvery is how many events of a stock row lie between two of its checkpoints.
const CheckpointEvery = checkpointEvery

// RoutesQuery builds the routes query of a filter, for the plan test.
var RoutesQuery = routesQuery
