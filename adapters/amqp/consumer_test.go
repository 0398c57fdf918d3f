package amqp_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	amqp091 "github.com/rabbitmq/amqp091-go"

	amqpadapter "warehouse/adapters/amqp"
	"warehouse/domain"
)

func TestConsumerRecordsValidEvent(t *testing.T) {
	t.Parallel()
	b := mustBroker(t)
	topo := b.mustTopology()
	rec := newRecorder()
	c := b.mustStartConsumer(topo, rec, nil)
	m, w, p := newIDs()

	b.publish(b.mustPublisher(), topo, "movement.arrival", amqpadapter.EncodeEvent(movementEvent(t, domain.Arrival, m, w, p, 7)))

	waitFor(t, 10*time.Second, "stock recorded", func() bool { return rec.stock(t, w, p) == 7 })
	if err := c.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := b.ready(topo.Queue); n != 0 {
		t.Errorf("queue holds %d messages after the consumer stopped, want 0 (acked)", n)
	}
	if n := b.ready(topo.DeadLetterQueue); n != 0 {
		t.Errorf("dead-letter queue holds %d messages, want 0", n)
	}
	if got := c.metric(t, "movements_stored_total"); got != 1 {
		t.Errorf("movements_stored_total = %v, want 1", got)
	}
	if got := c.metric(t, "consumer_batch_size"); got != 1 {
		t.Errorf("consumer_batch_size count = %v, want 1", got)
	}
}

func TestConsumerDeadLettersInvalidMessages(t *testing.T) {
	t.Parallel()
	b := mustBroker(t)
	topo := b.mustTopology()
	rec := newRecorder()
	c := b.mustStartConsumer(topo, rec, nil)
	pub := b.mustPublisher()
	m, w, p := newIDs()
	valid := amqpadapter.EncodeEvent(movementEvent(t, domain.Arrival, m, w, p, 3))
	dupKey := bytes.Replace(valid, []byte(`"quantity":3`), []byte(`"quantity":3,"quantity":300`), 1)

	b.publish(pub, topo, "movement.bad", []byte("not json"))
	b.publish(pub, topo, "movement.dup", dupKey)
	b.publish(pub, topo, "movement.arrival", valid)

	waitFor(t, 10*time.Second, "valid event recorded", func() bool { return rec.stock(t, w, p) == 3 })
	dead := b.mustDeadLetters(topo, 2)
	bodies := map[string][]byte{"movement.bad": []byte("not json"), "movement.dup": dupKey}
	for _, d := range dead {
		if got := header(d, amqpadapter.ReasonHeader); got != amqpadapter.ReasonInvalid {
			t.Errorf("%s: reason %q, want %q", d.RoutingKey, got, amqpadapter.ReasonInvalid)
		}
		if got := header(d, amqpadapter.DetailHeader); !strings.HasPrefix(got, "invalid: ") {
			t.Errorf("%s: detail %q, want an explanation", d.RoutingKey, got)
		}
		if want, ok := bodies[d.RoutingKey]; !ok || !bytes.Equal(d.Body, want) {
			t.Errorf("dead letter with routing key %q and body %q: want an original body and routing key", d.RoutingKey, d.Body)
		}
		if d.DeliveryMode != amqp091.Persistent {
			t.Errorf("%s: delivery mode %d, want persistent", d.RoutingKey, d.DeliveryMode)
		}
	}
	if err := c.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := b.ready(topo.Queue); n != 0 {
		t.Errorf("queue holds %d messages, want 0", n)
	}
	if got := c.metric(t, "movements_rejected_total", amqpadapter.ReasonInvalid); got != 2 {
		t.Errorf("movements_rejected_total{reason=invalid} = %v, want 2", got)
	}
}

func TestConsumerDeadLettersConflict(t *testing.T) {
	t.Parallel()
	b := mustBroker(t)
	topo := b.mustTopology()
	rec := newRecorder()
	c := b.mustStartConsumer(topo, rec, nil)
	pub := b.mustPublisher()
	m, w, p := newIDs()

	first := movementEvent(t, domain.Arrival, m, w, p, 10)
	b.publish(pub, topo, "movement.arrival", amqpadapter.EncodeEvent(first))
	waitFor(t, 10*time.Second, "first arrival recorded", func() bool { return rec.stock(t, w, p) == 10 })
	// The same movement's arrival again under a new identity, with other data.
	b.publish(pub, topo, "movement.arrival", amqpadapter.EncodeEvent(movementEvent(t, domain.Arrival, m, w, p, 11)))
	// And the first one again: a duplicate, acked without effect.
	b.publish(pub, topo, "movement.arrival", amqpadapter.EncodeEvent(first))

	dead := b.mustDeadLetters(topo, 1)
	if got := header(dead[0], amqpadapter.ReasonHeader); got != amqpadapter.ReasonConflict {
		t.Errorf("reason %q, want %q (detail %q)", got, amqpadapter.ReasonConflict, header(dead[0], amqpadapter.DetailHeader))
	}
	waitFor(t, 10*time.Second, "duplicate counted", func() bool { return c.metric(t, "movements_duplicates_total") == 1 })
	if got := rec.stock(t, w, p); got != 10 {
		t.Errorf("stock = %d, want 10", got)
	}
	if err := c.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := b.ready(topo.Queue); n != 0 {
		t.Errorf("queue holds %d messages, want 0", n)
	}
}

func TestConsumerDeadLettersInsufficientStockAfterRetries(t *testing.T) {
	t.Parallel()
	b := mustBroker(t)
	topo := b.mustTopology()
	rec := newRecorder()
	c := b.mustStartConsumer(topo, rec, func(o *amqpadapter.ConsumerOptions) { o.RetryLimit = 2 })
	m, w, p := newIDs()
	dep := movementEvent(t, domain.Departure, m, w, p, 5)

	b.publish(b.mustPublisher(), topo, "movement.departure", amqpadapter.EncodeEvent(dep))

	dead := b.mustDeadLetters(topo, 1)
	d := dead[0]
	if got := header(d, amqpadapter.ReasonHeader); got != amqpadapter.ReasonInsufficientStock {
		t.Errorf("reason %q, want %q", got, amqpadapter.ReasonInsufficientStock)
	}
	if got := header(d, amqpadapter.DetailHeader); !strings.Contains(got, "after 3 attempts") {
		t.Errorf("detail %q, want it to say after how many attempts", got)
	}
	if d.RoutingKey != "movement.departure" {
		t.Errorf("routing key %q, want the original", d.RoutingKey)
	}
	for _, h := range []string{amqpadapter.RetryHeader, "x-death"} {
		if _, ok := d.Headers[h]; ok {
			t.Errorf("dead letter keeps header %s", h)
		}
	}
	if got := rec.attemptsOf(dep.ID); got != 3 {
		t.Errorf("event recorded %d times, want 3 (first try and 2 retries)", got)
	}
	if got := c.metric(t, "movements_retried_total"); got != 2 {
		t.Errorf("movements_retried_total = %v, want 2", got)
	}
	if got := c.metric(t, "movements_rejected_total", amqpadapter.ReasonInsufficientStock); got != 1 {
		t.Errorf("movements_rejected_total{reason=insufficient_stock} = %v, want 1", got)
	}
}

func TestConsumerRetryAppliesDepartureOnceStockArrives(t *testing.T) {
	t.Parallel()
	b := mustBroker(t)
	topo := b.mustTopology()
	rec := newRecorder()
	c := b.mustStartConsumer(topo, rec, func(o *amqpadapter.ConsumerOptions) { o.RetryLimit = 50 })
	pub := b.mustPublisher()
	_, w, p := newIDs()
	dep := movementEvent(t, domain.Departure, domain.MovementID(uuid.New()), w, p, 5)

	b.publish(pub, topo, "movement.departure", amqpadapter.EncodeEvent(dep))
	waitFor(t, 10*time.Second, "departure retried", func() bool { return c.metric(t, "movements_retried_total") >= 1 })
	// Goods arrive at the departure's warehouse from a supplier: the retry now applies.
	b.publish(pub, topo, "movement.arrival", amqpadapter.EncodeEvent(movementEvent(t, domain.Arrival, domain.MovementID(uuid.New()), w, p, 8)))

	waitFor(t, 10*time.Second, "departure applied", func() bool { return rec.stock(t, w, p) == 3 })
	if err := c.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	for _, q := range []string{topo.Queue, topo.RetryExchange, topo.DeadLetterQueue} {
		if n := b.ready(q); n != 0 {
			t.Errorf("queue %s holds %d messages, want 0", q, n)
		}
	}
	if got := c.metric(t, "movements_stored_total"); got != 2 {
		t.Errorf("movements_stored_total = %v, want 2", got)
	}
}

func TestConsumerHoldsBatchWhileStoreUnavailable(t *testing.T) {
	t.Parallel()
	b := mustBroker(t)
	topo := b.mustTopology()
	rec := newRecorder()
	rec.setDown(true)
	c := b.mustStartConsumer(topo, rec, nil)
	pub := b.mustPublisher()
	_, w, p := newIDs()
	for q := int64(1); q <= 5; q++ {
		b.publish(pub, topo, "movement.arrival", amqpadapter.EncodeEvent(movementEvent(t, domain.Arrival, domain.MovementID(uuid.New()), w, p, q)))
	}

	waitFor(t, 10*time.Second, "consumer paused", func() bool { return c.State() == amqpadapter.StatePaused })
	calls := rec.callCount()
	waitFor(t, 10*time.Second, "Record retried", func() bool { return rec.callCount() >= calls+2 })
	if got := rec.stock(t, w, p); got != 0 {
		t.Fatalf("stock = %d while the store is down", got)
	}
	since, reason := c.Held()
	if since.IsZero() || time.Since(since) <= 0 || reason != amqpadapter.HeldStoreUnavailable {
		t.Errorf("Held() = %v, %q while the store is down, want a start and %q", since, reason, amqpadapter.HeldStoreUnavailable)
	}
	if got := c.metric(t, "consumer_held_batches"); got != 1 {
		t.Errorf("consumer_held_batches = %v while held, want 1", got)
	}
	if got := c.metric(t, "consumer_held_batch_age_seconds"); got <= 0 {
		t.Errorf("consumer_held_batch_age_seconds = %v while held, want > 0", got)
	}
	rec.setDown(false)

	waitFor(t, 10*time.Second, "held batch recorded", func() bool { return rec.stock(t, w, p) == 15 })
	waitFor(t, 5*time.Second, "consumer connected again", func() bool { return c.State() == amqpadapter.StateConnected })
	if since, _ := c.Held(); !since.IsZero() {
		t.Errorf("Held() = %v after the batch was recorded, want zero", since)
	}
	if got := c.metric(t, "consumer_held_batches"); got != 0 {
		t.Errorf("consumer_held_batches = %v after the batch was recorded, want 0", got)
	}
	if err := c.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := b.ready(topo.Queue); n != 0 {
		t.Errorf("queue holds %d messages, want 0", n)
	}
	if n := b.ready(topo.DeadLetterQueue); n != 0 {
		t.Errorf("dead-letter queue holds %d messages, want 0", n)
	}
	if got := c.metric(t, "movements_stored_total"); got != 5 {
		t.Errorf("movements_stored_total = %v, want 5", got)
	}
	if got := c.metric(t, "movements_duplicates_total"); got != 0 {
		t.Errorf("movements_duplicates_total = %v, want 0", got)
	}
}

func TestConsumerShutdownFinishesBatchInFlight(t *testing.T) {
	t.Parallel()
	b := mustBroker(t)
	topo := b.mustTopology()
	rec := newRecorder()
	rec.delay = 500 * time.Millisecond
	c := b.mustStartConsumer(topo, rec, nil)
	m, w, p := newIDs()

	b.publish(b.mustPublisher(), topo, "movement.arrival", amqpadapter.EncodeEvent(movementEvent(t, domain.Arrival, m, w, p, 4)))
	waitFor(t, 10*time.Second, "Record called", func() bool { return rec.callCount() >= 1 })
	if err := c.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := rec.stock(t, w, p); got != 4 {
		t.Errorf("stock = %d, want the batch in flight recorded", got)
	}
	if n := b.ready(topo.Queue); n != 0 {
		t.Errorf("queue holds %d messages, want 0 (batch acked before Run returned)", n)
	}
}

func TestConsumerShutdownWhilePausedLeavesBatchQueued(t *testing.T) {
	t.Parallel()
	b := mustBroker(t)
	topo := b.mustTopology()
	rec := newRecorder()
	rec.setDown(true)
	c := b.mustStartConsumer(topo, rec, nil)
	m, w, p := newIDs()

	b.publish(b.mustPublisher(), topo, "movement.arrival", amqpadapter.EncodeEvent(movementEvent(t, domain.Arrival, m, w, p, 4)))
	waitFor(t, 10*time.Second, "consumer paused", func() bool { return c.State() == amqpadapter.StatePaused })
	start := time.Now()
	if err := c.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Run took %s to return", d)
	}
	waitFor(t, 5*time.Second, "message back in the queue", func() bool { return b.ready(topo.Queue) == 1 })
	if n := b.ready(topo.DeadLetterQueue); n != 0 {
		t.Errorf("dead-letter queue holds %d messages, want 0", n)
	}
}

// TestConsumerShutdownWhilePausedRecordsNoLaterBatch: the batch collected while a held
// one waits is not recorded at shutdown once the held one is left unacked (it would
// overtake it), and both go back to the queue.
func TestConsumerShutdownWhilePausedRecordsNoLaterBatch(t *testing.T) {
	t.Parallel()
	b := mustBroker(t)
	topo := b.mustTopology()
	rec := newRecorder()
	rec.setDown(true)
	c := b.mustStartConsumer(topo, rec, nil)
	pub := b.mustPublisher()
	m, w, p := newIDs()
	first := movementEvent(t, domain.Arrival, m, w, p, 4)
	b.publish(pub, topo, "movement.arrival", amqpadapter.EncodeEvent(first))
	waitFor(t, 10*time.Second, "consumer paused", func() bool { return c.State() == amqpadapter.StatePaused })
	b.publish(pub, topo, "movement.arrival", amqpadapter.EncodeEvent(movementEvent(t, domain.Arrival, domain.MovementID(uuid.New()), w, p, 5)))
	waitFor(t, 10*time.Second, "second message delivered", func() bool { return b.ready(topo.Queue) == 0 })
	time.Sleep(100 * time.Millisecond) // past BatchWait: the second batch is collected
	if err := c.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	for _, call := range rec.recordCalls() {
		if len(call.ids) != 1 || call.ids[0] != first.ID {
			t.Errorf("Record called with %v; only the held batch (%s) may be", call.ids, first.ID)
		}
	}
	waitFor(t, 5*time.Second, "both messages back in the queue", func() bool { return b.ready(topo.Queue) == 2 })
}

func TestConsumerResubscribesWhenQueueDeleted(t *testing.T) {
	t.Parallel()
	b := mustBroker(t)
	topo := b.mustTopology()
	rec := newRecorder()
	c := b.mustStartConsumer(topo, rec, nil)
	pub := b.mustPublisher()

	ch := b.channel()
	if _, err := ch.QueueDelete(topo.Queue, false, false, false); err != nil {
		t.Fatal(err)
	}
	_ = ch.Close()
	waitFor(t, 10*time.Second, "reconnect", func() bool { return c.metric(t, "consumer_reconnects_total") >= 1 })
	waitFor(t, 10*time.Second, "consumer connected", func() bool { return c.State() == amqpadapter.StateConnected })

	m, w, p := newIDs()
	body := amqpadapter.EncodeEvent(movementEvent(t, domain.Arrival, m, w, p, 2))
	// The queue comes back when the consumer redeclares it; until then a message is unroutable.
	waitFor(t, 10*time.Second, "message routed", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := pub.Publish(ctx, topo.Exchange, "movement.arrival", body, nil)
		if err != nil && !errors.Is(err, amqpadapter.ErrUnroutable) {
			t.Fatalf("publish: %v", err)
		}
		return err == nil
	})
	waitFor(t, 10*time.Second, "event recorded after resubscribing", func() bool { return rec.stock(t, w, p) == 2 })
}

func TestDeclareTopologyMismatch(t *testing.T) {
	t.Parallel()
	b := mustBroker(t)
	topo := b.mustTopology()
	ch := b.channel()
	// The queue exists already, as a classic queue.
	if _, err := ch.QueueDeclare(topo.Queue, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	err := amqpadapter.Declare(ch, topo)
	if !errors.Is(err, amqpadapter.ErrTopologyMismatch) {
		t.Fatalf("Declare = %v, want ErrTopologyMismatch", err)
	}
	t.Logf("Declare = %v", err)
	for _, want := range []string{topo.Queue, "delete it or fix the configuration"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}

	c := amqpadapter.NewConsumer(amqpadapter.ConsumerOptions{URL: b.url, Topology: topo}, newRecorder(), testLogger(t), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := c.Run(ctx); !errors.Is(err, amqpadapter.ErrTopologyMismatch) {
		t.Fatalf("Run = %v, want ErrTopologyMismatch", err)
	}
	if ctx.Err() != nil {
		t.Fatal("Run returned only at the deadline")
	}
}

// TestDeclareIsIdempotent declares the topology again over queues that hold messages, as
// every consumer start and every failed publish does: nothing is lost or rerouted, and
// each exchange still routes to its queue, once.
func TestDeclareIsIdempotent(t *testing.T) {
	t.Parallel()
	b := mustBroker(t)
	topo := b.mustTopology()
	pub := b.mustPublisher()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	routes := []struct{ exchange, queue string }{{topo.Exchange, topo.Queue}, {topo.DeadLetterExchange, topo.DeadLetterQueue}}
	for i := range 3 {
		ch := b.channel()
		if err := amqpadapter.Declare(ch, topo); err != nil {
			t.Fatalf("Declare #%d: %v", i+1, err)
		}
		_ = ch.Close()
		for _, r := range routes {
			// one message more after each declaration; every earlier one must still be there
			if err := pub.Publish(ctx, r.exchange, "movement.arrival", []byte(fmt.Sprintf("declare %d", i+1)), nil); err != nil {
				t.Fatalf("publish to %s after Declare #%d: %v", r.exchange, i+1, err)
			}
			waitFor(t, 5*time.Second, fmt.Sprintf("%s to hold %d messages after Declare #%d", r.queue, i+1, i+1),
				func() bool { return b.ready(r.queue) == i+1 })
		}
	}
	for _, r := range routes {
		var got []string
		for _, d := range b.drain(r.queue) {
			got = append(got, string(d.Body))
		}
		if want := []string{"declare 1", "declare 2", "declare 3"}; !slices.Equal(got, want) {
			t.Errorf("%s holds %q, want %q", r.queue, got, want)
		}
	}
	if n := b.ready(topo.RetryExchange); n != 0 {
		t.Errorf("the retry queue holds %d messages, want none", n)
	}
}

func TestPublisher(t *testing.T) {
	t.Parallel()
	b := mustBroker(t)
	topo := b.mustTopology()
	ch := b.channel()
	if err := amqpadapter.Declare(ch, topo); err != nil {
		t.Fatal(err)
	}
	pub := b.mustPublisher()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	t.Run("batch", func(t *testing.T) {
		msgs := make([]amqpadapter.Message, 1500) // more than one confirm round
		for i := range msgs {
			msgs[i] = amqpadapter.Message{RoutingKey: "movement.arrival", Publishing: amqp091.Publishing{Body: []byte("{}")}}
		}
		start := time.Now()
		if err := pub.PublishBatch(ctx, topo.Exchange, msgs); err != nil {
			t.Fatal(err)
		}
		t.Logf("published and confirmed %d messages in %s", len(msgs), time.Since(start))
		waitFor(t, 5*time.Second, "1500 messages queued", func() bool { return b.ready(topo.Queue) == 1500 })
		gch := b.channel()
		defer gch.Close()
		d, ok, err := gch.Get(topo.Queue, true)
		if err != nil || !ok {
			t.Fatalf("get: %v, %v", ok, err)
		}
		if d.ContentType != amqpadapter.ContentType || d.DeliveryMode != amqp091.Persistent {
			t.Errorf("content type %q, delivery mode %d: want %q, persistent", d.ContentType, d.DeliveryMode, amqpadapter.ContentType)
		}
	})
	t.Run("unroutable", func(t *testing.T) {
		// The retry exchange routes to its queue only; delete that to make it a dead end.
		if _, err := ch.QueueDelete(topo.RetryExchange, false, false, false); err != nil {
			t.Fatal(err)
		}
		err := pub.Publish(ctx, topo.RetryExchange, "movement.arrival", []byte("{}"), nil)
		if !errors.Is(err, amqpadapter.ErrUnroutable) {
			t.Fatalf("Publish = %v, want ErrUnroutable", err)
		}
		// The publisher is still usable.
		if err := pub.Publish(ctx, topo.Exchange, "movement.arrival", []byte("{}"), nil); err != nil {
			t.Fatalf("Publish after a return: %v", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		cctx, ccancel := context.WithCancel(ctx)
		ccancel()
		if err := pub.Publish(cctx, topo.Exchange, "movement.arrival", []byte("{}"), nil); err == nil {
			t.Fatal("Publish with a cancelled context succeeded")
		}
	})
}

func TestConsumerReconnectsAfterConnectionLoss(t *testing.T) {
	t.Parallel()
	b := mustBroker(t)
	topo := b.mustTopology()
	px, proxyURL := mustProxy(t, b.url)
	rec := newRecorder()
	rec.delay = 300 * time.Millisecond
	c := b.mustStartConsumer(topo, rec, func(o *amqpadapter.ConsumerOptions) { o.URL = proxyURL })
	m, w, p := newIDs()

	b.publish(b.mustPublisher(), topo, "movement.arrival", amqpadapter.EncodeEvent(movementEvent(t, domain.Arrival, m, w, p, 6)))
	waitFor(t, 10*time.Second, "Record called", func() bool { return rec.callCount() >= 1 })
	// The connection drops while the batch is in the store: it commits, but its ack
	// cannot reach the broker, which redelivers it after the reconnect; the ledger makes
	// the second delivery a duplicate.
	px.cut()

	waitFor(t, 10*time.Second, "redelivery judged a duplicate", func() bool { return c.metric(t, "movements_duplicates_total") == 1 })
	waitFor(t, 10*time.Second, "consumer connected", func() bool { return c.State() == amqpadapter.StateConnected })
	if got := rec.stock(t, w, p); got != 6 {
		t.Errorf("stock = %d, want 6 (applied once)", got)
	}
	if got := c.metric(t, "consumer_reconnects_total"); got < 1 {
		t.Errorf("consumer_reconnects_total = %v, want at least 1", got)
	}
	if err := c.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := b.ready(topo.Queue); n != 0 {
		t.Errorf("queue holds %d messages, want 0", n)
	}
}

// BenchmarkConsumer measures consumption from a backlog of b.N valid events into the
// memory store: decoding, batching, Record and multiple acks, end to end.
func BenchmarkConsumer(b *testing.B) {
	br := mustBroker(b)
	topo := br.mustTopology()
	ch := br.channel()
	if err := amqpadapter.Declare(ch, topo); err != nil {
		b.Fatal(err)
	}
	_ = ch.Close()
	pub := br.mustPublisher()
	_, w, p := newIDs()
	msgs := make([]amqpadapter.Message, 0, 1000)
	ctx := context.Background()
	for i := range b.N {
		e := movementEvent(b, domain.Arrival, domain.MovementID(uuid.New()), w, p, 1)
		msgs = append(msgs, amqpadapter.Message{RoutingKey: "movement.arrival", Publishing: amqp091.Publishing{Body: amqpadapter.EncodeEvent(e)}})
		if len(msgs) == cap(msgs) || i == b.N-1 {
			if err := pub.PublishBatch(ctx, topo.Exchange, msgs); err != nil {
				b.Fatal(err)
			}
			msgs = msgs[:0]
		}
	}
	rec := newRecorder()
	b.ResetTimer()
	start := time.Now()
	c := br.mustStartConsumer(topo, rec, func(o *amqpadapter.ConsumerOptions) {
		o.Prefetch, o.BatchSize, o.BatchWait = 2000, 1000, 20*time.Millisecond
	})
	waitFor(b, time.Minute, "backlog consumed", func() bool { return rec.stock(b, w, p) == int64(b.N) })
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
	_ = c.stop()
}

func TestConsumerWaitsForUnreachableBroker(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // nothing listens there now
	topo := amqpadapter.DefaultTopology("x", "q", time.Second, 5)
	reg := prometheus.NewRegistry()
	c := amqpadapter.NewConsumer(amqpadapter.ConsumerOptions{URL: "amqp://guest:secret@" + addr + "/", Topology: topo}, newRecorder(), testLogger(t), reg)
	r := &running{Consumer: c, reg: reg}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()

	waitFor(t, 5*time.Second, "reconnect attempts", func() bool { return r.metric(t, "consumer_reconnects_total") >= 2 })
	if got := c.State(); got != amqpadapter.StateReconnecting {
		t.Errorf("State = %q, want %q", got, amqpadapter.StateReconnecting)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v, want nil after cancellation", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancellation")
	}
}

func TestConsumerRefusedLoginIsFatal(t *testing.T) {
	t.Parallel()
	b := mustBroker(t)
	u, err := url.Parse(b.url)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword("guest", "not-the-password")
	c := amqpadapter.NewConsumer(amqpadapter.ConsumerOptions{URL: u.String(), Topology: b.mustTopology()}, newRecorder(), testLogger(t), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err = c.Run(ctx)
	if err == nil || ctx.Err() != nil {
		t.Fatalf("Run = %v, want an error at once", err)
	}
	t.Logf("Run = %v", err)
	if strings.Contains(err.Error(), "not-the-password") {
		t.Errorf("error %q shows the password", err)
	}
}

// TestConsumerIsolatesPoisonEvent: a batch that fails with an error other than an outage
// would block the queue for ever; the consumer records its events one by one, applies the
// good ones and dead-letters the culprit as internal.
func TestConsumerIsolatesPoisonEvent(t *testing.T) {
	t.Parallel()
	b := mustBroker(t)
	topo := b.mustTopology()
	rec := newRecorder()
	m, w, p := newIDs()
	bad := movementEvent(t, domain.Arrival, m, w, p, 7)
	rec.mu.Lock()
	rec.poison = bad.ID
	rec.mu.Unlock()
	c := b.mustStartConsumer(topo, rec, func(o *amqpadapter.ConsumerOptions) {
		o.BatchWait = 200 * time.Millisecond
		o.Lanes = 1 // both events in one transaction (TestConsumerRecordsLanesApart has them in two)
	})
	pub := b.mustPublisher()
	_, w2, p2 := newIDs()
	good := movementEvent(t, domain.Arrival, domain.MovementID(uuid.New()), w2, p2, 5)
	b.publish(pub, topo, "movement.arrival", amqpadapter.EncodeEvent(bad))
	b.publish(pub, topo, "movement.arrival", amqpadapter.EncodeEvent(good))

	dead := b.mustDeadLetters(topo, 1)
	if got := header(dead[0], amqpadapter.ReasonHeader); got != amqpadapter.ReasonInternal {
		t.Errorf("reason %q, want %q", got, amqpadapter.ReasonInternal)
	}
	waitFor(t, 10*time.Second, "good event recorded", func() bool { return rec.stock(t, w2, p2) == 5 })
	if err := c.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := b.ready(topo.Queue); n != 0 {
		t.Errorf("queue holds %d messages, want 0", n)
	}
	// What the test is about: the good event came in the failing batch, and was recorded
	// on its own afterwards; not in a batch of its own from the start.
	calls := rec.recordCalls()
	shared, alone := false, false
	for _, c := range calls {
		shared = shared || c.failed && slices.Contains(c.ids, bad.ID) && slices.Contains(c.ids, good.ID)
		alone = alone || shared && !c.failed && slices.Equal(c.ids, []string{good.ID})
	}
	if !shared || !alone {
		t.Errorf("record calls %+v: want a failing batch holding both %s (bad) and %s (good), then the good one recorded alone",
			calls, bad.ID, good.ID)
	}
}

// productInLane returns a new product whose events go in lane l of n.
func productInLane(l, n int) domain.ProductID {
	for {
		if p := domain.ProductID(uuid.New()); amqpadapter.LaneOf(p, n) == l {
			return p
		}
	}
}

// TestConsumerRecordsLanesApart: the events of a batch are recorded in one transaction per
// lane (by product), at once; a lane that fails is tried again on its own, so the events
// of the lane that committed are recorded once, and a poison event holds up only its lane.
func TestConsumerRecordsLanesApart(t *testing.T) {
	t.Parallel()
	b := mustBroker(t)
	topo := b.mustTopology()
	rec := newRecorder()
	rec.delay = 300 * time.Millisecond // long enough for the two lanes' calls to meet
	w := domain.WarehouseID(uuid.New())
	bad := movementEvent(t, domain.Arrival, domain.MovementID(uuid.New()), w, productInLane(0, 2), 7)
	good := movementEvent(t, domain.Arrival, domain.MovementID(uuid.New()), w, productInLane(1, 2), 5)
	rec.mu.Lock()
	rec.poison = bad.ID
	rec.mu.Unlock()
	c := b.mustStartConsumer(topo, rec, func(o *amqpadapter.ConsumerOptions) {
		o.BatchWait = 200 * time.Millisecond
		o.Lanes = 2
		amqpadapter.SetMinLane(o, 1)
	})
	pub := b.mustPublisher()
	b.publish(pub, topo, "movement.arrival", amqpadapter.EncodeEvent(bad))
	b.publish(pub, topo, "movement.arrival", amqpadapter.EncodeEvent(good))

	dead := b.mustDeadLetters(topo, 1)
	if got := header(dead[0], amqpadapter.ReasonHeader); got != amqpadapter.ReasonInternal {
		t.Errorf("reason %q, want %q", got, amqpadapter.ReasonInternal)
	}
	waitFor(t, 10*time.Second, "good event recorded", func() bool { return rec.stock(t, w, good.ProductID) == 5 })
	if err := c.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := b.ready(topo.Queue); n != 0 {
		t.Errorf("queue holds %d messages, want 0", n)
	}
	if got := c.metric(t, "movements_stored_total"); got != 1 {
		t.Errorf("movements_stored_total = %v, want 1", got)
	}
	calls := rec.recordCalls()
	goodCalls, badFailed := 0, 0
	for _, call := range calls {
		if slices.Contains(call.ids, good.ID) {
			goodCalls++
			if call.failed || len(call.ids) != 1 {
				t.Errorf("record call %+v: the good event's lane holds it alone and commits", call)
			}
		}
		if call.failed && slices.Equal(call.ids, []string{bad.ID}) {
			badFailed++
		}
	}
	if goodCalls != 1 || badFailed < 3 {
		t.Errorf("record calls %+v: want the good event recorded once and the bad one's lane failing on its own (at least 3 times)", calls)
	}
	if got := rec.maxOverlap(); got != 2 {
		t.Errorf("at most %d Record calls under way at once, want 2 (one per lane)", got)
	}
}
