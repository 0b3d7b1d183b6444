package fsmaster

import (
	"bufio"
	"bytes"
	"testing"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/fsmaster/journal"
)

// seedBatch is a valid journal batch: the root directory and a mount.
func seedBatch(t testing.TB, epoch uint64, first int64) []byte {
	t.Helper()
	es := []*api.JournalEntry{
		dirEntry(&api.InodeDirectoryEntry{Id: 1, Name: "", Mode: 0o755, Owner: "u", Group: "g", MountPoint: true}),
		{Body: &api.JournalEntry_AddMountPoint{AddMountPoint: &api.AddMountPointEntry{Mount: &api.MountPointInfo{AlluviumPath: "/", UfsUri: "file:///x", MountId: 1}}}},
		dirEntry(&api.InodeDirectoryEntry{Id: 2, ParentId: 1, Name: "d", Mode: 0o755, Owner: "u", Group: "g"}),
	}
	var vals [][]byte
	for i, e := range es {
		e.Sequence = first + int64(i)
		_, v, err := journal.EncodeEntry(e)
		if err != nil {
			t.Fatal(err)
		}
		vals = append(vals, v)
	}
	return encodeBatch(epoch, first, vals)
}

// FuzzDecodeRaftCommand: raft entries come from other masters (and from
// disk). Decoding never panics; a batch that decodes holds consecutive
// sequences from its first and applies or is refused as a whole.
func FuzzDecodeRaftCommand(f *testing.F) {
	f.Add(seedBatch(f, 7, 1))
	f.Add(seedBatch(f, 0, 1<<40))
	sp, _ := encodeSetPeer(&api.SetPeerCommand{Id: "m4", RaftAddress: "h:1", RpcAddress: "h:2"})
	f.Add(sp)
	f.Add([]byte{cmdJournal})
	f.Add([]byte{cmdJournal, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 255, 255, 255, 255})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 0 && data[0] == cmdSetPeer {
			_, _ = decodeSetPeer(data)
			return
		}
		b, err := decodeBatch(data)
		if err != nil {
			return
		}
		for i, e := range b.entries {
			if e.GetSequence() != b.first()+int64(i) {
				t.Fatalf("entry %d has sequence %d, batch starts at %d", i, e.GetSequence(), b.first())
			}
		}
		st := NewState()
		if ok, err := applyCommitted(st, b); err == nil && ok {
			if st.lastSeq != b.last() {
				t.Fatalf("applied up to %d, batch ends at %d", st.lastSeq, b.last())
			}
			if err := st.CheckInvariants(); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// FuzzReadSnapshot: a snapshot arrives from the leader over the network.
// Reading one never panics, and one that reads restores a state whose
// sequence its header names.
func FuzzReadSnapshot(f *testing.F) {
	var buf bytes.Buffer
	sw := &snapshotWriter{w: bufio.NewWriter(&buf)}
	_ = sw.header(&api.RaftSnapshotHeader{Index: 5, Sequence: 3})
	_ = sw.record(tailRecord{index: 4, data: seedBatch(f, 1, 1)})
	_ = sw.end()
	f.Add(buf.Bytes())
	f.Add([]byte(snapshotMagic))
	f.Add(append([]byte(snapshotMagic), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		snap, err := readSnapshot(bytes.NewReader(data), dir)
		if err != nil {
			return
		}
		if snap.st.lastSeq != snap.hdr.GetSequence() {
			t.Fatalf("restored sequence %d, header %d", snap.st.lastSeq, snap.hdr.GetSequence())
		}
		if err := snap.st.CheckInvariants(); err != nil {
			t.Fatal(err)
		}
	})
}
