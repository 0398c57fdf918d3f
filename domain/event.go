package domain

import (
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Contract constants of the message format (docs/contract.md, "Messages").
const (
	SpecVersion = "1.0"
	EventType   = "ru.retail.warehouses.movement"

	MinQuantity = 1
	MaxQuantity = 1_000_000_000

	maxIDLen     = 128
	maxSourceLen = 256
)

// EventKind says whether goods left or entered a warehouse.
type EventKind string

// The two kinds of movement event.
const (
	Arrival   EventKind = "arrival"
	Departure EventKind = "departure"
)

// Event is one validated movement event. Only NewEvent builds valid ones.
type Event struct {
	// ID and Source are the CloudEvents identity: the pair is unique in the ledger.
	ID     string
	Source string
	// Time is the envelope time; zero when the producer sent none.
	Time time.Time
	// Attributes holds the optional envelope attributes (subject, destination, …) as a
	// JSON object, kept verbatim for the record; nil when there are none.
	Attributes []byte

	MovementID  MovementID
	WarehouseID WarehouseID
	ProductID   ProductID
	Kind        EventKind
	// Timestamp is when the goods moved, as the warehouse reported it, truncated to
	// microseconds (the ledger's precision) so that a re-sent event compares equal.
	Timestamp time.Time
	Quantity  int64
}

// EventInput is an event as decoded from the wire, before validation.
type EventInput struct {
	ID          string
	Source      string
	SpecVersion string
	Type        string
	Time        time.Time
	Attributes  []byte

	MovementID  string
	WarehouseID string
	ProductID   string
	Event       string
	Timestamp   string
	Quantity    int64
}

// NewEvent checks the input rules of docs/contract.md ("Messages") and returns the event,
// or an error wrapping ErrInvalid that names the first rule broken.
func NewEvent(in EventInput) (Event, error) {
	if err := checkID(in.ID); err != nil {
		return Event{}, err
	}
	if err := checkSource(in.Source); err != nil {
		return Event{}, err
	}
	if in.SpecVersion != SpecVersion {
		return Event{}, fmt.Errorf("%w: specversion %q, want %q", ErrInvalid, clip(in.SpecVersion), SpecVersion)
	}
	if in.Type != EventType {
		return Event{}, fmt.Errorf("%w: type %q, want %q", ErrInvalid, clip(in.Type), EventType)
	}
	e := Event{ID: in.ID, Source: in.Source, Time: in.Time.UTC(), Attributes: in.Attributes, Quantity: in.Quantity}
	var err error
	if e.MovementID, err = ParseMovementID(in.MovementID); err != nil {
		return Event{}, err
	}
	if e.WarehouseID, err = ParseWarehouseID(in.WarehouseID); err != nil {
		return Event{}, err
	}
	if e.ProductID, err = ParseProductID(in.ProductID); err != nil {
		return Event{}, err
	}
	switch k := EventKind(in.Event); k {
	case Arrival, Departure:
		e.Kind = k
	default:
		return Event{}, fmt.Errorf("%w: event %q, want %q or %q", ErrInvalid, clip(in.Event), Arrival, Departure)
	}
	if e.Timestamp, err = ParseTimestamp("timestamp", in.Timestamp); err != nil {
		return Event{}, err
	}
	if in.Quantity < MinQuantity || in.Quantity > MaxQuantity {
		return Event{}, fmt.Errorf("%w: quantity %d is outside %d..%d", ErrInvalid, in.Quantity, MinQuantity, MaxQuantity)
	}
	return e, nil
}

// ParseTimestamp parses an RFC 3339 time with an explicit offset (Z or ±hh:mm) and
// returns it in UTC, truncated to microseconds. The UTC instant must fall in the years 1
// to 9999, which JSON, PostgreSQL and RFC 3339 itself can all represent.
func ParseTimestamp(field, s string) (time.Time, error) {
	if !rfc3339Shaped(s) || offsetHoursTooLarge(s) {
		return time.Time{}, invalidField(field, "is not an RFC 3339 time with offset", s)
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, invalidField(field, "is not an RFC 3339 time with offset", s)
	}
	t = t.UTC().Truncate(time.Microsecond)
	if y := t.Year(); y < 1 || y > 9999 {
		return time.Time{}, invalidField(field, "falls outside the years 1 to 9999 in UTC", s)
	}
	return t, nil
}

// StockKey returns the stock row this event changes.
func (e Event) StockKey() StockKey { return StockKey{Warehouse: e.WarehouseID, Product: e.ProductID} }

// Delta returns the signed change the event makes to its stock row.
func (e Event) Delta() int64 {
	if e.Kind == Departure {
		return -e.Quantity
	}
	return e.Quantity
}

// rfc3339Shaped reports whether s has the shape of the RFC 3339 date-time grammar:
//
//	^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:[0-5]\d)$
//
// time.Parse alone also takes a comma before the fraction, a +24:00 offset and offset
// minutes of 60 (+03:60 read as +04:00). Written out rather than as a regexp, which cost
// the consumer a twentieth of its CPU: every event has a timestamp, and most an envelope
// time too. The cheap shape check runs before time.Parse, so malformed input is refused
// without parsing it.
func rfc3339Shaped(s string) bool {
	const date = "dddd-dd-ddTdd:dd:dd" // d: a digit; anything else: itself
	if len(s) < len(date)+1 {
		return false
	}
	for i := 0; i < len(date); i++ {
		if date[i] == 'd' && !isDigit(s[i]) || date[i] != 'd' && s[i] != date[i] {
			return false
		}
	}
	rest := s[len(date):]
	if rest[0] == '.' {
		n := 1
		for n < len(rest) && isDigit(rest[n]) {
			n++
		}
		if n == 1 || n > 10 { // 1 to 9 digits
			return false
		}
		rest = rest[n:]
	}
	if rest == "Z" {
		return true
	}
	return len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && isDigit(rest[1]) && isDigit(rest[2]) &&
		rest[3] == ':' && '0' <= rest[4] && rest[4] <= '5' && isDigit(rest[5])
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func offsetHoursTooLarge(s string) bool {
	if strings.HasSuffix(s, "Z") || len(s) < 6 {
		return false
	}
	return s[len(s)-5:len(s)-3] > "23"
}

func checkID(id string) error {
	if len(id) == 0 || len(id) > maxIDLen {
		return fmt.Errorf("%w: id must be 1 to %d characters, got %d", ErrInvalid, maxIDLen, len(id))
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c < 0x20 || c > 0x7e {
			return fmt.Errorf("%w: id must be printable ASCII, byte %d is 0x%02x", ErrInvalid, i, c)
		}
	}
	return nil
}

// checkSource also refuses control characters: PostgreSQL text cannot hold NUL, and an
// operator reading a log or a dead letter should never meet an invisible one.
func checkSource(s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: source is not valid UTF-8", ErrInvalid)
	}
	n := utf8.RuneCountInString(s)
	if n == 0 || n > maxSourceLen {
		return fmt.Errorf("%w: source must be 1 to %d characters, got %d", ErrInvalid, maxSourceLen, n)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("%w: source contains control character %U", ErrInvalid, r)
		}
	}
	return nil
}

// ParseIdentity checks a CloudEvents identity as NewEvent does, for a lookup: the error
// names the field and the rule, not the value.
func ParseIdentity(source, id string) (Identity, error) {
	if checkSource(source) != nil {
		return Identity{}, &FieldError{Field: "source", Rule: fmt.Sprintf("is not 1 to %d characters of valid UTF-8 without control characters", maxSourceLen)}
	}
	if checkID(id) != nil {
		return Identity{}, &FieldError{Field: "id", Rule: fmt.Sprintf("is not 1 to %d printable ASCII characters", maxIDLen)}
	}
	return Identity{Source: source, ID: id}, nil
}
