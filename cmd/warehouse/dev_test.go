package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"warehouse/adapters/http/sse"
)

// TestDevMode runs `warehouse dev --count 2000` as a child process with PostgreSQL and
// RabbitMQ out of reach (nothing listens at their URLs), and uses it over HTTP: /readyz
// says nothing is persisted, the generated ledger answers the read routes, an event
// posted to /api/events (no token: dev's ingest is open) is stored and changes the stock,
// and SIGTERM stops the process with status 0.
func TestDevMode(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	cmd := exec.CommandContext(context.Background(), os.Args[0], "dev", "--count", "2000", "--seed", "7", "--addr", addr)
	cmd.Env = append(os.Environ(), runMainEnv+"=1", "LOG_LEVEL=warn", "DATABASE_URL="+unreachableDB,
		"AMQP_URL=amqp://guest:guest@127.0.0.1:1/", "INGEST_TOKEN=", "API_TOKEN=")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	base := "http://" + addr
	get := func(path string, out any) int {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			return 0
		}
		defer resp.Body.Close()
		if out != nil {
			_ = json.NewDecoder(resp.Body).Decode(out)
		}
		return resp.StatusCode
	}
	deadline := time.Now().Add(20 * time.Second)
	var ready struct {
		Status string                  `json:"status"`
		Checks []struct{ Name string } `json:"checks"`
	}
	for get("/readyz", &ready) != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatalf("dev never became ready:\n%s", stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(ready.Checks) != 1 || !strings.Contains(ready.Checks[0].Name, "nothing persisted") {
		t.Errorf("/readyz checks %+v, want one that says nothing is persisted", ready.Checks)
	}
	if !strings.Contains(stderr.String(), "NOTHING IS PERSISTED") {
		t.Errorf("the log does not say nothing is persisted:\n%s", stderr.String())
	}

	var page struct {
		Items []struct {
			ProductID string `json:"product_id"`
			Departure *struct {
				WarehouseID string `json:"warehouse_id"`
			} `json:"departure"`
		} `json:"items"`
	}
	if code := get("/api/movements?status=completed&limit=5", &page); code != 200 || len(page.Items) != 5 || page.Items[0].Departure == nil {
		t.Fatalf("movements: %d, %+v", code, page)
	}
	w, p := page.Items[0].Departure.WarehouseID, page.Items[0].ProductID
	var stock struct{ Quantity int64 }
	if code := get("/api/warehouses/"+w+"/products/"+p, &stock); code != 200 {
		t.Fatalf("stock: %d", code)
	}
	var routes struct{ Items []any }
	if code := get("/api/routes?limit=3", &routes); code != 200 || len(routes.Items) == 0 {
		t.Errorf("routes: %d, %d items", code, len(routes.Items))
	}
	for _, path := range []string{"/api/warehouses/" + w + "/products/" + p + "/history?limit=3", "/api/warehouses/" + w + "/in-transit",
		"/openapi.json", "/docs", "/metrics"} {
		if code := get(path, nil); code != 200 {
			t.Errorf("GET %s: %d", path, code)
		}
	}

	// The change stream of that stock row, open from now: it must carry the posted event,
	// and stay open until SIGTERM, which must not wait for it.
	streamRes, err := http.Get(base + "/api/stream?warehouse_id=" + w + "&product_id=" + p) //nolint:bodyclose // closed below, once it is known to be one
	if err != nil || streamRes.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/stream: %v %v", streamRes, err)
	}
	defer streamRes.Body.Close()
	streamed := make(chan int64, 1)
	go func() {
		r := sse.NewReader(streamRes.Body)
		for {
			e, err := r.Next()
			if err != nil {
				close(streamed)
				return
			}
			var s struct{ Quantity int64 }
			if e.Type == "stock" && json.Unmarshal([]byte(e.Data), &s) == nil {
				streamed <- s.Quantity
			}
		}
	}()

	event := fmt.Sprintf(`{"specversion":"1.0","id":"dev-test-1","source":"WH-DEV","type":"ru.retail.warehouses.movement",
		"data":{"movement_id":"6f1c2b7e-3a4d-4e5f-8a9b-0c1d2e3f4a5b","warehouse_id":%q,"product_id":%q,
		"timestamp":"2025-01-01T00:00:00Z","event":"arrival","quantity":7}}`, w, p)
	resp, err := http.Post(base+"/api/events", "application/cloudevents+json", strings.NewReader(event))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /api/events: %d %s", resp.StatusCode, body)
	}
	var lookup struct{ Outcome string }
	if code := get("/api/events/WH-DEV/dev-test-1", &lookup); code != 200 || lookup.Outcome != "stored" {
		t.Errorf("the posted event: %d, outcome %q", code, lookup.Outcome)
	}
	var after struct{ Quantity int64 }
	get("/api/warehouses/"+w+"/products/"+p, &after)
	if after.Quantity != stock.Quantity+7 {
		t.Errorf("stock after the posted arrival of 7: %d, want %d", after.Quantity, stock.Quantity+7)
	}

	select {
	case q := <-streamed:
		if q != stock.Quantity+7 {
			t.Errorf("streamed stock after the posted arrival: %d, want %d", q, stock.Quantity+7)
		}
	case <-time.After(10 * time.Second):
		t.Error("the change stream carried no stock event within 10 s of the posted arrival")
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("dev exited with %v after SIGTERM:\n%s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("dev did not stop within 20 s of SIGTERM")
	}
}
