package jobmaster

import (
	"errors"
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/alluvium/alluvium/api"
)

// The pipelines' replicated state. A run (api.PipelineRun) holds its steps
// with their status, attempt, the current attempt's job request id and the
// jobs of every attempt. The leader's pipeline runner (pipeline.go) records
// what it does about a step in a PIPELINE_STEP entry BEFORE it acts — START
// names the request id of the attempt's job, so a new leader submits that
// same job (SubmitJob is idempotent on it), never a second one — and the
// SUBMIT_JOB entry that creates the job records it on its step. Everything
// that follows from a step's end (dependents skipped, fail_fast, the
// on-failure steps, the run's end) is worked out here, in the apply, so
// every replica agrees on it.

var (
	errPipelineNotFound = errors.New("no such pipeline run")
)

// pipelineResult is what SUBMIT_PIPELINE returns.
type pipelineResult struct {
	id      int64
	existed bool
}

func (s *state) pipeline(id int64) *api.PipelineRun {
	r, _ := s.pipelines.Get(&api.PipelineRun{Id: id})
	return r
}

func pipelineCopy(r *api.PipelineRun) *api.PipelineRun { return proto.Clone(r).(*api.PipelineRun) }

func terminalRun(s api.PipelineRun_Status) bool {
	return s == api.PipelineRun_SUCCEEDED || s == api.PipelineRun_FAILED || s == api.PipelineRun_CANCELED
}

func terminalStep(s api.PipelineStepState_Status) bool {
	return s == api.PipelineStepState_SUCCEEDED || s == api.PipelineStepState_FAILED ||
		s == api.PipelineStepState_SKIPPED || s == api.PipelineStepState_CANCELED
}

func findStep(r *api.PipelineRun, name string) *api.PipelineStepState {
	for _, s := range r.GetSteps() {
		if s.GetName() == name {
			return s
		}
	}
	return nil
}

// pipelineRequestID is the request id of the job of a step's attempt: the
// run, the step and the attempt, so a retried submit of the same attempt
// (a new leader) finds the job, and another attempt makes a new one.
func pipelineRequestID(run int64, step string, attempt int32) string {
	return fmt.Sprintf("pipeline/%d/%s/%d", run, step, attempt)
}

// Runs are snapshot records of their own (snapshot.go).
var _ = registerSnapshotRecord(api.JobSnapshotRecordType_SNAPSHOT_PIPELINE,
	func(st *state, emit func(*api.PipelineRun) error) error {
		return ascendEmit(st.pipelines, func(r *api.PipelineRun) *api.PipelineRun { return r }, emit)
	},
	func(st *state, m *api.PipelineRun) { st.pipelines.ReplaceOrInsert(m) })

// putPipeline stores a changed run (settled) and tells the leader.
func (x *tx) putPipeline(r *api.PipelineRun) {
	x.settle(r)
	r.UpdatedMs = max(r.GetUpdatedMs(), x.now)
	x.s.pipelines.ReplaceOrInsert(r)
	if r.GetRequestId() != "" {
		x.s.pipelineByRequest[r.GetRequestId()] = r.GetId()
	}
	x.ev.pipelines = append(x.ev.pipelines, r.GetId())
}

var _ = registerCommand(api.JobCommandType_SUBMIT_PIPELINE, (*tx).applySubmitPipeline)

func (x *tx) applySubmitPipeline(c *api.SubmitPipelineCommand) any {
	x.now = c.GetNowMs()
	in := c.GetRun()
	if rid := in.GetRequestId(); rid != "" {
		if id, ok := x.s.pipelineByRequest[rid]; ok {
			x.policyPipelineSubmitted(in.GetTrigger().GetPolicy(), rid, id)
			return pipelineResult{id: id, existed: true}
		}
	}
	if len(in.GetSteps()) == 0 {
		return errors.New("submit pipeline: no steps")
	}
	r := pipelineCopy(in)
	r.Id = x.s.nextPipeline
	x.s.nextPipeline++
	r.Status = api.PipelineRun_RUNNING
	r.CreatedMs, r.UpdatedMs, r.FinishedMs, r.Error = x.now, x.now, 0, ""
	for _, s := range r.Steps {
		s.Status = api.PipelineStepState_PENDING
	}
	x.putPipeline(r)
	x.policyPipelineSubmitted(r.GetTrigger().GetPolicy(), r.GetRequestId(), r.GetId())
	return pipelineResult{id: r.GetId()}
}

var _ = registerCommand(api.JobCommandType_PIPELINE_STEP, (*tx).applyPipelineStep)

// applyPipelineStep records the leader's START or END of a step's attempt.
// A command about another attempt than the step's current one, or about a
// run or step that has ended, is stale and changes nothing: that makes a
// command replayed by a new leader harmless.
func (x *tx) applyPipelineStep(c *api.PipelineStepCommand) any {
	x.now = c.GetNowMs()
	old := x.s.pipeline(c.GetRunId())
	if old == nil || terminalRun(old.GetStatus()) {
		return fmt.Errorf("pipeline %d step %s: %w", c.GetRunId(), c.GetStep(), errStale)
	}
	r := pipelineCopy(old)
	s := findStep(r, c.GetStep())
	stale := func() any {
		return fmt.Errorf("pipeline %d step %s %s attempt %d: %w", r.GetId(), c.GetStep(), c.GetKind(), c.GetAttempt(), errStale)
	}
	if s == nil || terminalStep(s.GetStatus()) {
		return stale()
	}
	switch c.GetKind() {
	case api.PipelineStepCommand_START:
		waiting := s.GetStatus() == api.PipelineStepState_RUNNING && s.GetRetryAtMs() != 0
		if c.GetAttempt() != s.GetAttempt()+1 || c.GetRequestId() == "" ||
			(s.GetStatus() != api.PipelineStepState_PENDING && !waiting) {
			return stale()
		}
		if s.GetStatus() == api.PipelineStepState_PENDING {
			s.StartedMs = x.now
		}
		s.Status = api.PipelineStepState_RUNNING
		s.Attempt = c.GetAttempt()
		s.RequestId = c.GetRequestId()
		s.AttemptStartedMs = x.now
		s.DeadlineMs = c.GetDeadlineMs()
		s.RetryAtMs = 0
		s.JobId = 0
		// A job already made with this request id (never, unless a job
		// was submitted by hand with it) is the attempt's.
		if id, ok := x.s.byRequest[s.RequestId]; ok {
			s.JobId = id
			if !slices.Contains(s.JobIds, id) {
				s.JobIds = append(s.JobIds, id)
			}
		}
	case api.PipelineStepCommand_END:
		if c.GetAttempt() != s.GetAttempt() || s.GetStatus() != api.PipelineStepState_RUNNING || s.GetRetryAtMs() != 0 {
			return stale()
		}
		if c.GetCancelJob() {
			x.cancelStepJob(s, c.GetError())
		}
		s.Error = c.GetError()
		switch c.GetOutcome() {
		case api.PipelineStepState_SUCCEEDED:
			s.Status = api.PipelineStepState_SUCCEEDED
			s.Error = ""
			s.FinishedMs = x.now
		case api.PipelineStepState_RUNNING:
			if c.GetRetryAtMs() <= 0 {
				return stale()
			}
			s.RetryAtMs = c.GetRetryAtMs()
			s.DeadlineMs = 0
		default:
			s.Status = api.PipelineStepState_FAILED
			s.FinishedMs = x.now
		}
	default:
		return fmt.Errorf("pipeline %d: step command kind %d: %w", r.GetId(), c.GetKind(), errUnknownCommand)
	}
	x.putPipeline(r)
	return nil
}

// cancelStepJob cancels the job of s's current attempt, if it runs.
func (x *tx) cancelStepJob(s *api.PipelineStepState, reason string) {
	id := s.GetJobId()
	if id == 0 {
		return
	}
	if j := x.liveJob(id); j != nil {
		x.endJob(j, api.JobInfo_CANCELED, reason)
	}
}

// stepAwaitsJob reports whether the current attempt of a running step of a
// running run has request id rid and no job yet.
func (x *tx) stepAwaitsJob(runID int64, step, rid string) bool {
	r := x.s.pipeline(runID)
	if r == nil || terminalRun(r.GetStatus()) {
		return false
	}
	s := findStep(r, step)
	return s != nil && s.GetStatus() == api.PipelineStepState_RUNNING && s.GetRetryAtMs() == 0 &&
		s.GetRequestId() == rid && s.GetJobId() == 0
}

// pipelineJobSubmitted records a step attempt's job on its step: the
// SUBMIT_JOB entry that creates (or, retried, finds) the job does it in the
// same entry.
func (x *tx) pipelineJobSubmitted(runID int64, step, requestID string, jobID int64) {
	if runID == 0 || requestID == "" {
		return
	}
	old := x.s.pipeline(runID)
	if old == nil {
		return
	}
	s := findStep(old, step)
	if s == nil || s.GetRequestId() != requestID || s.GetJobId() == jobID {
		return
	}
	r := pipelineCopy(old)
	s = findStep(r, step)
	s.JobId = jobID
	if !slices.Contains(s.JobIds, jobID) {
		s.JobIds = append(s.JobIds, jobID)
	}
	x.putPipeline(r)
}

var _ = registerCommand(api.JobCommandType_CANCEL_PIPELINE, (*tx).applyCancelPipeline)

// applyCancelPipeline cancels a run: the jobs of its running steps are
// cancelled in the same entry, every step not ended is CANCELED.
func (x *tx) applyCancelPipeline(c *api.CancelPipelineCommand) any {
	x.now = c.GetNowMs()
	old := x.s.pipeline(c.GetRunId())
	if old == nil {
		return fmt.Errorf("pipeline cancel %d: %w", c.GetRunId(), errPipelineNotFound)
	}
	if terminalRun(old.GetStatus()) {
		return nil
	}
	reason := c.GetReason()
	if reason == "" {
		reason = "canceled"
	}
	r := pipelineCopy(old)
	for _, s := range r.Steps {
		x.cancelStep(s, reason)
	}
	r.Status = api.PipelineRun_CANCELED
	r.Error = reason
	r.FinishedMs = x.now
	x.putPipeline(r)
	return nil
}

// cancelStep ends a step that has not ended as CANCELED, cancelling its
// running job.
func (x *tx) cancelStep(s *api.PipelineStepState, reason string) {
	if terminalStep(s.GetStatus()) {
		return
	}
	if s.GetStatus() == api.PipelineStepState_RUNNING {
		x.cancelStepJob(s, "pipeline step canceled: "+reason)
	}
	s.Status = api.PipelineStepState_CANCELED
	s.Reason = reason
	s.RetryAtMs, s.DeadlineMs = 0, 0
	s.FinishedMs = x.now
}

var _ = registerCommand(api.JobCommandType_DELETE_PIPELINES, (*tx).applyDeletePipelines)

func (x *tx) applyDeletePipelines(c *api.DeletePipelinesCommand) any {
	for _, id := range c.GetRunIds() {
		r := x.s.pipeline(id)
		if r == nil || !terminalRun(r.GetStatus()) {
			continue
		}
		x.s.pipelines.Delete(r)
		if rid := r.GetRequestId(); rid != "" && x.s.pipelineByRequest[rid] == id {
			delete(x.s.pipelineByRequest, rid)
		}
	}
	return nil
}

// settle works out what follows from r's steps: steps whose inputs failed
// are SKIPPED, fail_fast stops the rest, the on-failure steps become due
// (or SKIPPED when nothing failed), and the run ends when every step has.
func (x *tx) settle(r *api.PipelineRun) {
	if terminalRun(r.GetStatus()) {
		return
	}
	byName := map[string]*api.PipelineStepState{}
	for _, s := range r.Steps {
		byName[s.GetName()] = s
	}
	var failed *api.PipelineStepState // the first main step that failed for good
	for _, s := range r.Steps {
		if !s.GetOnFailure() && s.GetStatus() == api.PipelineStepState_FAILED {
			failed = s
			break
		}
	}
	if failed != nil && r.GetFailFast() {
		for _, s := range r.Steps {
			if s.GetOnFailure() || terminalStep(s.GetStatus()) {
				continue
			}
			why := fmt.Sprintf("fail_fast: step %s failed", failed.GetName())
			if s.GetStatus() == api.PipelineStepState_PENDING {
				s.Status, s.Reason, s.FinishedMs = api.PipelineStepState_SKIPPED, why, x.now
				continue
			}
			x.cancelStep(s, why)
		}
	}
	// Skip steps whose inputs cannot succeed, to a fixed point (the steps
	// are few; the order makes the reasons name the nearest cause).
	for changed := true; changed; {
		changed = false
		for _, s := range r.Steps {
			if s.GetStatus() != api.PipelineStepState_PENDING {
				continue
			}
			for _, a := range s.GetAfter() {
				d := byName[a]
				if d == nil || (terminalStep(d.GetStatus()) && d.GetStatus() != api.PipelineStepState_SUCCEEDED) {
					s.Status = api.PipelineStepState_SKIPPED
					s.Reason = fmt.Sprintf("step %s %s", a, stepWord(d))
					s.FinishedMs = x.now
					changed = true
					break
				}
			}
		}
	}
	mainDone := true
	for _, s := range r.Steps {
		if !s.GetOnFailure() && !terminalStep(s.GetStatus()) {
			mainDone = false
		}
	}
	if mainDone && failed == nil {
		for _, s := range r.Steps {
			if s.GetOnFailure() && s.GetStatus() == api.PipelineStepState_PENDING {
				s.Status, s.Reason, s.FinishedMs = api.PipelineStepState_SKIPPED, "no step failed", x.now
			}
		}
	}
	for _, s := range r.Steps {
		if !terminalStep(s.GetStatus()) {
			return
		}
	}
	r.FinishedMs = x.now
	r.Status = api.PipelineRun_SUCCEEDED
	for _, s := range r.Steps {
		if !s.GetOnFailure() && s.GetStatus() != api.PipelineStepState_SUCCEEDED {
			r.Status = api.PipelineRun_FAILED
			if r.Error == "" {
				r.Error = fmt.Sprintf("step %s %s", s.GetName(), stepWord(s))
				if s.GetError() != "" {
					r.Error += ": " + s.GetError()
				} else if s.GetReason() != "" {
					r.Error += " (" + s.GetReason() + ")"
				}
			}
		}
	}
}

func stepWord(s *api.PipelineStepState) string {
	if s == nil {
		return "is unknown"
	}
	switch s.GetStatus() {
	case api.PipelineStepState_FAILED:
		return "failed"
	case api.PipelineStepState_SKIPPED:
		return "was skipped"
	case api.PipelineStepState_CANCELED:
		return "was canceled"
	}
	return s.GetStatus().String()
}

// readySteps returns the steps of a running run that may start now: PENDING
// with every step they come after SUCCEEDED (on-failure steps: once every
// main step ended and one failed), within the run's parallelism, in the
// order of the definition.
func readySteps(r *api.PipelineRun) []*api.PipelineStepState {
	if terminalRun(r.GetStatus()) {
		return nil
	}
	byName := map[string]*api.PipelineStepState{}
	running, mainDone, failed := 0, true, false
	for _, s := range r.GetSteps() {
		byName[s.GetName()] = s
		if s.GetStatus() == api.PipelineStepState_RUNNING {
			running++
		}
		if !s.GetOnFailure() {
			mainDone = mainDone && terminalStep(s.GetStatus())
			failed = failed || s.GetStatus() == api.PipelineStepState_FAILED
		}
	}
	var out []*api.PipelineStepState
	for _, s := range r.GetSteps() {
		if s.GetStatus() != api.PipelineStepState_PENDING {
			continue
		}
		if s.GetOnFailure() && (!mainDone || !failed) {
			continue
		}
		ok := true
		for _, a := range s.GetAfter() {
			if d := byName[a]; d == nil || d.GetStatus() != api.PipelineStepState_SUCCEEDED {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		if p := int(r.GetParallelism()); p > 0 && running+len(out) >= p {
			break
		}
		out = append(out, s)
	}
	return out
}

// Reads.

// Pipeline returns run id, or nil. Records are immutable.
func (f *FSM) Pipeline(id int64) *api.PipelineRun {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.pipeline(id)
}

func (f *FSM) pipelineByRequest(rid string) (int64, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	id, ok := f.st.pipelineByRequest[rid]
	return id, ok
}
