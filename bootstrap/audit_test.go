package bootstrap

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"

	"warehouse/adapters/postgres"
	"warehouse/adapters/postgres/pgtest"
	"warehouse/domain"
	"warehouse/ports/portstest"
)

// mustAuditLedger gives the test a fresh migrated database as DATABASE_URL, holding a
// supplied warehouse and one completed movement, and returns the sample, the database and
// the events stored.
func mustAuditLedger(t *testing.T) (portstest.Sample, *postgres.Store, []domain.Event) {
	t.Helper()
	dbURL := pgtest.MustDatabase(t)
	t.Setenv("DATABASE_URL", dbURL)
	t.Setenv("LOG_LEVEL", "warn")
	store := postgres.NewStore(pgtest.MustOpen(t, dbURL))
	x := portstest.NewSample()
	events := []domain.Event{portstest.Supply(x.From, x.Product, 150), x.Departure, x.Arrival}
	results, err := store.Apply(context.Background(), events)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range results {
		if r != nil {
			t.Fatalf("event %d: %v", i, r)
		}
	}
	return x, store, events
}

// auditField returns the value of the summary line name of a text report: the name,
// padded with spaces, then the value.
func auditField(report, name string) string {
	for _, l := range strings.Split(report, "\n") {
		if rest, ok := strings.CutPrefix(l, name+" "); ok {
			return strings.TrimSpace(rest)
		}
	}
	return ""
}

func TestAuditSoundLedger(t *testing.T) {
	_, _, events := mustAuditLedger(t)
	var out bytes.Buffer
	if err := Audit(context.Background(), nil, &out); err != nil {
		t.Fatalf("Audit = %v, want nil on a sound ledger\n%s", err, out.String())
	}
	// what the stored events imply, worked out here
	rows, total, movements := map[domain.StockKey]bool{}, int64(0), map[domain.MovementID]bool{}
	for _, e := range events {
		rows[e.StockKey()] = true
		total += e.Delta()
		movements[e.MovementID] = true
	}
	for name, want := range map[string]string{
		"events": strconv.Itoa(len(events)), "movements": strconv.Itoa(len(movements)),
		"stock rows": strconv.Itoa(len(rows)), "total quantity": strconv.FormatInt(total, 10),
		"negative stock rows": "0",
	} {
		if got := auditField(out.String(), name); got != want {
			t.Errorf("report says %s %q, want %q:\n%s", name, got, want, out.String())
		}
	}
	if got := auditField(out.String(), "result"); !strings.HasPrefix(got, "OK") {
		t.Errorf("result %q, want OK:\n%s", got, out.String())
	}
}

func TestAuditDetectsCorruptedStock(t *testing.T) {
	x, store, events := mustAuditLedger(t)
	const extra = 5
	if _, err := store.DB().ExecContext(context.Background(),
		"UPDATE stock SET quantity = quantity + ? WHERE warehouse_id = ? AND product_id = ?", extra, x.To.String(), x.Product.String()); err != nil {
		t.Fatal(err)
	}
	var computed int64 // what the events put at the corrupted row
	for _, e := range events {
		if e.StockKey() == (domain.StockKey{Warehouse: x.To, Product: x.Product}) {
			computed += e.Delta()
		}
	}
	stored := computed + extra

	var out bytes.Buffer
	err := Audit(context.Background(), nil, &out)
	if !errors.Is(err, ErrAuditFailed) {
		t.Fatalf("Audit = %v, want ErrAuditFailed\n%s", err, out.String())
	}
	want := fmt.Sprintf("warehouse %s product %s: stored %d, events add up to %d", x.To, x.Product, stored, computed)
	if !strings.Contains(out.String(), want) || !strings.Contains(out.String(), "FAILED") {
		t.Errorf("report lacks %q and FAILED:\n%s", want, out.String())
	}

	out.Reset()
	err = Audit(context.Background(), []string{"--json"}, &out)
	if !errors.Is(err, ErrAuditFailed) {
		t.Fatalf("Audit --json = %v, want ErrAuditFailed", err)
	}
	var got auditJSON
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("--json output %q: %v", out.String(), err)
	}
	if got.Sound || len(got.StockMismatches) != 1 || got.Events != int64(len(events)) {
		t.Fatalf("--json report = %+v, want one stock mismatch", got)
	}
	m := got.StockMismatches[0]
	if m.WarehouseID != x.To.String() || m.ProductID != x.Product.String() || m.Stored == nil || *m.Stored != stored ||
		m.Computed == nil || *m.Computed != computed {
		t.Errorf("mismatch = %+v, want stored %d, computed %d at %s", m, stored, computed, x.To)
	}
}

func TestAuditRejectsArguments(t *testing.T) {
	if err := Audit(context.Background(), []string{"now"}, &bytes.Buffer{}); err == nil {
		t.Fatal("Audit with an argument = nil, want an error")
	}
}

// TestAuditExitCodes checks the exit status main sets for each outcome of `warehouse
// audit`, so that a script can tell "the ledger is wrong" from "could not check".
func TestAuditExitCodes(t *testing.T) {
	t.Run("sound", func(t *testing.T) {
		mustAuditLedger(t)
		if got := ExitCode(Audit(context.Background(), nil, io.Discard)); got != 0 {
			t.Errorf("exit code = %d, want 0 on a sound ledger", got)
		}
	})
	t.Run("mismatch", func(t *testing.T) {
		x, store, _ := mustAuditLedger(t)
		if _, err := store.DB().ExecContext(context.Background(),
			"UPDATE stock SET quantity = quantity - 1 WHERE warehouse_id = ? AND product_id = ?", x.From.String(), x.Product.String()); err != nil {
			t.Fatal(err)
		}
		err := Audit(context.Background(), nil, io.Discard)
		if got := ExitCode(err); got != 1 {
			t.Errorf("exit code = %d (%v), want 1 on a mismatch", got, err)
		}
		if !errors.Is(err, ErrAuditFailed) {
			t.Errorf("err = %v, want ErrAuditFailed", err)
		}
	})
	for _, args := range [][]string{{"--bogus"}, {"--json=maybe"}, {"now"}, {"--json", "now"}} {
		t.Run("usage "+strings.Join(args, " "), func(t *testing.T) {
			// usage is checked before the database: this one would not answer
			t.Setenv("DATABASE_URL", "postgres://postgres@127.0.0.1:1/warehouse?sslmode=disable")
			err := Audit(context.Background(), args, io.Discard)
			if got := ExitCode(err); got != 2 {
				t.Errorf("exit code = %d (%v), want 2 on a usage error", got, err)
			}
		})
	}
	t.Run("database unreachable", func(t *testing.T) {
		t.Setenv("DATABASE_URL", "postgres://postgres@127.0.0.1:1/warehouse?sslmode=disable")
		err := Audit(context.Background(), nil, io.Discard)
		if got := ExitCode(err); got != 3 {
			t.Errorf("exit code = %d (%v), want 3 when the database does not answer", got, err)
		}
	})
	t.Run("database missing", func(t *testing.T) {
		dbURL := mustAbsentDatabase(t)
		t.Setenv("DATABASE_URL", dbURL)
		err := Audit(context.Background(), nil, io.Discard)
		if got := ExitCode(err); got != 3 {
			t.Errorf("exit code = %d (%v), want 3 when the database does not exist", got, err)
		}
	})
	t.Run("configuration", func(t *testing.T) {
		t.Setenv("DB_MAX_CONNS", "many")
		err := Audit(context.Background(), nil, io.Discard)
		if got := ExitCode(err); got != 3 {
			t.Errorf("exit code = %d (%v), want 3 on a bad configuration", got, err)
		}
	})
}
