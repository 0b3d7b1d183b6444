package fsmaster

import (
	"slices"
	"testing"
	"time"

	"github.com/alluvium/alluvium/api"
)

// A free tells the worker to drop a block on its next heartbeat; a commit
// of the same block before that heartbeat (a load re-caching it) must win,
// or the freshly cached block would be deleted behind the loader's back.
func TestCommitAfterFreeCancelsPendingRemoval(t *testing.T) {
	now := time.Unix(1000, 0)
	b := newBlockMap(func() time.Time { return now })
	valid := func(int64) bool { return true }
	addr := &api.WorkerNetAddress{Host: "w", RpcPort: 1}
	blk := api.BlockID(7, 0)
	other := api.BlockID(8, 0)
	b.register(1, addr, nil, []*api.BlockReport{{BlockId: blk, Length: 10, Tier: "MEM"}, {BlockId: other, Length: 10, Tier: "MEM"}}, valid)

	if n := b.free([]int64{7, 8}); n != 2 {
		t.Fatalf("free = %d blocks, want 2", n)
	}
	if err := b.commit(1, blk, 10, "MEM", true); err != nil {
		t.Fatal(err)
	}
	cmds := b.heartbeat(1, nil, nil, nil, valid)
	var removed []int64
	for _, c := range cmds {
		if c.GetType() == api.WorkerCommand_REMOVE_BLOCKS {
			removed = append(removed, c.GetBlockIds()...)
		}
	}
	if slices.Contains(removed, blk) {
		t.Fatalf("heartbeat told the worker to remove block %d that was committed after the free", blk)
	}
	if !slices.Contains(removed, other) {
		t.Fatalf("heartbeat did not remove the freed block %d (commands %v)", other, cmds)
	}
	if locs := b.locations(blk); len(locs) != 1 {
		t.Fatalf("re-committed block has %d locations, want 1", len(locs))
	}
}
