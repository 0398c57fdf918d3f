package bootstrap

import (
	"bytes"
	"context"
	"runtime/debug"
	"strings"
	"testing"
)

// versionFields splits the output of `warehouse version` into its "name value" lines.
func versionFields(t *testing.T, out string) map[string]string {
	t.Helper()
	fields := map[string]string{}
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		name, value, ok := strings.Cut(line, " ")
		if !ok {
			t.Fatalf("line %q is not \"name value\"", line)
		}
		fields[name] = strings.TrimSpace(value)
	}
	return fields
}

func TestVersionText(t *testing.T) {
	const (
		rev       = "5451894c0ffee5451894c0ffee5451894c0ffee5"
		committed = "2025-06-01T12:00:00Z"
		built     = "2025-06-01T12:34:56Z"
	)
	stamped := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "warehouse", Version: "v0.0.0-20250601120000-5451894c0ffe+dirty"},
		Settings: []debug.BuildSetting{
			{Key: "-buildmode", Value: "exe"}, {Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev},
			{Key: "vcs.time", Value: committed}, {Key: "vcs.modified", Value: "true"},
		},
	}
	got := versionFields(t, versionText(stamped, built))
	for name, want := range map[string]string{
		"warehouse": stamped.Main.Version, "revision": rev + " (with uncommitted changes)",
		"committed": committed, "built": built,
	} {
		if got[name] != want {
			t.Errorf("%s = %q, want %q", name, got[name], want)
		}
	}
	if !strings.HasPrefix(got["go"], stamped.GoVersion+" ") {
		t.Errorf("go = %q, want %s and the platform", got["go"], stamped.GoVersion)
	}

	// go run, or a build under GOFLAGS=-buildvcs=false: no VCS settings, no build time
	got = versionFields(t, versionText(&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}, ""))
	for name, want := range map[string]string{"warehouse": "(devel)", "revision": "unknown", "committed": "unknown", "built": "unknown"} {
		if !strings.HasPrefix(got[name], want) {
			t.Errorf("unstamped: %s = %q, want %q first", name, got[name], want)
		}
	}
	if got := versionFields(t, versionText(nil, "")); got["warehouse"] != "unknown" {
		t.Errorf("no build info: %v", got)
	}
}

func TestVersionCommand(t *testing.T) {
	for _, name := range []string{"version", "--version"} {
		cmd, ok := Command(name)
		if !ok {
			t.Fatalf("no command %q", name)
		}
		var out bytes.Buffer
		if err := cmd(context.Background(), nil, &out); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if f := versionFields(t, out.String()); f["warehouse"] == "" || f["revision"] == "" || f["built"] == "" {
			t.Errorf("%s printed %q", name, out.String())
		}
		if err := cmd(context.Background(), []string{"now"}, &out); ExitCode(err) != exitUsage {
			t.Errorf("%s now: %v, want a usage error", name, err)
		}
	}
}
