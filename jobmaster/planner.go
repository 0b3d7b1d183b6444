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
	"github.com/alluvium/alluvium/internal/rpc"
	"github.com/alluvium/alluvium/plans"
)

// planners run one planning goroutine per job that still has tasks to
// plan (at most jobmaster.planner.concurrency at once). Each pulls batches
// from the plan's streaming Planner and commits every batch with its cursor
// in one PLAN_TASKS entry, so a failover resumes exactly after the last
// committed batch. A job with jobmaster.planner.max-outstanding unfinished
// tasks waits, which bounds memory on both sides however big the job.
type planners struct {
	ls     *leaderState
	sem    chan struct{}
	mu     sync.Mutex
	active map[int64]chan struct{} // job id → poke
	again  map[int64]bool          // asked again while active (a new round)
	wg     sync.WaitGroup
}

// Planning retry policy: transient errors (the FS master restarting, no
// eligible worker for a while) back off up to maxPlanBackoff; after
// maxPlanFailures in a row, or at once for a permanent error, the job fails.
const (
	maxPlanFailures = 10
	maxPlanBackoff  = 10 * time.Second
)

func newPlanners(ls *leaderState) *planners {
	n := ls.s.cfg.JobMaster.Planner.Concurrency
	if n <= 0 {
		n = 4
	}
	return &planners{ls: ls, sem: make(chan struct{}, n), active: map[int64]chan struct{}{}, again: map[int64]bool{}}
}

// consider starts planning job id unless it is already being planned.
func (p *planners) consider(id int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ls.ctx.Err() != nil {
		return
	}
	if poke, ok := p.active[id]; ok {
		// It may be on its way out after the last round: have it look again.
		p.again[id] = true
		select {
		case poke <- struct{}{}:
		default:
		}
		return
	}
	poke := make(chan struct{}, 1)
	p.active[id] = poke
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			p.run(id, poke)
			p.mu.Lock()
			if !p.again[id] || p.ls.ctx.Err() != nil {
				delete(p.active, id)
				delete(p.again, id)
				p.mu.Unlock()
				return
			}
			delete(p.again, id)
			p.mu.Unlock()
		}
	}()
}

// poke wakes job id's planner if it waits for tasks to finish.
func (p *planners) poke(id int64) {
	p.mu.Lock()
	ch := p.active[id]
	p.mu.Unlock()
	if ch != nil {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (p *planners) wait() { p.wg.Wait() }

func (p *planners) run(id int64, poke chan struct{}) {
	ls, s := p.ls, p.ls.s
	ctx := ls.ctx
	j := s.fsm.Job(id)
	if j == nil || j.terminal() || j.PlanningDone {
		return
	}
	plan, err := plans.Lookup(j.Plan)
	if err != nil {
		ls.abort(id, fmt.Sprintf("planning: %v", err))
		return
	}
	// The planner reads the cluster as the job's user, so it lists only
	// what that user may list.
	asUser := rpc.ActAs(ctx, j.RunAs)
	cfg := s.cfg.JobMaster.Planner
	batchSize := max(cfg.BatchSize, 1)
	dry := j.Limits.GetDryRun()
	maxOut := int64(cfg.MaxOutstanding)
	var (
		pl       plans.Planner
		failures int
		backoff  = 100 * time.Millisecond
	)
	defer func() {
		if pl != nil {
			_ = pl.Close()
		}
	}()
	fail := func(err error) bool { // true: give up
		if pl != nil {
			_ = pl.Close()
			pl = nil
		}
		if ctx.Err() != nil || errors.Is(err, errNotLeader) {
			return true
		}
		failures++
		if permanentPlanError(err) || failures >= maxPlanFailures {
			ls.abort(id, fmt.Sprintf("planning: %v", err))
			return true
		}
		s.log.Warn("planning failed; retrying", zap.Int64("job", id), zap.Int("failures", failures), zap.Duration("backoff", backoff), zap.Error(err))
		select {
		case <-ctx.Done():
			return true
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxPlanBackoff)
		return false
	}
	for ctx.Err() == nil {
		j = s.fsm.Job(id)
		if j == nil || j.terminal() || j.PlanningDone {
			return
		}
		if maxOut > 0 && j.Outstanding >= maxOut {
			select {
			case <-poke:
			case <-ctx.Done():
			}
			continue
		}
		batch, err := p.next(asUser, &pl, func() (plans.Planner, error) {
			return plan.NewPlanner(asUser, s.env, j.planJob())
		}, batchSize)
		if err != nil {
			if fail(err) {
				return
			}
			continue
		}
		cmd := planCommand(batch, dry)
		cmd.JobId, cmd.FirstTaskId, cmd.Round, cmd.NowMs = j.ID, j.NextTaskID, j.Round, time.Now().UnixMilli()
		err = s.applyErr(ctx, cmd)
		switch {
		case err == nil:
			failures, backoff = 0, 100*time.Millisecond
		case errors.Is(err, errStale):
			// The job moved on (cancelled, or planned elsewhere): start over
			// from what the FSM says.
			_ = pl.Close()
			pl = nil
		default:
			if fail(err) {
				return
			}
		}
	}
}

// planCommand is the PLAN_TASKS entry of batch (without the job, its
// first task id, round and time); dry keeps only what the tasks count.
func planCommand(batch plans.Batch, dry bool) *api.PlanTasksCommand {
	cmd := &api.PlanTasksCommand{
		Cursor: batch.Cursor, PlanningDone: batch.Done, Failed: batch.Failed,
		Tasks:        make([]*api.PlannedTask, len(batch.Tasks)),
		FilesSkipped: batch.FilesSkipped, BytesSkipped: batch.BytesSkipped, Deletes: batch.Deletes,
	}
	for i, t := range batch.Tasks {
		if dry {
			// Only what it counts: the FSM keeps no task of a dry run.
			cmd.Tasks[i] = &api.PlannedTask{BytesTotal: t.Bytes, Files: t.Files}
			continue
		}
		cmd.Tasks[i] = &api.PlannedTask{Args: t.Args, Description: t.Description, BytesTotal: t.Bytes, Files: t.Files,
			BlockWorkerId: t.BlockWorkerID, BlockWorkerAddress: t.BlockWorkerAddress}
	}
	return cmd
}

// A job is planned inside its submit when its planner finishes within
// inlinePlanTasks tasks and inlinePlanTime: a tiny job then costs one raft
// write less, and no wait for a planner slot behind other jobs. A bigger
// or slower one is left to the planners (what the try listed is listed
// again there: at most inlinePlanTasks tasks' worth, once per job).
const (
	inlinePlanTasks = 64
	inlinePlanTime  = 250 * time.Millisecond
)

// submitJob applies cmd (its time set), with the job's whole plan in the
// same entry (SUBMIT_PLANNED_JOB) when planInline manages it, and returns
// the FSM's response for this job. Submits that come while others are in
// raft share one entry (submitBatcher).
func (ls *leaderState) submitJob(ctx context.Context, plan plans.Plan, cmd *api.SubmitJobCommand) (any, error) {
	return ls.submits.submit(&api.SubmitPlannedJobCommand{Submit: cmd, Plan: ls.planInline(ctx, plan, cmd)})
}

// planInline runs the planner of the job cmd would create (acting as its
// user, as the planners do) and returns its whole plan when the first
// batch ends the planning; nil otherwise — a plugin plan (its planner
// sees the job's id, not known before the submit), an error, a plan too
// big or too slow — and the planners plan the job as usual.
func (ls *leaderState) planInline(ctx context.Context, plan plans.Plan, cmd *api.SubmitJobCommand) *api.PlanTasksCommand {
	if plans.PluginVersion(plan) != "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(rpc.ActAs(ctx, cmd.GetRunAs()), inlinePlanTime)
	defer cancel()
	pl, err := plan.NewPlanner(ctx, ls.s.env, plans.Job{Config: []byte(cmd.GetConfigJson()), CreatedMs: cmd.GetNowMs()})
	if err != nil {
		return nil
	}
	defer func() { _ = pl.Close() }()
	batch, err := pl.Next(ctx, min(inlinePlanTasks, max(ls.s.cfg.JobMaster.Planner.BatchSize, 1)))
	if err != nil || !batch.Done {
		return nil
	}
	return planCommand(batch, cmd.GetLimits().GetDryRun())
}

// next gets the next batch from *pl, making the planner first if there is
// none, while holding one of jobmaster.planner.concurrency slots: the slots
// bound the listing the planners put on the FS master at once, not the
// planners — a job that waits for its tasks to finish, or for its batch to
// be committed to raft, holds none, so a small job behind big ones is
// planned at once and many jobs' batches share one raft write.
func (p *planners) next(ctx context.Context, pl *plans.Planner, mk func() (plans.Planner, error), size int) (plans.Batch, error) {
	select {
	case p.sem <- struct{}{}:
		defer func() { <-p.sem }()
	case <-ctx.Done():
		return plans.Batch{}, ctx.Err()
	}
	if *pl == nil {
		np, err := mk()
		if err != nil {
			return plans.Batch{}, err
		}
		*pl = np
	}
	return (*pl).Next(ctx, size)
}

// permanentPlanError: retrying cannot help.
func permanentPlanError(err error) bool {
	switch status.Code(err) {
	case codes.InvalidArgument, codes.NotFound, codes.PermissionDenied, codes.Unimplemented, codes.FailedPrecondition:
		return true
	}
	return false
}

// abort fails a job at once with reason.
func (ls *leaderState) abort(id int64, reason string) {
	err := ls.s.applyErr(ls.ctx, &api.FinishJobCommand{JobId: id, Status: api.JobInfo_FAILED, Error: reason, Abort: true, NowMs: time.Now().UnixMilli()})
	if err != nil && !errors.Is(err, errStale) {
		ls.s.log.Warn("failing job", zap.Int64("job", id), zap.Error(err))
		return
	}
	ls.s.log.Warn("job failed", zap.Int64("job", id), zap.String("reason", reason))
}

// finisher ends jobs whose planning is done and whose tasks have all
// ended: it asks the plan whether another round is due (load --verify),
// else records COMPLETED or FAILED.
type finisher struct {
	ls     *leaderState
	mu     sync.Mutex
	active map[int64]bool
	again  map[int64]bool
	wg     sync.WaitGroup
}

func newFinisher(ls *leaderState) *finisher {
	return &finisher{ls: ls, active: map[int64]bool{}, again: map[int64]bool{}}
}

func (f *finisher) consider(id int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ls.ctx.Err() != nil {
		return
	}
	if f.active[id] {
		f.again[id] = true
		return
	}
	f.active[id] = true
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			f.finish(id)
			f.mu.Lock()
			if !f.again[id] || f.ls.ctx.Err() != nil {
				delete(f.active, id)
				delete(f.again, id)
				f.mu.Unlock()
				return
			}
			delete(f.again, id)
			f.mu.Unlock()
		}
	}()
}

func (f *finisher) wait() { f.wg.Wait() }

func (f *finisher) finish(id int64) {
	ls, s := f.ls, f.ls.s
	j := s.fsm.Job(id)
	if j == nil || !j.quiescent() {
		return
	}
	done, doneErr := true, ""
	if plan, err := plans.Lookup(j.Plan); err == nil {
		d, err := plan.Done(rpc.ActAs(ls.ctx, j.RunAs), s.env, j.planJob())
		if err != nil {
			// The plan refuses to go on (sync: more deletes than
			// --max-delete) or cannot tell: the job did not do all it
			// should, so it FAILED.
			s.log.Warn("plan Done failed; the job fails", zap.Int64("job", id), zap.Error(err))
			doneErr = status.Convert(err).Message()
		} else {
			done = d
		}
	}
	now := time.Now().UnixMilli()
	var err error
	if !done {
		err = s.applyErr(ls.ctx, &api.NextRoundCommand{JobId: id, Round: j.Round + 1, NowMs: now})
	} else {
		cmd := &api.FinishJobCommand{JobId: id, NowMs: now}
		if doneErr != "" {
			cmd.Status, cmd.Error = api.JobInfo_FAILED, doneErr
		} else {
			cmd.Status, cmd.Error = j.outcome()
		}
		err = s.applyErr(ls.ctx, cmd)
	}
	if err != nil && !errors.Is(err, errStale) && ls.ctx.Err() == nil {
		s.log.Warn("finishing job failed", zap.Int64("job", id), zap.Error(err))
	}
}
