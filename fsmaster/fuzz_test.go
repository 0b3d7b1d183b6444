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
		// An overwrite in flight, written aside.
		fileEntry(&api.InodeFileEntry{Id: 4, ParentId: 1, Name: "file.csv", Mode: 0o600, BlockSizeBytes: 1 << 20, Aside: true, Ttl: 5}),
	}
}

// applyBase is a small state for FuzzApplyEntry: /d (2) holding the
// complete file f (3), an overwrite of f in flight (4) and the incomplete
// file g (5), with a TTL on g.
func applyBase(t testing.TB) *State {
	s := NewState()
	for i, e := range []*api.JournalEntry{
		dirEntry(&api.InodeDirectoryEntry{Id: 1, Mode: 0o755, MountPoint: true}),
		{Body: &api.JournalEntry_AddMountPoint{AddMountPoint: &api.AddMountPointEntry{Mount: &api.MountPointInfo{AlluviumPath: "/", UfsUri: "file:///x", MountId: 1}}}},
		dirEntry(&api.InodeDirectoryEntry{Id: 2, ParentId: 1, Name: "d", Mode: 0o755}),
		fileEntry(&api.InodeFileEntry{Id: 3, ParentId: 2, Name: "f", BlockSizeBytes: 16, Completed: true, Length: 40}),
		fileEntry(&api.InodeFileEntry{Id: 4, ParentId: 2, Name: "f", BlockSizeBytes: 16, Aside: true, Ttl: 9}),
		fileEntry(&api.InodeFileEntry{Id: 5, ParentId: 2, Name: "g", BlockSizeBytes: 16, Ttl: 7}),
	} {
		e.Sequence = int64(i + 1)
		if err := s.Apply(e); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// FuzzApplyEntry applies one arbitrary entry of the kinds that touch files
// (a page of UFS children too) to a state with an overwrite in flight: it
// either applies and leaves every invariant intact, or is refused and
// changes nothing.
func FuzzApplyEntry(f *testing.F) {
	ttl := int64(0)
	for _, e := range []*api.JournalEntry{
		{Body: &api.JournalEntry_CompleteFile{CompleteFile: &api.CompleteFileEntry{Id: 4, Length: 3, ReplacesId: 3}}},
		{Body: &api.JournalEntry_CompleteFile{CompleteFile: &api.CompleteFileEntry{Id: 4, Length: 3}}},
		{Body: &api.JournalEntry_CompleteFile{CompleteFile: &api.CompleteFileEntry{Id: 5, Length: 3, ReplacesId: 3}}},
		{Body: &api.JournalEntry_CompleteFile{CompleteFile: &api.CompleteFileEntry{Id: 4, Length: 3, ReplacesId: 3, UfsFingerprint: "fp"}}},
		deleteEntry(2), deleteEntry(3), deleteEntry(4),
		{Body: &api.JournalEntry_Rename{Rename: &api.RenameEntry{Id: 4, NewParentId: 1, NewName: "f"}}},
		{Body: &api.JournalEntry_Rename{Rename: &api.RenameEntry{Id: 3, NewParentId: 1, NewName: "f"}}},
		fileEntry(&api.InodeFileEntry{Id: 6, ParentId: 2, Name: "f", BlockSizeBytes: 16, Aside: true}),
		fileEntry(&api.InodeFileEntry{Id: 6, ParentId: 2, Name: "f", BlockSizeBytes: 16, Aside: true, Completed: true}),
		fileEntry(&api.InodeFileEntry{Id: 6, ParentId: 3, Name: "x", BlockSizeBytes: 16, Aside: true}),
		setAttrEntry(&api.SetAttributeEntry{Id: 4, Ttl: &ttl}),
		{Body: &api.JournalEntry_UfsChildren{UfsChildren: &api.UfsChildrenEntry{ParentId: 2, FirstId: 10, BlockSizeBytes: 16, Children: []*api.UfsChild{
			{Name: "b", Length: 5, UfsFingerprint: "5:1"}, {Name: "a", Directory: true}, {Name: "f"}}}}},
		{Body: &api.JournalEntry_UfsChildren{UfsChildren: &api.UfsChildrenEntry{ParentId: 2, FirstId: 10, BlockSizeBytes: 16, ChildrenLoaded: true, Children: []*api.UfsChild{
			{Name: "b", Length: 5, UfsFingerprint: "5:1"}, {Name: "a", Directory: true}}}}},
	} {
		f.Add(mustMarshal(e))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var e api.JournalEntry
		if proto.Unmarshal(b, &e) != nil {
			return
		}
		switch e.GetBody().(type) {
		case *api.JournalEntry_InodeFile, *api.JournalEntry_CompleteFile, *api.JournalEntry_DeleteInode,
			*api.JournalEntry_Rename, *api.JournalEntry_SetAttribute, *api.JournalEntry_UfsChildren:
		default:
			return
		}
		s := applyBase(t)
		before := s.Dump()
		if err := s.Apply(&e); err != nil {
			if s.Dump() != before {
				t.Fatalf("refused entry %v changed the state:\n%s", &e, diff(before, s.Dump()))
			}
			return
		}
		if err := s.CheckInvariants(); err != nil {
			t.Fatalf("entry %v: %v\n%s", &e, err, s.Dump())
		}
	})
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
