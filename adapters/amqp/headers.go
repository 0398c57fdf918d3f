package amqp

import (
	"cmp"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	amqp091 "github.com/rabbitmq/amqp091-go"
)

// Headers of a message are the publisher's to set, and so hostile: they are bounded on
// the way in, and the copies the service publishes (dead letters, retries) carry them
// only within a budget, with room left for what the broker adds, and never with a header
// of the service's own that a publisher set.

// Header bounds.
const (
	// maxCopiedHeaders bounds the publisher's headers a copy carries, in encoded bytes.
	maxCopiedHeaders = 64 << 10
	// copyHeadroom is left free in a copy's content header frame for the headers the
	// broker adds to it later: x-death records when the retry queue hands it back or a
	// queue dead-letters it, and x-delivery-count on a redelivery.
	copyHeadroom = 16 << 10
	// basicHeaderFixed is the class, weight, body size and flags of a content header.
	basicHeaderFixed = 14
)

// Headers the service sets on the copies it publishes. A publisher's headers of these
// names are dropped on the way in, so that they mean what the service says.
const (
	// AttemptsHeader, on a dead letter of the service's, counts how many times the
	// service judged the message: 1, or 1 + its delayed retries.
	AttemptsHeader = "x-attempts"
	// RetrySignatureHeader authenticates RetryHeader and DroppedHeader: an HMAC of the
	// attempt, the note and the body under the ledger's control key. A retry count
	// without a valid signature is ignored.
	RetrySignatureHeader = "x-retry-signature"
	// DroppedHeader, on a retry, says which publisher headers an earlier copy dropped, so
	// that the dead letter it may end as still says so.
	DroppedHeader = "x-dropped-headers"
)

// controlHeader tells the headers that belong to the service or to the broker's own
// bookkeeping: a copy never carries a publisher's value of one.
func controlHeader(k string) bool {
	switch k {
	case RetryHeader, RetrySignatureHeader, DroppedHeader, ReasonHeader, DetailHeader, DeadLetteredAtHeader,
		AttemptsHeader, "x-death", "x-delivery-count", "CC", "BCC":
		return true
	}
	return strings.HasPrefix(k, "x-first-death-") || strings.HasPrefix(k, "x-last-death-") ||
		strings.HasPrefix(k, "x-headers-dropped-")
}

// publisherHeaders returns the headers of h that the publisher set.
func publisherHeaders(h amqp091.Table) amqp091.Table {
	out := make(amqp091.Table, len(h))
	for k, v := range h {
		if !controlHeader(k) {
			out[k] = v
		}
	}
	return out
}

// trimmed is a table cut to a budget, and what was cut.
type trimmed struct {
	kept         amqp091.Table
	droppedNames []string // sorted
	droppedBytes int
}

// note says what was dropped; empty when nothing was.
func (t trimmed) note() string {
	if len(t.droppedNames) == 0 {
		return ""
	}
	names := t.droppedNames
	more := ""
	if len(names) > 5 {
		names, more = names[:5], fmt.Sprintf(" and %d more", len(t.droppedNames)-5)
	}
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = strconv.Quote(clipString(n, 40))
	}
	return fmt.Sprintf("dropped %d publisher header(s) of %d bytes over the copy's budget: %s%s",
		len(t.droppedNames), t.droppedBytes, strings.Join(quoted, ", "), more)
}

// trimHeaders keeps the entries of h whose encoded size fits budget, smallest first (ties
// by name), so that one huge header costs only itself.
func trimHeaders(h amqp091.Table, budget int) trimmed {
	type entry struct {
		name string
		size int
	}
	entries := make([]entry, 0, len(h))
	for k, v := range h {
		entries = append(entries, entry{k, 1 + len(k) + fieldSize(v)})
	}
	slices.SortFunc(entries, func(a, b entry) int {
		return cmp.Or(cmp.Compare(a.size, b.size), cmp.Compare(a.name, b.name))
	})
	t := trimmed{kept: make(amqp091.Table, len(h))}
	used := 0
	for _, e := range entries {
		if used+e.size <= budget {
			used += e.size
			t.kept[e.name] = h[e.name]
			continue
		}
		t.droppedNames = append(t.droppedNames, e.name)
		t.droppedBytes += e.size
	}
	slices.Sort(t.droppedNames)
	return t
}

// tableSize is the encoded size of a table's entries, without its 4-byte length.
func tableSize(t amqp091.Table) int {
	n := 0
	for k, v := range t {
		n += 1 + len(k) + fieldSize(v)
	}
	return n
}

// fieldSize is the encoded size of one field value as amqp091-go writes it, type octet
// included.
func fieldSize(v any) int {
	switch v := v.(type) {
	case bool, byte, int8:
		return 2
	case int16, uint16:
		return 3
	case int, int32, uint32, float32:
		return 5
	case int64, float64, time.Time:
		return 9
	case amqp091.Decimal:
		return 6
	case string:
		return 5 + len(v)
	case []byte:
		return 5 + len(v)
	case []any:
		n := 5
		for _, e := range v {
			n += fieldSize(e)
		}
		return n
	case amqp091.Table:
		return 5 + tableSize(v)
	case nil:
		return 1
	}
	return 1 << 30 // not encodable: never fits
}

// propertiesSize is the size of the content header frame payload of msg.
func propertiesSize(msg amqp091.Publishing) int {
	n := basicHeaderFixed
	for _, s := range []string{msg.ContentType, msg.ContentEncoding, msg.CorrelationId, msg.ReplyTo,
		msg.Expiration, msg.MessageId, msg.Type, msg.UserId, msg.AppId} {
		if s != "" {
			n += 1 + len(s)
		}
	}
	if len(msg.Headers) > 0 {
		n += 4 + tableSize(msg.Headers)
	}
	if msg.DeliveryMode != 0 {
		n++
	}
	if msg.Priority != 0 {
		n++
	}
	if !msg.Timestamp.IsZero() {
		n += 8
	}
	return n
}

// copyBudget is how many bytes of publisher headers a copy may carry: what is left of
// the frame once the copy's other properties (with the service's headers in msg) and the
// headroom for the broker are counted, and at most maxCopiedHeaders. It is negative when
// even a copy without publisher headers would not fit.
func copyBudget(frameMax int, msg amqp091.Publishing) int {
	free := frameMax - frameOverhead - copyHeadroom - propertiesSize(msg)
	if len(msg.Headers) == 0 {
		free -= 4 // the table's length, once it has entries
	}
	return min(free, maxCopiedHeaders)
}

// retrySigner signs and checks the retry count of a message with the ledger's control
// key, so that only the service's own retries count: a publisher that sets RetryHeader,
// or copies it from another message, gets no retry taken from it.
type retrySigner struct{ key []byte }

// sign returns the signature of attempt and note for body.
func (s retrySigner) sign(attempt int, note string, body []byte) string {
	mac := hmac.New(sha256.New, s.key)
	fmt.Fprintf(mac, "warehouse retry v1\x00%d\x00%d\x00%s", attempt, len(note), note)
	mac.Write(body)
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// verify returns the delayed retries a message has been through and the note of the
// headers its copies dropped, from RetryHeader and DroppedHeader when their signature is
// valid; else 0 and "".
func (s retrySigner) verify(h amqp091.Table, body []byte) (attempt int, note string) {
	n := retryAttempt(h)
	if n == 0 || len(s.key) == 0 {
		return 0, ""
	}
	note = headerString(h, DroppedHeader)
	sig, _ := h[RetrySignatureHeader].(string)
	if !hmac.Equal([]byte(sig), []byte(s.sign(n, note, body))) {
		return 0, ""
	}
	return n, note
}

// clipString cuts s to at most n bytes at a rune boundary, marking the cut with "…".
func clipString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n - len("…")
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}
