package bootstrap

import (
	"bufio"
	"encoding/json"
	"maps"
	"net"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"gopkg.in/yaml.v3"

	amqpadapter "warehouse/adapters/amqp"
	"warehouse/adapters/cache"
	httpadapter "warehouse/adapters/http"
	"warehouse/adapters/memory"
	"warehouse/adapters/postgres"
	"warehouse/application"
)

// There is no Docker engine where the tests run: these tests keep docker-compose.yml,
// the Dockerfile, Prometheus and Grafana consistent with .env.example, Config, the CLI
// and the metrics the service registers, by reading the files.

// composeFile is the part of docker-compose.yml the tests read.
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
}

type composeService struct {
	Image           string            `yaml:"image"`
	Build           any               `yaml:"build"`
	Command         []string          `yaml:"command"`
	Environment     map[string]string `yaml:"environment"`
	Ports           []string          `yaml:"ports"`
	Volumes         []string          `yaml:"volumes"`
	DependsOn       any               `yaml:"depends_on"`
	Healthcheck     map[string]any    `yaml:"healthcheck"`
	StopGracePeriod string            `yaml:"stop_grace_period"`
}

// warehouse reports whether the service runs the warehouse image.
func (s composeService) warehouse() bool { return s.Build != nil }

// dependsOn returns the condition of each dependency ("service_started" for the list form).
func (s composeService) dependsOn() map[string]string {
	out := map[string]string{}
	switch d := s.DependsOn.(type) {
	case []any:
		for _, name := range d {
			out[name.(string)] = "service_started"
		}
	case map[string]any:
		for name, v := range d {
			cond, _ := v.(map[string]any)["condition"].(string)
			out[name] = cond
		}
	}
	return out
}

func mustRepoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
}

func mustCompose(t *testing.T) composeFile {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(mustRepoRoot(t), "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	for _, want := range []string{"postgres", "rabbitmq", "migrate", "api", "consumer", "prometheus", "grafana"} {
		if _, ok := c.Services[want]; !ok {
			t.Errorf("docker-compose.yml has no service %q", want)
		}
	}
	return c
}

// configTags returns the envconfig name and default of every Config field.
func configTags(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	typ := reflect.TypeFor[Config]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		name := f.Tag.Get("envconfig")
		if name == "" {
			t.Errorf("Config.%s has no envconfig tag", f.Name)
			continue
		}
		out[name] = f.Tag.Get("default")
	}
	return out
}

// envExample returns the variables .env.example documents: the ones it sets, and the ones
// it shows commented out ("# NAME=value": derived defaults that a copied .env must not pin).
func envExample(t *testing.T) map[string]string {
	t.Helper()
	set, commented := envExampleLines(t)
	out := maps.Clone(set)
	maps.Copy(out, commented)
	return out
}

// envExampleLines returns the variables .env.example sets and those it shows commented out.
func envExampleLines(t *testing.T) (set, commented map[string]string) {
	t.Helper()
	f, err := os.Open(filepath.Join(mustRepoRoot(t), ".env.example"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	set, commented = map[string]string{}, map[string]string{}
	assignment := regexp.MustCompile(`^#\s*([A-Z][A-Z0-9_]*)=(.*)$`)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if m := assignment.FindStringSubmatch(line); m != nil {
			commented[m[1]] = m[2]
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf(".env.example: %q is not NAME=value", line)
			continue
		}
		set[name] = value
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return set, commented
}

func TestComposeCommandsExist(t *testing.T) {
	// Subcommands whose functions exist but that cli.go may not register yet; naming the
	// functions keeps the list honest.
	pendingCommands := map[string]CommandFunc{"produce": Produce, "dead-letters": DeadLetters, "audit": Audit}
	for name, s := range mustCompose(t).Services {
		if !s.warehouse() {
			continue
		}
		if len(s.Command) == 0 {
			t.Errorf("service %s: no command (the image would run `warehouse run`)", name)
			continue
		}
		sub := s.Command[0]
		if _, ok := Command(sub); !ok {
			if _, pending := pendingCommands[sub]; !pending {
				t.Errorf("service %s: %q is not a warehouse subcommand", name, sub)
				continue
			}
			t.Logf("service %s: %q is not registered in Command yet", name, sub)
		}
		if sub == "migrate" && (len(s.Command) != 2 || !slices.Contains([]string{"up", "down", "status"}, s.Command[1])) {
			t.Errorf("service %s: migrate takes up, down or status, got %q", name, s.Command[1:])
		}
	}
	want := map[string]string{"migrate": "migrate", "api": "serve", "consumer": "consume"}
	for name, sub := range want {
		if s := mustCompose(t).Services[name]; len(s.Command) == 0 || s.Command[0] != sub || !s.warehouse() {
			t.Errorf("service %s runs %q, want the warehouse image with %q", name, s.Command, sub)
		}
	}
}

func TestComposeEnvironmentIsConfig(t *testing.T) {
	tags, example := configTags(t), envExample(t)
	for name, s := range mustCompose(t).Services {
		if !s.warehouse() {
			continue
		}
		if len(s.Environment) == 0 {
			t.Errorf("service %s has no environment", name)
		}
		for v := range s.Environment {
			if _, ok := tags[v]; !ok {
				t.Errorf("service %s sets %s, which is no Config field", name, v)
			}
			if _, ok := example[v]; !ok {
				t.Errorf("service %s sets %s, which .env.example does not document", name, v)
			}
		}
	}
}

func TestComposeEnvExampleMatchesConfig(t *testing.T) {
	tags, example := configTags(t), envExample(t)
	for v := range example {
		if _, ok := tags[v]; !ok {
			t.Errorf(".env.example sets %s, which is no Config field", v)
		}
	}
	for v := range tags {
		if _, ok := example[v]; !ok {
			t.Errorf("Config reads %s, which .env.example does not document", v)
		}
	}
}

// TestEnvExampleLeavesDerivedNamesUnset copies .env.example to .env, as its first line
// says to, then changes AMQP_QUEUE, in the environment or in the copy: the dead-letter and
// retry names must follow the queue, so .env.example must not set them.
func TestEnvExampleLeavesDerivedNamesUnset(t *testing.T) {
	set, commented := envExampleLines(t)
	for _, v := range []string{"AMQP_DEAD_LETTER_EXCHANGE", "AMQP_DEAD_LETTER_QUEUE", "AMQP_RETRY_EXCHANGE"} {
		if _, ok := set[v]; ok {
			t.Errorf(".env.example sets %s, which AMQP_QUEUE derives: a copied .env would pin it", v)
		}
		if _, ok := commented[v]; !ok {
			t.Errorf(".env.example does not show %s commented out", v)
		}
	}
	example, err := os.ReadFile(filepath.Join(mustRepoRoot(t), ".env.example"))
	if err != nil {
		t.Fatal(err)
	}
	for _, where := range []string{"environment", ".env"} {
		t.Run("AMQP_QUEUE changed in "+where, func(t *testing.T) {
			for v := range configTags(t) {
				t.Setenv(v, "") // the test process's own values must not hide .env's
				os.Unsetenv(v)
			}
			const queue = "orders.movements"
			env := string(example)
			if where == ".env" {
				env = regexp.MustCompile(`(?m)^AMQP_QUEUE=.*$`).ReplaceAllString(env, "AMQP_QUEUE="+queue)
			} else {
				t.Setenv("AMQP_QUEUE", queue)
			}
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, ".env"), []byte(env), 0o600); err != nil {
				t.Fatal(err)
			}
			t.Chdir(dir)
			cfg, err := LoadConfig()
			if err != nil {
				t.Fatalf("LoadConfig: %v", err)
			}
			if cfg.AMQPQueue != queue {
				t.Fatalf("AMQP_QUEUE = %q, want %q", cfg.AMQPQueue, queue)
			}
			for name, got := range map[string]string{"dead-letter exchange": cfg.AMQPDeadLetterExchange,
				"dead-letter queue": cfg.AMQPDeadLetterQueue, "retry exchange": cfg.AMQPRetryExchange} {
				if !strings.HasPrefix(got, queue+".") {
					t.Errorf("%s = %q: it did not follow AMQP_QUEUE %q", name, got, queue)
				}
			}
		})
	}
}

// TestComposeEnvironmentLoads loads the configuration of each warehouse service as the
// container would: the values parse and pass the cross-field checks.
func TestComposeEnvironmentLoads(t *testing.T) {
	compose := mustCompose(t)
	for name, s := range compose.Services {
		if !s.warehouse() {
			continue
		}
		t.Run(name, func(t *testing.T) {
			for v := range configTags(t) {
				t.Setenv(v, "") // unset what the test process has, as in a fresh container
				os.Unsetenv(v)
			}
			for v, value := range s.Environment {
				t.Setenv(v, interpolate(value))
			}
			cfg, err := LoadConfig()
			if err != nil {
				t.Fatalf("LoadConfig: %v", err)
			}
			for what, raw := range map[string]string{"DATABASE_URL": cfg.DatabaseURL, "AMQP_URL": cfg.AMQPURL} {
				u, err := url.Parse(raw)
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				if _, ok := compose.Services[u.Hostname()]; !ok {
					t.Errorf("%s points at %q, which is no compose service", what, u.Hostname())
				}
			}
			if u, _ := url.Parse(cfg.DatabaseURL); u != nil {
				pw, _ := u.User.Password()
				if want := compose.Services["postgres"].Environment["POSTGRES_PASSWORD"]; pw != want {
					t.Errorf("DATABASE_URL password %q, want POSTGRES_PASSWORD %q", pw, want)
				}
			}
			if s.StopGracePeriod != "" {
				grace, err := time.ParseDuration(s.StopGracePeriod)
				if err != nil || grace <= cfg.ShutdownTimeout {
					t.Errorf("stop_grace_period %q must exceed SHUTDOWN_TIMEOUT %s", s.StopGracePeriod, cfg.ShutdownTimeout)
				}
			}
		})
	}
}

// interpolate resolves the ${NAME:-default} forms of compose with their default.
func interpolate(s string) string {
	return regexp.MustCompile(`\$\{[A-Z_]+:-([^}]*)\}`).ReplaceAllString(s, "$1")
}

// effective returns the value of an environment variable in service s: its own or
// Config's default.
func effective(t *testing.T, s composeService, name string) string {
	t.Helper()
	if v, ok := s.Environment[name]; ok {
		return interpolate(v)
	}
	return configTags(t)[name]
}

func portOf(t *testing.T, addr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return port
}

// containerPorts returns the container side of a service's published ports.
func containerPorts(s composeService) []string {
	var out []string
	for _, p := range s.Ports {
		p = strings.TrimSuffix(p, "/tcp")
		out = append(out, p[strings.LastIndex(p, ":")+1:])
	}
	return out
}

// opsPorts maps the services Prometheus scrapes to the port of their /metrics.
func opsPorts(t *testing.T, c composeFile) map[string]string {
	t.Helper()
	return map[string]string{
		"api":      portOf(t, effective(t, c.Services["api"], "HTTP_ADDR")),
		"consumer": portOf(t, effective(t, c.Services["consumer"], "CONSUMER_HTTP_ADDR")),
	}
}

func TestComposePorts(t *testing.T) {
	c := mustCompose(t)
	tags := configTags(t)
	for name, port := range opsPorts(t, c) {
		if !slices.Contains(containerPorts(c.Services[name]), port) {
			t.Errorf("service %s publishes %v, want its port %s", name, c.Services[name].Ports, port)
		}
	}
	if got, want := opsPorts(t, c), []string{portOf(t, tags["HTTP_ADDR"]), portOf(t, tags["CONSUMER_HTTP_ADDR"])}; got["api"] != want[0] || got["consumer"] != want[1] {
		t.Errorf("compose ports %v differ from the defaults of HTTP_ADDR and CONSUMER_HTTP_ADDR %v", got, want)
	}
	dockerfile, err := os.ReadFile(filepath.Join(mustRepoRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	expose := regexp.MustCompile(`(?m)^EXPOSE\s+(.+)$`).FindSubmatch(dockerfile)
	if expose == nil {
		t.Fatal("Dockerfile has no EXPOSE")
	}
	for name, port := range opsPorts(t, c) {
		if !slices.Contains(strings.Fields(string(expose[1])), port) {
			t.Errorf("Dockerfile EXPOSE %s lacks %s's port %s", expose[1], name, port)
		}
	}
}

func TestComposeDependencies(t *testing.T) {
	c := mustCompose(t)
	for _, dep := range []string{"postgres", "rabbitmq"} {
		if len(c.Services[dep].Healthcheck) == 0 {
			t.Errorf("service %s has no healthcheck, so nothing can wait for it", dep)
		}
	}
	for name, want := range map[string]map[string]string{
		"migrate":  {"postgres": "service_healthy"},
		"api":      {"postgres": "service_healthy", "migrate": "service_completed_successfully"},
		"consumer": {"rabbitmq": "service_healthy", "migrate": "service_completed_successfully"},
	} {
		got := c.Services[name].dependsOn()
		for dep, cond := range want {
			if got[dep] != cond {
				t.Errorf("service %s depends on %s with %q, want %q", name, dep, got[dep], cond)
			}
		}
	}
	root := mustRepoRoot(t)
	for name, s := range c.Services {
		for _, v := range s.Volumes {
			if host := strings.Split(v, ":")[0]; strings.HasPrefix(host, "./") {
				if _, err := os.Stat(filepath.Join(root, host)); err != nil {
					t.Errorf("service %s mounts %s: %v", name, host, err)
				}
			}
		}
	}
}

func TestComposePrometheusTargets(t *testing.T) {
	c := mustCompose(t)
	raw, err := os.ReadFile(filepath.Join(mustRepoRoot(t), "deploy/prometheus/prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			MetricsPath   string `yaml:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatalf("prometheus.yml: %v", err)
	}
	ports := opsPorts(t, c)
	scraped := map[string]bool{}
	for _, sc := range cfg.ScrapeConfigs {
		if sc.JobName == "postgres" {
			// postgres_exporter, a service of the stack that publishes its port.
			if len(sc.StaticConfigs) != 1 || len(sc.StaticConfigs[0].Targets) != 1 || sc.StaticConfigs[0].Targets[0] != "postgres-exporter:9187" ||
				!slices.Contains(containerPorts(c.Services["postgres-exporter"]), "9187") {
				t.Errorf("job postgres scrapes %v; want postgres-exporter:9187, published by the postgres-exporter service", sc.StaticConfigs)
			}
			continue
		}
		if sc.JobName == "rabbitmq" {
			// RabbitMQ's exporter, per queue: the broker must publish its port.
			if sc.MetricsPath != "/metrics/per-object" || len(sc.StaticConfigs) != 1 || len(sc.StaticConfigs[0].Targets) != 1 ||
				sc.StaticConfigs[0].Targets[0] != "rabbitmq:15692" || !slices.Contains(containerPorts(c.Services["rabbitmq"]), "15692") {
				t.Errorf("job rabbitmq scrapes %s %v; want rabbitmq:15692/metrics/per-object, published by the rabbitmq service", sc.MetricsPath, sc.StaticConfigs)
			}
			continue
		}
		if sc.MetricsPath != "" && sc.MetricsPath != "/metrics" {
			t.Errorf("job %s scrapes %s, want /metrics", sc.JobName, sc.MetricsPath)
		}
		for _, st := range sc.StaticConfigs {
			for _, target := range st.Targets {
				host, port, err := net.SplitHostPort(target)
				if err != nil {
					t.Errorf("job %s: target %q: %v", sc.JobName, target, err)
					continue
				}
				if want, ok := ports[host]; !ok || port != want {
					t.Errorf("job %s scrapes %s, want one of %v (service:port)", sc.JobName, target, ports)
				}
				scraped[host] = true
			}
		}
	}
	for host := range ports {
		if !scraped[host] {
			t.Errorf("Prometheus does not scrape %s", host)
		}
	}
}

// registeredMetrics builds every collector a warehouse process registers (as runService
// does), answers one request so that the HTTP vectors hold a series, and returns the
// gathered metric families and every label name they carry.
func registeredMetrics(t *testing.T) (families map[string]dto.MetricType, labels map[string]bool) {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	db, err := postgres.Open(postgres.Options{URL: "postgres://nobody@127.0.0.1:1/none"}) // never connects
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	reg.MustRegister(collectors.NewDBStatsCollector(db.DB, "warehouse"))
	store := memory.NewStore()
	cached := cache.NewQueries(application.NewQueries(store), cache.Options{Size: 10, TTL: time.Second}, reg)
	amqpadapter.NewConsumer(amqpadapter.ConsumerOptions{}, application.NewRecorder(store, cached), nil, reg)
	srv := httpadapter.NewServer(httpadapter.Options{}, cached, httpadapter.Readiness{}, reg, nil)
	resp, err := srv.App().Test(httptest.NewRequest("GET", "/health", nil))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	gathered, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	families = map[string]dto.MetricType{}
	labels = map[string]bool{"job": true, "instance": true, "le": true} // target labels and buckets
	for _, f := range gathered {
		families[f.GetName()] = f.GetType()
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = true
			}
		}
	}
	return families, labels
}

func TestComposeDashboardQueriesRegisteredMetrics(t *testing.T) {
	root := mustRepoRoot(t)
	raw, err := os.ReadFile(filepath.Join(root, "deploy/grafana/dashboards/warehouse.json"))
	if err != nil {
		t.Fatal(err)
	}
	type datasource struct {
		UID string `json:"uid"`
	}
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title      string      `json:"title"`
			Type       string      `json:"type"`
			Datasource *datasource `json:"datasource"`
			Targets    []struct {
				Expr       string      `json:"expr"`
				Datasource *datasource `json:"datasource"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("warehouse.json: %v", err)
	}
	dsRaw, err := os.ReadFile(filepath.Join(root, "deploy/grafana/provisioning/datasources/prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var ds struct {
		Datasources []struct {
			UID string `yaml:"uid"`
			URL string `yaml:"url"`
		} `yaml:"datasources"`
	}
	if err := yaml.Unmarshal(dsRaw, &ds); err != nil || len(ds.Datasources) != 1 {
		t.Fatalf("datasource provisioning: %v (%d datasources, want 1)", err, len(ds.Datasources))
	}
	uid := ds.Datasources[0].UID

	families, labels := registeredMetrics(t)
	queried := map[string]bool{}
	exprs := 0
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != uid {
			t.Errorf("panel %q does not use the provisioned datasource %q", p.Title, uid)
		}
		for _, target := range p.Targets {
			exprs++
			if target.Datasource != nil && target.Datasource.UID != uid {
				t.Errorf("panel %q: a query uses datasource %q, want %q", p.Title, target.Datasource.UID, uid)
			}
			metrics, labelNames := promqlNames(target.Expr)
			if len(metrics) == 0 {
				t.Errorf("panel %q: found no metric in %q", p.Title, target.Expr)
			}
			exporter := false
			for _, m := range metrics {
				queried[m] = true
				if job, ok := exporterJob(m); ok {
					// An exporter that prometheus.yml scrapes (TestComposePrometheusTargets):
					// its names are the broker's or the database's, not the service's.
					exporter = true
					if !strings.Contains(target.Expr, `job="`+job+`"`) {
						t.Errorf("panel %q queries %s without job=%q", p.Title, m, job)
					}
					continue
				}
				if !knownMetric(families, m) {
					t.Errorf("panel %q queries %s, which the service does not register", p.Title, m)
				}
			}
			if exporter {
				continue
			}
			for _, l := range labelNames {
				if !labels[l] {
					t.Errorf("panel %q uses label %q, which no registered metric carries", p.Title, l)
				}
			}
		}
	}
	if exprs == 0 {
		t.Fatal("the dashboard holds no query")
	}
	// Rates use Grafana's $__rate_interval, not a fixed window.
	for _, p := range dash.Panels {
		for _, target := range p.Targets {
			if regexp.MustCompile(`\[\d+[smh]\]`).MatchString(target.Expr) {
				t.Errorf("panel %q uses a fixed range in %q, want [$__rate_interval]", p.Title, target.Expr)
			}
		}
	}
	// The panels the operations issue asks for.
	for _, m := range []string{"movements_stored_total", "movements_rejected_total", "consumer_batch_duration_seconds_bucket",
		"http_requests_total", "http_request_duration_seconds_bucket", "cache_hits_total", "cache_misses_total", "up",
		"consumer_state", "consumer_last_commit_timestamp_seconds", "consumer_held_batch_age_seconds", "consumer_commit_lag_seconds_bucket",
		"rabbitmq_queue_messages_ready", "rabbitmq_queue_messages_unacked", "go_gc_gomemlimit_bytes", "go_sql_in_use_connections",
		"pg_stat_database_numbackends"} {
		if !queried[m] {
			t.Errorf("the dashboard does not query %s", m)
		}
	}
}

// exporterJob returns the scrape job of an exporter's metric: RabbitMQ's own
// (rabbitmq_*) or postgres_exporter's (pg_*).
func exporterJob(metric string) (string, bool) {
	switch {
	case strings.HasPrefix(metric, "rabbitmq_"):
		return "rabbitmq", true
	case strings.HasPrefix(metric, "pg_"):
		return "postgres", true
	}
	return "", false
}

// knownMetric reports whether name is a registered family, a series of a registered
// histogram or summary, or Prometheus's own up.
func knownMetric(families map[string]dto.MetricType, name string) bool {
	if name == "up" {
		return true
	}
	if _, ok := families[name]; ok {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		switch families[base] {
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			return true
		case dto.MetricType_SUMMARY:
			return suffix != "_bucket"
		}
	}
	return false
}

var (
	promString    = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	promMatchers  = regexp.MustCompile(`\{([^}]*)\}`)
	promMatcher   = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
	promRange     = regexp.MustCompile(`\[[^\]]*\]`)
	promGrouping  = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
	promIdent     = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	promKeywords  = map[string]bool{"bool": true, "offset": true, "and": true, "or": true, "unless": true, "inf": true, "nan": true}
	promNumberEnd = regexp.MustCompile(`[0-9.]$`)
)

// promqlNames returns the metric names and the label names a PromQL expression uses. It
// is no parser: it knows enough of the grammar for dashboard queries (selectors with
// matchers, ranges, function calls, aggregations with by/without, arithmetic).
func promqlNames(expr string) (metrics, labels []string) {
	expr = promString.ReplaceAllString(expr, `""`)
	for _, m := range promMatchers.FindAllStringSubmatch(expr, -1) {
		for _, l := range promMatcher.FindAllStringSubmatch(m[1], -1) {
			labels = append(labels, l[1])
		}
	}
	expr = promMatchers.ReplaceAllString(expr, " ")
	expr = promRange.ReplaceAllString(expr, " ")
	for _, g := range promGrouping.FindAllStringSubmatch(expr, -1) {
		for _, l := range strings.Split(g[1], ",") {
			if l = strings.TrimSpace(l); l != "" {
				labels = append(labels, l)
			}
		}
	}
	expr = promGrouping.ReplaceAllString(expr, " ")
	for _, loc := range promIdent.FindAllStringIndex(expr, -1) {
		name := expr[loc[0]:loc[1]]
		rest := strings.TrimLeft(expr[loc[1]:], " \t\n")
		switch {
		case strings.HasPrefix(rest, "("): // a function or an aggregation
		case promKeywords[strings.ToLower(name)]:
		case loc[0] > 0 && promNumberEnd.MatchString(expr[:loc[0]]): // the exponent of 1e3
		default:
			metrics = append(metrics, name)
		}
	}
	return metrics, labels
}

func TestComposePromqlNames(t *testing.T) {
	tests := []struct {
		expr           string
		metrics, label []string
	}{
		{`up{job=~"warehouse-.*"}`, []string{"up"}, []string{"job"}},
		{`histogram_quantile(0.95, sum by (le, route) (rate(http_request_duration_seconds_bucket{job="a"}[1m])))`,
			[]string{"http_request_duration_seconds_bucket"}, []string{"job", "le", "route"}},
		{`sum(rate(a_total[5m])) / (sum(rate(a_total[5m])) + sum without (kind) (rate(b_total{x!="{y}"}[$__rate_interval])))`,
			[]string{"a_total", "a_total", "b_total"}, []string{"x", "kind"}},
		{`1e3 * go_goroutines offset 5m`, []string{"go_goroutines"}, nil},
	}
	for _, tc := range tests {
		metrics, labels := promqlNames(tc.expr)
		slices.Sort(labels)
		slices.Sort(tc.label)
		if !slices.Equal(metrics, tc.metrics) || !slices.Equal(labels, tc.label) {
			t.Errorf("promqlNames(%q) = %v, %v; want %v, %v", tc.expr, metrics, labels, tc.metrics, tc.label)
		}
	}
}
