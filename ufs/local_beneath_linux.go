package ufs

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// beneath opens files under the root with one openat2(RESOLVE_BENEATH)
// call: the kernel refuses `..` and symlinks that leave the root, as
// os.Root does, but without os.Root's walk of one openat per path
// component — which costs small-file loads and copies a third of their
// system time. nil when the kernel has no openat2 (before 5.6) or a
// seccomp filter refuses it; os.Root then does the work.
type beneath struct {
	dir *os.File
}

func openBeneath(dir string) *beneath {
	d, err := os.Open(dir)
	if err != nil {
		return nil
	}
	b := &beneath{dir: d}
	f, err := b.open(".", os.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		d.Close()
		return nil
	}
	f.Close()
	return b
}

// errEscapes matches wrap's escape check (os.Root's wording).
var errEscapes = errors.New("path escapes from parent")

func (b *beneath) open(rel string, flag int, perm fs.FileMode) (*os.File, error) {
	fd, err := b.openFD(rel, flag, perm)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), filepath.Join(b.dir.Name(), rel)), nil
}

// openFD is open's bare descriptor.
func (b *beneath) openFD(rel string, flag int, perm fs.FileMode) (rawReader, error) {
	how := &unix.OpenHow{
		Flags:   uint64(flag | unix.O_CLOEXEC),
		Mode:    uint64(perm.Perm()),
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS,
	}
	for attempt := 0; ; attempt++ {
		fd, err := unix.Openat2(int(b.dir.Fd()), rel, how)
		switch {
		case err == nil:
			return rawReader(fd), nil
		case err == unix.EINTR, err == unix.EAGAIN && attempt < 8:
			// EAGAIN: a rename raced the lookup; the kernel asks to retry.
			continue
		case err == unix.EXDEV:
			return -1, &fs.PathError{Op: "openat2", Path: rel, Err: errEscapes}
		default:
			return -1, &fs.PathError{Op: "openat2", Path: rel, Err: err}
		}
	}
}

// openRead opens rel for reading as a bare descriptor (an *os.File would
// ask the poller and fcntl about it first: two syscalls a file that
// small-file loads pay 20,000 times), with its status.
func (b *beneath) openRead(rel, name string) (readerAtCloser, FileStatus, error) {
	f, err := b.openFD(rel, os.O_RDONLY, 0)
	if err != nil {
		return nil, FileStatus{}, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f), &st); err != nil {
		f.Close()
		return nil, FileStatus{}, &fs.PathError{Op: "fstat", Path: rel, Err: err}
	}
	return f, statusOfStat(name, &st), nil
}

// rawReader is a file descriptor read with pread(2).
type rawReader int

func (f rawReader) ReadAt(p []byte, off int64) (int, error) {
	done := 0
	for done < len(p) {
		n, err := unix.Pread(int(f), p[done:], off+int64(done))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return done, &fs.PathError{Op: "pread", Path: "fd", Err: err}
		}
		if n == 0 {
			return done, io.EOF
		}
		done += n
	}
	return done, nil
}

func (f rawReader) Close() error { return unix.Close(int(f)) }

func statusOfStat(name string, st *unix.Stat_t) FileStatus {
	mtime := time.Unix(st.Mtim.Unix())
	fst := FileStatus{Name: name, IsDir: st.Mode&unix.S_IFMT == unix.S_IFDIR, ModTime: mtime, Mode: st.Mode & 0o777}
	if !fst.IsDir {
		fst.Size = st.Size
		fst.Fingerprint = fingerprint(st.Size, mtime)
	}
	return fst
}

// lstatIn is the status of the entry name of the open directory dir: one
// fstatat of a single component, where DirEntry.Info resolves the whole
// absolute path again for every entry of a listing.
func lstatIn(dir *os.File, name string) (FileStatus, bool, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(int(dir.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return FileStatus{}, false, &fs.PathError{Op: "fstatat", Path: name, Err: err}
	}
	return statusOfStat(name, &st), st.Mode&unix.S_IFMT == unix.S_IFLNK, nil
}

func (b *beneath) close() {
	if b != nil {
		b.dir.Close()
	}
}

// oDirect opens a file for writes that bypass the page cache.
const oDirect = unix.O_DIRECT
