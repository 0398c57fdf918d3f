package http

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"warehouse/ports"
)

// Consumer states reported by Readiness.ConsumerState.
const (
	ConsumerConnected    = "connected"
	ConsumerReconnecting = "reconnecting"
	ConsumerPaused       = "paused"
)

// DefaultCheckTimeout bounds each readiness check when Readiness.CheckTimeout is zero.
const DefaultCheckTimeout = 2 * time.Second

// DefaultHoldLimit is Readiness.HoldLimit when zero.
const DefaultHoldLimit = 30 * time.Second

// Check is one named readiness probe, such as a database ping. Run returns nil when the
// dependency answers.
type Check struct {
	Name string
	Run  func(ctx context.Context) error
}

// Readiness says what /readyz checks. The process is ready when every check passes, it
// is not draining, its consumer has not held a batch for longer than HoldLimit, and (with
// RequireConsumer) its consumer is not reconnecting.
type Readiness struct {
	// Checks run concurrently on every /readyz request.
	Checks []Check
	// ConsumerState reports the consumer's state (ConsumerConnected, ConsumerReconnecting
	// or ConsumerPaused); nil when the process does not consume.
	ConsumerState func() string
	// RequireConsumer makes a reconnecting consumer not ready: set it for a process that
	// only consumes, whose only job needs the broker.
	RequireConsumer bool
	// ConsumerHeld reports since when the consumer has held a batch it cannot record or
	// settle, and why; a zero time when it holds none. nil when the process does not consume.
	ConsumerHeld func() (since time.Time, reason string)
	// ConsumerNode names the broker node the consumer connected to last, password
	// hidden; nil when the process does not consume.
	ConsumerNode func() string
	// HoldLimit is how long a batch may stay held before the process is not ready:
	// ingest has stopped, whatever the checks say (DefaultHoldLimit when zero).
	HoldLimit time.Duration
	// CheckTimeout bounds each check.
	CheckTimeout time.Duration
}

// readyBody is the /readyz answer.
type readyBody struct {
	// Status is "ready" or "not_ready".
	Status   string      `json:"status"`
	Draining bool        `json:"draining"`
	Checks   []checkBody `json:"checks"`
	Consumer *string     `json:"consumer"`
	// ConsumerNode is the broker node of the consumer's connection (see AMQP_URL).
	ConsumerNode string `json:"consumer_node,omitempty"`
	// ConsumerHeld is set while the consumer holds a batch.
	ConsumerHeld *heldBody `json:"consumer_held,omitempty"`
}

// heldBody says how long the consumer has held a batch, why, and after how long that
// makes the process not ready.
type heldBody struct {
	Seconds      int64  `json:"seconds"`
	Reason       string `json:"reason"`
	LimitSeconds int64  `json:"limit_seconds"`
}

type checkBody struct {
	Name string `json:"name"`
	// Status is "ok" or "error".
	Status string `json:"status"`
	// Error classifies a failure: "unavailable", "timeout" or "failed". The full error
	// goes to the log, not to the probe.
	Error string `json:"error,omitempty"`
}

// readyz runs the checks and answers 200 when ready, else 503, with the same body.
func (s *Server) readyz(c *fiber.Ctx) error {
	timeout := s.ready.CheckTimeout
	if timeout <= 0 {
		timeout = DefaultCheckTimeout
	}
	body := readyBody{Status: "ready", Draining: s.draining.Load(), Checks: make([]checkBody, len(s.ready.Checks))}
	errs := make([]error, len(s.ready.Checks))
	var wg sync.WaitGroup
	for i, chk := range s.ready.Checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = runCheck(c.UserContext(), chk, timeout)
		}()
	}
	wg.Wait()
	ready := !body.Draining
	for i, chk := range s.ready.Checks {
		body.Checks[i] = checkBody{Name: chk.Name, Status: "ok"}
		if err := errs[i]; err != nil {
			ready = false
			body.Checks[i].Status, body.Checks[i].Error = "error", classify(err)
			if !s.failing[i].Swap(true) {
				s.log.WarnContext(c.UserContext(), "readiness check failing", "check", chk.Name, "err", err)
			}
		} else if s.failing[i].Swap(false) {
			s.log.InfoContext(c.UserContext(), "readiness check recovered", "check", chk.Name)
		}
	}
	if s.ready.ConsumerState != nil {
		state := s.ready.ConsumerState()
		body.Consumer = &state
		if s.ready.RequireConsumer && state == ConsumerReconnecting {
			ready = false
		}
	}
	if s.ready.ConsumerNode != nil {
		body.ConsumerNode = s.ready.ConsumerNode()
	}
	if s.ready.ConsumerHeld != nil {
		if since, reason := s.ready.ConsumerHeld(); !since.IsZero() {
			limit := s.ready.HoldLimit
			if limit <= 0 {
				limit = DefaultHoldLimit
			}
			held := time.Since(since)
			body.ConsumerHeld = &heldBody{Seconds: int64(held / time.Second), Reason: reason, LimitSeconds: int64(limit / time.Second)}
			if held > limit {
				ready = false
			}
		}
	}
	status := fiber.StatusOK
	if !ready {
		body.Status, status = "not_ready", fiber.StatusServiceUnavailable
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.Status(status).JSON(body)
}

// runCheck runs one check under its own deadline, turning a panic into an error: it
// runs on its own goroutine, where nothing else would recover it.
func runCheck(ctx context.Context, chk Check, timeout time.Duration) (err error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("check panicked: %v", r)
		}
	}()
	if chk.Run == nil {
		return errors.New("check has no function")
	}
	return chk.Run(ctx)
}

func classify(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, ports.ErrUnavailable):
		return "unavailable"
	}
	return "failed"
}
