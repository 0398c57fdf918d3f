package http_test

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	httpadapter "warehouse/adapters/http"
)

// The fixture's warehouse A holds, by business time: +150 at 10:00, -20 at 12:00:00.25
// (the in-transit departure) and -100 at 12:12:56 (the completed one); B received 98.

func TestStockAsOf(t *testing.T) {
	f := newFixture(t)
	s := newAPI(t, f, httpadapter.Options{})
	base := "/api/warehouses/" + f.whA + "/products/" + f.product
	for _, tc := range []struct{ asOf, quantity string }{
		{"2025-02-18T11:00:00Z", "150"},
		{"2025-02-18T12:00:00.25Z", "130"}, // at the instant of an event: included
		{"2025-02-18T15:05:00%2B03:00", "130"},
		{"2025-02-18T13:00:00Z", "30"},
		{"2099-01-01T00:00:00Z", "30"}, // after the newest event: the stock now
	} {
		asOf, _ := url.QueryUnescape(tc.asOf)
		wantJSON(t, mustGet(t, s, base+"?as_of="+tc.asOf), 200, `{"warehouse_id": "`+f.whA+`", "product_id": "`+f.product+`",
			"quantity": `+tc.quantity+`, "as_of": "`+utc(t, asOf)+`", "updated_at": "2025-03-01T09:30:00Z"}`)
	}
	wantProblem(t, mustGet(t, s, base+"?as_of=2025-02-18T09:59:59Z"), 404) // before its first event
	// Without as_of, the route answers as it always did.
	wantJSON(t, mustGet(t, s, base), 200, `{"warehouse_id": "`+f.whA+`", "product_id": "`+f.product+`",
		"quantity": 30, "updated_at": "2025-03-01T09:30:00Z"}`)

	list := "/api/warehouses/" + f.whA + "/products?as_of=2025-02-18T11:00:00Z"
	wantJSON(t, mustGet(t, s, list), 200, `{"items": [{"warehouse_id": "`+f.whA+`", "product_id": "`+f.product+`",
		"quantity": 150, "as_of": "2025-02-18T11:00:00Z", "updated_at": "2025-03-01T09:30:00Z"}], "next_cursor": null}`)
	wantJSON(t, mustGet(t, s, "/api/warehouses/"+f.whB+"/products?as_of=2025-02-18T11:00:00Z"), 200, `{"items": [], "next_cursor": null}`)
}

// utc writes an RFC 3339 time in UTC as the API does.
func utc(t *testing.T, s string) string {
	t.Helper()
	r := mustGetTime(t, s)
	return r.UTC().Format("2006-01-02T15:04:05.999999999Z07:00")
}

func TestStockHistory(t *testing.T) {
	f := newFixture(t)
	s := newAPI(t, f, httpadapter.Options{})
	base := "/api/warehouses/" + f.whA + "/products/" + f.product + "/history"
	r := mustGet(t, s, base)
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	type entry struct {
		MovementID, Event, Source, Timestamp string
		Delta, Balance                       int64
	}
	got := decodeItems[entry](t, r)
	want := []entry{
		{f.arrived, "arrival", "SUPPLIER-1", "2025-02-18T10:00:00Z", 150, 150},
		{f.inTransit, "departure", "WH-3322", "2025-02-18T12:00:00.25Z", -20, 130},
		{f.completed, "departure", "WH-3322", "2025-02-18T12:12:56Z", -100, 30},
	}
	if len(got) != len(want) {
		t.Fatalf("history = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	// One entry a page: the cursor carries on, and each page's balance stands alone.
	var balances []int64
	next := base + "?limit=1"
	for range 5 {
		r := mustGet(t, s, next)
		items := decodeItems[entry](t, r)
		for _, it := range items {
			balances = append(balances, it.Balance)
		}
		cursor := nextCursor(t, r)
		if cursor == "" {
			break
		}
		next = base + "?limit=1&cursor=" + cursor
	}
	if len(balances) != 3 || balances[0] != 150 || balances[1] != 130 || balances[2] != 30 {
		t.Errorf("balances page by page = %v, want [150 130 30]", balances)
	}
	// A window keeps the balances of the whole history.
	items := decodeItems[entry](t, mustGet(t, s, base+"?since=2025-02-18T12:05:00Z&until=2025-02-19T00:00:00Z"))
	if len(items) != 1 || items[0].Balance != 30 {
		t.Errorf("window = %+v, want the last entry with balance 30", items)
	}
}

func TestRoutesAndInTransit(t *testing.T) {
	f := newFixture(t)
	s := newAPI(t, f, httpadapter.Options{})
	wantJSON(t, mustGet(t, s, "/api/routes?since=2025-02-18T00:00:00Z&until=2025-02-19T00:00:00Z"), 200, `{"items": [{
		"from": "`+f.whA+`", "to": "`+f.whB+`", "movements": 1, "quantity_sent": 100, "quantity_received": 98,
		"quantity_lost": 2, "loss_rate": 0.02, "transit_seconds": {"p50": 8520, "p90": 8520, "p99": 8520, "max": 8520}}],
		"next_cursor": null}`)
	wantJSON(t, mustGet(t, s, "/api/routes?since=2025-02-18T00:00:00Z&until=2025-02-19T00:00:00Z&from="+f.whB), 200,
		`{"items": [], "next_cursor": null}`)
	// The default window is the last 30 days: the fixture's 2025 movements are older.
	wantJSON(t, mustGet(t, s, "/api/routes"), 200, `{"items": [], "next_cursor": null}`)

	wantJSON(t, mustGet(t, s, "/api/warehouses/"+f.whA+"/in-transit"), 200, `{"warehouse_id": "`+f.whA+`",
		"movements": 1, "oldest_departure": "2025-02-18T12:00:00.25Z",
		"products": [{"product_id": "`+f.product+`", "movements": 1, "quantity": 20, "oldest_departure": "2025-02-18T12:00:00.25Z"}]}`)
	wantJSON(t, mustGet(t, s, "/api/warehouses/"+f.whB+"/in-transit"), 200, `{"warehouse_id": "`+f.whB+`",
		"movements": 0, "oldest_departure": null, "products": []}`)
}

func TestStuckShipments(t *testing.T) {
	f := newFixture(t)
	s := newAPI(t, f, httpadapter.Options{})
	r := mustGet(t, s, "/api/movements?status=in_transit&older_than=48h")
	items := decodeItems[struct{ MovementID string }](t, r)
	if len(items) != 1 || items[0].MovementID != f.inTransit {
		t.Errorf("stuck = %+v, want %s", items, f.inTransit)
	}
	// Nothing departed less than a hundred years ago... in 2025 terms, everything did.
	r = mustGet(t, s, "/api/movements?status=in_transit&older_than=876000h")
	if items := decodeItems[struct{ MovementID string }](t, r); len(items) != 0 {
		t.Errorf("older than a century = %+v, want none", items)
	}
}

func TestEventLookup(t *testing.T) {
	f := newFixture(t)
	id := uuid.NewString()
	in := event(uuid.NewString(), f.whB, f.product, "arrival", "urn:wh/9 east", "2025-02-19T08:00:00+03:00", 5)
	in.ID = id
	in.Attributes = []byte(`{"subject":"WH-9:ARRIVAL"}`)
	mustApply(t, f.store, in)
	s := newAPI(t, f, httpadapter.Options{})
	target := "/api/events/" + url.PathEscape("urn:wh/9 east") + "/" + url.PathEscape(id)
	if !strings.Contains(target, "%2F") {
		t.Fatalf("target %s does not encode the slash", target)
	}
	wantJSON(t, mustGet(t, s, target), 200, `{"event": {"id": "`+id+`", "source": "urn:wh/9 east", "specversion": "1.0",
		"type": "ru.retail.warehouses.movement", "subject": "WH-9:ARRIVAL", "data": {"movement_id": "`+in.MovementID+`",
		"warehouse_id": "`+f.whB+`", "product_id": "`+f.product+`", "event": "arrival", "timestamp": "2025-02-19T05:00:00Z",
		"quantity": 5}}, "outcome": "stored", "recorded_at": "2025-03-01T09:30:00Z", "sequence": 5}`)
	wantProblem(t, mustGet(t, s, "/api/events/WH-1/"+uuid.NewString()), 404)
}

// TestHistoryBadRequests: every malformed parameter of the new routes is a 400 that
// names the field and never echoes the value.
func TestHistoryBadRequests(t *testing.T) {
	f := newFixture(t)
	s := newAPI(t, f, httpadapter.Options{})
	stock := "/api/warehouses/" + f.whA + "/products/" + f.product
	for _, target := range []string{
		stock + "?as_of=yesterday",
		stock + "?as_of=0000-12-31T23:59:59Z",
		stock + "?as_of=",
		stock + "?at=2025-01-01T00:00:00Z",
		"/api/warehouses/" + f.whA + "/products?as_of=2025-13-01T00:00:00Z",
		stock + "/history?since=soon",
		stock + "/history?since=2025-02-19T00:00:00Z&until=2025-02-18T00:00:00Z",
		stock + "/history?limit=0",
		stock + "/history?limit=1001",
		stock + "/history?cursor=bm90LWEtY3Vyc29y",
		stock + "/history?as_of=2025-01-01T00:00:00Z",
		"/api/warehouses/not-a-uuid/products/" + f.product + "/history",
		"/api/movements?older_than=2days",
		"/api/movements?older_than=-5h",
		"/api/movements?older_than=0s",
		"/api/movements?older_than=1000000h",
		"/api/routes?since=2024-01-01T00:00:00Z&until=2025-06-01T00:00:00Z",
		"/api/routes?since=2025-01-01T00:00:00Z",
		"/api/routes?until=2025-01-01T00:00:00Z",
		"/api/routes?since=2025-01-02T00:00:00Z&until=2025-01-01T00:00:00Z",
		"/api/routes?from=x",
		"/api/routes?product=" + f.product,
		"/api/routes?cursor=" + mustMovementCursorFromList(t, s),
		"/api/warehouses/" + f.whA + "/in-transit?limit=5",
		"/api/events/WH-1/" + url.PathEscape("bad\x07id"),
		"/api/events/" + url.PathEscape("WH\x01") + "/id",
		"/api/events/WH-1/" + strings.Repeat("x", 129),
	} {
		r := mustGet(t, s, target)
		detail := wantProblem(t, r, 400)
		if strings.Contains(detail, "yesterday") || strings.Contains(detail, "2days") || strings.Contains(detail, "soon") {
			t.Errorf("%s: detail %q echoes the request", target, detail)
		}
	}
}

// mustMovementCursorFromList returns a movement list's cursor, which the route list must
// refuse: a cursor is tied to its list.
func mustMovementCursorFromList(t *testing.T, s *httpadapter.Server) string {
	t.Helper()
	c := nextCursor(t, mustGet(t, s, "/api/movements?limit=1"))
	if c == "" {
		t.Fatal("no movement cursor")
	}
	return c
}

// decodeItems decodes the items of a 200 list answer; JSON keys match the fields of T
// case-insensitively once their underscores are dropped.
func decodeItems[T any](t *testing.T, r response) []T {
	t.Helper()
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	var page struct{ Items []map[string]any }
	if err := json.Unmarshal(r.body, &page); err != nil {
		t.Fatal(err)
	}
	out := make([]T, len(page.Items))
	for i, it := range page.Items {
		flat := map[string]any{}
		for k, v := range it {
			flat[strings.ReplaceAll(k, "_", "")] = v
		}
		raw, _ := json.Marshal(flat)
		if err := json.Unmarshal(raw, &out[i]); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// nextCursor returns the next_cursor of a list answer, "" when null.
func nextCursor(t *testing.T, r response) string {
	t.Helper()
	var page struct {
		NextCursor *string `json:"next_cursor"`
	}
	if err := json.Unmarshal(r.body, &page); err != nil {
		t.Fatal(err)
	}
	if page.NextCursor == nil {
		return ""
	}
	return *page.NextCursor
}

func mustGetTime(t *testing.T, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}
