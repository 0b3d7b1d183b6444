package blockworker

import (
	"context"
	"sync"
	"testing"

	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/alluvium/alluvium/api"
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
