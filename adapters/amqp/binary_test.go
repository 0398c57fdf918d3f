package amqp_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	amqpadapter "warehouse/adapters/amqp"
	"warehouse/domain"
)

// sampleData is the data object of the sample arrival.
const sampleData = `{"movement_id": "c6290746-790e-43fa-8270-014dc90e02e0", "warehouse_id": "c1d70455-7e14-11e9-812a-70106f431230",
	"timestamp": "2025-02-18T14:34:56Z", "event": "arrival", "product_id": "4705204f-498f-4f96-b4ba-df17fb56bf55", "quantity": 100}`

// sampleHeaders are the sample arrival's attributes as binary-mode headers with prefix.
func sampleHeaders(prefix string) amqp091.Table {
	return amqp091.Table{
		prefix + "specversion": "1.0",
		prefix + "id":          "b3b53031-e83a-4654-87f5-b6b6fb09fd99",
		prefix + "source":      "WH-3423",
		prefix + "type":        "ru.retail.warehouses.movement",
		prefix + "time":        int64(1737439421623),
		prefix + "dataschema":  "ru.retail.warehouses.movement.v1.0",
		prefix + "subject":     "WH-3423:ARRIVAL",
		prefix + "destination": "ru.retail.warehouses",
	}
}

// TestDecodeDeliveryBinaryMode: the sample arrival in binary mode, under each header
// prefix, decodes to the event its structured form decodes to.
func TestDecodeDeliveryBinaryMode(t *testing.T) {
	want, err := amqpadapter.DecodeEvent([]byte(specSample))
	if err != nil {
		t.Fatal(err)
	}
	for _, prefix := range []string{"cloudEvents:", "cloudEvents_", "ce-"} {
		got, err := amqpadapter.DecodeDelivery(sampleHeaders(prefix), "application/json", []byte(sampleData))
		if err != nil {
			t.Fatalf("%s: %v", prefix, err)
		}
		if !sameEventAttrsInAnyOrder(t, got, want) {
			t.Errorf("%s:\n got %+v\nwant %+v", prefix, got, want)
		}
	}
	// structured messages decode as before, whatever their headers besides
	got, err := amqpadapter.DecodeDelivery(amqp091.Table{"x-trace": "abc"}, amqpadapter.ContentType, []byte(specSample))
	if err != nil || !sameEvent(got, want) {
		t.Errorf("structured: %+v, %v", got, err)
	}
}

// sameEventAttrsInAnyOrder is sameEvent with the optional attributes compared as a set:
// headers have no order, so a binary-mode event lists them by name.
func sameEventAttrsInAnyOrder(t *testing.T, a, b domain.Event) bool {
	t.Helper()
	var am, bm map[string]any
	if json.Unmarshal(a.Attributes, &am) != nil || json.Unmarshal(b.Attributes, &bm) != nil || !reflect.DeepEqual(am, bm) {
		return false
	}
	a.Attributes, b.Attributes = nil, nil
	return sameEvent(a, b)
}

// TestEncodeEventBinaryRoundTrip: what produce --mode binary sends decodes back to the
// event, extensions and time included.
func TestEncodeEventBinaryRoundTrip(t *testing.T) {
	e, err := amqpadapter.DecodeEvent([]byte(sampleWith(t, `"time": 1737439421623`, `"time": "2025-01-21T06:03:41.623456Z", "seq": 7, "replay": true`)))
	if err != nil {
		t.Fatal(err)
	}
	headers, contentType, body := amqpadapter.EncodeEventBinary(e)
	if _, ok := headers["cloudEvents:id"]; !ok || contentType != "application/json" || strings.Contains(string(body), "specversion") {
		t.Fatalf("binary message: headers %v, content type %q, body %s", headers, contentType, body)
	}
	got, err := amqpadapter.DecodeDelivery(headers, contentType, body)
	if err != nil {
		t.Fatal(err)
	}
	if !sameEventAttrsInAnyOrder(t, got, e) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, e)
	}
}

// TestDecodeDeliveryRefuses: mixed modes, neither mode, and binary-mode messages that
// break a rule, each invalid with a detail that says which.
func TestDecodeDeliveryRefuses(t *testing.T) {
	with := func(extra amqp091.Table) amqp091.Table {
		h := sampleHeaders("ce-")
		for k, v := range extra {
			if v == nil {
				delete(h, k)
			} else {
				h[k] = v
			}
		}
		return h
	}
	for _, tc := range []struct {
		name        string
		headers     amqp091.Table
		contentType string
		body        string
		want        string
	}{
		{"headers and the structured content type", sampleHeaders("ce-"), "application/cloudevents+json; charset=utf-8", sampleData, "mixes content modes"},
		{"headers and a structured body", sampleHeaders("ce-"), "application/json", specSample, "mixes content modes"},
		{"neither mode", nil, "application/json", sampleData, "neither a structured CloudEvent"},
		{"attribute twice", with(amqp091.Table{"cloudEvents:id": "other"}), "", sampleData, `attribute "id" is given twice`},
		{"missing id", with(amqp091.Table{"ce-id": nil}), "", sampleData, "id is required"},
		{"upper-case attribute", with(amqp091.Table{"ce-Source": "WH-1", "ce-source": nil}), "", sampleData, `envelope key "Source"`},
		{"data in a header", with(amqp091.Table{"ce-data": "x"}), "", sampleData, "data must be an object"},
		{"float attribute", with(amqp091.Table{"ce-seq": 1.5}), "", sampleData, "holds a float64"},
		{"table attribute", with(amqp091.Table{"ce-ext": amqp091.Table{"a": "b"}}), "", sampleData, "holds a amqp091.Table"},
		{"body not an object", sampleHeaders("ce-"), "", `[1, 2]`, "the body must be the data object"},
		{"body with more after it", sampleHeaders("ce-"), "", sampleData + `, "source": "WH-evil"`, "the body must be the data object"},
		{"unknown data key", sampleHeaders("ce-"), "", strings.Replace(sampleData, `"quantity": 100`, `"quantity": 100, "note": 1`, 1), `data has unknown key "note"`},
		{"NUL in a header", with(amqp091.Table{"ce-subject": "a\x00b"}), "", sampleData, "U+0000"},
		{"body too big", sampleHeaders("ce-"), "", sampleData + strings.Repeat(" ", amqpadapter.MaxMessageSize), "byte limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := amqpadapter.DecodeDelivery(tc.headers, tc.contentType, []byte(tc.body))
			if !errors.Is(err, domain.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("DecodeDelivery = %+v, %v; want invalid, saying %q", e, err, tc.want)
			}
		})
	}
	// A timestamp header is an RFC 3339 time.
	h := with(amqp091.Table{"ce-time": time.Date(2025, 1, 21, 6, 3, 41, 0, time.UTC)})
	if e, err := amqpadapter.DecodeDelivery(h, "", []byte(sampleData)); err != nil || !e.Time.Equal(time.Date(2025, 1, 21, 6, 3, 41, 0, time.UTC)) {
		t.Errorf("timestamp header: %+v, %v", e.Time, err)
	}
}
