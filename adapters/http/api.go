package http

import (
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"warehouse/domain"
	"warehouse/ports"
)

// Route templates of the read API. The OpenAPI document spells them with {braces}.
const (
	routeMovement       = "/api/movements/:movement_id"
	routeMovements      = "/api/movements"
	routeStock          = "/api/warehouses/:warehouse_id/products/:product_id"
	routeWarehouseStock = "/api/warehouses/:warehouse_id/products"
	routeHistory        = "/api/warehouses/:warehouse_id/products/:product_id/history"
	routeInTransit      = "/api/warehouses/:warehouse_id/in-transit"
	routeRoutes         = "/api/routes"
	routeEvent          = "/api/events/:source/:id"
)

// api holds the read API handlers. They parse, call ports.Queries with the request's
// context, map the result, and return any error to handleError.
type api struct {
	q      ports.Queries
	auth   fiber.Handler
	ingest *ingest
	stream *changeStream
}

// apiPrefix is the root of the read API; everything under it needs the token.
const apiPrefix = "/api"

func (a api) routes(app *fiber.App) {
	// The token is checked before routing, for every path under /api: a 404 or a 405
	// that came first would let a client without the token map the API.
	app.Use(func(c *fiber.Ctx) error {
		p := c.Path()
		if p == routeIngest && c.Method() == fiber.MethodPost {
			return a.ingest.auth(c) // publishers hold the ingest token, not the read token
		}
		if p == apiPrefix || strings.HasPrefix(p, apiPrefix+"/") {
			return a.auth(c)
		}
		return c.Next()
	})
	app.Post(routeIngest, a.ingest.post)
	app.Get(routeMovement, a.movement)
	app.Get(routeMovements, a.movements)
	app.Get(routeStock, a.stock)
	app.Get(routeWarehouseStock, a.warehouseStock)
	app.Get(routeHistory, a.history)
	app.Get(routeInTransit, a.inTransit)
	app.Get(routeRoutes, a.routesList)
	app.Get(routeEvent, a.event)
	app.Get(routeStream, a.stream.get)
}

func (a api) movement(c *fiber.Ctx) error {
	if _, err := readQuery(c); err != nil {
		return err
	}
	id, err := domain.ParseMovementID(c.Params("movement_id"))
	if err != nil {
		return err
	}
	m, err := a.q.Movement(c.UserContext(), id)
	if err != nil {
		return err
	}
	return c.JSON(movementOf(m))
}

func (a api) movements(c *fiber.Ctx) error {
	query, err := readQuery(c, "warehouse_id", "product_id", "status", "since", "until", "older_than", "limit", "cursor")
	if err != nil {
		return err
	}
	var f ports.MovementFilter
	if f.Warehouse, err = optionalID(query, "warehouse_id", domain.ParseWarehouseID); err != nil {
		return err
	}
	if f.Product, err = optionalID(query, "product_id", domain.ParseProductID); err != nil {
		return err
	}
	f.Status = domain.MovementStatus(query["status"]) // application.Queries checks it
	if f.Since, err = optionalTime(query, "since"); err != nil {
		return err
	}
	if f.Until, err = optionalTime(query, "until"); err != nil {
		return err
	}
	if v, ok := query["older_than"]; ok {
		if f.OlderThan, err = parseDuration("older_than", v); err != nil {
			return err
		}
	}
	if f.Limit, err = parseLimit(query); err != nil {
		return err
	}
	if v, ok := query["cursor"]; ok {
		cur, err := decodeMovementCursor(v)
		if err != nil {
			return err
		}
		f.After = &cur
	}
	page, err := a.q.Movements(c.UserContext(), f)
	if err != nil {
		return err
	}
	out := movementList{Items: make([]movementJSON, 0, len(page.Items))}
	for _, m := range page.Items {
		out.Items = append(out.Items, movementOf(m))
	}
	if page.Next != nil {
		next := encodeMovementCursor(*page.Next)
		out.NextCursor = &next
	}
	return c.JSON(out)
}

func (a api) stock(c *fiber.Ctx) error {
	query, err := readQuery(c, "as_of")
	if err != nil {
		return err
	}
	wh, p, err := stockKeyParams(c)
	if err != nil {
		return err
	}
	if v, ok := query["as_of"]; ok {
		t, err := parseTime("as_of", v)
		if err != nil {
			return err
		}
		st, err := a.q.StockAsOf(c.UserContext(), wh, p, t)
		if err != nil {
			return err
		}
		return c.JSON(stockAsOfOf(st))
	}
	s, err := a.q.Stock(c.UserContext(), wh, p)
	if err != nil {
		return err
	}
	return c.JSON(stockOf(s))
}

func (a api) warehouseStock(c *fiber.Ctx) error {
	query, err := readQuery(c, "as_of", "limit", "cursor")
	if err != nil {
		return err
	}
	f := ports.StockFilter{}
	if f.Warehouse, err = domain.ParseWarehouseID(c.Params("warehouse_id")); err != nil {
		return err
	}
	if f.Limit, err = parseLimit(query); err != nil {
		return err
	}
	if v, ok := query["cursor"]; ok {
		after, err := decodeStockCursor(v)
		if err != nil {
			return err
		}
		f.After = &after
	}
	if v, ok := query["as_of"]; ok {
		t, err := parseTime("as_of", v)
		if err != nil {
			return err
		}
		return a.warehouseStockAsOf(c, f, t)
	}
	page, err := a.q.WarehouseStock(c.UserContext(), f)
	if err != nil {
		return err
	}
	out := stockList{Items: make([]stockJSON, 0, len(page.Items))}
	for _, s := range page.Items {
		out.Items = append(out.Items, stockOf(s))
	}
	if page.Next != nil {
		next := encodeStockCursor(*page.Next)
		out.NextCursor = &next
	}
	return c.JSON(out)
}

// movementJSON is a movement as the API answers it: absent legs and derived values are null.
type movementJSON struct {
	MovementID         string   `json:"movement_id"`
	ProductID          string   `json:"product_id"`
	Status             string   `json:"status"`
	Departure          *legJSON `json:"departure"`
	Arrival            *legJSON `json:"arrival"`
	ElapsedSeconds     *int64   `json:"elapsed_seconds"`
	QuantityDifference *int64   `json:"quantity_difference"`
}

type legJSON struct {
	WarehouseID string `json:"warehouse_id"`
	Source      string `json:"source"`
	Timestamp   string `json:"timestamp"`
	Quantity    int64  `json:"quantity"`
}

type stockJSON struct {
	WarehouseID string `json:"warehouse_id"`
	ProductID   string `json:"product_id"`
	Quantity    int64  `json:"quantity"`
	UpdatedAt   string `json:"updated_at"`
}

type movementList struct {
	Items      []movementJSON `json:"items"`
	NextCursor *string        `json:"next_cursor"`
}

type stockList struct {
	Items      []stockJSON `json:"items"`
	NextCursor *string     `json:"next_cursor"`
}

func movementOf(m domain.Movement) movementJSON {
	out := movementJSON{
		MovementID: m.ID.String(),
		ProductID:  m.ProductID.String(),
		Status:     string(m.Status()),
		Departure:  legOf(m.Departure),
		Arrival:    legOf(m.Arrival),
	}
	if secs, ok := m.ElapsedSeconds(); ok {
		out.ElapsedSeconds = &secs
	}
	if diff, ok := m.QuantityDifference(); ok {
		out.QuantityDifference = &diff
	}
	return out
}

func legOf(l *domain.Leg) *legJSON {
	if l == nil {
		return nil
	}
	return &legJSON{
		WarehouseID: l.WarehouseID.String(),
		Source:      l.Source,
		Timestamp:   formatTime(l.Timestamp),
		Quantity:    l.Quantity,
	}
}

func stockOf(s domain.Stock) stockJSON {
	return stockJSON{
		WarehouseID: s.WarehouseID.String(),
		ProductID:   s.ProductID.String(),
		Quantity:    s.Quantity,
		UpdatedAt:   formatTime(s.UpdatedAt),
	}
}

// formatTime writes UTC RFC 3339 with "Z" and only the fraction digits that matter.
func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
