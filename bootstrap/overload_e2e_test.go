package bootstrap

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"warehouse/adapters/postgres"
	"warehouse/domain"
	"warehouse/ports/portstest"
)

// TestE2EOverloadIsNotAnOutage floods the list endpoint of a service with a small pool
// from 200 connections at once. The database stays healthy, so /readyz must stay 200
// all along, and every answer must be a page or the overload 503 (with Retry-After):
// never the 503 of an outage.
func TestE2EOverloadIsNotAnOutage(t *testing.T) {
	t.Parallel()
	s := mustService(t, func(c *Config) {
		c.DBMaxConns = 4
		c.RequestTimeout = time.Second
	})
	seedMovements(t, s, 2000)

	const (
		conns    = 200
		requests = 3 // per connection
	)
	transport := &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: 20 * time.Second}

	var (
		mu       sync.Mutex
		answers  = map[string]int{}
		notReady []string
		stop     = make(chan struct{})
		probes   atomic.Int64
	)
	probeDone := make(chan struct{})
	go func() { // readiness while the load runs
		defer close(probeDone)
		probe := &http.Client{Timeout: 10 * time.Second}
		for {
			select {
			case <-stop:
				return
			case <-time.After(25 * time.Millisecond):
			}
			status, body, err := get(probe, s.base+"/readyz")
			probes.Add(1)
			if err != nil || status != http.StatusOK {
				mu.Lock()
				notReady = append(notReady, fmt.Sprintf("%d %s %v", status, body, err))
				mu.Unlock()
			}
		}
	}()

	var wg sync.WaitGroup
	start := time.Now()
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range requests {
				res, err := client.Get(s.base + "/api/movements?limit=1000")
				key := ""
				if err != nil {
					key = "error: " + err.Error()
				} else {
					body, _ := io.ReadAll(res.Body)
					res.Body.Close()
					key = classifyAnswer(res, body)
				}
				mu.Lock()
				answers[key]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-probeDone
	t.Logf("%d requests over %d connections in %v: %v; %d readiness probes",
		conns*requests, conns, time.Since(start).Round(time.Millisecond), answers, probes.Load())

	for key, n := range answers {
		if key != "200" && key != "503 overloaded" {
			t.Errorf("%d answers %s, want only pages and overload answers", n, key)
		}
	}
	if answers["200"] == 0 {
		t.Error("no request got a page")
	}
	if len(notReady) > 0 {
		t.Errorf("/readyz failed %d times of %d while PostgreSQL was healthy, first: %s", len(notReady), probes.Load(), notReady[0])
	}
	if shed := s.metric(t, "http_requests_shed_total", `{route="/api/movements"}`); shed != float64(answers["503 overloaded"]) {
		t.Errorf("http_requests_shed_total = %v, want %d", shed, answers["503 overloaded"])
	}
}

// classifyAnswer names an answer of the load: its status, and for a 503 whether it is
// the overload problem (with Retry-After) or something else.
func classifyAnswer(res *http.Response, body []byte) string {
	if res.StatusCode != http.StatusServiceUnavailable {
		return fmt.Sprint(res.StatusCode)
	}
	var p struct {
		Type   string `json:"type"`
		Detail string `json:"detail"`
	}
	_ = json.Unmarshal(body, &p)
	if p.Type == "urn:warehouse:problem:overloaded" && res.Header.Get("Retry-After") != "" {
		return "503 overloaded"
	}
	return fmt.Sprintf("503 %s %q", p.Type, p.Detail)
}

func get(c *http.Client, url string) (int, []byte, error) {
	res, err := c.Get(url)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	return res.StatusCode, body, err
}

// seedMovements stores n supplier arrivals straight into the service's database.
func seedMovements(t *testing.T, s *testService, n int) {
	t.Helper()
	store := postgres.NewStore(s.db)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const batch = 1000
	for i := 0; i < n; i += batch {
		events := make([]domain.Event, 0, batch)
		for j := i; j < min(n, i+batch); j++ {
			events = append(events, portstest.Supply(domain.WarehouseID(uuid.New()), domain.ProductID(uuid.New()), 1))
		}
		results, err := store.Apply(ctx, events)
		if err != nil {
			t.Fatalf("seed: %v", err)
		}
		for _, r := range results {
			if r != nil {
				t.Fatalf("seed: %v", r)
			}
		}
	}
}

// TestE2EForgedCursor: a cursor forged with a time PostgreSQL cannot hold (year 0, also
// when written with an offset) is a 400, not a 500 and an ERROR log from the database's
// "date/time field value out of range".
func TestE2EForgedCursor(t *testing.T) {
	t.Parallel()
	s := mustService(t, nil)
	seedMovements(t, s, 3)
	id := uuid.NewString()
	for _, ts := range []string{"0000-12-31T23:59:59Z", "0001-01-01T00:00:00+01:00"} {
		cursor := base64.RawURLEncoding.EncodeToString([]byte("m1|" + ts + "|" + id))
		status, body := s.get(t, "/api/movements?cursor="+cursor)
		if status != http.StatusBadRequest {
			t.Errorf("cursor at %s: %d %s, want 400", ts, status, body)
		}
	}
	if logs := s.logs.String(); strings.Contains(logs, "level=ERROR") {
		t.Errorf("a forged cursor was logged as an error:\n%s", logs)
	}
}
