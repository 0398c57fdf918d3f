package amqp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"warehouse/ports"
)

// ErrUnroutable marks a message the broker confirmed but could not route to any queue:
// the exchange exists but nothing is bound to it (a topology mistake, not an outage).
var ErrUnroutable = errors.New("unroutable")

// errRefused marks a login or vhost the broker refuses: a configuration problem.
var errRefused = errors.New("broker refused the login or virtual host")

// ContentType is the content type of CloudEvents structured-mode JSON messages.
const ContentType = "application/cloudevents+json"

const (
	// maxRound bounds the messages of one confirm round. The returns channel holds as
	// many, so the client's reader never blocks on it (amqp091-go notifies synchronously).
	maxRound = 1024
	// dialTimeout bounds the TCP connect and AMQP handshake.
	dialTimeout = 10 * time.Second
	heartbeat   = 10 * time.Second
)

// Message is one message for Publisher.PublishBatch: its routing key and AMQP properties.
// A zero DeliveryMode is sent persistent and an empty ContentType as ContentType.
type Message struct {
	// RoutingKey is the routing key to publish with.
	RoutingKey string
	amqp091.Publishing
}

// Publisher publishes with publisher confirms on its own connection and channel, and
// waits for each confirm, so a nil error means the broker has taken responsibility for
// the message. It publishes with mandatory set, so an unroutable message is an error
// (ErrUnroutable) instead of a silent loss. It is safe for concurrent use; publishes are
// serialized. Errors wrap ports.ErrUnavailable when the broker could not be reached,
// refused the message or did not confirm in time; such a Publisher should be closed and
// dialed again.
type Publisher struct {
	log  *slog.Logger
	url  string // as dialled: one node or a cluster's (see ParseNodes)
	conn *amqp091.Connection
	ch   *amqp091.Channel

	mu      sync.Mutex // one confirm round at a time: returns then belong to that round
	returns chan amqp091.Return

	dead      chan struct{} // closed when the connection or channel is gone
	deadErr   error         // why; written before dead is closed
	watchDone chan struct{}
	closeOnce sync.Once
}

// DialPublisher connects to the broker at rawURL (amqp://user:pass@host:port/vhost) and
// opens a channel in confirm mode. It declares nothing.
func DialPublisher(ctx context.Context, rawURL string, log *slog.Logger) (*Publisher, error) {
	return dialPublisher(ctx, rawURL, log, clientFrameMax)
}

func dialPublisher(ctx context.Context, rawURL string, log *slog.Logger, frameMax int) (*Publisher, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	conn, _, err := dialFrame(ctx, rawURL, "warehouse publisher", frameMax)
	if err != nil {
		return nil, err
	}
	ch, err := conn.Channel()
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("%w: open publisher channel: %w", ports.ErrUnavailable, err)
	}
	if err := ch.Confirm(false); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("%w: enable publisher confirms: %w", ports.ErrUnavailable, err)
	}
	p := &Publisher{
		log:       log.With("component", "amqp"),
		url:       rawURL,
		conn:      conn,
		ch:        ch,
		returns:   ch.NotifyReturn(make(chan amqp091.Return, maxRound)),
		dead:      make(chan struct{}),
		watchDone: make(chan struct{}),
	}
	// Every Notify channel is buffered and drained until it closes: amqp091-go sends to
	// them synchronously, and an unread one blocks the connection's reader.
	go p.watch(conn.NotifyClose(make(chan *amqp091.Error, 1)),
		ch.NotifyClose(make(chan *amqp091.Error, 1)),
		conn.NotifyBlocked(make(chan amqp091.Blocking, 4)))
	return p, nil
}

func (p *Publisher) watch(connClose, chClose chan *amqp091.Error, blocked chan amqp091.Blocking) {
	defer close(p.watchDone)
	var once sync.Once
	die := func(err error) {
		once.Do(func() {
			p.deadErr = err
			close(p.dead)
		})
	}
	for connClose != nil || chClose != nil || blocked != nil {
		select {
		case e, ok := <-connClose:
			if !ok {
				connClose = nil
				die(errors.New("publisher connection closed"))
				continue
			}
			nodeLost(p.url) // the broker or the network closed it: the next dial tries another node
			die(fmt.Errorf("publisher connection closed: %w", e))
		case e, ok := <-chClose:
			if !ok {
				chClose = nil
				die(errors.New("publisher channel closed"))
				continue
			}
			die(fmt.Errorf("publisher channel closed: %w", e))
		case b, ok := <-blocked:
			if !ok {
				blocked = nil
				continue
			}
			if b.Active {
				p.log.Warn("broker blocks publishers", "reason", b.Reason)
			} else {
				p.log.Info("broker unblocks publishers")
			}
		}
	}
	die(errors.New("publisher closed"))
}

// Publish sends one persistent CloudEvents message to exchange with routingKey and waits
// for its confirm until ctx is done.
func (p *Publisher) Publish(ctx context.Context, exchange, routingKey string, body []byte, headers amqp091.Table) error {
	return p.PublishBatch(ctx, exchange, []Message{{RoutingKey: routingKey, Publishing: amqp091.Publishing{
		Headers: headers, Body: body, Timestamp: time.Now().UTC().Truncate(time.Second),
	}}})
}

// PublishBatch sends msgs to exchange in order, pipelined (a sliding window of up to 1024
// unconfirmed messages), and waits for all their confirms. On error some messages may have been delivered: callers
// that retry rely on the ledger's deduplication.
func (p *Publisher) PublishBatch(ctx context.Context, exchange string, msgs []Message) error {
	out := make([]outgoing, len(msgs))
	for i := range msgs {
		out[i] = outgoing{exchange: exchange, key: msgs[i].RoutingKey, msg: msgs[i].Publishing}
	}
	return p.publish(ctx, out)
}

// outgoing is one message with its destination.
type outgoing struct {
	exchange, key string
	msg           amqp091.Publishing
}

func (p *Publisher) publish(ctx context.Context, out []outgoing) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stream(ctx, out)
}

// stream publishes out in order with a sliding window of at most maxRound unconfirmed
// messages: it waits for the oldest confirm only when the window is full, so the broker
// never idles between rounds. Returns are drained as confirms arrive, which keeps them
// within the returns buffer (also maxRound). p.mu is held.
func (p *Publisher) stream(ctx context.Context, out []outgoing) error {
	if len(out) == 0 {
		return nil
	}
	if err := p.alive(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: publish to exchange %q: %w", ports.ErrUnavailable, out[0].exchange, err)
	}
	p.drainReturns() // left by an earlier call that timed out
	// While the broker blocks publishers (resource alarm), a frame write can block past
	// ctx (amqp091-go does not watch it): if ctx ends during the writes, tear the connection down to free them.
	stop := context.AfterFunc(ctx, func() { _ = p.conn.CloseDeadline(time.Now().Add(time.Second)) })
	defer stop()
	pending := make([]*amqp091.DeferredConfirmation, 0, min(len(out), maxRound))
	nacked, returned := 0, 0
	waitOldest := func() error {
		ok, err := pending[0].WaitContext(ctx)
		if err != nil {
			return fmt.Errorf("%w: wait for the confirms of %d messages: %w", ports.ErrUnavailable, len(out), p.cause(err))
		}
		if !ok {
			nacked++
		}
		pending = pending[1:]
		// A return precedes the confirm of its message, and the client hands it to the
		// buffered channel before it handles that confirm.
		returned += p.drainReturns()
		return nil
	}
	for _, o := range out {
		if len(pending) == maxRound {
			if err := waitOldest(); err != nil {
				return err
			}
		}
		m := o.msg
		if m.DeliveryMode == 0 {
			m.DeliveryMode = amqp091.Persistent
		}
		if m.ContentType == "" {
			m.ContentType = ContentType
		}
		dc, err := p.ch.PublishWithDeferredConfirmWithContext(ctx, o.exchange, o.key, true, false, m)
		if err != nil {
			return fmt.Errorf("%w: publish to exchange %q: %w", ports.ErrUnavailable, o.exchange, p.cause(err))
		}
		pending = append(pending, dc)
	}
	for len(pending) > 0 {
		if err := waitOldest(); err != nil {
			return err
		}
	}
	if nacked > 0 {
		if err := p.alive(); err != nil {
			return err
		}
		return fmt.Errorf("%w: broker refused %d of %d messages to exchange %q", ports.ErrUnavailable, nacked, len(out), out[0].exchange)
	}
	if returned > 0 {
		return fmt.Errorf("%w: %d of %d messages to exchange %q reached no queue", ErrUnroutable, returned, len(out), out[0].exchange)
	}
	return nil
}

func (p *Publisher) drainReturns() (n int) {
	for {
		select {
		case _, ok := <-p.returns:
			if !ok {
				return n
			}
			n++
		default:
			return n
		}
	}
}

// alive returns an error wrapping ports.ErrUnavailable once the connection or channel is gone.
func (p *Publisher) alive() error {
	select {
	case <-p.dead:
		return fmt.Errorf("%w: %w", ports.ErrUnavailable, p.deadErr)
	default:
		return nil
	}
}

// cause prefers the reason the channel died to the bare "channel/connection is not open".
func (p *Publisher) cause(err error) error {
	select {
	case <-p.dead:
		return p.deadErr
	default:
		return err
	}
}

// Close closes the channel and connection and waits for the notification goroutine.
func (p *Publisher) Close() error {
	var err error
	p.closeOnce.Do(func() {
		if cerr := p.conn.CloseDeadline(time.Now().Add(5 * time.Second)); cerr != nil && !errors.Is(cerr, amqp091.ErrClosed) {
			err = fmt.Errorf("close publisher connection: %w", cerr)
		}
		if waitBounded(p.watchDone, 5*time.Second) {
			for range p.returns { // closed with the channel
			}
		}
	})
	return err
}

// dial opens a connection bounded by ctx and dialTimeout, named for the management UI,
// with a frameGuard between the socket (TLS included, for amqps) and the client, so that
// no message the broker sends can break the connection. It returns the guard's header
// key (see droppedHeaders). Its errors never contain the URL, which may hold a password.
func dial(ctx context.Context, rawURL, name string) (*amqp091.Connection, string, error) {
	return dialFrame(ctx, rawURL, name, clientFrameMax)
}

// Dial opens a connection to the broker of rawURL (one node, or the comma-separated nodes
// of a cluster, see ParseNodes) as the service's own connections are opened: bounded by
// ctx, named for the management UI, behind the frame guard, on the first node that
// answers. For tools that declare or inspect (produce, the benchmark).
func Dial(ctx context.Context, rawURL, name string) (*amqp091.Connection, error) {
	conn, _, err := dial(ctx, rawURL, name)
	return conn, err
}

// dialFrame is dial with the frame_max the client proposes (the broker's may be lower).
// It tries the nodes of rawURL in turn, from the one this process used last (see
// cluster), and returns the first connection; a refused login ends the search, since
// every node has the same users.
func dialFrame(ctx context.Context, rawURL, name string, frameMax int) (*amqp091.Connection, string, error) {
	cl, err := clusterOf(rawURL)
	if err != nil {
		return nil, "", err
	}
	var last error
	for _, node := range cl.order() {
		conn, key, err := dialNode(ctx, node, name, frameMax)
		if err == nil {
			cl.connected(node)
			return conn, key, nil
		}
		if errors.Is(err, errRefused) || ctx.Err() != nil || len(cl.nodes) == 1 {
			return nil, "", err
		}
		last = err
	}
	return nil, "", fmt.Errorf("%w: %w (tried %d nodes)", errNoNode, last, len(cl.nodes))
}

// nodeLost tells the cluster of rawURL that a connection to the node it connected to
// last was lost, so that the next dial starts at another node.
func nodeLost(rawURL string) {
	if cl, err := clusterOf(rawURL); err == nil {
		cl.lostCurrent()
	}
}

// dialNode opens a connection to one node.
func dialNode(ctx context.Context, rawURL, name string, frameMax int) (*amqp091.Connection, string, error) {
	if _, err := url.Parse(rawURL); err != nil {
		return nil, "", errors.New("AMQP URL is not a valid URL") // url.Error would echo the password
	}
	uri, err := amqp091.ParseURI(rawURL)
	if err != nil {
		return nil, "", errors.New("AMQP URL is not a valid AMQP URL")
	}
	cfg := amqp091.Config{
		Vhost:      uri.Vhost,
		ChannelMax: uri.ChannelMax,
		FrameSize:  frameMax,
		Heartbeat:  heartbeat,
		Locale:     "en_US",
		Properties: amqp091.NewConnectionProperties(),
	}
	cfg.Properties.SetClientConnectionName(name)
	if cfg.SASL, err = saslOf(uri); err != nil {
		return nil, "", err
	}
	conn, err := dialSocket(ctx, uri)
	if err != nil {
		return nil, "", fmt.Errorf("%w: connect to %s: %w", ports.ErrUnavailable, redactURL(rawURL), err)
	}
	guard := newFrameGuard(conn, frameMax)
	c, err := amqp091.Open(guard, cfg) // clears the handshake deadline once open
	if err != nil {
		_ = conn.Close()
		var ae *amqp091.Error
		if errors.As(err, &ae) && ae.Code == amqp091.AccessRefused {
			return nil, "", fmt.Errorf("%w: connect to %s: %w", errRefused, redactURL(rawURL), err)
		}
		return nil, "", fmt.Errorf("%w: connect to %s: %w", ports.ErrUnavailable, redactURL(rawURL), err)
	}
	return c, guard.key, nil
}

// dialSocket connects to the broker of uri, with TLS for amqps, and leaves a deadline on
// the connection that bounds the AMQP handshake.
func dialSocket(ctx context.Context, uri amqp091.URI) (net.Conn, error) {
	d := net.Dialer{Timeout: dialTimeout}
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(uri.Host, strconv.Itoa(uri.Port)))
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(dialTimeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	if err := conn.SetDeadline(deadline); err != nil {
		_ = conn.Close()
		return nil, err
	}
	if uri.Scheme != "amqps" {
		return conn, nil
	}
	tc, err := tlsConfigOf(uri)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	client := tls.Client(conn, tc)
	if err := client.HandshakeContext(ctx); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	return client, nil
}

// tlsConfigOf is the TLS configuration amqp091-go builds from an amqps URL: the CA of
// cacertfile (else the system's), the client certificate of certfile and keyfile when
// both are given, and server_name_indication (else the host) as the server name.
func tlsConfigOf(uri amqp091.URI) (*tls.Config, error) {
	tc := &tls.Config{ServerName: uri.ServerName, MinVersion: tls.VersionTLS12}
	if tc.ServerName == "" {
		tc.ServerName = uri.Host
	}
	if uri.CACertFile != "" {
		pem, err := os.ReadFile(uri.CACertFile)
		if err != nil {
			return nil, fmt.Errorf("read AMQP CA certificate: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, errors.New("AMQP CA certificate file holds no PEM certificate")
		}
	}
	if uri.CertFile != "" && uri.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(uri.CertFile, uri.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load AMQP client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// saslOf returns the login mechanisms of uri as amqp091-go's own dial would.
func saslOf(uri amqp091.URI) ([]amqp091.Authentication, error) {
	if len(uri.AuthMechanism) == 0 {
		return []amqp091.Authentication{uri.PlainAuth()}, nil
	}
	var out []amqp091.Authentication
	for _, m := range uri.AuthMechanism {
		switch strings.ToUpper(m) {
		case "PLAIN":
			out = append(out, uri.PlainAuth())
		case "AMQPLAIN":
			out = append(out, uri.AMQPlainAuth())
		case "EXTERNAL":
			out = append(out, &amqp091.ExternalAuth{})
		default:
			return nil, fmt.Errorf("AMQP URL names an unsupported auth_mechanism %q", m)
		}
	}
	return out, nil
}

// redactURL hides the password of a URL; an unparsable one is hidden whole.
func redactURL(raw string) string {
	parts := strings.Split(raw, ",") // a cluster's nodes: every one hides its password
	for i, part := range parts {
		u, err := url.Parse(strings.TrimSpace(part))
		if err != nil {
			parts[i] = "<unparsable URL>"
			continue
		}
		parts[i] = u.Redacted()
	}
	return strings.Join(parts, ",")
}

// waitBounded waits for done, at most d: shutdown must never hang on a library goroutine.
func waitBounded(done <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}
