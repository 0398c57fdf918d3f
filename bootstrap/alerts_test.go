package bootstrap

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestPrometheusRules runs promtool on the shipped configuration: prometheus.yml (and the
// alerts.yml it loads) must check, and every alert's unit tests (alerts_test.yml: each
// fires when it should and stays quiet when it should not) must pass. It needs promtool
// (Debian's prometheus package, which .ci/run installs): without it the test skips, but
// under CI=true it fails.
func TestPrometheusRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool is not installed (apt-get install prometheus)")
		}
		t.Skip("promtool is not installed")
	}
	dir := filepath.Join(mustRepoRoot(t), "deploy", "prometheus")
	for _, args := range [][]string{
		{"check", "config", "prometheus.yml"},
		{"test", "rules", "alerts_test.yml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "SUCCESS") {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// Every alert has a runbook that exists in the README.
	rules, err := os.ReadFile(filepath.Join(dir, "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(mustRepoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	alerts := 0
	for _, line := range strings.Split(string(rules), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "- alert:") {
			alerts++
		}
		if anchor, ok := strings.CutPrefix(line, `runbook: "README.md#`); ok {
			anchor = strings.TrimSuffix(anchor, `"`)
			if !strings.Contains(string(readme), `id="`+anchor+`"`) {
				t.Errorf("runbook %s: no such anchor in README.md", anchor)
			}
		}
	}
	if runbooks := strings.Count(string(rules), "runbook:"); alerts == 0 || runbooks != alerts {
		t.Errorf("%d alerts, %d runbooks: every alert needs one", alerts, runbooks)
	}
}
