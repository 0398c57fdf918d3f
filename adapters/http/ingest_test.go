package http_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	amqpadapter "warehouse/adapters/amqp"
	httpadapter "warehouse/adapters/http"
	"warehouse/domain"
	"warehouse/ports"
	"warehouse/ports/portstest"
)

// fakePublisher records what it was asked to publish, or fails.
type fakePublisher struct {
	mu     sync.Mutex
	events []domain.Event
	err    error
}

func (p *fakePublisher) PublishEvents(_ context.Context, events []domain.Event) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	p.events = append(p.events, events...)
	return nil
}

const ingestToken = "publish-secret"

func ingestServer(t *testing.T, pub ports.EventPublisher, rate float64) *httpadapter.Server {
	t.Helper()
	s, _ := mustServer(t, fakeQueries{}, httpadapter.Options{APIToken: "read-secret", Ingest: httpadapter.IngestOptions{
		Token: ingestToken, Rate: rate, Publisher: pub, Decode: amqpadapter.DecodeAttributes,
		SplitBatch: amqpadapter.SplitBatch,
	}}, httpadapter.Readiness{})
	return s
}

func mustPost(t *testing.T, s *httpadapter.Server, contentType string, body []byte, header ...string) response {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/api/events", bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := s.App().Test(req, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return response{status: res.StatusCode, header: res.Header, body: b}
}

var auth = []string{"Authorization", "Bearer " + ingestToken}

// TestIngestModes: one event structured, one in binary mode (ce- headers, data as the
// body), and a batch of three are each answered 202 with their identities, and published.
func TestIngestModes(t *testing.T) {
	pub := &fakePublisher{}
	s := ingestServer(t, pub, 0)
	x := portstest.NewSample()
	supply := portstest.Supply(x.From, x.Product, 150)

	r := mustPost(t, s, "application/cloudevents+json", amqpadapter.EncodeEvent(supply), auth...)
	wantJSON(t, r, 202, fmt.Sprintf(`{"accepted": 1, "events": [{"source": %q, "id": %q}]}`, supply.Source, supply.ID))

	headers, contentType, body := amqpadapter.EncodeEventBinary(x.Departure)
	hdr := append([]string{}, auth...)
	for k, v := range headers {
		hdr = append(hdr, "Ce-"+strings.TrimPrefix(k, "cloudEvents:"), fmt.Sprint(v))
	}
	r = mustPost(t, s, contentType, body, hdr...)
	wantJSON(t, r, 202, fmt.Sprintf(`{"accepted": 1, "events": [{"source": %q, "id": %q}]}`, x.Departure.Source, x.Departure.ID))

	batch := []byte("[" + string(amqpadapter.EncodeEvent(x.Arrival)) + ", " + string(amqpadapter.EncodeEvent(portstest.Supply(x.To, x.Product, 1))) + "]")
	r = mustPost(t, s, "application/cloudevents-batch+json", batch, auth...)
	if r.status != 202 || !strings.Contains(string(r.body), `"accepted":2`) {
		t.Fatalf("batch: %d %s", r.status, r.body)
	}
	if len(pub.events) != 4 || pub.events[0].ID != supply.ID || pub.events[1].ID != x.Departure.ID || pub.events[2].ID != x.Arrival.ID {
		t.Fatalf("published %d events: %+v", len(pub.events), pub.events)
	}
	if pub.events[1].Quantity != x.Departure.Quantity || pub.events[1].Kind != domain.Departure {
		t.Errorf("the binary-mode event decoded to %+v", pub.events[1])
	}
}

// TestIngestRefuses: every bad request is a problem and publishes nothing; an invalid
// event of a batch is named by its index, and no detail carries the request's words.
func TestIngestRefuses(t *testing.T) {
	pub := &fakePublisher{}
	s := ingestServer(t, pub, 0)
	good := amqpadapter.EncodeEvent(portstest.Supply(portstest.NewSample().From, portstest.NewSample().Product, 5))
	bad := bytes.Replace(good, []byte(`"quantity":5`), []byte(`"quantity":5,"SECRET-TOKEN-xyz":1`), 1)
	batch := func(events ...[]byte) []byte { return []byte("[" + string(bytes.Join(events, []byte(","))) + "]") }
	big := make([][]byte, httpadapter.MaxIngestBatchEvents+1)
	for i := range big {
		big[i] = []byte("{}")
	}
	for _, tc := range []struct {
		name        string
		contentType string
		body        []byte
		header      []string
		status      int
		detail      string
	}{
		{"no token", "application/cloudevents+json", good, nil, 401, ""},
		{"the read token", "application/cloudevents+json", good, []string{"Authorization", "Bearer read-secret"}, 401, ""},
		{"invalid event", "application/cloudevents+json", bad, auth, 400, "event 0: data has unknown key"},
		{"invalid second event of a batch", "application/cloudevents-batch+json", batch(good, bad, good), auth, 400, "event 1: data has unknown key"},
		{"batch not an array", "application/cloudevents-batch+json", good, auth, 400, "one JSON array"},
		{"empty batch", "application/cloudevents-batch+json", []byte("[]"), auth, 400, "empty"},
		{"batch with more after it", "application/cloudevents-batch+json", append(batch(good), "[]"...), auth, 400, "after the batch"},
		{"batch of 1001", "application/cloudevents-batch+json", batch(big...), auth, 413, "at most 1000"},
		{"event over 64 KiB", "application/cloudevents+json", append(good, bytes.Repeat([]byte(" "), httpadapter.MaxIngestEventBytes)...), auth, 413, ""},
		{"neither mode", "application/json", []byte(`{"a": 1}`), auth, 415, ""},
		{"mixed modes", "application/cloudevents+json", good, append([]string{"ce-id", "x"}, auth...), 400, "mixes content modes"},
		{"query parameter", "application/cloudevents+json", good, auth, 400, "unknown query parameter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := "/api/events"
			if tc.name == "query parameter" {
				target += "?x=1"
			}
			req := httptest.NewRequest(http.MethodPost, target, bytes.NewReader(tc.body))
			req.Header.Set("Content-Type", tc.contentType)
			for i := 0; i+1 < len(tc.header); i += 2 {
				req.Header.Set(tc.header[i], tc.header[i+1])
			}
			res, err := s.App().Test(req, -1)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			_ = res.Body.Close()
			d := wantProblem(t, response{status: res.StatusCode, header: res.Header, body: b}, tc.status)
			if !strings.Contains(d, tc.detail) {
				t.Errorf("detail %q, want it to say %q", d, tc.detail)
			}
			if strings.Contains(string(b), "SECRET-TOKEN") {
				t.Errorf("the answer echoes the request: %s", b)
			}
		})
	}
	if len(pub.events) != 0 {
		t.Errorf("published %d events of refused requests", len(pub.events))
	}
}

// TestIngestOffWithoutToken: without INGEST_TOKEN ingest is refused, whatever is sent.
func TestIngestOffWithoutToken(t *testing.T) {
	s, _ := mustServer(t, fakeQueries{}, httpadapter.Options{}, httpadapter.Readiness{})
	wantProblem(t, mustPost(t, s, "application/cloudevents+json", []byte("{}"), "Authorization", "Bearer x"), 403)
}

// TestIngestUnavailable: a publish the broker does not confirm is a 503 with Retry-After.
func TestIngestUnavailable(t *testing.T) {
	pub := &fakePublisher{err: fmt.Errorf("%w: broker gone", ports.ErrUnavailable)}
	s := ingestServer(t, pub, 0)
	x := portstest.NewSample()
	r := mustPost(t, s, "application/cloudevents+json", amqpadapter.EncodeEvent(portstest.Supply(x.From, x.Product, 1)), auth...)
	wantProblem(t, r, 503)
	if r.header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
}

// TestIngestRateLimit: past INGEST_RATE requests a second from one address, 429 with
// Retry-After; the read API is not limited.
func TestIngestRateLimit(t *testing.T) {
	pub := &fakePublisher{}
	s := ingestServer(t, pub, 2)
	x := portstest.NewSample()
	codes := map[int]int{}
	var retryAfter string
	for i := range 5 {
		r := mustPost(t, s, "application/cloudevents+json", amqpadapter.EncodeEvent(portstest.Supply(x.From, x.Product, int64(i+1))), auth...)
		codes[r.status]++
		if r.status == 429 {
			retryAfter = r.header.Get("Retry-After")
		}
	}
	if codes[202] != 2 || codes[429] != 3 || retryAfter == "" {
		t.Errorf("5 requests at once with INGEST_RATE 2: %v, Retry-After %q; want 2 accepted, 3 refused with Retry-After", codes, retryAfter)
	}
	if r := mustGet(t, s, "/health"); r.status != 200 {
		t.Errorf("/health = %d", r.status)
	}
}
