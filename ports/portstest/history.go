package portstest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/google/uuid"

	"warehouse/domain"
	"warehouse/ports"
)

// History runs the contract of ports.History against stores made by newStore, like
// Store: fresh random ids in every subtest, so a shared store will do. Its expected
// answers are computed here from the events the store reported stored, never by the
// code under test.
func History(t *testing.T, newStore func(t *testing.T) ports.Store) {
	t.Helper()
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, s ports.Store)
	}{
		{"as-of and history agree with a fold of random streams", testHistoryProperty},
		{"history pages across ties", testHistoryTies},
		{"as-of on a hot row", testHotRow},
		{"routes", testRoutes},
		{"in transit", testInTransit},
		{"stuck shipments", testStuckShipments},
		{"event lookup", testEventLookup},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, newStore(t))
		})
	}
}

// at is a timestamp in a year no other test uses, offset by minutes.
func at(base time.Time, minutes int) time.Time { return base.Add(time.Duration(minutes) * time.Minute) }

// randomBase is a start of time, random to the second in 2031–2040, for one test.
func randomBase(r *rand.Rand) time.Time {
	return time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(r.Int64N(9*365*24*3600)) * time.Second)
}

// eventAt is a valid event with a fresh identity and movement at timestamp ts.
func eventAt(kind domain.EventKind, w domain.WarehouseID, p domain.ProductID, qty int64, ts time.Time) domain.Event {
	return Event(kind, domain.MovementID(uuid.New()), w, p, qty, ts.Format(time.RFC3339Nano))
}

// foldAt is the stock of k as of t over stored: the sum of the deltas of its events at
// or before t, and whether there is any.
func foldAt(stored []domain.Event, k domain.StockKey, t time.Time) (q int64, found bool) {
	for _, e := range stored {
		if e.StockKey() == k && !e.Timestamp.After(t) {
			q += e.Delta()
			found = true
		}
	}
	return q, found
}

// mustHistory walks every page of f with page sizes drawn from r and returns the entries.
func mustHistory(t *testing.T, s ports.Store, f ports.HistoryFilter, r *rand.Rand) []domain.HistoryEntry {
	t.Helper()
	var out []domain.HistoryEntry
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatal("history does not end")
		}
		f.Limit = 1 + r.IntN(7)
		page, err := s.StockHistory(context.Background(), f)
		if err != nil {
			t.Fatalf("history: %v", err)
		}
		out = append(out, page.Items...)
		if page.Next == nil {
			return out
		}
		if len(page.Items) != f.Limit {
			t.Fatalf("a page of %d items of %d has a next cursor", len(page.Items), f.Limit)
		}
		f.After = page.Next
	}
}

// testHistoryProperty applies random streams, shuffled into random batches, to six
// stock rows and checks as-of, warehouse as-of and history against folds of the events
// the store reported stored.
func testHistoryProperty(t *testing.T, s ports.Store) {
	seed := uint64(time.Now().UnixNano())
	r := rand.New(rand.NewPCG(seed, 7))
	t.Logf("seed %d", seed)
	ctx := context.Background()
	base := randomBase(r)
	ws := []domain.WarehouseID{domain.WarehouseID(uuid.New()), domain.WarehouseID(uuid.New()), domain.WarehouseID(uuid.New())}
	ps := []domain.ProductID{domain.ProductID(uuid.New()), domain.ProductID(uuid.New())}
	var keys []domain.StockKey
	for _, w := range ws {
		for _, p := range ps {
			keys = append(keys, domain.StockKey{Warehouse: w, Product: p})
		}
	}
	// Timestamps fall in 300 one-minute slots, so that events of a row share some.
	var stream []domain.Event
	for range 240 {
		k := keys[r.IntN(len(keys))]
		kind := domain.Arrival
		if r.IntN(5) < 2 {
			kind = domain.Departure
		}
		stream = append(stream, eventAt(kind, k.Warehouse, k.Product, 1+r.Int64N(20), at(base, r.IntN(300))))
	}
	r.Shuffle(len(stream), func(i, j int) { stream[i], stream[j] = stream[j], stream[i] })
	var stored []domain.Event
	for i := 0; i < len(stream); {
		n := min(1+r.IntN(25), len(stream)-i)
		for j, res := range mustApply(t, s, stream[i:i+n]...) {
			if res == nil {
				stored = append(stored, stream[i+j])
			}
		}
		i += n
	}

	// As of random instants, event timestamps, before everything and after everything.
	instants := []time.Time{base.Add(-time.Hour), base.Add(400 * time.Minute), base.Add(100 * 365 * 24 * time.Hour)}
	for range 25 {
		instants = append(instants, at(base, r.IntN(300)), at(base, r.IntN(300)).Add(time.Duration(r.IntN(60))*time.Second))
	}
	for _, tm := range instants {
		for _, k := range keys {
			want, found := foldAt(stored, k, tm)
			got, err := s.StockAsOf(ctx, k.Warehouse, k.Product, tm)
			switch {
			case !found && !errors.Is(err, domain.ErrNotFound):
				t.Errorf("as of %v: %+v, %v; want not found", tm, got, err)
			case found && err != nil:
				t.Errorf("as of %v: %v", tm, err)
			case found && (got.Quantity != want || !got.AsOf.Equal(tm) || got.WarehouseID != k.Warehouse ||
				got.ProductID != k.Product || got.UpdatedAt.IsZero()):
				t.Errorf("as of %v: %+v; want quantity %d", tm, got, want)
			}
		}
		for _, w := range ws[:1] {
			var items []domain.StockAsOf
			f := ports.StockFilter{Warehouse: w, Limit: 1}
			for {
				page, err := s.WarehouseStockAsOf(ctx, f, tm)
				if err != nil {
					t.Fatalf("warehouse as of: %v", err)
				}
				items = append(items, page.Items...)
				if page.Next == nil {
					break
				}
				f.After = page.Next
			}
			var want []string
			for _, p := range ps {
				if q, found := foldAt(stored, domain.StockKey{Warehouse: w, Product: p}, tm); found {
					want = append(want, fmt.Sprintf("%s=%d", p, q))
				}
			}
			sort.Strings(want)
			var got []string
			for _, it := range items {
				got = append(got, fmt.Sprintf("%s=%d", it.ProductID, it.Quantity))
			}
			if !slices.Equal(got, want) {
				t.Errorf("warehouse as of %v: %v, want %v", tm, got, want)
			}
		}
	}
	// After the newest event, as-of is the stock now.
	for _, k := range keys {
		if st, err := s.Stock(ctx, k.Warehouse, k.Product); err == nil {
			if got, err := s.StockAsOf(ctx, k.Warehouse, k.Product, base.Add(24*time.Hour)); err != nil || got.Quantity != st.Quantity {
				t.Errorf("as of after the last event: %+v, %v; want the stock now, %d", got, err, st.Quantity)
			}
		}
	}

	for _, k := range keys {
		checkHistory(t, s, k, stored, r)
	}
}

// checkHistory walks the history of k whole and within a random window and checks it
// against stored.
func checkHistory(t *testing.T, s ports.Store, k domain.StockKey, stored []domain.Event, r *rand.Rand) {
	t.Helper()
	var mine []domain.Event
	for _, e := range stored {
		if e.StockKey() == k {
			mine = append(mine, e)
		}
	}
	all := mustHistory(t, s, ports.HistoryFilter{Warehouse: k.Warehouse, Product: k.Product}, r)
	if len(all) != len(mine) {
		t.Fatalf("history of %d entries, want %d", len(all), len(mine))
	}
	byID := make(map[string]domain.Event, len(mine))
	for _, e := range mine {
		byID[e.ID] = e
	}
	seen := make(map[string]bool, len(all))
	var balance int64
	for i, h := range all {
		e, ok := byID[h.EventID]
		if !ok || seen[h.EventID] {
			t.Fatalf("entry %d: event %q is not one stored once", i, h.EventID)
		}
		seen[h.EventID] = true
		if i > 0 && h.Position.Compare(all[i-1].Position) <= 0 {
			t.Errorf("entry %d at %+v does not come after %+v", i, h.Position, all[i-1].Position)
		}
		balance += e.Delta()
		if !h.Position.Timestamp.Equal(e.Timestamp) || h.Delta != e.Delta() || h.Kind != e.Kind || h.Source != e.Source ||
			h.MovementID != e.MovementID || h.Balance != balance || h.RecordedAt.IsZero() {
			t.Errorf("entry %d = %+v; want event %+v with balance %d", i, h, e, balance)
		}
		// Where no other event of the row shares the timestamp, the balance is as-of.
		if uniqueTimestamp(mine, e) {
			if q, _ := foldAt(mine, k, e.Timestamp); q != balance {
				t.Errorf("entry %d: balance %d, as of its timestamp %d", i, balance, q)
			}
		}
	}
	if st, err := s.Stock(context.Background(), k.Warehouse, k.Product); err == nil && len(all) > 0 && all[len(all)-1].Balance != st.Quantity {
		t.Errorf("last balance %d, stock now %d", all[len(all)-1].Balance, st.Quantity)
	}
	if len(all) == 0 {
		return
	}
	// A window keeps the entries in it, with the same balances.
	lo, hi := all[r.IntN(len(all))].Position.Timestamp, all[r.IntN(len(all))].Position.Timestamp.Add(time.Minute)
	if hi.Before(lo) {
		lo, hi = hi.Add(-time.Minute), lo
	}
	var want []domain.HistoryEntry
	for _, h := range all {
		if !h.Position.Timestamp.Before(lo) && h.Position.Timestamp.Before(hi) {
			want = append(want, h)
		}
	}
	got := mustHistory(t, s, ports.HistoryFilter{Warehouse: k.Warehouse, Product: k.Product, Since: lo, Until: hi}, r)
	if len(got) != len(want) {
		t.Fatalf("window [%v, %v): %d entries, want %d", lo, hi, len(got), len(want))
	}
	for i := range got {
		if got[i].EventID != want[i].EventID || got[i].Balance != want[i].Balance {
			t.Errorf("window entry %d = %s balance %d, want %s balance %d", i, got[i].EventID, got[i].Balance, want[i].EventID, want[i].Balance)
		}
	}
}

func uniqueTimestamp(events []domain.Event, e domain.Event) bool {
	for _, o := range events {
		if o.ID != e.ID && o.Timestamp.Equal(e.Timestamp) {
			return false
		}
	}
	return true
}

// testHistoryTies stores many events of one row at one instant over several batches, and
// pages through them one at a time: no entry is lost or repeated at the page boundaries,
// and the balances run on.
func testHistoryTies(t *testing.T, s ports.Store) {
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 11))
	base := randomBase(r)
	w, p := domain.WarehouseID(uuid.New()), domain.ProductID(uuid.New())
	var stored []domain.Event
	for b := range 4 {
		var batch []domain.Event
		for range 5 {
			batch = append(batch, eventAt(domain.Arrival, w, p, int64(1+b), base))
		}
		mustResults(t, mustApply(t, s, batch...), nil, nil, nil, nil, nil)
		stored = append(stored, batch...)
	}
	mustApply(t, s, eventAt(domain.Arrival, w, p, 100, base.Add(-time.Second)))
	all := mustHistory(t, s, ports.HistoryFilter{Warehouse: w, Product: p}, r)
	if len(all) != 21 || all[0].Delta != 100 {
		t.Fatalf("history of %d entries starting %+v, want 21 starting with the earlier arrival of 100", len(all), all)
	}
	// Ties come in ledger order: a later batch's events after an earlier one's.
	batchOf := make(map[string]int64)
	for _, e := range stored {
		batchOf[e.ID] = e.Quantity
	}
	for i := 2; i < len(all); i++ {
		if batchOf[all[i].EventID] < batchOf[all[i-1].EventID] {
			t.Errorf("entry %d of batch %d after one of batch %d", i, batchOf[all[i].EventID], batchOf[all[i-1].EventID])
		}
		if all[i].Balance != all[i-1].Balance+all[i].Delta {
			t.Errorf("entry %d: balance %d after %d and delta %d", i, all[i].Balance, all[i-1].Balance, all[i].Delta)
		}
	}
	if got, err := s.StockAsOf(context.Background(), w, p, base); err != nil || got.Quantity != all[len(all)-1].Balance {
		t.Errorf("as of the tie: %+v, %v; want %d", got, err, all[len(all)-1].Balance)
	}
}

// testHotRow stores thousands of events of one row, in time order and late, and checks
// as-of at many instants and a history page deep in it: a store that keeps running
// sums or checkpoints must keep them right when late events land before them.
func testHotRow(t *testing.T, s ports.Store) {
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 13))
	base := randomBase(r)
	w, p := domain.WarehouseID(uuid.New()), domain.ProductID(uuid.New())
	var stored []domain.Event
	apply := func(events []domain.Event) {
		for i, res := range mustApply(t, s, events...) {
			if res == nil {
				stored = append(stored, events[i])
			}
		}
	}
	const n = 6000
	for b := 0; b < n; b += 500 {
		var batch []domain.Event
		for i := b; i < b+500; i++ {
			kind := domain.Arrival
			if i%3 == 2 {
				kind = domain.Departure
			}
			batch = append(batch, eventAt(kind, w, p, int64(1+i%7), base.Add(time.Duration(i)*time.Second)))
		}
		apply(batch)
	}
	// Late events, far back and near the end, in batches of their own.
	for range 3 {
		var late []domain.Event
		for range 20 {
			late = append(late, eventAt(domain.Arrival, w, p, 1+r.Int64N(9), base.Add(time.Duration(r.IntN(n))*time.Second+time.Millisecond)))
		}
		apply(late)
	}
	k := domain.StockKey{Warehouse: w, Product: p}
	for range 40 {
		tm := base.Add(time.Duration(r.IntN(n+10)) * time.Second).Add(time.Duration(r.IntN(3)) * time.Millisecond)
		want, _ := foldAt(stored, k, tm)
		if got, err := s.StockAsOf(context.Background(), w, p, tm); err != nil || got.Quantity != want {
			t.Errorf("as of %v: %+v, %v; want %d", tm, got, err, want)
		}
	}
	// A page deep in the history starts from the right balance.
	from := base.Add(time.Duration(n/2) * time.Second)
	page, err := s.StockHistory(context.Background(), ports.HistoryFilter{Warehouse: w, Product: p, Since: from, Limit: 5})
	if err != nil || len(page.Items) == 0 {
		t.Fatalf("history from %v: %+v, %v", from, page, err)
	}
	first := page.Items[0]
	before, _ := foldAt(stored, k, first.Position.Timestamp.Add(-time.Nanosecond))
	if first.Balance != before+first.Delta {
		t.Errorf("first entry from %v: balance %d, want %d + %d", from, first.Balance, before, first.Delta)
	}
}

// route is the test's own figures of one route.
type route struct {
	movements, sent, received, lost int64
	transit                         []int64
}

// testRoutes moves goods between three fresh warehouses, inside and outside a window,
// and checks the routes against figures computed here.
func testRoutes(t *testing.T, s ports.Store) {
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 17))
	ctx := context.Background()
	base := randomBase(r)
	ws := []domain.WarehouseID{domain.WarehouseID(uuid.New()), domain.WarehouseID(uuid.New()), domain.WarehouseID(uuid.New())}
	ps := []domain.ProductID{domain.ProductID(uuid.New()), domain.ProductID(uuid.New())}
	for _, w := range ws {
		for _, p := range ps {
			mustApply(t, s, eventAt(domain.Arrival, w, p, 1_000_000, base.Add(-24*time.Hour)))
		}
	}
	since, until := base, base.Add(10*24*time.Hour)
	type key struct{ from, to int }
	want := map[key]*route{}
	wantByProduct := map[key]*route{} // ps[0] only
	for range 120 {
		from, to := r.IntN(3), r.IntN(3)
		if from == to {
			continue
		}
		p := ps[r.IntN(2)]
		dep := base.Add(time.Duration(r.Int64N(int64(12*24*time.Hour))) - 24*time.Hour) // some outside the window
		qty := 3 + r.Int64N(50)
		received := qty - r.Int64N(3) + r.Int64N(2)                         // losses, sometimes a gain
		transit := time.Duration(r.Int64N(int64(10*time.Hour))) - time.Hour // clocks may disagree
		m := domain.MovementID(uuid.New())
		d := Event(domain.Departure, m, ws[from], p, qty, dep.Format(time.RFC3339Nano))
		a := Event(domain.Arrival, m, ws[to], p, received, dep.Add(transit).Format(time.RFC3339Nano))
		events := []domain.Event{d, a}
		if r.IntN(4) == 0 {
			events = events[:1] // still in transit
		}
		if r.IntN(2) == 0 {
			slices.Reverse(events)
		}
		for i, res := range mustApply(t, s, events...) {
			if res != nil {
				t.Fatalf("event %d of a movement: %v", i, res)
			}
		}
		if len(events) == 1 || dep.Before(since) || !dep.Before(until) {
			continue
		}
		add := func(into map[key]*route) {
			rt := into[key{from, to}]
			if rt == nil {
				rt = &route{}
				into[key{from, to}] = rt
			}
			rt.movements++
			rt.sent += qty
			rt.received += received
			if received < qty {
				rt.lost += qty - received
			}
			rt.transit = append(rt.transit, int64(transit/time.Second)) // toward zero, as ElapsedSeconds
		}
		add(want)
		if p == ps[0] {
			add(wantByProduct)
		}
	}
	mine := func(rt domain.Route) (key, bool) {
		k := key{slices.Index(ws, rt.From), slices.Index(ws, rt.To)}
		return k, k.from >= 0 && k.to >= 0
	}
	check := func(name string, f ports.RouteFilter, want map[key]*route) {
		t.Helper()
		var got []domain.Route
		for {
			f.Limit = 1 + r.IntN(3)
			page, err := s.Routes(ctx, f)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			got = append(got, page.Items...)
			if page.Next == nil {
				break
			}
			f.After = page.Next
		}
		n := 0
		for i, rt := range got {
			if i > 0 && got[i-1].Compare(rt) >= 0 {
				t.Errorf("%s: route %d out of order", name, i)
			}
			k, ok := mine(rt)
			if !ok {
				continue // another test's warehouses
			}
			n++
			w := want[k]
			if w == nil {
				t.Errorf("%s: unexpected route %v", name, k)
				continue
			}
			ts := nearestRanks(w.transit)
			if rt.Movements != w.movements || rt.QuantitySent != w.sent || rt.QuantityReceived != w.received ||
				rt.QuantityLost != w.lost || rt.Transit != ts {
				t.Errorf("%s: route %v = %+v; want %d movements, %d sent, %d received, %d lost, transit %+v",
					name, k, rt, w.movements, w.sent, w.received, w.lost, ts)
			}
		}
		if n != len(want) {
			t.Errorf("%s: %d of our routes, want %d", name, n, len(want))
		}
	}
	check("all", ports.RouteFilter{Since: since, Until: until}, want)
	check("product", ports.RouteFilter{Since: since, Until: until, Product: &ps[0]}, wantByProduct)
	fromFirst := map[key]*route{}
	for k, v := range want {
		if k.from == 0 {
			fromFirst[k] = v
		}
	}
	check("from", ports.RouteFilter{Since: since, Until: until, From: &ws[0]}, fromFirst)
	toSecond := map[key]*route{}
	for k, v := range want {
		if k.to == 1 {
			toSecond[k] = v
		}
	}
	check("to", ports.RouteFilter{Since: since, Until: until, To: &ws[1]}, toSecond)
}

// nearestRanks computes the percentiles of secs here: the value at 1-based rank ⌈p·n⌉.
func nearestRanks(secs []int64) domain.TransitStats {
	s := slices.Clone(secs)
	slices.Sort(s)
	rank := func(percent int) int64 { // ⌈percent·n/100⌉ in integers
		return s[(percent*len(s)+99)/100-1]
	}
	return domain.TransitStats{P50: rank(50), P90: rank(90), P99: rank(99), Max: s[len(s)-1]}
}

// testInTransit sends goods out of one warehouse and checks what is still on the way.
func testInTransit(t *testing.T, s ports.Store) {
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 19))
	base := randomBase(r)
	w, to := domain.WarehouseID(uuid.New()), domain.WarehouseID(uuid.New())
	p1, p2 := domain.ProductID(uuid.New()), domain.ProductID(uuid.New())
	mustApply(t, s, eventAt(domain.Arrival, w, p1, 1000, base), eventAt(domain.Arrival, w, p2, 1000, base))
	depart := func(p domain.ProductID, qty int64, minutes int, arrive bool) {
		m := domain.MovementID(uuid.New())
		ts := at(base, minutes)
		events := []domain.Event{Event(domain.Departure, m, w, p, qty, ts.Format(time.RFC3339Nano))}
		if arrive {
			events = append(events, Event(domain.Arrival, m, to, p, qty, ts.Add(time.Hour).Format(time.RFC3339Nano)))
		}
		mustApply(t, s, events...)
	}
	depart(p1, 5, 30, false)
	depart(p1, 7, 10, false)
	depart(p1, 100, 5, true)
	depart(p2, 3, 50, false)
	depart(p2, 9, 1, true)
	got, err := s.InTransit(context.Background(), w)
	if err != nil {
		t.Fatal(err)
	}
	want := []domain.TransitLoad{
		{ProductID: p1, Movements: 2, Quantity: 12, OldestDeparture: at(base, 10)},
		{ProductID: p2, Movements: 1, Quantity: 3, OldestDeparture: at(base, 50)},
	}
	slices.SortFunc(want, func(a, b domain.TransitLoad) int { return slices.Compare(a.ProductID[:], b.ProductID[:]) })
	if len(got) != len(want) {
		t.Fatalf("in transit = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].ProductID != want[i].ProductID || got[i].Movements != want[i].Movements ||
			got[i].Quantity != want[i].Quantity || !got[i].OldestDeparture.Equal(want[i].OldestDeparture) {
			t.Errorf("in transit %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if got, err := s.InTransit(context.Background(), to); err != nil || len(got) != 0 {
		t.Errorf("in transit from the receiver: %+v, %v; want none", got, err)
	}
}

// testStuckShipments lists in-transit movements that departed before a time.
func testStuckShipments(t *testing.T, s ports.Store) {
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 23))
	base := randomBase(r)
	w := domain.WarehouseID(uuid.New())
	p := domain.ProductID(uuid.New())
	mustApply(t, s, eventAt(domain.Arrival, w, p, 1000, base.Add(-time.Hour)))
	var old []domain.MovementID
	for i := range 6 {
		m := domain.MovementID(uuid.New())
		mustApply(t, s, Event(domain.Departure, m, w, p, 1, at(base, i*10).Format(time.RFC3339Nano)))
		if i < 4 {
			old = append(old, m)
		}
	}
	// completed, and arrived only: never stuck
	m := domain.MovementID(uuid.New())
	mustApply(t, s, Event(domain.Departure, m, w, p, 1, at(base, 1).Format(time.RFC3339Nano)),
		Event(domain.Arrival, m, domain.WarehouseID(uuid.New()), p, 1, at(base, 2).Format(time.RFC3339Nano)))
	page, err := s.Movements(context.Background(), ports.MovementFilter{
		Warehouse: &w, Status: domain.InTransit, DepartedBefore: at(base, 35), Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var got []domain.MovementID
	for _, m := range page.Items {
		got = append(got, m.ID)
	}
	slices.Reverse(old) // newest first
	if !slices.Equal(got, old) {
		t.Errorf("stuck = %v, want %v", got, old)
	}
}

// testEventLookup finds a stored event with its envelope, and not an unknown one.
func testEventLookup(t *testing.T, s ports.Store) {
	e := eventAt(domain.Arrival, domain.WarehouseID(uuid.New()), domain.ProductID(uuid.New()), 4, time.Date(2033, 3, 3, 3, 3, 3, 3000, time.UTC))
	e.Attributes = []byte(`{"subject":"WH-1:ARRIVAL"}`)
	e.Time = time.Date(2033, 3, 3, 3, 3, 4, 0, time.UTC)
	before := time.Now().Add(-time.Minute)
	mustResults(t, mustApply(t, s, e), nil)
	other := e
	other.Quantity = 5 // the same identity with other data: a duplicate, the first one stays
	mustResults(t, mustApply(t, s, other), domain.ErrDuplicate)
	got, err := s.Event(context.Background(), e.Source, e.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != e.ID || got.Source != e.Source || got.Quantity != 4 || !got.Timestamp.Equal(e.Timestamp) ||
		!got.Time.Equal(e.Time) || got.MovementID != e.MovementID || got.Kind != e.Kind ||
		string(got.Attributes) != `{"subject": "WH-1:ARRIVAL"}` && string(got.Attributes) != `{"subject":"WH-1:ARRIVAL"}` ||
		got.RecordedAt.Before(before) || got.Seq <= 0 {
		t.Errorf("event = %+v (attributes %s), want the first one stored", got, got.Attributes)
	}
	if _, err := s.Event(context.Background(), e.Source, uuid.NewString()); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("unknown event: %v, want not found", err)
	}
}
