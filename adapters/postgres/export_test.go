package postgres

// MovementsQuery exposes the list query builder to the plan test.
var MovementsQuery = movementsQuery
