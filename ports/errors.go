package ports

import "errors"

// ErrUnavailable marks a dependency outage (database down, timed out, connection lost):
// the request or batch was fine and may succeed later. HTTP maps it to 503; the consumer
// keeps its batch and retries.
var ErrUnavailable = errors.New("unavailable")

// ErrOverloaded marks a read the service shed because too many like it were already
// running: the dependency is healthy, the process is busy. It is never an outage, so it
// is not wrapped in ErrUnavailable and does not make the process unready. A caller may
// retry after a short pause; HTTP maps it to 503 with Retry-After and a problem type of
// its own. Decorators pass it through unchanged and never cache it.
var ErrOverloaded = errors.New("overloaded")

// ErrTooLarge marks input over one of the service's size bounds (a batch of too many
// events or bytes). It comes wrapped with domain.ErrInvalid; HTTP maps it to 413.
var ErrTooLarge = errors.New("too large")
