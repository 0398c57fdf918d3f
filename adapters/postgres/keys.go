package postgres

import (
	"context"
	"fmt"

	"github.com/uptrace/bun"
)

// ControlKey returns the ledger's key for signing control headers (see the
// service_keys migration): every consumer of one ledger reads the same key.
func ControlKey(ctx context.Context, db *bun.DB) ([]byte, error) {
	var key []byte
	err := db.QueryRowContext(ctx, `SELECT secret FROM service_keys WHERE name = 'control-headers'`).Scan(&key)
	if err != nil {
		return nil, fmt.Errorf("read the control-headers key: %w", translate(err))
	}
	return key, nil
}
