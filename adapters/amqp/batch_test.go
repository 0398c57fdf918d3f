package amqp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp091 "github.com/rabbitmq/amqp091-go"

	amqpadapter "warehouse/adapters/amqp"
	"warehouse/domain"
	"warehouse/ports"
)

// A consumer-only process has one P: decoding a batch message must let the lanes, whose
// PostgreSQL replies wait for that P, run between its events (see yieldToLanes).
func TestBatchDecodeYieldsBetweenEvents(t *testing.T) {
	for _, n := range []int{1, 64, 65, 1000} {
		events := make([]domain.Event, n)
		for i := range events {
			m, w, p := newIDs()
			events[i] = movementEvent(t, domain.Departure, m, w, p, 1)
		}
		got, yields, err := amqpadapter.DecodeBatchYields(amqpadapter.EncodeBatch(events))
		if want := (n + 63) / 64; err != nil || got != n || yields != want {
			t.Errorf("batch of %d: decoded %d, yielded %d times, %v; want %d events, a yield every 64 (%d)", n, got, yields, err, n, want)
		}
	}
}

func TestSplitBatch(t *testing.T) {
	m, w, p := newIDs()
	events := []domain.Event{movementEvent(t, domain.Arrival, m, w, p, 3), movementEvent(t, domain.Departure, m, w, p, 2)}
	raws, err := amqpadapter.SplitBatch(amqpadapter.EncodeBatch(events))
	if err != nil || len(raws) != 2 {
		t.Fatalf("SplitBatch(EncodeBatch(2 events)) = %d elements, %v", len(raws), err)
	}
	for i, raw := range raws {
		e, err := amqpadapter.DecodeEvent(raw)
		if err != nil || e.ID != events[i].ID || e.Quantity != events[i].Quantity {
			t.Errorf("element %d decodes to %+v, %v; want event %s", i, e, err, events[i].ID)
		}
	}
	many := make([]domain.Event, amqpadapter.MaxBatchEvents+1)
	for i := range many {
		many[i] = events[0]
	}
	for _, tc := range []struct {
		name, body string
		tooLarge   bool
		detail     string
	}{
		{"an object", `{"id":"x"}`, false, "one JSON array"},
		{"empty", `[]`, false, "empty"},
		{"trailing data", `[{}] {}`, false, "after the batch's array"},
		{"broken element", `[{"a":1},{"b":]`, false, "event 1 of the batch is not JSON"},
		{"not closed", `[{"a":1}`, false, "one JSON array"},
		{"too many", string(amqpadapter.EncodeBatch(many)), true, "at most 1000 events"},
		{"too many bytes", "[" + strings.Repeat(" ", amqpadapter.MaxBatchSize) + "]", true, "byte limit"},
	} {
		_, err := amqpadapter.SplitBatch([]byte(tc.body))
		if !errors.Is(err, domain.ErrInvalid) || errors.Is(err, ports.ErrTooLarge) != tc.tooLarge || !strings.Contains(err.Error(), tc.detail) {
			t.Errorf("%s: err = %v, want invalid (too large: %v) saying %q", tc.name, err, tc.tooLarge, tc.detail)
		}
	}
}

// publishBatch publishes events (and raw elements spliced in at their index) as one batch
// message.
func (b *broker) publishBatchMessage(topo amqpadapter.Topology, body []byte, headers amqp091.Table) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := b.mustPublisher().PublishBatch(ctx, topo.Exchange, []amqpadapter.Message{{RoutingKey: "movement.batch",
		Publishing: amqp091.Publishing{ContentType: amqpadapter.BatchContentType, MessageId: "batch-1", Headers: headers, Body: body}}})
	if err != nil {
		b.t.Fatalf("publish batch: %v", err)
	}
}

// TestConsumerBatchMessage: each event of a batch message is judged on its own. The valid
// ones are stored, a duplicate is dropped, an invalid element and a conflicting event are
// dead-lettered each as a message of its own (its own bytes, its reason), a departure
// short of stock is retried as a message of its own and applies once stock arrives, and
// the batch message is acked once all of that is done.
func TestConsumerBatchMessage(t *testing.T) {
	t.Parallel()
	b := mustBroker(t)
	topo := b.mustTopology()
	rec := newRecorder()
	c := b.mustStartConsumer(topo, rec, func(o *amqpadapter.ConsumerOptions) { o.RetryLimit = 50 })
	m1, w, p := newIDs()
	supply := movementEvent(t, domain.Arrival, domain.MovementID(uuid.New()), w, p, 10)
	dep := movementEvent(t, domain.Departure, m1, w, p, 5)
	conflict := movementEvent(t, domain.Departure, m1, w, p, 6) // m1's departure again, other data
	short := movementEvent(t, domain.Departure, domain.MovementID(uuid.New()), w, p, 100)
	invalid := []byte(`{"specversion":"1.0","id":"x"}`)
	body := amqpadapter.JoinBatch(amqpadapter.EncodeEvent(supply), amqpadapter.EncodeEvent(dep), invalid,
		amqpadapter.EncodeEvent(conflict), amqpadapter.EncodeEvent(short), amqpadapter.EncodeEvent(supply))

	b.publishBatchMessage(topo, body, amqp091.Table{"x-publisher": "kept"})
	waitFor(t, 10*time.Second, "departure short of stock retried", func() bool { return c.metric(t, "movements_retried_total") >= 1 })
	if q := rec.stock(t, w, p); q != 5 {
		t.Errorf("stock after the batch = %d, want 10 - 5", q)
	}
	dead := b.mustDeadLetters(topo, 2)
	for _, d := range dead {
		if d.ContentType != amqpadapter.ContentType {
			t.Errorf("dead letter content type %q, want a single structured event", d.ContentType)
		}
		if header(d, "x-publisher") != "kept" {
			t.Errorf("dead letter lost the publisher's header: %v", d.Headers)
		}
		switch header(d, amqpadapter.ReasonHeader) {
		case amqpadapter.ReasonInvalid:
			if !bytes.Equal(d.Body, invalid) || !strings.Contains(header(d, amqpadapter.DetailHeader), "event 2 of a batch of 6") {
				t.Errorf("invalid dead letter: body %q, detail %q; want the element's bytes and its place", d.Body, header(d, amqpadapter.DetailHeader))
			}
		case amqpadapter.ReasonConflict:
			if !bytes.Equal(d.Body, amqpadapter.EncodeEvent(conflict)) || d.MessageId != conflict.ID || d.RoutingKey != "movement.departure" {
				t.Errorf("conflict dead letter: body %q, message id %q, routing key %q; want the conflicting event alone", d.Body, d.MessageId, d.RoutingKey)
			}
		default:
			t.Errorf("dead letter with reason %q", header(d, amqpadapter.ReasonHeader))
		}
	}
	// Stock arrives: the retried departure applies.
	b.publish(b.mustPublisher(), topo, "movement.arrival", amqpadapter.EncodeEvent(movementEvent(t, domain.Arrival, domain.MovementID(uuid.New()), w, p, 200)))
	waitFor(t, 15*time.Second, "retried departure applied", func() bool { return rec.stock(t, w, p) == 105 })
	if err := c.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	for _, q := range []string{topo.Queue, topo.RetryExchange, topo.DeadLetterQueue} {
		if n := b.ready(q); n != 0 {
			t.Errorf("queue %s holds %d messages, want 0 (the batch message acked)", q, n)
		}
	}
	if got := c.metric(t, "movements_stored_total"); got != 4 {
		t.Errorf("movements_stored_total = %v, want 4", got)
	}
	if got := c.metric(t, "movements_duplicates_total"); got != 1 {
		t.Errorf("movements_duplicates_total = %v, want 1", got)
	}
}

// TestConsumerBadBatchMessage: a batch message that cannot be split, or that mixes
// content modes, is dead-lettered whole as invalid.
func TestConsumerBadBatchMessage(t *testing.T) {
	t.Parallel()
	b := mustBroker(t)
	topo := b.mustTopology()
	c := b.mustStartConsumer(topo, newRecorder(), nil)
	b.publishBatchMessage(topo, []byte(`{"not":"an array"}`), nil)
	m, w, p := newIDs()
	b.publishBatchMessage(topo, amqpadapter.EncodeBatch([]domain.Event{movementEvent(t, domain.Arrival, m, w, p, 1)}),
		amqp091.Table{"cloudEvents:id": "x"})
	for _, d := range b.mustDeadLetters(topo, 2) {
		if header(d, amqpadapter.ReasonHeader) != amqpadapter.ReasonInvalid || d.ContentType != amqpadapter.BatchContentType {
			t.Errorf("dead letter %q: reason %q, content type %q; want the whole message, invalid", header(d, amqpadapter.DetailHeader),
				header(d, amqpadapter.ReasonHeader), d.ContentType)
		}
	}
	if got := c.metric(t, "movements_stored_total"); got != 0 {
		t.Errorf("movements_stored_total = %v, want 0", got)
	}
}

// BenchmarkBatchDelivery measures what the consumer does with one batch message of 100
// events before the store sees it: split it and decode each event.
func BenchmarkBatchDelivery(b *testing.B) {
	events := make([]domain.Event, 100)
	for i := range events {
		m, w, p := newIDs()
		events[i] = movementEvent(b, domain.Arrival, m, w, p, int64(i+1))
	}
	d := amqp091.Delivery{ContentType: amqpadapter.BatchContentType, Body: amqpadapter.EncodeBatch(events)}
	b.SetBytes(int64(len(d.Body)))
	b.ReportAllocs()
	for b.Loop() {
		for _, err := range amqpadapter.ItemsOf(d) {
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(events)), "ns/event")
}

// FuzzSplitBatch holds SplitBatch to encoding/json: a body it splits is a JSON array
// whose elements are what it returned, and a JSON array of 1 to MaxBatchEvents elements
// is split.
func FuzzSplitBatch(f *testing.F) {
	for _, seed := range []string{`[{"a":1},{"b":[1,2,{"c":"]}\"["}]}]`, `[1, "x" ,null]`, ` [ {} ] `, `[{"a":1]}]`,
		`[{"a":1} {"b":2}]`, `["\\"]`, `[1,]`, `[,1]`, `[[]]]`, `[{"a":"\u00e9"}]`, `[]`, `[`, `x`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		raws, err := amqpadapter.SplitBatch(body)
		var want []json.RawMessage
		werr := json.Unmarshal(body, &want)
		if werr == nil && len(want) >= 1 && len(want) <= amqpadapter.MaxBatchEvents && len(body) <= amqpadapter.MaxBatchSize {
			if err != nil {
				t.Fatalf("SplitBatch(%q) = %v; encoding/json reads %d elements", body, err, len(want))
			}
			if len(raws) != len(want) {
				t.Fatalf("SplitBatch(%q) = %d elements, want %d", body, len(raws), len(want))
			}
			for i := range raws {
				if !bytes.Equal(raws[i], bytes.TrimSpace(want[i])) {
					t.Fatalf("SplitBatch(%q)[%d] = %q, want %q", body, i, raws[i], want[i])
				}
			}
			return
		}
		if err == nil {
			t.Fatalf("SplitBatch(%q) = %d elements; encoding/json: %v, %d elements", body, len(raws), werr, len(want))
		}
		if !errors.Is(err, domain.ErrInvalid) {
			t.Fatalf("SplitBatch(%q) = %v, not invalid", body, err)
		}
	})
}
