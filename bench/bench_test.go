package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	amqp091 "github.com/rabbitmq/amqp091-go"

	"warehouse/adapters/postgres"
	"warehouse/bench"
)

// TestSmoke runs the whole benchmark at smoke sizes, in two rounds (so that the rounds'
// names, checks and median are exercised), against the configured PostgreSQL and
// RabbitMQ, and checks that the report files are written and parse. It asserts nothing
// about speed. It skips when the services are unreachable, unless CI=true.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the service as child processes")
	}
	dbURL, amqpURL := mustServices(t)
	bin, self := mustBuild(t, "warehouse/cmd/warehouse"), mustBuild(t, "warehouse/cmd/warehouse-bench")
	out := t.TempDir()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var stdout bytes.Buffer
	rep, err := bench.Run(ctx, bench.Options{
		Binary: bin, Self: self, DatabaseURL: dbURL, AMQPURL: amqpURL, Smoke: true, Rounds: 2, OutDir: out,
		Log: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}, &stdout)
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, stdout.String())
	}
	t.Log(stdout.String())

	if !rep.Smoke || rep.Settings.Events != bench.SmokeEvents {
		t.Errorf("report: smoke %v with %d events, want a smoke run of %d", rep.Smoke, rep.Settings.Events, bench.SmokeEvents)
	}
	for _, c := range rep.Checks {
		if !c.OK && !c.Speed { // a smoke run's figures mean nothing, nor do its speed targets
			t.Errorf("check failed: %s: %s", c.Name, c.Detail)
		}
	}

	b, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var got bench.Report
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("results.json: %v", err)
	}
	phases := map[string]bool{}
	for _, row := range got.Rows {
		phases[row.Phase] = true
	}
	for _, want := range []string{"drain", "pipeline", "http ingest", "stream", "reads", "peak RSS"} {
		if !phases[want] {
			t.Errorf("results.json has no %q row", want)
		}
	}
	if got.Drain.Service.EventsPerSecond <= 0 || got.Drain.Ceiling.EventsPerSecond <= 0 {
		t.Errorf("drain figures missing: %+v", got.Drain)
	}
	if got.Settings.Rounds != 2 {
		t.Errorf("settings: %d rounds, want 2", got.Settings.Rounds)
	}
	if h := got.HTTPIngest; h.HTTP.EventsPerSecond <= 0 || h.AMQP.EventsPerSecond <= 0 || h.HTTP.QueueDepth != bench.SmokeEvents ||
		h.HTTP.Accepted != bench.SmokeEvents || len(h.Rounds) != 2 {
		t.Errorf("http ingest: %+v", h)
	}
	if st := got.Stream; st.Clients != bench.SmokeStreamClients || len(st.Drain.Rounds) != 2 || len(st.Deliveries) != 2 ||
		st.Drain.Service.EventsPerSecond <= 0 || st.Drain.Ceiling.EventsPerSecond <= 0 {
		t.Errorf("stream: %d clients, drain %+v, %d deliveries", st.Clients, st.Drain.Rounds, len(st.Deliveries))
	} else {
		for i, d := range st.Deliveries {
			// every stock event of every client's filter timed: half its changes
			if d.Complete != st.Clients || d.Changes <= 0 || d.Samples != d.Changes/2 || d.P50Ms <= 0 || d.WithFirst != (i%2 == 1) {
				t.Errorf("stream round %d: %+v", i+1, d)
			}
		}
	}
	if !slices.Equal(got.Settings.Phases, bench.AllPhases) {
		t.Errorf("settings: phases %v, want %v", got.Settings.Phases, bench.AllPhases)
	}
	for _, p := range []struct {
		name string
		pair bench.Pair
	}{{"drain", got.Drain}, {"pipeline", got.Pipeline}} {
		if len(p.pair.Rounds) != 2 {
			t.Errorf("%s: %d rounds in results.json, want 2", p.name, len(p.pair.Rounds))
			continue
		}
		if p.pair.Chosen < 0 || p.pair.Chosen >= len(p.pair.Rounds) {
			t.Errorf("%s: chosen_round %d out of range", p.name, p.pair.Chosen)
			continue
		}
		if c := p.pair.Rounds[p.pair.Chosen]; c.Service != p.pair.Service.EventsPerSecond || c.Ceiling != p.pair.Ceiling.EventsPerSecond {
			t.Errorf("%s: the pair shown (%v / %v) is not round %d's %+v", p.name,
				p.pair.Service.EventsPerSecond, p.pair.Ceiling.EventsPerSecond, p.pair.Chosen, c)
		}
		for i, rr := range p.pair.Rounds {
			if rr.Service <= 0 || rr.Ceiling <= 0 || rr.Ratio <= 0 {
				t.Errorf("%s: round %d figures missing: %+v", p.name, i, rr)
			}
		}
	}
	// The pipeline's publishers are processes; the batch pipeline stands next to the
	// single-event service pipeline of the same round.
	for _, res := range []bench.IngestResult{got.Pipeline.Service, got.Pipeline.Ceiling, got.PipelineBatch.Service} {
		if !strings.Contains(res.Publisher, "(a process)") || res.PublishSeconds <= 0 || len(res.Samples) == 0 ||
			res.Samples[len(res.Samples)-1].Published != bench.SmokeEvents {
			t.Errorf("pipeline: publisher %q, %.2f s, samples %+v: want a process, its time and every event published",
				res.Publisher, res.PublishSeconds, res.Samples)
		}
	}
	if b := got.PipelineBatch; b.PerMessage != 100 || len(b.Rounds) != 2 || b.Service.EventsPerSecond <= 0 ||
		b.Rounds[b.Chosen].Ceiling != got.Pipeline.Rounds[b.Chosen].Service {
		t.Errorf("pipeline, batch messages: %d per message, rounds %+v (single-event pipeline %+v)", b.PerMessage, b.Rounds, got.Pipeline.Rounds)
	}
	// PostgreSQL and RabbitMQ may run on another machine, where /proc does not see them.
	t.Logf("drain CPU seconds: service %.2f, PostgreSQL %.2f, RabbitMQ %.2f",
		got.Drain.Service.CPUSeconds, got.Drain.Service.PostgresCPUSeconds, got.Drain.Service.BrokerCPUSeconds)
	if len(got.Reads.Cases) != 4 {
		t.Errorf("%d read cases, want 4", len(got.Reads.Cases))
	}
	for _, c := range got.Reads.Cases {
		if len(c.Rounds) != 2 || c.Rounds[c.Chosen].Service != c.Service.RequestsPerSecond {
			t.Errorf("read case %s, %s: rounds %+v, chosen %d, service %.0f req/s: want 2 rounds, the chosen one shown",
				c.Route, c.Cache, c.Rounds, c.Chosen, c.Service.RequestsPerSecond)
		}
	}

	// README.md says what results.json holds: every row and check, every round's ratio,
	// the round each phase shows, and the CPU time it measured.
	b, err = os.ReadFile(filepath.Join(out, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	md := string(b)
	cell := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
	var wants []string
	for _, row := range got.Rows {
		wants = append(wants, "| "+cell(row.Phase)+" | "+cell(row.Case)+" | "+cell(row.Figure)+" |", cell(row.Note))
	}
	for _, c := range got.Checks {
		wants = append(wants, c.Name)
	}
	for _, p := range []struct {
		name string
		pair bench.Pair
	}{{"drain", got.Drain}, {"pipeline", got.Pipeline}} {
		for _, rr := range p.pair.Rounds {
			wants = append(wants, fmt.Sprintf("%.2f", rr.Ratio))
		}
		wants = append(wants, fmt.Sprintf("| %s (round %d of %d) | service |", p.name, p.pair.Chosen+1, len(p.pair.Rounds)))
		if p.name == "pipeline" {
			b := got.PipelineBatch
			wants = append(wants, fmt.Sprintf("| pipeline, %d events per message (round %d of %d) | service |", b.PerMessage, b.Chosen+1, len(b.Rounds)))
		}
		if cpu := p.pair.Service.CPUSeconds; cpu > 0 {
			wants = append(wants, fmt.Sprintf("%.2f", cpu))
		}
	}
	for _, name := range []string{"drain.svg", "pipeline.svg", "reads.svg"} {
		wants = append(wants, "("+name+")") // the charts written beside it
	}
	for _, want := range wants {
		if !strings.Contains(md, want) {
			t.Errorf("README.md lacks %q", want)
		}
	}
	for _, name := range []string{"drain.svg", "pipeline.svg", "reads.svg"} {
		mustSVG(t, filepath.Join(out, name))
	}
	if !strings.Contains(stdout.String(), "PHASE") {
		t.Errorf("no table on stdout:\n%s", stdout.String())
	}
}

// mustServices returns the URLs of the configured services, skipping the test when one
// is unreachable (failing it under CI=true).
func mustServices(t *testing.T) (dbURL, amqpURL string) {
	t.Helper()
	dbURL = envOr("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/warehouse?sslmode=disable")
	amqpURL = envOr("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
	unreachable := func(what string, err error) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is unreachable under CI=true: %v", what, err)
		}
		t.Skipf("%s is unreachable, skipping: %v", what, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	admin, err := postgres.WithDatabase(dbURL, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		unreachable("PostgreSQL", err)
	}
	_ = conn.Close(ctx)
	ac, err := amqp091.DialConfig(amqpURL, amqp091.Config{Dial: amqp091.DefaultDial(5 * time.Second)})
	if err != nil {
		unreachable("RabbitMQ", err)
	}
	_ = ac.Close()
	return dbURL, amqpURL
}

// mustBuild builds the command pkg: the warehouse binary, whose consume and serve
// commands are the service under test, or the benchmark's, whose --bare-server is the
// ceiling of cached reads.
func mustBuild(t *testing.T, pkg string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func mustSVG(t *testing.T, name string) {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d := xml.NewDecoder(f)
	root := ""
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s is not well-formed XML: %v", name, err)
		}
		if se, ok := tok.(xml.StartElement); ok && root == "" {
			root = se.Name.Local
		}
	}
	if root != "svg" {
		t.Errorf("%s: root element %q, want svg", name, root)
	}
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
