package amqp

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"warehouse/domain"
)

// VerdictOf exposes verdictFor to the external tests as plain values.
func VerdictOf(result error) (action, reason, detail string) {
	v := verdictFor(result)
	return [...]string{ack: "ack", retryLater: "retryLater", deadLetter: "deadLetter"}[v.action], v.reason, v.detail
}

// GuardStream passes in through a frameGuard, as if the broker had sent it, and returns
// what the client would read and the guard's header key.
func GuardStream(in []byte) (out []byte, key string, err error) {
	server, client := net.Pipe()
	go func() {
		_, _ = server.Write(in)
		_ = server.Close()
	}()
	g := newFrameGuard(client, 131072)
	out, err = io.ReadAll(g)
	return out, g.key, err
}

// CopyOf returns the copy the consumer publishes of d after a verdict: a dead letter
// (action "deadLetter") or a retry ("retryLater"), within frameMax; ok is false when the
// consumer would reject d to the broker's dead-lettering instead.
func CopyOf(d amqp091.Delivery, action string, frameMax int, key []byte) (msg amqp091.Publishing, exchange string, ok bool) {
	c := NewConsumer(ConsumerOptions{ControlKey: key, Topology: DefaultTopology("x", "q", time.Second, 5)}, nil, nil, nil)
	it := c.newItem(&session{}, d)
	it.v = verdict{action: deadLetter, reason: ReasonInvalid, detail: "invalid: test"}
	if action == "retryLater" {
		it.v = verdict{action: retryLater, reason: ReasonInsufficientStock, detail: "insufficient stock"}
	}
	o, ok := c.outgoingFor(it, frameMax)
	return o.msg, o.exchange, ok
}

// AttemptOf returns the delayed retries a consumer with key reads from d.
func AttemptOf(d amqp091.Delivery, key []byte) int {
	c := NewConsumer(ConsumerOptions{ControlKey: key}, nil, nil, nil)
	return c.newItem(&session{}, d).attempt
}

// PropertiesSize is the encoded size of msg's content header payload.
func PropertiesSize(msg amqp091.Publishing) int { return propertiesSize(msg) }

// SetFrameMax makes a consumer propose frameMax as its connections' frame_max.
func SetFrameMax(o *ConsumerOptions, frameMax int) { o.frameMax = frameMax }

// readerConn is a net.Conn that only reads, from r.
type readerConn struct {
	net.Conn
	r io.Reader
}

func (c readerConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// GuardReader returns what a client reads of r through a frameGuard.
func GuardReader(r io.Reader) io.Reader { return newFrameGuard(readerConn{r: r}, 131072) }

// StartClusterAt makes the next dial to the nodes of raw start at node i.
func StartClusterAt(raw string, i int) {
	c, err := clusterOf(raw)
	if err != nil {
		panic(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.next = i
}

// NodeLost is nodeLost for the tests.
func NodeLost(raw string) { nodeLost(raw) }

// ScanNextAfterCancel opens a scan of queue, takes n messages, cancels the scan's
// context, waits until that has closed the connection, and returns the error of the next
// take: the moment a cancelled list or replay meets a closed connection.
func ScanNextAfterCancel(url, queue string, n int) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := openScan(ctx, url, queue)
	if err != nil {
		return err
	}
	defer s.close(context.Background()) //nolint:errcheck // the connection is already closed
	for i := range n {
		_, ok, err := s.next(ctx)
		if err != nil {
			return fmt.Errorf("take %d of %d before the cancel: %w", i+1, n, err)
		}
		if !ok {
			return fmt.Errorf("take %d of %d before the cancel came back empty (the scan's depth: %d)", i+1, n, s.depth)
		}
	}
	cancel()
	for !s.conn.IsClosed() {
		time.Sleep(time.Millisecond)
	}
	_, _, err = s.next(ctx)
	return err
}

// ItemsOf returns what the consumer makes of delivery d: one decoding error per item (nil
// for a valid event), one item per event of a batch message.
func ItemsOf(d amqp091.Delivery) []error {
	c := NewConsumer(ConsumerOptions{Topology: DefaultTopology("x", "q", time.Second, 5)}, nil, nil, nil)
	items := c.newItems(&session{}, d)
	errs := make([]error, len(items))
	for i, it := range items {
		errs[i] = it.invalid
	}
	return errs
}

// LaneOf is the lane of product p among n (see splitLanes).
func LaneOf(p domain.ProductID, n int) int { return laneOf(p, n) }

// SetMinLane makes a consumer split batches into lanes of as few as n events.
func SetMinLane(o *ConsumerOptions, n int) { o.minLane = n }

// DecodeBatchYields decodes body as the consumer does a batch message and returns the
// events decoded and how many times the decoder yielded the processor.
func DecodeBatchYields(body []byte) (events, yields int, err error) {
	parts, err := decodeBatchParts(body, func() { yields++ })
	return len(parts), yields, err
}
