package domain

import (
	"regexp"
	"testing"
)

// rfc3339Grammar is the grammar rfc3339Shaped spells out, as the regexp it replaced.
var rfc3339Grammar = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:[0-5]\d)$`)

var rfc3339Cases = []string{
	"2025-02-18T14:34:56Z", "2025-02-18T14:34:56+03:00", "2025-02-18T14:34:56-05:30",
	"2025-02-18T14:34:56.1Z", "2025-02-18T14:34:56.123456789Z", "2025-02-18T14:34:56.1234567890Z",
	"2025-02-18T14:34:56.Z", "2025-02-18T14:34:56,123Z", "2025-02-18T14:34:56+03:60",
	"2025-02-18T14:34:56+03:59", "2025-02-18T14:34:56+0300", "2025-02-18T14:34:56",
	"2025-02-18T14:34:56z", "2025-02-18t14:34:56Z", "2025-02-18 14:34:56Z", "25-02-18T14:34:56Z",
	"2025-2-18T14:34:56Z", "2025-02-18T14:34:56ZZ", "2025-02-18T14:34:56.5+03:00",
	"2025-02-18T14:34:56.5+03:0", "2025-02-18T14:34:56+03:00\n", "x2025-02-18T14:34:56Z",
	"2025-02-18T14:34:5aZ", "2025-02-18T14:34:56.12a4Z", "", "Z", "2025-02-18T14:34:56+",
	"2025-02-18T14:34:56-00:00", "9999-12-31T23:59:59.999999999-23:59", "2025-02-18T14:34:56.١Z",
}

func TestRFC3339ShapedMatchesGrammar(t *testing.T) {
	for _, s := range rfc3339Cases {
		if got, want := rfc3339Shaped(s), rfc3339Grammar.MatchString(s); got != want {
			t.Errorf("rfc3339Shaped(%q) = %v, the grammar says %v", s, got, want)
		}
	}
}

func FuzzRFC3339Shaped(f *testing.F) {
	for _, s := range rfc3339Cases {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := rfc3339Shaped(s), rfc3339Grammar.MatchString(s); got != want {
			t.Errorf("rfc3339Shaped(%q) = %v, the grammar says %v", s, got, want)
		}
	})
}
