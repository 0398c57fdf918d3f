package bootstrap

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	amqpadapter "warehouse/adapters/amqp"
)

// TestDeadLetterTableClipsLongFields: a publisher's 1 MiB id, routing key or reason
// does not make the table as wide: every field is clipped, and the row stays short.
func TestDeadLetterTableClipsLongFields(t *testing.T) {
	huge := strings.Repeat("i", 1<<20)
	now := time.Now()
	dls := []amqpadapter.DeadLetter{
		{ID: huge, RoutingKey: huge, Reason: huge, Detail: huge, DeadLetteredAt: now.Add(-time.Minute)},
		{ID: "short", RoutingKey: "movement.arrival", Reason: "invalid", Detail: "bad"},
	}
	var out bytes.Buffer
	if err := writeDeadLetterTable(&out, dls, now); err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(strings.TrimRight(out.String(), "\n"), "\n") {
		if n := utf8.RuneCountInString(line); n > 250 {
			t.Errorf("line %d is %d characters wide, want at most 250", i, n)
		}
	}
	if !strings.Contains(out.String(), "…") {
		t.Error("clipped fields are not marked with …")
	}
}

// TestDeadLetterLinesKeepWholeFields: the --json form keeps every field whole, with the
// time and attempts the letter carries.
func TestDeadLetterLinesKeepWholeFields(t *testing.T) {
	huge := strings.Repeat("i", 1<<20)
	at := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	var out bytes.Buffer
	err := writeDeadLetterLines(&out, []amqpadapter.DeadLetter{{ID: huge, Reason: "insufficient_stock", Attempts: 11, DeadLetteredAt: at}}, at.Add(90*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var line deadLetterLine
	if err := json.Unmarshal(out.Bytes(), &line); err != nil {
		t.Fatal(err)
	}
	if line.ID != huge || line.Attempts != 11 || line.DeadLetteredAt == nil || !line.DeadLetteredAt.Equal(at) ||
		line.AgeSeconds == nil || *line.AgeSeconds != 90 {
		t.Errorf("got id of %d bytes, attempts %d, dead-lettered at %v, age %v", len(line.ID), line.Attempts, line.DeadLetteredAt, line.AgeSeconds)
	}
}
