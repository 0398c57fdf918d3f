// Package bootstrap reads the configuration, builds the logger, the metrics registry
// and the adapters, wires them to the use cases, and runs one subcommand of the
// warehouse binary with an orderly shutdown. It is the only package that knows every other.
package bootstrap

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
)

// CommandFunc runs one subcommand with its arguments until ctx is done or the work ends.
type CommandFunc func(ctx context.Context, args []string, stdout io.Writer) error

// errUsage asks main to print the usage and exit with status 2.
var errUsage = errors.New("usage")

// ErrUsage reports whether err asks for the usage text.
func ErrUsage(err error) bool { return errors.Is(err, errUsage) }

// Command returns the subcommand called name.
func Command(name string) (CommandFunc, bool) {
	cmd, ok := map[string]CommandFunc{
		"run":          Run,
		"serve":        Serve,
		"consume":      Consume,
		"migrate":      Migrate,
		"produce":      Produce,
		"dead-letters": DeadLetters,
		"audit":        Audit,
		"bench":        Bench,
	}[name]
	return cmd, ok
}

// Usage is the help text of the binary.
const Usage = `warehouse: tracks goods moving between warehouses.

Usage:
  warehouse run                     migrate, then serve the HTTP API and consume events
  warehouse serve                   the HTTP API only
  warehouse consume                 the RabbitMQ consumer only (health and metrics on CONSUMER_HTTP_ADDR)
  warehouse migrate up|down|status  schema migrations (creates the database when missing)
  warehouse produce [flags]         publish realistic, consistent movements (--help for flags)
  warehouse dead-letters list|replay  inspect dead letters; send chosen ones back (--help for flags)
  warehouse audit [--json]          recompute stock and movements from the events; exit 1 on any mismatch
  warehouse bench [--smoke]         measure the service against this machine's own ceilings (--help for flags)

Configuration comes from the environment and from .env; see .env.example.
`

// parseFlags parses the flags of a subcommand that takes no positional arguments. help is
// true when the user asked for -h (the usage is printed; the command does nothing).
func parseFlags(fs *flag.FlagSet, args []string) (help bool, err error) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return true, nil
		}
		return false, err
	}
	if fs.NArg() > 0 {
		return false, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return false, nil
}

// setup loads the configuration and builds the logger every subcommand starts with.
func setup() (Config, *slog.Logger, error) {
	cfg, err := LoadConfig()
	if err != nil {
		return Config{}, nil, err
	}
	return cfg, NewLogger(os.Stderr, cfg.LogFormat, cfg.LogLevel), nil
}
