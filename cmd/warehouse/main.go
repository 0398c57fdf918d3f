// Command warehouse is the warehouse movements service: see `warehouse help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"warehouse/bootstrap"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := bootstrap.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
