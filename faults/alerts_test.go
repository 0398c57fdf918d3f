//go:build faults

package faults_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAlertsGoPending runs a real Prometheus against `warehouse run` and the private
// RabbitMQ node's exporter, with the shipped alert rules, stops PostgreSQL while events
// wait in the input queue, and watches the stall and not-ready alerts go pending through
// Prometheus's API. The rules are the shipped ones but for two numbers: the idle time of
// the stall (300 s) is 10 s here, and the queue is the scenario's.
func TestAlertsGoPending(t *testing.T) {
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("prometheus is not installed (apt-get install prometheus)")
		}
		t.Skip("prometheus is not installed")
	}
	s := newScenario(t, "alerts")
	pg := s.env.pg
	pg.restartAtEnd(t)
	c := s.startProcess("run", "run", s.amqpURL)

	root, err := moduleRoot()
	if err != nil {
		s.fatalf("%v", err)
	}
	shipped, err := os.ReadFile(filepath.Join(root, "deploy", "prometheus", "alerts.yml"))
	if err != nil {
		s.fatalf("%v", err)
	}
	rules := strings.NewReplacer(`consumer_last_commit_timestamp_seconds)) > 300`, `consumer_last_commit_timestamp_seconds)) > 10`,
		`queue="warehouse.movements"`, `queue="`+s.topo.Queue+`"`).Replace(string(shipped))
	if rules == string(shipped) || !strings.Contains(rules, s.topo.Queue) || !strings.Contains(rules, ")) > 10") {
		s.fatalf("the shipped stall rule no longer has the shape this test edits")
	}
	promPort, err := freePort()
	if err != nil {
		s.fatalf("%v", err)
	}
	dir := filepath.Join(s.dir, "prometheus")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		s.fatalf("%v", err)
	}
	config := fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [alerts.yml]
scrape_configs:
  - job_name: warehouse-api
    static_configs: [{targets: [%q]}]
  - job_name: warehouse-consumer
    static_configs: [{targets: [%[1]q]}]
  - job_name: rabbitmq
    metrics_path: /metrics/per-object
    static_configs: [{targets: ["127.0.0.1:%d"]}]
`, c.addr, s.env.rmq.promPort)
	for name, content := range map[string]string{"prometheus.yml": config, "alerts.yml": rules} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			s.fatalf("%v", err)
		}
	}
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		s.fatalf("%v", err)
	}
	defer logf.Close()
	prom := exec.Command(promBin, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", promPort))
	prom.Stdout, prom.Stderr = logf, logf
	prom.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := prom.Start(); err != nil {
		s.fatalf("%v", err)
	}
	t.Cleanup(func() { _ = prom.Process.Kill(); _ = prom.Wait() })
	api := fmt.Sprintf("http://127.0.0.1:%d/api/v1/", promPort)

	// Both targets up, and nothing alerting while the service consumes.
	s.waitUntil("Prometheus scrapes its three targets", func() bool {
		var r struct {
			Data struct {
				ActiveTargets []struct{ Health string } `json:"activeTargets"`
			} `json:"data"`
		}
		if promGet(api+"targets", &r) != nil || len(r.Data.ActiveTargets) != 3 {
			return false
		}
		for _, tg := range r.Data.ActiveTargets {
			if tg.Health != "up" {
				return false
			}
		}
		return true
	})
	st := newStream(t, loadEvents, 0)
	l := s.publish(st.msgs, loadBatch, 0, loadPace)
	l.waitConfirmed(len(st.msgs) / 4)
	s.waitUntil("the service has stored events", func() bool { return s.eventCount() > 0 })
	if a := alertStates(t, api); len(a) != 0 {
		s.errorf("alerts while the service consumes: %v", a)
	}
	checkDashboardRows(t, root, api, s.topo.Queue)

	if err := pg.stopFast(s.ctx); err != nil {
		s.fatalf("%v", err)
	}
	stopped := time.Now()
	l.wait() // the rest of the stream waits in the queue
	var states map[string]string
	var raw string
	s.waitUntil("the stall and not-ready alerts go pending", func() bool {
		states, raw = alertStatesRaw(t, api)
		return states["WarehouseIngestStalled"] != "" && states["WarehouseConsumerNotReady"] != ""
	})
	t.Logf("FAULT alerts: %.1fs after PostgreSQL stopped, Prometheus's /api/v1/alerts: %s", time.Since(stopped).Seconds(), raw)
	if os.Getenv("FAULTS_ALERTS_FIRING") != "" {
		// On request only (it takes the rules' 2 minutes): wait until the stall fires.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		s.ctx = ctx
		s.waitUntil("the stall alert fires", func() bool {
			states, raw = alertStatesRaw(t, api)
			return states["WarehouseIngestStalled"] == "firing"
		})
		t.Logf("FAULT alerts firing: %.1fs after PostgreSQL stopped, Prometheus's /api/v1/alerts: %s", time.Since(stopped).Seconds(), raw)
	}

	if err := pg.start(s.ctx); err != nil {
		s.fatalf("%v", err)
	}
	s.settle(want{stored: st.stored, stock: st.stock})
}

// checkDashboardRows queries, through Prometheus, every expression of the dashboard's
// Consumer, Queues and Resources rows against the live run (the queue pattern pointed at
// the scenario's queues), and fails on one that returns nothing.
func checkDashboardRows(t *testing.T, root, api, queue string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(root, "deploy", "grafana", "dashboards", "warehouse.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatal(err)
	}
	row := ""
	checked := 0
	for _, p := range dash.Panels {
		if p.Type == "row" {
			row = p.Title
			continue
		}
		if row != "Consumer" && row != "Queues (RabbitMQ)" && row != "Resources" {
			continue
		}
		for _, target := range p.Targets {
			expr := strings.NewReplacer("$__rate_interval", "30s", `warehouse\\.movements.*`, strings.ReplaceAll(queue, ".", `\\.`)+".*").Replace(target.Expr)
			var r struct {
				Data struct {
					Result []struct {
						Metric map[string]string `json:"metric"`
						Value  []any             `json:"value"`
					} `json:"result"`
				} `json:"data"`
			}
			var got int
			if strings.Contains(expr, `job="postgres"`) {
				continue // the harness runs no postgres_exporter; compose_test checks these names' job
			}
			if strings.Contains(expr, "go_gc_gomemlimit_bytes") {
				// `run` sets no GOMEMLIMIT (only a consume-only process has one), and the
				// panel hides "no limit" (math.MaxInt64): nothing is the right answer here.
				continue
			}
			deadline := time.Now().Add(10 * time.Second)
			for time.Now().Before(deadline) {
				if err := promGet(api+"query?query="+url.QueryEscape(expr), &r); err == nil && len(r.Data.Result) > 0 {
					got = len(r.Data.Result)
					break
				}
				time.Sleep(500 * time.Millisecond)
			}
			if got == 0 {
				t.Errorf("dashboard %q / %q: %s returns nothing against the live run", row, p.Title, expr)
				continue
			}
			checked++
			t.Logf("DASHBOARD %s / %s: %s = %v %v", row, p.Title, expr, r.Data.Result[0].Metric, r.Data.Result[0].Value)
		}
	}
	if checked == 0 {
		t.Error("the dashboard has no Consumer, Queues or Resources row")
	}
}

// promGet decodes Prometheus's answer to url into out.
func promGet(url string, out any) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// alertStates returns the state (pending, firing) of every active alert by name.
func alertStates(t *testing.T, api string) map[string]string {
	states, _ := alertStatesRaw(t, api)
	return states
}

func alertStatesRaw(t *testing.T, api string) (map[string]string, string) {
	t.Helper()
	resp, err := http.Get(api + "alerts")
	if err != nil {
		return nil, ""
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var r struct {
		Data struct {
			Alerts []struct {
				Labels map[string]string `json:"labels"`
				State  string            `json:"state"`
			} `json:"alerts"`
		} `json:"data"`
	}
	if json.Unmarshal(raw, &r) != nil {
		return nil, string(raw)
	}
	states := map[string]string{}
	for _, a := range r.Data.Alerts {
		states[a.Labels["alertname"]] = a.State
	}
	return states, string(raw)
}
