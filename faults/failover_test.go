//go:build faults

package faults_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amqpadapter "warehouse/adapters/amqp"
	"warehouse/adapters/postgres"
	"warehouse/ports"
)

// Failover: a private primary and a streaming standby of it, `warehouse run` on a
// multi-host DATABASE_URL with target_session_attrs=read-write, the primary killed
// (pg_ctl stop -m immediate) while events flow and the standby promoted.

const (
	failoverEvents = 20000
	// failoverPromoteAfter is how long the primary is down before the standby is
	// promoted: the time an operator or a failover manager takes to decide.
	failoverPromoteAfter = 2 * time.Second
	// failoverResumeWithin bounds the time from the promotion to the first commit.
	failoverResumeWithin = 15 * time.Second
	// failoverLag is how long the standby receives nothing before the primary dies.
	failoverLag = 1500 * time.Millisecond
)

// pgPair is a primary and its standby, which streams the primary's WAL through a proxy
// that can hold it back (what the primary sends is held; see proxy).
type pgPair struct {
	primary, standby *pgInstance
	wal              *proxy
}

// startPGPair starts a primary and a standby made by pg_basebackup -R, named standby1 in
// its primary_conninfo; with synchronous, the primary waits for standby1 to have the WAL
// of every commit on disk before it reports the commit (synchronous_commit = on).
func startPGPair(t *testing.T, name string, synchronous bool) *pgPair {
	t.Helper()
	e := mustEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*pgStartTimeout)
	defer cancel()
	ports := make([]int, 2)
	for i := range ports {
		p, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = p
	}
	dir := filepath.Join(e.dir, "pair-"+name+"-"+randHex(3))
	primary, err := newPG(ctx, filepath.Join(dir, "primary"), ports[0], true)
	if err != nil {
		t.Fatal(err)
	}
	if synchronous {
		primary.extra = "-c synchronous_standby_names=standby1 -c synchronous_commit=on"
	}
	pair := &pgPair{primary: primary}
	t.Cleanup(func() {
		for _, p := range []*pgInstance{pair.standby, pair.primary} {
			if p != nil {
				if err := p.stop(); err != nil {
					t.Errorf("stop %s: %v", p.dir, err)
				}
			}
		}
		_ = os.RemoveAll(dir)
	})
	if err := primary.start(ctx); err != nil {
		t.Fatal(err)
	}
	standby, err := newPG(ctx, filepath.Join(dir, "standby"), ports[1], false)
	if err != nil {
		t.Fatal(err)
	}
	backup := asUser(ctx, "postgres", standby.dir, nil, filepath.Join(pgBinDir, "pg_basebackup"),
		"-h", "127.0.0.1", "-p", fmt.Sprint(primary.port), "-U", "postgres", "-D", standby.data, "-R", "-X", "stream", "-c", "fast")
	if out, err := backup.CombinedOutput(); err != nil {
		t.Fatalf("pg_basebackup: %v\n%s", err, out)
	}
	// The last setting in postgresql.auto.conf wins: name the standby for
	// synchronous_standby_names, and stream through the proxy.
	pair.wal = startProxy(t, fmt.Sprintf("127.0.0.1:%d", primary.port), true)
	conninfo := fmt.Sprintf("\nprimary_conninfo = 'host=127.0.0.1 port=%d user=postgres application_name=standby1'\n", pair.wal.port())
	f, err := os.OpenFile(filepath.Join(standby.data, "postgresql.auto.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(conninfo); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	pair.standby = standby
	if err := standby.start(ctx); err != nil {
		t.Fatal(err)
	}
	// Streaming (and, when asked, synchronous) before anything is written.
	want := "async"
	if synchronous {
		want = "sync"
	}
	probe := primary.url("postgres")
	deadline := time.Now().Add(30 * time.Second)
	for {
		state, err := psqlValue(ctx, probe, "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby1'")
		if err == nil && state == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("standby1 is not %s after 30 s (pg_stat_replication: %q, %v)", want, state, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return pair
}

// url is the multi-host URL of database name: the primary first, then the standby, and
// only a read-write session is used.
func (p *pgPair) url(name string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d,127.0.0.1:%d/%s?sslmode=disable&target_session_attrs=read-write&connect_timeout=2",
		p.primary.port, p.standby.port, name)
}

// promote makes the standby a primary.
func (p *pgPair) promote(ctx context.Context) error {
	cmd := asUser(ctx, "postgres", p.standby.dir, nil, filepath.Join(pgBinDir, "pg_ctl"), "-D", p.standby.data, "-w", "-t", "30", "promote")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pg_ctl promote: %w\n%s", err, out)
	}
	return nil
}

// psqlValue runs query through psql and returns its single value.
func psqlValue(ctx context.Context, url, query string) (string, error) {
	out, err := asUser(ctx, "postgres", os.TempDir(), nil, filepath.Join(pgBinDir, "psql"), "-XAtq", "-d", url, "-c", query).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// TestPostgresFailover kills the primary under load and promotes the standby. With
// synchronous replication nothing is lost: every event is stored exactly once on the new
// primary. With asynchronous replication the commits the standby had not received when
// the primary died are gone, though the consumer acked them: the test counts them, and
// checks that nothing is counted twice and that the ledger is sound. Both are what the
// README's "High availability" section says.
func TestPostgresFailover(t *testing.T) {
	for _, synchronous := range []bool{true, false} {
		name := "async"
		if synchronous {
			name = "sync"
		}
		t.Run(name, func(t *testing.T) { testFailover(t, synchronous) })
	}
}

func testFailover(t *testing.T, synchronous bool) {
	name := "failover_async"
	if synchronous {
		name = "failover_sync"
	}
	pair := startPGPair(t, name, synchronous)
	if synchronous {
		checkReadWriteOnly(t, pair)
	}
	s := newScenarioOn(t, name, scenarioOn{dbURL: pair.url})
	st := newStream(t, failoverEvents, 0)
	c := s.startProcess("run", "run", s.amqpURL)
	m := s.watch(c)
	l := s.publish(st.msgs, loadBatch, 0, loadPace)
	l.waitConfirmed(len(st.msgs) / 3)
	s.waitUntil("the service has stored events", func() bool { return s.eventCount() > 0 })

	// The standby falls behind before the primary dies: for failoverLag it receives
	// none of the primary's WAL, so the commits of that moment exist on the primary
	// alone. With synchronous replication the primary waits for the standby and reports
	// none of them; with asynchronous replication it reports them, and the service acks
	// their deliveries. Then the primary dies, and what the proxy held is dropped.
	pair.wal.held.Store(true)
	s.sleep(failoverLag)
	before := s.eventCount()
	stopping := time.Now()
	if err := pair.primary.stop(); err != nil {
		s.fatalf("%v", err)
	}
	stopped := time.Now()
	pair.wal.cut()
	pair.wal.held.Store(false)
	s.sleep(failoverPromoteAfter)
	if err := pair.promote(s.ctx); err != nil {
		s.fatalf("%v", err)
	}
	promoted := time.Now()
	l.wait()

	var tt totals
	lost := int64(0)
	if synchronous {
		tt = s.settle(want{stored: st.stored, stock: st.stock})
	} else {
		// What the standby had not received is gone and will not come again: wait until
		// the queues are empty and the ledger still, then check that what is there is
		// sound and counted once. A lost departure can leave a later one short of stock,
		// retried and finally dead-lettered: any dead letter must say insufficient_stock.
		tt = s.settleLossy(st.stored)
		lost = st.stored - tt.events
	}

	notReady := m.notReady(stopped, promoted)
	ready, rok := m.readyAfter(promoted)
	rec, ok := m.commitAfter(promoted)
	t.Logf("FAULT %s: primary killed with %d events stored (pg_ctl stop -m immediate took %.2fs), standby promoted %.1fs later; "+
		"ingest resumed %s after the promotion (first commit), /readyz 200 again after %s; /readyz 503 in %d samples while no primary; "+
		"acked events lost: %d of %d; %s",
		name, before, stopped.Sub(stopping).Seconds(), promoted.Sub(stopped).Seconds(), secs(rec, ok), secs(ready, rok), notReady,
		lost, st.stored, tt)
	if notReady == 0 {
		s.errorf("/readyz never answered 503 while there was no primary")
	}
	if !rok {
		s.errorf("/readyz did not answer 200 again after the promotion")
	}
	if !ok || rec > failoverResumeWithin {
		s.errorf("ingest resumed %s after the promotion, want within %s", secs(rec, ok), failoverResumeWithin)
	}
	if synchronous && lost != 0 {
		s.errorf("synchronous replication lost %d acked events", lost)
	}
	// What the README says of asynchronous replication: the commits the standby had not
	// received are lost, acked though they were. The standby received nothing for
	// failoverLag while events were stored at some thousands a second.
	if !synchronous && lost == 0 {
		s.errorf("asynchronous replication lost no acked event although the standby received nothing for %s before the primary died", failoverLag)
	}
	if !c.alive() || c.starts != 1 {
		s.errorf("the service exited during the failover")
	}
}

// checkReadWriteOnly checks that the store never writes through a read-only host: listed
// first, the standby is passed over for the primary; listed alone, it is refused (the
// store reports the database unavailable, as during a failover).
func checkReadWriteOnly(t *testing.T, pair *pgPair) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	standbyFirst := fmt.Sprintf("postgres://postgres@127.0.0.1:%d,127.0.0.1:%d/postgres?sslmode=disable&target_session_attrs=read-write",
		pair.standby.port, pair.primary.port)
	db, err := postgres.Open(postgres.Options{URL: standbyFirst, MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	var inRecovery bool
	var port int
	if err := db.QueryRowContext(ctx, "SELECT pg_is_in_recovery(), current_setting('port')::int").Scan(&inRecovery, &port); err != nil {
		t.Fatalf("standby listed first: %v", err)
	}
	_ = db.Close()
	if inRecovery || port != pair.primary.port {
		t.Errorf("standby listed first: connected to port %d (in recovery: %v), want the primary on %d", port, inRecovery, pair.primary.port)
	}
	standbyOnly := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&target_session_attrs=read-write", pair.standby.port)
	db, err = postgres.Open(postgres.Options{URL: standbyOnly, MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := postgres.NewStore(db).Ping(ctx); !errors.Is(err, ports.ErrUnavailable) {
		t.Errorf("standby alone with target_session_attrs=read-write: ping = %v, want unavailable", err)
	}
}

// settleLossy waits until the queues are empty and the ledger still, and checks what a
// lossy failover may leave: no more events than published, a sound audit, and dead
// letters, if any, only for departures short of stock.
func (s *scenario) settleLossy(published int64) totals {
	s.t.Helper()
	tt := s.settle(want{stored: 0, storedMax: published, otherRows: true, deadLetters: -1})
	if tt.dead == 0 {
		return tt
	}
	ch := s.channel()
	defer ch.Close() // returns what was got
	for range tt.dead {
		d, ok, err := ch.Get(s.topo.DeadLetterQueue, false)
		if err != nil || !ok {
			s.fatalf("read dead letters: %v (got one: %v)", err, ok)
		}
		if reason := fmt.Sprint(d.Headers[amqpadapter.ReasonHeader]); reason != "insufficient_stock" {
			s.errorf("dead letter with reason %q (detail %v): after a lossy failover only departures short of stock may be refused",
				reason, d.Headers[amqpadapter.DetailHeader])
		}
	}
	return tt
}
