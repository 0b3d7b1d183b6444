package sim

import "syscall"

// RaiseFileLimit lifts this process's open-file limit to its hard maximum
// and, where allowed (root), to the kernel's: each simulated worker holds
// connections of its own, and children (masters a test starts) inherit it.
func RaiseFileLimit() {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return
	}
	want := syscall.Rlimit{Cur: max(lim.Max, 1<<20), Max: max(lim.Max, 1<<20)}
	if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want) == nil {
		return
	}
	want = syscall.Rlimit{Cur: lim.Max, Max: lim.Max}
	_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want)
}

// FileLimit is this process's open-file limit (0 when unknown).
func FileLimit() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0
	}
	return int(min(lim.Cur, 1<<30))
}

// fileReserve is the open files a simulator keeps beside its workers'
// connections (its own clients, logs, a test's calls).
const fileReserve = 1000

// ConnsFor is the fewest shared connections (Config.Conns) that let
// workers run under an open-file limit: 0 (one per worker, as separate
// processes have) when the limit allows it; else as many as fit, each
// worker needing perWorker (a connection to each master).
func ConnsFor(workers, perWorker, limit int) int {
	if limit <= 0 || workers*perWorker+fileReserve <= limit {
		return 0
	}
	return max((limit-fileReserve)/perWorker, 1)
}

// GCFloor is the heap floor (internal/gcfloor) a simulator's process runs
// with: thousands of workers' calls allocate fast, and with Go's default a
// collection (marking every worker's connection buffers and goroutine
// stacks) ran every few seconds and took a fifth of the simulator's CPU
// (docs/profiles/scale/sim-*). At most this much more heap.
const GCFloor = 512 << 20
