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
