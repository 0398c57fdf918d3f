package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/valyala/fasthttp"

	amqpadapter "warehouse/adapters/amqp"
	"warehouse/domain"
)

// The two point reads, as the service's store asks them.
const (
	stockSQL    = `SELECT warehouse_id, product_id, quantity, updated_at FROM stock WHERE warehouse_id = $1 AND product_id = $2`
	movementSQL = `SELECT movement_id, product_id, departure_warehouse_id, departure_source, departure_at, departure_quantity,
		arrival_warehouse_id, arrival_source, arrival_at, arrival_quantity FROM movements WHERE movement_id = $1`
)

// maxPerWorker bounds the requests of one load worker in one measurement.
const maxPerWorker = 5_000_000

// Routes and cache modes of the read cases.
const (
	routeStock    = "stock"
	routeMovement = "movement"
	cacheOn       = "cached"
	cacheOff      = "uncached"
)

// ReadResult is one route under load for a while.
type ReadResult struct {
	Requests          int64   `json:"requests"`
	Errors            int64   `json:"errors"`
	FirstError        string  `json:"first_error,omitempty"`
	Seconds           float64 `json:"seconds"`
	RequestsPerSecond float64 `json:"requests_per_second"`
	MeanMs            float64 `json:"mean_ms"`
	P50Ms             float64 `json:"p50_ms"`
	P90Ms             float64 `json:"p90_ms"`
	P99Ms             float64 `json:"p99_ms"`
	P999Ms            float64 `json:"p999_ms"`
	MaxMs             float64 `json:"max_ms"`
	// HostCPUBusy is the share of all CPUs busy during the measurement.
	HostCPUBusy float64 `json:"host_cpu_busy"`
	// CPUSeconds is the server process's CPU time during the measurement (not for pgx).
	CPUSeconds float64 `json:"cpu_seconds,omitempty"`
	// PostgresCPUSeconds and BrokerCPUSeconds are the CPU time of all PostgreSQL server
	// processes and all RabbitMQ processes on this machine during the measurement (from
	// /proc; processes that exited during it are not counted).
	PostgresCPUSeconds float64 `json:"postgres_cpu_seconds,omitempty"`
	BrokerCPUSeconds   float64 `json:"broker_cpu_seconds,omitempty"`
	// CacheHitRatio is the service cache's hits / (hits + misses) during the measurement.
	CacheHitRatio *float64 `json:"cache_hit_ratio,omitempty"`
}

// ReadCase is one route in one cache mode: the service and its ceiling, from the round
// whose ratio is the median.
type ReadCase struct {
	Route       string     `json:"route"` // stock or movement
	Cache       string     `json:"cache"` // cached or uncached
	Service     ReadResult `json:"service"`
	Ceiling     ReadResult `json:"ceiling"`
	CeilingKind string     `json:"ceiling_kind"`
	// Rounds lists every round's requests/s in order, and Chosen (0-based) is the one
	// Service and Ceiling come from.
	Rounds []RoundRatio `json:"rounds,omitempty"`
	Chosen int          `json:"chosen_round"`
}

// ReadsResult is the read phase.
type ReadsResult struct {
	StockKeys    int        `json:"stock_keys"`
	MovementKeys int        `json:"movement_keys"`
	Cases        []ReadCase `json:"cases"`
	// Peak RSS of the `serve` processes and of the bare handler's, read after their load.
	CachedPeakRSSBytes   int64 `json:"cached_peak_rss_bytes,omitempty"`
	BarePeakRSSBytes     int64 `json:"bare_peak_rss_bytes,omitempty"`
	UncachedPeakRSSBytes int64 `json:"uncached_peak_rss_bytes,omitempty"`
	// JSONMatches is "ok" when the bare handler answers byte for byte what the service does.
	JSONMatches string `json:"json_matches"`
	// Errors counts the failed requests of every round, service and ceilings, and
	// FirstError is the first of them.
	Errors     int64  `json:"errors"`
	FirstError string `json:"first_error,omitempty"`
}

// countErrors adds res's failed requests to Errors.
func (rr *ReadsResult) countErrors(res ReadResult) {
	rr.Errors += res.Errors
	if rr.FirstError == "" {
		rr.FirstError = res.FirstError
	}
}

func (rr *ReadsResult) find(route, cache string) *ReadCase {
	for i := range rr.Cases {
		if rr.Cases[i].Route == route && rr.Cases[i].Cache == cache {
			return &rr.Cases[i]
		}
	}
	rr.Cases = append(rr.Cases, ReadCase{Route: route, Cache: cache})
	return &rr.Cases[len(rr.Cases)-1]
}

// reads measures both routes over the drained database, in each cache mode in rounds:
// per round and route, the ceiling and then the service, both running all along (the
// bare Fiber handler and the service with its cache; raw pgx and the service without
// cache), so that a slow spell of the machine weighs on both sides of a ratio. Then it
// measures the ledger's past on the uncached service (see historyPhase), over the
// drained stream and a hot stock row it stores first.
func (r *runner) reads(ctx context.Context, dbURL string) (rr ReadsResult, hr HistoryResult, err error) {
	n := hotEvents
	if r.o.Smoke {
		n = smokeHotEvents
	}
	hot, err := newHotRow(n, r.stream.first, genSpan)
	if err != nil {
		return rr, hr, err
	}
	hotLoad, err := loadHot(ctx, dbURL, hot)
	if err != nil {
		return rr, hr, err
	}
	r.log.Info("hot row stored", "events", n, "seconds", round(hotLoad.Seconds()))
	if err := vacuum(ctx, dbURL); err != nil {
		return rr, hr, err
	}
	paths := map[string][]string{routeStock: nil, routeMovement: nil}
	for _, k := range r.stream.stockKeys {
		paths[routeStock] = append(paths[routeStock], "/api/warehouses/"+k.Warehouse.String()+"/products/"+k.Product.String())
	}
	for _, id := range r.stream.movements {
		paths[routeMovement] = append(paths[routeMovement], "/api/movements/"+id.String())
	}
	rr.StockKeys, rr.MovementKeys = len(paths[routeStock]), len(paths[routeMovement])

	// Cached: the bare Fiber handler and the service with a cache that holds every key.
	bare, err := r.startBare(ctx, dbURL)
	if err != nil {
		return rr, hr, fmt.Errorf("bare Fiber handler: %w", err)
	}
	defer bare.stop()
	svc, err := r.startServe(ctx, "serve-cached", dbURL, rr.StockKeys+rr.MovementKeys+1024)
	if err != nil {
		return rr, hr, err
	}
	defer svc.stop()
	rr.JSONMatches = compareJSON(ctx, bare.addr, svc.addr, paths)
	for _, route := range []string{routeStock, routeMovement} {
		if err := prime(ctx, svc.addr, paths[route], r.o.Connections); err != nil {
			return rr, hr, fmt.Errorf("prime the cache: %w", err)
		}
	}
	err = r.readRounds(ctx, &rr, cacheOn, "bare Fiber handler answering from a Go map", svc, "reads-cached-serve",
		func(route string) ReadResult {
			return r.measureHTTP(ctx, bare.addr, paths[route], bare, r.o.Connections)
		},
		func(route string) ReadResult { return r.measureHTTP(ctx, svc.addr, paths[route], svc, r.o.Connections) })
	if err != nil {
		return rr, hr, err
	}
	rr.BarePeakRSSBytes, rr.CachedPeakRSSBytes = peakRSSOrZero(bare), peakRSSOrZero(svc)
	bare.stop()
	// Routes are cached (a dashboard polls one window): measured on this service.
	if err := r.routesCached(ctx, svc, hot, &hr); err != nil {
		return rr, hr, fmt.Errorf("routes: %w", err)
	}
	svc.stop()

	// Uncached: raw pgx point reads and the service with CACHE_SIZE=0.
	pool, err := openPool(ctx, dbURL, r.o.DBMaxConns)
	if err != nil {
		return rr, hr, err
	}
	defer pool.Close()
	svc, err = r.startServe(ctx, "serve-uncached", dbURL, 0)
	if err != nil {
		return rr, hr, err
	}
	defer svc.stop()
	err = r.readRounds(ctx, &rr, cacheOff, "raw pgx point reads (pgxpool, "+strconv.Itoa(r.o.DBMaxConns)+" connections)", svc, "reads-uncached-serve",
		func(route string) ReadResult { return r.measurePgx(ctx, pool, route) },
		func(route string) ReadResult { return r.measureHTTP(ctx, svc.addr, paths[route], svc, r.o.Connections) })
	if err != nil {
		return rr, hr, err
	}
	rr.UncachedPeakRSSBytes = peakRSSOrZero(svc)
	// The ledger's past, on the same uncached service.
	if err = r.historyPhase(ctx, svc, hot, hotLoad, &hr); err != nil {
		return rr, hr, fmt.Errorf("the ledger's past: %w", err)
	}
	return rr, hr, ctx.Err()
}

// readRounds measures one cache mode: Rounds rounds of, per route, the ceiling and then
// the service, each case's figures from its median round. svc is the service child,
// checked alive after every round and profiled as name (when asked) from its first
// measurement.
func (r *runner) readRounds(ctx context.Context, rr *ReadsResult, cache, ceilingKind string, svc *child, name string,
	ceiling, service func(route string) ReadResult,
) error {
	routes := []string{routeStock, routeMovement}
	rounds := make(map[string][]readRound, len(routes))
	profiled := func() {}
	for i := range r.o.Rounds {
		for _, route := range routes {
			var rd readRound
			rd.ceiling = ceiling(route)
			r.logRead("ceiling", rd.ceiling, route, cache, i)
			if i == 0 && route == routes[0] {
				profiled = r.profile(ctx, svc, name, max(1, int(r.o.ReadsDuration.Seconds())))
			}
			rd.service = service(route)
			r.logRead("service", rd.service, route, cache, i)
			rr.countErrors(rd.ceiling)
			rr.countErrors(rd.service)
			rounds[route] = append(rounds[route], rd)
		}
		if err := svc.alive(); err != nil {
			profiled()
			return err
		}
		if ctx.Err() != nil {
			break
		}
	}
	profiled()
	for _, route := range routes {
		c := rr.find(route, cache)
		c.CeilingKind = ceilingKind
		c.setMedianRound(rounds[route])
	}
	return ctx.Err()
}

// peakRSSOrZero is c's peak RSS, or 0 when /proc could not tell.
func peakRSSOrZero(c *child) int64 {
	rss, err := c.peakRSS()
	if err != nil {
		return 0
	}
	return rss
}

func (r *runner) logRead(who string, res ReadResult, route, cache string, i int) {
	r.log.Info("reads measured", "round", i+1, "who", who, "route", route, "cache", cache, "req_per_second", round(res.RequestsPerSecond),
		"p50_ms", round(res.P50Ms), "p99_ms", round(res.P99Ms), "errors", res.Errors)
}

// startBare runs the bare Fiber handler (ServeBare) in a child process: the benchmark
// binary's hidden --bare-server mode.
func (r *runner) startBare(ctx context.Context, dbURL string) (*child, error) {
	addr, err := freeAddr(ctx)
	if err != nil {
		return nil, err
	}
	env := r.serviceEnv(dbURL, unusedTopology())
	env["LOG_LEVEL"] = "warn"
	c, err := r.startChild(ctx, "bare-fiber", env, addr, r.o.Self, "--bare-server", addr)
	if err != nil {
		return nil, err
	}
	if err := c.waitReady(ctx, readyTimeout); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

// unusedTopology is a valid configuration for children that never touch the broker.
func unusedTopology() amqpadapter.Topology {
	return amqpadapter.DefaultTopology("warehouse.bench.unused", "warehouse.bench.unused", retryDelay, deliveryLimit)
}

// startServe runs `warehouse serve` on dbURL with a cache of cacheSize entries (0: none).
func (r *runner) startServe(ctx context.Context, name, dbURL string, cacheSize int) (*child, error) {
	env := r.serviceEnv(dbURL, unusedTopology())
	env["CACHE_SIZE"] = strconv.Itoa(cacheSize)
	// The cache must still hold every key at the end of the run: the ceiling answers
	// every request from memory too.
	env["CACHE_TTL"] = "1h"
	env["LOG_LEVEL"] = "warn"
	return r.startServeWith(ctx, name, env)
}

// startServeWith runs `warehouse serve` with env (serviceEnv and more) on a free
// 127.0.0.1 port of its own (HTTP_ADDR), and waits until it is ready.
func (r *runner) startServeWith(ctx context.Context, name string, env map[string]string) (*child, error) {
	addr, err := freeAddr(ctx)
	if err != nil {
		return nil, err
	}
	env["HTTP_ADDR"] = addr
	c, err := r.startChild(ctx, name, env, addr, r.o.Binary, "serve")
	if err != nil {
		return nil, err
	}
	if err := c.waitReady(ctx, readyTimeout); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

// warmup is the unmeasured load before each measurement: it opens the connections and
// fills the pools, so that the measurement sees neither.
func (r *runner) warmup() time.Duration {
	return min(max(r.o.ReadsDuration/10, 200*time.Millisecond), time.Second)
}

// measureHTTP loads addr's paths from Connections connections for ReadsDuration after a
// warm-up. When proc is set (the server's process) its CPU time and cache hit ratio are
// recorded too.
func (r *runner) measureHTTP(ctx context.Context, addr string, paths []string, proc *child, conns int) ReadResult {
	urls := make([]string, len(paths))
	for i, p := range paths {
		urls[i] = "http://" + addr + p
	}
	hc := &fasthttp.HostClient{
		Addr: addr, MaxConns: conns, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second,
		MaxIdleConnDuration: time.Minute, MaxConnWaitTimeout: 10 * time.Second,
	}
	defer hc.CloseIdleConnections()
	newOp := func(w int) func() error {
		rng := rand.New(rand.NewPCG(genSeed, uint64(w)))
		req, resp := new(fasthttp.Request), new(fasthttp.Response)
		req.Header.SetMethod(fasthttp.MethodGet)
		return func() error {
			req.SetRequestURI(urls[rng.IntN(len(urls))])
			if err := hc.Do(req, resp); err != nil {
				return err
			}
			if code := resp.StatusCode(); code != fasthttp.StatusOK {
				return fmt.Errorf("status %d: %.200s", code, resp.Body())
			}
			return nil
		}
	}
	r.load(ctx, r.warmup(), conns, newOp)
	var before map[string]float64
	var cpu0 float64
	if proc != nil {
		before, _ = proc.metrics(ctx, "cache_hits_total", "cache_misses_total")
		cpu0, _ = proc.cpuSeconds()
	}
	res := r.load(ctx, r.o.ReadsDuration, conns, newOp)
	if proc != nil {
		if cpu1, err := proc.cpuSeconds(); err == nil {
			res.CPUSeconds = cpu1 - cpu0
		}
		if after, err := proc.metrics(ctx, "cache_hits_total", "cache_misses_total"); err == nil && len(before) > 0 {
			hits := after["cache_hits_total"] - before["cache_hits_total"]
			misses := after["cache_misses_total"] - before["cache_misses_total"]
			if hits+misses > 0 {
				ratio := hits / (hits + misses)
				res.CacheHitRatio = &ratio
			}
		}
	}
	return res
}

// measurePgx runs the route's point read from Connections goroutines over pool.
func (r *runner) measurePgx(ctx context.Context, pool *pgxpool.Pool, route string) ReadResult {
	keys, movements := r.stream.stockKeys, r.stream.movements
	newOp := func(w int) func() error {
		rng := rand.New(rand.NewPCG(genSeed, uint64(w)))
		if route == routeStock {
			var wh, p [16]byte
			var q int64
			var at time.Time
			return func() error {
				k := keys[rng.IntN(len(keys))]
				return pool.QueryRow(ctx, stockSQL, [16]byte(k.Warehouse), [16]byte(k.Product)).Scan(&wh, &p, &q, &at)
			}
		}
		var id, p [16]byte
		var dw, aw pgtype.UUID
		var ds, as pgtype.Text
		var dat, aat pgtype.Timestamptz
		var dq, aq pgtype.Int8
		return func() error {
			m := movements[rng.IntN(len(movements))]
			return pool.QueryRow(ctx, movementSQL, [16]byte(m)).Scan(&id, &p, &dw, &ds, &dat, &dq, &aw, &as, &aat, &aq)
		}
	}
	r.load(ctx, r.warmup(), r.o.Connections, newOp)
	return r.load(ctx, r.o.ReadsDuration, r.o.Connections, newOp)
}

// load runs n workers, each calling its op in a loop until d has passed (or
// maxPerWorker calls, or ctx ends), and returns throughput and latency percentiles.
func (r *runner) load(ctx context.Context, d time.Duration, n int, newOp func(worker int) func() error) ReadResult {
	lats := make([][]int64, n)
	errs := make([]int64, n)
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	host0, _ := readHostCPU()
	proc0 := readProcCPU()
	start := time.Now()
	deadline := start.Add(d)
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			op := newOp(w)
			l := make([]int64, 0, 4096)
			for range maxPerWorker {
				t := time.Now()
				if !t.Before(deadline) || ctx.Err() != nil {
					break
				}
				err := op()
				l = append(l, int64(time.Since(t)))
				if err != nil {
					errs[w]++
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
			lats[w] = l
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	res := ReadResult{Seconds: elapsed.Seconds(), HostCPUBusy: host0.busySince()}
	res.setProcCPU(readProcCPU().since(proc0))
	all := slices.Concat(lats...)
	slices.Sort(all)
	res.Requests = int64(len(all))
	for _, e := range errs {
		res.Errors += e
	}
	if firstErr != nil {
		res.FirstError = firstErr.Error()
	}
	if len(all) == 0 {
		return res
	}
	res.RequestsPerSecond = float64(len(all)-int(res.Errors)) / elapsed.Seconds()
	var sum int64
	for _, v := range all {
		sum += v
	}
	ms := func(ns int64) float64 { return float64(ns) / 1e6 }
	pct := func(p float64) float64 { return ms(all[min(len(all)-1, int(p*float64(len(all))))]) }
	res.MeanMs = ms(sum / int64(len(all)))
	res.P50Ms, res.P90Ms, res.P99Ms, res.P999Ms = pct(0.50), pct(0.90), pct(0.99), pct(0.999)
	res.MaxMs = ms(all[len(all)-1])
	return res
}

// prime requests every path once (Connections at a time), so that the measurement sees
// the cache's steady state: every key cached, as the bare handler's map holds them all.
func prime(ctx context.Context, addr string, paths []string, conns int) error {
	ctx, cancel := context.WithTimeout(ctx, primeTimeout)
	defer cancel()
	hc := &fasthttp.HostClient{Addr: addr, MaxConns: conns, ReadTimeout: 10 * time.Second, MaxConnWaitTimeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	next := make(chan string)
	errc := make(chan error, conns)
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, resp := new(fasthttp.Request), new(fasthttp.Response)
			for p := range next {
				req.SetRequestURI("http://" + addr + p)
				if err := hc.Do(req, resp); err != nil || resp.StatusCode() != fasthttp.StatusOK {
					errc <- fmt.Errorf("GET %s: %w (status %d)", p, err, resp.StatusCode())
					return
				}
			}
		}()
	}
	var err error
feed:
	for _, p := range paths {
		select {
		case next <- p:
		case err = <-errc:
			break feed
		case <-ctx.Done():
			err = ctx.Err()
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errc:
		default:
		}
	}
	return err
}

// compareJSON fetches a few keys of each route from both servers and reports whether the
// bodies are identical ("ok") or the first difference.
func compareJSON(ctx context.Context, bareAddr, svcAddr string, paths map[string][]string) string {
	client := &http.Client{Timeout: 5 * time.Second}
	get := func(addr, p string) ([]byte, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+p, nil)
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return b, fmt.Errorf("status %d", resp.StatusCode)
		}
		return b, err
	}
	for _, route := range []string{routeStock, routeMovement} {
		ps := paths[route]
		for i := 0; i < len(ps); i += max(1, len(ps)/20) {
			want, err := get(svcAddr, ps[i])
			if err != nil {
				return fmt.Sprintf("service GET %s: %v", ps[i], err)
			}
			got, err := get(bareAddr, ps[i])
			if err != nil {
				return fmt.Sprintf("bare GET %s: %v", ps[i], err)
			}
			if !bytes.Equal(want, got) {
				return fmt.Sprintf("GET %s: service %s, bare handler %s", ps[i], want, got)
			}
		}
	}
	return "ok"
}

// vacuum brings the drained database to a steady state for reads: statistics gathered
// and visibility maps set, as autovacuum would have done a while after the burst.
func vacuum(ctx context.Context, dbURL string) error {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "VACUUM (ANALYZE) events, movements, stock")
	return err
}

func openPool(ctx context.Context, dbURL string, size int) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return nil, errors.New("DATABASE_URL is not a PostgreSQL URL")
	}
	cfg.MaxConns, cfg.MinConns = int32(size), int32(size)
	return pgxpool.NewWithConfig(ctx, cfg)
}

// ServeBare serves the ceiling of cached reads on addr until ctx is done: Fiber with two
// handlers answering from Go maps, loaded from dbURL's read model, in the service's JSON,
// plus a /readyz. The benchmark runs it in a child process of its own (its binary's hidden
// --bare-server flag), so that the ceiling, like the service, does not share its process
// with the load generator.
func ServeBare(ctx context.Context, addr, dbURL string) error {
	stock, movements, err := loadReadModel(ctx, dbURL)
	if err != nil {
		return err
	}
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	app.Get("/readyz", func(c *fiber.Ctx) error { return c.SendStatus(fiber.StatusOK) })
	app.Get("/api/warehouses/:warehouse_id/products/:product_id", func(c *fiber.Ctx) error {
		v, ok := stock[[2]string{c.Params("warehouse_id"), c.Params("product_id")}]
		if !ok {
			return c.SendStatus(fiber.StatusNotFound)
		}
		return c.JSON(v)
	})
	app.Get("/api/movements/:movement_id", func(c *fiber.Ctx) error {
		v, ok := movements[c.Params("movement_id")]
		if !ok {
			return c.SendStatus(fiber.StatusNotFound)
		}
		return c.JSON(v)
	})
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { _ = app.ShutdownWithTimeout(5 * time.Second) })
	defer stop()
	return app.Listener(ln)
}

// stockJSON, movementJSON and legJSON are the API's response bodies (see openapi.json).
type stockJSON struct {
	WarehouseID string `json:"warehouse_id"`
	ProductID   string `json:"product_id"`
	Quantity    int64  `json:"quantity"`
	UpdatedAt   string `json:"updated_at"`
}

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

// loadReadModel reads every stock row and movement into the bare handler's maps.
func loadReadModel(ctx context.Context, dbURL string) (map[[2]string]stockJSON, map[string]movementJSON, error) {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return nil, nil, err
	}
	defer conn.Close(ctx)
	stock := make(map[[2]string]stockJSON)
	rows, err := conn.Query(ctx, `SELECT warehouse_id, product_id, quantity, updated_at FROM stock`)
	if err != nil {
		return nil, nil, err
	}
	for rows.Next() {
		var w, p [16]byte
		var s stockJSON
		var at time.Time
		if err := rows.Scan(&w, &p, &s.Quantity, &at); err != nil {
			rows.Close()
			return nil, nil, err
		}
		s.WarehouseID, s.ProductID, s.UpdatedAt = uuid.UUID(w).String(), uuid.UUID(p).String(), formatTime(at)
		stock[[2]string{s.WarehouseID, s.ProductID}] = s
	}
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	movements := make(map[string]movementJSON)
	rows, err = conn.Query(ctx, movementSQL[:len(movementSQL)-len(" WHERE movement_id = $1")])
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var id, p [16]byte
		var dw, aw pgtype.UUID
		var ds, as pgtype.Text
		var dat, aat pgtype.Timestamptz
		var dq, aq pgtype.Int8
		if err := rows.Scan(&id, &p, &dw, &ds, &dat, &dq, &aw, &as, &aat, &aq); err != nil {
			return nil, nil, err
		}
		m := domain.Movement{ID: domain.MovementID(id), ProductID: domain.ProductID(p)}
		if dat.Valid {
			m.Departure = &domain.Leg{WarehouseID: domain.WarehouseID(dw.Bytes), Source: ds.String, Timestamp: dat.Time.UTC(), Quantity: dq.Int64}
		}
		if aat.Valid {
			m.Arrival = &domain.Leg{WarehouseID: domain.WarehouseID(aw.Bytes), Source: as.String, Timestamp: aat.Time.UTC(), Quantity: aq.Int64}
		}
		movements[m.ID.String()] = movementOf(m)
	}
	return stock, movements, rows.Err()
}

func movementOf(m domain.Movement) movementJSON {
	out := movementJSON{
		MovementID: m.ID.String(), ProductID: m.ProductID.String(), Status: string(m.Status()),
		Departure: legOf(m.Departure), Arrival: legOf(m.Arrival),
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
	return &legJSON{WarehouseID: l.WarehouseID.String(), Source: l.Source, Timestamp: formatTime(l.Timestamp), Quantity: l.Quantity}
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
