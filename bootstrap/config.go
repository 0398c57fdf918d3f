package bootstrap

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/joho/godotenv"
	"github.com/kelseyhightower/envconfig"

	amqpadapter "warehouse/adapters/amqp"
)

// Config is the whole service configuration, read from the environment (and from .env
// when present; the real environment wins). Every field is documented in .env.example.
type Config struct {
	DatabaseURL        string        `envconfig:"DATABASE_URL" default:"postgres://postgres@127.0.0.1:5432/warehouse?sslmode=disable"`
	DBMaxConns         int           `envconfig:"DB_MAX_CONNS" default:"16"`
	DBStatementTimeout time.Duration `envconfig:"DB_STATEMENT_TIMEOUT" default:"30s"`
	DBLockTimeout      time.Duration `envconfig:"DB_LOCK_TIMEOUT" default:"10s"`
	// DBListWait bounds how long a list query waits for one of its slots in the pool
	// before the request is shed (503 overloaded).
	DBListWait time.Duration `envconfig:"DB_LIST_WAIT" default:"200ms"`

	AMQPURL string `envconfig:"AMQP_URL" default:"amqp://guest:guest@127.0.0.1:5672/"`
	// AMQPNodeOrder is where the first connection to the nodes of AMQP_URL starts:
	// "random" or "listed" (see amqpadapter.PreferListedOrder).
	AMQPNodeOrder string `envconfig:"AMQP_NODE_ORDER" default:"random"`

	// IngestToken turns on POST /api/events (CloudEvents over HTTP) in serve and run: the
	// bearer token publishers present. Empty: ingest is off.
	IngestToken string `envconfig:"INGEST_TOKEN"`
	// IngestRate bounds the ingest requests per second of one client address (0: none).
	IngestRate   float64 `envconfig:"INGEST_RATE" default:"0"`
	AMQPExchange string  `envconfig:"AMQP_EXCHANGE" default:"warehouse.movements"`
	AMQPQueue    string  `envconfig:"AMQP_QUEUE" default:"warehouse.movements"`
	// AMQPDeadLetterExchange and AMQPDeadLetterQueue default to the queue name + ".dlx" / ".dead".
	AMQPDeadLetterExchange string `envconfig:"AMQP_DEAD_LETTER_EXCHANGE"`
	AMQPDeadLetterQueue    string `envconfig:"AMQP_DEAD_LETTER_QUEUE"`
	// AMQPRetryExchange names the retry exchange and queue; defaults to the queue name + ".retry".
	AMQPRetryExchange string `envconfig:"AMQP_RETRY_EXCHANGE"`
	AMQPPrefetch      int    `envconfig:"AMQP_PREFETCH" default:"4000"`
	AMQPDeliveryLimit int    `envconfig:"AMQP_DELIVERY_LIMIT" default:"20"`

	// ConsumerWorkers is how many consumers (each with its own channel and database
	// transaction) one process runs on the queue: while one batch commits, the next is
	// judged, so the database's cores and the network round trips overlap.
	ConsumerWorkers int `envconfig:"CONSUMER_WORKERS" default:"1"`

	// ConsumerLanes is how many transactions each consumer records a batch in at once, its
	// events split by product: each product's events stay in order in one transaction, and
	// the database works on the lanes in parallel.
	ConsumerLanes int `envconfig:"CONSUMER_LANES" default:"2"`

	// ConsumerHoldLimit is how long a consumer may hold a batch it cannot record or
	// settle (the store or the broker refuses) before /readyz says the process is not ready.
	ConsumerHoldLimit time.Duration `envconfig:"CONSUMER_HOLD_LIMIT" default:"30s"`

	BatchSize  int           `envconfig:"BATCH_SIZE" default:"2000"`
	BatchWait  time.Duration `envconfig:"BATCH_WAIT" default:"20ms"`
	RetryDelay time.Duration `envconfig:"RETRY_DELAY" default:"5s"`
	RetryLimit int           `envconfig:"RETRY_LIMIT" default:"10"`

	HTTPAddr         string        `envconfig:"HTTP_ADDR" default:":8000"`
	ConsumerHTTPAddr string        `envconfig:"CONSUMER_HTTP_ADDR" default:":8001"`
	HTTPReadTimeout  time.Duration `envconfig:"HTTP_READ_TIMEOUT" default:"5s"`
	HTTPWriteTimeout time.Duration `envconfig:"HTTP_WRITE_TIMEOUT" default:"10s"`
	HTTPIdleTimeout  time.Duration `envconfig:"HTTP_IDLE_TIMEOUT" default:"60s"`
	RequestTimeout   time.Duration `envconfig:"REQUEST_TIMEOUT" default:"5s"`
	APIToken         string        `envconfig:"API_TOKEN"`
	PprofAddr        string        `envconfig:"PPROF_ADDR"`

	// StreamMaxClients caps the change stream's connections per serving process;
	// StreamBuffer is how many changes one client may fall behind before it is dropped;
	// StreamRetention is how long the change log keeps changes for resuming clients.
	StreamMaxClients int           `envconfig:"STREAM_MAX_CLIENTS" default:"1000"`
	StreamBuffer     int           `envconfig:"STREAM_BUFFER" default:"4096"`
	StreamRetention  time.Duration `envconfig:"STREAM_RETENTION" default:"24h"`

	CacheSize int           `envconfig:"CACHE_SIZE" default:"100000"`
	CacheTTL  time.Duration `envconfig:"CACHE_TTL" default:"30s"`

	ShutdownTimeout time.Duration `envconfig:"SHUTDOWN_TIMEOUT" default:"15s"`
	LogLevel        slog.Level    `envconfig:"LOG_LEVEL" default:"info"`
	LogFormat       string        `envconfig:"LOG_FORMAT" default:"text"`
}

// LoadConfig reads .env (when present, without overriding the real environment), then
// the environment, and checks the rules that span fields.
func LoadConfig() (Config, error) {
	if err := godotenv.Load(); err != nil && !errors.Is(err, os.ErrNotExist) {
		return Config{}, fmt.Errorf("read .env: %w", err)
	}
	var c Config
	if err := envconfig.Process("", &c); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	if c.AMQPDeadLetterExchange == "" {
		c.AMQPDeadLetterExchange = c.AMQPQueue + ".dlx"
	}
	if c.AMQPDeadLetterQueue == "" {
		c.AMQPDeadLetterQueue = c.AMQPQueue + ".dead"
	}
	if c.AMQPRetryExchange == "" {
		c.AMQPRetryExchange = c.AMQPQueue + ".retry"
	}
	if err := c.validate(); err != nil {
		return c, err
	}
	// The AMQP adapter dials for every part of the process; its node order is the
	// process's.
	amqpadapter.PreferListedOrder(c.AMQPNodeOrder == "listed")
	return c, nil
}

func (c Config) validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(c.LogFormat == "json" || c.LogFormat == "text", "LOG_FORMAT must be json or text, got %q", c.LogFormat)
	check(c.BatchSize >= 1 && c.BatchSize <= 10000, "BATCH_SIZE must be 1..10000, got %d", c.BatchSize)
	check(c.ConsumerWorkers >= 1 && c.ConsumerWorkers <= 32, "CONSUMER_WORKERS must be 1..32, got %d", c.ConsumerWorkers)
	check(c.ConsumerLanes >= 1 && c.ConsumerLanes <= 16, "CONSUMER_LANES must be 1..16, got %d", c.ConsumerLanes)
	check(c.AMQPPrefetch >= c.BatchSize, "AMQP_PREFETCH (%d) must be at least BATCH_SIZE (%d)", c.AMQPPrefetch, c.BatchSize)
	check(c.AMQPPrefetch <= 65535, "AMQP_PREFETCH must be at most 65535, got %d", c.AMQPPrefetch)
	check(c.BatchWait > 0, "BATCH_WAIT must be positive")
	check(c.RetryDelay > 0, "RETRY_DELAY must be positive")
	check(c.RetryLimit >= 0, "RETRY_LIMIT must not be negative")
	check(c.AMQPDeliveryLimit >= 2, "AMQP_DELIVERY_LIMIT must be at least 2")
	check(c.CacheSize >= 0, "CACHE_SIZE must not be negative (0 disables the cache)")
	check(c.CacheTTL >= 0, "CACHE_TTL must not be negative")
	check(c.ShutdownTimeout > 0, "SHUTDOWN_TIMEOUT must be positive")
	check(c.DBMaxConns >= 1, "DB_MAX_CONNS must be positive")
	check(c.DBListWait > 0, "DB_LIST_WAIT must be positive")
	check(c.ConsumerHoldLimit > 0, "CONSUMER_HOLD_LIMIT must be positive")
	check(c.AMQPNodeOrder == "random" || c.AMQPNodeOrder == "listed", "AMQP_NODE_ORDER must be random or listed")
	check(c.IngestRate >= 0, "INGEST_RATE must not be negative (0: no limit)")
	check(c.StreamMaxClients >= 1, "STREAM_MAX_CLIENTS must be positive")
	check(c.StreamBuffer >= c.BatchSize, "STREAM_BUFFER (%d) must be at least BATCH_SIZE (%d): one batch's changes reach a client at once", c.StreamBuffer, c.BatchSize)
	check(c.StreamBuffer <= 1<<20, "STREAM_BUFFER must be at most 1048576")
	check(c.StreamRetention >= time.Minute, "STREAM_RETENTION must be at least 1m")
	if _, err := url.Parse(c.DatabaseURL); err != nil {
		errs = append(errs, errors.New("DATABASE_URL is not a URL")) // the URL may hold a password: never echo it
	}
	if _, err := amqpadapter.ParseNodes(c.AMQPURL); err != nil {
		errs = append(errs, fmt.Errorf("AMQP_URL: %w", err)) // ParseNodes never quotes the URL
	}
	return errors.Join(errs...)
}

// Redacted returns the configuration as log attributes with passwords and tokens hidden.
func (c Config) Redacted() []any {
	return []any{
		"database_url", redactURL(c.DatabaseURL), "amqp_url", redactURL(c.AMQPURL),
		"amqp_queue", c.AMQPQueue, "amqp_prefetch", c.AMQPPrefetch,
		"consumer_workers", c.ConsumerWorkers, "consumer_lanes", c.ConsumerLanes, "batch_size", c.BatchSize, "batch_wait", c.BatchWait,
		"retry_delay", c.RetryDelay, "retry_limit", c.RetryLimit,
		"http_addr", c.HTTPAddr, "consumer_http_addr", c.ConsumerHTTPAddr,
		"cache_size", c.CacheSize, "cache_ttl", c.CacheTTL,
		"api_token_set", c.APIToken != "", "ingest_token_set", c.IngestToken != "", "ingest_rate", c.IngestRate,
		"stream_max_clients", c.StreamMaxClients, "stream_buffer", c.StreamBuffer, "stream_retention", c.StreamRetention,
	}
}

// redactURL hides the password of a URL, or of each URL of a comma-separated list (a
// cluster's nodes); an unparsable one is hidden whole.
func redactURL(raw string) string {
	parts := strings.Split(raw, ",")
	for i, part := range parts {
		u, err := url.Parse(part)
		if err != nil {
			parts[i] = "<unparsable>"
			continue
		}
		parts[i] = u.Redacted()
	}
	return strings.Join(parts, ",")
}
