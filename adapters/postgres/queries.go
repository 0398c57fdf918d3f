package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/uptrace/bun"

	"warehouse/domain"
	"warehouse/ports"
)

// Point reads bypass Bun's formatting: they go to pgx with their arguments, prepared once
// per connection (cache-statement mode) and then only bound and executed — the hot path of
// the API when the cache misses. Concurrent point reads of one kind are coalesced (see
// coalescer): a lone read runs the one-key query, reads that pile up behind busy queries
// share one array query. Unlike the write path (see exec in store.go), the array queries
// keep PostgreSQL's generic plan: planning each of them cost a fifth of the uncached read
// throughput, and a generic plan that a young ledger's statistics made a scan is re-made
// as soon as autoanalyze brings new ones (TestListQueriesUseIndexes checks the plans on a
// large, analysed ledger).
const (
	movementQuery      = `SELECT ` + movementColumns + ` FROM movements WHERE movement_id = $1`
	movementsByIDQuery = `SELECT ` + movementColumns + ` FROM movements WHERE movement_id = ANY($1::uuid[])`
	stockQuery         = `SELECT quantity, updated_at FROM stock WHERE warehouse_id = $1 AND product_id = $2`
	stocksQuery        = `SELECT k.n, s.quantity, s.updated_at
		FROM unnest($1::uuid[], $2::uuid[]) WITH ORDINALITY AS k(w, p, n)
		JOIN stock s ON s.warehouse_id = k.w AND s.product_id = k.p`
)

// Point-read coalescing: at most pointReadQueries queries of a kind at once (leaving the
// rest of the pool to lists and ingest), each answering up to pointReadBatch reads.
const (
	pointReadQueries = 4
	pointReadBatch   = 256
	// pastQueries bounds the coalesced as-of folds in flight the same way, and the
	// coalesced history pages; pastPageBatch bounds the pages one query reads (each up
	// to MaxListLimit rows).
	pastQueries   = 2
	pastPageBatch = 64
	// routeQueries bounds the coalesced route reads in flight (each also holds a list
	// slot), and routeBatch the requests one of them answers: identical ones share a
	// query, distinct ones run one after another on its connection.
	routeQueries = 2
	routeBatch   = 16
)

// Movement returns one movement.
func (s *Store) Movement(ctx context.Context, id domain.MovementID) (domain.Movement, error) {
	m, err := s.movementReads.get(ctx, id)
	if err != nil {
		return domain.Movement{}, fmt.Errorf("movement %s: %w", id, err)
	}
	return m, nil
}

// Stock returns one stock row.
func (s *Store) Stock(ctx context.Context, w domain.WarehouseID, p domain.ProductID) (domain.Stock, error) {
	st, err := s.stockReads.get(ctx, domain.StockKey{Warehouse: w, Product: p})
	if err != nil {
		return domain.Stock{}, fmt.Errorf("stock of product %s at warehouse %s: %w", p, w, err)
	}
	return st, nil
}

// fetchMovements reads the movements of distinct ids.
func (s *Store) fetchMovements(ctx context.Context, ids []domain.MovementID) (map[domain.MovementID]domain.Movement, error) {
	var (
		rows *sql.Rows
		err  error
	)
	if len(ids) == 1 {
		rows, err = s.db.DB.QueryContext(ctx, movementQuery, pgx.QueryExecModeCacheStatement, [16]byte(ids[0]))
	} else {
		arr := make([][16]byte, len(ids))
		for i, id := range ids {
			arr[i] = [16]byte(id)
		}
		rows, err = s.db.DB.QueryContext(ctx, movementsByIDQuery, pgx.QueryExecModeCacheStatement, arr)
	}
	if err != nil {
		return nil, translate(err)
	}
	defer rows.Close()
	found := make(map[domain.MovementID]domain.Movement, len(ids))
	for rows.Next() {
		var r movementRow
		if err := r.scan(rows); err != nil {
			return nil, translate(err)
		}
		found[domain.MovementID(r.MovementID)] = r.domain()
	}
	if err := rows.Err(); err != nil {
		return nil, translate(err)
	}
	return found, nil
}

// fetchStock reads the stock rows of distinct keys.
func (s *Store) fetchStock(ctx context.Context, keys []domain.StockKey) (map[domain.StockKey]domain.Stock, error) {
	found := make(map[domain.StockKey]domain.Stock, len(keys))
	if len(keys) == 1 {
		st := domain.Stock{WarehouseID: keys[0].Warehouse, ProductID: keys[0].Product}
		err := s.db.DB.QueryRowContext(ctx, stockQuery, pgx.QueryExecModeCacheStatement,
			[16]byte(keys[0].Warehouse), [16]byte(keys[0].Product)).Scan(&st.Quantity, &st.UpdatedAt)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return nil, translate(err)
		default:
			st.UpdatedAt = st.UpdatedAt.UTC()
			found[keys[0]] = st
		}
		return found, nil
	}
	ws, ps := make([][16]byte, len(keys)), make([][16]byte, len(keys))
	for i, k := range keys {
		ws[i], ps[i] = [16]byte(k.Warehouse), [16]byte(k.Product)
	}
	rows, err := s.db.DB.QueryContext(ctx, stocksQuery, pgx.QueryExecModeCacheStatement, ws, ps)
	if err != nil {
		return nil, translate(err)
	}
	defer rows.Close()
	for rows.Next() {
		var n int64
		var st domain.Stock
		if err := rows.Scan(&n, &st.Quantity, &st.UpdatedAt); err != nil {
			return nil, translate(err)
		}
		if n < 1 || n > int64(len(keys)) {
			return nil, fmt.Errorf("stock read: ordinal %d of %d keys", n, len(keys))
		}
		k := keys[n-1]
		st.WarehouseID, st.ProductID, st.UpdatedAt = k.Warehouse, k.Product, st.UpdatedAt.UTC()
		found[k] = st
	}
	if err := rows.Err(); err != nil {
		return nil, translate(err)
	}
	return found, nil
}

// admitList takes a list-query slot, waiting at most s.listWait, and returns the function
// that gives it back. A page of up to 1000 rows holds its connection far longer than a
// point read: without a bound, a burst of lists takes every connection of the pool, and
// then every request (ingest too) waits for one until its deadline, which looks like an
// outage. With it, lists beyond the bound fail fast with ports.ErrOverloaded and the
// rest of the pool stays free for point reads and writes.
func (s *Store) admitList(ctx context.Context) (release func(), err error) {
	release = func() { <-s.listSlots }
	select {
	case s.listSlots <- struct{}{}:
		return release, nil
	default:
	}
	timer := time.NewTimer(s.listWait)
	defer timer.Stop()
	select {
	case s.listSlots <- struct{}{}:
		return release, nil
	case <-timer.C:
		return nil, fmt.Errorf("%w: %d list queries running, none finished within %v", ports.ErrOverloaded, cap(s.listSlots), s.listWait)
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: waiting for a list query slot: %w", ports.ErrOverloaded, ctx.Err())
	}
}

// Movements lists movements newest first by (moved_at, movement_id). Each filter has an
// index that ends in that order, so a page is an index range scan of limit+1 rows. A
// warehouse matches either end: the two ends are two index scans merged by a UNION.
// It fails with ports.ErrOverloaded when no list slot frees in time (see admitList).
func (s *Store) Movements(ctx context.Context, f ports.MovementFilter) (ports.MovementPage, error) {
	release, err := s.admitList(ctx)
	if err != nil {
		return ports.MovementPage{}, fmt.Errorf("list movements: %w", err)
	}
	defer release()
	query, qargs := movementsQuery(f)
	var rows []struct {
		movementRow `bun:",extend"`
		MovedAt     bun.NullTime `bun:"moved_at"`
	}
	if err := s.db.NewRaw(query, qargs...).Scan(ctx, &rows); err != nil {
		return ports.MovementPage{}, fmt.Errorf("list movements: %w", translate(err))
	}
	page := ports.MovementPage{Items: make([]domain.Movement, 0, min(len(rows), f.Limit))}
	for i, r := range rows {
		if i == f.Limit {
			last := page.Items[len(page.Items)-1]
			page.Next = &domain.MovementCursor{Time: last.Time(), ID: last.ID}
			break
		}
		page.Items = append(page.Items, r.domain())
	}
	return page, nil
}

// movementsQuery builds the list query of f; it asks for one row more than the page
// to learn whether another page follows.
func movementsQuery(f ports.MovementFilter) (string, []any) {
	var conds []string
	var args []any
	add := func(cond string, a ...any) { conds = append(conds, cond); args = append(args, a...) }
	if f.Product != nil {
		add("product_id = ?", f.Product.String())
	}
	if f.Status != "" {
		add("status = ?", string(f.Status))
	}
	if !f.Since.IsZero() {
		add("moved_at >= ?", f.Since.UTC())
	}
	if !f.Until.IsZero() {
		add("moved_at < ?", f.Until.UTC())
	}
	if !f.DepartedBefore.IsZero() {
		// With a departure, moved_at is the departure's time: the range stays on the index.
		add("departure_at IS NOT NULL AND moved_at < ?", f.DepartedBefore.UTC())
	}
	if f.After != nil {
		add("(moved_at, movement_id) < (?, ?)", f.After.Time.UTC(), f.After.ID.String())
	}
	const order = " ORDER BY moved_at DESC, movement_id DESC LIMIT ?"
	limit := f.Limit + 1
	where := func(extra ...string) string {
		all := append(extra, conds...)
		if len(all) == 0 {
			return ""
		}
		return " WHERE " + strings.Join(all, " AND ")
	}
	if f.Warehouse == nil {
		return `SELECT ` + movementColumns + ` FROM movements` + where() + order, append(args, limit)
	}
	w := f.Warehouse.String()
	query := `SELECT * FROM (
		(SELECT ` + movementColumns + `, moved_at FROM movements` + where("departure_warehouse_id = ?") + order + `)
		UNION
		(SELECT ` + movementColumns + `, moved_at FROM movements` + where("arrival_warehouse_id = ?") + order + `)
	) u ORDER BY moved_at DESC, movement_id DESC LIMIT ?`
	var qargs []any
	qargs = append(append(append(qargs, w), args...), limit)
	qargs = append(append(append(qargs, w), args...), limit)
	return query, append(qargs, limit)
}

// WarehouseStock lists a warehouse's stock by product id: a range scan of the primary key.
// It fails with ports.ErrOverloaded when no list slot frees in time (see admitList).
func (s *Store) WarehouseStock(ctx context.Context, f ports.StockFilter) (ports.StockPage, error) {
	release, err := s.admitList(ctx)
	if err != nil {
		return ports.StockPage{}, fmt.Errorf("list stock of warehouse %s: %w", f.Warehouse, err)
	}
	defer release()
	after := uuid.Nil.String()
	if f.After != nil {
		after = f.After.String()
	}
	var rows []stockRow
	err = s.db.NewRaw(`SELECT warehouse_id, product_id, quantity, updated_at FROM stock
		WHERE warehouse_id = ? AND product_id > ? ORDER BY product_id LIMIT ?`,
		f.Warehouse.String(), after, f.Limit+1).Scan(ctx, &rows)
	if err != nil {
		return ports.StockPage{}, fmt.Errorf("list stock of warehouse %s: %w", f.Warehouse, translate(err))
	}
	page := ports.StockPage{Items: make([]domain.Stock, 0, min(len(rows), f.Limit))}
	for i, r := range rows {
		if i == f.Limit {
			next := page.Items[len(page.Items)-1].ProductID
			page.Next = &next
			break
		}
		page.Items = append(page.Items, r.domain())
	}
	return page, nil
}
