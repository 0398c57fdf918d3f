package bench

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	amqpadapter "warehouse/adapters/amqp"
)

func TestBatchBodies(t *testing.T) {
	msgs := make([]message, 5)
	for i := range msgs {
		msgs[i].body = []byte(`{"n":` + string(rune('0'+i)) + `}`)
	}
	batches := batchBodies(msgs, 2)
	if len(batches) != 3 {
		t.Fatalf("%d batches, want 3", len(batches))
	}
	n := 0
	for i, b := range batches {
		var got []struct{ N int }
		if err := json.Unmarshal(b.body, &got); err != nil {
			t.Fatalf("batch %d is not a JSON array: %v: %s", i, err, b.body)
		}
		if len(got) != b.events {
			t.Errorf("batch %d holds %d events, says %d", i, len(got), b.events)
		}
		for _, e := range got {
			if e.N != n {
				t.Errorf("batch %d: event %d where %d was due: the stream's order is lost", i, e.N, n)
			}
			n++
		}
	}
	if batches[2].events != 1 || n != 5 {
		t.Errorf("last batch %d events, %d in all", batches[2].events, n)
	}
}

func TestPosterAll(t *testing.T) {
	var calls, events atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch {
		case r.Header.Get("Authorization") != "Bearer secret" || r.Header.Get("Content-Type") != amqpadapter.BatchContentType:
			http.Error(w, "refused", http.StatusUnauthorized)
		case strings.Contains(string(body), "bad"):
			http.Error(w, "invalid", http.StatusBadRequest)
		case calls.Add(1) == 2: // the broker has a hiccup once
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
		default:
			var batch []json.RawMessage
			_ = json.Unmarshal(body, &batch)
			events.Add(int64(len(batch)))
			w.WriteHeader(http.StatusAccepted)
		}
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	hc := &fasthttp.HostClient{Addr: addr, MaxConns: 4}
	defer hc.CloseIdleConnections()
	msgs := make([]message, 10)
	for i := range msgs {
		msgs[i].body = []byte(`{}`)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	p := poster{hc: hc, url: srv.URL + routeEvents, auth: "Bearer secret"}
	out := p.all(ctx, batchBodies(msgs, 3), 4)
	if out.accepted != 10 || events.Load() != 10 || out.requests != 5 || out.retries != 1 || out.firstError != "" || len(out.lats) != 4 || out.end.IsZero() {
		t.Errorf("outcome %+v (%d events seen), want 10 accepted in 4 batches, 1 retried", out, events.Load())
	}

	msgs[4].body = []byte(`"bad"`)
	out = p.all(ctx, batchBodies(msgs, 3), 1)
	if out.accepted != 3 || !strings.Contains(out.firstError, "batch 1: status 400") {
		t.Errorf("outcome %+v, want batch 1 refused after batch 0", out)
	}

	p.auth = "Bearer wrong"
	if out = p.all(ctx, batchBodies(msgs[:3], 3), 2); out.accepted != 0 || !strings.Contains(out.firstError, "status 401") {
		t.Errorf("outcome %+v, want 401", out)
	}
}

func TestHTTPIngestRowsAndChecks(t *testing.T) {
	ok := publishRound{http: PublishResult{EventsPerSecond: 800, Complete: true, Verified: "ok", Requests: 200},
		amqp: PublishResult{EventsPerSecond: 1000, Complete: true, Verified: "ok"}}
	bad := ok
	bad.http.Verified, bad.http.Retries = "the queue holds 100500 messages, want 100000", 1
	cs := httpIngestChecks([]publishRound{ok, bad})
	if cs[0].OK || !strings.Contains(cs[0].Detail, "round 2: the queue holds 100500 messages, want 100000 (200 requests, 1 retried)") {
		t.Errorf("check %+v, want round 2's failure", cs[0])
	}
	if !cs[1].OK {
		t.Errorf("check %+v, want a pass", cs[1])
	}
	rep := &Report{Settings: Settings{Phases: []string{PhaseHTTPIngest}},
		HTTPIngest: HTTPIngestResult{BatchEvents: 500, Connections: 64, HTTP: ok.http, AMQP: ok.amqp,
			Rounds: []RoundRatio{newRoundRatio(800, 1000), newRoundRatio(900, 1000)}}}
	rep.build()
	row := rep.Rows[0]
	if row.Phase != "http ingest" || row.Value != 800 || row.Ceiling == nil || *row.Ceiling != 1000 || row.Ratio == nil || *row.Ratio != 0.8 ||
		row.Pass != nil || !strings.Contains(row.Note, "ratios 0.80, 0.90") {
		t.Errorf("row %+v", row)
	}
	md := rep.markdown()
	for _, want := range []string{"| http ingest | POST /api/events, batches of 500, 64 connections → queue | events/s | 800 | 1,000 | 0.80 |",
		"| http ingest (round 1 of 2) | the project's AMQP publisher |", "500 events per request"} {
		if !strings.Contains(md, want) {
			t.Errorf("README lacks %q:\n%s", want, md)
		}
	}
}
