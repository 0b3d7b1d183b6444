package sdk

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/rpc"
)

// leaderFake is a job master that names itself leader and answers GetJob,
// until frozen: then it answers nothing (a partitioned or SIGSTOPped
// process keeps its connections open but never replies).
type leaderFake struct {
	api.UnimplementedJobMasterServer
	addr   string
	frozen atomic.Bool
}

func startLeaderFake(t *testing.T) *leaderFake {
	t.Helper()
	f := &leaderFake{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = l.Addr().String()
	s := rpc.NewServer(rpc.ServerOptions{})
	api.RegisterJobMasterServer(s, f)
	go s.Serve(l)
	t.Cleanup(s.Stop)
	return f
}

func (f *leaderFake) hang(ctx context.Context) error {
	if f.frozen.Load() {
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

func (f *leaderFake) GetLeader(ctx context.Context, _ *api.GetLeaderRequest) (*api.GetLeaderResponse, error) {
	if err := f.hang(ctx); err != nil {
		return nil, err
	}
	return &api.GetLeaderResponse{LeaderId: f.addr, LeaderRpcAddress: f.addr}, nil
}

func (f *leaderFake) GetJob(ctx context.Context, req *api.GetJobRequest) (*api.GetJobResponse, error) {
	if err := f.hang(ctx); err != nil {
		return nil, err
	}
	return &api.GetJobResponse{Job: &api.JobInfo{Id: req.GetJobId(), Status: api.JobInfo_RUNNING}}, nil
}

// TestJobsFailOverFromFrozenLeader: the leader the client knows stops
// answering (the others have elected a new one). The call in flight times
// out; the next one must ask the group again and reach the new leader,
// not wait on the frozen one forever.
func TestJobsFailOverFromFrozenLeader(t *testing.T) {
	old, cur := startLeaderFake(t), startLeaderFake(t)
	c, err := Dial(context.Background(), WithJobMasters(old.addr, cur.addr), WithTimeout(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	jobs, err := c.Jobs()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jobs.Get(context.Background(), 1, false); err != nil {
		t.Fatal(err)
	}
	old.frozen.Store(true)
	if _, err := jobs.Get(context.Background(), 1, false); !errors.Is(err, ErrDeadlineExceeded) {
		t.Fatalf("call to the frozen leader: %v", err)
	}
	start := time.Now()
	if _, err := jobs.Get(context.Background(), 1, false); err != nil {
		t.Fatalf("after the frozen leader timed out once, the next call still fails: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("failing over took %s", d)
	}
}
