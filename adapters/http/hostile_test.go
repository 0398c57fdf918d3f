package http_test

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	httpadapter "warehouse/adapters/http"
)

// marker stands for a secret a client sends (a token, a cookie, a private path): no
// answer may carry it back.
const marker = "S3cretMarker7f3a"

// hostileHead is a request line and headers that carry marker in the path, the query,
// the Authorization header and a cookie, followed by extra header lines (unterminated).
func hostileHead(method, extra string) string {
	return method + " /api/movements/" + marker + "?" + marker + "=" + marker + " HTTP/1.1\r\n" +
		"Host: warehouse.test\r\n" +
		"Authorization: Bearer " + marker + "\r\n" +
		"Cookie: session=" + marker + "\r\n" + extra
}

// rawAnswer is what a server wrote back on one connection.
type rawAnswer struct {
	responses []response
	raw       []byte // every byte read, for leak checks
	closed    bool   // the server closed the connection after the last response
}

// mustRawExchange writes req on a fresh connection to addr, reads want responses (or
// fewer, if the server hangs up) and then checks whether the server closes the
// connection within wait.
func mustRawExchange(t *testing.T, addr, req string, want int, wait time.Duration) rawAnswer {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte(req)); err != nil {
		t.Fatalf("write: %v", err)
	}
	var raw bytes.Buffer
	br := bufio.NewReader(io.TeeReader(conn, &raw))
	var a rawAnswer
	for range want {
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			break
		}
		body, err := io.ReadAll(res.Body)
		_ = res.Body.Close()
		if err != nil {
			t.Fatalf("response body: %v", err)
		}
		a.responses = append(a.responses, response{status: res.StatusCode, header: res.Header, body: body})
	}
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	extra, err := io.ReadAll(br)
	if len(extra) > 0 {
		t.Errorf("the server wrote %d more bytes after %d responses: %q", len(extra), want, extra)
	}
	a.closed = err == nil // ReadAll reports EOF as nil; a timeout means still open
	var ne net.Error
	if err != nil && (!errors.As(err, &ne) || !ne.Timeout()) {
		a.closed = true // reset by the peer also ends the connection
	}
	a.raw = raw.Bytes()
	return a
}

// wantRawProblem checks response i of a: its status, the problem media type and a
// problem document with type, title, status and detail.
func wantRawProblem(t *testing.T, a rawAnswer, i, status int) map[string]any {
	t.Helper()
	if len(a.responses) <= i {
		t.Fatalf("got %d responses, want response %d with status %d; raw:\n%s", len(a.responses), i+1, status, a.raw)
	}
	res, body := a.responses[i], a.responses[i].body
	if res.status != status {
		t.Errorf("response %d: status %d, want %d; body %s", i+1, res.status, status, body)
	}
	if ct := res.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("response %d: Content-Type %q, want application/problem+json; body %s", i+1, ct, body)
	}
	var p map[string]any
	if err := json.Unmarshal(body, &p); err != nil {
		t.Errorf("response %d: body %q is not JSON: %v", i+1, body, err)
		return nil
	}
	for _, k := range []string{"type", "title", "detail"} {
		if s, _ := p[k].(string); s == "" {
			t.Errorf("response %d: problem %v has no %s", i+1, p, k)
		}
	}
	if p["status"] != float64(status) {
		t.Errorf("response %d: problem status %v, want %d", i+1, p["status"], status)
	}
	return p
}

func wantNoMarker(t *testing.T, raw []byte) {
	t.Helper()
	if bytes.Contains(bytes.ToLower(raw), []byte(strings.ToLower(marker))) {
		t.Errorf("the answer echoes the request:\n%s", raw)
	}
}

// TestMalformedRequestsNeverEcho sends requests that the HTTP parser or the method check
// refuses, each carrying a secret in its path, query, token and cookie, over a real
// connection: every answer is a problem document with a fixed detail, never the request.
func TestMalformedRequestsNeverEcho(t *testing.T) {
	f := newFixture(t)
	s := newAPI(t, f, httpadapter.Options{ReadTimeout: 300 * time.Millisecond})
	addr := mustListen(t, s)
	tests := []struct {
		name     string
		req      string
		statuses []int // of the responses expected, in order; the last is the problem
	}{
		{"malformed header line", hostileHead("GET", "Bad Header: "+marker+"\r\n") + "\r\n", []int{400}},
		{"negative content length", hostileHead("GET", "Content-Length: -1\r\n") + "\r\n", []int{400}},
		{"folded header", hostileHead("GET", "X-Note: a\r\n  Authorization: Bearer "+marker+"\r\n") + "\r\n", []int{400}},
		{"folded header without a colon", hostileHead("GET", "X-Note: a\r\n "+marker+"\r\n") + "\r\n", []int{400}},
		{"garbage line in a pipeline",
			"GET /health HTTP/1.1\r\nHost: warehouse.test\r\n\r\n" + "garbage-" + marker + "\r\n" + hostileHead("GET", "") + "\r\n",
			[]int{200, 400}},
		{"headers too large", hostileHead("GET", "X-Big: "+strings.Repeat(marker, 1000)+"\r\n") + "\r\n", []int{431}},
		{"body too large", hostileHead("GET", "Content-Length: 5000\r\n") + "\r\n", []int{413}},
		{"read timeout", hostileHead("GET", "X-Slow: "+marker+"\r\n"), []int{408}},
		{"unknown method", hostileHead("PROPFIND", "Connection: close\r\n") + "\r\n", []int{501}},
		{"made-up method", hostileHead("FOO", "Connection: close\r\n") + "\r\n", []int{501}},
		{"lowercase method", hostileHead("get", "Connection: close\r\n") + "\r\n", []int{501}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := mustRawExchange(t, addr, tc.req, len(tc.statuses), 2*time.Second)
			last := len(tc.statuses) - 1
			for i, st := range tc.statuses[:last] {
				if len(a.responses) > i && a.responses[i].status != st {
					t.Errorf("response %d: %d, want %d", i+1, a.responses[i].status, st)
				}
			}
			wantRawProblem(t, a, last, tc.statuses[last])
			wantNoMarker(t, a.raw)
		})
	}
}

// TestInvalidRequestsNeverEcho: well-formed requests the API refuses name the field and
// the rule in their detail, never the value sent.
func TestInvalidRequestsNeverEcho(t *testing.T) {
	f := newFixture(t)
	s := newAPI(t, f, httpadapter.Options{})
	tests := []struct {
		name   string
		target string
		status int
		echo   string // what must not come back; marker when empty
	}{
		{"bad movement id in path", "/api/movements/" + marker, 400, ""},
		{"bad warehouse id in path", "/api/warehouses/" + marker + "/products/" + f.product, 400, ""},
		{"bad product id in path", "/api/warehouses/" + f.whA + "/products/" + marker, 400, ""},
		{"bad warehouse id in list path", "/api/warehouses/" + marker + "/products", 400, ""},
		{"unknown query name", "/api/movements?" + marker + "=1", 400, ""},
		{"unknown query name on a point read", "/api/movements/" + f.completed + "?" + marker + "=1", 400, ""},
		{"bad limit", "/api/movements?limit=" + marker, 400, ""},
		{"bad stock limit", "/api/warehouses/" + f.whA + "/products?limit=" + marker, 400, ""},
		{"bad since", "/api/movements?since=" + marker, 400, ""},
		{"bad until", "/api/movements?until=" + marker, 400, ""},
		{"since out of range", "/api/movements?since=0000-01-01T00:00:00Z", 400, "0000-01-01"},
		{"bad status", "/api/movements?status=" + marker, 400, ""},
		{"bad warehouse_id", "/api/movements?warehouse_id=" + marker, 400, ""},
		{"bad product_id", "/api/movements?product_id=" + marker, 400, ""},
		{"bad cursor", "/api/movements?cursor=" + marker, 400, ""},
		{"unknown path", "/" + marker, 404, ""},
		{"unknown api path", "/api/" + marker, 404, ""},
		{"unknown docs file", "/docs/" + marker + ".js", 404, ""},
		{"method not allowed", "/api/movements/" + marker, 405, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			method := http.MethodGet
			if tc.status == 405 {
				method = http.MethodPost
			}
			r := mustDo(t, s, method, tc.target, "Authorization", "Bearer "+marker, "Cookie", "session="+marker)
			d := wantProblem(t, r, tc.status)
			echo := cmp.Or(tc.echo, marker)
			if strings.Contains(strings.ToLower(d), strings.ToLower(echo)) {
				t.Errorf("detail %q echoes the request", d)
			}
			wantNoMarker(t, append(r.body, []byte(strings.Join(headerValues(r.header), "\n"))...))
		})
	}
}

func headerValues(h http.Header) []string {
	var out []string
	for k, vs := range h {
		out = append(out, k+": "+strings.Join(vs, ", "))
	}
	return out
}

// TestAmbiguousFramingIsRefused: a request whose length or protocol is ambiguous (RFC
// 9112 §6.3, §3.2) is answered 400 and the connection closed, so that whatever was
// pipelined behind it (a smuggled request) is never served.
func TestAmbiguousFramingIsRefused(t *testing.T) {
	f := newFixture(t)
	s := newAPI(t, f, httpadapter.Options{})
	addr := mustListen(t, s)
	smuggled := "GET /api/movements/" + f.completed + " HTTP/1.1\r\nHost: x\r\n\r\n"
	body := func(n int) string { return strings.Repeat("x", n) }
	tests := []struct{ name, req string }{
		{"two content lengths",
			"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: " + strconv.Itoa(len(smuggled)) + "\r\nContent-Length: 0\r\n\r\n" + smuggled},
		{"two equal content lengths",
			"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n" + body(3) + smuggled},
		{"transfer-encoding with content-length",
			"GET /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n" + smuggled},
		{"content-length with transfer-encoding",
			"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled},
		{"transfer-encoding not chunked",
			"GET /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n" + smuggled},
		{"transfer-encoding in HTTP/1.0",
			"GET /health HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled},
		{"HTTP/1.1 without Host", "GET /health HTTP/1.1\r\n\r\n" + smuggled},
		{"two Host headers", "GET /health HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n" + smuggled},
		{"unknown protocol", "GET /health FOO/1.1\r\nHost: x\r\n\r\n" + smuggled},
		{"HTTP/2 on an HTTP/1 connection", "GET /health HTTP/2.0\r\nHost: x\r\n\r\n" + smuggled},
		{"two spaces in the request line", "GET  /health HTTP/1.1\r\nHost: x\r\n\r\n" + smuggled},
		{"a space after the protocol", "GET /health HTTP/1.1 \r\nHost: x\r\n\r\n" + smuggled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := mustRawExchange(t, addr, tc.req, 2, 2*time.Second)
			if len(a.responses) != 1 {
				t.Errorf("%d responses, want exactly one; raw:\n%s", len(a.responses), a.raw)
			}
			wantRawProblem(t, a, 0, 400)
			if !a.closed {
				t.Error("the connection stays open after an ambiguous request")
			}
		})
	}
	t.Run("well-framed requests still work", func(t *testing.T) {
		a := mustRawExchange(t, addr,
			"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"+
				"GET /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"+
				"GET /health HTTP/1.0\r\n\r\n", 3, 2*time.Second)
		if len(a.responses) != 3 {
			t.Fatalf("%d responses to three pipelined requests; raw:\n%s", len(a.responses), a.raw)
		}
		for i, res := range a.responses {
			if res.status != 200 {
				t.Errorf("response %d: %d", i+1, res.status)
			}
		}
	})
}
