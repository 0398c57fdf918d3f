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
func Bench(_ context.Context, args []string, stdout io.Writer) error {
	if helpRequested(args) {
		_, err := io.WriteString(stdout, "Usage: make bench (or go run ./cmd/warehouse-bench --help)\n\n"+
			"The benchmark is a binary of its own, which the service binary does not link.\n")
		return err
	}
	return usageError(errBenchMoved)
}
