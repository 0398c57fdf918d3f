package http

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"runtime/debug"
	"strconv"
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

// problem is an RFC 9457 problem document. Type is always about:blank, so Title is the
// HTTP status phrase and Detail says what went wrong for this request.
type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
}

// problemFor is the one place where errors become HTTP statuses. Only 4xx details come
// from the error; a 5xx detail never shows internals.
func problemFor(err error) problem {
	var fe *fiber.Error
	switch {
	case errors.As(err, &fe) && fe.Code < fiber.StatusInternalServerError:
		return newProblem(fe.Code, fe.Message)
	case errors.As(err, &fe):
		return newProblem(fe.Code, "the server could not answer; the error has been logged")
	case errors.Is(err, domain.ErrInvalid):
		return newProblem(fiber.StatusBadRequest, err.Error())
	case errors.Is(err, domain.ErrNotFound):
		return newProblem(fiber.StatusNotFound, "")
	case errors.Is(err, ports.ErrUnavailable),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return newProblem(fiber.StatusServiceUnavailable, "a dependency did not answer in time; try again later")
	}
	return newProblem(fiber.StatusInternalServerError, "the server could not answer; the error has been logged")
}

func newProblem(status int, detail string) problem {
	return problem{Type: "about:blank", Title: utils.StatusMessage(status), Status: status, Detail: detail}
}

// handleError is the Fiber ErrorHandler: the only writer of problem documents, and the
// only place where a failed request is logged (5xx only; a 4xx is the client's business).
func (s *Server) handleError(c *fiber.Ctx, err error) error {
	p := problemFor(err)
	switch {
	case p.Status == fiber.StatusNotFound && p.Detail == "":
		p.Detail = "nothing exists at " + c.Path()
	case p.Status == fiber.StatusMethodNotAllowed:
		c.Set(fiber.HeaderAllow, "GET, HEAD")
	}
	attrs := []any{"method", c.Method(), "path", c.Path(), "status", p.Status, "err", err}
	var pe *panicError
	if errors.As(err, &pe) {
		attrs = append(attrs, "stack", string(pe.stack))
	}
	switch {
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
	body, merr := c.App().Config().JSONEncoder(p)
	if merr != nil {
		return merr
	}
	c.Status(p.Status)
	c.Set(fiber.HeaderContentType, problemContentType)
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.Send(body)
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
		return fiber.NewError(fiber.StatusUnauthorized, "a valid bearer token is required")
	}
}

// observe counts and times every request by route template, after the error handler
// has written its answer, so that the status label is the one the client saw.
func (s *Server) observe(c *fiber.Ctx) error {
	start := time.Now()
	if err := c.Next(); err != nil {
		if herr := s.handleError(c, err); herr != nil {
			_ = c.SendStatus(fiber.StatusInternalServerError)
		}
	}
	route := "unmatched"
	if r := c.Route(); r != nil && s.templates[r.Path] {
		route = r.Path
	}
	method := methodLabel(c.Method())
	s.requests.WithLabelValues(method, route, strconv.Itoa(c.Response().StatusCode())).Inc()
	s.duration.WithLabelValues(method, route).Observe(time.Since(start).Seconds())
	return nil
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
