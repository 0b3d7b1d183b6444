// Package pipeline tests the SDK's pipelines end to end, on a real
// `alluvium local` (FS master, job master, two workers in one process): load
// jobs chained with Go steps, a job that fails on the job workers and is
// retried, one that fails for good and skips its dependents, a cancel that
// must leave the running job CANCELED on the job master, a pipeline on a
// cron schedule, and the programs in sdk/examples.
package pipeline

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alluvium/alluvium/internal/testutil"
	"github.com/alluvium/alluvium/sdk"
)

type cluster struct {
	ufs    string
	files  int // written by tree
	env    map[string]string
	client *sdk.Client
	jobs   *sdk.Jobs
}

func startLocal(t *testing.T) *cluster {
	t.Helper()
	bin := testutil.Binary(t)
	base := testutil.PortBase(t)
	root := t.TempDir()
	c := &cluster{ufs: filepath.Join(root, "ufs")}
	home := filepath.Join(root, "home")
	if err := os.MkdirAll(c.ufs, 0o755); err != nil {
		t.Fatal(err)
	}
	p := testutil.Start(t, "local", bin, nil, "local", "--home", home, "--ufs", c.ufs, "--workers", "2", "--port-base", fmt.Sprint(base))
	p.WaitLog("ready", 90*time.Second)
	c.env = readEnv(t, filepath.Join(home, "env"))
	cl, err := sdk.Dial(context.Background(), sdk.WithMaster(c.env["ALLUVIUM_MASTER"]), sdk.WithJobMasters(c.env["ALLUVIUM_JOB_MASTER"]),
		sdk.WithToken(c.env["ALLUVIUM_TOKEN"]), sdk.WithTimeout(20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	c.client = cl
	if c.jobs, err = cl.Jobs(); err != nil {
		t.Fatal(err)
	}
	return c
}

func readEnv(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("env file: %v", err)
	}
	env := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "=")
		if ok {
			env[k] = strings.Trim(v, `"'`)
		}
	}
	return env
}

// tree writes files (path under dir → size) of random bytes to the UFS and
// returns their contents by alluvium path.
func (c *cluster) tree(t *testing.T, dir string, files map[string]int) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for name, n := range files {
		data := make([]byte, n)
		_, _ = rand.Read(data)
		p := filepath.Join(c.ufs, dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		out["/"+dir+"/"+name] = data
		c.files++
	}
	return out
}

// vanish makes path's UFS file disappear after the FS master has seen it:
// loading it then fails on the job workers (NotFound from the UFS). The
// returned function puts it back with its old mtime, so its fingerprint
// matches again.
func (c *cluster) vanish(t *testing.T, path string) (restore func()) {
	t.Helper()
	if _, err := c.client.Stat(context.Background(), path); err != nil {
		t.Fatal(err)
	}
	ufsPath := filepath.Join(c.ufs, filepath.FromSlash(path))
	fi, err := os.Stat(ufsPath)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(ufsPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(ufsPath); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := os.WriteFile(ufsPath, data, 0o644); err != nil {
			t.Error(err)
		}
		if err := os.Chtimes(ufsPath, fi.ModTime(), fi.ModTime()); err != nil {
			t.Error(err)
		}
	}
}

// readAll reads path through the SDK's data path.
func (c *cluster) readAll(ctx context.Context, path string) ([]byte, error) {
	r, err := c.client.Open(ctx, path, sdk.OpenOptions{})
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

func sum(files map[string][]byte) (n int64) {
	for _, d := range files {
		n += int64(len(d))
	}
	return n
}

func stepOf(t *testing.T, rep *sdk.Report, name string, want sdk.StepStatus) sdk.StepResult {
	t.Helper()
	s, ok := rep.Step(name)
	if !ok {
		t.Fatalf("no step %q", name)
	}
	if s.Status != want {
		t.Fatalf("step %q: %s, want %s (err %v, reason %q)\n%s", name, s.Status, want, s.Err, s.Reason, rep)
	}
	return s
}

func TestPipelines(t *testing.T) {
	c := startLocal(t)
	ctx := context.Background()
	// Every tree is in the UFS before the first listing: the FS master
	// loads a directory's children once (as Alluxio does by default), so a
	// tree written later under / would not be seen.
	a := c.tree(t, "a", map[string]int{"one.bin": 1<<20 + 17, "two.bin": 300 << 10, "deep/three.bin": 5000})
	b := c.tree(t, "b", map[string]int{"x.bin": 2 << 20, "y.bin": 10})
	flaky := c.tree(t, "flaky", map[string]int{"f.bin": 700 << 10})
	c.tree(t, "gone", map[string]int{"g.bin": 200 << 10})
	slow := c.tree(t, "slow", map[string]int{"a.bin": 4 << 20, "b.bin": 4 << 20})
	c.tree(t, "tick", map[string]int{"t.bin": 1000})
	raw := c.tree(t, "raw", map[string]int{"r1.bin": 600 << 10, "sub/r2.bin": 3000})
	c.tree(t, "hot", map[string]int{"h.bin": 5000})
	c.tree(t, "out", map[string]int{"o.bin": 4000})

	t.Run("load jobs and Go steps", func(t *testing.T) {
		var mu sync.Mutex
		var progress []*sdk.JobInfo
		var events []sdk.Event
		var listed int
		p := sdk.NewPipeline("warm", sdk.OnEvent(func(e sdk.Event) { events = append(events, e) }))
		p.Func("list", func(ctx context.Context) error {
			for f, err := range c.client.List(ctx, "/", sdk.ListOptions{Recursive: true}) {
				if err != nil {
					return err
				}
				if !f.GetFolder() {
					listed++
				}
			}
			return nil
		})
		p.Job("load-a", sdk.JobSpec{Plan: "load", Config: sdk.LoadConfig{Path: "/a"}}, sdk.After("list"),
			sdk.OnJobProgress(func(j *sdk.JobInfo) { mu.Lock(); progress = append(progress, j); mu.Unlock() }))
		p.Job("load-b", sdk.JobSpec{Plan: "load", Config: map[string]any{"path": "/b", "replication": 2}}, sdk.After("list"))
		p.Func("verify", func(ctx context.Context) error {
			for _, files := range []map[string][]byte{a, b} {
				for path, want := range files {
					st, err := c.client.Stat(ctx, path)
					if err != nil {
						return err
					}
					if st.GetCachedPercent() != 100 {
						return fmt.Errorf("%s: %d%% cached after its load step", path, st.GetCachedPercent())
					}
					got, err := c.readAll(ctx, path)
					if err != nil {
						return err
					}
					if !bytes.Equal(got, want) {
						return fmt.Errorf("%s: read %d bytes that differ from the UFS file", path, len(got))
					}
				}
			}
			return nil
		}, sdk.After("load-a", "load-b"))

		rep, err := p.Run(ctx, c.client)
		t.Logf("\n%s", rep)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		if listed != c.files {
			t.Errorf("list step saw %d files, want %d", listed, c.files)
		}
		la, lb := stepOf(t, rep, "load-a", sdk.StepSucceeded), stepOf(t, rep, "load-b", sdk.StepSucceeded)
		stepOf(t, rep, "verify", sdk.StepSucceeded)
		// The two loads depend only on "list": they ran at the same time.
		if !(la.Started.Before(lb.Finished) && lb.Started.Before(la.Finished)) {
			t.Errorf("load-a ran %s..%s, load-b %s..%s: not concurrently", la.Started, la.Finished, lb.Started, lb.Finished)
		}
		for _, tc := range []struct {
			s     sdk.StepResult
			bytes int64
			rep   int
		}{{la, sum(a), 1}, {lb, 2 * sum(b), 2}} {
			if tc.s.Attempts != 1 || len(tc.s.JobIDs) != 1 {
				t.Fatalf("%s: %d attempts, jobs %v", tc.s.Name, tc.s.Attempts, tc.s.JobIDs)
			}
			// What the job master says about the step's job.
			j, err := c.jobs.Get(ctx, tc.s.JobIDs[0], false)
			if err != nil {
				t.Fatal(err)
			}
			if j.GetStatus() != sdk.JobCompleted || j.GetPlan() != "load" || j.GetBytesDone() != tc.bytes || j.GetTasksFailed() != 0 {
				t.Errorf("%s: job %v; want COMPLETED with %d bytes", tc.s.Name, sdk.ToJSON(j), tc.bytes)
			}
			if !strings.HasSuffix(j.GetRequestId(), "/"+tc.s.Name+"/1") {
				t.Errorf("%s: request id %q does not name the step and attempt", tc.s.Name, j.GetRequestId())
			}
			if tc.s.Job.GetStatus() != sdk.JobCompleted || tc.s.Job.GetBytesDone() != tc.bytes {
				t.Errorf("%s: report's last job state %v", tc.s.Name, sdk.ToJSON(tc.s.Job))
			}
		}
		mu.Lock()
		if len(progress) == 0 || progress[len(progress)-1].GetStatus() != sdk.JobCompleted {
			t.Errorf("load-a progress callbacks: %d, last %v", len(progress), progress)
		}
		mu.Unlock()
		kinds := map[sdk.EventKind]int{}
		for _, e := range events {
			kinds[e.Kind]++
		}
		if kinds[sdk.EventAttempt] != 4 || kinds[sdk.EventJobSubmitted] != 2 || kinds[sdk.EventDone] != 4 || kinds[sdk.EventJobProgress] < 2 {
			t.Errorf("events by kind: %v", kinds)
		}
		// Jobs().List has both jobs; Watch of a finished job yields its
		// final state and ends.
		found := 0
		for j, err := range c.jobs.List(ctx, sdk.ListJobsOptions{Plan: "load"}) {
			if err != nil {
				t.Fatal(err)
			}
			if j.GetId() == la.JobIDs[0] || j.GetId() == lb.JobIDs[0] {
				found++
			}
		}
		if found != 2 {
			t.Errorf("job ls found %d of the pipeline's 2 jobs", found)
		}
		n := 0
		for j, err := range c.jobs.Watch(ctx, la.JobIDs[0]) {
			if err != nil || j.GetStatus() != sdk.JobCompleted {
				t.Fatalf("Watch of a finished job: %v, %v", j, err)
			}
			n++
		}
		if n != 1 {
			t.Errorf("Watch of a finished job yielded %d states", n)
		}
	})

	t.Run("a job failing twice then succeeding is retried", func(t *testing.T) {
		restore := c.vanish(t, "/flaky/f.bin")
		retries := 0
		p := sdk.NewPipeline("flaky", sdk.OnEvent(func(e sdk.Event) {
			if e.Kind == sdk.EventRetry && e.Step == "load" {
				if retries++; retries == 2 {
					restore() // the UFS is back before the third attempt
				}
			}
		}))
		// NoSync: the namespace keeps the file, so its load fails as it
		// would while the UFS cannot serve it (a sync would forget it).
		p.Job("load", sdk.JobSpec{Plan: "load", Config: sdk.LoadConfig{Path: "/flaky", NoSync: true}},
			sdk.Retry(sdk.RetryPolicy{Attempts: 4, Backoff: 100 * time.Millisecond}))
		p.Func("read", func(ctx context.Context) error {
			got, err := c.readAll(ctx, "/flaky/f.bin")
			if err == nil && !bytes.Equal(got, flaky["/flaky/f.bin"]) {
				err = errors.New("/flaky/f.bin: wrong bytes")
			}
			return err
		}, sdk.After("load"))
		rep, err := p.Run(ctx, c.client)
		t.Logf("\n%s", rep)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		s := stepOf(t, rep, "load", sdk.StepSucceeded)
		if s.Attempts != 3 || len(s.JobIDs) != 3 {
			t.Fatalf("load: %d attempts, jobs %v; want 3 and 3", s.Attempts, s.JobIDs)
		}
		for i, id := range s.JobIDs {
			j, err := c.jobs.Get(ctx, id, false)
			if err != nil {
				t.Fatal(err)
			}
			want := sdk.JobFailed
			if i == 2 {
				want = sdk.JobCompleted
			}
			if j.GetStatus() != want {
				t.Errorf("attempt %d: job %d %s, want %s (%s)", i+1, id, j.GetStatus(), want, j.GetError())
			}
			if want == sdk.JobFailed && !strings.Contains(j.GetError(), "/flaky/f.bin") {
				t.Errorf("attempt %d: job error %q does not name the file", i+1, j.GetError())
			}
		}
		if st, err := c.client.Stat(ctx, "/flaky/f.bin"); err != nil || st.GetCachedPercent() != 100 {
			t.Fatalf("after the pipeline: %v, %v", st, err)
		}
	})

	t.Run("a job failing for good skips its dependents", func(t *testing.T) {
		c.vanish(t, "/gone/g.bin")
		p := sdk.NewPipeline("doomed", sdk.DefaultRetry(sdk.RetryPolicy{Attempts: 2, Backoff: 50 * time.Millisecond}))
		p.Job("load-gone", sdk.JobSpec{Plan: "load", Config: sdk.LoadConfig{Path: "/gone", NoSync: true}})
		p.Job("load-after", sdk.JobSpec{Plan: "load", Config: sdk.LoadConfig{Path: "/a"}}, sdk.After("load-gone"))
		p.Func("summarize", func(ctx context.Context) error { return errors.New("must not run") }, sdk.After("load-after"))
		p.Job("bad-path", sdk.JobSpec{Plan: "load", Config: sdk.LoadConfig{Path: "/no/such/dir"}}, sdk.Retries(3))
		p.Func("independent", func(ctx context.Context) error { return nil })
		rep, err := p.Run(ctx, c.client)
		t.Logf("\n%s", rep)
		if !errors.Is(err, sdk.ErrJobFailed) || !errors.Is(err, sdk.ErrNotFound) {
			t.Fatalf("Run: %v; want ErrJobFailed and ErrNotFound inside", err)
		}
		gone := stepOf(t, rep, "load-gone", sdk.StepFailed)
		if gone.Attempts != 2 || len(gone.JobIDs) != 2 || !errors.Is(gone.Err, sdk.ErrJobFailed) || !strings.Contains(gone.Err.Error(), "/gone/g.bin") {
			t.Fatalf("load-gone: %d attempts, jobs %v, err %v", gone.Attempts, gone.JobIDs, gone.Err)
		}
		for _, id := range gone.JobIDs {
			if j, err := c.jobs.Get(ctx, id, false); err != nil || j.GetStatus() != sdk.JobFailed {
				t.Errorf("job %d: %v, %v; want FAILED", id, j, err)
			}
		}
		after := stepOf(t, rep, "load-after", sdk.StepSkipped)
		if !strings.HasPrefix(after.Reason, `dependency "load-gone" failed: job `) || !strings.Contains(after.Reason, "/gone/g.bin") || len(after.JobIDs) != 0 {
			t.Errorf("load-after: reason %q, jobs %v", after.Reason, after.JobIDs)
		}
		if s := stepOf(t, rep, "summarize", sdk.StepSkipped); !strings.HasPrefix(s.Reason, `dependency "load-after" skipped: step "load-gone" failed`) {
			t.Errorf("summarize: reason %q", s.Reason)
		}
		// A path that does not exist fails at submit: not retried, no job.
		if s := stepOf(t, rep, "bad-path", sdk.StepFailed); s.Attempts != 1 || len(s.JobIDs) != 0 || !errors.Is(s.Err, sdk.ErrNotFound) {
			t.Errorf("bad-path: %d attempts, jobs %v, err %v", s.Attempts, s.JobIDs, s.Err)
		}
		stepOf(t, rep, "independent", sdk.StepSucceeded)
		// Nothing was submitted for the skipped step.
		for j, err := range c.jobs.List(ctx, sdk.ListJobsOptions{}) {
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(j.GetRequestId(), "/load-after/") {
				t.Errorf("job %d was submitted for the skipped step", j.GetId())
			}
		}
		for _, want := range []string{"load-gone", "FAILED", "SKIPPED", "bad-path", "1 succeeded, 2 failed, 2 skipped"} {
			if !strings.Contains(rep.String(), want) {
				t.Errorf("summary lacks %q", want)
			}
		}
	})

	t.Run("a cancelled context cancels the running job", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var once sync.Once
		var cancelledAt time.Time
		p := sdk.NewPipeline("cancel-me", sdk.DefaultRetry(sdk.RetryPolicy{Attempts: 3}))
		// 8 MiB at 1 MiB/s: the job runs for seconds unless cancelled.
		p.Job("slow-load", sdk.JobSpec{Plan: "load", Config: sdk.LoadConfig{Path: "/slow", Bandwidth: 1 << 20}},
			sdk.OnJobProgress(func(j *sdk.JobInfo) {
				if j.GetTasksRunning() > 0 {
					once.Do(func() { cancelledAt = time.Now(); cancel() })
				}
			}))
		p.Job("then", sdk.JobSpec{Plan: "load", Config: sdk.LoadConfig{Path: "/a"}}, sdk.After("slow-load"))
		p.Func("waiter", func(ctx context.Context) error {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Minute):
				return errors.New("the pipeline was never cancelled")
			}
		})
		rep, err := p.Run(ctx, c.client)
		t.Logf("\n%s", rep)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Run: %v; want context.Canceled", err)
		}
		if cancelledAt.IsZero() {
			t.Fatal("the job never reported a running task")
		}
		if took := time.Since(cancelledAt); took > 10*time.Second {
			t.Errorf("Run returned %s after the cancel", took)
		}
		s := stepOf(t, rep, "slow-load", sdk.StepCanceled)
		if s.Attempts != 1 || len(s.JobIDs) != 1 || !errors.Is(s.Err, sdk.ErrJobCanceled) || s.Job.GetStatus() != sdk.JobCanceled {
			t.Fatalf("slow-load: %d attempts, jobs %v, err %v, job %v", s.Attempts, s.JobIDs, s.Err, s.Job)
		}
		// The job master agrees, and the job did not finish its work.
		j, err := c.jobs.Get(context.Background(), s.JobIDs[0], false)
		if err != nil {
			t.Fatal(err)
		}
		if j.GetStatus() != sdk.JobCanceled || j.GetBytesDone() >= sum(slow) {
			t.Fatalf("job %d on the job master: %v; want CANCELED before all %d bytes", s.JobIDs[0], sdk.ToJSON(j), sum(slow))
		}
		if th := stepOf(t, rep, "then", sdk.StepCanceled); len(th.JobIDs) != 0 || !strings.Contains(th.Reason, "not started") {
			t.Errorf("then: %+v", th)
		}
		stepOf(t, rep, "waiter", sdk.StepCanceled)
	})

	t.Run("a pipeline on a cron schedule", func(t *testing.T) {
		p := sdk.NewPipeline("every-second")
		p.Job("load", sdk.JobSpec{Plan: "load", Config: sdk.LoadConfig{Path: "/tick"}})
		var runs []sdk.ScheduledRun
		// Queue: a run due while the first still runs (a load can take
		// over a second on a busy machine) waits for it instead of being
		// skipped, so both fires run, whatever the machine's speed.
		err := sdk.Schedule(ctx, c.client, "* * * * * *", p, sdk.ScheduleLimit(2), sdk.ScheduleOverlap(sdk.OverlapQueue),
			sdk.OnScheduledRun(func(r sdk.ScheduledRun) { runs = append(runs, r) }))
		if err != nil {
			t.Fatal(err)
		}
		if len(runs) != 2 {
			t.Fatalf("%d runs of a schedule limited to 2", len(runs))
		}
		if !runs[1].Due.After(runs[0].Due) || runs[1].Started.Before(runs[0].Finished) || runs[0].Started.Before(runs[0].Due) {
			t.Fatalf("runs %+v: want the second due later, started once the first ended, none before its time", runs)
		}
		ids := map[int64]bool{}
		for _, r := range runs {
			if r.Skipped || r.Err != nil || !r.Report.OK() {
				t.Fatalf("run due %s: skipped %v, err %v\n%s", r.Due, r.Skipped, r.Err, r.Report)
			}
			s, _ := r.Report.Step("load")
			ids[s.JobIDs[0]] = true
			if j, err := c.jobs.Get(ctx, s.JobIDs[0], false); err != nil || j.GetStatus() != sdk.JobCompleted {
				t.Errorf("job %d: %v, %v", s.JobIDs[0], j, err)
			}
		}
		if len(ids) != 2 {
			t.Fatalf("two runs made jobs %v; want two distinct jobs", ids)
		}
	})

	t.Run("examples", func(t *testing.T) {
		root := testutil.RepoRoot(t)
		dir := t.TempDir()
		build := func(name string) string {
			out := filepath.Join(dir, name)
			cmd := exec.Command("go", "build", "-o", out, "./sdk/examples/"+name)
			cmd.Dir = root
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("go build %s: %v\n%s", name, err, b)
			}
			return out
		}
		var env []string
		for k, v := range c.env {
			env = append(env, k+"="+v)
		}
		out, errOut, code := testutil.Run(t, build("warmup-copy-persist"), env, "-src", "/raw", "-dst", "/curated", "-retries", "0")
		t.Logf("warmup-copy-persist: exit %d\n%s\n%s", code, out, errOut)
		if !tableRow(out, "warm-up", "SUCCEEDED") {
			t.Fatalf("warm-up step did not succeed:\n%s", out)
		}
		if st, err := c.client.Stat(ctx, "/raw/r1.bin"); err != nil || st.GetCachedPercent() != 100 {
			t.Fatalf("/raw/r1.bin after the example: %v, %v", st, err)
		}
		if strings.Contains(out+errOut, `unknown plan "copy"`) {
			// The copy and persist plans are not in this build yet: the
			// example must fail cleanly at the copy step.
			if code != 1 || !tableRow(out, "copy", "FAILED") || !tableRow(out, "persist", "SKIPPED") || !tableRow(out, "check", "SKIPPED") {
				t.Fatalf("without a copy plan: exit %d\n%s", code, out)
			}
		} else {
			if code != 0 {
				t.Fatalf("warmup-copy-persist: exit %d", code)
			}
			for p, want := range raw {
				got, err := os.ReadFile(filepath.Join(c.ufs, "curated", strings.TrimPrefix(p, "/raw/")))
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("persisted copy of %s: %v (%d bytes, want %d)", p, err, len(got), len(want))
				}
			}
		}

		nightly := build("nightly")
		out, errOut, code = testutil.Run(t, nightly, env, "-cron", "* * * * * *", "-runs", "1")
		t.Logf("nightly: exit %d\n%s\n%s", code, out, errOut)
		if !tableRow(out, "warm-hot", "SUCCEEDED") || !strings.Contains(errOut, "first run at") {
			t.Fatalf("nightly: warm-hot did not succeed")
		}
		if strings.Contains(out+errOut, `unknown plan "persist"`) {
			if code != 1 || !tableRow(out, "persist-out", "FAILED") || !tableRow(out, "snapshot", "SKIPPED") {
				t.Fatalf("nightly without a persist plan: exit %d", code)
			}
		} else if code != 0 {
			t.Fatalf("nightly: exit %d", code)
		}
		if _, errOut, code := testutil.Run(t, nightly, env, "-cron", "every night"); code != 2 || !strings.Contains(errOut, "bad cron spec") {
			t.Errorf("nightly -cron 'every night': exit %d, %q", code, errOut)
		}
	})
}

// tableRow reports whether a row of a summary table is step's and says
// status.
func tableRow(table, step, status string) bool {
	for _, l := range strings.Split(table, "\n") {
		f := strings.Fields(l)
		if len(f) >= 4 && f[0] == step && strings.Contains(l, " "+status+" ") {
			return true
		}
	}
	return false
}
