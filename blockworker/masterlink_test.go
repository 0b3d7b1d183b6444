package blockworker

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/coalesce"
	"github.com/alluvium/alluvium/internal/testutil"
)

// raceMaster answers one heartbeat with a REMOVE_BLOCKS it decided before a
// block's store reached it: the worker stores the block while the
// heartbeat is in flight (as a load right after a free does).
type raceMaster struct {
	api.BlockMasterClient
	mu       sync.Mutex
	inFlight func() // runs while the heartbeat is "in flight"
	remove   []int64
	added    [][]int64 // the added blocks of each heartbeat
}

// WorkerHeartbeats: the fake is an older master, whose heartbeats the link
// sends as unary calls.
func (m *raceMaster) WorkerHeartbeats(context.Context, ...grpc.CallOption) (grpc.BidiStreamingClient[api.WorkerHeartbeatRequest, api.WorkerHeartbeatResponse], error) {
	return nil, status.Error(codes.Unimplemented, "test: no heartbeat stream")
}

func (m *raceMaster) WorkerHeartbeat(_ context.Context, req *api.WorkerHeartbeatRequest, _ ...grpc.CallOption) (*api.WorkerHeartbeatResponse, error) {
	m.mu.Lock()
	f, rm := m.inFlight, m.remove
	m.inFlight, m.remove = nil, nil
	var ids []int64
	for _, b := range req.GetAddedBlocks() {
		ids = append(ids, b.GetBlockId())
	}
	m.added = append(m.added, ids)
	m.mu.Unlock()
	if f != nil {
		f()
	}
	var cmds []*api.WorkerCommand
	if len(rm) > 0 {
		cmds = append(cmds, &api.WorkerCommand{Type: api.WorkerCommand_REMOVE_BLOCKS, BlockIds: rm})
	}
	return &api.WorkerHeartbeatResponse{Commands: cmds}, nil
}

// TestRemovalStaleForBlockStoredMeanwhile: a removal in the reply to a
// heartbeat sent before a block was stored leaves the block (and reports it
// again, so the master decides knowing it is there); a removal of a block
// stored before the heartbeat is carried out.
func TestRemovalStaleForBlockStoredMeanwhile(t *testing.T) {
	s := openStore(t, TierSpec{Alias: "MEM", Dir: t.TempDir(), Quota: 16 * mib})
	m := &raceMaster{}
	l := newMasterLink(m, s, zap.NewNop(), 0, func() *api.WorkerNetAddress { return nil })
	l.id, l.registered = 7, true
	var removed []int64
	l.onCmd = func(_ context.Context, ids []int64) {
		removed = append(removed, ids...)
		for _, id := range ids {
			_ = s.Remove(id)
		}
	}
	s.SetListener(l)
	putBlock(t, s, 1, randBytes(100), "MEM", false) // stored before the heartbeat
	m.inFlight = func() { putBlock(t, s, 2, randBytes(100), "MEM", false) }
	m.remove = []int64{1, 2}
	if err := l.heartbeat(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || removed[0] != 1 || s.Has(1) {
		t.Fatalf("removed %v (block 1 still there: %v); want block 1 removed", removed, s.Has(1))
	}
	if !s.Has(2) {
		t.Fatal("block 2, stored while the heartbeat whose reply removes it was in flight, was removed")
	}
	// The next heartbeat reports block 2 again; a removal the master then
	// sends is carried out.
	m.remove = []int64{2}
	if err := l.heartbeat(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := m.added[len(m.added)-1]; len(got) != 1 || got[0] != 2 {
		t.Fatalf("the heartbeat after the stale removal reported %v as added; want [2]", got)
	}
	if s.Has(2) {
		t.Fatal("a removal decided after the master learnt of block 2 was not carried out")
	}
}

// commitMaster holds each commit call until the test lets it go, and
// records the blocks of each call.
type commitMaster struct {
	api.BlockMasterClient
	mu      sync.Mutex
	calls   [][]int64 // blocks per call
	single  int       // CommitBlock calls among them
	skip    int32     // CommitBlocks answers this many skipped
	started chan struct{}
	release chan struct{}
}

func (m *commitMaster) record(ids []int64, single bool) {
	m.mu.Lock()
	m.calls = append(m.calls, ids)
	if single {
		m.single++
	}
	m.mu.Unlock()
	m.started <- struct{}{}
	<-m.release
}

func (m *commitMaster) CommitBlock(_ context.Context, req *api.CommitBlockRequest, _ ...grpc.CallOption) (*api.CommitBlockResponse, error) {
	m.record([]int64{req.GetBlockId()}, true)
	return &api.CommitBlockResponse{}, nil
}

func (m *commitMaster) CommitBlocks(_ context.Context, req *api.CommitBlocksRequest, _ ...grpc.CallOption) (*api.CommitBlocksResponse, error) {
	var ids []int64
	for _, b := range req.GetBlocks() {
		ids = append(ids, b.GetBlockId())
	}
	m.record(ids, false)
	return &api.CommitBlocksResponse{Committed: int32(len(ids)) - m.skip, Skipped: m.skip}, nil
}

// Commits made while one is in flight go to the master together, in one
// CommitBlocks when that one ends; each caller returns once its block's
// call has (its location is visible before the store's caller returns).
// A lone commit is a CommitBlock. A batch the master answers with skipped
// blocks (files gone) stays in the delta for the heartbeat.
func TestCommitsInFlightGoTogether(t *testing.T) {
	s := openStore(t, TierSpec{Alias: "MEM", Dir: t.TempDir(), Quota: 16 * mib})
	m := &commitMaster{started: make(chan struct{}, 4), release: make(chan struct{})}
	l := newMasterLink(m, s, zap.NewNop(), 0, func() *api.WorkerNetAddress { return nil })
	l.id, l.registered = 7, true
	meta := func(id int64) BlockMeta { return BlockMeta{ID: id, Length: 1, Tier: "MEM"} }
	for id := int64(1); id <= 4; id++ {
		l.BlockAdded(meta(id))
	}
	commit := func(id int64) <-chan struct{} {
		done := make(chan struct{})
		go func() { l.commit(context.Background(), meta(id)); close(done) }()
		return done
	}
	first := commit(1)
	<-m.started
	second, third := commit(2), commit(3)
	testutil.Eventually(t, time.Minute, waitingFor(l.commits, 2))
	select {
	case <-second:
		t.Fatal("a commit returned before its block went to the master")
	default:
	}
	m.release <- struct{}{}
	<-first
	<-m.started
	m.release <- struct{}{}
	<-second
	<-third
	m.mu.Lock()
	calls, single := m.calls, m.single
	m.mu.Unlock()
	if len(calls) != 2 || single != 1 || len(calls[0]) != 1 || calls[0][0] != 1 || len(calls[1]) != 2 {
		t.Fatalf("calls %v (%d CommitBlock), want [[1] [2 3]]: one CommitBlock, then one CommitBlocks of the two", calls, single)
	}
	l.mu.Lock()
	_, kept1 := l.added[1]
	_, kept2 := l.added[2]
	_, kept4 := l.added[4]
	l.mu.Unlock()
	if kept1 || kept2 || !kept4 {
		t.Fatalf("delta after the commits: block 1 kept %v, 2 kept %v (want both committed), 4 kept %v (want kept: not committed)", kept1, kept2, kept4)
	}

	// A batch with skipped blocks: all of it stays for the heartbeat.
	m.skip = 1
	l.BlockAdded(meta(5))
	l.BlockAdded(meta(6))
	a := commit(4)
	<-m.started
	b, c := commit(5), commit(6)
	testutil.Eventually(t, time.Minute, waitingFor(l.commits, 2))
	m.release <- struct{}{}
	<-a
	<-m.started
	m.release <- struct{}{}
	<-b
	<-c
	l.mu.Lock()
	_, kept5 := l.added[5]
	_, kept6 := l.added[6]
	l.mu.Unlock()
	if !kept5 || !kept6 {
		t.Fatalf("a batch answered with skipped blocks left the delta (5 kept %v, 6 kept %v); the heartbeat must report them", kept5, kept6)
	}
}

// waitingFor is a condition for testutil.Eventually: n commits wait for
// the next call.
func waitingFor(g *coalesce.Group[BlockMeta, struct{}], n int) func() error {
	return func() error {
		if w := g.Waiting(); w != n {
			return fmt.Errorf("%d commits waiting for the next call, want %d", w, n)
		}
		return nil
	}
}
