package bench

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	amqpadapter "warehouse/adapters/amqp"
)

// publishBare publishes msgs to exchange in order on one confirm-mode channel of plain
// amqp091, keeping publishWindow confirms in flight (a sliding window, the fastest way
// to publish with confirms on one channel). confirmed counts the confirms received.
// It returns once every message is confirmed.
func (r *runner) publishBare(ctx context.Context, exchange string, msgs []message, confirmed *atomic.Int64) error {
	conn, err := r.dialBroker()
	if err != nil {
		return err
	}
	defer conn.Close()
	return publishWindowed(ctx, conn, exchange, msgs, publishWindow, nil, confirmed)
}

// publishWindowed publishes msgs to exchange in order on a new confirm-mode channel of
// conn, keeping window confirms in flight; started, when set, is called just before
// the first publish. confirmed counts the confirms received. It returns once every
// message is confirmed.
func publishWindowed(ctx context.Context, conn *amqp091.Connection, exchange string, msgs []message, window int,
	started func(), confirmed *atomic.Int64) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if err := ch.Confirm(false); err != nil {
		return err
	}
	// Room for every confirm: the client notifies synchronously, and a full channel
	// would block its reader if we stopped reading on an error.
	confirms := ch.NotifyPublish(make(chan amqp091.Confirmation, len(msgs)+1))
	stall := time.NewTimer(confirmStall)
	defer stall.Stop()
	inflight := 0
	wait := func() error {
		select {
		case c, ok := <-confirms:
			if !ok {
				return errors.New("publisher channel closed")
			}
			if !c.Ack {
				return fmt.Errorf("broker nacked message %d", c.DeliveryTag)
			}
			inflight--
			confirmed.Add(1)
			stall.Reset(confirmStall)
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-stall.C:
			return fmt.Errorf("no confirm for %s", confirmStall)
		}
	}
	if started != nil {
		started()
	}
	for _, m := range msgs {
		for inflight >= window {
			if err := wait(); err != nil {
				return err
			}
		}
		err := ch.PublishWithContext(ctx, exchange, m.key, false, false, amqp091.Publishing{
			DeliveryMode: amqp091.Persistent, ContentType: amqpadapter.ContentType,
			MessageId: m.id, AppId: "warehouse-bench", Body: m.body,
		})
		if err != nil {
			return err
		}
		inflight++
	}
	for inflight > 0 {
		if err := wait(); err != nil {
			return err
		}
	}
	return nil
}

// publishProject publishes msgs with the project's Publisher (what `warehouse produce`
// uses) in chunks of projectChunk calls to PublishBatch, which keeps a sliding window of
// confirms in flight within each chunk; the stream stays in order. confirmed counts the
// messages of the confirmed chunks.
func (r *runner) publishProject(ctx context.Context, exchange string, msgs []amqpadapter.Message, confirmed *atomic.Int64) error {
	pub, err := amqpadapter.DialPublisher(ctx, r.o.AMQPURL, r.log)
	if err != nil {
		return err
	}
	defer pub.Close()
	for len(msgs) > 0 {
		n := min(len(msgs), projectChunk)
		pctx, cancel := context.WithTimeout(ctx, confirmStall)
		err := pub.PublishBatch(pctx, exchange, msgs[:n])
		cancel()
		if err != nil {
			return err
		}
		confirmed.Add(int64(n))
		msgs = msgs[n:]
	}
	return nil
}

// projectChunk is how many messages one PublishBatch call of publishProject carries.
const projectChunk = 16 * publishWindow

// prefill publishes the whole stream to t's exchange with the bare publisher and checks
// that its queue holds it all.
func (r *runner) prefill(ctx context.Context, exchange, queue string) error {
	start := time.Now()
	var confirmed atomic.Int64
	if err := r.publishBare(ctx, exchange, r.stream.msgs, &confirmed); err != nil {
		return fmt.Errorf("prefill: %w", err)
	}
	n, err := r.queueDepth(queue)
	if err != nil {
		return err
	}
	if n != len(r.stream.msgs) {
		return fmt.Errorf("prefill: queue %s holds %d messages, want %d", queue, n, len(r.stream.msgs))
	}
	r.log.Info("queue prefilled", "queue", queue, "messages", n, "seconds", time.Since(start).Seconds())
	return nil
}
