package bootstrap

import (
	"strings"
	"testing"

	amqp091 "github.com/rabbitmq/amqp091-go"

	amqpadapter "warehouse/adapters/amqp"
	"warehouse/domain"
	"warehouse/ports/portstest"
)

// TestE2EBinaryMode publishes the sample pair in CloudEvents binary content mode (the
// attributes as cloudEvents:* and ce-* headers, the data object as the body) and a
// message that mixes the modes: the pair is stored as its structured form would be, and
// the mixed one is dead-lettered as invalid with a detail that says so.
func TestE2EBinaryMode(t *testing.T) {
	t.Parallel()
	s := mustService(t, nil)
	x := portstest.NewSample()
	binary := func(prefix string, e domain.Event) amqpadapter.Message {
		headers, contentType, body := amqpadapter.EncodeEventBinary(e)
		if prefix != "cloudEvents:" {
			renamed := amqp091.Table{}
			for k, v := range headers {
				renamed[prefix+strings.TrimPrefix(k, "cloudEvents:")] = v
			}
			headers = renamed
		}
		return amqpadapter.Message{RoutingKey: routingKeyOf(e), Publishing: amqp091.Publishing{Headers: headers, ContentType: contentType, Body: body}}
	}
	supply := portstest.Supply(x.From, x.Product, 150)
	mixedHeaders, _, _ := amqpadapter.EncodeEventBinary(supply)
	mixedBody := amqpadapter.EncodeEvent(portstest.Supply(x.From, x.Product, 1))
	s.publishMessages(t, []amqpadapter.Message{
		binary("cloudEvents:", supply),
		binary("ce-", x.Departure),
		binary("cloudEvents_", x.Arrival),
		{RoutingKey: "movement.arrival", Publishing: amqp091.Publishing{Headers: mixedHeaders, ContentType: amqpadapter.ContentType, Body: mixedBody}},
	})
	s.waitDBStatus(t, x.Movement, "completed")
	s.waitDBStock(t, x.From, x.Product, 50)
	s.waitDBStock(t, x.To, x.Product, 98)

	d := s.waitDeadLetter(t, mixedBody)
	if r := headerString(d, amqpadapter.ReasonHeader); r != amqpadapter.ReasonInvalid {
		t.Errorf("mixed modes: %s = %q, want %q", amqpadapter.ReasonHeader, r, amqpadapter.ReasonInvalid)
	}
	if detail := headerString(d, amqpadapter.DetailHeader); !strings.Contains(detail, "mixes content modes") {
		t.Errorf("mixed modes: detail %q, want it to say the modes are mixed", detail)
	}
	if n := s.count(t, "SELECT count(*) FROM events"); n != 3 {
		t.Errorf("events rows = %d, want the 3 binary-mode events", n)
	}
	// The event lookup answers a binary-mode event with its attributes, as received.
	var got struct {
		Event struct {
			ID, Source, Subject, Datacontenttype string
		} `json:"event"`
		Outcome string `json:"outcome"`
	}
	s.getJSON(t, "/api/events/"+x.Arrival.Source+"/"+x.Arrival.ID, &got)
	if got.Event.ID != x.Arrival.ID || got.Event.Source != x.Arrival.Source || got.Outcome != "stored" || got.Event.Datacontenttype != "application/json" {
		t.Errorf("event lookup = %+v, want the arrival, stored, with datacontenttype application/json", got)
	}
}
