package http_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"

	httpadapter "warehouse/adapters/http"
	"warehouse/domain"
	"warehouse/ports"
)

// FuzzAppendJSONString: the hand-written string encoder of history pages writes exactly
// what encoding/json writes, whatever the string (sources and ids come from publishers).
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "WH-3322", `a"b\c`, "<script>&amp;", "\x00\x01\x1f\x7f", "\u2028\u2029",
		"héllo ✓ 𝄞", "\xff\xfe bad utf-8 \xc3", "tab\tnew\nline\rcr\bbs\fff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := httpadapter.AppendJSONString(nil, s); string(got) != string(want) {
			t.Fatalf("%q: wrote %s, encoding/json writes %s", s, got, want)
		}
	})
}

// TestHistoryPageJSON: the hand-written history page is byte for byte what encoding/json
// writes of the same list, with and without a next cursor.
func TestHistoryPageJSON(t *testing.T) {
	at := time.Date(2025, 2, 18, 12, 0, 0, 250_000_000, time.FixedZone("MSK", 3*3600))
	page := ports.HistoryPage{Items: []domain.HistoryEntry{
		{MovementID: domain.MovementID(uuid.New()), Kind: domain.Arrival, Source: `WH "north" <1>`, EventID: "id\u2028\x01",
			Position: domain.Position{Timestamp: at, Seq: 7}, RecordedAt: at.Add(time.Hour), Delta: 150, Balance: 150},
		{MovementID: domain.MovementID(uuid.New()), Kind: domain.Departure, Source: "WH-3322", EventID: "x",
			Position: domain.Position{Timestamp: at.Add(time.Minute), Seq: 9}, RecordedAt: at, Delta: -20, Balance: 130},
	}}
	for _, next := range []*domain.Position{nil, {Timestamp: at, Seq: 9}} {
		page.Next = next
		got, want, err := httpadapter.HistoryPageJSON(page)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("hand-written\n%s\nencoding/json\n%s", got, want)
		}
	}
	if got, want, _ := httpadapter.HistoryPageJSON(ports.HistoryPage{}); string(got) != string(want) {
		t.Errorf("empty page: %s, encoding/json %s", got, want)
	}
}

// BenchmarkHistoryPageJSON compares the hand-written encoder with encoding/json on a full
// 50-entry page, the common answer of GET /api/warehouses/{id}/products/{id}/history.
func BenchmarkHistoryPageJSON(b *testing.B) {
	at := time.Date(2025, 2, 18, 12, 0, 0, 250_000_000, time.UTC)
	var page ports.HistoryPage
	for i := range 50 {
		page.Items = append(page.Items, domain.HistoryEntry{MovementID: domain.MovementID(uuid.New()), Kind: domain.Arrival,
			Source: "WH-3322", EventID: uuid.NewString(), Position: domain.Position{Timestamp: at.Add(time.Duration(i) * time.Minute), Seq: int64(i)},
			RecordedAt: at, Delta: 10, Balance: int64(10 * i)})
	}
	page.Next = &domain.Position{Timestamp: at, Seq: 50}
	b.Run("hand-written", func(b *testing.B) {
		var buf []byte
		for b.Loop() {
			buf = httpadapter.AppendHistoryPage(buf[:0], page)
		}
		b.SetBytes(int64(len(buf)))
	})
	b.Run("encoding/json", func(b *testing.B) {
		var n int
		for b.Loop() {
			out, err := httpadapter.MarshalHistoryPage(page)
			if err != nil {
				b.Fatal(err)
			}
			n = len(out)
		}
		b.SetBytes(int64(n))
	})
}
