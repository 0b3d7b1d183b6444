package jobworker

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/plans"
)

// bplan runs batches (as plugins do): it records each batch's tasks and
// how many tasks ran at once; a task with args "block" waits for its own
// context to end.
type bplan struct{ runOnly }

var bstate struct {
	mu       sync.Mutex
	batches  [][]int64 // task ids per RunBatch
	running  int
	most     int
	canceled []int64
}

func (bplan) Name() string { return "wbatch" }
func (bplan) Run(ctx context.Context, env plans.Env, t *plans.Task) (plans.Result, error) {
	var res plans.Result
	var err error
	bplan{}.RunBatch(ctx, env, []plans.BatchTask{{Ctx: ctx, Task: t}}, func(_ int, r plans.Result, e error) { res, err = r, e })
	return res, err
}

func (bplan) RunBatch(_ context.Context, _ plans.Env, ts []plans.BatchTask, done func(int, plans.Result, error)) {
	bstate.mu.Lock()
	var ids []int64
	for _, t := range ts {
		ids = append(ids, t.Task.TaskID)
	}
	bstate.batches = append(bstate.batches, ids)
	bstate.running += len(ts)
	bstate.most = max(bstate.most, bstate.running)
	bstate.mu.Unlock()
	var wg sync.WaitGroup
	for i, t := range ts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if string(t.Task.Args) == "block" {
				<-t.Ctx.Done()
				bstate.mu.Lock()
				bstate.canceled = append(bstate.canceled, t.Task.TaskID)
				bstate.running--
				bstate.mu.Unlock()
				done(i, plans.Result{}, t.Ctx.Err())
				return
			}
			bstate.mu.Lock()
			bstate.running--
			bstate.mu.Unlock()
			done(i, plans.Result{Bytes: t.Task.TaskID}, nil)
		}()
	}
	wg.Wait()
}

func init() { plans.Register(bplan{}) }

// batchMaster hands out, in one poll, tasks of two jobs of wbatch, and
// then cancels task 2 alone; it counts each task's reports.
type batchMaster struct {
	api.UnimplementedJobMasterServer
	addr string

	mu      sync.Mutex
	handed  bool
	cancel  bool
	reports map[int64][]api.TaskInfo_Status
}

func (m *batchMaster) GetLeader(context.Context, *api.GetLeaderRequest) (*api.GetLeaderResponse, error) {
	return &api.GetLeaderResponse{LeaderId: "x", LeaderRpcAddress: m.addr}, nil
}

func (m *batchMaster) RegisterJobWorker(context.Context, *api.RegisterJobWorkerRequest) (*api.RegisterJobWorkerResponse, error) {
	return &api.RegisterJobWorkerResponse{WorkerId: 1, HeartbeatIntervalMs: 50, TtlMs: 1000}, nil
}

func (m *batchMaster) JobWorkerHeartbeat(_ context.Context, req *api.JobWorkerHeartbeatRequest) (*api.JobWorkerHeartbeatResponse, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	resp := &api.JobWorkerHeartbeatResponse{TtlMs: 1000}
	for _, u := range req.GetUpdates() {
		if u.GetStatus() != api.TaskInfo_RUNNING {
			m.reports[u.GetTaskId()] = append(m.reports[u.GetTaskId()], u.GetStatus())
		}
		resp.Acked = append(resp.Acked, &api.TaskRef{JobId: u.GetJobId(), TaskId: u.GetTaskId(), Attempt: u.GetAttempt()})
	}
	if req.GetWaitMs() == 0 {
		return resp, nil
	}
	switch {
	case !m.handed:
		m.handed = true
		// Job 1's tasks 1-6 (2 blocks) and job 7's task 7, all at once.
		for id := int64(1); id <= 7; id++ {
			a := &api.TaskAssignment{JobId: 1, TaskId: id, Attempt: 1, Plan: "wbatch"}
			if id == 2 {
				a.Args = []byte("block")
			}
			if id == 7 {
				a.JobId = 7
			}
			resp.Tasks = append(resp.Tasks, a)
		}
	case m.cancel:
		m.cancel = false
		resp.Cancels = []*api.TaskRef{{JobId: 1, TaskId: 2, Attempt: 1}}
	}
	return resp, nil
}

// A plan that runs batches gets the queued tasks of one job together, no
// more than the worker's threads at once; each task is reported on its
// own, and a cancel of one task of a batch ends that task alone.
func TestWorkerHandsBatchesOfOneJob(t *testing.T) {
	bstate.mu.Lock()
	bstate.batches, bstate.running, bstate.most, bstate.canceled = nil, 0, 0, nil
	bstate.mu.Unlock()
	m := serveJobMaster(t, func(addr string) *batchMaster {
		return &batchMaster{addr: addr, reports: map[int64][]api.TaskInfo_Status{}}
	})
	w := startWorker(t, m.addr, 4)
	defer w.Stop(context.Background())

	eventually := func(what string, f func() bool) {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); !f(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 60s", what)
			}
		}
	}
	reported := func(n int) func() bool {
		return func() bool {
			m.mu.Lock()
			defer m.mu.Unlock()
			return len(m.reports) >= n
		}
	}
	eventually("every task but the blocked one reported", reported(6))
	m.mu.Lock()
	m.cancel = true
	m.mu.Unlock()
	eventually("the blocked task cancelled", func() bool {
		bstate.mu.Lock()
		defer bstate.mu.Unlock()
		return len(bstate.canceled) == 1
	})
	eventually("the worker idle", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.tasks) == 0 && len(w.results) == 0 && w.running == 0
	})
	m.mu.Lock()
	defer m.mu.Unlock()
	bstate.mu.Lock()
	defer bstate.mu.Unlock()
	for id := int64(1); id <= 7; id++ {
		if id == 2 {
			if len(m.reports[2]) != 0 {
				t.Errorf("task 2, cancelled by the leader, reported %v", m.reports[2])
			}
			continue
		}
		if r := m.reports[id]; len(r) != 1 || r[0] != api.TaskInfo_COMPLETED {
			t.Errorf("task %d reported %v, want COMPLETED once", id, r)
		}
	}
	if bstate.most > 4 {
		t.Errorf("%d tasks ran at once on 4 threads", bstate.most)
	}
	// The first batch took job 1's first four tasks (the threads free);
	// no batch mixes jobs.
	if len(bstate.batches) == 0 || len(bstate.batches[0]) != 4 {
		t.Errorf("batches %v: want the first of 4 tasks", bstate.batches)
	}
	for _, b := range bstate.batches {
		for _, id := range b {
			if (id == 7) != (b[0] == 7) {
				t.Errorf("batch %v mixes jobs 1 and 7", b)
			}
		}
	}
}
