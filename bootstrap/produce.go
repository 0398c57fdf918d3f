package bootstrap

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	amqpadapter "warehouse/adapters/amqp"
	"warehouse/domain"
	"warehouse/loadgen"
)

// Limits and pacing of `warehouse produce`.
const (
	// produceAttempts bounds the publications of one batch: the first and the re-publications
	// after a nack, a return, a timeout or a lost connection (about 30 s of backoff in all).
	produceAttempts = 10
	// produceAttemptTimeout bounds one publication of a batch, confirms included.
	produceAttemptTimeout = 30 * time.Second
	// produceGrace is how long a batch in flight may still finish after an interrupt, so
	// that Ctrl-C reports it confirmed instead of leaving it in doubt.
	produceGrace = 5 * time.Second
	// progressEvery is the period of the plain progress lines (when stderr is no terminal).
	progressEvery = 2 * time.Second
	// maxStreamSpan bounds the event time a generated stream covers by default: a long
	// load run squeezes its events closer rather than reaching back years, and an endless
	// one (--count 0) starts this far back.
	maxStreamSpan   = 30 * 24 * time.Hour
	maxProduceBatch = 10000
)

// Re-publication backoff: doubles from the first wait to the last, then stays.
const (
	produceBackoffFirst = 200 * time.Millisecond
	produceBackoffLast  = 5 * time.Second
)

// Produce runs `warehouse produce`: it generates realistic, consistent movement events
// (or reads recorded ones with --file) and publishes them with publisher confirms, or
// writes them as JSON lines with --dry-run. See produceUsage for the flags.
func Produce(ctx context.Context, args []string, stdout io.Writer) error {
	return produce(ctx, args, stdout, produceEnv{
		stderr: os.Stderr, tty: isTerminal(os.Stderr),
		attempts: produceAttempts, backoffMin: produceBackoffFirst, backoffMax: produceBackoffLast,
	})
}

// produceEnv is what Produce takes from its surroundings, injected by tests: where
// progress goes, whether it is a terminal, and the re-publication bounds.
type produceEnv struct {
	stderr                 io.Writer
	tty                    bool
	attempts               int
	backoffMin, backoffMax time.Duration
}

const produceUsage = `Usage: warehouse produce [flags]

Generates movements over a network of warehouses (departures never exceed the stock the
service will hold; arrivals follow departures after 1-6 h; some lose a few units, some
arrive before their departure is reported) and publishes them to AMQP_EXCHANGE with
publisher confirms, declaring the service's topology first. --seed and --start repeat a
run exactly. No generated event is dated later than the moment it is sent: by default the
stream ends at the present, and a stream that reaches it (--count 0, a --start too late)
waits for the clock. --dry-run writes the events as JSON lines instead; --file publishes
recorded JSON lines; --expect writes the stock the service will hold once it has every event.

Flags:
`

// produceOptions are the parsed flags.
type produceOptions struct {
	count                      int
	countSet                   bool
	rate                       float64
	warehouses, products       int
	seed                       uint64
	seedSet                    bool
	loss, duplicates, disorder float64
	start                      time.Time
	interval                   time.Duration
	dryRun                     bool
	output, file, expect       string
	exchange                   string
	batch                      int
	binary                     bool // --mode binary
	perMessage                 int  // events per message: 1, or a CloudEvents batch of that many
}

func parseProduceFlags(args []string, cfg Config, stdout io.Writer) (produceOptions, error) {
	var o produceOptions
	var start string
	fs := flag.NewFlagSet("produce", flag.ContinueOnError)
	fs.IntVar(&o.count, "count", 1000, "events to produce (with --file: at most this many); 0 = until interrupted, the last ones as their time comes")
	fs.Float64Var(&o.rate, "rate", 0, "events per second; 0 = as fast as confirms allow")
	fs.IntVar(&o.warehouses, "warehouses", 10, "warehouses in the generated network (transfers need 2)")
	fs.IntVar(&o.products, "products", 50, "products in the generated network")
	fs.Uint64Var(&o.seed, "seed", 0, "seed of the generator (default: time-based, printed to repeat the run)")
	fs.Float64Var(&o.loss, "loss", 0.05, "share of transfers that lose a few units in transit")
	fs.Float64Var(&o.duplicates, "duplicates", 0, "share of events sent twice (same id, or same data under a new id)")
	fs.Float64Var(&o.disorder, "out-of-order", 0.1, "share of transfers whose arrival is sent before their departure")
	fs.StringVar(&start, "start", "", "event time of the first event, RFC 3339 (default: so that the stream ends now; with --count 0, 30 days ago)")
	fs.DurationVar(&o.interval, "interval", 0, "mean event time between events (default: 12m, shorter when --count would span over 30 days)")
	fs.BoolVar(&o.dryRun, "dry-run", false, "write JSON lines to stdout (or --output) instead of publishing")
	fs.StringVar(&o.output, "output", "", "with --dry-run: the file to write instead of stdout")
	fs.StringVar(&o.file, "file", "", "publish the events of this JSON-lines file instead of generating; every line is checked before the first is sent, and the file must not change meanwhile")
	fs.StringVar(&o.expect, "expect", "", "write the expected stock to this file as JSON")
	fs.StringVar(&o.exchange, "exchange", cfg.AMQPExchange, "exchange to publish to (AMQP_EXCHANGE)")
	fs.IntVar(&o.batch, "batch", 5000, "messages per publish call, sent with a sliding window of confirms; a failed call is re-sent whole")
	fs.IntVar(&o.perMessage, "per-message", 1, "events per message: 1, or up to 1000 as one CloudEvents batch message ("+amqpadapter.BatchContentType+", a JSON array of structured events)")
	mode := fs.String("mode", "structured", "CloudEvents content mode: structured (the whole event as the JSON body) or binary (attributes as cloudEvents:* headers, data as the body)")
	if help, err := parseFlags(fs, args, stdout, produceUsage); help || err != nil {
		if help {
			return o, flag.ErrHelp
		}
		return o, err
	}
	switch *mode {
	case "structured":
	case "binary":
		o.binary = true
		if o.dryRun {
			return o, errors.New("--mode binary publishes: --dry-run writes structured JSON lines")
		}
	default:
		return o, errors.New("--mode: want structured or binary")
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "seed":
			o.seedSet = true
		case "count":
			o.countSet = true
		}
	})

	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(o.count >= 0, "--count must not be negative")
	check(o.perMessage >= 1 && o.perMessage <= amqpadapter.MaxBatchEvents, "--per-message must be 1..%d", amqpadapter.MaxBatchEvents)
	check(o.perMessage == 1 || !o.binary, "--per-message batches structured events: it does not go with --mode binary")
	check(o.perMessage == 1 || !o.dryRun, "--per-message publishes: --dry-run writes one event per line")
	check(o.rate >= 0 && !math.IsInf(o.rate, 0) && !math.IsNaN(o.rate), "--rate must be a non-negative number")
	check(o.warehouses >= 1, "--warehouses must be at least 1")
	check(o.products >= 1, "--products must be at least 1")
	for _, s := range []struct {
		name string
		v    float64
	}{{"--loss", o.loss}, {"--duplicates", o.duplicates}, {"--out-of-order", o.disorder}} {
		check(s.v >= 0 && s.v <= 1, "%s must be between 0 and 1, got %g", s.name, s.v)
	}
	check(o.interval >= 0, "--interval must not be negative")
	check(o.batch >= 1 && o.batch <= maxProduceBatch, "--batch must be 1..%d, got %d", maxProduceBatch, o.batch)
	check(o.output == "" || o.dryRun, "--output needs --dry-run")
	check(o.dryRun || o.exchange != "", "--exchange must not be empty")
	if start != "" {
		t, err := domain.ParseTimestamp("--start", start)
		check(err == nil, "--start %q is not an RFC 3339 time with offset", start)
		o.start = t
	}
	return o, errors.Join(errs...)
}

// produce is Produce with its surroundings injected.
func produce(ctx context.Context, args []string, stdout io.Writer, env produceEnv) error {
	stderr := env.stderr
	cfg, err := LoadConfig()
	if err != nil {
		return err
	}
	log := NewLogger(stderr, cfg.LogFormat, cfg.LogLevel) // where the progress goes: os.Stderr, or a test's buffer
	o, err := parseProduceFlags(args, cfg, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return usageError(err)
	}
	log = log.With("component", "produce")

	src, err := o.source(stderr)
	if err != nil {
		return err
	}
	defer src.close()

	p := &producer{opts: o, cfg: cfg, log: log, src: src, env: env}
	runErr := p.run(ctx, stdout)
	if runErr != nil && !p.started {
		return runErr
	}
	state := "done"
	switch {
	case ctx.Err() != nil:
		state = "interrupted"
	case runErr != nil:
		state = "failed"
	}
	p.summary(stdout, state)
	if o.expect != "" {
		if p.settled == p.taken {
			if err := writeExpected(o.expect, src.expected()); err != nil {
				return errors.Join(runErr, err)
			}
			fmt.Fprintf(stderr, "expected stock written to %s\n", o.expect)
		} else {
			fmt.Fprintf(stderr, "expected stock not written: %d events are in doubt\n", p.taken-p.settled)
		}
	}
	if runErr != nil && ctx.Err() != nil {
		return nil // interrupted: the summary says how far it got
	}
	return runErr
}

// source builds the event source the flags ask for and tells how to repeat the run.
func (o *produceOptions) source(stderr io.Writer) (eventSource, error) {
	if o.file != "" {
		limit := -1
		if o.countSet && o.count > 0 {
			limit = o.count
		}
		return openFileSource(o.file, limit, !o.binary)
	}
	if !o.seedSet {
		o.seed = uint64(time.Now().UnixNano())
	}
	if o.interval == 0 {
		o.interval = loadgen.DefaultInterval
		if o.count > 0 && int64(o.count) > int64(maxStreamSpan/o.interval) {
			o.interval = max(maxStreamSpan/time.Duration(o.count), time.Millisecond)
		}
	}
	o.interval = max(o.interval, time.Millisecond) // as the generator rounds it
	if o.start.IsZero() {
		// The generator dates the first n events no later than start + n×interval: the
		// stream ends by now (rounding the start down only moves it earlier).
		span := time.Duration(o.count) * o.interval
		if o.count == 0 {
			span = maxStreamSpan
		}
		o.start = time.Now().UTC().Add(-span).Truncate(time.Second)
	}
	fmt.Fprintf(stderr, "seed %d; repeat with --seed %d --start %s --interval %s\n",
		o.seed, o.seed, o.start.Format(time.RFC3339), o.interval)
	g := loadgen.NewGenerator(loadgen.Options{
		Warehouses: o.warehouses, Products: o.products, Seed: o.seed,
		LossShare: o.loss, DuplicateShare: o.duplicates, OutOfOrderShare: o.disorder,
		Start: o.start, Interval: o.interval,
	})
	return &generatorSource{g: g, limit: o.count, opts: o}, nil
}

// eventSource yields the events to send, each with its message body, and the stock the
// service holds once it has stored every event yielded so far.
type eventSource interface {
	// next returns the next event; ok is false at the end.
	next() (e domain.Event, body []byte, ok bool, err error)
	// due is the time before which the next event must not be sent, so that no event
	// goes out dated in the future; zero when it may go at once.
	due() time.Time
	// total is the number of events to come in all, or -1 when unknown.
	total() int64
	expected() map[domain.StockKey]int64
	// describe says what the events were, for the summary; "" when there is nothing to add.
	describe() string
	// logAttrs describes the source for the start log.
	logAttrs() []any
	close()
}

// generatorSource yields generated events, encoded with the codec.
type generatorSource struct {
	g     *loadgen.Generator
	limit int // 0 = no end
	n     int
	opts  *produceOptions // for the start log
}

func (s *generatorSource) next() (domain.Event, []byte, bool, error) {
	if s.limit > 0 && s.n >= s.limit {
		return domain.Event{}, nil, false, nil
	}
	s.n++
	e := s.g.Next()
	return e, amqpadapter.EncodeEvent(e), true, nil
}

// due is the end of the next event's slot: the latest time it can carry (see
// loadgen.Options.Interval). Once the stream has reached the present, the events go out as
// their slots end.
func (s *generatorSource) due() time.Time {
	if s.limit > 0 && s.n >= s.limit {
		return time.Time{} // the end of the stream is not worth a wait
	}
	return s.g.NotAfter()
}

func (s *generatorSource) logAttrs() []any {
	return []any{"count", s.opts.count, "seed", s.opts.seed, "start", s.opts.start, "interval", s.opts.interval}
}

func (s *generatorSource) total() int64 {
	if s.limit == 0 {
		return -1
	}
	return int64(s.limit)
}

func (s *generatorSource) expected() map[domain.StockKey]int64 { return s.g.Expected() }

func (s *generatorSource) describe() string {
	st := s.g.Stats()
	return fmt.Sprintf("supplies %d, departures %d, arrivals %d (%d before their departure, %d short by %d units in all), duplicates %d",
		st.Supplies, st.Departures, st.Arrivals, st.OutOfOrder, st.Lossy, st.LostUnits, st.Duplicates)
}

func (s *generatorSource) close() {}

// fileSource yields the events of a JSON-lines file, one message per non-blank line, sent
// as written. It judges them with a Ledger as a service starting empty would, in file
// order, to know the stock to expect.
//
// A first pass decodes and judges every line before anything is published, so that a
// bad line stops the run and the progress bar knows its end. It keeps what the second
// pass needs of each line (see lineRecord), so that the lines go out without being
// decoded again, which was over half of the publisher's CPU while it published; a file
// of more than maxLineRecords lines, or one sent in binary mode (which needs the whole
// event), is decoded and judged again as it goes out instead. The file must not change
// while it is sent.
type fileSource struct {
	name  string
	f     *os.File
	sc    *bufio.Scanner
	line  int
	limit int // -1 = the whole file
	n     int
	count int64
	// records holds the first pass's findings, one per event; nil when the second pass
	// decodes again, with ledger judging the events as they go out.
	records []lineRecord
	keys    []domain.StockKey // the stock rows of records, by index
	stock   map[domain.StockKey]int64
	ledger  *domain.Ledger
	rows    map[domain.StockKey]struct{}
	refused map[string]int
}

// lineRecord is what the first pass found of one line: the message's id and routing key,
// and what the line does to the stock the service holds: a change of the row keys[key],
// or the reason the service refuses it.
type lineRecord struct {
	id      string
	delta   int64
	key     int32
	refused string // "" for an event the service stores
	kind    domain.EventKind
}

// maxLineRecords bounds the memory of a file's lineRecords (about 100 bytes each).
var maxLineRecords = 1 << 20

// decodeFileLine decodes one line of a file; a variable so that tests can count calls.
var decodeFileLine = amqpadapter.DecodeEvent

// openFileSource checks name's first limit events (-1: all of them); keep asks for the
// records that spare the second pass its decoding (see fileSource).
func openFileSource(name string, limit int, keep bool) (*fileSource, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	s := &fileSource{
		name: name, f: f, sc: newLineScanner(f), limit: limit,
		ledger: domain.NewLedger(), rows: map[domain.StockKey]struct{}{}, refused: map[string]int{},
	}
	keyIndex := map[domain.StockKey]int32{}
	for limit < 0 || s.count < int64(limit) {
		e, _, ok, err := s.decodeLine()
		if err != nil {
			_ = f.Close()
			return nil, err
		}
		if !ok {
			break
		}
		s.count++
		if !keep {
			continue
		}
		if s.count > int64(maxLineRecords) {
			keep, s.records, s.keys, keyIndex = false, nil, nil, nil
			continue
		}
		r := lineRecord{id: e.ID, kind: e.Kind, refused: refusal(s.ledger.Apply(e))}
		if r.refused == "" {
			k := e.StockKey()
			i, seen := keyIndex[k]
			if !seen {
				i = int32(len(s.keys))
				keyIndex[k] = i
				s.keys = append(s.keys, k)
			}
			r.key, r.delta = i, e.Delta()
		}
		s.records = append(s.records, r)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		_ = f.Close()
		return nil, err
	}
	s.sc, s.line = newLineScanner(f), 0
	s.ledger = domain.NewLedger() // the second pass's, when it judges again
	if s.records != nil {
		s.ledger, s.stock = nil, make(map[domain.StockKey]int64, len(s.keys))
	}
	return s, nil
}

// refusal names the reason the service refuses an event, from the Ledger's verdict; ""
// when it stores it.
func refusal(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, domain.ErrDuplicate):
		return "duplicate"
	case errors.Is(err, domain.ErrConflict):
		return "conflict"
	default:
		return "insufficient_stock"
	}
}

func newLineScanner(r io.Reader) *bufio.Scanner {
	sc := bufio.NewScanner(r)
	// a message may be MaxMessageSize bytes; leave room for surrounding whitespace
	sc.Buffer(make([]byte, 64<<10), amqpadapter.MaxMessageSize+4096)
	return sc
}

// next returns the next line's event and body. With records, the event holds only the
// ID and Kind the message needs, from the first pass; without, the whole event.
func (s *fileSource) next() (domain.Event, []byte, bool, error) {
	if s.limit >= 0 && s.n >= s.limit {
		return domain.Event{}, nil, false, nil
	}
	if s.records != nil {
		body, ok, err := s.nextLine()
		if !ok || err != nil {
			return domain.Event{}, nil, ok, err
		}
		if s.n >= len(s.records) {
			return domain.Event{}, nil, false, fmt.Errorf("%s line %d: the file grew while it was sent", s.name, s.line)
		}
		r := s.records[s.n]
		s.n++
		if r.refused != "" {
			s.refused[r.refused]++
		} else {
			k := s.keys[r.key]
			s.rows[k] = struct{}{}
			s.stock[k] += r.delta
		}
		return domain.Event{ID: r.id, Kind: r.kind}, slices.Clone(body), true, nil
	}
	e, body, ok, err := s.decodeLine()
	if !ok || err != nil {
		return e, nil, ok, err
	}
	s.n++
	if reason := refusal(s.ledger.Apply(e)); reason != "" {
		s.refused[reason]++
	} else {
		s.rows[e.StockKey()] = struct{}{}
	}
	return e, slices.Clone(body), true, nil
}

// nextLine reads up to the next non-blank line; body aliases the scanner's buffer until
// the next call.
func (s *fileSource) nextLine() (body []byte, ok bool, err error) {
	for s.sc.Scan() {
		s.line++
		if body := bytes.TrimSpace(s.sc.Bytes()); len(body) > 0 {
			return body, true, nil
		}
	}
	if err := s.sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, false, fmt.Errorf("%s line %d: longer than %d bytes", s.name, s.line+1, amqpadapter.MaxMessageSize)
		}
		return nil, false, fmt.Errorf("read %s: %w", s.name, err)
	}
	return nil, false, nil
}

// decodeLine reads up to the next non-blank line and decodes it; body aliases the
// scanner's buffer until the next call.
func (s *fileSource) decodeLine() (e domain.Event, body []byte, ok bool, err error) {
	body, ok, err = s.nextLine()
	if !ok || err != nil {
		return domain.Event{}, nil, ok, err
	}
	if e, err = decodeFileLine(body); err != nil {
		return domain.Event{}, nil, false, fmt.Errorf("%s line %d: %w", s.name, s.line, err)
	}
	return e, body, true, nil
}

// due is zero: recorded events go out as fast as allowed, whatever their dates.
func (s *fileSource) due() time.Time { return time.Time{} }

func (s *fileSource) logAttrs() []any { return []any{"file", s.name, "events", s.count} }

func (s *fileSource) total() int64 { return s.count }

func (s *fileSource) expected() map[domain.StockKey]int64 {
	out := make(map[domain.StockKey]int64, len(s.rows))
	for k := range s.rows {
		if s.records != nil {
			out[k] = s.stock[k]
		} else {
			out[k], _ = s.ledger.Stock(k)
		}
	}
	return out
}

func (s *fileSource) describe() string {
	if len(s.refused) == 0 {
		return "in file order, a service starting empty stores every event"
	}
	return fmt.Sprintf("in file order, a service starting empty refuses: duplicate %d, conflict %d, insufficient_stock %d (the expected stock leaves them out)",
		s.refused["duplicate"], s.refused["conflict"], s.refused["insufficient_stock"])
}

func (s *fileSource) close() { _ = s.f.Close() }

// producer sends the events of one run. taken counts events drawn from the source,
// settled those written or confirmed; written (a dry run), published and confirmed are
// also read by the progress reporter.
type producer struct {
	opts produceOptions
	cfg  Config
	log  *slog.Logger
	src  eventSource
	env  produceEnv

	started        bool
	began          time.Time
	elapsed        time.Duration
	taken, settled int64
	written        atomic.Int64
	published      atomic.Int64
	confirmed      atomic.Int64
	republished    atomic.Int64
	pub            *amqpadapter.Publisher
}

func (p *producer) run(ctx context.Context, stdout io.Writer) error {
	if p.opts.dryRun {
		return p.write(ctx, stdout)
	}
	if err := p.prepareBroker(ctx); err != nil {
		return err
	}
	defer func() {
		if p.pub != nil {
			_ = p.pub.Close()
		}
	}()
	return p.publish(ctx)
}

// write is --dry-run: JSON lines to stdout or --output.
func (p *producer) write(ctx context.Context, stdout io.Writer) (err error) {
	w := stdout
	if p.opts.output != "" {
		f, err := os.Create(p.opts.output)
		if err != nil {
			return err
		}
		defer func() {
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}()
		w = f
	}
	bw := bufio.NewWriterSize(w, 256<<10)
	p.started, p.began = true, time.Now()
	output := p.opts.output
	if output == "" {
		output = "stdout"
	}
	p.log.InfoContext(ctx, "produce started", append([]any{"dry_run", true, "output", output}, p.src.logAttrs()...)...)
	// progress only when the lines do not go to the same screen
	stop := func() {}
	if p.opts.output != "" {
		stop = p.startProgress("writing", &p.written)
	}
	defer func() { stop(); p.elapsed = time.Since(p.began) }()
	for ctx.Err() == nil {
		if due := p.src.due(); due.After(time.Now()) {
			// what is written so far goes out now, not after the wait
			if err := bw.Flush(); err != nil {
				return err
			}
			if sleepUntil(ctx, due) != nil {
				break
			}
		}
		_, body, ok, err := p.src.next()
		if err != nil {
			_ = bw.Flush()
			return err
		}
		if !ok {
			break
		}
		p.taken++
		body = append(body, '\n')
		if _, err := bw.Write(body); err != nil {
			return err
		}
		p.settled++
		p.written.Add(1)
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return ctx.Err()
}

// prepareBroker declares the service's topology (when publishing to its exchange, so that
// a fresh broker keeps every message) or checks that the chosen exchange exists, then
// dials the publisher.
func (p *producer) prepareBroker(ctx context.Context) error {
	conn, err := amqpadapter.Dial(ctx, p.cfg.AMQPURL, "warehouse produce")
	if err != nil {
		return fmt.Errorf("connect to RabbitMQ: %w", err) // names the node, password hidden
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	if p.opts.exchange == p.cfg.AMQPExchange {
		if err := amqpadapter.Declare(ch, topologyOf(p.cfg)); err != nil {
			return fmt.Errorf("declare topology: %w", err)
		}
	} else if err := ch.ExchangeDeclarePassive(p.opts.exchange, amqp091.ExchangeTopic, true, false, false, false, nil); err != nil {
		return fmt.Errorf("exchange %q does not exist (%w): declare it, or run `warehouse run` or `warehouse consume` with AMQP_EXCHANGE=%s first",
			p.opts.exchange, err, p.opts.exchange)
	}
	if p.pub, err = amqpadapter.DialPublisher(ctx, p.cfg.AMQPURL, p.log); err == nil {
		p.log.Info("publishing", "node", amqpadapter.CurrentNode(p.cfg.AMQPURL))
	}
	return err
}

// publish sends the source's events in batches, in order, each confirmed before the next
// goes out, so the broker sees the stream in the order the generator made it consistent in.
func (p *producer) publish(ctx context.Context) error {
	size := p.opts.batch
	if p.opts.rate > 0 {
		size = min(size, max(1, int(p.opts.rate/10))) // about ten batches a second
	}
	p.started, p.began = true, time.Now()
	p.log.InfoContext(ctx, "produce started", append([]any{"exchange", p.opts.exchange, "rate", p.opts.rate, "batch", size},
		p.src.logAttrs()...)...)
	stop := p.startProgress("publishing", &p.confirmed)
	defer func() { stop(); p.elapsed = time.Since(p.began) }()

	msgs := make([]amqpadapter.Message, 0, size)
	for done := false; !done; {
		msgs = msgs[:0]
		for len(msgs) < size {
			if due := p.src.due(); due.After(time.Now()) {
				if len(msgs) > 0 {
					break // the events due now go out; the next batch waits for its first
				}
				if err := sleepUntil(ctx, due); err != nil {
					return err
				}
			}
			e, body, ok, err := p.src.next()
			if err != nil {
				return err
			}
			if !ok {
				done = true
				break
			}
			pub := amqp091.Publishing{
				MessageId: e.ID, AppId: "warehouse-produce", Body: body,
				Timestamp: time.Now().UTC().Truncate(time.Second),
			}
			if p.opts.binary {
				pub.Headers, pub.ContentType, pub.Body = amqpadapter.EncodeEventBinary(e)
			}
			msgs = append(msgs, amqpadapter.Message{RoutingKey: "movement." + string(e.Kind), Publishing: pub})
		}
		if len(msgs) == 0 {
			break
		}
		if p.opts.rate > 0 {
			// the batch goes out when the events before it have had their time
			due := p.began.Add(time.Duration(float64(p.taken) / p.opts.rate * float64(time.Second)))
			if err := sleepUntil(ctx, due); err != nil {
				return err
			}
		}
		n := int64(len(msgs)) // events: a batch message counts its events
		p.taken += n
		p.published.Add(n)
		if err := p.publishBatch(ctx, p.perMessage(msgs), n); err != nil {
			return err
		}
		p.settled += n
		p.confirmed.Add(n)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}

// perMessage groups the single-event messages msgs into CloudEvents batch messages of
// --per-message events each, in order (with 1, msgs as they are). A batch message's
// routing key is movement.batch, its message id that of its first event.
func (p *producer) perMessage(msgs []amqpadapter.Message) []amqpadapter.Message {
	n := p.opts.perMessage
	if n <= 1 {
		return msgs
	}
	out := make([]amqpadapter.Message, 0, (len(msgs)+n-1)/n)
	for len(msgs) > 0 {
		group := msgs[:min(n, len(msgs))]
		msgs = msgs[len(group):]
		bodies := make([][]byte, len(group))
		for i, m := range group {
			bodies[i] = m.Body
		}
		out = append(out, amqpadapter.Message{RoutingKey: "movement.batch", Publishing: amqp091.Publishing{
			MessageId: group[0].MessageId, AppId: group[0].AppId, Timestamp: group[0].Timestamp,
			ContentType: amqpadapter.BatchContentType, Body: amqpadapter.JoinBatch(bodies...),
		}})
	}
	return out
}

// publishBatch publishes msgs until the broker confirms them all, re-publishing the whole
// batch after a nack, a return, a timeout or a lost connection (the service drops the
// copies that got through as duplicates), at most env.attempts times. An interrupt
// lets the attempt in flight finish for produceGrace, and stops the re-publications.
func (p *producer) publishBatch(ctx context.Context, msgs []amqpadapter.Message, events int64) error {
	wait := p.env.backoffMin
	for attempt := 1; ; attempt++ {
		err := p.attempt(ctx, msgs)
		if err == nil {
			return nil
		}
		if attempt >= p.env.attempts {
			return fmt.Errorf("publish batch of %d after %d attempts: %w", len(msgs), attempt, err)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("publish batch of %d: %w", len(msgs), errors.Join(err, ctx.Err()))
		}
		p.log.WarnContext(ctx, "batch republished", "size", len(msgs), "attempt", attempt+1, "err", err)
		if !errors.Is(err, amqpadapter.ErrUnroutable) && p.pub != nil {
			_ = p.pub.Close() // a nack or timeout leaves the publisher unusable
			p.pub = nil
		}
		if err := sleepUntil(ctx, time.Now().Add(wait)); err != nil {
			return err
		}
		wait = min(2*wait, p.env.backoffMax)
		p.republished.Add(events)
	}
}

func (p *producer) attempt(ctx context.Context, msgs []amqpadapter.Message) error {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), produceAttemptTimeout)
	defer cancel()
	// cancel is idempotent: a grace timer firing after the attempt is harmless
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(produceGrace, cancel) })
	defer stop()
	if p.pub == nil {
		pub, err := amqpadapter.DialPublisher(actx, p.cfg.AMQPURL, p.log)
		if err != nil {
			return err
		}
		p.pub = pub
		p.log.Info("publishing again", "node", amqpadapter.CurrentNode(p.cfg.AMQPURL))
	}
	return p.pub.PublishBatch(actx, p.opts.exchange, msgs)
}

// startProgress reports progress on stderr until the returned func is called: a
// progress bar on a terminal, else a line every progressEvery. done counts the events
// written or confirmed.
func (p *producer) startProgress(verb string, done *atomic.Int64) (stop func()) {
	total := p.src.total()
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	if p.env.tty {
		// The rate is ours, in the description: the bar's own starts at "0 ev/hr" before
		// the first event is done. It shows once there is one to show.
		bar := progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(p.env.stderr),
			progressbar.OptionSetDescription(verb),
			progressbar.OptionShowCount(),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionSetWidth(30),
			progressbar.OptionSetRenderBlankState(true),
		)
		update := func() {
			n := done.Load()
			if secs := time.Since(p.began).Seconds(); n > 0 && secs > 0 {
				bar.Describe(fmt.Sprintf("%s %s", verb, formatRate(float64(n)/secs)))
			}
			_ = bar.Set64(n)
		}
		go func() {
			defer wg.Done()
			t := time.NewTicker(100 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-quit:
					update()
					_ = bar.Exit()
					fmt.Fprintln(p.env.stderr)
					return
				case <-t.C:
					update()
				}
			}
		}()
	} else {
		go func() {
			defer wg.Done()
			t := time.NewTicker(progressEvery)
			defer t.Stop()
			last, lastAt := int64(0), p.began
			for {
				select {
				case <-quit:
					return
				case now := <-t.C:
					n := done.Load()
					rate := float64(n-last) / now.Sub(lastAt).Seconds()
					last, lastAt = n, now
					of := ""
					if total >= 0 {
						of = fmt.Sprintf("/%d", total)
					}
					if p.opts.dryRun {
						fmt.Fprintf(p.env.stderr, "%s: wrote %d%s, %s\n", verb, n, of, formatRate(rate))
					} else {
						fmt.Fprintf(p.env.stderr, "%s: published %d%s, confirmed %d, %s\n", verb, p.published.Load(), of, n, formatRate(rate))
					}
				}
			}
		}()
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			close(quit)
			wg.Wait()
		})
	}
}

// formatRate writes events per second as a whole number, or to two significant digits
// below 10 (a paced stream of one event every few seconds is not "0 ev/s").
func formatRate(perSecond float64) string {
	if perSecond < 10 {
		return strconv.FormatFloat(perSecond, 'g', 2, 64) + " ev/s"
	}
	return strconv.FormatFloat(perSecond, 'f', 0, 64) + " ev/s"
}

// summary prints the final lines (state is done, interrupted or failed): to stdout,
// unless stdout carries the JSON lines.
func (p *producer) summary(stdout io.Writer, state string) {
	w := stdout
	if p.opts.dryRun && p.opts.output == "" {
		w = p.env.stderr
	}
	secs := p.elapsed.Seconds()
	rate := 0.0
	if secs > 0 {
		rate = float64(p.settled) / secs
	}
	if p.opts.dryRun {
		fmt.Fprintf(w, "%s: wrote %d events in %s (%.0f ev/s)\n", state, p.settled, p.elapsed.Round(time.Millisecond), rate)
	} else {
		fmt.Fprintf(w, "%s: published %d, confirmed %d, republished %d in %s (%.0f ev/s confirmed)\n", state,
			p.published.Load(), p.confirmed.Load(), p.republished.Load(), p.elapsed.Round(time.Millisecond), rate)
	}
	if d := p.src.describe(); d != "" {
		fmt.Fprintln(w, d)
	}
	if p.opts.dryRun {
		p.log.Info("produce finished", "state", state, "dry_run", true, "written", p.written.Load(), "seconds", secs)
		return
	}
	p.log.Info("produce finished", "state", state, "published", p.published.Load(), "confirmed", p.confirmed.Load(),
		"republished", p.republished.Load(), "seconds", secs)
}

// expectedRow is one row of the --expect file.
type expectedRow struct {
	WarehouseID string `json:"warehouse_id"`
	ProductID   string `json:"product_id"`
	Quantity    int64  `json:"quantity"`
}

// writeExpected writes stock as a JSON array sorted by (warehouse_id, product_id).
func writeExpected(name string, stock map[domain.StockKey]int64) error {
	keys := slices.SortedFunc(maps.Keys(stock), domain.StockKey.Compare)
	rows := make([]expectedRow, len(keys))
	for i, k := range keys {
		rows[i] = expectedRow{WarehouseID: k.Warehouse.String(), ProductID: k.Product.String(), Quantity: stock[k]}
	}
	b, err := json.MarshalIndent(rows, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(name, append(b, '\n'), 0o644)
}

// sleepUntil waits until t or until ctx is done, whichever comes first.
func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

// isTerminal reports whether f is a terminal, where a progress bar can redraw itself.
func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }
