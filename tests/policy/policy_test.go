// Package policy tests cron policies end to end on real processes: an FS
// master, a worker and three job masters, each its own alluvium process on
// loopback, driven with the CLI a user would type.
package policy

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/testutil"
	"github.com/alluvium/alluvium/sdk"
)

const blockSize = 1 << 20

type cluster struct {
	t      *testing.T
	bin    string
	base   int
	home   string
	ufsDir string
	env    []string
	jms    []*testutil.Process
	jmRPC  []string
	client *sdk.Client
	jobs   *sdk.Jobs
}

// Ports under the base: FS master P, P+1; worker P+20..; job master i at
// P+60+10i (rpc +3, http +4, raft +5).
func jmBase(base, i int) int { return base + 60 + 10*i }

func startCluster(t *testing.T, jobMasters int) *cluster {
	t.Helper()
	c := &cluster{t: t, bin: testutil.Binary(t), base: testutil.PortBase(t), home: t.TempDir()}
	c.ufsDir = filepath.Join(c.home, "ufs")
	if err := os.MkdirAll(c.ufsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	master := fmt.Sprintf("localhost:%d", c.base)
	var peers []string
	for i := 0; i < jobMasters; i++ {
		b := jmBase(c.base, i)
		c.jmRPC = append(c.jmRPC, fmt.Sprintf("localhost:%d", b+3))
		peers = append(peers, fmt.Sprintf("jm%d=localhost:%d|localhost:%d", i, b+5, b+3))
	}
	c.env = []string{
		"ALLUVIUM_MASTER=" + master,
		"ALLUVIUM_JOB_MASTER=" + strings.Join(c.jmRPC, ","),
		"GORACE=atexit_sleep_ms=0",
		"ALLUVIUM_FSMASTER_WORKER_TIMEOUT=3s",
		"ALLUVIUM_FSMASTER_WORKER_HEARTBEAT_INTERVAL=200ms",
		"ALLUVIUM_FSMASTER_USER_BLOCK_SIZE=" + fmt.Sprint(blockSize),
		"ALLUVIUM_JOBMASTER_WORKER_TIMEOUT=2s",
		"ALLUVIUM_JOBMASTER_WORKER_HEARTBEAT_INTERVAL=200ms",
		"ALLUVIUM_JOBMASTER_RAFT_HEARTBEAT_TIMEOUT=300ms",
		"ALLUVIUM_JOBMASTER_RAFT_ELECTION_TIMEOUT=300ms",
		"ALLUVIUM_JOBWORKER_PROGRESS_INTERVAL=200ms",
	}
	fsm := testutil.Start(t, "fsmaster", c.bin, c.env, "fsmaster", "--home", filepath.Join(c.home, "master"),
		"--port-base", fmt.Sprint(c.base), "--ufs", "file://"+c.ufsDir)
	fsm.WaitLog("fsmaster ready", 30*time.Second)
	for i := 0; i < jobMasters; i++ {
		args := []string{"jobmaster", "--home", filepath.Join(c.home, fmt.Sprintf("jm%d", i)),
			"--port-base", fmt.Sprint(jmBase(c.base, i)), "--master", master}
		if jobMasters > 1 {
			args = append(args, "--node-id", fmt.Sprintf("jm%d", i), "--peers", strings.Join(peers, ","))
		}
		p := testutil.Start(t, fmt.Sprintf("jobmaster%d", i), c.bin, c.env, args...)
		c.jms = append(c.jms, p)
	}
	for _, p := range c.jms {
		p.WaitLog("jobmaster ready", 30*time.Second)
	}
	dir := filepath.Join(c.home, "worker0")
	w := testutil.Start(t, "worker0", c.bin, c.env, "worker", "--home", dir, "--port-base", fmt.Sprint(c.base),
		"--index", "0", "--master", master, "--job-master", strings.Join(c.jmRPC, ","))
	w.WaitLog("worker ready", 30*time.Second)
	cl, err := sdk.Dial(context.Background(), sdk.WithMaster(master), sdk.WithJobMasters(c.jmRPC...), sdk.WithTimeout(20*time.Second), sdk.WithToken(testutil.ClusterToken()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	c.client = cl
	if c.jobs, err = cl.Jobs(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		ws, err := c.jobs.Workers(context.Background())
		if err != nil {
			return err
		}
		for _, w := range ws {
			if w.GetState() == api.WorkerState_LIVE {
				return nil
			}
		}
		return fmt.Errorf("no live job worker")
	})
	return c
}

func (c *cluster) file(rel string, n int) {
	c.t.Helper()
	p := filepath.Join(c.ufsDir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		c.t.Fatal(err)
	}
	b := make([]byte, n)
	_, _ = rand.Read(b)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) cli(args ...string) (stdout, stderr string, code int) {
	c.t.Helper()
	return testutil.Run(c.t, c.bin, c.env, args...)
}

func (c *cluster) mustCLI(args ...string) string {
	c.t.Helper()
	out, errOut, code := c.cli(args...)
	if code != 0 {
		c.t.Fatalf("alluvium %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// policyJSON: the fields of `policy ls --output json` the tests read.
type policyJSON struct {
	Name          string `json:"name"`
	Cron          string `json:"cron"`
	Plan          string `json:"plan"`
	Enabled       bool   `json:"enabled"`
	Overlap       string `json:"overlap"`
	CatchUp       bool   `json:"catchUp"`
	NextRunMs     int64  `json:"nextRunMs"`
	LastRunMs     int64  `json:"lastRunMs"`
	LastJobID     int64  `json:"lastJobId"`
	LastJobStatus string `json:"lastJobStatus"`
	Runs          int64  `json:"runs"`
	Skipped       int64  `json:"skipped"`
}

func (c *cluster) policies() map[string]policyJSON {
	c.t.Helper()
	out := c.mustCLI("policy", "ls", "--output", "json")
	var v struct {
		Policies []policyJSON `json:"policies"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		c.t.Fatalf("policy ls --output json: %v\n%s", err, out)
	}
	m := map[string]policyJSON{}
	for _, p := range v.Policies {
		m[p.Name] = p
	}
	return m
}

// policyJobs lists the jobs policy name launched, oldest first.
func (c *cluster) policyJobs(name string) []*api.JobInfo {
	c.t.Helper()
	var out []*api.JobInfo
	for j, err := range c.jobs.List(context.Background(), sdk.ListJobsOptions{PageSize: 500}) {
		if err != nil {
			c.t.Fatal(err)
		}
		if j.GetPolicy() == name {
			out = append(out, j)
		}
	}
	return out
}

// scheduledMs reads the run's scheduled time from its job's request id
// (policy/<name>/<created>/<scheduled ms>).
func scheduledMs(t *testing.T, j *api.JobInfo) int64 {
	t.Helper()
	parts := strings.Split(j.GetRequestId(), "/")
	ms, err := strconv.ParseInt(parts[len(parts)-1], 10, 64)
	if len(parts) != 4 || parts[0] != "policy" || err != nil {
		t.Fatalf("job %d: request id %q is not a scheduled policy run", j.GetId(), j.GetRequestId())
	}
	return ms
}

// waitSecondBoundary sleeps until just after the next whole second, so a
// window of whole seconds holds a known number of runs.
func waitSecondBoundary() {
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second + 150*time.Millisecond)))
}

func TestPolicies(t *testing.T) {
	c := startCluster(t, 3)
	c.file("small/a.txt", 4096)
	c.file("slow/big.bin", 6*blockSize)

	t.Run("bad input is refused and nothing is stored", func(t *testing.T) {
		for _, args := range [][]string{
			{"policy", "add", "b1", "--cron", "every tuesday", "load", "/small"},
			{"policy", "add", "b2", "--cron", "61 * * * *", "load", "/small"},
			{"policy", "add", "b3", "--cron", "0 0 30 2 *", "load", "/small"}, // never fires
			{"policy", "add", "b4", "--cron", "@hourly", "bogus", "/small"},
			{"policy", "add", "b5", "--cron", "@hourly", "bogus", "--config", `{"path":"/small"}`},
			{"policy", "add", "b6", "--cron", "@hourly", "load", "/small", "--replication", "0"},
			{"policy", "add", "b7", "--cron", "@hourly", "load", "--config", `{"path":"/small","replication":"two"}`},
			{"policy", "add", "b8", "--cron", "@hourly", "--overlap", "sometimes", "load", "/small"},
			{"policy", "add", "b9", "load", "/small"},
			{"policy", "add", "b10", "--cron", "@hourly"},
			{"policy", "add", "bad name", "--cron", "@hourly", "load", "/small"},
		} {
			out, errOut, code := c.cli(args...)
			if code != 2 || !strings.HasPrefix(errOut, "alluvium: ") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
				t.Errorf("%s: exit %d, want 2 and one error line\n%s%s", strings.Join(args, " "), code, out, errOut)
			}
		}
		// A path that does not exist is refused too (exit 1, as a submit).
		if _, errOut, code := c.cli("policy", "add", "b11", "--cron", "@hourly", "load", "/missing"); code != 1 || !strings.Contains(errOut, "/missing") {
			t.Errorf("missing path: exit %d: %s", code, errOut)
		}
		if ps := c.policies(); len(ps) != 0 {
			t.Fatalf("refused adds stored policies: %v", ps)
		}
		// A name taken is refused.
		c.mustCLI("policy", "add", "dup", "--cron", "@hourly", "load", "/small")
		if _, errOut, code := c.cli("policy", "add", "dup", "--cron", "@daily", "load", "/small"); code != 1 || !strings.Contains(errOut, "exists") {
			t.Errorf("duplicate: exit %d: %s", code, errOut)
		}
		if p := c.policies()["dup"]; p.Cron != "@hourly" {
			t.Errorf("duplicate add changed the policy: %+v", p)
		}
		c.mustCLI("policy", "rm", "dup")
	})

	t.Run("seconds schedule fires as often as it should; pause, resume, rm", func(t *testing.T) {
		waitSecondBoundary()
		// overlap allow: this counts the scheduler's runs, whatever the
		// jobs' speed on a loaded machine.
		out := c.mustCLI("policy", "add", "tick", "--cron", "* * * * * *", "--overlap", "allow", "load", "/small")
		start := time.Now()
		if !strings.Contains(out, "Added policy tick") {
			t.Fatalf("add: %s", out)
		}
		time.Sleep(5 * time.Second)
		n := len(c.policyJobs("tick"))
		want := int(time.Since(start) / time.Second)
		if n < want-1 || n > want+1 {
			t.Fatalf("%d runs in %s, want %d±1", n, time.Since(start).Round(time.Millisecond), want)
		}
		p := c.policies()["tick"]
		if !p.Enabled || p.Runs < int64(n) || p.LastJobID == 0 || p.NextRunMs == 0 || p.Overlap != "allow" || !p.CatchUp {
			t.Fatalf("policy ls: %+v", p)
		}
		// ls in text shows the columns a user looks for.
		if txt := c.mustCLI("policy", "ls"); !strings.Contains(txt, "NEXT RUN") || !strings.Contains(txt, "tick") || !strings.Contains(txt, "load /small") {
			t.Fatalf("policy ls:\n%s", txt)
		}

		c.mustCLI("policy", "pause", "tick")
		time.Sleep(300 * time.Millisecond) // a run launched as we paused lands
		paused := len(c.policyJobs("tick"))
		time.Sleep(2500 * time.Millisecond)
		if n := len(c.policyJobs("tick")); n != paused {
			t.Fatalf("paused policy ran: %d → %d jobs", paused, n)
		}
		if p := c.policies()["tick"]; p.Enabled || p.NextRunMs != 0 {
			t.Fatalf("paused: %+v", p)
		}

		waitSecondBoundary()
		c.mustCLI("policy", "resume", "tick")
		time.Sleep(3 * time.Second)
		// ~3 runs; none for the paused seconds.
		if n := len(c.policyJobs("tick")); n < paused+2 || n > paused+4 {
			t.Fatalf("resumed: %d → %d jobs in 3s", paused, n)
		}

		out = c.mustCLI("policy", "run-now", "tick", "--wait")
		if !strings.Contains(out, "COMPLETED") {
			t.Fatalf("run-now --wait: %s", out)
		}

		c.mustCLI("policy", "rm", "tick")
		time.Sleep(300 * time.Millisecond)
		removed := len(c.policyJobs("tick"))
		time.Sleep(2 * time.Second)
		if n := len(c.policyJobs("tick")); n != removed {
			t.Fatalf("removed policy ran: %d → %d jobs", removed, n)
		}
		if _, ok := c.policies()["tick"]; ok {
			t.Fatal("removed policy still listed")
		}
		for _, args := range [][]string{{"policy", "rm", "tick"}, {"policy", "pause", "tick"}, {"policy", "run-now", "tick"}} {
			if _, errOut, code := c.cli(args...); code != 1 || !strings.Contains(errOut, "no such policy") {
				t.Errorf("%v after rm: exit %d: %s", args, code, errOut)
			}
		}
		// One job per scheduled run.
		seen := map[string]bool{}
		for _, j := range c.policyJobs("tick") {
			if seen[j.GetRequestId()] {
				t.Fatalf("two jobs for run %s", j.GetRequestId())
			}
			seen[j.GetRequestId()] = true
		}
	})

	t.Run("overlap skip: no second job while a slow one runs", func(t *testing.T) {
		// 6 MiB at 1 MiB/s: the first run takes seconds; every-second runs
		// meanwhile are skipped.
		c.mustCLI("policy", "add", "slow", "--cron", "* * * * * *", "load", "/slow", "--bandwidth", "1MiB")
		var first *api.JobInfo
		testutil.Eventually(t, 5*time.Second, func() error {
			js := c.policyJobs("slow")
			if len(js) == 0 {
				return fmt.Errorf("no run yet")
			}
			first = js[0]
			return nil
		})
		for {
			js := c.policyJobs("slow")
			j, err := c.jobs.Get(context.Background(), first.GetId(), false)
			if err != nil {
				t.Fatal(err)
			}
			if sdk.IsTerminal(j.GetStatus()) {
				if j.GetStatus() != api.JobInfo_COMPLETED {
					t.Fatalf("slow job: %v", j)
				}
				if took := time.Duration(j.GetFinishedMs()-j.GetCreatedMs()) * time.Millisecond; took < 3*time.Second {
					t.Fatalf("the slow job took only %s; the test needs it slower", took)
				}
				break
			}
			if len(js) != 1 {
				t.Fatalf("%d jobs while the first still runs (overlap skip)", len(js))
			}
			time.Sleep(100 * time.Millisecond)
		}
		p := c.policies()["slow"]
		if p.Skipped < 2 {
			t.Fatalf("skipped %d runs while the slow job ran: %+v", p.Skipped, p)
		}
		// Once it ended, the schedule goes on.
		testutil.Eventually(t, 5*time.Second, func() error {
			if n := len(c.policyJobs("slow")); n < 2 {
				return fmt.Errorf("%d jobs", n)
			}
			return nil
		})
		c.mustCLI("policy", "rm", "slow")
	})

	t.Run("leader kill: the next run happens exactly once", func(t *testing.T) {
		// overlap allow, so only the failover decides which runs happen.
		c.mustCLI("policy", "add", "two", "--cron", "*/2 * * * * *", "--overlap", "allow", "load", "/small")
		testutil.Eventually(t, 10*time.Second, func() error {
			if n := len(c.policyJobs("two")); n < 2 {
				return fmt.Errorf("%d runs", n)
			}
			return nil
		})
		var leader struct {
			LeaderID string `json:"leaderId"`
		}
		if err := json.Unmarshal([]byte(c.mustCLI("job", "leader", "--output", "json")), &leader); err != nil {
			t.Fatal(err)
		}
		dead := -1
		for i := range c.jms {
			if leader.LeaderID == fmt.Sprintf("jm%d", i) {
				dead = i
			}
		}
		if dead < 0 {
			t.Fatalf("leader %q is not one of ours", leader.LeaderID)
		}
		const led = "job master is the leader"
		before := map[int]int{}
		for i, p := range c.jms {
			before[i] = strings.Count(p.Log(), led)
		}
		c.jms[dead].Kill()
		killed := time.Now()
		// The new leader logs it once its loops (the scheduler too) run.
		var established time.Time
		testutil.Eventually(t, 20*time.Second, func() error {
			for i, p := range c.jms {
				if i != dead && strings.Count(p.Log(), led) > before[i] {
					established = time.Now()
					return nil
				}
			}
			return fmt.Errorf("no new leader yet")
		})
		time.Sleep(6 * time.Second)
		end := time.Now().Add(-time.Second)
		jobs := c.policyJobs("two")
		runs := map[int64]int{}
		var slots []int64
		for _, j := range jobs {
			ms := scheduledMs(t, j)
			if runs[ms]++; runs[ms] > 1 {
				t.Fatalf("run at %s launched twice", time.UnixMilli(ms).Format("15:04:05.000"))
			}
			slots = append(slots, ms)
		}
		sort.Slice(slots, func(a, b int) bool { return slots[a] < slots[b] })
		t.Logf("killed the leader at %s, new leader by %s; runs at %v", killed.Format("15:04:05.000"), established.Format("15:04:05.000"), slots)
		// Which runs must exist: every one before the kill (a launch the old
		// leader recorded but did not submit is submitted by the new one),
		// the latest one due before the new leader was up (caught up once),
		// and every one after.
		must := func(ms int64, why string) {
			if runs[ms] != 1 {
				t.Errorf("run at %s (%s): %d jobs, want 1", time.UnixMilli(ms).Format("15:04:05"), why, runs[ms])
			}
		}
		var latestBefore int64
		for s := slots[0]; s <= end.UnixMilli(); s += 2000 {
			switch {
			case s <= killed.Add(-500*time.Millisecond).UnixMilli():
				must(s, "before the kill")
			case s > established.UnixMilli():
				must(s, "after the new leader was up")
			default:
				latestBefore = s
			}
		}
		if latestBefore != 0 {
			must(latestBefore, "the latest due while no leader was up: caught up once")
		}
		c.mustCLI("policy", "rm", "two")
	})
}
