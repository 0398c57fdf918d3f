package amqp_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	amqpadapter "warehouse/adapters/amqp"
	"warehouse/domain"
)

// deadLetter is one message a test puts in the dead-letter queue as the consumer would.
type deadLetter struct {
	key, reason, detail string
	body                []byte
}

// mustDeclaredTopology returns a unique topology declared on a fresh channel.
func (b *broker) mustDeclaredTopology() amqpadapter.Topology {
	b.t.Helper()
	topo := b.mustTopology()
	ch := b.channel()
	defer ch.Close()
	if err := amqpadapter.Declare(ch, topo); err != nil {
		b.t.Fatal(err)
	}
	return topo
}

// mustSeedDeadLetters publishes dls to the dead-letter exchange, in order, with the
// consumer's headers plus a header of the test's own and a retry count, and waits until
// the dead-letter queue holds them all.
func (b *broker) mustSeedDeadLetters(topo amqpadapter.Topology, dls ...deadLetter) {
	b.t.Helper()
	msgs := make([]amqpadapter.Message, len(dls))
	for i, dl := range dls {
		msgs[i] = amqpadapter.Message{RoutingKey: dl.key, Publishing: amqp091.Publishing{
			Headers: amqp091.Table{
				amqpadapter.ReasonHeader: dl.reason, amqpadapter.DetailHeader: dl.detail,
				amqpadapter.AttemptsHeader: int32(3), "x-test-kept": "kept",
			},
			MessageId: "msg-" + dl.key,
			Timestamp: time.Now().Add(-time.Minute).Truncate(time.Second),
			Body:      dl.body,
		}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.mustPublisher().PublishBatch(ctx, topo.DeadLetterExchange, msgs); err != nil {
		b.t.Fatalf("seed dead letters: %v", err)
	}
	b.mustDepth(topo.DeadLetterQueue, len(dls))
}

// mustDepth waits until queue holds exactly n ready messages: a closed channel's
// messages go back to the queue asynchronously.
func (b *broker) mustDepth(queue string, n int) {
	b.t.Helper()
	var got int
	deadline := time.Now().Add(10 * time.Second)
	for got = b.ready(queue); got != n; got = b.ready(queue) {
		if time.Now().After(deadline) {
			b.t.Fatalf("queue %s holds %d ready messages, want %d", queue, got, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// mustTake consumes and acks the n messages queue holds and returns them in order; it
// fails when they do not come. Consuming is much faster than basic.get on quorum queues.
func (b *broker) mustTake(queue string, n int) []amqp091.Delivery {
	b.t.Helper()
	ch := b.channel()
	defer ch.Close()
	if err := ch.Qos(max(n, 1), 0, false); err != nil {
		b.t.Fatal(err)
	}
	deliveries, err := ch.Consume(queue, "", false, false, false, false, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	out := make([]amqp091.Delivery, 0, n)
	timeout := time.After(10 * time.Second)
	for len(out) < n {
		select {
		case d := <-deliveries:
			out = append(out, d)
		case <-timeout:
			b.t.Fatalf("took %d messages from %s, want %d", len(out), queue, n)
		}
	}
	if n > 0 {
		if err := out[n-1].Ack(true); err != nil {
			b.t.Fatal(err)
		}
	}
	return out
}

func mustList(t *testing.T, url string, topo amqpadapter.Topology, f amqpadapter.DeadLetterFilter) []amqpadapter.DeadLetter {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dls, err := amqpadapter.ListDeadLetters(ctx, url, topo.DeadLetterQueue, f)
	if err != nil {
		t.Fatalf("ListDeadLetters(%+v): %v", f, err)
	}
	return dls
}

func mustReplay(t *testing.T, url string, topo amqpadapter.Topology, f amqpadapter.DeadLetterFilter) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n, err := amqpadapter.ReplayDeadLetters(ctx, url, topo, f)
	if err != nil {
		t.Fatalf("ReplayDeadLetters(%+v): %v (replayed %d)", f, err, n)
	}
	return n
}

func keysOf(dls []amqpadapter.DeadLetter) []string {
	keys := make([]string, len(dls))
	for i, d := range dls {
		keys[i] = d.RoutingKey
	}
	return keys
}

func deliveryKeys(ds []amqp091.Delivery) []string {
	keys := make([]string, len(ds))
	for i, d := range ds {
		keys[i] = d.RoutingKey
	}
	return keys
}

// sampleDeadLetters are three dead letters as the consumer writes them; the first has a
// body that is not JSON at all, the second one that is not valid JSON but holds an id.
func sampleDeadLetters() []deadLetter {
	return []deadLetter{
		{"movement.bad", amqpadapter.ReasonInvalid, "invalid: not JSON", []byte("not json")},
		{"movement.arrival", amqpadapter.ReasonConflict, "conflict: product differs",
			[]byte(`{"id":"ev-conflict","source":"WH-1",`)},
		{"movement.departure", amqpadapter.ReasonInsufficientStock, "insufficient stock: gave up after 11 attempts",
			[]byte(`{"id":"ev-stock","source":"WH-2","data":{}}`)},
	}
}

func TestListDeadLettersDoesNotConsume(t *testing.T) {
	t.Parallel()
	b := mustBroker(t)
	topo := b.mustDeclaredTopology()
	seed := sampleDeadLetters()
	b.mustSeedDeadLetters(topo, seed...)

	for round := range 3 { // listing again and again changes nothing
		dls := mustList(t, b.url, topo, amqpadapter.DeadLetterFilter{})
		if got, want := keysOf(dls), []string{"movement.bad", "movement.arrival", "movement.departure"}; !slices.Equal(got, want) {
			t.Fatalf("round %d: routing keys %v, want %v (all, in order)", round, got, want)
		}
		for i, d := range dls {
			if d.Reason != seed[i].reason || d.Detail != seed[i].detail || string(d.Body) != string(seed[i].body) ||
				d.BodySize != len(seed[i].body) || d.MessageID != "msg-"+seed[i].key || d.Attempts != 3 {
				t.Errorf("round %d: dead letter %d = %+v, want %+v", round, i, d, seed[i])
			}
			if age := time.Since(d.DeadLetteredAt); age < 30*time.Second || age > time.Hour {
				t.Errorf("round %d: dead letter %d is %s old, want about a minute (its timestamp)", round, i, age)
			}
		}
		if ids := []string{dls[0].ID, dls[1].ID, dls[2].ID}; !slices.Equal(ids, []string{"", "ev-conflict", "ev-stock"}) {
			t.Errorf("round %d: ids %q, want none, then ev-conflict read from broken JSON, then ev-stock", round, ids)
		}
		b.mustDepth(topo.DeadLetterQueue, 3)
	}

	if got := keysOf(mustList(t, b.url, topo, amqpadapter.DeadLetterFilter{Reason: amqpadapter.ReasonConflict})); !slices.Equal(got, []string{"movement.arrival"}) {
		t.Errorf("--reason conflict listed %v, want [movement.arrival]", got)
	}
	if got := keysOf(mustList(t, b.url, topo, amqpadapter.DeadLetterFilter{ID: "ev-stock"})); !slices.Equal(got, []string{"movement.departure"}) {
		t.Errorf("--id ev-stock listed %v, want [movement.departure]", got)
	}
	if got := keysOf(mustList(t, b.url, topo, amqpadapter.DeadLetterFilter{Limit: 2})); !slices.Equal(got, []string{"movement.bad", "movement.arrival"}) {
		t.Errorf("--limit 2 listed %v, want the first two", got)
	}
	if got := mustList(t, b.url, topo, amqpadapter.DeadLetterFilter{Reason: "no-such-reason"}); len(got) != 0 {
		t.Errorf("unknown reason listed %v, want nothing", keysOf(got))
	}
	b.mustDepth(topo.DeadLetterQueue, 3)
	// Still in order after all those returns.
	if got := deliveryKeys(b.mustTake(topo.DeadLetterQueue, 3)); !slices.Equal(got, []string{"movement.bad", "movement.arrival", "movement.departure"}) {
		t.Errorf("dead-letter queue after listing: %v, want all three in order", got)
	}
}

func TestListDeadLettersMissingQueue(t *testing.T) {
	t.Parallel()
	b := mustBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := amqpadapter.ListDeadLetters(ctx, b.url, "amqptest.no-such-queue", amqpadapter.DeadLetterFilter{})
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("err = %v, want a missing queue", err)
	}
}

// mustReplayed checks that the main queue holds exactly the dead letters with keys, with
// the rejection and retry headers gone and the others kept.
func (b *broker) mustReplayed(topo amqpadapter.Topology, keys ...string) {
	b.t.Helper()
	b.mustDepth(topo.Queue, len(keys))
	got := b.mustTake(topo.Queue, len(keys))
	if !slices.Equal(deliveryKeys(got), keys) {
		b.t.Fatalf("main queue holds %v, want %v", deliveryKeys(got), keys)
	}
	for _, d := range got {
		for _, h := range []string{amqpadapter.ReasonHeader, amqpadapter.DetailHeader, amqpadapter.RetryHeader,
			"x-death", "x-first-death-reason", "x-last-death-reason"} {
			if _, ok := d.Headers[h]; ok {
				b.t.Errorf("%s: replayed copy keeps header %s", d.RoutingKey, h)
			}
		}
		if header(d, "x-test-kept") != "kept" {
			b.t.Errorf("%s: replayed copy lost its other headers: %v", d.RoutingKey, d.Headers)
		}
		if d.DeliveryMode != amqp091.Persistent {
			b.t.Errorf("%s: delivery mode %d, want persistent", d.RoutingKey, d.DeliveryMode)
		}
	}
}

func TestReplayDeadLettersByID(t *testing.T) {
	t.Parallel()
	b := mustBroker(t)
	topo := b.mustDeclaredTopology()
	b.mustSeedDeadLetters(topo, sampleDeadLetters()...)

	if n := mustReplay(t, b.url, topo, amqpadapter.DeadLetterFilter{ID: "ev-conflict"}); n != 1 {
		t.Fatalf("replayed %d, want 1", n)
	}
	b.mustReplayed(topo, "movement.arrival")
	b.mustDepth(topo.DeadLetterQueue, 2)
	if got := keysOf(mustList(t, b.url, topo, amqpadapter.DeadLetterFilter{})); !slices.Equal(got, []string{"movement.bad", "movement.departure"}) {
		t.Errorf("dead letters left: %v, want the other two in order", got)
	}
	if n := mustReplay(t, b.url, topo, amqpadapter.DeadLetterFilter{ID: "ev-conflict"}); n != 0 {
		t.Errorf("second replay of the same id replayed %d, want 0", n)
	}
}

func TestReplayDeadLettersByReason(t *testing.T) {
	t.Parallel()
	b := mustBroker(t)
	topo := b.mustDeclaredTopology()
	seed := append(sampleDeadLetters(),
		deadLetter{"movement.departure.2", amqpadapter.ReasonInsufficientStock, "insufficient stock", []byte(`{"id":"ev-stock-2"}`)},
		deadLetter{"movement.departure.3", amqpadapter.ReasonInsufficientStock, "insufficient stock", []byte(`{"id":"ev-stock-3"}`)})
	b.mustSeedDeadLetters(topo, seed...)

	// The limit stops after two of the three.
	if n := mustReplay(t, b.url, topo, amqpadapter.DeadLetterFilter{Reason: amqpadapter.ReasonInsufficientStock, Limit: 2}); n != 2 {
		t.Fatalf("replayed %d, want 2 (limit)", n)
	}
	b.mustReplayed(topo, "movement.departure", "movement.departure.2")
	b.mustDepth(topo.DeadLetterQueue, 3)
	if n := mustReplay(t, b.url, topo, amqpadapter.DeadLetterFilter{Reason: amqpadapter.ReasonInsufficientStock}); n != 1 {
		t.Fatalf("replayed %d, want the last one", n)
	}
	b.mustReplayed(topo, "movement.departure.3")
	if got := keysOf(mustList(t, b.url, topo, amqpadapter.DeadLetterFilter{})); !slices.Equal(got, []string{"movement.bad", "movement.arrival"}) {
		t.Errorf("dead letters left: %v, want the invalid and the conflict", got)
	}
}

// TestReplayBrokerDeadLetter replays a message the broker dead-lettered itself: its reason
// and original routing key come from x-death, even when the dead-letter routing key
// replaced the delivery's.
func TestReplayBrokerDeadLetter(t *testing.T) {
	t.Parallel()
	b := mustBroker(t)
	topo := b.mustDeclaredTopology()
	ch := b.channel()
	defer ch.Close()
	src, err := ch.QueueDeclare("", false, true, true, false, amqp091.Table{
		"x-dead-letter-exchange": topo.DeadLetterExchange, "x-dead-letter-routing-key": "rewritten",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.PublishWithContext(context.Background(), "", src.Name, false, false, amqp091.Publishing{
		Headers: amqp091.Table{"x-test-kept": "kept"}, Body: []byte(`{"id":"ev-broker"}`),
	}); err != nil {
		t.Fatal(err)
	}
	var d amqp091.Delivery
	waitFor(t, 10*time.Second, "message in the source queue", func() bool {
		var ok bool
		d, ok, err = ch.Get(src.Name, false)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	})
	if err := d.Nack(false, false); err != nil { // rejected: the broker dead-letters it
		t.Fatal(err)
	}
	b.mustDepth(topo.DeadLetterQueue, 1)

	dls := mustList(t, b.url, topo, amqpadapter.DeadLetterFilter{})
	if len(dls) != 1 || dls[0].ID != "ev-broker" || dls[0].Reason != "rejected" || dls[0].RoutingKey != src.Name ||
		!strings.Contains(dls[0].Detail, src.Name) || dls[0].DeadLetteredAt.IsZero() {
		t.Fatalf("dead letters = %+v, want ev-broker, rejected from %s with its routing key", dls, src.Name)
	}
	if n := mustReplay(t, b.url, topo, amqpadapter.DeadLetterFilter{Reason: "rejected"}); n != 1 {
		t.Fatalf("replayed %d, want 1", n)
	}
	b.mustReplayed(topo, src.Name)
	b.mustDepth(topo.DeadLetterQueue, 0)
}

// TestReplayedDeadLetterIsApplied runs the whole loop: a departure without stock is
// dead-lettered as insufficient_stock, an arrival supplies the stock, and the replayed
// departure is then applied.
func TestReplayedDeadLetterIsApplied(t *testing.T) {
	t.Parallel()
	b := mustBroker(t)
	topo := b.mustDeclaredTopology()
	rec := newRecorder()
	b.mustStartConsumer(topo, rec, func(o *amqpadapter.ConsumerOptions) { o.RetryLimit = 0 })
	pub := b.mustPublisher()
	m, w, p := newIDs()
	departure := movementEvent(t, domain.Departure, m, w, p, 4)

	b.publish(pub, topo, "movement.departure", amqpadapter.EncodeEvent(departure))
	b.mustDepth(topo.DeadLetterQueue, 1)
	dls := mustList(t, b.url, topo, amqpadapter.DeadLetterFilter{})
	if len(dls) != 1 || dls[0].ID != departure.ID || dls[0].Reason != amqpadapter.ReasonInsufficientStock {
		t.Fatalf("dead letters = %+v, want the departure as insufficient_stock", dls)
	}

	supply, _, _ := newIDs()
	b.publish(pub, topo, "movement.arrival", amqpadapter.EncodeEvent(movementEvent(t, domain.Arrival, supply, w, p, 10)))
	waitFor(t, 10*time.Second, "supply recorded", func() bool { return rec.stock(t, w, p) == 10 })

	if n := mustReplay(t, b.url, topo, amqpadapter.DeadLetterFilter{Reason: amqpadapter.ReasonInsufficientStock}); n != 1 {
		t.Fatalf("replayed %d, want 1", n)
	}
	waitFor(t, 10*time.Second, "replayed departure applied", func() bool { return rec.stock(t, w, p) == 6 })
	b.mustDepth(topo.DeadLetterQueue, 0)
}

// mustManyDeadLetters seeds n invalid dead letters, more than one scan window holds, and
// returns their routing keys in order. Every third is a conflict.
func (b *broker) mustManyDeadLetters(topo amqpadapter.Topology, n int) []string {
	b.t.Helper()
	seed := make([]deadLetter, n)
	keys := make([]string, n)
	for i := range seed {
		keys[i] = fmt.Sprintf("movement.%04d", i)
		reason := amqpadapter.ReasonInvalid
		if i%3 == 0 {
			reason = amqpadapter.ReasonConflict
		}
		seed[i] = deadLetter{keys[i], reason, "detail", []byte(`{"id":"` + keys[i] + `"}`)}
	}
	b.mustSeedDeadLetters(topo, seed...)
	return keys
}

// TestDeadLettersLongQueue lists and replays a queue longer than one scan window: the
// order holds across windows.
func TestDeadLettersLongQueue(t *testing.T) {
	t.Parallel()
	b := mustBroker(t)
	topo := b.mustDeclaredTopology()
	const n = 2500
	keys := b.mustManyDeadLetters(topo, n)

	start := time.Now()
	if got := mustList(t, b.url, topo, amqpadapter.DeadLetterFilter{Limit: 5}); !slices.Equal(keysOf(got), keys[:5]) {
		t.Fatalf("--limit 5 listed %v, want %v", keysOf(got), keys[:5])
	}
	t.Logf("listed a queue of %d in %s", n, time.Since(start))
	if got := mustList(t, b.url, topo, amqpadapter.DeadLetterFilter{}); !slices.Equal(keysOf(got), keys) {
		ks := keysOf(got)
		var runs []string
		for i := 0; i < len(ks); {
			j := i
			for j+1 < len(ks) && ks[j+1] > ks[j] {
				j++
			}
			runs = append(runs, ks[i]+".."+ks[j])
			i = j + 1
		}
		t.Fatalf("listed %d dead letters, want all %d in order: runs %v", len(got), n, runs)
	}

	var conflicts, others []string
	for i, k := range keys {
		if i%3 == 0 {
			conflicts = append(conflicts, k)
		} else {
			others = append(others, k)
		}
	}
	if got := mustReplay(t, b.url, topo, amqpadapter.DeadLetterFilter{Reason: amqpadapter.ReasonConflict}); got != len(conflicts) {
		t.Fatalf("replayed %d, want %d", got, len(conflicts))
	}
	b.mustReplayed(topo, conflicts...)
	b.mustDepth(topo.DeadLetterQueue, len(others))
	if got := deliveryKeys(b.mustTake(topo.DeadLetterQueue, len(others))); !slices.Equal(got, others) {
		t.Errorf("dead-letter queue after the replay holds %d messages, want the %d others in order", len(got), len(others))
	}
}

// TestListDeadLettersInterrupted stops a list in the middle of a long queue: nothing is
// lost or doubled (the messages taken go back behind the others).
// TestListDeadLettersInterrupted cancels a list while the scan holds messages: it must
// return the cancellation and leave every dead letter in the queue. A list that finishes
// before the cancel lands proves nothing, so it tries again, a few times.
func TestListDeadLettersInterrupted(t *testing.T) {
	t.Parallel()
	b := mustBroker(t)
	topo := b.mustDeclaredTopology()
	const n, attempts = 3000, 5
	keys := b.mustManyDeadLetters(topo, n)

	var err error
	for attempt := 1; attempt <= attempts; attempt++ {
		ctx, cancel := context.WithCancel(context.Background())
		cancelled := make(chan struct{})
		go func() {
			defer close(cancelled)
			// Cancel once the scan holds some messages.
			for ctx.Err() == nil && b.ready(topo.DeadLetterQueue) == n {
				time.Sleep(time.Millisecond)
			}
			cancel()
		}()
		var dls []amqpadapter.DeadLetter
		dls, err = amqpadapter.ListDeadLetters(ctx, b.url, topo.DeadLetterQueue, amqpadapter.DeadLetterFilter{})
		cancel()
		<-cancelled
		b.mustDepth(topo.DeadLetterQueue, n)
		if err != nil {
			break
		}
		t.Logf("attempt %d: the list of %d letters ended before the cancel landed", attempt, len(dls))
		if attempt == attempts {
			t.Fatalf("in %d attempts ListDeadLetters never reported the cancellation: it finished first every time, or ignored it", attempts)
		}
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("interrupted list: err = %v, want one wrapping context.Canceled", err)
	}
	got := deliveryKeys(b.mustTake(topo.DeadLetterQueue, n))
	slices.Sort(got)
	if !slices.Equal(got, keys) {
		t.Errorf("dead-letter queue after an interrupted list holds %d messages, want the same %d", len(got), n)
	}
}

// TestScanCancelledOnClosedConnection: once a cancel has closed the scan's connection,
// the next take (here one that needs a new window) reports the cancellation, not the
// closed channel it meets. CI once saw "channel/connection is not open" instead.
func TestScanCancelledOnClosedConnection(t *testing.T) {
	t.Parallel()
	b := mustBroker(t)
	topo := b.mustDeclaredTopology()
	b.mustManyDeadLetters(topo, 1500)
	for _, n := range []int{10, 1000} { // within the first window, and at its end
		// The scan before held a window unacked: its messages go back asynchronously, and
		// a scan takes the depth it sees at start (CI once saw the second scan end early).
		b.mustDepth(topo.DeadLetterQueue, 1500)
		if err := amqpadapter.ScanNextAfterCancel(b.url, topo.DeadLetterQueue, n); !errors.Is(err, context.Canceled) {
			t.Errorf("take after %d and a cancel: err = %v, want one wrapping context.Canceled", n, err)
		}
	}
	b.mustDepth(topo.DeadLetterQueue, 1500)
}
