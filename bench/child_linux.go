//go:build linux

package bench

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the kernel send SIGTERM to the child when the benchmark dies, so
// that a killed run never leaves a consumer draining a queue.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
