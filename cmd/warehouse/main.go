// Command warehouse is the warehouse movements service: see `warehouse help`.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"warehouse/bootstrap"
)

func main() {
	if len(os.Args) < 2 || os.Args[1] == "help" || os.Args[1] == "-h" || os.Args[1] == "--help" {
		fmt.Fprint(os.Stderr, bootstrap.Usage)
		os.Exit(2)
	}
	cmd, ok := bootstrap.Command(os.Args[1])
	if !ok {
		fmt.Fprintf(os.Stderr, "warehouse: unknown command %q\n\n%s", os.Args[1], bootstrap.Usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := cmd(ctx, os.Args[2:], os.Stdout)
	stop()
	switch {
	case err == nil:
	case bootstrap.ErrUsage(err):
		fmt.Fprint(os.Stderr, bootstrap.Usage)
	default:
		fmt.Fprintf(os.Stderr, "warehouse %s: %v\n", os.Args[1], err)
	}
	os.Exit(bootstrap.ExitCode(err))
}
