package amqp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"warehouse/domain"
)

// CloudEvents binary content mode on AMQP 0-9-1: the event's attributes travel as message
// headers and its data as the body. The AMQP protocol binding of CloudEvents names the
// headers "cloudEvents:<attribute>" (or "cloudEvents_<attribute>" where a colon is not
// allowed); many 0-9-1 publishers use the HTTP binding's "ce-<attribute>". The
// datacontenttype is the message's content-type property.

// binaryPrefixes are the header prefixes that carry a CloudEvents attribute.
var binaryPrefixes = []string{"cloudEvents:", "cloudEvents_", "ce-"}

// DecodeDelivery decodes a message in either content mode with the one strict decoder:
// a structured message (its body is the whole event, see DecodeEvent) when no header
// carries a CloudEvents attribute, else a binary-mode message, whose attributes are
// rebuilt into an envelope around the body (the data object) and decoded as if they had
// come structured. A message with attribute headers and a structured body (its content
// type application/cloudevents+json, or a specversion in the body) mixes the modes and
// is invalid, as is one that is neither. Every error wraps domain.ErrInvalid.
func DecodeDelivery(headers amqp091.Table, contentType string, body []byte) (domain.Event, error) {
	attrs := attributeHeaders(headers)
	if len(attrs) == 0 {
		e, err := DecodeEvent(body)
		if err != nil && len(body) <= MaxMessageSize && !hasTopLevelKey(body, "specversion") && !isStructured(contentType) {
			return e, fmt.Errorf("%w (the message is neither a structured CloudEvent, whose body holds specversion, nor a binary-mode one, whose headers would name cloudEvents:id or ce-id)", err)
		}
		return e, err
	}
	if isStructured(contentType) {
		return domain.Event{}, invalidf("message mixes content modes: CloudEvents attribute headers (%s) with the structured content type %s",
			clip(strings.Join(headerNames(attrs), ", ")), ContentType)
	}
	if len(body) > MaxMessageSize {
		return domain.Event{}, invalidf("message is %d bytes, over the %d byte limit", len(body), MaxMessageSize)
	}
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' || !json.Valid(body) {
		return domain.Event{}, invalidf("binary-mode message: the body must be the data object, one JSON object")
	}
	if hasTopLevelKey(body, "specversion") {
		return domain.Event{}, invalidf("message mixes content modes: CloudEvents attribute headers (%s) and a structured event in the body",
			clip(strings.Join(headerNames(attrs), ", ")))
	}
	doc, err := binaryEnvelope(attrs, contentType, body)
	if err != nil {
		return domain.Event{}, err
	}
	in, err := decodeInputLimit(doc, len(doc)) // the body's limit was checked above
	if err != nil {
		return domain.Event{}, fmt.Errorf("%w (binary mode: attributes from headers %s)", err, clip(strings.Join(headerNames(attrs), ", ")))
	}
	return domain.NewEvent(in)
}

// DecodeAttributes is DecodeDelivery for a binary-mode event whose attributes came by
// name from elsewhere (the ce- headers of an HTTP request): they are read as ce- message
// headers, by the same decoder. With no attributes it decodes a structured event.
func DecodeAttributes(attrs map[string]string, contentType string, body []byte) (domain.Event, error) {
	headers := make(amqp091.Table, len(attrs))
	for name, v := range attrs {
		headers["ce-"+name] = v
	}
	return DecodeDelivery(headers, contentType, body)
}

// attribute is one CloudEvents attribute found in a header.
type attribute struct {
	header, name string
	value        any
}

// attributeHeaders returns the headers that carry CloudEvents attributes, by header name.
func attributeHeaders(headers amqp091.Table) []attribute {
	var out []attribute
	for k, v := range headers {
		for _, p := range binaryPrefixes {
			if name, ok := strings.CutPrefix(k, p); ok {
				out = append(out, attribute{header: k, name: name, value: v})
				break
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].header < out[j].header })
	return out
}

func headerNames(attrs []attribute) []string {
	names := make([]string, len(attrs))
	for i, a := range attrs {
		names[i] = a.header
	}
	return names
}

// binaryEnvelope writes the structured form of a binary-mode message: one key per
// attribute header, datacontenttype from the content type (unless a header names it),
// and the body as data. An attribute named twice (cloudEvents:id and ce-id) is refused
// here; the decoder then checks names, types and values as for any structured message.
func binaryEnvelope(attrs []attribute, contentType string, body []byte) ([]byte, error) {
	doc := make([]byte, 0, len(body)+64*len(attrs)+64)
	doc = append(doc, '{')
	seen := make(map[string]string, len(attrs))
	for _, a := range attrs {
		if first, dup := seen[a.name]; dup {
			return nil, invalidf("attribute %q is given twice, by headers %s and %s", clip(a.name), clip(first), clip(a.header))
		}
		seen[a.name] = a.header
		v, err := attributeJSON(a)
		if err != nil {
			return nil, err
		}
		doc = appendJSONString(doc, a.name)
		doc = append(doc, ':')
		doc = append(doc, v...)
		doc = append(doc, ',')
	}
	if _, named := seen["datacontenttype"]; !named && contentType != "" {
		doc = append(doc, `"datacontenttype":`...)
		doc = appendJSONString(doc, contentType)
		doc = append(doc, ',')
	}
	doc = append(doc, `"data":`...)
	doc = append(doc, body...)
	return append(doc, '}'), nil
}

// attributeJSON is a header's value as the JSON the structured decoder would have read:
// strings (and byte arrays of UTF-8) as strings, integers as integers, booleans, and a
// timestamp as an RFC 3339 string; any other AMQP type is refused.
func attributeJSON(a attribute) ([]byte, error) {
	switch v := a.value.(type) {
	case string:
		if !utf8.ValidString(v) {
			return nil, invalidf("header %s is not valid UTF-8", clip(a.header))
		}
		return appendJSONString(nil, v), nil
	case []byte:
		if !utf8.Valid(v) {
			return nil, invalidf("header %s is not valid UTF-8", clip(a.header))
		}
		return appendJSONString(nil, string(v)), nil
	case bool:
		return strconv.AppendBool(nil, v), nil
	case int8, int16, int32, int64, int, uint8, uint16, uint32:
		return fmt.Appendf(nil, "%d", v), nil
	case time.Time:
		return appendJSONString(nil, v.UTC().Format(time.RFC3339)), nil
	default:
		return nil, invalidf("header %s holds a %T, which no CloudEvents attribute takes (string, integer, boolean or timestamp)", clip(a.header), a.value)
	}
}

// isStructured reports whether contentType is the structured-mode media type.
func isStructured(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && strings.EqualFold(mt, ContentType)
}

// hasTopLevelKey reports whether body is a JSON object with key among its top-level keys.
func hasTopLevelKey(body []byte, key string) bool {
	var top map[string]json.RawMessage
	if json.Unmarshal(body, &top) != nil {
		return false
	}
	_, ok := top[key]
	return ok
}

// EncodeEventBinary returns e as a binary-mode message: its attributes as headers named
// cloudEvents:<attribute> (the optional ones of e.Attributes included), its data object
// as the body, and the content type application/json. DecodeDelivery reads it back as e.
func EncodeEventBinary(e domain.Event) (headers amqp091.Table, contentType string, body []byte) {
	headers = amqp091.Table{
		"cloudEvents:specversion": domain.SpecVersion,
		"cloudEvents:id":          e.ID,
		"cloudEvents:source":      e.Source,
		"cloudEvents:type":        domain.EventType,
	}
	if !e.Time.IsZero() {
		headers["cloudEvents:time"] = formatRFC3339(e.Time)
	}
	contentType = "application/json"
	if len(e.Attributes) > 2 {
		var optional map[string]any
		dec := json.NewDecoder(bytes.NewReader(e.Attributes))
		dec.UseNumber()
		if dec.Decode(&optional) == nil {
			for k, v := range optional {
				switch v := v.(type) {
				case json.Number:
					if n, err := v.Int64(); err == nil {
						headers["cloudEvents:"+k] = n
					}
				case string:
					if k == "datacontenttype" {
						contentType = v
						continue
					}
					headers["cloudEvents:"+k] = v
				case bool:
					headers["cloudEvents:"+k] = v
				}
			}
		}
	}
	return headers, contentType, appendData(nil, e)
}
