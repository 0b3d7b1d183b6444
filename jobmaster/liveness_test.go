package jobmaster

import (
	"context"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/config"
	"github.com/alluvium/alluvium/jobworker"
)

// livenessEnv records what liveness sends the FS master (WorkerLost) and
// what a job worker drops (ForgetBlockWorker).
type livenessEnv struct {
	nopEnv
	mu     sync.Mutex
	lost   []int64  // block worker ids declared lost at the "FS master"
	forgot []string // block workers a job worker dropped
	// hears: the "FS master" answers a WorkerLost asked unless_heard_within
	// that it heard the block worker (and declares nothing); asks records
	// every WorkerLost request.
	hears bool
	asks  []*api.WorkerLostRequest
}

func (e *livenessEnv) BlockMaster() api.BlockMasterClient { return lostRecorder{e} }

func (e *livenessEnv) ForgetBlockWorker(addr string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.forgot = append(e.forgot, addr)
}

func (e *livenessEnv) seen() ([]int64, []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.lost), slices.Clone(e.forgot)
}

type lostRecorder struct{ e *livenessEnv }

func (r lostRecorder) WorkerLost(ctx context.Context, in *api.WorkerLostRequest, _ ...grpc.CallOption) (*api.WorkerLostResponse, error) {
	r.e.mu.Lock()
	defer r.e.mu.Unlock()
	r.e.asks = append(r.e.asks, in)
	if r.e.hears && in.GetUnlessHeardWithinMs() > 0 {
		return &api.WorkerLostResponse{WasLive: true, Heard: true}, nil
	}
	r.e.lost = append(r.e.lost, in.GetWorkerId())
	return &api.WorkerLostResponse{WasLive: true}, nil
}

// The rest of the FS master's block service is not used here.
func (lostRecorder) RegisterWorker(context.Context, *api.RegisterWorkerRequest, ...grpc.CallOption) (*api.RegisterWorkerResponse, error) {
	return nil, status.Error(codes.Unimplemented, "test")
}
func (lostRecorder) WorkerHeartbeat(context.Context, *api.WorkerHeartbeatRequest, ...grpc.CallOption) (*api.WorkerHeartbeatResponse, error) {
	return nil, status.Error(codes.Unimplemented, "test")
}
func (lostRecorder) WorkerHeartbeats(context.Context, ...grpc.CallOption) (grpc.BidiStreamingClient[api.WorkerHeartbeatRequest, api.WorkerHeartbeatResponse], error) {
	return nil, status.Error(codes.Unimplemented, "test")
}
func (lostRecorder) CommitBlock(context.Context, *api.CommitBlockRequest, ...grpc.CallOption) (*api.CommitBlockResponse, error) {
	return nil, status.Error(codes.Unimplemented, "test")
}
func (lostRecorder) CommitBlocks(context.Context, *api.CommitBlocksRequest, ...grpc.CallOption) (*api.CommitBlocksResponse, error) {
	return nil, status.Error(codes.Unimplemented, "test")
}
func (lostRecorder) GetWorkerInfoList(context.Context, *api.GetWorkerInfoListRequest, ...grpc.CallOption) (*api.GetWorkerInfoListResponse, error) {
	return nil, status.Error(codes.Unimplemented, "test")
}
func (lostRecorder) GetBlockInfo(context.Context, *api.GetBlockInfoRequest, ...grpc.CallOption) (*api.GetBlockInfoResponse, error) {
	return nil, status.Error(codes.Unimplemented, "test")
}
func (lostRecorder) AuthorizeBlockAccess(context.Context, *api.AuthorizeBlockAccessRequest, ...grpc.CallOption) (*api.AuthorizeBlockAccessResponse, error) {
	return nil, status.Error(codes.Unimplemented, "test")
}

// cutProxy forwards TCP connections to a job master until cut: then it
// drops the ones it carries and holds new ones open without forwarding
// them, as a host cut off the network would look.
type cutProxy struct {
	t      *testing.T
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  []net.Conn
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{t: t, ln: ln, target: target}
	t.Cleanup(func() { ln.Close(); p.setCut(true) })
	go p.serve()
	return p
}

func (p *cutProxy) addr() string { return p.ln.Addr().String() }

func (p *cutProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.conns = append(p.conns, c)
		cut := p.cut
		p.mu.Unlock()
		if cut {
			continue // held open, never answered
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, up)
		p.mu.Unlock()
		go func() { _, _ = io.Copy(up, c); up.Close() }()
		go func() { _, _ = io.Copy(c, up); c.Close() }()
	}
}

// setCut cuts (true) or heals (false) the link. Either way the
// connections it holds end: those it carried at a cut, and at a heal those
// it held unanswered (a real link would carry them on; these never
// reached the job master).
func (p *cutProxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// waitFor polls cond (a test of state, not of time) until it holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// A job worker cut off from the job master is LOST after its TTL: the FS
// master is told its block worker is lost (one process, one liveness), the
// other job workers are told to drop their connections to it, and its task
// runs again on the other worker. Back, it registers again under a new id
// and the attempt it still held — while the job still runs — is cancelled.
func TestLostWorkerToldToFSMasterAndPeers(t *testing.T) {
	fs := &livenessEnv{}
	c := newClusterWith(t, 1, func(cfg *config.Config) { cfg.JobMaster.Task.Timeout = 10 * time.Minute }, fs)
	l := c.leader()
	link := newCutProxy(t, c.peers[0].RPCAddr)
	e1, e2 := &livenessEnv{}, &livenessEnv{}
	w1 := c.addWorkerWith(1, jobworker.Colocated{BlockWorkerID: 11, BlockWorkerAddress: "bw1:1"}, e1, link.addr())
	c.addWorkerWith(1, jobworker.Colocated{BlockWorkerID: 12, BlockWorkerAddress: "bw2:1"}, e2, c.rpcAddrs())
	cl := c.client(0)
	waitFor(t, "2 job workers", func() bool {
		resp, err := cl.ListJobWorkers(context.Background(), &api.ListJobWorkersRequest{})
		return err == nil && len(resp.GetWorkers()) == 2
	})
	first := w1.ID()
	tag := uniqueTag(t)
	// Both attempts block until cancelled: the job runs on while w1 is away
	// and after it is back.
	id := submitTest(t, cl, testConfig{Tasks: 1, BlockFirst: 2, Place: "bw1:1", Tag: tag}, "")
	log := runsOf(tag)
	waitFor(t, "the task running on w1", func() bool { return log.started.Load() == 1 })

	link.setCut(true)
	waitFor(t, "the task running again (on w2)", func() bool { return log.started.Load() == 2 })
	if w := l.FSM().worker(first); w == nil || w.State != api.WorkerState_LOST {
		t.Fatalf("w1 (id %d) after its TTL: %+v, want LOST", first, w)
	}
	// The worker may start the task before its DISPATCH is applied.
	waitFor(t, "attempt 2 RUNNING elsewhere in the FSM", func() bool {
		tk := l.FSM().task(taskKey{id, 1})
		return tk.Attempt == 2 && tk.Status == api.TaskInfo_RUNNING && tk.WorkerID != first
	})
	if lost, _ := fs.seen(); !slices.Equal(lost, []int64{11}) {
		t.Fatalf("the FS master was told %v, want block worker 11 lost", lost)
	}
	waitFor(t, "w2 dropping its connection to bw1", func() bool {
		_, forgot := e2.seen()
		return slices.Contains(forgot, "bw1:1")
	})

	link.setCut(false)
	waitFor(t, "w1 registered again", func() bool { return w1.ID() != 0 && w1.ID() != first })
	waitFor(t, "w1's stale attempt cancelled", func() bool { return log.canceled.Load() == 1 })
	if j := l.FSM().Job(id); j.terminal() {
		t.Fatalf("the job ended: %+v", j)
	}
	if _, err := cl.CancelJob(context.Background(), &api.CancelJobRequest{JobId: id}); err != nil {
		t.Fatal(err)
	}
	if j := waitJob(t, cl, id, 20*time.Second); j.GetStatus() != api.JobInfo_CANCELED {
		t.Fatalf("job %v", j)
	}
	if n := log.started.Load(); n != 2 {
		t.Fatalf("task runs %d, want 2 (one per attempt)", n)
	}
}

// The FS master's word: BlockWorkerLost declares the job workers beside a
// block worker LOST, by id or by address; a request naming neither is
// refused.
func TestBlockWorkerLostDeclaresItsJobWorkers(t *testing.T) {
	c := newCluster(t, 1, nil)
	l := c.leader()
	c.addWorkerBeside(1, jobworker.Colocated{BlockWorkerID: 21, BlockWorkerAddress: "bw1:1"})
	c.addWorkerBeside(1, jobworker.Colocated{BlockWorkerID: 22, BlockWorkerAddress: "bw2:1"})
	cl := c.client(0)
	var byBW map[int64]int64 // block worker id → job worker id
	waitFor(t, "2 job workers", func() bool {
		resp, err := cl.ListJobWorkers(context.Background(), &api.ListJobWorkersRequest{})
		if err != nil || len(resp.GetWorkers()) != 2 {
			return false
		}
		byBW = map[int64]int64{}
		for _, w := range resp.GetWorkers() {
			byBW[w.GetBlockWorkerId()] = w.GetId()
		}
		return true
	})
	ctx := context.Background()
	resp, err := cl.BlockWorkerLost(ctx, &api.BlockWorkerLostRequest{BlockWorkerId: 21, Reason: "test"})
	if err != nil || !slices.Equal(resp.GetJobWorkerIds(), []int64{byBW[21]}) {
		t.Fatalf("BlockWorkerLost(21) = %v, %v; want job worker %d", resp, err, byBW[21])
	}
	if w := l.FSM().worker(byBW[21]); w.State != api.WorkerState_LOST {
		t.Fatalf("job worker beside 21: %v", w.State)
	}
	if w := l.FSM().worker(byBW[22]); w.State != api.WorkerState_LIVE {
		t.Fatalf("job worker beside 22: %v, want LIVE", w.State)
	}
	resp, err = cl.BlockWorkerLost(ctx, &api.BlockWorkerLostRequest{BlockWorkerAddress: "nowhere:1"})
	if err != nil || len(resp.GetJobWorkerIds()) != 0 {
		t.Fatalf("BlockWorkerLost(unknown) = %v, %v; want none", resp, err)
	}
	if _, err := cl.BlockWorkerLost(ctx, &api.BlockWorkerLostRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("BlockWorkerLost naming nothing: %v, want InvalidArgument", err)
	}
}

// A job worker silent past its TTL whose block worker still heartbeats to
// the FS master is not LOST at once: the job master asks the FS master to
// declare it only if silent there too (unless_heard_within the TTL but one interval),
// is told it was heard, and gives it one more TTL; still silent, it is LOST
// then, the FS master told without the condition (once per silence: a
// process cut off from the job master alone is LOST after two TTLs).
func TestSilentWorkerSparedOnceWhileItsBlockWorkerBeats(t *testing.T) {
	fs := &livenessEnv{hears: true}
	c := newClusterWith(t, 1, nil, fs)
	l := c.leader()
	link := newCutProxy(t, c.peers[0].RPCAddr)
	w1 := c.addWorkerWith(1, jobworker.Colocated{BlockWorkerID: 31, BlockWorkerAddress: "bw1:1"}, &livenessEnv{}, link.addr())
	waitFor(t, "w1 registered", func() bool { return w1.ID() != 0 })
	first := w1.ID()
	link.setCut(true)
	waitFor(t, "w1 LOST", func() bool {
		w := l.FSM().worker(first)
		return w != nil && w.State == api.WorkerState_LOST
	})
	fs.mu.Lock()
	asks, lost := slices.Clone(fs.asks), slices.Clone(fs.lost)
	fs.mu.Unlock()
	if len(asks) != 2 || asks[0].GetWorkerId() != 31 || asks[0].GetUnlessHeardWithinMs() != 900 ||
		asks[1].GetWorkerId() != 31 || asks[1].GetUnlessHeardWithinMs() != 0 {
		t.Fatalf("the FS master was asked %v; want block worker 31 unless heard within 900 ms (the 1 s TTL but the 100 ms interval), then at once", asks)
	}
	if !slices.Equal(lost, []int64{31}) {
		t.Fatalf("the FS master declared %v, want block worker 31 once", lost)
	}
}
