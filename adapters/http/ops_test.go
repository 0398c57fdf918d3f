package http_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	httpadapter "warehouse/adapters/http"
	"warehouse/domain"
	"warehouse/ports"
)

func TestMetricsUseRouteTemplates(t *testing.T) {
	f := newFixture(t)
	s := newAPI(t, f, httpadapter.Options{})
	mustGet(t, s, "/api/movements/"+f.completed)
	mustGet(t, s, "/api/movements/"+uuid.NewString())
	mustGet(t, s, "/api/warehouses/"+f.whA+"/products/"+f.product)
	mustGet(t, s, "/no/such/"+uuid.NewString())
	mustDo(t, s, http.MethodPost, "/api/movements")

	r := mustGet(t, s, "/metrics")
	if r.status != 200 {
		t.Fatalf("/metrics: %d", r.status)
	}
	text := string(r.body)
	for _, want := range []string{
		`http_requests_total{method="GET",route="/api/movements/:movement_id",status="200"} 1`,
		`http_requests_total{method="GET",route="/api/movements/:movement_id",status="404"} 1`,
		`http_requests_total{method="GET",route="/api/warehouses/:warehouse_id/products/:product_id",status="200"} 1`,
		`http_requests_total{method="GET",route="unmatched",status="404"} 1`,
		`http_requests_total{method="POST",route="unmatched",status="405"} 1`,
		`http_request_duration_seconds_count{method="GET",route="/api/movements/:movement_id"} 2`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for _, raw := range []string{f.completed, f.whA, "/no/such"} {
		if strings.Contains(text, raw) {
			t.Errorf("/metrics has a raw path containing %q", raw)
		}
	}
}

func TestMetricsServeTheGivenRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "movements_stored_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	s := httpadapter.NewOpsServer(httpadapter.Options{}, httpadapter.Readiness{}, reg, nil)
	if r := mustGet(t, s, "/metrics"); !strings.Contains(string(r.body), "movements_stored_total 3") {
		t.Fatalf("/metrics does not serve the registry:\n%s", r.body)
	}
	// A second server on the same registry reuses the HTTP collectors instead of panicking.
	httpadapter.NewOpsServer(httpadapter.Options{}, httpadapter.Readiness{}, reg, nil)
}

func TestReadyz(t *testing.T) {
	var dbErr atomic.Value
	dbErr.Store(errorBox{})
	db := httpadapter.Check{Name: "postgres", Run: func(context.Context) error { return dbErr.Load().(errorBox).err }}
	var state atomic.Value
	state.Store(httpadapter.ConsumerConnected)
	consumer := func() string { return state.Load().(string) }

	t.Run("ready", func(t *testing.T) {
		s, _ := mustServer(t, fakeQueries{}, httpadapter.Options{}, httpadapter.Readiness{Checks: []httpadapter.Check{db}, ConsumerState: consumer})
		wantJSON(t, mustGet(t, s, "/readyz"), 200, `{"status": "ready", "draining": false,
			"checks": [{"name": "postgres", "status": "ok"}], "consumer": "connected"}`)
	})
	t.Run("no checks and no consumer", func(t *testing.T) {
		s, _ := mustServer(t, fakeQueries{}, httpadapter.Options{}, httpadapter.Readiness{})
		wantJSON(t, mustGet(t, s, "/readyz"), 200, `{"status": "ready", "draining": false, "checks": [], "consumer": null}`)
	})
	t.Run("failing check", func(t *testing.T) {
		dbErr.Store(errorBox{fmt.Errorf("ping: %w", ports.ErrUnavailable)})
		defer dbErr.Store(errorBox{})
		s, _ := mustServer(t, fakeQueries{}, httpadapter.Options{}, httpadapter.Readiness{Checks: []httpadapter.Check{
			db, {Name: "other", Run: func(context.Context) error { return nil }},
		}})
		wantJSON(t, mustGet(t, s, "/readyz"), 503, `{"status": "not_ready", "draining": false, "checks": [
			{"name": "postgres", "status": "error", "error": "unavailable"}, {"name": "other", "status": "ok"}], "consumer": null}`)
	})
	t.Run("slow check times out", func(t *testing.T) {
		slow := httpadapter.Check{Name: "slow", Run: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }}
		s, _ := mustServer(t, fakeQueries{}, httpadapter.Options{}, httpadapter.Readiness{
			Checks: []httpadapter.Check{slow}, CheckTimeout: 20 * time.Millisecond})
		wantJSON(t, mustGet(t, s, "/readyz"), 503, `{"status": "not_ready", "draining": false,
			"checks": [{"name": "slow", "status": "error", "error": "timeout"}], "consumer": null}`)
	})
	t.Run("panicking check", func(t *testing.T) {
		boom := httpadapter.Check{Name: "boom", Run: func(context.Context) error { panic("no") }}
		s, _ := mustServer(t, fakeQueries{}, httpadapter.Options{}, httpadapter.Readiness{Checks: []httpadapter.Check{boom}})
		wantJSON(t, mustGet(t, s, "/readyz"), 503, `{"status": "not_ready", "draining": false,
			"checks": [{"name": "boom", "status": "error", "error": "failed"}], "consumer": null}`)
	})
	t.Run("draining", func(t *testing.T) {
		s, _ := mustServer(t, fakeQueries{}, httpadapter.Options{}, httpadapter.Readiness{Checks: []httpadapter.Check{db}})
		s.SetDraining(true)
		wantJSON(t, mustGet(t, s, "/readyz"), 503, `{"status": "not_ready", "draining": true,
			"checks": [{"name": "postgres", "status": "ok"}], "consumer": null}`)
		s.SetDraining(false)
		if r := mustGet(t, s, "/readyz"); r.status != 200 {
			t.Fatalf("after draining ended: %d", r.status)
		}
	})
	t.Run("consumer reconnecting", func(t *testing.T) {
		state.Store(httpadapter.ConsumerReconnecting)
		defer state.Store(httpadapter.ConsumerConnected)
		// With the API in the process, a broker outage does not stop reads.
		s, _ := mustServer(t, fakeQueries{}, httpadapter.Options{}, httpadapter.Readiness{ConsumerState: consumer})
		wantJSON(t, mustGet(t, s, "/readyz"), 200, `{"status": "ready", "draining": false, "checks": [], "consumer": "reconnecting"}`)
		// A consume-only process is not ready without its broker.
		ops := httpadapter.NewOpsServer(httpadapter.Options{}, httpadapter.Readiness{ConsumerState: consumer, RequireConsumer: true}, nil, nil)
		wantJSON(t, mustGet(t, ops, "/readyz"), 503, `{"status": "not_ready", "draining": false, "checks": [], "consumer": "reconnecting"}`)
		state.Store(httpadapter.ConsumerPaused)
		wantJSON(t, mustGet(t, ops, "/readyz"), 200, `{"status": "ready", "draining": false, "checks": [], "consumer": "paused"}`)
	})
}

// TestReadyzHeldBatch: a batch held past the limit makes the process not ready, with how
// long and why; held for less, it is reported and the process stays ready.
func TestReadyzHeldBatch(t *testing.T) {
	var since atomic.Value
	since.Store(time.Time{})
	held := func() (time.Time, string) { return since.Load().(time.Time), "cannot publish dead letters and retries" }
	s, _ := mustServer(t, fakeQueries{}, httpadapter.Options{}, httpadapter.Readiness{ConsumerHeld: held, HoldLimit: time.Minute})
	wantJSON(t, mustGet(t, s, "/readyz"), 200, `{"status": "ready", "draining": false, "checks": [], "consumer": null}`)

	since.Store(time.Now().Add(-10 * time.Second))
	wantJSON(t, mustGet(t, s, "/readyz"), 200, `{"status": "ready", "draining": false, "checks": [], "consumer": null,
		"consumer_held": {"seconds": 10, "reason": "cannot publish dead letters and retries", "limit_seconds": 60}}`)

	since.Store(time.Now().Add(-75 * time.Second))
	wantJSON(t, mustGet(t, s, "/readyz"), 503, `{"status": "not_ready", "draining": false, "checks": [], "consumer": null,
		"consumer_held": {"seconds": 75, "reason": "cannot publish dead letters and retries", "limit_seconds": 60}}`)
}

// TestReadyzNamesTheNode: a consuming process's /readyz names its broker node as the
// consumer reports it (password hidden there), and nothing before the first connection.
func TestReadyzNamesTheNode(t *testing.T) {
	var node atomic.Value
	node.Store("")
	s, _ := mustServer(t, fakeQueries{}, httpadapter.Options{}, httpadapter.Readiness{ConsumerNode: func() string { return node.Load().(string) }})
	wantJSON(t, mustGet(t, s, "/readyz"), 200, `{"status": "ready", "draining": false, "checks": [], "consumer": null}`)
	node.Store("amqp://guest:xxxxx@rabbit2:5672/")
	wantJSON(t, mustGet(t, s, "/readyz"), 200, `{"status": "ready", "draining": false, "checks": [], "consumer": null,
		"consumer_node": "amqp://guest:xxxxx@rabbit2:5672/"}`)
}

// errorBox lets an atomic.Value hold a nil error.
type errorBox struct{ err error }

func TestOpsServer(t *testing.T) {
	s := httpadapter.NewOpsServer(httpadapter.Options{APIToken: "x"}, httpadapter.Readiness{}, nil, nil)
	for _, p := range []string{"/health", "/healthz", "/livez", "/readyz", "/metrics"} {
		if r := mustGet(t, s, p); r.status != 200 {
			t.Fatalf("%s: %d", p, r.status)
		}
	}
	for _, p := range []string{"/api/movements", "/openapi.json", "/docs"} {
		wantProblem(t, mustGet(t, s, p), 404)
	}
}

// gatedQueries answers Stock only once release is closed, and tells started when a
// request is waiting: a request held in flight.
type gatedQueries struct {
	ports.Queries // any other query: not called
	started       chan struct{}
	release       chan struct{}
}

func (g gatedQueries) Stock(ctx context.Context, w domain.WarehouseID, p domain.ProductID) (domain.Stock, error) {
	g.started <- struct{}{}
	select {
	case <-g.release:
		return domain.Stock{WarehouseID: w, ProductID: p, Quantity: 42, UpdatedAt: time.Now().UTC()}, nil
	case <-ctx.Done():
		return domain.Stock{}, fmt.Errorf("%w: %w", ports.ErrUnavailable, ctx.Err())
	}
}

// TestShutdown shuts the server down while a request is in flight: Shutdown closes the
// listener at once, waits for that request, which gets its whole answer, then returns,
// and Serve returns nil.
func TestShutdown(t *testing.T) {
	q := gatedQueries{started: make(chan struct{}, 1), release: make(chan struct{})}
	s, _ := mustServer(t, q, httpadapter.Options{}, httpadapter.Readiness{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()

	type answer struct {
		status int
		body   []byte
		err    error
	}
	answered := make(chan answer, 1)
	path := "/api/warehouses/" + uuid.NewString() + "/products/" + uuid.NewString()
	go func() {
		res, err := http.Get("http://" + ln.Addr().String() + path)
		if err != nil {
			answered <- answer{err: err}
			return
		}
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		answered <- answer{res.StatusCode, body, err}
	}()
	<-q.started

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(ctx) }()
	refused := false
	for deadline := time.Now().Add(5 * time.Second); !refused && time.Now().Before(deadline); {
		conn, err := net.DialTimeout("tcp", ln.Addr().String(), 100*time.Millisecond)
		if err != nil {
			refused = true
			break
		}
		_ = conn.Close()
		time.Sleep(10 * time.Millisecond)
	}
	if !refused {
		t.Error("the listener still accepts connections during the shutdown")
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) while a request was in flight", err)
	case a := <-answered:
		t.Fatalf("the request in flight was answered before its query returned: %+v", a)
	case <-time.After(200 * time.Millisecond):
	}

	close(q.release)
	a := <-answered
	var stock struct {
		Quantity int64 `json:"quantity"`
	}
	if a.err != nil || a.status != http.StatusOK || json.Unmarshal(a.body, &stock) != nil || stock.Quantity != 42 {
		t.Errorf("the request in flight got %d %s (%v), want its whole answer: 200 with quantity 42", a.status, a.body, a.err)
	}
	for name, ch := range map[string]chan error{"Shutdown": shut, "Serve": served} {
		select {
		case err := <-ch:
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("%s did not return once the request was answered", name)
		}
	}
}

// TestOpenAPIMatchesRoutes compares the operations of /openapi.json with the routes the
// server registered, in both directions.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	s := newAPI(t, newFixture(t), httpadapter.Options{})
	r := mustGet(t, s, "/openapi.json")
	if r.status != 200 {
		t.Fatalf("/openapi.json: %d", r.status)
	}
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(r.body, &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi = %q", doc.OpenAPI)
	}
	var documented []string
	for path, ops := range doc.Paths {
		for method := range ops {
			if method == "parameters" {
				continue
			}
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	var served []string
	for _, rt := range s.App().GetRoutes(true) {
		if rt.Method == http.MethodHead {
			continue
		}
		served = append(served, rt.Method+" "+openAPIPath(rt.Path))
	}
	slices.Sort(documented)
	slices.Sort(served)
	served = slices.Compact(served)
	for _, op := range served {
		if !slices.Contains(documented, op) {
			t.Errorf("route %s is not in the OpenAPI document", op)
		}
	}
	for _, op := range documented {
		if !slices.Contains(served, op) {
			t.Errorf("OpenAPI operation %s is not served", op)
		}
	}
	checkOpenAPIParameters(t, s, r.body)
}

// checkOpenAPIParameters checks that each operation declares exactly the parameters of
// its path template, and that the server knows every query parameter it declares.
func checkOpenAPIParameters(t *testing.T, s *httpadapter.Server, raw []byte) {
	t.Helper()
	type param struct {
		Ref  string `json:"$ref"`
		Name string `json:"name"`
		In   string `json:"in"`
	}
	var doc struct {
		Paths map[string]map[string]struct {
			Parameters []param `json:"parameters"`
		} `json:"paths"`
		Components struct {
			Parameters map[string]param `json:"parameters"`
		} `json:"components"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			var inPath, inQuery []string
			for _, p := range op.Parameters {
				if p.Ref != "" {
					p = doc.Components.Parameters[strings.TrimPrefix(p.Ref, "#/components/parameters/")]
				}
				switch p.In {
				case "path":
					inPath = append(inPath, p.Name)
				case "query":
					inQuery = append(inQuery, p.Name)
				case "header": // sent by clients such as EventSource; checked by the route's own tests
				default:
					t.Errorf("%s %s: parameter %+v", method, path, p)
				}
			}
			want := pathParams(path)
			slices.Sort(want)
			slices.Sort(inPath)
			if !slices.Equal(inPath, want) {
				t.Errorf("%s %s declares path parameters %v, want %v", method, path, inPath, want)
			}
			target := strings.NewReplacer("{movement_id}", uuid.NewString(), "{warehouse_id}", uuid.NewString(),
				"{product_id}", uuid.NewString(), "{file}", "swagger-ui.css").Replace(path)
			for _, q := range inQuery {
				r := mustGet(t, s, target+"?"+q+"=x")
				if strings.Contains(string(r.body), "unknown query parameter") {
					t.Errorf("%s %s: documented query parameter %s is refused as unknown", method, path, q)
				}
			}
			if strings.HasPrefix(path, "/api/") && method == "get" {
				r := mustGet(t, s, target+"?undocumented=1")
				if d := wantProblem(t, r, 400); !strings.Contains(d, "unknown query parameter") {
					t.Errorf("%s %s: undocumented parameter gave %q", method, path, d)
				}
			}
		}
	}
}

// openAPIPath turns Fiber's /a/:b into OpenAPI's /a/{b}.
func openAPIPath(p string) string {
	parts := strings.Split(p, "/")
	for i, part := range parts {
		if strings.HasPrefix(part, ":") {
			parts[i] = "{" + part[1:] + "}"
		}
	}
	return strings.Join(parts, "/")
}

func pathParams(p string) []string {
	var names []string
	for _, part := range strings.Split(p, "/") {
		if strings.HasPrefix(part, "{") {
			names = append(names, strings.Trim(part, "{}"))
		}
	}
	return names
}

func TestDocsAssets(t *testing.T) {
	s := newAPI(t, newFixture(t), httpadapter.Options{})
	index := mustGet(t, s, "/docs")
	if index.status != 200 || !strings.HasPrefix(index.header.Get("Content-Type"), "text/html") {
		t.Fatalf("/docs: %d %s", index.status, index.header.Get("Content-Type"))
	}
	if strings.Contains(string(index.body), "//") && strings.Contains(string(index.body), "https:") {
		t.Fatalf("/docs refers to another origin:\n%s", index.body)
	}
	init := mustGet(t, s, "/docs/swagger-initializer.js")
	if !strings.Contains(string(init.body), `"/openapi.json"`) || strings.Contains(string(init.body), "petstore") {
		t.Fatalf("initializer does not load /openapi.json:\n%s", init.body)
	}
	for _, f := range []string{"swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css"} {
		if r := mustGet(t, s, "/docs/"+f); r.status != 200 || len(r.body) < 1000 {
			t.Fatalf("/docs/%s: %d, %d bytes", f, r.status, len(r.body))
		}
	}
	wantProblem(t, mustGet(t, s, "/docs/nope.js"), 404)
	wantProblem(t, mustGet(t, s, "/docs/..%2Fdocs.go"), 404)
}

// TestDocsInBrowser loads /docs in headless Chromium and checks that Swagger UI rendered
// the operations of /openapi.json. It needs /usr/bin/chromium: skipped without it, except
// under CI=true, where a missing browser is a failure.
func TestDocsInBrowser(t *testing.T) {
	needChromium(t)
	s := newAPI(t, newFixture(t), httpadapter.Options{APIToken: "docs-stay-open"})
	base := mustServe(t, s)
	dom := mustDumpDOM(t, base+"/docs")
	page := dom
	for _, want := range []string{
		"opblock",
		"/api/movements/{movement_id}",
		"/api/warehouses/{warehouse_id}/products/{product_id}",
		"Warehouse movements API",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("rendered /docs lacks %q", want)
		}
	}
	for _, bad := range []string{"Failed to load API definition", "Could not render", "errors-wrapper"} {
		if strings.Contains(page, bad) {
			t.Errorf("rendered /docs shows an error: %q", bad)
		}
	}
	if t.Failed() {
		t.Logf("DOM (%d bytes):\n%.4000s", len(page), page)
	}
}
