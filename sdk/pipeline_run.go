package sdk

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// StepStatus is where a step of a pipeline run is, or how it ended.
type StepStatus int

// Step statuses. A step ends SUCCEEDED, FAILED (its last attempt failed
// and no retry is left; a job someone else cancelled counts as FAILED),
// SKIPPED (a step it depends on failed, or FailFast stopped the run before
// it started) or CANCELED (Run's context was cancelled, or FailFast stopped
// it, while it ran or before it started).
const (
	StepPending StepStatus = iota
	StepRunning
	StepSucceeded
	StepFailed
	StepSkipped
	StepCanceled
)

var stepStatusNames = [...]string{"PENDING", "RUNNING", "SUCCEEDED", "FAILED", "SKIPPED", "CANCELED"}

func (s StepStatus) String() string {
	if s >= 0 && int(s) < len(stepStatusNames) {
		return stepStatusNames[s]
	}
	return fmt.Sprintf("StepStatus(%d)", int(s))
}

// MarshalText writes the status's name, for JSON.
func (s StepStatus) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// EventKind says what an Event reports.
type EventKind int

// Event kinds.
const (
	EventAttempt      EventKind = iota + 1 // an attempt of the step starts (Attempt)
	EventJobSubmitted                      // the attempt's job was accepted (JobID)
	EventJobProgress                       // the job master reported the job's state (Job)
	EventRetry                             // the attempt failed (Err); the next starts after Backoff
	EventDone                              // the step ended (Status, Err or Reason)
)

var eventKindNames = [...]string{"", "attempt", "submitted", "progress", "retry", "done"}

func (k EventKind) String() string {
	if k > 0 && int(k) < len(eventKindNames) {
		return eventKindNames[k]
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is something that happened to a step, for OnEvent.
type Event struct {
	Time     time.Time
	Pipeline string
	Step     string
	Kind     EventKind
	Attempt  int
	JobID    int64
	Job      *JobInfo // EventJobProgress, and EventDone of a job step
	Status   StepStatus
	Err      error
	Reason   string // EventDone of a step that did not run
	Backoff  time.Duration
}

// jobRunner is what a pipeline needs of the job service; *Jobs is one.
type jobRunner interface {
	Submit(ctx context.Context, plan string, config any, opts ...SubmitOption) (int64, error)
	Wait(ctx context.Context, id int64, progress func(*JobInfo)) (*JobInfo, error)
	Cancel(ctx context.Context, id int64) error
}

// Run runs the pipeline against the cluster c is connected to (c may be
// nil when every step is a Go function) and returns when every step has
// ended. The report has one result per step, in the order they were added;
// the error is nil when every step SUCCEEDED, a *PipelineError otherwise
// (errors.Is(err, context.Canceled) after a cancel), or ErrInvalidPipeline
// before anything ran.
func (p *Pipeline) Run(ctx context.Context, c *Client) (*Report, error) {
	if c == nil {
		return p.run(ctx, nil)
	}
	j, err := c.Jobs()
	if err != nil {
		if p.hasJobSteps() {
			return nil, err
		}
		return p.run(ctx, nil)
	}
	return p.run(ctx, j)
}

func (p *Pipeline) hasJobSteps() bool {
	for _, s := range p.steps {
		if s.fn == nil {
			return true
		}
	}
	return false
}

// run is one execution of a pipeline.
type run struct {
	p    *Pipeline
	g    *graph
	jobs jobRunner
	id   string // prefix of the request ids of its jobs

	eventMu sync.Mutex
	mu      sync.Mutex
	ended   map[string]StepResult // for Upstream
}

type runKey struct{}

// Upstream returns the result of step name of the pipeline run that ctx (a
// step's context) belongs to, once that step has ended; ok is false before
// that or outside a pipeline. A step sees all of its dependencies.
func Upstream(ctx context.Context, name string) (res StepResult, ok bool) {
	r, _ := ctx.Value(runKey{}).(*run)
	if r == nil {
		return StepResult{}, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	res, ok = r.ended[name]
	return res, ok
}

func (p *Pipeline) run(ctx context.Context, jobs jobRunner) (*Report, error) {
	g, err := p.plan()
	if err != nil {
		return nil, err
	}
	if jobs == nil {
		for _, s := range p.steps {
			if s.fn == nil {
				return nil, p.invalidf("step %q is a job step: Run needs a client", s.name)
			}
		}
	}
	r := &run{p: p, g: g, jobs: jobs, id: runID(p.name), ended: map[string]StepResult{}}
	rep := &Report{Pipeline: p.name, Started: time.Now(), Steps: make([]StepResult, len(p.steps))}
	for i, s := range p.steps {
		rep.Steps[i] = StepResult{Name: s.name, Kind: s.kind(), Status: StepPending}
		if s.job != nil {
			rep.Steps[i].Plan = s.job.Plan
		}
	}

	runCtx, stop := context.WithCancelCause(context.WithValue(ctx, runKey{}, r))
	defer stop(nil)
	type ended struct {
		i   int
		res StepResult
	}
	endedCh := make(chan ended)
	waiting := make([]int, len(p.steps))
	var ready []int // step indexes, kept sorted: steps start in the order they were added
	for i := range p.steps {
		if waiting[i] = len(g.deps[i]); waiting[i] == 0 {
			ready = append(ready, i)
		}
	}
	running := 0
	failedFast := "" // the step whose failure stopped the run (FailFast)
	launch := func() {
		for len(ready) > 0 && runCtx.Err() == nil && (p.parallelism == 0 || running < p.parallelism) {
			i := ready[0]
			ready = ready[1:]
			rep.Steps[i].Status = StepRunning
			running++
			go func() { endedCh <- ended{i, r.runStep(runCtx, i)} }()
		}
	}
	launch()
	for running > 0 {
		e := <-endedCh
		running--
		rep.Steps[e.i] = e.res
		r.mu.Lock()
		r.ended[e.res.Name] = e.res
		r.mu.Unlock()
		switch e.res.Status {
		case StepSucceeded:
			for _, k := range g.dependents[e.i] {
				if waiting[k]--; waiting[k] == 0 && rep.Steps[k].Status == StepPending {
					ready = append(ready, k)
					slices.Sort(ready)
				}
			}
		case StepFailed:
			r.skipDependents(rep, e.i)
			if p.failFast && failedFast == "" {
				failedFast = e.res.Name
				stop(fmt.Errorf("pipeline %q stopped: step %q failed (FailFast)", p.name, e.res.Name))
			}
		}
		launch()
	}
	// What never started: the context was cancelled, or FailFast stopped it.
	for i := range rep.Steps {
		st := &rep.Steps[i]
		if st.Status != StepPending {
			continue
		}
		if ctx.Err() != nil {
			st.Status, st.Reason = StepCanceled, fmt.Sprintf("not started: pipeline canceled (%v)", context.Cause(ctx))
		} else {
			st.Status, st.Reason = StepSkipped, fmt.Sprintf("not started: step %q failed (FailFast)", failedFast)
		}
		r.emit(Event{Step: st.Name, Kind: EventDone, Status: st.Status, Reason: st.Reason})
	}
	rep.Finished = time.Now()
	if ctx.Err() != nil && !rep.OK() {
		rep.canceled = context.Cause(ctx)
	}
	return rep, rep.Err()
}

// skipDependents marks every step that (transitively) depends on step i,
// and has not started, SKIPPED, naming step i and its error.
func (r *run) skipDependents(rep *Report, i int) {
	failed := rep.Steps[i]
	why := fmt.Sprintf("%q failed", failed.Name)
	if failed.Err != nil {
		why += ": " + oneLine(failed.Err.Error())
	}
	type item struct{ k, via int }
	queue := []item{}
	for _, k := range r.g.dependents[i] {
		queue = append(queue, item{k, i})
	}
	for len(queue) > 0 {
		it := queue[0]
		queue = queue[1:]
		st := &rep.Steps[it.k]
		if st.Status != StepPending {
			continue
		}
		st.Status = StepSkipped
		if it.via == i {
			st.Reason = "dependency " + why
		} else {
			st.Reason = fmt.Sprintf("dependency %q skipped: step %s", rep.Steps[it.via].Name, why)
		}
		r.emit(Event{Step: st.Name, Kind: EventDone, Status: st.Status, Reason: st.Reason})
		for _, k := range r.g.dependents[it.k] {
			queue = append(queue, item{k, it.k})
		}
	}
}

func (r *run) emit(e Event) {
	if r.p.onEvent == nil {
		return
	}
	e.Time = time.Now()
	e.Pipeline = r.p.name
	r.eventMu.Lock()
	defer r.eventMu.Unlock()
	r.p.onEvent(e)
}

// runStep runs every attempt of step i.
func (r *run) runStep(ctx context.Context, i int) StepResult {
	s := r.p.steps[i]
	pol := r.p.retry
	if s.retry != nil {
		pol = *s.retry
	}
	res := StepResult{Name: s.name, Kind: s.kind(), Status: StepRunning, Started: time.Now()}
	if s.job != nil {
		res.Plan = s.job.Plan
	}
	for attempt := 1; ; attempt++ {
		res.Attempts = attempt
		r.emit(Event{Step: s.name, Kind: EventAttempt, Attempt: attempt})
		err := r.attempt(ctx, s, attempt, &res)
		if err == nil {
			res.Status, res.Err = StepSucceeded, nil
			break
		}
		res.Err = err
		if ctx.Err() != nil {
			res.Status = StepCanceled
			if cause := context.Cause(ctx); cause != ctx.Err() && !errors.Is(err, cause) {
				res.Err = fmt.Errorf("%w: %w", cause, err) // say why (FailFast)
			}
			break
		}
		if attempt >= pol.attempts() || !pol.retryable(err) {
			res.Status = StepFailed
			break
		}
		wait := pol.Delay(attempt)
		r.emit(Event{Step: s.name, Kind: EventRetry, Attempt: attempt, Err: err, Backoff: wait})
		t := time.NewTimer(wait)
		select {
		case <-t.C:
			continue
		case <-ctx.Done():
			t.Stop()
		}
		res.Status = StepCanceled
		res.Err = fmt.Errorf("canceled while waiting to retry after attempt %d failed (%v): %w", attempt, oneLine(err.Error()), context.Cause(ctx))
		break
	}
	res.Finished = time.Now()
	res.Duration = res.Finished.Sub(res.Started)
	r.emit(Event{Step: s.name, Kind: EventDone, Attempt: res.Attempts, Status: res.Status, Err: res.Err, Job: res.Job})
	return res
}

// attempt runs one try of s.
func (r *run) attempt(ctx context.Context, s *step, attempt int, res *StepResult) error {
	if err := ctx.Err(); err != nil {
		return context.Cause(ctx)
	}
	actx := ctx
	if s.timeout > 0 {
		var cancel context.CancelFunc
		actx, cancel = context.WithTimeout(ctx, s.timeout)
		defer cancel()
	}
	timedOut := func() bool { return ctx.Err() == nil && actx.Err() != nil }
	if s.fn != nil {
		err := protect(s.name, func() error { return s.fn(actx) })
		if err != nil && timedOut() {
			err = fmt.Errorf("attempt timed out after %s (StepTimeout): %w", s.timeout, err)
		}
		return err
	}
	spec := JobSpec{}
	if s.job != nil {
		spec = *s.job
	} else {
		err := protect(s.name, func() (err error) { spec, err = s.jobFn(actx); return err })
		if err != nil {
			return err
		}
		if spec.Plan == "" {
			return Permanent(fmt.Errorf("step %q: its JobFunc returned a spec without a plan", s.name))
		}
		res.Plan, res.Kind = spec.Plan, "job "+spec.Plan
	}
	return r.jobAttempt(ctx, actx, s, spec, attempt, res, timedOut)
}

// jobAttempt submits spec and waits for the job. ctx is the step's
// context, actx the attempt's (with StepTimeout). When either ends first
// the job is cancelled on the job master, so no job outlives its step.
func (r *run) jobAttempt(ctx, actx context.Context, s *step, spec JobSpec, attempt int, res *StepResult, timedOut func() bool) error {
	rid := fmt.Sprintf("%s/%s/%d", r.id, truncate(s.name, 160), attempt)
	id, err := r.jobs.Submit(actx, spec.Plan, spec.Config, WithRequestID(rid))
	if err != nil {
		if actx.Err() == nil {
			return err
		}
		// Cut off mid-submit: the job may exist. The same request id finds
		// it (or makes it) so that it can be cancelled.
		gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.p.cancelGrace)
		defer cancel()
		if id, err2 := r.jobs.Submit(gctx, spec.Plan, spec.Config, WithRequestID(rid)); err2 == nil {
			res.JobIDs = append(res.JobIDs, id)
			if final, _ := r.cancelJob(ctx, id); final != nil {
				res.Job = final
			}
		}
		if timedOut() {
			return fmt.Errorf("job submit %s: timed out after %s (StepTimeout): %w", spec.Plan, s.timeout, err)
		}
		return err
	}
	res.JobIDs = append(res.JobIDs, id)
	r.emit(Event{Step: s.name, Kind: EventJobSubmitted, Attempt: attempt, JobID: id})
	info, err := r.jobs.Wait(actx, id, func(info *JobInfo) {
		res.Job = info
		if s.progress != nil {
			s.progress(info)
		}
		r.emit(Event{Step: s.name, Kind: EventJobProgress, Attempt: attempt, JobID: id, Job: info})
	})
	if info != nil {
		res.Job = info
	}
	if err == nil {
		return nil
	}
	var je *JobError
	if errors.As(err, &je) {
		if errors.Is(err, ErrJobCanceled) && ctx.Err() == nil {
			return fmt.Errorf("%w (canceled outside the pipeline)", err)
		}
		return err // the job ended FAILED
	}
	// We stopped waiting (cancel, timeout) or lost the job master: stop
	// the job too, so a retry never runs beside it.
	final, cerr := r.cancelJob(ctx, id)
	if final != nil {
		res.Job = final
	}
	switch {
	case final != nil && final.GetStatus() == JobCompleted:
		return nil // it finished before the cancel landed
	case timedOut():
		return fmt.Errorf("job %d (%s): still running after %s (StepTimeout), canceled: %w", id, spec.Plan, s.timeout, context.DeadlineExceeded)
	case ctx.Err() != nil && final != nil && IsTerminal(final.GetStatus()):
		return &JobError{Job: final, kind: kindOfJob(final)}
	case ctx.Err() != nil:
		return fmt.Errorf("job %d (%s): cancel requested, end not confirmed within %s: %w", id, spec.Plan, r.p.cancelGrace, errors.Join(cerr, context.Cause(ctx)))
	}
	return err
}

func kindOfJob(j *JobInfo) error {
	if j.GetStatus() == JobCanceled {
		return ErrJobCanceled
	}
	return ErrJobFailed
}

// cancelJob cancels job id and waits (at most CancelGrace, even when ctx
// is done) for its final state.
func (r *run) cancelJob(ctx context.Context, id int64) (*JobInfo, error) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.p.cancelGrace)
	defer cancel()
	cerr := r.jobs.Cancel(cctx, id)
	final, werr := r.jobs.Wait(cctx, id, nil)
	if final != nil && IsTerminal(final.GetStatus()) {
		return final, nil
	}
	return final, errors.Join(cerr, werr)
}

// protect runs f, turning a panic into a permanent error: a bug in one
// step must not take down a long-running scheduler.
func protect(step string, f func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = Permanent(fmt.Errorf("step %q panicked: %v", step, v))
		}
	}()
	return f()
}

// runID names one run of a pipeline: its name (at most 40 bytes, no '/')
// and 16 random hex digits. A step's jobs carry request ids
// RUN/STEP/ATTEMPT, so the web console finds a run's jobs by their ids.
func runID(name string) string {
	name = strings.ReplaceAll(truncate(name, 40), "/", "_")
	if name == "" {
		name = "pipeline"
	}
	return name + "." + NewRequestID()[:16]
}

// truncate cuts s to at most n bytes, at a rune boundary (request ids
// travel as protobuf strings, which must be valid UTF-8).
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
