package domain_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"warehouse/domain"
)

// leg returns a leg at a fresh warehouse with the given timestamp and quantity.
func leg(ts time.Time, qty int64) *domain.Leg {
	return &domain.Leg{WarehouseID: domain.WarehouseID(uuid.New()), Source: "WH-TEST", Timestamp: ts, Quantity: qty}
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	ts, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	return ts
}

func TestMovementStatus(t *testing.T) {
	ts := time.Date(2025, 2, 18, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		departure *domain.Leg
		arrival   *domain.Leg
		want      domain.MovementStatus
	}{
		{"departure only", leg(ts, 1), nil, domain.InTransit},
		{"arrival only", nil, leg(ts, 1), domain.Arrived},
		{"both", leg(ts, 1), leg(ts, 1), domain.Completed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := domain.Movement{Departure: tc.departure, Arrival: tc.arrival}
			if got := m.Status(); got != tc.want {
				t.Errorf("Status() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParseMovementStatus(t *testing.T) {
	tests := []struct {
		in      string
		want    domain.MovementStatus
		wantErr error
	}{
		{"in_transit", domain.InTransit, nil},
		{"arrived", domain.Arrived, nil},
		{"completed", domain.Completed, nil},
		{"", "", domain.ErrInvalid},
		{"COMPLETED", "", domain.ErrInvalid},
		{"in-transit", "", domain.ErrInvalid},
		{"lost", "", domain.ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := domain.ParseMovementStatus(tc.in)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("ParseMovementStatus(%q): err = %v, want %v", tc.in, err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("ParseMovementStatus(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestMovementTime(t *testing.T) {
	dep := time.Date(2025, 2, 18, 12, 12, 56, 0, time.UTC)
	arr := time.Date(2025, 2, 18, 14, 34, 56, 0, time.UTC)
	tests := []struct {
		name      string
		departure *domain.Leg
		arrival   *domain.Leg
		want      time.Time
	}{
		{"departure only", leg(dep, 1), nil, dep},
		{"arrival only", nil, leg(arr, 1), arr},
		{"both: the departure's", leg(dep, 1), leg(arr, 1), dep},
		{"both, arrival earlier: still the departure's", leg(arr, 1), leg(dep, 1), arr},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := domain.Movement{Departure: tc.departure, Arrival: tc.arrival}
			if got := m.Time(); !got.Equal(tc.want) {
				t.Errorf("Time() = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestMovementElapsedSeconds(t *testing.T) {
	tests := []struct {
		name               string
		departure, arrival string
		want               int64
	}{
		{"sample pair", "2025-02-18T12:12:56Z", "2025-02-18T14:34:56Z", 8520},
		{"same instant", "2025-02-18T12:00:00Z", "2025-02-18T12:00:00Z", 0},
		{"same instant, other offsets", "2025-02-18T15:00:00+03:00", "2025-02-18T12:00:00Z", 0},
		{"across offsets", "2025-02-18T12:00:00+03:00", "2025-02-18T12:00:00Z", 3 * 3600},
		{"arrival before departure", "2025-02-18T14:34:56Z", "2025-02-18T12:12:56Z", -8520},
		{"+1.9 s truncates to 1", "2025-02-18T12:00:00Z", "2025-02-18T12:00:01.9Z", 1},
		{"-1.9 s truncates to -1", "2025-02-18T12:00:01.9Z", "2025-02-18T12:00:00Z", -1},
		{"+0.5 s truncates to 0", "2025-02-18T12:00:00.7Z", "2025-02-18T12:00:01.2Z", 0},
		{"-0.5 s truncates to 0", "2025-02-18T12:00:01.2Z", "2025-02-18T12:00:00.7Z", 0},
		{"+1.2 s across a second boundary", "2025-02-18T12:00:00.9Z", "2025-02-18T12:00:02.1Z", 1},
		{"-1.2 s across a second boundary", "2025-02-18T12:00:02.1Z", "2025-02-18T12:00:00.9Z", -1},
		{"+0.999999 s", "2025-02-18T12:00:00Z", "2025-02-18T12:00:00.999999Z", 0},
		{"+1.000001 s", "2025-02-18T12:00:00Z", "2025-02-18T12:00:01.000001Z", 1},
		// before 1970, Unix seconds are negative: truncation must still go toward zero
		{"+1.9 s before the epoch", "1960-01-01T00:00:00Z", "1960-01-01T00:00:01.9Z", 1},
		{"-1.9 s before the epoch", "1960-01-01T00:00:01.9Z", "1960-01-01T00:00:00Z", -1},
		{"+1.5 s across the epoch", "1969-12-31T23:59:59.5Z", "1970-01-01T00:00:01Z", 1},
		// 1 826 212 days between 0001-01-01 and 5001-01-01 (proleptic Gregorian):
		// far beyond time.Duration, which saturates after about 292 years
		{"5000 years", "0001-01-01T00:00:00Z", "5001-01-01T00:00:00Z", 1_826_212 * 86400},
		{"-5000 years", "5001-01-01T00:00:00Z", "0001-01-01T00:00:00Z", -1_826_212 * 86400},
		{"5000 years less 0.5 s", "0001-01-01T00:00:00.5Z", "5001-01-01T00:00:00Z", 1_826_212*86400 - 1},
		{"year 1 to 9999", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z", 315_537_897_599},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := domain.Movement{Departure: leg(mustTime(t, tc.departure), 1), Arrival: leg(mustTime(t, tc.arrival), 1)}
			got, ok := m.ElapsedSeconds()
			if !ok || got != tc.want {
				t.Errorf("ElapsedSeconds() = %d, %v; want %d, true", got, ok, tc.want)
			}
		})
	}
}

func TestMovementDerivedValuesNeedBothLegs(t *testing.T) {
	ts := time.Date(2025, 2, 18, 12, 0, 0, 0, time.UTC)
	for name, m := range map[string]domain.Movement{
		"departure only": {Departure: leg(ts, 100)},
		"arrival only":   {Arrival: leg(ts, 98)},
	} {
		t.Run(name, func(t *testing.T) {
			if secs, ok := m.ElapsedSeconds(); ok {
				t.Errorf("ElapsedSeconds() = %d, true; want not known", secs)
			}
			if d, ok := m.QuantityDifference(); ok {
				t.Errorf("QuantityDifference() = %d, true; want not known", d)
			}
		})
	}
}

func TestMovementQuantityDifference(t *testing.T) {
	ts := time.Date(2025, 2, 18, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name             string
		departed, arrive int64
		want             int64
	}{
		{"sample pair: 2 lost", 100, 98, -2},
		{"nothing lost", 100, 100, 0},
		{"more arrived than left", 5, 7, 2},
		{"extremes", 1_000_000_000, 1, -999_999_999},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := domain.Movement{Departure: leg(ts, tc.departed), Arrival: leg(ts, tc.arrive)}
			if got, ok := m.QuantityDifference(); !ok || got != tc.want {
				t.Errorf("QuantityDifference() = %d, %v; want %d, true", got, ok, tc.want)
			}
		})
	}
}

func TestMovementApply(t *testing.T) {
	in := validInput()
	arr, err := domain.NewEvent(in)
	if err != nil {
		t.Fatalf("NewEvent: %v", err)
	}
	in.ID, in.Source, in.Event, in.Timestamp, in.Quantity = "dep-1", "WH-3322", "departure", "2025-02-18T12:12:56Z", 100
	in.WarehouseID = "0a1b2c3d-0000-4000-8000-000000000001"
	dep, err := domain.NewEvent(in)
	if err != nil {
		t.Fatalf("NewEvent: %v", err)
	}

	var m domain.Movement
	m = m.Apply(arr)
	if m.ID != arr.MovementID || m.ProductID != arr.ProductID || m.Departure != nil || m.Arrival == nil {
		t.Fatalf("after arrival: %+v", m)
	}
	if *m.Arrival != (domain.Leg{WarehouseID: arr.WarehouseID, Source: "WH-3423", Timestamp: arr.Timestamp, Quantity: 100}) {
		t.Errorf("arrival leg = %+v", *m.Arrival)
	}
	before := m
	m = m.Apply(dep)
	if before.Departure != nil {
		t.Errorf("Apply changed the movement it was called on")
	}
	if m.Status() != domain.Completed || m.Arrival == nil || m.Arrival.Quantity != 100 {
		t.Fatalf("after departure: %+v", m)
	}
	if *m.Departure != (domain.Leg{WarehouseID: dep.WarehouseID, Source: "WH-3322", Timestamp: dep.Timestamp, Quantity: 100}) {
		t.Errorf("departure leg = %+v", *m.Departure)
	}
	if secs, ok := m.ElapsedSeconds(); !ok || secs != 8520 {
		t.Errorf("ElapsedSeconds() = %d, %v; want 8520", secs, ok)
	}
}

func TestMovementCursorBefore(t *testing.T) {
	at := time.Date(2025, 2, 18, 12, 0, 0, 0, time.UTC)
	low := domain.MovementID(uuid.MustParse("10000000-0000-4000-8000-000000000000"))
	mid := domain.MovementID(uuid.MustParse("80000000-0000-4000-8000-000000000000"))
	high := domain.MovementID(uuid.MustParse("f0000000-0000-4000-8000-000000000000"))
	// differs from mid only in its last byte: the comparison must look at every byte
	midPlus := domain.MovementID(uuid.MustParse("80000000-0000-4000-8000-000000000001"))
	cursor := domain.MovementCursor{Time: at, ID: mid}

	departed := func(id domain.MovementID, ts time.Time) domain.Movement {
		return domain.Movement{ID: id, Departure: leg(ts, 1)}
	}
	tests := []struct {
		name string
		m    domain.Movement
		want bool
	}{
		{"older: next page", departed(high, at.Add(-time.Microsecond)), true},
		{"newer: previous page", departed(low, at.Add(time.Microsecond)), false},
		{"same time, lower id: next page", departed(low, at), true},
		{"same time, higher id: previous page", departed(high, at), false},
		{"same time, id one byte higher: previous page", departed(midPlus, at), false},
		{"the cursor's own movement", departed(mid, at), false},
		{"same instant in another zone, lower id", departed(low, at.In(time.FixedZone("MSK", 3*3600))), true},
		{"same instant in another zone, same id", departed(mid, at.In(time.FixedZone("MSK", 3*3600))), false},
		{"arrival-only movement ordered by arrival", domain.Movement{ID: high, Arrival: leg(at.Add(-time.Hour), 1)}, true},
		{"completed movement ordered by departure, not arrival", domain.Movement{
			ID: high, Departure: leg(at.Add(-time.Hour), 1), Arrival: leg(at.Add(time.Hour), 1),
		}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := cursor.Before(tc.m); got != tc.want {
				t.Errorf("Before(%s at %v) = %v, want %v", tc.m.ID, tc.m.Time(), got, tc.want)
			}
		})
	}
}

// TestMovementCursorBeforeIsStrict checks that for any two distinct movements exactly one
// comes first, so a listing split into pages neither repeats nor skips an item.
func TestMovementCursorBeforeIsStrict(t *testing.T) {
	at := time.Date(2025, 2, 18, 12, 0, 0, 0, time.UTC)
	var ms []domain.Movement
	for i := range 40 {
		ms = append(ms, domain.Movement{ID: domain.MovementID(uuid.New()), Departure: leg(at.Add(time.Duration(i%4)*time.Second), 1)})
	}
	for _, a := range ms {
		ca := domain.MovementCursor{Time: a.Time(), ID: a.ID}
		for _, b := range ms {
			cb := domain.MovementCursor{Time: b.Time(), ID: b.ID}
			bAfterA, aAfterB := ca.Before(b), cb.Before(a)
			switch {
			case a.ID == b.ID && (bAfterA || aAfterB):
				t.Errorf("%s comes after itself", a.ID)
			case a.ID != b.ID && bAfterA == aAfterB:
				t.Errorf("%s and %s: b after a %v, a after b %v; want exactly one", a.ID, b.ID, bAfterA, aAfterB)
			}
		}
	}
}

func TestMovementCloneOwnsItsLegs(t *testing.T) {
	orig := domain.Movement{
		Departure: &domain.Leg{Quantity: 100},
		Arrival:   &domain.Leg{Quantity: 98},
	}
	c := orig.Clone()
	c.Departure.Quantity, c.Arrival.Quantity = 1, 2
	if orig.Departure.Quantity != 100 || orig.Arrival.Quantity != 98 {
		t.Errorf("changing the clone changed the original: %+v %+v", *orig.Departure, *orig.Arrival)
	}
	if (domain.Movement{}).Clone().Departure != nil {
		t.Error("a clone of a movement without legs grew one")
	}
}
