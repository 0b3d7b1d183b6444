package jobworker

import (
	"context"
	"encoding/json"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/config"
	"github.com/alluvium/alluvium/plans"
	"github.com/alluvium/alluvium/plans/spec"
)

// runOnly is the part of plans.Plan a worker's test plan does not use
// (the worker only runs tasks): any config is valid, no planner, done.
type runOnly struct{}

func (runOnly) Validate(_ context.Context, _ plans.Env, c []byte) (spec.Valid, error) {
	return spec.Valid{Config: c}, nil
}
func (runOnly) NewPlanner(context.Context, plans.Env, plans.Job) (plans.Planner, error) {
	return nil, nil
}
func (runOnly) Done(context.Context, plans.Env, plans.Job) (bool, error) { return true, nil }

// wplan: args {"block": true} wait for cancel; else done at once.
type wplan struct{ runOnly }

var wCanceled atomic.Int64

func (wplan) Name() string { return "wtest" }
func (wplan) Run(ctx context.Context, _ plans.Env, t *plans.Task) (plans.Result, error) {
	var a struct{ Block bool }
	_ = json.Unmarshal(t.Args, &a)
	if a.Block {
		<-ctx.Done()
		wCanceled.Add(1)
		return plans.Result{}, ctx.Err()
	}
	t.Progress(7)
	return plans.Result{Bytes: 7}, nil
}

func init() { plans.Register(wplan{}) }

// fakeMaster is a leader that loses the first report, asks the worker to
// register again once, and cancels job 2.
type fakeMaster struct {
	api.UnimplementedJobMasterServer
	addr string

	mu        sync.Mutex
	registers int
	reports   int
	done      map[int64]int // task → completed reports
	polls     int
	handed    bool
	cancel    bool
	rereg     bool
}

func (m *fakeMaster) GetLeader(context.Context, *api.GetLeaderRequest) (*api.GetLeaderResponse, error) {
	return &api.GetLeaderResponse{LeaderId: "x", LeaderRpcAddress: m.addr}, nil
}

func (m *fakeMaster) RegisterJobWorker(_ context.Context, req *api.RegisterJobWorkerRequest) (*api.RegisterJobWorkerResponse, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.registers++
	return &api.RegisterJobWorkerResponse{WorkerId: int64(m.registers), HeartbeatIntervalMs: 50, TtlMs: 1000}, nil
}

func (m *fakeMaster) JobWorkerHeartbeat(ctx context.Context, req *api.JobWorkerHeartbeatRequest) (*api.JobWorkerHeartbeatResponse, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	resp := &api.JobWorkerHeartbeatResponse{TtlMs: 1000}
	if len(req.GetUpdates()) > 0 {
		m.reports++
		if m.reports == 1 {
			return nil, status.Error(codes.Unavailable, "leader lost (test)")
		}
		for _, u := range req.GetUpdates() {
			if u.GetStatus() == api.TaskInfo_COMPLETED {
				m.done[u.GetTaskId()]++
			}
			resp.Acked = append(resp.Acked, &api.TaskRef{JobId: u.GetJobId(), TaskId: u.GetTaskId(), Attempt: u.GetAttempt()})
		}
		return resp, nil
	}
	if req.GetWaitMs() == 0 {
		return resp, nil
	}
	m.polls++
	switch {
	case !m.handed:
		m.handed = true
		resp.Tasks = []*api.TaskAssignment{
			{JobId: 1, TaskId: 1, Attempt: 1, Plan: "wtest", Args: []byte(`{}`)},
			{JobId: 2, TaskId: 2, Attempt: 1, Plan: "wtest", Args: []byte(`{"block":true}`)},
			{JobId: 1, TaskId: 3, Attempt: 1, Plan: "nosuchplan"},
		}
	case m.cancel:
		m.cancel = false
		resp.Cancels = []*api.TaskRef{{JobId: 2}}
	case m.rereg:
		m.rereg = false
		resp.Reregister = true
	}
	return resp, nil
}

// startWorker starts a job worker (beside the block worker "bw:1", with
// nopEnv) polling the job master at master; the caller stops it.
func startWorker(t *testing.T, master string, threads int) *Worker {
	t.Helper()
	return startWorkerWith(t, master, threads, func(*config.Config) {})
}

// startWorkerWith is startWorker with the config changed by set.
func startWorkerWith(t *testing.T, master string, threads int, set func(*config.Config)) *Worker {
	t.Helper()
	l := config.NewLoader()
	l.Set("home", t.TempDir())
	cfg, err := l.Load()
	if err != nil {
		t.Fatal(err)
	}
	cfg.JobWorker.JobMaster = master
	cfg.JobWorker.Threads = threads
	cfg.Worker.Host = "127.0.0.1"
	set(cfg)
	wl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewWithOptions(cfg, zap.NewNop(), Colocated{BlockWorkerAddress: "bw:1"}, Options{Env: nopEnv{}, Listener: wl})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return w
}

// serveJobMaster serves the fake job master newMaster makes for its own
// address (its GetLeader answers with it) on a loopback port until the
// test ends, and returns it.
func serveJobMaster[M api.JobMasterServer](t *testing.T, newMaster func(addr string) M) M {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := newMaster(ln.Addr().String())
	srv := grpc.NewServer()
	api.RegisterJobMasterServer(srv, m)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop) // after the test's own defers: its workers stop first
	return m
}

func TestWorkerResendsResultsAndHonoursCancels(t *testing.T) {
	m := serveJobMaster(t, func(addr string) *fakeMaster { return &fakeMaster{addr: addr, done: map[int64]int{}} })
	canceledBefore := wCanceled.Load()

	w := startWorker(t, m.addr, 2)
	defer w.Stop(context.Background())

	eventually := func(what string, f func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !f() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 5s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// The first report was lost; the result comes again and is acked.
	eventually("task 1 result re-sent after a lost report", func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.done[1] >= 1 && m.reports >= 2
	})
	// The blocked task runs until the leader cancels its job.
	m.mu.Lock()
	m.cancel = true
	m.mu.Unlock()
	eventually("blocked task cancelled", func() bool { return wCanceled.Load() == canceledBefore+1 })
	// Asked to, the worker registers again.
	m.mu.Lock()
	m.rereg = true
	m.mu.Unlock()
	eventually("re-registration", func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.registers == 2
	})
	if w.ID() != 2 {
		t.Fatalf("worker id %d after re-registering, want 2", w.ID())
	}
	// Nothing stays unacked: the failed task (unknown plan) was reported too.
	eventually("all results acked", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.results) == 0 && len(w.tasks) == 0
	})
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.done[2] != 0 {
		t.Fatal("a task of a cancelled job was reported COMPLETED")
	}
}

type nopEnv struct{}

func (nopEnv) FS() api.FileSystemMasterClient                    { return nil }
func (nopEnv) BlockMaster() api.BlockMasterClient                { return nil }
func (nopEnv) BlockWorker(string) (api.BlockWorkerClient, error) { return nil, nil }
