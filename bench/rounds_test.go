package bench

import (
	"fmt"
	"slices"
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

// ratioTexts returns what a reader must find for each round, in round order: its ratio
// service / ceiling to two decimals, or a dash when it measured no ceiling; and the round
// whose ratio is the median (the lower middle; ties go to the earliest round).
func ratioTexts(figures [][2]float64) (texts []string, median int) {
	ratios := make([]float64, len(figures))
	for i, f := range figures {
		texts = append(texts, "—")
		if f[1] > 0 {
			ratios[i] = f[0] / f[1]
			texts[i] = fmt.Sprintf("%.2f", ratios[i])
		}
	}
	order := make([]int, len(figures))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		switch {
		case ratios[a] < ratios[b]:
			return -1
		case ratios[a] > ratios[b]:
			return 1
		}
		return 0
	})
	return texts, order[(len(order)-1)/2]
}

// mustListInOrder fails unless s holds every one of parts, in that order.
func mustListInOrder(t *testing.T, what, s string, parts []string) {
	t.Helper()
	at := 0
	for _, p := range parts {
		i := strings.Index(s[at:], p)
		if i < 0 {
			t.Errorf("%s %q lacks %q after byte %d (want %q in order)", what, s, p, at, parts)
			return
		}
		at += i + len(p)
	}
}

func TestRoundsNote(t *testing.T) {
	figures := [][2]float64{{70, 100}, {1, 3}, {60, 0}}
	pairs := make([]Pair, len(figures))
	for i, f := range figures {
		pairs[i] = pairOf(f[0], f[1])
	}
	texts, median := ratioTexts(figures)
	p := medianPair(pairs)
	if p.Chosen != median {
		t.Fatalf("chosen round %d, want %d", p.Chosen, median)
	}
	note := roundsNote(p.Rounds)
	mustListInOrder(t, "note", note, append([]string{fmt.Sprintf("%d rounds", len(figures))}, texts...))
	if got := roundsNote(medianPair([]Pair{pairOf(70, 100)}).Rounds); got != "" {
		t.Errorf("one round: note %q, want none", got)
	}
	rep := &Report{Settings: Settings{Rounds: len(figures)}, Drain: p, Pipeline: p}
	rep.build()
	if rep.Rows[0].Phase != "drain" || !strings.Contains(rep.Rows[0].Note, note) {
		t.Errorf("first row %+v: want the drain's, noting %q", rep.Rows[0], note)
	}
	md := rep.markdown()
	for _, want := range []string{note, roundsSetting(len(figures)),
		fmt.Sprintf("| drain (round %d of %d) | service |", median+1, len(figures))} {
		if !strings.Contains(md, want) {
			t.Errorf("README.md lacks %q", want)
		}
	}
	if s := roundsSetting(len(figures)); !strings.Contains(s, fmt.Sprint(len(figures))) || !strings.Contains(s, "median") {
		t.Errorf("settings %q: want the number of rounds and that the median is shown", s)
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

func readRoundOf(service, ceiling float64) readRound {
	return readRound{service: ReadResult{RequestsPerSecond: service, P99Ms: service / 1000},
		ceiling: ReadResult{RequestsPerSecond: ceiling, P99Ms: ceiling / 1000}}
}

func TestReadCaseMedianRound(t *testing.T) {
	figures := [][2]float64{{9000, 10000}, {4000, 10000}, {7000, 10000}}
	texts, median := ratioTexts(figures)
	c := ReadCase{Route: routeStock, Cache: cacheOff}
	c.setMedianRound([]readRound{readRoundOf(9000, 10000), readRoundOf(4000, 10000), readRoundOf(7000, 10000)})
	if c.Chosen != median || median != 2 {
		t.Fatalf("chosen round %d, want 2 (rounds %+v)", c.Chosen, c.Rounds)
	}
	if c.Service.RequestsPerSecond != 7000 || c.Ceiling.RequestsPerSecond != 10000 || c.Service.P99Ms != 7 {
		t.Errorf("figures %+v / %+v are not round 3's", c.Service, c.Ceiling)
	}
	if len(c.Rounds) != 3 || c.Rounds[1] != (RoundRatio{Service: 4000, Ceiling: 10000, Ratio: 0.4}) {
		t.Errorf("rounds %+v", c.Rounds)
	}

	rep := &Report{Settings: Settings{Rounds: 3}, Reads: ReadsResult{Cases: []ReadCase{c}}}
	rep.build()
	var row *Row
	for i := range rep.Rows {
		if rep.Rows[i].Phase == "reads" && rep.Rows[i].Figure == "req/s" {
			row = &rep.Rows[i]
		}
	}
	if row == nil {
		t.Fatal("no req/s row for the read case")
	}
	mustListInOrder(t, "note", row.Note, append([]string{fmt.Sprintf("%d rounds", len(figures))}, texts...))
	if row.Pass == nil || !*row.Pass {
		t.Errorf("row %+v: want the median round's pass", *row)
	}
	if md := rep.markdown(); !strings.Contains(md, fmt.Sprintf("| stock, uncached (round %d of %d) | service |", median+1, len(figures))) {
		t.Errorf("details table does not name the round shown:\n%s", md)
	}

	one := ReadCase{}
	one.setMedianRound([]readRound{readRoundOf(5, 10)})
	if one.Chosen != 0 || roundsNote(one.Rounds) != "" || one.Service.RequestsPerSecond != 5 {
		t.Errorf("one round: %+v", one)
	}
}

func TestReadErrorsCheckEveryRound(t *testing.T) {
	var rr ReadsResult
	rr.JSONMatches = "ok"
	rr.countErrors(ReadResult{})
	rr.countErrors(ReadResult{Errors: 3, FirstError: "status 500"})
	rr.countErrors(ReadResult{Errors: 1, FirstError: "timeout"})
	// the chosen round's figures have no errors: the check must still see the others
	rr.Cases = []ReadCase{{Route: routeStock, Cache: cacheOn}}
	for _, c := range checks(&Report{Reads: rr}, nil, nil) {
		if strings.HasPrefix(c.Name, "reads: every request answered 200") {
			if c.OK || c.Detail != "4 errors status 500" {
				t.Errorf("check %+v, want a failure with 4 errors and the first one", c)
			}
			return
		}
	}
	t.Fatal("no reads error check")
}
