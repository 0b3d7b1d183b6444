package fsmaster

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/grpc/codes"

	"github.com/alluvium/alluvium/api"
)

func startUpload(t testing.TB, ns *namespace, ctx context.Context, p string) *api.FileInfo {
	t.Helper()
	return must(ns.CreateFile(ctx, &api.CreateFileRequest{Path: p, Overwrite: true, Recursive: true, Upload: true,
		WriteType: api.WriteType_MUST_CACHE, Xattrs: map[string][]byte{"s3": []byte("init")}}))
}

// putPart allocates blocks for a part of length bytes and records it.
func putPart(t testing.TB, ns *namespace, ctx context.Context, up *api.FileInfo, num int32, length int64, tag string) *api.UploadPart {
	t.Helper()
	a := must(ns.AllocateUploadBlocks(ctx, &api.AllocateUploadBlocksRequest{Path: up.Path, FileId: up.FileId, Length: length}))
	if a.BlockCount != blockCountOf(length, a.BlockSize) {
		t.Fatalf("part %d of %d bytes got %d blocks of %d", num, length, a.BlockCount, a.BlockSize)
	}
	return must(ns.CommitUploadPart(ctx, &api.CommitUploadPartRequest{Path: up.Path, FileId: up.FileId, PartNumber: num,
		FirstBlock: a.FirstBlock, Length: length, Tag: []byte(tag)}))
}

// TestUploadParts: parts in any order, one uploaded twice, complete with
// some of them: the file is their bytes in their blocks, in order.
func TestUploadParts(t *testing.T) {
	ns, _, _ := newTestNS(t) // block size 1024
	old := create(t, ns, "/b/k", 10)
	up := startUpload(t, ns, bg, "/b/k")
	if up.FileId == old.FileId || up.Completed {
		t.Fatalf("upload: %v", up)
	}
	p3 := putPart(t, ns, bg, up, 3, 100, "c")
	p1 := putPart(t, ns, bg, up, 1, 2500, "a") // three blocks
	putPart(t, ns, bg, up, 2, 7, "b-first")
	p2 := putPart(t, ns, bg, up, 2, 1024, "b") // replaces the first part 2
	putPart(t, ns, bg, up, 4, 1, "unused")
	check(t, ns)
	// The path still shows the old object.
	if got := stat(t, ns, "/b/k"); got.FileId != old.FileId {
		t.Fatalf("during the upload the path shows %v", got)
	}
	lp := must(ns.ListUploadParts(bg, &api.ListUploadPartsRequest{Path: "/b/k", FileId: up.FileId}))
	var nums []string
	for _, p := range lp.Parts {
		nums = append(nums, itoa(int64(p.PartNumber))+"="+string(p.Tag))
	}
	if strings.Join(nums, ",") != "1=a,2=b,3=c,4=unused" {
		t.Fatalf("parts: %v", nums)
	}
	if string(lp.Upload.Xattrs["s3"]) != "init" {
		t.Fatalf("upload xattrs: %v", lp.Upload.Xattrs)
	}
	refs := []*api.UploadPartRef{{PartNumber: 1, FirstBlock: p1.FirstBlock}, {PartNumber: 2, FirstBlock: p2.FirstBlock}, {PartNumber: 3, FirstBlock: p3.FirstBlock}}
	// A wrong length, a stale part, parts out of order: refused, nothing changes.
	before := dump(ns)
	_, err := ns.CompleteFile(bg, &api.CompleteFileRequest{Path: "/b/k", FileId: up.FileId, Length: 9, Parts: refs})
	wantCode(t, err, codes.InvalidArgument, "complete with the wrong length")
	stale := []*api.UploadPartRef{refs[0], {PartNumber: 2, FirstBlock: p2.FirstBlock - 1}, refs[2]}
	_, err = ns.CompleteFile(bg, &api.CompleteFileRequest{Path: "/b/k", FileId: up.FileId, Length: 3624, Parts: stale})
	wantCode(t, err, codes.FailedPrecondition, "complete with a part uploaded again since")
	_, err = ns.CompleteFile(bg, &api.CompleteFileRequest{Path: "/b/k", FileId: up.FileId, Length: 3624, Parts: []*api.UploadPartRef{refs[1], refs[0], refs[2]}})
	wantCode(t, err, codes.InvalidArgument, "complete with parts out of order")
	_, err = ns.CompleteFile(bg, &api.CompleteFileRequest{Path: "/b/k", FileId: up.FileId, Length: 0})
	wantCode(t, err, codes.InvalidArgument, "complete an upload without parts")
	if dump(ns) != before {
		t.Fatal("a refused completion changed the state")
	}
	must(ns.CompleteFile(bg, &api.CompleteFileRequest{Path: "/b/k", FileId: up.FileId, Length: 3624, Parts: refs,
		Xattrs: map[string][]byte{"s3": []byte("done")}}))
	check(t, ns)
	got := stat(t, ns, "/b/k")
	if got.FileId != up.FileId || got.Length != 3624 || !got.Completed || string(got.Xattrs["s3"]) != "done" {
		t.Fatalf("completed: %v", got)
	}
	l := api.LayoutOf(got)
	var spans []string
	for i := range l.Count() {
		b := l.Block(i)
		spans = append(spans, itoa(api.BlockIndex(b.ID))+"@"+itoa(b.Offset)+"+"+itoa(b.Length))
	}
	want := itoa(p1.FirstBlock) + "@0+1024," + itoa(p1.FirstBlock+1) + "@1024+1024," + itoa(p1.FirstBlock+2) + "@2048+452," +
		itoa(p2.FirstBlock) + "@2500+1024," + itoa(p3.FirstBlock) + "@3524+100"
	if strings.Join(spans, ",") != want {
		t.Fatalf("layout %v, want %v", spans, want)
	}
	if len(got.BlockIds) != 5 || got.BlockIds[3] != api.BlockID(up.FileId, p2.FirstBlock) {
		t.Fatalf("block ids %v", got.BlockIds)
	}
	// Gone: the upload and its parts.
	_, err = ns.ListUploadParts(bg, &api.ListUploadPartsRequest{Path: "/b/k", FileId: up.FileId})
	wantCode(t, err, codes.NotFound, "list parts of a completed upload")
	_, err = ns.AllocateUploadBlocks(bg, &api.AllocateUploadBlocksRequest{Path: "/b/k", FileId: up.FileId, Length: 1})
	wantCode(t, err, codes.NotFound, "add a part to a completed upload")
}

// TestUploadsBelongToTheirOwner: another user can neither see, extend,
// complete nor abort an upload; the owner loses a permission taken away.
func TestUploadsBelongToTheirOwner(t *testing.T) {
	ns := newPermNS(t, true)
	alice, bob := as("alice"), as("bob")
	must(ns.CreateDirectory(as(""), &api.CreateDirectoryRequest{Path: "/shared", Mode: 0o777}))
	up := startUpload(t, ns, bob, "/shared/k")
	p1 := putPart(t, ns, bob, up, 1, 10, "x")
	before := dump(ns)
	_, err := ns.AllocateUploadBlocks(alice, &api.AllocateUploadBlocksRequest{Path: up.Path, FileId: up.FileId, Length: 5})
	wantCode(t, err, codes.PermissionDenied, "alice adds a part to bob's upload")
	_, err = ns.CommitUploadPart(alice, &api.CommitUploadPartRequest{Path: up.Path, FileId: up.FileId, PartNumber: 1, FirstBlock: p1.FirstBlock, Length: 10})
	wantCode(t, err, codes.PermissionDenied, "alice replaces bob's part")
	_, err = ns.ListUploadParts(alice, &api.ListUploadPartsRequest{Path: up.Path, FileId: up.FileId})
	wantCode(t, err, codes.PermissionDenied, "alice lists bob's parts")
	_, err = ns.CompleteFile(alice, &api.CompleteFileRequest{Path: up.Path, FileId: up.FileId, Length: 10, Parts: []*api.UploadPartRef{{PartNumber: 1, FirstBlock: p1.FirstBlock}}})
	wantCode(t, err, codes.PermissionDenied, "alice completes bob's upload")
	err = ns.Delete(alice, &api.DeleteRequest{Path: up.Path, FileId: up.FileId, AlluviumOnly: true})
	wantCode(t, err, codes.PermissionDenied, "alice aborts bob's upload")
	if got := must(ns.ListUploads(alice, &api.ListUploadsRequest{Path: "/"})); len(got.Uploads) != 0 {
		t.Fatalf("alice lists %d uploads", len(got.Uploads))
	}
	if dump(ns) != before {
		t.Fatal("alice's refused calls changed the state")
	}
	if got := must(ns.ListUploads(bob, &api.ListUploadsRequest{Path: "/shared"})); len(got.Uploads) != 1 || got.Uploads[0].Path != "/shared/k" {
		t.Fatalf("bob lists %v", got.Uploads)
	}
	if got := must(ns.ListUploads(as(""), &api.ListUploadsRequest{Path: "/"})); len(got.Uploads) != 1 {
		t.Fatalf("the superuser lists %d uploads", len(got.Uploads))
	}
	// Uploading into a directory bob may not write: refused at create, and
	// at the next part once write permission is taken away.
	_, err = ns.CreateFile(alice, &api.CreateFileRequest{Path: "/home/bob/k", Overwrite: true, Upload: true})
	wantCode(t, err, codes.PermissionDenied, "alice starts an upload in bob's 0700 directory")
	must(ns.SetAttribute(as(""), &api.SetAttributeRequest{Path: "/shared", Mode: ptr(uint32(0o755))}))
	_, err = ns.AllocateUploadBlocks(bob, &api.AllocateUploadBlocksRequest{Path: up.Path, FileId: up.FileId, Length: 5})
	wantCode(t, err, codes.PermissionDenied, "bob adds a part after losing write on the directory")
	// Bob aborts his own upload.
	noErr(t, ns.Delete(bob, &api.DeleteRequest{Path: up.Path, FileId: up.FileId, AlluviumOnly: true}))
	if got := must(ns.ListUploads(bob, &api.ListUploadsRequest{Path: "/"})); len(got.Uploads) != 0 {
		t.Fatalf("after the abort bob lists %v", got.Uploads)
	}
	check(t, ns)
}

// TestUploadStagedBytesBound: a user's staged bytes are bounded; a
// replaced part gives its bytes back, completing or aborting all of them.
func TestUploadStagedBytesBound(t *testing.T) {
	ns := newPermNS(t, true)
	ns.cfg.maxStagedBytes = 100
	bob := as("bob")
	must(ns.CreateDirectory(as(""), &api.CreateDirectoryRequest{Path: "/shared", Mode: 0o777}))
	u1 := startUpload(t, ns, bob, "/shared/a")
	u2 := startUpload(t, ns, bob, "/shared/b")
	putPart(t, ns, bob, u1, 1, 60, "")
	_, err := ns.AllocateUploadBlocks(bob, &api.AllocateUploadBlocksRequest{Path: u2.Path, FileId: u2.FileId, Length: 41})
	wantCode(t, err, codes.ResourceExhausted, "41 bytes past 60 staged of 100")
	putPart(t, ns, bob, u2, 1, 20, "") // 80
	// A part uploaded again needs room until it replaces the old one,
	// which then gives its bytes back.
	putPart(t, ns, bob, u1, 1, 20, "") // 100 at the allocation, then 40
	putPart(t, ns, bob, u2, 2, 60, "") // 100
	_, err = ns.AllocateUploadBlocks(bob, &api.AllocateUploadBlocksRequest{Path: u2.Path, FileId: u2.FileId, Length: 1})
	wantCode(t, err, codes.ResourceExhausted, "a byte past 100 staged")
	// Another user has a bound of their own.
	alice := as("alice")
	ua := startUpload(t, ns, alice, "/shared/c")
	putPart(t, ns, alice, ua, 1, 100, "")
	// An abort gives everything back.
	noErr(t, ns.Delete(bob, &api.DeleteRequest{Path: u1.Path, FileId: u1.FileId, AlluviumOnly: true}))
	putPart(t, ns, bob, u2, 3, 20, "")
	check(t, ns)
}

// TestUploadCheckpointAndReplay: an upload in flight survives a checkpoint
// and a replay of the journal, and completes on either to the same state.
func TestUploadCheckpointAndReplay(t *testing.T) {
	ns, j, _ := newTestNS(t)
	up := startUpload(t, ns, bg, "/b/k")
	p1 := putPart(t, ns, bg, up, 1, 2000, "a")
	p2 := putPart(t, ns, bg, up, 2, 5, "b")
	want := dump(ns)
	if !strings.Contains(want, "upload next=3") {
		t.Fatalf("dump shows no upload state:\n%s", want)
	}
	path := filepath.Join(t.TempDir(), "ckpt.bolt")
	db := must(bolt.Open(path, 0o600, nil))
	defer db.Close()
	ns.mu.RLock()
	err := db.Update(ns.st.WriteCheckpoint)
	ns.mu.RUnlock()
	noErr(t, err)
	var st *State
	noErr(t, db.View(func(tx *bolt.Tx) error { st, err = LoadCheckpoint(tx); return err }))
	if got := st.Dump(); got != want {
		t.Fatalf("checkpoint round trip:\n%s", diff(want, got))
	}
	replay := NewState()
	for _, e := range j.entries {
		noErr(t, replay.Apply(e))
	}
	if got := replay.Dump(); got != want {
		t.Fatalf("replay:\n%s", diff(want, got))
	}
	mark := len(j.entries)
	must(ns.CompleteFile(bg, &api.CompleteFileRequest{Path: "/b/k", FileId: up.FileId, Length: 2005,
		Parts: []*api.UploadPartRef{{PartNumber: 1, FirstBlock: p1.FirstBlock}, {PartNumber: 2, FirstBlock: p2.FirstBlock}}}))
	for _, s := range []*State{st, replay} {
		for _, e := range j.entries[mark:] {
			noErr(t, s.Apply(e))
		}
		if got := s.Dump(); got != dump(ns) {
			t.Fatalf("after completion:\n%s", diff(dump(ns), got))
		}
		noErr(t, s.CheckInvariants())
	}
	// A part entry for blocks never given out does not apply.
	bad := &api.JournalEntry{Sequence: 1 << 40, Body: &api.JournalEntry_UploadPart{UploadPart: &api.UploadPartEntry{Id: up.FileId, PartNumber: 1, First: 99, Length: 1}}}
	if err := replay.Apply(bad); err == nil {
		t.Fatal("a part entry for a completed file applied")
	}
}

// TestUploadInPlace: parts of one size written in place in the upload's
// UFS file (the first attempt at each part number) complete with no copy:
// the master cuts the file to length and renames it onto the path. A part
// uploaded again, or out of the grid, is not in place, and a completion
// that claims it is fails.
func TestUploadInPlace(t *testing.T) {
	ns, j, ufsDir := newTestNS(t)
	up := must(ns.CreateFile(bg, &api.CreateFileRequest{Path: "/b/k", Overwrite: true, Recursive: true, Upload: true, WriteType: api.WriteType_CACHE_THROUGH}))
	alloc := func(num int32, length int64) *api.AllocateUploadBlocksResponse {
		return must(ns.AllocateUploadBlocks(bg, &api.AllocateUploadBlocksRequest{Path: up.Path, FileId: up.FileId, Length: length, PartNumber: num}))
	}
	commit := func(num int32, a *api.AllocateUploadBlocksResponse, length int64) *api.UploadPart {
		return must(ns.CommitUploadPart(bg, &api.CommitUploadPartRequest{Path: up.Path, FileId: up.FileId, PartNumber: num, FirstBlock: a.FirstBlock, Length: length}))
	}
	a2 := alloc(2, 100) // the first part placed sets the grid: 100
	a1 := alloc(1, 100)
	a3 := alloc(3, 40) // the last, shorter
	big := alloc(4, 150)
	if !a1.InPlace || a1.UfsOffset != 0 || !a2.InPlace || a2.UfsOffset != 100 || !a3.InPlace || a3.UfsOffset != 200 || big.InPlace {
		t.Fatalf("placements: 1 %v@%d, 2 %v@%d, 3 %v@%d, 4 (150 bytes) %v", a1.InPlace, a1.UfsOffset, a2.InPlace, a2.UfsOffset, a3.InPlace, a3.UfsOffset, big.InPlace)
	}
	if want := "file://" + filepath.Join(ufsDir, "b", ".alluvium-tmp-overwrite-"+itoa(up.FileId)); a1.UfsPath != want {
		t.Fatalf("in-place UFS path %s, want %s", a1.UfsPath, want)
	}
	if again := alloc(1, 100); again.InPlace {
		t.Fatal("a second attempt at part 1 is placed over the first")
	}
	// The workers would write the regions; here, the test does.
	tmp := filepath.Join(ufsDir, "b", ".alluvium-tmp-overwrite-"+itoa(up.FileId))
	noErr(t, os.MkdirAll(filepath.Dir(tmp), 0o755))
	content := make([]byte, 300)
	for i := range content {
		content[i] = byte('a' + i/100)
	}
	noErr(t, os.WriteFile(tmp, append(content[:240:240], []byte("junk past the end")...), 0o600))
	p1, p2, p3 := commit(1, a1, 100), commit(2, a2, 100), commit(3, a3, 40)
	refs := []*api.UploadPartRef{{PartNumber: 1, FirstBlock: p1.FirstBlock}, {PartNumber: 2, FirstBlock: p2.FirstBlock}, {PartNumber: 3, FirstBlock: p3.FirstBlock}}
	// Part 2 uploaded again (not in place): an in-place completion fails.
	a2b := alloc(2, 100)
	p2b := commit(2, a2b, 100)
	_, err := ns.CompleteFile(bg, &api.CompleteFileRequest{Path: up.Path, FileId: up.FileId, Length: 240, UfsInPlace: true,
		Parts: []*api.UploadPartRef{refs[0], {PartNumber: 2, FirstBlock: p2b.FirstBlock}, refs[2]}})
	wantCode(t, err, codes.FailedPrecondition, "in-place completion with a part not in place")
	// Uploaded again once more, in place it cannot be: complete with the
	// in-place attempt back is not possible; abort and start over.
	noErr(t, ns.Delete(bg, &api.DeleteRequest{Path: up.Path, FileId: up.FileId, AlluviumOnly: true}))
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Fatalf("the aborted upload's UFS file is still there: %v", err)
	}

	up = must(ns.CreateFile(bg, &api.CreateFileRequest{Path: "/b/k", Overwrite: true, Recursive: true, Upload: true, WriteType: api.WriteType_CACHE_THROUGH}))
	tmp = filepath.Join(ufsDir, "b", ".alluvium-tmp-overwrite-"+itoa(up.FileId))
	a1, a2, a3 = alloc(1, 100), alloc(2, 100), alloc(3, 40)
	noErr(t, os.WriteFile(tmp, append(content[:240:240], []byte("junk past the end")...), 0o600))
	p1, p2, p3 = commit(1, a1, 100), commit(2, a2, 100), commit(3, a3, 40)
	// The in-place state replays from the journal.
	replay := NewState()
	for _, e := range j.entries {
		noErr(t, replay.Apply(e))
	}
	if got, want := replay.Dump(), dump(ns); got != want || !strings.Contains(want, "placed3@") {
		t.Fatalf("replay of in-place parts:\n%s", diff(want, got))
	}
	refs = []*api.UploadPartRef{{PartNumber: 1, FirstBlock: p1.FirstBlock}, {PartNumber: 2, FirstBlock: p2.FirstBlock}, {PartNumber: 3, FirstBlock: p3.FirstBlock}}
	done := must(ns.CompleteFile(bg, &api.CompleteFileRequest{Path: up.Path, FileId: up.FileId, Length: 240, UfsInPlace: true, Parts: refs}))
	if !done.Completed || done.PersistenceState != api.PersistenceState_PERSISTED || done.UfsFingerprint == "" {
		t.Fatalf("in-place completion: %v", done)
	}
	got, err := os.ReadFile(filepath.Join(ufsDir, "b", "k"))
	if err != nil || string(got) != string(content[:240]) {
		t.Fatalf("the object's UFS file: %q (%v)", got, err)
	}
	check(t, ns)
}
