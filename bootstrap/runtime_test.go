package bootstrap

import (
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"testing"
)

// A consumer-only process runs with one P per worker and a larger GC goal under a soft
// memory limit; a process that serves the API keeps Go's defaults; GOMAXPROCS, GOGC and
// GOMEMLIMIT set by the operator win.
func TestTuneRuntime(t *testing.T) {
	procs, gogc, limit := runtime.GOMAXPROCS(0), debug.SetGCPercent(100), debug.SetMemoryLimit(-1)
	t.Cleanup(func() { runtime.GOMAXPROCS(procs); debug.SetGCPercent(gogc); debug.SetMemoryLimit(limit) })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	unset := func(t *testing.T, name string) {
		if v, ok := os.LookupEnv(name); ok {
			t.Cleanup(func() { _ = os.Setenv(name, v) })
			_ = os.Unsetenv(name)
		}
	}
	current := func() (int, int, int64) {
		p := debug.SetGCPercent(100)
		debug.SetGCPercent(p)
		return runtime.GOMAXPROCS(0), p, debug.SetMemoryLimit(-1)
	}
	const untouchedProcs = 64 // set before each case; a case that leaves it alone keeps it
	cpus := runtime.NumCPU()
	for _, tc := range []struct {
		name      string
		roles     roles
		workers   int
		env       map[string]string
		wantProcs int
		wantGOGC  int
		wantLimit int64
	}{
		{"consumer", roles{consume: true}, 1, nil, 1, consumerGCPercent, consumerMemoryLimit},
		{"consumer, workers over the CPUs", roles{consume: true}, cpus + 3, nil, cpus, consumerGCPercent, consumerMemoryLimit},
		{"api and consumer", roles{api: true, consume: true}, 1, nil, untouchedProcs, 100, 1 << 40},
		{"api", roles{api: true}, 1, nil, untouchedProcs, 100, 1 << 40},
		{"consumer with GOMAXPROCS", roles{consume: true}, 1, map[string]string{"GOMAXPROCS": "3"}, untouchedProcs, consumerGCPercent, consumerMemoryLimit},
		{"consumer with GOGC", roles{consume: true}, 1, map[string]string{"GOGC": "150"}, 1, 100, consumerMemoryLimit},
		{"consumer with GOMEMLIMIT", roles{consume: true}, 1, map[string]string{"GOMEMLIMIT": "1GiB"}, 1, consumerGCPercent, 1 << 40},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, name := range []string{"GOMAXPROCS", "GOGC", "GOMEMLIMIT"} {
				unset(t, name)
			}
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			runtime.GOMAXPROCS(untouchedProcs)
			debug.SetGCPercent(100)
			debug.SetMemoryLimit(1 << 40)
			tuneRuntime(tc.roles, tc.workers, log)
			if p, g, l := current(); p != tc.wantProcs || g != tc.wantGOGC || l != tc.wantLimit {
				t.Errorf("GOMAXPROCS %d, GOGC %d, memory limit %d; want %d, %d, %d", p, g, l, tc.wantProcs, tc.wantGOGC, tc.wantLimit)
			}
		})
	}
}
