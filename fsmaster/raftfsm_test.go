package fsmaster

import (
	"fmt"
	"testing"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/fsmaster/journal"
)

// compactingLogs is a raft log store that, the first time an entry after
// trigger is read, does what raft does concurrently with a rebuild:
// persists a newer snapshot and compacts the log up to it.
type compactingLogs struct {
	raft.LogStore
	trigger uint64
	compact func()
	done    bool
}

func (c *compactingLogs) GetLog(i uint64, l *raft.Log) error {
	if !c.done && i > c.trigger {
		c.done = true
		c.compact()
	}
	return c.LogStore.GetLog(i, l)
}

// TestRebuildWhileRaftCompacts: a deposed leader rebuilds its state from
// the newest snapshot and the log after it; raft persists snapshots and
// compacts the log outside the FSM's locks, so the log after the snapshot
// the rebuild started from may vanish while it reads it. The rebuild then
// starts over from the newer snapshot instead of failing the master (seen
// in tests/multihost: "rebuild: raft log entry 1806: log not found").
func TestRebuildWhileRaftCompacts(t *testing.T) {
	dir := t.TempDir()
	store := raft.NewInmemStore()
	snaps := raft.NewInmemSnapshotStore()
	logs := &compactingLogs{LogStore: store, done: true} // armed below
	f := &raftFSM{log: zap.NewNop(), logs: logs, snaps: snaps, dir: dir, peers: map[string]*api.SetPeerCommand{}}
	f.ns = &namespace{st: NewState(), feed: newFeed(0)}

	// Index 1: the root, its mount and /d (sequences 1-3); index k > 1:
	// the directory /d<k> (sequence k+2).
	const last = 12
	seqAt := func(i uint64) int64 { return int64(i) + 2 }
	for i := uint64(1); i <= last; i++ {
		data := seedBatch(t, 0, 1)
		if i > 1 {
			e := dirEntry(&api.InodeDirectoryEntry{Id: int64(i) + 1, ParentId: 1, Name: fmt.Sprintf("d%d", i), Mode: 0o755, Owner: "u", Group: "g"})
			e.Sequence = seqAt(i)
			_, v, err := journal.EncodeEntry(e)
			if err != nil {
				t.Fatal(err)
			}
			data = encodeBatch(0, seqAt(i), [][]byte{v})
		}
		if err := store.StoreLog(&raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	snapshotAt := func(index uint64) {
		t.Helper()
		s := &fsmSnapshot{f: f, hdr: &api.RaftSnapshotHeader{Index: index, Sequence: seqAt(index)}}
		sink, err := snaps.Create(raft.SnapshotVersionMax, index, 1, raft.Configuration{}, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Persist(sink); err != nil {
			t.Fatal(err)
		}
	}
	snapshotAt(4)
	logs.trigger, logs.done = 4, false
	logs.compact = func() {
		snapshotAt(9)
		if err := store.DeleteRange(1, 9); err != nil {
			t.Fatal(err)
		}
	}

	f.applied = last
	f.dirty = true
	if err := f.rebuildLocked(); err != nil {
		t.Fatalf("rebuild while raft compacted the log: %v", err)
	}
	if !logs.done {
		t.Fatal("the log was never compacted under the rebuild: the test proves nothing")
	}
	if f.ns.st.lastSeq != seqAt(last) || f.committedSeq != seqAt(last) {
		t.Fatalf("rebuilt to sequence %d (committed %d), want %d", f.ns.st.lastSeq, f.committedSeq, seqAt(last))
	}
	// The root, /d and /d2 ... /d12.
	if n := f.ns.st.InodeCount(); n != 2+last-1 {
		t.Fatalf("rebuilt state holds %d inodes, want %d", n, 2+last-1)
	}

	// A log that lost an entry no snapshot covers still fails the rebuild,
	// naming the entry.
	if err := store.DeleteRange(11, 11); err != nil {
		t.Fatal(err)
	}
	f.dirty = true
	if err := f.rebuildLocked(); err == nil {
		t.Fatal("rebuilt over a hole in the log")
	} else {
		t.Logf("hole in the log: %v", err)
	}
}
