package fsmaster

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/alluvium/alluvium/api"
)

// seedRecords are checkpoint inode records of every kind.
func seedRecords() []*api.JournalEntry {
	return []*api.JournalEntry{
		inodeRecord(&inode{id: 2, parent: &inode{id: 1}, name: "dir", dir: true, mode: 0o755, owner: "u", group: "g", ctime: 5, mtime: 9, persist: api.PersistenceState_PERSISTED, childrenLoaded: true}),
		inodeRecord(&inode{id: 3, parent: &inode{id: 1}, name: "file.csv", mode: 0o644, blockSize: 1 << 20, length: 5 << 20, completed: true, fingerprint: "5:123", replMax: -1, ttl: 1000, ttlAction: "FREE"}),
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
		if err := s.loadRecord(must(DecodeInodeRecord(mustMarshal(inodeRecord(&inode{id: 1, dir: true, mountPoint: true}))))); err != nil {
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
