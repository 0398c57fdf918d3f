package http

import (
	"encoding/base64"
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"warehouse/domain"
	"warehouse/ports"
)

// Handlers of the ledger's past: stock as of a time, a stock row's history, routes, what
// is in transit from a warehouse, and one stored event.

// stockKeyParams parses the warehouse and product of a stock route.
func stockKeyParams(c *fiber.Ctx) (domain.WarehouseID, domain.ProductID, error) {
	w, err := domain.ParseWarehouseID(c.Params("warehouse_id"))
	if err != nil {
		return w, domain.ProductID{}, err
	}
	p, err := domain.ParseProductID(c.Params("product_id"))
	return w, p, err
}

func (a api) warehouseStockAsOf(c *fiber.Ctx, f ports.StockFilter, asOf time.Time) error {
	page, err := a.q.WarehouseStockAsOf(c.UserContext(), f, asOf)
	if err != nil {
		return err
	}
	out := stockAsOfList{Items: make([]stockAsOfJSON, 0, len(page.Items))}
	for _, s := range page.Items {
		out.Items = append(out.Items, stockAsOfOf(s))
	}
	if page.Next != nil {
		next := encodeStockCursor(*page.Next)
		out.NextCursor = &next
	}
	return c.JSON(out)
}

func (a api) history(c *fiber.Ctx) error {
	query, err := readQuery(c, "since", "until", "limit", "cursor")
	if err != nil {
		return err
	}
	var f ports.HistoryFilter
	if f.Warehouse, f.Product, err = stockKeyParams(c); err != nil {
		return err
	}
	if f.Since, err = optionalTime(query, "since"); err != nil {
		return err
	}
	if f.Until, err = optionalTime(query, "until"); err != nil {
		return err
	}
	if f.Limit, err = parseLimit(query); err != nil {
		return err
	}
	if v, ok := query["cursor"]; ok {
		pos, err := decodeHistoryCursor(v)
		if err != nil {
			return err
		}
		f.After = &pos
	}
	page, err := a.q.StockHistory(c.UserContext(), f)
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	sendAppended(c, func(b []byte) []byte { return appendHistoryPage(b, page) })
	return nil
}

// sendAppended makes the response body what appendTo appends to an empty slice, encoded
// in the response's own body buffer, which fasthttp takes from a pool and returns to it
// once the response is written: a page of history is about 12 KB, and allocating one per
// request fed the garbage collector more than anything else on that route.
func sendAppended(c *fiber.Ctx, appendTo func([]byte) []byte) {
	resp := c.Response()
	resp.SwapBody(appendTo(resp.SwapBody(nil)[:0]))
}

func (a api) routesList(c *fiber.Ctx) error {
	query, err := readQuery(c, "since", "until", "from", "to", "product_id", "limit", "cursor")
	if err != nil {
		return err
	}
	var f ports.RouteFilter
	if f.Since, err = optionalTime(query, "since"); err != nil {
		return err
	}
	if f.Until, err = optionalTime(query, "until"); err != nil {
		return err
	}
	if f.From, err = optionalID(query, "from", domain.ParseWarehouseID); err != nil {
		return err
	}
	if f.To, err = optionalID(query, "to", domain.ParseWarehouseID); err != nil {
		return err
	}
	if f.Product, err = optionalID(query, "product_id", domain.ParseProductID); err != nil {
		return err
	}
	if f.Limit, err = parseLimit(query); err != nil {
		return err
	}
	if v, ok := query["cursor"]; ok {
		cur, err := decodeRouteCursor(v)
		if err != nil {
			return err
		}
		f.After = &cur
	}
	page, err := a.q.Routes(c.UserContext(), f)
	if err != nil {
		return err
	}
	out := routeList{Items: make([]routeJSON, 0, len(page.Items))}
	for _, r := range page.Items {
		out.Items = append(out.Items, routeJSON{
			From: r.From.String(), To: r.To.String(), Movements: r.Movements,
			QuantitySent: r.QuantitySent, QuantityReceived: r.QuantityReceived, QuantityLost: r.QuantityLost,
			LossRate: r.LossRate(), TransitSeconds: transitJSON(r.Transit),
		})
	}
	if page.Next != nil {
		next := encodeRouteCursor(*page.Next)
		out.NextCursor = &next
	}
	return c.JSON(out)
}

func (a api) inTransit(c *fiber.Ctx) error {
	if _, err := readQuery(c); err != nil {
		return err
	}
	w, err := domain.ParseWarehouseID(c.Params("warehouse_id"))
	if err != nil {
		return err
	}
	loads, err := a.q.InTransit(c.UserContext(), w)
	if err != nil {
		return err
	}
	out := inTransitJSON{WarehouseID: w.String(), Products: make([]transitLoadJSON, 0, len(loads))}
	var oldest time.Time
	for _, l := range loads {
		out.Movements += l.Movements
		if oldest.IsZero() || l.OldestDeparture.Before(oldest) {
			oldest = l.OldestDeparture
		}
		out.Products = append(out.Products, transitLoadJSON{
			ProductID: l.ProductID.String(), Movements: l.Movements, Quantity: l.Quantity, OldestDeparture: formatTime(l.OldestDeparture),
		})
	}
	if !oldest.IsZero() {
		s := formatTime(oldest)
		out.OldestDeparture = &s
	}
	return c.JSON(out)
}

func (a api) event(c *fiber.Ctx) error {
	if _, err := readQuery(c); err != nil {
		return err
	}
	// Fiber routes on the path as sent: a source or an id holding a '/' arrives as %2F.
	source, serr := url.PathUnescape(c.Params("source"))
	id, ierr := url.PathUnescape(c.Params("id"))
	if serr != nil || ierr != nil {
		return &requestError{detail: "source and id must be percent-encoded path segments"}
	}
	ident, err := domain.ParseIdentity(source, id)
	if err != nil {
		return err
	}
	e, err := a.q.Event(c.UserContext(), ident.Source, ident.ID)
	if err != nil {
		return err
	}
	return c.JSON(storedEventJSON{
		Event: cloudEventOf(e.Event), Outcome: "stored", RecordedAt: formatTime(e.RecordedAt), Sequence: e.Seq,
	})
}

// cloudEventOf writes an event back as the CloudEvents structured-mode JSON the service
// took it from: its optional attributes, the required ones, the time (if it had one) and
// data, with times in UTC.
func cloudEventOf(e domain.Event) map[string]any {
	out := map[string]any{}
	var attrs map[string]json.RawMessage
	if len(e.Attributes) > 0 && json.Unmarshal(e.Attributes, &attrs) == nil {
		for k, v := range attrs {
			out[k] = v
		}
	}
	out["id"], out["source"], out["specversion"], out["type"] = e.ID, e.Source, domain.SpecVersion, domain.EventType
	if !e.Time.IsZero() {
		out["time"] = formatTime(e.Time)
	}
	out["data"] = map[string]any{
		"movement_id": e.MovementID.String(), "warehouse_id": e.WarehouseID.String(), "product_id": e.ProductID.String(),
		"event": string(e.Kind), "timestamp": formatTime(e.Timestamp), "quantity": e.Quantity,
	}
	return out
}

type stockAsOfJSON struct {
	WarehouseID string `json:"warehouse_id"`
	ProductID   string `json:"product_id"`
	Quantity    int64  `json:"quantity"`
	AsOf        string `json:"as_of"`
	UpdatedAt   string `json:"updated_at"`
}

func stockAsOfOf(s domain.StockAsOf) stockAsOfJSON {
	return stockAsOfJSON{
		WarehouseID: s.WarehouseID.String(), ProductID: s.ProductID.String(), Quantity: s.Quantity,
		AsOf: formatTime(s.AsOf), UpdatedAt: formatTime(s.UpdatedAt),
	}
}

type stockAsOfList struct {
	Items      []stockAsOfJSON `json:"items"`
	NextCursor *string         `json:"next_cursor"`
}

type historyJSON struct {
	MovementID string `json:"movement_id"`
	Event      string `json:"event"`
	Source     string `json:"source"`
	EventID    string `json:"event_id"`
	Timestamp  string `json:"timestamp"`
	RecordedAt string `json:"recorded_at"`
	Delta      int64  `json:"delta"`
	Balance    int64  `json:"balance"`
}

type historyList struct {
	Items      []historyJSON `json:"items"`
	NextCursor *string       `json:"next_cursor"`
}

type transitSecondsJSON struct {
	P50 int64 `json:"p50"`
	P90 int64 `json:"p90"`
	P99 int64 `json:"p99"`
	Max int64 `json:"max"`
}

func transitJSON(t domain.TransitStats) transitSecondsJSON {
	return transitSecondsJSON{P50: t.P50, P90: t.P90, P99: t.P99, Max: t.Max}
}

type routeJSON struct {
	From             string             `json:"from"`
	To               string             `json:"to"`
	Movements        int64              `json:"movements"`
	QuantitySent     int64              `json:"quantity_sent"`
	QuantityReceived int64              `json:"quantity_received"`
	QuantityLost     int64              `json:"quantity_lost"`
	LossRate         float64            `json:"loss_rate"`
	TransitSeconds   transitSecondsJSON `json:"transit_seconds"`
}

type routeList struct {
	Items      []routeJSON `json:"items"`
	NextCursor *string     `json:"next_cursor"`
}

type transitLoadJSON struct {
	ProductID       string `json:"product_id"`
	Movements       int64  `json:"movements"`
	Quantity        int64  `json:"quantity"`
	OldestDeparture string `json:"oldest_departure"`
}

type inTransitJSON struct {
	WarehouseID     string            `json:"warehouse_id"`
	Movements       int64             `json:"movements"`
	OldestDeparture *string           `json:"oldest_departure"`
	Products        []transitLoadJSON `json:"products"`
}

type storedEventJSON struct {
	Event      map[string]any `json:"event"`
	Outcome    string         `json:"outcome"`
	RecordedAt string         `json:"recorded_at"`
	Sequence   int64          `json:"sequence"`
}

// History and route cursors, like the others: base64url of a versioned text.
const (
	historyCursorPrefix = "h1|" // then RFC 3339 time with nanoseconds, '|', sequence
	routeCursorPrefix   = "r1|" // then movements, '|', sender, '|', receiver
)

func encodeHistoryCursor(p domain.Position) string {
	raw := historyCursorPrefix + p.Timestamp.UTC().Format(time.RFC3339Nano) + "|" + strconv.FormatInt(p.Seq, 10)
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

func decodeHistoryCursor(s string) (domain.Position, error) {
	raw, ok := decodeCursor(s, historyCursorPrefix)
	if !ok {
		return domain.Position{}, errBadCursor
	}
	ts, seq, ok := strings.Cut(raw, "|")
	if !ok {
		return domain.Position{}, errBadCursor
	}
	t, err := domain.ParseTimestamp("cursor", ts)
	if err != nil {
		return domain.Position{}, errBadCursor
	}
	n, err := strconv.ParseInt(seq, 10, 64)
	if err != nil || n < 0 {
		return domain.Position{}, errBadCursor
	}
	return domain.Position{Timestamp: t, Seq: n}, nil
}

func encodeRouteCursor(c ports.RouteCursor) string {
	raw := routeCursorPrefix + strconv.FormatInt(c.Movements, 10) + "|" + c.From.String() + "|" + c.To.String()
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

func decodeRouteCursor(s string) (ports.RouteCursor, error) {
	raw, ok := decodeCursor(s, routeCursorPrefix)
	if !ok {
		return ports.RouteCursor{}, errBadCursor
	}
	parts := strings.Split(raw, "|")
	if len(parts) != 3 {
		return ports.RouteCursor{}, errBadCursor
	}
	n, err := strconv.ParseInt(parts[0], 10, 64)
	if err != nil || n < 1 {
		return ports.RouteCursor{}, errBadCursor
	}
	from, ferr := domain.ParseWarehouseID(parts[1])
	to, terr := domain.ParseWarehouseID(parts[2])
	if ferr != nil || terr != nil {
		return ports.RouteCursor{}, errBadCursor
	}
	return ports.RouteCursor{Movements: n, From: from, To: to}, nil
}
