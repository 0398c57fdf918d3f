package postgres

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/google/uuid"
)

// StockMismatch is a stock row whose quantity differs from what its events add up to.
// Stored is nil when the events imply a row that does not exist; Computed is nil for a row
// that no event explains.
type StockMismatch struct {
	WarehouseID uuid.UUID `bun:"warehouse_id,type:uuid"`
	ProductID   uuid.UUID `bun:"product_id,type:uuid"`
	Stored      *int64    `bun:"stored"`
	Computed    *int64    `bun:"computed"`
}

// AuditReport is what Audit found. The ledger is sound when Mismatches, NegativeRows and
// MovementMismatches are all empty.
type AuditReport struct {
	Events        int64
	Movements     int64
	StockRows     int64
	StockQuantity int64
	// Mismatches lists stock rows that their events do not add up to (at most 1000).
	Mismatches []StockMismatch
	// NegativeRows counts stock rows below zero (the CHECK constraint forbids them).
	NegativeRows int64
	// MovementMismatches lists movements whose projection disagrees with their events (at most 1000).
	MovementMismatches []uuid.UUID
}

// Sound reports whether the audit found nothing wrong.
func (r AuditReport) Sound() bool {
	return len(r.Mismatches) == 0 && r.NegativeRows == 0 && len(r.MovementMismatches) == 0
}

// Audit recomputes every stock row and movement from the stored events, in one
// repeatable-read snapshot, and reports the differences.
func (s *Store) Audit(ctx context.Context) (AuditReport, error) {
	var r AuditReport
	tx, err := s.db.BeginTx(ctx, &txReadOnlySnapshot)
	if err != nil {
		return r, fmt.Errorf("audit: %w", translate(err))
	}
	defer tx.Rollback() //nolint:errcheck // read-only

	err = tx.NewRaw(`SELECT
		(SELECT count(*) FROM events),
		(SELECT count(*) FROM movements),
		(SELECT count(*) FROM stock),
		(SELECT coalesce(sum(quantity), 0) FROM stock),
		(SELECT count(*) FROM stock WHERE quantity < 0)`).Scan(ctx, &r.Events, &r.Movements, &r.StockRows, &r.StockQuantity, &r.NegativeRows)
	if err != nil {
		return r, fmt.Errorf("audit totals: %w", translate(err))
	}
	err = tx.NewRaw(`WITH computed AS (
			SELECT warehouse_id, product_id,
			       sum(CASE WHEN event = 'arrival' THEN quantity ELSE -quantity END) AS quantity
			FROM events GROUP BY warehouse_id, product_id)
		SELECT coalesce(s.warehouse_id, c.warehouse_id) AS warehouse_id,
		       coalesce(s.product_id, c.product_id) AS product_id,
		       s.quantity AS stored, c.quantity AS computed
		FROM stock s FULL JOIN computed c
		  ON s.warehouse_id = c.warehouse_id AND s.product_id = c.product_id
		WHERE s.quantity IS DISTINCT FROM c.quantity
		ORDER BY 1, 2 LIMIT 1000`).Scan(ctx, &r.Mismatches)
	if err != nil {
		return r, fmt.Errorf("audit stock: %w", translate(err))
	}
	err = tx.NewRaw(`SELECT coalesce(m.movement_id, d.movement_id, a.movement_id)
		FROM movements m
		FULL JOIN (SELECT * FROM events WHERE event = 'departure') d ON d.movement_id = m.movement_id
		FULL JOIN (SELECT * FROM events WHERE event = 'arrival') a ON a.movement_id = coalesce(m.movement_id, d.movement_id)
		WHERE m.movement_id IS NULL
		   OR (d.movement_id IS NULL AND a.movement_id IS NULL)
		   OR m.product_id IS DISTINCT FROM coalesce(d.product_id, a.product_id)
		   OR d.product_id <> a.product_id
		   OR m.departure_warehouse_id IS DISTINCT FROM d.warehouse_id
		   OR m.departure_source IS DISTINCT FROM d.source
		   OR m.departure_at IS DISTINCT FROM d.occurred_at
		   OR m.departure_quantity IS DISTINCT FROM d.quantity
		   OR m.arrival_warehouse_id IS DISTINCT FROM a.warehouse_id
		   OR m.arrival_source IS DISTINCT FROM a.source
		   OR m.arrival_at IS DISTINCT FROM a.occurred_at
		   OR m.arrival_quantity IS DISTINCT FROM a.quantity
		LIMIT 1000`).Scan(ctx, &r.MovementMismatches)
	if err != nil {
		return r, fmt.Errorf("audit movements: %w", translate(err))
	}
	return r, nil
}

var txReadOnlySnapshot = sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true}
