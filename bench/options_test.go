package bench

import (
	"slices"
	"strings"
	"testing"
)

func TestPhasesOption(t *testing.T) {
	base := Options{Binary: "/bin/sh", Self: "/bin/sh", DatabaseURL: "postgres://x", AMQPURL: "amqp://x"}.withDefaults()
	if got := base.phases(); !slices.Equal(got, AllPhases) {
		t.Errorf("no --phases: %v, want every phase", got)
	}
	o := base
	o.Phases = []string{PhaseStream, PhaseHTTPIngest}
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	if got := o.phases(); !slices.Equal(got, []string{PhaseHTTPIngest, PhaseStream}) {
		t.Errorf("phases %v, want them in the run's order", got)
	}
	for _, tc := range []struct {
		phases []string
		err    string
	}{
		{[]string{"drains"}, `unknown phase "drains"`},
		{[]string{PhaseReads}, "the reads phase needs the drain phase"},
	} {
		o := base
		o.Phases = tc.phases
		if err := o.validate(); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("phases %v: error %v, want %q", tc.phases, err, tc.err)
		}
	}
	o = base
	o.StreamClients = maxStreamClients + 1
	if err := o.validate(); err == nil || !strings.Contains(err.Error(), "--stream-clients") {
		t.Errorf("too many stream clients: error %v", err)
	}
	if base.streamClients() != DefaultStreamClients || (Options{Smoke: true}).streamClients() != SmokeStreamClients {
		t.Errorf("stream clients: %d, smoke %d", base.streamClients(), (Options{Smoke: true}).streamClients())
	}
	if (Options{Rounds: 3}).lateRounds() != maxLateRounds || (Options{Rounds: 1}).lateRounds() != 1 {
		t.Error("the later phases' rounds are not min(rounds, maxLateRounds)")
	}
}
