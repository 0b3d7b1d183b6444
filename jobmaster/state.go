package jobmaster

import (
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/google/btree"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/plans"
)

// The FSM's state lives in copy-on-write B-trees of immutable records: a
// record is never changed once it is in a tree, a change inserts a modified
// copy. A snapshot is then an O(1) Clone of the trees that is written out
// while the FSM goes on applying, and a reader may keep a record it got
// without holding the lock.

// maxFailedPaths bounds the failed paths a job keeps (FailedCount counts all).
const maxFailedPaths = 1000

type taskKey struct{ job, task int64 }

func (a taskKey) less(b taskKey) bool {
	if a.job != b.job {
		return a.job < b.job
	}
	return a.task < b.task
}

// jobRec is a job as the FSM holds it.
type jobRec struct {
	ID           int64
	Plan         string
	PlanVersion  string // a plugin plan's version at submit; "": built in
	Config       string
	Limits       *api.JobLimits // what the scheduler enforces (plans/spec); never changed
	Submitter    string
	RunAs        string // the user its work acts for; "": the system identity
	RequestID    string
	Policy       string
	Status       api.JobInfo_Status
	Error        string
	CreatedMs    int64
	UpdatedMs    int64
	FinishedMs   int64
	TasksTotal   int64
	TasksDone    int64
	TasksFailed  int64
	TasksRunning int64
	BytesTotal   int64
	BytesDone    int64
	FilesTotal   int64
	FilesSkipped int64
	BytesSkipped int64
	Deletes      int64
	PlanningDone bool
	Cursor       []byte
	Round        int32
	NextTaskID   int64
	Outstanding  int64 // tasks not ended
	RoundFailed  int64 // tasks (and planner paths) of this round that failed for good
	Failed       []*api.FailedPath
	FailedCount  int64
	// The pipeline run and step whose attempt the job is (0, "": none).
	PipelineRunID int64
	PipelineStep  string
}

func (j *jobRec) terminal() bool { return terminalJob(j.Status) }

// quiescent: planned out and every task ended, waiting for the finisher.
func (j *jobRec) quiescent() bool {
	return !j.terminal() && j.PlanningDone && j.Outstanding == 0
}

// outcome is how a quiescent job ends when its plan has nothing more to
// do: COMPLETED, or FAILED naming how many of this round's tasks and paths
// failed and the first of them.
func (j *jobRec) outcome() (api.JobInfo_Status, string) {
	if j.RoundFailed == 0 {
		return api.JobInfo_COMPLETED, ""
	}
	msg := fmt.Sprintf("%d task(s) or path(s) failed", j.RoundFailed)
	if len(j.Failed) > 0 {
		msg += fmt.Sprintf("; first: %s: %s", j.Failed[0].GetPath(), j.Failed[0].GetError())
	}
	return api.JobInfo_FAILED, msg
}

func terminalJob(s api.JobInfo_Status) bool {
	return s == api.JobInfo_COMPLETED || s == api.JobInfo_FAILED || s == api.JobInfo_CANCELED
}

func (j *jobRec) addFailed(fs ...*api.FailedPath) {
	if len(fs) == 0 {
		return
	}
	j.FailedCount += int64(len(fs))
	room := maxFailedPaths - len(j.Failed)
	if room <= 0 {
		return
	}
	if len(fs) > room {
		fs = fs[:room]
	}
	// Clip: the old version of the record may share the backing array.
	j.Failed = append(slices.Clip(j.Failed), fs...)
}

// taskRec is a task as the FSM holds it.
type taskRec struct {
	JobID        int64
	TaskID       int64
	Status       api.TaskInfo_Status
	Attempt      int32
	WorkerID     int64
	Error        string
	BytesTotal   int64
	BytesDone    int64
	Args         []byte // dropped once COMPLETED: nobody needs them then
	Desc         string
	UpdatedMs    int64
	DispatchedMs int64
	BWID         int64  // block worker the data goes to
	BWAddr       string // its address
	Failed       []*api.FailedPath
	Result       []byte // what the last ended attempt reported (plan-specific JSON)
}

func (t *taskRec) key() taskKey { return taskKey{t.JobID, t.TaskID} }

func terminalTask(s api.TaskInfo_Status) bool {
	return s == api.TaskInfo_COMPLETED || s == api.TaskInfo_FAILED || s == api.TaskInfo_CANCELED
}

// workerRec is a registered job worker.
type workerRec struct {
	ID       int64
	Address  string
	Host     string
	BWID     int64
	BWAddr   string
	Threads  int32
	Capacity int32
	// RemoteCapacity is how many remote plans' tasks it runs at once
	// beside Capacity (0: they count against Capacity).
	RemoteCapacity int32
	State          api.WorkerState
	UpdatedMs      int64           // registered or lost
	Plans          []*api.PlanInfo // the plans it runs, as it registered
	Instance       string          // the registering process's (RegisterJobWorkerRequest.instance)
}

// lists says whether w named plan at its registration (an older worker
// names none: it runs the built-in plans of its build).
func (w *workerRec) lists(plan string) bool {
	if len(w.Plans) == 0 {
		return true
	}
	for _, p := range w.Plans {
		if p.GetName() == plan {
			return true
		}
	}
	return false
}

// runs says whether w runs plan at version ("": a built-in plan, which
// every job worker runs).
func (w *workerRec) runs(plan, version string) bool {
	if version == "" {
		return true
	}
	for _, p := range w.Plans {
		if p.GetName() == plan && p.GetVersion() == version {
			return true
		}
	}
	return false
}

// state is everything the FSM replicates, plus indexes derived from it.
type state struct {
	jobs     *btree.BTreeG[*jobRec]
	tasks    *btree.BTreeG[*taskRec]
	workers  *btree.BTreeG[*workerRec]
	policies *btree.BTreeG[*api.PolicyInfo]
	// pipelines are the pipeline runs (pipeline_fsm.go), by id.
	pipelines *btree.BTreeG[*api.PipelineRun]
	peers     map[string]*api.SetPeerCommand // raft members added at run time, by id; entries never change in place

	nextJobID    int64
	nextWorkerID int64
	nextPipeline int64
	index        uint64 // raft index of the last applied entry

	// Derived, rebuilt on restore, never snapshotted.
	byRequest map[string]int64 // request id → job id
	// pipelineByRequest: a run's request id → run id.
	pipelineByRequest map[string]int64
	running           map[int64]map[taskKey]struct{} // worker id → its RUNNING tasks
	// liveByAddr: a LIVE job worker's address → its id (a registration
	// replaces the LIVE worker at its address without a pass over all).
	liveByAddr map[string]int64
	// unfinished counts the jobs that have not ended by the user they run
	// as (jobmaster.job.max-in-flight-per-user; "" the system identity).
	unfinished map[string]int

	// Probes for lookups by key (job, task): a B-tree Get takes a record,
	// and a fresh one (~350 bytes, zeroed) for every lookup was ~2% of the
	// job master's CPU at thousands of tiny jobs a second. Only their keys
	// are ever set. The worker lookup is every job worker's every poll
	// (10,000 a second at the scale run's fleet).
	jobProbes, taskProbes, workerProbes sync.Pool
}

const btreeDegree = 32

func newState() *state {
	return &state{
		jobs:              btree.NewG(btreeDegree, func(a, b *jobRec) bool { return a.ID < b.ID }),
		tasks:             btree.NewG(btreeDegree, func(a, b *taskRec) bool { return a.key().less(b.key()) }),
		workers:           btree.NewG(btreeDegree, func(a, b *workerRec) bool { return a.ID < b.ID }),
		policies:          btree.NewG(btreeDegree, func(a, b *api.PolicyInfo) bool { return a.GetName() < b.GetName() }),
		pipelines:         btree.NewG(btreeDegree, func(a, b *api.PipelineRun) bool { return a.GetId() < b.GetId() }),
		peers:             map[string]*api.SetPeerCommand{},
		nextJobID:         1,
		nextWorkerID:      1,
		nextPipeline:      1,
		byRequest:         map[string]int64{},
		pipelineByRequest: map[string]int64{},
		running:           map[int64]map[taskKey]struct{}{},
		unfinished:        map[string]int{},
		liveByAddr:        map[string]int64{},
	}
}

// clone returns a snapshot of the replicated part (O(1): lazy B-tree copies).
func (s *state) clone() *state {
	return &state{
		jobs:         s.jobs.Clone(),
		tasks:        s.tasks.Clone(),
		workers:      s.workers.Clone(),
		policies:     s.policies.Clone(),
		pipelines:    s.pipelines.Clone(),
		peers:        maps.Clone(s.peers),
		nextJobID:    s.nextJobID,
		nextWorkerID: s.nextWorkerID,
		nextPipeline: s.nextPipeline,
		index:        s.index,
	}
}

// reindex rebuilds the derived indexes from the trees.
func (s *state) reindex() {
	s.byRequest = map[string]int64{}
	s.running = map[int64]map[taskKey]struct{}{}
	s.pipelineByRequest = map[string]int64{}
	s.pipelines.Ascend(func(r *api.PipelineRun) bool {
		if r.GetRequestId() != "" {
			s.pipelineByRequest[r.GetRequestId()] = r.GetId()
		}
		return true
	})
	s.unfinished = map[string]int{}
	s.jobs.Ascend(func(j *jobRec) bool {
		if j.RequestID != "" {
			s.byRequest[j.RequestID] = j.ID
		}
		s.countUnfinished(nil, j)
		return true
	})
	s.tasks.Ascend(func(t *taskRec) bool {
		if t.Status == api.TaskInfo_RUNNING {
			s.markRunning(t.WorkerID, t.key(), true)
		}
		return true
	})
	s.liveByAddr = map[string]int64{}
	s.workers.Ascend(func(w *workerRec) bool {
		if w.State == api.WorkerState_LIVE {
			s.liveByAddr[w.Address] = w.ID
		}
		return true
	})
}

// countUnfinished keeps unfinished true as job record old (nil: none)
// becomes j (nil: deleted).
func (s *state) countUnfinished(old, j *jobRec) {
	if old != nil && !old.terminal() {
		if s.unfinished[old.RunAs]--; s.unfinished[old.RunAs] <= 0 {
			delete(s.unfinished, old.RunAs)
		}
	}
	if j != nil && !j.terminal() {
		s.unfinished[j.RunAs]++
	}
}

func (s *state) markRunning(worker int64, k taskKey, on bool) {
	m := s.running[worker]
	if on {
		if m == nil {
			m = map[taskKey]struct{}{}
			s.running[worker] = m
		}
		m[k] = struct{}{}
		return
	}
	if m != nil {
		delete(m, k)
		if len(m) == 0 {
			delete(s.running, worker)
		}
	}
}

// runningOn returns the keys of the tasks worker runs, in job and task
// order.
func (s *state) runningOn(worker int64) []taskKey {
	keys := make([]taskKey, 0, len(s.running[worker]))
	for k := range s.running[worker] {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b taskKey) int {
		if a.less(b) {
			return -1
		}
		if b.less(a) {
			return 1
		}
		return 0
	})
	return keys
}

func (s *state) job(id int64) *jobRec {
	return lookup(&s.jobProbes, s.jobs, func(p *jobRec) { p.ID = id })
}

func (s *state) task(k taskKey) *taskRec {
	return lookup(&s.taskProbes, s.tasks, func(p *taskRec) { p.JobID, p.TaskID = k.job, k.task })
}

func (s *state) worker(id int64) *workerRec {
	return lookup(&s.workerProbes, s.workers, func(p *workerRec) { p.ID = id })
}

// lookup is the record of tree whose key setKey writes into a probe taken
// from pool (and given back): only a probe's key is ever set.
func lookup[T any](pool *sync.Pool, tree *btree.BTreeG[*T], setKey func(*T)) *T {
	probe, _ := pool.Get().(*T)
	if probe == nil {
		probe = new(T)
	}
	setKey(probe)
	r, _ := tree.Get(probe)
	pool.Put(probe)
	return r
}

// jobTasks calls f for each task of job in task-id order until f is false.
func (s *state) jobTasks(job int64, f func(*taskRec) bool) {
	s.tasks.AscendRange(&taskRec{JobID: job, TaskID: 0}, &taskRec{JobID: job + 1, TaskID: 0}, f)
}

// Conversions to the api types.

func (j *jobRec) info() *api.JobInfo {
	return &api.JobInfo{
		Id: j.ID, Plan: j.Plan, ConfigJson: j.Config, Limits: j.Limits, Submitter: j.Submitter, RunAs: j.RunAs, Status: j.Status,
		TasksTotal: j.TasksTotal, TasksDone: j.TasksDone, TasksFailed: j.TasksFailed,
		BytesTotal: j.BytesTotal, BytesDone: j.BytesDone, Error: j.Error,
		CreatedMs: j.CreatedMs, UpdatedMs: j.UpdatedMs, FinishedMs: j.FinishedMs,
		PlanningDone: j.PlanningDone, RequestId: j.RequestID, Failed: j.Failed,
		Policy: j.Policy, TasksRunning: j.TasksRunning, Round: j.Round, PlanVersion: j.PlanVersion,
		PipelineRunId: j.PipelineRunID, PipelineStep: j.PipelineStep,
		FilesTotal: j.FilesTotal, FilesSkipped: j.FilesSkipped, BytesSkipped: j.BytesSkipped, Deletes: j.Deletes,
	}
}

// planJob is what the job's plan sees of it.
func (j *jobRec) planJob() plans.Job {
	return plans.Job{ID: j.ID, Config: []byte(j.Config), Cursor: j.Cursor, Round: j.Round, RoundFailed: j.RoundFailed,
		Tasks: j.TasksTotal, CreatedMs: j.CreatedMs, Deletes: j.Deletes}
}

func (t *taskRec) info(workers func(int64) *workerRec) *api.TaskInfo {
	ti := &api.TaskInfo{
		JobId: t.JobID, TaskId: t.TaskID, WorkerId: t.WorkerID, Status: t.Status, Attempt: t.Attempt,
		Error: t.Error, BytesTotal: t.BytesTotal, BytesDone: t.BytesDone, Args: t.Args,
		Description: t.Desc, UpdatedMs: t.UpdatedMs, Result: t.Result,
	}
	if t.WorkerID != 0 && workers != nil {
		if w := workers(t.WorkerID); w != nil {
			ti.WorkerAddress = w.Address
		}
	}
	return ti
}

func (w *workerRec) info() *api.JobWorkerInfo {
	return &api.JobWorkerInfo{
		Id: w.ID, Address: w.Address, Host: w.Host, BlockWorkerId: w.BWID, BlockWorkerAddress: w.BWAddr,
		Threads: w.Threads, Capacity: w.Capacity, State: w.State, LastHeartbeatMs: w.UpdatedMs, Plans: w.Plans,
		Instance: w.Instance, RemoteCapacity: w.RemoteCapacity,
	}
}

// Snapshot records.

// The state's snapshot records (snapshot.go): jobs, tasks and job workers.
var (
	_ = registerSnapshotRecord(api.JobSnapshotRecordType_SNAPSHOT_JOB,
		func(st *state, emit func(*api.JobRecord) error) error {
			return ascendEmit(st.jobs, (*jobRec).record, emit)
		},
		func(st *state, m *api.JobRecord) { st.jobs.ReplaceOrInsert(jobFromRecord(m)) })
	_ = registerSnapshotRecord(api.JobSnapshotRecordType_SNAPSHOT_TASK,
		func(st *state, emit func(*api.TaskRecord) error) error {
			return ascendEmit(st.tasks, (*taskRec).record, emit)
		},
		func(st *state, m *api.TaskRecord) { st.tasks.ReplaceOrInsert(taskFromRecord(m)) })
	_ = registerSnapshotRecord(api.JobSnapshotRecordType_SNAPSHOT_WORKER,
		func(st *state, emit func(*api.JobWorkerInfo) error) error {
			return ascendEmit(st.workers, (*workerRec).info, emit)
		},
		func(st *state, m *api.JobWorkerInfo) { st.workers.ReplaceOrInsert(workerFromInfo(m)) })
)

func (j *jobRec) record() *api.JobRecord {
	return &api.JobRecord{
		Info: j.info(), Cursor: j.Cursor, Round: j.Round, NextTaskId: j.NextTaskID,
		Outstanding: j.Outstanding, RoundFailed: j.RoundFailed, FailedCount: j.FailedCount,
	}
}

func jobFromRecord(r *api.JobRecord) *jobRec {
	i := r.GetInfo()
	return &jobRec{
		ID: i.GetId(), Plan: i.GetPlan(), PlanVersion: i.GetPlanVersion(), Config: i.GetConfigJson(), Limits: i.GetLimits(), Submitter: i.GetSubmitter(), RunAs: i.GetRunAs(),
		RequestID: i.GetRequestId(), Policy: i.GetPolicy(), Status: i.GetStatus(), Error: i.GetError(),
		CreatedMs: i.GetCreatedMs(), UpdatedMs: i.GetUpdatedMs(), FinishedMs: i.GetFinishedMs(),
		TasksTotal: i.GetTasksTotal(), TasksDone: i.GetTasksDone(), TasksFailed: i.GetTasksFailed(),
		TasksRunning: i.GetTasksRunning(), BytesTotal: i.GetBytesTotal(), BytesDone: i.GetBytesDone(),
		PlanningDone: i.GetPlanningDone(), Cursor: r.GetCursor(), Round: r.GetRound(),
		NextTaskID: r.GetNextTaskId(), Outstanding: r.GetOutstanding(), RoundFailed: r.GetRoundFailed(),
		Failed: i.GetFailed(), FailedCount: r.GetFailedCount(),
		PipelineRunID: i.GetPipelineRunId(), PipelineStep: i.GetPipelineStep(),
		FilesTotal: i.GetFilesTotal(), FilesSkipped: i.GetFilesSkipped(), BytesSkipped: i.GetBytesSkipped(), Deletes: i.GetDeletes(),
	}
}

func (t *taskRec) record() *api.TaskRecord {
	return &api.TaskRecord{
		Info: t.info(nil), BlockWorkerId: t.BWID, BlockWorkerAddress: t.BWAddr,
		Failed: t.Failed, DispatchedMs: t.DispatchedMs,
	}
}

func taskFromRecord(r *api.TaskRecord) *taskRec {
	i := r.GetInfo()
	return &taskRec{
		JobID: i.GetJobId(), TaskID: i.GetTaskId(), Status: i.GetStatus(), Attempt: i.GetAttempt(),
		WorkerID: i.GetWorkerId(), Error: i.GetError(), BytesTotal: i.GetBytesTotal(), BytesDone: i.GetBytesDone(),
		Args: i.GetArgs(), Desc: i.GetDescription(), UpdatedMs: i.GetUpdatedMs(), DispatchedMs: r.GetDispatchedMs(),
		BWID: r.GetBlockWorkerId(), BWAddr: r.GetBlockWorkerAddress(), Failed: r.GetFailed(), Result: i.GetResult(),
	}
}

func workerFromInfo(i *api.JobWorkerInfo) *workerRec {
	return &workerRec{
		ID: i.GetId(), Address: i.GetAddress(), Host: i.GetHost(), BWID: i.GetBlockWorkerId(),
		BWAddr: i.GetBlockWorkerAddress(), Threads: i.GetThreads(), Capacity: i.GetCapacity(), State: i.GetState(),
		UpdatedMs: i.GetLastHeartbeatMs(), Plans: i.GetPlans(), Instance: i.GetInstance(),
		RemoteCapacity: i.GetRemoteCapacity(),
	}
}
