package client

import (
	"context"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/rpc"
)

// fakeBM answers GetWorkerInfoList with one worker in a settable state.
type fakeBM struct {
	api.UnimplementedBlockMasterServer
	mu    sync.Mutex
	addr  *api.WorkerNetAddress
	state api.WorkerState
}

func (b *fakeBM) set(st api.WorkerState) { b.mu.Lock(); b.state = st; b.mu.Unlock() }

func (b *fakeBM) GetWorkerInfoList(context.Context, *api.GetWorkerInfoListRequest) (*api.GetWorkerInfoListResponse, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return &api.GetWorkerInfoListResponse{Workers: []*api.WorkerInfo{{Id: 1, Address: b.addr, State: b.state}}}, nil
}

// A block worker declared LOST is refused at once — a frozen process
// accepts a connection but never answers its handshake, which would hold
// a call for gRPC's connect timeout (20 s) — until the FS master counts it
// LIVE again; then calls go to it as before.
func TestClusterRefusesLostBlockWorkersUntilLive(t *testing.T) {
	// The "frozen" block worker: a listener that never speaks.
	frozen, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { frozen.Close() })
	addr := frozen.Addr().String()
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeFS{addr: ln.Addr().String(), srv: rpc.NewServer(rpc.ServerOptions{})}
	f.leader = f.addr
	bm := &fakeBM{addr: &api.WorkerNetAddress{Host: host, RpcPort: int32(p)}, state: api.WorkerState_LIVE}
	api.RegisterFileSystemMasterServer(f.srv, f)
	api.RegisterBlockMasterServer(f.srv, bm)
	go func() { _ = f.srv.Serve(ln) }()
	t.Cleanup(f.srv.Stop)

	c, err := NewCluster([]string{f.addr}, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if _, err := c.BlockWorker(addr); err != nil {
		t.Fatalf("a block worker never declared lost: %v", err)
	}
	bm.set(api.WorkerState_LOST)
	c.ForgetBlockWorker(addr)
	for range 3 { // at once, and after asking the FS master again
		if _, err := c.BlockWorker(addr); status.Code(err) != codes.Unavailable {
			t.Fatalf("a block worker declared lost: %v, want Unavailable at once", err)
		}
		time.Sleep(lostRecheck / 2)
	}
	bm.set(api.WorkerState_LIVE)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := c.BlockWorker(addr)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the block worker LIVE again is still refused: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
