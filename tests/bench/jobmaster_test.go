package bench

import (
	"context"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/config"
	"github.com/alluvium/alluvium/internal/rpc"
	"github.com/alluvium/alluvium/internal/testutil"
	"github.com/alluvium/alluvium/jobmaster"
	"github.com/alluvium/alluvium/jobworker"
	"github.com/alluvium/alluvium/plans"
	"github.com/alluvium/alluvium/plans/spec"
)

// noopPlan makes {"tasks": N} tasks that do nothing: what is left is the
// job service's own cost per task (plan, hand out, run, report, commit).
type noopPlan struct{}

type noopConfig struct {
	Tasks int `json:"tasks"`
}

type noopPlanner struct{ n, next int }

func (noopPlan) Name() string { return "bench-noop" }
func (noopPlan) Validate(_ context.Context, _ plans.Env, c []byte) (spec.Valid, error) {
	var nc noopConfig
	if err := json.Unmarshal(c, &nc); err != nil {
		return spec.Valid{}, err
	}
	return spec.Valid{Config: c}, nil
}
func (noopPlan) NewPlanner(_ context.Context, _ plans.Env, j plans.Job) (plans.Planner, error) {
	var nc noopConfig
	if err := json.Unmarshal(j.Config, &nc); err != nil {
		return nil, err
	}
	p := &noopPlanner{n: nc.Tasks}
	if len(j.Cursor) > 0 {
		_ = json.Unmarshal(j.Cursor, &p.next)
	}
	return p, nil
}
func (p *noopPlanner) Next(_ context.Context, max int) (plans.Batch, error) {
	var b plans.Batch
	for len(b.Tasks) < max && p.next < p.n {
		b.Tasks = append(b.Tasks, plans.TaskSpec{Args: []byte("{}"), Description: "noop"})
		p.next++
	}
	b.Cursor, _ = json.Marshal(p.next)
	b.Done = p.next >= p.n
	return b, nil
}
func (p *noopPlanner) Close() error { return nil }
func (noopPlan) Run(context.Context, plans.Env, *plans.Task) (plans.Result, error) {
	return plans.Result{}, nil
}
func (noopPlan) Done(context.Context, plans.Env, plans.Job) (bool, error) { return true, nil }

func benchConfig(b testing.TB) *config.Config {
	l := config.NewLoader()
	l.Set("home", b.TempDir())
	cfg, err := l.Load()
	if err != nil {
		b.Fatal(err)
	}
	cfg.Log.Level = "warn"
	jm := &cfg.JobMaster
	jm.Host, jm.BindHost = "127.0.0.1", "127.0.0.1"
	jm.RPCPort, jm.HTTPPort, jm.Raft.Port = testutil.FreePort(b), testutil.FreePort(b), testutil.FreePort(b)
	jm.Raft.NodeID = ""
	jm.Raft.NodeID = fmt.Sprintf("127.0.0.1:%d", jm.Raft.Port)
	jm.Raft.HeartbeatTimeout = 200 * time.Millisecond
	jm.Raft.ElectionTimeout = 200 * time.Millisecond
	cfg.Worker.Host, cfg.Worker.BindHost = "127.0.0.1", "127.0.0.1"
	return cfg
}

// BenchmarkJobMasterTasks pushes trivial tasks through one job master
// (bbolt raft log with fsync) and four in-process job workers over gRPC:
// with the default worker settings (8 threads, as many queued), and with a
// deeper queue (56 queued) which suits tasks this short. Goal: >= 20,000
// tasks/s. The reference, in the same run, is raft alone doing the same
// durability work (rawRaftApplies); small-job-ms, the latency of an 8-task
// job, has the latency of an empty job beside it.
func BenchmarkJobMasterTasks(b *testing.B) {
	b.Run("default", func(b *testing.B) { benchTasks(b, 0) })
	b.Run("queue-64", func(b *testing.B) { benchTasks(b, 56) })
}

func benchTasks(b *testing.B, queueDepth int) {
	plans.Register(noopPlan{})
	log := zap.NewNop()
	cfg := benchConfig(b)
	m, err := jobmaster.New(cfg, log)
	if err != nil {
		b.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer m.Stop(context.Background())
	for deadline := time.Now().Add(10 * time.Second); !m.IsLeader(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatal("no leader")
		}
	}
	for i := 0; i < 4; i++ {
		wc := benchConfig(b)
		wc.JobWorker.JobMaster = m.RPCAddr()
		wc.JobWorker.Threads = 8
		wc.JobWorker.QueueDepth = queueDepth
		wc.JobWorker.RPCPort = 0
		w, err := jobworker.New(wc, log, jobworker.Colocated{})
		if err != nil {
			b.Fatal(err)
		}
		if err := w.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
		defer w.Stop(context.Background())
	}
	cc, err := rpc.Dial(m.RPCAddr(), rpc.ClientOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Close()
	cl := api.NewJobMasterClient(cc)
	run := func(n int) time.Duration {
		start := time.Now()
		resp, err := cl.SubmitJob(context.Background(), &api.SubmitJobRequest{Plan: "bench-noop", ConfigJson: fmt.Sprintf(`{"tasks":%d}`, n)})
		if err != nil {
			b.Fatal(err)
		}
		interval := int64(20) // a big job: fewer states to send
		if n < 100 {
			interval = 1 // a small one: its end seen at once
		}
		st, err := cl.WatchJob(context.Background(), &api.WatchJobRequest{JobId: resp.JobId, MinIntervalMs: interval})
		if err != nil {
			b.Fatal(err)
		}
		var last *api.JobInfo
		for {
			j, err := st.Recv()
			if err != nil {
				break
			}
			last = j
		}
		if last == nil || last.Status != api.JobInfo_COMPLETED || last.TasksDone != int64(n) {
			b.Fatalf("job ended as %v", last)
		}
		return time.Since(start)
	}
	run(2000) // warm up connections
	const n = 200000
	s0 := m.Stats()
	b.ResetTimer()
	took := run(n)
	b.StopTimer()
	s1 := m.Stats()
	b.ReportMetric(float64(n)/took.Seconds(), "tasks/s")
	b.ReportMetric(float64(s1.LogEntries-s0.LogEntries)/float64(max(s1.LogWrites-s0.LogWrites, 1)), "raft-entries/fsync")
	b.ReportMetric(float64(s1.TaskUpdates-s0.TaskUpdates)/float64(max(s1.UpdateEntries-s0.UpdateEntries, 1)), "updates/raft-entry")
	b.ReportMetric(float64(s1.LogWrites-s0.LogWrites)/took.Seconds(), "fsyncs/s")

	// The reference: the same raft entries (as many, of the same mean
	// size) applied by a lone raft node on the same stores with an FSM that
	// does nothing, one applier (the job master's collector commits one
	// batch at a time, about one entry per fsync).
	entries := int(s1.LogEntries - s0.LogEntries)
	size := int((s1.LogBytes - s0.LogBytes) / max(s1.LogEntries-s0.LogEntries, 1))
	refTook, refWrites := rawRaftApplies(b, entries, size, 1)
	b.ReportMetric(float64(n)/refTook.Seconds(), "raft-tasks/s")
	b.ReportMetric(float64(entries)/float64(max(refWrites, 1)), "raft-ref-entries/fsync")
	b.ReportMetric(refTook.Seconds()/took.Seconds(), "ratio-tasks/raft")
	reference(b, "*", "raw raft: the same entries, same stores, no-op FSM")
	b.Logf("NOTE: JobMasterTasks: %s: no-op tasks planned, handed out, run by 4 in-process job workers over gRPC and reported; every raft log write fsynced (bbolt). The reference applies as many raft entries of the same mean size (%d bytes) through a lone raft node built the same way (raftgroup stores and settings, fsync on every log write) with an FSM that does nothing, from one goroutine; raft-tasks/s is the task rate that raft alone would allow, ratio-tasks/raft the reference's time over the job master's. Nothing is verified on either side", strings.TrimPrefix(b.Name(), "Benchmark"), size)
	smallJobLatency(b, run)
}

// smallJobLatency is the time from submit to a watched COMPLETED of an
// 8-task job, the median of 20 (small-job-ms), beside one raft apply
// through the same job master (submit of an empty job) as its floor.
func smallJobLatency(b *testing.B, run func(n int) time.Duration) {
	var small, floor []float64
	for range 20 {
		small = append(small, float64(run(8))/float64(time.Millisecond))
		floor = append(floor, float64(run(0))/float64(time.Millisecond))
	}
	b.ReportMetric(medianOf(small), "small-job-ms")
	b.ReportMetric(medianOf(floor), "empty-job-ms")
	reference(b, "small-job-ms", "empty-job-ms: a job of no task through the same master (submit, plan, finish)")
	reference(b, "empty-job-ms", "the reference of small-job-ms itself")
}

// loadCluster is an in-process FS master over a local UFS directory, one
// block worker whose tier is a directory on the same file system as the
// `cp -r` target, a job master and the job worker beside the block worker.
type loadCluster struct {
	ufs  string
	tier string
	jobs api.JobMasterClient
}

// startLoadCluster is startJobCluster with its UFS in a temp dir and its
// tier under tierRoot.
func startLoadCluster(b *testing.B, tierRoot string) *loadCluster {
	b.Helper()
	lc := &loadCluster{ufs: filepath.Join(b.TempDir(), "ufs"), tier: filepath.Join(tierRoot, "tier")}
	if err := os.MkdirAll(lc.ufs, 0o755); err != nil {
		b.Fatal(err)
	}
	lc.jobs = startJobCluster(b, lc.ufs, lc.tier)
	return lc
}

// load runs a load job of path to the end and returns how long it took.
func (lc *loadCluster) load(b *testing.B, path string) (time.Duration, *api.JobInfo) {
	b.Helper()
	start := time.Now()
	resp, err := lc.jobs.SubmitJob(context.Background(), &api.SubmitJobRequest{Plan: "load", ConfigJson: fmt.Sprintf(`{"path":%q}`, path)})
	if err != nil {
		b.Fatal(err)
	}
	st, err := lc.jobs.WatchJob(context.Background(), &api.WatchJobRequest{JobId: resp.JobId, MinIntervalMs: 10})
	if err != nil {
		b.Fatal(err)
	}
	var last *api.JobInfo
	tl := newJobTimeline()
	for {
		j, err := st.Recv()
		if err != nil {
			break
		}
		last = j
		tl.see(j)
		if os.Getenv("BENCH_TRACE") != "" { // the job's timeline, to see where a run waits
			fmt.Fprintf(os.Stderr, "%6.3fs %v tasks %d/%d bytes %d\n", time.Since(start).Seconds(), j.Status, j.TasksDone, j.TasksTotal, j.BytesDone)
		}
	}
	took := time.Since(start)
	tl.report("load " + path)
	if last == nil || last.Status != api.JobInfo_COMPLETED {
		b.Fatalf("load %s ended as %v", path, last)
	}
	return took, last
}

// cpR times `cp -r src dst`.
func cpR(b *testing.B, src, dst string) time.Duration {
	b.Helper()
	_ = os.RemoveAll(dst)
	start := time.Now()
	if out, err := exec.Command("cp", "-r", src, dst).CombinedOutput(); err != nil {
		b.Fatalf("cp -r: %v\n%s", err, out)
	}
	took := time.Since(start)
	_ = os.RemoveAll(dst)
	return took
}

// tierRoot is where the tier and the cp target live: tmpfs when the
// machine has one (a MEM tier), else the test's temp dir.
func tierRoot(b *testing.B) string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		d, err := os.MkdirTemp("/dev/shm", "alluvium-bench-")
		if err == nil {
			b.Cleanup(func() { os.RemoveAll(d) })
			return d
		}
	}
	return b.TempDir()
}

func writeTree(b testing.TB, dir string, files, size int) {
	b.Helper()
	buf := make([]byte, size)
	r := mrand.New(mrand.NewPCG(7, uint64(size)))
	for i := range buf {
		buf[i] = byte(r.Uint32())
	}
	for i := 0; i < files; i++ {
		p := filepath.Join(dir, fmt.Sprintf("d%03d", i/1000), fmt.Sprintf("f%05d", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		buf[0] = byte(i)
		if err := os.WriteFile(p, buf, 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

// benchLoadVsCp loads files×size bytes through the job service (listing,
// planning, tasks, CacheBlock from the UFS into the tier, block commits)
// and copies the same tree with `cp -r` onto the tier's file system. The
// UFS files are read once first so both read from the page cache.
func benchLoadVsCp(b *testing.B, files, size, rounds int) {
	root := tierRoot(b)
	lc := startLoadCluster(b, root)
	// One tree per round, each loaded once (a load of what is cached does
	// nothing).
	srcs := make([]string, rounds)
	for i := range srcs {
		srcs[i] = filepath.Join(lc.ufs, fmt.Sprintf("data-%d", i))
		writeTree(b, srcs[i], files, size)
	}
	// Write the trees back to disk now: otherwise the kernel flushes 20k
	// dirty inodes while the timed runs go, and whichever runs first pays.
	syscall.Sync()
	runtime.GC()
	dst := filepath.Join(root, "cp-target")
	for _, src := range srcs {
		cpR(b, src, dst) // warm the page cache
	}
	// cp -r is timed before the first load, between each two and after the
	// last; each load's reference is the mean of the cp just before and
	// just after it, so a drift in the machine's speed hits both sides.
	var loads, cps, ratios, cpus, allocs []float64
	cpBefore := cpR(b, srcs[0], dst)
	syscall.Sync()
	b.ResetTimer()
	for i, src := range srcs {
		stop := func() {}
		if i == len(srcs)/2 { // one round's profile: the median's neighbourhood
			stop = profileRun(b, "load")
		}
		b.StartTimer()
		cpu0, mallocs0 := cpuTime(), mallocs()
		took, job := lc.load(b, "/"+filepath.Base(src))
		cpus = append(cpus, (cpuTime() - cpu0).Seconds())
		allocs = append(allocs, float64(mallocs()-mallocs0)/float64(files))
		b.StopTimer()
		stop()
		if job.BytesDone != int64(files*size) {
			b.Fatalf("loaded %d bytes, want %d", job.BytesDone, files*size)
		}
		cpAfter := cpR(b, srcs[min(i+1, len(srcs)-1)], dst)
		cpTook := (cpBefore + cpAfter) / 2
		cpBefore = cpAfter
		loads = append(loads, took.Seconds())
		cps = append(cps, cpTook.Seconds())
		ratios = append(ratios, took.Seconds()/cpTook.Seconds())
		b.ReportMetric(float64(job.TasksTotal), "tasks")
	}
	med := func(v []float64) float64 {
		s := slices.Clone(v)
		slices.Sort(s)
		return s[len(s)/2]
	}
	b.ReportMetric(med(loads), "load-s")
	b.ReportMetric(med(cps), "cp-s")
	b.ReportMetric(med(ratios), "ratio-load/cp")
	// Every role runs in this process: its CPU time is the load's, the
	// steadier figure on a busy machine.
	b.ReportMetric(med(cpus), "load-cpu-s")
	// Heap allocations of every role per file loaded: a figure the
	// machine's load does not move, where CPU time and the wall do.
	b.ReportMetric(med(allocs), "load-allocs/file")
	b.ReportMetric(float64(files*size)/1e6/med(loads), "load-MB/s")
	reference(b, "*", "cp -r of the same tree onto the tier's file system, timed before and after each load")
	what := ""
	if rounds > 1 {
		what = fmt.Sprintf(" Each run is %d rounds, each loading a fresh copy of the tree between two timed cp -r; the figures are the rounds' medians.", rounds)
	}
	b.Logf("NOTE: %s: load: list, plan, tasks, CacheBlock fills from the local UFS (page-cached) into the tier (each block written under its name marked as being written, the mark cleared at commit; no fsync: tmpfs when there is one), block commits held in the FS master's memory (block locations are not journaled: workers report them again after a restart); the UFS fingerprint (size + mtime) checked, no checksum. cp -r: the same files from the page cache onto the same file system, no fsync, no verify. All roles run in the benchmark's process with the server roles' GC heap floor (process.gc-heap-floor, 128 MiB), as `alluvium local` does.%s", b.Name(), what)
}

// BenchmarkLoad1GiB64Files: goal ratio-load/cp <= 1.1.
func BenchmarkLoad1GiB64Files(b *testing.B) { benchLoadVsCp(b, 64, 16<<20, 1) }

// BenchmarkLoad20000SmallFiles: goal ratio-load/cp <= 1.2, the median of 5
// rounds with cp -r timed between the loads (Alluxio's distributedLoad was
// reported about 4x slower than cp -r on small files).
func BenchmarkLoad20000SmallFiles(b *testing.B) { benchLoadVsCp(b, 20000, 4096, 5) }
