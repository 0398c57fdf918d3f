package bootstrap

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/binding/spec"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/cloudevents/sdk-go/v2/types"
	amqp091 "github.com/rabbitmq/amqp091-go"

	amqpadapter "warehouse/adapters/amqp"
	"warehouse/domain"
	"warehouse/ports/portstest"
)

// sdkEvent is e as the official Go SDK builds it.
func sdkEvent(t *testing.T, e domain.Event) cloudevents.Event {
	t.Helper()
	ce := cloudevents.NewEvent()
	ce.SetID(e.ID)
	ce.SetSource(e.Source)
	ce.SetType(domain.EventType)
	ce.SetTime(time.Now().UTC().Truncate(time.Millisecond))
	ce.SetSubject(e.Source + ":" + string(e.Kind))
	if err := ce.SetData(cloudevents.ApplicationJSON, map[string]any{
		"movement_id": e.MovementID.String(), "warehouse_id": e.WarehouseID.String(), "product_id": e.ProductID.String(),
		"timestamp": e.Timestamp.UTC().Format(time.RFC3339), "event": string(e.Kind), "quantity": e.Quantity,
	}); err != nil {
		t.Fatal(err)
	}
	return ce
}

// amqpBinaryWriter writes an SDK message in binary mode on AMQP 0-9-1: each attribute a
// cloudEvents:<name> header (the AMQP binding's names), the data as the body, the
// datacontenttype as the content type. The SDK has no 0-9-1 binding; this is the writer
// one would give it.
type amqpBinaryWriter struct{ pub amqp091.Publishing }

func (w *amqpBinaryWriter) Start(context.Context) error {
	w.pub.Headers = amqp091.Table{}
	return nil
}

func (w *amqpBinaryWriter) SetAttribute(a spec.Attribute, v any) error {
	s, err := types.Format(v)
	if err != nil {
		return err
	}
	if a.Kind() == spec.DataContentType {
		w.pub.ContentType = s
		return nil
	}
	w.pub.Headers["cloudEvents:"+a.Name()] = s
	return nil
}

func (w *amqpBinaryWriter) SetExtension(name string, v any) error {
	s, err := types.Format(v)
	if err != nil {
		return err
	}
	w.pub.Headers["cloudEvents:"+name] = s
	return nil
}

func (w *amqpBinaryWriter) SetData(r io.Reader) (err error) {
	w.pub.Body, err = io.ReadAll(r)
	return err
}

func (w *amqpBinaryWriter) End(context.Context) error { return nil }

// TestE2ECloudEventsSDK drives every ingest mode with the official Go SDK as the client:
// a structured event, a binary-mode event and a batch over HTTP, and a binary-mode event
// over AMQP 0-9-1. All are stored; the movement completes and the stock is right.
func TestE2ECloudEventsSDK(t *testing.T) {
	t.Parallel()
	const token = "sdk-ingest-token"
	s := mustService(t, func(c *Config) { c.IngestToken = token })
	x := portstest.NewSample()
	supply := portstest.Supply(x.From, x.Product, 150)
	extra1, extra2 := portstest.Supply(x.To, x.Product, 3), portstest.Supply(x.To, x.Product, 4)
	target := s.base + "/api/events"

	p, err := cloudevents.NewHTTP(cloudevents.WithTarget(target), cehttp.WithHeader("Authorization", "Bearer "+token))
	if err != nil {
		t.Fatal(err)
	}
	client, err := cloudevents.NewClient(p)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if res := client.Send(binding.WithForceStructured(ctx), sdkEvent(t, supply)); !cloudevents.IsACK(res) {
		t.Fatalf("structured over HTTP: %v", res)
	}
	if res := client.Send(binding.WithForceBinary(ctx), sdkEvent(t, x.Departure)); !cloudevents.IsACK(res) {
		t.Fatalf("binary over HTTP: %v", res)
	}
	req, err := cehttp.NewHTTPRequestFromEvents(ctx, target, []cloudevents.Event{sdkEvent(t, extra1), sdkEvent(t, extra2)})
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || !bytes.Contains(body, []byte(`"accepted":2`)) {
		t.Fatalf("batch over HTTP: %d %s", resp.StatusCode, body)
	}

	arrival := sdkEvent(t, x.Arrival)
	w := &amqpBinaryWriter{}
	if _, err := binding.Write(ctx, binding.ToMessage(&arrival), nil, w); err != nil {
		t.Fatal(err)
	}
	s.publishMessages(t, []amqpadapter.Message{{RoutingKey: "movement.arrival", Publishing: w.pub}})

	s.waitDBStatus(t, x.Movement, "completed")
	s.waitDBStock(t, x.From, x.Product, 50)
	s.waitDBStock(t, x.To, x.Product, 98+3+4)
	if n := s.count(t, "SELECT count(*) FROM events"); n != 5 {
		t.Errorf("events rows = %d, want 5", n)
	}
	for _, d := range s.deadLetters(t) {
		t.Errorf("dead letter: %v %v", d.Headers[amqpadapter.ReasonHeader], d.Headers[amqpadapter.DetailHeader])
	}
}
