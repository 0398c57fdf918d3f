package amqp

import (
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"warehouse/domain"
)

// MaxMessageSize is the largest message body DecodeEvent accepts, in bytes. It is checked
// before any decoding, so an oversized body costs nothing but its length.
const MaxMessageSize = 64 << 10

// maxAttrNameLen is CloudEvents' limit on attribute names.
const maxAttrNameLen = 20

// Envelope time bounds: the years RFC 3339 can write, so that both wire forms of time
// cover the same instants and a stored time always fits PostgreSQL.
var (
	minEnvelopeTime = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	maxEnvelopeTime = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
)

// Bits of the envelope attributes with a fixed meaning, to find duplicates and missing ones.
const (
	attrID uint16 = 1 << iota
	attrSource
	attrSpecVersion
	attrType
	attrData
	attrTime
	attrDataContentType
	attrDataSchema
	attrSubject

	attrRequired = attrID | attrSource | attrSpecVersion | attrType | attrData
)

// Bits of the keys of data, all required.
const (
	dataMovementID uint8 = 1 << iota
	dataWarehouseID
	dataTimestamp
	dataEvent
	dataProductID
	dataQuantity

	dataAll = dataMovementID | dataWarehouseID | dataTimestamp | dataEvent | dataProductID | dataQuantity
)

// DecodeEvent decodes one CloudEvents 1.0 structured-mode JSON message and validates it
// with domain.NewEvent. Decoding is strict, as docs/contract.md requires: at most
// MaxMessageSize bytes, valid UTF-8, exactly one JSON object and nothing after it but
// whitespace, exact-case keys, no duplicate key, no unknown key inside data, no U+0000 in
// any string, and quantity a JSON integer. Optional envelope attributes (every one but id,
// source, specversion, type, time and data) land in Event.Attributes as a compact JSON
// object. Every error wraps domain.ErrInvalid and names the first rule broken.
//
// It is a hand-written single pass over the bytes rather than encoding/json, which
// matches keys case-insensitively and lets the last of duplicate keys win.
func DecodeEvent(body []byte) (domain.Event, error) {
	in, err := decodeInput(body)
	if err != nil {
		return domain.Event{}, err
	}
	return domain.NewEvent(in)
}

func decodeInput(body []byte) (domain.EventInput, error) {
	return decodeInputLimit(body, MaxMessageSize)
}

// decodeInputLimit is decodeInput with another size limit (a binary-mode message's
// envelope rebuilt from its headers is checked against the body's limit plus theirs).
func decodeInputLimit(body []byte, limit int) (domain.EventInput, error) {
	var in domain.EventInput
	if len(body) > limit {
		return in, invalidf("message is %d bytes, over the %d byte limit", len(body), limit)
	}
	if !utf8.Valid(body) {
		return in, invalidf("message is not valid UTF-8")
	}
	d := decoder{b: body}
	d.ws()
	if d.eof() {
		return in, invalidf("message is empty")
	}
	if d.b[d.i] != '{' {
		return in, invalidf("message must be a JSON object, got %s", d.describe())
	}
	d.i++

	var (
		seen  uint16
		ext   keySet
		attrs []byte
	)
	for first := true; ; first = false {
		d.ws()
		if first && d.at('}') {
			d.i++
			break
		}
		kb, err := d.key()
		if err != nil {
			return in, err
		}
		if !validAttrName(kb) {
			return in, invalidf("envelope key %q is not a CloudEvents attribute name (1 to %d lowercase letters and digits)", clip(string(kb)), maxAttrNameLen)
		}
		if err := d.colon(); err != nil {
			return in, err
		}
		bit := envelopeBit(kb)
		if bit != 0 {
			if seen&bit != 0 {
				return in, invalidf("duplicate key %q", string(kb))
			}
			seen |= bit
		}
		switch bit {
		case attrID:
			in.ID, err = d.stringValue("id")
		case attrSource:
			in.Source, err = d.stringValue("source")
		case attrSpecVersion:
			in.SpecVersion, err = d.stringValue("specversion")
		case attrType:
			in.Type, err = d.stringValue("type")
		case attrData:
			err = d.data(&in)
		case attrTime:
			in.Time, err = d.envelopeTime()
		case attrDataContentType, attrDataSchema, attrSubject:
			var s string
			if s, err = d.stringValue(string(kb)); err == nil {
				attrs = appendAttr(attrs, kb)
				attrs = appendJSONString(attrs, s)
			}
		default:
			name := string(kb)
			if !ext.add(name) {
				return in, invalidf("duplicate key %q", name)
			}
			attrs = appendAttr(attrs, kb)
			attrs, err = d.extensionValue(attrs, name)
		}
		if err != nil {
			return in, err
		}
		d.ws()
		if d.at(',') {
			d.i++
			continue
		}
		if d.at('}') {
			d.i++
			break
		}
		return in, d.syntax("',' or '}' after a value")
	}
	d.ws()
	if !d.eof() {
		return in, invalidf("unexpected data after the JSON object at byte %d", d.i)
	}
	if missing := attrRequired &^ seen; missing != 0 {
		for _, a := range []struct {
			bit  uint16
			name string
		}{{attrID, "id"}, {attrSource, "source"}, {attrSpecVersion, "specversion"}, {attrType, "type"}, {attrData, "data"}} {
			if missing&a.bit != 0 {
				return in, invalidf("%s is required", a.name)
			}
		}
	}
	if attrs != nil {
		attrs = append(attrs, '}')
	}
	in.Attributes = attrs
	return in, nil
}

// data decodes the data object into in.
func (d *decoder) data(in *domain.EventInput) error {
	if d.eof() || d.b[d.i] != '{' {
		return invalidf("data must be an object, got %s", d.describe())
	}
	d.i++
	var seen uint8
	for first := true; ; first = false {
		d.ws()
		if first && d.at('}') {
			d.i++
			break
		}
		kb, err := d.key()
		if err != nil {
			return err
		}
		bit := dataBit(kb)
		if bit == 0 {
			return invalidf("data has unknown key %q", clip(string(kb)))
		}
		if seen&bit != 0 {
			return invalidf("data has duplicate key %q", string(kb))
		}
		seen |= bit
		if err := d.colon(); err != nil {
			return err
		}
		switch bit {
		case dataMovementID:
			in.MovementID, err = d.stringValue("data.movement_id")
		case dataWarehouseID:
			in.WarehouseID, err = d.stringValue("data.warehouse_id")
		case dataTimestamp:
			in.Timestamp, err = d.stringValue("data.timestamp")
		case dataEvent:
			in.Event, err = d.stringValue("data.event")
		case dataProductID:
			in.ProductID, err = d.stringValue("data.product_id")
		case dataQuantity:
			in.Quantity, err = d.integer("data.quantity")
		}
		if err != nil {
			return err
		}
		d.ws()
		if d.at(',') {
			d.i++
			continue
		}
		if d.at('}') {
			d.i++
			break
		}
		return d.syntax("',' or '}' after a value in data")
	}
	if missing := dataAll &^ seen; missing != 0 {
		for _, k := range []struct {
			bit  uint8
			name string
		}{{dataMovementID, "movement_id"}, {dataWarehouseID, "warehouse_id"}, {dataTimestamp, "timestamp"},
			{dataEvent, "event"}, {dataProductID, "product_id"}, {dataQuantity, "quantity"}} {
			if missing&k.bit != 0 {
				return invalidf("data.%s is required", k.name)
			}
		}
	}
	return nil
}

// envelopeTime decodes the envelope time: epoch milliseconds or an RFC 3339 string with offset.
func (d *decoder) envelopeTime() (time.Time, error) {
	var t time.Time
	switch {
	case d.at('"'):
		s, err := d.stringValue("time")
		if err != nil {
			return t, err
		}
		if t, err = domain.ParseTimestamp("time", s); err != nil {
			return t, err
		}
	case d.atNumber():
		ms, err := d.integer("time")
		if err != nil {
			return t, err
		}
		t = time.UnixMilli(ms).UTC()
	default:
		return t, invalidf("time must be epoch milliseconds or an RFC 3339 string, got %s", d.describe())
	}
	if t.Before(minEnvelopeTime) || !t.Before(maxEnvelopeTime) {
		return time.Time{}, invalidf("time must fall in the years 1 to 9999 UTC")
	}
	return t, nil
}

// extensionValue appends the JSON of an extension attribute's value to dst. CloudEvents
// attributes are scalars: a string, an integer or a boolean.
func (d *decoder) extensionValue(dst []byte, name string) ([]byte, error) {
	switch {
	case d.at('"'):
		s, err := d.stringValue(name)
		if err != nil {
			return dst, err
		}
		return appendJSONString(dst, s), nil
	case d.atNumber():
		start := d.i
		if _, err := d.integer(name); err != nil {
			return dst, err
		}
		return append(dst, d.b[start:d.i]...), nil
	case d.literal("true"):
		return append(dst, "true"...), nil
	case d.literal("false"):
		return append(dst, "false"...), nil
	}
	return dst, invalidf("attribute %s must be a string, an integer or a boolean, got %s", name, d.describe())
}

// decoder is a cursor over a message already checked to be valid UTF-8.
type decoder struct {
	b []byte
	i int
}

func (d *decoder) eof() bool { return d.i >= len(d.b) }

func (d *decoder) at(c byte) bool { return d.i < len(d.b) && d.b[d.i] == c }

func (d *decoder) atNumber() bool {
	return d.i < len(d.b) && (d.b[d.i] == '-' || isDigit(d.b[d.i]))
}

// ws skips JSON whitespace (space, tab, line feed, carriage return; nothing else).
func (d *decoder) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// literal consumes word when it comes next, as a whole token.
func (d *decoder) literal(word string) bool {
	end := d.i + len(word)
	if end > len(d.b) || string(d.b[d.i:end]) != word {
		return false
	}
	if end < len(d.b) && isLetterOrDigit(d.b[end]) {
		return false
	}
	d.i = end
	return true
}

func (d *decoder) colon() error {
	d.ws()
	if !d.at(':') {
		return d.syntax("':' after a key")
	}
	d.i++
	d.ws()
	return nil
}

// key reads an object key.
func (d *decoder) key() ([]byte, error) {
	if !d.at('"') {
		return nil, d.syntax("a string key")
	}
	kb, err := d.str()
	if err != nil {
		return nil, invalidf("key: %v", err)
	}
	return kb, nil
}

// stringValue reads a value that must be a string; path names it in errors.
func (d *decoder) stringValue(path string) (string, error) {
	if !d.at('"') {
		return "", invalidf("%s must be a string, got %s", path, d.describe())
	}
	b, err := d.str()
	if err != nil {
		return "", invalidf("%s: %v", path, err)
	}
	return string(b), nil
}

// integer reads a value that must be a JSON integer within int64: no fraction, no
// exponent, no quotes.
func (d *decoder) integer(path string) (int64, error) {
	if !d.atNumber() {
		return 0, invalidf("%s must be an integer, got %s", path, d.describe())
	}
	lit, err := d.number()
	if err != nil {
		return 0, invalidf("%s: %v", path, err)
	}
	for _, c := range lit {
		if c == '.' || c == 'e' || c == 'E' {
			return 0, invalidf("%s must be an integer, got %s", path, clip(string(lit)))
		}
	}
	n, err := strconv.ParseInt(string(lit), 10, 64)
	if err != nil {
		return 0, invalidf("%s %s is out of range", path, clip(string(lit)))
	}
	return n, nil
}

// number reads a JSON number token and returns its text.
func (d *decoder) number() ([]byte, error) {
	b, i := d.b, d.i
	start := i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	default:
		return nil, errors.New("malformed number")
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || !isDigit(b[i]) {
			return nil, errors.New("malformed number")
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !isDigit(b[i]) {
			return nil, errors.New("malformed number")
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	d.i = i
	return b[start:i], nil
}

// str reads the JSON string that starts at d.i and returns its decoded bytes. Without
// escapes the result aliases the message: the common case allocates nothing.
func (d *decoder) str() ([]byte, error) {
	b := d.b
	start := d.i + 1
	for i := start; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			d.i = i + 1
			return b[start:i], nil
		case c == '\\':
			return d.strEscaped(start, i)
		case c < 0x20:
			return nil, fmt.Errorf("control character 0x%02x in a string at byte %d", c, i)
		}
	}
	return nil, errors.New("unterminated string")
}

// strEscaped finishes str for a string with escapes; b[start:i] holds none.
func (d *decoder) strEscaped(start, i int) ([]byte, error) {
	b := d.b
	out := make([]byte, 0, i-start+32)
	out = append(out, b[start:i]...)
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			d.i = i + 1
			return out, nil
		case c < 0x20:
			return nil, fmt.Errorf("control character 0x%02x in a string at byte %d", c, i)
		case c != '\\':
			out = append(out, c)
			i++
			continue
		}
		if i+1 >= len(b) {
			break
		}
		switch e := b[i+1]; e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := hex4(b, i+2)
			if !ok {
				return nil, fmt.Errorf("malformed \\u escape at byte %d", i)
			}
			i += 6
			if utf16.IsSurrogate(r) {
				r2, ok := rune(0), false
				if r < 0xdc00 && i+1 < len(b) && b[i] == '\\' && b[i+1] == 'u' {
					r2, ok = hex4(b, i+2)
				}
				if !ok || r2 < 0xdc00 || r2 > 0xdfff {
					return nil, fmt.Errorf("unpaired surrogate \\u%04x at byte %d", r, i-6)
				}
				r = utf16.DecodeRune(r, r2)
				i += 6
			}
			if r == 0 {
				return nil, errors.New("string contains U+0000")
			}
			out = utf8.AppendRune(out, r)
			continue
		default:
			return nil, fmt.Errorf("malformed escape at byte %d", i)
		}
		i += 2
	}
	return nil, errors.New("unterminated string")
}

func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// describe names the value at the cursor for an error message, without echoing much of it.
func (d *decoder) describe() string {
	if d.eof() {
		return "end of input"
	}
	switch c := d.b[d.i]; {
	case c == '"':
		return "a string"
	case c == '{':
		return "an object"
	case c == '[':
		return "an array"
	case c == '-' || isDigit(c):
		start := d.i
		if lit, err := d.number(); err == nil {
			d.i = start
			return clip(string(lit))
		}
		return "a malformed number"
	case c == 't' || c == 'f' || c == 'n':
		start := d.i
		for _, w := range []string{"true", "false", "null"} {
			if d.literal(w) {
				d.i = start
				return w
			}
		}
	}
	r, _ := utf8.DecodeRune(d.b[d.i:])
	return fmt.Sprintf("unexpected character %q", r)
}

func (d *decoder) syntax(want string) error {
	return invalidf("malformed JSON at byte %d: want %s, got %s", d.i, want, d.describe())
}

func envelopeBit(k []byte) uint16 {
	switch string(k) {
	case "id":
		return attrID
	case "source":
		return attrSource
	case "specversion":
		return attrSpecVersion
	case "type":
		return attrType
	case "data":
		return attrData
	case "time":
		return attrTime
	case "datacontenttype":
		return attrDataContentType
	case "dataschema":
		return attrDataSchema
	case "subject":
		return attrSubject
	}
	return 0
}

func dataBit(k []byte) uint8 {
	switch string(k) {
	case "movement_id":
		return dataMovementID
	case "warehouse_id":
		return dataWarehouseID
	case "timestamp":
		return dataTimestamp
	case "event":
		return dataEvent
	case "product_id":
		return dataProductID
	case "quantity":
		return dataQuantity
	}
	return 0
}

// validAttrName reports whether k matches CloudEvents' ^[a-z0-9]{1,20}$.
func validAttrName(k []byte) bool {
	if len(k) == 0 || len(k) > maxAttrNameLen {
		return false
	}
	for _, c := range k {
		if (c < 'a' || c > 'z') && !isDigit(c) {
			return false
		}
	}
	return true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isLetterOrDigit(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || isDigit(c)
}

// keySet finds duplicate extension names: a slice for the usual handful, a map past it,
// so that a 64 KiB message of tiny keys stays linear.
type keySet struct {
	small []string
	big   map[string]struct{}
}

func (k *keySet) add(s string) bool {
	if k.big != nil {
		if _, dup := k.big[s]; dup {
			return false
		}
		k.big[s] = struct{}{}
		return true
	}
	for _, x := range k.small {
		if x == s {
			return false
		}
	}
	k.small = append(k.small, s)
	if len(k.small) > 16 {
		k.big = make(map[string]struct{}, 64)
		for _, x := range k.small {
			k.big[x] = struct{}{}
		}
		k.small = nil
	}
	return true
}

// appendAttr opens the attributes object or continues it, then writes the key.
func appendAttr(dst, key []byte) []byte {
	if dst == nil {
		dst = make([]byte, 0, 128)
		dst = append(dst, '{')
	} else {
		dst = append(dst, ',')
	}
	dst = appendJSONString(dst, string(key))
	return append(dst, ':')
}

// appendJSONString writes s as a JSON string, escaping only what JSON requires. s is
// valid UTF-8 without U+0000, as every string DecodeEvent accepts.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// EncodeEvent returns the canonical message for e: the CloudEvents envelope with time as
// epoch milliseconds (an RFC 3339 string when it has a finer part), e.Attributes merged
// back in, and data. DecodeEvent(EncodeEvent(e)) returns e for any e that DecodeEvent
// returned; e.Attributes must be a JSON object of optional attributes, as DecodeEvent
// builds it.
func EncodeEvent(e domain.Event) []byte {
	b := make([]byte, 0, 384+len(e.ID)+len(e.Source)+len(e.Attributes))
	b = append(b, `{"specversion":`...)
	b = appendJSONString(b, domain.SpecVersion)
	b = append(b, `,"id":`...)
	b = appendJSONString(b, e.ID)
	b = append(b, `,"source":`...)
	b = appendJSONString(b, e.Source)
	b = append(b, `,"type":`...)
	b = appendJSONString(b, domain.EventType)
	if !e.Time.IsZero() {
		b = append(b, `,"time":`...)
		if e.Time.Nanosecond()%int(time.Millisecond) == 0 {
			b = strconv.AppendInt(b, e.Time.UnixMilli(), 10)
		} else {
			b = appendJSONString(b, formatRFC3339(e.Time))
		}
	}
	if a := e.Attributes; len(a) > 2 && a[0] == '{' && a[len(a)-1] == '}' {
		b = append(b, ',')
		b = append(b, a[1:len(a)-1]...)
	}
	b = append(b, `,"data":`...)
	return append(appendData(b, e), '}')
}

// appendData appends e's data object: the body of a binary-mode message, and the data
// of a structured one.
func appendData(b []byte, e domain.Event) []byte {
	b = append(b, `{"movement_id":"`...)
	b = append(b, e.MovementID.String()...)
	b = append(b, `","warehouse_id":"`...)
	b = append(b, e.WarehouseID.String()...)
	b = append(b, `","timestamp":`...)
	b = appendJSONString(b, formatRFC3339(e.Timestamp))
	b = append(b, `,"event":`...)
	b = appendJSONString(b, string(e.Kind))
	b = append(b, `,"product_id":"`...)
	b = append(b, e.ProductID.String()...)
	b = append(b, `","quantity":`...)
	b = strconv.AppendInt(b, e.Quantity, 10)
	return append(b, '}')
}

// Extreme offsets let formatRFC3339 write an instant whose UTC year has five digits or
// is negative: RFC 3339 input with an offset can reach one day past either end of the
// years 0000..9999.
var (
	zoneWest = time.FixedZone("", -(23*3600 + 59*60))
	zoneEast = time.FixedZone("", 23*3600+59*60)
)

// formatRFC3339 writes t in UTC when its year fits four digits, else with the offset
// that brings it back into 0000..9999, so that time.Parse reads the same instant.
func formatRFC3339(t time.Time) string {
	t = t.UTC()
	switch y := t.Year(); {
	case y > 9999:
		t = t.In(zoneWest)
	case y < 0:
		t = t.In(zoneEast)
	}
	return t.Format(time.RFC3339Nano)
}

// invalidf returns an error wrapping domain.ErrInvalid.
func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{domain.ErrInvalid}, args...)...)
}

// clip keeps echoed input short in error messages and dead-letter headers.
func clip(s string) string {
	const limit = 64
	if len(s) <= limit {
		return s
	}
	for i := limit; i > 0; i-- {
		if utf8.RuneStart(s[i]) {
			return s[:i] + "…"
		}
	}
	return s[:limit] + "…"
}
