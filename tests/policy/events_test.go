package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/testutil"
	"github.com/alluvium/alluvium/sdk"
)

// eventPolicyJSON: the event fields of `policy ls --output json`.
type eventPolicyJSON struct {
	Name          string `json:"name"`
	OnCreate      string `json:"onCreate"`
	DebounceMs    int64  `json:"debounceMs"`
	BatchMax      int32  `json:"batchMax"`
	Overlap       string `json:"overlap"`
	EventCursor   int64  `json:"eventCursor"`
	Events        int64  `json:"events"`
	SkippedEvents int64  `json:"skippedEvents"`
	PendingEvents int    `json:"pendingEvents"`
	Runs          int64  `json:"runs"`
}

func (c *cluster) eventPolicy(name string) eventPolicyJSON {
	c.t.Helper()
	p, err := c.eventPolicyErr(name)
	if err != nil {
		c.t.Fatal(err)
	}
	return p
}

// eventPolicyErr is eventPolicy for a poll: a CLI that fails (a job
// master failing over) is an error to retry.
func (c *cluster) eventPolicyErr(name string) (eventPolicyJSON, error) {
	out, errOut, code := c.cli("policy", "ls", "--output", "json")
	if code != 0 {
		return eventPolicyJSON{}, fmt.Errorf("policy ls: exit %d: %s", code, errOut)
	}
	var v struct {
		Policies []eventPolicyJSON `json:"policies"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		c.t.Fatalf("policy ls --output json: %v\n%s", err, out)
	}
	for _, p := range v.Policies {
		if p.Name == name {
			return p, nil
		}
	}
	c.t.Fatalf("no policy %s in %s", name, out)
	return eventPolicyJSON{}, nil
}

// landed writes files from..to-1 under dir through Alluvium (MUST_CACHE:
// only a persist puts them in the UFS), from 8 writers, and returns the
// files' bytes by path.
func (c *cluster) landed(dir string, from, to int) map[string][]byte {
	c.t.Helper()
	return c.landing(dir, from, to)()
}

// landing starts writing files from..to-1 as landed does; the function it
// returns waits for the writers and returns the bytes by path.
func (c *cluster) landing(dir string, from, to int) func() map[string][]byte {
	c.t.Helper()
	return c.dropAsync(from, to, func(i int) (string, []byte, error) {
		p := fmt.Sprintf("%s/d%d/f%04d", dir, i%10, i)
		data := []byte(fmt.Sprintf("file %d of the landing burst\n", i))
		w, err := c.Client.Create(context.Background(), p, sdk.CreateOptions{WriteType: api.WriteType_MUST_CACHE, Recursive: true})
		if err == nil {
			_, err = w.Write(data)
			if cerr := w.Close(); err == nil {
				err = cerr
			}
		}
		return p, data, err
	})
}

// eventRuns waits until policy name has launched want files, every run's
// job has ended, and returns the jobs with the files each named.
func (c *cluster) eventRuns(name string, want int) ([]*api.JobInfo, map[int64][]string) {
	c.t.Helper()
	var jobs []*api.JobInfo
	files := map[int64][]string{}
	testutil.Eventually(c.t, 120*time.Second, func() error {
		p, err := c.eventPolicyErr(name)
		if err != nil {
			return err
		}
		if p.Events != int64(want) || p.PendingEvents != 0 {
			return fmt.Errorf("policy %s launched %d of %d files (%d pending)", name, p.Events, want, p.PendingEvents)
		}
		jobs = jobs[:0]
		for j, err := range c.Jobs.List(context.Background(), sdk.ListJobsOptions{PageSize: 500, Policy: name}) {
			if err != nil {
				return err // a job master failing over: poll again
			}
			jobs = append(jobs, j)
		}
		n := 0
		for _, j := range jobs {
			if !slices.Contains([]api.JobInfo_Status{api.JobInfo_COMPLETED, api.JobInfo_FAILED, api.JobInfo_CANCELED}, j.GetStatus()) {
				return fmt.Errorf("job %d is %v", j.GetId(), j.GetStatus())
			}
			var cfg struct {
				Files []struct {
					Path string `json:"path"`
					ID   int64  `json:"id"`
				} `json:"files"`
			}
			if err := json.Unmarshal([]byte(j.GetConfigJson()), &cfg); err != nil {
				c.t.Fatalf("job %d config %s: %v", j.GetId(), j.GetConfigJson(), err)
			}
			files[j.GetId()] = nil
			for _, f := range cfg.Files {
				files[j.GetId()] = append(files[j.GetId()], f.Path)
			}
			n += len(cfg.Files)
		}
		if n != want {
			return fmt.Errorf("the policy's %d jobs name %d files, want %d", len(jobs), n, want)
		}
		return nil
	})
	return jobs, files
}

// checkOnce checks that every file written is in exactly one run, every
// run completed, and the UFS holds every file's bytes.
func (c *cluster) checkOnce(want map[string][]byte, jobs []*api.JobInfo, files map[int64][]string) {
	c.t.Helper()
	seen := map[string]int64{}
	for _, j := range jobs {
		if j.GetStatus() != api.JobInfo_COMPLETED {
			c.t.Errorf("job %d (%d files): %v %s", j.GetId(), len(files[j.GetId()]), j.GetStatus(), j.GetError())
		}
		for _, p := range files[j.GetId()] {
			if first, dup := seen[p]; dup {
				c.t.Errorf("%s is in job %d and job %d", p, first, j.GetId())
			}
			seen[p] = j.GetId()
		}
	}
	for p, data := range want {
		if _, ok := seen[p]; !ok {
			c.t.Errorf("%s is in no run", p)
			continue
		}
		got, err := os.ReadFile(filepath.Join(c.UFSDir, p))
		if err != nil || !bytes.Equal(got, data) {
			c.t.Errorf("UFS %s: %q %v, want %q", p, got, err, data)
		}
	}
	if len(seen) != len(want) {
		c.t.Errorf("runs name %d files, %d were written", len(seen), len(want))
	}
}

// TestEventPolicyBurst: 1,000 files written through Alluvium under
// /landing (as fast as 8 writers go) with --debounce 2s make a few runs,
// not 1,000: each window is at least the debounce long, so the runs are at
// most the burst's span over 2 s, plus one. Every file is persisted once:
// each is named by exactly one run's persist job, and the UFS holds its
// bytes. The FS masters here share an embedded journal.
func TestEventPolicyBurst(t *testing.T) {
	c := &cluster{Cluster: testutil.StartCluster(t, testutil.ClusterOptions{Workers: 1, JobMasters: 1, FSMasters: 3}), t: t}
	c.mustCLI("fs", "mkdir", "/landing")
	c.mustCLI("fs", "mkdir", "/elsewhere")
	out := c.mustCLI("policy", "add", "landed", "--on-create", "/landing", "--debounce", "2s", "persist", "/landing")
	if !strings.Contains(out, "Added policy landed") || !strings.Contains(out, "/landing") {
		t.Fatalf("policy add: %s", out)
	}
	p := c.eventPolicy("landed")
	if p.OnCreate != "/landing" || p.DebounceMs != 2000 || p.BatchMax != 1000 || p.Overlap != "queue" {
		t.Fatalf("policy %+v", p)
	}
	// A file elsewhere is no event of it.
	c.mustCLI("fs", "put", "--write-type", "MUST_CACHE", "-", "/elsewhere/x") // empty stdin
	start := time.Now()
	want := c.landed("/landing", 0, 1000)
	span := time.Since(start)
	jobs, files := c.eventRuns("landed", 1000)
	limit := int(span/(2*time.Second)) + 1
	t.Logf("1,000 files in %v: %d runs (at most %d)", span.Round(time.Millisecond), len(jobs), limit)
	if len(jobs) > limit || len(jobs) < 1 {
		t.Fatalf("%d runs for a burst of %v with a 2s debounce: want 1..%d", len(jobs), span, limit)
	}
	c.checkOnce(want, jobs, files)
	if p := c.eventPolicy("landed"); p.SkippedEvents != 0 || p.Runs != int64(len(jobs)) {
		t.Fatalf("policy after the burst: %+v", p)
	}
	if fi := c.FSStat("/elsewhere/x"); fi.Persisted {
		t.Fatal("a file outside /landing was persisted")
	}
	// REST: the job master's http API lists it the same.
	resp, err := testutil.HTTPGet("http://" + c.JobMasterHTTP(0) + "/api/v1/policies")
	if err != nil {
		t.Fatal(err)
	}
	var rest struct {
		Policies []eventPolicyJSON `json:"policies"`
	}
	err = json.NewDecoder(resp.Body).Decode(&rest)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || len(rest.Policies) != 1 || rest.Policies[0] != c.eventPolicy("landed") {
		t.Fatalf("GET /api/v1/policies: %d %v %+v, want %+v", resp.StatusCode, err, rest, c.eventPolicy("landed"))
	}
	// policy ls -v shows the trigger and the cursor.
	v := c.mustCLI("policy", "ls", "-v")
	for _, s := range []string{"on-create /landing", fmt.Sprintf("feed cursor %d", c.eventPolicy("landed").EventCursor), "1000 files launched"} {
		if !strings.Contains(v, s) {
			t.Fatalf("policy ls -v lacks %q:\n%s", s, v)
		}
	}
}

// TestEventPolicyFailover: the job-master leader (of three) is SIGKILLed
// in the middle of a burst of completions; every file is still handled
// exactly once — each is named by exactly one run — and persisted.
func TestEventPolicyFailover(t *testing.T) {
	c := startCluster(t, 3)
	c.mustCLI("fs", "mkdir", "/landing")
	c.burstFailover(400, func(from, to int) func() map[string][]byte { return c.landing("/landing", from, to) },
		func() { c.KillJobMasterLeader() }, "job-master leader killed mid-burst")
}

// burstFailover adds the policy "landed" on /landing (300ms debounce,
// batches of 50, overlap allow), lands the first quarter of n files with
// land (which starts writers and returns what waits for them), waits for
// a first run, lands the rest while kill runs, and checks that every file
// is in exactly one run.
func (c *cluster) burstFailover(n int, land func(from, to int) func() map[string][]byte, kill func(), what string) {
	c.t.Helper()
	c.mustCLI("policy", "add", "landed", "--on-create", "/landing", "--debounce", "300ms", "--batch-max", "50", "--overlap", "allow", "persist", "/landing")
	want := land(0, n/4)()
	// The kill lands once the policy has launched runs, while the writers
	// of the rest go on.
	testutil.Eventually(c.t, 60*time.Second, func() error {
		p, err := c.eventPolicyErr("landed")
		if err == nil && p.Events == 0 {
			err = fmt.Errorf("no run launched yet")
		}
		return err
	})
	rest := land(n/4, n)
	kill()
	maps.Copy(want, rest())
	jobs, files := c.eventRuns("landed", n)
	c.t.Logf("%d files, %d runs, %s", n, len(jobs), what)
	c.checkOnce(want, jobs, files)
}

// TestEventPolicyRefusals: bad input to policy add --on-create is refused
// with an error naming the flag at fault, and stores nothing.
func TestEventPolicyRefusals(t *testing.T) {
	c := startCluster(t, 1)
	c.mustCLI("fs", "mkdir", "/landing")
	c.mustCLI("fs", "put", "-", "/landing-file")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--on-create", "/nope", "persist", "/landing"}, "--on-create /nope: no such directory"},
		{[]string{"--on-create", "/landing-file", "persist", "/landing"}, "--on-create /landing-file: a file"},
		{[]string{"--on-create", "landing/../../x", "persist", "/landing"}, "--on-create"},
		{[]string{"--on-create", "/landing", "--debounce", "-1s", "persist", "/landing"}, "--debounce"},
		{[]string{"--on-create", "/landing", "--debounce", "soon", "persist", "/landing"}, "debounce"},
		{[]string{"--on-create", "/landing", "--debounce", "2h", "persist", "/landing"}, "--debounce 2h0m0s: want 0s to 1h0m0s"},
		{[]string{"--on-create", "/landing", "--batch-max", "0", "persist", "/landing"}, "--batch-max 0"},
		{[]string{"--on-create", "/landing", "--batch-max", "10001", "persist", "/landing"}, "--batch-max 10001"},
		{[]string{"--on-create", "/landing", "nosuchplan", "/landing"}, "unknown plan"},
		{[]string{"--on-create", "/landing", "copy", "/landing", "/out"}, "plan copy cannot run on the files of an event"},
		{[]string{"--on-create", "/landing", "--cron", "@hourly", "persist", "/landing"}, "--cron and --on-create: give one"},
		{[]string{"--cron", "@hourly", "--debounce", "1s", "persist", "/landing"}, "--debounce and --batch-max are for --on-create"},
		{[]string{"--on-create", "/landing", "--overlap", "sometimes", "persist", "/landing"}, "--overlap"},
	} {
		_, errOut, code := c.cli(append([]string{"policy", "add", "bad"}, tc.args...)...)
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("policy add bad %s: exit %d, %q; want refused naming %q", strings.Join(tc.args, " "), code, errOut, tc.want)
		}
	}
	if ps := c.policies(); len(ps) != 0 {
		t.Fatalf("refused adds stored policies: %v", ps)
	}
	// run-now has no files to run on.
	c.mustCLI("policy", "add", "ok", "--on-create", "/landing", "--debounce", "0", "persist", "/landing")
	if _, errOut, code := c.cli("policy", "run-now", "ok"); code == 0 || !strings.Contains(errOut, "fires on files completed under /landing") {
		t.Fatalf("run-now of an event policy: exit %d %q", code, errOut)
	}
	// Paused, it launches nothing; resumed, it launches what landed
	// meanwhile (its cursor stayed).
	c.mustCLI("policy", "pause", "ok")
	want := c.landed("/landing", 0, 3)
	if p := c.eventPolicy("ok"); p.Events != 0 || p.Runs != 0 {
		t.Fatalf("a paused policy launched: %+v", p)
	}
	c.mustCLI("policy", "resume", "ok")
	jobs, files := c.eventRuns("ok", 3)
	c.checkOnce(want, jobs, files)
}

// TestEventPolicyPipeline: an event policy that fires a pipeline
// (configs/pipelines/landed.yaml) gets each batch as the run's parameters
// — paths, their common path, their count — with an EVENTS trigger
// naming the feed's sequences; every file is in exactly one run.
func TestEventPolicyPipeline(t *testing.T) {
	c := startCluster(t, 1)
	c.mustCLI("fs", "mkdir", "/landing")
	def, err := filepath.Abs("../../configs/pipelines/landed.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c.mustCLI("policy", "add", "chain", "--on-create", "/landing", "--debounce", "500ms", "--batch-max", "20", "--pipeline", def)
	want := c.landed("/landing", 0, 60)
	pl, err := c.Client.Pipelines()
	if err != nil {
		t.Fatal(err)
	}
	var runs []*api.PipelineRun
	testutil.Eventually(t, 120*time.Second, func() error {
		runs, err = pl.List(context.Background(), sdk.ListPipelinesOptions{Policy: "chain"})
		if err != nil {
			return err
		}
		n := int64(0)
		for _, r := range runs {
			if r.GetStatus() == api.PipelineRun_RUNNING {
				return fmt.Errorf("run %d still runs", r.GetId())
			}
			n += r.GetTrigger().GetEvents()
		}
		if n != int64(len(want)) {
			return fmt.Errorf("%d runs hold %d files, want %d", len(runs), n, len(want))
		}
		return nil
	})
	seen := map[string]int64{}
	for _, r := range runs {
		tr := r.GetTrigger()
		var params struct {
			Path   string   `json:"path"`
			Paths  []string `json:"paths"`
			Events string   `json:"events"`
		}
		if err := json.Unmarshal([]byte(r.GetParamsJson()), &params); err != nil {
			t.Fatalf("run %d params %s: %v", r.GetId(), r.GetParamsJson(), err)
		}
		if r.GetStatus() != api.PipelineRun_SUCCEEDED || tr.GetKind() != api.PipelineTrigger_EVENTS || tr.GetPolicy() != "chain" ||
			len(params.Paths) == 0 || len(params.Paths) > 20 || fmt.Sprint(len(params.Paths)) != params.Events ||
			int64(len(params.Paths)) != tr.GetEvents() || tr.GetFirstSequence() > tr.GetLastSequence() {
			t.Fatalf("run %d: %v %v params %s", r.GetId(), r.GetStatus(), tr, r.GetParamsJson())
		}
		for _, p := range params.Paths {
			if !strings.HasPrefix(p, params.Path+"/") && p != params.Path {
				t.Fatalf("run %d: %s is not under its common path %s", r.GetId(), p, params.Path)
			}
			if first, dup := seen[p]; dup {
				t.Fatalf("%s is in run %d and run %d", p, first, r.GetId())
			}
			seen[p] = r.GetId()
		}
	}
	for p, data := range want {
		got, err := os.ReadFile(filepath.Join(c.UFSDir, p))
		if seen[p] == 0 || err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s: in run %d, UFS %q %v", p, seen[p], got, err)
		}
	}
}
