package postgres

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
