package fsmaster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/alluvium/alluvium/api"
)

var bg = context.Background()

func mkdir(t testing.TB, ns *namespace, p string, recursive bool) *api.FileInfo {
	t.Helper()
	return must(ns.CreateDirectory(bg, &api.CreateDirectoryRequest{Path: p, Recursive: recursive, WriteType: api.WriteType_MUST_CACHE}))
}

func create(t testing.TB, ns *namespace, p string, length int64) *api.FileInfo {
	t.Helper()
	fi := must(ns.CreateFile(bg, &api.CreateFileRequest{Path: p, WriteType: api.WriteType_MUST_CACHE, Recursive: true}))
	return must(ns.CompleteFile(bg, &api.CompleteFileRequest{Path: p, Length: length, FileId: fi.FileId}))
}

func listAll(t testing.TB, ns *namespace, p string, recursive bool, page int32) []string {
	t.Helper()
	var out []string
	token := ""
	for {
		resp := must(ns.ListStatus(bg, &api.ListStatusRequest{Path: p, Recursive: recursive, PageSize: page, PageToken: token}))
		for _, fi := range resp.Infos {
			out = append(out, fi.Path)
		}
		if int32(len(resp.Infos)) > page && page > 0 {
			t.Fatalf("page of %d > page size %d", len(resp.Infos), page)
		}
		if resp.NextPageToken == "" {
			return out
		}
		token = resp.NextPageToken
	}
}

func TestBootstrap(t *testing.T) {
	ns, j, ufsDir := newTestNS(t)
	check(t, ns)
	root := must(ns.GetStatus(bg, &api.GetStatusRequest{Path: "/"}))
	if !root.Folder || !root.MountPoint || root.UfsPath != "file://"+ufsDir {
		t.Fatalf("root = %v", root)
	}
	if len(j.entries) != 2 {
		t.Fatalf("bootstrap wrote %d entries, want 2", len(j.entries))
	}
	if ms := ns.MountTable(); len(ms) != 1 || ms[0].AlluviumPath != "/" {
		t.Fatalf("mounts %v", ms)
	}
}

func TestMkdirCreateComplete(t *testing.T) {
	ns, _, _ := newTestNS(t)
	mkdir(t, ns, "/a/b/c", true)
	fi := create(t, ns, "/a/b/c/f", 2500)
	if fi.Length != 2500 || !fi.Completed || len(fi.BlockIds) != 3 {
		t.Fatalf("file %v", fi)
	}
	for i, id := range fi.BlockIds {
		if id != api.BlockID(fi.FileId, int64(i)) {
			t.Fatalf("block %d id %d", i, id)
		}
	}
	if fi.PersistenceState != api.PersistenceState_NOT_PERSISTED || fi.CachedPercent != 0 {
		t.Fatalf("file %v", fi)
	}
	d := must(ns.GetStatus(bg, &api.GetStatusRequest{Path: "/a/b"}))
	if d.ChildCount != 1 || !d.Folder {
		t.Fatalf("dir %v", d)
	}
	// mkdir -p over an existing directory is fine; plain mkdir is not.
	must(ns.CreateDirectory(bg, &api.CreateDirectoryRequest{Path: "/a/b", Recursive: true, AllowExists: true}))
	_, err := ns.CreateDirectory(bg, &api.CreateDirectoryRequest{Path: "/a/b"})
	wantCode(t, err, codes.AlreadyExists, "mkdir existing")
	// Recursive create makes the parents.
	create(t, ns, "/x/y/z", 0)
	z := must(ns.GetStatus(bg, &api.GetStatusRequest{Path: "/x/y/z"}))
	if z.CachedPercent != 100 || len(z.BlockIds) != 0 {
		t.Fatalf("empty file %v", z)
	}
	check(t, ns)
}

func TestThroughMkdirCreatesUFSDir(t *testing.T) {
	ns, _, ufsDir := newTestNS(t)
	fi := must(ns.CreateDirectory(bg, &api.CreateDirectoryRequest{Path: "/t/u", Recursive: true, WriteType: api.WriteType_THROUGH}))
	if fi.PersistenceState != api.PersistenceState_PERSISTED {
		t.Fatalf("through dir %v", fi)
	}
	if st, err := os.Stat(filepath.Join(ufsDir, "t/u")); err != nil || !st.IsDir() {
		t.Fatalf("ufs dir: %v", err)
	}
	mkdir(t, ns, "/cacheonly", false)
	if _, err := os.Stat(filepath.Join(ufsDir, "cacheonly")); !os.IsNotExist(err) {
		t.Fatalf("MUST_CACHE mkdir touched the UFS: %v", err)
	}
}

// TestBadInputLeavesStateUnchanged is the bad-input list at the
// namespace level: every call fails with a clear error naming the path and
// changes nothing.
func TestBadInputLeavesStateUnchanged(t *testing.T) {
	ns, j, _ := newTestNS(t)
	mkdir(t, ns, "/d/sub", true)
	create(t, ns, "/d/f", 10)
	create(t, ns, "/file", 10)
	before, entries := dump(ns), len(j.entries)
	cases := []struct {
		name string
		code codes.Code
		want string
		call func() error
	}{
		{"relative path", codes.InvalidArgument, "not absolute", func() error {
			_, err := ns.CreateDirectory(bg, &api.CreateDirectoryRequest{Path: "rel/x"})
			return err
		}},
		{"empty path", codes.InvalidArgument, "empty", func() error {
			_, err := ns.GetStatus(bg, &api.GetStatusRequest{Path: ""})
			return err
		}},
		{"control char", codes.InvalidArgument, "control", func() error {
			_, err := ns.CreateFile(bg, &api.CreateFileRequest{Path: "/a\x01b"})
			return err
		}},
		{"rename into own subtree", codes.InvalidArgument, "inside the source", func() error {
			_, err := ns.Rename(bg, &api.RenameRequest{Src: "/d", Dst: "/d/sub/x"})
			return err
		}},
		{"delete non-empty dir", codes.FailedPrecondition, "not empty", func() error {
			return ns.Delete(bg, &api.DeleteRequest{Path: "/d"})
		}},
		{"create over existing", codes.AlreadyExists, "/d/f", func() error {
			_, err := ns.CreateFile(bg, &api.CreateFileRequest{Path: "/d/f"})
			return err
		}},
		{"create over dir", codes.AlreadyExists, "directory", func() error {
			_, err := ns.CreateFile(bg, &api.CreateFileRequest{Path: "/d", Overwrite: true})
			return err
		}},
		{"unknown mount", codes.NotFound, "not a mount point", func() error {
			return ns.Unmount(bg, &api.UnmountRequest{AlluviumPath: "/d"})
		}},
		{"unmount root", codes.InvalidArgument, "root", func() error {
			return ns.Unmount(bg, &api.UnmountRequest{AlluviumPath: "/"})
		}},
		{"missing parent", codes.NotFound, "parent /nope", func() error {
			_, err := ns.CreateDirectory(bg, &api.CreateDirectoryRequest{Path: "/nope/x"})
			return err
		}},
		{"file as parent", codes.FailedPrecondition, "/file is a file", func() error {
			_, err := ns.CreateFile(bg, &api.CreateFileRequest{Path: "/file/x", Recursive: true})
			return err
		}},
		{"delete root", codes.InvalidArgument, "root", func() error {
			return ns.Delete(bg, &api.DeleteRequest{Path: "/", Recursive: true})
		}},
		{"delete missing", codes.NotFound, "/missing", func() error {
			return ns.Delete(bg, &api.DeleteRequest{Path: "/missing"})
		}},
		{"rename onto existing", codes.AlreadyExists, "/file exists", func() error {
			_, err := ns.Rename(bg, &api.RenameRequest{Src: "/d/f", Dst: "/file"})
			return err
		}},
		{"rename missing", codes.NotFound, "/ghost", func() error {
			_, err := ns.Rename(bg, &api.RenameRequest{Src: "/ghost", Dst: "/g2"})
			return err
		}},
		{"complete twice", codes.FailedPrecondition, "already complete", func() error {
			_, err := ns.CompleteFile(bg, &api.CompleteFileRequest{Path: "/file", Length: 3})
			return err
		}},
		{"complete dir", codes.InvalidArgument, "directory", func() error {
			_, err := ns.CompleteFile(bg, &api.CompleteFileRequest{Path: "/d", Length: 3})
			return err
		}},
		{"bad mode", codes.InvalidArgument, "mode", func() error {
			mode := uint32(0o77777)
			_, err := ns.SetAttribute(bg, &api.SetAttributeRequest{Path: "/file", Mode: &mode})
			return err
		}},
		{"bad ttl action", codes.InvalidArgument, "ttl action", func() error {
			a := "EXPLODE"
			_, err := ns.SetAttribute(bg, &api.SetAttributeRequest{Path: "/file", TtlAction: &a})
			return err
		}},
		{"mount bad uri", codes.InvalidArgument, "scheme", func() error {
			_, err := ns.Mount(bg, &api.MountRequest{AlluviumPath: "/m", UfsUri: "ftp://x/y"})
			return err
		}},
		{"mount over existing", codes.AlreadyExists, "path exists", func() error {
			_, err := ns.Mount(bg, &api.MountRequest{AlluviumPath: "/d", UfsUri: "file://" + t.TempDir()})
			return err
		}},
		{"free unpersisted", codes.FailedPrecondition, "not persisted", func() error {
			_, err := ns.Free(bg, &api.FreeRequest{Path: "/file"})
			return err
		}},
		{"free dir without recursive", codes.InvalidArgument, "recursive", func() error {
			_, err := ns.Free(bg, &api.FreeRequest{Path: "/d"})
			return err
		}},
		{"negative page", codes.InvalidArgument, "page size", func() error {
			_, err := ns.ListStatus(bg, &api.ListStatusRequest{Path: "/", PageSize: -1})
			return err
		}},
		{"bad recursive token", codes.InvalidArgument, "page token", func() error {
			_, err := ns.ListStatus(bg, &api.ListStatusRequest{Path: "/d", Recursive: true, PageToken: "/elsewhere"})
			return err
		}},
	}
	for _, c := range cases {
		err := c.call()
		wantCode(t, err, c.code, c.name)
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %q does not mention %q", c.name, err, c.want)
		}
		if d := dump(ns); d != before || len(j.entries) != entries {
			t.Fatalf("%s changed the state:\nbefore\n%s\nafter\n%s", c.name, before, d)
		}
	}
	check(t, ns)
}

func TestListPaging(t *testing.T) {
	ns, _, _ := newTestNS(t)
	mkdir(t, ns, "/big", false)
	const n = 2500
	for i := range n {
		must(ns.CreateFile(bg, &api.CreateFileRequest{Path: fmt.Sprintf("/big/f%05d", i), WriteType: api.WriteType_MUST_CACHE}))
	}
	got := listAll(t, ns, "/big", false, 333)
	if len(got) != n {
		t.Fatalf("listed %d of %d", len(got), n)
	}
	for i, p := range got {
		if want := fmt.Sprintf("/big/f%05d", i); p != want {
			t.Fatalf("entry %d = %s, want %s", i, p, want)
		}
	}
	// Server cap and default.
	resp := must(ns.ListStatus(bg, &api.ListStatusRequest{Path: "/big"}))
	if len(resp.Infos) != 1000 || resp.NextPageToken == "" {
		t.Fatalf("default page: %d entries, token %q", len(resp.Infos), resp.NextPageToken)
	}
	// Deleting the entry a token names does not lose the place.
	first := must(ns.ListStatus(bg, &api.ListStatusRequest{Path: "/big", PageSize: 10}))
	if err := ns.Delete(bg, &api.DeleteRequest{Path: "/big/" + first.NextPageToken}); err != nil {
		t.Fatal(err)
	}
	next := must(ns.ListStatus(bg, &api.ListStatusRequest{Path: "/big", PageSize: 10, PageToken: first.NextPageToken}))
	if next.Infos[0].Name != "f00010" {
		t.Fatalf("after deleted token: %s", next.Infos[0].Name)
	}
	// A file lists as itself.
	if got := listAll(t, ns, "/big/f00001", false, 0); len(got) != 1 || got[0] != "/big/f00001" {
		t.Fatalf("file listing %v", got)
	}
}

func TestListRecursivePaging(t *testing.T) {
	ns, _, _ := newTestNS(t)
	var want []string
	for _, p := range []string{"/r/a/x", "/r/a/y/deep", "/r/a!", "/r/b", "/r/c/d/e"} {
		create(t, ns, p, 1)
	}
	mkdir(t, ns, "/r/emptydir", false)
	// Pre-order, children by name.
	want = []string{"/r/a", "/r/a/x", "/r/a/y", "/r/a/y/deep", "/r/a!", "/r/b", "/r/c", "/r/c/d", "/r/c/d/e", "/r/emptydir"}
	for _, page := range []int32{1, 2, 3, 100} {
		got := listAll(t, ns, "/r", true, page)
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("page %d: %v\nwant %v", page, got, want)
		}
	}
	// Resume after a path that was deleted, together with its parent.
	resp := must(ns.ListStatus(bg, &api.ListStatusRequest{Path: "/r", Recursive: true, PageSize: 4}))
	if resp.NextPageToken != "/r/a/y/deep" {
		t.Fatalf("token %q", resp.NextPageToken)
	}
	if err := ns.Delete(bg, &api.DeleteRequest{Path: "/r/a/y", Recursive: true}); err != nil {
		t.Fatal(err)
	}
	rest := must(ns.ListStatus(bg, &api.ListStatusRequest{Path: "/r", Recursive: true, PageSize: 100, PageToken: resp.NextPageToken}))
	if len(rest.Infos) == 0 || rest.Infos[0].Path != "/r/a!" {
		t.Fatalf("resume: %v", rest.Infos)
	}
}

func TestDeleteRenameSetAttr(t *testing.T) {
	ns, _, _ := newTestNS(t)
	create(t, ns, "/a/b/f", 5)
	must(ns.Rename(bg, &api.RenameRequest{Src: "/a/b", Dst: "/c"}))
	if _, err := ns.GetStatus(bg, &api.GetStatusRequest{Path: "/c/f"}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, func() error { _, err := ns.GetStatus(bg, &api.GetStatusRequest{Path: "/a/b"}); return err }(), codes.NotFound, "old path")
	pinned := true
	mode := uint32(0o700)
	fi := must(ns.SetAttribute(bg, &api.SetAttributeRequest{Path: "/c", Recursive: true, Pinned: &pinned, Mode: &mode}))
	if !fi.Pinned || fi.Mode != 0o700 {
		t.Fatalf("setattr %v", fi)
	}
	if f := must(ns.GetStatus(bg, &api.GetStatusRequest{Path: "/c/f"})); !f.Pinned || f.Mode != 0o700 {
		t.Fatalf("recursive setattr missed the child: %v", f)
	}
	persisted := api.PersistenceState_PERSISTED
	fp := "fp1"
	must(ns.SetAttribute(bg, &api.SetAttributeRequest{Path: "/c/f", PersistenceState: &persisted, UfsFingerprint: &fp}))
	if d := must(ns.GetStatus(bg, &api.GetStatusRequest{Path: "/c"})); d.PersistenceState != api.PersistenceState_PERSISTED {
		t.Fatalf("persisting a file must persist its parents: %v", d)
	}
	if err := ns.Delete(bg, &api.DeleteRequest{Path: "/c", Recursive: true, AlluviumOnly: true}); err != nil {
		t.Fatal(err)
	}
	if got := listAll(t, ns, "/", true, 0); strings.Join(got, ",") != "/a" {
		t.Fatalf("after delete: %v", got)
	}
	check(t, ns)
}

func TestOverwriteReplacesFile(t *testing.T) {
	ns, _, _ := newTestNS(t)
	old := create(t, ns, "/f", 5)
	fi := must(ns.CreateFile(bg, &api.CreateFileRequest{Path: "/f", Overwrite: true, WriteType: api.WriteType_MUST_CACHE}))
	if fi.FileId == old.FileId || fi.Completed {
		t.Fatalf("overwrite: %v", fi)
	}
	// Completing with the old id is refused.
	_, err := ns.CompleteFile(bg, &api.CompleteFileRequest{Path: "/f", Length: 1, FileId: old.FileId})
	wantCode(t, err, codes.FailedPrecondition, "complete replaced file")
	check(t, ns)
}

func TestMetadataFromUFS(t *testing.T) {
	ns, _, ufsDir := newTestNS(t)
	write := func(rel string, size int) {
		p := filepath.Join(ufsDir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("data/one", 3000)
	write("data/two", 10)
	write("data/sub/three", 1)
	write("top", 7)
	// stat of a deep path loads it and the directories on the way.
	fi := must(ns.GetStatus(bg, &api.GetStatusRequest{Path: "/data/sub/three"}))
	if !fi.Completed || fi.PersistenceState != api.PersistenceState_PERSISTED || fi.Length != 1 || fi.CachedPercent != 0 || fi.UfsFingerprint == "" {
		t.Fatalf("loaded file %v", fi)
	}
	// ls of the root merges its UFS children once.
	got := listAll(t, ns, "/", false, 0)
	if strings.Join(got, ",") != "/data,/top" {
		t.Fatalf("ls / = %v", got)
	}
	got = listAll(t, ns, "/", true, 2)
	if strings.Join(got, ",") != "/data,/data/one,/data/sub,/data/sub/three,/data/two,/top" {
		t.Fatalf("ls -R / = %v", got)
	}
	one := must(ns.GetStatus(bg, &api.GetStatusRequest{Path: "/data/one"}))
	if one.Length != 3000 || len(one.BlockIds) != 3 {
		t.Fatalf("one %v", one)
	}
	// NEVER does not look at the UFS.
	write("late", 1)
	_, err := ns.GetStatus(bg, &api.GetStatusRequest{Path: "/late", LoadMetadataType: api.LoadMetadataType_NEVER})
	wantCode(t, err, codes.NotFound, "NEVER")
	// ONCE: the root's children were merged, so a later UFS file is not seen...
	_, err = ns.GetStatus(bg, &api.GetStatusRequest{Path: "/late"})
	wantCode(t, err, codes.NotFound, "ONCE after merge")
	// ...but ALWAYS looks again.
	must(ns.GetStatus(bg, &api.GetStatusRequest{Path: "/late", LoadMetadataType: api.LoadMetadataType_ALWAYS}))
	// Delete removes from the UFS; rename renames there.
	must(ns.Rename(bg, &api.RenameRequest{Src: "/data/two", Dst: "/data/sub/two"}))
	if _, err := os.Stat(filepath.Join(ufsDir, "data/sub/two")); err != nil {
		t.Fatalf("rename in the UFS: %v", err)
	}
	if err := ns.Delete(bg, &api.DeleteRequest{Path: "/data", Recursive: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(ufsDir, "data")); !os.IsNotExist(err) {
		t.Fatalf("delete did not reach the UFS: %v", err)
	}
	// A non-recursive delete of a directory whose UFS children were never
	// listed sees them.
	write("lazy/child", 1)
	must(ns.GetStatus(bg, &api.GetStatusRequest{Path: "/lazy", LoadMetadataType: api.LoadMetadataType_ALWAYS}))
	wantCode(t, ns.Delete(bg, &api.DeleteRequest{Path: "/lazy"}), codes.FailedPrecondition, "delete dir with UFS children")
	check(t, ns)
}

func TestLoadChildrenStreamsInBatches(t *testing.T) {
	ns, j, ufsDir := newTestNS(t)
	dir := filepath.Join(ufsDir, "many")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	const n = 2*loadBatch + 7
	for i := range n {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%05d", i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got := listAll(t, ns, "/many", false, 500)
	if len(got) != n {
		t.Fatalf("listed %d, want %d", len(got), n)
	}
	before := len(j.entries)
	listAll(t, ns, "/many", false, 500)
	if len(j.entries) != before {
		t.Fatalf("second listing journaled %d entries", len(j.entries)-before)
	}
}

func TestMountUnmount(t *testing.T) {
	ns, _, _ := newTestNS(t)
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, "x"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	m := must(ns.Mount(bg, &api.MountRequest{AlluviumPath: "/mnt", UfsUri: "file://" + other, ReadOnly: true, Options: map[string]string{"k": "v"}}))
	if m.MountId < 2 {
		t.Fatalf("mount id %d", m.MountId)
	}
	x := must(ns.GetStatus(bg, &api.GetStatusRequest{Path: "/mnt/x"}))
	if x.Length != 5 || x.MountId != m.MountId || x.UfsPath != "file://"+other+"/x" {
		t.Fatalf("x = %v", x)
	}
	_, err := ns.CreateFile(bg, &api.CreateFileRequest{Path: "/mnt/y"})
	wantCode(t, err, codes.PermissionDenied, "write to read-only mount")
	_, err = ns.Rename(bg, &api.RenameRequest{Src: "/mnt/x", Dst: "/x"})
	wantCode(t, err, codes.InvalidArgument, "rename across mounts")
	wantCode(t, ns.Delete(bg, &api.DeleteRequest{Path: "/mnt", Recursive: true}), codes.InvalidArgument, "delete mount point")
	_, err = ns.Mount(bg, &api.MountRequest{AlluviumPath: "/mnt2", UfsUri: "file://" + other + "/sub"})
	wantCode(t, err, codes.InvalidArgument, "overlapping mount")
	check(t, ns)
	if err := ns.Unmount(bg, &api.UnmountRequest{AlluviumPath: "/mnt"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(other, "x")); err != nil {
		t.Fatalf("unmount touched the UFS: %v", err)
	}
	_, err = ns.GetStatus(bg, &api.GetStatusRequest{Path: "/mnt/x"})
	wantCode(t, err, codes.NotFound, "after unmount")
	check(t, ns)
}

func TestFree(t *testing.T) {
	ns, _, _ := newTestNS(t)
	fi := create(t, ns, "/f", 2048)
	ns.mu.RLock()
	ns.blocks.register(1, &api.WorkerNetAddress{Host: "h", RpcPort: 1}, nil,
		[]*api.BlockReport{{BlockId: fi.BlockIds[0], Length: 1024, Tier: "MEM"}, {BlockId: fi.BlockIds[1], Length: 1024, Tier: "HDD"}}, ns.validBlock)
	ns.mu.RUnlock()
	got := must(ns.GetStatus(bg, &api.GetStatusRequest{Path: "/f"}))
	if got.CachedPercent != 100 || got.InMemoryPercent != 50 || len(got.FileBlockInfos[0].BlockInfo.Locations) != 1 {
		t.Fatalf("cached file %v", got)
	}
	n := must(ns.Free(bg, &api.FreeRequest{Path: "/", Recursive: true, Force: true}))
	if n != 2 {
		t.Fatalf("freed %d blocks", n)
	}
	if got := must(ns.GetStatus(bg, &api.GetStatusRequest{Path: "/f"})); got.CachedPercent != 0 {
		t.Fatalf("after free %v", got)
	}
	cmds := ns.blocks.heartbeat(1, nil, nil, nil, func(int64) bool { return true })
	if len(cmds) != 1 || cmds[0].Type != api.WorkerCommand_REMOVE_BLOCKS || len(cmds[0].BlockIds) != 2 {
		t.Fatalf("commands after free: %v", cmds)
	}
}

type failingJournal struct{ memJournal }

type failWaiter struct{}

func (failWaiter) Wait(context.Context) error { return fmt.Errorf("disk on fire") }

func (f *failingJournal) Append(e *api.JournalEntry) waiter {
	f.memJournal.Append(e)
	return failWaiter{}
}

// TestJournalFailureStopsWrites: once an entry fails to become durable the
// namespace refuses everything (memory may hold what the disk does not) and
// tells the master to stop.
func TestJournalFailureStopsWrites(t *testing.T) {
	ns, _, _ := newTestNS(t)
	var failed error
	ns.onFail = func(err error) { failed = err }
	ns.j = &failingJournal{}
	_, err := ns.CreateDirectory(bg, &api.CreateDirectoryRequest{Path: "/x"})
	wantCode(t, err, codes.Unavailable, "mkdir with a failing journal")
	if failed == nil || !strings.Contains(failed.Error(), "disk on fire") {
		t.Fatalf("onFail got %v", failed)
	}
	_, err = ns.GetStatus(bg, &api.GetStatusRequest{Path: "/"})
	wantCode(t, err, codes.Unavailable, "stat after the failure")
	if !strings.Contains(err.Error(), "restart") {
		t.Fatalf("error does not say what to do: %v", err)
	}
}

// TestDeleteEmptyDirKeepsUnknownUFSFiles: a directory empty in the
// namespace but holding UFS files the namespace does not know yet (a copy
// writes a file's UFS bytes before entering it) is not removed by a
// non-recursive delete: the UFS refuses, and so does the delete. Before,
// it removed the UFS directory with everything in it, and a copy job whose
// failed task cleaned up the directory it had made lost the files other
// tasks had just written.
func TestDeleteEmptyDirKeepsUnknownUFSFiles(t *testing.T) {
	ns, _, ufsDir := newTestNS(t)
	must(ns.CreateDirectory(bg, &api.CreateDirectoryRequest{Path: "/d/e", Recursive: true}))
	inflight := filepath.Join(ufsDir, "d", "e", "inflight")
	if err := os.MkdirAll(filepath.Dir(inflight), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(inflight, []byte("written, not yet entered"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := ns.Delete(bg, &api.DeleteRequest{Path: "/d/e"})
	wantCode(t, err, codes.FailedPrecondition, "delete of a directory whose UFS copy is not empty")
	if !strings.Contains(err.Error(), "/d/e") {
		t.Fatalf("the error does not name the path: %v", err)
	}
	if _, err := os.Stat(inflight); err != nil {
		t.Fatalf("a non-recursive delete removed a UFS file: %v", err)
	}
	if _, err := ns.GetStatus(bg, &api.GetStatusRequest{Path: "/d/e"}); err != nil {
		t.Fatalf("the refused delete changed the namespace: %v", err)
	}
	// An empty one goes, in the UFS too; rm -r removes what is in it.
	must(ns.CreateDirectory(bg, &api.CreateDirectoryRequest{Path: "/d/empty"}))
	if err := os.MkdirAll(filepath.Join(ufsDir, "d", "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := ns.Delete(bg, &api.DeleteRequest{Path: "/d/empty"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(ufsDir, "d", "empty")); !os.IsNotExist(err) {
		t.Fatalf("the empty directory is still in the UFS: %v", err)
	}
	if err := ns.Delete(bg, &api.DeleteRequest{Path: "/d/e", Recursive: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(inflight); !os.IsNotExist(err) {
		t.Fatalf("rm -r left the UFS file: %v", err)
	}
	check(t, ns)
}
