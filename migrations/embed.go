// Package migrations embeds the SQL schema migrations, applied in name order by Bun's
// migrator through postgres.Migrate. Each file name starts with 14 digits (Bun's rule);
// ".tx." files run in one transaction, so a failed migration leaves nothing half-done.
package migrations

import "embed"

// FS holds the *.up.sql and *.down.sql files.
//
//go:embed *.sql
var FS embed.FS
