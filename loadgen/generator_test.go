package loadgen_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"testing"
	"time"

	"warehouse/adapters/memory"
	"warehouse/domain"
	"warehouse/loadgen"
)

// mustGenerate returns the first n events of a generator built from opts, and the generator.
func mustGenerate(t *testing.T, opts loadgen.Options, n int) ([]domain.Event, *loadgen.Generator) {
	t.Helper()
	g := loadgen.NewGenerator(opts)
	events := make([]domain.Event, n)
	for i := range events {
		events[i] = g.Next()
	}
	return events, g
}

// mustReplay applies events in stream order to a fresh memory store, in batches, and
// fails on any refusal but a duplicate. It returns the store and the duplicates counted.
func mustReplay(t *testing.T, events []domain.Event) (*memory.Store, int) {
	t.Helper()
	ctx := context.Background()
	store := memory.NewStore()
	dups := 0
	const batch = 97 // any size: the store judges a batch in order
	for start := 0; start < len(events); start += batch {
		chunk := events[start:min(start+batch, len(events))]
		results, err := store.Apply(ctx, chunk)
		if err != nil {
			t.Fatalf("Apply: %v", err)
		}
		for i, r := range results {
			switch {
			case r == nil:
			case errors.Is(r, domain.ErrDuplicate):
				dups++
			default:
				e := chunk[i]
				t.Fatalf("event %d (%s %s of %d, movement %s) refused: %v", start+i, e.Source, e.Kind, e.Quantity, e.MovementID, r)
			}
		}
	}
	return store, dups
}

// mustMatchExpected checks that the store holds exactly the generator's expected stock:
// the same rows (every row a stored event touched) with the same quantities.
func mustMatchExpected(t *testing.T, store *memory.Store, events []domain.Event, want map[domain.StockKey]int64) {
	t.Helper()
	ctx := context.Background()
	rows := map[domain.StockKey]bool{}
	for _, e := range events {
		rows[e.StockKey()] = true
	}
	for k := range rows {
		s, err := store.Stock(ctx, k.Warehouse, k.Product)
		if err != nil {
			t.Fatalf("Stock(%s, %s): %v", k.Warehouse, k.Product, err)
		}
		q, ok := want[k]
		if !ok {
			t.Errorf("stock row (%s, %s) = %d is missing from Expected()", k.Warehouse, k.Product, s.Quantity)
			continue
		}
		if s.Quantity != q {
			t.Errorf("stock (%s, %s) = %d, Expected() says %d", k.Warehouse, k.Product, s.Quantity, q)
		}
	}
	if len(want) != len(rows) {
		t.Errorf("Expected() has %d rows, the store %d", len(want), len(rows))
	}
}

func TestGeneratorReplayIsConsistent(t *testing.T) {
	start := time.Date(2025, 2, 18, 8, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		opts loadgen.Options
		n    int
	}{
		{"produce defaults", loadgen.Options{Warehouses: 10, Products: 50, Seed: 1, LossShare: 0.05, OutOfOrderShare: 0.1, Start: start}, 5000},
		{"duplicates, losses and disorder", loadgen.Options{Warehouses: 10, Products: 20, Seed: 2, LossShare: 0.3, DuplicateShare: 0.2, OutOfOrderShare: 0.5}, 5000},
		// two warehouses sharing one product: every departure competes for the same rows
		{"tight network, every transfer out of order", loadgen.Options{Warehouses: 2, Products: 1, Seed: 3, LossShare: 0.5, DuplicateShare: 0.1, OutOfOrderShare: 1}, 5000},
		{"tight network, in order", loadgen.Options{Warehouses: 2, Products: 1, Seed: 4, LossShare: 1}, 3000},
		{"one warehouse: supplies only", loadgen.Options{Warehouses: 1, Products: 3, Seed: 5, DuplicateShare: 0.3}, 300},
		{"large network", loadgen.Options{Warehouses: 300, Products: 1000, Seed: 6, LossShare: 0.1, DuplicateShare: 0.05, OutOfOrderShare: 0.2}, 5000},
		{"zero options", loadgen.Options{}, 200},
		{"mostly duplicates", loadgen.Options{Warehouses: 4, Products: 4, Seed: 7, DuplicateShare: 0.9, OutOfOrderShare: 0.5}, 2000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			events, g := mustGenerate(t, tc.opts, tc.n)
			store, dups := mustReplay(t, events)
			if want := g.Stats().Duplicates; dups != want {
				t.Errorf("the store refused %d duplicates, the generator injected %d", dups, want)
			}
			if tc.opts.DuplicateShare == 0 && dups != 0 {
				t.Errorf("%d duplicates with DuplicateShare 0", dups)
			}
			mustMatchExpected(t, store, events, g.Expected())
		})
	}
}

// TestGeneratorManySeeds runs the replay over many seeds of a small, busy network, where
// a departure that the store could refuse would show up quickly.
func TestGeneratorManySeeds(t *testing.T) {
	for seed := range uint64(40) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel()
			opts := loadgen.Options{Warehouses: 3, Products: 2, Seed: seed, LossShare: 0.2, DuplicateShare: 0.1, OutOfOrderShare: 0.4}
			events, g := mustGenerate(t, opts, 2000)
			store, dups := mustReplay(t, events)
			if dups != g.Stats().Duplicates {
				t.Errorf("the store refused %d duplicates, the generator injected %d", dups, g.Stats().Duplicates)
			}
			mustMatchExpected(t, store, events, g.Expected())
		})
	}
}

func TestGeneratorIsReproducible(t *testing.T) {
	opts := loadgen.Options{Warehouses: 5, Products: 7, Seed: 42, LossShare: 0.2, DuplicateShare: 0.1, OutOfOrderShare: 0.3}
	a, ga := mustGenerate(t, opts, 2000)
	b, gb := mustGenerate(t, opts, 2000)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("two generators with the same options produced different streams")
	}
	if !reflect.DeepEqual(ga.Expected(), gb.Expected()) || ga.Stats() != gb.Stats() {
		t.Error("two generators with the same options expect different stock")
	}

	other := opts
	other.Seed++
	c, _ := mustGenerate(t, other, 10)
	if c[0].ID == a[0].ID || c[0].WarehouseID == a[0].WarehouseID && c[0].ProductID == a[0].ProductID {
		t.Errorf("seeds %d and %d start alike: %+v, %+v", opts.Seed, other.Seed, a[0], c[0])
	}

	// the network depends on the seed alone
	shares := opts
	shares.LossShare, shares.DuplicateShare, shares.OutOfOrderShare = 0, 0, 0
	if !reflect.DeepEqual(loadgen.NewGenerator(shares).Warehouses(), ga.Warehouses()) {
		t.Error("the warehouses changed with the shares")
	}
}

// TestGeneratorStream checks the shape of a stream: valid events, stable sources,
// plausible transit times and losses, arrivals first as often as asked, and event times
// that only move forward.
func TestGeneratorStream(t *testing.T) {
	const n = 20000
	opts := loadgen.Options{
		Warehouses: 12, Products: 30, Seed: 9, LossShare: 0.2, DuplicateShare: 0.05, OutOfOrderShare: 0.3,
		Start: time.Date(2025, 2, 18, 0, 0, 0, 0, time.UTC),
	}
	events, g := mustGenerate(t, opts, n)
	st := g.Stats()

	sourceOf := map[domain.WarehouseID]string{}
	sourceShape := regexp.MustCompile(`^WH-\d{4}$`)
	identities := map[domain.Identity]bool{}
	type legs struct{ dep, arr *domain.Event }
	movements := map[domain.MovementID]*legs{}
	var arrivalFirst, dups int
	lastTime := opts.Start
	for i := range events {
		e := &events[i]
		if got := mustRevalidate(t, *e); !reflect.DeepEqual(got, *e) {
			t.Fatalf("event %d does not survive NewEvent:\n got %+v\nwant %+v", i, got, *e)
		}
		if s, ok := sourceOf[e.WarehouseID]; ok && s != e.Source {
			t.Errorf("warehouse %s reported as %s and %s", e.WarehouseID, s, e.Source)
		}
		sourceOf[e.WarehouseID] = e.Source
		if !sourceShape.MatchString(e.Source) {
			t.Errorf("source %q is not WH-dddd", e.Source)
		}
		if e.Timestamp.After(e.Time) {
			t.Errorf("event %d reported at %v, before it happened at %v", i, e.Time, e.Timestamp)
		}

		m := movements[e.MovementID]
		if m == nil {
			m = &legs{}
			movements[e.MovementID] = m
		}
		leg := &m.arr
		if e.Kind == domain.Departure {
			leg = &m.dep
		}
		if identities[e.Identity()] || *leg != nil {
			dups++
			if *leg == nil || (*leg).Quantity != e.Quantity || !(*leg).Timestamp.Equal(e.Timestamp) || (*leg).WarehouseID != e.WarehouseID {
				t.Errorf("event %d repeats an identity with other data", i)
			}
			continue
		}
		identities[e.Identity()] = true
		*leg = e
		// new events only: an exact re-send repeats its original's envelope time
		if !e.Time.After(lastTime) {
			t.Errorf("event %d: envelope time %v does not move past %v", i, e.Time, lastTime)
		}
		lastTime = e.Time
		if e.Kind == domain.Departure && m.arr != nil {
			arrivalFirst++
		}
	}
	if dups != st.Duplicates {
		t.Errorf("stream repeats %d events, Stats().Duplicates = %d", dups, st.Duplicates)
	}
	if got := st.Supplies + st.Departures + st.Arrivals + st.Duplicates; got != st.Events || st.Events != n {
		t.Errorf("stats %+v do not add up to %d events", st, n)
	}
	if len(sourceOf) != opts.Warehouses {
		t.Errorf("%d warehouses reported, want %d", len(sourceOf), opts.Warehouses)
	}

	var completed, lossy int
	var lost int64
	for id, m := range movements {
		if m.dep == nil || m.arr == nil {
			continue
		}
		completed++
		if m.dep.ProductID != m.arr.ProductID || m.dep.WarehouseID == m.arr.WarehouseID {
			t.Errorf("movement %s: %+v then %+v", id, m.dep, m.arr)
		}
		if transit := m.arr.Timestamp.Sub(m.dep.Timestamp); transit < time.Hour || transit >= 6*time.Hour {
			t.Errorf("movement %s took %v, want 1h to 6h", id, transit)
		}
		switch d := m.dep.Quantity - m.arr.Quantity; {
		case d < 0 || d > 5:
			t.Errorf("movement %s: %d left, %d arrived; want a loss of 0 to 5", id, m.dep.Quantity, m.arr.Quantity)
		case d > 0:
			lossy++
			lost += d
		}
	}
	if completed < n/4 {
		t.Fatalf("only %d completed movements in %d events", completed, n)
	}
	if share := float64(arrivalFirst) / float64(completed); share < 0.2 || share > 0.4 {
		t.Errorf("%.2f of completed movements arrived first, want about %.2f", share, opts.OutOfOrderShare)
	}
	if share := float64(lossy) / float64(completed); share < 0.1 || share > 0.3 {
		t.Errorf("%.2f of completed movements lost units, want about %.2f", share, opts.LossShare)
	}
	if share := float64(dups) / n; share < 0.03 || share > 0.07 {
		t.Errorf("%.3f of events are duplicates, want about %.2f", share, opts.DuplicateShare)
	}
	if st.Lossy < lossy || st.LostUnits < lost || st.OutOfOrder < arrivalFirst {
		t.Errorf("stats %+v count less than the stream shows: %d lossy, %d lost, %d arrived first", st, lossy, lost, arrivalFirst)
	}
}

func TestGeneratorWithoutSurprises(t *testing.T) {
	events, g := mustGenerate(t, loadgen.Options{Warehouses: 6, Products: 6, Seed: 11}, 3000)
	seen := map[domain.MovementID]domain.Event{}
	for i, e := range events {
		first, ok := seen[e.MovementID]
		if !ok {
			seen[e.MovementID] = e
			continue
		}
		if first.Kind != domain.Departure || e.Kind != domain.Arrival || first.Quantity != e.Quantity {
			t.Errorf("event %d: movement %s has %s of %d then %s of %d; want a departure, then an arrival of as much",
				i, e.MovementID, first.Kind, first.Quantity, e.Kind, e.Quantity)
		}
	}
	if st := g.Stats(); st.Duplicates != 0 || st.Lossy != 0 || st.OutOfOrder != 0 || st.Departures == 0 || st.Arrivals == 0 {
		t.Errorf("stats %+v: want transfers without duplicates, losses or disorder", st)
	}
}

// TestGeneratorExpectedIsACopy checks that callers cannot change the generator's state.
func TestGeneratorExpectedIsACopy(t *testing.T) {
	g := loadgen.NewGenerator(loadgen.Options{Warehouses: 2, Products: 1})
	e := g.Next()
	got := g.Expected()
	got[e.StockKey()] = -1
	if g.Expected()[e.StockKey()] != e.Quantity {
		t.Errorf("changing Expected()'s map changed the generator: %v", g.Expected())
	}
}

// mustRevalidate passes e back through domain.NewEvent as its wire fields.
func mustRevalidate(t *testing.T, e domain.Event) domain.Event {
	t.Helper()
	got, err := domain.NewEvent(domain.EventInput{
		ID: e.ID, Source: e.Source, SpecVersion: domain.SpecVersion, Type: domain.EventType,
		Time: e.Time, Attributes: e.Attributes,
		MovementID: e.MovementID.String(), WarehouseID: e.WarehouseID.String(), ProductID: e.ProductID.String(),
		Event: string(e.Kind), Timestamp: e.Timestamp.Format(time.RFC3339Nano), Quantity: e.Quantity,
	})
	if err != nil {
		t.Fatalf("NewEvent(%+v): %v", e, err)
	}
	return got
}

// TestGeneratorStaysInItsSlots checks the bound `warehouse produce` relies on to end a
// stream at the present: event n (from 0) is dated after Start + n×Interval and no later
// than NotAfter (Start + (n+1)×Interval), so n events never pass Start + n×Interval,
// whatever the jitter. A random walk of jittered steps overshot by hours (20 000 events at
// 129.6 s ended 1 h 43 min after now).
func TestGeneratorStaysInItsSlots(t *testing.T) {
	start := time.Date(2025, 2, 18, 3, 48, 20, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		n        int
		interval time.Duration
		seed     uint64
	}{
		{"30 days of 20 000 events", 20000, 30 * 24 * time.Hour / 20000, 42},
		{"default interval", 5000, 0, 7},
		{"a millisecond", 5000, time.Millisecond, 8},
		{"under a millisecond counts as one", 3000, 300 * time.Microsecond, 9},
		{"an odd interval", 5000, 1234567 * time.Microsecond, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			interval := tc.interval
			if interval == 0 {
				interval = loadgen.DefaultInterval
			}
			interval = max(interval, time.Millisecond)
			g := loadgen.NewGenerator(loadgen.Options{Warehouses: 6, Products: 10, Seed: tc.seed, LossShare: 0.1,
				DuplicateShare: 0.1, OutOfOrderShare: 0.3, Start: start, Interval: tc.interval})
			for i := range tc.n {
				notAfter := g.NotAfter()
				if want := start.Add(time.Duration(i+1) * interval); !notAfter.Equal(want) {
					t.Fatalf("event %d: NotAfter() = %v, want %v", i, notAfter, want)
				}
				e := g.Next()
				if e.Time.After(notAfter) || e.Timestamp.After(notAfter) {
					t.Fatalf("event %d: time %v, timestamp %v, after its slot's end %v", i, e.Time, e.Timestamp, notAfter)
				}
				if !e.Time.After(start) {
					t.Fatalf("event %d: time %v, not after the start %v", i, e.Time, start)
				}
			}
		})
	}
}
