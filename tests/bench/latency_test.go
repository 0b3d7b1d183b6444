package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/testutil"
	"github.com/alluvium/alluvium/sdk"
)

// localCluster is `alluvium local` (the non-race binary) run for a
// benchmark, and an SDK client of it.
type localCluster struct {
	ufs   string
	c     *sdk.Client
	cmd   *exec.Cmd
	http  string // the FS master's http address (every role's profile: one process)
	token string
}

// profileCPU takes a CPU profile of the whole `alluvium local` process for
// d into $BENCH_PROFILES/name (nothing when that is unset); the
// returned func waits for it.
func (lc *localCluster) profileCPU(b *testing.B, name string, d time.Duration) func() {
	return lc.profile(b, "profile", name, d)
}

// profile takes the pprof kind ("profile": CPU, "allocs": what the
// process allocated since it started, at once, "trace": an execution trace, whose blocking profiles `go tool
// trace -pprof=syscall|net|sync` show where a job waits; only with
// BENCH_TRACE set too, as tracing slows the process it watches) of the
// local process for d.
func (lc *localCluster) profile(b *testing.B, kind, name string, d time.Duration) func() {
	dir := os.Getenv("BENCH_PROFILES")
	if dir == "" || kind == "trace" && os.Getenv("BENCH_TRACE") == "" {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		url := fmt.Sprintf("http://%s/debug/pprof/%s?seconds=%d", lc.http, kind, max(int(d/time.Second), 1))
		if kind == "allocs" { // since start, as of a collection made now
			url = fmt.Sprintf("http://%s/debug/pprof/allocs?gc=1", lc.http)
		}
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			b.Error(err)
			return
		}
		req.Header.Set("Authorization", "Bearer "+lc.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Errorf("profile %s: %v", name, err)
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("%s: %s", resp.Status, body)
		}
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, name), body, 0o644)
		}
		if err != nil {
			b.Errorf("profile %s: %v", name, err)
		}
	}()
	return func() { <-done }
}

// contention takes the mutex and block profiles (name.mutex.pprof,
// name.block.pprof) of the local process for d, only with BENCH_CONTENTION
// set too: sampling contention costs the process it watches.
func (lc *localCluster) contention(b *testing.B, name string, d time.Duration) func() {
	if os.Getenv("BENCH_CONTENTION") == "" {
		return func() {}
	}
	mu := lc.profile(b, "mutex", name+".mutex.pprof", d)
	bl := lc.profile(b, "block", name+".block.pprof", d)
	return func() { mu(); bl() }
}

// startLocal runs `alluvium local --workers N` over a fresh UFS dir, waits
// for its ready line and connects an SDK client with its env file.
func startLocal(b *testing.B, workers int, args ...string) *localCluster {
	b.Helper()
	bin := plainBinary(b)
	home := filepath.Join(b.TempDir(), "home")
	lc := &localCluster{ufs: filepath.Join(b.TempDir(), "ufs")}
	if err := os.MkdirAll(lc.ufs, 0o755); err != nil {
		b.Fatal(err)
	}
	base := testutil.PortBase(b)
	lc.http = fmt.Sprintf("127.0.0.1:%d", base+1)
	argv := append([]string{"local", "--home", home, "--ufs", lc.ufs, "--workers", fmt.Sprint(workers),
		"--port-base", fmt.Sprint(base), "--log-level", "warn"}, args...)
	cmd := exec.Command(bin, argv...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	lc.cmd = cmd
	b.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		testutil.RemoveMemTiers(home)
	})
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "ready") {
				ready <- true
				break
			}
		}
		_, _ = io.Copy(io.Discard, out)
		close(ready)
	}()
	select {
	case ok := <-ready:
		if !ok {
			b.Fatalf("alluvium local exited before ready:\n%s", stderr.String())
		}
	case <-time.After(2 * time.Minute):
		b.Fatalf("alluvium local not ready after 2 minutes:\n%s", stderr.String())
	}
	env, err := os.ReadFile(filepath.Join(home, "env"))
	if err != nil {
		b.Fatal(err)
	}
	opts := []sdk.Option{}
	for _, line := range strings.Split(string(env), "\n") {
		k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "=")
		if !ok {
			continue
		}
		switch k {
		case "ALLUVIUM_MASTER":
			opts = append(opts, sdk.WithMaster(v))
		case "ALLUVIUM_JOB_MASTER":
			opts = append(opts, sdk.WithJobMasters(sdk.SplitAddrs(v)...))
		case "ALLUVIUM_TOKEN":
			opts = append(opts, sdk.WithToken(v))
			lc.token = v
		}
	}
	lc.c, err = sdk.Dial(context.Background(), opts...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { lc.c.Close() })
	return lc
}

// jobMasterMetrics reads the job master's /metrics (its http port, P+4).
func (lc *localCluster) jobMasterMetrics(b *testing.B) map[string]float64 {
	host, port, _ := net.SplitHostPort(lc.http)
	p, _ := strconv.Atoi(port)
	m, err := testutil.MetricsWithToken(net.JoinHostPort(host, strconv.Itoa(p+3)), lc.token)
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// fsMasterMetrics reads the FS master's /metrics (its http port, P+1).
func (lc *localCluster) fsMasterMetrics(b *testing.B) map[string]float64 {
	m, err := testutil.MetricsWithToken(lc.http, lc.token)
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// tinyFiles writes n files of size bytes under <ufs>/dir.
func (lc *localCluster) tinyFiles(b *testing.B, dir string, n, size int) []string {
	b.Helper()
	buf := make([]byte, size)
	var out []string
	for i := 0; i < n; i++ {
		p := filepath.Join(lc.ufs, dir, fmt.Sprintf("f%05d", i))
		if i == 0 {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				b.Fatal(err)
			}
		}
		buf[0], buf[1] = byte(i), byte(i>>8)
		if err := os.WriteFile(p, buf, 0o644); err != nil {
			b.Fatal(err)
		}
		out = append(out, "/"+dir+"/"+filepath.Base(p))
	}
	return out
}

// loadWait submits a load of path and waits for it to complete (the SDK's
// Run: one call that submits and follows the job).
func (lc *localCluster) loadWait(b *testing.B, jobs *sdk.Jobs, path string) *sdk.JobInfo {
	j, err := jobs.Run(context.Background(), "load", map[string]any{"path": path}, nil)
	if err != nil {
		b.Fatal(err)
	}
	return j
}

func percentile(v []float64, p float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	i := int(p*float64(len(s))+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BenchmarkTinyJobs measures what a pipeline or policy feels: a load job
// of one 4 KiB file that is not cached, from submit to a watched
// COMPLETED (the SDK's Run: the submit's stream follows the job), on `alluvium local --workers 2`, by one SDK client one after
// another (p50, p99 of 200), and the sustained rate of 64 submitters each
// doing so 250 times (jobs/s; 16,000 jobs, several seconds: a burst of 40
// each, 1.5 s, measured the young process's first touch of its heap as
// much as the jobs — 1,529-1,826 jobs/s against 2,185-2,239 for 250 in
// the same hold; BENCH_TINY_PER sets another count). The reference, in the same run, is the same client reading a
// fresh 4 KiB file of the same UFS through the SDK (CACHE read type: the
// metadata loaded from the UFS, the block filled on a worker and committed
// to the FS master), which is the work of the job without the job
// service. Goals: p50 <= 15 ms, p99 <= 50 ms, >= 3,000 jobs/s.
func BenchmarkTinyJobs(b *testing.B) {
	lc := startLocal(b, 2)
	jobs, err := lc.c.Jobs()
	if err != nil {
		b.Fatal(err)
	}
	const seq, conc = 200, 64
	per := 250
	if n, err := strconv.Atoi(os.Getenv("BENCH_TINY_PER")); err == nil && n > 0 {
		per = n
	}
	files := lc.tinyFiles(b, "seq", seq+20, 4096)
	direct := lc.tinyFiles(b, "direct", seq+20, 4096)
	for _, p := range files[:20] { // warm up connections and code paths
		lc.loadWait(b, jobs, p)
	}
	read := func(p string) {
		r, err := lc.c.Open(context.Background(), p, sdk.OpenOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if n, err := io.Copy(io.Discard, r); err != nil || n != 4096 {
			b.Fatalf("read %s: %d bytes, %v", p, n, err)
		}
		r.Close()
	}
	for _, p := range direct[:20] {
		read(p)
	}
	var lat, ref []float64
	b.ResetTimer()
	profWait := lc.profileCPU(b, "tinyjobs-seq.cpu.pprof", 3*time.Second)
	traceWait := lc.profile(b, "trace", "tinyjobs-seq.trace", 2*time.Second)
	// Each job's time split where it may hide a tail: the submit (to its first state), the
	// job as the job master stamps it (created to finished), and from
	// there to the watcher seeing it.
	type split struct{ total, submit, run, seen float64 }
	var splits []split
	for i := 0; i < seq; i++ {
		start := time.Now()
		var submitted time.Time // the submit's answer: the job's first state
		j, err := jobs.Run(context.Background(), "load", map[string]any{"path": files[20+i]}, func(*sdk.JobInfo) {
			if submitted.IsZero() {
				submitted = time.Now()
			}
		})
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, ms(time.Since(start)))
		splits = append(splits, split{lat[len(lat)-1], ms(submitted.Sub(start)),
			float64(j.GetFinishedMs() - j.GetCreatedMs()), float64(time.Now().UnixMilli() - j.GetFinishedMs())})
		if j.GetTasksDone() != 1 || j.GetBytesDone() != 4096 {
			b.Fatalf("tiny load: %+v", j)
		}
		start = time.Now()
		read(direct[20+i])
		ref = append(ref, ms(time.Since(start)))
	}
	b.StopTimer()
	sort.Slice(splits, func(a, c int) bool { return splits[a].total > splits[c].total })
	for _, sp := range splits[:3] {
		b.Logf("a slow tiny job: %.1f ms = submit→first state %.1f, created→finished %.0f (job master stamps), finished→seen %.0f", sp.total, sp.submit, sp.run, sp.seen)
	}
	profWait()
	traceWait()
	b.ReportMetric(percentile(lat, 0.5), "p50-ms")
	b.ReportMetric(percentile(lat, 0.99), "p99-ms")
	b.ReportMetric(percentile(ref, 0.5), "read-p50-ms")
	b.ReportMetric(percentile(ref, 0.99), "read-p99-ms")

	// 64 submitters, each loading its own files one after another.
	many := lc.tinyFiles(b, "many", conc*per, 4096)
	var done atomic.Int64
	var wg sync.WaitGroup
	// What a job costs in the 64-submitter phase: CPU of the `alluvium
	// local` process and of this client, raft entries the job master applied.
	_, _, serverCPU, _ := procStat(lc.cmd.Process.Pid)
	clientCPU := cpuTime()
	// The masters' counters before and after: the job master's raft entries,
	// log writes (fsyncs) and applies (Apply to applied), and the FS master's
	// journal commits beside them.
	jm, fsm := lc.jobMasterMetrics(b), lc.fsMasterMetrics(b)
	// Where a job's time goes under load, as the client and the job
	// master's stamps (ms) tell it: submit→created (the submit's checks),
	// created→finished (the submit's entry, the task's hand-out, work and
	// result), finished→seen (the watch's answer).
	var splitMu sync.Mutex
	var toCreated, toFinished, toSeen, whole []float64
	// When each 2,000th job ended: the rate per 2,000 jobs shows whether it
	// falls as the job table grows (an O(jobs) cost) or holds.
	marks := make([]time.Time, conc*per/2000)
	start := time.Now()
	profWait = lc.profileCPU(b, "tinyjobs-64.cpu.pprof", 3*time.Second)
	traceWait = lc.profile(b, "trace", "tinyjobs-64.trace", 2*time.Second)
	contentionWait := lc.contention(b, "tinyjobs-64", 3*time.Second)
	for s := 0; s < conc; s++ {
		wg.Add(1)
		go func(s int) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				t0 := time.Now()
				j := lc.loadWait(b, jobs, many[s*per+i])
				t1 := time.Now()
				if k := done.Add(1); k%2000 == 0 {
					marks[k/2000-1] = t1
				}
				splitMu.Lock()
				toCreated = append(toCreated, float64(j.GetCreatedMs()-t0.UnixMilli()))
				toFinished = append(toFinished, float64(j.GetFinishedMs()-j.GetCreatedMs()))
				toSeen = append(toSeen, float64(t1.UnixMilli()-j.GetFinishedMs()))
				whole = append(whole, ms(t1.Sub(t0)))
				splitMu.Unlock()
			}
		}(s)
	}
	wg.Wait()
	took := time.Since(start)
	_, _, serverAfter, _ := procStat(lc.cmd.Process.Pid)
	clientCPU = cpuTime() - clientCPU
	jmAfter, fsmAfter := lc.jobMasterMetrics(b), lc.fsMasterMetrics(b)
	n := float64(done.Load())
	// perJob is counter k's growth over the phase, a job.
	perJob := func(before, after map[string]float64, k string) float64 { return (after[k] - before[k]) / max(n, 1) }
	applies := jmAfter["alluvium_jobmaster_raft_apply_seconds_count"] - jm["alluvium_jobmaster_raft_apply_seconds_count"]
	applySum := jmAfter["alluvium_jobmaster_raft_apply_seconds_sum"] - jm["alluvium_jobmaster_raft_apply_seconds_sum"]
	entriesPerJob := perJob(jm, jmAfter, "alluvium_jobmaster_raft_applied_entries_total")
	b.Logf("64 submitters, a job's ms (median, p90): whole %.1f, %.1f = submit→created %.0f, %.0f; created→finished %.0f, %.0f; finished→seen %.0f, %.0f; raft apply (this node's Apply calls, mean) %.2f ms",
		percentile(whole, 0.5), percentile(whole, 0.9), percentile(toCreated, 0.5), percentile(toCreated, 0.9),
		percentile(toFinished, 0.5), percentile(toFinished, 0.9), percentile(toSeen, 0.5), percentile(toSeen, 0.9),
		1000*applySum/max(applies, 1))
	if len(marks) > 0 {
		rates, prev := make([]string, len(marks)), start
		for i, t := range marks {
			rates[i] = fmt.Sprintf("%.0f", 2000/t.Sub(prev).Seconds())
			prev = t
		}
		b.Logf("64 submitters, jobs/s per 2,000 jobs in the order they ended: %s", strings.Join(rates, " "))
	}
	// Which batcher a job's raft entries come from: the task-update
	// collector (a task's hand-out and its result) or the rest (the
	// submit batcher's entries, mostly).
	b.Logf("64 submitters, a job's raft entries: %.3f of them task updates (%.2f updates a job), %.3f the rest (submits)",
		perJob(jm, jmAfter, "alluvium_jobmaster_task_update_entries_total"), perJob(jm, jmAfter, "alluvium_jobmaster_task_updates_total"),
		entriesPerJob-perJob(jm, jmAfter, "alluvium_jobmaster_task_update_entries_total"))
	// The disk's other writer: each FS master journal commit is an fsync
	// as a raft write is (the stat's learned path, the block's commit).
	b.Logf("64 submitters, a job's FS master journal commits: %.3f (%.2f entries)",
		perJob(fsm, fsmAfter, "alluvium_fsmaster_journal_fsyncs_total"), perJob(fsm, fsmAfter, "alluvium_fsmaster_journal_entries_total"))
	profWait()
	traceWait()
	contentionWait()
	lc.profile(b, "allocs", "tinyjobs.allocs.pprof", 0)()
	b.ReportMetric(n/took.Seconds(), "jobs/s-64")
	b.ReportMetric(ms(serverAfter-serverCPU)/n, "server-cpu-ms/job")
	b.ReportMetric(ms(clientCPU)/n, "client-cpu-ms/job")
	b.ReportMetric(entriesPerJob, "raft-entries/job")
	b.ReportMetric(perJob(jm, jmAfter, "alluvium_jobmaster_raft_log_writes_total"), "raft-writes/job")
	b.ReportMetric(procPeakRSS(lc.cmd.Process.Pid), "server-rss-peak-MiB")
	reference(b, "*", "the same client reading a fresh 4 KiB UFS file through the SDK (read-p50-ms, read-p99-ms): the fill without the job service")
}

// BenchmarkPipelineOverhead: a 4-step SDK pipeline of tiny load jobs (one
// uncached 4 KiB file each, each step after the one before) on `alluvium
// local --workers 2`: the pipeline's wall time minus the sum of its jobs'
// run times (created to finished, as the job master records them), per
// step — the median of 20 runs (overhead-ms-per-step; goal <= 10 ms). The
// reference is the same four jobs submitted and waited for one after
// another by the same client without a pipeline (direct-ms-per-step, its
// wall time minus the same sum, per job).
func BenchmarkPipelineOverhead(b *testing.B) {
	lc := startLocal(b, 2)
	jobs, err := lc.c.Jobs()
	if err != nil {
		b.Fatal(err)
	}
	const runs, steps = 20, 4
	files := lc.tinyFiles(b, "pipe", 2*(runs+2)*steps, 4096)
	next := 0
	file := func() string { next++; return files[next-1] }
	runTime := func(ids ...int64) time.Duration {
		var sum time.Duration
		for _, id := range ids {
			j, err := jobs.Get(context.Background(), id, false)
			if err != nil {
				b.Fatal(err)
			}
			if j.GetStatus() != sdk.JobCompleted {
				b.Fatalf("job %d: %v", id, j)
			}
			sum += time.Duration(j.GetFinishedMs()-j.GetCreatedMs()) * time.Millisecond
		}
		return sum
	}
	pipeline := func() float64 {
		p := sdk.NewPipeline("bench")
		prev := ""
		for s := range steps {
			name := fmt.Sprintf("s%d", s)
			var opts []sdk.StepOption
			if prev != "" {
				opts = append(opts, sdk.After(prev))
			}
			p.Job(name, sdk.JobSpec{Plan: "load", Config: map[string]any{"path": file()}}, opts...)
			prev = name
		}
		start := time.Now()
		rep, err := p.Run(context.Background(), lc.c)
		took := time.Since(start)
		if err != nil || !rep.OK() {
			b.Fatalf("pipeline: %v\n%v", err, rep)
		}
		var ids []int64
		for _, s := range rep.Steps {
			ids = append(ids, s.JobIDs...)
		}
		return ms(took-runTime(ids...)) / steps
	}
	direct := func() float64 {
		start := time.Now()
		var ids []int64
		for range steps {
			ids = append(ids, lc.loadWait(b, jobs, file()).GetId())
		}
		return ms(time.Since(start)-runTime(ids...)) / steps
	}
	pipeline()
	direct()
	var over, ref []float64
	b.ResetTimer()
	for range runs {
		over = append(over, pipeline())
		ref = append(ref, direct())
	}
	b.StopTimer()
	b.ReportMetric(medianOf(over), "overhead-ms-per-step")
	b.ReportMetric(medianOf(ref), "direct-ms-per-step")
	reference(b, "*", "direct-ms-per-step: the same four tiny loads submitted and waited for one after another without a pipeline (wall time minus the jobs' run times, per job)")
}

// BenchmarkWorkerCutMidLoad: three workers (real processes, the plain
// binary, the default liveness timeout of 10 s at both masters), a load of
// 160 MiB in 40 files with --bandwidth 32MiB --verify (≈5 s undisturbed,
// measured first on another directory: undisturbed-s; the verify round
// loads again what tasks completed before a cut had cached on the lost
// worker). Then the same load of a
// fresh directory, and 1.2 s in the worker running the most of its tasks
// is cut off as a whole process (SIGSTOP; no network namespaces here): the
// time from the cut to the job's completion minus the undisturbed time is
// cut-extra-s (goal <= liveness timeout + 2 s = 12 s; the issue measured
// ≈38 s with two views of liveness). The worker is thawed afterwards.
func BenchmarkWorkerCutMidLoad(b *testing.B) {
	b.Setenv("ALLUVIUM_BIN", plainBinary(b))
	c := testutil.StartCluster(b, testutil.ClusterOptions{Workers: 3, JobMasters: 1, FSMasterJobMaster: true,
		MemQuota: "256MiB", HDDQuota: "512MiB",
		Env: []string{
			"ALLUVIUM_LOG_LEVEL=warn",
			"ALLUVIUM_FSMASTER_WORKER_TIMEOUT=10s", "ALLUVIUM_FSMASTER_WORKER_HEARTBEAT_INTERVAL=1s",
			"ALLUVIUM_JOBMASTER_WORKER_TIMEOUT=10s", "ALLUVIUM_JOBMASTER_WORKER_HEARTBEAT_INTERVAL=1s",
			"ALLUVIUM_JOBWORKER_PROGRESS_INTERVAL=1s",
		}})
	const files, size = 40, 4 << 20
	for _, dir := range []string{"ref", "cut"} {
		sizes := map[string]int{}
		for i := range files {
			sizes[fmt.Sprintf("f%02d", i)] = size
		}
		c.UFSTree(dir, sizes)
	}
	load := func(dir string) int64 {
		id, err := c.Jobs.Submit(context.Background(), "load", map[string]any{"path": "/" + dir, "bandwidth": 32 << 20, "verify": true})
		if err != nil {
			b.Fatal(err)
		}
		return id
	}
	wait := func(id int64) *sdk.JobInfo {
		j, err := c.Jobs.Wait(context.Background(), id, nil)
		if err != nil || j.GetStatus() != sdk.JobCompleted || j.GetTasksFailed() != 0 {
			b.Fatalf("load %d: %v %v", id, j, err)
		}
		return j
	}
	b.ResetTimer()
	start := time.Now()
	wait(load("ref"))
	undisturbed := time.Since(start)

	start = time.Now()
	id := load("cut")
	time.Sleep(time.Until(start.Add(1200 * time.Millisecond))) // the cut's moment, as the issue's
	victim, most := -1, -1
	j, err := c.Jobs.Get(context.Background(), id, true)
	if err != nil {
		b.Fatal(err)
	}
	byPort := map[string]int{}
	for i := range c.Workers {
		_, _, jp := c.WorkerPorts(i)
		byPort[fmt.Sprint(jp)] = i
	}
	running := map[int]int{}
	for _, t := range j.GetTasks() {
		if t.GetStatus() == api.TaskInfo_RUNNING {
			if _, p, err := net.SplitHostPort(t.GetWorkerAddress()); err == nil {
				running[byPort[p]]++
			}
		}
	}
	for i, n := range running {
		if n > most {
			victim, most = i, n
		}
	}
	if victim < 0 {
		b.Fatalf("no task running 1.2 s into the load: %v", j)
	}
	cutAt := time.Now()
	if err := c.Workers[victim].Signal(syscall.SIGSTOP); err != nil {
		b.Fatal(err)
	}
	wait(id)
	extra := time.Since(cutAt) - undisturbed
	b.StopTimer()
	if err := c.Workers[victim].Signal(syscall.SIGCONT); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(undisturbed.Seconds(), "undisturbed-s")
	b.ReportMetric(extra.Seconds(), "cut-extra-s")
	b.ReportMetric(10, "liveness-timeout-s")
	reference(b, "*", "undisturbed-s: the same load of another directory, nothing cut, in the same run")
}

// BenchmarkCopyBandwidth: the rate test at full size on the plain
// binary — a copy of 500 MiB (120 files of 4 MiB, 40 of 512 KiB) with
// --bandwidth 50MiB on two workers: its average rate (MiB/s), the busiest
// second of the bytes drawn from the budget on both workers (sampled from
// alluvium_worker_throttled_bytes_total every second, max-second-MiB/s),
// and rate/limit (goal 0.9..1.1). The reference is the same copy of
// another tree with no limit in the same run (what the cluster can do).
func BenchmarkCopyBandwidth(b *testing.B) {
	b.Setenv("ALLUVIUM_BIN", plainBinary(b))
	c := testutil.StartCluster(b, testutil.ClusterOptions{Workers: 2, JobMasters: 1, ClientTimeout: time.Minute,
		Env: []string{"ALLUVIUM_LOG_LEVEL=warn"}})
	const limit = 50 << 20
	buf := testutil.RandBytes(4 << 20)
	var total int64
	for _, dir := range []string{"ref", "bw"} {
		total = 0
		for i := range 160 {
			n := 4 << 20
			name := fmt.Sprintf("big/f%03d", i)
			if i >= 120 {
				n, name = 512<<10, fmt.Sprintf("small/s%02d", i-120)
			}
			buf[0], buf[1], buf[2] = byte(i), byte(i>>8), dir[0]
			testutil.WriteFile(b, filepath.Join(c.UFSDir, dir, name), buf[:n])
			total += int64(n)
		}
	}
	throttled := func() float64 {
		var sum float64
		for i := range 2 {
			m, err := testutil.Metrics(c.WorkerHTTP(i))
			if err != nil {
				b.Fatal(err)
			}
			sum += m["alluvium_worker_throttled_bytes_total"]
		}
		return sum
	}
	copyJob := func(src, dst string, bw int64) (time.Duration, float64) {
		stop, done := make(chan struct{}), make(chan float64)
		go func() {
			peak := 0.0
			last, at := throttled(), time.Now()
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					done <- peak
					return
				case <-tick.C:
				}
				now, t := throttled(), time.Now()
				if d := t.Sub(at).Seconds(); d >= 0.5 {
					peak = max(peak, (now-last)/d)
				}
				last, at = now, t
			}
		}()
		cfg := map[string]any{"src": src, "dst": dst}
		if bw > 0 {
			cfg["bandwidth"] = bw
		}
		start := time.Now()
		id, err := c.Jobs.Submit(context.Background(), "copy", cfg)
		if err != nil {
			b.Fatal(err)
		}
		j, err := c.Jobs.Wait(context.Background(), id, nil)
		took := time.Since(start)
		close(stop)
		peak := <-done
		if err != nil || j.GetStatus() != sdk.JobCompleted || j.GetBytesDone() != total {
			b.Fatalf("copy %s: %v %v", src, j, err)
		}
		return took, peak
	}
	b.ResetTimer()
	refTook, _ := copyJob("/ref", "/refc", 0)
	took, peak := copyJob("/bw", "/bwc", limit)
	b.StopTimer()
	mib := float64(1 << 20)
	b.ReportMetric(float64(total)/took.Seconds()/mib, "MiB/s")
	b.ReportMetric(peak/mib, "max-second-MiB/s")
	b.ReportMetric(float64(total)/took.Seconds()/limit, "rate/limit")
	b.ReportMetric(float64(total)/refTook.Seconds()/mib, "unlimited-MiB/s")
	reference(b, "*", "unlimited-MiB/s: the same copy of another tree with no --bandwidth, same cluster, same run")
}
