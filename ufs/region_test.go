package ufs

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestLocalWriteRegion: regions written in any order, by several writers,
// land at their offsets of one file (made with its parents); Truncate cuts
// what lies past the end.
func TestLocalWriteRegion(t *testing.T) {
	dir := t.TempDir()
	l, err := NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	write := func(off int64, s string) {
		t.Helper()
		w, err := l.WriteRegion(ctx, "a/b/f", off, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	write(6, "world!")
	write(0, "hello ")
	write(12, "junk")
	if err := l.Truncate(ctx, "a/b/f", 12); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "a", "b", "f"))
	if err != nil || string(got) != "hello world!" {
		t.Fatalf("file holds %q (%v)", got, err)
	}
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(dir, "lnk")); err != nil {
		t.Fatal(err)
	}
	if w, err := l.WriteRegion(ctx, "lnk/x", 0, 0); err == nil {
		w.Abort()
		t.Fatal("a region through a symlink out of the root was opened")
	}
	if _, err := os.Stat(filepath.Join(outside, "x")); !os.IsNotExist(err) {
		t.Fatalf("a file appeared outside the root: %v", err)
	}
	if _, err := l.WriteRegion(ctx, "a/b/f", -1, 0); err == nil {
		t.Fatal("a negative offset was accepted")
	}
}
