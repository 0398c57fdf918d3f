package http

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"mime"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"warehouse/domain"
	"warehouse/ports"
)

// HTTP ingest: POST /api/events, CloudEvents over HTTP in its three modes.

const routeIngest = "/api/events"

// Limits of one ingest request, checked before anything is decoded.
const (
	// MaxIngestEventBytes bounds one event: a structured or binary request, and each
	// event of a batch.
	MaxIngestEventBytes = 64 << 10
	// MaxIngestBatchBytes bounds a batch request.
	MaxIngestBatchBytes = 8 << 20
	// MaxIngestBatchEvents bounds the events of a batch.
	MaxIngestBatchEvents = 1000
)

// Content types of the CloudEvents HTTP binding.
const (
	mimeStructured = "application/cloudevents+json"
	mimeBatch      = "application/cloudevents-batch+json"
)

// DecodeFunc is the service's one strict event decoder: a structured event (attrs nil,
// body the whole event) or a binary-mode one (attrs the CloudEvents attributes by name,
// from the ce- headers, body the data). Its errors wrap domain.ErrInvalid and name the
// rule broken.
type DecodeFunc func(attrs map[string]string, contentType string, body []byte) (domain.Event, error)

// IngestOptions turn on POST /api/events.
type IngestOptions struct {
	// Token is the bearer token a publisher must present; ingest is off while it is empty,
	// unless Open.
	Token string
	// Open takes requests without a token when Token is empty: the dev mode only, which
	// listens on loopback.
	Open bool
	// Rate bounds the requests per second of one client address (0: no bound); past it
	// the answer is 429 with Retry-After.
	Rate float64
	// Publisher receives the events of a valid request.
	Publisher ports.EventPublisher
	// Decode is the event decoder.
	Decode DecodeFunc
	// SplitBatch returns the elements of a batch body (the AMQP consumer's splitter, so
	// that both paths read batches alike); errors wrap domain.ErrInvalid, and
	// ports.ErrTooLarge past the batch bounds.
	SplitBatch func(body []byte) ([]json.RawMessage, error)
}

// ingest is the handler of POST /api/events.
type ingest struct {
	opts  IngestOptions
	token []byte
	rate  *rateLimiter
}

func newIngest(o IngestOptions) *ingest {
	in := &ingest{opts: o, token: []byte(o.Token)}
	if o.Rate > 0 {
		in.rate = newRateLimiter(o.Rate)
	}
	return in
}

// enabled reports whether ingest is on.
func (in *ingest) enabled() bool {
	return in != nil && (len(in.token) > 0 || in.opts.Open) && in.opts.Publisher != nil && in.opts.Decode != nil
}

// auth checks the ingest token (not the read token: publishers and readers hold
// different secrets) and the client's rate, before the body is read.
func (in *ingest) auth(c *fiber.Ctx) error {
	if !in.enabled() {
		return problemError{status: fiber.StatusForbidden, detail: "HTTP ingest is off: the service has no INGEST_TOKEN"}
	}
	const scheme = "bearer "
	h := c.Get(fiber.HeaderAuthorization)
	if len(in.token) == 0 { // Open: the dev mode
		return in.limited(c)
	}
	if len(h) <= len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) ||
		subtle.ConstantTimeCompare([]byte(strings.TrimSpace(h[len(scheme):])), in.token) != 1 {
		c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="warehouse-ingest"`)
		return fiber.ErrUnauthorized
	}
	return in.limited(c)
}

// limited applies the rate limit per client address, then goes on.
func (in *ingest) limited(c *fiber.Ctx) error {
	if in.rate != nil {
		if wait, ok := in.rate.allow(c.IP(), time.Now()); !ok {
			c.Set(fiber.HeaderRetryAfter, strconv.Itoa(int(math.Ceil(wait.Seconds()))))
			return problemError{status: fiber.StatusTooManyRequests, detail: "too many ingest requests from this address; retry after the time Retry-After gives"}
		}
	}
	return c.Next()
}

// post decodes every event of the request with the one decoder, refuses the whole
// request if any is invalid, and answers 202 with the events' identities once the
// broker has confirmed them all.
func (in *ingest) post(c *fiber.Ctx) error {
	if _, err := readQuery(c); err != nil { // it takes none
		return err
	}
	body := c.Body()
	mediaType := ""
	if ct := c.Get(fiber.HeaderContentType); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil {
			return problemError{status: fiber.StatusUnsupportedMediaType, detail: "Content-Type is not a media type"}
		}
		mediaType = strings.ToLower(mt)
	}
	var events []domain.Event
	switch mediaType {
	case mimeBatch:
		raws, err := in.opts.SplitBatch(body)
		switch {
		case errors.Is(err, ports.ErrTooLarge):
			return problemError{status: fiber.StatusRequestEntityTooLarge,
				detail: fmt.Sprintf("a batch holds at most %d events and %d bytes", MaxIngestBatchEvents, MaxIngestBatchBytes)}
		case err != nil:
			// The splitter's messages are its own constants: they quote nothing of the body.
			return problemError{status: fiber.StatusBadRequest, detail: strings.TrimPrefix(err.Error(), domain.ErrInvalid.Error()+": ")}
		}
		for i, raw := range raws {
			if len(raw) > MaxIngestEventBytes {
				return invalidEvent(i, fmt.Errorf("%w: event is %d bytes, over the %d byte limit", domain.ErrInvalid, len(raw), MaxIngestEventBytes))
			}
			e, err := in.opts.Decode(nil, mimeStructured, raw)
			if err != nil {
				return invalidEvent(i, err)
			}
			events = append(events, e)
		}
	default:
		if len(body) > MaxIngestEventBytes {
			return problemError{status: fiber.StatusRequestEntityTooLarge,
				detail: fmt.Sprintf("an event is at most %d bytes (a batch: %d)", MaxIngestEventBytes, MaxIngestBatchBytes)}
		}
		attrs := binaryAttributes(c)
		if mediaType == mimeStructured && len(attrs) > 0 {
			return invalidEvent(0, fmt.Errorf("%w: request mixes content modes: ce- headers with Content-Type %s", domain.ErrInvalid, mimeStructured))
		}
		if mediaType != mimeStructured && len(attrs) == 0 {
			return problemError{status: fiber.StatusUnsupportedMediaType,
				detail: "want a structured event (Content-Type " + mimeStructured + "), a batch (" + mimeBatch + "), or a binary-mode event (ce-id, ce-source, ce-specversion, ce-type headers and the data as the body)"}
		}
		if mediaType == mimeStructured {
			attrs = nil
		}
		e, err := in.opts.Decode(attrs, c.Get(fiber.HeaderContentType), body)
		if err != nil {
			return invalidEvent(0, err)
		}
		events = append(events, e)
	}
	if err := in.opts.Publisher.PublishEvents(c.UserContext(), events); err != nil {
		c.Set(fiber.HeaderRetryAfter, "1")
		return err // unavailable: 503, and the client may retry
	}
	out := ingestAccepted{Accepted: len(events), Events: make([]eventIdentity, len(events))}
	for i, e := range events {
		out.Events[i] = eventIdentity{Source: e.Source, ID: e.ID}
	}
	return c.Status(fiber.StatusAccepted).JSON(out)
}

// ingestAccepted is the answer to an accepted request.
type ingestAccepted struct {
	Accepted int             `json:"accepted"`
	Events   []eventIdentity `json:"events"`
}

type eventIdentity struct {
	Source string `json:"source"`
	ID     string `json:"id"`
}

// binaryAttributes returns the CloudEvents attributes of the ce- headers, by lowercase
// name (HTTP header names are case-insensitive; attribute names are lowercase).
func binaryAttributes(c *fiber.Ctx) map[string]string {
	var attrs map[string]string
	c.Request().Header.VisitAll(func(k, v []byte) {
		if len(k) > 3 && bytes.EqualFold(k[:3], []byte("ce-")) {
			if attrs == nil {
				attrs = make(map[string]string)
			}
			attrs[strings.ToLower(string(k[3:]))] = string(v)
		}
	})
	return attrs
}

// invalidEvent is the 400 of an invalid event of a request: its index and the rule it
// broke, with the request's own words taken out (see unechoed).
func invalidEvent(i int, err error) error {
	if !errors.Is(err, domain.ErrInvalid) {
		return err
	}
	return problemError{status: fiber.StatusBadRequest,
		detail: fmt.Sprintf("event %d: %s; nothing of the request was published", i, unechoed(err.Error()))}
}

// quoted matches a double-quoted fragment of a decoder message.
var quoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)

// knownNames are the attribute and field names a message may quote back: the format's,
// not the request's.
var knownNames = map[string]bool{
	`"id"`: true, `"source"`: true, `"specversion"`: true, `"type"`: true, `"time"`: true, `"data"`: true,
	`"datacontenttype"`: true, `"dataschema"`: true, `"subject"`: true, `"movement_id"`: true, `"warehouse_id"`: true,
	`"product_id"`: true, `"timestamp"`: true, `"event"`: true, `"quantity"`: true, `"1.0"`: true,
	`"ru.retail.warehouses.movement"`: true, `"arrival"`: true, `"departure"`: true,
}

// unechoed replaces every quoted fragment of msg that is not a name of the format with
// "…" and cuts what follows "got " to its first word: the decoder names what it read,
// and the answer to a request never carries the request's bytes back.
func unechoed(msg string) string {
	msg = strings.TrimPrefix(msg, domain.ErrInvalid.Error()+": ")
	msg = quoted.ReplaceAllStringFunc(msg, func(q string) string {
		if knownNames[q] {
			return q
		}
		return `"…"`
	})
	if i := strings.Index(msg, "got "); i >= 0 {
		rest := msg[i+4:]
		if j := strings.IndexAny(rest, " ,;()"); j >= 0 {
			rest = rest[:j]
		}
		if rest != "a" && rest != "an" {
			msg = msg[:i] + "got another value"
		}
	}
	return msg
}

// rateLimiter is a token bucket per client address: rate requests a second, bursts of
// up to max(1, rate). Addresses unseen for a minute are forgotten when the table grows.
type rateLimiter struct {
	rate, burst float64

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newRateLimiter(rate float64) *rateLimiter {
	return &rateLimiter{rate: rate, burst: math.Max(1, rate), buckets: make(map[string]*bucket)}
}

// allow takes a token for addr; when there is none it reports how long until one.
func (r *rateLimiter) allow(addr string, now time.Time) (wait time.Duration, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.buckets[addr]
	if b == nil {
		if len(r.buckets) >= 10000 {
			for a, old := range r.buckets {
				if now.Sub(old.last) > time.Minute {
					delete(r.buckets, a)
				}
			}
		}
		b = &bucket{tokens: r.burst, last: now}
		r.buckets[addr] = b
	}
	b.tokens = math.Min(r.burst, b.tokens+now.Sub(b.last).Seconds()*r.rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return 0, true
	}
	return time.Duration((1 - b.tokens) / r.rate * float64(time.Second)), false
}
