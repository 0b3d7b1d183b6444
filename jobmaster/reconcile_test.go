package jobmaster

import (
	"context"
	"testing"
	"time"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/config"
)

// TestReconcileKeepsTheAttemptAWorkerHolds: a worker can hold two attempts
// of one task — an old attempt's result it has not had acked yet, beside
// the new attempt it runs (after a failover, say). The leader's check for
// hand-outs that never reached the worker must match attempts exactly: it
// used to keep one attempt per task and, seeing the old one, failed the
// running attempt, so a job could FAIL after a partition.
func TestReconcileKeepsTheAttemptAWorkerHolds(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1, nil)
	c.leader()
	cl := c.client(0)
	ctx := context.Background()
	reg, err := cl.RegisterJobWorker(ctx, &api.RegisterJobWorkerRequest{Address: "127.0.0.1:9", Host: "127.0.0.1", Threads: 1, Capacity: 2})
	if err != nil {
		t.Fatal(err)
	}
	poll := func(updates []*api.TaskUpdate, holding ...*api.TaskRef) *api.JobWorkerHeartbeatResponse {
		t.Helper()
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		resp, err := cl.JobWorkerHeartbeat(cctx, &api.JobWorkerHeartbeatRequest{
			WorkerId: reg.GetWorkerId(), FreeSlots: 2, WaitMs: 100, Updates: updates, Holding: holding})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetReregister() {
			t.Fatal("the leader lost the worker")
		}
		return resp
	}
	next := func(updates []*api.TaskUpdate, holding ...*api.TaskRef) *api.TaskAssignment {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if r := poll(updates, holding...); len(r.GetTasks()) > 0 {
				return r.GetTasks()[0]
			}
			updates = nil
		}
		t.Fatal("no task handed out")
		return nil
	}
	id := submitTest(t, cl, testConfig{Tasks: 1, Tag: uniqueTag(t)}, "")
	a1 := next(nil)
	ref1 := &api.TaskRef{JobId: a1.GetJobId(), TaskId: a1.GetTaskId(), Attempt: a1.GetAttempt()}
	// Attempt 1 fails; attempt 2 comes to the same worker, which keeps the
	// unacked result of attempt 1 beside it.
	a2 := next([]*api.TaskUpdate{{JobId: a1.GetJobId(), TaskId: a1.GetTaskId(), Attempt: a1.GetAttempt(), Status: api.TaskInfo_FAILED, Error: "first try"}}, ref1)
	if a2.GetTaskId() != a1.GetTaskId() || a2.GetAttempt() != a1.GetAttempt()+1 {
		t.Fatalf("second hand-out %v after %v", a2, a1)
	}
	ref2 := &api.TaskRef{JobId: a2.GetJobId(), TaskId: a2.GetTaskId(), Attempt: a2.GetAttempt()}
	// Past the grace after which an unheld hand-out counts as lost.
	until := time.Now().Add(lostGrace + time.Second)
	for time.Now().Before(until) {
		poll(nil, ref2, ref1)
	}
	resp, err := cl.GetJob(ctx, &api.GetJobRequest{JobId: id, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range resp.GetJob().GetTasks() {
		if tk.GetStatus() != api.TaskInfo_RUNNING || tk.GetAttempt() != a2.GetAttempt() {
			t.Fatalf("task held by its worker as attempt %d is now %s attempt %d (%s)", a2.GetAttempt(), tk.GetStatus(), tk.GetAttempt(), tk.GetError())
		}
	}
}

// fakeWorker speaks the job worker's protocol by hand, so a test decides
// exactly when it calls. Like a real worker, each poll lists the attempts
// it holds: those handed to it, until it reports their results.
type fakeWorker struct {
	t    *testing.T
	id   int64
	held map[heldRef]bool
}

type heldRef struct {
	job, task int64
	attempt   int32
}

func registerFake(t *testing.T, cl api.JobMasterClient, addr string, capacity int32) *fakeWorker {
	t.Helper()
	var (
		reg *api.RegisterJobWorkerResponse
		err error
	)
	// A leader re-elected under load answers Unavailable meanwhile.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		reg, err = cl.RegisterJobWorker(ctx, &api.RegisterJobWorkerRequest{Address: addr, Host: "127.0.0.1", Threads: 1, Capacity: capacity})
		cancel()
		if err == nil {
			return &fakeWorker{t: t, id: reg.GetWorkerId(), held: map[heldRef]bool{}}
		}
	}
	t.Fatal(err)
	return nil
}

// hold records an attempt as held (one handed out by a leader the test
// stands in for).
func (w *fakeWorker) hold(a *api.TaskAssignment) {
	w.held[heldRef{a.GetJobId(), a.GetTaskId(), a.GetAttempt()}] = true
}

// poll is one long poll (wait 100 ms) listing what the worker holds; what
// it is handed, it holds from then on.
func (w *fakeWorker) poll(cl api.JobMasterClient) []*api.TaskAssignment {
	w.t.Helper()
	return w.pollReply(cl).GetTasks()
}

// pollReply is poll's whole reply (cancels too).
func (w *fakeWorker) pollReply(cl api.JobMasterClient) *api.JobWorkerHeartbeatResponse {
	w.t.Helper()
	req := &api.JobWorkerHeartbeatRequest{WorkerId: w.id, WaitMs: 100}
	for r := range w.held {
		req.Holding = append(req.Holding, &api.TaskRef{JobId: r.job, TaskId: r.task, Attempt: r.attempt})
	}
	resp := w.call(cl, req)
	for _, a := range resp.GetTasks() {
		w.hold(a)
	}
	return resp
}

// complete reports attempts done (no poll: as the worker's report loop
// does); acked, they are no longer held.
func (w *fakeWorker) complete(cl api.JobMasterClient, as ...*api.TaskAssignment) {
	w.t.Helper()
	var updates []*api.TaskUpdate
	for _, a := range as {
		updates = append(updates, &api.TaskUpdate{JobId: a.GetJobId(), TaskId: a.GetTaskId(), Attempt: a.GetAttempt(), Status: api.TaskInfo_COMPLETED})
	}
	resp := w.call(cl, &api.JobWorkerHeartbeatRequest{WorkerId: w.id, Updates: updates})
	if len(resp.GetAcked()) != len(updates) {
		w.t.Fatalf("worker %d: %d of %d results acked", w.id, len(resp.GetAcked()), len(updates))
	}
	for _, a := range as {
		delete(w.held, heldRef{a.GetJobId(), a.GetTaskId(), a.GetAttempt()})
	}
}

func (w *fakeWorker) call(cl api.JobMasterClient, req *api.JobWorkerHeartbeatRequest) *api.JobWorkerHeartbeatResponse {
	w.t.Helper()
	var (
		resp *api.JobWorkerHeartbeatResponse
		err  error
	)
	// A new leader may still be starting: it answers Unavailable until then.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err = cl.JobWorkerHeartbeat(ctx, req)
		cancel()
		if err == nil {
			break
		}
	}
	if err != nil {
		w.t.Fatalf("worker %d: %v", w.id, err)
	}
	if resp.GetReregister() {
		w.t.Fatalf("worker %d: the leader lost it", w.id)
	}
	return resp
}

// lostDispatch is a failover in which a task's DISPATCH was lost: worker A
// (capacity 1) was handed a task of job id by the old leader, which died
// before committing it; worker B (capacity 8) is idle. nl is the new
// leader, cl a client that reaches whichever node leads.
type lostDispatch struct {
	c      *cluster
	nl     *Server
	cl     api.JobMasterClient
	a, b   *fakeWorker
	id     int64
	handed *api.TaskAssignment
}

func newLostDispatch(t *testing.T, tasks int, workerTimeout time.Duration) *lostDispatch {
	t.Helper()
	c := newCluster(t, 3, func(cfg *config.Config) { cfg.JobMaster.Worker.Timeout = workerTimeout })
	l := c.leader()
	cl := c.client(c.index(l)) // it forwards to whichever node leads
	d := &lostDispatch{c: c, a: registerFake(t, cl, "127.0.0.1:9", 1), b: registerFake(t, cl, "127.0.0.1:10", 8)}
	d.id = submitTest(t, cl, testConfig{Tasks: tasks, Tag: uniqueTag(t)}, "")
	// The leader hands a task to A — what its heartbeat handler does — and
	// dies before committing the DISPATCH. (Should leadership move under
	// load meanwhile, the hand-out is done by the leader of the moment.)
	waitFor(t, "a task handed to A", func() bool {
		l = c.leader()
		ls := l.leader.Load()
		if j := l.fsm.Job(d.id); ls == nil || j == nil || !j.PlanningDone || j.TasksTotal != int64(tasks) {
			return false
		}
		p, err := ls.broker.poll(context.Background(), d.a.id, 100*time.Millisecond)
		if err != nil {
			return false // no longer the leader
		}
		as, _ := ls.broker.assign(d.a.id, p.keys) // the DISPATCH is lost with the leader
		if len(as) > 0 {
			d.handed = as[0]
		}
		return d.handed != nil
	})
	d.a.hold(d.handed)
	c.kill(c.index(l))
	d.nl = c.leader()
	// Clients of the survivors: whichever leads now (or next) answers.
	for i := range c.servers {
		if !c.down[i] {
			d.cl = c.client(i)
			break
		}
	}
	if tk := d.nl.fsm.task(d.key()); tk == nil || tk.Status != api.TaskInfo_PENDING {
		t.Fatalf("the new leader has the handed-out task as %v, want PENDING (its DISPATCH never committed)", tk)
	}
	return d
}

func (d *lostDispatch) key() taskKey { return taskKey{d.handed.GetJobId(), d.handed.GetTaskId()} }

func (d *lostDispatch) isHanded(x *api.TaskAssignment) bool {
	return x.GetJobId() == d.handed.GetJobId() && x.GetTaskId() == d.handed.GetTaskId()
}

// task returns the job's task as the leader reports it.
func (d *lostDispatch) task(t *testing.T, id int64) *api.TaskInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := d.cl.GetJob(ctx, &api.GetJobRequest{JobId: d.id, Verbose: true})
	if err != nil {
		return nil // a leader being elected: ask again
	}
	for _, tk := range resp.GetJob().GetTasks() {
		if tk.GetTaskId() == id {
			return tk
		}
	}
	t.Fatalf("job %d has no task %d", d.id, id)
	return nil
}

// TestNewLeaderAdoptsTasksTheOldOneHandedOut: the leader hands a task to
// worker A and dies before its DISPATCH reaches raft, so the next leader
// finds the task PENDING while A runs it (or has run it). Another worker,
// B, polling the new leader first, must not be handed that task — it would
// run twice: a block cached twice, bytes written twice. The new leader
// holds back the tasks PENDING when it took over until every live worker
// has said what it holds; A's first poll adopts its copy (the DISPATCH is
// committed for A), or A's result completes the task; the others go out.
// Every task runs once.
func TestNewLeaderAdoptsTasksTheOldOneHandedOut(t *testing.T) {
	for _, finished := range []bool{false, true} {
		name := map[bool]string{false: "still-running", true: "already-finished"}[finished]
		t.Run(name, func(t *testing.T) {
			const tasks = 4
			// Workers are never LOST here: only the test's calls speak for them.
			d := newLostDispatch(t, tasks, 10*time.Minute)
			a, b, cl := d.a, d.b, d.cl
			// Every other task, as handed out, and to whom.
			got := map[int64]*api.TaskAssignment{}
			by := map[int64]*fakeWorker{}
			take := func(w *fakeWorker, as []*api.TaskAssignment) {
				for _, x := range as {
					if d.isHanded(x) {
						t.Fatalf("the new leader handed task %d (attempt %d) again, to worker %d, while worker A (%d) holds it: it runs twice", x.GetTaskId(), x.GetAttempt(), w.id, a.id)
					}
					got[x.GetTaskId()], by[x.GetTaskId()] = x, w
				}
			}
			// B reaches the new leader first.
			for range 3 {
				take(b, b.poll(cl))
			}
			if finished {
				// A ran it while the leaders changed: its result, reported to
				// the new leader, completes the PENDING task.
				a.complete(cl, d.handed)
				take(a, a.poll(cl))
			} else {
				// A's first poll says it runs the task: adopted, not re-run.
				waitFor(t, "the held task RUNNING on A", func() bool {
					if as := a.poll(cl); len(as) != 0 {
						t.Fatalf("A, full with the task it runs, was handed %v", as)
					}
					tk := d.task(t, d.handed.GetTaskId())
					return tk.GetStatus() == api.TaskInfo_RUNNING && tk.GetWorkerId() == a.id && tk.GetAttempt() == d.handed.GetAttempt()
				})
			}
			waitFor(t, "the other tasks handed out", func() bool {
				take(b, b.poll(cl))
				return len(got) == tasks-1
			})
			if !finished {
				a.complete(cl, d.handed)
			}
			for task, x := range got {
				by[task].complete(cl, x)
			}
			j := waitJob(t, cl, d.id, 30*time.Second)
			if j.GetStatus() != api.JobInfo_COMPLETED || j.GetTasksDone() != tasks {
				t.Fatalf("job after the failover: %v", j)
			}
			resp, err := cl.GetJob(context.Background(), &api.GetJobRequest{JobId: d.id, Verbose: true})
			if err != nil {
				t.Fatal(err)
			}
			for _, tk := range resp.GetJob().GetTasks() {
				if tk.GetAttempt() != 1 {
					t.Errorf("task %d ran as attempt %d, want 1", tk.GetTaskId(), tk.GetAttempt())
				}
			}
		})
	}
}

// TestNewLeaderSettleEndsWhenASilentWorkerIsLost: worker A, handed a task
// by the old leader, does not reach the new one in time. The tasks pending
// at the failover wait for A only until its failover TTL declares it LOST;
// then they run on B. A, back under a new id and still holding its copy of
// the task — the same attempt, now RUNNING on B — is told to stop it.
func TestNewLeaderSettleEndsWhenASilentWorkerIsLost(t *testing.T) {
	// B's polls, every 100 ms, keep it alive well within the TTL.
	d := newLostDispatch(t, 2, 3*time.Second)
	got := map[int64]bool{}
	// The failover TTL (failoverTTL: about 9 s here) and then some.
	for deadline := time.Now().Add(60 * time.Second); len(got) < 2; {
		if time.Now().After(deadline) {
			t.Fatalf("the tasks pending at the failover never reached B (got %v)", got)
		}
		for _, x := range d.b.poll(d.cl) {
			if d.isHanded(x) {
				if w := d.c.leader().fsm.worker(d.a.id); w.State != api.WorkerState_LOST {
					t.Fatalf("task %d handed to B while A, which may run it, is %s", x.GetTaskId(), w.State)
				}
			}
			got[x.GetTaskId()] = true
		}
	}
	waitFor(t, "the task A held RUNNING on B", func() bool {
		d.b.poll(d.cl)
		tk := d.task(t, d.handed.GetTaskId())
		return tk.GetStatus() == api.TaskInfo_RUNNING && tk.GetWorkerId() == d.b.id
	})
	back := registerFake(t, d.cl, "127.0.0.1:9", 1)
	back.hold(d.handed)
	waitFor(t, "A's copy cancelled", func() bool {
		d.b.poll(d.cl) // B stays LIVE: its attempt is the one kept
		for _, c := range back.pollReply(d.cl).GetCancels() {
			if c.GetJobId() == d.handed.GetJobId() && c.GetTaskId() == d.handed.GetTaskId() && c.GetAttempt() == d.handed.GetAttempt() {
				if tk := d.task(t, d.handed.GetTaskId()); tk.GetStatus() != api.TaskInfo_RUNNING || tk.GetWorkerId() != d.b.id || tk.GetAttempt() != d.handed.GetAttempt() {
					t.Fatalf("A's copy was cancelled, but the task is now %v", tk)
				}
				return true
			}
		}
		return false
	})
}
