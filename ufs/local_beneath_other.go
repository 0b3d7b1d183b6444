//go:build !linux

package ufs

import (
	"context"
	"io/fs"
	"os"
)

// beneath is Linux's openat2 fast path; elsewhere os.Root does the work.
type beneath struct{}

func openBeneath(string) *beneath { return nil }

func (*beneath) open(string, int, fs.FileMode) (*os.File, error) { panic("unreachable") }

func (*beneath) close() {}

func (*beneath) create(*Local, string, string, string, string, CreateOptions, fs.FileMode, *dirBatch) (Writer, error) {
	panic("unreachable")
}

func (*beneath) openRead(string, string) (readerAtCloser, FileStatus, error) { panic("unreachable") }

// lstatIn is DirEntry.Info's status (Linux has a one-component fstatat),
// its fingerprint included.
func lstatIn(dir *os.File, name string) (FileStatus, bool, error) {
	fi, err := os.Lstat(dir.Name() + "/" + name)
	if err != nil {
		return FileStatus{}, false, err
	}
	return statusOf(name, fi), fi.Mode()&fs.ModeSymlink != 0, nil
}

// oDirect: 0, no O_DIRECT writes (Linux only).
const oDirect = 0

// dirBatch is Linux's (a Local without openat2 batches nothing).
type dirBatch struct {
	l    *Local
	dirs map[string]*batchDir
}

type batchDir struct{}

func (b *dirBatch) Create(context.Context, string, CreateOptions) (Writer, error) {
	panic("unreachable")
}

func (b *dirBatch) Close() error { return nil }

// AfterKernelCopyForTest: nothing is copied in the kernel here.
func AfterKernelCopyForTest(func(fd int, at, n int64)) (restore func()) { return func() {} }
