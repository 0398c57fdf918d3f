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

func wrapInvalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}
