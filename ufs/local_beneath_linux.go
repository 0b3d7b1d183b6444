package ufs

import (
	"errors"
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
	how := &unix.OpenHow{
		Flags:   uint64(flag | unix.O_CLOEXEC),
		Mode:    uint64(perm.Perm()),
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS,
	}
	for attempt := 0; ; attempt++ {
		fd, err := unix.Openat2(int(b.dir.Fd()), rel, how)
		switch {
		case err == nil:
			return os.NewFile(uintptr(fd), filepath.Join(b.dir.Name(), rel)), nil
		case err == unix.EINTR, err == unix.EAGAIN && attempt < 8:
			// EAGAIN: a rename raced the lookup; the kernel asks to retry.
			continue
		case err == unix.EXDEV:
			return nil, &fs.PathError{Op: "openat2", Path: rel, Err: errEscapes}
		default:
			return nil, &fs.PathError{Op: "openat2", Path: rel, Err: err}
		}
	}
}

// lstatIn is the status of the entry name of the open directory dir: one
// fstatat of a single component, where DirEntry.Info resolves the whole
// absolute path again for every entry of a listing.
func lstatIn(dir *os.File, name string) (FileStatus, bool, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(int(dir.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return FileStatus{}, false, &fs.PathError{Op: "fstatat", Path: name, Err: err}
	}
	mtime := time.Unix(st.Mtim.Unix())
	fst := FileStatus{Name: name, IsDir: st.Mode&unix.S_IFMT == unix.S_IFDIR, ModTime: mtime, Mode: st.Mode & 0o777}
	if !fst.IsDir {
		fst.Size = st.Size
		fst.Fingerprint = fingerprint(st.Size, mtime)
	}
	return fst, st.Mode&unix.S_IFMT == unix.S_IFLNK, nil
}

func (b *beneath) close() {
	if b != nil {
		b.dir.Close()
	}
}
