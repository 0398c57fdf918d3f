package bench

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

// sseServer serves body as a text/event-stream, then ends the response.
func sseServer(t *testing.T, body string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/api/stream"
}

// sseChanges writes the events of changes first..last as the service does.
func sseChanges(first, last int) string {
	var b strings.Builder
	b.WriteString("retry: 2000\n\n")
	for id := first; id <= last; id++ {
		kind := "movement"
		if id%2 == 0 {
			kind = "stock"
		}
		fmt.Fprintf(&b, "id: %d\nevent: %s\ndata: {}\n\n", id, kind)
		if id == 3 {
			b.WriteString(": heartbeat\n\n")
		}
	}
	return b.String()
}

func TestStreamClientRead(t *testing.T) {
	const events = 4
	all := []int64{2, 4, 6, 8}
	for _, tc := range []struct {
		name, body string
		got        int64
		err        string
		expected   []int64 // the change log's stock positions for the client
	}{
		{"every change", sseChanges(1, 2*events), 2 * events, "", all},
		{"ended early", sseChanges(1, 5), 5, "after 2 of 4 stored events: the server ended the stream", all},
		{"dropped as slow", sseChanges(1, 4) + ": closed: this client fell behind\n\n", 4, "after 2 of 4 stored events: the server ended the stream", all},
		{"a change missed", sseChanges(1, 2) + sseChanges(4, 8), 2, `id 4 is a "stock" event after id 2`, all},
		{"a change repeated", sseChanges(1, 3) + sseChanges(3, 8), 3, `id "3" after 3`, all},
		{"a stock event where a movement is due", strings.Replace(sseChanges(1, 8), "id: 3\nevent: movement", "id: 3\nevent: stock", 1), 2, `id 3 is a "stock" event`, all},
		// a filtered client skips whole stored events; it must still get those of the log
		{"a filter's events", sseChanges(1, 2) + sseChanges(5, 6) + sseChanges(9, 12), 8, "", []int64{2, 6, 10, 12}},
		{"one of a filter's events missing", sseChanges(1, 2) + sseChanges(9, 14), 8, "", []int64{2, 6, 10, 12}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			before := time.Now().UnixNano()
			s, err := connectStreams(ctx, []streamTarget{{url: sseServer(t, tc.body), warehouse: "w", want: events}})
			if err != nil {
				t.Fatal(err)
			}
			s.wait()
			c := s.clients[0]
			if c.got != tc.got {
				t.Errorf("got %d changes, want %d (err %v)", c.got, tc.got, c.err)
			}
			switch {
			case tc.err == "" && c.err != nil:
				t.Errorf("error %v", c.err)
			case tc.err != "" && (c.err == nil || !strings.Contains(c.err.Error(), tc.err)):
				t.Errorf("error %v, want one saying %q", c.err, tc.err)
			}
			for k := range c.recv {
				if c.recv[k] < before {
					t.Errorf("stock event %d: receive time %d not recorded", k, c.recv[k])
				}
			}
			d := StreamDelivery{Clients: 1}
			problems := s.delivery(&d, map[string][]int64{"w": tc.expected})
			complete := tc.err == "" && slices.Equal(c.stocks, tc.expected)
			if (d.Complete == 1) != complete || (len(problems) == 0) != complete {
				t.Errorf("delivery %+v, problems %v, want complete %v", d, problems, complete)
			}
		})
	}
}

func TestConnectStreamsRefused(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "too many", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := connectStreams(ctx, []streamTarget{{url: srv.URL, want: 2}, {url: srv.URL, want: 2}, {url: srv.URL, want: 2}})
	if err == nil || !strings.Contains(err.Error(), "status 503") {
		t.Errorf("error %v, want the status", err)
	}
	s.wait()
}

func TestStreamLatency(t *testing.T) {
	ms := int64(time.Millisecond)
	// two clients over 4 events committed at 0, 0, 10 and 10 ms: one client complete,
	// one with the first two stock events only
	at := []int64{0, 0, 10 * ms, 10 * ms}
	s := &streamSet{clients: []*streamClient{
		{stocks: []int64{2, 4, 6, 8}, recv: []int64{1 * ms, 2 * ms, 13 * ms, 14 * ms}, got: 8},
		{stocks: []int64{2, 4}, recv: []int64{5 * ms, 6 * ms}, got: 5},
	}}
	var d StreamDelivery
	s.latency(at, &d)
	// latencies 1, 2, 3, 4, 5, 6 ms
	if d.Samples != 6 || d.P50Ms != 4 || d.P99Ms != 6 || d.MaxMs != 6 {
		t.Errorf("latency %+v, want 6 samples, p50 4 ms, p99 and max 6 ms", d)
	}
}

func TestStreamRowsAndChecks(t *testing.T) {
	st := StreamResult{Clients: 100}
	pair := func(with, without float64) Pair {
		return Pair{Service: IngestResult{EventsPerSecond: with, Complete: true, Verified: "ok"},
			Ceiling: IngestResult{EventsPerSecond: without, Complete: true, Verified: "ok"}}
	}
	rounds := []Pair{pair(950, 1000), pair(800, 1000)}
	st.Drain = medianPair(rounds)
	ok := StreamDelivery{Clients: 100, Filter: StreamFilterWarehouse, Complete: 100, Changes: 200, Verified: "ok", Samples: 10000, P50Ms: 3, P99Ms: 9, MaxMs: 12}
	bad := ok
	bad.Complete, bad.Dropped, bad.Verified = 97, 3, "3 clients dropped as slow (stream_clients_dropped_total)"
	bad.WithFirst = true
	st.Deliveries = []StreamDelivery{ok, bad}
	st.Delivery = st.Deliveries[st.Drain.Chosen]

	cs := streamChecks(st, rounds)
	if len(cs) != 3 {
		t.Fatalf("checks %+v", cs)
	}
	if c := cs[0]; c.OK || !strings.Contains(c.Detail, "round 2: 3 clients dropped") || c.Speed {
		t.Errorf("delivery check %+v: want round 2's failure", c)
	}
	if c := cs[1]; !c.OK || c.Speed {
		t.Errorf("ledger check %+v: want a pass", c)
	}
	// two rounds: the lower middle, 0.80, a cost of 20 %
	if c := cs[2]; c.OK || !c.Speed || !strings.Contains(c.Detail, "cost 20.0%") || !strings.Contains(c.Detail, "5.0%, 20.0%") {
		t.Errorf("cost check %+v: want a failed speed check of 20 %%, listing both rounds", c)
	}
	one := StreamResult{Clients: 100, Drain: medianPair(rounds[:1]), Delivery: ok, Deliveries: []StreamDelivery{ok}}
	if c := streamChecks(one, rounds[:1])[2]; !c.OK {
		t.Errorf("cost 5 %%: %+v, want a pass", c)
	}
	// a cheap drain whose clients were dropped measured no drain under them
	one.Delivery, one.Deliveries = bad, []StreamDelivery{bad}
	if c := streamChecks(one, rounds[:1])[2]; c.OK || !strings.Contains(c.Detail, "not under 100 clients: 97 received every change, 3 were dropped") {
		t.Errorf("cost 5 %% with clients dropped: %+v, want a failure", c)
	}

	rep := &Report{Settings: Settings{Phases: []string{PhaseStream}, StreamClients: 100}, Stream: st}
	rep.build()
	if len(rep.Rows) != 5 || rep.Rows[0].Phase != "stream" || rep.Rows[0].Pass == nil || *rep.Rows[0].Pass ||
		rep.Rows[1].Figure != "p50 ms" || rep.Rows[1].Value != 3 || rep.Rows[4].Phase != "peak RSS" {
		t.Errorf("rows %+v", rep.Rows)
	}
	md := rep.markdown()
	for _, want := range []string{"**Partial run:** only the phases stream", "| stream | drain with 100 clients on /api/stream (one warehouse each) | events/s | 800 | 1,000 | 0.80 |",
		"| round 2, with clients first (shown) | 0 | 97 |", "100 clients following its `GET /api/stream`"} {
		if !strings.Contains(md, want) {
			t.Errorf("README lacks %q:\n%s", want, md)
		}
	}
	for _, unwanted := range []string{"drain.svg", "| reads |", "| drain |"} {
		if strings.Contains(md, unwanted) {
			t.Errorf("a stream-only README has %q", unwanted)
		}
	}
}
