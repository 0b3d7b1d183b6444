// Package bench holds Alluvium's benchmarks. Each benchmark measures one of
// our figures and, in the same run, its reference (raw bbolt fsyncs, cp -r,
// cat, rclone, MinIO), and reports both with b.ReportMetric so that
// `make bench` (cmd/benchreport) can tabulate medians and ratios into
// docs/BENCHMARKS.md.
//
// Benchmarks do their own timing of a fixed workload and are meant to run
// with -benchtime=1x; -count gives the repetitions the median is taken over.
package bench
