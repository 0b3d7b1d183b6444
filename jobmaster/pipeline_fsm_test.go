package jobmaster

import (
	"errors"
	"strings"
	"testing"

	"github.com/alluvium/alluvium/api"
)

// submitRun submits a run whose steps form a chain, each after the one
// before, each with two attempts.
func (ft *fsmT) submitRun(rid string, chain ...string) int64 {
	ft.t.Helper()
	run := &api.PipelineRun{Name: "p", RequestId: rid}
	for i, n := range chain {
		s := &api.PipelineStepState{Name: n, Plan: "load", ConfigJson: `{"path":"/a"}`, Retry: &api.PipelineRetry{Attempts: 2}}
		if i > 0 {
			s.After = []string{chain[i-1]}
		}
		run.Steps = append(run.Steps, s)
	}
	return ft.submitRunOf(run)
}

func (ft *fsmT) submitRunOf(run *api.PipelineRun) int64 {
	ft.t.Helper()
	r, ok := ft.apply(&api.SubmitPipelineCommand{Run: run, NowMs: 1000}).(pipelineResult)
	if !ok {
		ft.t.Fatal("submit pipeline: unexpected response")
	}
	return r.id
}

func (ft *fsmT) step(c *api.PipelineStepCommand) error {
	ft.t.Helper()
	err, _ := ft.apply(c).(error)
	return err
}

func (ft *fsmT) startStep(run int64, step string, attempt int32) {
	ft.t.Helper()
	if err := ft.step(&api.PipelineStepCommand{RunId: run, Step: step, Kind: api.PipelineStepCommand_START, Attempt: attempt, RequestId: pipelineRequestID(run, step, attempt), NowMs: 2000}); err != nil {
		ft.t.Fatalf("start %s/%d: %v", step, attempt, err)
	}
}

func (ft *fsmT) stepJob(run int64, step string, attempt int32) int64 {
	ft.t.Helper()
	r, ok := ft.apply(&api.SubmitJobCommand{Plan: "load", ConfigJson: `{"path":"/a"}`, RequestId: pipelineRequestID(run, step, attempt),
		PipelineRunId: run, PipelineStep: step, NowMs: 2000}).(submitResult)
	if !ok {
		ft.t.Fatalf("submit job of %s/%d refused", step, attempt)
	}
	return r.id
}

func stepOf(t *testing.T, f *FSM, run int64, name string) *api.PipelineStepState {
	t.Helper()
	s := findStep(f.Pipeline(run), name)
	if s == nil {
		t.Fatalf("no step %s", name)
	}
	return s
}

func TestFSMPipelineRunsStepsOnceAndRetries(t *testing.T) {
	ft := newFSMT(t)
	id := ft.submitRun("r1", "a", "b")
	if again := ft.submitRun("r1", "a", "b"); again != id {
		t.Fatalf("same request id made run %d, want %d", again, id)
	}
	run := ft.f.Pipeline(id)
	if run.GetStatus() != api.PipelineRun_RUNNING || len(readySteps(run)) != 1 || readySteps(run)[0].GetName() != "a" {
		t.Fatalf("new run: %v ready %v", run, readySteps(run))
	}
	// A job for a step that did not START is not made.
	if _, ok := ft.apply(&api.SubmitJobCommand{Plan: "load", ConfigJson: "{}", RequestId: pipelineRequestID(id, "b", 1), PipelineRunId: id, PipelineStep: "b"}).(error); !ok {
		t.Fatal("job of a step not started was made")
	}
	ft.startStep(id, "a", 1)
	// START again (a new leader replaying) is stale.
	if err := ft.step(&api.PipelineStepCommand{RunId: id, Step: "a", Kind: api.PipelineStepCommand_START, Attempt: 1, RequestId: "x"}); !errors.Is(err, errStale) {
		t.Fatalf("second START: %v", err)
	}
	j1 := ft.stepJob(id, "a", 1)
	if j2 := ft.stepJob(id, "a", 1); j2 != j1 {
		t.Fatalf("resubmitted attempt made job %d beside %d", j2, j1)
	}
	if s := stepOf(t, ft.f, id, "a"); s.GetJobId() != j1 || len(s.GetJobIds()) != 1 || ft.f.Job(j1).PipelineRunID != id {
		t.Fatalf("step a after its job: %v", s)
	}
	// Attempt 1 fails: a retry at 5000; then attempt 2 succeeds.
	if err := ft.step(&api.PipelineStepCommand{RunId: id, Step: "a", Kind: api.PipelineStepCommand_END, Attempt: 1, Outcome: api.PipelineStepState_RUNNING, RetryAtMs: 5000, Error: "boom"}); err != nil {
		t.Fatal(err)
	}
	if s := stepOf(t, ft.f, id, "a"); s.GetRetryAtMs() != 5000 || s.GetStatus() != api.PipelineStepState_RUNNING {
		t.Fatalf("waiting step: %v", s)
	}
	ft.startStep(id, "a", 2)
	j3 := ft.stepJob(id, "a", 2)
	if j3 == j1 {
		t.Fatal("attempt 2 reused attempt 1's job")
	}
	if err := ft.step(&api.PipelineStepCommand{RunId: id, Step: "a", Kind: api.PipelineStepCommand_END, Attempt: 1, Outcome: api.PipelineStepState_SUCCEEDED}); !errors.Is(err, errStale) {
		t.Fatalf("END of an old attempt: %v", err)
	}
	if err := ft.step(&api.PipelineStepCommand{RunId: id, Step: "a", Kind: api.PipelineStepCommand_END, Attempt: 2, Outcome: api.PipelineStepState_SUCCEEDED}); err != nil {
		t.Fatal(err)
	}
	if s := stepOf(t, ft.f, id, "a"); s.GetStatus() != api.PipelineStepState_SUCCEEDED || len(s.GetJobIds()) != 2 {
		t.Fatalf("step a: %v", s)
	}
	if r := readySteps(ft.f.Pipeline(id)); len(r) != 1 || r[0].GetName() != "b" {
		t.Fatalf("ready after a: %v", r)
	}
	ft.startStep(id, "b", 1)
	ft.stepJob(id, "b", 1)
	if err := ft.step(&api.PipelineStepCommand{RunId: id, Step: "b", Kind: api.PipelineStepCommand_END, Attempt: 1, Outcome: api.PipelineStepState_SUCCEEDED, NowMs: 9000}); err != nil {
		t.Fatal(err)
	}
	if r := ft.f.Pipeline(id); r.GetStatus() != api.PipelineRun_SUCCEEDED || r.GetFinishedMs() != 9000 {
		t.Fatalf("run: %v", r)
	}
}

func TestFSMPipelineFailureSkipsDependentsAndRunsOnFailure(t *testing.T) {
	ft := newFSMT(t)
	run := &api.PipelineRun{Name: "p", Steps: []*api.PipelineStepState{
		{Name: "a", Plan: "load", ConfigJson: "{}"},
		{Name: "b", Plan: "load", ConfigJson: "{}", After: []string{"a"}},
		{Name: "c", Plan: "load", ConfigJson: "{}", After: []string{"b"}},
		{Name: "side", Plan: "load", ConfigJson: "{}"},
		{Name: "cleanup", Plan: "load", ConfigJson: "{}", OnFailure: true},
	}}
	id := ft.submitRunOf(run)
	ft.startStep(id, "a", 1)
	ft.startStep(id, "side", 1)
	if err := ft.step(&api.PipelineStepCommand{RunId: id, Step: "a", Kind: api.PipelineStepCommand_END, Attempt: 1, Outcome: api.PipelineStepState_FAILED, Error: "no such path"}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"b", "c"} {
		if s := stepOf(t, ft.f, id, n); s.GetStatus() != api.PipelineStepState_SKIPPED || !strings.Contains(s.GetReason(), "failed") && !strings.Contains(s.GetReason(), "skipped") {
			t.Fatalf("step %s: %v", n, s)
		}
	}
	// The on-failure step waits for the independent branch.
	if r := readySteps(ft.f.Pipeline(id)); len(r) != 0 {
		t.Fatalf("ready while side runs: %v", r)
	}
	if err := ft.step(&api.PipelineStepCommand{RunId: id, Step: "side", Kind: api.PipelineStepCommand_END, Attempt: 1, Outcome: api.PipelineStepState_SUCCEEDED}); err != nil {
		t.Fatal(err)
	}
	if r := readySteps(ft.f.Pipeline(id)); len(r) != 1 || r[0].GetName() != "cleanup" {
		t.Fatalf("ready after the main steps: %v", r)
	}
	ft.startStep(id, "cleanup", 1)
	if err := ft.step(&api.PipelineStepCommand{RunId: id, Step: "cleanup", Kind: api.PipelineStepCommand_END, Attempt: 1, Outcome: api.PipelineStepState_SUCCEEDED}); err != nil {
		t.Fatal(err)
	}
	r := ft.f.Pipeline(id)
	if r.GetStatus() != api.PipelineRun_FAILED || !strings.Contains(r.GetError(), "step a failed: no such path") {
		t.Fatalf("run: %v %q", r.GetStatus(), r.GetError())
	}
}

func TestFSMPipelineCancelCancelsRunningJobs(t *testing.T) {
	ft := newFSMT(t)
	id := ft.submitRun("", "a", "b")
	ft.startStep(id, "a", 1)
	j := ft.stepJob(id, "a", 1)
	if err, _ := ft.apply(&api.CancelPipelineCommand{RunId: id, Reason: "by test", NowMs: 3000}).(error); err != nil {
		t.Fatal(err)
	}
	if got := ft.f.Job(j); got.Status != api.JobInfo_CANCELED {
		t.Fatalf("job of the running step: %v", got.Status)
	}
	r := ft.f.Pipeline(id)
	if r.GetStatus() != api.PipelineRun_CANCELED || stepOf(t, ft.f, id, "a").GetStatus() != api.PipelineStepState_CANCELED || stepOf(t, ft.f, id, "b").GetStatus() != api.PipelineStepState_CANCELED {
		t.Fatalf("canceled run: %v", r)
	}
	// Nothing moves a canceled run.
	if err := ft.step(&api.PipelineStepCommand{RunId: id, Step: "b", Kind: api.PipelineStepCommand_START, Attempt: 1, RequestId: "x"}); !errors.Is(err, errStale) {
		t.Fatalf("START in a canceled run: %v", err)
	}
	ft.apply(&api.DeletePipelinesCommand{RunIds: []int64{id}})
	if ft.f.Pipeline(id) != nil {
		t.Fatal("a finished run was not deleted")
	}
}

func TestFSMPipelineFailFastAndTimeoutCancel(t *testing.T) {
	ft := newFSMT(t)
	id := ft.submitRunOf(&api.PipelineRun{Name: "p", FailFast: true, Steps: []*api.PipelineStepState{
		{Name: "a", Plan: "load", ConfigJson: "{}"},
		{Name: "b", Plan: "load", ConfigJson: "{}"},
		{Name: "c", Plan: "load", ConfigJson: "{}", After: []string{"b"}},
	}})
	ft.startStep(id, "a", 1)
	ft.startStep(id, "b", 1)
	ja := ft.stepJob(id, "a", 1)
	jb := ft.stepJob(id, "b", 1)
	// a times out: its job is cancelled in the same entry; fail_fast
	// cancels b's job and skips c.
	if err := ft.step(&api.PipelineStepCommand{RunId: id, Step: "a", Kind: api.PipelineStepCommand_END, Attempt: 1, Outcome: api.PipelineStepState_FAILED, CancelJob: true, Error: "timed out"}); err != nil {
		t.Fatal(err)
	}
	if ft.f.Job(ja).Status != api.JobInfo_CANCELED || ft.f.Job(jb).Status != api.JobInfo_CANCELED {
		t.Fatalf("jobs: %v %v", ft.f.Job(ja).Status, ft.f.Job(jb).Status)
	}
	r := ft.f.Pipeline(id)
	if r.GetStatus() != api.PipelineRun_FAILED || stepOf(t, ft.f, id, "b").GetStatus() != api.PipelineStepState_CANCELED || stepOf(t, ft.f, id, "c").GetStatus() != api.PipelineStepState_SKIPPED {
		t.Fatalf("run after fail_fast: %v", r)
	}
}

func TestReadyStepsHonoursParallelism(t *testing.T) {
	r := &api.PipelineRun{Status: api.PipelineRun_RUNNING, Parallelism: 2, Steps: []*api.PipelineStepState{
		{Name: "a", Status: api.PipelineStepState_RUNNING},
		{Name: "b", Status: api.PipelineStepState_PENDING},
		{Name: "c", Status: api.PipelineStepState_PENDING},
	}}
	if got := readySteps(r); len(got) != 1 || got[0].GetName() != "b" {
		t.Fatalf("ready: %v", got)
	}
}
