package bootstrap

import (
	"context"
	"errors"
	"io"
)

// errBenchMoved is what `warehouse bench` says since the benchmark left the service binary.
var errBenchMoved = errors.New("the benchmark is a binary of its own, which this one does not link: " +
	"run make bench, or go run ./cmd/warehouse-bench --help")

// Bench is `warehouse bench`: it only says where the benchmark went, and exits 2 like an
// unknown command.
func Bench(context.Context, []string, io.Writer) error { return usageError(errBenchMoved) }
