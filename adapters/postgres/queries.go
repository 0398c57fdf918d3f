package postgres

import (
	"context"
	"fmt"
	"github.com/jackc/pgx/v5"
	"strings"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"warehouse/domain"
	"warehouse/ports"
)

// Point reads bypass Bun's formatting: they go to pgx with their arguments and the
// cache-statement mode, so each connection prepares them once and then only binds and
// executes — the hot path of the API when the cache misses.
const (
	movementQuery = `SELECT ` + movementColumns + ` FROM movements WHERE movement_id = $1`
	stockQuery    = `SELECT quantity, updated_at FROM stock WHERE warehouse_id = $1 AND product_id = $2`
)

// Movement returns one movement.
func (s *Store) Movement(ctx context.Context, id domain.MovementID) (domain.Movement, error) {
	var r movementRow
	err := s.db.DB.QueryRowContext(ctx, movementQuery, pgx.QueryExecModeCacheStatement, [16]byte(id)).Scan(
		&r.MovementID, &r.ProductID,
		&r.DepartureWarehouseID, &r.DepartureSource, &r.DepartureAt, &r.DepartureQuantity,
		&r.ArrivalWarehouseID, &r.ArrivalSource, &r.ArrivalAt, &r.ArrivalQuantity)
	if err != nil {
		return domain.Movement{}, fmt.Errorf("movement %s: %w", id, translate(err))
	}
	return r.domain(), nil
}

// Stock returns one stock row.
func (s *Store) Stock(ctx context.Context, w domain.WarehouseID, p domain.ProductID) (domain.Stock, error) {
	st := domain.Stock{WarehouseID: w, ProductID: p}
	err := s.db.DB.QueryRowContext(ctx, stockQuery, pgx.QueryExecModeCacheStatement, [16]byte(w), [16]byte(p)).
		Scan(&st.Quantity, &st.UpdatedAt)
	if err != nil {
		return domain.Stock{}, fmt.Errorf("stock of product %s at warehouse %s: %w", p, w, translate(err))
	}
	st.UpdatedAt = st.UpdatedAt.UTC()
	return st, nil
}

// Movements lists movements newest first by (moved_at, movement_id). Each filter has an
// index that ends in that order, so a page is an index range scan of limit+1 rows. A
// warehouse matches either end: the two ends are two index scans merged by a UNION.
func (s *Store) Movements(ctx context.Context, f ports.MovementFilter) (ports.MovementPage, error) {
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
func (s *Store) WarehouseStock(ctx context.Context, f ports.StockFilter) (ports.StockPage, error) {
	after := uuid.Nil.String()
	if f.After != nil {
		after = f.After.String()
	}
	var rows []stockRow
	err := s.db.NewRaw(`SELECT warehouse_id, product_id, quantity, updated_at FROM stock
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
