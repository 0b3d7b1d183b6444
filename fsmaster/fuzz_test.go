package fsmaster

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/alluvium/alluvium/api"
)

// seedRecords are checkpoint inode records of every kind.
func seedRecords() []*api.JournalEntry {
	return []*api.JournalEntry{
		dirEntry(&api.InodeDirectoryEntry{Id: 2, ParentId: 1, Name: "dir", Mode: 0o755, Owner: "u", Group: "g", CreationTimeMs: 5, LastModificationTimeMs: 9, PersistenceState: api.PersistenceState_PERSISTED, ChildrenLoaded: true}),
		fileEntry(&api.InodeFileEntry{Id: 3, ParentId: 1, Name: "file.csv", Mode: 0o644, BlockSizeBytes: 1 << 20, Length: 5 << 20, Completed: true, UfsFingerprint: "5:123", ReplicationMax: -1, Ttl: 1000, TtlAction: "FREE"}),
		{Body: &api.JournalEntry_CompleteFile{CompleteFile: &api.CompleteFileEntry{Id: 3, Length: 1}}},
	}
}

// FuzzDecodeInodeRecord feeds arbitrary bytes to the checkpoint record
// decoder: it must never panic, and a record it accepts, loaded under a
// root, must leave a state that passes every invariant.
func FuzzDecodeInodeRecord(f *testing.F) {
	for _, e := range seedRecords() {
		b, err := proto.Marshal(e)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0x52, 0x02, 0x08, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeInodeRecord(b)
		if err != nil {
			return
		}
		s := NewState()
		if err := s.loadRecord(must(DecodeInodeRecord(mustMarshal(dirEntry(&api.InodeDirectoryEntry{Id: 1, MountPoint: true}))))); err != nil {
			t.Fatal(err)
		}
		if err := s.applyAddMountPoint(nil, &api.AddMountPointEntry{Mount: &api.MountPointInfo{AlluviumPath: "/", UfsUri: "file:///x", MountId: 1}}); err != nil {
			t.Fatal(err)
		}
		before := s.Dump()
		if err := s.loadRecord(e); err != nil {
			if s.Dump() != before {
				t.Fatalf("rejected record %v changed the state", e)
			}
			return
		}
		if err := s.CheckInvariants(); err != nil {
			// A record may name a mount point the mount table lacks; that is
			// the only thing a lone record cannot satisfy.
			if d := e.GetInodeDirectory(); d != nil && d.GetMountPoint() {
				return
			}
			t.Fatalf("record %v: %v", e, err)
		}
	})
}

func mustMarshal(e *api.JournalEntry) []byte {
	b, err := proto.Marshal(e)
	if err != nil {
		panic(err)
	}
	return b
}
