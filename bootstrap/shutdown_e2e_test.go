package bootstrap

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	amqpadapter "warehouse/adapters/amqp"
	"warehouse/ports/portstest"
)

// TestE2EShutdownOrder stops the service while its consumer holds a batch in flight (the
// test locks the stock table under it). The order of a shutdown: readiness turns 503 at
// once, but HTTP keeps serving until the consumer has committed and acked its batch; then
// HTTP closes, and the database last (the batch could not commit otherwise).
func TestE2EShutdownOrder(t *testing.T) {
	t.Parallel()
	s := mustService(t, nil)
	ctx := context.Background()
	lock, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = lock.Rollback() }()
	if _, err := lock.ExecContext(ctx, "LOCK TABLE stock IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	w, p := newWarehouse(), newProduct()
	s.publish(t, portstest.Supply(w, p, 7))
	e2eWaitFor(t, "the consumer's batch waiting on the stock table", func() bool {
		return s.count(t, `SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'stock'::regclass
			AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`) > 0
	})

	stopped := make(chan error, 1)
	go func() { stopped <- s.stop() }()
	e2eWaitFor(t, "/readyz 503 while draining", func() bool {
		status, _, err := s.tryGet("/readyz")
		if err != nil {
			t.Fatalf("HTTP closed before the consumer finished its batch: %v", err)
		}
		return status == http.StatusServiceUnavailable
	})
	time.Sleep(300 * time.Millisecond) // time enough for a wrong order to show
	select {
	case err := <-stopped:
		t.Fatalf("runService returned (%v) while its consumer held a batch", err)
	default:
	}
	if status, _, err := s.tryGet("/health"); err != nil || status != http.StatusOK {
		t.Fatalf("HTTP stopped serving before the consumer finished its batch: %d, %v", status, err)
	}

	if err := lock.Commit(); err != nil { // the batch goes on
		t.Fatal(err)
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(e2eStopWait + time.Second):
		t.Fatal("runService did not return once the batch could commit")
	}
	if got, ok := s.dbStock(t, w, p); !ok || got != 7 {
		t.Errorf("stock after the shutdown = %d (row %v), want the batch in flight committed: 7", got, ok)
	}
	e2eWaitFor(t, "the batch in flight acked (an empty queue)", func() bool { return s.queueDepth(t) == 0 })
	s.client.CloseIdleConnections()
	if _, _, err := s.tryGet("/health"); err == nil {
		t.Error("HTTP still answers after runService returned")
	}
}

// TestE2EComponentFailureStopsService: when one component fails, the others stop and
// runService returns its error. Here the consumer meets a queue declared with other
// arguments, a fatal start-up error: the HTTP server must close with it.
func TestE2EComponentFailureStopsService(t *testing.T) {
	t.Parallel()
	cfg, env := mustE2EEnv(t, nil)
	ch, err := env.conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(cfg.AMQPQueue, true, false, false, false, amqp091.Table{
		amqp091.QueueTypeArg: amqp091.QueueTypeQuorum, "x-delivery-limit": int64(cfg.AMQPDeliveryLimit + 1),
	}); err != nil {
		t.Fatal(err)
	}
	_ = ch.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	logs := &e2eLogBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- runService(context.Background(), cfg, NewLogger(logs, "text", slog.LevelDebug), roles{migrate: true, api: true, consume: true}, ln)
	}()
	select {
	case err := <-done:
		if !errors.Is(err, amqpadapter.ErrTopologyMismatch) {
			t.Errorf("runService = %v, want the consumer's topology mismatch", err)
		}
	case <-time.After(e2eStopWait):
		t.Fatalf("runService still runs %s after its consumer failed\nlogs:\n%s", e2eStopWait, logs.String())
	}
	if conn, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		_ = conn.Close()
		t.Error("the HTTP listener still accepts connections after runService returned")
	}
}
