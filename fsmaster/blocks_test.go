package fsmaster

import (
	"context"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

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
	if err := b.commit(1, blk, 10, "MEM", false, true); err != nil {
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

// TestBlockPins: the master has every cached copy pinned on its worker
// exactly while evicting it would lose something — the file is pinned, or
// its bytes are not in the UFS (complete and not persisted, or written
// cached-only) — and says so in heartbeat replies: on a report that
// disagrees, and when a pin or the persistence changes.
func TestBlockPins(t *testing.T) {
	ns, _, _ := newTestNS(t)
	ctx := context.Background()
	wid := must(ns.RegisterWorker(ctx, &api.RegisterWorkerRequest{Address: &api.WorkerNetAddress{Host: "h", RpcPort: 1}}))
	cmds := func() map[api.WorkerCommand_Type][]int64 {
		t.Helper()
		out := map[api.WorkerCommand_Type][]int64{}
		for _, c := range ns.WorkerHeartbeat(&api.WorkerHeartbeatRequest{WorkerId: wid}) {
			out[c.GetType()] = c.GetBlockIds()
		}
		return out
	}
	commit := func(blk int64, pinned bool) {
		t.Helper()
		if err := ns.CommitBlock(&api.CommitBlockRequest{WorkerId: wid, BlockId: blk, Length: 10, Tier: "MEM", Pinned: pinned}); err != nil {
			t.Fatal(err)
		}
	}
	report := func(blk int64, pinned bool) {
		t.Helper()
		ns.WorkerHeartbeat(&api.WorkerHeartbeatRequest{WorkerId: wid, AddedBlocks: []*api.BlockReport{{BlockId: blk, Length: 10, Tier: "MEM", Pinned: pinned}}})
	}
	// Cached only (MUST_CACHE): kept. Reported unpinned, the master pins it.
	cached := create(t, ns, "/cached", 10)
	b := cached.BlockIds[0]
	commit(b, false)
	if got := cmds(); !slices.Equal(got[api.WorkerCommand_PIN_BLOCKS], []int64{b}) || len(got) != 1 {
		t.Fatalf("an unpinned copy of a cached-only file: %v, want PIN", got)
	}
	if got := cmds(); len(got) != 0 {
		t.Fatalf("the pin sent twice: %v", got)
	}
	report(b, true)
	if got := cmds(); len(got) != 0 {
		t.Fatalf("a pinned copy of a cached-only file: %v, want nothing", got)
	}
	// Persisted: its copy may go.
	persisted := api.PersistenceState_PERSISTED
	must(ns.SetAttribute(ctx, &api.SetAttributeRequest{Path: "/cached", PersistenceState: &persisted}))
	if got := cmds(); !slices.Equal(got[api.WorkerCommand_UNPIN_BLOCKS], []int64{b}) {
		t.Fatalf("after persist: %v, want UNPIN", got)
	}
	report(b, false)
	// Pinned by the user: kept again, whatever its persistence.
	must(ns.SetAttribute(ctx, &api.SetAttributeRequest{Path: "/cached", Pinned: proto.Bool(true)}))
	if got := cmds(); !slices.Equal(got[api.WorkerCommand_PIN_BLOCKS], []int64{b}) {
		t.Fatalf("after pin: %v, want PIN", got)
	}
	// A file written through to the UFS as it goes: its copies are not
	// pinned while it is written, nor once complete (persisted).
	th := must(ns.CreateFile(ctx, &api.CreateFileRequest{Path: "/through", WriteType: api.WriteType_CACHE_THROUGH}))
	commit(api.BlockID(th.FileId, 0), false)
	if got := cmds(); len(got) != 0 {
		t.Fatalf("a CACHE_THROUGH file being written: %v, want nothing", got)
	}
	// A deleted file's pending pins are not sent.
	gone := create(t, ns, "/gone", 10)
	commit(gone.BlockIds[0], false)
	if err := ns.Delete(ctx, &api.DeleteRequest{Path: "/gone"}); err != nil {
		t.Fatal(err)
	}
	if got := cmds(); len(got[api.WorkerCommand_PIN_BLOCKS]) != 0 || !slices.Contains(got[api.WorkerCommand_REMOVE_BLOCKS], gone.BlockIds[0]) {
		t.Fatalf("after delete: %v, want REMOVE and no PIN", got)
	}
}

// A worker declared LOST and back again: the blocks it held survive and
// count again; a block it stored while it was counted lost, that another
// worker cached meanwhile (a task run again there), is removed from it and
// not counted twice; one nobody else has is kept.
func TestLostWorkerReturnsWithoutDoubleCounting(t *testing.T) {
	now := time.Unix(1000, 0)
	b := newBlockMap(func() time.Time { return now })
	b.setLiveness(time.Second, 10*time.Second, 0)
	valid := func(int64) bool { return true }
	w1 := &api.WorkerNetAddress{Host: "w1", RpcPort: 1}
	w2 := &api.WorkerNetAddress{Host: "w2", RpcPort: 1}
	held, redone, alone := api.BlockID(7, 0), api.BlockID(8, 0), api.BlockID(9, 0)
	b.register(1, w1, nil, []*api.BlockReport{{BlockId: held, Length: 10, Tier: "MEM"}}, valid)
	b.register(2, w2, nil, nil, valid)

	now = now.Add(5 * time.Second)
	if lost, _ := b.markLost(false); len(lost) != 0 {
		t.Fatalf("lost before the TTL: %v", lost)
	}
	if _ = b.heartbeat(2, nil, nil, nil, valid); b.workers[2].lastHB.Load() != now.UnixNano() {
		t.Fatal("heartbeat did not count")
	}
	now = now.Add(5*time.Second + time.Millisecond)
	lost, _ := b.markLost(false)
	if len(lost) != 1 || lost[0].GetId() != 1 || lost[0].GetState() != api.WorkerState_LOST {
		t.Fatalf("lost after the TTL: %v, want worker 1 alone", lost)
	}
	if locs := b.locations(held); len(locs) != 0 {
		t.Fatalf("a lost worker's block still counts: %v", locs)
	}
	if wasLive, _ := b.declareLost(1, "again", 0); wasLive {
		t.Fatal("declaring a LOST worker lost again reported it live")
	}
	if cmds := b.heartbeat(1, nil, nil, nil, valid); len(cmds) != 1 || cmds[0].GetType() != api.WorkerCommand_REGISTER {
		t.Fatalf("a lost worker's heartbeat got %v, want REGISTER", cmds)
	}
	// The load's task that cached `redone` on worker 1 ran again on 2.
	if err := b.commit(2, redone, 10, "MEM", false, true); err != nil {
		t.Fatal(err)
	}
	b.register(1, w1, nil, []*api.BlockReport{
		{BlockId: held, Length: 10, Tier: "MEM"}, {BlockId: redone, Length: 10, Tier: "MEM"}, {BlockId: alone, Length: 10, Tier: "MEM"},
	}, valid)
	for _, c := range []struct {
		block   int64
		workers []int64
	}{{held, []int64{1}}, {redone, []int64{2}}, {alone, []int64{1}}} {
		var got []int64
		for _, l := range b.locations(c.block) {
			got = append(got, l.GetWorkerId())
		}
		if !slices.Equal(got, c.workers) {
			t.Errorf("block %d on workers %v, want %v", c.block, got, c.workers)
		}
	}
	cmds := b.heartbeat(1, nil, nil, nil, valid)
	if len(cmds) != 1 || cmds[0].GetType() != api.WorkerCommand_REMOVE_BLOCKS || !slices.Equal(cmds[0].GetBlockIds(), []int64{redone}) {
		t.Fatalf("commands to the returned worker: %v, want REMOVE_BLOCKS [%d]", cmds, redone)
	}
	if n := len(b.workers[1].blocks); n != 2 {
		t.Fatalf("returned worker counts %d blocks, want 2", n)
	}
	if live, _, _ := b.summary(); live != 2 || b.live != 2 {
		t.Fatalf("live workers %d (counter %d), want 2", live, b.live)
	}
}

// TestRemovalsGoInChunks: removals beyond what one heartbeat reply may
// carry go with the next replies, none lost, none twice.
func TestRemovalsGoInChunks(t *testing.T) {
	b := newBlockMap(time.Now)
	b.removeChunk = 4
	valid := func(int64) bool { return true }
	var report []*api.BlockReport
	for f := int64(1); f <= 10; f++ {
		report = append(report, &api.BlockReport{BlockId: api.BlockID(f, 0), Length: 1, Tier: "MEM"})
	}
	b.register(1, &api.WorkerNetAddress{Host: "w", RpcPort: 1}, nil, report, valid)
	b.free([]int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10})
	var got []int64
	for beat := 0; beat < 5; beat++ {
		for _, c := range b.heartbeat(1, nil, nil, nil, valid) {
			if n := len(c.GetBlockIds()); n > 4 {
				t.Fatalf("a reply of %d removals (chunk 4)", n)
			}
			got = append(got, c.GetBlockIds()...)
		}
	}
	slices.Sort(got)
	if len(got) != 10 || len(slices.Compact(slices.Clone(got))) != 10 {
		t.Fatalf("removals sent: %v, want the 10 blocks once each", got)
	}
}

// TestPinsShareTheReplyBound: removals, pins and unpins together stay
// within what one heartbeat reply may carry; the rest go with the next
// replies, none lost, none twice.
func TestPinsShareTheReplyBound(t *testing.T) {
	b := newBlockMap(time.Now)
	b.removeChunk = 4
	b.keep = func(int64) bool { return true } // every copy must be pinned
	valid := func(int64) bool { return true }
	var report []*api.BlockReport
	for f := int64(1); f <= 10; f++ {
		report = append(report, &api.BlockReport{BlockId: api.BlockID(f, 0), Length: 1, Tier: "MEM"})
	}
	b.register(1, &api.WorkerNetAddress{Host: "w", RpcPort: 1}, nil, report, valid)
	b.free([]int64{1, 2, 3})
	got := map[api.WorkerCommand_Type][]int64{}
	for beat := 0; beat < 5; beat++ {
		n := 0
		for _, c := range b.heartbeat(1, nil, nil, nil, valid) {
			n += len(c.GetBlockIds())
			got[c.GetType()] = append(got[c.GetType()], c.GetBlockIds()...)
		}
		if n > 4 {
			t.Fatalf("a reply of %d block ids (bound 4)", n)
		}
	}
	for typ, want := range map[api.WorkerCommand_Type]int{api.WorkerCommand_REMOVE_BLOCKS: 3, api.WorkerCommand_PIN_BLOCKS: 7} {
		ids := got[typ]
		slices.Sort(ids)
		if len(ids) != want || len(slices.Compact(slices.Clone(ids))) != want {
			t.Errorf("%v sent: %v, want %d blocks once each", typ, ids, want)
		}
	}
}

// An empty heartbeat of a LIVE worker with nothing queued for it takes the
// fast path (read lock only): it counts as contact and updates the tiers.
// Anything to report or to answer — blocks added, a removal queued, an
// unknown or LOST worker, a silence being checked — takes the full path.
func TestHeartbeatFastPathOnlyWhenNothingToDo(t *testing.T) {
	now := time.Unix(1000, 0)
	b := newBlockMap(func() time.Time { return now })
	b.setLiveness(time.Second, 10*time.Second, 0)
	valid := func(int64) bool { return true }
	b.register(1, &api.WorkerNetAddress{Host: "w1", RpcPort: 1}, nil, nil, valid)
	now = now.Add(3 * time.Second)
	tiers := []*api.TierUsage{{Alias: "MEM", CapacityBytes: 100, UsedBytes: 7}}
	if !b.heartbeatFast(1, tiers, nil, nil) {
		t.Fatal("an empty heartbeat of a live worker took the full path")
	}
	if w := b.workers[1]; w.lastHB.Load() != now.UnixNano() || len(w.tierList()) != 1 || w.tierList()[0].GetUsedBytes() != 7 {
		t.Fatalf("fast heartbeat: last %d tiers %v, want %d and the reported tiers", w.lastHB.Load(), w.tierList(), now.UnixNano())
	}
	if b.heartbeatFast(1, nil, []*api.BlockReport{{BlockId: api.BlockID(3, 0), Length: 1, Tier: "MEM"}}, nil) {
		t.Fatal("a heartbeat adding blocks took the fast path")
	}
	if b.heartbeatFast(2, nil, nil, nil) {
		t.Fatal("an unknown worker's heartbeat took the fast path (it must be told to register)")
	}
	b.mu.Lock()
	b.workers[1].toRemove = []int64{api.BlockID(4, 0)}
	b.mu.Unlock()
	if b.heartbeatFast(1, nil, nil, nil) {
		t.Fatal("a heartbeat with a removal queued for its reply took the fast path")
	}
	if cmds := b.heartbeat(1, nil, nil, nil, valid); len(cmds) != 1 || cmds[0].GetType() != api.WorkerCommand_REMOVE_BLOCKS {
		t.Fatalf("full path: %v, want the queued removal", cmds)
	}
	if !b.heartbeatFast(1, nil, nil, nil) {
		t.Fatal("nothing queued any more, yet the full path")
	}
	now = now.Add(11 * time.Second)
	if _, suspects := b.markLost(true); len(suspects) != 1 {
		t.Fatalf("suspects after the TTL: %v, want worker 1", suspects)
	}
	if b.heartbeatFast(1, nil, nil, nil) {
		t.Fatal("a heartbeat while its silence is being checked took the fast path")
	}
}
