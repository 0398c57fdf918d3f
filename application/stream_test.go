package application_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"warehouse/adapters/memory"
	"warehouse/application"
	"warehouse/domain"
	"warehouse/ports"
	"warehouse/ports/portstest"
)

// startStream runs a Stream on store until the test ends.
func startStream(t *testing.T, store *memory.Store, opts application.StreamOptions) *application.Stream {
	t.Helper()
	s := application.NewStream(store, opts, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

func supplies(n int, k domain.StockKey) []domain.Event {
	out := make([]domain.Event, n)
	for i := range out {
		out[i] = portstest.Supply(k.Warehouse, k.Product, 1)
	}
	return out
}

func newKey() domain.StockKey {
	return domain.StockKey{Warehouse: domain.WarehouseID(uuid.New()), Product: domain.ProductID(uuid.New())}
}

func mustSubscribe(t *testing.T, s ports.ChangeStream, after int64, f ports.StreamFilter) ports.Subscription {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sub, err := s.Subscribe(ctx, after, f)
	if err != nil {
		t.Fatalf("Subscribe(%d): %v", after, err)
	}
	t.Cleanup(sub.Close)
	return sub
}

// mustTake reads n changes, failing on a gap in the positions (unfiltered subs) or a wait
// longer than 5 s.
func mustTake(t *testing.T, sub ports.Subscription, n int) []domain.Change {
	t.Helper()
	var out []domain.Change
	for len(out) < n {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := sub.Next(ctx)
		cancel()
		if err != nil {
			t.Fatalf("after %d of %d changes: %v", len(out), n, err)
		}
		out = append(out, c)
	}
	return out
}

func mustStore(t *testing.T, store ports.Store, events []domain.Event) {
	t.Helper()
	res, err := store.Apply(context.Background(), events)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r != nil {
			t.Fatal(r)
		}
	}
}

func TestStreamLive(t *testing.T) {
	store := memory.NewStore()
	k := newKey()
	mustStore(t, store, supplies(3, k)) // before the subscription: not sent
	s := startStream(t, store, application.StreamOptions{})
	sub := mustSubscribe(t, s, ports.FromNow, ports.StreamFilter{})
	mustStore(t, store, supplies(5, k))
	got := mustTake(t, sub, 5)
	for i, c := range got {
		if want := int64(3+i) * domain.ChangesPerEvent; c.Position != want+1 || c.Stock.Quantity != int64(4+i) {
			t.Errorf("change %d: position %d stock %d, want %d and %d", i, c.Position, c.Stock.Quantity, want+1, 4+i)
		}
	}
}

// TestStreamResumeSeam replays from a position while batches keep coming, and takes
// every change after it exactly once, in order, across the switch from replay to live.
func TestStreamResumeSeam(t *testing.T) {
	store := memory.NewStore()
	s := startStream(t, store, application.StreamOptions{ReadLimit: 7})
	k := newKey()
	for range 20 {
		mustStore(t, store, supplies(5, k))
	}
	const total = 20*5 + 50*3
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 50 {
			if _, err := store.Apply(context.Background(), supplies(3, k)); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	for _, after := range []int64{0, 37, 38} { // 37: the movement change of event 19, so its stock change comes first
		sub := mustSubscribe(t, s, after, ports.StreamFilter{})
		first := after/domain.ChangesPerEvent + 1 // 1-based number of the first event whose stock change is after
		got := mustTake(t, sub, total-int(first)+1)
		for i, c := range got {
			n := first + int64(i)
			if c.Position != (n-1)*domain.ChangesPerEvent+1 || c.Stock.Quantity != n {
				t.Fatalf("after %d, change %d: position %d stock %d, want event %d (position %d)", after, i, c.Position, c.Stock.Quantity, n, (n-1)*domain.ChangesPerEvent+1)
			}
		}
		sub.Close()
	}
	<-done
}

func TestStreamFilter(t *testing.T) {
	store := memory.NewStore()
	s := startStream(t, store, application.StreamOptions{})
	a, b := newKey(), newKey()
	mustStore(t, store, append(supplies(2, a), supplies(2, b)...))
	sub := mustSubscribe(t, s, 0, ports.StreamFilter{Warehouse: &b.Warehouse})
	mustStore(t, store, append(supplies(1, a), supplies(1, b)...))
	for i, c := range mustTake(t, sub, 3) {
		if c.Stock.WarehouseID != b.Warehouse || c.Stock.Quantity != int64(i+1) {
			t.Errorf("change %d: %+v, want stock %d of warehouse b", i, c.Stock, i+1)
		}
	}
}

// TestStreamSlowClient: a reader that does not read is dropped once its buffer is full,
// after what it holds; a reader that reads gets everything; the writer never waits.
func TestStreamSlowClient(t *testing.T) {
	store := memory.NewStore()
	s := startStream(t, store, application.StreamOptions{Buffer: 4})
	slow := mustSubscribe(t, s, ports.FromNow, ports.StreamFilter{})
	fast := mustSubscribe(t, s, ports.FromNow, ports.StreamFilter{})
	k := newKey()
	var taken []domain.Change
	for range 10 {
		mustStore(t, store, supplies(1, k))
		taken = append(taken, mustTake(t, fast, 1)...)
	}
	if len(taken) != 10 || taken[9].Stock.Quantity != 10 {
		t.Fatalf("fast reader got %d changes", len(taken))
	}
	var err error
	n := 0
	for err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = slow.Next(ctx)
		cancel()
		n++
	}
	if !errors.Is(err, ports.ErrSlowClient) || n-1 > 4 {
		t.Errorf("slow reader: %d changes then %v, want at most 4 then ErrSlowClient", n-1, err)
	}
	if st := s.Stats(); st.Dropped != 1 || st.Clients != 2 {
		t.Errorf("stats = %+v, want 1 dropped and 2 open (the dropped one is not closed yet)", st)
	}
}

func TestStreamMaxClients(t *testing.T) {
	store := memory.NewStore()
	s := startStream(t, store, application.StreamOptions{MaxClients: 2})
	a := mustSubscribe(t, s, ports.FromNow, ports.StreamFilter{})
	mustSubscribe(t, s, ports.FromNow, ports.StreamFilter{})
	if _, err := s.Subscribe(context.Background(), ports.FromNow, ports.StreamFilter{}); !errors.Is(err, ports.ErrTooManyClients) {
		t.Fatalf("third subscription: err = %v, want ErrTooManyClients", err)
	}
	a.Close()
	a.Close() // twice is harmless and frees one slot only
	mustSubscribe(t, s, ports.FromNow, ports.StreamFilter{})
	if _, err := s.Subscribe(context.Background(), ports.FromNow, ports.StreamFilter{}); !errors.Is(err, ports.ErrTooManyClients) {
		t.Fatalf("after a close and a new one: err = %v, want ErrTooManyClients", err)
	}
}

func TestStreamGoneAndAhead(t *testing.T) {
	store := memory.NewStore()
	store.SetMaxChanges(5)
	s := startStream(t, store, application.StreamOptions{})
	mustStore(t, store, supplies(8, newKey()))
	if _, err := s.Subscribe(context.Background(), 0, ports.StreamFilter{}); !errors.Is(err, ports.ErrGone) {
		t.Errorf("Subscribe(0) with 3 events pruned: err = %v, want ErrGone", err)
	}
	if _, err := s.Subscribe(context.Background(), 1000, ports.StreamFilter{}); !errors.Is(err, domain.ErrInvalid) {
		t.Errorf("Subscribe(1000) beyond the head: err = %v, want ErrInvalid", err)
	}
	if st := s.Stats(); st.Clients != 0 {
		t.Errorf("%d clients counted after refused subscriptions", st.Clients)
	}
	sub := mustSubscribe(t, s, 6, ports.StreamFilter{})
	if c := mustTake(t, sub, 1)[0]; c.Position != 7 {
		t.Errorf("Subscribe(6): first change at %d, want 7", c.Position)
	}
}

func TestStreamStops(t *testing.T) {
	store := memory.NewStore()
	s := application.NewStream(store, application.StreamOptions{}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = s.Run(ctx) })
	sub := mustSubscribe(t, s, ports.FromNow, ports.StreamFilter{})
	cancel()
	wg.Wait()
	rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer rcancel()
	if _, err := sub.Next(rctx); !errors.Is(err, application.ErrStreamStopped) {
		t.Errorf("Next after the stream stopped: err = %v, want ErrStreamStopped", err)
	}
	if _, err := s.Subscribe(rctx, ports.FromNow, ports.StreamFilter{}); !errors.Is(err, application.ErrStreamStopped) {
		t.Errorf("Subscribe after the stream stopped: err = %v, want ErrStreamStopped", err)
	}
}

// handFollowed is a change log whose follow hints the test sends.
type handFollowed struct {
	*memory.Store
	hints chan int64
}

func (h handFollowed) Follow(context.Context) <-chan int64 { return h.hints }

// TestStreamSeamFollowerBehind: a subscriber that replayed further than the follower had
// read joins the live ones; when the follower then reads the changes the subscriber
// already replayed, the subscriber gets none of them twice.
func TestStreamSeamFollowerBehind(t *testing.T) {
	store := memory.NewStore()
	log := handFollowed{Store: store, hints: make(chan int64, 1)}
	s := application.NewStream(log, application.StreamOptions{Poll: time.Hour}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	defer func() { cancel(); <-done }()

	k := newKey()
	mustSubscribe(t, s, ports.FromNow, ports.StreamFilter{}).Close() // once it returns, the follower's head is 0
	mustStore(t, store, supplies(4, k))                              // no hint: the follower does not know
	sub := mustSubscribe(t, s, 0, ports.StreamFilter{})
	got := mustTake(t, sub, 4) // replayed from the log, then live from position 8
	mustStore(t, store, supplies(2, k))
	log.hints <- 6 * domain.ChangesPerEvent // the follower reads all 6 events' changes
	got = append(got, mustTake(t, sub, 2)...)
	for i, c := range got {
		if c.Stock.Quantity != int64(i+1) {
			t.Fatalf("change %d: stock %d, want %d: a change came twice or was skipped", i, c.Stock.Quantity, i+1)
		}
	}
}
