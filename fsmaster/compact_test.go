package fsmaster

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/fsmaster/journal"
)

// TestChildrenMatchesSortedSet runs random inserts, removes, lookups and
// ranged walks against the chunked child index and a plain sorted set, with
// names drawn so that both sorted fills (the UFS's order) and random
// inserts split and merge chunks.
func TestChildrenMatchesSortedSet(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round, universe := range []int{10, 600, 5000} {
		var c children
		ref := map[string]*inode{}
		names := func() []string {
			out := make([]string, 0, len(ref))
			for k := range ref {
				out = append(out, k)
			}
			slices.Sort(out)
			return out
		}
		// A sorted fill first, as a UFS listing gives it.
		for i := range universe / 2 {
			n := &inode{id: int64(i + 1), name: fmt.Sprintf("n%06d", 2*i)}
			c.insert(n)
			ref[n.name] = n
		}
		for op := range 20000 {
			name := fmt.Sprintf("n%06d", rng.IntN(universe))
			switch k := rng.IntN(10); {
			case k < 4:
				n := &inode{id: int64(op + 1e6), name: name}
				c.insert(n)
				ref[name] = n
			case k < 7:
				_, had := ref[name]
				if got := c.remove(name); got != had {
					t.Fatalf("round %d: remove(%s) = %v, want %v", round, name, got, had)
				}
				delete(ref, name)
			case k < 9:
				if got := c.get(name); got != ref[name] {
					t.Fatalf("round %d: get(%s) = %v, want %v", round, name, got, ref[name])
				}
			default:
				want := names()
				i, _ := slices.BinarySearch(want, name)
				want = want[i:]
				var got []string
				c.ascend(name, func(n *inode) bool {
					got = append(got, n.name)
					return len(got) < 50
				})
				if len(want) > 50 {
					want = want[:50]
				}
				if !slices.Equal(got, want) {
					t.Fatalf("round %d: ascend(%s) = %v, want %v", round, name, got, want)
				}
			}
			if c.len() != len(ref) {
				t.Fatalf("round %d: len %d, want %d", round, c.len(), len(ref))
			}
		}
		if len(ref) > 0 {
			if err := c.check(); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		var all []string
		c.ascend("", func(n *inode) bool { all = append(all, n.name); return true })
		if !slices.Equal(all, names()) {
			t.Fatalf("round %d: full walk differs from the reference", round)
		}
		for _, ch := range c.chunks {
			if len(ch) > chunkMax {
				t.Fatalf("round %d: chunk of %d children (max %d)", round, len(ch), chunkMax)
			}
		}
	}
}

// TestChildrenSortedFillIsDense checks the memory claim: children added in
// name order leave every chunk but the last full.
func TestChildrenSortedFillIsDense(t *testing.T) {
	var c children
	const n = 10*chunkMax + 7
	for i := range n {
		c.insert(&inode{name: fmt.Sprintf("f%07d", i)})
	}
	for i, ch := range c.chunks[:len(c.chunks)-1] {
		if len(ch) != chunkMax || cap(ch) != chunkMax {
			t.Fatalf("chunk %d: len %d cap %d, want both %d", i, len(ch), cap(ch), chunkMax)
		}
	}
	// Removing everything leaves nothing behind.
	for i := range n {
		if !c.remove(fmt.Sprintf("f%07d", i)) {
			t.Fatalf("remove %d failed", i)
		}
	}
	if c.len() != 0 || len(c.chunks) != 0 {
		t.Fatalf("after removing all: len %d, %d chunks", c.len(), len(c.chunks))
	}
}

// TestChildrenCompact: children inserted in random order and compacted
// fill every chunk but the last, and stay what they were.
func TestChildrenCompact(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var c children
	const n = 20 * chunkMax
	for _, i := range rng.Perm(n) {
		c.insert(&inode{name: fmt.Sprintf("f%07d", i)})
	}
	if len(c.chunks) < 30 {
		t.Fatalf("random inserts left %d chunks for %d children; want half-full chunks", len(c.chunks), n)
	}
	c.compact()
	if err := c.check(); err != nil {
		t.Fatal(err)
	}
	if len(c.chunks) != n/chunkMax {
		t.Fatalf("compacted into %d chunks, want %d", len(c.chunks), n/chunkMax)
	}
	for i := range n {
		if c.get(fmt.Sprintf("f%07d", i)) == nil {
			t.Fatalf("child %d lost", i)
		}
	}
	// Inserting after compaction still works (full chunks split).
	c.insert(&inode{name: "f0000100x"})
	if err := c.check(); err != nil || c.len() != n+1 {
		t.Fatalf("insert after compact: %v, len %d", err, c.len())
	}
}

// TestIDIndexMatchesMap runs random puts, removes and gets against the
// open-addressing id index and a map, across grows and shrinks, with ids
// both consecutive (how the master hands them out) and scattered.
func TestIDIndexMatchesMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var x idIndex
	ref := map[int64]*inode{}
	next := int64(1)
	for op := range 200000 {
		var id int64
		if rng.IntN(2) == 0 {
			id = next
			next++
		} else {
			id = rng.Int64N(next + 1000)
		}
		switch k := rng.IntN(10); {
		case k < 5 || op < 50000:
			n := &inode{id: id}
			x.put(n)
			ref[id] = n
		case k < 8:
			_, had := ref[id]
			if got := x.remove(id); got != had {
				t.Fatalf("remove(%d) = %v, want %v", id, got, had)
			}
			delete(ref, id)
		default:
			if got := x.get(id); got != ref[id] {
				t.Fatalf("get(%d) = %v, want %v", id, got, ref[id])
			}
		}
		if x.len() != len(ref) {
			t.Fatalf("len %d, want %d", x.len(), len(ref))
		}
	}
	for id, n := range ref {
		if x.get(id) != n {
			t.Fatalf("id %d lost", id)
		}
	}
	seen := 0
	x.each(func(n *inode) bool {
		if ref[n.id] != n {
			t.Fatalf("each visits %d, not in the reference", n.id)
		}
		seen++
		return true
	})
	if seen != len(ref) {
		t.Fatalf("each visited %d, want %d", seen, len(ref))
	}
	// Emptying shrinks the table back.
	for id := range ref {
		x.remove(id)
	}
	if x.len() != 0 || len(x.slots) > idIndexMin {
		t.Fatalf("emptied index: len %d, %d slots", x.len(), len(x.slots))
	}
}

// TestIDIndexAddAll: adding many inodes at once (a checkpoint's files,
// partitioned by slot) leaves the index holding exactly them and what it
// held before, findable and removable as if put one by one; an id added
// twice, or one already there, is reported.
func TestIDIndexAddAll(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, tc := range []struct{ before, many int }{{0, 10}, {100, 1000}, {5000, 200000}, {0, 1 << 17}} {
		var x idIndex
		ref := map[int64]*inode{}
		for i := range tc.before {
			n := &inode{id: int64(3*i + 1)}
			x.put(n)
			ref[n.id] = n
		}
		var ns []*inode
		for len(ns) < tc.many {
			// Mostly consecutive (how ids are handed out), some scattered.
			id := int64(3*tc.before + len(ns) + 10)
			if rng.IntN(4) == 0 {
				id = rng.Int64N(1<<40) + 1<<32
			}
			if ref[id] != nil {
				continue
			}
			n := &inode{id: id}
			ns = append(ns, n)
			ref[id] = n
		}
		if id, ok := x.addAll(ns); !ok {
			t.Fatalf("%+v: addAll reports %d twice", tc, id)
		}
		if x.len() != len(ref) || x.len()*4 > len(x.slots)*3 {
			t.Fatalf("%+v: len %d in %d slots, want %d", tc, x.len(), len(x.slots), len(ref))
		}
		for id, n := range ref {
			if x.get(id) != n {
				t.Fatalf("%+v: id %d lost", tc, id)
			}
		}
		for id := range ref {
			if !x.remove(id) {
				t.Fatalf("%+v: remove(%d) found nothing", tc, id)
			}
		}
		if x.len() != 0 {
			t.Fatalf("%+v: %d left", tc, x.len())
		}
	}
	var x idIndex
	x.put(&inode{id: 7})
	for _, ns := range [][]*inode{{{id: 7}}, {{id: 8}, {id: 8}}} {
		if id, ok := x.addAll(ns); ok || (id != 7 && id != 8) {
			t.Fatalf("addAll of a duplicate: %d, %v", id, ok)
		}
	}
	big := make([]*inode, 1<<17)
	for i := range big {
		big[i] = &inode{id: int64(1000 + i)}
	}
	big[len(big)-1] = &inode{id: 1000 + 12345}
	if id, ok := x.addAll(big); ok || id != 1000+12345 {
		t.Fatalf("addAll of a large batch holding a duplicate: %d, %v", id, ok)
	}
}

// TestCheckpointDuplicateFileRefused: a checkpoint naming one file id
// twice (in two directories, the files indexed in bulk at the end) fails
// to load, naming the id.
func TestCheckpointDuplicateFileRefused(t *testing.T) {
	s := bigState(t, 3000)
	// Neither the first file of its directory (those load the slow way,
	// indexed at once): the duplicate is found in the bulk indexing.
	var a, b, prev *inode
	walk(s.root, func(n *inode) bool {
		if !n.dir() && prev != nil && prev.parent == n.parent && !prev.dir() {
			if a == nil {
				a = n
			} else if n.parent != a.parent && b == nil {
				b = n
			}
		}
		prev = n
		return b == nil
	})
	if a == nil || b == nil {
		t.Fatal("no two files in two directories")
	}
	s.inodes.remove(b.id)
	b.id = a.id
	dir := t.TempDir()
	path, err := journal.WriteCheckpoint(dir, s.LastSequence(), s.WriteCheckpoint)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := loadCheckpointFile(path); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("inode %d exists twice", a.id)) {
		t.Fatalf("a checkpoint with file id %d twice: %v", a.id, err)
	}
}

// TestPackedInodeFields round-trips every packed and rare attribute
// through a state: what goes in comes out, and an inode back at its
// defaults gives its rare attributes up.
func TestPackedInodeFields(t *testing.T) {
	s := NewState()
	for _, c := range []struct {
		length int64
		fp     string
		local  bool
	}{
		{0, "0:1733372400123456789", true},
		{5, "5:-12", true},
		{5, "6:12", false},       // size not the length
		{5, "5:012", false},      // not canonical
		{5, "5:+12", false},      // not canonical
		{5, "5:", false},         // no mtime
		{5, "d41d8cd9:5", false}, // S3's etag:size
		{5, "", false},           // none
		{5, "5:12:13", false},    // more than two parts
		{1 << 40, "1099511627776:1", true},
	} {
		n, err := s.newFile(fileAttrs{id: 7, name: "f", mode: 0o640, owner: "u", group: "g", blockSize: 1 << 20, length: c.length,
			fingerprint: c.fp, replMax: -1, persist: api.PersistenceState_PERSISTED, writeType: api.WriteType_ASYNC_THROUGH})
		if err != nil {
			t.Fatal(err)
		}
		if got := s.fingerprint(n); got != c.fp {
			t.Errorf("fingerprint %q came back as %q", c.fp, got)
		}
		if n.flag(bitFPLocal) != c.local {
			t.Errorf("fingerprint %q: compact %v, want %v", c.fp, n.flag(bitFPLocal), c.local)
		}
		if (s.ext(n) != nil) != (!c.local && c.fp != "") {
			t.Errorf("fingerprint %q: rare attributes %v", c.fp, s.ext(n))
		}
		// A new length keeps the fingerprint as it was.
		s.setLength(n, c.length+3)
		if got := s.fingerprint(n); got != c.fp {
			t.Errorf("fingerprint %q after a length change: %q", c.fp, got)
		}
		if n.mode() != 0o640 || s.owner(n) != "u" || s.group(n) != "g" || s.blockSize(n) != 1<<20 ||
			n.persist() != api.PersistenceState_PERSISTED || n.writeType() != api.WriteType_ASYNC_THROUGH || n.dir() {
			t.Errorf("packed fields lost: mode %o owner %s group %s bs %d persist %v wt %v", n.mode(), s.owner(n), s.group(n), s.blockSize(n), n.persist(), n.writeType())
		}
		s.dropExt(n)
	}

	n, err := s.newFile(fileAttrs{id: 8, name: "g", blockSize: 64 << 20, replMax: -1})
	if err != nil {
		t.Fatal(err)
	}
	s.setReplication(n, 1, 3)
	s.setTTL(n, 1000)
	s.setTTLAction(n, ttlFree)
	s.setFingerprint(n, "etag:0")
	if lo, hi := s.replication(n); lo != 1 || hi != 3 {
		t.Errorf("replication %d..%d", lo, hi)
	}
	if ttl, a := s.ttl(n); ttl != 1000 || a != ttlFree || s.ttls[n.id] != n {
		t.Errorf("ttl %d %q indexed %v", ttl, a, s.ttls[n.id] != nil)
	}
	s.setReplication(n, 0, -1)
	s.setTTL(n, 0)
	s.setTTLAction(n, "")
	s.setFingerprint(n, "")
	if s.ext(n) != nil || n.flag(bitExt) || len(s.ttls) != 0 {
		t.Errorf("an inode back at its defaults keeps rare attributes: %+v", s.ext(n))
	}

	// Past 255 distinct block sizes a size lives in the rare attributes.
	var last *inode
	for i := range 300 {
		f, err := s.newFile(fileAttrs{id: int64(100 + i), name: "b", blockSize: int64(4096 + i), replMax: -1})
		if err != nil {
			t.Fatal(err)
		}
		if s.blockSize(f) != int64(4096+i) {
			t.Fatalf("block size %d came back as %d", 4096+i, s.blockSize(f))
		}
		last = f
	}
	if s.ext(last) == nil {
		t.Fatalf("the 300th block size is not in the rare attributes")
	}

	for _, bad := range []fileAttrs{
		{id: 9, blockSize: 1, mode: 0o10000},
		{id: 9, blockSize: 1, persist: 4},
		{id: 9, blockSize: 1, writeType: 5},
		{id: 9, blockSize: 0},
		{id: 9, blockSize: 1, length: -1},
	} {
		if _, err := s.newFile(bad); err == nil {
			t.Errorf("newFile(%+v) accepted", bad)
		}
	}
}

// TestApplyRefusesUnpackableValues: an entry whose values the packed
// inode cannot hold is refused and changes nothing.
func TestApplyRefusesUnpackableValues(t *testing.T) {
	s := NewState()
	seq := int64(0)
	apply := func(e *api.JournalEntry) error { seq++; e.Sequence = seq; return s.Apply(e) }
	if err := apply(dirEntry(&api.InodeDirectoryEntry{Id: 1, Mode: 0o755, MountPoint: true})); err != nil {
		t.Fatal(err)
	}
	if err := apply(&api.JournalEntry{Body: &api.JournalEntry_AddMountPoint{AddMountPoint: &api.AddMountPointEntry{Mount: &api.MountPointInfo{AlluviumPath: "/", UfsUri: "file:///x", MountId: 1}}}}); err != nil {
		t.Fatal(err)
	}
	if err := apply(fileEntry(&api.InodeFileEntry{Id: 2, ParentId: 1, Name: "f", BlockSizeBytes: 1, ReplicationMax: -1})); err != nil {
		t.Fatal(err)
	}
	before := s.Dump()
	for _, e := range []*api.JournalEntry{
		fileEntry(&api.InodeFileEntry{Id: 3, ParentId: 1, Name: "g", BlockSizeBytes: 1, Mode: 0o17777}),
		fileEntry(&api.InodeFileEntry{Id: 3, ParentId: 1, Name: "g", BlockSizeBytes: 1, WriteType: 9}),
		dirEntry(&api.InodeDirectoryEntry{Id: 3, ParentId: 1, Name: "d", PersistenceState: 7}),
		setAttrEntry(&api.SetAttributeEntry{Id: 2, Mode: ptr(uint32(0o20000)), Owner: ptr("x")}),
		setAttrEntry(&api.SetAttributeEntry{Id: 2, PersistenceState: ptr(api.PersistenceState(5)), Pinned: ptr(true)}),
	} {
		if err := apply(e); err == nil {
			t.Errorf("entry %v applied", e)
		}
		if got := s.Dump(); got != before {
			t.Fatalf("refused entry %v changed the state:\n%s", e, diff(before, got))
		}
	}
	if err := s.CheckInvariants(); err != nil {
		t.Fatal(err)
	}
}

// TestCheckpointV1StillLoads loads a checkpoint written by the master
// before the compact inode layout (testdata/checkpoint-v1, made from a
// namespace using every attribute) and checks the state is exactly what
// that master dumped; written again and reloaded, it stays the same.
func TestCheckpointV1StillLoads(t *testing.T) {
	want, err := os.ReadFile("testdata/checkpoint-v1/dump.txt")
	if err != nil {
		t.Fatal(err)
	}
	// Checkpoint files are opened read-only but bbolt wants write access
	// to the directory's lock: work on a copy.
	dir := t.TempDir()
	src, err := os.ReadFile("testdata/checkpoint-v1/29.bolt")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "29.bolt")
	if err := os.WriteFile(path, src, 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := loadCheckpointFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CheckInvariants(); err != nil {
		t.Fatal(err)
	}
	if got := st.Dump(); got != string(want) {
		t.Fatalf("v1 checkpoint loads differently:\n%s", diff(string(want), got))
	}
	again, err := journal.WriteCheckpoint(filepath.Join(dir, "j"), st.LastSequence(), st.WriteCheckpoint)
	if err != nil {
		t.Fatal(err)
	}
	st2, err := loadCheckpointFile(again)
	if err != nil {
		t.Fatal(err)
	}
	if got := st2.Dump(); got != string(want) {
		t.Fatalf("rewritten checkpoint loads differently:\n%s", diff(string(want), got))
	}
}

// ufsStateForTest is a state with a root, its mount, a directory /d and a
// file /f.
func ufsStateForTest(t testing.TB) *State {
	s := NewState()
	for i, e := range []*api.JournalEntry{
		dirEntry(&api.InodeDirectoryEntry{Id: 1, Mode: 0o755, MountPoint: true, Owner: "u", Group: "g"}),
		{Body: &api.JournalEntry_AddMountPoint{AddMountPoint: &api.AddMountPointEntry{Mount: &api.MountPointInfo{AlluviumPath: "/", UfsUri: "file:///x", MountId: 1}}}},
		dirEntry(&api.InodeDirectoryEntry{Id: 2, ParentId: 1, Name: "d", Mode: 0o755, Owner: "u", Group: "g"}),
		fileEntry(&api.InodeFileEntry{Id: 3, ParentId: 1, Name: "f", BlockSizeBytes: 1, ReplicationMax: -1}),
	} {
		e.Sequence = int64(i + 1)
		if err := s.Apply(e); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func ufsChildrenEntry(parent, first int64, kids ...*api.UfsChild) *api.JournalEntry {
	return &api.JournalEntry{Sequence: 10, OpTimeMs: 777, Body: &api.JournalEntry_UfsChildren{UfsChildren: &api.UfsChildrenEntry{
		ParentId: parent, FirstId: first, Owner: "o", Group: "gr", BlockSizeBytes: 64 << 20, CreationTimeMs: 500,
		Children: kids, ChildrenLoaded: true,
	}}}
}

// TestApplyUfsChildren: a page of UFS children lands as the entries per
// child would have (persisted complete files, persisted unloaded
// directories, ids in order, the parent loaded and modified); any bad
// child refuses the whole page and changes nothing.
func TestApplyUfsChildren(t *testing.T) {
	s := ufsStateForTest(t)
	mt := int64(123456)
	e := ufsChildrenEntry(2, 10,
		&api.UfsChild{Name: "b.bin", Mode: 0o600, Length: 5, MtimeMs: &mt, UfsFingerprint: "5:123456000001"},
		&api.UfsChild{Name: "a", Directory: true, Mode: 0o755},
		&api.UfsChild{Name: "c", Mode: 0o644, UfsFingerprint: "etag:0"},
	)
	if err := s.Apply(e); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckInvariants(); err != nil {
		t.Fatal(err)
	}
	got := s.Dump()
	for _, want := range []string{
		`/d id=2 dir=true mode=755 owner="u" group="g" ctime=0 mtime=777 persist=PERSISTED pinned=false loaded=true mountpoint=false children=3`,
		`/d/a id=11 dir=true mode=755 owner="o" group="gr" ctime=500 mtime=500 persist=PERSISTED pinned=false loaded=false`,
		`/d/b.bin id=10 dir=false mode=600 owner="o" group="gr" ctime=123456 mtime=123456 persist=PERSISTED pinned=false len=5 bs=67108864 wt=THROUGH complete=true fp="5:123456000001" repl=0..-1`,
		`/d/c id=12 dir=false mode=644 owner="o" group="gr" ctime=500 mtime=500 persist=PERSISTED pinned=false len=0 bs=67108864 wt=THROUGH complete=true fp="etag:0" repl=0..-1`,
		"seq 10 next-inode 13",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("state lacks %q:\n%s", want, got)
		}
	}

	for name, bad := range map[string]*api.JournalEntry{
		"parent missing":  ufsChildrenEntry(99, 20, &api.UfsChild{Name: "x"}),
		"parent a file":   ufsChildrenEntry(3, 20, &api.UfsChild{Name: "x"}),
		"id taken":        ufsChildrenEntry(2, 11, &api.UfsChild{Name: "x"}),
		"first id 0":      ufsChildrenEntry(2, 0, &api.UfsChild{Name: "x"}),
		"invalid name":    ufsChildrenEntry(2, 20, &api.UfsChild{Name: "x"}, &api.UfsChild{Name: ".."}),
		"name taken":      ufsChildrenEntry(2, 20, &api.UfsChild{Name: "x"}, &api.UfsChild{Name: "a"}),
		"name twice":      ufsChildrenEntry(2, 20, &api.UfsChild{Name: "x"}, &api.UfsChild{Name: "y"}, &api.UfsChild{Name: "x"}),
		"twice, in order": ufsChildrenEntry(2, 20, &api.UfsChild{Name: "w"}, &api.UfsChild{Name: "x"}, &api.UfsChild{Name: "x"}),
		"bad mode":        ufsChildrenEntry(2, 20, &api.UfsChild{Name: "x", Mode: 0o100644}),
		"negative length": ufsChildrenEntry(2, 20, &api.UfsChild{Name: "x", Length: -1}),
		"slash in name":   ufsChildrenEntry(2, 20, &api.UfsChild{Name: "é/x"}),
	} {
		before := s.Dump()
		if err := s.Apply(bad); err == nil {
			t.Errorf("%s: applied", name)
		}
		if after := s.Dump(); after != before {
			t.Fatalf("%s: a refused page changed the state:\n%s", name, diff(before, after))
		}
	}
	zeroBS := ufsChildrenEntry(2, 20, &api.UfsChild{Name: "x"})
	zeroBS.GetUfsChildren().BlockSizeBytes = 0
	if err := s.Apply(zeroBS); err == nil {
		t.Errorf("files with block size 0 applied")
	}
	// Directories only need no block size.
	dirsOnly := ufsChildrenEntry(2, 20, &api.UfsChild{Name: "x", Directory: true})
	dirsOnly.GetUfsChildren().BlockSizeBytes = 0
	if err := s.Apply(dirsOnly); err != nil {
		t.Errorf("directories only: %v", err)
	}
	if err := s.CheckInvariants(); err != nil {
		t.Fatal(err)
	}
}

// bigState builds a state of about n inodes shaped like a learned UFS:
// directories of 1,000 files with local fingerprints, a few with rare
// attributes.
func bigState(tb testing.TB, n int) *State {
	tb.Helper()
	s := ufsStateForTest(tb)
	id := int64(100)
	seq := int64(100)
	mt := int64(1733372400123)
	for d := 0; int(id) < n; d++ {
		did := id
		id++
		var kids []*api.UfsChild
		for f := range 1000 {
			kids = append(kids, &api.UfsChild{Name: fmt.Sprintf("part-%05d.parquet", f), Mode: 0o644, Length: int64(f), MtimeMs: &mt,
				UfsFingerprint: fmt.Sprintf("%d:%d", f, mt*1000000+int64(f))})
		}
		seq++
		if err := s.Apply(&api.JournalEntry{Sequence: seq, Body: &api.JournalEntry_UfsChildren{UfsChildren: &api.UfsChildrenEntry{
			ParentId: 2, FirstId: did, Owner: "o", Group: "g", CreationTimeMs: 5,
			Children: []*api.UfsChild{{Name: fmt.Sprintf("d%05d", d), Directory: true, Mode: 0o755}},
		}}}); err != nil {
			tb.Fatal(err)
		}
		seq++
		if err := s.Apply(&api.JournalEntry{Sequence: seq, Body: &api.JournalEntry_UfsChildren{UfsChildren: &api.UfsChildrenEntry{
			ParentId: did, FirstId: id, Owner: "o", Group: "g", BlockSizeBytes: 64 << 20, CreationTimeMs: 5, Children: kids, ChildrenLoaded: true,
		}}}); err != nil {
			tb.Fatal(err)
		}
		id += int64(len(kids))
		seq++
		e := setAttrEntry(&api.SetAttributeEntry{Id: id - 1, Ttl: ptr(int64(9)), ReplicationMin: ptr(int32(1))})
		e.Sequence = seq
		if err := s.Apply(e); err != nil {
			tb.Fatal(err)
		}
	}
	return s
}

// TestCheckpointFormatTwo: a state written in format 2 loads to the same
// state; a format the build does not know is refused, naming the versions.
func TestCheckpointFormatTwo(t *testing.T) {
	s := bigState(t, 20000)
	dir := t.TempDir()
	path, err := journal.WriteCheckpoint(dir, s.LastSequence(), s.WriteCheckpoint)
	if err != nil {
		t.Fatal(err)
	}
	got, err := loadCheckpointFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := got.CheckInvariants(); err != nil {
		t.Fatal(err)
	}
	if a, b := s.Dump(), got.Dump(); a != b {
		t.Fatalf("format 3 round trip differs:\n%s", diff(a, b))
	}
	// Format 2 (records without the rare-attribute string) still loads.
	path, err = journal.WriteCheckpoint(filepath.Join(dir, "v2"), s.LastSequence(), func(tx *bolt.Tx) error {
		return s.writeCheckpoint(tx, checkpointFmtV2)
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, err = loadCheckpointFile(path); err != nil {
		t.Fatal(err)
	}
	if a, b := s.Dump(), got.Dump(); a != b {
		t.Fatalf("format 2 round trip differs:\n%s", diff(a, b))
	}
	future := *s
	path, err = journal.WriteCheckpoint(filepath.Join(dir, "future"), s.LastSequence(), func(tx *bolt.Tx) error {
		if err := future.WriteCheckpoint(tx); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(keyVersion, u64(7))
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := loadCheckpointFile(path); err == nil || !strings.Contains(err.Error(), "format version 7, this build reads 1 to 3") {
		t.Fatalf("a format-7 checkpoint: %v", err)
	}
}

// FuzzDecodeCheckpointChunk feeds arbitrary bytes to the format-2 chunk
// loader: it never panics, and whatever records it took leave a state
// that passes every invariant (a lone record cannot add a mount point's
// mount).
func FuzzDecodeCheckpointChunk(f *testing.F) {
	s := bigState(f, 3000)
	var b []byte
	count := 0
	walk(s.root, func(n *inode) bool {
		if n.id > 2 { // not the root nor /d, which the fuzzed state has
			b = s.appendRecord(b, n, true)
			count++
		}
		return count < 40
	})
	f.Add(append(binary.AppendUvarint(nil, uint64(count)), b...))
	f.Add([]byte{1, 5, 2, 0x80, 0x20, 0, 1, 'x', 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, v []byte) {
		st := ufsStateForTest(t)
		st.owners.intern("o", "g")
		st.sizes.intern(64 << 20)
		_ = st.loadChunkV2(v, false, true)
		if err := st.CheckInvariants(); err != nil && !strings.Contains(err.Error(), "has no mount") {
			t.Fatalf("chunk %x: %v", v, err)
		}
	})
}

// BenchmarkCheckpointLoad writes a checkpoint of about a million inodes
// and recovers from it as a restart does (find the newest checkpoint,
// verify its checksum, load it): the restart's main cost.
func BenchmarkCheckpointLoad(b *testing.B) {
	s := bigState(b, 1_000_000)
	dir := b.TempDir()
	if _, err := journal.WriteCheckpoint(dir, s.LastSequence(), s.WriteCheckpoint); err != nil {
		b.Fatal(err)
	}
	// A restarting master starts with an empty heap: so does each load.
	count := s.InodeCount()
	s = nil
	runtime.GC()
	b.ResetTimer()
	for range b.N {
		st, _, _, err := recoverState(dir, zap.NewNop())
		if err != nil || st.InodeCount() != count {
			b.Fatalf("%v, %d inodes", err, st.InodeCount())
		}
		b.StopTimer()
		st = nil
		runtime.GC()
		b.StartTimer()
	}
	b.ReportMetric(float64(count)*float64(b.N)/b.Elapsed().Seconds(), "inodes/s")
}

// BenchmarkCheckpointWrite writes a checkpoint of about a million inodes
// as a master without a secondary does (under its read lock): file,
// checksum, fsync.
func BenchmarkCheckpointWrite(b *testing.B) {
	s := bigState(b, 1_000_000)
	dir := b.TempDir()
	b.ResetTimer()
	for range b.N {
		if _, err := journal.WriteCheckpoint(dir, s.LastSequence(), s.WriteCheckpoint); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(s.InodeCount())*float64(b.N)/b.Elapsed().Seconds(), "inodes/s")
}
