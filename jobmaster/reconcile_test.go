package jobmaster

import (
	"context"
	"testing"
	"time"

	"github.com/alluvium/alluvium/api"
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
