package http_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	httpadapter "warehouse/adapters/http"
	"warehouse/adapters/http/sse"
	"warehouse/adapters/memory"
	"warehouse/application"
	"warehouse/domain"
	"warehouse/ports"
	"warehouse/ports/portstest"
)

// streamServer serves the API of store with a change stream on it, until the test ends.
func streamServer(t *testing.T, store *memory.Store, sopts application.StreamOptions, opts httpadapter.Options) (string, *httpadapter.Server) {
	t.Helper()
	stream := application.NewStream(store, sopts, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = stream.Run(ctx) }()
	opts.Stream.Stream = stream
	s, _ := mustServer(t, application.NewQueries(store), opts, httpadapter.Readiness{})
	base := mustServe(t, s) // its cleanup (the shutdown) runs after the stream's, below
	t.Cleanup(func() { cancel(); <-done })
	return base, s
}

// streamResponse is the answer to GET /api/stream: its body is closed when the test ends.
type streamResponse struct {
	StatusCode int
	Header     http.Header
	Body       io.ReadCloser
}

// openStream opens GET /api/stream at url with the headers given in pairs.
func openStream(t *testing.T, url string, header ...string) streamResponse {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req) //nolint:bodyclose // closed at the end of the test, below
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = res.Body.Close() })
	return streamResponse{StatusCode: res.StatusCode, Header: res.Header, Body: res.Body}
}

// readEvents reads n events of r within 5 s.
func readEvents(t *testing.T, r *sse.Reader, n int) []sse.Event {
	t.Helper()
	out := make([]sse.Event, 0, n)
	got := make(chan error, 1)
	go func() {
		for len(out) < n {
			e, err := r.Next()
			if err != nil {
				got <- err
				return
			}
			out = append(out, e)
		}
		got <- nil
	}()
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("after %d of %d events: %v", len(out), n, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("only %d of %d events within 5 s", len(out), n)
	}
	return out
}

func stockOfEvent(t *testing.T, e sse.Event) map[string]any {
	t.Helper()
	if e.Type != "stock" {
		t.Fatalf("event %s is %q, want stock", e.ID, e.Type)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(e.Data), &v); err != nil {
		t.Fatalf("stock data %q: %v", e.Data, err)
	}
	return v
}

func TestStreamEvents(t *testing.T) {
	store := memory.NewStore()
	base, _ := streamServer(t, store, application.StreamOptions{}, httpadapter.Options{})
	res := openStream(t, base+"/api/stream")
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "text/event-stream" ||
		res.Header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("status %d, Content-Type %q, Cache-Control %q", res.StatusCode, res.Header.Get("Content-Type"), res.Header.Get("Cache-Control"))
	}
	smp := portstest.NewSample()
	mustStoreEvents(t, store, portstest.Supply(smp.From, smp.Product, 150), smp.Departure, smp.Arrival)
	events := readEvents(t, sse.NewReader(res.Body), 6)
	for i, e := range events {
		if e.ID != strconv.Itoa(i+1) {
			t.Errorf("event %d has id %q, want %d", i, e.ID, i+1)
		}
		if want := [...]string{"movement", "stock"}[i%2]; e.Type != want {
			t.Errorf("event %d is %q, want %q", i, e.Type, want)
		}
	}
	if q := stockOfEvent(t, events[3])["quantity"]; q != 50.0 {
		t.Errorf("stock after the departure = %v, want 50", q)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(events[4].Data), &m); err != nil {
		t.Fatal(err)
	}
	if m["movement_id"] != smp.Movement.String() || m["status"] != "completed" || m["elapsed_seconds"] != 8520.0 || m["quantity_difference"] != -2.0 {
		t.Errorf("movement after the arrival = %v, want the completed sample (8520 s, 2 lost)", m)
	}
}

func mustStoreEvents(t *testing.T, store ports.Store, events ...domain.Event) {
	t.Helper()
	res, err := store.Apply(context.Background(), events)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r != nil {
			t.Fatalf("event %d: %v", i, r)
		}
	}
}

// TestStreamResume disconnects and comes back with Last-Event-ID (after a stock event,
// and after a movement event, whose stock event then comes first) or ?after=, and gets
// exactly the events after it.
func TestStreamResume(t *testing.T) {
	store := memory.NewStore()
	base, _ := streamServer(t, store, application.StreamOptions{}, httpadapter.Options{})
	w, p := domain.WarehouseID(uuid.New()), domain.ProductID(uuid.New())
	for range 5 {
		mustStoreEvents(t, store, portstest.Supply(w, p, 1))
	}
	for _, tc := range []struct {
		header []string
		query  string
		first  int
	}{
		{header: []string{"Last-Event-ID", "4"}, first: 5},
		{header: []string{"Last-Event-ID", "5"}, first: 6},
		{query: "?after=0", first: 1},
		{query: "?after=9", header: []string{"Last-Event-ID", "2"}, first: 3}, // the header wins
	} {
		res := openStream(t, base+"/api/stream"+tc.query, tc.header...)
		events := readEvents(t, sse.NewReader(res.Body), 10-tc.first+1)
		for i, e := range events {
			if e.ID != strconv.Itoa(tc.first+i) {
				t.Fatalf("%v %s: event %d has id %s, want %d", tc.header, tc.query, i, e.ID, tc.first+i)
			}
		}
		if last := stockOfEvent(t, events[len(events)-1]); last["quantity"] != 5.0 {
			t.Errorf("last stock = %v, want 5", last["quantity"])
		}
		_ = res.Body.Close()
	}
}

func TestStreamRefusals(t *testing.T) {
	store := memory.NewStore()
	store.SetMaxChanges(2)
	// A client that goes is noticed at the next write: an event or a heartbeat.
	base, s := streamServer(t, store, application.StreamOptions{MaxClients: 1},
		httpadapter.Options{Stream: httpadapter.StreamOptions{Heartbeat: 50 * time.Millisecond}})
	w, p := domain.WarehouseID(uuid.New()), domain.ProductID(uuid.New())
	for range 4 {
		mustStoreEvents(t, store, portstest.Supply(w, p, 1))
	}
	hostile := "9<script>" + strings.Repeat("9", 30)
	for _, tc := range []struct {
		target string
		header []string
		status int
		detail string
	}{
		{"/api/stream", []string{"Last-Event-ID", hostile}, 400, "Last-Event-ID is not a stream position"},
		{"/api/stream?after=-1", nil, 400, "after is not a stream position"},
		{"/api/stream?after=99999999999999999999", nil, 400, "after is not a stream position"},
		{"/api/stream?after=100", nil, 400, "ahead of the newest change"},
		{"/api/stream?after=1", nil, 410, "no longer kept"},
		{"/api/stream?warehouse_id=nope", nil, 400, "warehouse_id"},
		{"/api/stream?since=2025-01-01T00:00:00Z", nil, 400, "unknown query parameter"},
	} {
		r := mustGet(t, s, tc.target, tc.header...)
		detail := wantProblem(t, r, tc.status)
		if !strings.Contains(detail, tc.detail) || strings.Contains(string(r.body), "script") {
			t.Errorf("%s %v: detail %q, want one saying %q and quoting nothing", tc.target, tc.header, detail, tc.detail)
		}
	}
	// One client allowed: the second is refused with Retry-After, until the first goes.
	first := openStream(t, base+"/api/stream")
	second := openStream(t, base+"/api/stream")
	if second.StatusCode != http.StatusServiceUnavailable || second.Header.Get("Retry-After") == "" {
		t.Errorf("second client: status %d, Retry-After %q; want 503 with Retry-After", second.StatusCode, second.Header.Get("Retry-After"))
	}
	_ = first.Body.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		res := openStream(t, base+"/api/stream")
		_ = res.Body.Close()
		if res.StatusCode == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a client slot was not freed within 5 s of a disconnect (status %d)", res.StatusCode)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestStreamNeedsToken(t *testing.T) {
	store := memory.NewStore()
	base, _ := streamServer(t, store, application.StreamOptions{}, httpadapter.Options{APIToken: "read-secret"})
	if res := openStream(t, base+"/api/stream"); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("without the token: status %d, want 401", res.StatusCode)
	}
	if res := openStream(t, base+"/api/stream", "Authorization", "Bearer read-secret"); res.StatusCode != http.StatusOK {
		t.Errorf("with the token: status %d, want 200", res.StatusCode)
	}
}

// TestStreamOutlivesWriteTimeout: a stream stays open past the server's write timeout
// (heartbeats and events move the deadline on), with heartbeat comments while idle.
func TestStreamOutlivesWriteTimeout(t *testing.T) {
	store := memory.NewStore()
	base, _ := streamServer(t, store, application.StreamOptions{},
		httpadapter.Options{WriteTimeout: 200 * time.Millisecond, Stream: httpadapter.StreamOptions{Heartbeat: 50 * time.Millisecond}})
	res := openStream(t, base+"/api/stream")
	br := bufio.NewReader(res.Body)
	heartbeats := 0
	deadline := time.Now().Add(600 * time.Millisecond)
	for time.Now().Before(deadline) {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("stream ended after %d heartbeats: %v", heartbeats, err)
		}
		if line == ": heartbeat\n" {
			heartbeats++
		}
	}
	if heartbeats < 5 {
		t.Errorf("%d heartbeats in 600 ms at one per 50 ms", heartbeats)
	}
	mustStoreEvents(t, store, portstest.Supply(domain.WarehouseID(uuid.New()), domain.ProductID(uuid.New()), 7))
	events := readEvents(t, sse.NewReader(br), 2)
	if q := stockOfEvent(t, events[1])["quantity"]; q != 7.0 {
		t.Errorf("stock after 600 ms of stream = %v, want 7", q)
	}
}

// TestStreamSlowClientDropped: a client that stops reading is disconnected and counted,
// while a client that reads gets every event and the writer never waits.
func TestStreamSlowClientDropped(t *testing.T) {
	store := memory.NewStore()
	base, s := streamServer(t, store, application.StreamOptions{Buffer: 2048},
		httpadapter.Options{WriteTimeout: time.Second})
	stalled := openStream(t, base+"/api/stream")
	fast := openStream(t, base+"/api/stream")
	const batches, per = 100, 500
	// The writer goes at the reading client's pace (one batch ahead at most), as a store
	// does at its own rate; the stalled client falls further behind with every batch.
	progress := make(chan int, batches)
	read := make(chan error, 1)
	go func() {
		r := sse.NewReader(fast.Body)
		for i := range batches * per * 2 {
			e, err := r.Next()
			if err != nil {
				read <- err
				return
			}
			if e.ID != strconv.Itoa(i+1) {
				read <- fmt.Errorf("event %d has id %s", i, e.ID)
				return
			}
			if (i+1)%(per*2) == 0 {
				progress <- (i + 1) / (per * 2)
			}
		}
		read <- nil
	}()
	w, p := domain.WarehouseID(uuid.New()), domain.ProductID(uuid.New())
	for b := range batches {
		events := make([]domain.Event, per)
		for i := range events {
			events[i] = portstest.Supply(w, p, 1)
		}
		mustStoreEvents(t, store, events...)
		if b > 0 {
			select {
			case <-progress:
			case err := <-read:
				t.Fatalf("the reading client, at batch %d: %v", b, err)
			case <-time.After(10 * time.Second):
				t.Fatalf("the reading client did not get batch %d within 10 s", b)
			}
		}
	}
	select {
	case err := <-read:
		if err != nil {
			t.Fatalf("the reading client: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the reading client did not get every event")
	}
	// The stalled client's writer ends once its buffer overflowed and its write timed out.
	deadline := time.Now().Add(10 * time.Second)
	for {
		metrics := mustGet(t, s, "/metrics")
		text := string(metrics.body)
		if strings.Contains(text, "stream_clients_dropped_total 1") && strings.Contains(text, "stream_clients 1") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stalled client was not dropped within 10 s:\n%s", grepLines(text, "stream_"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	n, _ := io.Copy(io.Discard, stalled.Body) // what it had been sent, then the end
	if n == 0 {
		t.Error("the stalled client's stream held nothing")
	}
}

func grepLines(text, prefix string) string {
	var out []string
	for line := range strings.SplitSeq(text, "\n") {
		if strings.HasPrefix(line, prefix) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// TestStreamIdleLongerThanWriteTimeout: an event that comes after the stream was idle for
// longer than the write timeout (and than a heartbeat interval is not: 1 s here) still
// reaches the client.
func TestStreamIdleLongerThanWriteTimeout(t *testing.T) {
	store := memory.NewStore()
	base, _ := streamServer(t, store, application.StreamOptions{},
		httpadapter.Options{WriteTimeout: 100 * time.Millisecond, Stream: httpadapter.StreamOptions{Heartbeat: time.Second}})
	res := openStream(t, base+"/api/stream")
	r := sse.NewReader(res.Body)
	time.Sleep(300 * time.Millisecond)
	mustStoreEvents(t, store, portstest.Supply(domain.WarehouseID(uuid.New()), domain.ProductID(uuid.New()), 3))
	if q := stockOfEvent(t, readEvents(t, r, 2)[1])["quantity"]; q != 3.0 {
		t.Errorf("stock = %v, want 3", q)
	}
}
