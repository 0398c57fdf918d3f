package http

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"warehouse/ports"
)

// Defaults used for zero Options fields.
const (
	DefaultReadTimeout    = 5 * time.Second
	DefaultWriteTimeout   = 10 * time.Second
	DefaultIdleTimeout    = 60 * time.Second
	DefaultRequestTimeout = 5 * time.Second
	// DefaultBodyLimit is small: the API only answers GET, so a request has no business
	// carrying a body.
	DefaultBodyLimit = 4 << 10
	// DefaultReadBufferSize bounds the request line plus headers; a larger request gets 431.
	DefaultReadBufferSize = 8 << 10
)

// Options configures a Server. Zero fields take the defaults above.
type Options struct {
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	IdleTimeout  time.Duration
	// RequestTimeout is the deadline of each request's context.
	RequestTimeout time.Duration
	// APIToken, when not empty, is the bearer token every /api request must present.
	// Health, readiness, metrics, the OpenAPI document and the docs stay open.
	APIToken       string
	BodyLimit      int
	ReadBufferSize int
	// Ingest turns on POST /api/events when its Token is set (the body limit then
	// becomes MaxIngestBatchBytes).
	Ingest IngestOptions
	// Stream turns on GET /api/stream.
	Stream StreamOptions
}

// Server is the HTTP server of one process: the read API with its documentation
// (NewServer) or only the operational endpoints (NewOpsServer).
type Server struct {
	app      *fiber.App
	log      *slog.Logger
	ready    Readiness
	failing  []atomic.Bool // per check, so that only changes of state are logged
	draining atomic.Bool
	// unavailableLog and overloadLog rate-limit the warnings of 503 answers.
	unavailableLog logLimiter
	overloadLog    logLimiter
	// templates holds the path of every route with a handler (middleware routes excluded):
	// a request whose final route is not one of them matched nothing.
	templates map[string]bool
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	shed      *prometheus.CounterVec
}

// NewServer returns a server with the read API over q (/api/...), its OpenAPI document
// (/openapi.json) and Swagger UI (/docs), plus every route of NewOpsServer. Its HTTP
// metrics are registered on reg, which /metrics also serves (a nil reg gets a fresh
// registry; collectors already on reg are reused). A nil log discards.
func NewServer(opts Options, q ports.Queries, ready Readiness, reg *prometheus.Registry, log *slog.Logger) *Server {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	return newServer(opts, ready, reg, log, func(app *fiber.App) {
		api{q: q, auth: bearerAuth(opts.APIToken), ingest: newIngest(opts.Ingest),
			stream: newChangeStream(opts.Stream, opts.withDefaults().WriteTimeout, reg)}.routes(app)
		docsRoutes(app)
	})
}

// NewOpsServer returns a server with only the operational endpoints: /health, /healthz,
// /livez, /readyz and /metrics. The consume-only process serves it on its own port.
func NewOpsServer(opts Options, ready Readiness, reg *prometheus.Registry, log *slog.Logger) *Server {
	return newServer(opts, ready, reg, log, func(*fiber.App) {})
}

func newServer(opts Options, ready Readiness, reg *prometheus.Registry, log *slog.Logger, more func(*fiber.App)) *Server {
	opts = opts.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	s := &Server{
		log:     log.With("component", "http"),
		ready:   ready,
		failing: make([]atomic.Bool, len(ready.Checks)),
		requests: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_requests_total",
			Help: "HTTP requests answered, by method, route template and status.",
		}, []string{"method", "route", "status"})),
		duration: register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "http_request_duration_seconds",
			Help:    "Time to answer HTTP requests, by method and route template.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"method", "route"})),
		shed: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_requests_shed_total",
			Help: "API requests answered 503 overloaded (ports.ErrOverloaded) instead of being served, by route template.",
		}, []string{"route"})),
	}
	s.app = fiber.New(fiber.Config{
		ErrorHandler:          s.handleError,
		DisableStartupMessage: true,
		ReadTimeout:           opts.ReadTimeout,
		WriteTimeout:          opts.WriteTimeout,
		IdleTimeout:           opts.IdleTimeout,
		BodyLimit:             opts.BodyLimit,
		ReadBufferSize:        opts.ReadBufferSize,
		WriteBufferSize:       16 << 10,
		// Route literals are lowercase; path parameters keep their case either way.
		CaseSensitive: true,
	})
	// Order matters: observe sees the final status of everything below it, including
	// the 500 that recoverPanic makes of a panic.
	s.app.Use(s.observe, recoverPanic, deadline(opts.RequestTimeout))

	health := func(c *fiber.Ctx) error { return c.JSON(fiber.Map{"status": "ok"}) }
	s.app.Get("/health", health)
	s.app.Get("/healthz", health)
	s.app.Get("/livez", health)
	s.app.Get("/readyz", s.readyz)
	s.app.Get("/metrics", adaptor.HTTPHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
	})))
	more(s.app)
	s.guard()

	s.templates = make(map[string]bool)
	for _, r := range s.app.GetRoutes(true) { // true leaves out the middleware routes
		s.templates[r.Path] = true
	}
	return s
}

func (o Options) withDefaults() Options {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.ReadTimeout, DefaultReadTimeout)
	def(&o.WriteTimeout, DefaultWriteTimeout)
	def(&o.IdleTimeout, DefaultIdleTimeout)
	def(&o.RequestTimeout, DefaultRequestTimeout)
	if o.BodyLimit <= 0 {
		o.BodyLimit = DefaultBodyLimit
		if o.Ingest.Token != "" || o.Ingest.Open {
			o.BodyLimit = MaxIngestBatchBytes
		}
	}
	if o.ReadBufferSize <= 0 {
		o.ReadBufferSize = DefaultReadBufferSize
	}
	return o
}

// App returns the underlying Fiber app, for in-process tests with app.Test.
func (s *Server) App() *fiber.App { return s.app }

// Listen serves on addr until Shutdown.
func (s *Server) Listen(addr string) error { return s.app.Listen(addr) }

// Serve serves on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error { return s.app.Listener(ln) }

// SetDraining marks the process as shutting down (or not): /readyz answers 503 while
// draining, so load balancers stop sending work before the listener closes.
func (s *Server) SetDraining(draining bool) { s.draining.Store(draining) }

// Shutdown turns readiness off, stops accepting connections and waits for the requests
// in flight to finish, or for ctx to end.
func (s *Server) Shutdown(ctx context.Context) error {
	s.SetDraining(true)
	return s.app.ShutdownWithContext(ctx)
}

// register registers c on reg, or returns the collector already registered there under
// the same description, so that two servers may share one registry.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}
