package bench

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat: `getconf CLK_TCK`
// is 100 on Linux (amd64 and arm64 alike; the kernel reports in USER_HZ whatever its HZ).
const clockTicks = 100

// Process groups whose CPU time is recorded next to the service's.
const (
	groupPostgres = "postgres"
	groupRabbitMQ = "rabbitmq"
)

// procGroup returns the group of a process by its comm, or "" for any other process.
// PostgreSQL's postmaster and backends all show comm "postgres"; RabbitMQ is the Erlang VM
// (beam.smp) with its helpers (erl_child_setup, epmd, inet_gethost).
func procGroup(comm string) string {
	switch {
	case comm == "postgres":
		return groupPostgres
	case comm == "beam.smp",
		strings.HasPrefix(comm, "erl_child_setup"),
		strings.HasPrefix(comm, "epmd"),
		strings.HasPrefix(comm, "inet_gethost"):
		return groupRabbitMQ
	}
	return ""
}

// procStat is what the benchmark reads from one /proc/<pid>/stat line.
type procStat struct {
	comm  string
	ticks int64 // utime + stime, in clock ticks
	start int64 // starttime, in clock ticks after boot: tells a reused pid from the old process
}

var errProcStat = errors.New("malformed /proc stat")

// parseProcStat parses one /proc/<pid>/stat line. comm is the text between the first '('
// and the last ')': it may itself hold spaces and parentheses. The fields after it count
// from 3 (state) in proc(5)'s 1-based numbering: utime is field 14, stime 15, starttime 22.
func parseProcStat(b []byte) (procStat, error) {
	i, j := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if i < 0 || j < i {
		return procStat{}, errProcStat
	}
	f := strings.Fields(string(b[j+1:]))
	if len(f) < 20 {
		return procStat{}, errProcStat
	}
	utime, err1 := strconv.ParseInt(f[14-3], 10, 64)
	stime, err2 := strconv.ParseInt(f[15-3], 10, 64)
	start, err3 := strconv.ParseInt(f[22-3], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || utime < 0 || stime < 0 {
		return procStat{}, errProcStat
	}
	return procStat{comm: string(b[i+1 : j]), ticks: utime + stime, start: start}, nil
}

// procCPU is a snapshot of the CPU time of every PostgreSQL and RabbitMQ process on this
// machine (in this pid namespace), per pid.
type procCPU map[int]procCPUEntry

type procCPUEntry struct {
	group        string
	start, ticks int64
}

// readProcCPU walks /proc/[pid]/stat for every numeric pid and keeps the processes of
// the postgres and rabbitmq groups. Entries that cannot be read or parsed (a process
// exiting meanwhile) are skipped silently; without /proc the snapshot is empty.
func readProcCPU() procCPU {
	s := procCPU{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return s
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		st, err := parseProcStat(b)
		if err != nil {
			continue
		}
		if g := procGroup(st.comm); g != "" {
			s[pid] = procCPUEntry{group: g, start: st.start, ticks: st.ticks}
		}
	}
	return s
}

// groupCPU is CPU seconds per process group over an interval.
type groupCPU struct{ postgres, rabbitmq float64 }

// since returns the CPU seconds each group used between the snapshots prev and now: for
// a process in both (same pid, start time and group) the difference, for a process new in
// now (started during the interval, e.g. a PostgreSQL backend for a new connection) all
// its CPU time. The CPU time of processes that exited during the interval is lost: /proc
// no longer shows them, so short-lived processes are undercounted.
func (now procCPU) since(prev procCPU) groupCPU {
	ticks := map[string]int64{}
	for pid, n := range now {
		d := n.ticks
		if p, ok := prev[pid]; ok && p.start == n.start && p.group == n.group {
			d -= p.ticks
		}
		if d > 0 {
			ticks[n.group] += d
		}
	}
	return groupCPU{
		postgres: float64(ticks[groupPostgres]) / clockTicks,
		rabbitmq: float64(ticks[groupRabbitMQ]) / clockTicks,
	}
}

func (res *IngestResult) setProcCPU(g groupCPU) {
	res.PostgresCPUSeconds, res.BrokerCPUSeconds = g.postgres, g.rabbitmq
}

func (res *ReadResult) setProcCPU(g groupCPU) {
	res.PostgresCPUSeconds, res.BrokerCPUSeconds = g.postgres, g.rabbitmq
}
