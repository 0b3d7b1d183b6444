package jobworker

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/config"
	"github.com/alluvium/alluvium/plans"
)

// rplan is a remote plan (as load is): its tasks wait until release is
// closed, counting how many run at once.
type rplan struct{ runOnly }

var rstate struct {
	mu      sync.Mutex
	running int
	most    int
	release chan struct{}
}

func (rplan) Name() string       { return "wremote" }
func (rplan) RunsRemotely() bool { return true }
func (rplan) Run(ctx context.Context, _ plans.Env, t *plans.Task) (plans.Result, error) {
	rstate.mu.Lock()
	rstate.running++
	rstate.most = max(rstate.most, rstate.running)
	release := rstate.release
	rstate.mu.Unlock()
	defer func() {
		rstate.mu.Lock()
		rstate.running--
		rstate.mu.Unlock()
	}()
	select {
	case <-release:
		return plans.Result{Bytes: 1}, nil
	case <-ctx.Done():
		return plans.Result{}, ctx.Err()
	}
}

func init() { plans.Register(rplan{}) }

// remoteMaster hands out, in one poll, five tasks of a remote plan and one
// of a local plan that blocks until cancelled; it records the
// registration and the tasks completed.
type remoteMaster struct {
	api.UnimplementedJobMasterServer
	addr string

	mu        sync.Mutex
	remoteCap int32
	capacity  int32
	handed    bool
	done      map[int64]bool
}

func (m *remoteMaster) GetLeader(context.Context, *api.GetLeaderRequest) (*api.GetLeaderResponse, error) {
	return &api.GetLeaderResponse{LeaderId: "x", LeaderRpcAddress: m.addr}, nil
}

func (m *remoteMaster) RegisterJobWorker(_ context.Context, req *api.RegisterJobWorkerRequest) (*api.RegisterJobWorkerResponse, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.remoteCap, m.capacity = req.GetRemoteCapacity(), req.GetCapacity()
	return &api.RegisterJobWorkerResponse{WorkerId: 1, HeartbeatIntervalMs: 50, TtlMs: 1000}, nil
}

func (m *remoteMaster) JobWorkerHeartbeat(_ context.Context, req *api.JobWorkerHeartbeatRequest) (*api.JobWorkerHeartbeatResponse, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	resp := &api.JobWorkerHeartbeatResponse{TtlMs: 1000}
	for _, u := range req.GetUpdates() {
		if u.GetStatus() == api.TaskInfo_COMPLETED {
			m.done[u.GetTaskId()] = true
		}
		resp.Acked = append(resp.Acked, &api.TaskRef{JobId: u.GetJobId(), TaskId: u.GetTaskId(), Attempt: u.GetAttempt()})
	}
	if req.GetWaitMs() > 0 && !m.handed {
		m.handed = true
		resp.Tasks = append(resp.Tasks, &api.TaskAssignment{JobId: 2, TaskId: 100, Attempt: 1, Plan: "wtest", Args: []byte(`{"block":true}`)})
		for id := int64(1); id <= 5; id++ {
			resp.Tasks = append(resp.Tasks, &api.TaskAssignment{JobId: 1, TaskId: id, Attempt: 1, Plan: "wremote"})
		}
	}
	return resp, nil
}

// A remote plan's tasks run beside the threads — with the one thread taken
// by a task that blocks — up to jobworker.remote-tasks at once, and the
// registration tells the leader that limit.
func TestWorkerRunsRemoteTasksBesideThreads(t *testing.T) {
	rstate.mu.Lock()
	rstate.running, rstate.most, rstate.release = 0, 0, make(chan struct{})
	release := rstate.release
	rstate.mu.Unlock()
	m := serveJobMaster(t, func(addr string) *remoteMaster { return &remoteMaster{addr: addr, done: map[int64]bool{}} })
	w := startWorkerWith(t, m.addr, 1, func(c *config.Config) { c.JobWorker.RemoteTasks = 3 })
	defer w.Stop(context.Background())

	eventually := func(what string, f func() bool) {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); !f(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 60s", what)
			}
		}
	}
	eventually("three remote tasks running beside the blocked local one", func() bool {
		rstate.mu.Lock()
		defer rstate.mu.Unlock()
		w.mu.Lock()
		defer w.mu.Unlock()
		return rstate.running == 3 && w.running == 1
	})
	// Give a fourth a chance to start if the limit did not hold.
	time.Sleep(50 * time.Millisecond)
	close(release)
	eventually("every remote task completed", func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return len(m.done) == 5
	})
	rstate.mu.Lock()
	most := rstate.most
	rstate.mu.Unlock()
	if most != 3 {
		t.Errorf("%d remote tasks ran at once, want 3 (jobworker.remote-tasks)", most)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.remoteCap != 3 || m.capacity != 2 {
		t.Errorf("registered capacity %d, remote capacity %d; want 2, 3", m.capacity, m.remoteCap)
	}
	if m.done[100] {
		t.Errorf("the blocked local task completed")
	}
}
