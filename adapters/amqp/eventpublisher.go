package amqp

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"warehouse/domain"
	"warehouse/ports"
)

// EventPublisher is ports.EventPublisher on RabbitMQ: it publishes events, structured
// and persistent, to an exchange with publisher confirms, on a connection it opens on the
// first call and opens again after a loss (to the next node of a cluster). Calls are
// serialised: one confirm round at a time.
type EventPublisher struct {
	url, exchange string
	log           *slog.Logger

	mu  sync.Mutex
	pub *Publisher
}

var _ ports.EventPublisher = (*EventPublisher)(nil)

// NewEventPublisher returns a publisher to exchange on the broker (or cluster) of url.
// It connects on first use.
func NewEventPublisher(url, exchange string, log *slog.Logger) *EventPublisher {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &EventPublisher{url: url, exchange: exchange, log: log.With("component", "ingest")}
}

// PublishEvents publishes events and waits for every confirm (see ports.EventPublisher).
func (p *EventPublisher) PublishEvents(ctx context.Context, events []domain.Event) error {
	msgs := make([]Message, len(events))
	for i, e := range events {
		msgs[i] = Message{RoutingKey: "movement." + string(e.Kind), Publishing: amqp091.Publishing{
			MessageId: e.ID, AppId: "warehouse-ingest", Body: EncodeEvent(e), Timestamp: time.Now().UTC().Truncate(time.Second),
		}}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pub == nil {
		pub, err := DialPublisher(ctx, p.url, p.log)
		if err != nil {
			return fmt.Errorf("%w: connect the ingest publisher: %w", ports.ErrUnavailable, err)
		}
		p.pub = pub
		p.log.InfoContext(ctx, "ingest publisher connected", "node", CurrentNode(p.url))
	}
	if err := p.pub.PublishBatch(ctx, p.exchange, msgs); err != nil {
		// Whatever went wrong, the next call starts on a fresh connection.
		_ = p.pub.Close()
		p.pub = nil
		return fmt.Errorf("%w: publish %d events: %w", ports.ErrUnavailable, len(events), err)
	}
	return nil
}

// Close closes the connection, if any.
func (p *EventPublisher) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pub == nil {
		return nil
	}
	err := p.pub.Close()
	p.pub = nil
	return err
}
