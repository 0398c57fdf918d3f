package http

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"

	"warehouse/domain"
	"warehouse/ports"
)

// The change stream: GET /api/stream, HTML server-sent events.

const routeStream = "/api/stream"

// Stream timings.
const (
	// streamHeartbeat is the pause after which an idle stream sends a comment line, so
	// that proxies keep it open and a gone client is noticed.
	streamHeartbeat = 15 * time.Second
	// streamRetry is the reconnection delay the stream asks EventSource clients to wait.
	streamRetry = 2 * time.Second
	// streamFlushBytes flushes a burst that grew this large even while more is ready.
	streamFlushBytes = 32 << 10
)

// StreamOptions turn on GET /api/stream.
type StreamOptions struct {
	// Stream delivers the changes; nil leaves the route answering 404.
	Stream ports.ChangeStream
	// Heartbeat overrides streamHeartbeat (tests).
	Heartbeat time.Duration
}

// changeStream is the handler of GET /api/stream and its metrics.
type changeStream struct {
	opts         StreamOptions
	writeTimeout time.Duration
	sent         prometheus.Counter
	rendered     *renderCache
}

func newChangeStream(o StreamOptions, writeTimeout time.Duration, reg prometheus.Registerer) *changeStream {
	if o.Heartbeat <= 0 {
		o.Heartbeat = streamHeartbeat
	}
	s := &changeStream{
		opts: o, writeTimeout: writeTimeout, rendered: newRenderCache(8192),
		sent: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stream_events_sent_total",
			Help: "Server-sent events written to change stream clients (a movement and a stock event per stored event).",
		})),
	}
	if o.Stream != nil {
		register(reg, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "stream_clients",
			Help: "Clients connected to the change stream (GET /api/stream), replaying or live.",
		}, func() float64 { return float64(o.Stream.Stats().Clients) }))
		register(reg, prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "stream_clients_dropped_total",
			Help: "Change stream clients disconnected for falling behind by more than their buffer; they resume with Last-Event-ID.",
		}, func() float64 { return float64(o.Stream.Stats().Dropped) }))
	}
	return s
}

// maxPositionDigits bounds a Last-Event-ID or after value: an int64 has 19 digits.
const maxPositionDigits = 19

// parsePosition reads a stream position: a decimal of at most 19 digits, 0 or more.
func parsePosition(name, v string) (int64, error) {
	bad := &requestError{detail: name + " is not a stream position (a whole number from 0, as sent in the id of an event)"}
	if v == "" || len(v) > maxPositionDigits {
		return 0, bad
	}
	for _, r := range v {
		if r < '0' || r > '9' {
			return 0, bad
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, bad
	}
	return n, nil
}

func (s *changeStream) get(c *fiber.Ctx) error {
	query, err := readQuery(c, "warehouse_id", "product_id", "after")
	if err != nil {
		return err
	}
	var f ports.StreamFilter
	if f.Warehouse, err = optionalID(query, "warehouse_id", domain.ParseWarehouseID); err != nil {
		return err
	}
	if f.Product, err = optionalID(query, "product_id", domain.ParseProductID); err != nil {
		return err
	}
	after := ports.FromNow
	if v, ok := query["after"]; ok {
		if after, err = parsePosition("after", v); err != nil {
			return err
		}
	}
	// An EventSource reconnecting sends the id of the last event it took: it wins over
	// the after of the URL it first opened.
	if h := c.Request().Header.Peek("Last-Event-ID"); h != nil {
		if after, err = parsePosition("Last-Event-ID", string(h)); err != nil {
			return err
		}
	}
	if s.opts.Stream == nil {
		return fiber.ErrNotFound
	}
	if c.Method() == fiber.MethodHead {
		c.Set(fiber.HeaderContentType, "text/event-stream")
		return nil
	}
	sub, err := s.opts.Stream.Subscribe(c.UserContext(), after, f)
	switch {
	case errors.Is(err, ports.ErrGone):
		return problemError{status: fiber.StatusGone,
			detail: "the changes after this position are no longer kept; read the current state, then stream from now (no Last-Event-ID)"}
	case errors.Is(err, ports.ErrTooManyClients):
		c.Set(fiber.HeaderRetryAfter, "5")
		return problemError{status: fiber.StatusServiceUnavailable,
			detail: "the change stream has as many clients as it allows; retry after the Retry-After delay"}
	case errors.Is(err, domain.ErrInvalid):
		return &requestError{detail: "the position is ahead of the newest change: it is not one this ledger sent"}
	case err != nil:
		return err
	}
	c.Set(fiber.HeaderContentType, "text/event-stream")
	c.Set(fiber.HeaderCacheControl, "no-cache")
	c.Set("X-Accel-Buffering", "no") // nginx: pass events on as they come
	conn := c.Context().Conn()
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		defer sub.Close()
		s.write(w, conn, sub, after)
	})
	return nil
}

// write sends the subscription's changes until the client goes, falls too far behind or
// the stream stops. The server sets its write deadline once per response; here each
// write moves it on (a live stream outlives it, a stalled client still times out), and
// moves it before anything is written, since the stream may have been idle for longer.
func (s *changeStream) write(w *bufio.Writer, conn net.Conn, sub ports.Subscription, after int64) {
	extend := func() {
		if s.writeTimeout > 0 {
			_ = conn.SetWriteDeadline(time.Now().Add(s.writeTimeout))
		}
	}
	extend()
	_, _ = w.WriteString("retry: " + strconv.FormatInt(streamRetry.Milliseconds(), 10) + "\n\n")
	if w.Flush() != nil {
		return
	}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.Heartbeat)
		c, err := sub.Next(ctx)
		cancel()
		extend()
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			_, _ = w.WriteString(": heartbeat\n\n")
			if w.Flush() != nil {
				return
			}
			continue
		case errors.Is(err, ports.ErrSlowClient):
			_, _ = w.WriteString(": closed: this client fell behind; reconnect with Last-Event-ID to resume\n\n")
			_ = w.Flush()
			return
		case err != nil:
			return
		}
		r := s.rendered.get(c)
		n := 1.0
		if c.Position > after {
			_, _ = w.Write(r.movement)
			n = 2
		}
		_, _ = w.Write(r.stock)
		after = c.StockPosition()
		s.sent.Add(n)
		if sub.Pending() == 0 || w.Buffered() >= streamFlushBytes {
			if w.Flush() != nil {
				return
			}
		}
	}
}

// rendered holds the two server-sent events of one change, ready to write.
type rendered struct {
	position        int64
	movement, stock []byte
}

// renderCache renders each change once for every client that sends it: a ring of the
// newest changes by position.
type renderCache struct {
	mu   sync.Mutex
	ring []*rendered
}

func newRenderCache(n int) *renderCache { return &renderCache{ring: make([]*rendered, n)} }

func (rc *renderCache) get(c domain.Change) *rendered {
	i := int(uint64(c.Position/domain.ChangesPerEvent) % uint64(len(rc.ring)))
	rc.mu.Lock()
	r := rc.ring[i]
	rc.mu.Unlock()
	if r != nil && r.position == c.Position {
		return r
	}
	r = &rendered{position: c.Position, movement: sseEvent(c.Position, "movement", movementOf(c.Movement)),
		stock: sseEvent(c.StockPosition(), "stock", stockOf(c.Stock))}
	rc.mu.Lock()
	rc.ring[i] = r
	rc.mu.Unlock()
	return r
}

// sseEvent is one server-sent event: id, event type and a one-line JSON data field.
func sseEvent(id int64, event string, v any) []byte {
	data, _ := json.Marshal(v) // movementJSON and stockJSON always encode
	b := make([]byte, 0, len(data)+48)
	b = append(b, "id: "...)
	b = strconv.AppendInt(b, id, 10)
	b = append(b, "\nevent: "...)
	b = append(b, event...)
	b = append(b, "\ndata: "...)
	b = append(b, data...)
	return append(b, "\n\n"...)
}
