package fsmaster

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/rpc"
	"github.com/alluvium/alluvium/internal/testutil"
)

// lostJobMaster records BlockWorkerLost calls: declarations in reqs,
// questions (heard_within_ms) in checks, answered heard for the block
// workers whose addresses are in hears.
type lostJobMaster struct {
	api.UnimplementedJobMasterServer
	mu     sync.Mutex
	reqs   []*api.BlockWorkerLostRequest
	checks []*api.BlockWorkerLostRequest
	hears  map[string]bool // by address
	// order is "check" and "declare" in the order they came.
	order []string
}

func (f *lostJobMaster) BlockWorkerLost(_ context.Context, r *api.BlockWorkerLostRequest) (*api.BlockWorkerLostResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.GetHeardWithinMs() > 0 {
		f.checks = append(f.checks, r)
		f.order = append(f.order, "check")
		return &api.BlockWorkerLostResponse{Heard: f.hears[r.GetBlockWorkerAddress()]}, nil
	}
	f.reqs = append(f.reqs, r)
	f.order = append(f.order, "declare")
	return &api.BlockWorkerLostResponse{JobWorkerIds: []int64{99}}, nil
}

// startWithJobMaster starts a FS master (worker timeout 1 s, interval
// 100 ms) whose job master is jm, served on a port of its own.
func startWithJobMaster(t *testing.T, jm api.JobMasterServer) *testMaster {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, map[string]any{"fsmaster.job-master": l.Addr().String(),
		"fsmaster.worker.timeout": "1s", "fsmaster.worker.heartbeat-interval": "100ms"})
	ufsDirOf(t, cfg)
	srv := rpc.NewServer(rpc.ServerOptions{Token: cfg.Security.Token})
	api.RegisterJobMasterServer(srv, jm)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	return startMaster(t, cfg)
}

// One liveness: a block worker silent past its TTL is LOST and the job
// master is told at once (BlockWorkerLost, by id and address); the job
// master's word (WorkerLost) makes another LOST at once, its locations gone,
// without telling the job master back. Register replies carry the interval
// and TTL; a lost worker's heartbeat is told to register again.
func TestWorkerLivenessBothWays(t *testing.T) {
	jm := &lostJobMaster{}
	tm := startWithJobMaster(t, jm)
	ctx := context.Background()
	fi := createCacheOnly(t, tm, "/f", api.WriteType_MUST_CACHE, 10)
	reg := func(host string) *api.RegisterWorkerResponse {
		return must(tm.blocks.RegisterWorker(ctx, &api.RegisterWorkerRequest{
			Address: &api.WorkerNetAddress{Host: host, RpcPort: 7},
			Blocks:  []*api.BlockReport{{BlockId: fi.BlockIds[0], Length: 10, Tier: "MEM"}},
		}))
	}
	silent, told := reg("silent"), reg("told")
	if silent.GetHeartbeatIntervalMs() != 100 || silent.GetTtlMs() != 1000 {
		t.Fatalf("register reply %v: want the interval 100 ms and the TTL 1000 ms", silent)
	}
	// "told" keeps heartbeating; the job master declares it lost.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				_, _ = tm.blocks.WorkerHeartbeat(ctx, &api.WorkerHeartbeatRequest{WorkerId: told.GetWorkerId()})
			}
		}
	}()
	testutil.Eventually(t, 20*time.Second, func() error {
		jm.mu.Lock()
		defer jm.mu.Unlock()
		if len(jm.reqs) == 0 {
			return fmt.Errorf("the job master was not told")
		}
		return nil
	})
	jm.mu.Lock()
	r := jm.reqs[0]
	jm.mu.Unlock()
	if r.GetBlockWorkerId() != silent.GetWorkerId() || r.GetBlockWorkerAddress() != "silent:7" {
		t.Fatalf("the job master was told %v, want worker %d at silent:7", r, silent.GetWorkerId())
	}
	locs := func() []int64 {
		bi := must(tm.blocks.GetBlockInfo(ctx, &api.GetBlockInfoRequest{BlockId: fi.BlockIds[0]}))
		var ids []int64
		for _, l := range bi.GetInfo().GetLocations() {
			ids = append(ids, l.GetWorkerId())
		}
		return ids
	}
	if got := locs(); !slices.Equal(got, []int64{told.GetWorkerId()}) {
		t.Fatalf("block on %v, want only the live worker %d", got, told.GetWorkerId())
	}

	// Asked to declare it only if silent here too: it heartbeats, so it is
	// heard and stays LIVE with its blocks.
	if resp := must(tm.blocks.WorkerLost(ctx, &api.WorkerLostRequest{WorkerId: told.GetWorkerId(), Reason: "job master: test", UnlessHeardWithinMs: 60000})); !resp.GetWasLive() || !resp.GetHeard() {
		t.Fatalf("WorkerLost unless heard within 60 s of a heartbeating worker: %v, want live and heard", resp)
	}
	if got := locs(); !slices.Equal(got, []int64{told.GetWorkerId()}) {
		t.Fatalf("block on %v after a WorkerLost that heard the worker, want still on %d", got, told.GetWorkerId())
	}
	resp := must(tm.blocks.WorkerLost(ctx, &api.WorkerLostRequest{WorkerId: told.GetWorkerId(), Reason: "job master: test"}))
	if !resp.GetWasLive() {
		t.Fatal("WorkerLost of a live worker said it was not live")
	}
	if got := locs(); len(got) != 0 {
		t.Fatalf("block still on %v after its worker was declared lost", got)
	}
	if resp := must(tm.blocks.WorkerLost(ctx, &api.WorkerLostRequest{WorkerId: told.GetWorkerId()})); resp.GetWasLive() {
		t.Fatal("WorkerLost twice: the second said it was live")
	}
	hb := must(tm.blocks.WorkerHeartbeat(ctx, &api.WorkerHeartbeatRequest{WorkerId: told.GetWorkerId()}))
	if len(hb.GetCommands()) != 1 || hb.GetCommands()[0].GetType() != api.WorkerCommand_REGISTER {
		t.Fatalf("heartbeat of a lost worker: %v, want REGISTER", hb.GetCommands())
	}
	jm.mu.Lock()
	n := len(jm.reqs)
	jm.mu.Unlock()
	if n != 1 {
		t.Fatalf("the job master was told %d times, want once (not about the worker it declared lost itself)", n)
	}
}

// A block worker silent past its TTL whose job worker still calls the job
// master is not LOST at once: the FS master asks the job master (a
// question, heard_within_ms the TTL but one interval), is told the process is heard,
// and gives it one more TTL; silent still, it is LOST then without asking
// again (once per silence: a process cut off from the FS master alone is
// LOST after two TTLs at most).
func TestSilentWorkerSparedOnceWhileItsJobWorkerCalls(t *testing.T) {
	jm := &lostJobMaster{hears: map[string]bool{"busy:7": true}}
	tm := startWithJobMaster(t, jm)
	ctx := context.Background()
	id := must(tm.blocks.RegisterWorker(ctx, &api.RegisterWorkerRequest{Address: &api.WorkerNetAddress{Host: "busy", RpcPort: 7}})).GetWorkerId()
	testutil.Eventually(t, 30*time.Second, func() error {
		jm.mu.Lock()
		defer jm.mu.Unlock()
		if len(jm.reqs) == 0 {
			return fmt.Errorf("not declared lost yet (%v)", jm.order)
		}
		return nil
	})
	jm.mu.Lock()
	order, checks := slices.Clone(jm.order), slices.Clone(jm.checks)
	jm.mu.Unlock()
	if !slices.Equal(order, []string{"check", "declare"}) {
		t.Fatalf("the job master saw %v, want one question (answered heard) and then the declaration", order)
	}
	if c := checks[0]; c.GetBlockWorkerId() != id || c.GetBlockWorkerAddress() != "busy:7" || c.GetHeardWithinMs() != 900 {
		t.Fatalf("question %v: want worker %d at busy:7, heard within 900 ms (the 1 s TTL but the 100 ms interval)", c, id)
	}
	info := must(tm.blocks.GetWorkerInfoList(ctx, &api.GetWorkerInfoListRequest{}))
	for _, w := range info.GetWorkers() {
		if w.GetId() == id && w.GetState() != api.WorkerState_LOST {
			t.Fatalf("worker %d after the declaration: %v, want LOST", id, w.GetState())
		}
	}
}
