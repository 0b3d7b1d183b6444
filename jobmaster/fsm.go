package jobmaster

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/alluvium/alluvium/api"
)

// FSM is the job master's replicated state machine: jobs, tasks, job
// workers and policies. Every change arrives as a raft log entry (a typed
// command, see command.go) and is applied by one function per type. Like
// Nomad's FSM, it tells the leader what changed (tasks that became PENDING,
// jobs to plan or finish) through a hook that is set only while this node
// leads, so the leader's loops react within the same millisecond.
type FSM struct {
	log *zap.Logger

	mu sync.RWMutex
	st *state

	changedMu sync.Mutex
	changed   chan struct{}
	// jobWatch: job id → a channel closed at that job's next change (the
	// job watches wait on their own job's, not on every applied entry:
	// with many watchers and many jobs a change wakes only its own).
	jobWatch map[int64]chan struct{}

	// hookMu is held (shared) while the hook runs, so setHook(nil) returns
	// only once no call of the old hook is in flight: a revoked leader's
	// loops may then be waited for without the hook adding work to them.
	hookMu sync.RWMutex
	hook   func(*events)

	applied  atomic.Uint64 // entries applied, for metrics
	restored atomic.Uint64 // snapshots restored
}

// events is what one applied entry changed, for the leader.
type events struct {
	tasks   []taskEvent
	jobs    []int64 // jobs whose record changed
	workers []int64 // workers registered or lost
	// pipelines: runs that changed
	pipelines []int64
}

type taskEvent struct {
	key     taskKey
	status  api.TaskInfo_Status
	attempt int32
	worker  int64 // RUNNING: where; ended: where it ran (0: never dispatched)
	bwID    int64
	bwAddr  string
}

// Results of apply functions (raft's ApplyFuture.Response).
type (
	submitResult struct {
		id      int64
		existed bool
	}
	registerResult struct{ id int64 }
)

// errStale is a command overtaken by the state (e.g. a plan batch whose
// first task id is already taken). Applying it changed nothing.
var errStale = errors.New("stale command")

// NewFSM returns an empty FSM.
func NewFSM(log *zap.Logger) *FSM {
	if log == nil {
		log = zap.NewNop()
	}
	return &FSM{log: log, st: newState(), changed: make(chan struct{}), jobWatch: map[int64]chan struct{}{}}
}

// setHook installs (or with nil removes) the leader's event sink. It waits
// for a call of the previous hook that is under way.
func (f *FSM) setHook(h func(*events)) {
	f.hookMu.Lock()
	f.hook = h
	f.hookMu.Unlock()
}

// Changed returns a channel closed at the next applied change.
func (f *FSM) Changed() <-chan struct{} {
	f.changedMu.Lock()
	defer f.changedMu.Unlock()
	return f.changed
}

// jobAndChange returns job id's record and, while it has not ended, a
// channel closed at its next change (a record replaced, the job deleted or
// the state restored). No channel is kept for a job that has ended or does
// not exist, so watches of those leave nothing behind.
func (f *FSM) jobAndChange(id int64) (*jobRec, <-chan struct{}) {
	// The read lock keeps the record and the channel together: an entry
	// that changes the job is applied after the channel exists, and its
	// publish closes it.
	f.mu.RLock()
	defer f.mu.RUnlock()
	j := f.st.job(id)
	if j == nil || j.terminal() {
		return j, nil
	}
	f.changedMu.Lock()
	defer f.changedMu.Unlock()
	ch := f.jobWatch[id]
	if ch == nil {
		ch = make(chan struct{})
		f.jobWatch[id] = ch
	}
	return j, ch
}

func (f *FSM) publish(ev *events) {
	f.changedMu.Lock()
	close(f.changed)
	f.changed = make(chan struct{})
	if ev == nil {
		// A restored state: every job may have changed.
		for id, ch := range f.jobWatch {
			close(ch)
			delete(f.jobWatch, id)
		}
	} else if len(f.jobWatch) > 0 {
		for _, id := range ev.jobs {
			if ch := f.jobWatch[id]; ch != nil {
				close(ch)
				delete(f.jobWatch, id)
			}
		}
	}
	f.changedMu.Unlock()
	if ev == nil {
		return
	}
	f.hookMu.RLock()
	defer f.hookMu.RUnlock()
	if f.hook != nil {
		f.hook(ev)
	}
}

// Apply implements raft.FSM.
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	t, m, ignorable, err := decodeCommand(l.Data)
	if err != nil {
		if ignorable {
			f.log.Warn("skipping a raft entry this job master does not understand", zap.Uint64("index", l.Index), zap.Error(err))
			return nil
		}
		// Skipping it would make this replica differ from the others.
		panic(fmt.Sprintf("jobmaster: raft entry %d cannot be applied: %v (upgrade this job master)", l.Index, err))
	}
	f.mu.Lock()
	x := &tx{s: f.st, jobs: map[int64]*jobRec{}, ev: &events{}}
	res := x.dispatch(t, m)
	x.commit()
	f.st.index = l.Index
	f.mu.Unlock()
	f.applied.Add(1)
	f.publish(x.ev)
	return res
}

// tx collects one entry's changes: jobs are copied on first touch and
// written back once at the end, however many tasks of theirs changed.
type tx struct {
	s    *state
	now  int64
	jobs map[int64]*jobRec
	ev   *events
}

func (x *tx) job(id int64) *jobRec {
	if j, ok := x.jobs[id]; ok {
		return j
	}
	old := x.s.job(id)
	if old == nil {
		return nil
	}
	j := *old
	x.jobs[id] = &j
	return &j
}

// liveJob is job for a job that has not ended, else nil (and no copy).
func (x *tx) liveJob(id int64) *jobRec {
	if j, ok := x.jobs[id]; ok {
		if j.terminal() {
			return nil
		}
		return j
	}
	if old := x.s.job(id); old == nil || old.terminal() {
		return nil
	}
	return x.job(id)
}

func (x *tx) commit() {
	ids := make([]int64, 0, len(x.jobs))
	for id, j := range x.jobs {
		if j.quiescent() && j.Limits.GetEndsWithTasks() {
			// Its plan has nothing to do at the end (spec.Limits
			// EndsWithTasks): the job ends in this entry, as the finisher's
			// FINISH_JOB would end it, without an entry of its own.
			j.Status, j.Error = j.outcome()
			j.FinishedMs = x.now
		}
		if j.UpdatedMs < x.now {
			j.UpdatedMs = x.now
		}
		old, _ := x.s.jobs.ReplaceOrInsert(j)
		x.s.countUnfinished(old, j)
		ids = append(ids, id)
	}
	slices.Sort(ids)
	x.ev.jobs = append(x.ev.jobs, ids...)
}

func (x *tx) putTask(t *taskRec) {
	x.s.tasks.ReplaceOrInsert(t)
	x.ev.tasks = append(x.ev.tasks, taskEvent{key: t.key(), status: t.Status, attempt: t.Attempt, worker: t.WorkerID, bwID: t.BWID, bwAddr: t.BWAddr})
}

var _ = registerCommand(api.JobCommandType_SUBMIT_JOB, (*tx).applySubmit)

func (x *tx) applySubmit(c *api.SubmitJobCommand) any {
	x.now = c.GetNowMs()
	if rid := c.GetRequestId(); rid != "" {
		if id, ok := x.s.byRequest[rid]; ok {
			x.policyJobSubmitted(c.GetPolicy(), rid, id)
			x.pipelineJobSubmitted(c.GetPipelineRunId(), c.GetPipelineStep(), rid, id)
			return submitResult{id: id, existed: true}
		}
	}
	if run := c.GetPipelineRunId(); run != 0 && !x.stepAwaitsJob(run, c.GetPipelineStep(), c.GetRequestId()) {
		// The run was cancelled (or the attempt ended) while the leader
		// was submitting: the job is not made.
		return fmt.Errorf("submit job of pipeline %d step %s: %w", run, c.GetPipelineStep(), errStale)
	}
	id := x.s.nextJobID
	x.s.nextJobID++
	j := &jobRec{
		ID: id, Plan: c.GetPlan(), PlanVersion: c.GetPlanVersion(), Config: c.GetConfigJson(), Limits: c.GetLimits(), Submitter: c.GetSubmitter(), RunAs: c.GetRunAs(),
		RequestID: c.GetRequestId(), Policy: c.GetPolicy(), Status: api.JobInfo_CREATED,
		CreatedMs: x.now, UpdatedMs: x.now, NextTaskID: 1,
		PipelineRunID: c.GetPipelineRunId(), PipelineStep: c.GetPipelineStep(),
	}
	x.jobs[id] = j
	if j.RequestID != "" {
		x.s.byRequest[j.RequestID] = id
	}
	x.policyJobSubmitted(j.Policy, j.RequestID, id)
	x.pipelineJobSubmitted(j.PipelineRunID, j.PipelineStep, j.RequestID, id)
	return submitResult{id: id}
}

var _ = registerCommand(api.JobCommandType_SUBMIT_PLANNED_JOB, (*tx).applySubmitPlanned)

// applySubmitPlanned creates a job and its whole plan in one entry: the
// submit as SUBMIT_JOB, then — for a job made here, not one a request id
// found — the plan as its first PLAN_TASKS.
func (x *tx) applySubmitPlanned(c *api.SubmitPlannedJobCommand) any {
	res := x.applySubmit(c.GetSubmit())
	sr, ok := res.(submitResult)
	if !ok || sr.existed || c.GetPlan() == nil {
		return res
	}
	p := proto.Clone(c.GetPlan()).(*api.PlanTasksCommand)
	p.JobId, p.FirstTaskId, p.Round, p.NowMs = sr.id, 1, 0, c.GetSubmit().GetNowMs()
	// It cannot be stale: the job was made just now (round 0, its first
	// task id 1, not ended).
	_ = x.applyPlanTasks(p)
	return res
}

var _ = registerCommand(api.JobCommandType_SUBMIT_JOBS, (*tx).applySubmitJobs)

// submitResults answers a SUBMIT_JOBS entry: its jobs' answers in order,
// each what that job's own SUBMIT_PLANNED_JOB would answer (a
// submitResult or an error).
type submitResults []any

// applySubmitJobs creates a batch of jobs, each as its SUBMIT_PLANNED_JOB
// would alone and in the batch's order (a request id twice in it: the
// second finds the first's job). One job's error leaves the others be.
func (x *tx) applySubmitJobs(c *api.SubmitJobsCommand) any {
	res := make(submitResults, len(c.GetJobs()))
	var now int64
	for i, sub := range c.GetJobs() {
		res[i] = x.applySubmitPlanned(sub)
		now = max(now, sub.GetSubmit().GetNowMs())
	}
	// The entry's time is its latest submit's: a job the commit ends (a
	// plan with no task) never finishes before it was created.
	x.now = now
	return res
}

var _ = registerCommand(api.JobCommandType_PLAN_TASKS, (*tx).applyPlanTasks)

func (x *tx) applyPlanTasks(c *api.PlanTasksCommand) any {
	x.now = c.GetNowMs()
	j := x.job(c.GetJobId())
	switch {
	case j == nil:
		return fmt.Errorf("plan tasks: job %d: %w", c.GetJobId(), errStale)
	case j.terminal(), j.PlanningDone, j.Round != c.GetRound(), j.NextTaskID != c.GetFirstTaskId():
		delete(x.jobs, j.ID)
		return fmt.Errorf("plan tasks: job %d: %w", j.ID, errStale)
	}
	j.FilesSkipped += c.GetFilesSkipped()
	j.BytesSkipped += c.GetBytesSkipped()
	j.Deletes += c.GetDeletes()
	// A dry run keeps no task: it counts what they would do.
	dry := j.Limits.GetDryRun()
	var n int64
	for _, p := range c.GetTasks() {
		j.BytesTotal += p.GetBytesTotal()
		j.FilesTotal += p.GetFiles()
		if dry {
			continue
		}
		x.putTask(&taskRec{
			JobID: j.ID, TaskID: c.GetFirstTaskId() + n, Status: api.TaskInfo_PENDING, Attempt: 1,
			BytesTotal: p.GetBytesTotal(), Args: p.GetArgs(), Desc: p.GetDescription(), UpdatedMs: x.now,
			BWID: p.GetBlockWorkerId(), BWAddr: p.GetBlockWorkerAddress(),
		})
		n++
	}
	j.NextTaskID += n
	j.TasksTotal += n
	j.Outstanding += n
	j.Cursor = c.GetCursor()
	j.PlanningDone = c.GetPlanningDone()
	if len(c.GetFailed()) > 0 {
		j.addFailed(c.GetFailed()...)
		j.RoundFailed += int64(len(c.GetFailed()))
	}
	if j.Status == api.JobInfo_CREATED {
		j.Status = api.JobInfo_RUNNING
	}
	return nil
}

var _ = registerCommand(api.JobCommandType_UPDATE_TASKS, (*tx).applyUpdateTasks)

func (x *tx) applyUpdateTasks(c *api.UpdateTasksCommand) any {
	x.now = c.GetNowMs()
	maxAttempts := c.GetMaxAttempts()
	for _, tr := range c.GetTransitions() {
		x.transition(tr, maxAttempts)
	}
	return nil
}

// transition applies one task change; stale ones (a finished task, an old
// attempt's failure) are dropped.
func (x *tx) transition(tr *api.TaskTransition, maxAttempts int32) {
	old := x.s.task(taskKey{tr.GetJobId(), tr.GetTaskId()})
	if old == nil || terminalTask(old.Status) {
		return
	}
	j := x.liveJob(old.JobID)
	if j == nil {
		return
	}
	t := *old
	t.UpdatedMs = x.now
	switch tr.GetKind() {
	case api.TaskTransition_DISPATCH:
		if t.Status != api.TaskInfo_PENDING || tr.GetAttempt() != t.Attempt {
			return
		}
		w := x.s.worker(tr.GetWorkerId())
		if w == nil || w.State != api.WorkerState_LIVE {
			// Handed to a worker that is gone: the leader places it again.
			x.ev.tasks = append(x.ev.tasks, taskEvent{key: t.key(), status: t.Status, attempt: t.Attempt, bwID: t.BWID, bwAddr: t.BWAddr})
			return
		}
		t.Status = api.TaskInfo_RUNNING
		t.WorkerID = w.ID
		t.DispatchedMs = x.now
		t.BytesDone = 0
		j.TasksRunning++
		x.s.markRunning(w.ID, t.key(), true)
	case api.TaskTransition_PROGRESS:
		if t.Status != api.TaskInfo_RUNNING || tr.GetAttempt() != t.Attempt || tr.GetBytesDone() <= t.BytesDone {
			return
		}
		b := min(tr.GetBytesDone(), t.BytesTotal)
		if t.BytesTotal == 0 {
			b = tr.GetBytesDone()
		}
		j.BytesDone += b - t.BytesDone
		t.BytesDone = b
	case api.TaskTransition_COMPLETE:
		// Tasks are idempotent: a success counts from any attempt.
		x.leaveRunning(&t, j)
		// What it found already done moves from its totals to the
		// job's skipped counts.
		if sk := max(tr.GetBytesSkipped(), 0); sk > 0 {
			moved := min(sk, t.BytesTotal) // planned to move, after all not
			t.BytesTotal -= moved
			j.BytesTotal -= moved
			j.BytesSkipped += sk
		}
		if fs := max(tr.GetFilesSkipped(), 0); fs > 0 {
			j.FilesSkipped += fs
			j.FilesTotal = max(j.FilesTotal-fs, 0)
		}
		done := t.BytesTotal
		if done == 0 {
			done = tr.GetBytesDone()
		}
		j.BytesDone += done - t.BytesDone
		t.BytesDone = done
		t.Status = api.TaskInfo_COMPLETED
		t.Error = ""
		t.Args = nil
		t.Result = tr.GetResult()
		j.TasksDone++
		j.Outstanding--
	case api.TaskTransition_FAIL, api.TaskTransition_TIMEOUT:
		if tr.GetAttempt() != t.Attempt {
			return
		}
		reason := tr.GetError()
		if reason == "" {
			reason = "failed"
		}
		t.Result = tr.GetResult()
		x.failAttempt(&t, j, reason, tr.GetFailed(), maxAttempts)
	default:
		return
	}
	x.putTask(&t)
}

// leaveRunning takes t off its worker's running set.
func (x *tx) leaveRunning(t *taskRec, j *jobRec) {
	if t.Status == api.TaskInfo_RUNNING {
		j.TasksRunning--
		x.s.markRunning(t.WorkerID, t.key(), false)
	}
}

// failAttempt ends t's current attempt: PENDING again with attempt+1, or
// FAILED for good after maxAttempts, recording the failed paths on the job.
func (x *tx) failAttempt(t *taskRec, j *jobRec, reason string, failed []*api.FailedPath, maxAttempts int32) {
	x.leaveRunning(t, j)
	j.BytesDone -= t.BytesDone
	t.BytesDone = 0
	t.Error = reason
	if len(failed) > 0 {
		t.Failed = failed
	}
	if maxAttempts < 1 {
		maxAttempts = 1
	}
	if t.Attempt >= maxAttempts {
		t.Status = api.TaskInfo_FAILED
		j.TasksFailed++
		j.RoundFailed++
		j.Outstanding--
		fs := t.Failed
		if len(fs) == 0 {
			fs = []*api.FailedPath{{Path: t.Desc, Error: reason}}
		}
		j.addFailed(fs...)
		return
	}
	t.Status = api.TaskInfo_PENDING
	t.Attempt++
	t.WorkerID = 0
}

var _ = registerCommand(api.JobCommandType_CANCEL_JOB, (*tx).applyCancel)

func (x *tx) applyCancel(c *api.CancelJobCommand) any {
	x.now = c.GetNowMs()
	j := x.job(c.GetJobId())
	if j == nil {
		return fmt.Errorf("cancel job %d: not found", c.GetJobId())
	}
	if j.terminal() {
		delete(x.jobs, j.ID)
		return nil
	}
	reason := c.GetReason()
	if reason == "" {
		reason = "canceled"
	}
	x.endJob(j, api.JobInfo_CANCELED, reason)
	return nil
}

// endJob ends j now with st, cancelling every task that has not ended.
func (x *tx) endJob(j *jobRec, st api.JobInfo_Status, reason string) {
	j.Status = st
	j.FinishedMs = x.now
	j.Error = reason
	var ts []*taskRec
	x.s.jobTasks(j.ID, func(t *taskRec) bool {
		if !terminalTask(t.Status) {
			ts = append(ts, t)
		}
		return true
	})
	for _, old := range ts {
		t := *old
		x.leaveRunning(&t, j)
		t.Status = api.TaskInfo_CANCELED
		t.UpdatedMs = x.now
		x.putTask(&t)
	}
	j.Outstanding = 0
	j.TasksRunning = 0
}

var _ = registerCommand(api.JobCommandType_FINISH_JOB, (*tx).applyFinish)

func (x *tx) applyFinish(c *api.FinishJobCommand) any {
	x.now = c.GetNowMs()
	if c.GetAbort() {
		j := x.liveJob(c.GetJobId())
		if j == nil {
			return fmt.Errorf("abort job %d: %w", c.GetJobId(), errStale)
		}
		x.endJob(j, api.JobInfo_FAILED, c.GetError())
		return nil
	}
	j := x.job(c.GetJobId())
	if j == nil || !j.quiescent() {
		if j != nil {
			delete(x.jobs, j.ID)
		}
		return fmt.Errorf("finish job %d: %w", c.GetJobId(), errStale)
	}
	st := c.GetStatus()
	if st != api.JobInfo_COMPLETED && st != api.JobInfo_FAILED {
		st = api.JobInfo_FAILED
	}
	j.Status = st
	j.Error = c.GetError()
	j.FinishedMs = x.now
	return nil
}

var _ = registerCommand(api.JobCommandType_NEXT_ROUND, (*tx).applyNextRound)

func (x *tx) applyNextRound(c *api.NextRoundCommand) any {
	x.now = c.GetNowMs()
	j := x.job(c.GetJobId())
	if j == nil || !j.quiescent() || c.GetRound() != j.Round+1 {
		if j != nil {
			delete(x.jobs, j.ID)
		}
		return fmt.Errorf("next round of job %d: %w", c.GetJobId(), errStale)
	}
	j.Round = c.GetRound()
	j.PlanningDone = false
	j.Cursor = nil
	j.RoundFailed = 0
	j.Failed = nil
	j.FailedCount = 0
	return nil
}

var _ = registerCommand(api.JobCommandType_REGISTER_WORKER, (*tx).applyRegisterWorker)

func (x *tx) applyRegisterWorker(c *api.RegisterWorkerCommand) any {
	x.now = c.GetNowMs()
	// The same process registering again while its record is LIVE (its
	// first call timed out at the client but was applied) keeps that
	// record: replacing it would fail the tasks it runs.
	if live, ok := x.s.liveByAddr[c.GetAddress()]; ok && c.GetInstance() != "" {
		if w := x.s.worker(live); w != nil && w.Instance == c.GetInstance() {
			// The event lets the leader's broker and heartbeat tracker
			// (re)take it as LIVE, as after a first registration.
			x.ev.workers = append(x.ev.workers, live)
			return registerResult{id: live}
		}
	}
	// A worker registering again at the same address replaces its old self:
	// whatever the old one was running is lost with it.
	if stale, ok := x.s.liveByAddr[c.GetAddress()]; ok {
		x.loseWorker(stale, c.GetMaxAttempts(), "job worker re-registered")
	}
	id := x.s.nextWorkerID
	x.s.nextWorkerID++
	x.s.workers.ReplaceOrInsert(&workerRec{
		ID: id, Address: c.GetAddress(), Host: c.GetHost(), BWID: c.GetBlockWorkerId(),
		BWAddr: c.GetBlockWorkerAddress(), Threads: c.GetThreads(), Capacity: c.GetCapacity(), State: api.WorkerState_LIVE,
		UpdatedMs: x.now, Plans: c.GetPlans(), Instance: c.GetInstance(), RemoteCapacity: max(c.GetRemoteCapacity(), 0),
	})
	x.s.liveByAddr[c.GetAddress()] = id
	x.ev.workers = append(x.ev.workers, id)
	return registerResult{id: id}
}

var _ = registerCommand(api.JobCommandType_WORKER_LOST, (*tx).applyWorkerLost)

func (x *tx) applyWorkerLost(c *api.WorkerLostCommand) any {
	x.now = c.GetNowMs()
	reason := c.GetReason()
	if reason == "" {
		reason = "job worker lost"
	}
	if !x.loseWorker(c.GetWorkerId(), c.GetMaxAttempts(), reason) {
		return fmt.Errorf("worker %d: %w", c.GetWorkerId(), errStale)
	}
	return nil
}

// loseWorker marks a LIVE worker LOST and fails the current attempt of
// each task it was running.
func (x *tx) loseWorker(id int64, maxAttempts int32, reason string) bool {
	w := x.s.worker(id)
	if w == nil || w.State != api.WorkerState_LIVE {
		return false
	}
	nw := *w
	nw.State = api.WorkerState_LOST
	nw.UpdatedMs = x.now
	x.s.workers.ReplaceOrInsert(&nw)
	if x.s.liveByAddr[w.Address] == id {
		delete(x.s.liveByAddr, w.Address)
	}
	x.ev.workers = append(x.ev.workers, id)
	keys := x.s.runningOn(id)
	msg := fmt.Sprintf("%s (worker %d at %s)", reason, id, w.Address)
	for _, k := range keys {
		old := x.s.task(k)
		if old == nil {
			continue
		}
		j := x.liveJob(k.job)
		if j == nil {
			continue
		}
		t := *old
		t.UpdatedMs = x.now
		x.failAttempt(&t, j, msg, nil, maxAttempts)
		x.putTask(&t)
	}
	return true
}

var _ = registerCommand(api.JobCommandType_DELETE_JOBS, (*tx).applyDeleteJobs)

func (x *tx) applyDeleteJobs(c *api.DeleteJobsCommand) any {
	for _, id := range c.GetJobIds() {
		j := x.s.job(id)
		if j == nil || !j.terminal() {
			continue
		}
		var keys []*taskRec
		x.s.jobTasks(id, func(t *taskRec) bool { keys = append(keys, t); return true })
		for _, t := range keys {
			x.s.tasks.Delete(t)
		}
		x.s.jobs.Delete(j)
		x.s.countUnfinished(j, nil)
		delete(x.jobs, id)
		x.ev.jobs = append(x.ev.jobs, id) // gone: its watchers wake
		if j.RequestID != "" && x.s.byRequest[j.RequestID] == id {
			delete(x.s.byRequest, j.RequestID)
		}
	}
	for _, id := range c.GetWorkerIds() {
		if w := x.s.worker(id); w != nil && w.State != api.WorkerState_LIVE {
			x.s.workers.Delete(w)
		}
	}
	return nil
}

// Reads. Records are immutable, so they may be used after the lock is
// released.

// view runs f with the state read-locked.
func (f *FSM) view(fn func(s *state)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fn(f.st)
}

// Job returns job id, or nil.
func (f *FSM) Job(id int64) *jobRec {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.job(id)
}

func (f *FSM) task(k taskKey) *taskRec {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.task(k)
}

func (f *FSM) worker(id int64) *workerRec {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.worker(id)
}

func (f *FSM) jobByRequest(rid string) (int64, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	id, ok := f.st.byRequest[rid]
	return id, ok
}

// AppliedIndex is the raft index of the last entry applied.
func (f *FSM) AppliedIndex() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.index
}
