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

// Exit statuses of the binary. Every command exits 0 when it succeeds, exitFailure when
// it fails and exitUsage on a bad command line. audit also tells a ledger it found wrong
// (exitFailure) from one it could not check (exitUnchecked), so that a script can.
const (
	exitFailure   = 1
	exitUsage     = 2
	exitUnchecked = 3
)

// exitError is an error that sets the exit status of the binary.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// withExitCode makes err exit the binary with status code; nil stays nil.
func withExitCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: code, err: err}
}

// usageError marks err, a bad flag or argument, as a usage error: main prints err in one
// line, pointing at the command's --help, and exits with status 2.
func usageError(err error) error { return withExitCode(exitUsage, err) }

// ExitCode is the exit status of the binary after a command returned err: 0 for nil, 2
// for a usage error, the status the command chose for err (audit: 3 when it could not
// check), and 1 for any other error.
func ExitCode(err error) int {
	var ee *exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	}
	return exitFailure
}

// Command returns the subcommand called name.
func Command(name string) (CommandFunc, bool) {
	cmd, ok := map[string]CommandFunc{
		"run":          Run,
		"dev":          Dev,
		"serve":        Serve,
		"consume":      Consume,
		"migrate":      Migrate,
		"produce":      Produce,
		"dead-letters": DeadLetters,
		"audit":        Audit,
		"version":      Version,
		"--version":    Version,
		"bench":        Bench, // only says where the benchmark went
	}[name]
	return cmd, ok
}

// Usage is the help text of the binary.
const Usage = `warehouse: tracks goods moving between warehouses.

Usage:
  warehouse dev [--count N]         the whole service in memory, no PostgreSQL or RabbitMQ (nothing persisted)
  warehouse run                     migrate, then serve the HTTP API and consume events
  warehouse serve                   the HTTP API only
  warehouse consume                 the RabbitMQ consumer only (health and metrics on CONSUMER_HTTP_ADDR)
  warehouse migrate up|status       schema migrations (up creates the database when missing)
  warehouse migrate down [--yes]    revert the last migrations (--yes: even when the ledger holds events)
  warehouse produce [flags]         publish realistic, consistent movements (--help for flags)
  warehouse dead-letters list|replay  inspect dead letters; send chosen ones back (--help for flags)
  warehouse audit [--json]          recompute stock and movements from the events (exit 1: mismatch, 3: could not check)
  warehouse version                 module version, VCS revision, commit and build time of this binary (also --version)

Exit status: 0 done, 1 failed (audit: the ledger disagrees with its events), 2 usage error
(unknown command, bad flag or argument), 3 audit could not check (configuration, database
unreachable, query failed).

Configuration comes from the environment and from .env; see .env.example. The benchmark
is a binary of its own: make bench (cmd/warehouse-bench).
`

// parseFlags parses the flags of a subcommand that takes no positional arguments. help is
// true when the user asked for -h or --help: usage and the flags' defaults are printed on
// stdout, and the command does nothing else. A bad flag or an argument is a usage error,
// reported in one line by main (the flag package prints nothing itself).
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer, usage string) (help bool, err error) {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(fs, stdout, usage)
			return true, nil
		}
		return false, usageError(err)
	}
	if fs.NArg() > 0 {
		return false, usageError(fmt.Errorf("unexpected argument %q", clipArg(fs.Arg(0))))
	}
	return false, nil
}

// printUsage writes usage and the defaults of fs's flags to w.
func printUsage(fs *flag.FlagSet, w io.Writer, usage string) {
	fmt.Fprint(w, usage)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// helpRequested reports whether args ask for help (-h, -help or --help, before a "--").
func helpRequested(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help":
			return true
		}
	}
	return false
}

// clipArg keeps an argument echoed in an error short.
func clipArg(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// Main runs the binary with args (without the program name) and returns its exit status.
// Help (warehouse --help, warehouse CMD --help, warehouse CMD SUB --help) goes to stdout
// and exits 0; a bad command line is one line on stderr and exits 2.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, Usage)
		return exitUsage
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, Usage)
		return 0
	}
	cmd, ok := Command(args[0])
	if !ok {
		fmt.Fprintf(stderr, "warehouse: unknown command %q (see warehouse --help)\n", clipArg(args[0]))
		return exitUsage
	}
	err := cmd(ctx, args[1:], stdout)
	switch code := ExitCode(err); {
	case err == nil:
	case code == exitUsage:
		fmt.Fprintf(stderr, "warehouse %s: %v (see warehouse %s --help)\n", args[0], err, args[0])
	default:
		fmt.Fprintf(stderr, "warehouse %s: %v\n", args[0], err)
	}
	return ExitCode(err)
}

// setup loads the configuration and builds the logger every subcommand starts with.
func setup() (Config, *slog.Logger, error) {
	cfg, err := LoadConfig()
	if err != nil {
		return Config{}, nil, err
	}
	return cfg, NewLogger(os.Stderr, cfg.LogFormat, cfg.LogLevel), nil
}
