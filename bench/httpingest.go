package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/valyala/fasthttp"

	amqpadapter "warehouse/adapters/amqp"
)

// The HTTP ingest phase: `warehouse serve` with INGEST_TOKEN takes the stream as
// CloudEvents batches (POST /api/events) from Connections connections and publishes them
// to its exchange, answering 202 once the broker confirmed them; no consumer runs, so the
// events land in the queue, which must then hold exactly the stream. Next to it, in the
// same round, the project's AMQP publisher (what `warehouse produce` uses) publishes the
// same stream into a queue of its own, also without a consumer.

// httpIngestBatch is how many events one ingest request carries (the service takes up to
// 1000 per batch and 8 MiB).
const httpIngestBatch = 500

// Bounds of the HTTP ingest phase's waits.
const (
	// ingestRequestTimeout bounds one request: the answer comes after the broker's
	// confirms of the batch.
	ingestRequestTimeout = 30 * time.Second
	// ingestRetryDelay is the pause before a request answered 503 or 429 is sent again.
	ingestRetryDelay = 100 * time.Millisecond
)

// PublishResult is one way of putting the stream into a queue nobody consumes: HTTP
// ingest through `warehouse serve`, or the project's AMQP publisher.
type PublishResult struct {
	Events int `json:"events"`
	// Accepted counts the events answered 202 (HTTP) or confirmed (AMQP).
	Accepted int `json:"accepted"`
	// Complete is set when every event was accepted before the phase timeout.
	Complete bool `json:"complete"`
	// Seconds runs from the first request (or publish) to the last 202 (or confirm).
	Seconds         float64 `json:"seconds"`
	EventsPerSecond float64 `json:"events_per_second"`
	// Requests counts the HTTP requests sent, retries included; Retries those answered
	// 503 or 429 and sent again. FirstError is the first other failure.
	Requests   int    `json:"requests,omitempty"`
	Retries    int    `json:"retries,omitempty"`
	FirstError string `json:"first_error,omitempty"`
	// Latency of the accepted requests (HTTP only).
	P50Ms float64 `json:"p50_ms,omitempty"`
	P99Ms float64 `json:"p99_ms,omitempty"`
	MaxMs float64 `json:"max_ms,omitempty"`
	// StartupSeconds, CPUSeconds and PeakRSSBytes are the `serve` child's (HTTP only).
	StartupSeconds float64 `json:"startup_seconds,omitempty"`
	CPUSeconds     float64 `json:"cpu_seconds,omitempty"`
	PeakRSSBytes   int64   `json:"peak_rss_bytes,omitempty"`
	// HostCPUBusy, PostgresCPUSeconds and BrokerCPUSeconds as in IngestResult.
	HostCPUBusy        float64 `json:"host_cpu_busy"`
	PostgresCPUSeconds float64 `json:"postgres_cpu_seconds,omitempty"`
	BrokerCPUSeconds   float64 `json:"broker_cpu_seconds,omitempty"`
	// QueueDepth is the messages the queue held afterwards; Verified is "ok" when that is
	// exactly the stream and every event was accepted, else the problem.
	QueueDepth int    `json:"queue_depth"`
	Verified   string `json:"verified"`
}

// HTTPIngestResult is the HTTP ingest phase: the round whose ratio HTTP / AMQP is the
// median.
type HTTPIngestResult struct {
	// BatchEvents is the events per request; Connections the concurrent connections.
	BatchEvents int           `json:"batch_events"`
	Connections int           `json:"connections"`
	HTTP        PublishResult `json:"http"`
	// AMQP is the project's AMQP publisher (amqp.Publisher) alone, in the same round.
	AMQP PublishResult `json:"amqp"`
	// Rounds lists every round (service: HTTP, ceiling: AMQP, in events/s), and Chosen
	// (0-based) is the one HTTP and AMQP come from.
	Rounds []RoundRatio `json:"rounds,omitempty"`
	Chosen int          `json:"chosen_round"`
}

// publishRound is one round of the phase.
type publishRound struct{ http, amqp PublishResult }

// httpIngestPhase runs the phase's rounds, each the AMQP publisher and then HTTP ingest,
// and returns the median round with every round's results (for the checks).
func (r *runner) httpIngestPhase(ctx context.Context) (HTTPIngestResult, []publishRound, error) {
	res := HTTPIngestResult{BatchEvents: httpIngestBatch, Connections: r.o.Connections}
	batches := batchBodies(r.stream.msgs, httpIngestBatch)
	token, err := randomToken()
	if err != nil {
		return res, nil, err
	}
	rounds := make([]publishRound, 0, r.o.lateRounds())
	for i := range r.o.lateRounds() {
		var rd publishRound
		if rd.amqp, err = r.amqpPublish(ctx, i); err != nil {
			return res, nil, fmt.Errorf("http ingest round %d, AMQP publisher: %w", i+1, err)
		}
		if rd.http, err = r.httpIngest(ctx, i, batches, token); err != nil {
			return res, nil, fmt.Errorf("http ingest round %d, service: %w", i+1, err)
		}
		rounds = append(rounds, rd)
	}
	res.Rounds = make([]RoundRatio, len(rounds))
	for i, rd := range rounds {
		res.Rounds[i] = newRoundRatio(rd.http.EventsPerSecond, rd.amqp.EventsPerSecond)
	}
	res.Chosen = medianRound(res.Rounds)
	res.HTTP, res.AMQP = rounds[res.Chosen].http, rounds[res.Chosen].amqp
	r.log.Info("rounds done", "phase", "http ingest", "rounds", len(rounds), "round_shown", res.Chosen+1,
		"ratio", round(res.Rounds[res.Chosen].Ratio), "note", roundsNote(res.Rounds))
	return res, rounds, nil
}

// batchBodies encodes msgs as CloudEvents batches of at most n events: a JSON array of
// the structured events the AMQP messages carry, in the stream's order.
func batchBodies(msgs []message, n int) []ingestBatch {
	var out []ingestBatch
	for len(msgs) > 0 {
		k := min(n, len(msgs))
		bodies := make([][]byte, k)
		for i, m := range msgs[:k] {
			bodies[i] = m.body
		}
		out = append(out, ingestBatch{body: amqpadapter.JoinBatch(bodies...), events: k})
		msgs = msgs[k:]
	}
	return out
}

// randomToken is the run's INGEST_TOKEN.
func randomToken() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

// amqpPublish publishes the stream with the project's publisher into a queue of its own
// and checks that the queue holds it all.
func (r *runner) amqpPublish(ctx context.Context, i int) (PublishResult, error) {
	res := PublishResult{Events: len(r.stream.msgs)}
	t, err := r.declare("amqp-publish" + roundSuffix(i, "-"))
	if err != nil {
		return res, err
	}
	r.checkpoint(ctx)
	host0, _ := readHostCPU()
	proc0 := readProcCPU()
	pctx, cancel := context.WithTimeout(ctx, r.o.ingestTimeout())
	defer cancel()
	var confirmed atomic.Int64
	start := time.Now()
	pubErr := r.publishProject(pctx, t.Exchange, r.stream.project, &confirmed)
	res.Seconds = time.Since(start).Seconds()
	res.HostCPUBusy = host0.busySince()
	g := readProcCPU().since(proc0)
	res.PostgresCPUSeconds, res.BrokerCPUSeconds = g.postgres, g.rabbitmq
	res.Accepted = int(confirmed.Load())
	if pubErr != nil {
		if ctx.Err() != nil || !errors.Is(pubErr, context.DeadlineExceeded) {
			return res, fmt.Errorf("publish: %w", pubErr)
		}
		res.FirstError = pubErr.Error()
	}
	res.Complete = res.Accepted == res.Events
	if res.Seconds > 0 {
		res.EventsPerSecond = float64(res.Accepted) / res.Seconds
	}
	res.Verified = r.verifyQueue(t.Queue, &res)
	r.log.Info("phase done", "phase", "amqp publish"+roundSuffix(i, " "), "who", "amqp publisher",
		"events_per_second", round(res.EventsPerSecond), "seconds", round(res.Seconds), "verified", res.Verified)
	return res, nil
}

// httpIngest posts batches (of the stream) to a `warehouse serve` child with
// ingest on, from Connections connections, until every batch is answered 202 (503 and 429
// are retried after ingestRetryDelay), and checks that the queue holds the stream.
func (r *runner) httpIngest(ctx context.Context, i int, batches []ingestBatch, token string) (PublishResult, error) {
	res := PublishResult{Events: len(r.stream.msgs)}
	name := "http-ingest" + roundSuffix(i, "-")
	dbURL, err := r.createDatabase(ctx, "http_ingest"+roundSuffix(i, "_"), true)
	if err != nil {
		return res, err
	}
	defer r.dropDatabases(context.WithoutCancel(ctx), databaseName(dbURL))
	t, err := r.declare(name)
	if err != nil {
		return res, err
	}
	addr, err := freeAddr(ctx)
	if err != nil {
		return res, err
	}
	env := r.serviceEnv(dbURL, t)
	env["HTTP_ADDR"] = addr
	env["INGEST_TOKEN"] = token
	env["INGEST_RATE"] = "0"
	env["LOG_LEVEL"] = "warn"
	r.checkpoint(ctx)
	spawn := time.Now()
	c, err := r.startChild(ctx, "serve-"+name, env, addr, r.o.Binary, "serve")
	if err != nil {
		return res, err
	}
	defer c.stop()
	if err := c.waitReady(ctx, readyTimeout); err != nil {
		return res, err
	}
	res.StartupSeconds = time.Since(spawn).Seconds()

	hc := &fasthttp.HostClient{
		Addr: addr, MaxConns: r.o.Connections, ReadTimeout: ingestRequestTimeout, WriteTimeout: ingestRequestTimeout,
		MaxIdleConnDuration: time.Minute, MaxConnWaitTimeout: ingestRequestTimeout,
	}
	defer hc.CloseIdleConnections()
	// Open the connections before the clock starts, as the read phase's warm-up does.
	warm(ctx, hc, "http://"+addr+"/health", r.o.Connections)

	cpu0, _ := c.cpuSeconds()
	host0, _ := readHostCPU()
	proc0 := readProcCPU()
	profiled := r.profile(ctx, c, name+"-serve", r.profileSeconds())
	pctx, cancel := context.WithTimeout(ctx, r.o.ingestTimeout())
	defer cancel()
	post := poster{hc: hc, url: "http://" + addr + routeEvents, auth: "Bearer " + token}
	start := time.Now()
	out := post.all(pctx, batches, r.o.Connections)
	res.Seconds = out.end.Sub(start).Seconds()
	res.HostCPUBusy = host0.busySince()
	g := readProcCPU().since(proc0)
	res.PostgresCPUSeconds, res.BrokerCPUSeconds = g.postgres, g.rabbitmq
	if cpu1, err := c.cpuSeconds(); err == nil {
		res.CPUSeconds = cpu1 - cpu0
	}
	profiled()
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	if err := c.alive(); err != nil {
		return res, err
	}
	res.Accepted, res.Requests, res.Retries, res.FirstError = out.accepted, out.requests, out.retries, out.firstError
	res.Complete = res.Accepted == res.Events
	if res.Seconds > 0 {
		res.EventsPerSecond = float64(res.Accepted) / res.Seconds
	}
	if n := len(out.lats); n > 0 {
		slices.Sort(out.lats)
		ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
		res.P50Ms, res.P99Ms, res.MaxMs = ms(out.lats[min(n-1, n/2)]), ms(out.lats[min(n-1, n*99/100)]), ms(out.lats[n-1])
	}
	if rss, err := c.peakRSS(); err == nil {
		res.PeakRSSBytes = rss
	}
	c.stop()
	res.Verified = r.verifyQueue(t.Queue, &res)
	r.log.Info("phase done", "phase", name, "who", "service", "events_per_second", round(res.EventsPerSecond),
		"seconds", round(res.Seconds), "requests", res.Requests, "retries", res.Retries, "verified", res.Verified)
	return res, nil
}

// routeEvents is the service's HTTP ingest route.
const routeEvents = "/api/events"

// verifyQueue records the depth of queue in res and returns "ok" when every event was
// accepted and the queue holds exactly the stream, else the problem. Then it purges the
// queue, so that the broker does not carry the stream through the later phases (the
// queue itself goes at cleanup).
func (r *runner) verifyQueue(queue string, res *PublishResult) string {
	n, err := r.queueDepth(queue)
	if err != nil {
		return "queue depth: " + err.Error()
	}
	res.QueueDepth = n
	if err := r.purge(queue); err != nil {
		r.log.Warn("purge queue", "queue", queue, "err", err)
	}
	switch {
	case !res.Complete:
		msg := fmt.Sprintf("incomplete: %d of %d events accepted", res.Accepted, res.Events)
		if res.FirstError != "" {
			msg += " (" + res.FirstError + ")"
		}
		return msg
	case n != res.Events:
		return fmt.Sprintf("the queue holds %d messages, want %d", n, res.Events)
	}
	return "ok"
}

// purge empties queue.
func (r *runner) purge(queue string) error {
	conn, err := r.dialBroker()
	if err != nil {
		return err
	}
	defer conn.Close()
	return withChannel(conn, func(ch *amqp091.Channel) error { _, err := ch.QueuePurge(queue, false); return err })
}

// warm sends n concurrent GETs of url, so that the client's connections are open.
func warm(ctx context.Context, hc *fasthttp.HostClient, url string, n int) {
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if ctx.Err() != nil {
				return
			}
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI(url)
			_ = hc.DoTimeout(req, resp, 5*time.Second)
		})
	}
	wg.Wait()
}

// poster posts ingest batches.
type poster struct {
	hc        *fasthttp.HostClient
	url, auth string
}

// ingestBatch is one request's body and how many events it holds.
type ingestBatch struct {
	body   []byte
	events int
}

// postOutcome is what posting every batch gave.
type postOutcome struct {
	accepted, requests, retries int
	firstError                  string
	lats                        []time.Duration // of the accepted requests
	end                         time.Time       // the last 202, or when it stopped short
}

// all posts every batch from conns workers, each taking the next batch in turn, until
// all are accepted, one fails otherwise, or ctx ends.
func (p poster) all(ctx context.Context, batches []ingestBatch, conns int) postOutcome {
	var (
		next   atomic.Int64
		failed atomic.Bool
		mu     sync.Mutex
		out    postOutcome
		wg     sync.WaitGroup
	)
	fail := func(err error) {
		failed.Store(true)
		mu.Lock()
		if out.firstError == "" {
			out.firstError = err.Error()
		}
		mu.Unlock()
	}
	for range conns {
		wg.Go(func() {
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.Header.SetMethod(fasthttp.MethodPost)
			req.SetRequestURI(p.url)
			req.Header.SetContentType(amqpadapter.BatchContentType)
			req.Header.Set(fasthttp.HeaderAuthorization, p.auth)
			var (
				lats                        []time.Duration
				accepted, requests, retries int
				last                        time.Time
			)
			defer func() {
				mu.Lock()
				out.accepted += accepted
				out.requests += requests
				out.retries += retries
				out.lats = append(out.lats, lats...)
				if last.After(out.end) {
					out.end = last
				}
				mu.Unlock()
			}()
			for !failed.Load() && ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= len(batches) {
					return
				}
				for {
					req.SetBodyRaw(batches[i].body)
					t := time.Now()
					err := p.hc.DoTimeout(req, resp, ingestRequestTimeout)
					requests++
					if err != nil {
						fail(fmt.Errorf("batch %d: %w", i, err))
						return
					}
					code := resp.StatusCode()
					if code == fasthttp.StatusAccepted {
						last = time.Now()
						lats = append(lats, last.Sub(t))
						accepted += batches[i].events
						break
					}
					if code != fasthttp.StatusServiceUnavailable && code != fasthttp.StatusTooManyRequests {
						fail(fmt.Errorf("batch %d: status %d: %.200s", i, code, bytes.TrimSpace(resp.Body())))
						return
					}
					retries++
					if !sleepCtx(ctx, ingestRetryDelay) || failed.Load() {
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if failed.Load() || ctx.Err() != nil {
		out.end = time.Now()
	}
	if ctx.Err() != nil && out.firstError == "" {
		out.firstError = ctx.Err().Error()
	}
	return out
}

// httpIngestRows adds the phase's row: HTTP ingest's events/s next to the AMQP
// publisher's (in the ceiling column), with no target.
func (rep *Report) httpIngestRows() {
	h := rep.HTTPIngest
	row := Row{Phase: "http ingest", Case: fmt.Sprintf("POST /api/events, batches of %d, %d connections → queue", h.BatchEvents, h.Connections),
		Figure: "events/s", Value: h.HTTP.EventsPerSecond, Target: "—"}
	amqp := h.AMQP.EventsPerSecond
	row.Ceiling = &amqp
	if amqp > 0 {
		ratio := h.HTTP.EventsPerSecond / amqp
		row.Ratio = &ratio
	}
	notes := []string{"ceiling column: the project's AMQP publisher alone, same run"}
	if !h.HTTP.Complete {
		notes = append(notes, "HTTP ingest did not finish")
	}
	if !h.AMQP.Complete {
		notes = append(notes, "AMQP publisher did not finish")
	}
	if n := roundsNote(h.Rounds); n != "" {
		notes = append(notes, n)
	}
	row.Note = strings.Join(notes, "; ")
	rep.Rows = append(rep.Rows, row)
}

// httpIngestChecks are the phase's correctness conditions, over every round.
func httpIngestChecks(rounds []publishRound) []Check {
	return []Check{
		everyRound("http ingest: every batch answered 202 and the queue holds exactly the events posted (every round)", rounds,
			func(rd publishRound) bool { return rd.http.Verified == "ok" },
			func(rd publishRound) string {
				return fmt.Sprintf("%s (%d requests, %d retried)", rd.http.Verified, rd.http.Requests, rd.http.Retries)
			}),
		everyRound("http ingest: the AMQP publisher's queue holds exactly the stream (every round)", rounds,
			func(rd publishRound) bool { return rd.amqp.Verified == "ok" },
			func(rd publishRound) string { return rd.amqp.Verified }),
	}
}

// httpIngestDetails writes the phase's figures for the Markdown report.
func (rep *Report) httpIngestDetails(b *strings.Builder) {
	h := rep.HTTPIngest
	b.WriteString("\n| http ingest | who | events | requests | retried | seconds | events/s | p50 ms | p99 ms | max ms | startup s | service CPU s | PostgreSQL CPU s | RabbitMQ CPU s | host CPU busy | peak RSS |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	name := "http ingest" + shownOf(h.Rounds, h.Chosen)
	for _, x := range []struct {
		who string
		res PublishResult
	}{
		{fmt.Sprintf("service: POST /api/events, %d per batch, %d connections", h.BatchEvents, h.Connections), h.HTTP},
		{"the project's AMQP publisher", h.AMQP},
	} {
		r := x.res
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %.2f | %s | %s | %s | %s | %s | %s | %s | %s | %.0f%% | %s |\n",
			name, x.who, group(int64(r.Accepted)), optInt(r.Requests), optInt(r.Retries), r.Seconds, group(int64(r.EventsPerSecond+0.5)),
			opt(r.P50Ms, 2), opt(r.P99Ms, 2), opt(r.MaxMs, 2), opt(r.StartupSeconds, 2), opt(r.CPUSeconds, 2),
			opt(r.PostgresCPUSeconds, 2), opt(r.BrokerCPUSeconds, 2), 100*r.HostCPUBusy, mib(r.PeakRSSBytes))
	}
}

// optInt is n, or a dash for 0.
func optInt(n int) string {
	if n == 0 {
		return "—"
	}
	return group(int64(n))
}
