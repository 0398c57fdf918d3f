package amqp

import (
	"encoding/json"
	"fmt"
	"mime"
	"strings"

	"warehouse/domain"
	"warehouse/ports"
)

// CloudEvents batch mode: one message whose body is a JSON array of structured events,
// each judged on its own by the consumer.

// BatchContentType is the media type of a batch of structured CloudEvents.
const BatchContentType = "application/cloudevents-batch+json"

// Bounds of one batch: a message on AMQP, a request on HTTP.
const (
	// MaxBatchEvents is the most events one batch holds.
	MaxBatchEvents = 1000
	// MaxBatchSize is the largest batch body, in bytes; each of its events is also held
	// to MaxMessageSize by the decoder.
	MaxBatchSize = 8 << 20
)

// ErrBatchTooLarge marks a batch over MaxBatchEvents or MaxBatchSize. It wraps
// domain.ErrInvalid and ports.ErrTooLarge.
var ErrBatchTooLarge = fmt.Errorf("%w: batch %w", domain.ErrInvalid, ports.ErrTooLarge)

// isBatch reports whether contentType is the batch media type.
func isBatch(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && strings.EqualFold(mt, BatchContentType)
}

// SplitBatch returns the elements of a batch: one JSON array of 1 to MaxBatchEvents
// values and nothing after it, at most MaxBatchSize bytes. The elements are decoded one
// by one afterwards, by the decoder of single events. Errors wrap domain.ErrInvalid (and
// ErrBatchTooLarge past the bounds) and quote nothing of the body.
//
// It finds each element's end with a scan that only follows strings and brackets, then
// checks that element with json.Valid: a body of valid elements with commas between them
// is a valid array. (encoding/json's Decoder, token by token, cost four times as much.)
func SplitBatch(body []byte) ([]json.RawMessage, error) { return splitBatch(body, true) }

// splitBatch is SplitBatch; with valid false it leaves each element's check to its
// caller, which must refuse the whole batch when an element is not valid JSON (the
// consumer decodes each element strictly, and checks only those it refuses).
func splitBatch(body []byte, valid bool) ([]json.RawMessage, error) {
	if len(body) > MaxBatchSize {
		return nil, fmt.Errorf("%w: the batch is %d bytes, over the %d byte limit", ErrBatchTooLarge, len(body), MaxBatchSize)
	}
	notArray := invalidBatch("a batch is one JSON array of events")
	d := decoder{b: body}
	d.ws()
	if !d.at('[') {
		return nil, notArray
	}
	d.i++
	d.ws()
	// closed checks what follows the array's closing bracket, at d.i.
	closed := func() error {
		d.i++
		if d.ws(); !d.eof() {
			return invalidBatch("unexpected data after the batch's array")
		}
		return nil
	}
	if d.at(']') {
		if err := closed(); err != nil {
			return nil, err
		}
		return nil, invalidBatch("the batch is empty")
	}
	var raws []json.RawMessage
	for {
		if len(raws) == MaxBatchEvents {
			return nil, fmt.Errorf("%w: a batch holds at most %d events", ErrBatchTooLarge, MaxBatchEvents)
		}
		end, ok := valueEnd(body, d.i)
		if !ok || (valid && !json.Valid(body[d.i:end])) {
			if !ok && end == len(body) {
				return nil, notArray // the body ends inside the element
			}
			return nil, elementNotJSON(len(raws))
		}
		raws = append(raws, body[d.i:end])
		d.i = end
		d.ws()
		switch {
		case d.at(','):
			d.i++
			d.ws()
		case d.at(']'):
			if err := closed(); err != nil {
				return nil, err
			}
			return raws, nil
		case d.eof():
			return nil, notArray
		default: // no comma after an element: what follows is no element
			return nil, elementNotJSON(len(raws))
		}
	}
}

// elementNotJSON is the error for a batch whose element n (0-based) is not JSON.
func elementNotJSON(n int) error {
	return invalidBatch(fmt.Sprintf("event %d of the batch is not JSON", n))
}

// valueEnd returns the end of the JSON value that starts at b[i], following only strings
// (and their escapes) and the nesting of brackets; ok is false when b ends first (end is
// then len(b)) or a bracket closes what it did not open. A scalar ends at the next
// whitespace, comma or bracket. What lies between is for json.Valid to judge.
func valueEnd(b []byte, i int) (end int, ok bool) {
	var open [16]byte
	stack := open[:0] // the closing bytes of the brackets open
	for ; i < len(b); i++ {
		switch c := b[i]; c {
		case '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
			if i >= len(b) {
				return len(b), false
			}
		case '{', '[':
			stack = append(stack, c+2) // '}' is '{'+2, ']' is '['+2
			continue
		case '}', ']':
			if len(stack) == 0 {
				return i, true // a scalar's end, or an empty element json.Valid refuses
			}
			if stack[len(stack)-1] != c {
				return i, false
			}
			stack = stack[:len(stack)-1]
		case ',', ' ', '\t', '\n', '\r':
			if len(stack) == 0 {
				return i, true
			}
			continue
		default:
			continue
		}
		if len(stack) == 0 {
			return i + 1, true
		}
	}
	return len(b), false
}

func invalidBatch(detail string) error {
	return fmt.Errorf("%w: invalid batch: %s", domain.ErrInvalid, detail)
}

// EncodeBatch returns events as one batch body: a JSON array of their EncodeEvent forms.
func EncodeBatch(events []domain.Event) []byte {
	bodies := make([][]byte, len(events))
	for i, e := range events {
		bodies[i] = EncodeEvent(e)
	}
	return JoinBatch(bodies...)
}

// JoinBatch returns structured events, already encoded, as one batch body: a JSON array
// of them, in order.
func JoinBatch(bodies ...[]byte) []byte {
	size := 2
	for _, b := range bodies {
		size += len(b) + 1
	}
	out := make([]byte, 0, size)
	out = append(out, '[')
	for i, b := range bodies {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, b...)
	}
	return append(out, ']')
}

// batchPart is one element of a batch message: its bytes and what they decode to.
type batchPart struct {
	body  []byte
	event domain.Event
	err   error
}

// yieldEvery is how many events of a batch message decodeBatchParts decodes between two
// calls of its yield.
const yieldEvery = 64

// decodeBatchParts splits a batch message and decodes each element as a structured event.
// A message that is not a well-formed batch is one error for the whole message. yield is
// called before every yieldEvery-th event (see yieldToLanes).
func decodeBatchParts(body []byte, yield func()) ([]batchPart, error) {
	raws, err := splitBatch(body, false)
	if err != nil {
		return nil, err
	}
	parts := make([]batchPart, len(raws))
	for i, raw := range raws {
		if i%yieldEvery == 0 {
			yield()
		}
		parts[i].body = raw
		parts[i].event, parts[i].err = DecodeEvent(raw) // strict: what it accepts is valid JSON
		if parts[i].err != nil && !json.Valid(raw) {
			return nil, elementNotJSON(i)
		}
		if parts[i].err != nil {
			parts[i].err = fmt.Errorf("event %d of a batch of %d: %w", i, len(raws), parts[i].err)
		}
	}
	return parts, nil
}

// errMixedBatch is a batch content type on a message that also carries CloudEvents
// attribute headers.
var errMixedBatch = fmt.Errorf("%w: message mixes content modes: CloudEvents attribute headers with the batch content type %s",
	domain.ErrInvalid, BatchContentType)
