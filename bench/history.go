package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"warehouse/adapters/postgres"
	"warehouse/domain"
)

// The phase of the ledger's past: stock as of a time, history pages and route analytics
// over the drained ledger, plus one hot stock row of hotEvents events (a warehouse that
// receives and ships one product all day), measured against the service's uncached stock
// reads of the same run and served by the same uncached `serve` process.

// Sizes and targets of the phase.
const (
	hotEvents      = 100_000
	smokeHotEvents = 5_000
	// hotBatch is the batch the hot row is stored in, through the store as the consumer does.
	hotBatch = 2000
	// routesConnections is the concurrency of the route case.
	routesConnections = 8
	// historyPaths is how many distinct requests each case draws from.
	historyPaths = 4000

	targetHistoryRatio = 0.50
	targetRoutesP99Ms  = 200.0
)

// Names of the cases.
const (
	caseAsOf        = "as-of, stream rows"
	caseAsOfHot     = "as-of, hot row"
	caseHistory     = "history first page, stream rows"
	caseHistoryHot  = "history first page, hot row"
	caseHistoryDeep = "history page from a random time, hot row"
	caseRoutes      = "routes, 30 days"
	caseRoutesFresh = "routes, 30 days, uncached"
	caseRoutesFrom  = "routes, 30 days, one sender each, uncached"
)

// HistoryResult is the phase of the ledger's past.
type HistoryResult struct {
	// HotEvents is the size of the hot stock row; HotLoadSeconds how long storing it took.
	HotEvents      int     `json:"hot_events"`
	HotLoadSeconds float64 `json:"hot_load_seconds"`
	// HotQuantity is the hot row's quantity as of after its last event, which must be
	// the fold the benchmark computed.
	HotQuantity int64         `json:"hot_quantity"`
	HotExpected int64         `json:"hot_expected"`
	Cases       []HistoryCase `json:"cases"`
	Errors      int64         `json:"errors"`
	FirstError  string        `json:"first_error,omitempty"`
}

// HistoryCase is one route of the phase: the round whose rate is the median.
type HistoryCase struct {
	Name        string     `json:"name"`
	Connections int        `json:"connections"`
	Service     ReadResult `json:"service"`
	// Rounds lists every round's requests/s; Chosen (0-based) is the one shown.
	Rounds []float64 `json:"rounds_per_second,omitempty"`
	Chosen int       `json:"chosen_round"`
}

// hotRow is the hot stock row and its events: an arrival of 10 and a departure of 5 in
// turn, one every hotStep, over the stream's span.
type hotRow struct {
	key      domain.StockKey
	first    time.Time
	last     time.Time
	events   []domain.Event
	quantity int64
}

// newHotRow builds n events of one fresh stock row; the ids follow from the seed.
func newHotRow(n int, start time.Time, span time.Duration) (*hotRow, error) {
	rng := rand.New(rand.NewPCG(genSeed, 99))
	id := func() uuid.UUID {
		var b [16]byte
		for i := range b {
			b[i] = byte(rng.UintN(256))
		}
		u, _ := uuid.FromBytes(b[:])
		u[6], u[8] = (u[6]&0x0f)|0x40, (u[8]&0x3f)|0x80 // version 4, RFC 4122 variant
		return u
	}
	h := &hotRow{key: domain.StockKey{Warehouse: domain.WarehouseID(id()), Product: domain.ProductID(id())}}
	step := span / time.Duration(n)
	for i := range n {
		kind, qty := domain.Arrival, int64(10)
		if i%2 == 1 {
			kind, qty = domain.Departure, 5
		}
		ts := start.Add(time.Duration(i) * step)
		e, err := domain.NewEvent(domain.EventInput{
			ID: id().String(), Source: "WH-HOT", SpecVersion: domain.SpecVersion, Type: domain.EventType,
			MovementID: id().String(), WarehouseID: h.key.Warehouse.String(), ProductID: h.key.Product.String(),
			Event: string(kind), Timestamp: ts.Format(time.RFC3339Nano), Quantity: qty,
		})
		if err != nil {
			return nil, err
		}
		h.events = append(h.events, e)
		h.quantity += e.Delta()
	}
	h.first, h.last = h.events[0].Timestamp, h.events[n-1].Timestamp
	return h, nil
}

// loadHot stores the hot row through the PostgreSQL store, in batches as the consumer
// writes them, and returns how long it took.
func loadHot(ctx context.Context, dbURL string, h *hotRow) (time.Duration, error) {
	db, err := postgres.Open(postgres.Options{URL: dbURL, MaxConns: 2})
	if err != nil {
		return 0, err
	}
	defer db.Close()
	store := postgres.NewStore(db)
	start := time.Now()
	for i := 0; i < len(h.events); i += hotBatch {
		results, err := store.Apply(ctx, h.events[i:min(i+hotBatch, len(h.events))])
		if err != nil {
			return 0, fmt.Errorf("store the hot row: %w", err)
		}
		for j, res := range results {
			if res != nil {
				return 0, fmt.Errorf("hot row event %d refused: %w", i+j, res)
			}
		}
	}
	return time.Since(start), nil
}

// historyPaths draws the requests of every case.
func (r *runner) historyCasePaths(h *hotRow) map[string][]string {
	rng := rand.New(rand.NewPCG(genSeed, 7))
	at := func(from, to time.Time) string {
		d := to.Sub(from)
		if d <= 0 {
			return from.UTC().Format(time.RFC3339Nano)
		}
		return from.Add(time.Duration(rng.Int64N(int64(d)))).UTC().Format(time.RFC3339Nano)
	}
	end := r.stream.last.Add(24 * time.Hour)
	stockPath := func(k domain.StockKey) string {
		return "/api/warehouses/" + k.Warehouse.String() + "/products/" + k.Product.String()
	}
	paths := map[string][]string{}
	for range historyPaths {
		k := r.stream.stockKeys[rng.IntN(len(r.stream.stockKeys))]
		paths[caseAsOf] = append(paths[caseAsOf], stockPath(k)+"?as_of="+at(r.stream.firstAt[k], end))
		paths[caseAsOfHot] = append(paths[caseAsOfHot], stockPath(h.key)+"?as_of="+at(h.first, h.last))
		k = r.stream.stockKeys[rng.IntN(len(r.stream.stockKeys))]
		paths[caseHistory] = append(paths[caseHistory], stockPath(k)+"/history")
		paths[caseHistoryDeep] = append(paths[caseHistoryDeep], stockPath(h.key)+"/history?since="+at(h.first, h.last))
	}
	paths[caseHistoryHot] = []string{stockPath(h.key) + "/history"}
	paths[caseRoutes] = []string{"/api/routes?since=" + r.stream.first.UTC().Format(time.RFC3339) +
		"&until=" + r.stream.first.Add(genSpan+24*time.Hour).UTC().Format(time.RFC3339)}
	paths[caseRoutesFresh] = paths[caseRoutes]
	seen := map[domain.WarehouseID]bool{}
	for _, k := range r.stream.stockKeys {
		if !seen[k.Warehouse] {
			seen[k.Warehouse] = true
			paths[caseRoutesFrom] = append(paths[caseRoutesFrom], paths[caseRoutes][0]+"&from="+k.Warehouse.String())
		}
	}
	return paths
}

// historyPhase measures the cases against svc, the uncached `serve` child, in rounds,
// and adds them to res, whose routes case the cached phase measured (see routesCached).
func (r *runner) historyPhase(ctx context.Context, svc *child, h *hotRow, load time.Duration, res *HistoryResult) error {
	res.HotEvents, res.HotLoadSeconds, res.HotExpected = len(h.events), load.Seconds(), h.quantity
	q, err := fetchQuantity(ctx, svc.addr, "/api/warehouses/"+h.key.Warehouse.String()+"/products/"+h.key.Product.String()+
		"?as_of="+h.last.UTC().Format(time.RFC3339Nano))
	if err != nil {
		return fmt.Errorf("as-of of the hot row: %w", err)
	}
	res.HotQuantity = q
	cases, err := r.measureCases(ctx, svc, r.historyCasePaths(h), res,
		caseAsOf, caseAsOfHot, caseHistory, caseHistoryHot, caseHistoryDeep, caseRoutesFresh, caseRoutesFrom)
	res.Cases = append(res.Cases, cases...)
	return err
}

// routesCached measures the routes of the stream's 30 days on svc, the `serve` child
// with its cache, as a dashboard polling one window meets it.
func (r *runner) routesCached(ctx context.Context, svc *child, h *hotRow, res *HistoryResult) error {
	cases, err := r.measureCases(ctx, svc, r.historyCasePaths(h), res, caseRoutes)
	res.Cases = append(res.Cases, cases...)
	return err
}

// measureCases measures the named cases on svc, round after round, and returns each
// case's median round.
func (r *runner) measureCases(ctx context.Context, svc *child, paths map[string][]string, res *HistoryResult, names ...string) ([]HistoryCase, error) {
	conns := func(name string) int {
		if name == caseRoutes || name == caseRoutesFresh || name == caseRoutesFrom {
			return routesConnections
		}
		return r.o.Connections
	}
	rounds := make(map[string][]ReadResult, len(names))
	for i := range r.o.Rounds {
		for _, name := range names {
			m := r.measureHTTP(ctx, svc.addr, paths[name], svc, conns(name))
			r.logRead("service", m, name, cacheOff, i)
			res.Errors += m.Errors
			if res.FirstError == "" {
				res.FirstError = m.FirstError
			}
			rounds[name] = append(rounds[name], m)
		}
		if err := svc.alive(); err != nil {
			return nil, err
		}
	}
	var cases []HistoryCase
	for _, name := range names {
		c := HistoryCase{Name: name, Connections: conns(name)}
		order := make([]int, len(rounds[name]))
		for i, m := range rounds[name] {
			order[i] = i
			c.Rounds = append(c.Rounds, m.RequestsPerSecond)
		}
		slices.SortFunc(order, func(a, b int) int {
			return cmpFloat(rounds[name][a].RequestsPerSecond, rounds[name][b].RequestsPerSecond)
		})
		c.Chosen = order[(len(order)-1)/2] // the lower middle of an even count
		c.Service = rounds[name][c.Chosen]
		cases = append(cases, c)
	}
	return cases, ctx.Err()
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// fetchQuantity GETs a stock answer from addr and returns its quantity.
func fetchQuantity(ctx context.Context, addr, path string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return 0, err
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var body struct {
		Quantity int64 `json:"quantity"`
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: status %d", path, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, err
	}
	return body.Quantity, nil
}

// historyRows adds the phase's rows to the table: each case's rate next to the service's
// uncached stock reads (with the target, but for the deep page of the hot row, which is
// beyond it), and the routes' rate and p99.
func (rep *Report) historyRows() {
	stock := 0.0
	for _, c := range rep.Reads.Cases {
		if c.Route == routeStock && c.Cache == cacheOff {
			stock = c.Service.RequestsPerSecond
		}
	}
	for _, c := range rep.History.Cases {
		row := Row{Phase: "history", Case: c.Name, Figure: "req/s", Value: c.Service.RequestsPerSecond, Target: "—",
			Note: fmt.Sprintf("%d connections; rounds %s", c.Connections, perSecond(c.Rounds))}
		if c.Service.Errors > 0 {
			row.Note += fmt.Sprintf("; %d errors", c.Service.Errors)
		}
		switch c.Name {
		case caseRoutes, caseRoutesFresh:
			ok := c.Service.P99Ms <= targetRoutesP99Ms && c.Service.Requests > 0 && c.Service.Errors == 0
			rep.Rows = append(rep.Rows, row, Row{Phase: "history", Case: c.Name, Figure: "p99 ms", Value: c.Service.P99Ms,
				Target: fmt.Sprintf("≤ %g ms", targetRoutesP99Ms), Pass: &ok})
			continue
		case caseRoutesFrom:
			rep.Rows = append(rep.Rows, row, Row{Phase: "history", Case: c.Name, Figure: "p99 ms", Value: c.Service.P99Ms, Target: "—"})
			continue
		}
		row.Ceiling = &stock
		if stock > 0 {
			ratio := c.Service.RequestsPerSecond / stock
			row.Ratio = &ratio
		}
		if c.Name != caseHistoryDeep {
			row.Target = fmt.Sprintf("≥ %.2f × uncached stock reads", targetHistoryRatio)
			ok := row.Ratio != nil && *row.Ratio >= targetHistoryRatio && c.Service.Errors == 0
			row.Pass = &ok
		}
		rep.Rows = append(rep.Rows, row)
	}
}

// perSecond lists rates as "1,234 / 1,300".
func perSecond(rates []float64) string {
	out := make([]string, len(rates))
	for i, r := range rates {
		out[i] = group(int64(r + 0.5))
	}
	return strings.Join(out, " / ")
}

// historyChecks are the phase's correctness conditions.
func historyChecks(h HistoryResult) []Check {
	return []Check{
		{Name: "history: the hot row's as-of after its last event is the fold of its events",
			OK: h.HotQuantity == h.HotExpected, Detail: fmt.Sprintf("%d, want %d", h.HotQuantity, h.HotExpected)},
		{Name: "history: every request answered 200 (every round)", OK: h.Errors == 0,
			Detail: strings.TrimSpace(fmt.Sprintf("%d errors %s", h.Errors, h.FirstError))},
	}
}

// historyDetails writes the phase's latencies for the Markdown report.
func (rep *Report) historyDetails(b *strings.Builder) {
	h := rep.History
	fmt.Fprintf(b, "\n| the ledger's past | connections | requests | req/s | mean ms | p50 ms | p90 ms | p99 ms | max ms | service CPU s | PostgreSQL CPU s |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, c := range h.Cases {
		r := c.Service
		fmt.Fprintf(b, "| %s%s | %d | %s | %s | %.2f | %.2f | %.2f | %.2f | %.2f | %s | %s |\n", c.Name, shownOfRates(c.Rounds, c.Chosen),
			c.Connections, group(r.Requests), group(int64(r.RequestsPerSecond+0.5)), r.MeanMs, r.P50Ms, r.P90Ms, r.P99Ms, r.MaxMs,
			opt(r.CPUSeconds, 2), opt(r.PostgresCPUSeconds, 2))
	}
	fmt.Fprintf(b, "\nThe hot row holds %s events (an arrival of 10 and a departure of 5 in turn over the stream's 30 days), "+
		"stored through the store in batches of %d in %.1f s; a checkpoint every %d events lets as-of sum at most that many index entries. "+
		"As-of and history requests draw %d random rows and times; routes span the whole stream, one window for every request "+
		"(identical requests in flight together share a query), or one window per sender.\n",
		group(int64(h.HotEvents)), hotBatch, h.HotLoadSeconds, postgres.CheckpointEvery, historyPaths)
}

// shownOfRates marks the round shown when there were several.
func shownOfRates(rates []float64, chosen int) string {
	if len(rates) < 2 {
		return ""
	}
	return fmt.Sprintf(" (round %d of %d)", chosen+1, len(rates))
}
