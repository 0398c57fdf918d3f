package postgres

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"
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

// CheckpointMismatch is a checkpoint whose balance or event count differs from the events
// at or before its position. Computed is nil when no event sits at its position.
type CheckpointMismatch struct {
	WarehouseID     uuid.UUID `bun:"warehouse_id,type:uuid"`
	ProductID       uuid.UUID `bun:"product_id,type:uuid"`
	At              time.Time `bun:"at"`
	Seq             int64     `bun:"seq"`
	StoredBalance   int64     `bun:"stored_balance"`
	StoredEvents    int64     `bun:"stored_events"`
	ComputedBalance *int64    `bun:"computed_balance"`
	ComputedEvents  *int64    `bun:"computed_events"`
}

// AuditReport is what Audit found. The ledger is sound when every list and count of
// differences is empty.
type AuditReport struct {
	Events        int64
	Movements     int64
	StockRows     int64
	StockQuantity int64
	// Mismatches lists stock rows that their events do not add up to (at most 1000).
	Mismatches []StockMismatch
	// NegativeRows counts stock rows below zero (the CHECK constraint forbids them).
	NegativeRows int64
	// MovementMismatches lists movements whose projection disagrees with their events, or
	// that have two events for one leg (at most 1000 of each).
	MovementMismatches []uuid.UUID
	// Checkpoints counts the stock checkpoints; CheckpointMismatches lists those that their
	// events do not add up to (at most 1000).
	Checkpoints          int64
	CheckpointMismatches []CheckpointMismatch
	// EventCountMismatches lists stock rows whose event count differs from their events,
	// with the counts as Stored and Computed (at most 1000).
	EventCountMismatches []StockMismatch
	// StaleCheckpointRows counts stock rows whose checkpoint_at is not the time of their
	// newest checkpoint.
	StaleCheckpointRows int64
}

// Sound reports whether the audit found nothing wrong.
func (r AuditReport) Sound() bool {
	return len(r.Mismatches) == 0 && r.NegativeRows == 0 && len(r.MovementMismatches) == 0 &&
		len(r.CheckpointMismatches) == 0 && len(r.EventCountMismatches) == 0 && r.StaleCheckpointRows == 0
}

// Audit recomputes every stock row, movement and checkpoint from the stored events, in
// one repeatable-read snapshot, and reports the differences.
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
	// Two events for one leg of a movement (the write path never stores them; no unique
	// key forbids them since migration 20261207140000) make a movement mismatch.
	var doubled []uuid.UUID
	err = tx.NewRaw(`SELECT DISTINCT movement_id FROM events GROUP BY movement_id, event HAVING count(*) > 1
		ORDER BY 1 LIMIT 1000`).Scan(ctx, &doubled)
	if err != nil {
		return r, fmt.Errorf("audit movement legs: %w", translate(err))
	}
	for _, id := range doubled {
		if !slices.Contains(r.MovementMismatches, id) {
			r.MovementMismatches = append(r.MovementMismatches, id)
		}
	}
	if err := auditHistory(ctx, tx, &r); err != nil {
		return r, err
	}
	return r, nil
}

// auditHistory checks the derived data of the ledger's past: every checkpoint against a
// running sum of its row's events in one pass over events_history_idx, each stock row's
// event count, and its checkpoint_at.
func auditHistory(ctx context.Context, tx bun.Tx, r *AuditReport) error {
	err := tx.NewRaw(`SELECT (SELECT count(*) FROM stock_checkpoints),
		(SELECT count(*) FROM stock s WHERE s.checkpoint_at IS DISTINCT FROM (SELECT max(c.at) FROM stock_checkpoints c
			WHERE c.warehouse_id = s.warehouse_id AND c.product_id = s.product_id))`).Scan(ctx, &r.Checkpoints, &r.StaleCheckpointRows)
	if err != nil {
		return fmt.Errorf("audit checkpoints: %w", translate(err))
	}
	err = tx.NewRaw(`WITH running AS (
			SELECT warehouse_id, product_id, occurred_at, seq,
			       sum(delta) OVER w AS balance, count(*) OVER w AS events
			FROM events
			WINDOW w AS (PARTITION BY warehouse_id, product_id ORDER BY occurred_at, seq ROWS UNBOUNDED PRECEDING))
		SELECT c.warehouse_id, c.product_id, c.at, c.seq, c.balance AS stored_balance, c.events AS stored_events,
		       r.balance AS computed_balance, r.events AS computed_events
		FROM stock_checkpoints c
		LEFT JOIN running r ON r.warehouse_id = c.warehouse_id AND r.product_id = c.product_id
		     AND r.occurred_at = c.at AND r.seq = c.seq
		WHERE r.balance IS DISTINCT FROM c.balance OR r.events IS DISTINCT FROM c.events
		ORDER BY 1, 2, 3, 4 LIMIT 1000`).Scan(ctx, &r.CheckpointMismatches)
	if err != nil {
		return fmt.Errorf("audit checkpoints: %w", translate(err))
	}
	err = tx.NewRaw(`SELECT s.warehouse_id, s.product_id, s.events AS stored, coalesce(c.n, 0) AS computed
		FROM stock s LEFT JOIN (SELECT warehouse_id, product_id, count(*) AS n FROM events GROUP BY 1, 2) c
		  ON c.warehouse_id = s.warehouse_id AND c.product_id = s.product_id
		WHERE s.events <> coalesce(c.n, 0)
		ORDER BY 1, 2 LIMIT 1000`).Scan(ctx, &r.EventCountMismatches)
	if err != nil {
		return fmt.Errorf("audit event counts: %w", translate(err))
	}
	return nil
}

var txReadOnlySnapshot = sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true}
