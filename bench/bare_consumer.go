package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
		if b.stored.Add(int64(len(batch))) >= b.target {
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
