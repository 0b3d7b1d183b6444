package jobmaster

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
)

// TestJobWorkerPollsStream: a worker's heartbeats over one JobWorkerPolls
// stream are answered as the unary call answers them, in order: long
// polls hand over tasks, a report's results are acked and end the job,
// and the polls keep the worker LIVE well past its TTL. Once the stream
// goes silent the worker is LOST after the TTL, as a worker that stopped
// calling is: liveness is the messages, not the open stream.
func TestJobWorkerPollsStream(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1, nil)
	l := c.leader()
	cl := c.client(0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reg, err := cl.RegisterJobWorker(ctx, &api.RegisterJobWorkerRequest{Address: "127.0.0.1:9", Host: "127.0.0.1", Threads: 1, Capacity: 2})
	if err != nil {
		t.Fatal(err)
	}
	id := reg.GetWorkerId()
	stream, err := cl.JobWorkerPolls(ctx)
	if err != nil {
		t.Fatal(err)
	}
	held := map[heldRef]bool{}
	poll := func(req *api.JobWorkerHeartbeatRequest) *api.JobWorkerHeartbeatResponse {
		t.Helper()
		req.WorkerId = id
		for r := range held {
			req.Holding = append(req.Holding, &api.TaskRef{JobId: r.job, TaskId: r.task, Attempt: r.attempt})
		}
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetReregister() {
			t.Fatal("the leader lost the worker")
		}
		if resp.GetTtlMs() <= 0 || resp.GetHeartbeatIntervalMs() <= 0 {
			t.Fatalf("reply without timing: %v", resp)
		}
		for _, a := range resp.GetTasks() {
			held[heldRef{a.GetJobId(), a.GetTaskId(), a.GetAttempt()}] = true
		}
		return resp
	}

	// Past the TTL (1 s) on polls alone: still LIVE.
	for until := time.Now().Add(2 * time.Second); time.Now().Before(until); {
		poll(&api.JobWorkerHeartbeatRequest{WaitMs: 100})
	}
	if w := l.FSM().worker(id); w == nil || w.State != api.WorkerState_LIVE {
		t.Fatalf("worker polling over the stream: %+v, want LIVE", w)
	}

	job := submitTest(t, cl, testConfig{Tasks: 2, Tag: uniqueTag(t)}, "")
	var got []*api.TaskAssignment
	for deadline := time.Now().Add(10 * time.Second); len(got) < 2; {
		if time.Now().After(deadline) {
			t.Fatalf("tasks handed over the stream: %v, want 2", got)
		}
		got = append(got, poll(&api.JobWorkerHeartbeatRequest{WaitMs: 500}).GetTasks()...)
	}
	var updates []*api.TaskUpdate
	for _, a := range got {
		updates = append(updates, &api.TaskUpdate{JobId: a.GetJobId(), TaskId: a.GetTaskId(), Attempt: a.GetAttempt(), Status: api.TaskInfo_COMPLETED})
	}
	resp := poll(&api.JobWorkerHeartbeatRequest{Updates: updates})
	if len(resp.GetAcked()) != len(updates) {
		t.Fatalf("report acked %v, want all %d results", resp.GetAcked(), len(updates))
	}
	clear(held)
	if j := waitJob(t, cl, job, 10*time.Second); j.GetStatus() != api.JobInfo_COMPLETED {
		t.Fatalf("job %v", j)
	}

	// Silent (the stream stays open): LOST after the TTL.
	waitFor(t, "the silent worker LOST", func() bool {
		w := l.FSM().worker(id)
		return w != nil && w.State == api.WorkerState_LOST
	})
	if resp := poll2(t, stream, id); !resp.GetReregister() {
		t.Fatalf("a LOST worker's poll: %v, want reregister", resp)
	}
}

// poll2 is one long poll without the LIVE check.
func poll2(t *testing.T, stream api.JobMaster_JobWorkerPollsClient, id int64) *api.JobWorkerHeartbeatResponse {
	t.Helper()
	if err := stream.Send(&api.JobWorkerHeartbeatRequest{WorkerId: id, WaitMs: 10}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestJobWorkerPollsOnFollower: a follower does not answer the stream (it
// cannot relay it as it forwards a unary call); it ends it UNAVAILABLE so
// that the worker finds the leader again.
func TestJobWorkerPollsOnFollower(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, nil)
	l := c.leader()
	follower := (c.index(l) + 1) % 3
	stream, err := c.client(follower).JobWorkerPolls(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&api.JobWorkerHeartbeatRequest{WorkerId: 1, WaitMs: 10}); err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("poll on a follower: %v, want Unavailable", err)
	}
}
