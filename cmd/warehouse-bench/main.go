// Command warehouse-bench is the benchmark of the warehouse service (make bench): see
// `warehouse-bench --help`. It is a binary of its own so that the service binary links
// neither the benchmark nor its plotting library.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"warehouse/bench"
	"warehouse/bootstrap"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	code := 0
	if err != nil {
		fmt.Fprintf(os.Stderr, "warehouse-bench: %v\n", err)
		code = 1
		if errors.Is(err, bench.ErrUsage) {
			code = 2
		}
	}
	os.Exit(code)
}

// run reads the service's configuration (the environment and .env, as the service does)
// for the settings the benchmark shares with it, and runs the benchmark.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := bootstrap.LoadConfig()
	if err != nil {
		return err
	}
	return bench.Main(ctx, args, stdout, stderr, bench.Options{
		DatabaseURL: cfg.DatabaseURL, AMQPURL: cfg.AMQPURL,
		BatchSize: cfg.BatchSize, BatchWait: cfg.BatchWait, Prefetch: cfg.AMQPPrefetch, DBMaxConns: cfg.DBMaxConns,
		Log: bootstrap.NewLogger(stderr, cfg.LogFormat, cfg.LogLevel).With("component", "bench"),
	})
}
