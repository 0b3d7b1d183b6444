package jobmaster

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/alluvium/alluvium/api"
)

// fsmT drives an FSM directly with encoded commands, as raft would.
type fsmT struct {
	t     *testing.T
	f     *FSM
	index uint64
	evs   []*events
}

func newFSMT(t *testing.T) *fsmT {
	ft := &fsmT{t: t, f: NewFSM(nil)}
	ft.f.setHook(func(e *events) { ft.evs = append(ft.evs, e) })
	return ft
}

func (ft *fsmT) apply(m proto.Message) any {
	ft.t.Helper()
	buf, err := encodeCommand(m)
	if err != nil {
		ft.t.Fatal(err)
	}
	ft.index++
	return ft.f.Apply(&raft.Log{Index: ft.index, Term: 1, Type: raft.LogCommand, Data: buf})
}

func (ft *fsmT) submit(rid string) int64 {
	ft.t.Helper()
	r, ok := ft.apply(&api.SubmitJobCommand{Plan: "load", ConfigJson: `{"path":"/a"}`, RequestId: rid, NowMs: 1000}).(submitResult)
	if !ok {
		ft.t.Fatal("submit: unexpected response")
	}
	return r.id
}

func (ft *fsmT) plan(job int64, n int, done bool) {
	ft.t.Helper()
	j := ft.f.Job(job)
	cmd := &api.PlanTasksCommand{JobId: job, FirstTaskId: j.NextTaskID, Round: j.Round, PlanningDone: done, Cursor: []byte(fmt.Sprintf("c%d", j.NextTaskID+int64(n))), NowMs: 2000}
	for i := 0; i < n; i++ {
		cmd.Tasks = append(cmd.Tasks, &api.PlannedTask{Args: []byte("{}"), Description: fmt.Sprintf("/a/f%d", i), BytesTotal: 100, BlockWorkerId: 7, BlockWorkerAddress: "bw:1"})
	}
	if err, _ := ft.apply(cmd).(error); err != nil {
		ft.t.Fatal(err)
	}
}

func (ft *fsmT) register(addr string) int64 {
	ft.t.Helper()
	r, ok := ft.apply(&api.RegisterWorkerCommand{Address: addr, Host: "h", Threads: 4, MaxAttempts: 2, NowMs: 3000}).(registerResult)
	if !ok {
		ft.t.Fatal("register: unexpected response")
	}
	return r.id
}

func (ft *fsmT) update(trs ...*api.TaskTransition) {
	ft.t.Helper()
	ft.apply(&api.UpdateTasksCommand{Transitions: trs, MaxAttempts: 2, NowMs: 4000})
}

func tr(job, task int64, attempt int32, kind api.TaskTransition_Kind, worker int64) *api.TaskTransition {
	return &api.TaskTransition{JobId: job, TaskId: task, Attempt: attempt, Kind: kind, WorkerId: worker, Error: "boom"}
}

func TestFSMSubmitIsIdempotentOnRequestID(t *testing.T) {
	ft := newFSMT(t)
	a := ft.submit("r1")
	r := ft.apply(&api.SubmitJobCommand{Plan: "load", ConfigJson: `{}`, RequestId: "r1"}).(submitResult)
	if r.id != a || !r.existed {
		t.Fatalf("second submit with the same request id: got %+v, want job %d existed", r, a)
	}
	b := ft.submit("r2")
	c := ft.submit("")
	if b == a || c == b {
		t.Fatalf("distinct submits got ids %d %d %d", a, b, c)
	}
	if j := ft.f.Job(a); j.Status != api.JobInfo_CREATED || j.RequestID != "r1" || j.CreatedMs != 1000 {
		t.Fatalf("job %+v", j)
	}
}

func TestFSMPlanTasksAppendsWithCursorAndRejectsStaleBatches(t *testing.T) {
	ft := newFSMT(t)
	id := ft.submit("")
	ft.plan(id, 3, false)
	j := ft.f.Job(id)
	if j.Status != api.JobInfo_RUNNING || j.TasksTotal != 3 || j.NextTaskID != 4 || j.BytesTotal != 300 || string(j.Cursor) != "c4" || j.Outstanding != 3 {
		t.Fatalf("after first batch: %+v", j)
	}
	// A replayed batch (same first task id) changes nothing.
	err, _ := ft.apply(&api.PlanTasksCommand{JobId: id, FirstTaskId: 1, Tasks: []*api.PlannedTask{{}}}).(error)
	if !errors.Is(err, errStale) {
		t.Fatalf("replayed batch: err %v, want errStale", err)
	}
	ft.plan(id, 2, true)
	j = ft.f.Job(id)
	if j.TasksTotal != 5 || !j.PlanningDone {
		t.Fatalf("after last batch: %+v", j)
	}
	if t5 := ft.f.task(taskKey{id, 5}); t5 == nil || t5.Status != api.TaskInfo_PENDING || t5.Attempt != 1 || t5.BWAddr != "bw:1" {
		t.Fatalf("task 5: %+v", t5)
	}
	// Planning after done is stale too.
	err, _ = ft.apply(&api.PlanTasksCommand{JobId: id, FirstTaskId: 6, Tasks: []*api.PlannedTask{{}}}).(error)
	if !errors.Is(err, errStale) {
		t.Fatalf("batch after planning done: %v", err)
	}
}

func TestFSMTaskLifecycle(t *testing.T) {
	ft := newFSMT(t)
	id := ft.submit("")
	ft.plan(id, 3, true)
	w := ft.register("w:1")
	ft.update(tr(id, 1, 1, api.TaskTransition_DISPATCH, w), tr(id, 2, 1, api.TaskTransition_DISPATCH, w), tr(id, 3, 1, api.TaskTransition_DISPATCH, w))
	j := ft.f.Job(id)
	if j.TasksRunning != 3 {
		t.Fatalf("running %d, want 3", j.TasksRunning)
	}
	p := tr(id, 1, 1, api.TaskTransition_PROGRESS, w)
	p.BytesDone = 40
	ft.update(p)
	if j = ft.f.Job(id); j.BytesDone != 40 {
		t.Fatalf("bytes done %d after progress, want 40", j.BytesDone)
	}
	// Task 1 completes; task 2 fails once (retried), then again (FAILED at
	// max attempts 2); a stale failure of attempt 1 of task 3 after it was
	// dispatched again is ignored.
	f2 := tr(id, 2, 1, api.TaskTransition_FAIL, w)
	f2.Failed = []*api.FailedPath{{Path: "/a/f1", Error: "disk"}}
	ft.update(tr(id, 1, 1, api.TaskTransition_COMPLETE, w), f2)
	if t2 := ft.f.task(taskKey{id, 2}); t2.Status != api.TaskInfo_PENDING || t2.Attempt != 2 || t2.WorkerID != 0 {
		t.Fatalf("task 2 after first failure: %+v", t2)
	}
	ft.update(tr(id, 2, 2, api.TaskTransition_DISPATCH, w), tr(id, 2, 1, api.TaskTransition_FAIL, w))
	if t2 := ft.f.task(taskKey{id, 2}); t2.Status != api.TaskInfo_RUNNING || t2.Attempt != 2 {
		t.Fatalf("stale failure changed task 2: %+v", t2)
	}
	ft.update(tr(id, 2, 2, api.TaskTransition_TIMEOUT, w))
	t2 := ft.f.task(taskKey{id, 2})
	if t2.Status != api.TaskInfo_FAILED {
		t.Fatalf("task 2 after second failure: %+v", t2)
	}
	j = ft.f.Job(id)
	if j.TasksDone != 1 || j.TasksFailed != 1 || j.TasksRunning != 1 || j.Outstanding != 1 || j.BytesDone != 100 || j.RoundFailed != 1 {
		t.Fatalf("job counters: %+v", j)
	}
	if len(j.Failed) != 1 || j.Failed[0].Path != "/a/f1" {
		t.Fatalf("failed paths %v", j.Failed)
	}
	// A success from an old attempt still counts (tasks are idempotent).
	ft.update(tr(id, 3, 7, api.TaskTransition_COMPLETE, w))
	j = ft.f.Job(id)
	if !j.quiescent() || j.TasksDone != 2 || j.TasksRunning != 0 {
		t.Fatalf("job should be quiescent: %+v", j)
	}
	if len(ft.f.st.running[w]) != 0 {
		t.Fatalf("running index still has %v", ft.f.st.running[w])
	}
	if c := ft.f.task(taskKey{id, 1}); c.Args != nil || c.BytesDone != 100 {
		t.Fatalf("completed task keeps args or wrong bytes: %+v", c)
	}
}

func TestFSMDispatchToLostWorkerLeavesTaskPending(t *testing.T) {
	ft := newFSMT(t)
	id := ft.submit("")
	ft.plan(id, 1, true)
	ft.evs = nil
	ft.update(tr(id, 1, 1, api.TaskTransition_DISPATCH, 99))
	if tk := ft.f.task(taskKey{id, 1}); tk.Status != api.TaskInfo_PENDING {
		t.Fatalf("dispatch to unknown worker: %+v", tk)
	}
	if len(ft.evs) != 1 || len(ft.evs[0].tasks) != 1 || ft.evs[0].tasks[0].status != api.TaskInfo_PENDING {
		t.Fatalf("want one PENDING event so the leader places it again, got %+v", ft.evs)
	}
}

func TestFSMWorkerLostRequeuesItsTasks(t *testing.T) {
	ft := newFSMT(t)
	id := ft.submit("")
	ft.plan(id, 2, true)
	w1, w2 := ft.register("w:1"), ft.register("w:2")
	ft.update(tr(id, 1, 1, api.TaskTransition_DISPATCH, w1), tr(id, 2, 1, api.TaskTransition_DISPATCH, w2))
	ft.apply(&api.WorkerLostCommand{WorkerId: w1, MaxAttempts: 3, NowMs: 5000})
	if w := ft.f.worker(w1); w.State != api.WorkerState_LOST {
		t.Fatalf("worker 1: %+v", w)
	}
	t1, t2 := ft.f.task(taskKey{id, 1}), ft.f.task(taskKey{id, 2})
	if t1.Status != api.TaskInfo_PENDING || t1.Attempt != 2 || !strings.Contains(t1.Error, "w:1") {
		t.Fatalf("task of the lost worker: %+v", t1)
	}
	if t2.Status != api.TaskInfo_RUNNING {
		t.Fatalf("task of the live worker: %+v", t2)
	}
	// Losing it again is stale.
	if err, _ := ft.apply(&api.WorkerLostCommand{WorkerId: w1, MaxAttempts: 3}).(error); !errors.Is(err, errStale) {
		t.Fatalf("second loss: %v", err)
	}
	// With one attempt allowed, losing the worker fails the task.
	ft.apply(&api.WorkerLostCommand{WorkerId: w2, MaxAttempts: 1, NowMs: 6000})
	if t2 = ft.f.task(taskKey{id, 2}); t2.Status != api.TaskInfo_FAILED {
		t.Fatalf("task 2 with max attempts 1: %+v", t2)
	}
}

func TestFSMRegisterAtSameAddressReplacesOldWorker(t *testing.T) {
	ft := newFSMT(t)
	id := ft.submit("")
	ft.plan(id, 1, true)
	w1 := ft.register("w:1")
	ft.update(tr(id, 1, 1, api.TaskTransition_DISPATCH, w1))
	w2 := ft.register("w:1")
	if w2 == w1 || ft.f.worker(w1).State != api.WorkerState_LOST || ft.f.worker(w2).State != api.WorkerState_LIVE {
		t.Fatalf("re-registration: old %+v new %+v", ft.f.worker(w1), ft.f.worker(w2))
	}
	if tk := ft.f.task(taskKey{id, 1}); tk.Status != api.TaskInfo_PENDING || tk.Attempt != 2 {
		t.Fatalf("task of the replaced worker: %+v", tk)
	}
}

func TestFSMCancelEndsJobAndTasks(t *testing.T) {
	ft := newFSMT(t)
	id := ft.submit("")
	ft.plan(id, 3, false)
	w := ft.register("w:1")
	ft.update(tr(id, 1, 1, api.TaskTransition_DISPATCH, w), tr(id, 2, 1, api.TaskTransition_COMPLETE, 0))
	ft.evs = nil
	ft.apply(&api.CancelJobCommand{JobId: id, Reason: "canceled by user", NowMs: 9000})
	j := ft.f.Job(id)
	if j.Status != api.JobInfo_CANCELED || j.FinishedMs != 9000 || j.Outstanding != 0 || j.TasksRunning != 0 || j.Error != "canceled by user" {
		t.Fatalf("canceled job: %+v", j)
	}
	n := 0
	for _, e := range ft.evs {
		for _, te := range e.tasks {
			if te.status == api.TaskInfo_CANCELED {
				n++
			}
		}
	}
	if n != 2 {
		t.Fatalf("%d CANCELED task events, want 2 (the running and the pending task)", n)
	}
	if tk := ft.f.task(taskKey{id, 2}); tk.Status != api.TaskInfo_COMPLETED {
		t.Fatalf("completed task changed by cancel: %+v", tk)
	}
	// Nothing moves a canceled job.
	ft.update(tr(id, 1, 1, api.TaskTransition_COMPLETE, w))
	if j2 := ft.f.Job(id); j2.TasksDone != j.TasksDone {
		t.Fatalf("update applied to a canceled job")
	}
	if len(ft.f.st.running[w]) != 0 {
		t.Fatalf("running index not cleared")
	}
}

func TestFSMFinishNextRoundAbort(t *testing.T) {
	ft := newFSMT(t)
	id := ft.submit("")
	ft.plan(id, 1, true)
	if err, _ := ft.apply(&api.FinishJobCommand{JobId: id, Status: api.JobInfo_COMPLETED}).(error); !errors.Is(err, errStale) {
		t.Fatalf("finish with a task outstanding: %v", err)
	}
	ft.update(tr(id, 1, 1, api.TaskTransition_COMPLETE, 0))
	if err, _ := ft.apply(&api.NextRoundCommand{JobId: id, Round: 1, NowMs: 1}).(error); err != nil {
		t.Fatal(err)
	}
	j := ft.f.Job(id)
	if j.Round != 1 || j.PlanningDone || j.Cursor != nil {
		t.Fatalf("after next round: %+v", j)
	}
	ft.plan(id, 0, true)
	if err, _ := ft.apply(&api.FinishJobCommand{JobId: id, Status: api.JobInfo_COMPLETED, NowMs: 77}).(error); err != nil {
		t.Fatal(err)
	}
	if j = ft.f.Job(id); j.Status != api.JobInfo_COMPLETED || j.FinishedMs != 77 {
		t.Fatalf("finished: %+v", j)
	}
	id2 := ft.submit("")
	ft.plan(id2, 2, false)
	ft.apply(&api.FinishJobCommand{JobId: id2, Abort: true, Error: "planning: gone"})
	if j = ft.f.Job(id2); j.Status != api.JobInfo_FAILED || j.Error != "planning: gone" || j.Outstanding != 0 {
		t.Fatalf("aborted: %+v", j)
	}
}

func TestFSMDeleteJobsAndPolicies(t *testing.T) {
	ft := newFSMT(t)
	a := ft.submit("ra")
	ft.plan(a, 2, true)
	b := ft.submit("rb")
	ft.apply(&api.CancelJobCommand{JobId: a})
	w := ft.register("w:1")
	ft.apply(&api.WorkerLostCommand{WorkerId: w, MaxAttempts: 1})
	ft.apply(&api.DeleteJobsCommand{JobIds: []int64{a, b}, WorkerIds: []int64{w}})
	if ft.f.Job(a) != nil || ft.f.task(taskKey{a, 1}) != nil {
		t.Fatal("finished job or its tasks not deleted")
	}
	if ft.f.Job(b) == nil {
		t.Fatal("unfinished job deleted")
	}
	if _, ok := ft.f.jobByRequest("ra"); ok {
		t.Fatal("request id of a deleted job still known")
	}
	if ft.f.worker(w) != nil {
		t.Fatal("lost worker not deleted")
	}
	ft.apply(&api.PutPolicyCommand{Policy: &api.PolicyInfo{Name: "nightly", Cron: "0 3 * * *", Plan: "load", ConfigJson: `{"path":"/"}`, Enabled: true}})
	var n int
	ft.f.view(func(s *state) { n = s.policies.Len() })
	if n != 1 {
		t.Fatalf("%d policies", n)
	}
	if err, _ := ft.apply(&api.DeletePolicyCommand{Name: "nope"}).(error); err == nil {
		t.Fatal("deleting an unknown policy succeeded")
	}
	ft.apply(&api.DeletePolicyCommand{Name: "nightly"})
	ft.f.view(func(s *state) { n = s.policies.Len() })
	if n != 0 {
		t.Fatal("policy not deleted")
	}
}

func TestFSMUnknownCommands(t *testing.T) {
	f := NewFSM(nil)
	if r := f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: []byte{0x80 | 100, 1, 2}}); r != nil {
		t.Fatalf("ignorable unknown command: %v", r)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("an unknown, non-ignorable command must stop the FSM")
		}
	}()
	f.Apply(&raft.Log{Index: 2, Type: raft.LogCommand, Data: []byte{100, 1, 2}})
}

// memSink is a raft.SnapshotSink over a buffer.
type memSink struct {
	bytes.Buffer
	canceled bool
}

func (m *memSink) ID() string    { return "mem" }
func (m *memSink) Cancel() error { m.canceled = true; return nil }
func (m *memSink) Close() error  { return nil }

// dump renders the replicated state canonically, for equality checks.
func dump(f *FSM) string {
	var b strings.Builder
	f.view(func(s *state) {
		fmt.Fprintf(&b, "next job %d worker %d index %d\n", s.nextJobID, s.nextWorkerID, s.index)
		s.jobs.Ascend(func(j *jobRec) bool {
			fmt.Fprintf(&b, "job %s\n", prototext.Format(j.record()))
			return true
		})
		s.tasks.Ascend(func(t *taskRec) bool {
			fmt.Fprintf(&b, "task %s\n", prototext.Format(t.record()))
			return true
		})
		s.workers.Ascend(func(w *workerRec) bool {
			fmt.Fprintf(&b, "worker %s\n", prototext.Format(w.info()))
			return true
		})
		s.policies.Ascend(func(p *api.PolicyInfo) bool {
			fmt.Fprintf(&b, "policy %s\n", prototext.Format(p))
			return true
		})
		s.pipelines.Ascend(func(r *api.PipelineRun) bool {
			fmt.Fprintf(&b, "pipeline %s\n", prototext.Format(r))
			return true
		})
		fmt.Fprintf(&b, "next pipeline %d, requests %d\n", s.nextPipeline, len(s.pipelineByRequest))
		for _, id := range slices.Sorted(maps.Keys(s.peers)) {
			fmt.Fprintf(&b, "peer %s\n", prototext.Format(s.peers[id]))
		}
		for w, m := range s.running {
			fmt.Fprintf(&b, "running on %d: %d\n", w, len(m))
		}
		fmt.Fprintf(&b, "requests %d\n", len(s.byRequest))
	})
	return b.String()
}

// busyFSM builds a state with every kind of record.
func busyFSM(t *testing.T) *fsmT {
	ft := newFSMT(t)
	a := ft.submit("ra")
	ft.plan(a, 5, false)
	b := ft.submit("rb")
	ft.plan(b, 2, true)
	w := ft.register("w:1")
	ft.register("w:2")
	ft.update(tr(a, 1, 1, api.TaskTransition_DISPATCH, w), tr(a, 2, 1, api.TaskTransition_COMPLETE, 0), tr(a, 3, 1, api.TaskTransition_FAIL, 0))
	ft.apply(&api.CancelJobCommand{JobId: b})
	ft.apply(&api.PutPolicyCommand{Policy: &api.PolicyInfo{Name: "p", Cron: "@hourly", Plan: "load", ConfigJson: "{}", Enabled: true, LastJobId: a}})
	ft.apply(&api.SetPeerCommand{Id: "n3", RaftAddress: "h3:20003", RpcAddress: "h3:20001"})
	ft.apply(&api.SetPeerCommand{Id: "n4", RaftAddress: "h4:20003", RpcAddress: "h4:20001"})
	ft.apply(&api.SetPeerCommand{Id: "n4", Remove: true})
	ft.submitRun("pr", "a", "b")
	return ft
}

func TestFSMSnapshotRestoreGivesEqualState(t *testing.T) {
	ft := busyFSM(t)
	snap, err := ft.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// The FSM goes on changing while the snapshot is written: the snapshot
	// must show the state as of Snapshot().
	want := dump(ft.f)
	ft.submit("later")
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	g := NewFSM(nil)
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if got := dump(g); got != want {
		t.Fatalf("restored state differs:\n--- got\n%s--- want\n%s", got, want)
	}
	// A cut snapshot is refused, not half-loaded.
	for _, n := range []int{0, 3, sink.Len() / 2, sink.Len() - 1} {
		h := NewFSM(nil)
		if err := h.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()[:n]))); err == nil {
			t.Fatalf("snapshot cut at %d of %d bytes restored without error", n, sink.Len())
		}
	}
}

func TestFSMBatchOfUpdatesIsOneEntry(t *testing.T) {
	ft := newFSMT(t)
	id := ft.submit("")
	ft.plan(id, 1000, true)
	w := ft.register("w:1")
	var trs []*api.TaskTransition
	for i := int64(1); i <= 1000; i++ {
		trs = append(trs, tr(id, i, 1, api.TaskTransition_DISPATCH, w), tr(id, i, 1, api.TaskTransition_COMPLETE, w))
	}
	before := ft.index
	ft.update(trs...)
	if ft.index != before+1 {
		t.Fatal("more than one entry")
	}
	j := ft.f.Job(id)
	if j.TasksDone != 1000 || !j.quiescent() {
		t.Fatalf("after one batch of 2000 updates: %+v", j)
	}
}

// A job whose plan has nothing to do at the end (limits ends_with_tasks)
// ends in the entry that ends its last task — COMPLETED, or FAILED naming
// the failures as the finisher would — and one planned out with no task
// ends in its plan entry; a job without it waits, quiescent, for FINISH_JOB.
func TestFSMJobEndsWithItsLastTask(t *testing.T) {
	ft := newFSMT(t)
	submit := func(ends bool) int64 {
		t.Helper()
		r, ok := ft.apply(&api.SubmitJobCommand{Plan: "copy", ConfigJson: `{}`, NowMs: 1000,
			Limits: &api.JobLimits{EndsWithTasks: ends}}).(submitResult)
		if !ok {
			t.Fatal("submit: unexpected response")
		}
		return r.id
	}
	w := ft.register("w:1")
	ok, bad, plain, empty := submit(true), submit(true), submit(false), submit(true)
	for _, id := range []int64{ok, bad, plain} {
		ft.plan(id, 2, true)
		ft.update(tr(id, 1, 1, api.TaskTransition_DISPATCH, w), tr(id, 2, 1, api.TaskTransition_DISPATCH, w))
		ft.update(tr(id, 1, 1, api.TaskTransition_COMPLETE, w))
		if j := ft.f.Job(id); j.terminal() {
			t.Fatalf("job %d ended with a task left: %+v", id, j)
		}
	}
	ft.update(tr(ok, 2, 1, api.TaskTransition_COMPLETE, w),
		&api.TaskTransition{JobId: bad, TaskId: 2, Attempt: 1, Kind: api.TaskTransition_FAIL, Error: "disk full",
			Failed: []*api.FailedPath{{Path: "/a/f1", Error: "disk full"}}},
		tr(plain, 2, 1, api.TaskTransition_COMPLETE, w))
	if j := ft.f.Job(ok); j.Status != api.JobInfo_COMPLETED || j.FinishedMs != 4000 || j.Error != "" {
		t.Fatalf("job whose last task completed: %+v", j)
	}
	// MaxAttempts 2: the first failure runs it again, the second ends it.
	ft.update(tr(bad, 2, 2, api.TaskTransition_DISPATCH, w))
	ft.apply(&api.UpdateTasksCommand{Transitions: []*api.TaskTransition{{JobId: bad, TaskId: 2, Attempt: 2, Kind: api.TaskTransition_FAIL, Error: "disk full",
		Failed: []*api.FailedPath{{Path: "/a/f1", Error: "disk full"}}}}, MaxAttempts: 2, NowMs: 5000})
	if j := ft.f.Job(bad); j.Status != api.JobInfo_FAILED || j.FinishedMs != 5000 || j.Error != "1 task(s) or path(s) failed; first: /a/f1: disk full" {
		t.Fatalf("job whose last task failed: %+v", j)
	}
	if j := ft.f.Job(plain); !j.quiescent() {
		t.Fatalf("a job whose plan has a Done step ended without FINISH_JOB: %+v", j)
	}
	ft.plan(empty, 0, true)
	if j := ft.f.Job(empty); j.Status != api.JobInfo_COMPLETED || j.FinishedMs != 2000 {
		t.Fatalf("a job planned out with no task: %+v", j)
	}
	// The finisher's FINISH_JOB for it, had it been sent, is stale.
	if err, _ := ft.apply(&api.FinishJobCommand{JobId: ok, Status: api.JobInfo_COMPLETED, NowMs: 9}).(error); !errors.Is(err, errStale) {
		t.Fatalf("finish of an ended job: %v", err)
	}
}

// A job planned in its submit entry is the job SUBMIT_JOB + PLAN_TASKS
// would have made; a request id seen before makes nothing.
func TestFSMSubmitPlannedJob(t *testing.T) {
	ft := newFSMT(t)
	planned := func(rid string, tasks int, ends bool) any {
		t.Helper()
		p := &api.PlanTasksCommand{PlanningDone: true, Cursor: []byte("end"), FilesSkipped: 1}
		for i := range tasks {
			p.Tasks = append(p.Tasks, &api.PlannedTask{Args: []byte("{}"), Description: fmt.Sprintf("/a/f%d", i), BytesTotal: 100, Files: 1, BlockWorkerAddress: "bw:1"})
		}
		return ft.apply(&api.SubmitPlannedJobCommand{
			Submit: &api.SubmitJobCommand{Plan: "load", ConfigJson: `{"path":"/a"}`, RequestId: rid, NowMs: 1000, Limits: &api.JobLimits{EndsWithTasks: ends}},
			Plan:   p,
		})
	}
	r, ok := planned("r1", 2, true).(submitResult)
	if !ok || r.existed {
		t.Fatalf("planned submit: %+v", r)
	}
	j := ft.f.Job(r.id)
	if j.Status != api.JobInfo_RUNNING || !j.PlanningDone || j.TasksTotal != 2 || j.Outstanding != 2 || j.NextTaskID != 3 ||
		j.BytesTotal != 200 || j.FilesTotal != 2 || j.FilesSkipped != 1 || string(j.Cursor) != "end" || j.CreatedMs != 1000 {
		t.Fatalf("planned job: %+v", j)
	}
	last := ft.evs[len(ft.evs)-1]
	if len(last.tasks) != 2 || last.tasks[0].status != api.TaskInfo_PENDING || last.tasks[0].bwAddr != "bw:1" || !slices.Equal(last.jobs, []int64{r.id}) {
		t.Fatalf("events of the planned submit: %+v", last)
	}
	// The same request again: the job it made, nothing planned twice.
	again, ok := planned("r1", 2, true).(submitResult)
	if !ok || !again.existed || again.id != r.id {
		t.Fatalf("repeated planned submit: %+v", again)
	}
	if j := ft.f.Job(r.id); j.TasksTotal != 2 || j.NextTaskID != 3 {
		t.Fatalf("a repeated planned submit planned again: %+v", j)
	}
	// Planned out with no task: a job that ends with its tasks ends in
	// its submit entry; another waits for the finisher.
	empty, _ := planned("r2", 0, true).(submitResult)
	if j := ft.f.Job(empty.id); j.Status != api.JobInfo_COMPLETED || j.FinishedMs != 1000 {
		t.Fatalf("an empty planned job that ends with its tasks: %+v", j)
	}
	waits, _ := planned("r3", 0, false).(submitResult)
	if j := ft.f.Job(waits.id); !j.quiescent() {
		t.Fatalf("an empty planned job with a Done step: %+v", j)
	}
}

// The FSM counts each user's unfinished jobs as they are made, end and are
// deleted, and a restored state counts the same.
func TestFSMCountsUnfinishedJobsByUser(t *testing.T) {
	ft := newFSMT(t)
	submit := func(rid, user string) int64 {
		t.Helper()
		r, ok := ft.apply(&api.SubmitJobCommand{Plan: "load", ConfigJson: `{}`, RequestId: rid, RunAs: user, NowMs: 1000}).(submitResult)
		if !ok {
			t.Fatal("submit: unexpected response")
		}
		return r.id
	}
	counts := func(f *FSM) map[string]int {
		var m map[string]int
		f.view(func(st *state) { m = maps.Clone(st.unfinished) })
		return m
	}
	a1, a2 := submit("a1", "alice"), submit("a2", "alice")
	submit("a2", "alice") // the same request: no new job
	b1 := submit("b1", "bob")
	submit("s1", "")
	if got := counts(ft.f); !maps.Equal(got, map[string]int{"alice": 2, "bob": 1, "": 1}) {
		t.Fatalf("after submits: %v", got)
	}
	ft.apply(&api.CancelJobCommand{JobId: a1, NowMs: 2000})
	ft.apply(&api.CancelJobCommand{JobId: a1, NowMs: 2000}) // again: no change
	ft.plan(b1, 0, true)
	ft.apply(&api.FinishJobCommand{JobId: b1, Status: api.JobInfo_COMPLETED, NowMs: 3000})
	if got := counts(ft.f); !maps.Equal(got, map[string]int{"alice": 1, "": 1}) {
		t.Fatalf("after a cancel and a finish: %v", got)
	}
	ft.apply(&api.DeleteJobsCommand{JobIds: []int64{a1, b1, a2}}) // a2 runs: kept
	if got := counts(ft.f); !maps.Equal(got, map[string]int{"alice": 1, "": 1}) {
		t.Fatalf("after deleting ended jobs: %v", got)
	}
	if got := counts(restored(t, ft.f)); !maps.Equal(got, counts(ft.f)) {
		t.Fatalf("restored counts %v, want %v", got, counts(ft.f))
	}
}

// restored is a new FSM restored from a snapshot of f.
func restored(t *testing.T, f *FSM) *FSM {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	g := NewFSM(nil)
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	return g
}

func TestFSMRegisterRetryOfSameInstanceKeepsWorker(t *testing.T) {
	// A registration whose reply timed out at the worker but was applied,
	// retried: the same process (instance) gets its LIVE record back, and
	// what it runs stays running; a new process at the address replaces it.
	ft := newFSMT(t)
	id := ft.submit("")
	ft.plan(id, 1, true)
	reg := func(instance string, now int64) int64 {
		t.Helper()
		r, ok := ft.apply(&api.RegisterWorkerCommand{Address: "w:1", Host: "h", Threads: 4, MaxAttempts: 2, NowMs: now, Instance: instance}).(registerResult)
		if !ok {
			t.Fatal("register: unexpected response")
		}
		return r.id
	}
	w1 := reg("a", 3000)
	ft.update(tr(id, 1, 1, api.TaskTransition_DISPATCH, w1))
	if again := reg("a", 3100); again != w1 || ft.f.worker(w1).State != api.WorkerState_LIVE {
		t.Fatalf("retry of instance a: id %d (first %d), record %+v", again, w1, ft.f.worker(w1))
	}
	if tk := ft.f.task(taskKey{id, 1}); tk.Status != api.TaskInfo_RUNNING || tk.Attempt != 1 {
		t.Fatalf("task of the worker whose registration was retried: %+v", tk)
	}
	// The record's instance survives a snapshot: a follower restored from
	// one must answer the next retry as the leader does.
	if w := restored(t, ft.f).worker(w1); w == nil || w.Instance != "a" {
		t.Fatalf("restored worker record: %+v", w)
	}
	// A restarted process (new instance) replaces its old self.
	w2 := reg("b", 3200)
	if w2 == w1 || ft.f.worker(w1).State != api.WorkerState_LOST || ft.f.worker(w2).State != api.WorkerState_LIVE {
		t.Fatalf("new instance: old %+v new %+v", ft.f.worker(w1), ft.f.worker(w2))
	}
	if tk := ft.f.task(taskKey{id, 1}); tk.Status != api.TaskInfo_PENDING || tk.Attempt != 2 {
		t.Fatalf("task of the replaced worker: %+v", tk)
	}
	// Once LOST, the old instance registering again is a new record too.
	if w3 := reg("a", 3300); w3 == w1 || w3 == w2 || ft.f.worker(w2).State != api.WorkerState_LOST {
		t.Fatalf("instance a after its record was lost: id %d, records %+v %+v", w3, ft.f.worker(w1), ft.f.worker(w2))
	}
}

// Submits that share one SUBMIT_JOBS entry make the jobs each would make
// alone, in order, and each gets its own answer: one's error (a pipeline
// step no longer waiting) leaves the others be.
func TestFSMSubmitJobs(t *testing.T) {
	ft := newFSMT(t)
	old := ft.submit("old") // a job from an entry before
	sub := func(rid string, now int64) *api.SubmitJobCommand {
		return &api.SubmitJobCommand{Plan: "load", ConfigJson: `{"path":"/a"}`, RequestId: rid, NowMs: now, Limits: &api.JobLimits{EndsWithTasks: true}}
	}
	oneTask := func() *api.PlanTasksCommand {
		return &api.PlanTasksCommand{PlanningDone: true, Cursor: []byte("end"),
			Tasks: []*api.PlannedTask{{Args: []byte("{}"), Description: "/a/f", BytesTotal: 100, Files: 1, BlockWorkerAddress: "bw:1"}}}
	}
	stale := sub("p", 1000)
	stale.PipelineRunId, stale.PipelineStep = 99, "s" // no such run
	evs := len(ft.evs)
	res, ok := ft.apply(&api.SubmitJobsCommand{Jobs: []*api.SubmitPlannedJobCommand{
		{Submit: sub("a", 1002), Plan: oneTask()},   // planned in its submit
		{Submit: sub("b", 1001)},                    // left to the planners
		{Submit: sub("a", 1003), Plan: oneTask()},   // the same request again in the entry
		{Submit: stale},                             // its own error
		{Submit: sub("old", 1000), Plan: oneTask()}, // a request of an earlier entry
		{Submit: sub("empty", 1000), Plan: &api.PlanTasksCommand{PlanningDone: true}}, // planned out with no task
	}}).(submitResults)
	if !ok || len(res) != 6 {
		t.Fatalf("SUBMIT_JOBS answered %#v", res)
	}
	a, aok := res[0].(submitResult)
	b, bok := res[1].(submitResult)
	a2, a2ok := res[2].(submitResult)
	o, ook := res[4].(submitResult)
	e, eok := res[5].(submitResult)
	if !aok || !bok || !a2ok || !ook || !eok || a.existed || b.existed || !a2.existed || a2.id != a.id || !o.existed || o.id != old || e.existed {
		t.Fatalf("answers: %#v", res)
	}
	if err, _ := res[3].(error); !errors.Is(err, errStale) {
		t.Fatalf("the stale pipeline submit answered %v", res[3])
	}
	if ids := []int64{a.id, b.id, e.id}; !slices.IsSorted(ids) || a.id <= old {
		t.Fatalf("job ids not given in the entry's order: %v after %d", ids, old)
	}
	if j := ft.f.Job(a.id); j.Status != api.JobInfo_RUNNING || j.TasksTotal != 1 || j.NextTaskID != 2 || j.CreatedMs != 1002 {
		t.Fatalf("planned job: %+v", j)
	}
	if j := ft.f.Job(b.id); j.Status != api.JobInfo_CREATED || j.PlanningDone || j.CreatedMs != 1001 {
		t.Fatalf("unplanned job: %+v", j)
	}
	// Ended in the entry, at the entry's time (its latest submit's), never
	// before it was made.
	if j := ft.f.Job(e.id); j.Status != api.JobInfo_COMPLETED || j.CreatedMs != 1000 || j.FinishedMs != 1003 {
		t.Fatalf("empty job: %+v", j)
	}
	if j := ft.f.Job(old); j.TasksTotal != 0 {
		t.Fatalf("the earlier job was planned by a repeated submit: %+v", j)
	}
	// One change notice for the entry: every job it made, the one task.
	if len(ft.evs) != evs+1 {
		t.Fatalf("%d change notices for one entry", len(ft.evs)-evs)
	}
	if last := ft.evs[len(ft.evs)-1]; !slices.Equal(last.jobs, []int64{a.id, b.id, e.id}) || len(last.tasks) != 1 || last.tasks[0].key != (taskKey{a.id, 1}) {
		t.Fatalf("change notice: %+v", last)
	}
	// A snapshot holds them as if submitted one by one.
	g := restored(t, ft.f)
	for _, rid := range []string{"a", "b", "empty", "old"} {
		id, ok := g.jobByRequest(rid)
		want, _ := ft.f.jobByRequest(rid)
		j, w := g.Job(id), ft.f.Job(want)
		if !ok || id != want || j == nil || j.Status != w.Status || j.TasksTotal != w.TasksTotal || j.CreatedMs != w.CreatedMs || j.FinishedMs != w.FinishedMs {
			t.Fatalf("restored job of request %s: %d %v: %+v", rid, id, ok, j)
		}
	}
	if _, ok := g.jobByRequest("p"); ok {
		t.Fatal("the stale submit made a job")
	}
}

// Entries written before SUBMIT_JOBS existed (a lone submit is still
// written as them) apply as they did, beside it.
func TestFSMSubmitOldCommandsBesideBatch(t *testing.T) {
	ft := newFSMT(t)
	single := ft.submit("s")
	planned, ok := ft.apply(&api.SubmitPlannedJobCommand{
		Submit: &api.SubmitJobCommand{Plan: "load", ConfigJson: `{"path":"/a"}`, RequestId: "p", NowMs: 1000},
		Plan:   &api.PlanTasksCommand{PlanningDone: true, Tasks: []*api.PlannedTask{{Args: []byte("{}"), Description: "/a/f"}}},
	}).(submitResult)
	if !ok {
		t.Fatal("SUBMIT_PLANNED_JOB: unexpected answer")
	}
	res, ok := ft.apply(&api.SubmitJobsCommand{Jobs: []*api.SubmitPlannedJobCommand{
		{Submit: &api.SubmitJobCommand{Plan: "load", ConfigJson: `{}`, RequestId: "s", NowMs: 2000}},
		{Submit: &api.SubmitJobCommand{Plan: "load", ConfigJson: `{}`, RequestId: "n", NowMs: 2000}},
	}}).(submitResults)
	if !ok || res[0] != (submitResult{id: single, existed: true}) || res[1] != (submitResult{id: planned.id + 1}) {
		t.Fatalf("SUBMIT_JOBS after the old commands: %#v", res)
	}
	if again := ft.submit("n"); again != planned.id+1 {
		t.Fatalf("SUBMIT_JOB of a batched request made job %d", again)
	}
	if j := ft.f.Job(planned.id); j.TasksTotal != 1 || j.Status != api.JobInfo_RUNNING {
		t.Fatalf("planned job: %+v", j)
	}
}
