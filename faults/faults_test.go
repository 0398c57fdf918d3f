//go:build faults

package faults_test

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp091 "github.com/rabbitmq/amqp091-go"

	amqpadapter "warehouse/adapters/amqp"
	"warehouse/domain"
)

// Each test below injects one fault while events flow, lets the service recover and then
// checks the ledger (settle): exact event count and stock per row, a sound audit, no
// negative row, nothing dead-lettered. It logs one line, "FAULT <name>: …", with the
// recovery time and the totals it checked.

// TestKill9 kills the consumer with SIGKILL mid-stream, at the worst moment: right after
// a batch committed, before its acks reach the broker (a proxy holds them back). The
// broker redelivers that batch; the restarted consumer must count it once.
func TestKill9(t *testing.T) {
	s := newScenario(t, "kill9")
	st := newStream(t, 10000, 0) // no re-sent ids, so that a stored redelivery means a lost ack
	prx, viaProxy := s.mustProxy()
	// A backlog first, so that the kill lands in full batches of 1000 with 2000 prefetched,
	// then a paced stream that keeps flowing while the consumer is down.
	l := s.publish(st.msgs, loadBatch, 5000, loadPace)
	l.waitConfirmed(5000)
	c := s.startConsumerVia("consumer", viaProxy)
	m := s.watch(c)
	s.waitUntil("the consumer has stored 1500 events", func() bool { return s.eventCount() >= 1500 })

	prx.held.Store(true) // from now on the consumer's acks do not reach the broker
	time.Sleep(20 * time.Millisecond)
	base := s.eventCount()
	s.waitUntil("a batch commits while its acks are held", func() bool { return s.eventCount() > base })
	c.signal(syscall.SIGKILL)
	state := c.waitExit(5 * time.Second)
	prx.cut() // the held acks die with the connection
	prx.held.Store(false)
	if state == nil {
		s.fatalf("the consumer did not die of SIGKILL within 5s")
	}
	if ws, ok := state.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		s.fatalf("the consumer ended with %v, not SIGKILL", state)
	}
	killed := time.Now()
	killedAt := s.eventCount()
	// What the dead consumer held comes back redelivered; the stored ones among them were
	// committed but never acked, and the restart must not count them again.
	redelivered, storedRedelivered, _ := s.inspectQueue()
	if storedRedelivered == 0 {
		s.errorf("no redelivered message is stored: the kill did not land between a commit and its ack, as this test means it to")
	}
	s.sleep(time.Second - time.Since(killed)) // down for at least 1s while events keep arriving
	restarted := time.Now()
	c.start()
	l.wait()
	tt := s.settle(want{stored: st.stored, stock: st.stock})

	rec, ok := m.commitAfter(restarted)
	ready, rok := m.readyAfter(restarted)
	t.Logf("FAULT kill9: recovered in %s (restart to first commit; /readyz 200 after %s); killed after a commit, acks held back, with %d of %d events stored; down %.2fs; "+
		"redelivered=%d of which already stored (committed, ack lost)=%d; duplicates skipped after restart=%.0f; %s",
		secs(rec, ok), secs(ready, rok), killedAt, st.stored, restarted.Sub(killed).Seconds(),
		redelivered, storedRedelivered, c.metric("movements_duplicates_total"), tt)
	if !ok {
		s.errorf("no commit after the restart")
	}
}

// TestCloseConnections closes every connection of the broker (the consumer's and the
// publishers') mid-stream: the consumer must reconnect and lose nothing.
func TestCloseConnections(t *testing.T) {
	s := newScenario(t, "close_conns")
	st := newStream(t, loadEvents, 0.03)
	c := s.startConsumer("consumer")
	m := s.watch(c)
	l := s.publish(st.msgs, loadBatch, 0, loadPace)
	l.waitConfirmed(len(st.msgs) / 3)

	injected := time.Now()
	if out, err := s.env.rmq.ctl(s.ctx, "close_all_connections", "--global", "test"); err != nil {
		s.fatalf("%v: %s", err, out)
	}
	closed := time.Now()
	s.waitUntil("the consumer reports the lost connection", func() bool {
		_, ok := c.firstLog("consumer lost the broker, reconnecting", injected)
		return ok
	})
	lost, _ := c.firstLog("consumer lost the broker, reconnecting", injected)
	s.waitUntil("the consumer reconnects", func() bool {
		_, ok := c.firstLog("consumer connected", lost)
		return ok
	})
	reconnected, _ := c.firstLog("consumer connected", lost)
	l.wait()
	tt := s.settle(want{stored: st.stored, stock: st.stock})

	rec, ok := m.commitAfter(reconnected)
	t.Logf("FAULT close_all_connections: recovered in %.2fs (connection lost to consumer reconnected; first commit %s after that); "+
		"rabbitmqctl took %.2fs; publisher batches re-published=%d; %s",
		reconnected.Sub(lost).Seconds(), secs(rec, ok), closed.Sub(injected).Seconds(), l.failures.Load(), tt)
	if c.starts != 1 || !c.alive() {
		s.errorf("the consumer process exited instead of reconnecting")
	}
}

// TestQueueDeleted deletes the queue under the consumer while a load of supplies flows
// into it: what was in the queue is lost by definition, but the consumer must declare the
// queue again and resume, and every event published afterwards must be applied exactly.
func TestQueueDeleted(t *testing.T) {
	s := newScenario(t, "queue_deleted")
	c := s.startConsumer("consumer")
	m := s.watch(c)
	sacrificialKeys := []domain.StockKey{
		{Warehouse: domain.WarehouseID(uuid.New()), Product: domain.ProductID(uuid.New())},
		{Warehouse: domain.WarehouseID(uuid.New()), Product: domain.ProductID(uuid.New())},
	}
	doomed := supplyStream(3000, sacrificialKeys)
	l := s.publish(doomed.msgs, loadBatch, 0, loadPace)
	l.waitConfirmed(len(doomed.msgs) / 3)
	s.waitUntil("the consumer has stored events", func() bool { return s.eventCount() > 0 })

	ch := s.channel()
	deleted := time.Now()
	purged, err := ch.QueueDelete(s.topo.Queue, false, false, false)
	if err != nil {
		s.fatalf("delete queue: %v", err)
	}
	_ = ch.Close()
	l.stop()
	var consumers int
	s.waitUntil("the consumer declares the queue again and consumes from it", func() bool {
		_, n, exists, err := s.queueState(s.topo.Queue)
		consumers = n
		return err == nil && exists && n >= 1
	})
	redeclared := time.Now()

	st := newStream(t, loadEvents, 0.03)
	published := time.Now()
	l2 := s.publish(st.msgs, loadBatch, 0, loadPace)
	l2.wait()
	tt := s.settle(want{
		stored: st.stored, storedMax: st.stored + int64(len(doomed.msgs)),
		stock: st.stock, otherRows: true,
	})
	if n := s.countEventsOf(st.warehouses); n != st.stored {
		s.errorf("the ledger holds %d events of the load published after the deletion, want exactly %d", n, st.stored)
	}
	doomedStored := tt.events - st.stored
	rec, ok := m.commitAfter(published)
	t.Logf("FAULT queue_deleted: recovered in %.2fs (deletion to queue declared again with %d consumer; first commit of the new load %s after publishing it); "+
		"deleted with %d ready messages; supplies in flight: %d confirmed before the deletion, %d stored (the rest went with the queue); "+
		"new load: events=%d/%d exact, stock_total=%d exact; %s",
		redeclared.Sub(deleted).Seconds(), consumers, secs(rec, ok), purged, l.confirmed.Load(), doomedStored,
		s.countEventsOf(st.warehouses), st.stored, st.stockTotal(), tt)
	if !c.alive() {
		s.errorf("the consumer process exited")
	}
}

// TestBrokerRestart stops the RabbitMQ application for 5 s while events flow: the
// consumer reports not ready, reconnects once it is back, and the publisher re-publishes
// what was not confirmed.
func TestBrokerRestart(t *testing.T) {
	s := newScenario(t, "broker_restart")
	t.Cleanup(func() { // whatever happened, leave the broker running
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if out, err := s.env.rmq.ctl(ctx, "start_app"); err != nil {
			s.errorf("restore RabbitMQ: %v: %s", err, out)
		}
	})
	st := newStream(t, loadEvents, 0.03)
	c := s.startConsumer("consumer")
	m := s.watch(c)
	l := s.publish(st.msgs, loadBatch, 0, loadPace)
	l.waitConfirmed(len(st.msgs) / 3)

	stopping := time.Now()
	if out, err := s.env.rmq.ctl(s.ctx, "stop_app"); err != nil {
		s.fatalf("%v: %s", err, out)
	}
	stopped := time.Now()
	s.sleep(5 * time.Second)
	if out, err := s.env.rmq.ctl(s.ctx, "start_app"); err != nil {
		s.fatalf("%v: %s", err, out)
	}
	started := time.Now()
	l.wait()
	tt := s.settle(want{stored: st.stored, stock: st.stock})

	notReady := m.notReady(stopped, started)
	ready, rok := m.readyAfter(started)
	rec, ok := m.commitAfter(started)
	reconnected, cok := c.firstLog("consumer connected", stopped)
	t.Logf("FAULT broker_restart: recovered in %s (start_app returned to first commit; to consumer reconnected %s, to /readyz 200 %s); "+
		"stop_app took %.2fs, broker down %.2fs (5s + start_app); /readyz 503 in %d samples while down; publisher batches re-published=%d; %s",
		secs(rec, ok), secs(reconnected.Sub(started), cok), secs(ready, rok),
		stopped.Sub(stopping).Seconds(), started.Sub(stopped).Seconds(), notReady, l.failures.Load(), tt)
	if notReady == 0 {
		s.errorf("/readyz never answered 503 while the broker was down")
	}
	if !rok {
		s.errorf("/readyz did not answer 200 again after the broker came back")
	}
	if !c.alive() {
		s.errorf("the consumer process exited")
	}
}

// TestDatabaseOutage stops PostgreSQL for 10 s while events flow: the consumer holds its
// batch, /readyz answers 503 and then 200 again, nothing is dead-lettered.
func TestDatabaseOutage(t *testing.T) {
	s := newScenario(t, "db_outage")
	pg := s.env.pg
	pg.restartAtEnd(t)
	st := newStream(t, loadEvents, 0.03)
	c := s.startConsumer("consumer")
	m := s.watch(c)
	l := s.publish(st.msgs, loadBatch, 0, loadPace)
	l.waitConfirmed(len(st.msgs) / 3)
	s.waitUntil("the consumer has stored events", func() bool { return s.eventCount() > 0 })

	stopping := time.Now()
	if err := pg.stopFast(s.ctx); err != nil {
		s.fatalf("%v", err)
	}
	stopped := time.Now()
	s.sleep(8 * time.Second)
	// The held batch shows in the metrics and in the readiness body, with its reason.
	heldBatches := c.metric("consumer_held_batches")
	pausedState := c.metric(`consumer_state{state="paused"}`)
	heldBody := c.readyBody()
	s.sleep(2 * time.Second)
	if err := pg.start(s.ctx); err != nil {
		s.fatalf("%v", err)
	}
	started := time.Now()
	l.wait()
	tt := s.settle(want{stored: st.stored, stock: st.stock})
	if pausedState != 1 {
		s.errorf(`while PostgreSQL was down: consumer_state{state="paused"} = %v, want 1`, pausedState)
	}
	if heldBatches != 1 || !strings.Contains(heldBody, `"reason":"store unavailable"`) {
		s.errorf("while PostgreSQL was down: consumer_held_batches = %v, /readyz body %s; want 1 held batch, reason store unavailable", heldBatches, heldBody)
	}

	notReady := m.notReady(stopped, started)
	ready, rok := m.readyAfter(started)
	rec, ok := m.commitAfter(started)
	held := 0
	for _, r := range c.logs() {
		if r.Msg == "batch held, store unavailable" {
			held++
		}
	}
	t.Logf("FAULT db_outage: recovered in %s (pg_ctl start returned to first commit; to /readyz 200 %s); "+
		"pg_ctl stop -m fast took %.2fs, down %.2fs; /readyz 503 in %d samples while down; %d held-batch retries logged; %s",
		secs(rec, ok), secs(ready, rok), stopped.Sub(stopping).Seconds(), started.Sub(stopped).Seconds(), notReady, held, tt)
	if notReady == 0 {
		s.errorf("/readyz never answered 503 while PostgreSQL was down")
	}
	if !rok {
		s.errorf("/readyz did not answer 200 again after PostgreSQL came back")
	}
	if !c.alive() || c.starts != 1 {
		s.errorf("the consumer process exited during the outage")
	}
}

// TestTerminateBackends terminates the consumer's database sessions three times while
// events flow.
func TestTerminateBackends(t *testing.T) {
	s := newScenario(t, "terminate")
	st := newStream(t, loadEvents, 0.03)
	c := s.startConsumer("consumer")
	m := s.watch(c)
	l := s.publish(st.msgs, loadBatch, 0, loadPace)
	l.waitConfirmed(len(st.msgs) / 4)
	s.waitUntil("the consumer has stored events", func() bool { return s.eventCount() > 0 })

	var terminated []int64
	var at []time.Time
	for i := range 3 {
		if i > 0 {
			s.sleep(700 * time.Millisecond)
		}
		var n int64
		err := s.probe.QueryRowContext(s.ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE application_name = 'warehouse' AND datname = current_database() AND pid <> pg_backend_pid()`).Scan(&n)
		if err != nil {
			s.fatalf("pg_terminate_backend: %v", err)
		}
		at = append(at, time.Now())
		terminated = append(terminated, n)
	}
	l.wait()
	tt := s.settle(want{stored: st.stored, stock: st.stock})

	var total int64
	var rounds []string
	var worst time.Duration
	for i, t0 := range at {
		total += terminated[i]
		d, ok := m.commitAfter(t0)
		rounds = append(rounds, fmt.Sprintf("%d sessions→%s", terminated[i], secs(d, ok)))
		worst = max(worst, d)
	}
	t.Logf("FAULT pg_terminate_backend: recovered in %.2fs (worst of 3 rounds, termination to next commit: %s); %s",
		worst.Seconds(), strings.Join(rounds, ", "), tt)
	if total == 0 {
		s.errorf("no warehouse session was found to terminate")
	}
	if !c.alive() || c.starts != 1 {
		s.errorf("the consumer process exited")
	}
}

// TestRacingConsumers runs three consumer processes on one queue and six hot stock rows:
// the ledger must be the one a single consumer would build, with no deadlock.
func TestRacingConsumers(t *testing.T) {
	s := newScenario(t, "race3")
	st := newStream(t, 12000, 0.03)
	cs := []*consumer{s.startConsumer("consumer-1"), s.startConsumer("consumer-2"), s.startConsumer("consumer-3")}
	l := s.publish(st.msgs, 500, len(st.msgs), 0)
	l.wait()
	published := time.Now()
	tt := s.settle(want{stored: st.stored, stock: st.stock})
	settled := time.Since(published)

	var deadlocks, serialization int
	var stored, retried, dups float64
	for _, c := range cs {
		// "deadlock detected" is PostgreSQL's message, 40P01 its code; 40001 is a
		// serialization failure (the store reports codes as "postgres 40P01: …").
		n, line := c.grep("deadlock", "postgres 40P01")
		if n > 0 {
			s.errorf("%s logged %d lines about deadlocks, the first: %s", c.name, n, line)
		}
		deadlocks += n
		n, _ = c.grep("postgres 40001")
		serialization += n
		stored += c.metric("movements_stored_total")
		retried += c.metric("movements_retried_total")
		dups += c.metric("movements_duplicates_total")
		if !c.alive() {
			s.errorf("%s exited", c.name)
		}
	}
	t.Logf("FAULT race3: settled in %.2fs (last confirm to a complete, quiet ledger; no outage to recover from; 3 consumers, %d hot stock rows); "+
		"deadlocks=%d serialization_failures=%d "+
		"stored by consumer %v/%v/%v sum=%.0f retried=%.0f duplicates=%.0f; %s",
		settled.Seconds(), len(st.stock), deadlocks, serialization,
		cs[0].metric("movements_stored_total"), cs[1].metric("movements_stored_total"), cs[2].metric("movements_stored_total"),
		stored, retried, dups, tt)
	if stored != float64(st.stored) {
		s.errorf("the consumers' movements_stored_total add up to %.0f, want %d", stored, st.stored)
	}
}

// TestSigtermUnderLoad stops the consumer with SIGTERM while events flow: it must exit 0
// within SHUTDOWN_TIMEOUT with its last batch committed and acked, so that no message it
// leaves in the queue has already been stored.
func TestSigtermUnderLoad(t *testing.T) {
	s := newScenario(t, "sigterm")
	st := newStream(t, 10000, 0) // no re-sent ids: a redelivered message is stored only if its ack was lost
	// A backlog first, so that SIGTERM lands in a full batch with more prefetched.
	l := s.publish(st.msgs, loadBatch, 5000, loadPace)
	l.waitConfirmed(5000)
	c := s.startConsumer("consumer")
	m := s.watch(c)
	s.waitUntil("the consumer has stored 1500 events", func() bool { return s.eventCount() >= 1500 })

	termed := time.Now()
	c.signal(syscall.SIGTERM)
	state := c.waitExit(shutdownTimeout + 5*time.Second)
	exit := time.Since(termed)
	if state == nil {
		s.fatalf("the consumer did not exit within %s of SIGTERM", shutdownTimeout+5*time.Second)
	}
	if !state.Success() {
		s.errorf("the consumer exited with %v after SIGTERM, want 0", state)
	}
	if exit > shutdownTimeout {
		s.errorf("the consumer took %s to exit, SHUTDOWN_TIMEOUT is %s", exit, shutdownTimeout)
	}
	if _, ok := c.firstLog("stopped", termed); !ok {
		s.errorf(`the consumer did not log "stopped"`)
	}
	storedAtExit := s.eventCount()
	l.wait()

	// Every message now in the queue: those the consumer had prefetched come back
	// redelivered. None of them may be stored, or a committed batch went unacked.
	redelivered, storedRedelivered, inQueue := s.inspectQueue()
	if storedRedelivered != 0 {
		s.errorf("%d of the %d redelivered messages are already stored: the last batch was committed but not acked", storedRedelivered, redelivered)
	}

	restarted := time.Now()
	c.start()
	tt := s.settle(want{stored: st.stored, stock: st.stock})
	rec, ok := m.commitAfter(restarted)
	t.Logf("FAULT sigterm: recovered in %s (restart to first commit); exited 0 in %.2fs of SIGTERM (SHUTDOWN_TIMEOUT %s); %d events stored at exit; "+
		"queue after exit: %d messages, %d redelivered, %d of those already stored (committed but unacked); %s",
		secs(rec, ok), exit.Seconds(), shutdownTimeout, storedAtExit, inQueue, redelivered, storedRedelivered, tt)
}

// inspectQueue reads every ready message of the queue (nothing consumes it now), counts
// the redelivered ones and how many of those the ledger already holds, then gives them
// all back by closing the channel.
func (s *scenario) inspectQueue() (redelivered int, storedRedelivered int64, total int) {
	s.t.Helper()
	// Once the broker has seen the consumer go, what it held is back in the queue.
	var ready int
	s.waitUntil("the broker sees no consumer on the queue", func() bool {
		r, consumers, exists, err := s.queueState(s.topo.Queue)
		ready = r
		return err == nil && exists && consumers == 0
	})
	ch := s.channel()
	defer ch.Close() // requeues everything
	if err := ch.Qos(ready+10, 0, false); err != nil {
		s.fatalf("%v", err)
	}
	deliveries, err := ch.Consume(s.topo.Queue, "faults-inspector", false, false, false, false, nil)
	if err != nil {
		s.fatalf("%v", err)
	}
	var ids []domain.Identity
	timeout := time.After(10 * time.Second)
	for total < ready {
		var d amqp091.Delivery
		select {
		case d = <-deliveries:
		case <-timeout:
			s.fatalf("read %d of %d ready messages in 10s", total, ready)
		}
		total++
		if d.Redelivered {
			redelivered++
			if e, err := amqpadapter.DecodeEvent(d.Body); err == nil {
				ids = append(ids, e.Identity())
			}
		}
	}
	return redelivered, s.storedAmong(ids), total
}
