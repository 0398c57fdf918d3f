package amqp

import (
	"errors"
	"fmt"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
)

// ErrTopologyMismatch marks an exchange or queue that already exists with another type or
// other arguments. RabbitMQ refuses to redeclare it, and the service must not silently use
// it: an operator deletes it or fixes the configuration.
var ErrTopologyMismatch = errors.New("topology mismatch")

// Topology names the exchanges and queues of docs/contract.md ("RabbitMQ topology").
// Every name is configurable.
type Topology struct {
	// Exchange is the topic exchange publishers send movement events to.
	Exchange string
	// Queue is the quorum queue the consumer reads, bound to Exchange with "#".
	Queue string
	// DeadLetterExchange is the fanout exchange of dead letters, both ours and the
	// broker's (past DeliveryLimit).
	DeadLetterExchange string
	// DeadLetterQueue is the quorum queue bound to DeadLetterExchange.
	DeadLetterQueue string
	// RetryExchange names both the fanout exchange of delayed retries and its queue,
	// whose messages expire after RetryDelay back into Exchange with their routing key.
	RetryExchange string
	// RetryDelay is the retry queue's message TTL.
	RetryDelay time.Duration
	// DeliveryLimit is Queue's x-delivery-limit: how many times the broker redelivers a
	// message (after crashes or channel closes) before dead-lettering it itself.
	DeliveryLimit int
}

// DefaultTopology returns the default names under exchange and queue: queue.dlx, queue.dead
// and queue.retry, with the given retry delay and delivery limit.
func DefaultTopology(exchange, queue string, retryDelay time.Duration, deliveryLimit int) Topology {
	return Topology{
		Exchange:           exchange,
		Queue:              queue,
		DeadLetterExchange: queue + ".dlx",
		DeadLetterQueue:    queue + ".dead",
		RetryExchange:      queue + ".retry",
		RetryDelay:         retryDelay,
		DeliveryLimit:      deliveryLimit,
	}
}

// Validate checks that every name is set and the numbers make sense.
func (t Topology) Validate() error {
	var errs []error
	for _, n := range []struct{ field, value string }{
		{"exchange", t.Exchange}, {"queue", t.Queue}, {"dead-letter exchange", t.DeadLetterExchange},
		{"dead-letter queue", t.DeadLetterQueue}, {"retry exchange", t.RetryExchange},
	} {
		if n.value == "" {
			errs = append(errs, fmt.Errorf("topology: %s name is empty", n.field))
		}
	}
	if t.RetryDelay < time.Millisecond {
		errs = append(errs, fmt.Errorf("topology: retry delay %s is under 1ms", t.RetryDelay))
	}
	if t.DeliveryLimit < 1 {
		errs = append(errs, fmt.Errorf("topology: delivery limit %d is under 1", t.DeliveryLimit))
	}
	return errors.Join(errs...)
}

// Declare declares the whole topology, idempotently: the main topic exchange and quorum
// queue, the dead-letter fanout exchange and quorum queue, and the retry fanout exchange
// and queue. When an entity exists with other arguments, RabbitMQ closes ch with
// PRECONDITION_FAILED; Declare then returns an error wrapping ErrTopologyMismatch that
// names it, and ch is unusable.
func Declare(ch *amqp091.Channel, t Topology) error {
	if err := t.Validate(); err != nil {
		return err
	}
	exchanges := []struct{ name, kind string }{
		{t.Exchange, amqp091.ExchangeTopic},
		{t.DeadLetterExchange, amqp091.ExchangeFanout},
		{t.RetryExchange, amqp091.ExchangeFanout},
	}
	for _, x := range exchanges {
		if err := ch.ExchangeDeclare(x.name, x.kind, true, false, false, false, nil); err != nil {
			return declareError("exchange", x.name, err)
		}
	}
	queues := []struct {
		name, exchange, key string
		args                amqp091.Table
	}{
		// At-least-once dead-lettering needs reject-publish overflow, else quorum queues
		// silently fall back to at-most-once.
		{t.Queue, t.Exchange, "#", amqp091.Table{
			amqp091.QueueTypeArg:     amqp091.QueueTypeQuorum,
			"x-dead-letter-exchange": t.DeadLetterExchange,
			"x-delivery-limit":       int64(t.DeliveryLimit),
			"x-dead-letter-strategy": "at-least-once",
			amqp091.QueueOverflowArg: amqp091.QueueOverflowRejectPublish,
		}},
		{t.DeadLetterQueue, t.DeadLetterExchange, "", amqp091.Table{
			amqp091.QueueTypeArg: amqp091.QueueTypeQuorum,
		}},
		// A per-queue TTL, not a per-message one: per-message TTL only expires at the head.
		// No x-dead-letter-routing-key, so an expired retry keeps its original routing key.
		{t.RetryExchange, t.RetryExchange, "", amqp091.Table{
			amqp091.QueueTypeArg:     amqp091.QueueTypeQuorum,
			"x-message-ttl":          t.RetryDelay.Milliseconds(),
			"x-dead-letter-exchange": t.Exchange,
			"x-dead-letter-strategy": "at-least-once",
			amqp091.QueueOverflowArg: amqp091.QueueOverflowRejectPublish,
		}},
	}
	for _, q := range queues {
		if _, err := ch.QueueDeclare(q.name, true, false, false, false, q.args); err != nil {
			return declareError("queue", q.name, err)
		}
		if err := ch.QueueBind(q.name, q.key, q.exchange, false, nil); err != nil {
			return fmt.Errorf("bind queue %q to exchange %q: %w", q.name, q.exchange, err)
		}
	}
	return nil
}

// declareError turns the broker's PRECONDITION_FAILED into an error that says what to do.
func declareError(kind, name string, err error) error {
	var ae *amqp091.Error
	if errors.As(err, &ae) && ae.Code == amqp091.PreconditionFailed {
		return fmt.Errorf("%w: %s %q already exists with another type or other arguments (%s); delete it or fix the configuration",
			ErrTopologyMismatch, kind, name, ae.Reason)
	}
	return fmt.Errorf("declare %s %q: %w", kind, name, err)
}
