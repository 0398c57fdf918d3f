package bench

import (
	"fmt"
	"slices"
	"strings"
)

// roundSuffix is what round i (0-based) adds to the names it creates: nothing for the
// first round, so that a run of one round keeps the names of old, then sep+"r2",
// sep+"r3"… ("_" for databases and tables, "-" for topologies and children).
func roundSuffix(i int, sep string) string {
	if i == 0 {
		return ""
	}
	return fmt.Sprintf("%sr%d", sep, i+1)
}

// newRoundRatio is a round's figures; its ratio is 0 when the ceiling measured nothing.
func newRoundRatio(service, ceiling float64) RoundRatio {
	rr := RoundRatio{Service: service, Ceiling: ceiling}
	if rr.Ceiling > 0 {
		rr.Ratio = rr.Service / rr.Ceiling
	}
	return rr
}

// medianRound returns the index of the round whose ratio is the median: the lower middle
// of an even count and, of rounds with that same ratio, the earliest. A round whose
// ceiling measured nothing has the ratio 0, so that it never lifts the median.
func medianRound(rounds []RoundRatio) int {
	if len(rounds) == 0 {
		return 0
	}
	ratios := make([]float64, len(rounds))
	for i, rr := range rounds {
		ratios[i] = rr.Ratio
	}
	slices.Sort(ratios)
	median := ratios[(len(ratios)-1)/2]
	return slices.IndexFunc(rounds, func(rr RoundRatio) bool { return rr.Ratio == median })
}

// medianPair returns the median round of a phase, with every round's figures in Rounds
// and its own index in Chosen: every figure of the pair comes from that one round.
func medianPair(rounds []Pair) Pair {
	if len(rounds) == 0 {
		return Pair{}
	}
	ratios := make([]RoundRatio, len(rounds))
	for i, p := range rounds {
		ratios[i] = newRoundRatio(p.Service.EventsPerSecond, p.Ceiling.EventsPerSecond)
	}
	chosen := medianRound(ratios)
	p := rounds[chosen]
	p.Rounds, p.Chosen = ratios, chosen
	return p
}

// readRound is one round of a read case: the service's figures and its ceiling's.
type readRound struct {
	service, ceiling ReadResult
}

// setMedianRound fills c from its rounds: Service and Ceiling from the round whose ratio
// of requests/s is the median (as medianPair chooses), every round's figures in Rounds.
func (c *ReadCase) setMedianRound(rounds []readRound) {
	if len(rounds) == 0 {
		return
	}
	c.Rounds = make([]RoundRatio, len(rounds))
	for i, rd := range rounds {
		c.Rounds[i] = newRoundRatio(rd.service.RequestsPerSecond, rd.ceiling.RequestsPerSecond)
	}
	c.Chosen = medianRound(c.Rounds)
	c.Service, c.Ceiling = rounds[c.Chosen].service, rounds[c.Chosen].ceiling
}

// roundsNote is the note of a phase's or a read case's row: every round's ratio, in
// round order.
func roundsNote(rounds []RoundRatio) string {
	if len(rounds) < 2 {
		return ""
	}
	ratios := make([]string, len(rounds))
	for i, rr := range rounds {
		ratios[i] = "—"
		if rr.Ceiling > 0 {
			ratios[i] = fmt.Sprintf("%.2f", rr.Ratio)
		}
	}
	return fmt.Sprintf("median of %d rounds (ratios %s)", len(rounds), strings.Join(ratios, ", "))
}

func (r *runner) logRounds(phase string, p Pair) {
	r.log.Info("rounds done", "phase", phase, "rounds", len(p.Rounds), "round_shown", p.Chosen+1,
		"ratio", round(p.Rounds[p.Chosen].Ratio), "note", roundsNote(p.Rounds))
}

// everyRound is a check over every round of a phase: ok reports whether a round passes and
// detail describes it. It fails when any round fails, its detail naming each failing
// round; when every round passes its detail is the rounds' common one (they agree for
// the checks built on it), else each round's in turn.
func everyRound[R any](name string, rounds []R, ok func(R) bool, detail func(R) string) Check {
	c := Check{Name: name, OK: true}
	details := make([]string, len(rounds))
	var failed []string
	for i, p := range rounds {
		details[i] = detail(p)
		if !ok(p) {
			c.OK = false
			failed = append(failed, fmt.Sprintf("round %d: %s", i+1, details[i]))
		}
	}
	switch {
	case len(rounds) == 1:
		c.Detail = details[0]
	case !c.OK:
		c.Detail = strings.Join(failed, "; ")
	case len(slices.Compact(slices.Clone(details))) == 1:
		c.Detail = fmt.Sprintf("%s in all %d rounds", details[0], len(rounds))
		if len(rounds) == 2 {
			c.Detail = details[0] + " in both rounds"
		}
	default:
		for i := range details {
			details[i] = fmt.Sprintf("round %d: %s", i+1, details[i])
		}
		c.Detail = strings.Join(details, "; ")
	}
	return c
}
