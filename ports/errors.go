package ports

import "errors"

// ErrUnavailable marks a dependency outage (database down, timed out, connection lost):
// the request or batch was fine and may succeed later. HTTP maps it to 503; the consumer
// keeps its batch and retries.
var ErrUnavailable = errors.New("unavailable")
