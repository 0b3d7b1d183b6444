package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/testutil"
)

// overheadRuns are the timed runs of pluginOverhead, round by round, and
// the CPU time every process of the cluster (plugin processes included)
// spent in each.
type overheadRuns struct {
	builtin, plugin []time.Duration
	// From submit to the first task planned and to planning done, as the
	// job's watch said.
	builtinFirst, pluginFirst     []time.Duration
	builtinPlanned, pluginPlanned []time.Duration
	builtinCPU, pluginCPU         []cpuOf
	builtinTasks, pluginTasks     int64
}

// pluginOverhead runs the noop plan over files small files (4 KiB) in a
// cluster of real processes (testutil: one FS master, one job master, two
// workers; the binary ALLUVIUM_BIN names), once built in (plan noop) and
// once as its plugin twin (sdk/examples/noop-plan, built here into
// plans.dir, plan noop-plugin): one untimed run of each, then rounds
// rounds, each timing both, the order alternating. Every run must
// complete, cover every file's bytes and count every file in its tasks'
// outputs, on both sides alike.
func pluginOverhead(tb testing.TB, files, rounds int) overheadRuns {
	tb.Helper()
	root := testutil.RepoRoot(tb)
	dir := filepath.Join(tb.TempDir(), "plans")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	bin := filepath.Join(dir, "noop-plugin")
	profiles := os.Getenv("BENCH_PROFILES")
	pluginAddrs := filepath.Join(tb.TempDir(), "plugin-pprof")
	if profiles != "" {
		// The plugin's processes serve pprof (planplugin.ProfileEnv): a
		// wrapper in plans.dir sets it and execs the plugin, kept
		// outside plans.dir.
		if err := os.MkdirAll(pluginAddrs, 0o755); err != nil {
			tb.Fatal(err)
		}
		bin = filepath.Join(tb.TempDir(), "noop-plugin")
		wrapper := fmt.Sprintf("#!/bin/sh\nPLANPLUGIN_PPROF_DIR=%s exec %s \"$@\"\n", pluginAddrs, bin)
		if err := os.WriteFile(filepath.Join(dir, "noop-plugin"), []byte(wrapper), 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	build := exec.Command("go", "build", "-o", bin, "./sdk/examples/noop-plan")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		tb.Fatalf("go build sdk/examples/noop-plan: %v\n%s", err, out)
	}
	c := testutil.StartCluster(tb, testutil.ClusterOptions{Workers: 2, JobMasters: 1, MemQuota: "128MiB",
		Env: []string{"ALLUVIUM_PLANS_DIR=" + dir}})
	const size = 4096
	writeTree(tb, filepath.Join(c.UFSDir, "noop"), files, size)
	ctx := context.Background()
	// Cached first, so both sides place their tasks by the same
	// locations, and the namespace knows every file.
	if j := submitWait(tb, c, "load", `{"path":"/noop"}`, nil); j.GetBytesDone() != int64(files*size) {
		tb.Fatalf("load cached %d bytes, want %d", j.GetBytesDone(), files*size)
	}
	syscall.Sync()

	procs := []*testutil.Process{c.FSMaster, c.JobMasters[0], c.Workers[0], c.Workers[1]}
	roles := []string{"fsmaster", "jobmaster", "workers", "workers"}
	var first, planned time.Duration
	run := func(plan string) (time.Duration, cpuOf, int64) {
		cpu0 := clusterCPU(procs, roles)
		start := time.Now()
		first, planned = 0, 0
		j := submitWait(tb, c, plan, `{"path":"/noop"}`, func(j *api.JobInfo) {
			if first == 0 && j.GetTasksTotal() > 0 {
				first = time.Since(start)
			}
			if planned == 0 && j.GetPlanningDone() {
				planned = time.Since(start)
			}
		})
		took := time.Since(start)
		cpu := clusterCPU(procs, roles).minus(cpu0)
		if j.GetBytesDone() != int64(files*size) || j.GetTasksDone() != j.GetTasksTotal() || j.GetTasksFailed() != 0 {
			tb.Fatalf("%s: job %d covered %d bytes (want %d), tasks %d/%d done, %d failed", plan, j.GetId(),
				j.GetBytesDone(), files*size, j.GetTasksDone(), j.GetTasksTotal(), j.GetTasksFailed())
		}
		full, err := c.Jobs.Get(ctx, j.GetId(), true)
		if err != nil {
			tb.Fatal(err)
		}
		counted := 0
		for _, t := range full.GetTasks() {
			var out struct{ Files int }
			if err := json.Unmarshal(t.GetResult(), &out); err != nil {
				tb.Fatalf("%s: task %d output %q: %v", plan, t.GetTaskId(), t.GetResult(), err)
			}
			counted += out.Files
		}
		if counted != files {
			tb.Fatalf("%s: job %d's tasks counted %d files, want %d", plan, j.GetId(), counted, files)
		}
		return took, cpu, j.GetTasksTotal()
	}
	var r overheadRuns
	run("noop")
	run("noop-plugin") // starts the plugin's processes on every worker
	for i := range rounds {
		order := []string{"noop", "noop-plugin"}
		if i%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		for _, plan := range order {
			took, cpu, tasks := run(plan)
			if plan == "noop" {
				r.builtin, r.builtinCPU, r.builtinTasks = append(r.builtin, took), append(r.builtinCPU, cpu), tasks
				r.builtinFirst, r.builtinPlanned = append(r.builtinFirst, first), append(r.builtinPlanned, planned)
			} else {
				r.plugin, r.pluginCPU, r.pluginTasks = append(r.plugin, took), append(r.pluginCPU, cpu), tasks
				r.pluginFirst, r.pluginPlanned = append(r.pluginFirst, first), append(r.pluginPlanned, planned)
			}
		}
	}
	if profiles != "" {
		// While each side runs again and again for profileFor: CPU
		// profiles and execution traces of the job master and the
		// workers (block profiles come from the traces: go tool trace
		// -pprof=sync|net|syscall), and CPU, block and mutex profiles of
		// every plugin process (they have no trace of the host's).
		const profileFor = 10 * time.Second
		const traceFor = 3 * time.Second
		for _, plan := range []string{"noop-plugin", "noop"} {
			var wg sync.WaitGroup
			get := func(url, name string) {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := saveProfile(url, filepath.Join(profiles, fmt.Sprintf("%s-%s", plan, name))); err != nil {
						tb.Errorf("profile %s: %v", name, err)
					}
				}()
			}
			for name, addr := range map[string]string{"jobmaster": c.JobMasterHTTP(0), "worker0": c.WorkerHTTP(0), "worker1": c.WorkerHTTP(1)} {
				get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, int(profileFor/time.Second)), name+".pprof")
				get(fmt.Sprintf("http://%s/debug/pprof/trace?seconds=%d", addr, int(traceFor/time.Second)), name+".trace")
			}
			if plan == "noop-plugin" {
				ents, _ := os.ReadDir(pluginAddrs)
				for _, e := range ents {
					b, err := os.ReadFile(filepath.Join(pluginAddrs, e.Name()))
					if err != nil {
						continue
					}
					pid := strings.TrimSuffix(e.Name(), ".pprof-addr")
					if syscall.Kill(atoi(pid), 0) != nil {
						continue // a process that has gone
					}
					base := "http://" + string(b) + "/debug/pprof/"
					get(fmt.Sprintf("%sprofile?seconds=%d", base, int(profileFor/time.Second)), "process-"+pid+".pprof")
					get(fmt.Sprintf("%sblock?seconds=%d", base, int(profileFor/time.Second)), "process-"+pid+".block")
					get(fmt.Sprintf("%smutex?seconds=%d", base, int(profileFor/time.Second)), "process-"+pid+".mutex")
				}
			}
			for start := time.Now(); time.Since(start) < profileFor; {
				run(plan)
			}
			wg.Wait()
		}
	}
	return r
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

// cpuOf is CPU time by part of the cluster: "fsmaster", "jobmaster",
// "workers", and the plugin processes of each ("jobmaster-plugins",
// "workers-plugins").
type cpuOf map[string]time.Duration

func (c cpuOf) total() time.Duration {
	var t time.Duration
	for _, d := range c {
		t += d
	}
	return t
}

func (c cpuOf) minus(o cpuOf) cpuOf {
	out := cpuOf{}
	for k, d := range c {
		out[k] = d - o[k]
	}
	return out
}

// clusterCPU is the CPU time (user + system) the processes of procs' process
// groups have spent so far, by part: the servers (roles name procs) and
// the plugin processes the job master and workers started (counted as
// their parent's role + "-plugins").
func clusterCPU(procs []*testutil.Process, roles []string) cpuOf {
	role := map[int]string{}
	for i, p := range procs {
		role[p.Cmd.Process.Pid] = roles[i]
	}
	ents, _ := os.ReadDir("/proc")
	out := cpuOf{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ppid, pgrp, cpu, ok := procStat(pid)
		if !ok {
			continue
		}
		r, ok := role[pid]
		if !ok {
			if _, group := role[pgrp]; !group {
				continue
			}
			r = role[ppid] + "-plugins"
		}
		out[r] += cpu
	}
	return out
}

// procPeakRSS is process pid's peak resident set size in MiB (VmHWM).
func procPeakRSS(pid int) float64 {
	b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// procStat reads process pid's parent, process group and CPU time (user +
// system) so far from /proc.
func procStat(pid int) (ppid, pgrp int, cpu time.Duration, ok bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, 0, 0, false
	}
	// pid (comm) state ppid pgrp ... utime(14) stime(15): split after
	// the comm, which may hold spaces.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, 0, 0, false
	}
	ppid, _ = strconv.Atoi(f[1])
	pgrp, _ = strconv.Atoi(f[2])
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return ppid, pgrp, time.Duration(u+st) * time.Second / 100, true // USER_HZ
}

// saveProfile GETs a pprof endpoint (with the cluster's token) into path.
func saveProfile(url, path string) error {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+testutil.ClusterToken())
	resp, err := (&http.Client{Timeout: 2 * time.Minute}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	return os.WriteFile(path, b, 0o644)
}

// submitWait submits a job and waits for it to complete; progress (nil:
// none) sees each state the job's watch reports.
func submitWait(tb testing.TB, c *testutil.Cluster, plan, config string, progress func(*api.JobInfo)) *api.JobInfo {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	id, err := c.Jobs.Submit(ctx, plan, config)
	if err != nil {
		tb.Fatalf("job submit %s: %v", plan, err)
	}
	j, err := c.Jobs.Wait(ctx, id, progress)
	if err != nil {
		tb.Fatalf("job %d (%s): %v", id, plan, err)
	}
	return j
}

// TestPluginOverheadSmall is BenchmarkPluginOverhead cut down for `make
// test` (so it never rots): 1,000 files, two rounds; both sides must
// complete and count every file. Nothing is timed here.
func TestPluginOverheadSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	r := pluginOverhead(t, 1000, 2)
	if len(r.builtin) != 2 || len(r.plugin) != 2 || r.builtinTasks == 0 || r.pluginTasks == 0 {
		t.Fatalf("runs %+v", r)
	}
}

// BenchmarkPluginOverhead: a plan plugin against the same plan built in,
// a no-op run over 20,000 files of 4 KiB (issue 23: goal ratio ≤ 1.2).
// Both are the noop plan — listing page by page, tasks batched per block
// worker caching the files, tasks that decode their files and read none —
// once in the binary, once as a go-plugin child process of the job master
// and job workers (sdk/examples/noop-plan): what differs is the plugin
// machinery (planning calls, tasks handed to the plugin process in
// batches on a stream). Both end with their last task (EndsWithTasks: no
// Done call, no entry of its own). Five rounds, the order alternating;
// medians.
func BenchmarkPluginOverhead(b *testing.B) {
	if err := os.Setenv("ALLUVIUM_BIN", plainBinary(b)); err != nil {
		b.Fatal(err)
	}
	const files = 20000
	r := pluginOverhead(b, files, 5)
	var builtin, plugin, ratios, builtinCPU, pluginCPU []float64
	for i := range r.builtin {
		builtin = append(builtin, r.builtin[i].Seconds())
		plugin = append(plugin, r.plugin[i].Seconds())
		ratios = append(ratios, r.plugin[i].Seconds()/r.builtin[i].Seconds())
		builtinCPU = append(builtinCPU, r.builtinCPU[i].total().Seconds())
		pluginCPU = append(pluginCPU, r.pluginCPU[i].total().Seconds())
	}
	for i := range builtin {
		// On stderr: go test keeps only the first ten lines a benchmark
		// logs, and the REF and NOTE lines must be among them.
		fmt.Fprintf(os.Stderr, "%s round %d: built in %.3f s (CPU %.2f s), plugin %.3f s (CPU %.2f s), ratio %.2f\n", b.Name(), i+1, builtin[i], builtinCPU[i], plugin[i], pluginCPU[i], ratios[i])
	}
	b.Logf("NOTE: %s: real processes (plain binary) on loopback: one FS master, one job master, two workers (4 task threads each), %d files of 4 KiB loaded into the cache first; both sides are the noop plan: validate (stat, access check), list the tree (pages of 1,000, with block locations), batch 64 files per task on the worker caching them, tasks that decode their files and touch no data, reporting bytes and a file count; one untimed run of each first (the plugin's processes started), then 5 rounds timing both, the order alternating, each from submit to COMPLETED. Both sides' Done is trivial and both say so at validate (EndsWithTasks): the job ends in the raft entry of its last task, no Done call, no entry of its own. Built in: in the job master and job workers' own processes (planning hands over batches on a time budget, the next page listed ahead). Plugin (sdk/examples/noop-plan as plans.dir/noop-plugin): validate and plan go over go-plugin gRPC to a plugin process of the job master (one page per Plan call, each call asked for as soon as the last answered; a planner's Next gathers calls on the built-in planner's time budget, so both sides write as many PLAN_TASKS entries), which calls back for Stat/List through the one host connection the caller serves each plugin process (each request carrying its call's token; a List page is the FS master's reply passed on undecoded, and the host lists the next page ahead as the built-in walk does; plugin processes run at GOGC 400, the SDK's default); each job worker hands its plugin task runner (one process) its queued tasks of the job in batches (up to its 4 threads), each batch on a RunTasks stream of its own, each task answered on its own. Nothing fsynced by the tasks on either side; raft commits (fsync) alike", strings.TrimPrefix(b.Name(), "Benchmark"), files)
	b.ReportMetric(medianOf(plugin), "plugin-s")
	b.ReportMetric(medianOf(builtin), "builtin-s")
	b.ReportMetric(medianOf(ratios), "ratio-plugin/builtin")
	b.ReportMetric(medianOf(pluginCPU), "plugin-cpu-s")
	b.ReportMetric(medianOf(builtinCPU), "builtin-cpu-s")
	b.ReportMetric(medianOf(pluginCPU)/medianOf(builtinCPU), "ratio-cpu-plugin/builtin")
	// When planning ended and the first task was planned, from submit.
	for _, m := range []struct {
		name string
		ds   []time.Duration
		ref  string
	}{
		{"builtin-first-task-s", r.builtinFirst, ""},
		{"plugin-first-task-s", r.pluginFirst, "builtin-first-task-s: submit to the first task planned, as the job's watch said, the same rounds"},
		{"builtin-planned-s", r.builtinPlanned, ""},
		{"plugin-planned-s", r.pluginPlanned, "builtin-planned-s: submit to planning done, as the job's watch said, the same rounds"},
	} {
		var v []float64
		for _, d := range m.ds {
			v = append(v, d.Seconds())
		}
		b.ReportMetric(medianOf(v), m.name)
		if m.ref != "" {
			reference(b, m.name, m.ref)
		}
	}
	// Where the CPU went, part by part (medians over the rounds).
	for _, part := range []string{"fsmaster", "jobmaster", "jobmaster-plugins", "workers", "workers-plugins"} {
		var bs, ps []float64
		for i := range r.builtinCPU {
			bs = append(bs, r.builtinCPU[i][part].Seconds())
			ps = append(ps, r.pluginCPU[i][part].Seconds())
		}
		if !strings.HasSuffix(part, "-plugins") {
			b.ReportMetric(medianOf(bs), "builtin-cpu-"+part+"-s")
		}
		b.ReportMetric(medianOf(ps), "plugin-cpu-"+part+"-s")
	}
	b.ReportMetric(float64(r.pluginTasks), "plugin-tasks")
	b.ReportMetric(float64(r.builtinTasks), "builtin-tasks")
	b.ReportMetric((medianOf(plugin)-medianOf(builtin))*1000/float64(max(r.pluginTasks, 1)), "plugin-overhead-ms/task")
	reference(b, "*", "builtin-s: the built-in noop plan, the same planning and no-op tasks over the same files, same cluster, rounds interleaved")
	reference(b, "builtin-*", "the reference itself (the built-in noop plan: its time, CPU — user+system — by part of the cluster, and times from submit)")
	reference(b, "plugin-cpu-*", "builtin-cpu-* of the same part (a part's plugin processes: of the part): CPU (user+system) during the plugin runs, the same rounds")
	reference(b, "ratio-cpu-plugin/builtin", "builtin-cpu-s: the medians' ratio")
}
