package jobmaster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/pipespec"
	"github.com/alluvium/alluvium/plans"
)

// The pipeline runner is a leader loop (as Nomad's leader.go loops): it
// drives every RUNNING pipeline run from the FSM's state alone, so a new
// leader picks up where the old one stopped. For each run it
//
//   - starts the steps that are ready (readySteps): a START entry with the
//     attempt's job request id, then the job's submit with that id;
//   - submits the job of a START whose job does not exist yet (a leader
//     died between the two): the same request id, so never a second job;
//   - ends a step whose job ended (END: succeeded, failed, or a retry at a
//     time), and one whose attempt ran past its timeout (END with the job
//     cancelled in the same entry);
//   - starts the next attempt of a step whose retry time came.
//
// It wakes on every change of a run or of a pipeline's job (the FSM hook)
// and at the earliest retry time or deadline.

const pipelineMaxSleep = 5 * time.Second

type pipelineRunner struct {
	ls   *leaderState
	wake chan struct{}

	mu sync.Mutex
	// submit retries after an error that is not the step's fault (no FS
	// master, raft busy): by step request id.
	retry map[string]time.Time
	tries map[string]int
}

func newPipelineRunner(ls *leaderState) *pipelineRunner {
	return &pipelineRunner{ls: ls, wake: make(chan struct{}, 1), retry: map[string]time.Time{}, tries: map[string]int{}}
}

func (r *pipelineRunner) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *pipelineRunner) run(ctx context.Context) { wakeLoop(ctx, r.wake, pipelineMaxSleep, r.tick) }

// tick advances every running run and returns when to look again.
func (r *pipelineRunner) tick(ctx context.Context, now time.Time) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ids []int64
	r.ls.s.fsm.view(func(st *state) {
		st.pipelines.Ascend(func(p *api.PipelineRun) bool {
			if !terminalRun(p.GetStatus()) {
				ids = append(ids, p.GetId())
			}
			return true
		})
	})
	next := now.Add(pipelineMaxSleep)
	for _, id := range ids {
		if ctx.Err() != nil {
			return next
		}
		if at := r.advance(ctx, id, now); at.Before(next) {
			next = at
		}
	}
	return next
}

// advance does what run id needs now; each pass re-reads the run after an
// entry, so it acts on the state raft holds.
func (r *pipelineRunner) advance(ctx context.Context, id int64, now time.Time) time.Time {
	next := now.Add(pipelineMaxSleep)
	soon := func(t time.Time) {
		if t.Before(next) {
			next = t
		}
	}
	for range 16 {
		run := r.ls.s.fsm.Pipeline(id)
		if run == nil || terminalRun(run.GetStatus()) || ctx.Err() != nil {
			return next
		}
		acted := false
		for _, s := range run.GetSteps() {
			if s.GetStatus() != api.PipelineStepState_RUNNING {
				continue
			}
			if at := s.GetRetryAtMs(); at != 0 {
				if now.UnixMilli() < at {
					soon(msTime(at))
					continue
				}
				acted = r.start(ctx, run, s, s.GetAttempt()+1) || acted
				continue
			}
			jid := s.GetJobId()
			if jid == 0 {
				if at, wait := r.retry[s.GetRequestId()]; wait && now.Before(at) {
					soon(at)
					continue
				}
				if err := r.submit(ctx, run, s); err != nil {
					soon(r.backoff(run, s, now, err))
				} else {
					acted = true
				}
				continue
			}
			j := r.ls.s.fsm.Job(jid)
			switch {
			case j == nil:
				acted = r.end(ctx, run, s, api.PipelineStepState_FAILED, fmt.Sprintf("job %d is gone (compacted)", jid), false) || acted
			case j.terminal():
				acted = r.jobEnded(ctx, run, s, j, now) || acted
			case s.GetDeadlineMs() != 0 && now.UnixMilli() >= s.GetDeadlineMs():
				msg := fmt.Sprintf("attempt %d timed out after %s (job %d canceled)", s.GetAttempt(), time.Duration(s.GetTimeoutMs())*time.Millisecond, j.ID)
				acted = r.fail(ctx, run, s, msg, true, now) || acted
			case s.GetDeadlineMs() != 0:
				soon(msTime(s.GetDeadlineMs()))
			}
		}
		for _, s := range readySteps(run) {
			acted = r.start(ctx, run, s, 1) || acted
		}
		if !acted {
			return next
		}
	}
	return now
}

// start records attempt of step s (START) and submits its job.
func (r *pipelineRunner) start(ctx context.Context, run *api.PipelineRun, s *api.PipelineStepState, attempt int32) bool {
	now := time.Now()
	cmd := &api.PipelineStepCommand{
		RunId: run.GetId(), Step: s.GetName(), Kind: api.PipelineStepCommand_START, Attempt: attempt,
		RequestId: pipelineRequestID(run.GetId(), s.GetName(), attempt), NowMs: now.UnixMilli(),
	}
	if t := s.GetTimeoutMs(); t > 0 {
		cmd.DeadlineMs = now.UnixMilli() + t
	}
	if err := r.ls.s.applyErr(ctx, cmd); err != nil {
		if !errors.Is(err, errStale) && ctx.Err() == nil {
			r.ls.s.log.Warn("pipeline step start failed", zap.Int64("pipeline", run.GetId()), zap.String("step", s.GetName()), zap.Error(err))
		}
		return false
	}
	r.ls.s.log.Info("pipeline step started", zap.Int64("pipeline", run.GetId()), zap.String("name", run.GetName()),
		zap.String("step", s.GetName()), zap.Int32("attempt", attempt))
	return true
}

// submit creates the job of step s's current attempt with its request id.
// An error the step's config causes (a path that does not exist, a refused
// permission) fails the attempt for good; any other is returned, and the
// submit is tried again later.
func (r *pipelineRunner) submit(ctx context.Context, run *api.PipelineRun, s *api.PipelineStepState) error {
	srv := r.ls.s
	plan, err := plans.Lookup(s.GetPlan())
	if err != nil {
		r.end(ctx, run, s, api.PipelineStepState_FAILED, err.Error(), false)
		return nil
	}
	ctx = withSubmitMemo(ctx) // what the validation asks answers the planner too
	cmd, err := srv.validateJob(ctx, plan, s.GetConfigJson(), run.GetRunAs())
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		switch status.Code(err) {
		case codes.Unavailable:
			return err
		case codes.InvalidArgument, codes.NotFound, codes.PermissionDenied, codes.FailedPrecondition, codes.AlreadyExists, codes.OutOfRange:
			r.end(ctx, run, s, api.PipelineStepState_FAILED, fmt.Sprintf("submit %s: %v", s.GetPlan(), status.Convert(err).Message()), false)
			return nil
		}
		return fmt.Errorf("submit %s: %w", s.GetPlan(), err)
	}
	if err := r.ls.jobRoom(ctx, fmt.Sprintf("pipeline %d step %s", run.GetId(), s.GetName())); err != nil {
		return err
	}
	cmd.RequestId, cmd.Submitter, cmd.Policy, cmd.NowMs = s.GetRequestId(), run.GetSubmitter(), run.GetTrigger().GetPolicy(), time.Now().UnixMilli()
	cmd.PipelineRunId, cmd.PipelineStep = run.GetId(), s.GetName()
	resp, err := r.ls.submitJob(ctx, plan, cmd)
	if err != nil {
		return err
	}
	if e, ok := resp.(error); ok && errors.Is(e, errStale) {
		return nil // the run or the attempt ended meanwhile
	}
	sr, ok := resp.(submitResult)
	if !ok {
		return fmt.Errorf("pipeline %d step %s: unexpected FSM response %v", run.GetId(), s.GetName(), resp)
	}
	delete(r.retry, s.GetRequestId())
	delete(r.tries, s.GetRequestId())
	srv.log.Info("pipeline step submitted its job", zap.Int64("pipeline", run.GetId()), zap.String("step", s.GetName()),
		zap.Int32("attempt", s.GetAttempt()), zap.Int64("job", sr.id), zap.Bool("existed", sr.existed))
	return nil
}

func (r *pipelineRunner) backoff(run *api.PipelineRun, s *api.PipelineStepState, now time.Time, err error) time.Time {
	rid := s.GetRequestId()
	r.tries[rid]++
	wait := min(100*time.Millisecond<<min(r.tries[rid], 6), 5*time.Second)
	if r.ls.ctx.Err() == nil {
		r.ls.s.log.Warn("pipeline step submit failed; retrying", zap.Int64("pipeline", run.GetId()),
			zap.String("step", s.GetName()), zap.Duration("in", wait), zap.Error(err))
	}
	at := now.Add(wait)
	r.retry[rid] = at
	return at
}

// jobEnded ends step s's attempt by its job's outcome.
func (r *pipelineRunner) jobEnded(ctx context.Context, run *api.PipelineRun, s *api.PipelineStepState, j *jobRec, now time.Time) bool {
	switch j.Status {
	case api.JobInfo_COMPLETED:
		return r.end(ctx, run, s, api.PipelineStepState_SUCCEEDED, "", false)
	case api.JobInfo_CANCELED:
		// Someone cancelled the job: that is not worth another try.
		return r.end(ctx, run, s, api.PipelineStepState_FAILED, fmt.Sprintf("job %d canceled: %s", j.ID, j.Error), false)
	}
	msg := fmt.Sprintf("job %d failed", j.ID)
	if j.Error != "" {
		msg += ": " + j.Error
	}
	return r.fail(ctx, run, s, msg, false, now)
}

// fail ends a failed attempt: a retry later when the step has attempts
// left, else FAILED.
func (r *pipelineRunner) fail(ctx context.Context, run *api.PipelineRun, s *api.PipelineStepState, msg string, cancelJob bool, now time.Time) bool {
	if s.GetAttempt() < pipespec.Attempts(s.GetRetry()) {
		return r.endCmd(ctx, run, s, &api.PipelineStepCommand{
			Outcome: api.PipelineStepState_RUNNING, Error: msg, CancelJob: cancelJob,
			RetryAtMs: now.Add(pipespec.Delay(s.GetRetry(), int(s.GetAttempt()))).UnixMilli(),
		})
	}
	return r.end(ctx, run, s, api.PipelineStepState_FAILED, msg, cancelJob)
}

// end ends step s's attempt with outcome for good.
func (r *pipelineRunner) end(ctx context.Context, run *api.PipelineRun, s *api.PipelineStepState, outcome api.PipelineStepState_Status, msg string, cancelJob bool) bool {
	return r.endCmd(ctx, run, s, &api.PipelineStepCommand{Outcome: outcome, Error: msg, CancelJob: cancelJob})
}

func (r *pipelineRunner) endCmd(ctx context.Context, run *api.PipelineRun, s *api.PipelineStepState, cmd *api.PipelineStepCommand) bool {
	cmd.RunId, cmd.Step, cmd.Kind, cmd.Attempt, cmd.NowMs = run.GetId(), s.GetName(), api.PipelineStepCommand_END, s.GetAttempt(), time.Now().UnixMilli()
	if err := r.ls.s.applyErr(ctx, cmd); err != nil {
		if !errors.Is(err, errStale) && ctx.Err() == nil {
			r.ls.s.log.Warn("pipeline step end failed", zap.Int64("pipeline", run.GetId()), zap.String("step", s.GetName()), zap.Error(err))
		}
		return false
	}
	r.ls.s.log.Info("pipeline step attempt ended", zap.Int64("pipeline", run.GetId()), zap.String("step", s.GetName()),
		zap.Int32("attempt", s.GetAttempt()), zap.String("outcome", cmd.GetOutcome().String()), zap.String("error", cmd.GetError()))
	return true
}
