package ufs

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
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

// TestLocalWriteRegionDirect: regions of a big file written at once by
// several writers, with sizes and offsets off the page grid and chunks
// that sit unaligned in memory (the whole pages go with O_DIRECT where
// the file system takes it, the rest through the page cache), hold every
// byte where it belongs — in the test's temp dir, and on tmpfs, which
// refuses O_DIRECT.
func TestLocalWriteRegionDirect(t *testing.T) {
	dirs := []string{t.TempDir()}
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "alluvium-ufs-test-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(d) })
			dirs = append(dirs, d)
		}
	}
	want := make([]byte, 3<<20+12345)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range want {
		want[i] = byte(rng.Uint32())
	}
	for _, dir := range dirs {
		for _, grid := range []int{1 << 20, 1<<20 + 4097, 5000} {
			l, err := NewLocal(dir)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			name := fmt.Sprintf("f-%d", grid)
			var wg sync.WaitGroup
			errs := make(chan error, len(want)/grid+1)
			for off := 0; off < len(want); off += grid {
				wg.Add(1)
				go func(off int) {
					defer wg.Done()
					end := min(off+grid, len(want))
					w, err := l.WriteRegion(ctx, name, int64(off), 0o600)
					if err != nil {
						errs <- err
						return
					}
					// Chunks of odd sizes, copied to an odd address.
					for at := off; at < end; {
						n := min(end-at, 300000+at%7)
						buf := make([]byte, n+1)[1:]
						copy(buf, want[at:at+n])
						if _, err := w.Write(buf); err != nil {
							errs <- err
							w.Abort()
							return
						}
						at += n
					}
					if _, err := w.Commit(); err != nil {
						errs <- err
					}
				}(off)
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatalf("%s grid %d: %v", dir, grid, err)
			}
			got, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("%s grid %d: the file holds %d bytes (%v), %d differ from what was written", dir, grid, len(got), err, diff(got, want))
			}
			l.Close()
		}
	}
}

func diff(a, b []byte) int {
	n := max(len(a), len(b)) - min(len(a), len(b))
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			n++
		}
	}
	return n
}
