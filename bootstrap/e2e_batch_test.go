package bootstrap

import (
	"context"
	"path/filepath"
	"testing"

	"warehouse/adapters/postgres"
	"warehouse/domain"
)

// TestE2EBatchMessages: `produce --per-message 100` (with duplicates and out-of-order
// transfers) into the service, which judges every event of every batch message on its
// own: the ledger ends exactly as the generator expects, the audit is sound, and nothing
// is dead-lettered.
func TestE2EBatchMessages(t *testing.T) {
	t.Parallel()
	s := mustService(t, nil)
	expect := filepath.Join(t.TempDir(), "expect.json")
	const n = 3000
	mustProduce(t, context.Background(), "--count", "3000", "--seed", "31", "--per-message", "100", "--duplicates", "0.05",
		"--exchange", s.cfg.AMQPExchange, "--expect", expect)
	e2eWaitForMsg(t, func() bool {
		return s.metric(t, "movements_stored_total", "")+s.metric(t, "movements_duplicates_total", "") >= n
	}, func() string { return "every event of the batch messages judged" })
	s.barrier(t)
	for _, r := range mustProduceExpected(t, expect) {
		w, _ := domain.ParseWarehouseID(r.WarehouseID)
		p, _ := domain.ParseProductID(r.ProductID)
		s.waitDBStock(t, w, p, r.Quantity)
	}
	// The barrier's own dead letter is the only one.
	if got := s.metric(t, "movements_rejected_total", `{reason="invalid"}`); got != 1 {
		t.Errorf("movements_rejected_total{reason=invalid} = %v, want 1 (the barrier)", got)
	}
	if dead := s.deadLetters(t); len(dead) != 1 {
		t.Errorf("%d dead letters, want only the barrier's", len(dead))
	}
	r, err := postgres.NewStore(s.db).Audit(context.Background())
	if err != nil || !r.Sound() || r.Events == 0 {
		t.Errorf("audit: %+v, %v", r, err)
	}
}
