// Package policy tests cron policies end to end on real processes: an FS
// master, a worker and three job masters, each its own alluvium process on
// loopback, driven with the CLI a user would type.
package policy

import (
	"context"
	"encoding/json"
	"fmt"
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

// cluster is testutil.Cluster with this suite's policy helpers.
type cluster struct {
	*testutil.Cluster
	t *testing.T
}

// startCluster starts an FS master, a worker and jobMasters job masters
// (one Raft group).
func startCluster(t *testing.T, jobMasters int) *cluster {
	t.Helper()
	return &cluster{Cluster: testutil.StartCluster(t, testutil.ClusterOptions{Workers: 1, JobMasters: jobMasters}), t: t}
}

func (c *cluster) file(rel string, n int) {
	c.t.Helper()
	c.UFSTree(filepath.Dir(rel), map[string]int{filepath.Base(rel): n})
}

func (c *cluster) cli(args ...string) (stdout, stderr string, code int) {
	c.t.Helper()
	return c.CLI(args...)
}

func (c *cluster) mustCLI(args ...string) string {
	c.t.Helper()
	return c.MustCLI(args...)
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
	for j, err := range c.Jobs.List(context.Background(), sdk.ListJobsOptions{PageSize: 500}) {
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
// (policy/<name>/<created>/<scheduled ms>); false for a run-now job
// (policy/<name>/<created>/now-<ms>).
func scheduledMs(t *testing.T, j *api.JobInfo) (int64, bool) {
	t.Helper()
	parts := strings.Split(j.GetRequestId(), "/")
	if len(parts) != 4 || parts[0] != "policy" {
		t.Fatalf("job %d: request id %q is not a policy run's", j.GetId(), j.GetRequestId())
	}
	if strings.HasPrefix(parts[3], "now-") {
		return 0, false
	}
	ms, err := strconv.ParseInt(parts[3], 10, 64)
	if err != nil {
		t.Fatalf("job %d: request id %q: %v", j.GetId(), j.GetRequestId(), err)
	}
	return ms, true
}

// waitRun waits until policy name has a job for a run scheduled after ms
// and returns the latest such run's time.
func (c *cluster) waitRun(name string, after int64) int64 {
	c.t.Helper()
	var at int64
	testutil.Eventually(c.t, 30*time.Second, func() error {
		for _, j := range c.policyJobs(name) {
			if ms, ok := scheduledMs(c.t, j); ok && ms > after {
				at = max(at, ms)
			}
		}
		if at == 0 {
			return fmt.Errorf("policy %s has no run after %s", name, time.UnixMilli(after).Format("15:04:05.000"))
		}
		return nil
	})
	return at
}

func TestPolicies(t *testing.T) {
	c := startCluster(t, 3)
	c.file("small/a.txt", 4096)
	c.file("slow/big.bin", 6*testutil.BlockSize)

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
		// Checked by the runs' scheduled times, not by counting jobs in a
		// window of wall-clock time. zz-clock fires every second beside
		// tick; the scheduler looks at the policies in name order, so once
		// zz-clock has its run for second S, the pass that made it has
		// decided tick's run for S: the event that a due time came and went.
		// overlap allow: the jobs' speed does not change which runs happen.
		out := c.mustCLI("policy", "add", "tick", "--cron", "* * * * * *", "--overlap", "allow", "load", "/small")
		if !strings.Contains(out, "Added policy tick") {
			t.Fatalf("add: %s", out)
		}
		c.mustCLI("policy", "add", "zz-clock", "--cron", "* * * * * *", "--overlap", "allow", "load", "/small")
		c.waitRun("tick", c.waitRun("tick", c.waitRun("tick", 0)))
		p := c.policies()["tick"]
		if !p.Enabled || p.Runs < 3 || p.LastJobID == 0 || p.NextRunMs == 0 || p.Overlap != "allow" || !p.CatchUp {
			t.Fatalf("policy ls: %+v", p)
		}
		// ls in text shows the columns a user looks for.
		if txt := c.mustCLI("policy", "ls"); !strings.Contains(txt, "NEXT RUN") || !strings.Contains(txt, "tick") || !strings.Contains(txt, "load /small") {
			t.Fatalf("policy ls:\n%s", txt)
		}

		// Paused: a second comes and goes, tick has no run for it.
		c.mustCLI("policy", "pause", "tick")
		pausedMs := time.Now().UnixMilli()
		if p := c.policies()["tick"]; p.Enabled || p.NextRunMs != 0 {
			t.Fatalf("paused: %+v", p)
		}
		c.waitRun("zz-clock", pausedMs)
		// Resumed: it runs again, without catching up the paused seconds.
		resumeMs := time.Now().UnixMilli()
		c.mustCLI("policy", "resume", "tick")
		c.waitRun("tick", resumeMs)
		for _, j := range c.policyJobs("tick") {
			if ms, ok := scheduledMs(t, j); ok && ms > pausedMs && ms <= resumeMs {
				t.Fatalf("tick ran for %s while paused (%s..%s)", time.UnixMilli(ms).Format("15:04:05.000"),
					time.UnixMilli(pausedMs).Format("15:04:05.000"), time.UnixMilli(resumeMs).Format("15:04:05.000"))
			}
		}

		out = c.mustCLI("policy", "run-now", "tick", "--wait")
		if !strings.Contains(out, "COMPLETED") {
			t.Fatalf("run-now --wait: %s", out)
		}

		// Removed: a second comes and goes, tick has no run for it.
		c.mustCLI("policy", "rm", "tick")
		removedMs := time.Now().UnixMilli()
		c.waitRun("zz-clock", removedMs)
		for _, j := range c.policyJobs("tick") {
			if ms, ok := scheduledMs(t, j); ok && ms > removedMs {
				t.Fatalf("removed policy ran for %s", time.UnixMilli(ms).Format("15:04:05.000"))
			}
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
		c.mustCLI("policy", "rm", "zz-clock")
	})

	t.Run("overlap skip: no second job while a slow one runs", func(t *testing.T) {
		// 6 MiB at 1 MiB/s: the first run takes seconds; every-second runs
		// meanwhile are skipped.
		c.mustCLI("policy", "add", "slow", "--cron", "* * * * * *", "load", "/slow", "--bandwidth", "1MiB")
		var first *api.JobInfo
		testutil.Eventually(t, 30*time.Second, func() error {
			js := c.policyJobs("slow")
			if len(js) == 0 {
				return fmt.Errorf("no run yet")
			}
			first = js[0]
			return nil
		})
		for {
			js := c.policyJobs("slow")
			j, err := c.Jobs.Get(context.Background(), first.GetId(), false)
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
		testutil.Eventually(t, 30*time.Second, func() error {
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
		dead, _ := c.JobMasterLeader(-1) // the leader as it is now
		const led = "job master is the leader"
		before := map[int]int{}
		for i, p := range c.JobMasters {
			before[i] = strings.Count(p.Log(), led)
		}
		c.JobMasters[dead].Kill()
		killed := time.Now()
		// The new leader logs it once its loops (the scheduler too) run.
		var established time.Time
		testutil.Eventually(t, 20*time.Second, func() error {
			for i, p := range c.JobMasters {
				if i != dead && strings.Count(p.Log(), led) > before[i] {
					established = time.Now()
					return nil
				}
			}
			return fmt.Errorf("no new leader yet")
		})
		// Two runs due after the new leader was up (an event, not a wait):
		// every due time up to the later one has been decided.
		end := c.waitRun("two", c.waitRun("two", established.UnixMilli()))
		jobs := c.policyJobs("two")
		runs := map[int64]int{}
		var slots []int64
		for _, j := range jobs {
			ms, ok := scheduledMs(t, j)
			if !ok {
				continue
			}
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
		for s := slots[0]; s <= end; s += 2000 {
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
