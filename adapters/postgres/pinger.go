package postgres

import (
	"context"
	"database/sql"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/stdlib"

	"warehouse/ports"
)

// Pinger checks that PostgreSQL answers, on a connection of its own outside the Store's
// pool. Readiness asks whether the database is up, not whether the pool has a free
// connection: a pool busy with reads under load must not make a healthy database look
// down (and take the process out of the load balancer, which only moves the load).
// Concurrent pings share the one in flight, so a burst of probes costs one round trip.
// It is safe for concurrent use.
type Pinger struct {
	db *sql.DB

	mu     sync.Mutex
	flight *pingCall // the ping in flight, nil when none
}

// pingCall is one ping shared by every caller that arrived while it ran.
type pingCall struct {
	done chan struct{}
	err  error
}

var _ ports.Pinger = (*Pinger)(nil)

// OpenPinger returns a Pinger on a pool of one connection to opts.URL (MaxConns is
// ignored). It does not connect yet: the first Ping does, and a broken connection is
// replaced on the next one.
func OpenPinger(opts Options) (*Pinger, error) {
	cfg, err := connConfig(opts)
	if err != nil {
		return nil, err
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxIdleTime(5 * time.Minute)
	return &Pinger{db: db}, nil
}

// Ping returns nil when PostgreSQL answers, else an error wrapping ports.ErrUnavailable.
// A caller that arrives while a ping is in flight waits for that one: it runs under the
// context of the caller that started it, and each caller still returns when its own
// context ends.
func (p *Pinger) Ping(ctx context.Context) error {
	p.mu.Lock()
	if c := p.flight; c != nil {
		p.mu.Unlock()
		select {
		case <-c.done:
			return c.err
		case <-ctx.Done():
			return translate(ctx.Err())
		}
	}
	c := &pingCall{done: make(chan struct{})}
	p.flight = c
	p.mu.Unlock()

	c.err = translate(p.db.PingContext(ctx))
	p.mu.Lock()
	p.flight = nil
	p.mu.Unlock()
	close(c.done)
	return c.err
}

// Close closes the Pinger's connection.
func (p *Pinger) Close() error { return p.db.Close() }
