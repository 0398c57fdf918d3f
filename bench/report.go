package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"warehouse/loadgen"
)

// Targets of issue 6, as ratios of the ceilings measured in the same run.
const (
	targetDrain       = 0.70
	targetPipeline    = 0.85
	targetCachedRead  = 0.60
	targetUncached    = 0.60
	targetCachedP99Ms = 10.0
	targetConsumerMiB = 150
	targetAPIMiB      = 100
)

// Report is everything one run measured; results.json is this value.
type Report struct {
	StartedAt       time.Time `json:"started_at"`
	DurationSeconds float64   `json:"duration_seconds"`
	// Smoke marks a run of tiny sizes, whose figures mean nothing.
	Smoke    bool        `json:"smoke"`
	Machine  Machine     `json:"machine"`
	Settings Settings    `json:"settings"`
	Rows     []Row       `json:"rows"`
	Checks   []Check     `json:"checks"`
	Drain    Pair        `json:"drain"`
	Pipeline Pair        `json:"pipeline"`
	Reads    ReadsResult `json:"reads"`
	// History is the phase of the ledger's past (as-of, history, routes).
	History HistoryResult `json:"history"`
	// HTTPIngest is POST /api/events next to the project's AMQP publisher.
	HTTPIngest HTTPIngestResult `json:"http_ingest"`
	// Stream is the drain with and without change stream clients, and their latency.
	Stream StreamResult `json:"stream"`

	// PipelineBatch is the pipeline fed batch messages, next to Pipeline's service.
	PipelineBatch BatchPipeline `json:"pipeline_batch"`
}

// Machine describes where the run happened.
type Machine struct {
	CPUs          int    `json:"cpus"`
	MemTotalBytes int64  `json:"mem_total_bytes,omitempty"`
	OS            string `json:"os"`
	Arch          string `json:"arch"`
	GoVersion     string `json:"go_version"`
}

// Settings are the sizes and the configuration shared by the service and the ceilings.
type Settings struct {
	Events               int           `json:"events"`
	ReadsDurationSeconds float64       `json:"reads_duration_seconds"`
	Connections          int           `json:"connections"`
	Rounds               int           `json:"rounds"`
	BatchSize            int           `json:"batch_size"`
	BatchWaitMillis      float64       `json:"batch_wait_ms"`
	Prefetch             int           `json:"prefetch"`
	DBMaxConns           int           `json:"db_max_conns"`
	QueueType            string        `json:"queue_type"`
	Warehouses           int           `json:"warehouses"`
	Products             int           `json:"products"`
	Seed                 uint64        `json:"seed"`
	GeneratorStats       loadgen.Stats `json:"generator_stats"`
	// StreamClients is the clients of the change stream in the stream phase.
	StreamClients int `json:"stream_clients"`
	// StreamFilter is what each of them follows (see Options.StreamFilter).
	StreamFilter string `json:"stream_filter"`
	// Phases lists the phases the run took (every one unless --phases named a few).
	Phases []string `json:"phases"`
}

// Pair is the service's figure and its ceiling's, from one round: in a report, the
// round whose ratio is the median of the phase's rounds.
type Pair struct {
	Service IngestResult `json:"service"`
	Ceiling IngestResult `json:"ceiling"`
	// Rounds lists every round of the phase in order, and Chosen (0-based) is the one
	// Service and Ceiling come from.
	Rounds []RoundRatio `json:"rounds,omitempty"`
	Chosen int          `json:"chosen_round"`
}

// RoundRatio is one round of a phase or a read case: the service's and the ceiling's
// events/s (drain, pipeline) or requests/s (reads) and their ratio (0 when the ceiling
// measured nothing).
type RoundRatio struct {
	Service float64 `json:"service_per_second"`
	Ceiling float64 `json:"ceiling_per_second"`
	Ratio   float64 `json:"ratio"`
}

// Row is one line of the table.
type Row struct {
	Phase   string   `json:"phase"`
	Case    string   `json:"case"`
	Figure  string   `json:"figure"`
	Value   float64  `json:"value"`
	Ceiling *float64 `json:"ceiling,omitempty"`
	Ratio   *float64 `json:"ratio,omitempty"`
	Target  string   `json:"target"`
	// Pass is nil when the row has no target.
	Pass *bool  `json:"pass,omitempty"`
	Note string `json:"note,omitempty"`
}

// Check is a correctness condition of the run: a figure from a run that broke one
// measures something else than the service's job.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
	// Speed marks a target on a figure rather than a correctness condition: a smoke
	// run's figures mean nothing, so its speed checks judge nothing either.
	Speed bool `json:"speed,omitempty"`
}

func newReport(o Options, started time.Time) *Report {
	rep := &Report{
		StartedAt: started.UTC().Truncate(time.Second),
		Smoke:     o.Smoke,
		Machine:   Machine{CPUs: runtime.NumCPU(), OS: runtime.GOOS, Arch: runtime.GOARCH, GoVersion: runtime.Version()},
		Settings: Settings{
			Events: o.Events, ReadsDurationSeconds: o.ReadsDuration.Seconds(), Connections: o.Connections, Rounds: o.Rounds,
			BatchSize: o.BatchSize, BatchWaitMillis: float64(o.BatchWait) / float64(time.Millisecond),
			Prefetch: o.Prefetch, DBMaxConns: o.DBMaxConns, QueueType: "quorum",
			Warehouses: genWarehouses, Products: genProducts, Seed: genSeed,
			StreamClients: o.streamClients(), StreamFilter: o.streamFilter(), Phases: o.phases(),
		},
	}
	if kb, err := procStatusKBFile("/proc/meminfo", "MemTotal:"); err == nil {
		rep.Machine.MemTotalBytes = kb
	}
	return rep
}

func procStatusKBFile(name, field string) (int64, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no %s in %s", field, name)
}

// ran reports whether the run took phase; a report that lists no phases took them all.
func (rep *Report) ran(phase string) bool {
	return len(rep.Settings.Phases) == 0 || slices.Contains(rep.Settings.Phases, phase)
}

// checks lists the correctness conditions of the drain, pipeline and read phases (those
// run); those of the ingest phases hold for every round of drain and pipeline.
func checks(rep *Report, drain, pipeline []Pair) []Check {
	var cs []Check
	var phases []struct {
		name   string
		rounds []Pair
	}
	for _, ph := range []struct {
		name   string
		rounds []Pair
	}{{"drain", drain}, {"pipeline", pipeline}} {
		if rep.ran(ph.name) {
			phases = append(phases, ph)
		}
	}
	for _, ph := range phases {
		cs = append(cs,
			everyRound(ph.name+": service stored exactly the stream (event count, every stock row)", ph.rounds,
				func(p Pair) bool { return p.Service.Verified == "ok" }, func(p Pair) string { return p.Service.Verified }),
			everyRound(ph.name+": bare consumer stored every row", ph.rounds,
				func(p Pair) bool { return p.Ceiling.Verified == "ok" }, func(p Pair) string { return p.Ceiling.Verified }))
	}
	for _, ph := range phases {
		cs = append(cs, everyRound(ph.name+": no dead letters, retries or duplicates (the stream is consistent)", ph.rounds,
			func(p Pair) bool { return p.Service.Rejected+p.Service.Retried+p.Service.Duplicates == 0 },
			func(p Pair) string {
				return fmt.Sprintf("rejected %d, retried %d, duplicates %d", p.Service.Rejected, p.Service.Retried, p.Service.Duplicates)
			}))
	}
	if rep.ran(PhaseReads) {
		cs = append(cs, Check{Name: "reads: the bare handler answers the service's JSON byte for byte",
			OK: rep.Reads.JSONMatches == "ok", Detail: rep.Reads.JSONMatches})
		cs = append(cs, Check{Name: "reads: every request answered 200 (every round)", OK: rep.Reads.Errors == 0,
			Detail: strings.TrimSpace(fmt.Sprintf("%d errors %s", rep.Reads.Errors, rep.Reads.FirstError))})
	}
	return cs
}

// build turns the measurements into the table's rows.
func (rep *Report) build() {
	ratio := func(v, c float64) *float64 {
		if c <= 0 {
			return nil
		}
		x := v / c
		return &x
	}
	ptr := func(x float64) *float64 { return &x }
	pass := func(ok bool) *bool { return &ok }

	ingest := func(phase, what string, p Pair, target float64) {
		row := Row{Phase: phase, Case: what, Figure: "events/s", Value: p.Service.EventsPerSecond,
			Ceiling: ptr(p.Ceiling.EventsPerSecond), Ratio: ratio(p.Service.EventsPerSecond, p.Ceiling.EventsPerSecond),
			Target: fmt.Sprintf("≥ %.2f × ceiling", target)}
		ok := row.Ratio != nil && *row.Ratio >= target && p.Service.Complete && p.Ceiling.Complete
		row.Pass = pass(ok)
		var notes []string
		if !p.Service.Complete {
			notes = append(notes, "service did not finish in time")
		}
		if !p.Ceiling.Complete {
			notes = append(notes, "ceiling did not finish in time")
		}
		if n := roundsNote(p.Rounds); n != "" {
			notes = append(notes, n)
		}
		row.Note = strings.Join(notes, "; ")
		rep.Rows = append(rep.Rows, row)
	}
	if rep.ran(PhaseDrain) {
		ingest("drain", "prefilled queue → committed", rep.Drain, targetDrain)
	}
	if rep.ran(PhasePipeline) {
		ingest("pipeline", "published by a process → committed", rep.Pipeline, targetPipeline)
		rep.pipelineBatchRow()
	}
	if rep.ran(PhaseHTTPIngest) {
		rep.httpIngestRows()
	}
	if rep.ran(PhaseStream) {
		rep.streamRows()
	}

	for _, c := range rep.Reads.Cases {
		name := c.Route + ", " + c.Cache
		target := targetUncached
		if c.Cache == cacheOn {
			target = targetCachedRead
		}
		row := Row{Phase: "reads", Case: name, Figure: "req/s", Value: c.Service.RequestsPerSecond,
			Ceiling: ptr(c.Ceiling.RequestsPerSecond), Ratio: ratio(c.Service.RequestsPerSecond, c.Ceiling.RequestsPerSecond),
			Target: fmt.Sprintf("≥ %.2f × ceiling", target)}
		row.Pass = pass(row.Ratio != nil && *row.Ratio >= target && c.Service.Errors == 0)
		var notes []string
		if c.Service.Errors > 0 {
			notes = append(notes, fmt.Sprintf("%d errors", c.Service.Errors))
		}
		if c.Service.CacheHitRatio != nil {
			notes = append(notes, fmt.Sprintf("cache hits %.1f%%", 100**c.Service.CacheHitRatio))
		}
		if n := roundsNote(c.Rounds); n != "" {
			notes = append(notes, n)
		}
		row.Note = strings.Join(notes, "; ")
		rep.Rows = append(rep.Rows, row)
		rep.Rows = append(rep.Rows, Row{Phase: "reads", Case: name, Figure: "p50 ms", Value: c.Service.P50Ms,
			Ceiling: ptr(c.Ceiling.P50Ms), Target: "—"})
		p99 := Row{Phase: "reads", Case: name, Figure: "p99 ms", Value: c.Service.P99Ms, Ceiling: ptr(c.Ceiling.P99Ms), Target: "—"}
		if c.Cache == cacheOn {
			p99.Target = fmt.Sprintf("≤ %g ms", targetCachedP99Ms)
			p99.Pass = pass(c.Service.P99Ms <= targetCachedP99Ms && c.Service.Requests > 0)
		}
		rep.Rows = append(rep.Rows, p99)
	}

	rss := func(name string, bytes int64, targetMiB int) {
		row := Row{Phase: "peak RSS", Case: name, Figure: "MiB", Value: float64(bytes) / (1 << 20), Target: "—"}
		if bytes == 0 {
			row.Note = "not measured (no /proc)"
		}
		if targetMiB > 0 {
			row.Target = fmt.Sprintf("≤ %d MiB", targetMiB)
			row.Pass = pass(bytes > 0 && bytes <= int64(targetMiB)<<20)
		}
		rep.Rows = append(rep.Rows, row)
	}
	rep.historyRows()

	if rep.ran(PhaseDrain) {
		rss("consume, drain", rep.Drain.Service.PeakRSSBytes, targetConsumerMiB)
	}
	if rep.ran(PhasePipeline) {
		rss("consume, pipeline", rep.Pipeline.Service.PeakRSSBytes, 0)
		rss(fmt.Sprintf("consume, pipeline, %d events per message", rep.PipelineBatch.PerMessage), rep.PipelineBatch.Service.PeakRSSBytes, 0)
	}
	if rep.ran(PhaseReads) {
		rss("serve, cached reads", rep.Reads.CachedPeakRSSBytes, targetAPIMiB)
		rss("serve, uncached reads", rep.Reads.UncachedPeakRSSBytes, targetAPIMiB)
	}
	if rep.ran(PhaseHTTPIngest) {
		rss("serve, HTTP ingest", rep.HTTPIngest.HTTP.PeakRSSBytes, 0)
	}
	if rep.ran(PhaseStream) {
		rss(fmt.Sprintf("serve, change stream (%d clients)", rep.Stream.Clients), rep.Stream.Delivery.ServePeakRSSBytes, 0)
	}
}

// cells formats a row for the text and Markdown tables.
func (row Row) cells() []string {
	value := func(v float64) string {
		switch row.Figure {
		case "events/s", "req/s", "MiB":
			return group(int64(v + 0.5))
		}
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	ceiling, ratio, result := "—", "—", "—"
	if row.Ceiling != nil {
		ceiling = value(*row.Ceiling)
	}
	if row.Ratio != nil {
		ratio = strconv.FormatFloat(*row.Ratio, 'f', 2, 64)
	}
	if row.Pass != nil {
		result = "FAIL"
		if *row.Pass {
			result = "pass"
		}
	}
	return []string{row.Phase, row.Case, row.Figure, value(row.Value), ceiling, ratio, row.Target, result, row.Note}
}

var tableHeader = []string{"phase", "case", "figure", "service", "ceiling", "ratio", "target", "result", "note"}

// group writes n with thousands separated by commas.
func group(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// printTable writes the table for a terminal.
func (rep *Report) printTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.ToUpper(strings.Join(tableHeader, "\t")))
	for _, row := range rep.Rows {
		fmt.Fprintln(tw, strings.Join(row.cells(), "\t"))
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
	for _, c := range rep.Checks {
		mark := "ok  "
		if !c.OK {
			mark = "FAIL"
		}
		fmt.Fprintf(w, "check %s %s: %s\n", mark, c.Name, c.Detail)
	}
	if rep.Smoke {
		fmt.Fprintln(w, "smoke run: tiny sizes, the figures mean nothing")
	}
}

// write writes results.json, README.md and the charts to dir.
func (rep *Report) write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	if err := writeCharts(rep, dir); err != nil {
		return fmt.Errorf("charts: %w", err)
	}
	return os.WriteFile(filepath.Join(dir, "README.md"), []byte(rep.markdown()), 0o644)
}

func (rep *Report) markdown() string {
	var b strings.Builder
	s := rep.Settings
	fmt.Fprintf(&b, "# Benchmarks\n\n")
	if rep.Smoke {
		fmt.Fprintf(&b, "**Smoke run: tiny sizes to keep the benchmark code working; these figures mean nothing.**\n\n")
	}
	fmt.Fprintf(&b, "Written by `make bench` (`warehouse-bench`) on %s in %s, on %d CPUs and %s of memory (%s/%s, %s). ",
		rep.StartedAt.Format("2006-01-02 15:04 UTC"), time.Duration(rep.DurationSeconds*float64(time.Second)).Round(time.Second),
		rep.Machine.CPUs, mib(rep.Machine.MemTotalBytes), rep.Machine.OS, rep.Machine.Arch, rep.Machine.GoVersion)
	fmt.Fprintf(&b, "Every figure stands next to its ceiling, measured in the same run on the same machine; "+
		"the service, PostgreSQL, RabbitMQ and the load generator share the CPUs. Raw figures: [results.json](results.json).\n\n")
	fmt.Fprintf(&b, "Settings: %s events (%d warehouses, %d products, seed %d, no duplicates); %s; batches of %d, %g ms wait, prefetch %d, "+
		"%s queue; %d HTTP connections for %gs per read case; %d database connections.\n\n",
		group(int64(s.Events)), s.Warehouses, s.Products, s.Seed, roundsSetting(s.Rounds), s.BatchSize, s.BatchWaitMillis, s.Prefetch, s.QueueType,
		s.Connections, s.ReadsDurationSeconds, s.DBMaxConns)
	if len(s.Phases) < len(AllPhases) {
		fmt.Fprintf(&b, "**Partial run:** only the phases %s (`--phases`).\n\n", strings.Join(s.Phases, ", "))
	}

	b.WriteString("| " + strings.Join(tableHeader, " | ") + " |\n")
	b.WriteString(strings.Repeat("|---", len(tableHeader)) + "|\n")
	for _, row := range rep.Rows {
		cells := row.cells()
		for i, c := range cells {
			cells[i] = strings.ReplaceAll(c, "|", `\|`)
		}
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}

	b.WriteString("\n## Checks\n\n")
	for _, c := range rep.Checks {
		mark := "ok"
		if !c.OK {
			mark = "**FAIL**"
		}
		fmt.Fprintf(&b, "- %s — %s", mark, c.Name)
		if c.Detail != "" && c.Detail != "ok" {
			fmt.Fprintf(&b, ": %s", c.Detail)
		}
		b.WriteString("\n")
	}

	if charts := rep.charts(); len(charts) > 0 {
		b.WriteString("\n## Charts\n\n")
		alt := map[string]string{
			"drain.svg":    "Events per second while draining a prefilled queue",
			"pipeline.svg": "Events per second, publisher and consumer together",
			"reads.svg":    "Read latency percentiles",
		}
		for _, c := range charts {
			fmt.Fprintf(&b, "![%s](%s)\n\n", alt[c], c)
		}
	} else {
		b.WriteString("\n")
	}

	b.WriteString("## Details\n\n")
	drain, pipeline := "drain"+shownRound(rep.Drain), "pipeline"+shownRound(rep.Pipeline)
	stream := "stream drain" + shownRound(rep.Stream.Drain)
	var ingests []struct {
		phase, who string
		res        IngestResult
	}
	add := func(phase, who string, res IngestResult) {
		ingests = append(ingests, struct {
			phase, who string
			res        IngestResult
		}{phase, who, res})
	}
	if rep.ran(PhaseDrain) {
		add(drain, "service", rep.Drain.Service)
		add(drain, "bare consumer", rep.Drain.Ceiling)
	}
	if rep.ran(PhasePipeline) {
		add(pipeline, "service", rep.Pipeline.Service)
		add(pipeline, "bare pipeline", rep.Pipeline.Ceiling)
		add(fmt.Sprintf("pipeline, %d events per message%s", rep.PipelineBatch.PerMessage, shownRound(rep.PipelineBatch.Pair)),
			"service", rep.PipelineBatch.Service)
	}
	if rep.ran(PhaseStream) {
		add(stream, fmt.Sprintf("service, %d stream clients", rep.Stream.Clients), rep.Stream.Drain.Service)
		add(stream, "service, no stream clients", rep.Stream.Drain.Ceiling)
	}
	if len(ingests) > 0 {
		b.WriteString("| phase | who | events | seconds | events/s | startup s | service CPU s | publisher CPU s | PostgreSQL CPU s | RabbitMQ CPU s | host CPU busy | mean batch | mean batch ms | peak RSS |\n")
		b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	}
	for _, p := range ingests {
		r := p.res
		fmt.Fprintf(&b, "| %s | %s | %s | %.2f | %s | %s | %s | %s | %s | %s | %.0f%% | %s | %s | %s |\n", p.phase, p.who, group(int64(r.Events)),
			r.Seconds, group(int64(r.EventsPerSecond+0.5)), opt(r.StartupSeconds, 2), opt(r.CPUSeconds, 2), opt(r.PublisherCPUSeconds, 2),
			opt(r.PostgresCPUSeconds, 2), opt(r.BrokerCPUSeconds, 2), 100*r.HostCPUBusy,
			opt(r.MeanBatchSize, 0), opt(r.MeanBatchMillis, 1), mib(r.PeakRSSBytes))
	}
	if rep.ran(PhaseHTTPIngest) {
		rep.httpIngestDetails(&b)
	}
	if rep.ran(PhaseStream) {
		rep.streamDetails(&b)
	}
	if rep.ran(PhaseReads) {
		rep.readsDetails(&b)
	}

	b.WriteString(strings.NewReplacer("{rounds}", roundsSetting(s.Rounds), "{late}", lateRoundsSetting(rep),
		"{batch}", strconv.Itoa(httpIngestBatch), "{conns}", strconv.Itoa(s.Connections),
		"{clients}", strconv.Itoa(s.StreamClients), "{filter}", streamFilterNote(s.StreamFilter),
		"{pipeline}", pipelineNote(s)).Replace(methodNotes))
	if rep.ran(PhasePipeline) {
		b.WriteString(pipelineVariantNotes)
	}
	return b.String()
}

// readsDetails writes the read phase's and the ledger's past's latencies.
func (rep *Report) readsDetails(b *strings.Builder) {
	b.WriteString("\n| reads | who | requests | req/s | mean ms | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | service CPU s | PostgreSQL CPU s | RabbitMQ CPU s | host CPU busy |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, c := range rep.Reads.Cases {
		for _, x := range []struct {
			who string
			res ReadResult
		}{{"service", c.Service}, {c.CeilingKind, c.Ceiling}} {
			r := x.res
			fmt.Fprintf(b, "| %s, %s%s | %s | %s | %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %s | %s | %s | %.0f%% |\n",
				c.Route, c.Cache, shownOf(c.Rounds, c.Chosen), x.who, group(r.Requests), group(int64(r.RequestsPerSecond+0.5)),
				r.MeanMs, r.P50Ms, r.P90Ms, r.P99Ms, r.P999Ms, r.MaxMs, opt(r.CPUSeconds, 2),
				opt(r.PostgresCPUSeconds, 2), opt(r.BrokerCPUSeconds, 2), 100*r.HostCPUBusy)
		}
	}
	fmt.Fprintf(b, "\nKeys: %s stock rows and %s movements, drawn uniformly at random.\n", group(int64(rep.Reads.StockKeys)), group(int64(rep.Reads.MovementKeys)))
	rep.historyDetails(b)
}

// charts lists the charts of the phases run, as write draws them.
func (rep *Report) charts() []string {
	var out []string
	for _, c := range []struct{ phase, file string }{
		{PhaseDrain, "drain.svg"}, {PhasePipeline, "pipeline.svg"}, {PhaseReads, "reads.svg"},
	} {
		if rep.ran(c.phase) {
			out = append(out, c.file)
		}
	}
	return out
}

const methodNotes = `
## What is measured

- **Drain.** The queue is prefilled with the whole stream (publisher confirms), then ` + "`warehouse consume`" + `
  starts. The clock runs from its ` + "`/readyz`" + ` answering 200 (it is subscribed) to the poll of its
  ` + "`movements_stored_total`" + ` that sees every event committed (polled every 250 ms, every 50 ms once the end is
  less than a second away, uncompressed: a scrape costs the service little).
  **Ceiling:** a bare consumer in the benchmark process on the same broker, the same kind of quorum queue, the same
  per-consumer prefetch, batch size and wait, and the same ack mode (one multiple ack after the commit); it decodes
  with ` + "`encoding/json`" + ` and stores each batch with one multi-row ` + "`INSERT`" + ` into a plain table with the events'
  columns and no key, constraint, index, movement or stock: no rule at all. Timed by the same poll.
{pipeline}
- **Rounds.** A single run of a phase swings by over ten per cent on a shared machine, so every phase runs
  in rounds: every drain round, then every pipeline round, each round measuring the ceiling and then the
  service (in the pipeline, then the service fed batch messages too), on queues, tables and databases of its
  own; then the reads, where each round measures, route by route, the ceiling and then the service. This run: {rounds}. Each row, its details and its chart show the
  one round whose ratio service / ceiling is the median (the lower middle of an even count), so that all the
  figures of a row come from the same round; the note lists every round's ratio in round order, and
  ` + "`results.json`" + ` every round's events/s or requests/s (` + "`rounds`" + `, and ` + "`chosen_round`" + ` counted from 0).
  The checks hold for every round. The reads run on the database of the chosen drain round. The HTTP ingest
  and stream phases, which came later, run at most two rounds to keep the run within about ten minutes; this
  run: {late}.
- **HTTP ingest.** ` + "`warehouse serve`" + ` with ` + "`INGEST_TOKEN`" + ` (on a database of its own; no consumer runs, so the
  events land in the queue) takes the stream as CloudEvents batches: ` + "`POST /api/events`" + `,
  ` + "`application/cloudevents-batch+json`" + `, {batch} events per request in the stream's order, from {conns} connections of a
  fasthttp client in the benchmark process (opened before the clock starts), each posting the next batch as soon as
  its last was answered. The service answers 202 once the broker confirmed every event of the batch; a 503 or 429
  would be retried after 100 ms and counted. The clock runs from the first request to the last 202, and the queue
  must then hold exactly the stream. **Next to it** (the ceiling column, no target): the project's
  ` + "`amqp.Publisher`" + ` (what ` + "`warehouse produce`" + ` uses) publishing the same stream into a queue of its own, also
  with no consumer, in the same round just before. Both queues are purged once counted.
- **Stream.** The drain above, twice per round on databases and queues of their own: plain, and with a
  ` + "`warehouse serve`" + ` child on the same database and {clients} clients following its ` + "`GET /api/stream`" + ` (read with
  ` + "`adapters/http/sse`" + ` in the benchmark process), all connected (its ` + "`stream_clients`" + ` at {clients}) before
  ` + "`warehouse consume`" + ` starts; the rounds alternate which of the two drains comes first. {filter} The row sets the drain with
  clients against the plain one (the ceiling column); the target is a cost below 10 %, 1 − with / without. Every client
  must receive exactly the changes of its filter that the change log holds after the drain, in order, each once (a
  movement, then its stock, per stored event), and none may be
  dropped as slow (` + "`stream_clients_dropped_total`" + `; the service's default ` + "`STREAM_BUFFER`" + `). Latency: for every stock
  event of every client, its receive time minus the ` + "`committed_at`" + ` of the ` + "`change_log`" + ` row holding its position
  (the clock just before the batch's commit), read after the drain. The clients share the CPUs with the service,
  PostgreSQL and RabbitMQ: what their reading costs is part of the cost measured here.
- **Reads.** ` + "`warehouse serve`" + ` over the drained database (after ` + "`VACUUM (ANALYZE)`" + `), one route at a time, keys
  drawn uniformly from every stock row and movement, by a fasthttp load generator in the benchmark process with
  one request in flight per connection, after a short warm-up. Cached: ` + "`CACHE_SIZE`" + ` above the key count,
  ` + "`CACHE_TTL=1h`" + `, every key requested once before measuring (the cache's steady state). **Ceiling:** a bare Fiber
  handler in a child process answering the same JSON (checked byte for byte) from a Go map. Uncached:
  ` + "`CACHE_SIZE=0`" + `. **Ceiling:** raw pgx point reads (the store's two queries, a pgxpool as large as
  ` + "`DB_MAX_CONNS`" + `, as many goroutines as connections), without HTTP. In each cache mode the service and its
  ceiling run side by side through all the rounds, each idle while the other is measured.
- **Peak RSS** is the service process's ` + "`VmHWM`" + ` from ` + "`/proc/<pid>/status`" + `, read at the end of its phase (a fresh
  process per phase and round of drain and pipeline, and per round of HTTP ingest and stream (the ` + "`serve`" + `
  child with the clients); one per cache mode for the reads, over all their rounds).
- **PostgreSQL CPU s** and **RabbitMQ CPU s** are the CPU time (utime + stime from ` + "`/proc/<pid>/stat`" + `) of every
  process on this machine named ` + "`postgres`" + `, and of ` + "`beam.smp`" + ` with its helpers (` + "`erl_child_setup`" + `, ` + "`epmd`" + `,
  ` + "`inet_gethost`" + `), over the same interval as host CPU busy. Processes that exit during the interval are not
  counted; a dash means no CPU time was seen (e.g. the database or broker runs on another machine).
- Correctness is checked, not assumed: after each service phase (every round) the stored events and every stock row are compared
  with what the generator expects, and the service must have dead-lettered, retried and deduplicated nothing;
  the queues HTTP ingest and the AMQP publisher filled must hold exactly the stream, and every stream client
  every change.
`

// roundsSetting describes the rounds of drain, pipeline and reads, for the Settings line
// and the method notes.
func roundsSetting(n int) string {
	if n <= 1 {
		return "drain, pipeline and every read case in 1 round (ceiling, then service)"
	}
	return fmt.Sprintf("drain, pipeline and every read case in %d alternating rounds (ceiling, then service), the median round shown", n)
}

// lateRoundsSetting describes the rounds of the HTTP ingest and stream phases.
func lateRoundsSetting(rep *Report) string {
	n := max(len(rep.HTTPIngest.Rounds), len(rep.Stream.Drain.Rounds))
	if n == 0 {
		return "not run"
	}
	if n == 1 {
		return "1 round"
	}
	return fmt.Sprintf("%d rounds, the round of the median ratio shown (the lower middle of an even count)", n)
}

// shownRound names, in the details table, the round a phase's figures come from.
func shownRound(p Pair) string { return shownOf(p.Rounds, p.Chosen) }

// shownOf names round chosen of rounds, when there is more than one.
func shownOf(rounds []RoundRatio, chosen int) string {
	if len(rounds) < 2 {
		return ""
	}
	return fmt.Sprintf(" (round %d of %d)", chosen+1, len(rounds))
}

func opt(x float64, prec int) string {
	if x == 0 {
		return "—"
	}
	return strconv.FormatFloat(x, 'f', prec, 64)
}

func mib(bytes int64) string {
	if bytes <= 0 {
		return "—"
	}
	if bytes >= 10<<30 {
		return fmt.Sprintf("%.0f GiB", float64(bytes)/(1<<30))
	}
	return fmt.Sprintf("%.0f MiB", float64(bytes)/(1<<20))
}
