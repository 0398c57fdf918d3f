package http_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	httpadapter "warehouse/adapters/http"
	"warehouse/adapters/memory"
	"warehouse/application"
	"warehouse/domain"
	"warehouse/ports"
)

// stampedAt is the clock of the test store: every stock row's updated_at.
var stampedAt = time.Date(2025, 3, 1, 9, 30, 0, 0, time.UTC)

// fixture is a store seeded with the movements of the contract's examples.
type fixture struct {
	store                         *memory.Store
	whA, whB                      string
	product                       string
	completed, inTransit, arrived string
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	f := fixture{
		store:     memory.NewStoreWithClock(func() time.Time { return stampedAt }),
		whA:       uuid.NewString(),
		whB:       uuid.NewString(),
		product:   uuid.NewString(),
		completed: uuid.NewString(),
		inTransit: uuid.NewString(),
		arrived:   uuid.NewString(),
	}
	mustApply(t, f.store,
		event(f.arrived, f.whA, f.product, "arrival", "SUPPLIER-1", "2025-02-18T10:00:00Z", 150),
		event(f.completed, f.whA, f.product, "departure", "WH-3322", "2025-02-18T12:12:56Z", 100),
		event(f.completed, f.whB, f.product, "arrival", "WH-3423", "2025-02-18T14:34:56Z", 98),
		event(f.inTransit, f.whA, f.product, "departure", "WH-3322", "2025-02-18T15:00:00.25+03:00", 20),
	)
	return f
}

func event(movement, warehouse, product, kind, source, ts string, qty int64) domain.EventInput {
	return domain.EventInput{
		ID: uuid.NewString(), Source: source, SpecVersion: domain.SpecVersion, Type: domain.EventType,
		MovementID: movement, WarehouseID: warehouse, ProductID: product,
		Event: kind, Timestamp: ts, Quantity: qty,
	}
}

func mustApply(t *testing.T, s ports.Store, inputs ...domain.EventInput) {
	t.Helper()
	events := make([]domain.Event, len(inputs))
	for i, in := range inputs {
		e, err := domain.NewEvent(in)
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		events[i] = e
	}
	results, err := s.Apply(context.Background(), events)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range results {
		if r != nil {
			t.Fatalf("event %d not applied: %v", i, r)
		}
	}
}

// mustServer returns an API server over q with a fresh registry.
func mustServer(t *testing.T, q ports.Queries, opts httpadapter.Options, ready httpadapter.Readiness) (*httpadapter.Server, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return httpadapter.NewServer(opts, q, ready, reg, log), reg
}

// testWriter sends server logs to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// json decodes the body into a generic value, for comparison with an expected literal.
func (r response) json(t *testing.T) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("body %q is not JSON: %v", r.body, err)
	}
	return v
}

func mustDo(t *testing.T, s *httpadapter.Server, method, target string, header ...string) response {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := s.App().Test(req, -1)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: body}
}

func mustGet(t *testing.T, s *httpadapter.Server, target string, header ...string) response {
	t.Helper()
	return mustDo(t, s, http.MethodGet, target, header...)
}

// wantJSON checks the status, content type and exact decoded body of r.
func wantJSON(t *testing.T, r response, status int, want string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d, want %d; body %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type = %q, want application/json", ct)
	}
	var w any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad expectation: %v", err)
	}
	if got := r.json(t); !reflect.DeepEqual(got, w) {
		g, _ := json.MarshalIndent(got, "", "  ")
		e, _ := json.MarshalIndent(w, "", "  ")
		t.Fatalf("body:\n%s\nwant:\n%s", g, e)
	}
}

// wantProblem checks that r is a problem document with status and returns its detail.
func wantProblem(t *testing.T, r response, status int) string {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d, want %d; body %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type = %q, want application/problem+json", ct)
	}
	var p map[string]any
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("problem body %q: %v", r.body, err)
	}
	if len(p) != 4 || p["type"] != "about:blank" || p["status"] != float64(status) ||
		p["title"] != http.StatusText(status) || p["detail"] == "" {
		t.Fatalf("problem = %v, want type, title %q, status %d and a detail", p, http.StatusText(status), status)
	}
	return fmt.Sprint(p["detail"])
}

// fakeQueries answers every query with err, or panics when err is nil.
type fakeQueries struct{ err error }

func (f fakeQueries) fail() {
	if f.err == nil {
		panic("fake queries exploded")
	}
}

func (f fakeQueries) Movement(context.Context, domain.MovementID) (domain.Movement, error) {
	f.fail()
	return domain.Movement{}, f.err
}

func (f fakeQueries) Stock(context.Context, domain.WarehouseID, domain.ProductID) (domain.Stock, error) {
	f.fail()
	return domain.Stock{}, f.err
}

func (f fakeQueries) Movements(context.Context, ports.MovementFilter) (ports.MovementPage, error) {
	f.fail()
	return ports.MovementPage{}, f.err
}

func (f fakeQueries) WarehouseStock(context.Context, ports.StockFilter) (ports.StockPage, error) {
	f.fail()
	return ports.StockPage{}, f.err
}

// slowQueries blocks until the request's context ends, like a database that hangs.
type slowQueries struct{ ports.Queries }

func (slowQueries) Movement(ctx context.Context, _ domain.MovementID) (domain.Movement, error) {
	<-ctx.Done()
	return domain.Movement{}, fmt.Errorf("%w: %w", ports.ErrUnavailable, ctx.Err())
}

func newAPI(t *testing.T, f fixture, opts httpadapter.Options) *httpadapter.Server {
	t.Helper()
	s, _ := mustServer(t, application.NewQueries(f.store), opts, httpadapter.Readiness{})
	return s
}

// mustServe serves s on a free local port until the test ends and returns its base URL.
func mustServe(t *testing.T, s *httpadapter.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

func (f fakeQueries) StockAsOf(context.Context, domain.WarehouseID, domain.ProductID, time.Time) (domain.StockAsOf, error) {
	f.fail()
	return domain.StockAsOf{}, f.err
}

func (f fakeQueries) WarehouseStockAsOf(context.Context, ports.StockFilter, time.Time) (ports.StockAsOfPage, error) {
	f.fail()
	return ports.StockAsOfPage{}, f.err
}

func (f fakeQueries) StockHistory(context.Context, ports.HistoryFilter) (ports.HistoryPage, error) {
	f.fail()
	return ports.HistoryPage{}, f.err
}

func (f fakeQueries) Routes(context.Context, ports.RouteFilter) (ports.RoutePage, error) {
	f.fail()
	return ports.RoutePage{}, f.err
}

func (f fakeQueries) InTransit(context.Context, domain.WarehouseID) ([]domain.TransitLoad, error) {
	f.fail()
	return nil, f.err
}

func (f fakeQueries) Event(context.Context, string, string) (domain.StoredEvent, error) {
	f.fail()
	return domain.StoredEvent{}, f.err
}

// chromium is the browser of the browser tests.
const chromium = "/usr/bin/chromium"

// needChromium skips a browser test without Chromium (or in short mode), except under
// CI=true, where a missing browser is a failure.
func needChromium(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(chromium); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but %s is missing: %v", chromium, err)
		}
		t.Skipf("%s not installed", chromium)
	}
	if testing.Short() {
		t.Skip("short mode")
	}
}

// mustDumpDOM loads url in headless Chromium, lets its scripts run for up to 10 s of
// virtual time, and returns the page's DOM.
func mustDumpDOM(t *testing.T, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--user-data-dir="+t.TempDir(),
		"--virtual-time-budget=10000", "--dump-dom", url)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	dom, err := cmd.Output()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("chromium did not finish within 60s; stderr:\n%s", stderr.String())
	}
	if err != nil {
		t.Fatalf("chromium: %v; stderr:\n%s", err, stderr.String())
	}
	return string(dom)
}
