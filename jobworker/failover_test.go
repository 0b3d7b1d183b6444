package jobworker

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
)

// stuckLeader hands out one task, then never answers a report (a frozen,
// partitioned leader) and tells polls that it no longer leads; it names
// next as the leader once moved.
type stuckLeader struct {
	api.UnimplementedJobMasterServer
	self, next string

	mu     sync.Mutex
	handed bool
}

func (m *stuckLeader) GetLeader(context.Context, *api.GetLeaderRequest) (*api.GetLeaderResponse, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.handed {
		return &api.GetLeaderResponse{LeaderId: "new", LeaderRpcAddress: m.next}, nil
	}
	return &api.GetLeaderResponse{LeaderId: "old", LeaderRpcAddress: m.self}, nil
}

func (m *stuckLeader) RegisterJobWorker(context.Context, *api.RegisterJobWorkerRequest) (*api.RegisterJobWorkerResponse, error) {
	return &api.RegisterJobWorkerResponse{WorkerId: 1, HeartbeatIntervalMs: 50, TtlMs: 1000}, nil
}

func (m *stuckLeader) JobWorkerHeartbeat(ctx context.Context, req *api.JobWorkerHeartbeatRequest) (*api.JobWorkerHeartbeatResponse, error) {
	if len(req.GetUpdates()) > 0 {
		<-ctx.Done() // frozen
		return nil, ctx.Err()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if req.GetWaitMs() > 0 && !m.handed {
		m.handed = true
		return &api.JobWorkerHeartbeatResponse{Tasks: []*api.TaskAssignment{{JobId: 1, TaskId: 1, Attempt: 1, Plan: "wtest", Args: []byte(`{}`)}}}, nil
	}
	if m.handed {
		return nil, status.Error(codes.Unavailable, "not the leader any more (test)")
	}
	return &api.JobWorkerHeartbeatResponse{}, nil
}

// newLeader acks every result.
type newLeader struct {
	api.UnimplementedJobMasterServer
	self string
	got  chan *api.TaskUpdate
}

func (m *newLeader) GetLeader(context.Context, *api.GetLeaderRequest) (*api.GetLeaderResponse, error) {
	return &api.GetLeaderResponse{LeaderId: "new", LeaderRpcAddress: m.self}, nil
}

func (m *newLeader) RegisterJobWorker(context.Context, *api.RegisterJobWorkerRequest) (*api.RegisterJobWorkerResponse, error) {
	return &api.RegisterJobWorkerResponse{WorkerId: 1, HeartbeatIntervalMs: 50, TtlMs: 1000}, nil
}

func (m *newLeader) JobWorkerHeartbeat(ctx context.Context, req *api.JobWorkerHeartbeatRequest) (*api.JobWorkerHeartbeatResponse, error) {
	resp := &api.JobWorkerHeartbeatResponse{}
	for _, u := range req.GetUpdates() {
		if u.GetStatus() == api.TaskInfo_COMPLETED {
			select {
			case m.got <- u:
			default:
			}
		}
		resp.Acked = append(resp.Acked, &api.TaskRef{JobId: u.GetJobId(), TaskId: u.GetTaskId(), Attempt: u.GetAttempt()})
	}
	if req.GetWaitMs() > 0 {
		select {
		case <-time.After(time.Duration(req.GetWaitMs()) * time.Millisecond):
		case <-ctx.Done():
		}
	}
	return resp, nil
}

// TestReportFollowsTheLeaderTheWorkerFound: a result report sent to a
// leader that stops answering is abandoned as soon as the worker's poll
// finds that leader gone, and re-sent to the new one — not held for the
// report's whole timeout (30 s) on the old one.
func TestReportFollowsTheLeaderTheWorkerFound(t *testing.T) {
	ln1, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	old := &stuckLeader{self: ln1.Addr().String(), next: ln2.Addr().String()}
	cur := &newLeader{self: ln2.Addr().String(), got: make(chan *api.TaskUpdate, 1)}
	for _, x := range []struct {
		ln  net.Listener
		srv api.JobMasterServer
	}{{ln1, old}, {ln2, cur}} {
		s := grpc.NewServer()
		api.RegisterJobMasterServer(s, x.srv)
		go s.Serve(x.ln)
		t.Cleanup(s.Stop)
	}
	w := startWorker(t, old.self, 1)
	defer w.Stop(context.Background())
	select {
	case u := <-cur.got:
		if u.GetTaskId() != 1 {
			t.Fatalf("new leader got %v", u)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the result never reached the new leader within 10s: the report stayed on the frozen one")
	}
}

// A long poll counts its leader gone after half the worker timeout the
// leader gave (1-10 s), so a worker reaches a new leader before that one
// declares it LOST; with no timeout known, after 10 s.
func TestPollSlackFollowsTheWorkerTimeout(t *testing.T) {
	for ttl, want := range map[time.Duration]time.Duration{
		0: 10 * time.Second, 10 * time.Second: 5 * time.Second, 2 * time.Second: time.Second,
		500 * time.Millisecond: time.Second, time.Minute: 10 * time.Second,
	} {
		s := &session{ttl: ttl}
		if got := s.pollSlack(); got != want {
			t.Errorf("ttl %s: slack %s, want %s", ttl, got, want)
		}
	}
}
