package bootstrap

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	amqpadapter "warehouse/adapters/amqp"
	"warehouse/adapters/memory"
	"warehouse/domain"
)

// testProduceEnv keeps progress off the test's output and re-publishes quickly.
func testProduceEnv(stderr io.Writer) produceEnv {
	return produceEnv{stderr: stderr, attempts: 3, backoffMin: 10 * time.Millisecond, backoffMax: 20 * time.Millisecond}
}

// mustProduce runs `warehouse produce args` and returns its stdout and stderr.
func mustProduce(t *testing.T, ctx context.Context, args ...string) (stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	if err := produce(ctx, args, &out, testProduceEnv(&errOut)); err != nil {
		t.Fatalf("produce %s: %v\nstderr:\n%s", strings.Join(args, " "), err, errOut.String())
	}
	return out.String(), errOut.String()
}

// mustProduceLines decodes JSON lines with the codec, as the consumer would decode messages.
func mustProduceLines(t *testing.T, lines string) []domain.Event {
	t.Helper()
	var events []domain.Event
	sc := bufio.NewScanner(strings.NewReader(lines))
	sc.Buffer(nil, amqpadapter.MaxMessageSize+1)
	for n := 1; sc.Scan(); n++ {
		e, err := amqpadapter.DecodeEvent(sc.Bytes())
		if err != nil {
			t.Fatalf("line %d: %v\n%s", n, err, sc.Text())
		}
		events = append(events, e)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return events
}

// produceRepeats counts the events a service must drop as duplicates: an identity seen before,
// or a (movement, kind) seen before with the same data.
func produceRepeats(events []domain.Event) int {
	identities := map[domain.Identity]bool{}
	type leg struct {
		m domain.MovementID
		k domain.EventKind
	}
	legs := map[leg]bool{}
	n := 0
	for _, e := range events {
		l := leg{e.MovementID, e.Kind}
		if identities[e.Identity()] || legs[l] {
			n++
			continue
		}
		identities[e.Identity()], legs[l] = true, true
	}
	return n
}

// mustProduceReplay applies events in order to a fresh memory store and fails on any
// refusal but a duplicate; it returns the store and the number of duplicates.
func mustProduceReplay(t *testing.T, events []domain.Event) (*memory.Store, int) {
	t.Helper()
	store := memory.NewStore()
	results, err := store.Apply(context.Background(), events)
	if err != nil {
		t.Fatal(err)
	}
	dups := 0
	for i, r := range results {
		switch {
		case r == nil:
		case errors.Is(r, domain.ErrDuplicate):
			dups++
		default:
			t.Fatalf("event %d (%s %s of %d) refused: %v", i, events[i].Source, events[i].Kind, events[i].Quantity, r)
		}
	}
	return store, dups
}

// mustProduceExpected reads an --expect file and checks that it is sorted.
func mustProduceExpected(t *testing.T, name string) []expectedRow {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var rows []expectedRow
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rows); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if !slices.IsSortedFunc(rows, func(a, b expectedRow) int {
		return strings.Compare(a.WarehouseID+a.ProductID, b.WarehouseID+b.ProductID)
	}) {
		t.Errorf("%s is not sorted by (warehouse_id, product_id)", name)
	}
	return rows
}

// mustProduceStock checks that the store holds exactly the rows of the --expect file.
func mustProduceStock(t *testing.T, store *memory.Store, events []domain.Event, rows []expectedRow) {
	t.Helper()
	touched := map[domain.StockKey]bool{}
	for _, e := range events {
		touched[e.StockKey()] = true
	}
	if len(rows) != len(touched) {
		t.Errorf("--expect has %d rows, the events touch %d", len(rows), len(touched))
	}
	for _, r := range rows {
		w, err1 := domain.ParseWarehouseID(r.WarehouseID)
		p, err2 := domain.ParseProductID(r.ProductID)
		if err := errors.Join(err1, err2); err != nil {
			t.Fatal(err)
		}
		s, err := store.Stock(context.Background(), w, p)
		if err != nil {
			t.Errorf("expected row (%s, %s): %v", w, p, err)
			continue
		}
		if s.Quantity != r.Quantity {
			t.Errorf("stock (%s, %s) = %d, --expect says %d", w, p, s.Quantity, r.Quantity)
		}
	}
}

// TestProduceDryRunMatchesExpect is the key test: replaying --dry-run output, decoded
// with the codec, into the memory store refuses nothing but the injected duplicates and
// leaves exactly the --expect stock.
func TestProduceDryRunMatchesExpect(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"defaults", nil},
		{"duplicates, losses, disorder", []string{"--duplicates", "0.1", "--loss", "0.3", "--out-of-order", "0.5", "--warehouses", "4", "--products", "6"}},
		{"tight network", []string{"--duplicates", "0.05", "--out-of-order", "1", "--warehouses", "2", "--products", "1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			expect := filepath.Join(t.TempDir(), "expect.json")
			args := append([]string{"--dry-run", "--count", "3000", "--seed", "17", "--expect", expect}, tc.args...)
			stdout, stderr := mustProduce(t, context.Background(), args...)
			events := mustProduceLines(t, stdout)
			if len(events) != 3000 {
				t.Fatalf("%d events, want 3000", len(events))
			}
			store, dups := mustProduceReplay(t, events)
			if want := produceRepeats(events); dups != want {
				t.Errorf("the store dropped %d duplicates, the stream produceRepeats %d events", dups, want)
			}
			if slices.Contains(tc.args, "--duplicates") == (dups == 0) {
				t.Errorf("%d duplicates with flags %v", dups, tc.args)
			}
			mustProduceStock(t, store, events, mustProduceExpected(t, expect))
			for _, want := range []string{"seed 17; repeat with --seed 17 --start ", "done: wrote 3000 events", "duplicates "} {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr)
				}
			}
			for _, e := range events {
				if !strings.HasPrefix(e.Source, "WH-") || len(e.Attributes) == 0 {
					t.Fatalf("event %+v: want a WH- source and the sample's attributes", e)
				}
			}
		})
	}
}

func TestProduceIsReproducible(t *testing.T) {
	args := []string{"--dry-run", "--count", "500", "--seed", "5", "--start", "2025-02-18T08:00:00Z", "--duplicates", "0.1"}
	a, _ := mustProduce(t, context.Background(), args...)
	b, _ := mustProduce(t, context.Background(), args...)
	if a != b {
		t.Error("two runs with the same --seed and --start differ")
	}
	c, _ := mustProduce(t, context.Background(), append(args[:len(args):len(args)], "--seed", "6")...)
	if a == c {
		t.Error("runs with different seeds are equal")
	}
	first := mustProduceLines(t, a)[0]
	if want := time.Date(2025, 2, 18, 8, 0, 0, 0, time.UTC); first.Time.Before(want) || first.Time.After(want.Add(time.Hour)) {
		t.Errorf("first event at %v, want soon after --start %v", first.Time, want)
	}
}

// TestProduceFileRoundTrip records a stream with --dry-run, then reads it back with
// --file: the same lines and the same expected stock come out, whether the second pass
// sends what the first one found (each line decoded once) or decodes every line again (a
// file of more than maxLineRecords lines).
func TestProduceFileRoundTrip(t *testing.T) {
	dir := t.TempDir()
	recorded, expect1 := filepath.Join(dir, "events.jsonl"), filepath.Join(dir, "expect1.json")
	stdout, _ := mustProduce(t, context.Background(), "--dry-run", "--output", recorded, "--expect", expect1,
		"--count", "1200", "--seed", "9", "--duplicates", "0.05", "--out-of-order", "0.3")
	if !strings.Contains(stdout, "wrote 1200 events") {
		t.Errorf("summary = %q", stdout)
	}
	decode, limit := decodeFileLine, maxLineRecords
	t.Cleanup(func() { decodeFileLine, maxLineRecords = decode, limit })
	var decoded int
	decodeFileLine = func(b []byte) (domain.Event, error) { decoded++; return decode(b) }
	for _, tc := range []struct {
		name        string
		records     int
		wantDecoded int
	}{
		{"records", limit, 1200},
		{"decoded again", 1199, 2400},
	} {
		maxLineRecords, decoded = tc.records, 0
		replayed, expect2 := filepath.Join(dir, tc.name+".jsonl"), filepath.Join(dir, tc.name+".json")
		stdout, _ = mustProduce(t, context.Background(), "--dry-run", "--file", recorded, "--output", replayed, "--expect", expect2)
		if !strings.Contains(stdout, "refuses: duplicate ") {
			t.Errorf("%s: the --file summary does not count the duplicates:\n%s", tc.name, stdout)
		}
		if decoded != tc.wantDecoded {
			t.Errorf("%s: %d lines decoded, want %d", tc.name, decoded, tc.wantDecoded)
		}
		for _, pair := range [][2]string{{recorded, replayed}, {expect1, expect2}} {
			a, errA := os.ReadFile(pair[0])
			b, errB := os.ReadFile(pair[1])
			if err := errors.Join(errA, errB); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(a, b) {
				t.Errorf("%s: %s and %s differ", tc.name, filepath.Base(pair[0]), filepath.Base(pair[1]))
			}
		}
	}
	maxLineRecords = limit

	// --count limits a file, and the expected stock follows
	limited, expect3 := filepath.Join(dir, "limited.jsonl"), filepath.Join(dir, "expect3.json")
	mustProduce(t, context.Background(), "--dry-run", "--file", recorded, "--count", "10", "--output", limited, "--expect", expect3)
	b, err := os.ReadFile(limited)
	if err != nil {
		t.Fatal(err)
	}
	events := mustProduceLines(t, string(b))
	if len(events) != 10 {
		t.Fatalf("--count 10 wrote %d events", len(events))
	}
	store, _ := mustProduceReplay(t, events)
	mustProduceStock(t, store, events, mustProduceExpected(t, expect3))
}

func TestProduceFileBadLine(t *testing.T) {
	dir := t.TempDir()
	good, _ := mustProduce(t, context.Background(), "--dry-run", "--count", "2", "--seed", "1")
	lines := strings.SplitAfter(good, "\n")
	tests := []struct {
		name, content, want string
	}{
		{"not JSON", lines[0] + "\n" + "{oops\n" + lines[1], "line 3: invalid"},
		{"quantity as a string", lines[0] + strings.Replace(lines[1], `"quantity":`, `"quantity":"1"`+`,"x":`, 1), "line 2: invalid"},
		{"too long", lines[0] + strings.Repeat(" ", amqpadapter.MaxMessageSize+5000) + "\n", "line 2: longer than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".jsonl")
			if err := os.WriteFile(name, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			var out, errOut bytes.Buffer
			err := produce(context.Background(), []string{"--dry-run", "--file", name}, &out, testProduceEnv(&errOut))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one naming %q", err, tc.want)
			}
			if out.Len() != 0 {
				t.Errorf("wrote %q before finding the bad line", out.String())
			}
		})
	}
}

func TestProduceFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string // in the error; "" = no error
	}{
		{[]string{"--help"}, ""},
		{[]string{"--count", "-1"}, "--count"},
		{[]string{"--rate", "-5"}, "--rate"},
		{[]string{"--warehouses", "0"}, "--warehouses"},
		{[]string{"--products", "0"}, "--products"},
		{[]string{"--loss", "1.5"}, "--loss"},
		{[]string{"--duplicates", "-0.1"}, "--duplicates"},
		{[]string{"--out-of-order", "2"}, "--out-of-order"},
		{[]string{"--batch", "0"}, "--batch"},
		{[]string{"--output", "x.jsonl"}, "--output needs --dry-run"},
		{[]string{"--start", "yesterday"}, "--start"},
		{[]string{"--no-such-flag"}, "no-such-flag"},
		{[]string{"extra"}, "unexpected argument"},
		{[]string{"--dry-run", "--file", "/does/not/exist.jsonl"}, "exist.jsonl"},
		{[]string{"--mode", "batch"}, "--mode"},
		{[]string{"--mode", "binary", "--dry-run"}, "--mode binary publishes"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := produce(context.Background(), tc.args, &out, testProduceEnv(&errOut))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one about %q", err, tc.want)
			}
		})
	}
}

// TestProduceInterrupted stops an endless dry run: it ends without error, and the
// expected stock matches the events written so far.
func TestProduceInterrupted(t *testing.T) {
	dir := t.TempDir()
	out, expect := filepath.Join(dir, "events.jsonl"), filepath.Join(dir, "expect.json")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	stdout, _ := mustProduce(t, ctx, "--dry-run", "--count", "0", "--output", out, "--expect", expect, "--seed", "3", "--duplicates", "0.05")
	if !strings.HasPrefix(stdout, "interrupted: wrote ") {
		t.Errorf("summary = %q", stdout)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	events := mustProduceLines(t, string(b))
	if len(events) == 0 {
		t.Fatal("nothing written before the interrupt")
	}
	store, _ := mustProduceReplay(t, events)
	mustProduceStock(t, store, events, mustProduceExpected(t, expect))
}

// mustBrokerForProduce returns an admin connection to the broker named by AMQP_URL (or the
// local default). It skips the test when the broker is unreachable, unless CI=true.
func mustBrokerForProduce(t *testing.T) *amqp091.Connection {
	t.Helper()
	url := os.Getenv("AMQP_URL")
	if url == "" {
		url = "amqp://guest:guest@127.0.0.1:5672/"
	}
	conn, err := amqp091.DialConfig(url, amqp091.Config{Dial: amqp091.DefaultDial(3 * time.Second)})
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("RabbitMQ unreachable under CI=true: %v", err)
		}
		t.Skipf("RabbitMQ unreachable: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// mustProduceTopology points AMQP_EXCHANGE and AMQP_QUEUE at fresh names and deletes
// everything produce may declare under them when the test ends.
func mustProduceTopology(t *testing.T, conn *amqp091.Connection) (exchange, queue string) {
	t.Helper()
	suffix := make([]byte, 6)
	_, _ = rand.Read(suffix)
	name := "producetest." + hex.EncodeToString(suffix)
	t.Setenv("AMQP_EXCHANGE", name)
	t.Setenv("AMQP_QUEUE", name)
	for _, v := range []string{"AMQP_DEAD_LETTER_EXCHANGE", "AMQP_DEAD_LETTER_QUEUE", "AMQP_RETRY_EXCHANGE"} {
		t.Setenv(v, "")
	}
	t.Cleanup(func() {
		ch, err := conn.Channel()
		if err != nil {
			t.Logf("cleanup: %v", err)
			return
		}
		defer ch.Close()
		for _, q := range []string{name, name + ".dead", name + ".retry"} {
			_, _ = ch.QueueDelete(q, false, false, false)
		}
		for _, x := range []string{name, name + ".dlx", name + ".retry"} {
			_ = ch.ExchangeDelete(x, false, false)
		}
	})
	return name, name
}

// mustProduceReady returns the number of ready messages in queue once it is want, or whatever
// it is at a deadline.
func mustProduceReady(t *testing.T, conn *amqp091.Connection, queue string, want int) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ch, err := conn.Channel() // a failed passive declare closes its channel
		if err != nil {
			t.Fatal(err)
		}
		q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
		_ = ch.Close()
		if err != nil {
			t.Fatalf("queue %s: %v", queue, err)
		}
		if q.Messages == want || time.Now().After(deadline) {
			return q.Messages
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// mustProduceDrain gets n messages from queue, polling until a deadline.
func mustProduceDrain(t *testing.T, conn *amqp091.Connection, queue string, n int) []amqp091.Delivery {
	t.Helper()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	var got []amqp091.Delivery
	deadline := time.Now().Add(30 * time.Second)
	for len(got) < n && time.Now().Before(deadline) {
		d, ok, err := ch.Get(queue, true)
		if err != nil {
			t.Fatalf("get from %s: %v", queue, err)
		}
		if !ok {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		got = append(got, d)
	}
	if len(got) != n {
		t.Fatalf("got %d messages from %s, want %d", len(got), queue, n)
	}
	return got
}

// TestProducePublishesWithConfirms publishes to a fresh topology on the real broker and
// finds in the queue exactly the messages a dry run of the same flags writes, in order.
func TestProducePublishesWithConfirms(t *testing.T) {
	conn := mustBrokerForProduce(t)
	_, queue := mustProduceTopology(t, conn)
	expect := filepath.Join(t.TempDir(), "expect.json")
	args := []string{"--count", "700", "--seed", "21", "--start", "2025-02-18T08:00:00Z", "--batch", "128", "--duplicates", "0.05"}

	stdout, _ := mustProduce(t, context.Background(), append(args, "--expect", expect)...)
	if !strings.Contains(stdout, "done: published 700, confirmed 700, republished 0") {
		t.Errorf("summary = %q", stdout)
	}
	if n := mustProduceReady(t, conn, queue, 700); n != 700 {
		t.Errorf("queue holds %d messages, want 700", n)
	}

	dry, _ := mustProduce(t, context.Background(), append(args, "--dry-run")...)
	want := strings.Split(strings.TrimSuffix(dry, "\n"), "\n")
	got := mustProduceDrain(t, conn, queue, 700)
	if n := mustProduceReady(t, conn, queue, 0); n != 0 {
		t.Errorf("%d messages more than published", n)
	}
	events := make([]domain.Event, len(got))
	for i, d := range got {
		if string(d.Body) != want[i] {
			t.Fatalf("message %d = %s\nwant %s", i, d.Body, want[i])
		}
		e, err := amqpadapter.DecodeEvent(d.Body)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if d.RoutingKey != "movement."+string(e.Kind) || d.DeliveryMode != amqp091.Persistent || d.ContentType != amqpadapter.ContentType || d.MessageId != e.ID {
			t.Errorf("message %d: routing key %q, delivery mode %d, content type %q, message id %q", i, d.RoutingKey, d.DeliveryMode, d.ContentType, d.MessageId)
		}
		events[i] = e
	}
	store, _ := mustProduceReplay(t, events)
	mustProduceStock(t, store, events, mustProduceExpected(t, expect))
}

// TestProducePerMessage: --per-message 100 publishes the same events as the default, in
// order, as CloudEvents batch messages of 100 (the last one shorter), and the service's
// splitter and decoder read them back.
func TestProducePerMessage(t *testing.T) {
	conn := mustBrokerForProduce(t)
	_, queue := mustProduceTopology(t, conn)
	args := []string{"--count", "750", "--seed", "23", "--start", "2025-02-18T08:00:00Z", "--batch", "300"}
	stdout, _ := mustProduce(t, context.Background(), append(args, "--per-message", "100")...)
	if !strings.Contains(stdout, "done: published 750, confirmed 750, republished 0") {
		t.Errorf("summary = %q", stdout)
	}
	dry, _ := mustProduce(t, context.Background(), append(args, "--dry-run")...)
	want := strings.Split(strings.TrimSuffix(dry, "\n"), "\n")
	// --batch 300 cuts the stream into 300, 300, 150: batch messages of 100, 100, 100, 100, 100, 100, 100, 50.
	got := mustProduceDrain(t, conn, queue, 8)
	if n := mustProduceReady(t, conn, queue, 0); n != 0 {
		t.Errorf("%d messages more than 8", n)
	}
	var bodies []string
	for i, d := range got {
		raws, err := amqpadapter.SplitBatch(d.Body)
		if err != nil || d.ContentType != amqpadapter.BatchContentType || d.RoutingKey != "movement.batch" {
			t.Fatalf("message %d: content type %q, routing key %q, split: %v", i, d.ContentType, d.RoutingKey, err)
		}
		if want := []int{100, 100, 100, 100, 100, 100, 100, 50}[i]; len(raws) != want {
			t.Errorf("message %d holds %d events, want %d", i, len(raws), want)
		}
		for _, raw := range raws {
			bodies = append(bodies, string(raw))
		}
	}
	if !slices.Equal(bodies, want) {
		t.Errorf("the batch messages hold %d events, not the %d of the dry run in order", len(bodies), len(want))
	}
	for _, bad := range [][]string{{"--per-message", "0"}, {"--per-message", "1001"}, {"--per-message", "2", "--mode", "binary"}} {
		var out, errOut bytes.Buffer
		if err := produce(context.Background(), append(args, bad...), &out, testProduceEnv(&errOut)); err == nil {
			t.Errorf("produce %v: no error", bad)
		}
	}
}

// TestProduceBinaryMode: --mode binary publishes the same events as the structured
// default, each with its attributes as cloudEvents:* headers, its data object as the
// body and the content type application/json, and the service's decoder reads them back.
func TestProduceBinaryMode(t *testing.T) {
	conn := mustBrokerForProduce(t)
	_, queue := mustProduceTopology(t, conn)
	args := []string{"--count", "200", "--seed", "22", "--start", "2025-02-18T08:00:00Z", "--duplicates", "0.05"}
	stdout, _ := mustProduce(t, context.Background(), append(args, "--mode", "binary")...)
	if !strings.Contains(stdout, "done: published 200, confirmed 200") {
		t.Errorf("summary = %q", stdout)
	}
	dry, _ := mustProduce(t, context.Background(), append(args, "--dry-run")...)
	want := strings.Split(strings.TrimSuffix(dry, "\n"), "\n")
	got := mustProduceDrain(t, conn, queue, 200)
	for i, d := range got {
		structured, err := amqpadapter.DecodeEvent([]byte(want[i]))
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := d.Headers["cloudEvents:id"]; !ok || d.ContentType != "application/json" || bytes.Contains(d.Body, []byte("specversion")) {
			t.Fatalf("message %d is not in binary mode: headers %v, content type %q, body %s", i, d.Headers, d.ContentType, d.Body)
		}
		e, err := amqpadapter.DecodeDelivery(d.Headers, d.ContentType, d.Body)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if e.ID != structured.ID || e.Source != structured.Source || e.MovementID != structured.MovementID ||
			e.Quantity != structured.Quantity || !e.Timestamp.Equal(structured.Timestamp) || e.Kind != structured.Kind || !e.Time.Equal(structured.Time) {
			t.Errorf("message %d decodes to %+v, want %+v", i, e, structured)
		}
	}
}

// TestProduceRate paces a small run: at 200/s, the last of 60 events leaves after 0.2 s
// at the earliest (batches of 20 go out at 0, 0.1 and 0.2 s).
func TestProduceRate(t *testing.T) {
	conn := mustBrokerForProduce(t)
	_, queue := mustProduceTopology(t, conn)
	start := time.Now()
	stdout, _ := mustProduce(t, context.Background(), "--count", "60", "--rate", "200", "--seed", "1")
	if elapsed := time.Since(start); elapsed < 200*time.Millisecond {
		t.Errorf("60 events at 200/s took %v", elapsed)
	}
	if !strings.Contains(stdout, "confirmed 60") {
		t.Errorf("summary = %q", stdout)
	}
	mustProduceDrain(t, conn, queue, 60)
}

// TestProduceNeverDropsSilently publishes to an exchange that routes nowhere: every
// attempt is returned, produce re-publishes, then fails saying so, and confirms nothing.
func TestProduceNeverDropsSilently(t *testing.T) {
	conn := mustBrokerForProduce(t)
	exchange, _ := mustProduceTopology(t, conn)
	lonely := exchange + ".unbound"
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.ExchangeDeclare(lonely, amqp091.ExchangeTopic, false, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ch.ExchangeDelete(lonely, false, false); _ = ch.Close() })

	var out, errOut bytes.Buffer
	err = produce(context.Background(), []string{"--count", "20", "--exchange", lonely, "--seed", "1"}, &out, testProduceEnv(&errOut))
	if !errors.Is(err, amqpadapter.ErrUnroutable) || !strings.Contains(err.Error(), "after 3 attempts") {
		t.Fatalf("err = %v, want unroutable after 3 attempts", err)
	}
	if !strings.Contains(out.String(), "failed: published 20, confirmed 0, republished 40") {
		t.Errorf("summary = %q", out.String())
	}

	// an exchange that does not exist is a clear error before anything is sent
	err = produce(context.Background(), []string{"--count", "1", "--exchange", exchange + ".missing"}, &out, testProduceEnv(&errOut))
	if err == nil || !strings.Contains(err.Error(), "does not exist") || !strings.Contains(err.Error(), "warehouse run") {
		t.Errorf("err = %v, want a hint to run the service first", err)
	}
}

// stampedWriter records when each write happened, and what it wrote.
type stampedWriter struct {
	mu     sync.Mutex
	writes []stampedWrite
}

type stampedWrite struct {
	at   time.Time
	data string
}

func (w *stampedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes = append(w.writes, stampedWrite{at: time.Now(), data: string(p)})
	return len(p), nil
}

// mustNotAhead decodes the lines of every write and fails when an event's time or timestamp
// is later than the moment the line was written. It returns the events.
func (w *stampedWriter) mustNotAhead(t *testing.T) []domain.Event {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	var all strings.Builder
	for _, wr := range w.writes {
		all.WriteString(wr.data)
	}
	events := mustProduceLines(t, all.String())
	i := 0
	for _, wr := range w.writes {
		for range strings.Count(wr.data, "\n") {
			e := events[i]
			if e.Time.After(wr.at) || e.Timestamp.After(wr.at) {
				t.Errorf("event %d (time %s, timestamp %s) written at %s: dated in the future",
					i, e.Time.Format(time.RFC3339Nano), e.Timestamp.Format(time.RFC3339), wr.at.UTC().Format(time.RFC3339Nano))
			}
			i++
		}
	}
	return events
}

// TestProduceEndsByNow: without --start, a stream "ends about now" and no event is later
// than the moment it is written; the case that ended 1 h 43 min in the future.
func TestProduceEndsByNow(t *testing.T) {
	var out stampedWriter
	var errOut bytes.Buffer
	if err := produce(context.Background(), []string{"--dry-run", "--count", "20000", "--seed", "42"}, &out, testProduceEnv(&errOut)); err != nil {
		t.Fatalf("produce: %v\n%s", err, errOut.String())
	}
	events := out.mustNotAhead(t)
	if len(events) != 20000 {
		t.Fatalf("%d events, want 20000", len(events))
	}
	// "about now": the last new event lies within a few intervals (30 days / 20 000) of it
	if last := events[len(events)-1].Time; time.Since(last) > time.Hour {
		t.Errorf("the stream ends at %s, over an hour before now", last.Format(time.RFC3339))
	}
}

// TestProduceEndlessWaitsForTheClock runs an endless stream that starts a second ago, one
// event a tenth of a second: the backlog goes out at once, then each event when its time
// comes, written (flushed) no earlier. The plain progress line says what a dry run does.
func TestProduceEndlessWaitsForTheClock(t *testing.T) {
	t.Setenv("LOG_FORMAT", "json")
	ctx, cancel := context.WithTimeout(context.Background(), progressEvery+500*time.Millisecond)
	defer cancel()
	var out stampedWriter
	var errOut bytes.Buffer
	began := time.Now()
	start := began.UTC().Add(-time.Second).Truncate(time.Second)
	args := []string{"--dry-run", "--count", "0", "--seed", "3", "--interval", "100ms", "--start", start.Format(time.RFC3339)}
	if err := produce(ctx, args, &out, testProduceEnv(&errOut)); err != nil {
		t.Fatalf("produce: %v\n%s", err, errOut.String())
	}
	events := out.mustNotAhead(t)
	live := 0
	for _, e := range events {
		if e.Time.After(began) {
			live++
		}
	}
	// about 10 events of backlog, then about 25 as their time came: never the thousands a
	// stream running ahead of the clock would write in 2.5 s
	if maxEvents := int(time.Since(start)/(100*time.Millisecond)) + 1; len(events) > maxEvents || live < 5 {
		t.Errorf("%d events (%d dated after the run began) in %s: want at most %d, and the ones after the start written as their time came",
			len(events), live, time.Since(began).Round(time.Millisecond), maxEvents)
	}

	// with --output the plain progress lines count what was written, not published
	out2 := filepath.Join(t.TempDir(), "events.jsonl")
	ctx, cancel = context.WithTimeout(context.Background(), progressEvery+500*time.Millisecond)
	defer cancel()
	errOut.Reset()
	if err := produce(ctx, append(args, "--output", out2), io.Discard, testProduceEnv(&errOut)); err != nil {
		t.Fatalf("produce --output: %v\n%s", err, errOut.String())
	}
	if !strings.Contains(errOut.String(), "writing: wrote ") || strings.Contains(errOut.String(), "published") {
		t.Errorf("progress of a dry run:\n%s\nwant \"writing: wrote …\" and nothing published", errOut.String())
	}
}

// TestProducePublishesNothingAhead publishes an endless stream that reaches the present
// to the real broker, read as it arrives: no message is dated later than its arrival.
func TestProducePublishesNothingAhead(t *testing.T) {
	conn := mustBrokerForProduce(t)
	_, queue := mustProduceTopology(t, conn)
	// declare the topology first, so that a consumer can wait on the queue
	var errOut bytes.Buffer
	if err := produce(context.Background(), []string{"--count", "1", "--seed", "1", "--start", "2025-02-18T08:00:00Z"}, io.Discard, testProduceEnv(&errOut)); err != nil {
		t.Fatalf("produce: %v\n%s", err, errOut.String())
	}
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	deliveries, err := ch.Consume(queue, "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	type arrival struct {
		at   time.Time
		body []byte
	}
	got := make(chan arrival, 1000)
	go func() {
		for d := range deliveries {
			got <- arrival{time.Now(), d.Body}
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	start := time.Now().UTC().Add(-time.Second).Truncate(time.Second)
	args := []string{"--count", "0", "--seed", "4", "--interval", "100ms", "--start", start.Format(time.RFC3339), "--batch", "50"}
	if err := produce(ctx, args, io.Discard, testProduceEnv(&errOut)); err != nil {
		t.Fatalf("produce: %v\n%s", err, errOut.String())
	}
	n := 0
	for timeout := time.After(2 * time.Second); ; {
		select {
		case a := <-got:
			e, err := amqpadapter.DecodeEvent(a.body)
			if err != nil {
				t.Fatal(err)
			}
			if e.Time.After(a.at) || e.Timestamp.After(a.at) {
				t.Errorf("message dated %s arrived at %s", e.Time.Format(time.RFC3339Nano), a.at.UTC().Format(time.RFC3339Nano))
			}
			n++
			continue
		case <-timeout:
		}
		break
	}
	if n < 10 {
		t.Errorf("%d messages arrived, want the backlog and the events that came due", n)
	}
}

// produceLogs returns the JSON log records in stderr, by message.
func produceLogs(t *testing.T, stderr string) map[string]map[string]any {
	t.Helper()
	logs := map[string]map[string]any{}
	for _, line := range strings.Split(stderr, "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		msg, _ := rec["msg"].(string)
		logs[msg] = rec
	}
	return logs
}

// mustLogged checks the record msg: it holds want (numbers as JSON numbers) and none of
// the keys absent.
func mustLogged(t *testing.T, logs map[string]map[string]any, msg string, want map[string]any, absent ...string) {
	t.Helper()
	rec, ok := logs[msg]
	if !ok {
		t.Errorf("no %q log record in %v", msg, logs)
		return
	}
	for k, v := range want {
		if fmt.Sprint(rec[k]) != fmt.Sprint(v) {
			t.Errorf("%q: %s = %v, want %v (record %v)", msg, k, rec[k], v, rec)
		}
	}
	for _, k := range absent {
		if v, ok := rec[k]; ok {
			t.Errorf("%q: %s = %v, want no such key for this run (record %v)", msg, k, v, rec)
		}
	}
}

// TestProduceLogsWhatHappened: the start and end records describe the run that happened,
// a file of 3 events (not the --count default or a seed), or a dry run that wrote its
// events and published none.
func TestProduceLogsWhatHappened(t *testing.T) {
	t.Setenv("LOG_FORMAT", "json")
	t.Setenv("LOG_LEVEL", "info")
	dir := t.TempDir()
	file := filepath.Join(dir, "three.jsonl")
	lines, _ := mustProduce(t, context.Background(), "--dry-run", "--count", "3", "--seed", "8")
	if err := os.WriteFile(file, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}

	_, stderr := mustProduce(t, context.Background(), "--dry-run", "--file", file, "--output", filepath.Join(dir, "out.jsonl"))
	logs := produceLogs(t, stderr)
	mustLogged(t, logs, "produce started", map[string]any{"file": file, "events": 3, "dry_run": true}, "count", "seed")
	mustLogged(t, logs, "produce finished", map[string]any{"state": "done", "written": 3}, "published", "confirmed")

	_, stderr = mustProduce(t, context.Background(), "--dry-run", "--count", "10", "--seed", "5")
	logs = produceLogs(t, stderr)
	mustLogged(t, logs, "produce started", map[string]any{"count": 10, "seed": 5, "output": "stdout"}, "file")
	mustLogged(t, logs, "produce finished", map[string]any{"written": 10}, "published", "confirmed")

	t.Run("published", func(t *testing.T) {
		conn := mustBrokerForProduce(t)
		exchange, queue := mustProduceTopology(t, conn)
		_, stderr := mustProduce(t, context.Background(), "--file", file)
		logs := produceLogs(t, stderr)
		mustLogged(t, logs, "produce started", map[string]any{"file": file, "events": 3, "exchange": exchange}, "count", "seed")
		mustLogged(t, logs, "produce finished", map[string]any{"published": 3, "confirmed": 3}, "written")
		mustProduceDrain(t, conn, queue, 3)
	})
}

// TestProduceProgressBarRate: on a terminal the bar shows a rate only once there is one,
// never the "0 ev/hr" of a bar that has seen no event yet.
func TestProduceProgressBarRate(t *testing.T) {
	var errOut bytes.Buffer
	env := testProduceEnv(&errOut)
	env.tty = true
	out := filepath.Join(t.TempDir(), "events.jsonl")
	if err := produce(context.Background(), []string{"--dry-run", "--count", "3000", "--seed", "2", "--output", out}, io.Discard, env); err != nil {
		t.Fatalf("produce: %v\n%s", err, errOut.String())
	}
	bar := errOut.String()
	if strings.Contains(bar, "ev/hr") || strings.Contains(bar, "ev/min") || regexp.MustCompile(`\b0 ev/s`).MatchString(bar) {
		t.Errorf("the bar shows a rate before any event was written:\n%q", bar)
	}
	if !regexp.MustCompile(`writing [1-9][0-9]* ev/s`).MatchString(bar) || !strings.Contains(bar, "3000/3000") {
		t.Errorf("the bar does not end with the rate and count of 3000 events:\n%q", bar)
	}
}
