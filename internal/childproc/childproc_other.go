//go:build !linux

package childproc

import "os/exec"

// DieWithParent does nothing where the kernel has no parent-death signal:
// there a child the parent could not stop keeps running.
func DieWithParent(cmd *exec.Cmd) {}
