package bootstrap

import (
	"testing"
	"time"

	"warehouse/ports/portstest"
)

// TestE2EOperatorMetrics: what an operator watches at 3 a.m. is exported by `run`: the
// consumer's state, when it last committed and how far behind business time its commits
// are, the database pool, and the cache's size and evictions.
func TestE2EOperatorMetrics(t *testing.T) {
	t.Parallel()
	s := mustService(t, func(c *Config) { c.CacheSize = 2 })
	if got := s.metric(t, "consumer_state", `{state="connected"}`); got != 1 {
		t.Errorf(`consumer_state{state="connected"} = %v, want 1`, got)
	}
	for _, st := range []string{"reconnecting", "paused"} {
		if got := s.metric(t, "consumer_state", `{state="`+st+`"}`); got != 0 {
			t.Errorf(`consumer_state{state=%q} = %v, want 0`, st, got)
		}
	}
	before := float64(time.Now().Unix())
	x := portstest.NewSample()
	s.publish(t, portstest.Supply(x.From, x.Product, 150), x.Departure, x.Arrival)
	s.waitDBStatus(t, x.Movement, "completed")
	s.waitMetric(t, "consumer_commit_lag_seconds_count", "", 3)
	if last := s.metric(t, "consumer_last_commit_timestamp_seconds", ""); last < before-1 {
		t.Errorf("consumer_last_commit_timestamp_seconds = %v, want a time after %v", last, before)
	}
	// The sample's events are dated 2025: their lag is well over a day.
	if over := s.metric(t, "consumer_commit_lag_seconds_bucket", `{le="86400"}`); over != 0 {
		t.Errorf("%v events of 2025 committed within a day of their business time", over)
	}
	if open := s.metric(t, "go_sql_open_connections", `{db_name="warehouse"}`); open < 1 {
		t.Errorf("go_sql_open_connections = %v, want the pool's connections", open)
	}
	if max := s.metric(t, "go_sql_max_open_connections", `{db_name="warehouse"}`); max != float64(s.cfg.DBMaxConns) {
		t.Errorf("go_sql_max_open_connections = %v, want DB_MAX_CONNS %d", max, s.cfg.DBMaxConns)
	}
	// Three stock reads through a cache of two entries: one is pushed out.
	for _, k := range [][2]string{{x.From.String(), x.Product.String()}, {x.To.String(), x.Product.String()}, {x.From.String(), x.Product.String()}} {
		s.get(t, "/api/warehouses/"+k[0]+"/products/"+k[1])
	}
	s.get(t, "/api/movements/"+x.Movement.String())
	if n := s.metric(t, "cache_entries", ""); n != 2 {
		t.Errorf("cache_entries = %v, want 2 (CACHE_SIZE)", n)
	}
	if n := s.metric(t, "cache_evictions_total", ""); n < 1 {
		t.Errorf("cache_evictions_total = %v, want at least 1", n)
	}
}
