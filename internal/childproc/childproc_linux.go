package childproc

import (
	"os/exec"
	"syscall"
)

// DieWithParent has the kernel SIGKILL cmd's process when the thread that
// started it ends — in a Go process that is when the process ends (the
// runtime ends a thread only with a goroutine locked to it, and Start is
// not called from one). Other process attributes already set are kept.
func DieWithParent(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
