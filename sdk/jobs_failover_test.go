package sdk

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/rpc"
)

// serveJobMaster serves f as a job master on a fresh local port for the
// test's life and returns its address.
func serveJobMaster(t *testing.T, f api.JobMasterServer) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := rpc.NewServer(rpc.ServerOptions{})
	api.RegisterJobMasterServer(s, f)
	go s.Serve(l)
	t.Cleanup(s.Stop)
	return l.Addr().String()
}

// dialJobs is the Jobs client of a client of the job master at addr.
func dialJobs(t *testing.T, addr string) *Jobs {
	t.Helper()
	c, err := Dial(context.Background(), WithJobMasters(addr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	jobs, err := c.Jobs()
	if err != nil {
		t.Fatal(err)
	}
	return jobs
}

// leaderFake is a job master that names itself leader and answers GetJob,
// until frozen: then it answers nothing (a partitioned or SIGSTOPped
// process keeps its connections open but never replies).
type leaderFake struct {
	api.UnimplementedJobMasterServer
	addr    string
	frozen  atomic.Bool
	getJobs atomic.Int64 // GetJob calls received
}

func startLeaderFake(t *testing.T) *leaderFake {
	t.Helper()
	f := &leaderFake{}
	f.addr = serveJobMaster(t, f)
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
	f.getJobs.Add(1)
	if err := f.hang(ctx); err != nil {
		return nil, err
	}
	return &api.GetJobResponse{Job: &api.JobInfo{Id: req.GetJobId(), Status: api.JobInfo_RUNNING}}, nil
}

// TestJobsFailOverFromFrozenLeader: the leader the client knows stops
// answering (the others have elected a new one). The call in flight times
// out, forgets that leader, asks the group again and is retried on the new
// one: the caller sees no error. A call whose own context ends first gets
// DeadlineExceeded.
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
	if _, err := jobs.Get(context.Background(), 1, false); err != nil {
		t.Fatalf("a call that timed out on the frozen leader was not carried to the new one: %v", err)
	}
	if old.getJobs.Load() != 2 || cur.getJobs.Load() != 1 {
		t.Fatalf("GetJob calls: %d to the old leader, %d to the new; want 2 (one frozen) and 1", old.getJobs.Load(), cur.getJobs.Load())
	}
	cur.frozen.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := jobs.Get(ctx, 1, false); !errors.Is(err, ErrDeadlineExceeded) {
		t.Fatalf("a call whose own context ended: %v, want DeadlineExceeded", err)
	}
}

// submitFake is a job master that keeps jobs by request id, as the real
// one's FSM does, and can lose the answer to a submit it committed: with
// unavailableOnce it commits the first submit and answers Unavailable (the
// leader stepped down after the entry was applied); with hangOnce it
// commits it and answers nothing until the caller gives up.
type submitFake struct {
	leaderFake
	unavailableOnce, hangOnce atomic.Bool

	mu     sync.Mutex
	calls  []string         // the request id of each SubmitJob call
	byReq  map[string]int64 // request id → job id
	nextID int64
}

func startSubmitFake(t *testing.T) *submitFake {
	t.Helper()
	f := &submitFake{byReq: map[string]int64{}}
	f.addr = serveJobMaster(t, f)
	return f
}

func (f *submitFake) SubmitJob(ctx context.Context, req *api.SubmitJobRequest) (*api.SubmitJobResponse, error) {
	f.mu.Lock()
	f.calls = append(f.calls, req.GetRequestId())
	id, ok := f.byReq[req.GetRequestId()]
	if !ok || req.GetRequestId() == "" {
		f.nextID++
		id = f.nextID
		f.byReq[req.GetRequestId()] = id
	}
	f.mu.Unlock()
	if f.unavailableOnce.CompareAndSwap(true, false) {
		return nil, status.Error(codes.Unavailable, "leadership lost while committing")
	}
	if f.hangOnce.CompareAndSwap(true, false) {
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	return &api.SubmitJobResponse{JobId: id}, nil
}

// Submit sends a request id of its own when given none, and its retry —
// after Unavailable or after its call timed out — carries the same one, so
// a submit the job master committed but did not answer makes one job.
func TestSubmitRetriesWithOneRequestID(t *testing.T) {
	for _, tc := range []struct {
		name string
		arm  func(*submitFake)
	}{
		{"unavailable", func(f *submitFake) { f.unavailableOnce.Store(true) }},
		{"deadline exceeded", func(f *submitFake) { f.hangOnce.Store(true) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startSubmitFake(t)
			c, err := Dial(context.Background(), WithJobMasters(f.addr), WithTimeout(300*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			jobs, err := c.Jobs()
			if err != nil {
				t.Fatal(err)
			}
			tc.arm(f)
			id, err := jobs.Submit(context.Background(), "load", map[string]string{"path": "/a"})
			if err != nil {
				t.Fatalf("Submit: %v", err)
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if len(f.calls) != 2 {
				t.Fatalf("%d SubmitJob calls, want 2 (the lost answer, the retry)", len(f.calls))
			}
			if f.calls[0] == "" || f.calls[0] != f.calls[1] {
				t.Fatalf("request ids %q: want one, non-empty, on both calls", f.calls)
			}
			if len(f.byReq) != 1 || id != f.byReq[f.calls[0]] {
				t.Fatalf("jobs %v, Submit returned %d: want one job, its id", f.byReq, id)
			}
		})
	}
}
