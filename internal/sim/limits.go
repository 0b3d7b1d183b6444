package sim

import (
	"os"
	"runtime/debug"
	"syscall"
)

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

// minGCLimit is the least memory a simulator's process collects at
// (gcLimitFor): thousands of workers' calls allocate fast, and with Go's
// default a collection (marking every worker's connection buffers and
// goroutine stacks) ran every few seconds and took a fifth of the
// simulator's CPU (docs/profiles/scale/sim-*).
const minGCLimit = 512 << 20

// gcPerWorker is the memory a simulator allows each simulated worker
// (gcLimitFor): about two minutes of its allocation, a heartbeat and a
// poll a second at ~1.4 KB a call.
const gcPerWorker = 384 << 10

// gcLimitFor is the memory limit a simulator of workers collects at
// (TuneGC): minGCLimit, or two minutes of the workers' allocation when more
// (3.7 GiB for 10,000).
func gcLimitFor(workers int) int64 {
	return max(int64(minGCLimit), int64(workers)*gcPerWorker)
}

// TuneGC sets this process's collector for a simulator of workers and
// returns what restores it: no collection until the process's memory
// reaches gcLimitFor(workers) (GOGC off, that memory limit), about every
// two minutes. Why: one collection of the simulator stalls every
// simulated worker at once, which no fleet of real workers (each
// collecting its own small heap on its own host) does. Marking 10,000
// workers' streams (130 MB of heap, 50 MB of stacks) took 0.3 s and 0.6
// of a core-second, 0.4 of it in mark assists on the workers' own
// goroutines; with the heap floor it had before (internal/gcfloor, 512
// MiB) the simulator collected every ~40 s, and the second of each
// collection held up to 3,500 heartbeats and 3,900 polls over 50 ms (the
// 10,000-worker benchmark's p99 is its worst 6,000 of 600,000 a minute):
// hb3, GODEBUG=gctrace=1 beside the workers' per-second tails. A GOGC or
// GOMEMLIMIT in the environment wins: nothing is changed.
func TuneGC(workers int) (restore func()) {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		return func() {}
	}
	limit := debug.SetMemoryLimit(gcLimitFor(workers))
	percent := debug.SetGCPercent(-1)
	return func() {
		debug.SetGCPercent(percent)
		debug.SetMemoryLimit(limit)
	}
}
