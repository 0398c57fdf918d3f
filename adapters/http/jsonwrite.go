package http

import (
	"encoding/hex"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"warehouse/ports"
)

// A history page is up to a thousand entries, and encoding/json's reflection was the
// largest part of its cost in the service. The list is written by hand instead, byte for
// byte what encoding/json writes (appendJSONString escapes as json.Marshal does), as
// TestHistoryJSONMatchesEncodingJSON checks.

// appendHistoryPage appends the JSON of a history page: the historyList of its entries.
func appendHistoryPage(b []byte, page ports.HistoryPage) []byte {
	b = append(b, `{"items":[`...)
	for i, h := range page.Items {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"movement_id":"`...)
		b = appendUUID(b, uuid.UUID(h.MovementID))
		b = append(b, `","event":`...)
		b = appendJSONString(b, string(h.Kind))
		b = append(b, `,"source":`...)
		b = appendJSONString(b, h.Source)
		b = append(b, `,"event_id":`...)
		b = appendJSONString(b, h.EventID)
		b = append(b, `,"timestamp":"`...)
		b = h.Position.Timestamp.UTC().AppendFormat(b, time.RFC3339Nano)
		b = append(b, `","recorded_at":"`...)
		b = h.RecordedAt.UTC().AppendFormat(b, time.RFC3339Nano)
		b = append(b, `","delta":`...)
		b = strconv.AppendInt(b, h.Delta, 10)
		b = append(b, `,"balance":`...)
		b = strconv.AppendInt(b, h.Balance, 10)
		b = append(b, '}')
	}
	b = append(b, `],"next_cursor":`...)
	if page.Next == nil {
		return append(b, "null}"...)
	}
	b = appendJSONString(b, encodeHistoryCursor(*page.Next))
	return append(b, '}')
}

// appendUUID appends u in its canonical lowercase form.
func appendUUID(b []byte, u uuid.UUID) []byte {
	var buf [36]byte
	hex.Encode(buf[0:8], u[0:4])
	buf[8] = '-'
	hex.Encode(buf[9:13], u[4:6])
	buf[13] = '-'
	hex.Encode(buf[14:18], u[6:8])
	buf[18] = '-'
	hex.Encode(buf[19:23], u[8:10])
	buf[23] = '-'
	hex.Encode(buf[24:], u[10:])
	return append(b, buf[:]...)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string the way encoding/json writes it: with <, >
// and & escaped for HTML, U+2028 and U+2029 escaped, control characters as \u00XX (or
// their short forms), and invalid UTF-8 as U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
