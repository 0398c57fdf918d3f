package postgres_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/google/uuid"

	"warehouse/adapters/postgres"
	"warehouse/adapters/postgres/pgtest"
	"warehouse/domain"
	"warehouse/ports/portstest"
)

// Every column of a stored event arrives as sent: the envelope time and the optional
// attributes (raw JSON into jsonb) when present, NULL when absent.
func TestStoredEventColumns(t *testing.T) {
	db := pgtest.MustOpen(t, pgtest.MustDatabase(t))
	store := postgres.NewStore(db)
	w, p := domain.WarehouseID(uuid.New()), domain.ProductID(uuid.New())
	with := portstest.Supply(w, p, 7)
	with.Time = time.Date(2025, 1, 1, 0, 0, 1, 500_000_000, time.UTC)
	with.Attributes = []byte(`{"subject":"pallet 7","destination":"dock 2"}`)
	without := portstest.Supply(w, p, 3)
	without.Time, without.Attributes = time.Time{}, nil
	if res, err := store.Apply(context.Background(), []domain.Event{with, without}); err != nil || res[0] != nil || res[1] != nil {
		t.Fatalf("apply: %v %v", res, err)
	}
	for _, e := range []domain.Event{with, without} {
		var (
			movement, warehouse, product, kind string
			qty                                int64
			occurred                           time.Time
			eventTime                          sql.NullTime
			attrs                              sql.NullString
		)
		err := db.QueryRowContext(context.Background(), `SELECT movement_id, warehouse_id, product_id, event, quantity,
			occurred_at, event_time, attributes::text FROM events WHERE source = ? AND id = ?`, e.Source, e.ID).
			Scan(&movement, &warehouse, &product, &kind, &qty, &occurred, &eventTime, &attrs)
		if err != nil {
			t.Fatal(err)
		}
		if movement != e.MovementID.String() || warehouse != w.String() || product != p.String() ||
			kind != string(e.Kind) || qty != e.Quantity || !occurred.Equal(e.Timestamp) {
			t.Errorf("event %s stored as %s %s %s %s %d %s", e.ID, movement, warehouse, product, kind, qty, occurred)
		}
		if eventTime.Valid != !e.Time.IsZero() || (eventTime.Valid && !eventTime.Time.Equal(e.Time)) {
			t.Errorf("event %s: event_time %v; want %v", e.ID, eventTime, e.Time)
		}
		wantAttrs := sql.NullString{}
		if e.Attributes != nil {
			wantAttrs = sql.NullString{String: `{"subject": "pallet 7", "destination": "dock 2"}`, Valid: true}
		}
		if attrs != wantAttrs {
			t.Errorf("event %s: attributes %v; want %v", e.ID, attrs, wantAttrs)
		}
	}
}
