package amqp_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	amqpadapter "warehouse/adapters/amqp"
	"warehouse/domain"
)

// specSample is the sample arrival of docs/contract.md (docs/sample-pair.jsonl) with
// quantity 100: every attribute of the format, an extension among them.
const specSample = `{
  "id": "b3b53031-e83a-4654-87f5-b6b6fb09fd99",
  "source": "WH-3423",
  "specversion": "1.0",
  "type": "ru.retail.warehouses.movement",
  "datacontenttype": "application/json",
  "dataschema": "ru.retail.warehouses.movement.v1.0",
  "time": 1737439421623,
  "subject": "WH-3423:ARRIVAL",
  "destination": "ru.retail.warehouses",
  "data": {
    "movement_id": "c6290746-790e-43fa-8270-014dc90e02e0",
    "warehouse_id": "c1d70455-7e14-11e9-812a-70106f431230",
    "timestamp": "2025-02-18T14:34:56Z",
    "event": "arrival",
    "product_id": "4705204f-498f-4f96-b4ba-df17fb56bf55",
    "quantity": 100
  }
}`

// sampleWith returns specSample with each (old, new) pair replaced once; it fails the
// test when old is not there, so a case never silently tests the valid sample.
func sampleWith(t testing.TB, pairs ...string) string {
	t.Helper()
	s := specSample
	for i := 0; i+1 < len(pairs); i += 2 {
		if !strings.Contains(s, pairs[i]) {
			t.Fatalf("sample has no %q", pairs[i])
		}
		s = strings.Replace(s, pairs[i], pairs[i+1], 1)
	}
	return s
}

type codecCase struct {
	name string
	body string
}

// invalidCases are messages DecodeEvent must refuse, each breaking one rule.
func invalidCases(t testing.TB) []codecCase {
	const uuidLine = `"movement_id": "c6290746-790e-43fa-8270-014dc90e02e0"`
	const qty = `"quantity": 100`
	return []codecCase{
		{"not JSON", `hello`},
		{"empty", ``},
		{"only whitespace", " \n\t "},
		{"1 MiB body", specSample + strings.Repeat(" ", 1<<20)},
		{"just over 64 KiB", sampleWith(t, `"destination": "ru.retail.warehouses"`, `"destination": "`+strings.Repeat("x", 64<<10)+`"`)},
		{"trailing garbage", specSample + " x"},
		{"two objects", specSample + specSample},
		{"top-level array", "[" + specSample + "]"},
		{"top-level string", `"hello"`},
		{"truncated", specSample[:len(specSample)-10]},
		{"trailing comma in envelope", sampleWith(t, "  }\n}", "  },\n}")},
		{"trailing comma in data", sampleWith(t, qty, qty+",")},
		{"bad UTF-8", sampleWith(t, `"source": "WH-3423"`, "\"source\": \"WH-\xff3423\"")},
		{"bad UTF-8 outside strings", specSample + "\xc3"},
		{"byte order mark", "\xef\xbb\xbf" + specSample},
		{"raw control character in a string", sampleWith(t, `"subject": "WH-3423:ARRIVAL"`, "\"subject\": \"WH-3423:\tARRIVAL\"")},
		{"duplicate envelope key", sampleWith(t, `"source": "WH-3423",`, `"source": "WH-3423", "source": "WH-1",`)},
		{"duplicate extension key", sampleWith(t, `"destination": "ru.retail.warehouses"`, `"destination": "a", "destination": "b"`)},
		{"duplicate key through an escape", sampleWith(t, `"source": "WH-3423",`, `"source": "WH-3423", "\u0073ource": "WH-1",`)},
		{"duplicate data key", sampleWith(t, qty, qty+`, "quantity": 5`)},
		{"ID instead of id", sampleWith(t, `"id":`, `"ID":`)},
		{"Quantity instead of quantity", sampleWith(t, `"quantity":`, `"Quantity":`)},
		{"envelope key with underscore", sampleWith(t, `"destination":`, `"data_base64":`)},
		{"envelope key too long", sampleWith(t, `"destination":`, `"destinationdestination":`)},
		{"empty envelope key", sampleWith(t, `"destination":`, `"":`)},
		{"unknown data key", sampleWith(t, qty, qty+`, "note": "x"`)},
		{"missing data key", sampleWith(t, `"product_id": "4705204f-498f-4f96-b4ba-df17fb56bf55",`, ``)},
		{"missing id", sampleWith(t, `"id": "b3b53031-e83a-4654-87f5-b6b6fb09fd99",`, ``)},
		{"missing data", `{"id":"1","source":"WH-1","specversion":"1.0","type":"ru.retail.warehouses.movement"}`},
		{"data is a string", `{"id":"1","source":"WH-1","specversion":"1.0","type":"ru.retail.warehouses.movement","data":"{}"}`},
		{"data is null", `{"id":"1","source":"WH-1","specversion":"1.0","type":"ru.retail.warehouses.movement","data":null}`},
		{"empty data", `{"id":"1","source":"WH-1","specversion":"1.0","type":"ru.retail.warehouses.movement","data":{}}`},
		{"uuid without dashes", sampleWith(t, uuidLine, `"movement_id": "c6290746790e43fa8270014dc90e02e0"`)},
		{"uuid in braces", sampleWith(t, uuidLine, `"movement_id": "{c6290746-790e-43fa-8270-014dc90e02e0}"`)},
		{"uuid urn", sampleWith(t, uuidLine, `"movement_id": "urn:uuid:c6290746-790e-43fa-8270-014dc90e02e0"`)},
		{"uuid misplaced dashes", sampleWith(t, uuidLine, `"movement_id": "c6290746790e-43fa-8270-014dc9-0e02e0"`)},
		{"uuid not hex", sampleWith(t, uuidLine, `"movement_id": "g6290746-790e-43fa-8270-014dc90e02e0"`)},
		{"uuid is a number", sampleWith(t, uuidLine, `"movement_id": 12`)},
		{"quantity 0", sampleWith(t, qty, `"quantity": 0`)},
		{"quantity -0", sampleWith(t, qty, `"quantity": -0`)},
		{"quantity -5", sampleWith(t, qty, `"quantity": -5`)},
		{"quantity 1.5", sampleWith(t, qty, `"quantity": 1.5`)},
		{"quantity 1.0", sampleWith(t, qty, `"quantity": 1.0`)},
		{"quantity 1e3", sampleWith(t, qty, `"quantity": 1e3`)},
		{"quantity 10E2", sampleWith(t, qty, `"quantity": 10E2`)},
		{"quantity string", sampleWith(t, qty, `"quantity": "10"`)},
		{"quantity 1000000001", sampleWith(t, qty, `"quantity": 1000000001`)},
		{"quantity beyond int64", sampleWith(t, qty, `"quantity": 99999999999999999999`)},
		{"quantity leading zero", sampleWith(t, qty, `"quantity": 0100`)},
		{"quantity plus sign", sampleWith(t, qty, `"quantity": +100`)},
		{"quantity null", sampleWith(t, qty, `"quantity": null`)},
		{"quantity true", sampleWith(t, qty, `"quantity": true`)},
		{"unknown event kind", sampleWith(t, `"event": "arrival"`, `"event": "teleport"`)},
		{"event kind in capitals", sampleWith(t, `"event": "arrival"`, `"event": "ARRIVAL"`)},
		{"wrong specversion", sampleWith(t, `"specversion": "1.0"`, `"specversion": "0.3"`)},
		{"specversion as number", sampleWith(t, `"specversion": "1.0"`, `"specversion": 1.0`)},
		{"wrong type", sampleWith(t, `"type": "ru.retail.warehouses.movement"`, `"type": "ru.retail.warehouses.other"`)},
		{"timestamp without offset", sampleWith(t, `"2025-02-18T14:34:56Z"`, `"2025-02-18T14:34:56"`)},
		{"timestamp date only", sampleWith(t, `"2025-02-18T14:34:56Z"`, `"2025-02-18"`)},
		{"timestamp as number", sampleWith(t, `"2025-02-18T14:34:56Z"`, `1739889296000`)},
		{"time as float", sampleWith(t, `"time": 1737439421623`, `"time": 1737439421623.5`)},
		{"time without offset", sampleWith(t, `"time": 1737439421623`, `"time": "2025-01-21T06:03:41"`)},
		{"time as object", sampleWith(t, `"time": 1737439421623`, `"time": {}`)},
		{"time beyond year 9999", sampleWith(t, `"time": 1737439421623`, `"time": 253402300800000`)},
		{"NUL escape in subject", sampleWith(t, `"WH-3423:ARRIVAL"`, `"WH-3423:\u0000"`)},
		{"NUL escape in source", sampleWith(t, `"source": "WH-3423"`, `"source": "WH\u0000"`)},
		{"NUL escape in a key", sampleWith(t, `"destination":`, `"dest\u0000":`)},
		{"NUL escape in data", sampleWith(t, `"event": "arrival"`, `"event": "arrival\u0000"`)},
		{"lone high surrogate", sampleWith(t, `"WH-3423:ARRIVAL"`, `"\ud800x"`)},
		{"lone low surrogate", sampleWith(t, `"WH-3423:ARRIVAL"`, `"\udc00"`)},
		{"malformed escape", sampleWith(t, `"WH-3423:ARRIVAL"`, `"\x41"`)},
		{"short unicode escape", sampleWith(t, `"WH-3423:ARRIVAL"`, `"\u41"`)},
		{"id with an escaped tab", sampleWith(t, `"b3b53031-e83a-4654-87f5-b6b6fb09fd99"`, `"b3b53031\te83a"`)},
		{"id with DEL", sampleWith(t, `"b3b53031-e83a-4654-87f5-b6b6fb09fd99"`, "\"b3b53031\x7fe83a\"")},
		{"id of 129 characters", sampleWith(t, `"b3b53031-e83a-4654-87f5-b6b6fb09fd99"`, `"`+strings.Repeat("a", 129)+`"`)},
		{"empty id", sampleWith(t, `"b3b53031-e83a-4654-87f5-b6b6fb09fd99"`, `""`)},
		{"id with non-ASCII", sampleWith(t, `"b3b53031-e83a-4654-87f5-b6b6fb09fd99"`, `"идентификатор"`)},
		{"empty source", sampleWith(t, `"source": "WH-3423"`, `"source": ""`)},
		{"source of 257 characters", sampleWith(t, `"source": "WH-3423"`, `"source": "`+strings.Repeat("я", 257)+`"`)},
		{"extension is an object", sampleWith(t, `"destination": "ru.retail.warehouses"`, `"destination": {"a": 1}`)},
		{"extension is null", sampleWith(t, `"destination": "ru.retail.warehouses"`, `"destination": null`)},
		{"extension is a float", sampleWith(t, `"destination": "ru.retail.warehouses"`, `"destination": 0.5`)},
		{"subject is a number", sampleWith(t, `"subject": "WH-3423:ARRIVAL"`, `"subject": 5`)},
		{"missing colon", sampleWith(t, `"subject": "WH-3423:ARRIVAL"`, `"subject" "WH-3423:ARRIVAL"`)},
		{"single quotes", sampleWith(t, `"subject": "WH-3423:ARRIVAL"`, `"subject": 'WH-3423:ARRIVAL'`)},
		{"literal truex", sampleWith(t, `"destination": "ru.retail.warehouses"`, `"destination": truex`)},
		{"comment", specSample + " // done"},
	}
}

func TestDecodeEventRejects(t *testing.T) {
	for _, tc := range invalidCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			e, err := amqpadapter.DecodeEvent([]byte(tc.body))
			if !errors.Is(err, domain.ErrInvalid) {
				t.Fatalf("DecodeEvent = %+v, %v; want an error wrapping domain.ErrInvalid", e, err)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, "invalid: ") || len(msg) > 400 {
				t.Errorf("error %q: want a short message starting with %q", msg, "invalid: ")
			}
		})
	}
}

// TestDecodeEventErrorDetail checks that errors name the rule broken.
func TestDecodeEventErrorDetail(t *testing.T) {
	tooBig := specSample + strings.Repeat(" ", 1<<20)
	tests := []struct {
		name, body, want string
	}{
		{"fraction", sampleWith(t, `"quantity": 100`, `"quantity": 1.5`), "invalid: data.quantity must be an integer, got 1.5"},
		{"string quantity", sampleWith(t, `"quantity": 100`, `"quantity": "10"`), "invalid: data.quantity must be an integer, got a string"},
		{"duplicate", sampleWith(t, `"quantity": 100`, `"quantity": 100, "quantity": 5`), `invalid: data has duplicate key "quantity"`},
		{"upper case", sampleWith(t, `"id":`, `"ID":`), `invalid: envelope key "ID" is not a CloudEvents attribute name`},
		{"unknown data key", sampleWith(t, `"quantity": 100`, `"quantity": 100, "Note": 1`), `invalid: data has unknown key "Note"`},
		{"missing data key", sampleWith(t, `"event": "arrival",`, ``), "invalid: data.event is required"},
		{"too big", tooBig, fmt.Sprintf("invalid: message is %d bytes, over the %d byte limit", len(tooBig), amqpadapter.MaxMessageSize)},
		{"trailing", specSample + "{}", "invalid: unexpected data after the JSON object"},
		{"NUL", sampleWith(t, `"WH-3423:ARRIVAL"`, `"\u0000"`), "invalid: subject: string contains U+0000"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := amqpadapter.DecodeEvent([]byte(tc.body))
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to start with %q", err, tc.want)
			}
		})
	}
}

// TestDecodeEventSizeLimit checks the limit at its boundary: a body of exactly
// MaxMessageSize bytes (the sample padded with trailing whitespace) is decoded, one byte
// more is refused before it is parsed.
func TestDecodeEventSizeLimit(t *testing.T) {
	pad := func(n int) []byte {
		return []byte(specSample + strings.Repeat(" ", n-len(specSample)))
	}
	if _, err := amqpadapter.DecodeEvent(pad(amqpadapter.MaxMessageSize)); err != nil {
		t.Errorf("a body of exactly %d bytes: %v, want it decoded", amqpadapter.MaxMessageSize, err)
	}
	over := pad(amqpadapter.MaxMessageSize + 1)
	want := fmt.Sprintf("invalid: message is %d bytes, over the %d byte limit", amqpadapter.MaxMessageSize+1, amqpadapter.MaxMessageSize)
	if _, err := amqpadapter.DecodeEvent(over); err == nil || err.Error() != want {
		t.Errorf("a body of %d bytes: error %v, want %q", len(over), err, want)
	}
}

func TestDecodeEventSpecSample(t *testing.T) {
	want := domain.Event{
		ID:          "b3b53031-e83a-4654-87f5-b6b6fb09fd99",
		Source:      "WH-3423",
		Time:        time.UnixMilli(1737439421623).UTC(),
		Attributes:  []byte(`{"datacontenttype":"application/json","dataschema":"ru.retail.warehouses.movement.v1.0","subject":"WH-3423:ARRIVAL","destination":"ru.retail.warehouses"}`),
		MovementID:  mustParse(t, domain.ParseMovementID, "c6290746-790e-43fa-8270-014dc90e02e0"),
		WarehouseID: mustParse(t, domain.ParseWarehouseID, "c1d70455-7e14-11e9-812a-70106f431230"),
		ProductID:   mustParse(t, domain.ParseProductID, "4705204f-498f-4f96-b4ba-df17fb56bf55"),
		Kind:        domain.Arrival,
		Timestamp:   time.Date(2025, 2, 18, 14, 34, 56, 0, time.UTC),
		Quantity:    100,
	}
	tests := []struct {
		name string
		body string
		edit func(*domain.Event)
	}{
		{"time as epoch milliseconds", specSample, func(*domain.Event) {}},
		{"time as RFC 3339", sampleWith(t, `"time": 1737439421623`, `"time": "2025-01-21T09:03:41.623+03:00"`), func(*domain.Event) {}},
		{"no time", sampleWith(t, `"time": 1737439421623,`, ``), func(e *domain.Event) { e.Time = time.Time{} }},
		{"no optional attributes", `{"specversion":"1.0","id":"b3b53031-e83a-4654-87f5-b6b6fb09fd99","source":"WH-3423",` +
			`"type":"ru.retail.warehouses.movement","time":1737439421623,"data":{"movement_id":"c6290746-790e-43fa-8270-014dc90e02e0",` +
			`"warehouse_id":"c1d70455-7e14-11e9-812a-70106f431230","timestamp":"2025-02-18T17:34:56+03:00","event":"arrival",` +
			`"product_id":"4705204F-498F-4F96-B4BA-DF17FB56BF55","quantity":100}}`,
			func(e *domain.Event) { e.Attributes = nil }},
		{"escapes", sampleWith(t, `"source": "WH-3423"`, `"source": "WH\u002d3423"`, `"subject": "WH-3423:ARRIVAL"`, `"subject": "a\"b\\c\/d\n\u00e9\ud83d\ude00"`),
			func(e *domain.Event) {
				e.Attributes = []byte(`{"datacontenttype":"application/json","dataschema":"ru.retail.warehouses.movement.v1.0","subject":"a\"b\\c/d\né😀","destination":"ru.retail.warehouses"}`)
			}},
		{"extensions of every kind", sampleWith(t, `"destination": "ru.retail.warehouses"`, `"seq": -42, "replay": true, "ok": false, "x1": ""`),
			func(e *domain.Event) {
				e.Attributes = []byte(`{"datacontenttype":"application/json","dataschema":"ru.retail.warehouses.movement.v1.0","subject":"WH-3423:ARRIVAL","seq":-42,"replay":true,"ok":false,"x1":""}`)
			}},
		{"largest quantity", sampleWith(t, `"quantity": 100`, `"quantity": 1000000000`), func(e *domain.Event) { e.Quantity = domain.MaxQuantity }},
		{"departure", sampleWith(t, `"event": "arrival"`, `"event": "departure"`), func(e *domain.Event) { e.Kind = domain.Departure }},
		{"compact", compact(specSample), func(*domain.Event) {}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := want
			tc.edit(&w)
			got, err := amqpadapter.DecodeEvent([]byte(tc.body))
			if err != nil {
				t.Fatalf("DecodeEvent: %v", err)
			}
			if !sameEvent(got, w) {
				t.Fatalf("DecodeEvent =\n%+v\nwant\n%+v\nattributes %s", got, w, got.Attributes)
			}
			again, err := amqpadapter.DecodeEvent(amqpadapter.EncodeEvent(got))
			if err != nil {
				t.Fatalf("DecodeEvent(EncodeEvent): %v\n%s", err, amqpadapter.EncodeEvent(got))
			}
			if !sameEvent(again, got) {
				t.Fatalf("round trip =\n%+v\nwant\n%+v", again, got)
			}
		})
	}
}

func TestEncodeEventSubMillisecondTime(t *testing.T) {
	body := sampleWith(t, `"time": 1737439421623`, `"time": "2025-01-21T06:03:41.623456Z"`)
	e, err := amqpadapter.DecodeEvent([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	again, err := amqpadapter.DecodeEvent(amqpadapter.EncodeEvent(e))
	if err != nil || !sameEvent(again, e) {
		t.Fatalf("round trip = %+v, %v; want %+v", again, err, e)
	}
}

func TestVerdictFor(t *testing.T) {
	tests := []struct {
		name       string
		result     error
		wantAction string
		wantReason string
	}{
		{"stored", nil, "ack", ""},
		{"duplicate", domain.ErrDuplicate, "ack", ""},
		{"wrapped duplicate", errors.Join(errors.New("same source and id"), domain.ErrDuplicate), "ack", ""},
		{"insufficient stock", domain.ErrInsufficientStock, "retryLater", "insufficient_stock"},
		{"conflict", domain.ErrConflict, "deadLetter", "conflict"},
		{"anything else", errors.New("boom"), "deadLetter", "internal"},
		{"invalid from the store", domain.ErrInvalid, "deadLetter", "internal"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			action, reason, detail := amqpadapter.VerdictOf(tc.result)
			if action != tc.wantAction || reason != tc.wantReason {
				t.Fatalf("verdictFor(%v) = %s %q, want %s %q", tc.result, action, reason, tc.wantAction, tc.wantReason)
			}
			if tc.result != nil && action != "ack" && detail != tc.result.Error() {
				t.Errorf("detail = %q, want %q", detail, tc.result.Error())
			}
		})
	}
}

func FuzzDecodeEvent(f *testing.F) {
	f.Add([]byte(specSample))
	f.Add([]byte(compact(specSample)))
	f.Add([]byte(sampleWith(f, `"time": 1737439421623`, `"time": "2025-01-21T06:03:41.623456+03:00"`)))
	f.Add([]byte(sampleWith(f, `"2025-02-18T14:34:56Z"`, `"9999-12-31T23:59:59.999999999-23:59"`)))
	f.Add([]byte(sampleWith(f, `"2025-02-18T14:34:56Z"`, `"0000-01-01T00:00:00+23:59"`)))
	f.Add([]byte(sampleWith(f, `"destination": "ru.retail.warehouses"`, `"seq": -42, "replay": true, "x": "\u00e9\ud83d\ude00\"\\"`)))
	// Every escape JSON has, one at a time and all together, in an extension and in
	// the subject, so that the fuzzer starts from each branch of the string decoder.
	escapes := []string{`\b`, `\f`, `\n`, `\r`, `\t`, `\"`, `\\`, `\/`, `\u0041`, `\u00e9`, `\u20ac`, `\ud83d\ude00`, `\uD83D\uDE00`, `\ud800`, `\udc00x`}
	for _, esc := range append(escapes, strings.Join(escapes, "")) {
		f.Add([]byte(sampleWith(f, `"destination": "ru.retail.warehouses"`, `"destination": "a`+esc+`z"`)))
		f.Add([]byte(sampleWith(f, `"WH-3423:ARRIVAL"`, `"WH`+esc+`"`)))
	}
	for _, tc := range invalidCases(f) {
		if len(tc.body) <= amqpadapter.MaxMessageSize {
			f.Add([]byte(tc.body))
		}
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		e, err := amqpadapter.DecodeEvent(body)
		if err != nil {
			if !errors.Is(err, domain.ErrInvalid) {
				t.Fatalf("error %v does not wrap domain.ErrInvalid", err)
			}
			return
		}
		mustDecodeAlike(t, body, e)
		enc := amqpadapter.EncodeEvent(e)
		again, err := amqpadapter.DecodeEvent(enc)
		if err != nil {
			t.Fatalf("accepted %q, but its encoding %s is refused: %v", body, enc, err)
		}
		if !sameEvent(again, e) {
			t.Fatalf("round trip of %q:\n got %+v\nwant %+v", body, again, e)
		}
		if !bytes.Equal(amqpadapter.EncodeEvent(again), enc) {
			t.Fatalf("encoding is not stable: %s vs %s", amqpadapter.EncodeEvent(again), enc)
		}
	})
}

// mustDecodeAlike is the differential half of FuzzDecodeEvent: a body the strict decoder
// accepted is valid JSON, and encoding/json, given the same fields, reads the same event.
// encoding/json is laxer (any key case, the last of duplicate keys, invalid UTF-8 made
// U+FFFD), never stricter: on what the strict decoder accepts the two must agree.
func mustDecodeAlike(t *testing.T, body []byte, strict domain.Event) {
	t.Helper()
	if !json.Valid(body) {
		t.Fatalf("accepted %q, which is not valid JSON", body)
	}
	var envelope map[string]json.RawMessage
	if err := json.Unmarshal(body, &envelope); err != nil {
		t.Fatalf("accepted %q; encoding/json: %v", body, err)
	}
	text := func(key string) string {
		var s string
		if err := json.Unmarshal(envelope[key], &s); err != nil {
			t.Fatalf("accepted %q; %s through encoding/json: %v", body, key, err)
		}
		return s
	}
	in := domain.EventInput{ID: text("id"), Source: text("source"), SpecVersion: text("specversion"), Type: text("type")}
	if raw, ok := envelope["time"]; ok {
		var ms int64
		if err := json.Unmarshal(raw, &ms); err == nil {
			in.Time = time.UnixMilli(ms).UTC()
		} else if in.Time, err = domain.ParseTimestamp("time", text("time")); err != nil {
			t.Fatalf("accepted %q; its time through encoding/json: %v", body, err)
		}
	}
	var data struct {
		MovementID  string `json:"movement_id"`
		WarehouseID string `json:"warehouse_id"`
		Timestamp   string `json:"timestamp"`
		Event       string `json:"event"`
		ProductID   string `json:"product_id"`
		Quantity    int64  `json:"quantity"`
	}
	if err := json.Unmarshal(envelope["data"], &data); err != nil {
		t.Fatalf("accepted %q; data through encoding/json: %v", body, err)
	}
	in.MovementID, in.WarehouseID, in.Timestamp = data.MovementID, data.WarehouseID, data.Timestamp
	in.Event, in.ProductID, in.Quantity = data.Event, data.ProductID, data.Quantity
	lax, err := domain.NewEvent(in)
	if err != nil {
		t.Fatalf("accepted %q; the fields encoding/json reads are refused: %v", body, err)
	}
	lax.Attributes = strict.Attributes // compared below as JSON values
	if !sameEvent(lax, strict) {
		t.Fatalf("decoders disagree on %q:\nstrict        %+v\nencoding/json %+v", body, strict, lax)
	}
	// Attributes are every other envelope key, with its value.
	want := map[string]any{}
	for k, raw := range envelope {
		switch k {
		case "id", "source", "specversion", "type", "time", "data":
			continue
		}
		want[k] = jsonValue(t, raw)
	}
	got := map[string]any{}
	if strict.Attributes != nil {
		got = jsonValue(t, strict.Attributes).(map[string]any)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("attributes of %q: strict %v, encoding/json %v", body, got, want)
	}
}

// jsonValue decodes raw with numbers kept as written.
func jsonValue(t *testing.T, raw []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	return v
}

func BenchmarkDecodeEvent(b *testing.B) {
	body := []byte(specSample)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := amqpadapter.DecodeEvent(body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeEvent(b *testing.B) {
	e, err := amqpadapter.DecodeEvent([]byte(specSample))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = amqpadapter.EncodeEvent(e)
	}
}

// sameEvent compares events field by field, times by instant.
func sameEvent(a, b domain.Event) bool {
	return a.ID == b.ID && a.Source == b.Source && a.Time.Equal(b.Time) && a.Time.IsZero() == b.Time.IsZero() &&
		bytes.Equal(a.Attributes, b.Attributes) && (a.Attributes == nil) == (b.Attributes == nil) &&
		a.MovementID == b.MovementID && a.WarehouseID == b.WarehouseID && a.ProductID == b.ProductID &&
		a.Kind == b.Kind && a.Timestamp.Equal(b.Timestamp) && a.Quantity == b.Quantity
}

func mustParse[T any](t *testing.T, parse func(string) (T, error), s string) T {
	t.Helper()
	v, err := parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// compact drops the whitespace between tokens of a JSON text without strings holding any.
func compact(s string) string {
	var b strings.Builder
	in := false
	for _, r := range s {
		switch {
		case r == '"':
			in = !in
		case !in && (r == ' ' || r == '\n' || r == '\t'):
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
