package jobmaster

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"
	"google.golang.org/protobuf/encoding/protodelim"
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
	return &FSM{log: log, st: newState(), changed: make(chan struct{})}
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

func (f *FSM) publish(ev *events) {
	f.changedMu.Lock()
	close(f.changed)
	f.changed = make(chan struct{})
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
	res := f.dispatch(x, t, m)
	x.commit()
	f.st.index = l.Index
	f.mu.Unlock()
	f.applied.Add(1)
	f.publish(x.ev)
	return res
}

func (f *FSM) dispatch(x *tx, t api.JobCommandType, m proto.Message) any {
	switch t {
	case api.JobCommandType_SUBMIT_JOB:
		return x.applySubmit(m.(*api.SubmitJobCommand))
	case api.JobCommandType_PLAN_TASKS:
		return x.applyPlanTasks(m.(*api.PlanTasksCommand))
	case api.JobCommandType_UPDATE_TASKS:
		return x.applyUpdateTasks(m.(*api.UpdateTasksCommand))
	case api.JobCommandType_CANCEL_JOB:
		return x.applyCancel(m.(*api.CancelJobCommand))
	case api.JobCommandType_FINISH_JOB:
		return x.applyFinish(m.(*api.FinishJobCommand))
	case api.JobCommandType_NEXT_ROUND:
		return x.applyNextRound(m.(*api.NextRoundCommand))
	case api.JobCommandType_REGISTER_WORKER:
		return x.applyRegisterWorker(m.(*api.RegisterWorkerCommand))
	case api.JobCommandType_WORKER_LOST:
		return x.applyWorkerLost(m.(*api.WorkerLostCommand))
	case api.JobCommandType_DELETE_JOBS:
		return x.applyDeleteJobs(m.(*api.DeleteJobsCommand))
	case api.JobCommandType_PUT_POLICY:
		return x.applyPutPolicy(m.(*api.PutPolicyCommand))
	case api.JobCommandType_DELETE_POLICY:
		return x.applyDeletePolicy(m.(*api.DeletePolicyCommand))
	case api.JobCommandType_POLICY_LAUNCH:
		return x.applyPolicyLaunch(m.(*api.PolicyLaunchCommand))
	case api.JobCommandType_SET_POLICY_ENABLED:
		return x.applySetPolicyEnabled(m.(*api.SetPolicyEnabledCommand))
	case api.JobCommandType_SET_PEER:
		return x.applySetPeer(m.(*api.SetPeerCommand))
	}
	return fmt.Errorf("%w %d", errUnknownCommand, t)
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
		if j.UpdatedMs < x.now {
			j.UpdatedMs = x.now
		}
		x.s.jobs.ReplaceOrInsert(j)
		ids = append(ids, id)
	}
	slices.Sort(ids)
	x.ev.jobs = append(x.ev.jobs, ids...)
}

func (x *tx) putTask(t *taskRec) {
	x.s.tasks.ReplaceOrInsert(t)
	x.ev.tasks = append(x.ev.tasks, taskEvent{key: t.key(), status: t.Status, attempt: t.Attempt, worker: t.WorkerID, bwID: t.BWID, bwAddr: t.BWAddr})
}

func (x *tx) applySubmit(c *api.SubmitJobCommand) any {
	x.now = c.GetNowMs()
	if rid := c.GetRequestId(); rid != "" {
		if id, ok := x.s.byRequest[rid]; ok {
			x.policyJobSubmitted(c.GetPolicy(), rid, id)
			return submitResult{id: id, existed: true}
		}
	}
	id := x.s.nextJobID
	x.s.nextJobID++
	j := &jobRec{
		ID: id, Plan: c.GetPlan(), Config: c.GetConfigJson(), Limits: c.GetLimits(), Submitter: c.GetSubmitter(), RunAs: c.GetRunAs(),
		RequestID: c.GetRequestId(), Policy: c.GetPolicy(), Status: api.JobInfo_CREATED,
		CreatedMs: x.now, UpdatedMs: x.now, NextTaskID: 1,
	}
	x.jobs[id] = j
	if j.RequestID != "" {
		x.s.byRequest[j.RequestID] = id
	}
	x.policyJobSubmitted(j.Policy, j.RequestID, id)
	return submitResult{id: id}
}

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
	for i, p := range c.GetTasks() {
		t := &taskRec{
			JobID: j.ID, TaskID: c.GetFirstTaskId() + int64(i), Status: api.TaskInfo_PENDING, Attempt: 1,
			BytesTotal: p.GetBytesTotal(), Args: p.GetArgs(), Desc: p.GetDescription(), UpdatedMs: x.now,
			BWID: p.GetBlockWorkerId(), BWAddr: p.GetBlockWorkerAddress(),
		}
		x.putTask(t)
		j.BytesTotal += t.BytesTotal
	}
	n := int64(len(c.GetTasks()))
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
		done := t.BytesTotal
		if done == 0 {
			done = tr.GetBytesDone()
		}
		j.BytesDone += done - t.BytesDone
		t.BytesDone = done
		t.Status = api.TaskInfo_COMPLETED
		t.Error = ""
		t.Args = nil
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

func (x *tx) applyRegisterWorker(c *api.RegisterWorkerCommand) any {
	x.now = c.GetNowMs()
	// A worker registering again at the same address replaces its old self:
	// whatever the old one was running is lost with it.
	var stale []int64
	x.s.workers.Ascend(func(w *workerRec) bool {
		if w.Address == c.GetAddress() && w.State == api.WorkerState_LIVE {
			stale = append(stale, w.ID)
		}
		return true
	})
	for _, id := range stale {
		x.loseWorker(id, c.GetMaxAttempts(), "job worker re-registered")
	}
	id := x.s.nextWorkerID
	x.s.nextWorkerID++
	x.s.workers.ReplaceOrInsert(&workerRec{
		ID: id, Address: c.GetAddress(), Host: c.GetHost(), BWID: c.GetBlockWorkerId(),
		BWAddr: c.GetBlockWorkerAddress(), Threads: c.GetThreads(), Capacity: c.GetCapacity(), State: api.WorkerState_LIVE,
		UpdatedMs: x.now,
	})
	x.ev.workers = append(x.ev.workers, id)
	return registerResult{id: id}
}

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
		delete(x.jobs, id)
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

// Snapshot implements raft.FSM: an O(1) copy-on-write clone.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	c := f.st.clone()
	f.mu.Unlock()
	return &fsmSnapshot{st: c}, nil
}

type fsmSnapshot struct{ st *state }

const snapshotVersion = 1

// Persist writes the header and one record per job, task, worker and
// policy, each a type byte and a length-delimited protobuf.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.write(sink); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *fsmSnapshot) write(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	rec := func(t api.JobSnapshotRecordType, m proto.Message) error {
		if err := bw.WriteByte(byte(t)); err != nil {
			return err
		}
		_, err := protodelim.MarshalTo(bw, m)
		return err
	}
	if _, err := protodelim.MarshalTo(bw, &api.JobSnapshotHeader{
		Version: snapshotVersion, NextJobId: s.st.nextJobID, NextWorkerId: s.st.nextWorkerID, Index: s.st.index,
	}); err != nil {
		return err
	}
	var err error
	s.st.jobs.Ascend(func(j *jobRec) bool { err = rec(api.JobSnapshotRecordType_SNAPSHOT_JOB, j.record()); return err == nil })
	if err != nil {
		return err
	}
	s.st.tasks.Ascend(func(t *taskRec) bool {
		err = rec(api.JobSnapshotRecordType_SNAPSHOT_TASK, t.record())
		return err == nil
	})
	if err != nil {
		return err
	}
	s.st.workers.Ascend(func(w *workerRec) bool {
		err = rec(api.JobSnapshotRecordType_SNAPSHOT_WORKER, w.info())
		return err == nil
	})
	if err != nil {
		return err
	}
	s.st.policies.Ascend(func(p *api.PolicyInfo) bool {
		err = rec(api.JobSnapshotRecordType_SNAPSHOT_POLICY, p)
		return err == nil
	})
	if err != nil {
		return err
	}
	for _, id := range slices.Sorted(maps.Keys(s.st.peers)) {
		if err := rec(api.JobSnapshotRecordType_SNAPSHOT_PEER, s.st.peers[id]); err != nil {
			return err
		}
	}
	if err := rec(api.JobSnapshotRecordType_SNAPSHOT_END, &api.DeletePolicyCommand{}); err != nil {
		return err
	}
	return bw.Flush()
}

// Release implements raft.FSMSnapshot.
func (s *fsmSnapshot) Release() {}

// Restore implements raft.FSM: it replaces the whole state.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	st, err := readSnapshot(rc)
	if err != nil {
		return fmt.Errorf("jobmaster: restore snapshot: %w", err)
	}
	f.mu.Lock()
	f.st = st
	f.mu.Unlock()
	f.restored.Add(1)
	f.publish(nil)
	return nil
}

func readSnapshot(r io.Reader) (*state, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	opts := protodelim.UnmarshalOptions{MaxSize: 64 << 20}
	var h api.JobSnapshotHeader
	if err := opts.UnmarshalFrom(br, &h); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	if h.GetVersion() != snapshotVersion {
		return nil, fmt.Errorf("snapshot version %d, this job master reads %d", h.GetVersion(), snapshotVersion)
	}
	st := newState()
	st.nextJobID, st.nextWorkerID, st.index = h.GetNextJobId(), h.GetNextWorkerId(), h.GetIndex()
	for {
		b, err := br.ReadByte()
		if err != nil {
			return nil, fmt.Errorf("record type: %w (snapshot cut short)", err)
		}
		switch t := api.JobSnapshotRecordType(b); t {
		case api.JobSnapshotRecordType_SNAPSHOT_JOB:
			var m api.JobRecord
			if err := opts.UnmarshalFrom(br, &m); err != nil {
				return nil, fmt.Errorf("job record: %w", err)
			}
			st.jobs.ReplaceOrInsert(jobFromRecord(&m))
		case api.JobSnapshotRecordType_SNAPSHOT_TASK:
			var m api.TaskRecord
			if err := opts.UnmarshalFrom(br, &m); err != nil {
				return nil, fmt.Errorf("task record: %w", err)
			}
			st.tasks.ReplaceOrInsert(taskFromRecord(&m))
		case api.JobSnapshotRecordType_SNAPSHOT_WORKER:
			var m api.JobWorkerInfo
			if err := opts.UnmarshalFrom(br, &m); err != nil {
				return nil, fmt.Errorf("worker record: %w", err)
			}
			st.workers.ReplaceOrInsert(workerFromInfo(&m))
		case api.JobSnapshotRecordType_SNAPSHOT_POLICY:
			var m api.PolicyInfo
			if err := opts.UnmarshalFrom(br, &m); err != nil {
				return nil, fmt.Errorf("policy record: %w", err)
			}
			st.policies.ReplaceOrInsert(&m)
		case api.JobSnapshotRecordType_SNAPSHOT_PEER:
			var m api.SetPeerCommand
			if err := opts.UnmarshalFrom(br, &m); err != nil {
				return nil, fmt.Errorf("peer record: %w", err)
			}
			st.peers[m.GetId()] = &m
		case api.JobSnapshotRecordType_SNAPSHOT_END:
			var m api.DeletePolicyCommand
			if err := opts.UnmarshalFrom(br, &m); err != nil {
				return nil, fmt.Errorf("end record: %w", err)
			}
			st.reindex()
			return st, nil
		default:
			return nil, fmt.Errorf("unknown record type %d", b)
		}
	}
}
