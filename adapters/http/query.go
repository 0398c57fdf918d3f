package http

import (
	"bytes"
	"encoding/base64"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"warehouse/domain"
	"warehouse/ports"
)

// readQuery returns the query parameters of an /api request, refusing (400) any name
// not in allowed, any name given twice and any empty value: a misspelt filter that silently returned
// everything would be worse than an error.
func readQuery(c *fiber.Ctx, allowed ...string) (map[string]string, error) {
	args := c.Context().QueryArgs()
	if args.Len() == 0 {
		return nil, nil
	}
	query := make(map[string]string, args.Len())
	var err error
	args.VisitAll(func(k, v []byte) {
		if err != nil {
			return
		}
		// Details name parameters from allowed only: the name sent may be anything.
		i := slices.Index(allowed, string(k))
		if i < 0 {
			err = unknownParameter(allowed)
			return
		}
		name := allowed[i]
		if _, dup := query[name]; dup {
			err = &requestError{detail: "query parameter " + name + " is given more than once"}
			return
		}
		if len(v) == 0 {
			err = &requestError{detail: "query parameter " + name + " is empty; leave it out instead"}
			return
		}
		query[name] = string(v)
	})
	return query, err
}

func unknownParameter(allowed []string) error {
	if len(allowed) == 0 {
		return &requestError{detail: "unknown query parameter: this route takes none"}
	}
	return &requestError{detail: "unknown query parameter: this route takes " + strings.Join(allowed, ", ")}
}

// parseLimit reads the optional limit as an integer, ports.DefaultListLimit when absent;
// application.Queries checks its range.
func parseLimit(query map[string]string) (int, error) {
	v, ok := query["limit"]
	if !ok {
		return ports.DefaultListLimit, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, errBadLimit
	}
	return n, nil
}

// optionalID parses the UUID query parameter name, nil when absent.
func optionalID[T any](query map[string]string, name string, parse func(string) (T, error)) (*T, error) {
	v, ok := query[name]
	if !ok {
		return nil, nil
	}
	id, err := parse(v)
	if err != nil {
		return nil, &domain.FieldError{Field: name, Rule: "is not a canonical UUID"}
	}
	return &id, nil
}

// optionalTime parses the RFC 3339 query parameter name, zero when absent.
func optionalTime(query map[string]string, name string) (time.Time, error) {
	v, ok := query[name]
	if !ok {
		return time.Time{}, nil
	}
	return parseTime(name, v)
}

// maxDuration bounds a duration parameter: a hundred years covers any ledger.
const maxDuration = 100 * 365 * 24 * time.Hour

// parseDuration reads a positive Go duration ("48h", "90m") of at most maxDuration.
func parseDuration(field, v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 || d > maxDuration {
		return 0, &domain.FieldError{Field: field, Rule: "is not a positive duration such as 48h or 90m, at most 876000h"}
	}
	return d, nil
}

var errBadLimit = &requestError{detail: "limit is not an integer from 1 to " + strconv.Itoa(ports.MaxListLimit)}

// parseTime reads an RFC 3339 time. A '+' sent unencoded in a query string arrives as a
// space, and no valid RFC 3339 time has one, so a space is read back as '+'.
func parseTime(field, v string) (time.Time, error) {
	return domain.ParseTimestamp(field, strings.ReplaceAll(v, " ", "+"))
}

// Cursors are opaque to clients: base64url (unpadded) of a versioned text.
const (
	movementCursorPrefix = "m1|" // then RFC 3339 time with nanoseconds, '|', movement id
	stockCursorPrefix    = "s1|" // then product id
	maxCursorLen         = 128
)

func encodeMovementCursor(cur domain.MovementCursor) string {
	raw := movementCursorPrefix + cur.Time.UTC().Format(time.RFC3339Nano) + "|" + cur.ID.String()
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

func decodeMovementCursor(s string) (domain.MovementCursor, error) {
	raw, ok := decodeCursor(s, movementCursorPrefix)
	if !ok {
		return domain.MovementCursor{}, errBadCursor
	}
	ts, id, ok := strings.Cut(raw, "|")
	if !ok {
		return domain.MovementCursor{}, errBadCursor
	}
	// As strict as since and until: a forged cursor must not carry a time that the
	// store cannot hold (PostgreSQL refuses year 0).
	t, err := domain.ParseTimestamp("cursor", ts)
	if err != nil {
		return domain.MovementCursor{}, errBadCursor
	}
	mid, err := domain.ParseMovementID(id)
	if err != nil {
		return domain.MovementCursor{}, errBadCursor
	}
	return domain.MovementCursor{Time: t, ID: mid}, nil
}

func encodeStockCursor(p domain.ProductID) string {
	return base64.RawURLEncoding.EncodeToString([]byte(stockCursorPrefix + p.String()))
}

func decodeStockCursor(s string) (domain.ProductID, error) {
	raw, ok := decodeCursor(s, stockCursorPrefix)
	if !ok {
		return domain.ProductID{}, errBadCursor
	}
	p, err := domain.ParseProductID(raw)
	if err != nil {
		return domain.ProductID{}, errBadCursor
	}
	return p, nil
}

var errBadCursor = &requestError{detail: "cursor is malformed; pass next_cursor from the previous page unchanged"}

// decodeCursor returns the text after prefix, or false when s is not one of our cursors.
func decodeCursor(s, prefix string) (string, bool) {
	if len(s) > maxCursorLen {
		return "", false
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || !bytes.HasPrefix(raw, []byte(prefix)) {
		return "", false
	}
	return string(raw[len(prefix):]), true
}
