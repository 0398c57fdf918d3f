package http_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	httpadapter "warehouse/adapters/http"
	"warehouse/adapters/memory"
	"warehouse/application"
	"warehouse/domain"
	"warehouse/ports"
)

func (f fixture) completedJSON() string {
	return fmt.Sprintf(`{"movement_id": %q, "product_id": %q, "status": "completed",
		"departure": {"warehouse_id": %q, "source": "WH-3322", "timestamp": "2025-02-18T12:12:56Z", "quantity": 100},
		"arrival": {"warehouse_id": %q, "source": "WH-3423", "timestamp": "2025-02-18T14:34:56Z", "quantity": 98},
		"elapsed_seconds": 8520, "quantity_difference": -2}`, f.completed, f.product, f.whA, f.whB)
}

func (f fixture) inTransitJSON() string {
	return fmt.Sprintf(`{"movement_id": %q, "product_id": %q, "status": "in_transit",
		"departure": {"warehouse_id": %q, "source": "WH-3322", "timestamp": "2025-02-18T12:00:00.25Z", "quantity": 20},
		"arrival": null, "elapsed_seconds": null, "quantity_difference": null}`, f.inTransit, f.product, f.whA)
}

func (f fixture) arrivedJSON() string {
	return fmt.Sprintf(`{"movement_id": %q, "product_id": %q, "status": "arrived", "departure": null,
		"arrival": {"warehouse_id": %q, "source": "SUPPLIER-1", "timestamp": "2025-02-18T10:00:00Z", "quantity": 150},
		"elapsed_seconds": null, "quantity_difference": null}`, f.arrived, f.product, f.whA)
}

func stockJSON(wh, product string, qty int) string {
	return fmt.Sprintf(`{"warehouse_id": %q, "product_id": %q, "quantity": %d, "updated_at": "2025-03-01T09:30:00Z"}`,
		wh, product, qty)
}

func TestMovement(t *testing.T) {
	f := newFixture(t)
	s := newAPI(t, f, httpadapter.Options{})
	wantJSON(t, mustGet(t, s, "/api/movements/"+f.completed), 200, f.completedJSON())
	wantJSON(t, mustGet(t, s, "/api/movements/"+f.inTransit), 200, f.inTransitJSON())
	wantJSON(t, mustGet(t, s, "/api/movements/"+f.arrived), 200, f.arrivedJSON())
	// Upper-case UUIDs are accepted and echoed in lowercase.
	wantJSON(t, mustGet(t, s, "/api/movements/"+strings.ToUpper(f.completed)), 200, f.completedJSON())
}

func TestStock(t *testing.T) {
	f := newFixture(t)
	s := newAPI(t, f, httpadapter.Options{})
	wantJSON(t, mustGet(t, s, "/api/warehouses/"+f.whA+"/products/"+f.product), 200, stockJSON(f.whA, f.product, 30))
	wantJSON(t, mustGet(t, s, "/api/warehouses/"+strings.ToUpper(f.whB)+"/products/"+strings.ToUpper(f.product)),
		200, stockJSON(f.whB, f.product, 98))
}

func TestMovements(t *testing.T) {
	f := newFixture(t)
	s := newAPI(t, f, httpadapter.Options{})
	all := `{"items": [` + f.completedJSON() + `,` + f.inTransitJSON() + `,` + f.arrivedJSON() + `], "next_cursor": null}`
	tests := []struct {
		query string
		want  string
	}{
		{"", all},
		{"?product_id=" + f.product, all},
		{"?warehouse_id=" + strings.ToUpper(f.whA), all},
		{"?warehouse_id=" + f.whB, `{"items": [` + f.completedJSON() + `], "next_cursor": null}`},
		{"?status=in_transit", `{"items": [` + f.inTransitJSON() + `], "next_cursor": null}`},
		{"?status=arrived&warehouse_id=" + f.whA, `{"items": [` + f.arrivedJSON() + `], "next_cursor": null}`},
		{"?since=2025-02-18T12:00:00.25Z&until=2025-02-18T12:12:56Z", `{"items": [` + f.inTransitJSON() + `], "next_cursor": null}`},
		// An offset sent with an unencoded '+' arrives as a space and still works.
		{"?since=2025-02-18T15:00:00+03:00", `{"items": [` + f.completedJSON() + `,` + f.inTransitJSON() + `], "next_cursor": null}`},
		{"?since=" + url.QueryEscape("2025-02-18T15:00:00.25+03:00"), `{"items": [` + f.completedJSON() + `,` + f.inTransitJSON() + `], "next_cursor": null}`},
		{"?until=" + url.QueryEscape("2025-02-18T15:00:00.25+03:00"), `{"items": [` + f.arrivedJSON() + `], "next_cursor": null}`},
		{"?product_id=" + uuid.NewString(), `{"items": [], "next_cursor": null}`},
	}
	for _, tc := range tests {
		t.Run(tc.query, func(t *testing.T) {
			wantJSON(t, mustGet(t, s, "/api/movements"+tc.query), 200, tc.want)
		})
	}
}

func TestWarehouseStock(t *testing.T) {
	f := newFixture(t)
	s := newAPI(t, f, httpadapter.Options{})
	wantJSON(t, mustGet(t, s, "/api/warehouses/"+f.whA+"/products"), 200,
		`{"items": [`+stockJSON(f.whA, f.product, 30)+`], "next_cursor": null}`)
	wantJSON(t, mustGet(t, s, "/api/warehouses/"+uuid.NewString()+"/products?limit=5"), 200,
		`{"items": [], "next_cursor": null}`)
}

func TestNotFound(t *testing.T) {
	f := newFixture(t)
	s := newAPI(t, f, httpadapter.Options{})
	for _, target := range []string{
		"/api/movements/" + uuid.NewString(),
		"/api/warehouses/" + f.whB + "/products/" + uuid.NewString(),
		"/api/warehouses/" + uuid.NewString() + "/products/" + f.product,
		"/no/such/route",
		"/api/movements/" + f.completed + "/extra",
		"/apix",
	} {
		t.Run(target, func(t *testing.T) { wantProblem(t, mustGet(t, s, target), 404) })
	}
}

func TestMethodNotAllowed(t *testing.T) {
	s := newAPI(t, newFixture(t), httpadapter.Options{})
	r := mustDo(t, s, http.MethodPost, "/api/movements")
	wantProblem(t, r, 405)
	if allow := r.header.Get("Allow"); allow != "GET, HEAD" {
		t.Fatalf("Allow = %q", allow)
	}
}

func TestBadRequest(t *testing.T) {
	f := newFixture(t)
	s := newAPI(t, f, httpadapter.Options{})
	other := uuid.NewString()
	mustApply(t, f.store,
		event(uuid.NewString(), other, uuid.NewString(), "arrival", "WH-9", "2025-02-18T10:00:00Z", 1),
		event(uuid.NewString(), other, uuid.NewString(), "arrival", "WH-9", "2025-02-18T10:00:00Z", 1))
	stockCursor := mustNextCursor(t, s, "/api/warehouses/"+other+"/products?limit=1", 1)
	movementCursor := mustNextCursor(t, s, "/api/movements?limit=1", 1)
	tests := []struct{ name, target string }{
		{"short movement id", "/api/movements/1234"},
		{"movement id in braces", "/api/movements/%7B" + f.completed + "%7D"},
		{"32-digit movement id", "/api/movements/" + strings.ReplaceAll(f.completed, "-", "")},
		{"bad warehouse in path", "/api/warehouses/nope/products/" + f.product},
		{"bad product in path", "/api/warehouses/" + f.whA + "/products/zz"},
		{"bad warehouse in list path", "/api/warehouses/nope/products"},
		{"bad warehouse_id", "/api/movements?warehouse_id=xyz"},
		{"bad product_id", "/api/movements?product_id=" + f.product + "0"},
		{"bad status", "/api/movements?status=lost"},
		{"empty status", "/api/movements?status="},
		{"bad since", "/api/movements?since=yesterday"},
		{"since without offset", "/api/movements?since=2025-02-18T12:00:00"},
		{"bad until", "/api/movements?until=2025-13-01T00:00:00Z"},
		{"since not before until", "/api/movements?since=2025-02-18T12:00:00Z&until=2025-02-18T12:00:00Z"},
		{"limit 0", "/api/movements?limit=0"},
		{"limit -1", "/api/movements?limit=-1"},
		{"limit 1001", "/api/movements?limit=1001"},
		{"limit abc", "/api/movements?limit=abc"},
		{"limit 1.5", "/api/movements?limit=1.5"},
		{"stock limit 1001", "/api/warehouses/" + f.whA + "/products?limit=1001"},
		{"garbage cursor", "/api/movements?cursor=%%%"},
		{"base64 garbage cursor", "/api/movements?cursor=aGVsbG8"},
		{"stock cursor on movements", "/api/movements?cursor=" + stockCursor},
		{"bad stock cursor", "/api/warehouses/" + f.whA + "/products?cursor=bm9wZQ"},
		{"movement cursor on stock", "/api/warehouses/" + f.whA + "/products?cursor=" + movementCursor},
		{"padded cursor", "/api/movements?cursor=" + movementCursor + "%3D"},
		{"long cursor", "/api/movements?cursor=" + strings.Repeat("A", 200)},
		{"unknown parameter", "/api/movements?colour=red"},
		{"misspelt parameter", "/api/movements?warehouse=" + f.whA},
		{"repeated parameter", "/api/movements?limit=1&limit=2"},
		{"query on a point read", "/api/movements/" + f.completed + "?verbose=1"},
		{"query on a stock read", "/api/warehouses/" + f.whA + "/products/" + f.product + "?limit=1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { wantProblem(t, mustGet(t, s, tc.target), 400) })
	}
}

// mustNextCursor fetches target and returns its next_cursor, checking the page size.
func mustNextCursor(t *testing.T, s *httpadapter.Server, target string, wantItems int) string {
	t.Helper()
	r := mustGet(t, s, target)
	if r.status != 200 {
		t.Fatalf("%s: status %d: %s", target, r.status, r.body)
	}
	body := r.json(t).(map[string]any)
	if n := len(body["items"].([]any)); n != wantItems && wantItems >= 0 {
		t.Fatalf("%s: %d items, want %d", target, n, wantItems)
	}
	next, _ := body["next_cursor"].(string)
	return next
}

func TestPagination(t *testing.T) {
	store := memory.NewStoreWithClock(func() time.Time { return stampedAt })
	wh := uuid.NewString()
	var inputs []domain.EventInput
	const n = 23
	wantStock := make(map[string]bool)
	for i := range n {
		// Three movements share each timestamp, so ties are broken by movement id.
		ts := time.Date(2025, 2, 18, 10, i/3, 0, 0, time.UTC).Format(time.RFC3339)
		p := uuid.NewString()
		wantStock[p] = true
		inputs = append(inputs, event(uuid.NewString(), wh, p, "arrival", "WH-1", ts, int64(i+1)))
	}
	mustApply(t, store, inputs...)
	s, _ := mustServer(t, application.NewQueries(store), httpadapter.Options{}, httpadapter.Readiness{})

	for _, limit := range []int{1, 4, 23, 50} {
		t.Run(fmt.Sprint("movements limit ", limit), func(t *testing.T) {
			seen := walk(t, s, "/api/movements?warehouse_id="+wh+"&limit="+fmt.Sprint(limit), "movement_id", limit)
			if len(seen) != n {
				t.Fatalf("walked %d movements, want %d", len(seen), n)
			}
			wantAll, _ := mustGet(t, s, "/api/movements?limit=1000&warehouse_id="+wh).json(t).(map[string]any)
			for i, m := range wantAll["items"].([]any) {
				if id := m.(map[string]any)["movement_id"]; seen[i] != id {
					t.Fatalf("item %d = %v, want %v (the order of one big page)", i, seen[i], id)
				}
			}
		})
		t.Run(fmt.Sprint("stock limit ", limit), func(t *testing.T) {
			seen := walk(t, s, "/api/warehouses/"+wh+"/products?limit="+fmt.Sprint(limit), "product_id", limit)
			if len(seen) != n {
				t.Fatalf("walked %d rows, want %d", len(seen), n)
			}
			for i, p := range seen {
				if !wantStock[p] || i > 0 && seen[i-1] >= p {
					t.Fatalf("row %d: %s unexpected or out of order", i, p)
				}
			}
		})
	}
}

// walk follows next_cursor from target until the last page and returns the key field of
// every item in order, failing on a repeated item or a page larger than limit.
func walk(t *testing.T, s *httpadapter.Server, target, key string, limit int) []string {
	t.Helper()
	var seen []string
	dup := make(map[string]bool)
	next := ""
	for page := 0; ; page++ {
		u := target
		if next != "" {
			u += "&cursor=" + url.QueryEscape(next)
		}
		r := mustGet(t, s, u)
		if r.status != 200 {
			t.Fatalf("page %d: status %d: %s", page, r.status, r.body)
		}
		body := r.json(t).(map[string]any)
		items := body["items"].([]any)
		if len(items) > limit {
			t.Fatalf("page %d has %d items, limit %d", page, len(items), limit)
		}
		for _, it := range items {
			id := it.(map[string]any)[key].(string)
			if dup[id] {
				t.Fatalf("%s %s seen twice", key, id)
			}
			dup[id] = true
			seen = append(seen, id)
		}
		c, ok := body["next_cursor"].(string)
		if !ok {
			if body["next_cursor"] != nil {
				t.Fatalf("next_cursor = %v", body["next_cursor"])
			}
			return seen
		}
		if page > 100 {
			t.Fatal("pagination does not end")
		}
		next = c
	}
}

func TestDependencyErrors(t *testing.T) {
	id := uuid.NewString()
	targets := []string{
		"/api/movements/" + id,
		"/api/movements",
		"/api/warehouses/" + id + "/products/" + id,
		"/api/warehouses/" + id + "/products",
	}
	t.Run("unavailable is 503", func(t *testing.T) {
		s, _ := mustServer(t, fakeQueries{err: fmt.Errorf("query: %w", ports.ErrUnavailable)}, httpadapter.Options{}, httpadapter.Readiness{})
		for _, target := range targets {
			wantProblem(t, mustGet(t, s, target), 503)
		}
	})
	t.Run("unexpected error is 500 without internals", func(t *testing.T) {
		secret := errors.New(`pq: password authentication failed for user "s3cret" at 10.0.0.7`)
		s, _ := mustServer(t, fakeQueries{err: secret}, httpadapter.Options{}, httpadapter.Readiness{})
		for _, target := range targets {
			r := mustGet(t, s, target)
			wantProblem(t, r, 500)
			for _, leak := range []string{"s3cret", "10.0.0.7", "pq:", "password"} {
				if strings.Contains(string(r.body), leak) {
					t.Fatalf("500 body %s leaks %q", r.body, leak)
				}
			}
		}
	})
	t.Run("panic is 500 without a stack", func(t *testing.T) {
		s, _ := mustServer(t, fakeQueries{}, httpadapter.Options{}, httpadapter.Readiness{})
		for _, target := range targets {
			r := mustGet(t, s, target)
			wantProblem(t, r, 500)
			if strings.Contains(string(r.body), "exploded") || strings.Contains(string(r.body), "goroutine") {
				t.Fatalf("500 body leaks the panic: %s", r.body)
			}
		}
		// The server still answers after panics.
		wantJSON(t, mustGet(t, s, "/health"), 200, `{"status": "ok"}`)
	})
	t.Run("request deadline is 503", func(t *testing.T) {
		s, _ := mustServer(t, slowQueries{}, httpadapter.Options{RequestTimeout: 50 * time.Millisecond}, httpadapter.Readiness{})
		wantProblem(t, mustGet(t, s, "/api/movements/"+id), 503)
	})
}

func TestBearerToken(t *testing.T) {
	f := newFixture(t)
	s := newAPI(t, f, httpadapter.Options{APIToken: "t0ken"})
	target := "/api/movements/" + f.completed
	for _, h := range [][]string{
		nil,
		{"Authorization", "Bearer wrong"},
		{"Authorization", "Bearer t0ken2"},
		{"Authorization", "Basic dDBrZW4="},
		{"Authorization", "t0ken"},
		{"Authorization", "Bearer "},
	} {
		r := mustGet(t, s, target, h...)
		wantProblem(t, r, 401)
		if r.header.Get("WWW-Authenticate") == "" {
			t.Fatalf("401 without WWW-Authenticate for %v", h)
		}
	}
	wantJSON(t, mustGet(t, s, target, "Authorization", "Bearer t0ken"), 200, f.completedJSON())
	wantJSON(t, mustGet(t, s, target, "Authorization", "bearer t0ken"), 200, f.completedJSON())
	for _, open := range []string{"/health", "/healthz", "/livez", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs/swagger-ui.css"} {
		if r := mustGet(t, s, open); r.status != 200 {
			t.Fatalf("%s without a token: %d", open, r.status)
		}
	}
}

func TestHealth(t *testing.T) {
	s, _ := mustServer(t, fakeQueries{}, httpadapter.Options{}, httpadapter.Readiness{})
	for _, p := range []string{"/health", "/healthz", "/livez"} {
		wantJSON(t, mustGet(t, s, p), 200, `{"status": "ok"}`)
	}
}

func TestHeaderTooLarge(t *testing.T) {
	s := newAPI(t, newFixture(t), httpadapter.Options{})
	base := mustServe(t, s)
	req, err := http.NewRequest(http.MethodGet, base+"/health", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Big", strings.Repeat("x", 16<<10))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	wantProblem(t, response{status: res.StatusCode, header: res.Header, body: body}, 431)
}
