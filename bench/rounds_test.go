package bench

import (
	"strings"
	"testing"
)

func pairOf(service, ceiling float64) Pair {
	return Pair{Service: IngestResult{EventsPerSecond: service, Verified: "ok"}, Ceiling: IngestResult{EventsPerSecond: ceiling, Verified: "ok"}}
}

func TestMedianPair(t *testing.T) {
	for _, tc := range []struct {
		name   string
		rounds []Pair
		chosen int
	}{
		{"one round", []Pair{pairOf(50, 100)}, 0},
		{"odd count", []Pair{pairOf(70, 100), pairOf(50, 100), pairOf(60, 100)}, 2},
		{"odd count, median first", []Pair{pairOf(60, 100), pairOf(90, 100), pairOf(30, 100)}, 0},
		{"ratio, not service figure", []Pair{pairOf(100, 100), pairOf(80, 200), pairOf(30, 50)}, 2},
		{"even count: lower middle", []Pair{pairOf(80, 100), pairOf(50, 100), pairOf(70, 100), pairOf(60, 100)}, 3},
		{"two rounds: the lower", []Pair{pairOf(80, 100), pairOf(60, 100)}, 1},
		{"ties: the earliest round", []Pair{pairOf(60, 100), pairOf(30, 50), pairOf(90, 100)}, 0},
		{"all tied", []Pair{pairOf(5, 10), pairOf(5, 10), pairOf(5, 10)}, 0},
		{"ties around the middle", []Pair{pairOf(90, 100), pairOf(50, 100), pairOf(50, 100), pairOf(10, 100)}, 1},
		{"zero ceiling counts as ratio 0", []Pair{pairOf(60, 100), pairOf(70, 0), pairOf(80, 100)}, 0},
		{"zero ceiling ties with a zero ratio: the earliest", []Pair{pairOf(0, 100), pairOf(50, 0), pairOf(80, 100)}, 0},
		{"zero ceiling first, tied with a later zero ratio", []Pair{pairOf(50, 0), pairOf(0, 100), pairOf(80, 100)}, 0},
		{"every ceiling zero", []Pair{pairOf(60, 0), pairOf(70, 0)}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := medianPair(tc.rounds)
			if p.Chosen != tc.chosen {
				t.Fatalf("chosen round %d, want %d (rounds %+v)", p.Chosen, tc.chosen, p.Rounds)
			}
			want := tc.rounds[tc.chosen]
			if p.Service.EventsPerSecond != want.Service.EventsPerSecond || p.Ceiling.EventsPerSecond != want.Ceiling.EventsPerSecond {
				t.Errorf("pair %+v / %+v is not round %d's", p.Service, p.Ceiling, tc.chosen)
			}
			if len(p.Rounds) != len(tc.rounds) {
				t.Fatalf("%d rounds recorded, want %d", len(p.Rounds), len(tc.rounds))
			}
			for i, rr := range p.Rounds {
				s, c := tc.rounds[i].Service.EventsPerSecond, tc.rounds[i].Ceiling.EventsPerSecond
				want := 0.0
				if c > 0 {
					want = s / c
				}
				if rr.Service != s || rr.Ceiling != c || rr.Ratio != want {
					t.Errorf("round %d recorded as %+v, want %v / %v = %v", i, rr, s, c, want)
				}
			}
		})
	}
	if p := medianPair(nil); p.Chosen != 0 || p.Rounds != nil {
		t.Errorf("no rounds: %+v", p)
	}
}

func TestRoundsNote(t *testing.T) {
	p := medianPair([]Pair{pairOf(70, 100), pairOf(1, 3), pairOf(60, 0)})
	if got, want := roundsNote(p), "median of 3 rounds (ratios 0.70, 0.33, —)"; got != want {
		t.Errorf("note %q, want %q", got, want)
	}
	if got := roundsNote(medianPair([]Pair{pairOf(70, 100)})); got != "" {
		t.Errorf("one round: note %q, want none", got)
	}
	rep := &Report{Settings: Settings{Rounds: 3}, Drain: p, Pipeline: p}
	rep.build()
	if !strings.Contains(rep.Rows[0].Note, "median of 3 rounds (ratios 0.70, 0.33, —)") {
		t.Errorf("drain row note %q", rep.Rows[0].Note)
	}
	md := rep.markdown()
	for _, want := range []string{"median of 3 rounds (ratios 0.70, 0.33, —)", "drain and pipeline in 3 alternating rounds (ceiling, then service), the median round shown", "| drain (round 2 of 3) | service |"} {
		if !strings.Contains(md, want) {
			t.Errorf("README.md lacks %q", want)
		}
	}
	if strings.Contains(md, "{rounds}") {
		t.Error("README.md has the placeholder {rounds}")
	}
}

func TestRoundsSuffix(t *testing.T) {
	for i, want := range []string{"", "_r2", "_r3"} {
		if got := roundSuffix(i, "_"); got != want {
			t.Errorf("roundSuffix(%d) = %q, want %q", i, got, want)
		}
	}
}

func TestChecksEveryRound(t *testing.T) {
	ok := pairOf(100, 100)
	bad := pairOf(100, 100)
	bad.Service.Verified = "99 events stored, want 100"
	bad.Ceiling.Verified = "99 rows stored, want 100 (<nil>)"
	bad.Service.Retried = 2
	byName := func(cs []Check) map[string]Check {
		m := map[string]Check{}
		for _, c := range cs {
			m[c.Name] = c
		}
		return m
	}

	cs := byName(checks(&Report{Reads: ReadsResult{JSONMatches: "ok"}}, []Pair{ok, bad, ok}, []Pair{ok, ok, ok}))
	for name, want := range map[string]string{
		"drain: service stored exactly the stream (event count, every stock row)":  "round 2: 99 events stored, want 100",
		"drain: bare consumer stored every row":                                    "round 2: 99 rows stored, want 100 (<nil>)",
		"drain: no dead letters, retries or duplicates (the stream is consistent)": "round 2: rejected 0, retried 2, duplicates 0",
	} {
		c, found := cs[name]
		if !found {
			t.Fatalf("no check %q", name)
		}
		if c.OK || c.Detail != want {
			t.Errorf("%s: ok %v, detail %q; want a failure %q", name, c.OK, c.Detail, want)
		}
	}
	for name, want := range map[string]string{
		"pipeline: service stored exactly the stream (event count, every stock row)":  "ok in all 3 rounds",
		"pipeline: no dead letters, retries or duplicates (the stream is consistent)": "rejected 0, retried 0, duplicates 0 in all 3 rounds",
	} {
		if c := cs[name]; !c.OK || c.Detail != want {
			t.Errorf("%s: ok %v, detail %q; want a pass %q", name, c.OK, c.Detail, want)
		}
	}

	// one round: the details of old, without a round number
	cs = byName(checks(&Report{}, []Pair{bad}, []Pair{ok}))
	if c := cs["drain: service stored exactly the stream (event count, every stock row)"]; c.OK || c.Detail != "99 events stored, want 100" {
		t.Errorf("one failing round: ok %v, detail %q", c.OK, c.Detail)
	}
	if c := cs["pipeline: service stored exactly the stream (event count, every stock row)"]; !c.OK || c.Detail != "ok" {
		t.Errorf("one passing round: ok %v, detail %q", c.OK, c.Detail)
	}
}
