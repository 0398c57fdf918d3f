package http_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	httpadapter "warehouse/adapters/http"
	"warehouse/application"
)

// mustListen serves s on a real loopback listener (timeouts live in the server loop,
// which app.Test bypasses) and returns its address.
func mustListen(t *testing.T, s *httpadapter.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() { _ = s.App().Shutdown() })
	return ln.Addr().String()
}

// TestSlowHeaders: a client that sends its headers a byte at a time and never finishes
// them (slowloris) is cut off by the read timeout instead of holding a connection.
func TestSlowHeaders(t *testing.T) {
	f := newFixture(t)
	s, _ := mustServer(t, application.NewQueries(f.store), httpadapter.Options{ReadTimeout: 300 * time.Millisecond}, httpadapter.Readiness{})
	addr := mustListen(t, s)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	partial := "GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: "
	closed := false
	for i := 0; i < 40 && !closed; i++ { // at most 4 s of trickling
		if _, err := conn.Write([]byte(partial[i%len(partial) : i%len(partial)+1])); err != nil {
			closed = true
			break
		}
		_ = conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		var buf [512]byte
		n, err := conn.Read(buf[:])
		var ne net.Error
		switch {
		case n > 0 || errors.Is(err, io.EOF):
			closed = true // the server answered (408) or hung up
		case err != nil && (!errors.As(err, &ne) || !ne.Timeout()):
			closed = true
		}
	}
	if !closed {
		t.Fatalf("a client trickling headers kept its connection for %v", time.Since(start))
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("slow client cut off after %v, want about the 300ms read timeout", d)
	}
}

// TestHugeRequestLine: a request line beyond the read buffer gets a 431 problem that does
// not echo the request, not a stack trace or a hang.
func TestHugeRequestLine(t *testing.T) {
	f := newFixture(t)
	s, _ := mustServer(t, application.NewQueries(f.store), httpadapter.Options{}, httpadapter.Readiness{})
	addr := mustListen(t, s)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	const marker = "a-cursor-nobody-may-echo-"
	req := "GET /api/movements?cursor=" + strings.Repeat(marker, (64<<10)/len(marker)) + " HTTP/1.1\r\nHost: x\r\n\r\n"
	_, _ = conn.Write([]byte(req)) // the server may hang up before reading it all
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a 64 KiB request line: %v", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	detail := wantProblem(t, response{status: res.StatusCode, header: res.Header, body: body}, http.StatusRequestHeaderFieldsTooLarge)
	if strings.Contains(string(body), marker) {
		t.Errorf("the problem echoes the request line: detail %q", detail)
	}
}
