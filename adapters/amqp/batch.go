package amqp

import (
	"bytes"
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
func SplitBatch(body []byte) ([]json.RawMessage, error) {
	if len(body) > MaxBatchSize {
		return nil, fmt.Errorf("%w: the batch is %d bytes, over the %d byte limit", ErrBatchTooLarge, len(body), MaxBatchSize)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if d, ok := tok.(json.Delim); err != nil || !ok || d != '[' {
		return nil, invalidBatch("a batch is one JSON array of events")
	}
	var raws []json.RawMessage
	for dec.More() {
		if len(raws) == MaxBatchEvents {
			return nil, fmt.Errorf("%w: a batch holds at most %d events", ErrBatchTooLarge, MaxBatchEvents)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, invalidBatch(fmt.Sprintf("event %d of the batch is not JSON", len(raws)))
		}
		raws = append(raws, raw)
	}
	if _, err := dec.Token(); err != nil {
		return nil, invalidBatch("a batch is one JSON array of events")
	}
	if _, err := dec.Token(); err == nil || dec.More() {
		return nil, invalidBatch("unexpected data after the batch's array")
	}
	if len(raws) == 0 {
		return nil, invalidBatch("the batch is empty")
	}
	return raws, nil
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

// decodeBatchParts splits a batch message and decodes each element as a structured event.
// A message that is not a well-formed batch is one error for the whole message.
func decodeBatchParts(body []byte) ([]batchPart, error) {
	raws, err := SplitBatch(body)
	if err != nil {
		return nil, err
	}
	parts := make([]batchPart, len(raws))
	for i, raw := range raws {
		parts[i].body = raw
		parts[i].event, parts[i].err = DecodeEvent(raw)
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
