package http

import (
	"bytes"
	"errors"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"
)

// Requests that never reach a Fiber handler are answered here, at the fasthttp level,
// with the same problem documents:
//   - requests the parser refuses (malformed header lines, a bad Content-Length, headers
//     or a body over the limits, a read timeout): fasthttp's error text quotes the raw
//     request, token and cookies included, so the answer is built from the class of the
//     error alone, and the error itself is never logged;
//   - methods the server does not know (501, RFC 9110 §9.1), which Fiber would answer
//     400 in plain text;
//   - requests whose framing is ambiguous (RFC 9112 §6.3, §3.2), which fasthttp would
//     serve: 400 and the connection closed, so that nothing pipelined behind them (a
//     request smuggled past a proxy that framed the message differently) is served.

// guard installs the parse error handler and the request check on the fasthttp server
// under s.app. Fiber builds that server once, in fiber.New, and never replaces its
// handlers, so they stay in place for Listen, Listener and app.Test alike.
func (s *Server) guard() {
	srv := s.app.Server()
	// Defence in depth: fasthttp's own error texts then leave the request out.
	srv.SecureErrorLogMessage = true
	srv.ErrorHandler = s.refuseUnparsed
	next := srv.Handler
	srv.Handler = func(ctx *fasthttp.RequestCtx) {
		p, closeConn, refused := checkRequest(ctx)
		if !refused {
			next(ctx)
			return
		}
		start := time.Now()
		if closeConn {
			ctx.SetConnectionClose()
		}
		writeProblem(ctx, p)
		s.count(methodLabel(string(ctx.Method())), routeUnmatched, p.Status, start)
		s.log.DebugContext(ctx, "request refused", "status", p.Status, "detail", p.Detail)
	}
}

// refuseUnparsed is the fasthttp ErrorHandler: it answers a request the parser refused.
// fasthttp closes the connection afterwards.
func (s *Server) refuseUnparsed(ctx *fasthttp.RequestCtx, err error) {
	start := time.Now()
	p := unparsedProblem(err)
	writeProblem(ctx, p)
	s.count("other", routeUnmatched, p.Status, start)
	// err quotes the request: log the class only.
	s.log.DebugContext(ctx, "request refused", "status", p.Status, "detail", p.Detail)
}

// unparsedProblem classifies a parse error as fiber's serverErrorHandler does, with a
// fixed detail per class.
func unparsedProblem(err error) problem {
	var (
		small *fasthttp.ErrSmallBuffer
		ne    net.Error
	)
	switch {
	case errors.As(err, &small):
		return newProblem(fiber.StatusRequestHeaderFieldsTooLarge, fixedDetail(fiber.StatusRequestHeaderFieldsTooLarge))
	case errors.As(err, &ne) && ne.Timeout():
		return newProblem(fiber.StatusRequestTimeout, fixedDetail(fiber.StatusRequestTimeout))
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		return newProblem(fiber.StatusRequestEntityTooLarge, fixedDetail(fiber.StatusRequestEntityTooLarge))
	}
	return newProblem(fiber.StatusBadRequest, "the request is not well-formed HTTP/1.1")
}

// checkRequest refuses a request with an unknown method, or with ambiguous framing
// (closeConn is then true).
func checkRequest(ctx *fasthttp.RequestCtx) (p problem, closeConn, refused bool) {
	h := &ctx.Request.Header
	if detail := framingFault(h); detail != "" {
		return newProblem(fiber.StatusBadRequest, detail), true, true
	}
	if !slices.Contains(fiber.DefaultMethods, string(h.Method())) {
		return newProblem(fiber.StatusNotImplemented, fixedDetail(fiber.StatusNotImplemented)), false, true
	}
	return problem{}, false, false
}

var (
	http10 = []byte("HTTP/1.0")
	http11 = []byte("HTTP/1.1")
)

// framingFault returns why the request line, the message framing or the protocol of h is
// ambiguous, or "". fasthttp keeps the last of several Content-Length lines, lets
// Transfer-Encoding win over Content-Length and keeps the connection, unfolds obsolete
// line folding, and takes any protocol name; only the raw header block shows what was
// actually sent.
func framingFault(h *fasthttp.RequestHeader) string {
	proto := h.Protocol()
	if !bytes.Equal(proto, http11) && !bytes.Equal(proto, http10) {
		return "the protocol must be HTTP/1.1 or HTTP/1.0"
	}
	// fasthttp splits the request line at its first and last space: a space too many
	// lands in the target (and a trailing one leaves the protocol empty, which it then
	// reports as HTTP/1.1).
	if bytes.ContainsFunc(h.RequestURI(), func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return "the request line must be a method, a target and a protocol separated by single spaces"
	}
	var hosts, lengths, encodings int
	chunked := true
	raw := h.RawHeaders()
	for len(raw) > 0 {
		var line []byte
		line, raw, _ = bytes.Cut(raw, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return "obsolete line folding is not accepted"
		}
		name, value, _ := bytes.Cut(line, []byte(":"))
		switch {
		case bytes.EqualFold(name, []byte(fasthttp.HeaderHost)):
			hosts++
		case bytes.EqualFold(name, []byte(fasthttp.HeaderContentLength)):
			lengths++
		case bytes.EqualFold(name, []byte(fasthttp.HeaderTransferEncoding)):
			encodings++
			chunked = chunked && bytes.EqualFold(bytes.TrimSpace(value), []byte("chunked"))
		}
	}
	switch {
	case hosts > 1:
		return "the request has more than one Host header"
	case hosts == 0 && bytes.Equal(proto, http11):
		return "an HTTP/1.1 request needs a Host header"
	case lengths > 1:
		return "the request has more than one Content-Length header"
	case encodings > 0 && lengths > 0:
		return "the request has both Transfer-Encoding and Content-Length"
	case encodings > 1 || (encodings == 1 && !chunked):
		return "the only transfer coding accepted is a single chunked"
	case encodings > 0 && bytes.Equal(proto, http10):
		return "an HTTP/1.0 request cannot use Transfer-Encoding"
	}
	return ""
}

// writeProblem writes p as the whole response of ctx. It is the one writer of problem
// documents, for Fiber's error handler and for the checks above alike.
func writeProblem(ctx *fasthttp.RequestCtx, p problem) {
	ctx.Response.ResetBody()
	ctx.SetStatusCode(p.Status)
	ctx.Response.Header.Set(fiber.HeaderContentType, problemContentType)
	ctx.Response.Header.Set(fiber.HeaderCacheControl, "no-store")
	ctx.SetBody(p.json())
}

// count records one answered request in the HTTP metrics.
func (s *Server) count(method, route string, status int, start time.Time) {
	s.requests.WithLabelValues(method, route, strconv.Itoa(status)).Inc()
	s.duration.WithLabelValues(method, route).Observe(time.Since(start).Seconds())
}
