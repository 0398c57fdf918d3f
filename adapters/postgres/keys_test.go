package postgres_test

import (
	"bytes"
	"context"
	"testing"

	"warehouse/adapters/postgres"
	"warehouse/adapters/postgres/pgtest"
)

// TestControlKeyIsSharedAndPerLedger: every reader of one ledger gets the same key of 32
// bytes; another ledger has another key.
func TestControlKeyIsSharedAndPerLedger(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.MustDatabase(t)
	a, err := postgres.ControlKey(ctx, pgtest.MustOpen(t, url))
	if err != nil {
		t.Fatal(err)
	}
	b, err := postgres.ControlKey(ctx, pgtest.MustOpen(t, url))
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 32 || !bytes.Equal(a, b) {
		t.Fatalf("keys %x and %x, want one key of 32 bytes", a, b)
	}
	other, err := postgres.ControlKey(ctx, pgtest.MustOpen(t, pgtest.MustDatabase(t)))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a, other) {
		t.Fatal("two ledgers have the same key")
	}
}
