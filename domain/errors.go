package domain

import (
	"errors"
	"fmt"
)

// Sentinel errors. Callers add detail by wrapping them and test for them with errors.Is.
var (
	// ErrInvalid marks input that breaks a rule of the contract: a malformed event,
	// UUID, query parameter or cursor.
	ErrInvalid = errors.New("invalid")
	// ErrDuplicate marks an event already stored: the same (source, id), or the same
	// (movement_id, event) with identical data under a new identity.
	ErrDuplicate = errors.New("duplicate")
	// ErrConflict marks an event that contradicts a stored one: a second departure or
	// arrival with different data, or a movement whose two events name different products.
	ErrConflict = errors.New("conflict")
	// ErrInsufficientStock marks a departure that would make stock negative.
	ErrInsufficientStock = errors.New("insufficient stock")
	// ErrNotFound marks a movement or stock row that does not exist.
	ErrNotFound = errors.New("not found")
)

// FieldError is an ErrInvalid that says which field of the input broke which rule. Its
// Error quotes the offending value (clipped), for logs and dead-letter details; Field and
// Rule never hold input, so an answer to a client can show them without echoing what the
// client sent.
type FieldError struct {
	// Field names the input: "movement_id", "timestamp", "since".
	Field string
	// Rule says what the value breaks, as a predicate: "is not a canonical UUID".
	Rule string
	// Value is the offending input, clipped to a few dozen bytes; empty when there was none.
	Value string
}

// invalidField returns a FieldError for value, clipped.
func invalidField(field, rule, value string) error {
	return &FieldError{Field: field, Rule: rule, Value: clip(value)}
}

// Error reads like `invalid: movement_id "x" is not a canonical UUID`.
func (e *FieldError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("%v: %s %s", ErrInvalid, e.Field, e.Rule)
	}
	return fmt.Sprintf("%v: %s %q %s", ErrInvalid, e.Field, e.Value, e.Rule)
}

// Unwrap makes a FieldError match ErrInvalid.
func (e *FieldError) Unwrap() error { return ErrInvalid }
