package postgres_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"warehouse/adapters/postgres"
	"warehouse/adapters/postgres/pgtest"
	"warehouse/domain"
	"warehouse/ports"
	"warehouse/ports/portstest"
)

// cutProxy forwards TCP to target until cut, which closes the listener and every
// connection: to the store, the database has gone away.
type cutProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
}

func mustCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target}
	go p.accept()
	t.Cleanup(p.cut)
	return p
}

func (p *cutProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		go func() { _, _ = io.Copy(up, c); _ = up.Close() }()
		go func() { _, _ = io.Copy(c, up); _ = c.Close() }()
	}
}

func (p *cutProxy) cut() {
	_ = p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		_ = c.Close()
	}
}

// TestOutageIsUnavailable: when the database goes away, reads, writes and pings fail
// fast with ports.ErrUnavailable (a 503, a held batch) instead of hanging or looking
// like bad input.
func TestOutageIsUnavailable(t *testing.T) {
	dbURL := pgtest.MustDatabase(t)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := mustCutProxy(t, u.Host)
	u.Host = proxy.ln.Addr().String()
	store := postgres.NewStore(pgtest.MustOpen(t, u.String()))
	ctx := context.Background()
	x := portstest.NewSample()
	if _, err := store.Apply(ctx, []domain.Event{x.Arrival}); err != nil {
		t.Fatalf("apply through the proxy: %v", err)
	}
	proxy.cut()

	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	start := time.Now()
	checks := map[string]error{}
	_, checks["movement"] = store.Movement(ctx, x.Movement)
	_, checks["stock"] = store.Stock(ctx, x.To, x.Product)
	_, checks["list"] = store.Movements(ctx, ports.MovementFilter{Limit: 10})
	_, checks["apply"] = store.Apply(ctx, []domain.Event{portstest.Supply(domain.WarehouseID(uuid.New()), x.Product, 1)})
	checks["ping"] = store.Ping(ctx)
	for name, err := range checks {
		if !errors.Is(err, ports.ErrUnavailable) {
			t.Errorf("%s during the outage: %v, want ErrUnavailable", name, err)
		}
		if errors.Is(err, domain.ErrNotFound) || errors.Is(err, domain.ErrInvalid) {
			t.Errorf("%s during the outage looks like bad input: %v", name, err)
		}
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the outage took %v to surface, want well under the 5 s deadline", d)
	}
}
