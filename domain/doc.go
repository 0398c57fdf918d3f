// Package domain holds the warehouse vocabulary: movement events, movements, stock,
// their validation and derived values, and the sentinel errors every layer shares.
// It imports only the standard library and the UUID value type, does no I/O and never logs.
package domain
