package amqp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"warehouse/ports"
)

// DeadLetteredAtHeader carries the time the service dead-lettered a message (RFC 3339,
// UTC). ListDeadLetters reads it on the service's dead letters; on the broker's (those
// with x-death) a header of that name is the publisher's and means nothing.
const DeadLetteredAtHeader = "x-dead-lettered-at"

// replayRound bounds the dead letters republished under one wait for confirms.
const replayRound = 256

// replayRoundTimeout bounds one round of republishing, confirms included.
const replayRoundTimeout = 30 * time.Second

// DeadLetterFilter chooses dead letters. Zero fields match everything.
type DeadLetterFilter struct {
	// Reason matches the rejection reason exactly (invalid, conflict, insufficient_stock,
	// internal, or the broker's own reason such as delivery_limit).
	Reason string
	// ID matches the event id in the body, or the AMQP message-id property.
	ID string
	// Limit is the most dead letters listed or replayed; 0 means no limit.
	Limit int
}

func (f DeadLetterFilter) matches(d DeadLetter) bool {
	if f.Reason != "" && d.Reason != f.Reason {
		return false
	}
	if f.ID != "" && d.ID != f.ID && d.MessageID != f.ID {
		return false
	}
	return true
}

// DeadLetter is one message of the dead-letter queue as an operator sees it.
type DeadLetter struct {
	// ID is the CloudEvents id found in the body, read leniently (a dead letter may be
	// invalid JSON); empty when none was found.
	ID string
	// MessageID is the AMQP message-id property, often empty.
	MessageID string
	// RoutingKey is the routing key the message was first published with: replay uses it.
	RoutingKey string
	// Reason is the short code of ReasonHeader or, for a message the broker dead-lettered
	// itself, the reason of its latest x-death record (such as delivery_limit).
	Reason string
	// Detail explains Reason in words.
	Detail string
	// DeadLetteredAt is when the message was dead-lettered: DeadLetteredAtHeader on the
	// service's dead letters, the latest x-death time on the broker's, else the publish
	// timestamp; zero when none is known.
	DeadLetteredAt time.Time
	// Attempts counts how many times the message was tried: AttemptsHeader on the
	// service's dead letters (1, or 1 + its delayed retries), the deliveries the broker
	// counted on its own (x-delivery-count + 1), or 0 when unknown.
	Attempts int
	// HeadersDropped is the size in bytes of a headers table that could not be read
	// because the message's properties exceeded the broker's frame_max; 0 when none was.
	HeadersDropped int
	// BodySize is the length of Body in bytes.
	BodySize int
	// Body is the message body as published.
	Body []byte
}

// ListDeadLetters returns the dead letters of queue that match f, oldest first, without
// consuming any. On a connection of its own it takes every message up to the queue's
// depth when it starts (f.Limit bounds the answer, not the scan), without acking, then
// closes its channels: the broker puts the messages back at the head of the queue in
// their order, and ListDeadLetters waits (a few seconds at most) until the queue shows
// them again, so that a command run right after it sees them all. Killing the process
// mid-list loses nothing either, since the broker requeues whatever an ended connection
// left unacked, though the messages taken then go back behind the others. Each return
// counts as a delivery on the quorum queue's delivery counter; the dead-letter queue has
// no delivery limit, so nothing expires or moves because of it. Messages dead-lettered
// while it runs are not listed, and a client consuming the queue at the same time hides
// the messages it holds.
func ListDeadLetters(ctx context.Context, url, queue string, f DeadLetterFilter) (dls []DeadLetter, err error) {
	s, err := openScan(ctx, url, queue)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, s.close(ctx)) }()
	for {
		m, ok, err := s.next(ctx)
		if err != nil || !ok {
			return dls, err
		}
		if f.Limit > 0 && len(dls) >= f.Limit {
			continue // taken all the same: see scan
		}
		if dl := deadLetterOf(m.d, s.guardKey); f.matches(dl) {
			dls = append(dls, dl)
		}
	}
}

// ReplayDeadLetters sends the dead letters of topo.DeadLetterQueue that match f back to
// topo.Exchange for another try and returns how many it replayed. Each copy keeps its
// body, properties and original routing key, is persistent, and loses the rejection and
// retry headers and the broker's death records, so the consumer treats it as new. A dead
// letter is acked only after the broker has confirmed its copy (published as mandatory:
// a copy that reaches no queue is an error wrapping ErrUnroutable); the dead letters that
// do not match go back to the queue, in their order, as ListDeadLetters leaves them. It
// reads at most the queue's depth at start, so it never meets a copy of its own that
// failed again. When it stops on an error or is killed, a message may be both back in
// the main queue and still in the dead-letter queue: replaying it again is harmless,
// since the ledger ignores an event it already holds.
func ReplayDeadLetters(ctx context.Context, url string, topo Topology, f DeadLetterFilter) (replayed int, err error) {
	if topo.Exchange == "" || topo.DeadLetterQueue == "" {
		return 0, errors.New("replay: exchange and dead-letter queue names are required")
	}
	s, err := openScan(ctx, url, topo.DeadLetterQueue)
	if err != nil {
		return 0, err
	}
	defer func() { err = errors.Join(err, s.close(ctx)) }()
	pub, err := DialPublisher(ctx, url, nil)
	if err != nil {
		return 0, err
	}
	defer pub.Close() //nolint:errcheck // every copy that counts is confirmed; a failed close loses nothing

	var (
		pending []taken
		out     []outgoing
	)
	flush := func() error {
		if len(out) == 0 {
			return nil
		}
		rctx, cancel := context.WithTimeout(ctx, replayRoundTimeout)
		defer cancel()
		if err := pub.publish(rctx, out); err != nil {
			return fmt.Errorf("replay to exchange %q: %w", topo.Exchange, err)
		}
		for _, m := range pending {
			if err := s.ack(m); err != nil {
				return err
			}
			replayed++
		}
		pending, out = pending[:0], out[:0]
		return nil
	}
	for {
		m, ok, err := s.next(ctx)
		if err != nil {
			return replayed, err
		}
		if !ok {
			break
		}
		dl := deadLetterOf(m.d, s.guardKey)
		if !f.matches(dl) || (f.Limit > 0 && replayed+len(out) >= f.Limit) {
			continue // left unacked: back in the queue when the scan closes
		}
		pending = append(pending, m)
		out = append(out, replayOf(topo.Exchange, m.d, dl))
		if len(out) >= replayRound {
			if err := flush(); err != nil {
				return replayed, err
			}
		}
	}
	return replayed, flush()
}

// Bounds of a scan.
const (
	// scanWindow is the prefetch of one scan consumer. A quorum queue gives a consumer
	// without a prefetch only 2000 messages, and a prefetch is at most 65535: a scan holds
	// the queue in windows of consumers on channels of their own.
	scanWindow = 1000
	// scanMaxWindows stays under the client's 2047 channels per connection.
	scanMaxWindows = 1500
	// scanIdle ends a scan that receives nothing for that long: another client holds the
	// rest of the queue.
	scanIdle = 3 * time.Second
	// returnWait bounds the wait for the broker to show the returned messages again.
	returnWait = 5 * time.Second
)

// scan reads a queue without acknowledging, at most its depth at start, on a connection
// of its own. It takes the whole depth even when a caller's limit is reached early: a
// quorum queue puts returned messages behind those returned before, ahead of those never
// delivered, so returning only the first few of a queue that was listed before would
// move them behind the rest. Consuming is some fifty times faster than basic.get on a
// quorum queue (about 25 000 against 500 messages a second here).
type scan struct {
	conn     *amqp091.Connection
	guardKey string      // see droppedHeaders
	stop     func() bool // stops the AfterFunc that closes conn when ctx ends
	queue    string
	depth    int // ready messages at start
	window   int // prefetch of each window
	got      int // messages taken
	acked    int // messages taken and acked
	windows  []*window
}

// window is one consumer of a scan, on its own channel, holding at most size messages.
type window struct {
	ch         *amqp091.Channel
	tag        string
	deliveries <-chan amqp091.Delivery
	size       int
	unacked    int // taken from deliveries and not acked
	cancelled  bool
}

// taken is one message of a scan and the window that holds it.
type taken struct {
	d amqp091.Delivery
	w *window
}

func openScan(ctx context.Context, url, queue string) (*scan, error) {
	conn, guardKey, err := dial(ctx, url, "warehouse dead-letters")
	if err != nil {
		return nil, err
	}
	// Every wait of the client is bounded by ctx: closing the connection ends it.
	stop := context.AfterFunc(ctx, func() { _ = conn.CloseDeadline(time.Now().Add(time.Second)) })
	fail := func(err error) (*scan, error) {
		stop()
		_ = conn.CloseDeadline(time.Now().Add(closeTimeout))
		return nil, err
	}
	ch, err := conn.Channel()
	if err != nil {
		return fail(fmt.Errorf("%w: open channel: %w", ports.ErrUnavailable, err))
	}
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		var ae *amqp091.Error
		if errors.As(err, &ae) && ae.Code == amqp091.NotFound {
			return fail(fmt.Errorf("dead-letter queue %q does not exist", queue))
		}
		return fail(fmt.Errorf("%w: inspect queue %q: %w", ports.ErrUnavailable, queue, err))
	}
	_ = ch.Close()
	w := max(scanWindow, (q.Messages+scanMaxWindows-1)/scanMaxWindows)
	if w > 65535 {
		return fail(fmt.Errorf("queue %q holds %d messages, too many to scan", queue, q.Messages))
	}
	return &scan{conn: conn, guardKey: guardKey, stop: stop, queue: queue, depth: q.Messages, window: w}, nil
}

// next takes the next message; ok is false once the depth at start is taken or nothing
// comes for scanIdle.
func (s *scan) next(ctx context.Context) (m taken, ok bool, err error) {
	if s.got >= s.depth {
		return m, false, nil
	}
	w, err := s.current()
	if err != nil {
		if ctx.Err() != nil {
			// The cancel closed the connection under current: the cause is the cancel.
			return m, false, ctx.Err()
		}
		return m, false, err
	}
	idle := time.NewTimer(scanIdle)
	defer idle.Stop()
	select {
	case d, open := <-w.deliveries:
		if !open {
			if ctx.Err() != nil {
				return m, false, ctx.Err()
			}
			return m, false, fmt.Errorf("%w: reading queue %q stopped (connection lost or queue deleted)", ports.ErrUnavailable, s.queue)
		}
		w.unacked++
		s.got++
		return taken{d: d, w: w}, true, nil
	case <-idle.C:
		return m, false, nil
	case <-ctx.Done():
		return m, false, ctx.Err()
	}
}

// current returns the window to read from. Once the last one is full (the broker sends
// it nothing more) its consumer is cancelled, so that acking its messages later does not
// make room for more, and the next window opens.
func (s *scan) current() (*window, error) {
	if n := len(s.windows); n > 0 {
		w := s.windows[n-1]
		if w.unacked < w.size {
			return w, nil
		}
		if err := w.ch.Cancel(w.tag, false); err != nil {
			return nil, fmt.Errorf("%w: cancel scan consumer: %w", ports.ErrUnavailable, err)
		}
		w.cancelled = true
	}
	ch, err := s.conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("%w: open channel: %w", ports.ErrUnavailable, err)
	}
	w := &window{ch: ch, tag: fmt.Sprintf("dead-letters-%d", len(s.windows)), size: s.window}
	s.windows = append(s.windows, w) // closed by close, even when the next calls fail
	if err := ch.Qos(w.size, 0, false); err != nil {
		return nil, fmt.Errorf("%w: set prefetch %d: %w", ports.ErrUnavailable, w.size, err)
	}
	if w.deliveries, err = ch.Consume(s.queue, w.tag, false, false, false, false, nil); err != nil {
		return nil, fmt.Errorf("%w: consume queue %q: %w", ports.ErrUnavailable, s.queue, err)
	}
	return w, nil
}

func (s *scan) ack(m taken) error {
	if err := m.d.Ack(false); err != nil {
		return fmt.Errorf("%w: ack a replayed dead letter: %w", ports.ErrUnavailable, err)
	}
	m.w.unacked--
	s.acked++
	return nil
}

// close hands every unacked message back to the broker, in the queue's order, and waits
// (at most returnWait in all) until the queue shows them again, then closes the
// connection. The broker requeues the messages of a closed channel asynchronously, and
// the returns of two channels closed one after the other may land in either order: so
// close cancels every consumer first (a window with room left would take the messages
// another hands back), then closes the windows one at a time, each once the queue shows
// the messages of the one before. The wait is best effort: messages dead-lettered
// meanwhile, or another client consuming the queue, can cut it short or make it time out.
func (s *scan) close(ctx context.Context) error {
	defer s.stop()
	defer s.conn.CloseDeadline(time.Now().Add(closeTimeout)) //nolint:errcheck // nothing is left to lose
	for _, w := range s.windows {
		if !w.cancelled {
			if err := w.ch.Cancel(w.tag, false); err != nil {
				return nil // the channel is gone: closing the connection returns everything
			}
			w.cancelled = true
		}
	}
	if s.got == s.acked {
		for _, w := range s.windows {
			_ = w.ch.Close() // nothing to hand back
		}
		return nil
	}
	var ready func() (int, bool)
	if probe, err := s.conn.Channel(); err == nil {
		defer probe.Close() //nolint:errcheck // closed with the connection
		ready = func() (int, bool) {
			q, err := probe.QueueDeclarePassive(s.queue, true, false, false, false, nil)
			return q.Messages, err == nil
		}
	}
	base, waiting := 0, ready != nil
	if waiting {
		base, waiting = ready()
	}
	deadline := time.Now().Add(returnWait)
	returned := 0
	for _, w := range s.windows {
		if err := w.ch.Close(); err != nil {
			if ctx.Err() != nil || errors.Is(err, amqp091.ErrClosed) {
				return nil // the connection is gone, and the broker requeues everything anyway
			}
			return fmt.Errorf("%w: close channel: %w", ports.ErrUnavailable, err)
		}
		returned += w.unacked
		for waiting {
			n, ok := ready()
			if !ok || n >= base+returned {
				waiting = ok
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				waiting = false
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	return nil
}

// replayOf builds the copy of a dead letter for exchange: its publisher's headers, without
// the service's verdict, attempts and retry count or the broker's death records and
// delivery count, so that the consumer treats it as new.
func replayOf(exchange string, d amqp091.Delivery, dl DeadLetter) outgoing {
	return outgoing{exchange: exchange, key: dl.RoutingKey, msg: copyOf(d, publisherHeaders(d.Headers))}
}

// deadLetterOf reads what an operator wants to know from a delivery of the dead-letter
// queue, read on a connection whose frameGuard marks dropped tables with guardKey. A
// message with x-death was dead-lettered by the broker, and its other headers are the
// publisher's: the service's headers are read only on the service's own dead letters.
func deadLetterOf(d amqp091.Delivery, guardKey string) DeadLetter {
	dl := DeadLetter{
		ID:         eventID(d.Body),
		MessageID:  d.MessageId,
		RoutingKey: d.RoutingKey,
		BodySize:   len(d.Body),
		Body:       d.Body,
	}
	if death, ok := latestDeath(d.Headers); ok {
		if keys, ok := death["routing-keys"].([]any); ok && len(keys) > 0 {
			if k, ok := keys[0].(string); ok {
				dl.RoutingKey = k
			}
		}
		dl.Reason, _ = death["reason"].(string)
		queue, _ := death["queue"].(string)
		dl.Detail = fmt.Sprintf("dead-lettered by the broker from queue %q (%s)", queue, dl.Reason)
		if t, ok := death["time"].(time.Time); ok {
			dl.DeadLetteredAt = t
		}
		if n, ok := intHeader(d.Headers, "x-delivery-count"); ok {
			dl.Attempts = n + 1
		}
	} else {
		dl.Reason = headerString(d.Headers, ReasonHeader)
		dl.Detail = headerString(d.Headers, DetailHeader)
		dl.DeadLetteredAt, _ = headerTime(d.Headers, DeadLetteredAtHeader)
		if n, ok := intHeader(d.Headers, AttemptsHeader); ok {
			dl.Attempts = n
		} else if n := retryAttempt(d.Headers); n > 0 { // a dead letter of an older version
			dl.Attempts = n + 1
		}
	}
	if n, ok := droppedHeaders(guardKey, d.Headers); ok {
		dl.HeadersDropped = n
		dl.Detail = strings.TrimPrefix(dl.Detail+"; ", "; ") +
			fmt.Sprintf("its headers (%d bytes) made its properties larger than the broker's frame size and could not be read", n)
	}
	if dl.DeadLetteredAt.IsZero() && !d.Timestamp.IsZero() {
		dl.DeadLetteredAt = d.Timestamp
	}
	if dl.Reason == "" {
		dl.Reason = "unknown"
	}
	return dl
}

// intHeader reads an integer header of any AMQP integer type, 0 to 2^31-1.
func intHeader(h amqp091.Table, key string) (int, bool) {
	var n int64
	switch v := h[key].(type) {
	case int8:
		n = int64(v)
	case int16:
		n = int64(v)
	case int32:
		n = int64(v)
	case int64:
		n = v
	case int:
		n = int64(v)
	case uint8:
		n = int64(v)
	case uint16:
		n = int64(v)
	case uint32:
		n = int64(v)
	default:
		return 0, false
	}
	if n < 0 || n > 1<<31-1 {
		return 0, false
	}
	return int(n), true
}

// latestDeath returns the first (most recent) x-death record.
func latestDeath(h amqp091.Table) (amqp091.Table, bool) {
	deaths, ok := h["x-death"].([]any)
	if !ok || len(deaths) == 0 {
		return nil, false
	}
	t, ok := deaths[0].(amqp091.Table)
	return t, ok
}

func headerString(h amqp091.Table, key string) string {
	switch v := h[key].(type) {
	case string:
		return v
	case []byte:
		return string(v)
	}
	return ""
}

// headerTime reads a timestamp header, an RFC 3339 string or epoch seconds.
func headerTime(h amqp091.Table, key string) (time.Time, bool) {
	switch v := h[key].(type) {
	case time.Time:
		return v, !v.IsZero()
	case string:
		t, err := time.Parse(time.RFC3339Nano, v)
		return t, err == nil
	case int64:
		return time.Unix(v, 0), v > 0
	}
	return time.Time{}, false
}

// idPattern finds an "id" string in a body that is not valid JSON.
var idPattern = regexp.MustCompile(`"id"\s*:\s*"((?:[^"\\]|\\.){1,256})"`)

// eventID reads the CloudEvents id of a body leniently: from valid JSON when it is,
// else from the first "id" string that looks like one.
func eventID(body []byte) string {
	var env struct {
		ID json.RawMessage `json:"id"`
	}
	if json.Unmarshal(body, &env) == nil {
		var id string
		if json.Unmarshal(env.ID, &id) == nil {
			return id
		}
		return ""
	}
	m := idPattern.FindSubmatch(body)
	if m == nil {
		return ""
	}
	var id string
	if json.Unmarshal(append(append([]byte{'"'}, m[1]...), '"'), &id) != nil {
		return string(m[1])
	}
	return id
}
