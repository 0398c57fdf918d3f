package bootstrap

import (
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"testing"
)

// A consumer-only process runs with a larger GC goal under a soft memory limit; a process
// that serves the API keeps Go's defaults; GOGC and GOMEMLIMIT set by the operator win.
func TestTuneGC(t *testing.T) {
	gogc, limit := debug.SetGCPercent(100), debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetGCPercent(gogc); debug.SetMemoryLimit(limit) })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	unset := func(t *testing.T, name string) {
		if v, ok := os.LookupEnv(name); ok {
			t.Cleanup(func() { _ = os.Setenv(name, v) })
			_ = os.Unsetenv(name)
		}
	}
	current := func() (int, int64) {
		p := debug.SetGCPercent(100)
		debug.SetGCPercent(p)
		return p, debug.SetMemoryLimit(-1)
	}
	for _, tc := range []struct {
		name      string
		roles     roles
		env       map[string]string
		wantGOGC  int
		wantLimit int64
	}{
		{"consumer", roles{consume: true}, nil, consumerGCPercent, consumerMemoryLimit},
		{"api and consumer", roles{api: true, consume: true}, nil, 100, 1 << 40},
		{"api", roles{api: true}, nil, 100, 1 << 40},
		{"consumer with GOGC", roles{consume: true}, map[string]string{"GOGC": "150"}, 100, consumerMemoryLimit},
		{"consumer with GOMEMLIMIT", roles{consume: true}, map[string]string{"GOMEMLIMIT": "1GiB"}, consumerGCPercent, 1 << 40},
	} {
		t.Run(tc.name, func(t *testing.T) {
			unset(t, "GOGC")
			unset(t, "GOMEMLIMIT")
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			debug.SetGCPercent(100)
			debug.SetMemoryLimit(1 << 40)
			tuneGC(tc.roles, log)
			if p, l := current(); p != tc.wantGOGC || l != tc.wantLimit {
				t.Errorf("GOGC %d, memory limit %d; want %d, %d", p, l, tc.wantGOGC, tc.wantLimit)
			}
		})
	}
}
