// Package sim simulates many block and job workers in one process, for
// the scale benchmark (tests/scale) and `alluvium sim workers`: each
// simulated worker is a real gRPC client of the masters that registers
// (with a full block report), heartbeats at the interval the master gives,
// re-registers when asked, long-polls the job master for tasks and
// completes them at once — a load task by committing its blocks to the FS
// master as cached on the target worker, as a real worker does after
// storing them. It measures what a worker sees: heartbeat and report
// latencies, refusals, re-registrations.
package sim
