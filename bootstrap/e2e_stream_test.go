package bootstrap

import (
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"

	"warehouse/adapters/http/sse"
	"warehouse/domain"
	"warehouse/ports/portstest"
)

// streamClient follows GET /api/stream of one service, as a Go client would.
type streamClient struct {
	t    *testing.T
	res  *http.Response
	r    *sse.Reader
	read []sse.Event
}

// openStreamAt connects to base's change stream, resuming after lastID when it is not
// empty.
func openStreamAt(t *testing.T, base, lastID string) *streamClient {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+"/api/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	res, err := http.DefaultClient.Do(req) //nolint:bodyclose // closed by c.close, at the latest when the test ends
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/stream: %d", res.StatusCode)
	}
	c := &streamClient{t: t, res: res, r: sse.NewReader(res.Body)}
	t.Cleanup(c.close)
	return c
}

func (c *streamClient) close() { _ = c.res.Body.Close() }

// take reads n events, within e2eWait.
func (c *streamClient) take(n int) []sse.Event {
	c.t.Helper()
	done := make(chan error, 1)
	var got []sse.Event
	go func() {
		for len(got) < n {
			e, err := c.r.Next()
			if err != nil {
				done <- err
				return
			}
			got = append(got, e)
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			c.t.Fatalf("stream: after %d of %d events: %v", len(got), n, err)
		}
	case <-time.After(e2eWait):
		c.close()
		if err := <-done; err == nil { // the read ends once the body is closed
			c.t.Log("stream: the last event came as the wait timed out")
		}
		c.t.Fatalf("stream: only %d of %d events within %s", len(got), n, e2eWait)
	}
	c.read = append(c.read, got...)
	return got
}

// streamLedger is a ledger of consistent events over a few stock rows: supplies, then
// departures and arrivals between them.
func streamLedger(n int) (events []domain.Event, stock map[domain.StockKey]int64) {
	p := domain.ProductID(uuid.New())
	whs := []domain.WarehouseID{domain.WarehouseID(uuid.New()), domain.WarehouseID(uuid.New()), domain.WarehouseID(uuid.New())}
	stock = map[domain.StockKey]int64{}
	add := func(e domain.Event) {
		events = append(events, e)
		stock[e.StockKey()] += e.Delta()
	}
	for _, w := range whs {
		add(portstest.Supply(w, p, 1000))
	}
	for i := 0; len(events) < n; i++ {
		from, to := whs[i%3], whs[(i+1)%3]
		m := domain.MovementID(uuid.New())
		add(portstest.Event(domain.Departure, m, from, p, 5, "2025-03-01T10:00:00Z"))
		if len(events) < n {
			add(portstest.Event(domain.Arrival, m, to, p, 4, "2025-03-01T12:00:00Z"))
		}
	}
	return events, stock
}

// checkStream checks that events are the stream's positions first..last, each once and
// in order, alternating movement and stock, and returns the last stock answer of each row.
func checkStream(t *testing.T, events []sse.Event, first int) map[domain.StockKey]int64 {
	t.Helper()
	last := map[domain.StockKey]int64{}
	for i, e := range events {
		if e.ID != strconv.Itoa(first+i) {
			t.Fatalf("event %d has id %s, want %d: a change missed or repeated", i, e.ID, first+i)
		}
		want := "movement"
		if (first+i)%2 == 0 {
			want = "stock"
		}
		if e.Type != want {
			t.Fatalf("event %s is %q, want %q", e.ID, e.Type, want)
		}
		if e.Type == "stock" {
			var s struct {
				Warehouse string `json:"warehouse_id"`
				Product   string `json:"product_id"`
				Quantity  int64  `json:"quantity"`
			}
			if err := json.Unmarshal([]byte(e.Data), &s); err != nil {
				t.Fatalf("stock event %s: %v", e.ID, err)
			}
			w, _ := domain.ParseWarehouseID(s.Warehouse)
			p, _ := domain.ParseProductID(s.Product)
			last[domain.StockKey{Warehouse: w, Product: p}] = s.Quantity
		}
	}
	return last
}

// TestE2EStreamResume publishes events through the broker, follows the change stream,
// disconnects mid-way while more events come, resumes with Last-Event-ID, and checks that
// every change came exactly once, in commit order, ending at the ledger's stock.
func TestE2EStreamResume(t *testing.T) {
	t.Parallel()
	s := mustService(t, func(c *Config) { c.BatchSize = 50; c.AMQPPrefetch = 200 })
	events, want := streamLedger(600)
	c := openStreamAt(t, s.base, "")
	s.publish(t, events[:300]...)
	first := c.take(2*300 - 77) // stop in the middle of the first part, on a movement event
	c.close()
	s.publish(t, events[300:]...)
	resumed := openStreamAt(t, s.base, first[len(first)-1].ID)
	rest := resumed.take(2*600 - len(first))
	got := checkStream(t, append(first, rest...), 1)
	for k, q := range want {
		if got[k] != q {
			t.Errorf("last streamed stock of %v = %d, want %d", k, got[k], q)
		}
		s.waitDBStock(t, k.Warehouse, k.Product, q)
	}
	if n := s.count(t, "SELECT count(*) FROM events"); n != 600 {
		t.Errorf("events stored = %d, want 600", n)
	}
}

// TestE2EStreamAcrossProcesses: a serve process streams what a separate consume process
// commits (LISTEN/NOTIFY, the change log as the source of truth), and a client of the
// serve process that resumes from 0 gets the same changes from the log.
func TestE2EStreamAcrossProcesses(t *testing.T) {
	t.Parallel()
	cfg, env := mustE2EEnv(t, nil)
	startServiceAs(t, cfg, env, roles{consume: true})
	api := startServiceAs(t, cfg, env, roles{api: true})
	c := openStreamAt(t, api.base, "")
	events, want := streamLedger(120)
	start := time.Now()
	api.publish(t, events...)
	live := c.take(2 * len(events))
	t.Logf("%d changes committed by the consume process streamed by the serve process in %s", len(live), time.Since(start).Round(time.Millisecond))
	got := checkStream(t, live, 1)
	for k, q := range want {
		if got[k] != q {
			t.Errorf("streamed stock of %v = %d, want %d", k, got[k], q)
		}
	}
	replay := openStreamAt(t, api.base, "0").take(2 * len(events))
	for i := range replay {
		if replay[i] != live[i] {
			t.Fatalf("replayed event %d = %+v, live it was %+v", i, replay[i], live[i])
		}
	}
}
