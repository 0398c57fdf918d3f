package amqp

import (
	"slices"
	"testing"

	"github.com/google/uuid"

	"warehouse/domain"
)

// laneEvent is an event of product p in movement m under identity id; splitLanes reads
// nothing else.
func laneEvent(id string, m domain.MovementID, p domain.ProductID) domain.Event {
	return domain.Event{Source: "WH-1", ID: id, MovementID: m, ProductID: p}
}

// productsInLanes returns one product for each of n lanes.
func productsInLanes(t *testing.T, n int) []domain.ProductID {
	t.Helper()
	ps := make([]domain.ProductID, n)
	found := 0
	for range 10000 {
		p := domain.ProductID(uuid.New())
		if l := laneOf(p, n); ps[l] == (domain.ProductID{}) {
			ps[l] = p
			found++
		}
		if found == n {
			return ps
		}
	}
	t.Fatalf("no product for some of %d lanes in 10000 tries", n)
	return nil
}

func TestSplitLanesByProduct(t *testing.T) {
	ps := productsInLanes(t, 2)
	m := func() domain.MovementID { return domain.MovementID(uuid.New()) }
	m1 := m()
	events := []domain.Event{
		laneEvent("a", m1, ps[0]), laneEvent("b", m(), ps[1]), laneEvent("c", m1, ps[0]),
		laneEvent("d", m(), ps[1]), laneEvent("e", m(), ps[0]),
	}
	got := splitLanes(events, 2, 1)
	if len(got) != 2 {
		t.Fatalf("lanes %v, want 2", got)
	}
	want := map[domain.ProductID][]int{ps[0]: {0, 2, 4}, ps[1]: {1, 3}}
	for _, lane := range got {
		if w := want[events[lane[0]].ProductID]; !slices.Equal(lane, w) {
			t.Errorf("lane %v, want %v: every event of its product, in delivery order", lane, w)
		}
	}
}

func TestSplitLanesKeepsBatchWhole(t *testing.T) {
	ps := productsInLanes(t, 2)
	m1, m2 := domain.MovementID(uuid.New()), domain.MovementID(uuid.New())
	for _, tc := range []struct {
		name   string
		n      int
		events []domain.Event
	}{
		{"one lane configured", 1, []domain.Event{laneEvent("a", m1, ps[0]), laneEvent("b", m2, ps[1])}},
		// Which leg is the conflict depends on which commits first: one transaction.
		{"a movement in two lanes", 2, []domain.Event{laneEvent("a", m1, ps[0]), laneEvent("b", m2, ps[1]), laneEvent("c", m1, ps[1])}},
		// Which event is the duplicate likewise.
		{"an identity in two lanes", 2, []domain.Event{laneEvent("a", m1, ps[0]), laneEvent("a", m2, ps[1])}},
		{"every event in one lane", 2, []domain.Event{laneEvent("a", m1, ps[1]), laneEvent("b", m2, ps[1])}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := splitLanes(tc.events, tc.n, 1)
			if len(got) != 1 || !slices.Equal(got[0], []int{0, 1, 2}[:len(tc.events)]) {
				t.Errorf("lanes %v, want one lane of every event in order", got)
			}
		})
	}
}

func TestSplitLanesNeedsMinEachPerLane(t *testing.T) {
	ps := productsInLanes(t, 2)
	var events []domain.Event
	for i := range 6 {
		events = append(events, laneEvent(uuid.NewString(), domain.MovementID(uuid.New()), ps[i%2]))
	}
	if got := splitLanes(events, 2, 4); len(got) != 1 {
		t.Errorf("6 events, lanes of at least 4: lanes %v, want one", got)
	}
	if got := splitLanes(events, 2, 3); len(got) != 2 {
		t.Errorf("6 events, lanes of at least 3: lanes %v, want two", got)
	}
	// Three lanes configured, room for two: the products of the third go with the others.
	if got := splitLanes(events, 3, 3); len(got) > 2 {
		t.Errorf("6 events, 3 lanes of at least 3: lanes %v, want at most two", got)
	}
}
