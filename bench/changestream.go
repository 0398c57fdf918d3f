package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	amqpadapter "warehouse/adapters/amqp"
	"warehouse/adapters/http/sse"
	"warehouse/adapters/postgres"
	"warehouse/application"
)

// The change stream phase: the drain of serviceDrain (a prefilled queue, a `warehouse
// consume` child) twice per round on databases and queues of their own, once plain and
// once with a `warehouse serve` child on the same database and StreamClients clients
// following its GET /api/stream from before the consumer starts (alternating which comes
// first from round to round). Every client must receive every change exactly once, in
// order; its latency is the receive time of each stock event minus the committed_at of
// the change-log row that holds the change's position.

// Sizes and target of the phase.
const (
	DefaultStreamClients = 100
	SmokeStreamClients   = 10
	// maxStreamClients bounds Options.StreamClients (the service's STREAM_MAX_CLIENTS
	// default).
	maxStreamClients = 1000
	// targetStreamCost is the share of the drain's rate the clients may cost at most.
	targetStreamCost = 0.10
	// streamTail bounds the wait, after the drain, for the clients' last changes.
	streamTail = 30 * time.Second
)

// StreamResult is the change stream phase.
type StreamResult struct {
	Clients int `json:"clients"`
	// Drain is the drain with the clients (service) and without them (ceiling), from the
	// round whose ratio with / without is the median; Rounds lists every round's.
	Drain Pair `json:"drain"`
	// Delivery is what the clients received in the chosen round; Deliveries every
	// round's, in order.
	Delivery   StreamDelivery   `json:"delivery"`
	Deliveries []StreamDelivery `json:"deliveries"`
}

// StreamDelivery is what the clients of one drain received.
type StreamDelivery struct {
	Clients int `json:"clients"`
	// WithFirst is set when the round ran the drain with clients before the plain one.
	WithFirst bool `json:"with_clients_first"`
	// Connected is the serve child's stream_clients before the consumer started.
	Connected int `json:"connected"`
	// Filter is what each client follows: "warehouse" (one warehouse each) or "none".
	Filter string `json:"filter"`
	// Changes is what the clients must receive together: two per stored event of each
	// client's filter.
	Changes int64 `json:"changes"`
	// Complete counts the clients that received every change exactly once, in order;
	// FirstProblem is the first other client's story.
	Complete     int    `json:"complete"`
	FirstProblem string `json:"first_problem,omitempty"`
	// Dropped and EventsSent are the serve child's stream_clients_dropped_total and
	// stream_events_sent_total at the end.
	Dropped    int64 `json:"dropped"`
	EventsSent int64 `json:"events_sent"`
	// Latency from commit (the change-log row's committed_at) to the client (its receive
	// time), over every stock event of every client.
	Samples int64   `json:"samples"`
	P50Ms   float64 `json:"p50_ms"`
	P90Ms   float64 `json:"p90_ms"`
	P99Ms   float64 `json:"p99_ms"`
	P999Ms  float64 `json:"p999_ms"`
	MaxMs   float64 `json:"max_ms"`
	// Seconds runs from the consumer's start to the last client's last change.
	Seconds float64 `json:"seconds"`
	// ServeCPUSeconds is the serve child's CPU time, BenchCPUSeconds the benchmark
	// process's (which runs the clients), over the same interval as Seconds.
	ServeCPUSeconds   float64 `json:"serve_cpu_seconds,omitempty"`
	BenchCPUSeconds   float64 `json:"bench_cpu_seconds,omitempty"`
	ServePeakRSSBytes int64   `json:"serve_peak_rss_bytes,omitempty"`
	// Verified is "ok" when every client connected before the drain and received every
	// change exactly once, nobody was dropped and every position has its commit time.
	Verified string `json:"verified"`
}

// Stream filters: what each client of the stream phase follows.
const (
	// StreamFilterWarehouse gives each client one warehouse (?warehouse_id=), spread
	// over the stream's warehouses: dashboards of one warehouse each.
	StreamFilterWarehouse = "warehouse"
	// StreamFilterNone gives each client every change (the whole firehose).
	StreamFilterNone = "none"
)

// streamFilter is StreamFilter, StreamFilterWarehouse by default.
func (o Options) streamFilter() string {
	if o.StreamFilter == "" {
		return StreamFilterWarehouse
	}
	return o.StreamFilter
}

// streamClients is StreamClients, or SmokeStreamClients under --smoke.
func (o Options) streamClients() int {
	if o.StreamClients > 0 {
		return o.StreamClients
	}
	if o.Smoke {
		return SmokeStreamClients
	}
	return DefaultStreamClients
}

// streamPhase runs the phase's rounds and returns the median round with every round's
// drains (for the checks).
func (r *runner) streamPhase(ctx context.Context) (StreamResult, []Pair, error) {
	res := StreamResult{Clients: r.o.streamClients()}
	pairs := make([]Pair, 0, r.o.lateRounds())
	for i := range r.o.lateRounds() {
		var p Pair
		var d StreamDelivery
		withFirst := i%2 == 1 // alternate which drain of the round runs first
		for _, with := range []bool{withFirst, !withFirst} {
			dr, del, err := r.streamDrain(ctx, i, with)
			if err != nil {
				who := "without clients"
				if with {
					who = "with clients"
				}
				return res, nil, fmt.Errorf("stream round %d, drain %s: %w", i+1, who, err)
			}
			if with {
				p.Service, d = dr, del
			} else {
				p.Ceiling = dr
			}
		}
		d.WithFirst = withFirst
		pairs = append(pairs, p)
		res.Deliveries = append(res.Deliveries, d)
	}
	res.Drain = medianPair(pairs)
	res.Delivery = res.Deliveries[res.Drain.Chosen]
	r.logRounds("stream", res.Drain)
	return res, pairs, nil
}

// streamDrain measures one drain of round i, with the clients or without, on a database
// and a queue of its own, both dropped (the queue emptied) afterwards.
func (r *runner) streamDrain(ctx context.Context, i int, with bool) (IngestResult, StreamDelivery, error) {
	kind := "plain"
	if with {
		kind = "clients"
	}
	var del StreamDelivery
	dbURL, err := r.createDatabase(ctx, "stream_"+kind+roundSuffix(i, "_"), true)
	if err != nil {
		return IngestResult{}, del, err
	}
	defer r.dropDatabases(context.WithoutCancel(ctx), databaseName(dbURL))
	t, err := r.declare("stream-" + kind + roundSuffix(i, "-"))
	if err != nil {
		return IngestResult{}, del, err
	}
	if err := r.prefill(ctx, t.Exchange, t.Queue); err != nil {
		return IngestResult{}, del, err
	}
	phase := "stream-" + kind + roundSuffix(i, "-")
	if !with {
		r.checkpoint(ctx)
		res, err := r.serviceIngest(ctx, phase, dbURL, t, nil)
		return res, del, err
	}

	n := r.o.streamClients()
	del = StreamDelivery{Clients: n, Filter: r.o.streamFilter()}
	env := r.serviceEnv(dbURL, unusedTopology())
	env["CACHE_SIZE"] = "0"
	env["LOG_LEVEL"] = "warn"
	// One batch's changes reach a client at once: the service wants a buffer at least
	// that large, and its default otherwise.
	env["STREAM_BUFFER"] = strconv.Itoa(max(application.DefaultStreamBuffer, r.o.BatchSize))
	env["STREAM_MAX_CLIENTS"] = strconv.Itoa(max(application.DefaultStreamMaxClients, n))
	svc, err := r.startServeWith(ctx, "serve-"+phase, env)
	if err != nil {
		return IngestResult{}, del, err
	}
	defer svc.stop()
	// The clients' bound is that of everything until their tail: their connection and
	// stream_clients (readyTimeout each), the consumer's start, its drain, the ledger's
	// check and its stop; the tail timer below ends them earlier.
	cctx, cancel := context.WithTimeout(ctx, 3*readyTimeout+r.o.ingestTimeout()+time.Minute+stopTimeout+streamTail)
	defer cancel()
	targets := r.streamTargets("http://"+svc.addr+"/api/stream", n)
	for _, tg := range targets {
		del.Changes += 2 * int64(tg.want)
	}
	clients, err := connectStreams(cctx, targets)
	if err != nil {
		cancel()
		clients.wait()
		return IngestResult{}, del, err
	}
	if del.Connected, err = waitStreamClients(ctx, svc, n); err != nil {
		cancel()
		clients.wait()
		return IngestResult{}, del, err
	}
	r.checkpoint(ctx)
	start := time.Now()
	serve0, _ := svc.cpuSeconds()
	self0, _ := procCPUSeconds(os.Getpid())
	res, err := r.serviceIngest(ctx, phase, dbURL, t, nil)
	if err != nil {
		cancel()
		clients.wait()
		return res, del, err
	}
	// The clients end by themselves once they hold every change; a client still short
	// of it streamTail after the drain is cut off.
	tail := time.AfterFunc(streamTail, cancel)
	clients.wait()
	tail.Stop()
	del.Seconds = time.Since(start).Seconds()
	if serve1, err := svc.cpuSeconds(); err == nil {
		del.ServeCPUSeconds = serve1 - serve0
	}
	if self1, err := procCPUSeconds(os.Getpid()); err == nil {
		del.BenchCPUSeconds = self1 - self0
	}
	if err := svc.alive(); err != nil {
		return res, del, err
	}
	if m, err := svc.metrics(ctx, "stream_clients_dropped_total", "stream_events_sent_total"); err == nil {
		del.Dropped, del.EventsSent = int64(m["stream_clients_dropped_total"]), int64(m["stream_events_sent_total"])
	}
	del.ServePeakRSSBytes = peakRSSOrZero(svc)
	svc.stop()

	var problems []string
	expected, err := stockPositions(ctx, dbURL)
	if err != nil {
		problems = append(problems, err.Error())
	} else {
		problems = append(problems, clients.delivery(&del, expected)...)
	}
	at, err := commitTimes(ctx, dbURL, len(r.stream.msgs))
	if err != nil {
		problems = append(problems, err.Error())
	} else {
		clients.latency(at, &del)
	}
	if del.Connected != n {
		problems = append(problems, fmt.Sprintf("stream_clients was %d before the drain, want %d", del.Connected, n))
	}
	if del.Dropped > 0 {
		problems = append(problems, fmt.Sprintf("%d clients dropped as slow (stream_clients_dropped_total)", del.Dropped))
	}
	del.Verified = "ok"
	if len(problems) > 0 {
		del.Verified = strings.Join(problems, "; ")
	}
	r.log.Info("stream delivered", "phase", phase, "clients", n, "complete", del.Complete, "dropped", del.Dropped,
		"p50_ms", round(del.P50Ms), "p99_ms", round(del.P99Ms), "max_ms", round(del.MaxMs), "verified", del.Verified)
	return res, del, nil
}

// waitStreamClients polls the serve child's stream_clients until it shows n, for at most
// readyTimeout, and returns the last value seen.
func waitStreamClients(ctx context.Context, svc *child, n int) (int, error) {
	deadline := time.Now().Add(readyTimeout)
	for {
		m, err := svc.metrics(ctx, "stream_clients")
		got := int(m["stream_clients"])
		if err == nil && got == n {
			return got, nil
		}
		if err := svc.alive(); err != nil {
			return got, err
		}
		if time.Now().After(deadline) {
			if err != nil {
				return got, fmt.Errorf("%s: /metrics after %s: %w", svc.name, readyTimeout, err)
			}
			return got, fmt.Errorf("%s: stream_clients is %d after %s, want %d", svc.name, got, readyTimeout, n)
		}
		if !sleepCtx(ctx, 20*time.Millisecond) {
			return got, ctx.Err()
		}
	}
}

// streamSet is the clients of one drain.
type streamSet struct {
	clients   []*streamClient
	transport *http.Transport
	wg        sync.WaitGroup
}

// streamTarget is what one client follows and how many stored events it must hear of.
type streamTarget struct {
	url       string
	warehouse string // the filter's warehouse; "" follows every change
	want      int
}

// streamClient is one client of the stream. It reads until it holds the stock events of
// want stored events, each after its movement event; stocks are their positions in the
// order received, recv their receive times (Unix ns). got counts the events taken in
// order (movements and stocks).
type streamClient struct {
	streamTarget
	stocks []int64
	recv   []int64
	got    int64
	err    error
}

// streamTargets returns the n clients' targets on url: under the filter "warehouse",
// client i follows the warehouse i mod W of the stream's W warehouses (as a dashboard of
// one warehouse does), and must hear of that warehouse's events; under "none", every
// client follows every change.
func (r *runner) streamTargets(url string, n int) []streamTarget {
	targets := make([]streamTarget, n)
	if r.o.streamFilter() != StreamFilterWarehouse {
		for i := range targets {
			targets[i] = streamTarget{url: url, want: len(r.stream.msgs)}
		}
		return targets
	}
	whs, counts := r.stream.warehouseCounts()
	for i := range targets {
		w := whs[i%len(whs)]
		targets[i] = streamTarget{url: url + "?warehouse_id=" + w, warehouse: w, want: counts[w]}
	}
	return targets
}

// warehouseCounts returns the stream's warehouses (sorted) and its events per warehouse,
// counted on the first call.
func (s *stream) warehouseCounts() ([]string, map[string]int) {
	if s.perWarehouse != nil {
		return s.warehouses, s.perWarehouse
	}
	counts := map[string]int{}
	for _, m := range s.msgs {
		e, err := amqpadapter.DecodeEvent(m.body)
		if err != nil {
			panic(fmt.Sprintf("bench: a generated event does not decode: %v", err)) // a bug of generate
		}
		counts[e.WarehouseID.String()]++
	}
	whs := make([]string, 0, len(counts))
	for w := range counts {
		whs = append(whs, w)
	}
	slices.Sort(whs)
	s.warehouses, s.perWarehouse = whs, counts
	return whs, counts
}

// connectStreams opens one client per target and returns once every one has its
// answer's headers (or one failed). The clients read in the background until they hold
// what they must or ctx ends.
func connectStreams(ctx context.Context, targets []streamTarget) (*streamSet, error) {
	s := &streamSet{clients: make([]*streamClient, len(targets)), transport: &http.Transport{
		MaxIdleConnsPerHost: len(targets), DisableCompression: true, ResponseHeaderTimeout: readyTimeout,
	}}
	hc := &http.Client{Transport: s.transport}
	connected := make(chan error, len(targets))
	for i, tg := range targets {
		c := &streamClient{streamTarget: tg, stocks: make([]int64, 0, tg.want), recv: make([]int64, 0, tg.want)}
		s.clients[i] = c
		s.wg.Go(func() { c.read(ctx, hc, connected) })
	}
	for range targets {
		select {
		case err := <-connected:
			if err != nil {
				return s, fmt.Errorf("GET /api/stream: %w", err)
			}
		case <-ctx.Done():
			return s, ctx.Err()
		}
	}
	return s, nil
}

// wait waits for every client to end (their context bounds it) and closes their
// connections.
func (s *streamSet) wait() {
	s.wg.Wait()
	s.transport.CloseIdleConnections()
}

// read follows the stream, checking that ids grow and that each stock event comes right
// after the movement event of the same stored event (ids p and p+1), and records when
// each stock event came. Which positions it had to receive is checked afterwards,
// against the change log (see delivery).
func (c *streamClient) read(ctx context.Context, hc *http.Client, connected chan<- error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		connected <- err
		return
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := hc.Do(req)
	if err != nil {
		c.err = err
		connected <- err
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		c.err = fmt.Errorf("status %d", resp.StatusCode)
		connected <- c.err
		return
	}
	connected <- nil
	rd := sse.NewReader(resp.Body)
	var last, movement int64 // the last id taken, and the pending movement's
	for len(c.stocks) < c.want {
		e, err := rd.Next()
		now := time.Now().UnixNano()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("the server ended the stream")
			}
			c.err = fmt.Errorf("after %d of %d stored events: %w", len(c.stocks), c.want, err)
			return
		}
		id, err := strconv.ParseInt(e.ID, 10, 64)
		if err != nil || id <= last {
			c.err = fmt.Errorf("id %q after %d: a change repeated or out of order", e.ID, last)
			return
		}
		switch {
		case e.Type == "movement" && movement == 0:
			movement = id
		case e.Type == "stock" && movement == id-1:
			movement = 0
			c.stocks = append(c.stocks, id)
			c.recv = append(c.recv, now)
		default:
			c.err = fmt.Errorf("id %d is a %q event after id %d: want a movement and then its stock", id, e.Type, last)
			return
		}
		last = id
		c.got++
	}
}

// stockPositions reads the change log of dbURL through the store's port and returns the
// stock positions of every warehouse's changes, in order, and under "" every one.
func stockPositions(ctx context.Context, dbURL string) (map[string][]int64, error) {
	db, err := postgres.Open(postgres.Options{URL: dbURL, MaxConns: 2})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	store := postgres.NewStore(db)
	out := map[string][]int64{}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for after := int64(0); ; {
		page, err := store.ChangesAfter(cctx, after, 5000)
		if err != nil {
			return nil, fmt.Errorf("read the change log: %w", err)
		}
		if len(page) == 0 {
			return out, nil
		}
		for _, c := range page {
			w := c.Stock.WarehouseID.String()
			out[w] = append(out[w], c.StockPosition())
			out[""] = append(out[""], c.StockPosition())
		}
		after = page[len(page)-1].StockPosition()
	}
}

// delivery counts the complete clients into d, those that received exactly the stock
// positions of their filter in the change log (expected), each after its movement, and
// returns the problems of the others.
func (s *streamSet) delivery(d *StreamDelivery, expected map[string][]int64) []string {
	short := 0
	for i, c := range s.clients {
		want := expected[c.warehouse]
		if c.err == nil && slices.Equal(c.stocks, want) {
			d.Complete++
			continue
		}
		short++
		if d.FirstProblem == "" {
			msg := fmt.Sprintf("%d stock events, not the %d of the change log", len(c.stocks), len(want))
			if c.err != nil {
				msg = c.err.Error()
			}
			d.FirstProblem = fmt.Sprintf("client %d: %s", i+1, msg)
		}
	}
	if short > 0 {
		return []string{fmt.Sprintf("%d of %d clients did not receive every change of their filter exactly once (%s)", short, len(s.clients), d.FirstProblem)}
	}
	return nil
}

// latency fills d's percentiles with every client's received stock events, each its
// receive time minus at, the commit time of its position (at[j] for position 2j+2).
func (s *streamSet) latency(at []int64, d *StreamDelivery) {
	var total int
	for _, c := range s.clients {
		total += len(c.stocks)
	}
	all := make([]int64, 0, total)
	for _, c := range s.clients {
		for k, p := range c.stocks {
			if j := p/2 - 1; j >= 0 && j < int64(len(at)) {
				all = append(all, c.recv[k]-at[j])
			}
		}
	}
	d.Samples = int64(len(all))
	if len(all) == 0 {
		return
	}
	slices.Sort(all)
	ms := func(ns int64) float64 { return float64(ns) / 1e6 }
	pct := func(p float64) float64 { return ms(all[min(len(all)-1, int(p*float64(len(all))))]) }
	d.P50Ms, d.P90Ms, d.P99Ms, d.P999Ms = pct(0.50), pct(0.90), pct(0.99), pct(0.999)
	d.MaxMs = ms(all[len(all)-1])
}

// commitTimes reads the change log of dbURL and returns the commit time (Unix ns) of the
// stock change of each of events stored events: at[j] for position 2j+2, the
// committed_at of the row whose [first_position, last_position] holds it.
func commitTimes(ctx context.Context, dbURL string, events int) ([]int64, error) {
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	conn, err := pgx.Connect(cctx, dbURL)
	if err != nil {
		return nil, err
	}
	defer conn.Close(cctx)
	rows, err := conn.Query(cctx, "SELECT first_position, last_position, committed_at FROM change_log ORDER BY last_position")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	at := make([]int64, events)
	covered := 0
	for rows.Next() {
		var first, last int64
		var committed time.Time
		if err := rows.Scan(&first, &last, &committed); err != nil {
			return nil, err
		}
		for p := first + first%2; p <= min(last, 2*int64(events)); p += 2 { // the even positions: stock changes
			if p >= 2 && at[p/2-1] == 0 {
				at[p/2-1] = committed.UnixNano()
				covered++
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if covered != events {
		return nil, fmt.Errorf("the change log holds the commit time of %d of %d stock changes", covered, events)
	}
	return at, nil
}

// streamRows adds the phase's rows: the drain with the clients next to the drain without
// them, with the target on their ratio, and the latency from commit to client.
func (rep *Report) streamRows() {
	st := rep.Stream
	p := st.Drain
	row := Row{Phase: "stream", Case: fmt.Sprintf("drain with %d clients on /api/stream (%s)", st.Clients, streamFilterCase(st.Delivery.Filter)), Figure: "events/s",
		Value: p.Service.EventsPerSecond, Target: fmt.Sprintf("≥ %.2f × without clients", 1-targetStreamCost)}
	without := p.Ceiling.EventsPerSecond
	row.Ceiling = &without
	if without > 0 {
		ratio := p.Service.EventsPerSecond / without
		row.Ratio = &ratio
	}
	d := st.Delivery
	ok := row.Ratio != nil && *row.Ratio >= 1-targetStreamCost && p.Service.Complete && p.Ceiling.Complete && d.Verified == "ok"
	row.Pass = &ok
	notes := []string{"ceiling column: the same drain without serve and clients"}
	if row.Ratio != nil {
		notes = append(notes, fmt.Sprintf("cost %.1f%%", 100*(1-*row.Ratio)))
	}
	if d.Verified != "ok" {
		notes = append(notes, fmt.Sprintf("not a drain under %d clients: %d of them received every change, %d dropped", st.Clients, d.Complete, d.Dropped))
	}
	if !p.Service.Complete {
		notes = append(notes, "the drain with clients did not finish in time")
	}
	if !p.Ceiling.Complete {
		notes = append(notes, "the drain without clients did not finish in time")
	}
	if n := roundsNote(p.Rounds); n != "" {
		notes = append(notes, n)
	}
	row.Note = strings.Join(notes, "; ")
	rep.Rows = append(rep.Rows, row)
	latency := fmt.Sprintf("commit → client, %d clients", st.Clients)
	note := fmt.Sprintf("%s stock events received and timed", group(d.Samples))
	if d.Verified != "ok" {
		note += fmt.Sprintf(" (of %s): the clients dropped timed only what they received", group(d.Changes/2))
	}
	rep.Rows = append(rep.Rows,
		Row{Phase: "stream", Case: latency, Figure: "p50 ms", Value: d.P50Ms, Target: "—", Note: note},
		Row{Phase: "stream", Case: latency, Figure: "p99 ms", Value: d.P99Ms, Target: "—"},
		Row{Phase: "stream", Case: latency, Figure: "max ms", Value: d.MaxMs, Target: "—"})
}

// streamChecks are the phase's conditions: every client got every change and the ledger
// is the stream's, in every round, and the clients' cost, in the median round (a speed
// target).
func streamChecks(st StreamResult, rounds []Pair) []Check {
	cs := []Check{
		everyRound(fmt.Sprintf("stream: every one of the %d clients received every change exactly once, in order, none dropped (every round)", st.Clients),
			st.Deliveries, func(d StreamDelivery) bool { return d.Verified == "ok" },
			func(d StreamDelivery) string {
				if d.Verified != "ok" {
					return d.Verified
				}
				return fmt.Sprintf("%d of %d clients got every change of their filter (%s in all), %d dropped", d.Complete, d.Clients, group(d.Changes), d.Dropped)
			}),
		everyRound("stream: service stored exactly the stream, with and without clients; no dead letters, retries or duplicates (every round)", rounds,
			func(p Pair) bool {
				return p.Service.Verified == "ok" && p.Ceiling.Verified == "ok" &&
					p.Service.Rejected+p.Service.Retried+p.Service.Duplicates+p.Ceiling.Rejected+p.Ceiling.Retried+p.Ceiling.Duplicates == 0
			},
			func(p Pair) string {
				return fmt.Sprintf("with clients: %s, without: %s; rejected %d, retried %d, duplicates %d", p.Service.Verified, p.Ceiling.Verified,
					p.Service.Rejected+p.Ceiling.Rejected, p.Service.Retried+p.Ceiling.Retried, p.Service.Duplicates+p.Ceiling.Duplicates)
			}),
	}
	p := st.Drain
	cost := Check{Name: fmt.Sprintf("stream: %d clients cost the drain less than %.0f%% (1 − with / without, median round; every client served to the end)",
		st.Clients, 100*targetStreamCost), Speed: true}
	if len(p.Rounds) > 0 {
		rr := p.Rounds[p.Chosen]
		d := st.Delivery
		cost.OK = rr.Ceiling > 0 && 1-rr.Ratio < targetStreamCost && p.Service.Complete && p.Ceiling.Complete && d.Verified == "ok"
		cost.Detail = fmt.Sprintf("cost %.1f%%: %s events/s with clients, %s without", 100*(1-rr.Ratio),
			group(int64(rr.Service+0.5)), group(int64(rr.Ceiling+0.5)))
		if d.Verified != "ok" {
			cost.Detail += fmt.Sprintf(", but not under %d clients: %d received every change, %d were dropped", d.Clients, d.Complete, d.Dropped)
		}
		if len(p.Rounds) > 1 {
			costs := make([]string, len(p.Rounds))
			for i, r := range p.Rounds {
				costs[i] = fmt.Sprintf("%.1f%%", 100*(1-r.Ratio))
			}
			cost.Detail += "; every round's cost: " + strings.Join(costs, ", ")
		}
	}
	return append(cs, cost)
}

// streamDetails writes every round's delivery for the Markdown report.
func (rep *Report) streamDetails(b *strings.Builder) {
	st := rep.Stream
	b.WriteString("\n| stream clients | connected | complete | changes (all clients) | dropped | events sent | stock events timed | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | seconds | serve CPU s | benchmark CPU s | serve peak RSS |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for i, d := range st.Deliveries {
		name := fmt.Sprintf("round %d", i+1)
		if d.WithFirst {
			name += ", with clients first"
		} else {
			name += ", without clients first"
		}
		if len(st.Deliveries) > 1 && i == st.Drain.Chosen {
			name += " (shown)"
		}
		fmt.Fprintf(b, "| %s | %d | %d | %s | %d | %s | %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %s | %s | %s |\n",
			name, d.Connected, d.Complete, group(d.Changes), d.Dropped, group(d.EventsSent), group(d.Samples),
			d.P50Ms, d.P90Ms, d.P99Ms, d.P999Ms, d.MaxMs, d.Seconds, opt(d.ServeCPUSeconds, 2), opt(d.BenchCPUSeconds, 2), mib(d.ServePeakRSSBytes))
	}
	fmt.Fprintf(b, "\nThe %d clients run in the benchmark process (benchmark CPU s) on the machine the service, PostgreSQL and RabbitMQ share; "+
		"seconds and the CPU times run from the consumer's start to the last client's last change.\n", st.Clients)
}

// streamFilterCase names a filter in a row's case.
func streamFilterCase(f string) string {
	if f == StreamFilterNone {
		return "every change each"
	}
	return "one warehouse each"
}

// streamFilterNote says in the method notes what the clients follow.
func streamFilterNote(f string) string {
	if f == StreamFilterNone {
		return "Every client follows every change (`--stream-filter none`)."
	}
	return "Each client follows one warehouse (`?warehouse_id=`, client i the i-th of the stream's warehouses in turn), " +
		"as a dashboard of one warehouse does (`--stream-filter warehouse`, the default)."
}
