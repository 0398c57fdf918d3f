package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"warehouse/adapters/postgres"
	"warehouse/adapters/postgres/pgtest"
	"warehouse/domain"
	"warehouse/ports/portstest"
)

// runMainEnv makes the test binary run main instead of the tests (see runWarehouse).
const runMainEnv = "WAREHOUSE_TEST_RUN_MAIN"

// unreachableDB is a DATABASE_URL where nothing answers.
const unreachableDB = "postgres://postgres@127.0.0.1:1/warehouse?sslmode=disable"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		os.Exit(0) // main exits itself; this is never reached
	}
	os.Exit(m.Run())
}

// runWarehouse runs this test binary as `warehouse args…` with env added to the
// environment, and returns its exit status and its standard error.
func runWarehouse(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.CommandContext(context.Background(), os.Args[0], args...)
	cmd.Env = append(os.Environ(), append([]string{runMainEnv + "=1", "LOG_LEVEL=warn"}, env...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, stderr.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), stderr.String()
	}
	t.Fatalf("run warehouse %v: %v", args, err)
	return 0, ""
}

// TestExitStatus checks the exit statuses that do not need a database: usage errors are
// 2 for every subcommand, and an audit that cannot reach the database is 3, where other
// commands fail with 1.
func TestExitStatus(t *testing.T) {
	tests := []struct {
		args []string
		want int
	}{
		{nil, 2},
		{[]string{"teleport"}, 2},
		{[]string{"audit", "--bogus"}, 2},
		{[]string{"audit", "now"}, 2},
		{[]string{"migrate"}, 2},
		{[]string{"migrate", "sideways"}, 2},
		{[]string{"migrate", "down", "--force"}, 2},
		{[]string{"migrate", "--yes", "down"}, 2},
		{[]string{"migrate", "status", "--yes"}, 2},
		{[]string{"produce", "--bogus"}, 2},
		{[]string{"produce", "--count", "-1"}, 2},
		{[]string{"bench", "--bogus"}, 2},
		{[]string{"serve", "now"}, 2},
		{[]string{"audit"}, 3},
		{[]string{"migrate", "status"}, 1},
		{[]string{"migrate", "down"}, 1},
	}
	for _, tc := range tests {
		t.Run("args "+strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			got, stderr := runWarehouse(t, []string{"DATABASE_URL=" + unreachableDB}, tc.args...)
			if got != tc.want {
				t.Errorf("exit status = %d, want %d; stderr:\n%s", got, tc.want, stderr)
			}
		})
	}
}

// TestExitStatusWithLedger checks audit and migrate down against a real ledger: audit
// exits 0 when sound, 1 on a mismatch and 3 once the ledger is gone; down exits 1 when it
// refuses a ledger holding events and 0 with --yes.
func TestExitStatusWithLedger(t *testing.T) {
	dbURL := pgtest.MustDatabase(t)
	db := pgtest.MustOpen(t, dbURL)
	ctx := context.Background()
	x := portstest.NewSample()
	results, err := postgres.NewStore(db).Apply(ctx, []domain.Event{portstest.Supply(x.From, x.Product, 150), x.Departure, x.Arrival})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range results {
		if r != nil {
			t.Fatalf("event %d: %v", i, r)
		}
	}
	env := []string{"DATABASE_URL=" + dbURL}
	step := func(want int, args ...string) {
		t.Helper()
		if got, stderr := runWarehouse(t, env, args...); got != want {
			t.Fatalf("warehouse %s: exit status = %d, want %d; stderr:\n%s", strings.Join(args, " "), got, want, stderr)
		}
	}

	step(0, "audit")
	if _, err := db.ExecContext(ctx, "UPDATE stock SET quantity = quantity + 5 WHERE warehouse_id = ? AND product_id = ?",
		x.To.String(), x.Product.String()); err != nil {
		t.Fatal(err)
	}
	step(1, "audit", "--json")
	step(2, "audit", "--bogus")
	step(1, "migrate", "down")
	step(1, "audit") // down refused: the events are still there
	step(0, "migrate", "down", "--yes")
	step(3, "audit") // no ledger left to check
	step(0, "migrate", "status")
}
