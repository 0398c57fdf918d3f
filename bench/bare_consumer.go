package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	amqp091 "github.com/rabbitmq/amqp091-go"

	amqpadapter "warehouse/adapters/amqp"
)

// bareTableDDL is the plain table of the bare consumer: the columns of the service's
// events rows, with no key, constraint, index, movement or stock.
const bareTableDDL = `CREATE TABLE %s (
	source       text        NOT NULL,
	id           text        NOT NULL,
	movement_id  uuid        NOT NULL,
	event        text        NOT NULL,
	warehouse_id uuid        NOT NULL,
	product_id   uuid        NOT NULL,
	quantity     bigint      NOT NULL,
	occurred_at  timestamptz NOT NULL,
	event_time   timestamptz,
	attributes   jsonb,
	stored_at    timestamptz NOT NULL DEFAULT now()
)`

const bareColumns = 10

// bareConsumer is the ceiling of ingest: the simplest correct batched consumer. Same
// broker, queue (quorum), per-consumer prefetch, batch size and wait as the service; it
// decodes with encoding/json, inserts a batch with one multi-row INSERT (its own
// transaction) on one connection, then acks the batch with one multiple ack.
type bareConsumer struct {
	amqpURL, dbURL, queue, table string
	prefetch, batchSize          int
	batchWait                    time.Duration
	target                       int64

	// onBatch, when set, is called with the rows stored so far after every batch.
	onBatch func(stored int64)

	stored atomic.Int64
	doneAt time.Time // when stored reached target; read after run returns
	sql    map[int]string
}

// run consumes until target rows are stored and then ctx is done (nil), ctx is done
// before that (ctx.Err()), or a failure.
// ready is called once the consumer is subscribed.
func (b *bareConsumer) run(ctx context.Context, ready func()) error {
	db, err := pgx.Connect(ctx, b.dbURL)
	if err != nil {
		return err
	}
	defer db.Close(context.WithoutCancel(ctx))
	node, err := amqpadapter.PickNode(b.amqpURL) // one node of a cluster's list
	if err != nil {
		return err
	}
	conn, err := amqp091.DialConfig(node, amqp091.Config{Dial: amqp091.DefaultDial(10 * time.Second)})
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if err := ch.Qos(b.prefetch, 0, false); err != nil {
		return err
	}
	deliveries, err := ch.Consume(b.queue, "", false, false, false, false, nil)
	if err != nil {
		return err
	}
	ready()
	b.sql = make(map[int]string)
	batch := make([]amqp091.Delivery, 0, b.batchSize)
	args := make([]any, 0, b.batchSize*bareColumns)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return ctx.Err()
		case d, ok := <-deliveries:
			if !ok {
				return errors.New("deliveries closed")
			}
			batch = append(batch, d)
		}
		timer.Reset(b.batchWait)
	collect:
		for len(batch) < b.batchSize {
			select {
			case d, ok := <-deliveries:
				if !ok {
					return errors.New("deliveries closed")
				}
				batch = append(batch, d)
			case <-timer.C:
				break collect
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		timer.Stop()

		args = args[:0]
		for _, d := range batch {
			if args, err = appendBareRow(args, d.Body); err != nil {
				return err
			}
		}
		if _, err := db.Exec(ctx, b.insertSQL(len(batch)), args...); err != nil {
			return fmt.Errorf("insert %d rows: %w", len(batch), err)
		}
		if err := ch.Ack(batch[len(batch)-1].DeliveryTag, true); err != nil {
			return err
		}
		n := b.stored.Add(int64(len(batch)))
		if b.onBatch != nil {
			b.onBatch(n)
		}
		if n >= b.target {
			b.doneAt = time.Now()
			// Hold the connections until the phase is measured: the CPU time of a
			// PostgreSQL backend that has exited no longer shows in /proc.
			<-ctx.Done()
			return nil
		}
	}
}

// insertSQL returns the INSERT of n rows, built once per size.
func (b *bareConsumer) insertSQL(n int) string {
	if s, ok := b.sql[n]; ok {
		return s
	}
	var sb strings.Builder
	sb.WriteString("INSERT INTO " + b.table +
		" (source, id, movement_id, event, warehouse_id, product_id, quantity, occurred_at, event_time, attributes) VALUES ")
	for i := range n {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteByte('(')
		for c := range bareColumns {
			if c > 0 {
				sb.WriteByte(',')
			}
			sb.WriteByte('$')
			sb.WriteString(strconv.Itoa(i*bareColumns + c + 1))
		}
		sb.WriteByte(')')
	}
	b.sql[n] = sb.String()
	return b.sql[n]
}

// bareEnvelope is a CloudEvents message as a plain consumer decodes it.
type bareEnvelope struct {
	ID     string          `json:"id"`
	Source string          `json:"source"`
	Time   json.RawMessage `json:"time"`
	bareAttributes
	Data struct {
		MovementID  string    `json:"movement_id"`
		WarehouseID string    `json:"warehouse_id"`
		Timestamp   time.Time `json:"timestamp"`
		Event       string    `json:"event"`
		ProductID   string    `json:"product_id"`
		Quantity    int64     `json:"quantity"`
	} `json:"data"`
}

// bareAttributes are the optional envelope attributes the service keeps as jsonb.
type bareAttributes struct {
	DataContentType string `json:"datacontenttype,omitempty"`
	DataSchema      string `json:"dataschema,omitempty"`
	Subject         string `json:"subject,omitempty"`
	Destination     string `json:"destination,omitempty"`
}

// appendBareRow decodes body and appends its row's values to args.
func appendBareRow(args []any, body []byte) ([]any, error) {
	var e bareEnvelope
	if err := json.Unmarshal(body, &e); err != nil {
		return args, fmt.Errorf("bare consumer: decode: %w", err)
	}
	var eventTime any
	switch {
	case len(e.Time) == 0 || string(e.Time) == "null":
	case e.Time[0] == '"':
		var t time.Time
		if err := json.Unmarshal(e.Time, &t); err != nil {
			return args, fmt.Errorf("bare consumer: time: %w", err)
		}
		eventTime = t
	default:
		ms, err := strconv.ParseInt(string(e.Time), 10, 64)
		if err != nil {
			return args, fmt.Errorf("bare consumer: time: %w", err)
		}
		eventTime = time.UnixMilli(ms)
	}
	var attrs any
	if e.bareAttributes != (bareAttributes{}) {
		b, err := json.Marshal(e.bareAttributes)
		if err != nil {
			return args, err
		}
		attrs = string(b)
	}
	return append(args, e.Source, e.ID, e.Data.MovementID, e.Data.Event, e.Data.WarehouseID, e.Data.ProductID,
		e.Data.Quantity, e.Data.Timestamp, eventTime, attrs), nil
}

// Lines the bare consumer's process (--bare-consume) writes to stdout.
const (
	bareSubscribed = "bare consumer: subscribed"
	bareStored     = "bare consumer: stored "
)

// BareConsume is the --bare-consume mode: the bare consumer as a process of its own, on
// queue and the plain table of dbURL, until it has stored target rows and ctx ends. It
// writes bareSubscribed once subscribed, and bareStored with the rows stored so far
// after every batch.
func BareConsume(ctx context.Context, o Options, queue, table string, target int64, stdout io.Writer) error {
	o = o.withDefaults()
	if queue == "" || table == "" || target < 1 {
		return fmt.Errorf("%w: --bare-consume needs --bare-table and --bare-target", ErrUsage)
	}
	b := &bareConsumer{
		amqpURL: o.AMQPURL, dbURL: o.DatabaseURL, queue: queue, table: pgx.Identifier{table}.Sanitize(),
		prefetch: o.Prefetch, batchSize: o.BatchSize, batchWait: o.BatchWait, target: target,
		onBatch: func(n int64) { fmt.Fprintf(stdout, "%s%d\n", bareStored, n) },
	}
	err := b.run(ctx, func() { fmt.Fprintln(stdout, bareSubscribed) })
	if errors.Is(err, context.Canceled) && b.stored.Load() >= target {
		return nil
	}
	return err
}

// bareChildIngest is bareIngest with the bare consumer as a process of its own.
func (r *runner) bareChildIngest(ctx context.Context, phase, dbURL, table string, t amqpadapter.Topology, f *feed) (IngestResult, error) {
	res := IngestResult{Events: len(r.stream.msgs)}
	var stored atomic.Int64
	subscribed := make(chan time.Time, 1)
	tap := func(line []byte) {
		if rest, ok := bytes.CutPrefix(line, []byte(bareStored)); ok {
			if n, err := strconv.ParseInt(string(rest), 10, 64); err == nil {
				stored.Store(n)
			}
		} else if bytes.Equal(line, []byte(bareSubscribed)) {
			subscribed <- time.Now()
		}
	}
	env := map[string]string{
		"DATABASE_URL": dbURL, "AMQP_URL": r.o.AMQPURL, "AMQP_PREFETCH": strconv.Itoa(r.o.Prefetch),
		"BATCH_SIZE": strconv.Itoa(r.o.BatchSize), "BATCH_WAIT": r.o.BatchWait.String(), "LOG_LEVEL": "warn",
	}
	c, err := r.spawn(ctx, "bare-consume-"+phase, env, "", tap, r.o.Self, "--bare-consume", t.Queue, "--bare-table", table,
		"--bare-target", strconv.Itoa(len(r.stream.msgs)))
	if err != nil {
		return res, err
	}
	defer c.stop()
	var ready time.Time
	select {
	case ready = <-subscribed:
	case <-c.exited:
		return res, c.alive()
	case <-time.After(readyTimeout):
		return res, errors.New("bare consumer did not subscribe in time")
	}
	var (
		host0 hostCPU
		proc0 procCPU
		cpu0  float64
	)
	start := func() {
		host0, _ = readHostCPU()
		proc0 = readProcCPU()
		cpu0, _ = c.cpuSeconds()
	}
	progress := func(context.Context) (int64, error) {
		if err := c.alive(); err != nil {
			return 0, err
		}
		return stored.Load(), nil
	}
	err = r.ingest(ctx, ready, &res, progress, f, start)
	res.HostCPUBusy = host0.busySince()
	res.setProcCPU(readProcCPU().since(proc0))
	if cpu1, err := c.cpuSeconds(); err == nil {
		res.CPUSeconds = cpu1 - cpu0
	}
	c.stop()
	if err != nil {
		return res, err
	}
	return r.finishBare(ctx, phase, "bare (process)", res, dbURL, table), nil
}
