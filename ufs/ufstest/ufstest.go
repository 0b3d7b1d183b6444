// Package ufstest is the conformance suite every ufs.FileSystem passes: the
// same tests run against the local directory and against S3 on a real
// MinIO, so callers can rely on one behaviour whatever the mount.
package ufstest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"testing"

	"github.com/alluvium/alluvium/ufs"
)

// Run runs every conformance test. newFS returns an empty file system for
// one subtest (its own temp dir or key prefix); the suite closes it.
func Run(t *testing.T, newFS func(t *testing.T) ufs.FileSystem) {
	tests := []struct {
		name string
		f    func(t *testing.T, ctx context.Context, fs ufs.FileSystem)
	}{
		{"RootIsDir", testRootIsDir},
		{"CreateInvisibleUntilCommit", testCreateInvisibleUntilCommit},
		{"Abort", testAbort},
		{"RangedOpen", testRangedOpen},
		{"EmptyFile", testEmptyFile},
		{"LargeFile", testLargeFile},
		{"Overwrite", testOverwrite},
		{"CreateParent", testCreateParent},
		{"Mkdirs", testMkdirs},
		{"List", testList},
		{"ListManyStreams", testListMany},
		{"Delete", testDelete},
		{"DeleteAll", testDeleteAll},
		{"RenameFile", testRenameFile},
		{"RenameDir", testRenameDir},
		{"Replace", testReplace},
		{"OpenErrors", testOpenErrors},
		{"NoEscape", testNoEscape},
		{"URI", testURI},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := newFS(t)
			t.Cleanup(func() { fs.Close() })
			tc.f(t, context.Background(), fs)
		})
	}
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func put(t *testing.T, ctx context.Context, fs ufs.FileSystem, p string, data []byte) ufs.FileStatus {
	t.Helper()
	w, err := fs.Create(ctx, p, ufs.CreateOptions{CreateParent: true})
	if err != nil {
		t.Fatalf("Create(%s): %v", p, err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatalf("Write(%s): %v", p, err)
	}
	st, err := w.Commit()
	if err != nil {
		t.Fatalf("Commit(%s): %v", p, err)
	}
	return st
}

func read(t *testing.T, ctx context.Context, fs ufs.FileSystem, p string, off, n int64) []byte {
	t.Helper()
	rc, err := fs.Open(ctx, p, off, n)
	if err != nil {
		t.Fatalf("Open(%s, %d, %d): %v", p, off, n, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	return b
}

func names(t *testing.T, ctx context.Context, fs ufs.FileSystem, dir string) map[string]ufs.FileStatus {
	t.Helper()
	out := map[string]ufs.FileStatus{}
	if err := fs.List(ctx, dir, func(st ufs.FileStatus) error {
		if _, dup := out[st.Name]; dup {
			t.Errorf("List(%s) reported %q twice", dir, st.Name)
		}
		out[st.Name] = st
		return nil
	}); err != nil {
		t.Fatalf("List(%s): %v", dir, err)
	}
	return out
}

func keys(m map[string]ufs.FileStatus) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func wantErr(t *testing.T, what string, err, kind error) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Errorf("%s = %v, want %v", what, err, kind)
	}
}

func testRootIsDir(t *testing.T, ctx context.Context, fs ufs.FileSystem) {
	for _, p := range []string{"", "/"} {
		st, err := fs.Stat(ctx, p)
		if err != nil || !st.IsDir {
			t.Errorf("Stat(%q) = %+v, %v; want a directory", p, st, err)
		}
	}
	if got := names(t, ctx, fs, "/"); len(got) != 0 {
		t.Errorf("a new file system lists %v", keys(got))
	}
}

func testCreateInvisibleUntilCommit(t *testing.T, ctx context.Context, fs ufs.FileSystem) {
	data := randBytes(100 << 10)
	w, err := fs.Create(ctx, "/dir/f", ufs.CreateOptions{CreateParent: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data[:50<<10]); err != nil {
		t.Fatal(err)
	}
	_, err = fs.Stat(ctx, "/dir/f")
	wantErr(t, "Stat before Commit", err, ufs.ErrNotFound)
	if err := fs.List(ctx, "/dir", func(st ufs.FileStatus) error {
		t.Errorf("List shows %q before Commit", st.Name)
		return nil
	}); err != nil && !errors.Is(err, ufs.ErrNotFound) {
		t.Fatal(err)
	}
	if _, err := w.Write(data[50<<10:]); err != nil {
		t.Fatal(err)
	}
	st, err := w.Commit()
	if err != nil {
		t.Fatal(err)
	}
	if st.Size != int64(len(data)) || st.IsDir || st.Name != "f" || st.Fingerprint == "" {
		t.Errorf("Commit status = %+v", st)
	}
	st2, err := fs.Stat(ctx, "/dir/f")
	if err != nil {
		t.Fatal(err)
	}
	if st2.Size != st.Size || st2.Fingerprint != st.Fingerprint {
		t.Errorf("Stat = %+v, Commit said %+v", st2, st)
	}
	if got := read(t, ctx, fs, "/dir/f", 0, -1); !bytes.Equal(got, data) {
		t.Errorf("read back %d bytes, want the %d written", len(got), len(data))
	}
	if got := keys(names(t, ctx, fs, "/dir")); strings.Join(got, ",") != "f" {
		t.Errorf("List(/dir) = %v, want [f] (no temp files)", got)
	}
	if _, err := w.Commit(); err == nil {
		t.Errorf("a second Commit succeeded")
	}
}

func testAbort(t *testing.T, ctx context.Context, fs ufs.FileSystem) {
	w, err := fs.Create(ctx, "/a", ufs.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(randBytes(4096)); err != nil {
		t.Fatal(err)
	}
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	_, err = fs.Stat(ctx, "/a")
	wantErr(t, "Stat after Abort", err, ufs.ErrNotFound)
	if got := names(t, ctx, fs, "/"); len(got) != 0 {
		t.Errorf("Abort left %v", keys(got))
	}
}

func testRangedOpen(t *testing.T, ctx context.Context, fs ufs.FileSystem) {
	data := randBytes(10000)
	put(t, ctx, fs, "/r", data)
	for _, c := range []struct{ off, n int64 }{
		{0, -1}, {0, 10000}, {1, 1}, {9999, 1}, {5000, -1}, {5000, 100000}, {10000, -1}, {10000, 5}, {0, 0}, {123, 4567},
	} {
		end := int64(len(data))
		if c.n >= 0 && c.off+c.n < end {
			end = c.off + c.n
		}
		if got := read(t, ctx, fs, "/r", c.off, c.n); !bytes.Equal(got, data[c.off:end]) {
			t.Errorf("Open(off=%d, n=%d) read %d bytes, want %d", c.off, c.n, len(got), end-c.off)
		}
	}
	if rc, err := fs.Open(ctx, "/r", 10001, 1); err == nil {
		rc.Close()
		t.Errorf("Open past the end succeeded")
	}
	if rc, err := fs.Open(ctx, "/r", -1, 1); err == nil {
		rc.Close()
		t.Errorf("Open at a negative offset succeeded")
	}
}

func testEmptyFile(t *testing.T, ctx context.Context, fs ufs.FileSystem) {
	st := put(t, ctx, fs, "/empty", nil)
	if st.Size != 0 || st.IsDir {
		t.Errorf("empty file status %+v", st)
	}
	if got := read(t, ctx, fs, "/empty", 0, -1); len(got) != 0 {
		t.Errorf("empty file read %d bytes", len(got))
	}
	if st, err := fs.Stat(ctx, "/empty"); err != nil || st.IsDir || st.Size != 0 {
		t.Errorf("Stat(/empty) = %+v, %v", st, err)
	}
}

func testLargeFile(t *testing.T, ctx context.Context, fs ufs.FileSystem) {
	data := randBytes(17<<20 + 12345) // crosses S3 part boundaries
	w, err := fs.Create(ctx, "/big", ufs.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(data); off += 1 << 20 {
		if _, err := w.Write(data[off:min(off+1<<20, len(data))]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := read(t, ctx, fs, "/big", 0, -1); !bytes.Equal(got, data) {
		t.Errorf("large file read back differs (%d vs %d bytes)", len(got), len(data))
	}
	off := int64(16<<20 - 100)
	if got := read(t, ctx, fs, "/big", off, 1000); !bytes.Equal(got, data[off:off+1000]) {
		t.Errorf("ranged read across a part boundary differs")
	}
}

func testOverwrite(t *testing.T, ctx context.Context, fs ufs.FileSystem) {
	st1 := put(t, ctx, fs, "/o", []byte("first version"))
	_, err := fs.Create(ctx, "/o", ufs.CreateOptions{})
	wantErr(t, "Create over an existing file", err, ufs.ErrExist)
	w, err := fs.Create(ctx, "/o", ufs.CreateOptions{Overwrite: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("second, longer version")); err != nil {
		t.Fatal(err)
	}
	st2, err := w.Commit()
	if err != nil {
		t.Fatal(err)
	}
	if st2.Fingerprint == st1.Fingerprint {
		t.Errorf("fingerprint did not change on overwrite: %q", st2.Fingerprint)
	}
	if got := read(t, ctx, fs, "/o", 0, -1); string(got) != "second, longer version" {
		t.Errorf("after overwrite read %q", got)
	}
	// A create that loses the race to another writer must not replace it.
	w1, err := fs.Create(ctx, "/race", ufs.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	put(t, ctx, fs, "/race", []byte("winner"))
	_, _ = w1.Write([]byte("loser"))
	_, err = w1.Commit()
	wantErr(t, "Commit after another writer created the file", err, ufs.ErrExist)
	if got := read(t, ctx, fs, "/race", 0, -1); string(got) != "winner" {
		t.Errorf("the losing writer replaced the file: %q", got)
	}
	_, err = fs.Create(ctx, "/", ufs.CreateOptions{Overwrite: true})
	if err == nil {
		t.Errorf("Create(/) succeeded")
	}
}

func testCreateParent(t *testing.T, ctx context.Context, fs ufs.FileSystem) {
	_, err := fs.Create(ctx, "/no/such/parent/f", ufs.CreateOptions{})
	wantErr(t, "Create without a parent", err, ufs.ErrNotFound)
	put(t, ctx, fs, "/yes/such/parent/f", []byte("x"))
	if st, err := fs.Stat(ctx, "/yes/such"); err != nil || !st.IsDir {
		t.Errorf("Stat(/yes/such) = %+v, %v", st, err)
	}
	put(t, ctx, fs, "/file", []byte("x"))
	if w, err := fs.Create(ctx, "/file/child", ufs.CreateOptions{CreateParent: true}); err == nil {
		_, _ = w.Write([]byte("y"))
		if _, err := w.Commit(); err == nil {
			t.Errorf("created a file below a file")
		}
	}
}

func testMkdirs(t *testing.T, ctx context.Context, fs ufs.FileSystem) {
	if err := fs.Mkdirs(ctx, "/a/b/c"); err != nil {
		t.Fatal(err)
	}
	if err := fs.Mkdirs(ctx, "/a/b/c"); err != nil {
		t.Errorf("Mkdirs of an existing dir: %v", err)
	}
	for _, p := range []string{"/a", "/a/b", "/a/b/c"} {
		if st, err := fs.Stat(ctx, p); err != nil || !st.IsDir {
			t.Errorf("Stat(%s) = %+v, %v", p, st, err)
		}
	}
	if got := names(t, ctx, fs, "/a/b/c"); len(got) != 0 {
		t.Errorf("empty dir lists %v", keys(got))
	}
	if got := names(t, ctx, fs, "/a"); len(got) != 1 || !got["b"].IsDir {
		t.Errorf("List(/a) = %v", got)
	}
	put(t, ctx, fs, "/f", []byte("x"))
	if err := fs.Mkdirs(ctx, "/f"); err == nil {
		t.Errorf("Mkdirs over a file succeeded")
	}
	if err := fs.Mkdirs(ctx, "/f/sub"); err == nil {
		t.Errorf("Mkdirs below a file succeeded")
	}
	if err := fs.Mkdirs(ctx, "/"); err != nil {
		t.Errorf("Mkdirs(/): %v", err)
	}
}

func testList(t *testing.T, ctx context.Context, fs ufs.FileSystem) {
	put(t, ctx, fs, "/d/one", []byte("1"))
	put(t, ctx, fs, "/d/two", []byte("22"))
	put(t, ctx, fs, "/d/sub/deep", []byte("333"))
	if err := fs.Mkdirs(ctx, "/d/emptydir"); err != nil {
		t.Fatal(err)
	}
	got := names(t, ctx, fs, "/d")
	if k := strings.Join(keys(got), ","); k != "emptydir,one,sub,two" {
		t.Fatalf("List(/d) = %s", k)
	}
	if got["one"].Size != 1 || got["two"].Size != 2 || got["one"].IsDir {
		t.Errorf("file entries %+v %+v", got["one"], got["two"])
	}
	if !got["sub"].IsDir || !got["emptydir"].IsDir {
		t.Errorf("dir entries %+v %+v", got["sub"], got["emptydir"])
	}
	if got["one"].Fingerprint == "" {
		t.Errorf("listed file has no fingerprint")
	}
	if got := names(t, ctx, fs, "/"); strings.Join(keys(got), ",") != "d" {
		t.Errorf("List(/) = %v", keys(got))
	}
	err := fs.List(ctx, "/d/one", func(ufs.FileStatus) error { return nil })
	wantErr(t, "List of a file", err, ufs.ErrNotDir)
	err = fs.List(ctx, "/missing", func(ufs.FileStatus) error { return nil })
	wantErr(t, "List of a missing dir", err, ufs.ErrNotFound)
	stop := errors.New("stop")
	n := 0
	err = fs.List(ctx, "/d", func(ufs.FileStatus) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("List stopped by fn: err %v after %d calls", err, n)
	}
}

func testListMany(t *testing.T, ctx context.Context, fs ufs.FileSystem) {
	const n = 1100 // more than one S3 listing page
	for i := 0; i < n; i++ {
		put(t, ctx, fs, fmt.Sprintf("/many/f%05d", i), nil)
	}
	got := names(t, ctx, fs, "/many")
	if len(got) != n {
		t.Fatalf("List(/many) returned %d entries, want %d", len(got), n)
	}
	for i := 0; i < n; i++ {
		if _, ok := got[fmt.Sprintf("f%05d", i)]; !ok {
			t.Fatalf("f%05d missing from the listing", i)
		}
	}
}

func testDelete(t *testing.T, ctx context.Context, fs ufs.FileSystem) {
	put(t, ctx, fs, "/d/f", []byte("x"))
	put(t, ctx, fs, "/d/g", []byte("x"))
	err := fs.Delete(ctx, "/d")
	wantErr(t, "Delete of a non-empty dir", err, ufs.ErrNotEmpty)
	if err := fs.Delete(ctx, "/d/f"); err != nil {
		t.Fatal(err)
	}
	_, err = fs.Stat(ctx, "/d/f")
	wantErr(t, "Stat of a deleted file", err, ufs.ErrNotFound)
	if err := fs.Delete(ctx, "/d/g"); err != nil {
		t.Fatal(err)
	}
	// The directory outlives its last file.
	if st, err := fs.Stat(ctx, "/d"); err != nil || !st.IsDir {
		t.Errorf("Stat(/d) after deleting its files = %+v, %v", st, err)
	}
	if err := fs.Delete(ctx, "/d"); err != nil {
		t.Errorf("Delete of an empty dir: %v", err)
	}
	_, err = fs.Stat(ctx, "/d")
	wantErr(t, "Stat of a deleted dir", err, ufs.ErrNotFound)
	wantErr(t, "Delete of a missing path", fs.Delete(ctx, "/nope"), ufs.ErrNotFound)
	if err := fs.Delete(ctx, "/"); err == nil {
		t.Errorf("Delete(/) succeeded")
	}
}

func testDeleteAll(t *testing.T, ctx context.Context, fs ufs.FileSystem) {
	put(t, ctx, fs, "/keep/t/a", []byte("x"))
	put(t, ctx, fs, "/keep/t/b/c", []byte("x"))
	if err := fs.Mkdirs(ctx, "/keep/t/e"); err != nil {
		t.Fatal(err)
	}
	if err := fs.DeleteAll(ctx, "/keep/t"); err != nil {
		t.Fatal(err)
	}
	_, err := fs.Stat(ctx, "/keep/t")
	wantErr(t, "Stat after DeleteAll", err, ufs.ErrNotFound)
	if st, err := fs.Stat(ctx, "/keep"); err != nil || !st.IsDir {
		t.Errorf("DeleteAll removed the parent too: %+v, %v", st, err)
	}
	if err := fs.DeleteAll(ctx, "/keep/t"); err != nil {
		t.Errorf("DeleteAll of a missing path: %v", err)
	}
	put(t, ctx, fs, "/keep/file", []byte("x"))
	if err := fs.DeleteAll(ctx, "/keep/file"); err != nil {
		t.Fatal(err)
	}
	_, err = fs.Stat(ctx, "/keep/file")
	wantErr(t, "Stat after DeleteAll of a file", err, ufs.ErrNotFound)
	if err := fs.DeleteAll(ctx, "/"); err == nil {
		t.Errorf("DeleteAll(/) succeeded")
	}
}

func testRenameFile(t *testing.T, ctx context.Context, fs ufs.FileSystem) {
	data := randBytes(3000)
	put(t, ctx, fs, "/src/f", data)
	if err := fs.Mkdirs(ctx, "/dst"); err != nil {
		t.Fatal(err)
	}
	if err := fs.Rename(ctx, "/src/f", "/dst/g"); err != nil {
		t.Fatal(err)
	}
	_, err := fs.Stat(ctx, "/src/f")
	wantErr(t, "Stat of the rename source", err, ufs.ErrNotFound)
	if got := read(t, ctx, fs, "/dst/g", 0, -1); !bytes.Equal(got, data) {
		t.Errorf("renamed file content differs")
	}
	if st, err := fs.Stat(ctx, "/src"); err != nil || !st.IsDir {
		t.Errorf("source dir vanished after its only file moved: %+v, %v", st, err)
	}
	put(t, ctx, fs, "/other", []byte("o"))
	wantErr(t, "Rename onto an existing file", fs.Rename(ctx, "/other", "/dst/g"), ufs.ErrExist)
	if got := read(t, ctx, fs, "/dst/g", 0, -1); !bytes.Equal(got, data) {
		t.Errorf("a refused rename changed the target")
	}
	wantErr(t, "Rename of a missing file", fs.Rename(ctx, "/missing", "/x"), ufs.ErrNotFound)
}

// testReplace: ufs.Replace moves a file onto another (or onto a free name)
// and leaves no source behind; a missing source changes nothing.
func testReplace(t *testing.T, ctx context.Context, fs ufs.FileSystem) {
	put(t, ctx, fs, "/d/f", []byte("old"))
	data := randBytes(2000)
	put(t, ctx, fs, "/d/"+ufs.TempName("new"), data)
	if err := ufs.Replace(ctx, fs, "/d/"+ufs.TempName("new"), "/d/f"); err != nil {
		t.Fatal(err)
	}
	if got := read(t, ctx, fs, "/d/f", 0, -1); !bytes.Equal(got, data) {
		t.Errorf("replaced file holds %d bytes, want the new %d", len(got), len(data))
	}
	_, err := fs.Stat(ctx, "/d/"+ufs.TempName("new"))
	wantErr(t, "Stat of the replace source", err, ufs.ErrNotFound)
	put(t, ctx, fs, "/d/src", []byte("fresh"))
	if err := ufs.Replace(ctx, fs, "/d/src", "/d/free"); err != nil {
		t.Fatal(err)
	}
	if got := read(t, ctx, fs, "/d/free", 0, -1); string(got) != "fresh" {
		t.Errorf("replace onto a free name: %q", got)
	}
	wantErr(t, "Replace from a missing file", ufs.Replace(ctx, fs, "/d/missing", "/d/f"), ufs.ErrNotFound)
	if got := read(t, ctx, fs, "/d/f", 0, -1); !bytes.Equal(got, data) {
		t.Errorf("a failed replace changed the target")
	}
	if got := names(t, ctx, fs, "/d"); len(got) != 2 {
		t.Errorf("/d lists %v, want f and free", keys(got))
	}
}

func testRenameDir(t *testing.T, ctx context.Context, fs ufs.FileSystem) {
	put(t, ctx, fs, "/t/a", []byte("a"))
	put(t, ctx, fs, "/t/sub/b", []byte("bb"))
	if err := fs.Mkdirs(ctx, "/t/empty"); err != nil {
		t.Fatal(err)
	}
	if err := fs.Rename(ctx, "/t", "/u"); err != nil {
		t.Fatal(err)
	}
	_, err := fs.Stat(ctx, "/t")
	wantErr(t, "Stat of a renamed dir", err, ufs.ErrNotFound)
	if got := strings.Join(keys(names(t, ctx, fs, "/u")), ","); got != "a,empty,sub" {
		t.Errorf("List(/u) = %s", got)
	}
	if got := read(t, ctx, fs, "/u/sub/b", 0, -1); string(got) != "bb" {
		t.Errorf("/u/sub/b = %q", got)
	}
	if err := fs.Rename(ctx, "/u", "/u/inside"); err == nil {
		t.Errorf("renamed a dir into itself")
	}
}

func testOpenErrors(t *testing.T, ctx context.Context, fs ufs.FileSystem) {
	_, err := fs.Open(ctx, "/missing", 0, -1)
	wantErr(t, "Open of a missing file", err, ufs.ErrNotFound)
	_, err = fs.Stat(ctx, "/missing")
	wantErr(t, "Stat of a missing file", err, ufs.ErrNotFound)
	if err := fs.Mkdirs(ctx, "/dir"); err != nil {
		t.Fatal(err)
	}
	_, err = fs.Open(ctx, "/dir", 0, -1)
	wantErr(t, "Open of a dir", err, ufs.ErrIsDir)
}

func testNoEscape(t *testing.T, ctx context.Context, fs ufs.FileSystem) {
	put(t, ctx, fs, "/inside", []byte("x"))
	for _, p := range []string{"../inside", "/../../inside", "a/../../inside"} {
		st, err := fs.Stat(ctx, p)
		if err != nil || st.Name != "inside" {
			t.Errorf("Stat(%q) = %+v, %v; want the root's /inside", p, st, err)
		}
	}
	if _, err := fs.Stat(ctx, "/a\x00b"); err == nil {
		t.Errorf("a path with NUL was accepted")
	}
}

func testURI(t *testing.T, ctx context.Context, fs ufs.FileSystem) {
	root := fs.URI("")
	if got := fs.URI("/a/b"); got != strings.TrimRight(root, "/")+"/a/b" {
		t.Errorf("URI(/a/b) = %q under root %q", got, root)
	}
}
