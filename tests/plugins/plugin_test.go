package plugins

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/testutil"
)

// buildPlugin builds the example checksum plugin into dir.
func buildPlugin(t *testing.T, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "checksum")
	cmd := exec.Command("go", "build", "-o", out, "../../sdk/examples/checksum-plan")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build the checksum plugin: %v\n%s", err, b)
	}
	return out
}

// pluginCluster: an FS master, three job masters and three workers; the
// job masters and workers 0 and 1 have the checksum plugin, worker 2 has
// none.
type pluginCluster struct {
	*testutil.Cluster
	plugin string // its path on the job masters and workers 0, 1
}

func startPluginCluster(t *testing.T) *pluginCluster {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "plans")
	p := buildPlugin(t, dir)
	c := testutil.StartCluster(t, testutil.ClusterOptions{
		Workers: 3, JobMasters: 3,
		Env: []string{"ALLUVIUM_PLANS_DIR=" + dir, "ALLUVIUM_JOBMASTER_TASK_MAX_ATTEMPTS=4",
			// Batches of 10 tasks: planning a job takes many calls.
			"ALLUVIUM_JOBMASTER_PLANNER_BATCH_SIZE=10"},
	})
	// Worker 2 again, with no plugin.
	c.Workers[2].Kill()
	env := c.Env
	c.Env = append(append([]string(nil), env...), "ALLUVIUM_PLANS_DIR="+filepath.Join(t.TempDir(), "none"))
	c.StartWorker(2)
	c.Env = env
	c.WaitWorkers(3)
	return &pluginCluster{Cluster: c, plugin: p}
}

// files writes n small files under the UFS directory name and loads them
// (the load spreads them over the three workers); it returns their bytes
// by Alluvium path.
func (c *pluginCluster) files(t *testing.T, name string, n int) map[string][]byte {
	t.Helper()
	sizes := map[string]int{}
	for i := 0; i < n; i++ {
		sizes[fmt.Sprintf("d%d/f%04d", i%4, i)] = 1 + (i*37)%3000
	}
	files := c.UFSTree(name, sizes)
	c.MustJob("job", "submit", "load", "/"+name)
	return files
}

// checksumOutput is the plugin's task output.
type checksumOutput struct {
	Worker string   `json:"worker"`
	Files  []string `json:"files"`
}

// checkResult reads the result file and wants one line per file with its
// sha256 (as sha256sum of the UFS file), nothing else.
func (c *pluginCluster) checkResult(t *testing.T, result string, files map[string][]byte) {
	t.Helper()
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(c.MustCLI("fs", "cat", result)), "\n") {
		p, sum, ok := strings.Cut(l, "\t")
		if !ok {
			t.Fatalf("result line %q is not path<TAB>sha256", l)
		}
		if _, dup := got[p]; dup {
			t.Errorf("%s twice in the result", p)
		}
		got[p] = sum
	}
	if len(got) != len(files) {
		t.Errorf("result has %d lines, want %d", len(got), len(files))
	}
	for p, b := range files {
		if got[p] != testutil.SHA256(b) {
			t.Errorf("%s: result %q, sha256sum %s", p, got[p], testutil.SHA256(b))
		}
	}
	// sha256sum itself agrees on a few of the UFS files.
	n := 0
	for p := range files {
		if n++; n > 5 {
			break
		}
		out, err := exec.Command("sha256sum", filepath.Join(c.UFSDir, strings.TrimPrefix(p, "/"))).Output()
		if err != nil {
			t.Fatal(err)
		}
		if sum, _, _ := strings.Cut(string(out), " "); sum != got[p] {
			t.Errorf("%s: sha256sum says %s, the plugin %s", p, sum, got[p])
		}
	}
	if _, _, code := c.CLI("fs", "stat", result+".parts"); code == 0 {
		t.Errorf("the parts of %s are left", result)
	}
}

// tasks returns the job's tasks with their outputs.
func (c *pluginCluster) tasks(t *testing.T, id int64) []*api.TaskInfo {
	t.Helper()
	j, err := c.Jobs.Get(context.Background(), id, true)
	if err != nil {
		t.Fatal(err)
	}
	return j.GetTasks()
}

func TestChecksumPlugin(t *testing.T) {
	c := startPluginCluster(t)
	ctx := context.Background()

	t.Run("job plans lists the plugin and who runs it", func(t *testing.T) {
		out := c.MustCLI("job", "plans")
		var line string
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "checksum ") {
				line = l
			}
		}
		if f := strings.Fields(line); len(f) < 4 || f[1] != "plugin" || f[2] != "1.0.0" || f[3] != "2/3" {
			t.Fatalf("job plans:\n%s\nwant checksum plugin 1.0.0 on 2/3 workers", out)
		}
		if !strings.Contains(out, "load") || !strings.Contains(out, "built-in") {
			t.Errorf("job plans does not list the built-in plans:\n%s", out)
		}
	})

	t.Run("an unknown plan is refused at submit with the known ones", func(t *testing.T) {
		_, errOut, code := c.CLI("job", "submit", "checksum2", "--config", `{"path":"/"}`)
		if code == 0 || !strings.Contains(errOut, "unknown plan") || !strings.Contains(errOut, "checksum, copy") {
			t.Fatalf("unknown plan: exit %d, %q", code, errOut)
		}
		_, errOut, code = c.CLI("job", "submit", "checksum", "--config", `{"path":"/","result":"/r","bogus":1}`)
		if code == 0 || !strings.Contains(errOut, "bogus") {
			t.Fatalf("bad config: exit %d, %q", code, errOut)
		}
	})

	t.Run("200 files, each once, where it is cached; the worker without the plugin runs none", func(t *testing.T) {
		files := c.files(t, "sums", 200)
		ws, err := c.Jobs.Workers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		noPlugin := "" // worker 2's block worker address
		_, _, job2 := c.WorkerPorts(2)
		for _, w := range ws {
			if w.GetState() == api.WorkerState_LIVE && strings.HasSuffix(w.GetAddress(), ":"+strconv.Itoa(job2)) {
				noPlugin = w.GetBlockWorkerAddress()
			}
		}
		if noPlugin == "" {
			t.Fatalf("job worker of port %d not found in %v", job2, ws)
		}
		j := c.MustJob("job", "submit", "checksum", "--config", `{"path":"/sums","result":"/results/sums.tsv","batchFiles":8}`)
		c.checkResult(t, "/results/sums.tsv", files)

		seen := map[string]int{}
		onNoPlugin := 0
		for _, task := range c.tasks(t, j.ID) {
			if task.GetStatus() != api.TaskInfo_COMPLETED {
				t.Errorf("task %d: %s", task.GetTaskId(), task.GetStatus())
			}
			var out checksumOutput
			if err := json.Unmarshal(task.GetResult(), &out); err != nil {
				t.Fatalf("task %d output %q: %v", task.GetTaskId(), task.GetResult(), err)
			}
			if out.Worker == noPlugin {
				t.Errorf("task %d ran beside %s, the worker without the plugin", task.GetTaskId(), noPlugin)
			}
			for _, p := range out.Files {
				seen[p]++
				locs := c.locations(t, p)
				switch {
				case contains(locs, noPlugin) && len(locs) == 1:
					onNoPlugin++ // its share went elsewhere
				case !contains(locs, out.Worker):
					t.Errorf("%s (cached on %v) was checksummed beside %s", p, locs, out.Worker)
				}
			}
		}
		for p := range files {
			if seen[p] != 1 {
				t.Errorf("%s checksummed %d times", p, seen[p])
			}
		}
		if onNoPlugin == 0 {
			t.Errorf("no file was cached only on the worker without the plugin: the test proves nothing about its share")
		}
		t.Logf("%d of %d files cached only on the worker without the plugin went elsewhere", onNoPlugin, len(files))
	})

	t.Run("kill -9 of a plugin process mid-task: the task is retried and the job completes", func(t *testing.T) {
		files := c.files(t, "kill", 24)
		id, err := c.Jobs.Submit(ctx, "checksum", json.RawMessage(`{"path":"/kill","result":"/results/kill.tsv","batchFiles":6,"slowFileMs":300}`))
		if err != nil {
			t.Fatal(err)
		}
		var killed []int
		testutil.Eventually(t, 30*time.Second, func() error {
			j, err := c.Jobs.Get(ctx, id, false)
			if err != nil {
				return err
			}
			if j.GetTasksRunning() == 0 {
				return fmt.Errorf("no task running yet")
			}
			killed = c.killPlugins(t)
			if len(killed) == 0 {
				return fmt.Errorf("no plugin process found")
			}
			return nil
		})
		t.Logf("SIGKILLed plugin processes %v", killed)
		j, err := c.Jobs.Wait(ctx, id, nil)
		if err != nil {
			t.Fatal(err)
		}
		if j.GetStatus() != api.JobInfo_COMPLETED {
			t.Fatalf("job after the kill: %v %s", j.GetStatus(), j.GetError())
		}
		retried := 0
		for _, task := range c.tasks(t, id) {
			if task.GetAttempt() > 1 {
				retried++
			}
		}
		if retried == 0 {
			t.Errorf("no task was retried after its plugin was killed")
		}
		c.checkResult(t, "/results/kill.tsv", files)
	})

	t.Run("job-master failover mid-planning: no task planned twice", func(t *testing.T) {
		files := c.files(t, "fo", 120)
		// One file per task, a slow planner: planning spans the failover.
		id, err := c.Jobs.Submit(ctx, "checksum", json.RawMessage(`{"path":"/fo","result":"/results/fo.tsv","batchFiles":1,"slowPlanMs":400}`))
		if err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 30*time.Second, func() error {
			j, err := c.Jobs.Get(ctx, id, false)
			if err != nil {
				return err
			}
			if j.GetTasksTotal() == 0 || j.GetPlanningDone() {
				return fmt.Errorf("tasks %d, planning done %v: want planning under way", j.GetTasksTotal(), j.GetPlanningDone())
			}
			return nil
		})
		before, _ := c.Jobs.Get(ctx, id, false)
		c.KillJobMasterLeader()
		j, err := c.Jobs.Wait(ctx, id, nil)
		if err != nil {
			t.Fatal(err)
		}
		if j.GetStatus() != api.JobInfo_COMPLETED {
			t.Fatalf("job after the failover: %v %s", j.GetStatus(), j.GetError())
		}
		if before.GetPlanningDone() {
			t.Fatalf("planning was done before the kill")
		}
		if j.GetTasksTotal() != int64(len(files)) {
			t.Errorf("%d tasks for %d files (one each): planned twice or lost", j.GetTasksTotal(), len(files))
		}
		descs := map[string]int{}
		for _, task := range c.tasks(t, id) {
			descs[task.GetDescription()]++
		}
		for p := range files {
			if descs[p] != 1 {
				t.Errorf("%s planned %d times", p, descs[p])
			}
		}
		c.checkResult(t, "/results/fo.tsv", files)
		t.Logf("planning had %d of %d tasks at the kill", before.GetTasksTotal(), len(files))
	})
}

// killPlugins SIGKILLs the checksum plugin processes running now (children
// of the cluster's processes: their executable is c.plugin) and returns
// their pids.
func (c *pluginCluster) killPlugins(t *testing.T) []int {
	t.Helper()
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err != nil || exe != c.plugin {
			continue
		}
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			out = append(out, pid)
		}
	}
	sort.Ints(out)
	return out
}

// locations lists the block workers (host:port) caching any of p's blocks.
func (c *pluginCluster) locations(t *testing.T, p string) []string {
	t.Helper()
	fi, err := c.Client.Stat(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, b := range fi.GetFileBlockInfos() {
		for _, l := range b.GetBlockInfo().GetLocations() {
			if a := fmt.Sprintf("%s:%d", l.GetAddress().GetHost(), l.GetAddress().GetRpcPort()); !contains(out, a) {
				out = append(out, a)
			}
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// pluginPIDs lists the live processes running the executable path.
func pluginPIDs(path string) map[int]bool {
	out := map[int]bool{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe")); err == nil && exe == path {
			out[pid] = true
		}
	}
	return out
}

// A plugin still working when its task times out is killed then, and the
// job fails naming the timeout once the attempts are spent.
func TestPluginKilledAtTaskTimeout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "plans")
	plugin := buildPlugin(t, dir)
	c := startLocal(t, 1, "plans:\n  dir: "+dir+"\njobmaster:\n  task:\n    timeout: 3s\n    max-attempts: 2\n")
	local := filepath.Join(t.TempDir(), "f")
	testutil.WriteFile(t, local, []byte("slow\n"))
	c.must(t, c.token, "fs", "put", local, "/slow/f")
	out, _, _ := c.cli(t, c.token, "job", "submit", "checksum", "--config", `{"path":"/slow","result":"/r.tsv","slowFileMs":60000}`, "--output", "json")
	var j struct{ ID int64 }
	if err := json.Unmarshal([]byte(out), &j); err != nil || j.ID == 0 {
		t.Fatalf("submit: %q %v", out, err)
	}
	// While the first attempt runs, the processes there are.
	var during map[int]bool
	testutil.Eventually(t, 30*time.Second, func() error {
		st, _ := c.job(t, c.token, "job", "stat", fmt.Sprint(j.ID))
		if st.TasksRunning == 0 {
			return fmt.Errorf("no task running")
		}
		during = pluginPIDs(plugin)
		return nil
	})
	end, code := c.job(t, c.token, "job", "wait", fmt.Sprint(j.ID))
	if code == 0 || end.Status != "FAILED" || !strings.Contains(end.Error+fmt.Sprint(end.Failed), "timed out") {
		t.Fatalf("job: exit %d, %+v; want FAILED, timed out", code, end)
	}
	after := pluginPIDs(plugin)
	gone := 0
	for pid := range during {
		if !after[pid] {
			gone++
		}
	}
	if gone == 0 {
		t.Errorf("plugin processes %v during the task, %v after: none was killed at the timeout", during, after)
	}
}

// TestStoppedRolesLeaveNoPluginSockets: a job master and a job worker
// stopped as an operator stops them (SIGTERM) take their plugin processes
// with them, and every Unix socket those and their hosts made under the
// roles' TMPDIR: a process that just exited would leave its plugins to be
// SIGKILLed with it, and their sockets behind, one set per process and
// start.
func TestStoppedRolesLeaveNoPluginSockets(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "plans")
	buildPlugin(t, dir)
	tmp := filepath.Join(t.TempDir(), "tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	c := &pluginCluster{Cluster: testutil.StartCluster(t, testutil.ClusterOptions{
		Workers: 1, JobMasters: 1,
		Env: []string{"ALLUVIUM_PLANS_DIR=" + dir, "TMPDIR=" + tmp},
	})}
	files := c.files(t, "s", 16)
	c.MustJob("job", "submit", "checksum", "--config", `{"path":"/s","result":"/results/s.tsv","batchFiles":4}`)
	c.checkResult(t, "/results/s.tsv", files)
	if n := testutil.UnixSockets(t, tmp); n == 0 {
		t.Fatalf("no Unix socket under the roles' TMPDIR %s with plugins running: the test would prove nothing", tmp)
	}
	if err := c.Workers[0].Stop(30 * time.Second); err != nil {
		t.Fatalf("worker stopped: %v", err)
	}
	if err := c.JobMasters[0].Stop(30 * time.Second); err != nil {
		t.Fatalf("job master stopped: %v", err)
	}
	if n := testutil.UnixSockets(t, tmp); n != 0 {
		t.Fatalf("%d Unix sockets left under %s after the job master and the worker stopped", n, tmp)
	}
}
