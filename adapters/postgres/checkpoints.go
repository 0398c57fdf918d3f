package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"warehouse/domain"
)

// checkpointEvery is how many events of a stock row lie between two of its checkpoints:
// as-of sums at most about that many index entries after the nearest checkpoint, and a
// late event updates at most one checkpoint per that many events after it.
const checkpointEvery = 1000

// writeCheckpoints keeps the checkpoints of the batch's stock rows right (see the
// create_ledger_history migration). It runs after writeStock, under the rows' locks:
//  1. a stored event dated before a row's newest checkpoint is added to every checkpoint
//     of the row after it (a checkpoint holds the events at or before its position, and
//     a new event's seq is greater than any checkpoint's, so an event dated exactly at a
//     checkpoint comes after it);
//  2. a row whose event count passes a multiple of checkpointEvery gets a checkpoint at
//     its newest position, where the balance is its quantity now (unless one is there).
//
// In the usual case, events in time order and rows short of the next multiple, it sends
// nothing.
func writeCheckpoints(ctx context.Context, tx pgx.Tx, stored []domain.Event, l *domain.Ledger, stock stockRows) error {
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
	var cp stockColumns
	counts := eventCounts(stored)
	for _, k := range sortedStockKeys(stored) {
		was, n := stock.events[k], counts[k] // was is 0 for a new row
		if was/checkpointEvery != (was+n)/checkpointEvery {
			q, _ := l.Stock(k)
			cp.add(k, q, was+n)
		}
	}
	if len(cp.ws) == 0 {
		return nil
	}
	if _, err := exec(ctx, tx, `WITH latest AS (
			SELECT k.w, k.p, k.q, k.n, e.occurred_at, e.seq
			FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::bigint[]) AS k(w, p, q, n)
			CROSS JOIN LATERAL (SELECT occurred_at, seq FROM events
				WHERE warehouse_id = k.w AND product_id = k.p ORDER BY occurred_at DESC, seq DESC LIMIT 1) e
		), made AS (
			INSERT INTO stock_checkpoints (warehouse_id, product_id, at, seq, balance, events, updated_at)
			SELECT w, p, occurred_at, seq, q, n, now() FROM latest
			-- The newest position already holds a checkpoint when every event since was
			-- late: step 1 brought it up to date.
			ON CONFLICT DO NOTHING
		)
		UPDATE stock s SET checkpoint_at = l.occurred_at FROM latest l WHERE s.warehouse_id = l.w AND s.product_id = l.p`,
		cp.ws, cp.ps, cp.qs, cp.ns); err != nil {
		return fmt.Errorf("make checkpoints: %w", err)
	}
	return nil
}
