package bench

import (
	"os"
	"path/filepath"
	"testing"
)

func TestParseProcStat(t *testing.T) {
	// fields after comm: 3 state, 4 ppid, ..., 14 utime, 15 stime, 16 cutime, 17 cstime, ..., 22 starttime
	const tail = " S 1 4242 4242 0 -1 4194560 100 0 0 0 1234 567 8 9 20 0 4 0 98765 123456789 100 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	for _, tc := range []struct {
		name, line, comm string
	}{
		{"plain", "4242 (postgres)" + tail, "postgres"},
		{"spaces and parentheses", "4242 (my (odd) pr) c)" + tail, "my (odd) pr) c"},
		{"closing parenthesis last", "4242 (x ) ) S)" + tail, "x ) ) S"},
		{"empty", "4242 ()" + tail, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := parseProcStat([]byte(tc.line))
			if err != nil {
				t.Fatal(err)
			}
			if st.comm != tc.comm {
				t.Errorf("comm %q, want %q", st.comm, tc.comm)
			}
			if st.ticks != 1234+567 { // utime + stime, not the children's cutime and cstime
				t.Errorf("ticks %d, want %d", st.ticks, 1234+567)
			}
			if st.start != 98765 {
				t.Errorf("start %d, want 98765", st.start)
			}
		})
	}
	for _, line := range []string{
		"",
		"4242 postgres S 1 2 3",
		"4242 (postgres",
		"4242 postgres) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20",
		"4242 (postgres) S 1 4242 4242 0 -1 4194560 100 0 0 0 1234 567", // truncated
		"4242 (postgres) S 1 4242 4242 0 -1 4194560 100 0 0 0 x 567 8 9 20 0 4 0 98765 1",
	} {
		if st, err := parseProcStat([]byte(line)); err == nil {
			t.Errorf("parseProcStat(%q) = %+v, want an error", line, st)
		}
	}
}

// TestParseProcStatSelf parses this test process's own stat line.
func TestParseProcStatSelf(t *testing.T) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	st, err := parseProcStat(b)
	if err != nil {
		t.Fatalf("%v: %q", err, b)
	}
	want := filepath.Base(os.Args[0])
	if len(want) > 15 { // TASK_COMM_LEN is 16 with the terminating NUL
		want = want[:15]
	}
	if st.comm != want {
		t.Errorf("comm %q, want %q", st.comm, want)
	}
	if st.ticks < 0 || st.start <= 0 {
		t.Errorf("ticks %d, start %d", st.ticks, st.start)
	}
	n := map[string]int{}
	for pid, e := range readProcCPU() {
		if e.group != groupPostgres && e.group != groupRabbitMQ || e.ticks < 0 {
			t.Errorf("readProcCPU: pid %d: %+v", pid, e)
		}
		n[e.group]++
	}
	t.Logf("readProcCPU: %d postgres and %d rabbitmq processes", n[groupPostgres], n[groupRabbitMQ])
}

func TestProcGroup(t *testing.T) {
	for comm, want := range map[string]string{
		"postgres": groupPostgres, "beam.smp": groupRabbitMQ, "erl_child_setup": groupRabbitMQ,
		"epmd": groupRabbitMQ, "inet_gethost": groupRabbitMQ,
		"postgres: wal": "", "postmaster": "", "beam": "", "kworker/R-inet_frag_wq": "", "bench.test": "",
	} {
		if got := procGroup(comm); got != want {
			t.Errorf("procGroup(%q) = %q, want %q", comm, got, want)
		}
	}
}

func TestProcCPUSince(t *testing.T) {
	prev := procCPU{
		10: {group: groupPostgres, start: 1, ticks: 100},
		11: {group: groupPostgres, start: 1, ticks: 50},  // exits: lost
		12: {group: groupRabbitMQ, start: 1, ticks: 700}, // pid reused by a new backend
		13: {group: groupRabbitMQ, start: 2, ticks: 300},
	}
	now := procCPU{
		10: {group: groupPostgres, start: 1, ticks: 130}, // +30
		12: {group: groupPostgres, start: 9, ticks: 5},   // new: +5
		13: {group: groupRabbitMQ, start: 2, ticks: 420}, // +120
		14: {group: groupRabbitMQ, start: 9, ticks: 7},   // new: +7
	}
	got := now.since(prev)
	if want := (groupCPU{postgres: 0.35, rabbitmq: 1.27}); got != want {
		t.Errorf("since = %+v, want %+v", got, want)
	}
	if got := now.since(now); got != (groupCPU{}) {
		t.Errorf("since itself = %+v, want zero", got)
	}
}
