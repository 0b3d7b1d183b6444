// Package scale is the scale run of issue 20: a UFS of millions of files and
// thousands of simulated workers (internal/sim) against one FS master and
// one job master, real processes. BenchmarkScale (`make bench-scale`)
// measures it at full size — learning the tree against find, the FS
// master's heap per inode, a restart, the masters' CPU and the workers'
// heartbeat latency at 1 Hz, a load over cached files, both leaders
// restarted — and TestScaleSmall runs it cut down in `make test`, checking
// correctness only.
package scale
