package ufs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestLocalConfinement runs with the openat2 fast path (where the kernel
// has it) and with os.Root alone.
func TestLocalConfinement(t *testing.T) {
	t.Run("openat2", func(t *testing.T) { testLocalConfinement(t, true) })
	t.Run("root", func(t *testing.T) { testLocalConfinement(t, false) })
}

func testLocalConfinement(t *testing.T, fast bool) {
	ctx := context.Background()
	base := t.TempDir()
	root := filepath.Join(base, "root")
	secret := filepath.Join(base, "secret")
	if err := os.MkdirAll(secret, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(secret, "key"), []byte("s3cr3t"), 0o600); err != nil {
		t.Fatal(err)
	}
	l := newTestLocal(t, root, fast)
	// A symlink inside the root that points outside it.
	if err := os.Symlink(secret, filepath.Join(root, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../secret/key", filepath.Join(root, "keylink")); err != nil {
		t.Fatal(err)
	}

	// ".." is cleaned against the root: it names root/secret, which is absent.
	if _, err := l.Stat(ctx, "../secret/key"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Stat(../secret/key) = %v, want ErrNotFound", err)
	}
	for _, p := range []string{"escape/key", "keylink"} {
		if rc, err := l.Open(ctx, p, 0, -1); err == nil {
			b, _ := io.ReadAll(rc)
			rc.Close()
			t.Errorf("Open(%s) escaped the root and read %q", p, b)
		}
		// Overwriting replaces the link itself inside the root; the target
		// outside must stay untouched.
		if w, err := l.Create(ctx, p, CreateOptions{Overwrite: true}); err == nil {
			_, _ = w.Write([]byte("overwritten"))
			_, _ = w.Commit()
		}
	}
	if b, _ := os.ReadFile(filepath.Join(secret, "key")); string(b) != "s3cr3t" {
		t.Errorf("a write through a symlink changed a file outside the root: %q", b)
	}
	if err := l.Mkdirs(ctx, "escape/newdir"); err == nil {
		t.Errorf("Mkdirs through an escaping symlink succeeded")
	}
	if _, err := os.Stat(filepath.Join(secret, "newdir")); err == nil {
		t.Errorf("a directory was created outside the root")
	}
	var names []string
	if err := l.List(ctx, "/", func(st FileStatus) error { names = append(names, st.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if n == "escape" {
			t.Errorf("List(/) shows the escaping link: %v", names)
		}
	}
	if err := l.Delete(ctx, "/"); err == nil {
		t.Errorf("Delete(/) of the mount root succeeded")
	}
}

func TestLocalWriterAtomic(t *testing.T) { onBothPaths(t, testLocalWriterAtomic) }

func testLocalWriterAtomic(t *testing.T, l *Local) {
	ctx := context.Background()
	w, err := l.Create(ctx, "a/b/file", CreateOptions{CreateParent: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Stat(ctx, "a/b/file"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("file visible before Commit: %v", err)
	}
	n := 0
	_ = l.List(ctx, "a/b", func(FileStatus) error { n++; return nil })
	if n != 0 {
		t.Fatalf("List shows the temporary file")
	}
	st, err := w.Commit()
	if err != nil || st.Size != 5 || st.Fingerprint == "" {
		t.Fatalf("Commit = %+v, %v", st, err)
	}
	if _, err := l.Create(ctx, "a/b/file", CreateOptions{}); !errors.Is(err, ErrExist) {
		t.Fatalf("Create over an existing file = %v, want ErrExist", err)
	}
	w2, _ := l.Create(ctx, "a/b/other", CreateOptions{})
	_, _ = w2.Write([]byte("x"))
	if err := w2.Abort(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Stat(ctx, "a/b/other"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("aborted file exists: %v", err)
	}
	rc, err := l.Open(ctx, "a/b/file", 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "ell" {
		t.Fatalf("range read = %q", b)
	}
	// A copy keeps its source's modification time: set before the file
	// is renamed into place, and in the status Commit returns.
	mt := time.Date(2020, 1, 2, 3, 4, 5, 6e6, time.UTC)
	w3, err := l.Create(ctx, "a/c/timed", CreateOptions{CreateParent: true, Mode: 0o600, ModTime: mt})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = w3.Write([]byte("dated"))
	st3, err := w3.Commit()
	if err != nil {
		t.Fatal(err)
	}
	got, err := l.Stat(ctx, "a/c/timed")
	if err != nil {
		t.Fatal(err)
	}
	if !got.ModTime.Equal(mt) || got.Fingerprint != st3.Fingerprint || st3.Size != 5 || got.Mode != 0o600 || st3.Name != "timed" {
		t.Fatalf("after Commit: stat %+v, commit said %+v; want mtime %v, mode 0600, 5 bytes", got, st3, mt)
	}
	n = 0
	_ = l.List(ctx, "a/c", func(FileStatus) error { n++; return nil })
	if ents, _ := os.ReadDir(filepath.Join(l.dir, "a", "c")); len(ents) != 1 || n != 1 {
		t.Fatalf("a/c holds %v (listed %d): want the file alone, no temporary left", ents, n)
	}
}

// TestLocalListBig lists a directory big enough that its entries are
// statted on several goroutines: every entry comes once, with its own
// status, temp files stay hidden, a link inside the root is followed and
// one leaving it is skipped.
func TestLocalListBig(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	root := filepath.Join(base, "root")
	l, err := NewLocal(root)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	const files = 3000 // several Readdirnames batches, each split
	want := map[string]int64{}
	for i := range files {
		name := fmt.Sprintf("f%05d", i)
		if err := os.WriteFile(filepath.Join(root, name), make([]byte, i%7), 0o644); err != nil {
			t.Fatal(err)
		}
		want[name] = int64(i % 7)
	}
	if err := os.Mkdir(filepath.Join(root, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, TempName("x")), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("f00003", filepath.Join(root, "inside")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(base, filepath.Join(root, "outside")); err != nil {
		t.Fatal(err)
	}
	want["inside"] = 3
	got := map[string]FileStatus{}
	if err := l.List(ctx, "/", func(st FileStatus) error {
		if _, dup := got[st.Name]; dup {
			t.Errorf("%s listed twice", st.Name)
		}
		got[st.Name] = st
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want)+1 {
		t.Errorf("listed %d entries, want %d", len(got), len(want)+1)
	}
	for name, size := range want {
		st, ok := got[name]
		switch {
		case !ok:
			t.Errorf("%s not listed", name)
		case st.IsDir || st.Size != size || st.Fingerprint != fingerprint(size, st.ModTime):
			t.Errorf("%s: %+v, want a file of %d bytes", name, st, size)
		}
	}
	if st := got["sub"]; !st.IsDir || st.Fingerprint != "" {
		t.Errorf("sub: %+v, want a directory (no fingerprint)", st)
	}
	// The listing's fingerprints (built in shared chunks) are Stat's,
	// and still are once the whole listing is done.
	for _, name := range []string{"f00000", "f01500", "f02999", "inside"} {
		st, err := l.Stat(ctx, "/"+name)
		if err != nil || st.Fingerprint != got[name].Fingerprint {
			t.Errorf("%s: Stat fingerprint %q (%v), listed %q", name, st.Fingerprint, err, got[name].Fingerprint)
		}
	}
}

// A local writer takes a local reader's bytes in the kernel (FileCopier):
// what is left of the reader's range, nothing more; any other reader is
// refused untouched, for the caller to stream.
func TestLocalCopyFrom(t *testing.T) {
	ctx := context.Background()
	l := newTestLocal(t, t.TempDir(), true)
	data := make([]byte, 300<<10)
	for i := range data {
		data[i] = byte(i * 7)
	}
	if err := os.WriteFile(filepath.Join(l.dir, "src"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	w, err := l.Create(ctx, "dst", CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fc, ok := w.(FileCopier)
	if !ok {
		t.Fatal("the openat2 writer copies in the kernel")
	}
	if n, ok, err := fc.CopyFrom(bytes.NewReader(data), true, sha256.New()); ok || n != 0 || err != nil {
		t.Fatalf("CopyFrom(bytes.Reader) = %d, %v, %v: want refused", n, ok, err)
	}
	_, _ = w.Write([]byte("head:"))
	r, err := l.Open(ctx, "src", 1000, 200<<10)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	skip := make([]byte, 10)
	if _, err := io.ReadFull(r, skip); err != nil {
		t.Fatal(err)
	}
	n, ok, err := fc.CopyFrom(r, false, nil)
	if !ok || err != nil || n != 200<<10-10 {
		t.Fatalf("CopyFrom(local) = %d, %v, %v; want %d", n, ok, err, 200<<10-10)
	}
	if rest, _ := io.ReadAll(r); len(rest) != 0 {
		t.Fatalf("the reader has %d bytes left after CopyFrom", len(rest))
	}
	if _, err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(l.dir, "dst"))
	want := append([]byte("head:"), data[1010:1000+200<<10]...)
	if !bytes.Equal(got, want) {
		t.Fatalf("dst holds %d bytes, not the %d expected", len(got), len(want))
	}
}

// With a check, CopyFrom compares the copy with the source (mapped when
// long, read when short) and hashes it as it goes, and HashWritten reads
// the copy back before it has its name: both as sha256 of the bytes says.
func TestLocalCopyFromHashing(t *testing.T) {
	ctx := context.Background()
	l := newTestLocal(t, t.TempDir(), true)
	data := make([]byte, 3<<20+333)
	for i := range data {
		data[i] = byte(i*13 + i>>9)
	}
	if err := os.WriteFile(filepath.Join(l.dir, "src"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := func(b []byte) []byte { s := sha256.Sum256(b); return s[:] }
	// Sections: long and unaligned (mapped), short (read).
	for _, c := range []struct{ off, n int64 }{{4097, 2<<20 + 5}, {100, 1000}, {0, int64(len(data))}} {
		w, err := l.Create(ctx, "dst", CreateOptions{Overwrite: true})
		if err != nil {
			t.Fatal(err)
		}
		r, err := l.Open(ctx, "src", c.off, c.n)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		n, ok, err := w.(FileCopier).CopyFrom(r, true, h)
		r.Close()
		want := data[c.off : c.off+c.n]
		if !ok || err != nil || n != c.n || !bytes.Equal(h.Sum(nil), sum(want)) {
			t.Fatalf("CopyFrom %+v = %d, %v, %v (hash ok: %v)", c, n, ok, err, bytes.Equal(h.Sum(nil), sum(want)))
		}
		back := sha256.New()
		if n, err := w.(WrittenHasher).HashWritten(back); err != nil || n != c.n || !bytes.Equal(back.Sum(nil), sum(want)) {
			t.Fatalf("HashWritten %+v = %d, %v", c, n, err)
		}
		if _, err := w.Commit(); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(filepath.Join(l.dir, "dst")); !bytes.Equal(got, want) {
			t.Fatalf("dst differs for %+v", c)
		}
	}
}

// A batch's files share their directories' descriptors, across
// goroutines; each file is in place once committed; a writer still open
// when the batch closes keeps working; nothing is created after Close.
func TestLocalBatch(t *testing.T) { onBothPaths(t, testLocalBatch) }

func testLocalBatch(t *testing.T, l *Local) {
	ctx := context.Background()
	fast := l.fast != nil
	b := NewBatch(l)
	errs := make(chan error, 40)
	for i := range 40 {
		go func() {
			p := fmt.Sprintf("d%d/sub/f%02d", i%2, i)
			w, err := b.Create(ctx, p, CreateOptions{CreateParent: true, Overwrite: i%3 == 0})
			if err == nil {
				_, err = w.Write([]byte(p))
			}
			if err == nil {
				_, err = w.Commit()
			}
			errs <- err
		}()
	}
	for range 40 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	late, err := b.Create(ctx, "d0/sub/late", CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	_, _ = late.Write([]byte("late"))
	if _, err := late.Commit(); err != nil {
		t.Fatalf("a writer open when its batch closed: %v", err)
	}
	if fast {
		if _, err := b.Create(ctx, "d0/sub/after", CreateOptions{}); err == nil {
			t.Fatal("a closed batch created a file")
		}
	}
	for i := range 40 {
		p := fmt.Sprintf("d%d/sub/f%02d", i%2, i)
		if got, err := os.ReadFile(filepath.Join(l.dir, p)); err != nil || string(got) != p {
			t.Fatalf("%s: %q, %v", p, got, err)
		}
	}
	if got, err := os.ReadFile(filepath.Join(l.dir, "d0/sub/late")); err != nil || string(got) != "late" {
		t.Fatalf("late: %q, %v", got, err)
	}
}

// onBothPaths runs f on a Local over a temp dir opening files with
// openat2, and on one with os.Root alone.
func onBothPaths(t *testing.T, f func(t *testing.T, l *Local)) {
	t.Run("openat2", func(t *testing.T) { f(t, newTestLocal(t, t.TempDir(), true)) })
	t.Run("root", func(t *testing.T) { f(t, newTestLocal(t, t.TempDir(), false)) })
}

// newTestLocal is a Local over dir, opening files with openat2 (fast; the
// test is skipped where the kernel cannot) or with os.Root alone.
func newTestLocal(t *testing.T, dir string, fast bool) *Local {
	t.Helper()
	l, err := NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	if !fast {
		l.fast.close()
		l.fast = nil
	} else if l.fast == nil {
		t.Skip("no openat2 here")
	}
	return l
}
