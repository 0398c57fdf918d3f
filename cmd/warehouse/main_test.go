package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
		{[]string{"bench"}, 2},
		{[]string{"version", "now"}, 2},
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

// TestBenchMoved: `warehouse bench` says where the benchmark went instead of running it.
func TestBenchMoved(t *testing.T) {
	code, stderr := runWarehouse(t, nil, "bench", "--smoke")
	if code != 2 || !strings.Contains(stderr, "make bench") || !strings.Contains(stderr, "cmd/warehouse-bench") {
		t.Errorf("warehouse bench: exit status %d, stderr %q; want 2 and where the benchmark is", code, stderr)
	}
}

// TestVersionOfMakeBuild builds the binary as `make build` does and checks what
// `warehouse version` and `--version` print: the revision git names for HEAD, and a build
// time of now. GOFLAGS on our machines and in CI say -buildvcs=false; make build must
// stamp the revision all the same.
func TestVersionOfMakeBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	root := mustModuleRoot(t)
	head, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("not a git checkout with git available: %v", err)
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make")
	}
	bin := filepath.Join(t.TempDir(), "warehouse")
	before := time.Now().UTC().Truncate(time.Second)
	if out, err := exec.Command("make", "-s", "-C", root, "build", "BIN="+bin).CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	var outputs []string
	for _, arg := range []string{"version", "--version"} {
		out, err := exec.Command(bin, arg).Output()
		if err != nil {
			t.Fatalf("warehouse %s: %v", arg, err)
		}
		outputs = append(outputs, string(out))
	}
	if outputs[0] != outputs[1] {
		t.Errorf("version and --version differ:\n%s\n%s", outputs[0], outputs[1])
	}
	fields := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(outputs[0]), "\n") {
		name, value, _ := strings.Cut(line, " ")
		fields[name] = strings.TrimSpace(value)
	}
	if rev := strings.TrimSpace(string(head)); !strings.HasPrefix(fields["revision"], rev) {
		t.Errorf("revision %q, want HEAD %s\n%s", fields["revision"], rev, outputs[0])
	}
	built, err := time.Parse(time.RFC3339, fields["built"])
	if err != nil || built.Before(before) || built.After(time.Now().Add(time.Second)) {
		t.Errorf("built %q, want the time of the build (%s or later)\n%s", fields["built"], before.Format(time.RFC3339), outputs[0])
	}
	if !strings.HasPrefix(fields["warehouse"], "v0.0.0-") {
		t.Errorf("module version %q, want the pseudo-version of the commit", fields["warehouse"])
	}
}

// mustModuleRoot returns the directory of go.mod above the working directory.
func mustModuleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" || strings.TrimSpace(string(out)) == os.DevNull {
		t.Fatalf("go env GOMOD: %q, %v", out, err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
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
