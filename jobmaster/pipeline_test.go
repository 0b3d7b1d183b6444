package jobmaster

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
)

func testStep(t *testing.T, name string, c testConfig, after ...string) *api.PipelineStep {
	t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return &api.PipelineStep{Name: name, Plan: "test", ConfigJson: string(b), After: after}
}

func waitPipeline(t *testing.T, cl api.JobMasterClient, id int64, timeout time.Duration) *api.PipelineRun {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		resp, err := cl.GetPipeline(context.Background(), &api.GetPipelineRequest{Id: id})
		if err == nil && terminalRun(resp.GetRun().GetStatus()) {
			return resp.GetRun()
		}
		if err != nil && status.Code(err) != codes.Unavailable {
			t.Fatalf("pipeline %d: %v", id, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("pipeline %d did not end within %s: %v %v", id, timeout, resp.GetRun(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The leader dies while step 2 of a 4-step chain runs: the new leader
// carries on from raft — step 2's job is not submitted again, it
// completes, and steps 3 and 4 start after it.
func TestPipelineSurvivesLeaderLoss(t *testing.T) {
	c := newCluster(t, 3, nil)
	l := c.leader()
	c.addWorker(4)
	c.addWorker(4)
	tag := uniqueTag(t)
	def := &api.PipelineDef{Name: "chain", Steps: []*api.PipelineStep{
		testStep(t, "one", testConfig{Tasks: 2, Tag: tag}),
		testStep(t, "two", testConfig{Tasks: 40, SleepMs: 50, Tag: tag}, "one"),
		testStep(t, "three", testConfig{Tasks: 2, Tag: tag}, "two"),
		testStep(t, "four", testConfig{Tasks: 1, Tag: tag}, "three"),
	}}
	cl := c.client(c.index(l))
	resp, err := cl.SubmitPipeline(context.Background(), &api.SubmitPipelineRequest{Pipeline: def, RequestId: "chain-1"})
	if err != nil {
		t.Fatal(err)
	}
	id := resp.GetRun().GetId()
	// Wait until step two's job runs tasks, then kill the leader.
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := l.fsm.Pipeline(id)
		if s := findStep(r, "two"); s.GetJobId() != 0 && runsOf(tag).finished.Load() >= 8 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("step two did not start: %v", r)
		}
		time.Sleep(5 * time.Millisecond)
	}
	old := c.index(l)
	c.kill(old)
	nl := c.leader()
	run := waitPipeline(t, c.client(c.index(nl)), id, 60*time.Second)
	if run.GetStatus() != api.PipelineRun_SUCCEEDED {
		t.Fatalf("run after failover: %v", run)
	}
	two, three := findStep(run, "two"), findStep(run, "three")
	if len(two.GetJobIds()) != 1 || two.GetAttempt() != 1 {
		t.Fatalf("step two made jobs %v in %d attempts; want one", two.GetJobIds(), two.GetAttempt())
	}
	if three.GetStartedMs() < two.GetFinishedMs() {
		t.Fatalf("step three started at %d, before two ended at %d", three.GetStartedMs(), two.GetFinishedMs())
	}
	// Every task of step two's job ran; the job was one job.
	log := runsOf(tag)
	log.mu.Lock()
	defer log.mu.Unlock()
	for i := 0; i < 40; i++ {
		if log.seen[fmt.Sprintf("%d/%d", two.GetJobIds()[0], i)] == 0 {
			t.Fatalf("task %d of step two never ran", i)
		}
	}
	jobs := 0
	nl.fsm.view(func(st *state) {
		st.jobs.Ascend(func(j *jobRec) bool {
			if j.PipelineRunID == id {
				jobs++
			}
			return true
		})
	})
	if jobs != 4 {
		t.Fatalf("%d jobs for 4 steps", jobs)
	}
}

// A failing step is retried, then fails for good; a step past its timeout
// has its job cancelled; the on-failure step runs; cancel stops a run.
func TestPipelineRetryTimeoutOnFailureAndCancel(t *testing.T) {
	c := newCluster(t, 1, nil)
	c.leader()
	c.addWorker(4)
	cl := c.client(0)
	tag := uniqueTag(t)
	bad := testStep(t, "bad", testConfig{Tasks: 1, Fail: []int{0}, Tag: tag})
	bad.Retry = &api.PipelineRetry{Attempts: 2, BackoffMs: 50}
	slow := testStep(t, "slow", testConfig{Tasks: 1, Block: true, Tag: tag})
	slow.TimeoutMs = 300
	def := &api.PipelineDef{Name: "fails", Steps: []*api.PipelineStep{bad, slow, testStep(t, "after-bad", testConfig{Tasks: 1, Tag: tag}, "bad")},
		OnFailure: []*api.PipelineStep{testStep(t, "cleanup", testConfig{Tasks: 1, Tag: tag})}}
	resp, err := cl.SubmitPipeline(context.Background(), &api.SubmitPipelineRequest{Pipeline: def})
	if err != nil {
		t.Fatal(err)
	}
	run := waitPipeline(t, cl, resp.GetRun().GetId(), 60*time.Second)
	if run.GetStatus() != api.PipelineRun_FAILED {
		t.Fatalf("run: %v", run)
	}
	b, s, a, cu := findStep(run, "bad"), findStep(run, "slow"), findStep(run, "after-bad"), findStep(run, "cleanup")
	if b.GetStatus() != api.PipelineStepState_FAILED || b.GetAttempt() != 2 || len(b.GetJobIds()) != 2 {
		t.Fatalf("bad: %v", b)
	}
	if s.GetStatus() != api.PipelineStepState_FAILED || !strings.Contains(s.GetError(), "timed out") {
		t.Fatalf("slow: %v", s)
	}
	if j := c.servers[0].fsm.Job(s.GetJobIds()[0]); j.Status != api.JobInfo_CANCELED {
		t.Fatalf("timed-out step's job: %v", j.Status)
	}
	if a.GetStatus() != api.PipelineStepState_SKIPPED || cu.GetStatus() != api.PipelineStepState_SUCCEEDED {
		t.Fatalf("after-bad %v, cleanup %v", a.GetStatus(), cu.GetStatus())
	}

	// Cancel a run whose step blocks: its job is cancelled.
	resp, err = cl.SubmitPipeline(context.Background(), &api.SubmitPipelineRequest{Pipeline: &api.PipelineDef{Name: "block",
		Steps: []*api.PipelineStep{testStep(t, "block", testConfig{Tasks: 1, Block: true, Tag: tag}), testStep(t, "next", testConfig{Tasks: 1, Tag: tag}, "block")}}})
	if err != nil {
		t.Fatal(err)
	}
	id := resp.GetRun().GetId()
	deadline := time.Now().Add(10 * time.Second)
	for findStep(c.servers[0].fsm.Pipeline(id), "block").GetJobId() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("step block did not submit its job")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := cl.CancelPipeline(context.Background(), &api.CancelPipelineRequest{Id: id}); err != nil {
		t.Fatal(err)
	}
	run = waitPipeline(t, cl, id, 10*time.Second)
	blk := findStep(run, "block")
	if run.GetStatus() != api.PipelineRun_CANCELED || c.servers[0].fsm.Job(blk.GetJobId()).Status != api.JobInfo_CANCELED {
		t.Fatalf("canceled run: %v", run)
	}
	// Listing: newest first, by status.
	ls, err := cl.ListPipelines(context.Background(), &api.ListPipelinesRequest{NewestFirst: true, Statuses: []api.PipelineRun_Status{api.PipelineRun_CANCELED}})
	if err != nil || len(ls.GetRuns()) != 1 || ls.GetRuns()[0].GetId() != id {
		t.Fatalf("ls canceled: %v %v", ls, err)
	}
}

// Bad definitions are refused at submit, naming the step; nothing is
// stored.
func TestPipelineSubmitRefusesBadInput(t *testing.T) {
	c := newCluster(t, 1, nil)
	c.leader()
	cl := c.client(0)
	ok := func(n string, after ...string) *api.PipelineStep {
		return &api.PipelineStep{Name: n, Plan: "test", ConfigJson: `{"tasks":1}`, After: after}
	}
	cases := []struct {
		name string
		def  *api.PipelineDef
		want string
	}{
		{"cycle", &api.PipelineDef{Name: "p", Steps: []*api.PipelineStep{ok("a", "c"), ok("b", "a"), ok("c", "b")}}, `step "a": dependency cycle`},
		{"unknown after", &api.PipelineDef{Name: "p", Steps: []*api.PipelineStep{ok("a"), ok("b", "nope")}}, `step "b": after "nope": no such step`},
		{"unknown plan", &api.PipelineDef{Name: "p", Steps: []*api.PipelineStep{ok("a"), {Name: "b", Plan: "lod", ConfigJson: "{}"}}}, `step "b": unknown plan "lod"`},
		{"bad template", &api.PipelineDef{Name: "p", Steps: []*api.PipelineStep{{Name: "t", Plan: "test", ConfigJson: `{"tag":"{{.date"}`}}}, `step "t": config.tag: bad template`},
		{"missing param", &api.PipelineDef{Name: "p", Params: []*api.PipelineParam{{Name: "date", Required: true}}, Steps: []*api.PipelineStep{ok("a")}}, `param "date" is required`},
		{"bad load config", &api.PipelineDef{Name: "p", Steps: []*api.PipelineStep{{Name: "w", Plan: "load", ConfigJson: `{"path":"/x","replicaton":2}`}}}, `step "w": load: config`},
	}
	for _, tc := range cases {
		_, err := cl.SubmitPipeline(context.Background(), &api.SubmitPipelineRequest{Pipeline: tc.def})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want InvalidArgument with %q", tc.name, err, tc.want)
		}
	}
	ls, err := cl.ListPipelines(context.Background(), &api.ListPipelinesRequest{})
	if err != nil || len(ls.GetRuns()) != 0 {
		t.Fatalf("runs after refused submits: %v %v", ls, err)
	}
	// Parameters are rendered once, at submit.
	resp, err := cl.SubmitPipeline(context.Background(), &api.SubmitPipelineRequest{
		Pipeline: &api.PipelineDef{Name: "p", Params: []*api.PipelineParam{{Name: "date", Required: true}, {Name: "n", DefaultValue: "x"}},
			Steps: []*api.PipelineStep{{Name: "a", Plan: "test", ConfigJson: `{"tasks":0,"tag":"t-{{.date}}-{{.n}}"}`}}},
		Params: map[string]string{"date": "2026-12-06"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetRun().GetSteps()[0].GetConfigJson(); !strings.Contains(got, `"tag":"t-2026-12-06-x"`) {
		t.Fatalf("rendered config %s", got)
	}
}

// A policy fires a pipeline on its cron spec: each run is a pipeline run
// with the policy as its trigger, once per scheduled time, across a leader
// failover; run-now returns the run; a bad definition is refused at add.
func TestPolicyFiresPipeline(t *testing.T) {
	c := newCluster(t, 3, nil)
	l := c.leader()
	c.addWorker(4)
	tag := uniqueTag(t)
	def := &api.PipelineDef{Name: "chain", Params: []*api.PipelineParam{{Name: "date", Required: true}}, Steps: []*api.PipelineStep{
		{Name: "a", Plan: "test", ConfigJson: `{"tasks":1,"tag":"` + tag + `-{{.date}}"}`},
		testStep(t, "b", testConfig{Tasks: 1, Tag: tag}, "a"),
	}}
	ctx := context.Background()
	cl := c.client(c.index(l))
	bad := &api.PipelineDef{Name: "bad", Steps: []*api.PipelineStep{testStep(t, "x", testConfig{}, "y"), testStep(t, "y", testConfig{}, "x")}}
	if _, err := cl.AddPolicy(ctx, &api.AddPolicyRequest{Policy: &api.PolicyInfo{Name: "bad", Cron: "@every 1s", Pipeline: bad}}); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `step "x": dependency cycle`) {
		t.Fatalf("bad pipeline policy: %v", err)
	}
	if _, err := cl.AddPolicy(ctx, &api.AddPolicyRequest{Policy: &api.PolicyInfo{Name: "chain", Cron: "@every 1s", Pipeline: def}}); err != nil {
		t.Fatal(err)
	}
	runsOfPolicy := func(cl api.JobMasterClient) []*api.PipelineRun {
		t.Helper()
		for {
			resp, err := cl.ListPipelines(ctx, &api.ListPipelinesRequest{Policy: "chain"})
			if status.Code(err) == codes.Unavailable {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			return resp.GetRuns()
		}
	}
	waitRuns := func(cl api.JobMasterClient, n int) []*api.PipelineRun {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			runs := runsOfPolicy(cl)
			done := 0
			for _, r := range runs {
				if r.GetStatus() == api.PipelineRun_SUCCEEDED {
					done++
				}
			}
			if done >= n {
				return runs
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d policy runs succeeded: %v", done, n, runs)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	before := len(waitRuns(cl, 2))
	c.kill(c.index(l))
	nl := c.leader()
	ncl := c.client(c.index(nl))
	runs := waitRuns(ncl, before+2)
	seen := map[int64]bool{}
	for _, r := range runs {
		tr := r.GetTrigger()
		if tr.GetKind() != api.PipelineTrigger_CRON || tr.GetPolicy() != "chain" || seen[tr.GetScheduledMs()] {
			t.Fatalf("run %d: trigger %v (a scheduled time twice?)", r.GetId(), tr)
		}
		seen[tr.GetScheduledMs()] = true
		want := `"tag":"` + tag + "-" + time.UnixMilli(tr.GetScheduledMs()).UTC().Format(time.DateOnly) + `"`
		if !strings.Contains(r.GetSteps()[0].GetConfigJson(), want) {
			t.Fatalf("run %d: step a's config %s, want the scheduled date in it", r.GetId(), r.GetSteps()[0].GetConfigJson())
		}
		for _, s := range r.GetSteps() {
			if r.GetStatus() == api.PipelineRun_SUCCEEDED && len(s.GetJobIds()) != 1 {
				t.Fatalf("run %d step %s: jobs %v", r.GetId(), s.GetName(), s.GetJobIds())
			}
		}
	}
	resp, err := ncl.RunPolicyNow(ctx, &api.RunPolicyNowRequest{Name: "chain"})
	if err != nil {
		t.Fatal(err)
	}
	run := waitPipeline(t, ncl, resp.GetPipelineRunId(), 30*time.Second)
	if run.GetTrigger().GetKind() != api.PipelineTrigger_RUN_NOW || run.GetStatus() != api.PipelineRun_SUCCEEDED || resp.GetJobId() != 0 {
		t.Fatalf("run-now: %v %v", resp, run)
	}
	ps, err := ncl.ListPolicies(ctx, &api.ListPoliciesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if p := ps.GetPolicies()[0]; p.GetLastPipelineId() == 0 || p.GetRuns() < int64(before+3) {
		t.Fatalf("policy after runs: %v", p)
	}
}
