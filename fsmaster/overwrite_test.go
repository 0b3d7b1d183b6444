package fsmaster

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/grpc/codes"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/ufs"
)

func stat(t testing.TB, ns *namespace, p string) *api.FileInfo {
	t.Helper()
	return must(ns.GetStatus(bg, &api.GetStatusRequest{Path: p}))
}

func overwrite(t testing.TB, ns *namespace, p string, wt api.WriteType) *api.FileInfo {
	t.Helper()
	return must(ns.CreateFile(bg, &api.CreateFileRequest{Path: p, Overwrite: true, Recursive: true, WriteType: wt}))
}

// TestOverwriteWrittenAside: while an overwrite is written the path shows
// the old file, in stat and listings; completing it swaps the new one in.
func TestOverwriteWrittenAside(t *testing.T) {
	ns, _, _ := newTestNS(t)
	old := create(t, ns, "/d/f", 10)
	nf := overwrite(t, ns, "/d/f", api.WriteType_MUST_CACHE)
	if nf.FileId == old.FileId || nf.Completed || nf.Path != "/d/f" {
		t.Fatalf("overwrite: %v", nf)
	}
	check(t, ns)
	if got := stat(t, ns, "/d/f"); got.FileId != old.FileId || got.Length != 10 || !got.Completed {
		t.Fatalf("during the overwrite the path shows %v, want the old file", got)
	}
	if got := listAll(t, ns, "/", true, 0); strings.Join(got, ",") != "/d,/d/f" {
		t.Fatalf("listing during the overwrite: %v", got)
	}
	if d := stat(t, ns, "/d"); d.ChildCount != 1 {
		t.Fatalf("dir shows %d children", d.ChildCount)
	}
	// Completing with the old id is refused; with the new one it swaps.
	_, err := ns.CompleteFile(bg, &api.CompleteFileRequest{Path: "/d/f", Length: 1, FileId: old.FileId})
	wantCode(t, err, codes.FailedPrecondition, "complete the old file")
	done := must(ns.CompleteFile(bg, &api.CompleteFileRequest{Path: "/d/f", Length: 20, FileId: nf.FileId}))
	if done.FileId != nf.FileId || done.Length != 20 || !done.Completed {
		t.Fatalf("completed: %v", done)
	}
	if got := stat(t, ns, "/d/f"); got.FileId != nf.FileId || got.Length != 20 {
		t.Fatalf("after the overwrite the path shows %v", got)
	}
	ns.mu.RLock()
	oldThere := ns.st.get(old.FileId) != nil
	asides := len(ns.st.asides)
	ns.mu.RUnlock()
	if oldThere || asides != 0 {
		t.Fatalf("old inode kept %v, asides %d", oldThere, asides)
	}
	check(t, ns)
}

// TestOverwriteAbandoned: a writer that gives up (Delete by file id)
// leaves the old file as it was; Delete by id never removes another file.
func TestOverwriteAbandoned(t *testing.T) {
	ns, _, _ := newTestNS(t)
	old := create(t, ns, "/f", 10)
	before := dump(ns)
	nf := overwrite(t, ns, "/f", api.WriteType_MUST_CACHE)
	err := ns.Delete(bg, &api.DeleteRequest{Path: "/f", FileId: nf.FileId + 1000})
	wantCode(t, err, codes.FailedPrecondition, "delete by another id")
	noErr(t, ns.Delete(bg, &api.DeleteRequest{Path: "/f", FileId: nf.FileId, AlluviumOnly: true}))
	if got := stat(t, ns, "/f"); got.FileId != old.FileId || got.Length != 10 {
		t.Fatalf("after the abandoned overwrite: %v", got)
	}
	// The state is as before, but for the journal sequence and the id counter.
	trim := func(s string) string { return s[strings.IndexByte(s, '\n'):] }
	if trim(dump(ns)) != trim(before) {
		t.Fatalf("abandoned overwrite changed the state:\n%s", diff(before, dump(ns)))
	}
	_, err = ns.CompleteFile(bg, &api.CompleteFileRequest{Path: "/f", Length: 1, FileId: nf.FileId})
	wantCode(t, err, codes.FailedPrecondition, "complete a dropped overwrite")
	// By id, the file itself.
	noErr(t, ns.Delete(bg, &api.DeleteRequest{Path: "/f", FileId: old.FileId}))
	check(t, ns)
}

// TestConcurrentOverwrites: both succeed; the last to complete wins, even
// over a file created meanwhile.
func TestConcurrentOverwrites(t *testing.T) {
	ns, _, _ := newTestNS(t)
	a := overwrite(t, ns, "/f", api.WriteType_MUST_CACHE)
	b := overwrite(t, ns, "/f", api.WriteType_MUST_CACHE)
	if _, err := ns.GetStatus(bg, &api.GetStatusRequest{Path: "/f"}); codeOf(err) != codes.NotFound {
		t.Fatalf("a new path shows before any overwrite completes: %v", err)
	}
	must(ns.CompleteFile(bg, &api.CompleteFileRequest{Path: "/f", Length: 2, FileId: b.FileId}))
	if got := stat(t, ns, "/f"); got.FileId != b.FileId {
		t.Fatalf("after b: %v", got)
	}
	must(ns.CompleteFile(bg, &api.CompleteFileRequest{Path: "/f", Length: 1, FileId: a.FileId}))
	if got := stat(t, ns, "/f"); got.FileId != a.FileId || got.Length != 1 {
		t.Fatalf("after a (last): %v", got)
	}
	check(t, ns)
}

// TestOverwriteThroughUFS: the new bytes go to a hidden temporary UFS file
// beside the path; completing renames it onto the path, abandoning removes
// it, and neither ever leaves the path without its old bytes before.
func TestOverwriteThroughUFS(t *testing.T) {
	ns, _, ufsDir := newTestNS(t)
	target := filepath.Join(ufsDir, "d", "f")
	put := func(p string, b []byte) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	put(target, []byte("old bytes"))
	old := stat(t, ns, "/d/f")
	if old.PersistenceState != api.PersistenceState_PERSISTED {
		t.Fatalf("old %v", old)
	}
	for _, abandon := range []bool{true, false} {
		nf := overwrite(t, ns, "/d/f", api.WriteType_CACHE_THROUGH)
		tmp := filepath.Join(ufsDir, "d", ufs.TempName("overwrite-")+itoa(nf.FileId))
		if nf.UfsPath != "file://"+tmp {
			t.Fatalf("overwrite writes to %s, want %s", nf.UfsPath, tmp)
		}
		put(tmp, []byte("new bytes!"))
		// A listing that syncs the directory neither shows the temporary
		// file nor drops the old one.
		got := must(ns.ListStatus(bg, &api.ListStatusRequest{Path: "/d", LoadMetadataType: api.LoadMetadataType_ALWAYS}))
		if len(got.Infos) != 1 || got.Infos[0].FileId != old.FileId {
			t.Fatalf("listing during the overwrite: %v", got.Infos)
		}
		if abandon {
			noErr(t, ns.Delete(bg, &api.DeleteRequest{Path: "/d/f", FileId: nf.FileId, AlluviumOnly: true}))
			if _, err := os.Stat(tmp); !os.IsNotExist(err) {
				t.Fatalf("temporary UFS file kept: %v", err)
			}
			if b, _ := os.ReadFile(target); string(b) != "old bytes" {
				t.Fatalf("UFS after abandon: %q", b)
			}
			if got := stat(t, ns, "/d/f"); got.FileId != old.FileId {
				t.Fatalf("after abandon: %v", got)
			}
			continue
		}
		// A length that does not match the UFS copy is refused.
		_, err := ns.CompleteFile(bg, &api.CompleteFileRequest{Path: "/d/f", Length: 3, FileId: nf.FileId, UfsFingerprint: "x"})
		wantCode(t, err, codes.FailedPrecondition, "complete with a wrong length")
		done := must(ns.CompleteFile(bg, &api.CompleteFileRequest{Path: "/d/f", Length: 10, FileId: nf.FileId, UfsFingerprint: "x"}))
		if b, _ := os.ReadFile(target); string(b) != "new bytes!" {
			t.Fatalf("UFS after complete: %q", b)
		}
		if _, err := os.Stat(tmp); !os.IsNotExist(err) {
			t.Fatalf("temporary UFS file kept: %v", err)
		}
		st := must(os.Stat(target))
		if done.PersistenceState != api.PersistenceState_PERSISTED || !strings.HasPrefix(done.UfsFingerprint, itoa(st.Size())) || done.UfsFingerprint == "x" {
			t.Fatalf("completed: %v", done)
		}
		if done.UfsPath != "file://"+target {
			t.Fatalf("completed file's UFS path %s", done.UfsPath)
		}
	}
	check(t, ns)
}

// TestOverwriteCachedOverPersisted: a MUST_CACHE overwrite of a persisted
// file keeps the old UFS copy until it completes, then removes it (the
// path must not show stale bytes from the UFS).
func TestOverwriteCachedOverPersisted(t *testing.T) {
	ns, _, ufsDir := newTestNS(t)
	target := filepath.Join(ufsDir, "f")
	if err := os.WriteFile(target, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	stat(t, ns, "/f")
	nf := overwrite(t, ns, "/f", api.WriteType_MUST_CACHE)
	if _, err := os.Stat(target); err != nil {
		t.Fatalf("old UFS copy removed at create: %v", err)
	}
	done := must(ns.CompleteFile(bg, &api.CompleteFileRequest{Path: "/f", Length: 5, FileId: nf.FileId}))
	if _, err := os.Stat(target); !os.IsNotExist(err) {
		t.Fatalf("old UFS copy kept after the overwrite: %v", err)
	}
	if done.PersistenceState != api.PersistenceState_NOT_PERSISTED {
		t.Fatalf("completed: %v", done)
	}
	check(t, ns)
}

// TestOverwriteWhileTheDirectoryChanges: a directory deleted takes its
// overwrites in flight with it; a directory created at the name makes the
// completion fail.
func TestOverwriteWhileTheDirectoryChanges(t *testing.T) {
	ns, _, _ := newTestNS(t)
	create(t, ns, "/d/e/f", 1)
	nf := overwrite(t, ns, "/d/e/f", api.WriteType_MUST_CACHE)
	noErr(t, ns.Delete(bg, &api.DeleteRequest{Path: "/d", Recursive: true}))
	check(t, ns)
	_, err := ns.CompleteFile(bg, &api.CompleteFileRequest{Path: "/d/e/f", Length: 1, FileId: nf.FileId})
	wantCode(t, err, codes.NotFound, "complete in a deleted directory")

	nf = overwrite(t, ns, "/x/y", api.WriteType_MUST_CACHE)
	mkdir(t, ns, "/x/y", false)
	_, err = ns.CompleteFile(bg, &api.CompleteFileRequest{Path: "/x/y", Length: 1, FileId: nf.FileId})
	wantCode(t, err, codes.FailedPrecondition, "complete over a directory")
	if !stat(t, ns, "/x/y").Folder {
		t.Fatal("the directory was replaced")
	}
	check(t, ns)
}

// TestOverwriteNeedsWriteOnTheFile: replacing a file needs write on it,
// not only on its directory.
func TestOverwriteNeedsWriteOnTheFile(t *testing.T) {
	ns := newPermNS(t, true)
	// /tmpw is 0777: alice may create there, but not replace bob's 0644 file.
	must(ns.CreateFile(as("bob"), &api.CreateFileRequest{Path: "/tmpw/bobs", Mode: 0o644}))
	must(ns.CompleteFile(as("bob"), &api.CompleteFileRequest{Path: "/tmpw/bobs", Length: 3}))
	_, err := ns.CreateFile(as("alice"), &api.CreateFileRequest{Path: "/tmpw/bobs", Overwrite: true})
	wantCode(t, err, codes.PermissionDenied, "alice overwrites bob's file")
	fi := must(ns.CreateFile(as("alice"), &api.CreateFileRequest{Path: "/tmpw/hers", Overwrite: true}))
	done := must(ns.CompleteFile(as("alice"), &api.CompleteFileRequest{Path: "/tmpw/hers", Length: 1, FileId: fi.FileId}))
	if done.Owner != "alice" {
		t.Fatalf("owner %s", done.Owner)
	}
	// bob cannot complete or drop alice's overwrite in flight.
	fi = must(ns.CreateFile(as("alice"), &api.CreateFileRequest{Path: "/tmpw/hers", Overwrite: true, Mode: 0o600}))
	_, err = ns.CompleteFile(as("bob"), &api.CompleteFileRequest{Path: "/tmpw/hers", Length: 1, FileId: fi.FileId})
	wantCode(t, err, codes.PermissionDenied, "bob completes alice's overwrite")
	err = ns.Delete(as("bob"), &api.DeleteRequest{Path: "/tmpw/hers", FileId: fi.FileId})
	wantCode(t, err, codes.PermissionDenied, "bob drops alice's overwrite")
	check(t, ns)
}

// TestOverwriteCheckpointRoundTrip: an overwrite in flight survives a
// checkpoint and completes on the loaded state.
func TestOverwriteCheckpointRoundTrip(t *testing.T) {
	ns, j, _ := newTestNS(t)
	create(t, ns, "/d/f", 10)
	nf := overwrite(t, ns, "/d/f", api.WriteType_MUST_CACHE)
	path := filepath.Join(t.TempDir(), "ckpt.bolt")
	db := must(bolt.Open(path, 0o600, nil))
	defer db.Close()
	ns.mu.RLock()
	err := db.Update(ns.st.WriteCheckpoint)
	want := ns.st.Dump()
	ns.mu.RUnlock()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(want, "aside f in /d") {
		t.Fatalf("dump does not show the overwrite in flight:\n%s", want)
	}
	var st *State
	if err := db.View(func(tx *bolt.Tx) error { st, err = LoadCheckpoint(tx); return err }); err != nil {
		t.Fatal(err)
	}
	if got := st.Dump(); got != want {
		t.Fatalf("checkpoint round trip:\n%s", diff(want, got))
	}
	if err := st.CheckInvariants(); err != nil {
		t.Fatal(err)
	}
	// The completion entry the live namespace journals applies to the copy.
	must(ns.CompleteFile(bg, &api.CompleteFileRequest{Path: "/d/f", Length: 4, FileId: nf.FileId}))
	last := j.entries[len(j.entries)-1]
	if last.GetCompleteFile().GetReplacesId() == 0 {
		t.Fatalf("completion entry %v names no replaced file", last)
	}
	if err := st.Apply(last); err != nil {
		t.Fatal(err)
	}
	if got, want := st.Dump(), dump(ns); got != want {
		t.Fatalf("after completion:\n%s", diff(want, got))
	}
	// An entry whose replaced file does not match refuses to apply.
	bad := NewState()
	for _, e := range j.entries[:len(j.entries)-1] {
		if err := bad.Apply(e); err != nil {
			t.Fatal(err)
		}
	}
	before := bad.Dump()
	wrong := &api.JournalEntry{Sequence: last.Sequence, Body: &api.JournalEntry_CompleteFile{CompleteFile: &api.CompleteFileEntry{
		Id: nf.FileId, Length: 4, ReplacesId: last.GetCompleteFile().GetReplacesId() + 1}}}
	if err := bad.Apply(wrong); err == nil || bad.Dump() != before {
		t.Fatalf("mismatched replaces_id: %v", err)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func noErr(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
