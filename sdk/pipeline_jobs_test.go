package sdk

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alluvium/alluvium/api"
)

// fakeJobs is an in-memory job service for the pipeline's job steps. The
// end-to-end proof is tests/pipeline against `alluvium local`; this one
// covers the edges (timeouts, cancels mid-submit) quickly.
type fakeJobs struct {
	mu      sync.Mutex
	next    int64
	jobs    map[int64]*fakeJob
	byReq   map[string]int64
	outcome func(n int, plan string) (JobStatus, time.Duration) // n-th submit of plan (1-based); d < 0: runs until cancelled
	counts  map[string]int
	submits []string // request ids
	cancels []int64
	// deaf: a cancel is taken but the job never ends (a job master that
	// cannot reach the workers).
	deaf bool
}

type fakeJob struct {
	info *JobInfo
	done chan struct{}
}

func newFakeJobs(outcome func(n int, plan string) (JobStatus, time.Duration)) *fakeJobs {
	return &fakeJobs{jobs: map[int64]*fakeJob{}, byReq: map[string]int64{}, counts: map[string]int{}, outcome: outcome}
}

func (f *fakeJobs) Submit(ctx context.Context, plan string, config any, opts ...SubmitOption) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, wrapErr("job submit", plan, err)
	}
	req := &api.SubmitJobRequest{}
	for _, o := range opts {
		o(req)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.submits = append(f.submits, req.RequestId)
	if id, ok := f.byReq[req.RequestId]; ok {
		return id, nil
	}
	if plan == "nosuch" {
		return 0, &Error{Op: "job submit", Path: plan, Message: `unknown plan "nosuch"`, kind: ErrInvalidArgument}
	}
	f.next++
	id := f.next
	f.counts[plan]++
	st, d := f.outcome(f.counts[plan], plan)
	j := &fakeJob{info: &JobInfo{Id: id, Plan: plan, Status: JobRunning, TasksTotal: 2, BytesTotal: 100}, done: make(chan struct{})}
	f.jobs[id] = j
	f.byReq[req.RequestId] = id
	if d >= 0 {
		time.AfterFunc(d, func() { f.finish(id, st, "task failed: /x: boom") })
	}
	return id, nil
}

func (f *fakeJobs) finish(id int64, st JobStatus, msg string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	j := f.jobs[id]
	if IsTerminal(j.info.Status) {
		return
	}
	info := &JobInfo{Id: id, Plan: j.info.Plan, Status: st, TasksTotal: 2, BytesTotal: 100}
	switch st {
	case JobCompleted:
		info.TasksDone, info.BytesDone = 2, 100
	case JobFailed:
		info.TasksDone, info.TasksFailed, info.BytesDone, info.Error = 1, 1, 50, msg
	}
	j.info = info
	close(j.done)
}

func (f *fakeJobs) Wait(ctx context.Context, id int64, progress func(*JobInfo)) (*JobInfo, error) {
	f.mu.Lock()
	j := f.jobs[id]
	info := j.info
	f.mu.Unlock()
	if progress != nil {
		progress(info)
	}
	select {
	case <-j.done:
	case <-ctx.Done():
		return info, wrapErr("job watch", "", ctx.Err())
	}
	f.mu.Lock()
	info = j.info
	f.mu.Unlock()
	if progress != nil {
		progress(info)
	}
	switch info.Status {
	case JobCompleted:
		return info, nil
	case JobCanceled:
		return info, &JobError{Job: info, kind: ErrJobCanceled}
	default:
		return info, &JobError{Job: info, kind: ErrJobFailed}
	}
}

func (f *fakeJobs) Cancel(ctx context.Context, id int64) error {
	f.mu.Lock()
	f.cancels = append(f.cancels, id)
	deaf := f.deaf
	f.mu.Unlock()
	if !deaf {
		f.finish(id, JobCanceled, "")
	}
	return nil
}

func (f *fakeJobs) status(id int64) JobStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.jobs[id].info.Status
}

// A job step whose job fails twice then completes: three jobs, three
// request ids, the last state in the report.
func TestPipelineJobStepRetries(t *testing.T) {
	fj := newFakeJobs(func(n int, plan string) (JobStatus, time.Duration) {
		if plan == "copy" && n <= 2 {
			return JobFailed, 5 * time.Millisecond
		}
		return JobCompleted, 5 * time.Millisecond
	})
	var progress []JobStatus
	p := NewPipeline("jobs", DefaultRetry(RetryPolicy{Attempts: 3, Backoff: time.Millisecond}))
	p.Job("warm", JobSpec{Plan: "load", Config: LoadConfig{Path: "/in"}})
	p.Job("copy", JobSpec{Plan: "copy", Config: map[string]any{"src": "/in", "dst": "/out"}}, After("warm"),
		OnJobProgress(func(j *JobInfo) { progress = append(progress, j.GetStatus()) }))
	p.JobFunc("persist", func(ctx context.Context) (JobSpec, error) {
		up, ok := Upstream(ctx, "copy")
		if !ok || len(up.JobIDs) != 3 {
			return JobSpec{}, Permanent(errors.New("copy's result not visible"))
		}
		return JobSpec{Plan: "persist", Config: map[string]any{"path": "/out"}}, nil
	}, After("copy"))
	rep, err := p.run(context.Background(), fj)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, rep)
	}
	cp := mustStatus(t, rep, "copy", StepSucceeded)
	if cp.Attempts != 3 || len(cp.JobIDs) != 3 || cp.Job.GetStatus() != JobCompleted || cp.Job.GetId() != cp.JobIDs[2] {
		t.Fatalf("copy: %+v", cp)
	}
	if progress[0] != JobRunning || progress[len(progress)-1] != JobCompleted {
		t.Errorf("progress %v", progress)
	}
	ps := mustStatus(t, rep, "persist", StepSucceeded)
	if ps.Kind != "job persist" || ps.Plan != "persist" {
		t.Errorf("persist: kind %q plan %q", ps.Kind, ps.Plan)
	}
	seen := map[string]bool{}
	for _, rid := range fj.submits {
		if seen[rid] {
			t.Errorf("request id %s used twice", rid)
		}
		seen[rid] = true
	}
	if len(fj.submits) != 5 || !strings.HasSuffix(fj.submits[3], "/copy/3") {
		t.Errorf("request ids %v", fj.submits)
	}
	if !strings.Contains(rep.String(), "50.0 B") && !strings.Contains(rep.String(), "100 B") {
		t.Errorf("bytes missing from table:\n%s", rep)
	}
}

// A job that keeps failing fails the step with the job's error; a job
// someone else cancels is not retried; a bad plan fails at submit.
func TestPipelineJobStepFailures(t *testing.T) {
	var external int64
	fj := newFakeJobs(func(n int, plan string) (JobStatus, time.Duration) {
		if plan == "external" {
			return 0, -1
		}
		return JobFailed, time.Millisecond
	})
	p := NewPipeline("fails", DefaultRetry(RetryPolicy{Attempts: 2, Backoff: time.Millisecond}))
	p.Job("copy", JobSpec{Plan: "copy", Config: "{}"})
	p.Job("after-copy", JobSpec{Plan: "persist", Config: "{}"}, After("copy"))
	p.Job("bad", JobSpec{Plan: "nosuch", Config: "{}"})
	p.Job("external", JobSpec{Plan: "external", Config: "{}"}, OnJobProgress(func(j *JobInfo) {
		if j.GetStatus() == JobRunning && external == 0 {
			external = j.GetId()
			go fj.Cancel(context.Background(), j.GetId()) // someone runs `alluvium job cancel`
		}
	}))
	rep, err := p.run(context.Background(), fj)
	if !errors.Is(err, ErrJobFailed) || !errors.Is(err, ErrInvalidArgument) || !errors.Is(err, ErrJobCanceled) {
		t.Fatalf("run: %v", err)
	}
	t.Logf("%v\n%s", err, rep)
	cp := mustStatus(t, rep, "copy", StepFailed)
	if cp.Attempts != 2 || len(cp.JobIDs) != 2 || !strings.Contains(cp.Err.Error(), "FAILED: task failed: /x: boom") {
		t.Errorf("copy: %+v", cp)
	}
	if s := mustStatus(t, rep, "after-copy", StepSkipped); !strings.HasPrefix(s.Reason, `dependency "copy" failed: job `) ||
		!strings.HasSuffix(s.Reason, ` (copy) FAILED: task failed: /x: boom`) {
		t.Errorf("after-copy: %q", s.Reason)
	}
	if s := mustStatus(t, rep, "bad", StepFailed); s.Attempts != 1 || len(s.JobIDs) != 0 {
		t.Errorf("bad plan: %+v", s)
	}
	if s := mustStatus(t, rep, "external", StepFailed); s.Attempts != 1 || !errors.Is(s.Err, ErrJobCanceled) {
		t.Errorf("externally cancelled job: %+v", s)
	}
}

// Cancelling the context cancels the running job on the job master and
// waits for it to end CANCELED.
func TestPipelineJobStepCancel(t *testing.T) {
	fj := newFakeJobs(func(n int, plan string) (JobStatus, time.Duration) { return 0, -1 })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := NewPipeline("cancel", DefaultRetry(RetryPolicy{Attempts: 3}))
	p.Job("slow", JobSpec{Plan: "load", Config: "{}"}, OnJobProgress(func(j *JobInfo) {
		if j.GetStatus() == JobRunning {
			cancel()
		}
	}))
	p.Job("then", JobSpec{Plan: "persist", Config: "{}"}, After("slow"))
	rep, err := p.run(ctx, fj)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("run: %v", err)
	}
	s := mustStatus(t, rep, "slow", StepCanceled)
	if len(s.JobIDs) != 1 || fj.status(s.JobIDs[0]) != JobCanceled || len(fj.cancels) != 1 || fj.cancels[0] != s.JobIDs[0] {
		t.Fatalf("slow: %+v; cancels %v", s, fj.cancels)
	}
	if s.Job.GetStatus() != JobCanceled || !errors.Is(s.Err, ErrJobCanceled) || s.Attempts != 1 {
		t.Errorf("slow: job %v err %v attempts %d", s.Job, s.Err, s.Attempts)
	}
	mustStatus(t, rep, "then", StepCanceled)
}

// A job still running at its StepTimeout is cancelled and the step retried.
func TestPipelineJobStepTimeout(t *testing.T) {
	fj := newFakeJobs(func(n int, plan string) (JobStatus, time.Duration) {
		if n == 1 {
			return 0, -1 // hangs
		}
		return JobCompleted, time.Millisecond
	})
	var retryErr error
	p := NewPipeline("timeout", OnEvent(func(e Event) {
		if e.Kind == EventRetry {
			retryErr = e.Err
		}
	}))
	p.Job("load", JobSpec{Plan: "load", Config: "{}"}, StepTimeout(30*time.Millisecond), Retry(RetryPolicy{Attempts: 2, Backoff: time.Millisecond}))
	rep, err := p.run(context.Background(), fj)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, rep)
	}
	s := mustStatus(t, rep, "load", StepSucceeded)
	if s.Attempts != 2 || len(s.JobIDs) != 2 || fj.status(s.JobIDs[0]) != JobCanceled {
		t.Fatalf("load: %+v", s)
	}
	if !errors.Is(retryErr, context.DeadlineExceeded) || !strings.Contains(retryErr.Error(), "still running after 30ms (StepTimeout), canceled") {
		t.Errorf("first attempt's error: %v", retryErr)
	}
}

// Cut off mid-submit, the step finds its job by request id and cancels it.
func TestPipelineCancelMidSubmit(t *testing.T) {
	fj := newFakeJobs(func(n int, plan string) (JobStatus, time.Duration) { return 0, -1 })
	slow := &slowSubmit{fakeJobs: fj, delay: 50 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	rep, err := NewPipeline("mid").Job("j", JobSpec{Plan: "load", Config: "{}"}).run(ctx, slow)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("run: %v", err)
	}
	s := mustStatus(t, rep, "j", StepCanceled)
	if len(s.JobIDs) != 1 || fj.status(s.JobIDs[0]) != JobCanceled {
		t.Fatalf("j: %+v, cancels %v", s, fj.cancels)
	}
}

// slowSubmit makes the job exist on the server but the answer arrive
// after the caller's deadline.
type slowSubmit struct {
	*fakeJobs
	delay time.Duration
}

func (s *slowSubmit) Submit(ctx context.Context, plan string, config any, opts ...SubmitOption) (int64, error) {
	id, err := s.fakeJobs.Submit(context.Background(), plan, config, opts...)
	select {
	case <-time.After(s.delay):
		return id, err
	case <-ctx.Done():
		return 0, wrapErr("job submit", plan, ctx.Err())
	}
}

// CancelGrace bounds how long a cancelled step waits for its job to end:
// a job master that never confirms the cancel costs that long, not the
// default 30 s; a grace <= 0 is refused.
func TestPipelineCancelGrace(t *testing.T) {
	fj := newFakeJobs(func(n int, plan string) (JobStatus, time.Duration) { return 0, -1 })
	fj.deaf = true
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := NewPipeline("grace", CancelGrace(100*time.Millisecond))
	p.Job("stuck", JobSpec{Plan: "load", Config: "{}"}, OnJobProgress(func(j *JobInfo) {
		if j.GetStatus() == JobRunning {
			cancel()
		}
	}))
	done := make(chan *Report, 1)
	go func() { rep, _ := p.run(ctx, fj); done <- rep }()
	select {
	case rep := <-done:
		s := mustStatus(t, rep, "stuck", StepCanceled)
		if s.Err == nil || !strings.Contains(s.Err.Error(), "end not confirmed within 100ms") {
			t.Fatalf("stuck: %v, want the cancel unconfirmed within the 100ms grace", s.Err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the step waited past its CancelGrace")
	}
	if len(fj.cancels) != 1 {
		t.Fatalf("cancels %v, want one", fj.cancels)
	}
	bad := NewPipeline("bad", CancelGrace(0))
	bad.Job("x", JobSpec{Plan: "load", Config: "{}"})
	if _, err := bad.run(context.Background(), fj); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "CancelGrace(0s)") {
		t.Fatalf("CancelGrace(0): %v, want an invalid-argument error naming it", err)
	}
}
