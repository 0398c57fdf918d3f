package domain_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"warehouse/domain"
)

func TestParseIDs(t *testing.T) {
	const canonical = "4705204f-498f-4f96-b4ba-df17fb56bf55"
	// every parser must agree: they differ only in the type they return and the field they name
	parsers := map[string]func(string) (fmt.Stringer, error){
		"movement":  func(s string) (fmt.Stringer, error) { return domain.ParseMovementID(s) },
		"warehouse": func(s string) (fmt.Stringer, error) { return domain.ParseWarehouseID(s) },
		"product":   func(s string) (fmt.Stringer, error) { return domain.ParseProductID(s) },
	}
	tests := []struct {
		name    string
		in      string
		want    string // String() of the result when valid
		wantErr error
	}{
		{"canonical lowercase", canonical, canonical, nil},
		{"canonical upper case", strings.ToUpper(canonical), canonical, nil},
		{"mixed case", "4705204F-498f-4F96-b4BA-df17FB56bf55", canonical, nil},
		{"nil UUID", "00000000-0000-0000-0000-000000000000", "00000000-0000-0000-0000-000000000000", nil},
		{"max UUID", "ffffffff-ffff-ffff-ffff-ffffffffffff", "ffffffff-ffff-ffff-ffff-ffffffffffff", nil},
		{"empty", "", "", domain.ErrInvalid},
		{"braces", "{" + canonical + "}", "", domain.ErrInvalid},
		{"urn prefix", "urn:uuid:" + canonical, "", domain.ErrInvalid},
		{"32 hex digits", strings.ReplaceAll(canonical, "-", ""), "", domain.ErrInvalid},
		{"35 chars", canonical[:35], "", domain.ErrInvalid},
		{"37 chars", canonical + "5", "", domain.ErrInvalid},
		{"leading space", " " + canonical[1:], "", domain.ErrInvalid},
		{"non-hex letter", "4705204f-498f-4f96-b4ba-df17fb56bf5z", "", domain.ErrInvalid},
		{"hyphen moved", "4705204-f498f-4f96-b4ba-df17fb56bf55", "", domain.ErrInvalid},
		{"underscores for hyphens", strings.ReplaceAll(canonical, "-", "_"), "", domain.ErrInvalid},
		{"36 non-ASCII bytes", strings.Repeat("й", 18), "", domain.ErrInvalid},
	}
	for _, tc := range tests {
		for kind, parse := range parsers {
			t.Run(tc.name+"/"+kind, func(t *testing.T) {
				got, err := parse(tc.in)
				if tc.wantErr != nil {
					if !errors.Is(err, tc.wantErr) {
						t.Errorf("parse %q: err = %v, want %v", tc.in, err, tc.wantErr)
					}
					return
				}
				if err != nil {
					t.Fatalf("parse %q: %v", tc.in, err)
				}
				if got.String() != tc.want {
					t.Errorf("parse %q: String() = %q, want %q", tc.in, got.String(), tc.want)
				}
			})
		}
	}
}

// TestParseIDsNameTheField checks that an error says which field was wrong, since the
// consumer puts it in a dead letter's x-rejection-detail for an operator to read.
func TestParseIDsNameTheField(t *testing.T) {
	if _, err := domain.ParseMovementID("x"); err == nil || !strings.Contains(err.Error(), "movement_id") {
		t.Errorf("ParseMovementID: %v, want it to name movement_id", err)
	}
	if _, err := domain.ParseWarehouseID("x"); err == nil || !strings.Contains(err.Error(), "warehouse_id") {
		t.Errorf("ParseWarehouseID: %v, want it to name warehouse_id", err)
	}
	if _, err := domain.ParseProductID("x"); err == nil || !strings.Contains(err.Error(), "product_id") {
		t.Errorf("ParseProductID: %v, want it to name product_id", err)
	}
}

func TestParseIDsClipLongInput(t *testing.T) {
	_, err := domain.ParseMovementID(strings.Repeat("a", 10_000))
	if !errors.Is(err, domain.ErrInvalid) {
		t.Fatalf("err = %v, want invalid", err)
	}
	if n := len(err.Error()); n > 200 {
		t.Errorf("error message is %d bytes long, want the input clipped", n)
	}
}
