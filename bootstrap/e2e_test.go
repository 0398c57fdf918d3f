package bootstrap

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp091 "github.com/rabbitmq/amqp091-go"

	amqpadapter "warehouse/adapters/amqp"
	"warehouse/domain"
	"warehouse/ports/portstest"
)

// End-to-end tests: the service as `warehouse run` builds it, fed through RabbitMQ and
// read back over HTTP and from PostgreSQL (docs/contract.md "Processing", README "HTTP API").

func TestE2ESamplePair(t *testing.T) {
	t.Parallel()
	s := mustService(t, nil)
	sample := portstest.NewSample()
	s.publish(t, portstest.Supply(sample.From, sample.Product, 150), sample.Departure, sample.Arrival)

	s.waitDBStatus(t, sample.Movement, "completed")
	s.waitDBStock(t, sample.From, sample.Product, 50)
	s.waitDBStock(t, sample.To, sample.Product, 98)

	want := fmt.Sprintf(`{"movement_id": %q, "product_id": %q, "status": "completed",
		"departure": {"warehouse_id": %q, "source": "WH-3322", "timestamp": "2025-02-18T12:12:56Z", "quantity": 100},
		"arrival":   {"warehouse_id": %q, "source": "WH-3423", "timestamp": "2025-02-18T14:34:56Z", "quantity": 98},
		"elapsed_seconds": 8520, "quantity_difference": -2}`,
		sample.Movement, sample.Product, sample.From, sample.To)
	path := "/api/movements/" + sample.Movement.String()
	s.waitHTTP(t, 2*time.Second, path, func(status int, body []byte) bool {
		return status == http.StatusOK && jsonEqual(t, body, []byte(want))
	})
	// UUIDs in paths are accepted in any letter case.
	upperPath := "/api/movements/" + strings.ToUpper(sample.Movement.String())
	upper := s.waitHTTP(t, 2*time.Second, upperPath, func(status int, _ []byte) bool { return status == http.StatusOK })
	if !jsonEqual(t, upper, []byte(want)) {
		t.Errorf("GET %s = %s, want %s", upperPath, upper, want)
	}

	mustStockJSON(t, s, sample.From, sample.Product, 50)
	mustStockJSON(t, s, sample.To, sample.Product, 98)
	if n := s.count(t, "SELECT count(*) FROM events"); n != 3 {
		t.Errorf("events rows = %d, want 3", n)
	}
	if n := s.count(t, "SELECT count(*) FROM stock"); n != 2 {
		t.Errorf("stock rows = %d, want 2", n)
	}
}

func TestE2EDeduplication(t *testing.T) {
	t.Parallel()
	s := mustService(t, nil)
	// The subtests run one after the other: they read the service's global counters.

	t.Run("same event three times", func(t *testing.T) {
		w, p := newWarehouse(), newProduct()
		e := portstest.Supply(w, p, 7)
		stored0 := s.metric(t, "movements_stored_total", "")
		dups0 := s.metric(t, "movements_duplicates_total", "")
		s.publish(t, e, e, e)
		s.waitMetric(t, "movements_stored_total", "", stored0+1)
		s.waitMetric(t, "movements_duplicates_total", "", dups0+2)
		s.barrier(t)
		if got := s.metric(t, "movements_stored_total", ""); got != stored0+1 {
			t.Errorf("movements_stored_total went from %v to %v, want +1", stored0, got)
		}
		if got := s.metric(t, "movements_duplicates_total", ""); got != dups0+2 {
			t.Errorf("movements_duplicates_total went from %v to %v, want +2", dups0, got)
		}
		s.noDeadLetter(t, e)
		if n := s.count(t, "SELECT count(*) FROM events WHERE source = ? AND id = ?", e.Source, e.ID); n != 1 {
			t.Errorf("events rows of %s = %d, want 1", e.ID, n)
		}
		if q, _ := s.dbStock(t, w, p); q != 7 {
			t.Errorf("stock in the database = %d, want 7", q)
		}
		mustStockJSON(t, s, w, p, 7)
	})

	t.Run("identical re-send under a new id", func(t *testing.T) {
		w, p := newWarehouse(), newProduct()
		e := portstest.Supply(w, p, 9)
		s.publish(t, e)
		s.waitDBStock(t, w, p, 9)
		dups0 := s.metric(t, "movements_duplicates_total", "")
		again := portstest.Renewed(e)
		s.publish(t, again)
		s.waitMetric(t, "movements_duplicates_total", "", dups0+1)
		s.barrier(t)
		s.noDeadLetter(t, again)
		if n := s.dbEvents(t, e.MovementID); n != 1 {
			t.Errorf("events rows of movement %s = %d, want 1", e.MovementID, n)
		}
		if n := s.count(t, "SELECT count(*) FROM events WHERE id = ?", again.ID); n != 0 {
			t.Errorf("the re-send %s was stored", again.ID)
		}
		if q, _ := s.dbStock(t, w, p); q != 9 {
			t.Errorf("stock in the database = %d, want 9", q)
		}
		mustStockJSON(t, s, w, p, 9)
	})

	t.Run("conflicting re-send", func(t *testing.T) {
		w, p := newWarehouse(), newProduct()
		e := portstest.Supply(w, p, 10)
		s.publish(t, e)
		s.waitDBStock(t, w, p, 10)
		rejected0 := s.metric(t, "movements_rejected_total", `{reason="conflict"}`)
		conflicting := portstest.Renewed(e)
		conflicting.Quantity = 11
		s.publish(t, conflicting)
		d := s.waitDeadLetter(t, amqpadapter.EncodeEvent(conflicting))
		if r := headerString(d, amqpadapter.ReasonHeader); r != amqpadapter.ReasonConflict {
			t.Errorf("%s = %q, want %q", amqpadapter.ReasonHeader, r, amqpadapter.ReasonConflict)
		}
		if detail := headerString(d, amqpadapter.DetailHeader); detail == "" {
			t.Errorf("%s is empty", amqpadapter.DetailHeader)
		} else {
			t.Logf("conflict detail: %s", detail)
		}
		if d.RoutingKey != "movement.arrival" {
			t.Errorf("dead letter routing key = %q, want movement.arrival", d.RoutingKey)
		}
		if got := s.metric(t, "movements_rejected_total", `{reason="conflict"}`); got != rejected0+1 {
			t.Errorf(`movements_rejected_total{reason="conflict"} went from %v to %v, want +1`, rejected0, got)
		}
		if n := s.dbEvents(t, e.MovementID); n != 1 {
			t.Errorf("events rows of movement %s = %d, want 1", e.MovementID, n)
		}
		if q, _ := s.dbStock(t, w, p); q != 10 {
			t.Errorf("stock in the database = %d, want 10", q)
		}
		mustStockJSON(t, s, w, p, 10)
	})
}

func TestE2EArrivalBeforeDeparture(t *testing.T) {
	t.Parallel()
	s := mustService(t, nil)
	sample := portstest.NewSample()
	path := "/api/movements/" + sample.Movement.String()

	s.publish(t, sample.Arrival)
	s.waitDBStatus(t, sample.Movement, "arrived")
	body := s.waitHTTP(t, 2*time.Second, path, func(status int, _ []byte) bool { return status == http.StatusOK })
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	if m["status"] != "arrived" {
		t.Errorf("status = %v, want arrived: %s", m["status"], body)
	}
	for _, key := range []string{"departure", "elapsed_seconds", "quantity_difference"} {
		if v, ok := m[key]; !ok || v != nil {
			t.Errorf("%s = %v (present %v), want null: %s", key, v, ok, body)
		}
	}
	wantArrival := map[string]any{"warehouse_id": sample.To.String(), "source": "WH-3423", "timestamp": "2025-02-18T14:34:56Z", "quantity": 98.0}
	if !reflect.DeepEqual(m["arrival"], wantArrival) {
		t.Errorf("arrival = %v, want %v", m["arrival"], wantArrival)
	}
	mustStockJSON(t, s, sample.To, sample.Product, 98)

	s.publish(t, portstest.Supply(sample.From, sample.Product, 150), sample.Departure)
	s.waitDBStatus(t, sample.Movement, "completed")
	body = s.waitHTTP(t, 2*time.Second, path, func(status int, body []byte) bool {
		return status == http.StatusOK && bytes.Contains(body, []byte(`"status":"completed"`))
	})
	m = nil
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	if m["elapsed_seconds"] != 8520.0 || m["quantity_difference"] != -2.0 {
		t.Errorf("elapsed_seconds = %v, quantity_difference = %v, want 8520 and -2", m["elapsed_seconds"], m["quantity_difference"])
	}
	mustStockJSON(t, s, sample.From, sample.Product, 50)
	mustStockJSON(t, s, sample.To, sample.Product, 98)
	if n := s.dbEvents(t, sample.Movement); n != 2 {
		t.Errorf("events rows of the movement = %d, want 2", n)
	}
}

func TestE2ERetry(t *testing.T) {
	t.Parallel()

	t.Run("departure waits for its stock", func(t *testing.T) {
		t.Parallel()
		// RETRY_LIMIT 3 × RETRY_DELAY 300ms gives up after about 0.9 s; the supply comes
		// about 1 s after the departure, so this service allows more retries.
		s := mustService(t, func(c *Config) { c.RetryLimit = 10 })
		retries := mustRetryObserver(t, s)
		w, p := newWarehouse(), newProduct()
		dep := portstest.Event(domain.Departure, newMovement(), w, p, 5, "2025-02-18T10:00:00Z")
		published := time.Now()
		s.publish(t, dep)

		// The departure is in the retry loop before its stock exists.
		var seen []int
		e2eWaitFor(t, "a retry of the departure", func() bool {
			seen = retries.attempts(t, amqpadapter.EncodeEvent(dep))
			return len(seen) > 0
		})
		if _, ok := s.dbStock(t, w, p); ok {
			t.Fatalf("a stock row exists before any supply")
		}
		time.Sleep(time.Until(published.Add(time.Second))) // the scenario: stock arrives ~1 s later
		s.publish(t, portstest.Supply(w, p, 8))

		s.waitDBStock(t, w, p, 3)
		s.waitDBStatus(t, dep.MovementID, "in_transit")
		s.barrier(t)
		s.noDeadLetter(t, dep)
		seen = retries.attempts(t, amqpadapter.EncodeEvent(dep))
		t.Logf("retry attempts seen on the way: %v", seen)
		if len(seen) == 0 || !slices.IsSorted(seen) || seen[0] != 1 {
			t.Errorf("x-retry-attempt values = %v, want 1, 2, …", seen)
		}
		if n := s.dbEvents(t, dep.MovementID); n != 1 {
			t.Errorf("events rows of the departure's movement = %d, want 1", n)
		}
		mustStockJSON(t, s, w, p, 3)
	})

	t.Run("departure that never gets stock", func(t *testing.T) {
		t.Parallel()
		s := mustService(t, nil) // RETRY_LIMIT 3
		retries := mustRetryObserver(t, s)
		w, p := newWarehouse(), newProduct()
		dep := portstest.Event(domain.Departure, newMovement(), w, p, 5, "2025-02-18T10:00:00Z")
		s.publish(t, dep)

		d := s.waitDeadLetter(t, amqpadapter.EncodeEvent(dep))
		if r := headerString(d, amqpadapter.ReasonHeader); r != amqpadapter.ReasonInsufficientStock {
			t.Errorf("%s = %q, want %q", amqpadapter.ReasonHeader, r, amqpadapter.ReasonInsufficientStock)
		}
		detail := headerString(d, amqpadapter.DetailHeader)
		t.Logf("insufficient_stock detail: %s", detail)
		if !strings.Contains(detail, "attempts") {
			t.Errorf("%s = %q, want it to mention the attempts", amqpadapter.DetailHeader, detail)
		}
		if d.RoutingKey != "movement.departure" {
			t.Errorf("dead letter routing key = %q, want movement.departure", d.RoutingKey)
		}
		// Every retry was confirmed into the retry exchange before the attempt that gave up.
		if seen := retries.attempts(t, amqpadapter.EncodeEvent(dep)); !slices.Equal(seen, []int{1, 2, 3}) {
			t.Errorf("x-retry-attempt values on the way = %v, want [1 2 3]", seen)
		}
		if _, ok := s.dbStock(t, w, p); ok {
			t.Errorf("a stock row exists for a departure that was never applied")
		}
		if n := s.dbEvents(t, dep.MovementID); n != 0 {
			t.Errorf("events rows of the rejected departure = %d, want 0", n)
		}
	})
}

func TestE2EInvalidMessages(t *testing.T) {
	t.Parallel()
	s := mustService(t, nil)
	w := newWarehouse()

	// base returns a valid arrival, encoded, to be broken by one edit.
	base := func() (domain.Event, []byte) {
		e := portstest.Supply(w, newProduct(), 5)
		return e, amqpadapter.EncodeEvent(e)
	}
	replace := func(body []byte, old, new string) []byte {
		if bytes.Count(body, []byte(old)) != 1 {
			t.Fatalf("%q is not once in %s", old, body)
		}
		return bytes.Replace(body, []byte(old), []byte(new), 1)
	}
	tests := []struct {
		name string
		body func() []byte
	}{
		{"not JSON", func() []byte { return []byte("this is not JSON " + uuid.NewString()) }},
		{"1 MiB body", func() []byte {
			e, _ := base()
			e.Attributes = []byte(`{"subject":""}`)
			pad := 1<<20 - len(amqpadapter.EncodeEvent(e))
			e.Attributes = []byte(`{"subject":"` + strings.Repeat("x", pad) + `"}`)
			body := amqpadapter.EncodeEvent(e)
			if len(body) != 1<<20 {
				t.Fatalf("padded body has %d bytes", len(body))
			}
			return body
		}},
		{"bad UUID", func() []byte {
			e, body := base()
			return replace(body, `"movement_id":"`+e.MovementID.String()+`"`, `"movement_id":"`+strings.ReplaceAll(e.MovementID.String(), "-", "")+`"`)
		}},
		{"quantity 0", func() []byte { _, body := base(); return replace(body, `"quantity":5}`, `"quantity":0}`) }},
		{"quantity 1.5", func() []byte { _, body := base(); return replace(body, `"quantity":5}`, `"quantity":1.5}`) }},
		{`quantity "10"`, func() []byte { _, body := base(); return replace(body, `"quantity":5}`, `"quantity":"10"}`) }},
		{"unknown event kind", func() []byte { _, body := base(); return replace(body, `"event":"arrival"`, `"event":"teleport"`) }},
		{"wrong specversion", func() []byte { _, body := base(); return replace(body, `"specversion":"1.0"`, `"specversion":"0.3"`) }},
		{"duplicate key", func() []byte { _, body := base(); return replace(body, `"quantity":5}`, `"quantity":5,"quantity":5}`) }},
	}

	bodies := make([][]byte, len(tests))
	valid := make([]domain.Event, len(tests))
	for i, tc := range tests {
		bodies[i] = tc.body()
		valid[i] = portstest.Supply(w, newProduct(), int64(i+1))
		s.publishRaw(t, "movement.arrival", bodies[i])
		s.publish(t, valid[i])
	}

	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := s.waitDeadLetter(t, bodies[i])
			if r := headerString(d, amqpadapter.ReasonHeader); r != amqpadapter.ReasonInvalid {
				t.Errorf("%s = %q, want %q", amqpadapter.ReasonHeader, r, amqpadapter.ReasonInvalid)
			}
			detail := headerString(d, amqpadapter.DetailHeader)
			if detail == "" {
				t.Errorf("%s is empty", amqpadapter.DetailHeader)
			}
			t.Logf("detail: %s", detail)
			// The valid event published right after it was applied.
			s.waitDBStock(t, valid[i].WarehouseID, valid[i].ProductID, int64(i+1))
		})
	}
	// Only the valid events are stored: the invalid ones were published before the last
	// valid one, so their batches have committed by now.
	if n := s.count(t, "SELECT count(*) FROM events"); n != len(tests) {
		t.Errorf("events rows = %d, want %d (the valid events only)", n, len(tests))
	}
	var page struct {
		Items []struct {
			ProductID string `json:"product_id"`
			Quantity  int64  `json:"quantity"`
		} `json:"items"`
	}
	s.getJSON(t, "/api/warehouses/"+w.String()+"/products?limit=1000", &page)
	if len(page.Items) != len(tests) {
		t.Errorf("warehouse lists %d stock rows, want %d", len(page.Items), len(tests))
	}
}

func TestE2ECacheInvalidation(t *testing.T) {
	t.Parallel()
	// Entries live an hour: only invalidation by the consumer can explain a fresh answer.
	s := mustService(t, func(c *Config) { c.CacheTTL = time.Hour })

	t.Run("stock", func(t *testing.T) {
		w, p := newWarehouse(), newProduct()
		s.publish(t, portstest.Supply(w, p, 10))
		s.waitDBStock(t, w, p, 10)
		// The consumer invalidates the row just after its commit: a read between the two
		// caches an entry that the invalidation then drops. Once that has passed, a read
		// right after another is a hit.
		var hits0, hits float64
		for deadline := time.Now().Add(2 * time.Second); ; {
			mustStockJSON(t, s, w, p, 10)
			hits0 = s.metric(t, "cache_hits_total", `{kind="stock"}`)
			mustStockJSON(t, s, w, p, 10)
			if hits = s.metric(t, "cache_hits_total", `{kind="stock"}`); hits == hits0+1 || time.Now().After(deadline) {
				break
			}
		}
		if hits != hits0+1 {
			t.Fatalf(`cache_hits_total{kind="stock"} went from %v to %v: the second read was not cached`, hits0, hits)
		}

		s.publish(t, portstest.Supply(w, p, 5))
		path := fmt.Sprintf("/api/warehouses/%s/products/%s", w, p)
		s.waitHTTP(t, 2*time.Second, path, func(status int, body []byte) bool {
			return status == http.StatusOK && bytes.Contains(body, []byte(`"quantity":15,`))
		})
		if q, _ := s.dbStock(t, w, p); q != 15 {
			t.Errorf("stock in the database = %d, want 15", q)
		}
	})

	t.Run("movement", func(t *testing.T) {
		sample := portstest.NewSample()
		s.publish(t, portstest.Supply(sample.From, sample.Product, 100), sample.Departure)
		s.waitDBStatus(t, sample.Movement, "in_transit")
		path := "/api/movements/" + sample.Movement.String()
		for range 2 {
			s.waitHTTP(t, 2*time.Second, path, func(status int, body []byte) bool {
				return status == http.StatusOK && bytes.Contains(body, []byte(`"status":"in_transit"`))
			})
		}
		s.publish(t, sample.Arrival)
		s.waitHTTP(t, 2*time.Second, path, func(status int, body []byte) bool {
			return status == http.StatusOK && bytes.Contains(body, []byte(`"status":"completed"`))
		})
	})
}

func TestE2ELists(t *testing.T) {
	t.Parallel()
	s := mustService(t, nil)
	w, x := newWarehouse(), newWarehouse()
	p1, p2, p3 := newProduct(), newProduct(), newProduct()

	type mv struct {
		id   domain.MovementID
		time string // the movement's time: departure timestamp, else arrival timestamp
	}
	var touchingW []mv
	var events []domain.Event
	supply := func(wh domain.WarehouseID, p domain.ProductID, qty int64, ts string) domain.MovementID {
		m := newMovement()
		events = append(events, portstest.Event(domain.Arrival, m, wh, p, qty, ts))
		return m
	}
	move := func(from, to domain.WarehouseID, p domain.ProductID, qty int64, dep, arr string) domain.MovementID {
		m := newMovement()
		events = append(events, portstest.Event(domain.Departure, m, from, p, qty, dep))
		if arr != "" {
			events = append(events, portstest.Event(domain.Arrival, m, to, p, qty, arr))
		}
		return m
	}
	touchingW = append(touchingW,
		mv{supply(w, p1, 100, "2025-01-01T00:00:00Z"), "2025-01-01T00:00:00Z"},
		mv{supply(w, p2, 50, "2025-01-02T00:00:00Z"), "2025-01-02T00:00:00Z"},
		mv{supply(w, p3, 20, "2025-01-03T00:00:00Z"), "2025-01-03T00:00:00Z"})
	other := supply(x, p3, 30, "2025-01-05T00:00:00Z") // never at w
	touchingW = append(touchingW,
		mv{move(w, x, p1, 10, "2025-03-01T10:00:00Z", "2025-03-01T12:00:00Z"), "2025-03-01T10:00:00Z"},
		mv{move(w, x, p2, 5, "2025-03-02T10:00:00Z", ""), "2025-03-02T10:00:00Z"},
		mv{move(w, x, p1, 1, "2025-03-03T10:00:00Z", ""), "2025-03-03T10:00:00Z"},
		mv{move(x, w, p3, 7, "2025-03-04T10:00:00Z", "2025-03-04T15:00:00Z"), "2025-03-04T10:00:00Z"})
	s.publish(t, events...)

	want := map[domain.ProductID]int64{p1: 100 - 10 - 1, p2: 50 - 5, p3: 20 + 7}
	for p, q := range want {
		s.waitDBStock(t, w, p, q)
	}
	s.waitDBStock(t, x, p3, 30-7)
	s.waitDBStatus(t, touchingW[len(touchingW)-1].id, "completed")

	slices.SortFunc(touchingW, func(a, b mv) int { return strings.Compare(b.time, a.time) }) // newest first
	var wantIDs []string
	for _, m := range touchingW {
		wantIDs = append(wantIDs, m.id.String())
	}

	t.Run("movements of a warehouse, page by page", func(t *testing.T) {
		var got []string
		cursor := ""
		for pages := 0; ; pages++ {
			if pages > len(wantIDs) {
				t.Fatalf("more than %d pages; ids so far %v", len(wantIDs), got)
			}
			path := "/api/movements?warehouse_id=" + strings.ToUpper(w.String()) + "&limit=2"
			if cursor != "" {
				path += "&cursor=" + url.QueryEscape(cursor)
			}
			var page struct {
				Items []struct {
					MovementID string `json:"movement_id"`
				} `json:"items"`
				NextCursor *string `json:"next_cursor"`
			}
			s.getJSON(t, path, &page)
			if len(page.Items) > 2 {
				t.Fatalf("page of %d items with limit=2", len(page.Items))
			}
			for _, it := range page.Items {
				got = append(got, it.MovementID)
			}
			if page.NextCursor == nil {
				break
			}
			cursor = *page.NextCursor
		}
		if !slices.Equal(got, wantIDs) {
			t.Errorf("movements of %s, walked page by page:\n got %v\nwant %v", w, got, wantIDs)
		}
		if slices.Contains(got, other.String()) {
			t.Errorf("the list holds movement %s, which never touched %s", other, w)
		}
	})

	t.Run("stock of a warehouse", func(t *testing.T) {
		type row struct {
			WarehouseID string `json:"warehouse_id"`
			ProductID   string `json:"product_id"`
			Quantity    int64  `json:"quantity"`
		}
		var wantRows []row
		for p, q := range want {
			wantRows = append(wantRows, row{w.String(), p.String(), q})
		}
		slices.SortFunc(wantRows, func(a, b row) int { return strings.Compare(a.ProductID, b.ProductID) })

		var all struct {
			Items      []row   `json:"items"`
			NextCursor *string `json:"next_cursor"`
		}
		s.getJSON(t, "/api/warehouses/"+w.String()+"/products", &all)
		if !slices.Equal(all.Items, wantRows) || all.NextCursor != nil {
			t.Errorf("stock of %s = %+v (next %v), want %+v", w, all.Items, all.NextCursor, wantRows)
		}

		var got []row
		path := "/api/warehouses/" + w.String() + "/products?limit=2"
		for pages := 0; pages < 5; pages++ {
			var page struct {
				Items      []row   `json:"items"`
				NextCursor *string `json:"next_cursor"`
			}
			s.getJSON(t, path, &page)
			got = append(got, page.Items...)
			if page.NextCursor == nil {
				break
			}
			path = "/api/warehouses/" + w.String() + "/products?limit=2&cursor=" + url.QueryEscape(*page.NextCursor)
		}
		if !slices.Equal(got, wantRows) {
			t.Errorf("stock of %s page by page = %+v, want %+v", w, got, wantRows)
		}
	})
}

// TestE2EGracefulShutdown stops the service while a stream flows: the stop must land in
// the middle of the stream, the batch in flight must be committed and acked (the queue
// then holds exactly the events not stored), and a new service finishes the stream.
func TestE2EGracefulShutdown(t *testing.T) {
	t.Parallel()
	// Small batches, so that the stream takes many batches and the cancellation lands
	// in the middle of it.
	s1 := mustService(t, func(c *Config) { c.BatchSize = 50; c.AMQPPrefetch = 100 })

	const total = 6000
	w := newWarehouse()
	products := make([]domain.ProductID, 10)
	for i := range products {
		products[i] = newProduct()
	}
	want := map[domain.ProductID]int64{}
	msgs := make([]amqpadapter.Message, total)
	for i := range msgs {
		p := products[i%len(products)]
		qty := int64(1 + i%7)
		want[p] += qty
		e := portstest.Supply(w, p, qty)
		msgs[i] = amqpadapter.Message{RoutingKey: routingKeyOf(e), Publishing: amqp091.Publishing{Body: amqpadapter.EncodeEvent(e)}}
	}

	// Every batch of the first service sleeps in its transaction before it inserts its
	// events, so the stop can land while one is being written, as it would on a
	// busy database.
	mustExecSQL(t, s1.db, `CREATE FUNCTION e2e_slow_batch() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN PERFORM pg_sleep(0.5); RETURN NULL; END $$`)
	mustExecSQL(t, s1.db, `CREATE TRIGGER e2e_slow_batch BEFORE INSERT ON events FOR EACH STATEMENT EXECUTE FUNCTION e2e_slow_batch()`)
	published := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for chunk := range slices.Chunk(msgs, 100) {
			if err := s1.pub.PublishBatch(ctx, s1.cfg.AMQPExchange, chunk); err != nil {
				published <- err
				return
			}
		}
		published <- nil
	}()

	e2eWaitFor(t, "the first events stored", func() bool { return s1.count(t, "SELECT count(*) FROM events") > 0 })
	e2eWaitFor(t, "a batch being written", func() bool {
		return s1.count(t, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event = 'PgSleep'") > 0
	})
	atCancel := s1.count(t, "SELECT count(*) FROM events")
	if err := s1.stop(); err != nil {
		t.Fatalf("first service: %v", err)
	}
	afterStop := s1.count(t, "SELECT count(*) FROM events")
	t.Logf("cancelled with %d of %d events stored and a batch in its transaction; runService returned nil after %s with %d stored",
		atCancel, total, s1.stopTook.Round(time.Millisecond), afterStop)
	if err := <-published; err != nil {
		t.Fatalf("publish: %v", err)
	}
	if afterStop >= total {
		t.Fatalf("the stop landed after the whole stream was stored (%d events): the test proves nothing", afterStop)
	}
	// The batch in its transaction at the stop was finished, not abandoned: it committed
	// (and, below, was acked), so the events stored grew during the stop.
	if afterStop <= atCancel {
		t.Fatalf("%d events stored after the stop, %d before it: the batch being written at the stop was not committed", afterStop, atCancel)
	}
	mustExecSQL(t, s1.db, `DROP TRIGGER e2e_slow_batch ON events`)
	// Every stored event was acked and no other: the broker holds exactly the rest, once
	// it has taken back what the stopped consumer held unacked.
	var depth int
	e2eWaitForMsg(t, func() bool {
		depth = s1.queueDepth(t)
		return depth == total-afterStop
	}, func() string {
		return fmt.Sprintf("the queue to hold the %d events not stored (holds %d: %d stored events unacked, or acked before they were stored)",
			total-afterStop, depth, depth-(total-afterStop))
	})

	s2 := startService(t, s1.cfg, s1.e2eEnv)
	var stored int
	e2eWaitForMsg(t, func() bool {
		stored = s2.count(t, "SELECT count(*) FROM events")
		return stored >= total
	}, func() string { return fmt.Sprintf("%d events stored (have %d)", total, stored) })
	// The barrier is queued behind everything published and everything the first
	// service left unacked: once it is dead-lettered, the queue has been drained.
	s2.barrier(t)

	if n := s2.count(t, "SELECT count(*) FROM events"); n != total {
		t.Errorf("events rows = %d, want %d", n, total)
	}
	for p, q := range want {
		if got, _ := s2.dbStock(t, w, p); got != q {
			t.Errorf("stock of %s = %d, want %d", p, got, q)
		}
	}
	if n := s2.count(t, "SELECT count(*) FROM stock"); n != len(products) {
		t.Errorf("stock rows = %d, want %d", n, len(products))
	}
	for _, d := range s2.deadLetters(t) {
		if !bytes.HasPrefix(d.Body, []byte("e2e barrier ")) {
			t.Errorf("unexpected dead letter: reason %v, detail %v, body %s", d.Headers[amqpadapter.ReasonHeader], d.Headers[amqpadapter.DetailHeader], clipBody(d.Body))
		}
	}
}

// ---- helpers of these tests ----

func newWarehouse() domain.WarehouseID { return domain.WarehouseID(uuid.New()) }
func newProduct() domain.ProductID     { return domain.ProductID(uuid.New()) }
func newMovement() domain.MovementID   { return domain.MovementID(uuid.New()) }

// jsonEqual reports whether two JSON documents hold the same value.
func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		return false
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("bad expected JSON %s: %v", b, err)
	}
	return reflect.DeepEqual(va, vb)
}

// mustStockJSON checks GET /api/warehouses/{w}/products/{p}: exactly the documented fields,
// the quantity want and updated_at in UTC RFC 3339.
func mustStockJSON(t *testing.T, s *testService, w domain.WarehouseID, p domain.ProductID, want int64) {
	t.Helper()
	var got map[string]any
	s.getJSON(t, fmt.Sprintf("/api/warehouses/%s/products/%s", w, p), &got)
	updated, _ := got["updated_at"].(string)
	if ts, err := time.Parse(time.RFC3339Nano, updated); err != nil || !strings.HasSuffix(updated, "Z") ||
		time.Since(ts) > time.Hour || time.Until(ts) > time.Minute {
		t.Errorf("updated_at = %q, want a recent UTC RFC 3339 time", updated)
	}
	delete(got, "updated_at")
	wantMap := map[string]any{"warehouse_id": w.String(), "product_id": p.String(), "quantity": float64(want)}
	if !reflect.DeepEqual(got, wantMap) {
		t.Errorf("stock %s/%s = %v (without updated_at), want %v", w, p, got, wantMap)
	}
}

// retryObserver is a private queue bound to the service's retry exchange (a fanout): it
// receives a copy of every delayed retry, headers included, without taking it from the
// service.
type retryObserver struct {
	ch    *amqp091.Channel
	queue string
	seen  []amqp091.Delivery
}

func mustRetryObserver(t *testing.T, s *testService) *retryObserver {
	t.Helper()
	ch, err := s.conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ch.Close() })
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(q.Name, "", s.cfg.AMQPRetryExchange, false, nil); err != nil {
		t.Fatal(err)
	}
	return &retryObserver{ch: ch, queue: q.Name}
}

// attempts returns the x-retry-attempt headers of the retries of body seen so far.
func (r *retryObserver) attempts(t *testing.T, body []byte) []int {
	t.Helper()
	for {
		d, ok, err := r.ch.Get(r.queue, true)
		if err != nil {
			t.Fatalf("get retries: %v", err)
		}
		if !ok {
			break
		}
		r.seen = append(r.seen, d)
	}
	var out []int
	for _, d := range r.seen {
		if !bytes.Equal(d.Body, body) {
			continue
		}
		switch v := d.Headers[amqpadapter.RetryHeader].(type) {
		case int32:
			out = append(out, int(v))
		case int64:
			out = append(out, int(v))
		case int16:
			out = append(out, int(v))
		case int8:
			out = append(out, int(v))
		default:
			t.Errorf("retry without a usable %s header: %#v", amqpadapter.RetryHeader, d.Headers)
		}
	}
	return out
}
