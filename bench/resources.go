package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	amqp091 "github.com/rabbitmq/amqp091-go"

	amqpadapter "warehouse/adapters/amqp"
	"warehouse/adapters/postgres"
	"warehouse/domain"
	"warehouse/migrations"
)

// checkServices fails early, with a clear message, when PostgreSQL or RabbitMQ is down.
func (r *runner) checkServices(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	admin, err := r.adminURL()
	if err != nil {
		return err
	}
	conn, err := pgx.Connect(cctx, admin)
	if err != nil {
		return fmt.Errorf("PostgreSQL is unreachable: %w", err)
	}
	_ = conn.Close(cctx)
	ac, err := r.dialBroker()
	if err != nil {
		return err
	}
	_ = ac.Close()
	return nil
}

func (r *runner) adminURL() (string, error) {
	u, err := postgres.WithDatabase(r.o.DatabaseURL, "postgres")
	if err != nil {
		return "", errors.New("DATABASE_URL is not a URL")
	}
	return u, nil
}

// dialBroker opens a connection of the benchmark's own (declarations, deletions, bare
// clients); its errors never echo the URL.
func (r *runner) dialBroker() (*amqp091.Connection, error) { return dialBroker(r.o.AMQPURL) }

// dialBroker connects to one node of amqpURL; its errors never echo the URL.
func dialBroker(amqpURL string) (*amqp091.Connection, error) {
	node, err := amqpadapter.PickNode(amqpURL) // one node of a cluster's list, as the service picks
	if err != nil {
		return nil, fmt.Errorf("AMQP_URL: %w", err)
	}
	conn, err := amqp091.DialConfig(node, amqp091.Config{Dial: amqp091.DefaultDial(10 * time.Second)})
	if err != nil {
		return nil, fmt.Errorf("RabbitMQ is unreachable: %w", err)
	}
	return conn, nil
}

// createDatabase creates the database warehouse_bench_<run>_<suffix>, migrated to the
// service's schema when migrate is set, and returns its URL. Cleanup drops it.
func (r *runner) createDatabase(ctx context.Context, suffix string, migrate bool) (string, error) {
	name := "warehouse_bench_" + r.id + "_" + suffix
	dbURL, err := postgres.WithDatabase(r.o.DatabaseURL, name)
	if err != nil {
		return "", err
	}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := postgres.EnsureDatabase(cctx, dbURL); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	if !slices.Contains(r.databases, name) { // the bare database serves every bare phase
		r.databases = append(r.databases, name)
	}
	if !migrate {
		return dbURL, nil
	}
	db, err := postgres.Open(postgres.Options{URL: dbURL, MaxConns: 2})
	if err != nil {
		return "", err
	}
	defer db.Close()
	if _, err := postgres.Migrate(cctx, db, migrations.FS); err != nil {
		return "", fmt.Errorf("migrate database %s: %w", name, err)
	}
	return dbURL, nil
}

// declare declares the service's topology under warehouse.bench.<run>.<suffix>, as the
// service itself would (so that a child declaring it again finds the same arguments).
func (r *runner) declare(suffix string) (amqpadapter.Topology, error) {
	name := "warehouse.bench." + r.id + "." + suffix
	t := amqpadapter.DefaultTopology(name, name, retryDelay, deliveryLimit)
	conn, err := r.dialBroker()
	if err != nil {
		return t, err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return t, err
	}
	r.topologies = append(r.topologies, t)
	return t, amqpadapter.Declare(ch, t)
}

// queueDepth returns the messages ready in queue.
func (r *runner) queueDepth(queue string) (int, error) {
	conn, err := r.dialBroker()
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return 0, err
	}
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		return 0, err
	}
	return q.Messages, nil
}

// checkpoint asks PostgreSQL to write its dirty buffers now, so that a phase does not pay
// for the checkpoint of the one before. It needs superuser or pg_checkpoint; without
// them the phases simply share the checkpoints.
func (r *runner) checkpoint(ctx context.Context) {
	admin, err := r.adminURL()
	if err != nil {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	conn, err := pgx.Connect(cctx, admin)
	if err != nil {
		return
	}
	defer conn.Close(cctx)
	if _, err := conn.Exec(cctx, "CHECKPOINT"); err != nil {
		r.log.Debug("checkpoint skipped", "err", err)
	}
}

// cleanup stops every child, then drops the run's databases and deletes its queues and
// exchanges. It runs even when ctx was cancelled (an interrupted run), bounded by
// cleanupTimeout.
func (r *runner) cleanup(ctx context.Context) {
	for _, c := range r.children {
		c.stop()
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	r.dropDatabases(ctx, slices.Clone(r.databases)...)
	if len(r.topologies) == 0 {
		return
	}
	conn, err := r.dialBroker()
	if err != nil {
		r.log.Warn("queues left behind", "err", err)
		return
	}
	defer conn.Close()
	for _, t := range r.topologies {
		for _, q := range []string{t.Queue, t.DeadLetterQueue, t.RetryExchange} {
			if err := withChannel(conn, func(ch *amqp091.Channel) error { _, err := ch.QueueDelete(q, false, false, false); return err }); err != nil {
				r.log.Warn("delete queue", "queue", q, "err", err)
			}
		}
		for _, x := range []string{t.Exchange, t.DeadLetterExchange, t.RetryExchange} {
			if err := withChannel(conn, func(ch *amqp091.Channel) error { return ch.ExchangeDelete(x, false, false) }); err != nil {
				r.log.Warn("delete exchange", "exchange", x, "err", err)
			}
		}
	}
}

// dropDatabases drops these databases of the run and forgets them. One that could not be
// dropped stays in r.databases, for cleanup to try again (and to warn about).
func (r *runner) dropDatabases(ctx context.Context, names ...string) {
	if len(names) == 0 {
		return
	}
	admin, err := r.adminURL()
	if err != nil {
		return
	}
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		r.log.Warn("databases not dropped", "databases", names, "err", err)
		return
	}
	defer conn.Close(ctx)
	for _, name := range names {
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			r.log.Warn("drop database", "database", name, "err", err)
			continue
		}
		r.databases = slices.DeleteFunc(r.databases, func(n string) bool { return n == name })
	}
}

// databaseName is the database of a URL made by createDatabase.
func databaseName(dbURL string) string {
	u, err := url.Parse(dbURL)
	if err != nil {
		return ""
	}
	return strings.TrimPrefix(u.Path, "/")
}

// withChannel runs fn on a fresh channel: a failed operation closes its channel.
func withChannel(conn *amqp091.Connection, fn func(*amqp091.Channel) error) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	return fn(ch)
}

// verifyLedger checks that the service stored exactly the stream: n events, and every
// stock row at the quantity the generator expects.
func verifyLedger(ctx context.Context, dbURL string, n int, expected map[domain.StockKey]int64) error {
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	conn, err := pgx.Connect(cctx, dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(cctx)
	var events int
	if err := conn.QueryRow(cctx, "SELECT count(*) FROM events").Scan(&events); err != nil {
		return err
	}
	if events != n {
		return fmt.Errorf("%d events stored, want %d", events, n)
	}
	rows, err := conn.Query(cctx, "SELECT warehouse_id, product_id, quantity FROM stock")
	if err != nil {
		return err
	}
	got := make(map[domain.StockKey]int64, len(expected))
	for rows.Next() {
		var w, p [16]byte
		var q int64
		if err := rows.Scan(&w, &p, &q); err != nil {
			rows.Close()
			return err
		}
		got[domain.StockKey{Warehouse: domain.WarehouseID(w), Product: domain.ProductID(p)}] = q
	}
	if err := rows.Err(); err != nil {
		return err
	}
	wrong := 0
	var example string
	for k, want := range expected {
		if q, ok := got[k]; !ok || q != want {
			wrong++
			if example == "" {
				example = fmt.Sprintf("warehouse %s product %s holds %d, want %d", uuid.UUID(k.Warehouse), uuid.UUID(k.Product), q, want)
			}
		}
	}
	if wrong > 0 || len(got) != len(expected) {
		return fmt.Errorf("%d of %d stock rows differ (%d rows stored), e.g. %s", wrong, len(expected), len(got), example)
	}
	return nil
}

// freeAddr returns a 127.0.0.1 address with a port free right now.
func freeAddr(ctx context.Context) (string, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
