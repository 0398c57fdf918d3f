//go:build !linux

package bench

import "os/exec"

// dieWithParent does nothing where the kernel offers no parent-death signal: cleanup
// stops the children of a run that ends normally or is interrupted.
func dieWithParent(*exec.Cmd) {}
