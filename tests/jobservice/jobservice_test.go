package jobservice

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/testutil"
	"github.com/alluvium/alluvium/sdk"
)

// mixedTree: a multi-block file, mid-size files, many small files in
// nested directories, and an empty file.
func mixedTree() map[string]int {
	m := map[string]int{
		"big.bin":         3*blockSize + 12345, // 4 blocks
		"mid/a.bin":       700 << 10,
		"mid/b.bin":       blockSize, // exactly one block
		"mid/c.bin":       blockSize + 1,
		"empty":           0,
		"deep/x/y/z.bin":  300 << 10,
		"deep/x/y2/w.bin": 5000,
	}
	for i := 0; i < 40; i++ {
		m[fmt.Sprintf("small/%02d/f%02d.txt", i%5, i)] = 100 + 97*i
	}
	return m
}

// One cluster (FS master, three workers, one job master) for the load
// tests that do not kill anything but the job master.
func TestLoadJobs(t *testing.T) {
	c := startCluster(t, testutil.ClusterOptions{Workers: 3, JobMasters: 1})

	t.Run("mixed tree completes and caches every block", func(t *testing.T) {
		files := c.UFSTree("mixed", mixedTree())
		j, errOut, code := c.JobJSON("job", "submit", "load", "/mixed", "--wait")
		if code != 0 || j.Status != "COMPLETED" {
			t.Fatalf("load /mixed: exit %d, job %+v\n%s", code, j, errOut)
		}
		var want int64
		for _, b := range files {
			want += int64(len(b))
		}
		if j.BytesTotal != want || j.BytesDone != want || j.TasksFailed != 0 || j.TasksDone != j.TasksTotal || j.Error != "" {
			t.Fatalf("job %+v: want %d bytes done, no failures", j, want)
		}
		perWorker := map[int64]int{}
		for _, p := range testutil.SortedKeys(files) {
			if len(files[p]) == 0 {
				continue
			}
			f := c.FSStat(p)
			if f.CachedPercent != 100 {
				t.Errorf("%s: cachedPercent %d after load", p, f.CachedPercent)
			}
			for _, b := range f.Blocks {
				for _, l := range b.Locations {
					perWorker[l.WorkerID]++
				}
			}
		}
		// Blocks spread over every worker.
		if len(perWorker) != 3 {
			t.Errorf("blocks on %d workers, want all 3: %v", len(perWorker), perWorker)
		}
		// A second load finds everything cached: no task, done at once.
		j, _, code = c.JobJSON("job", "submit", "load", "/mixed", "--wait")
		if code != 0 || j.Status != "COMPLETED" || j.TasksTotal != 0 {
			t.Fatalf("second load: exit %d, %+v", code, j)
		}
		// job stat works in text and JSON.
		out := c.MustCLI("job", "stat", fmt.Sprint(j.ID), "-v")
		if !strings.Contains(out, "COMPLETED") || !strings.Contains(out, "/mixed") {
			t.Fatalf("job stat -v:\n%s", out)
		}
	})

	t.Run("replication 2 gives two locations per block", func(t *testing.T) {
		files := c.UFSTree("rep", map[string]int{"a.bin": 2*blockSize + 10, "b.bin": 1000, "c/d.bin": 300 << 10})
		j, errOut, code := c.JobJSON("job", "submit", "load", "/rep", "--replication", "2", "--wait")
		if code != 0 || j.Status != "COMPLETED" {
			t.Fatalf("load --replication 2: exit %d %+v\n%s", code, j, errOut)
		}
		for _, p := range testutil.SortedKeys(files) {
			f := c.FSStat(p)
			for _, b := range f.Blocks {
				seen := map[int64]bool{}
				for _, l := range b.Locations {
					seen[l.WorkerID] = true
				}
				if len(seen) != 2 {
					t.Errorf("%s block %d: %d distinct locations, want 2", p, b.ID, len(seen))
				}
			}
		}
		// Everything is cached as asked: the load plans no task, and that
		// was the check --verify asks for (no second round).
		j, errOut, code = c.JobJSON("job", "submit", "load", "/rep", "--replication", "2", "--verify", "--wait")
		if code != 0 || j.Status != "COMPLETED" || j.Round != 0 || j.TasksTotal != 0 {
			t.Fatalf("load --verify: exit %d %+v\n%s", code, j, errOut)
		}
	})

	t.Run("same request id twice makes one job", func(t *testing.T) {
		c.UFSTree("idem", map[string]int{"f": 1000})
		out1 := c.MustCLI("job", "submit", "load", "/idem", "--request-id", "retry-42")
		out2 := c.MustCLI("job", "submit", "load", "/idem", "--request-id", "retry-42")
		if out1 != out2 {
			t.Fatalf("two submits with one request id:\n%s\n%s", out1, out2)
		}
		n := 0
		for j, err := range c.Jobs.List(context.Background(), sdk.ListJobsOptions{}) {
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(j.GetConfigJson(), `"/idem"`) {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("%d jobs for /idem, want 1", n)
		}
	})

	t.Run("bad input is refused and submits nothing", func(t *testing.T) {
		before := c.CountJobs()
		for _, tc := range []struct {
			args []string
			code int
			want string
		}{
			{[]string{"job", "submit", "frobnicate", "--config", `{"path":"/mixed"}`}, 2, `unknown plan "frobnicate"`},
			{[]string{"job", "submit", "load", "/no/such/path"}, 1, "/no/such/path: no such file or directory"},
			{[]string{"job", "submit", "load", "/mixed", "--replication", "4"}, 1, "--replication 4 is more than the 3"},
			{[]string{"job", "submit", "load", "--config", `{"path": "/mixed",`}, 2, "not valid JSON"},
			{[]string{"job", "submit", "load", "--config", `{"path": "/mixed", "replicas": 2}`}, 2, `unknown field "replicas"`},
			{[]string{"job", "submit", "load", "/mixed", "--replication", "0"}, 2, "--replication 0"},
			{[]string{"job", "submit", "load", "/mixed", "--bandwidth", "fast"}, 2, "--bandwidth"},
			{[]string{"job", "submit", "load", "/mixed", "--workers", "nosuchhost"}, 2, "--workers nosuchhost"},
			{[]string{"job", "stat", "abc"}, 2, "job id"},
			{[]string{"job", "stat", "99999"}, 1, "job 99999 not found"},
		} {
			out, errOut, code := c.CLI(tc.args...)
			if code != tc.code || !strings.Contains(errOut, tc.want) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
				t.Errorf("alluvium %s: exit %d (want %d), stderr %q (want one line with %q), stdout %q", strings.Join(tc.args, " "), code, tc.code, errOut, tc.want, out)
			}
		}
		// Through the SDK too: malformed JSON never reaches a plan.
		_, err := c.Jobs.Submit(context.Background(), "load", []byte(`{"path":`))
		if !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Errorf("SDK submit of malformed JSON: %v", err)
		}
		if after := c.CountJobs(); after != before {
			t.Fatalf("%d jobs before the bad submits, %d after", before, after)
		}
	})

	t.Run("cancel stops running tasks", func(t *testing.T) {
		files := c.UFSTree("slow", map[string]int{"a": 2 * blockSize, "b": 2 * blockSize, "c": 2 * blockSize, "d": 2 * blockSize})
		// 8 MiB at 1 MiB/s: tasks wait in the bandwidth limiter for seconds.
		out := c.MustCLI("job", "submit", "load", "/slow", "--bandwidth", "1MiB", "--output", "json")
		var j sdk.JobJSON
		if err := json.Unmarshal([]byte(out), &j); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 20*time.Second, func() error {
			info, err := c.Jobs.Get(context.Background(), j.ID, false)
			if err != nil {
				return err
			}
			if info.GetTasksRunning() == 0 {
				return fmt.Errorf("no task running yet: %v", info)
			}
			return nil
		})
		c.MustCLI("job", "cancel", fmt.Sprint(j.ID))
		final, _, code := c.JobJSON("job", "wait", fmt.Sprint(j.ID))
		if code != 1 || final.Status != "CANCELED" {
			t.Fatalf("job wait after cancel: exit %d (want 1), %+v", code, final)
		}
		// The running tasks saw their context cancelled on the workers...
		testutil.Eventually(t, 30*time.Second, func() error {
			for _, w := range c.Workers {
				if strings.Contains(w.Log(), "task canceled") {
					return nil
				}
			}
			return fmt.Errorf("no worker logged a cancelled task")
		})
		// ... and stopped: once no worker is caching a block (a fill under
		// way when the task was cancelled ends, as it would for another
		// reader), nothing more is cached and not everything was.
		testutil.Eventually(t, 10*time.Second, func() error {
			for i := range c.Workers {
				if n := testutil.Metric(t, c.WorkerHTTP(i), "alluvium_worker_fills_running"); n != 0 {
					return fmt.Errorf("worker %d is caching %v blocks", i, n)
				}
			}
			return nil
		})
		a, total := c.cachedBlocks(files)
		if a == total {
			t.Fatalf("after cancel: all %d blocks cached: the cancel stopped nothing", total)
		}
		if info, err := c.Jobs.Get(context.Background(), j.ID, false); err != nil || info.GetTasksRunning() != 0 {
			t.Fatalf("after cancel: %v %v, want no task running", info, err)
		}

	})

	t.Run("job master restarted mid-job resumes it", func(t *testing.T) {
		files := c.UFSTree("restart", map[string]int{"a": 2 * blockSize, "b": 2 * blockSize, "c": blockSize, "d": 100})
		out := c.MustCLI("job", "submit", "load", "/restart", "--bandwidth", "2MiB", "--output", "json")
		var j sdk.JobJSON
		if err := json.Unmarshal([]byte(out), &j); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 20*time.Second, func() error {
			info, err := c.Jobs.Get(context.Background(), j.ID, false)
			if err != nil {
				return err
			}
			if info.GetTasksRunning() == 0 {
				return fmt.Errorf("not running yet")
			}
			return nil
		})
		c.JobMasters[0].Kill()
		c.StartJobMaster(0)
		final, errOut, code := c.JobJSON("job", "wait", fmt.Sprint(j.ID))
		if code != 0 || final.Status != "COMPLETED" || final.TasksFailed != 0 {
			t.Fatalf("after restart: exit %d %+v\n%s", code, final, errOut)
		}
		if cached, total := c.cachedBlocks(files); cached != total {
			t.Fatalf("%d of %d blocks cached", cached, total)
		}
	})
}

// SIGKILL a worker (block and job roles) running tasks mid-load: its
// tasks run again on the others (at least one must) and the job completes; once the FS master has noticed, loading
// again caches every block on the survivors.
func TestWorkerKilledMidLoad(t *testing.T) {
	c := startCluster(t, testutil.ClusterOptions{Workers: 3, JobMasters: 1})
	sizes := map[string]int{}
	for i := 0; i < 12; i++ {
		sizes[fmt.Sprintf("f%02d", i)] = blockSize
	}
	files := c.UFSTree("kill", sizes)
	out := c.MustCLI("job", "submit", "load", "/kill", "--bandwidth", "3MiB", "--output", "json")
	var j sdk.JobJSON
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		t.Fatal(err)
	}
	kill := c.KillWorkerWithRunningTask(j.ID, 1, 30*time.Second)
	final, errOut, code := c.JobJSON("job", "wait", fmt.Sprint(j.ID))
	if code != 0 || final.Status != "COMPLETED" || final.TasksDone != final.TasksTotal {
		t.Fatalf("after killing worker %d: exit %d %+v\n%s", kill.Worker, code, final, errOut)
	}
	c.RequireRetried(kill)
	// The job worker of the dead process is LOST.
	testutil.Eventually(t, 10*time.Second, func() error {
		ws, err := c.Jobs.Workers(context.Background())
		if err != nil {
			return err
		}
		lost := 0
		for _, w := range ws {
			if w.GetState() == api.WorkerState_LOST {
				lost++
			}
		}
		if lost != 1 {
			return fmt.Errorf("%d lost job workers", lost)
		}
		return nil
	})
	// Once the FS master drops the dead worker's blocks, a load puts them
	// back on the survivors.
	deadRPC, _, _ := c.WorkerPorts(kill.Worker)
	testutil.Eventually(t, 15*time.Second, func() error {
		ws, err := c.Client.Workers(context.Background())
		if err != nil {
			return err
		}
		for _, w := range ws {
			if w.GetAddress().GetRpcPort() == int32(deadRPC) && w.GetState() == api.WorkerState_LIVE {
				return fmt.Errorf("FS master still has worker %d live", kill.Worker)
			}
		}
		return nil
	})
	j2, errOut, code := c.JobJSON("job", "submit", "load", "/kill", "--wait")
	if code != 0 || j2.Status != "COMPLETED" {
		t.Fatalf("reload: exit %d %+v\n%s", code, j2, errOut)
	}
	for _, p := range testutil.SortedKeys(files) {
		if f := c.FSStat(p); f.CachedPercent != 100 {
			t.Errorf("%s: cachedPercent %d", p, f.CachedPercent)
		}
	}
}

// Three job master processes: SIGKILL the leader mid-job; a new leader is
// elected, the job completes, and `job stat` works against the survivors.
func TestJobMasterLeaderKilled(t *testing.T) {
	c := startCluster(t, testutil.ClusterOptions{Workers: 2, JobMasters: 3})
	files := c.UFSTree("ha", map[string]int{"a": 2 * blockSize, "b": 2 * blockSize, "c": blockSize, "d": blockSize, "e": 500})
	out := c.MustCLI("job", "submit", "load", "/ha", "--bandwidth", "2MiB", "--output", "json")
	var j sdk.JobJSON
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, func() error {
		info, err := c.Jobs.Get(context.Background(), j.ID, false)
		if err != nil {
			return err
		}
		if info.GetTasksRunning() == 0 {
			return fmt.Errorf("not running yet")
		}
		return nil
	})
	if info, err := c.Jobs.Get(context.Background(), j.ID, false); err != nil || sdk.IsTerminal(info.GetStatus()) {
		t.Fatalf("job %d before the leader kill: %v %v", j.ID, info, err)
	}
	// The leader as it is now, mid-job (it may have moved since the
	// cluster started); the survivors must elect another.
	dead, newLeader := c.KillJobMasterLeader()
	var survivors []string
	for i, a := range c.JobMasterAddrs {
		if i != dead {
			survivors = append(survivors, a)
		}
	}
	surv := strings.Join(survivors, ",")
	// The CLI, given only the survivors, finds the new leader too.
	var leader struct {
		LeaderID string `json:"leaderId"`
	}
	if err := json.Unmarshal([]byte(c.MustCLI("job", "leader", "--output", "json", "--job-master", surv)), &leader); err != nil {
		t.Fatal(err)
	}
	// Leadership may have moved between the survivors since (a loaded
	// machine costs elections): any survivor will do, the dead one not.
	if leader.LeaderID == fmt.Sprintf("jm%d", dead) || !strings.HasPrefix(leader.LeaderID, "jm") {
		t.Fatalf("job leader via the survivors: %q, want a survivor (jm%d was elected after jm%d died)", leader.LeaderID, newLeader, dead)
	}
	final, errOut, code := c.JobJSON("job", "wait", fmt.Sprint(j.ID), "--job-master", surv)
	if code != 0 || final.Status != "COMPLETED" {
		t.Fatalf("after leader kill: exit %d %+v\n%s", code, final, errOut)
	}
	t.Logf("job %d completed %s after submit under new leader %s", j.ID, time.Duration(final.FinishedMs-final.CreatedMs)*time.Millisecond, leader.LeaderID)
	// job stat against each survivor alone (a follower forwards).
	for _, a := range survivors {
		st, errOut, code := c.JobJSON("job", "stat", fmt.Sprint(j.ID), "--job-master", a)
		if code != 0 || st.Status != "COMPLETED" || st.TasksDone != final.TasksDone {
			t.Fatalf("job stat via %s: exit %d %+v\n%s", a, code, st, errOut)
		}
	}
	if cached, total := c.cachedBlocks(files); cached != total {
		t.Fatalf("%d of %d blocks cached", cached, total)
	}
	// The survivors still take new jobs.
	c.UFSTree("ha2", map[string]int{"x": 1000})
	if j2, errOut, code := c.JobJSON("job", "submit", "load", "/ha2", "--wait", "--job-master", surv); code != 0 || j2.Status != "COMPLETED" {
		t.Fatalf("new job after failover: exit %d %+v\n%s", code, j2, errOut)
	}
}
