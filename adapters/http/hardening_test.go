package http_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	httpadapter "warehouse/adapters/http"
	"warehouse/application"
	"warehouse/ports"
)

// TestCursorTimesAreStrict: a cursor is checked as strictly as since and until. A
// forged cursor whose time PostgreSQL cannot hold (year 0) or that is not RFC 3339 is a
// 400, not a 500 from the database.
func TestCursorTimesAreStrict(t *testing.T) {
	f := newFixture(t)
	s := newAPI(t, f, httpadapter.Options{})
	id := uuid.NewString()
	cursor := func(raw string) string { return base64.RawURLEncoding.EncodeToString([]byte(raw)) }
	for _, ts := range []string{
		"0000-12-31T23:59:59Z",
		"0001-01-01T00:00:00+01:00", // year 0 in UTC
		"10000-01-01T00:00:00Z",
		"9999-12-31T23:00:00-01:00", // year 10000 in UTC
		"2025-02-18T12:00:00",       // no offset
		"2025-02-18T12:00:00,5Z",    // a comma is ISO 8601, not RFC 3339
		"2025-02-18t12:00:00z",
		"2025-02-18T12:00:00+24:00",
	} {
		t.Run(ts, func(t *testing.T) {
			r := mustGet(t, s, "/api/movements?cursor="+cursor("m1|"+ts+"|"+id))
			if d := wantProblem(t, r, 400); strings.Contains(d, ts) {
				t.Errorf("detail %q echoes the cursor", d)
			}
		})
	}
	t.Run("a cursor of our own still works", func(t *testing.T) {
		r := mustGet(t, s, "/api/movements?cursor="+cursor("m1|2025-02-18T12:12:56.25Z|"+id))
		if r.status != 200 {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
	})
}

// TestTokenBeforeRouting: with a token set, nothing under /api answers anything but 401
// to a request without it, so the API cannot be mapped (which paths exist, which methods
// they take) without the token. Paths outside /api stay open.
func TestTokenBeforeRouting(t *testing.T) {
	f := newFixture(t)
	s := newAPI(t, f, httpadapter.Options{APIToken: "t0ken"})
	for _, tc := range []struct{ method, target string }{
		{http.MethodGet, "/api/nope"},
		{http.MethodGet, "/api"},
		{http.MethodGet, "/api/"},
		{http.MethodGet, "/api/movements/" + uuid.NewString() + "/extra"},
		{http.MethodPost, "/api/movements"},
		{http.MethodDelete, "/api/movements/" + uuid.NewString()},
		{http.MethodPut, "/api/warehouses/" + uuid.NewString() + "/products"},
		{http.MethodOptions, "/api/movements"},
		{http.MethodGet, "/api/movements?colour=red"},
		{http.MethodGet, "/api/movements/not-a-uuid"},
	} {
		t.Run(tc.method+" "+tc.target, func(t *testing.T) {
			r := mustDo(t, s, tc.method, tc.target)
			wantProblem(t, r, 401)
			if r.header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			if allow := r.header.Get("Allow"); allow != "" {
				t.Errorf("401 tells the methods: Allow %q", allow)
			}
		})
	}
	for _, target := range []string{"/apix", "/api-docs", "/nope"} {
		wantProblem(t, mustGet(t, s, target), 404)
	}
	for _, open := range []string{"/health", "/healthz", "/livez", "/readyz", "/metrics", "/docs", "/openapi.json"} {
		if r := mustGet(t, s, open); r.status != 200 {
			t.Errorf("%s without a token: %d", open, r.status)
		}
	}
	// With the token, routing answers as usual.
	auth := []string{"Authorization", "Bearer t0ken"}
	wantProblem(t, mustGet(t, s, "/api/nope", auth...), 404)
	wantProblem(t, mustDo(t, s, http.MethodPost, "/api/movements", auth...), 405)
	wantJSON(t, mustGet(t, s, "/api/movements/"+f.completed, auth...), 200, f.completedJSON())
}

// TestOverloadAnswer: a store that sheds a read (ports.ErrOverloaded) is answered 503
// with Retry-After and a problem type of its own, counted by route, and not logged as an
// error: an overloaded API is not an outage.
func TestOverloadAnswer(t *testing.T) {
	var logs lockedBuffer
	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := httpadapter.NewServer(httpadapter.Options{}, fakeQueries{err: fmt.Errorf("list movements: %w", ports.ErrOverloaded)},
		httpadapter.Readiness{}, reg, log)
	id := uuid.NewString()
	for range 3 {
		for _, target := range []string{"/api/movements", "/api/warehouses/" + id + "/products"} {
			r := mustGet(t, s, target)
			if r.status != 503 {
				t.Fatalf("%s: status %d, want 503; body %s", target, r.status, r.body)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type %q", ct)
			}
			if ra := r.header.Get("Retry-After"); ra == "" {
				t.Error("503 overload without Retry-After")
			}
			var p map[string]any
			if err := json.Unmarshal(r.body, &p); err != nil {
				t.Fatal(err)
			}
			if p["type"] != "urn:warehouse:problem:overloaded" || p["status"] != float64(503) || p["title"] == "" || p["detail"] == "" {
				t.Errorf("problem = %v, want the overload type", p)
			}
		}
	}
	text := string(mustGet(t, s, "/metrics").body)
	for _, want := range []string{
		`http_requests_shed_total{route="/api/movements"} 3`,
		`http_requests_shed_total{route="/api/warehouses/:warehouse_id/products"} 3`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("overload logged as an error:\n%s", logs.String())
	}
	// An outage keeps its own answer.
	out, _ := mustServer(t, fakeQueries{err: fmt.Errorf("list: %w", ports.ErrUnavailable)}, httpadapter.Options{}, httpadapter.Readiness{})
	r := mustGet(t, out, "/api/movements")
	wantProblem(t, r, 503)
	if r.header.Get("Retry-After") != "" {
		t.Error("an outage answer promises a Retry-After")
	}
	// The application layer passes overload through unchanged.
	app := application.NewQueries(fakeQueries{err: ports.ErrOverloaded})
	if _, err := app.Movements(t.Context(), ports.MovementFilter{Limit: 5}); err != ports.ErrOverloaded { //nolint:errorlint // unchanged, not wrapped
		t.Errorf("application.Queries returned %v, want ErrOverloaded unchanged", err)
	}
}

// lockedBuffer is a log sink safe for the server's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
