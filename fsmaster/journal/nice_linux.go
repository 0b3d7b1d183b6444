package journal

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// setThreadNice sets the nice value of the calling OS thread (on Linux,
// PRIO_PROCESS with a thread id is that thread alone).
//
// Why the writer asks for it: every commit is two fdatasyncs on the one
// writer goroutine, and the kernel's part of each (building and sending
// the writes, then waking the thread when the disk answers) needs a CPU
// while the master's RPC threads keep both busy with the callers of the
// other commit. At equal priority the writer's fdatasyncs took 1.5 times
// a bare bbolt transaction's in the same run (FSMasterCreate/sdk/clients=64,
// execution traces); at -10 they took the same.
func setThreadNice(n int) error {
	tid := unix.Gettid()
	if err := unix.Setpriority(unix.PRIO_PROCESS, tid, n); err != nil {
		return fmt.Errorf("setpriority(thread %d, %d): %w", tid, n, err)
	}
	return nil
}
