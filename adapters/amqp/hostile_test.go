package amqp_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp091 "github.com/rabbitmq/amqp091-go"

	amqpadapter "warehouse/adapters/amqp"
	"warehouse/domain"
)

// Hostile publishers against the real broker and its real frame_max (131072 bytes).
// A message's properties, headers included, travel in one frame: a publisher may fill
// that frame, and every copy of the message the service publishes, or the broker hands
// on with headers of its own added, must still be readable.

// padNearFrameMax is the length of a string header that leaves a message's properties
// just under the broker's frame_max, so that the broker accepts it from the publisher.
const padNearFrameMax = 130990

// padAtFrameMax fills the content header frame of a message published by publishRaw
// (headers and delivery mode only) to exactly frame_max: 7 bytes of frame header, 14 of
// class, weight, body size and flags, 4 of table length, 11 of the x-pad key and string
// prefix, 1 of delivery mode and the frame end. The broker accepts it and delivers it
// once as it is; any header the broker adds on redelivery makes it larger than frame_max.
const padAtFrameMax = 131072 - 7 - 14 - 4 - 11 - 1 - 1

// publishRaw publishes body with headers to the topology's exchange on a connection of
// the test's own, with a confirm, as a publisher with no client of ours would.
func (b *broker) publishRaw(topo amqpadapter.Topology, key string, body []byte, headers amqp091.Table) {
	b.t.Helper()
	ch := b.channel()
	defer ch.Close()
	if err := ch.Confirm(false); err != nil {
		b.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, topo.Exchange, key, true, false, amqp091.Publishing{
		Headers: headers, DeliveryMode: amqp091.Persistent, Body: body,
	})
	if err != nil {
		b.t.Fatalf("publish: %v", err)
	}
	if ok, err := dc.WaitContext(ctx); err != nil || !ok {
		b.t.Fatalf("publish not confirmed: ok=%v err=%v", ok, err)
	}
}

// mustDeclare declares topo, as the consumer would, on a channel of the test's own.
func (b *broker) mustDeclare(topo amqpadapter.Topology) {
	b.t.Helper()
	ch := b.channel()
	defer ch.Close()
	if err := amqpadapter.Declare(ch, topo); err != nil {
		b.t.Fatal(err)
	}
}

// padded returns headers holding one string header of n bytes under name.
func padded(name string, n int) amqp091.Table {
	return amqp091.Table{name: strings.Repeat("p", n)}
}

// TestConsumerDeadLettersMessageWithHeadersNearFrameMax: an invalid message whose headers
// nearly fill a frame is dead-lettered without them (the detail says so), and the valid
// event published after it is stored: ingest never stalls on it.
func TestConsumerDeadLettersMessageWithHeadersNearFrameMax(t *testing.T) {
	t.Parallel()
	b := mustBroker(t)
	topo := b.mustTopology()
	rec := newRecorder()
	c := b.mustStartConsumer(topo, rec, nil)
	m, w, p := newIDs()

	b.publishRaw(topo, "movement.bad", []byte("not json"), padded("x-pad", padNearFrameMax))
	b.publishRaw(topo, "movement.arrival", amqpadapter.EncodeEvent(movementEvent(t, domain.Arrival, m, w, p, 5)), nil)

	waitFor(t, 15*time.Second, "the valid event after the padded one stored", func() bool { return rec.stock(t, w, p) == 5 })
	dead := b.mustDeadLetters(topo, 1)[0]
	if got := header(dead, amqpadapter.ReasonHeader); got != amqpadapter.ReasonInvalid {
		t.Errorf("reason %q, want %q", got, amqpadapter.ReasonInvalid)
	}
	if _, ok := dead.Headers["x-pad"]; ok {
		t.Error("the dead letter carries the publisher's oversized header")
	}
	detail := header(dead, amqpadapter.DetailHeader)
	if !strings.Contains(detail, "x-pad") || !strings.Contains(detail, "dropped") {
		t.Errorf("detail %q does not say that x-pad was dropped", detail)
	}
	if string(dead.Body) != "not json" || dead.RoutingKey != "movement.bad" {
		t.Errorf("dead letter %q with routing key %q, want the original body and key", dead.Body, dead.RoutingKey)
	}
	if got := c.metric(t, "consumer_reconnects_total"); got != 0 {
		t.Errorf("consumer_reconnects_total = %v, want 0: no connection may drop", got)
	}
}

// TestConsumerRetriesDepartureWithHeadersNearFrameMax: a departure with no stock whose
// headers nearly fill a frame goes through the retry queue and back (the broker adds
// x-death on the way) without breaking any connection, is dead-lettered as
// insufficient_stock after its retries with a detail that names the header its copies
// dropped, and the dead-letter tools read it.
func TestConsumerRetriesDepartureWithHeadersNearFrameMax(t *testing.T) {
	t.Parallel()
	b := mustBroker(t)
	topo := b.mustTopology()
	rec := newRecorder()
	c := b.mustStartConsumer(topo, rec, nil) // RetryLimit 2
	m, w, p := newIDs()
	dep := movementEvent(t, domain.Departure, m, w, p, 4)

	b.publishRaw(topo, "movement.departure", amqpadapter.EncodeEvent(dep), padded("x-pad", padNearFrameMax))

	waitFor(t, 20*time.Second, "the departure dead-lettered", func() bool { return b.ready(topo.DeadLetterQueue) == 1 })
	dls, err := amqpadapter.ListDeadLetters(context.Background(), b.url, topo.DeadLetterQueue, amqpadapter.DeadLetterFilter{})
	if err != nil {
		t.Fatalf("list dead letters: %v", err)
	}
	if len(dls) != 1 {
		t.Fatalf("listed %d dead letters, want 1", len(dls))
	}
	dl := dls[0]
	if dl.Reason != amqpadapter.ReasonInsufficientStock || dl.ID != dep.ID {
		t.Errorf("dead letter %q with reason %q, want %q with %q", dl.ID, dl.Reason, dep.ID, amqpadapter.ReasonInsufficientStock)
	}
	if dl.Attempts != 3 {
		t.Errorf("attempts %d, want 3 (the first try and 2 delayed retries)", dl.Attempts)
	}
	if !strings.Contains(dl.Detail, `"x-pad"`) || !strings.Contains(dl.Detail, "dropped") {
		t.Errorf("detail %q does not say that x-pad was dropped", dl.Detail)
	}
	if got := c.metric(t, "consumer_reconnects_total"); got != 0 {
		t.Errorf("consumer_reconnects_total = %v, want 0: no connection may drop", got)
	}
	// Ingest goes on.
	m2, w2, p2 := newIDs()
	b.publishRaw(topo, "movement.arrival", amqpadapter.EncodeEvent(movementEvent(t, domain.Arrival, m2, w2, p2, 2)), nil)
	waitFor(t, 10*time.Second, "a later event stored", func() bool { return rec.stock(t, w2, p2) == 2 })
}

// mustRedeliver takes the one ready message of queue on a channel of the test's own and
// closes the channel without acking it, so that the broker delivers it again, now with
// the x-delivery-count header a quorum queue adds to a redelivery.
func (b *broker) mustRedeliver(queue string) {
	b.t.Helper()
	ch := b.channel()
	if err := ch.Qos(1, 0, false); err != nil {
		b.t.Fatal(err)
	}
	deliveries, err := ch.Consume(queue, "", false, false, false, false, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	select {
	case <-deliveries:
	case <-time.After(10 * time.Second):
		b.t.Fatalf("nothing delivered from %s", queue)
	}
	_ = ch.Close()
}

// TestConsumerReadsRedeliveryLargerThanFrameMax: a message published at exactly
// frame_max that the broker delivers again (adding x-delivery-count, so that its
// properties no longer fit a frame) is read without its headers and applied, and the
// consumer keeps its connection. amqp091-go alone closes the connection on such a frame,
// and the broker then delivers it again, until the delivery limit dead-letters it.
func TestConsumerReadsRedeliveryLargerThanFrameMax(t *testing.T) {
	t.Parallel()
	b := mustBroker(t)
	topo := b.mustTopology()
	b.mustDeclare(topo)
	m, w, p := newIDs()
	body := amqpadapter.EncodeEvent(movementEvent(t, domain.Arrival, m, w, p, 9))
	b.publishRaw(topo, "movement.arrival", body, padded("x-pad", padAtFrameMax))
	b.mustRedeliver(topo.Queue)

	rec := newRecorder()
	c := b.mustStartConsumer(topo, rec, nil)
	waitFor(t, 10*time.Second, "the redelivered event stored", func() bool { return rec.stock(t, w, p) == 9 })
	b.mustDepth(topo.Queue, 0)
	if n := b.ready(topo.DeadLetterQueue); n != 0 {
		t.Errorf("%d dead letters, want 0", n)
	}
	if got := c.metric(t, "consumer_reconnects_total"); got != 0 {
		t.Errorf("consumer_reconnects_total = %v, want 0", got)
	}
}

// TestDeadLetterToolsReadLetterLargerThanFrameMax: a message the broker dead-lettered
// itself (a reject without requeue), whose properties with the broker's x-death no longer
// fit a frame, is listed and replayed like any other, and the letters around it too.
func TestDeadLetterToolsReadLetterLargerThanFrameMax(t *testing.T) {
	t.Parallel()
	b := mustBroker(t)
	topo := b.mustTopology()
	b.mustDeclare(topo)
	ids := []string{uuid.NewString(), uuid.NewString(), uuid.NewString()}
	for i, id := range ids {
		var h amqp091.Table
		if i == 1 {
			h = padded("x-pad", padAtFrameMax-len(id)-2) // the id is 2 bytes longer in the body than "p"
		}
		b.publishRaw(topo, "movement.arrival", []byte(`{"id":"`+id+`"}`), h)
	}
	// Reject all three without requeue: the broker dead-letters them with x-death.
	ch := b.channel()
	deliveries, err := ch.Consume(topo.Queue, "", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range ids {
		select {
		case d := <-deliveries:
			if err := d.Reject(false); err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("nothing delivered")
		}
	}
	_ = ch.Close()
	b.mustDepth(topo.DeadLetterQueue, 3)

	dls, err := amqpadapter.ListDeadLetters(context.Background(), b.url, topo.DeadLetterQueue, amqpadapter.DeadLetterFilter{})
	if err != nil {
		t.Fatalf("list dead letters: %v", err)
	}
	if got := keysOfIDs(dls); strings.Join(got, ",") != strings.Join(ids, ",") {
		t.Fatalf("listed %v, want %v", got, ids)
	}
	big := dls[1]
	if big.HeadersDropped == 0 || !strings.Contains(big.Detail, "frame") {
		t.Errorf("the oversized letter: headers dropped %d, detail %q; want it reported", big.HeadersDropped, big.Detail)
	}
	if n := mustReplay(t, b.url, topo, amqpadapter.DeadLetterFilter{ID: ids[2]}); n != 1 {
		t.Errorf("replayed %d, want 1", n)
	}
	b.mustDepth(topo.DeadLetterQueue, 2)
}

func keysOfIDs(dls []amqpadapter.DeadLetter) []string {
	out := make([]string, len(dls))
	for i, d := range dls {
		out[i] = d.ID
	}
	return out
}

// TestConsumerIgnoresPublishersControlHeaders: the headers the service uses to count
// retries and describe dead letters mean nothing when a publisher sets them. A departure
// with no stock published with x-retry-attempt 99 is still retried RetryLimit times, and
// an invalid message published with an old x-dead-lettered-at is listed with the time
// the service dead-lettered it.
func TestConsumerIgnoresPublishersControlHeaders(t *testing.T) {
	t.Parallel()
	b := mustBroker(t)
	topo := b.mustTopology()
	rec := newRecorder()
	b.mustStartConsumer(topo, rec, nil) // RetryLimit 2
	m, w, p := newIDs()
	dep := movementEvent(t, domain.Departure, m, w, p, 4)
	forged := amqp091.Table{
		amqpadapter.RetryHeader:          int32(99),
		amqpadapter.DeadLetteredAtHeader: "1999-01-01T00:00:00Z",
		amqpadapter.ReasonHeader:         "forged",
		amqpadapter.DetailHeader:         "forged",
	}
	start := time.Now()
	b.publishRaw(topo, "movement.departure", amqpadapter.EncodeEvent(dep), forged)
	b.publishRaw(topo, "movement.bad", []byte(`{"id":"bad-1"}`), forged)

	waitFor(t, 20*time.Second, "both dead-lettered", func() bool { return b.ready(topo.DeadLetterQueue) == 2 })
	if got := rec.attemptsOf(dep.ID); got != 3 {
		t.Errorf("the departure was judged %d times, want 3: a publisher's x-retry-attempt must not count", got)
	}
	dls, err := amqpadapter.ListDeadLetters(context.Background(), b.url, topo.DeadLetterQueue, amqpadapter.DeadLetterFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, dl := range dls {
		if dl.Reason == "forged" || dl.Detail == "forged" {
			t.Errorf("%s: the publisher's reason or detail survived: %q / %q", dl.ID, dl.Reason, dl.Detail)
		}
		if dl.DeadLetteredAt.Before(start.Add(-time.Second)) || dl.DeadLetteredAt.After(time.Now().Add(time.Second)) {
			t.Errorf("%s: dead-lettered at %v, want the time the service dead-lettered it (after %v)", dl.ID, dl.DeadLetteredAt, start)
		}
		want := 1
		if dl.Reason == amqpadapter.ReasonInsufficientStock {
			want = 3
		}
		if dl.Attempts != want {
			t.Errorf("%s (%s): attempts %d, want %d", dl.ID, dl.Reason, dl.Attempts, want)
		}
	}
}

// TestConsumerRejectsMessageItCannotCopy: when not even a copy without the publisher's
// headers would fit a frame (here a consumer proposing a 16 KiB frame_max, all of it the
// headroom a copy must leave), the message is rejected without requeue and the broker's
// own dead-lettering takes it; ingest goes on.
func TestConsumerRejectsMessageItCannotCopy(t *testing.T) {
	t.Parallel()
	b := mustBroker(t)
	topo := b.mustTopology()
	rec := newRecorder()
	c := b.mustStartConsumer(topo, rec, func(o *amqpadapter.ConsumerOptions) { amqpadapter.SetFrameMax(o, 16<<10) })
	m, w, p := newIDs()
	b.publishRaw(topo, "movement.bad", []byte(`{"id":"uncopyable"}`), nil)
	b.publishRaw(topo, "movement.arrival", amqpadapter.EncodeEvent(movementEvent(t, domain.Arrival, m, w, p, 3)), nil)

	waitFor(t, 10*time.Second, "the valid event stored", func() bool { return rec.stock(t, w, p) == 3 })
	b.mustDepth(topo.DeadLetterQueue, 1)
	dls := mustList(t, b.url, topo, amqpadapter.DeadLetterFilter{})
	if len(dls) != 1 || dls[0].ID != "uncopyable" || dls[0].Reason != "rejected" {
		t.Fatalf("dead letters %+v, want uncopyable, rejected by the broker's dead-lettering", dls)
	}
	b.mustDepth(topo.Queue, 0)
	if got := c.metric(t, "movements_rejected_total", amqpadapter.ReasonInvalid); got != 1 {
		t.Errorf("movements_rejected_total{reason=invalid} = %v, want 1", got)
	}
}

// TestConsumerRedeclaresDeletedExchanges: when someone deletes the dead-letter exchange
// under a running consumer, its next dead letter declares it again instead of holding
// the batch for ever.
func TestConsumerRedeclaresDeletedExchanges(t *testing.T) {
	t.Parallel()
	b := mustBroker(t)
	topo := b.mustTopology()
	rec := newRecorder()
	c := b.mustStartConsumer(topo, rec, nil)
	ch := b.channel()
	if err := ch.ExchangeDelete(topo.DeadLetterExchange, false, false); err != nil {
		t.Fatal(err)
	}
	_ = ch.Close()
	b.publishRaw(topo, "movement.bad", []byte("not json"), nil)
	waitFor(t, 15*time.Second, "the dead letter", func() bool { return b.ready(topo.DeadLetterQueue) == 1 })
	if since, _ := c.Held(); !since.IsZero() {
		t.Errorf("still held since %v", since)
	}
}
