package amqp_test

import (
	"strings"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	amqpadapter "warehouse/adapters/amqp"
)

// headroom is what a copy leaves free in its frame for the headers the broker adds.
const headroom = 16 << 10

// TestCopyDropsHeadersOverBudget: the dead letter of a message whose headers nearly fill
// a frame keeps the small headers, drops the big one, says so in its detail, and fits the
// frame with the headroom left.
func TestCopyDropsHeadersOverBudget(t *testing.T) {
	d := amqp091.Delivery{
		Headers:    amqp091.Table{"x-pad": strings.Repeat("p", 130990), "x-trace": "abc", "x-n": int32(7)},
		MessageId:  "m-1",
		RoutingKey: "movement.bad",
		Body:       []byte("not json"),
	}
	msg, _, ok := amqpadapter.CopyOf(d, "deadLetter", 131072, nil)
	if !ok {
		t.Fatal("no copy")
	}
	if _, kept := msg.Headers["x-pad"]; kept {
		t.Error("the copy kept the oversized header")
	}
	if msg.Headers["x-trace"] != "abc" || msg.Headers["x-n"] != int32(7) {
		t.Errorf("the copy lost the small headers: %v", msg.Headers)
	}
	detail, _ := msg.Headers[amqpadapter.DetailHeader].(string)
	if !strings.HasPrefix(detail, "invalid: test") || !strings.Contains(detail, `"x-pad"`) {
		t.Errorf("detail %q, want the verdict and the dropped header's name", detail)
	}
	if n := amqpadapter.PropertiesSize(msg); n > 131072-8-headroom {
		t.Errorf("the copy's properties are %d bytes, over the frame less the headroom", n)
	}
}

// TestCopyCarriesNoControlHeaderOfThePublisher: the service's and the broker's own
// headers, set by a publisher, never reach a copy; the service sets its own.
func TestCopyCarriesNoControlHeaderOfThePublisher(t *testing.T) {
	forged := amqp091.Table{
		amqpadapter.RetryHeader: int32(99), amqpadapter.RetrySignatureHeader: "forged",
		amqpadapter.ReasonHeader: "forged", amqpadapter.DetailHeader: "forged",
		amqpadapter.DeadLetteredAtHeader: "1999-01-01T00:00:00Z", amqpadapter.AttemptsHeader: int32(50),
		amqpadapter.DroppedHeader: "forged", "x-death": []any{amqp091.Table{"count": int64(9)}},
		"x-first-death-queue": "forged", "CC": []any{"elsewhere"}, "x-kept": "yes",
	}
	start := time.Now().Add(-time.Second)
	msg, exchange, ok := amqpadapter.CopyOf(amqp091.Delivery{Headers: forged, Body: []byte("x")}, "deadLetter", 131072, nil)
	if !ok || exchange != "q.dlx" {
		t.Fatalf("ok %v, exchange %q", ok, exchange)
	}
	for _, k := range []string{amqpadapter.RetryHeader, amqpadapter.RetrySignatureHeader, amqpadapter.DroppedHeader,
		"x-death", "x-first-death-queue", "CC"} {
		if _, ok := msg.Headers[k]; ok {
			t.Errorf("the dead letter carries the publisher's %s", k)
		}
	}
	if msg.Headers["x-kept"] != "yes" || msg.Headers[amqpadapter.ReasonHeader] != amqpadapter.ReasonInvalid ||
		msg.Headers[amqpadapter.AttemptsHeader] != int32(1) {
		t.Errorf("headers %v, want x-kept, the service's reason and 1 attempt", msg.Headers)
	}
	at, _ := time.Parse(time.RFC3339Nano, msg.Headers[amqpadapter.DeadLetteredAtHeader].(string))
	if at.Before(start) || at.After(time.Now()) {
		t.Errorf("dead-lettered at %v, want now", at)
	}
}

// TestRetryCountIsSigned: a consumer reads back the retry count of its own copies and of
// those of consumers sharing its key, and ignores a count signed with another key, set
// without a signature, or on another body.
func TestRetryCountIsSigned(t *testing.T) {
	key, other := []byte(strings.Repeat("k", 32)), []byte(strings.Repeat("o", 32))
	d := amqp091.Delivery{Body: []byte(`{"id":"1"}`)}
	first, exchange, ok := amqpadapter.CopyOf(d, "retryLater", 131072, key)
	if !ok || exchange != "q.retry" {
		t.Fatalf("ok %v, exchange %q", ok, exchange)
	}
	back := amqp091.Delivery{Headers: first.Headers, Body: first.Body}
	if n := amqpadapter.AttemptOf(back, key); n != 1 {
		t.Errorf("same key: attempt %d, want 1", n)
	}
	second, _, _ := amqpadapter.CopyOf(back, "retryLater", 131072, key)
	if n := amqpadapter.AttemptOf(amqp091.Delivery{Headers: second.Headers, Body: d.Body}, key); n != 2 {
		t.Errorf("second retry: attempt %d, want 2", n)
	}
	if n := amqpadapter.AttemptOf(back, other); n != 0 {
		t.Errorf("another key: attempt %d, want 0", n)
	}
	if n := amqpadapter.AttemptOf(amqp091.Delivery{Headers: amqp091.Table{amqpadapter.RetryHeader: int32(5)}, Body: d.Body}, key); n != 0 {
		t.Errorf("unsigned: attempt %d, want 0", n)
	}
	if n := amqpadapter.AttemptOf(amqp091.Delivery{Headers: first.Headers, Body: []byte(`{"id":"2"}`)}, key); n != 0 {
		t.Errorf("signature of another body: attempt %d, want 0", n)
	}
}

// TestCopyThatCannotFitIsRejected: with a frame too small for even a copy without the
// publisher's headers (long properties, the service's detail and the headroom), the
// consumer does not publish a copy that would break its connection.
func TestCopyThatCannotFitIsRejected(t *testing.T) {
	long := strings.Repeat("s", 255)
	d := amqp091.Delivery{MessageId: long, CorrelationId: long, ReplyTo: long, Type: long, AppId: long, Body: []byte("x")}
	if _, _, ok := amqpadapter.CopyOf(d, "deadLetter", 16<<10, nil); ok {
		t.Error("a copy was made for a 16 KiB frame, which leaves no room for the headroom")
	}
	if _, _, ok := amqpadapter.CopyOf(d, "deadLetter", 131072, nil); !ok {
		t.Error("no copy within the broker's default frame")
	}
}
