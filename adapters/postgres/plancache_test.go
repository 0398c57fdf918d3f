package postgres_test

import (
	"context"
	"testing"

	"warehouse/adapters/postgres"
	"warehouse/adapters/postgres/pgtest"
	"warehouse/application"
	"warehouse/domain"
)

// The write path is planned for each batch, never served by a generic plan that
// PostgreSQL made once for no particular array: on a young ledger such a plan scans the
// movements table, and kept doing so as the table grew (issue 6's pipeline ran at a third
// of its speed). The store runs on one connection here, so the session's prepared
// statements are all of its statements.
func TestWritePathNeverUsesGenericPlans(t *testing.T) {
	db := pgtest.MustOpen(t, pgtest.MustDatabase(t))
	db.SetMaxOpenConns(1)
	store := postgres.NewStore(db)
	g := application.NewGenerator(application.GeneratorOptions{Warehouses: 5, Products: 20, Seed: 6, OutOfOrderShare: 0.1})
	ctx := context.Background()
	for range 20 {
		batch := make([]domain.Event, 50)
		for i := range batch {
			batch[i] = g.Next()
		}
		mustStore(t, store, batch...)
	}
	rows, err := db.QueryContext(ctx, `SELECT statement, generic_plans FROM pg_prepared_statements WHERE generic_plans > 0`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var stmt string
		var generic int64
		if err := rows.Scan(&stmt, &generic); err != nil {
			t.Fatal(err)
		}
		t.Errorf("%d executions on a generic plan of:\n%s", generic, stmt)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}
