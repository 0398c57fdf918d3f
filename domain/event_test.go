package domain_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"warehouse/domain"
)

// validInput is the sample arrival of docs/contract.md, with quantity 100, as it comes
// off the wire.
func validInput() domain.EventInput {
	return domain.EventInput{
		ID:          "b3b53031-e83a-4654-87f5-b6b6fb09fd99",
		Source:      "WH-3423",
		SpecVersion: "1.0",
		Type:        "ru.retail.warehouses.movement",
		Time:        time.UnixMilli(1737439421623),
		MovementID:  "c6290746-790e-43fa-8270-014dc90e02e0",
		WarehouseID: "c1d70455-7e14-11e9-812a-70106f431230",
		ProductID:   "4705204f-498f-4f96-b4ba-df17fb56bf55",
		Event:       "arrival",
		Timestamp:   "2025-02-18T14:34:56Z",
		Quantity:    100,
	}
}

func TestNewEvent(t *testing.T) {
	const uuidField = "c6290746-790e-43fa-8270-014dc90e02e0"
	tests := []struct {
		name    string
		edit    func(*domain.EventInput)
		wantErr error
	}{
		{"valid arrival", func(*domain.EventInput) {}, nil},
		{"valid departure", func(in *domain.EventInput) { in.Event = "departure" }, nil},

		{"empty id", func(in *domain.EventInput) { in.ID = "" }, domain.ErrInvalid},
		{"128-char id", func(in *domain.EventInput) { in.ID = strings.Repeat("a", 128) }, nil},
		{"129-char id", func(in *domain.EventInput) { in.ID = strings.Repeat("a", 129) }, domain.ErrInvalid},
		{"id with every visible ASCII char", func(in *domain.EventInput) { in.ID = visibleASCII() }, nil},
		{"id with space (0x20 is printable ASCII)", func(in *domain.EventInput) { in.ID = "order 1" }, nil},
		{"id with non-ASCII letter", func(in *domain.EventInput) { in.ID = "заказ-1" }, domain.ErrInvalid},
		{"id with tab", func(in *domain.EventInput) { in.ID = "a\tb" }, domain.ErrInvalid},
		{"id with NUL", func(in *domain.EventInput) { in.ID = "a\x00b" }, domain.ErrInvalid},
		{"id with DEL", func(in *domain.EventInput) { in.ID = "a\x7fb" }, domain.ErrInvalid},

		{"empty source", func(in *domain.EventInput) { in.Source = "" }, domain.ErrInvalid},
		{"256-char source", func(in *domain.EventInput) { in.Source = strings.Repeat("s", 256) }, nil},
		{"257-char source", func(in *domain.EventInput) { in.Source = strings.Repeat("s", 257) }, domain.ErrInvalid},
		// 256 two-byte runes are 512 bytes: the limit counts characters, not bytes
		{"256-rune multibyte source", func(in *domain.EventInput) { in.Source = strings.Repeat("й", 256) }, nil},
		{"257-rune multibyte source", func(in *domain.EventInput) { in.Source = strings.Repeat("й", 257) }, domain.ErrInvalid},
		{"source with space", func(in *domain.EventInput) { in.Source = "WH 3423" }, nil},
		{"source with NUL", func(in *domain.EventInput) { in.Source = "WH\x003423" }, domain.ErrInvalid},
		{"source with newline", func(in *domain.EventInput) { in.Source = "WH-3423\n" }, domain.ErrInvalid},
		{"source with invalid UTF-8", func(in *domain.EventInput) { in.Source = "WH-\xff" }, domain.ErrInvalid},

		{"empty specversion", func(in *domain.EventInput) { in.SpecVersion = "" }, domain.ErrInvalid},
		{"specversion 1.1", func(in *domain.EventInput) { in.SpecVersion = "1.1" }, domain.ErrInvalid},
		{"specversion 0.3", func(in *domain.EventInput) { in.SpecVersion = "0.3" }, domain.ErrInvalid},
		{"wrong type", func(in *domain.EventInput) { in.Type = "ru.retail.warehouses.movement.v2" }, domain.ErrInvalid},
		{"type in other case", func(in *domain.EventInput) { in.Type = "RU.RETAIL.WAREHOUSES.MOVEMENT" }, domain.ErrInvalid},

		{"uppercase event", func(in *domain.EventInput) { in.Event = "ARRIVAL" }, domain.ErrInvalid},
		{"capitalised event", func(in *domain.EventInput) { in.Event = "Departure" }, domain.ErrInvalid},
		{"unknown event", func(in *domain.EventInput) { in.Event = "teleport" }, domain.ErrInvalid},
		{"empty event", func(in *domain.EventInput) { in.Event = "" }, domain.ErrInvalid},

		{"quantity 0", func(in *domain.EventInput) { in.Quantity = 0 }, domain.ErrInvalid},
		{"quantity -1", func(in *domain.EventInput) { in.Quantity = -1 }, domain.ErrInvalid},
		{"quantity 1", func(in *domain.EventInput) { in.Quantity = 1 }, nil},
		{"quantity 1e9", func(in *domain.EventInput) { in.Quantity = 1_000_000_000 }, nil},
		{"quantity 1e9+1", func(in *domain.EventInput) { in.Quantity = 1_000_000_001 }, domain.ErrInvalid},

		{"timestamp without offset", func(in *domain.EventInput) { in.Timestamp = "2025-02-18T14:34:56" }, domain.ErrInvalid},
		{"timestamp date only", func(in *domain.EventInput) { in.Timestamp = "2025-02-18" }, domain.ErrInvalid},
		{"timestamp with space separator", func(in *domain.EventInput) { in.Timestamp = "2025-02-18 14:34:56Z" }, domain.ErrInvalid},
		{"timestamp with +0300 offset", func(in *domain.EventInput) { in.Timestamp = "2025-02-18T14:34:56+0300" }, domain.ErrInvalid},
		{"timestamp as epoch", func(in *domain.EventInput) { in.Timestamp = "1739889296" }, domain.ErrInvalid},
		{"empty timestamp", func(in *domain.EventInput) { in.Timestamp = "" }, domain.ErrInvalid},
		{"timestamp Feb 30", func(in *domain.EventInput) { in.Timestamp = "2025-02-30T14:34:56Z" }, domain.ErrInvalid},
		{"timestamp hour 24", func(in *domain.EventInput) { in.Timestamp = "2025-02-18T24:00:00Z" }, domain.ErrInvalid},
		// RFC 3339 time-secfrac is "." 1*DIGIT; a comma is ISO 8601 only
		{"timestamp with comma fraction", func(in *domain.EventInput) { in.Timestamp = "2025-02-18T14:34:56,5Z" }, domain.ErrInvalid},
		// RFC 3339 time-hour is 00-23, in offsets too
		{"timestamp with +24:00 offset", func(in *domain.EventInput) { in.Timestamp = "2025-02-18T14:34:56+24:00" }, domain.ErrInvalid},
		{"timestamp with -00:00 offset", func(in *domain.EventInput) { in.Timestamp = "2025-02-18T14:34:56-00:00" }, nil},
		// and time-minute is 00-59: time.Parse reads +03:60 as +04:00
		{"timestamp with +03:60 offset", func(in *domain.EventInput) { in.Timestamp = "2025-02-18T14:34:56+03:60" }, domain.ErrInvalid},
		{"timestamp with -01:59 offset", func(in *domain.EventInput) { in.Timestamp = "2025-02-18T14:34:56-01:59" }, nil},

		{"upper-case UUIDs", func(in *domain.EventInput) {
			in.MovementID, in.WarehouseID, in.ProductID = strings.ToUpper(in.MovementID), strings.ToUpper(in.WarehouseID), strings.ToUpper(in.ProductID)
		}, nil},
		{"movement_id in braces", func(in *domain.EventInput) { in.MovementID = "{" + uuidField + "}" }, domain.ErrInvalid},
		{"movement_id as urn", func(in *domain.EventInput) { in.MovementID = "urn:uuid:" + uuidField }, domain.ErrInvalid},
		{"movement_id 32 hex", func(in *domain.EventInput) { in.MovementID = strings.ReplaceAll(uuidField, "-", "") }, domain.ErrInvalid},
		{"warehouse_id of 35 chars", func(in *domain.EventInput) { in.WarehouseID = in.WarehouseID[:35] }, domain.ErrInvalid},
		{"warehouse_id of 37 chars", func(in *domain.EventInput) { in.WarehouseID += "0" }, domain.ErrInvalid},
		{"product_id not hex", func(in *domain.EventInput) { in.ProductID = "4705204g-498f-4f96-b4ba-df17fb56bf55" }, domain.ErrInvalid},
		{"empty product_id", func(in *domain.EventInput) { in.ProductID = "" }, domain.ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := validInput()
			tc.edit(&in)
			got, err := domain.NewEvent(in)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("NewEvent: %v, want valid", err)
				}
				if got.ID != in.ID || got.Source != in.Source || got.Quantity != in.Quantity || string(got.Kind) != in.Event {
					t.Errorf("NewEvent = %+v, does not carry the input %+v", got, in)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("NewEvent: err = %v, want %v", err, tc.wantErr)
			}
			if !reflect.DeepEqual(got, domain.Event{}) {
				t.Errorf("NewEvent returned %+v with its error, want the zero Event", got)
			}
		})
	}
}

func TestNewEventFields(t *testing.T) {
	in := validInput()
	in.Attributes = []byte(`{"subject":"WH-3423:ARRIVAL"}`)
	e, err := domain.NewEvent(in)
	if err != nil {
		t.Fatalf("NewEvent: %v", err)
	}
	if e.MovementID.String() != in.MovementID || e.WarehouseID.String() != in.WarehouseID || e.ProductID.String() != in.ProductID {
		t.Errorf("ids = %s %s %s, want %s %s %s", e.MovementID, e.WarehouseID, e.ProductID, in.MovementID, in.WarehouseID, in.ProductID)
	}
	if e.Kind != domain.Arrival {
		t.Errorf("kind = %q, want arrival", e.Kind)
	}
	if want := time.Date(2025, 2, 18, 14, 34, 56, 0, time.UTC); !e.Timestamp.Equal(want) || e.Timestamp.Location() != time.UTC {
		t.Errorf("timestamp = %v, want %v", e.Timestamp, want)
	}
	if want := time.Date(2025, 1, 21, 6, 3, 41, 623_000_000, time.UTC); !e.Time.Equal(want) || e.Time.Location() != time.UTC {
		t.Errorf("envelope time = %v, want %v in UTC", e.Time, want)
	}
	if string(e.Attributes) != string(in.Attributes) {
		t.Errorf("attributes = %s, want %s", e.Attributes, in.Attributes)
	}
	if e.StockKey() != (domain.StockKey{Warehouse: e.WarehouseID, Product: e.ProductID}) {
		t.Errorf("stock key = %+v", e.StockKey())
	}
	if e.Identity() != (domain.Identity{Source: "WH-3423", ID: in.ID}) {
		t.Errorf("identity = %+v", e.Identity())
	}
}

func TestNewEventTimestamp(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want time.Time
	}{
		{"UTC", "2025-02-18T14:34:56Z", time.Date(2025, 2, 18, 14, 34, 56, 0, time.UTC)},
		{"offset +03:00 becomes UTC", "2025-02-18T14:34:56+03:00", time.Date(2025, 2, 18, 11, 34, 56, 0, time.UTC)},
		{"offset -05:30 crosses midnight", "2025-02-18T20:00:00-05:30", time.Date(2025, 2, 19, 1, 30, 0, 0, time.UTC)},
		{"microseconds kept", "2025-02-18T14:34:56.123456Z", time.Date(2025, 2, 18, 14, 34, 56, 123_456_000, time.UTC)},
		{"nanoseconds truncated", "2025-02-18T14:34:56.123456789Z", time.Date(2025, 2, 18, 14, 34, 56, 123_456_000, time.UTC)},
		{"truncated, not rounded", "2025-02-18T14:34:56.999999999Z", time.Date(2025, 2, 18, 14, 34, 56, 999_999_000, time.UTC)},
		{"year 1", "0001-01-01T00:00:00Z", time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"year 9999", "9999-12-31T23:59:59Z", time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := validInput()
			in.Timestamp = tc.in
			e, err := domain.NewEvent(in)
			if err != nil {
				t.Fatalf("NewEvent: %v", err)
			}
			if !e.Timestamp.Equal(tc.want) || e.Timestamp.Location() != time.UTC {
				t.Errorf("timestamp = %v (%v), want %v in UTC", e.Timestamp, e.Timestamp.Location(), tc.want)
			}
		})
	}
}

func TestEventDelta(t *testing.T) {
	in := validInput()
	in.Quantity = 7
	a, err := domain.NewEvent(in)
	if err != nil {
		t.Fatalf("NewEvent: %v", err)
	}
	in.Event = "departure"
	d, err := domain.NewEvent(in)
	if err != nil {
		t.Fatalf("NewEvent: %v", err)
	}
	if a.Delta() != 7 || d.Delta() != -7 {
		t.Errorf("delta: arrival %d, departure %d; want 7, -7", a.Delta(), d.Delta())
	}
}

// visibleASCII returns the 94 characters from '!' to '~'.
func visibleASCII() string {
	var b strings.Builder
	for c := byte('!'); c <= '~'; c++ {
		b.WriteByte(c)
	}
	return b.String()
}
