package postgres_test

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"

	"warehouse/adapters/postgres"
	"warehouse/adapters/postgres/pgtest"
	"warehouse/domain"
	"warehouse/loadgen"
)

// TestWritePathNeverUsesGenericPlans: the write path is planned for each batch, never
// served by a generic plan that PostgreSQL made once for no particular array: on a young
// ledger such a plan scans the movements table, and kept doing so as the table grew
// (issue 6's pipeline ran at a third of its speed).
//
// The store runs on connections that load auto_explain and send the plan of every
// statement they execute back as a notice (EXPLAIN VERBOSE, in JSON). A custom plan holds
// the batch's values; a generic plan refers to the parameters ($1, $2…). Every statement
// runs more than five times, after which PostgreSQL considers a generic plan for a prepared
// statement; the test fails unless it saw the write statements do so.
func TestWritePathNeverUsesGenericPlans(t *testing.T) {
	cfg, err := pgx.ParseConfig(pgtest.MustDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol // as postgres.Open
	var (
		mu    sync.Mutex
		plans []string
	)
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		mu.Lock()
		defer mu.Unlock()
		plans = append(plans, n.Message)
	}
	sqldb := stdlib.OpenDB(*cfg, stdlib.OptionAfterConnect(func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, `LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0;
			SET auto_explain.log_level = notice; SET auto_explain.log_format = json;
			SET auto_explain.log_verbose = on; SET plan_cache_mode = auto`)
		return err
	}))
	db := bun.NewDB(sqldb, pgdialect.New())
	t.Cleanup(func() { _ = db.Close() })
	store := postgres.NewStore(db)

	g := loadgen.NewGenerator(loadgen.Options{Warehouses: 5, Products: 20, Seed: 6, OutOfOrderShare: 0.1})
	const batches = 20
	for range batches {
		batch := make([]domain.Event, 50)
		for i := range batch {
			batch[i] = g.Next()
		}
		mustStore(t, store, batch...)
	}

	mu.Lock()
	defer mu.Unlock()
	param := regexp.MustCompile(`\$[0-9]+`)
	runs := map[string]int{} // by the statement's first line
	for _, notice := range plans {
		_, doc, ok := strings.Cut(notice, "plan:")
		if !ok {
			continue
		}
		var explained struct {
			Query string          `json:"Query Text"`
			Plan  json.RawMessage `json:"Plan"`
		}
		if err := json.Unmarshal([]byte(doc), &explained); err != nil {
			t.Fatalf("auto_explain notice %q: %v", notice, err)
		}
		first, _, _ := strings.Cut(strings.TrimSpace(explained.Query), "\n")
		runs[first]++
		if refs := param.FindAllString(string(explained.Plan), -1); len(refs) > 0 {
			t.Errorf("a generic plan (it refers to %v) ran:\n%s", refs, explained.Query)
		}
	}
	var inserts, updates int
	for stmt, n := range runs {
		t.Logf("%3d × %s", n, stmt)
		switch {
		case n <= 5:
		case strings.HasPrefix(stmt, "INSERT"):
			inserts++
		case strings.HasPrefix(stmt, "UPDATE"):
			updates++
		}
	}
	if inserts == 0 || updates == 0 {
		t.Errorf("auto_explain showed %d INSERT and %d UPDATE statements run more than 5 times in %d batches (all: %v): the test saw too little of the write path",
			inserts, updates, batches, runs)
	}
}
