package http

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/utils"

	"warehouse/domain"
	"warehouse/ports"
)

// problemContentType is the media type of RFC 9457 problem details.
const problemContentType = "application/problem+json"

// Problem types. Every problem is about:blank (its title is the status phrase) except
// overload, which a client or a proxy should tell from an outage: both are 503.
const (
	problemTypeBlank      = "about:blank"
	problemTypeOverloaded = "urn:warehouse:problem:overloaded"
)

// overloadRetryAfter is the Retry-After of an overload answer, in seconds: list queries
// wait at most a fraction of a second for a slot, so a second later the queue has turned
// over many times.
const overloadRetryAfter = "1"

// problem is an RFC 9457 problem document. Detail says what went wrong for this request
// in words of the API (a field and the rule it broke), never in the request's own bytes:
// a detail may not quote a path, a query or a header value.
type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
}

// json encodes p; a problem of four plain fields always encodes.
func (p problem) json() []byte {
	body, _ := json.Marshal(p)
	return body
}

// problemFor is the one place where errors become HTTP statuses. A detail comes from a
// fixed text, from the field and rule of a domain.FieldError, or from a requestError
// (whose texts are constants of this package); never from an error's message, which may
// quote input. A 5xx detail never shows internals.
func problemFor(err error) problem {
	var (
		fe    *fiber.Error
		re    *requestError
		pe    problemError
		field *domain.FieldError
	)
	switch {
	case errors.As(err, &pe):
		return newProblem(pe.status, pe.detail)
	case errors.As(err, &fe) && fe.Code < fiber.StatusInternalServerError:
		return newProblem(fe.Code, fixedDetail(fe.Code))
	case errors.As(err, &fe):
		return newProblem(fe.Code, "the server could not answer; the error has been logged")
	case errors.As(err, &re):
		return newProblem(fiber.StatusBadRequest, re.detail)
	case errors.As(err, &field):
		return newProblem(fiber.StatusBadRequest, field.Field+" "+field.Rule)
	case errors.Is(err, domain.ErrInvalid):
		return newProblem(fiber.StatusBadRequest, fixedDetail(fiber.StatusBadRequest))
	case errors.Is(err, domain.ErrNotFound):
		return newProblem(fiber.StatusNotFound, "nothing is stored under these ids")
	case errors.Is(err, ports.ErrOverloaded): // before the context errors it may wrap
		return problem{
			Type: problemTypeOverloaded, Title: "Overloaded", Status: fiber.StatusServiceUnavailable,
			Detail: "the server is busy with other reads and did not start this one; retry after the Retry-After delay",
		}
	case errors.Is(err, ports.ErrUnavailable),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return newProblem(fiber.StatusServiceUnavailable, "a dependency did not answer in time; try again later")
	}
	return newProblem(fiber.StatusInternalServerError, "the server could not answer; the error has been logged")
}

func newProblem(status int, detail string) problem {
	return problem{Type: problemTypeBlank, Title: utils.StatusMessage(status), Status: status, Detail: detail}
}

// fixedDetail is the detail of a status that Fiber or fasthttp decided (no route, a
// method not allowed, a parse error…): their messages may quote the request, ours never do.
func fixedDetail(status int) string {
	switch status {
	case fiber.StatusBadRequest:
		return "the request is malformed"
	case fiber.StatusUnauthorized:
		return "a valid bearer token is required"
	case fiber.StatusNotFound:
		return "nothing exists at this path"
	case fiber.StatusMethodNotAllowed:
		return "this path does not answer this method (the API reads with GET and HEAD; events are posted to /api/events)"
	case fiber.StatusRequestTimeout:
		return "the request was not received within the read timeout"
	case fiber.StatusRequestEntityTooLarge:
		return "the request body is larger than the server accepts"
	case fiber.StatusRequestHeaderFieldsTooLarge:
		return "the request line and headers are larger than the server accepts"
	case fiber.StatusNotImplemented:
		return "the request method is not one this server implements"
	}
	return utils.StatusMessage(status)
}

// problemError is an answer of this adapter with its own status and a detail written
// from constants, or from a decoder's message with the request's words taken out.
type problemError struct {
	status int
	detail string
}

func (e problemError) Error() string { return fmt.Sprintf("%d: %s", e.status, e.detail) }

// requestError is a 400 of this adapter (a query parameter, a limit, a cursor) whose
// detail is written from constants only.
type requestError struct{ detail string }

func (e *requestError) Error() string { return domain.ErrInvalid.Error() + ": " + e.detail }

// Unwrap makes a requestError match domain.ErrInvalid.
func (e *requestError) Unwrap() error { return domain.ErrInvalid }

// handleError is the Fiber ErrorHandler: it answers every failed request through
// writeProblem, and is the only place where a failed request is logged (5xx at Error;
// outages and overload at Warn, at most once a second each; a 4xx at Debug).
func (s *Server) handleError(c *fiber.Ctx, err error) error {
	p := problemFor(err)
	switch {
	case p.Status == fiber.StatusMethodNotAllowed:
		c.Set(fiber.HeaderAllow, "GET, HEAD")
	case p.Type == problemTypeOverloaded:
		c.Set(fiber.HeaderRetryAfter, overloadRetryAfter)
		s.shed.WithLabelValues(s.routeOf(c)).Inc()
	}
	attrs := []any{"method", c.Method(), "path", c.Path(), "status", p.Status, "err", err}
	var pe *panicError
	if errors.As(err, &pe) {
		attrs = append(attrs, "stack", string(pe.stack))
	}
	switch {
	case p.Type == problemTypeOverloaded:
		// Overload is the service protecting the database, not a fault.
		if ok, suppressed := s.overloadLog.allow(time.Now()); ok {
			s.log.WarnContext(c.UserContext(), "request shed", append(attrs, "suppressed", suppressed)...)
		}
	case p.Status == fiber.StatusServiceUnavailable:
		// An outage fails every request alike: one line a second tells the story.
		if ok, suppressed := s.unavailableLog.allow(time.Now()); ok {
			s.log.WarnContext(c.UserContext(), "request failed", append(attrs, "suppressed", suppressed)...)
		}
	case p.Status >= fiber.StatusInternalServerError:
		s.log.ErrorContext(c.UserContext(), "request failed", attrs...)
	default:
		s.log.DebugContext(c.UserContext(), "request refused", attrs...)
	}
	writeProblem(c.Context(), p)
	return nil
}

// panicError carries a recovered panic to handleError, which logs the stack; the client
// only sees a generic 500.
type panicError struct {
	value any
	stack []byte
}

func (e *panicError) Error() string { return fmt.Sprintf("panic: %v", e.value) }

// recoverPanic turns a panic below it into a panicError.
func recoverPanic(c *fiber.Ctx) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &panicError{value: r, stack: debug.Stack()}
		}
	}()
	return c.Next()
}

// deadline gives each request's context a deadline; handlers pass c.UserContext() on.
func deadline(d time.Duration) fiber.Handler {
	return func(c *fiber.Ctx) error {
		ctx, cancel := context.WithTimeout(c.UserContext(), d)
		defer cancel()
		c.SetUserContext(ctx)
		return c.Next()
	}
}

// bearerAuth requires "Authorization: Bearer <token>" when token is not empty.
func bearerAuth(token string) fiber.Handler {
	if token == "" {
		return func(c *fiber.Ctx) error { return c.Next() }
	}
	want := []byte(token)
	return func(c *fiber.Ctx) error {
		const scheme = "bearer "
		h := c.Get(fiber.HeaderAuthorization)
		if len(h) > len(scheme) && strings.EqualFold(h[:len(scheme)], scheme) &&
			subtle.ConstantTimeCompare([]byte(strings.TrimSpace(h[len(scheme):])), want) == 1 {
			return c.Next()
		}
		c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="warehouse"`)
		return fiber.ErrUnauthorized
	}
}

// observe counts and times every request by route template, after the error handler
// has written its answer, so that the status label is the one the client saw.
func (s *Server) observe(c *fiber.Ctx) error {
	start := time.Now()
	if err := c.Next(); err != nil {
		_ = s.handleError(c, err) // it writes the answer itself and never fails
	}
	s.count(methodLabel(c.Method()), s.routeOf(c), c.Response().StatusCode(), start)
	return nil
}

// routeUnmatched labels the metrics of requests that matched no route.
const routeUnmatched = "unmatched"

// routeOf returns the route template that c matched, or routeUnmatched: a metric label,
// never the raw path.
func (s *Server) routeOf(c *fiber.Ctx) string {
	if r := c.Route(); r != nil && s.templates[r.Path] {
		return r.Path
	}
	return routeUnmatched
}

// methodLabel returns a constant for the method: Fiber's string aliases a request buffer
// that is reused, and a metric keeps its label values.
func methodLabel(m string) string {
	switch m {
	case fiber.MethodGet:
		return fiber.MethodGet
	case fiber.MethodHead:
		return fiber.MethodHead
	case fiber.MethodPost:
		return fiber.MethodPost
	case fiber.MethodPut:
		return fiber.MethodPut
	case fiber.MethodPatch:
		return fiber.MethodPatch
	case fiber.MethodDelete:
		return fiber.MethodDelete
	case fiber.MethodOptions:
		return fiber.MethodOptions
	case fiber.MethodConnect:
		return fiber.MethodConnect
	case fiber.MethodTrace:
		return fiber.MethodTrace
	}
	return "other"
}

// logLimiter lets one log line through per second and counts the ones it held back.
type logLimiter struct {
	last       atomic.Int64 // unix second of the last line let through
	suppressed atomic.Int64
}

// allow reports whether a line may be logged now, and how many were held back since the
// last one that was.
func (l *logLimiter) allow(now time.Time) (bool, int64) {
	sec := now.Unix()
	last := l.last.Load()
	if sec == last || !l.last.CompareAndSwap(last, sec) {
		l.suppressed.Add(1)
		return false, 0
	}
	return true, l.suppressed.Swap(0)
}
