package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/jobview"
	"github.com/alluvium/alluvium/internal/testutil"
	"github.com/alluvium/alluvium/sdk"
)

// fourSteps is a 4-step chain: warm a small tree, load a big one slowly
// (a bandwidth limit, so the test can act while it runs), copy the small
// tree, persist the copy.
const fourSteps = `name: four
params:
  - name: root
steps:
  - name: warm
    plan: load
    config: {path: "{{.root}}/in"}
  - name: big
    plan: load
    after: [warm]
    config: {path: "{{.root}}/big", bandwidth: 1048576}
  - name: copy
    plan: copy
    after: [big]
    config: {src: "{{.root}}/in", dst: "{{.root}}/out", overwrite: true}
  - name: persist
    plan: persist
    after: [copy]
    config: {path: "{{.root}}/out"}
`

// A pipeline submitted by a CLI that is then killed (kill -9) runs on; the
// job-master leader (of 3) is SIGKILLed while step 2 runs; the run still
// completes from the survivors, step 2's job ran once (one job, one
// attempt), step 3 started after it ended, and `pipeline stat` from another
// process shows every step.
func TestSubmittedPipelineOutlivesItsClientAndTheLeader(t *testing.T) {
	c := testutil.StartCluster(t, testutil.ClusterOptions{Workers: 2, JobMasters: 3})
	in := c.UFSTree("p/in", map[string]int{"a": 1000, "b": testutil.BlockSize + 7, "sub/c": 300})
	c.UFSTree("p/big", map[string]int{"x": 3 * testutil.BlockSize, "y": 3 * testutil.BlockSize})
	file := filepath.Join(t.TempDir(), "four.yaml")
	if err := os.WriteFile(file, []byte(fourSteps), 0o644); err != nil {
		t.Fatal(err)
	}
	cli := testutil.Start(t, "pipeline-submit", c.Bin, c.Env, "pipeline", "submit", file, "--param", "root=/p", "--wait")
	cli.WaitLog("Submitted pipeline four as run", 60*time.Second)
	m := regexp.MustCompile(`as run (\d+)`).FindStringSubmatch(cli.Log())
	if m == nil {
		t.Fatalf("no run id in the CLI's output:\n%s", cli.Log())
	}
	var id int64
	fmt.Sscan(m[1], &id)
	ps, err := c.Client.Pipelines()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// Step 2's job runs tasks: kill the CLI, then the leader.
	testutil.Eventually(t, 60*time.Second, func() error {
		run, err := ps.Get(ctx, id)
		if err != nil {
			return err
		}
		big := stepNamed(run, "big")
		if big.GetJobId() == 0 {
			return fmt.Errorf("step big has no job yet: %v", big.GetStatus())
		}
		j, err := c.Jobs.Get(ctx, big.GetJobId(), false)
		if err != nil {
			return err
		}
		if j.GetTasksRunning() == 0 && j.GetTasksDone() == 0 {
			return fmt.Errorf("job %d of step big runs no task yet", j.GetId())
		}
		if sdk.IsTerminal(j.GetStatus()) {
			t.Fatalf("step big's job ended before the faults: %v", j)
		}
		return nil
	})
	cli.Kill()
	dead, leader := c.KillJobMasterLeader()
	var survivors []string
	for i, a := range c.JobMasterAddrs {
		if i != dead {
			survivors = append(survivors, a)
		}
	}
	surv := strings.Join(survivors, ",")
	out, errOut, code := c.CLI("pipeline", "wait", fmt.Sprint(id), "--output", "json", "--job-master", surv)
	var run jobview.Pipeline
	if err := json.Unmarshal([]byte(out), &run); err != nil || code != 0 || run.Status != "SUCCEEDED" {
		t.Fatalf("pipeline wait after the kills (leader now jm%d): exit %d, %v\n%s\n%s", leader, code, err, out, errOut)
	}
	// Another process, each survivor alone (a follower forwards).
	for _, a := range survivors {
		out := c.MustCLI("pipeline", "stat", fmt.Sprint(id), "--output", "json", "--job-master", a)
		var st jobview.Pipeline
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatal(err)
		}
		if len(st.Steps) != 4 {
			t.Fatalf("stat via %s: %d steps", a, len(st.Steps))
		}
		for _, s := range st.Steps {
			if s.Status != "SUCCEEDED" || s.JobID == 0 || s.StartedMs == 0 || s.FinishedMs < s.StartedMs {
				t.Fatalf("stat via %s: step %+v", a, s)
			}
		}
	}
	steps := map[string]jobview.Step{}
	for _, s := range run.Steps {
		steps[s.Name] = s
	}
	if big := steps["big"]; len(big.JobIDs) != 1 || big.Attempt != 1 {
		t.Fatalf("step big: jobs %v in %d attempts, want one job", big.JobIDs, big.Attempt)
	}
	if steps["copy"].StartedMs < steps["big"].FinishedMs {
		t.Fatalf("step copy started at %d, before big ended at %d", steps["copy"].StartedMs, steps["big"].FinishedMs)
	}
	// The job master made exactly one job per step.
	n := 0
	for j, err := range c.Jobs.List(ctx, sdk.ListJobsOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		if j.GetPipelineRunId() == id {
			n++
		}
	}
	if n != 4 {
		t.Fatalf("%d jobs of run %d, want 4", n, id)
	}
	// What the steps did: the copy holds the input's bytes, persisted.
	for p, want := range in {
		q := strings.Replace(p, "/p/in/", "/p/out/", 1)
		got, err := (&cluster{client: c.Client}).readAll(ctx, q)
		if err != nil {
			t.Fatalf("read %s: %v", q, err)
		}
		if string(got) != string(want) {
			t.Fatalf("%s: %d bytes differ from %s", q, len(got), p)
		}
		if !c.FSStat(q).Persisted {
			t.Fatalf("%s not persisted", q)
		}
	}
	// pipeline ls shows the run with its trigger.
	ls := c.MustCLI("pipeline", "ls")
	if !strings.Contains(ls, fmt.Sprintf("%d ", id)) || !strings.Contains(ls, "SUCCEEDED") || !strings.Contains(ls, "manual") {
		t.Fatalf("pipeline ls:\n%s", ls)
	}

	// A policy fires the pipeline (run-now here; its cron spec is far off).
	c.MustCLI("policy", "add", "chain", "--cron", "0 0 1 1 *", "--pipeline", file, "--param", "root=/p")
	out, errOut, code = c.CLI("policy", "run-now", "chain", "--wait", "--output", "json")
	var fired jobview.Pipeline
	if err := json.Unmarshal([]byte(out), &fired); err != nil || code != 0 || fired.Status != "SUCCEEDED" ||
		fired.Trigger.Kind != "RUN_NOW" || fired.Trigger.Policy != "chain" || fired.ID == id {
		t.Fatalf("policy run-now of a pipeline policy: exit %d %v %+v\n%s", code, err, fired, errOut)
	}
	if pl := c.MustCLI("policy", "ls", "-v"); !strings.Contains(pl, "pipeline four") || !strings.Contains(pl, fmt.Sprintf("run %d", fired.ID)) ||
		!strings.Contains(pl, "policy chain (run-now)") {
		t.Fatalf("policy ls -v:\n%s", pl)
	}
	if _, errOut, code := c.CLI("policy", "add", "both", "--cron", "@hourly", "--pipeline", file, "load", "/p/in"); code != 2 || !strings.Contains(errOut, "give one") {
		t.Fatalf("policy add with a pipeline and a job: exit %d\n%s", code, errOut)
	}
}

func stepNamed(r *sdk.PipelineRun, name string) *api.PipelineStepState {
	for _, s := range r.GetSteps() {
		if s.GetName() == name {
			return s
		}
	}
	return nil
}
