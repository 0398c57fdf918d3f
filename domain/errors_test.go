package domain_test

import (
	"errors"
	"strings"
	"testing"

	"warehouse/domain"
)

// TestFieldErrors: the parse errors a client can cause name the field and the rule apart
// from the value, so an HTTP answer can say what was wrong without echoing the input,
// while Error still quotes the (clipped) value for logs and dead letters.
func TestFieldErrors(t *testing.T) {
	const secret = "s3cret-value"
	tests := []struct {
		name  string
		err   error
		field string
	}{
		{"movement id", second(domain.ParseMovementID(secret)), "movement_id"},
		{"warehouse id", second(domain.ParseWarehouseID(secret)), "warehouse_id"},
		{"product id", second(domain.ParseProductID(secret)), "product_id"},
		{"timestamp shape", second(domain.ParseTimestamp("since", secret)), "since"},
		{"timestamp range", second(domain.ParseTimestamp("until", "0000-12-31T23:59:59Z")), "until"},
		{"status", second(domain.ParseMovementStatus(secret)), "status"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !errors.Is(tc.err, domain.ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", tc.err)
			}
			var fe *domain.FieldError
			if !errors.As(tc.err, &fe) {
				t.Fatalf("err = %T, want a *domain.FieldError", tc.err)
			}
			if fe.Field != tc.field || fe.Rule == "" {
				t.Errorf("field %q rule %q, want field %q and a rule", fe.Field, fe.Rule, tc.field)
			}
			if strings.Contains(fe.Field+fe.Rule, secret) || strings.Contains(fe.Rule, "0000") {
				t.Errorf("field %q or rule %q holds the input", fe.Field, fe.Rule)
			}
			if !strings.Contains(tc.err.Error(), `"`+fe.Value+`"`) || fe.Value == "" {
				t.Errorf("Error() = %q, want it to quote the value %q", tc.err, fe.Value)
			}
		})
	}
	long := second(domain.ParseProductID(strings.Repeat("x", 10_000)))
	var fe *domain.FieldError
	if !errors.As(long, &fe) || len(fe.Value) > 100 {
		t.Errorf("value of a long input kept whole: %d bytes", len(fe.Value))
	}
}

func second[T any](_ T, err error) error { return err }
