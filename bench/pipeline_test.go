package bench

import (
	"bytes"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestLineTap(t *testing.T) {
	var out bytes.Buffer
	var lines []string
	tap := &lineTap{w: &out, tap: func(line []byte) { lines = append(lines, string(line)) }}
	long := strings.Repeat("x", maxTapLine+1)
	for _, chunk := range []string{"fir", "st\nsecond\n", "", "thi", "rd", "\n", long[:10], long[10:], "\nlast\nunfinished"} {
		if n, err := tap.Write([]byte(chunk)); n != len(chunk) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", chunk, n, err)
		}
	}
	if want := []string{"first", "second", "third", "last"}; !slices.Equal(lines, want) {
		t.Errorf("lines %q, want %q (a line over maxTapLine skipped, the unfinished one kept back)", lines, want)
	}
	if !strings.HasSuffix(out.String(), long+"\nlast\nunfinished") {
		t.Errorf("the writer did not get everything through")
	}
}

func TestStreamFileRoundTrip(t *testing.T) {
	r := &runner{work: t.TempDir(), stream: generate(50)}
	name, err := r.streamFile()
	if err != nil {
		t.Fatal(err)
	}
	if again, err := r.streamFile(); err != nil || again != name || filepath.Dir(name) != r.work {
		t.Errorf("second streamFile: %q, %v; want %q again", again, err, name)
	}
	got, err := readStreamFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(r.stream.msgs) {
		t.Fatalf("%d messages read back, want %d", len(got), len(r.stream.msgs))
	}
	for i, m := range got {
		w := r.stream.msgs[i]
		if m.key != w.key || m.id != w.id || !bytes.Equal(m.body, w.body) {
			t.Fatalf("message %d: %s %s %q, want %s %s %q", i, m.key, m.id, m.body, w.key, w.id, w.body)
		}
	}
}

func TestPipelineBatchRowAndChecks(t *testing.T) {
	round := func(batch, single float64, verified string, retried int64) Pair {
		return Pair{Service: IngestResult{EventsPerSecond: batch, Complete: true, Verified: verified, Retried: retried},
			Ceiling: IngestResult{EventsPerSecond: single, Complete: true, Verified: "ok"}}
	}
	rounds := []Pair{round(45000, 15000, "ok", 0), round(20000, 16000, "ok", 0), round(50000, 14000, "2 of 9 stock rows differ", 3)}
	b := BatchPipeline{PerMessage: 100, Prefetch: 2000, Pair: medianPair(rounds)}
	if b.Chosen != 0 {
		t.Fatalf("chosen round %d, want 0 (ratio 3.00 is the median of 3.00, 1.25, 3.57)", b.Chosen)
	}
	rep := &Report{PipelineBatch: b}
	rep.pipelineBatchRow()
	row := rep.Rows[0]
	if row.Value != 45000 || *row.Ceiling != 15000 || *row.Ratio != 3 || row.Pass == nil || !*row.Pass ||
		!strings.Contains(row.Note, "ratios 3.00, 1.25, 3.57") || !strings.Contains(row.Case, "100 events") {
		t.Errorf("row %+v", row)
	}
	if strings.Contains(row.Note, "CPU s per") {
		t.Errorf("row note has a CPU bound without CPU figures: %s", row.Note)
	}
	cs := pipelineBatchChecks(b, rounds)
	if len(cs) != 3 {
		t.Fatalf("%d checks, want 3", len(cs))
	}
	if c := cs[0]; c.OK || c.Speed || !strings.Contains(c.Detail, "round 3: 2 of 9 stock rows differ") {
		t.Errorf("ledger check %+v", c)
	}
	if c := cs[1]; c.OK || c.Speed || !strings.Contains(c.Detail, "round 3: rejected 0, retried 3") {
		t.Errorf("dead letters check %+v", c)
	}
	if c := cs[2]; !c.OK || !c.Speed || !strings.Contains(c.Detail, "3.00×: 45,000 events/s") || !strings.Contains(c.Detail, "3.00×, 1.25×, 3.57×") {
		t.Errorf("speed check %+v", c)
	}
	b.Pair = medianPair(rounds[1:2])
	if c := pipelineBatchChecks(b, rounds[1:2])[2]; c.OK {
		t.Errorf("speed check passes at 1.25×: %+v", c)
	}
}

func TestConfirmedCount(t *testing.T) {
	for _, tc := range []struct {
		line string
		n    int64
		ok   bool
	}{
		{"publishing: published 40000/100000, confirmed 38976, 19488 ev/s", 38976, true},
		{"done: published 100000, confirmed 100000, republished 0 in 5.533s (18074 ev/s confirmed)", 100000, true},
		{bareConfirmed + " 2048", 2048, true},
		{bareDone + " confirmed 100000 in 5.120 s", 100000, true},
		{"time=… msg=\"produce started\" exchange=x", 0, false},
		{"ev/s confirmed)", 0, false},
	} {
		if n, ok := confirmedCount([]byte(tc.line)); n != tc.n || ok != tc.ok {
			t.Errorf("confirmedCount(%q) = %d, %v; want %d, %v", tc.line, n, ok, tc.n, tc.ok)
		}
	}
}

func TestCPUBoundNote(t *testing.T) {
	single := IngestResult{Events: 100000, CPUSeconds: 3.7, PublisherCPUSeconds: 2.4, PostgresCPUSeconds: 5.3, BrokerCPUSeconds: 8.6, HostCPUBusy: 0.9}
	batch := IngestResult{Events: 50000, CPUSeconds: 1.0, PublisherCPUSeconds: 0.5, PostgresCPUSeconds: 2.75, BrokerCPUSeconds: 0.25, HostCPUBusy: 0.6}
	// single: 20.0 s per 100,000 events; batch: 4.5 s per 50,000, so 9.0 per 100,000.
	got := cpuBoundNote(single, batch)
	for _, want := range []string{"single 20.0, batch 9.0 (2.22×)", "host busy 90% and 60%", "at most 2.47×"} {
		if !strings.Contains(got, want) {
			t.Errorf("note %q lacks %q", got, want)
		}
	}
	batch.BrokerCPUSeconds = 0
	if got := cpuBoundNote(single, batch); got != "" {
		t.Errorf("note without the broker's CPU: %q, want none", got)
	}
}
