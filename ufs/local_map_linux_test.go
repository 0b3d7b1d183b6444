package ufs

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// A file cut short under a mapping being hashed faults past its end: the
// hash fails with an error, the process goes on.
func TestHashMappedShortFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Mapped as if it still were 3 MiB long.
	if err := hashFD(int(f.Fd()), 0, 3<<20, sha256.New()); err == nil {
		t.Fatal("hashing past the end of the file succeeded")
	}
	if err := hashFD(int(f.Fd()), 0, 1<<20, sha256.New()); err != nil {
		t.Fatalf("hashing the whole file: %v", err)
	}
}

// A kernel copy that does not read back as its source (a byte of it
// changed after the copy: the corruption a check is for) fails the check
// with ErrCopyDiffers naming the byte, in the first piece or a later
// one, hashing or not, where the copy starts after other bytes or not;
// n counts the pieces before the bad one (checked good).
func TestLocalCopyFromCheckFindsDifference(t *testing.T) {
	ctx := context.Background()
	l := newTestLocal(t, t.TempDir(), true)
	data := make([]byte, 3<<20)
	for i := range data {
		data[i] = byte(i*31 + i>>11)
	}
	if err := os.WriteFile(filepath.Join(l.dir, "src"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		off, n, flip int64
		head         string
		hash         bool
	}{{0, 3 << 20, 2<<20 + 7, "", true}, {4096, 2 << 20, 0, "head", false}, {10, 5000, 4999, "h", true}, {10, 5000, 1, "", false}} {
		pos := int64(len(c.head)) + c.flip // in the file written
		restore := AfterKernelCopyForTest(func(fd int, at, n int64) {
			if pos < at || pos >= at+n {
				return
			}
			b := make([]byte, 1)
			if _, err := unix.Pread(fd, b, pos); err != nil {
				t.Error(err)
			}
			b[0] ^= 0x40
			if _, err := unix.Pwrite(fd, b, pos); err != nil {
				t.Error(err)
			}
		})
		w, err := l.Create(ctx, "dst", CreateOptions{Overwrite: true})
		if err != nil {
			t.Fatal(err)
		}
		_, _ = w.Write([]byte(c.head))
		r, err := l.Open(ctx, "src", c.off, c.n)
		if err != nil {
			t.Fatal(err)
		}
		var h hash.Hash
		if c.hash {
			h = sha256.New()
		}
		n, ok, err := w.(FileCopier).CopyFrom(r, true, h)
		r.Close()
		restore()
		want := fmt.Sprintf("at byte %d", pos)
		if !ok || n != c.flip&^(checkPiece-1) || !errors.Is(err, ErrCopyDiffers) || !strings.Contains(err.Error(), want) {
			t.Fatalf("CopyFrom %+v of a copy changed after it = %d, %v, %v; want ErrCopyDiffers %s", c, n, ok, err, want)
		}
		if err := w.Abort(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(l.dir, "dst")); !os.IsNotExist(err) {
			t.Fatalf("dst after Abort: %v", err)
		}
	}
}
