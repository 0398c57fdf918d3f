package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"warehouse/domain"
)

// checkpointEvery is how many events of a stock row lie between two of its checkpoints:
// as-of sums at most about that many index entries after the nearest checkpoint (fewer
// than a tenth of a millisecond of PostgreSQL's time), and a late event updates one
// checkpoint per that many events after it.
const checkpointEvery = 128

// CheckpointEvery is how many events of a stock row lie between two of its checkpoints
// (for reports that describe the ledger's past).
const CheckpointEvery = checkpointEvery

// writeCheckpoints keeps the checkpoints of the batch's stock rows right (see the
// create_ledger_history migration). It runs after writeStock, under the rows' locks:
//  1. a stored event dated before a row's newest checkpoint is added to every checkpoint
//     of the row after it (a checkpoint holds the events at or before its position, and
//     a new event's seq is greater than any checkpoint's, so an event dated exactly at a
//     checkpoint comes after it);
//  2. a row whose event count passes a multiple of checkpointEvery gets a checkpoint at
//     every checkpointEvery-th event after its newest checkpoint, each holding the running
//     balance from it: several at once when one batch holds many of the row's events.
//
// In the usual case, events in time order and rows short of the next multiple, it sends
// nothing.
func writeCheckpoints(ctx context.Context, tx pgx.Tx, stored []domain.Event, rows storedRows, stock stockRows) error {
	var (
		lateW, lateP [][16]byte
		lateT        []time.Time
		lateDelta    []int64
	)
	for _, e := range stored {
		if at, ok := stock.checkpointAt[e.StockKey()]; ok && e.Timestamp.Before(at) {
			lateW, lateP = append(lateW, [16]byte(e.WarehouseID)), append(lateP, [16]byte(e.ProductID))
			lateT, lateDelta = append(lateT, e.Timestamp), append(lateDelta, e.Delta())
		}
	}
	if len(lateW) > 0 {
		if _, err := exec(ctx, tx, `UPDATE stock_checkpoints c
			SET balance = c.balance + d.delta, events = c.events + d.n, updated_at = now()
			FROM (SELECT c2.warehouse_id, c2.product_id, c2.at, c2.seq, sum(l.delta) AS delta, count(*) AS n
				FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::bigint[]) AS l(w, p, t, delta)
				JOIN stock_checkpoints c2 ON c2.warehouse_id = l.w AND c2.product_id = l.p AND c2.at > l.t
				GROUP BY 1, 2, 3, 4) d
			WHERE c.warehouse_id = d.warehouse_id AND c.product_id = d.product_id AND c.at = d.at AND c.seq = d.seq`,
			lateW, lateP, lateT, lateDelta); err != nil {
			return fmt.Errorf("add late events to checkpoints: %w", err)
		}
	}
	var ws, ps [][16]byte
	for _, k := range rows.keys {
		was, n := stock.events[k], rows.counts[k] // was is 0 for a new row
		if was/checkpointEvery != (was+n)/checkpointEvery {
			ws, ps = append(ws, [16]byte(k.Warehouse)), append(ps, [16]byte(k.Product))
		}
	}
	if len(ws) == 0 {
		return nil
	}
	// The events after a row's newest checkpoint are numbered in position order from
	// it, with their running balance; every checkpointEvery-th becomes a checkpoint.
	if _, err := exec(ctx, tx, `WITH newest AS (
			SELECT k.w, k.p, c.at, c.seq, c.balance, c.events
			FROM unnest($1::uuid[], $2::uuid[]) AS k(w, p)
			LEFT JOIN LATERAL (SELECT at, seq, balance, events FROM stock_checkpoints
				WHERE warehouse_id = k.w AND product_id = k.p ORDER BY at DESC, seq DESC LIMIT 1) c ON true
		), tail AS (
			SELECT n.w, n.p, e.occurred_at, e.seq,
			       coalesce(n.balance, 0) + sum(e.delta) OVER after AS balance,
			       coalesce(n.events, 0) + count(*) OVER after AS events,
			       count(*) OVER after AS rank
			FROM newest n CROSS JOIN LATERAL (SELECT occurred_at, seq, delta FROM events
				WHERE warehouse_id = n.w AND product_id = n.p
				  AND (occurred_at, seq) > (coalesce(n.at, '-infinity'), coalesce(n.seq, 0))) e
			WINDOW after AS (PARTITION BY n.w, n.p ORDER BY e.occurred_at, e.seq ROWS UNBOUNDED PRECEDING)
		), made AS (
			INSERT INTO stock_checkpoints (warehouse_id, product_id, at, seq, balance, events, updated_at)
			SELECT w, p, occurred_at, seq, balance, events, now() FROM tail WHERE rank % $3 = 0
			RETURNING warehouse_id, product_id, at
		)
		UPDATE stock s SET checkpoint_at = m.at
		FROM (SELECT warehouse_id, product_id, max(at) AS at FROM made GROUP BY 1, 2) m
		WHERE s.warehouse_id = m.warehouse_id AND s.product_id = m.product_id`,
		ws, ps, int64(checkpointEvery)); err != nil {
		return fmt.Errorf("make checkpoints: %w", err)
	}
	return nil
}
