package blockworker

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// openAnon opens an unnamed file in dir (O_TMPFILE): a block being written
// has no directory entry until linkAnon names it, so a commit is one link
// instead of a create and a rename across two directories, and a crash
// leaves nothing behind to clean up. The descriptor stays bare (rawFile):
// an *os.File would try the poller and flip O_NONBLOCK on and off — five
// syscalls a block that small-file loads pay 20,000 times. ok is false when
// the file system or kernel cannot.
//
// dirFD is a descriptor of dir held open (openDirFD; < 0: none): the file
// is then made relative to it, without walking dir's path again.
func openAnon(dir string, dirFD int) (f blockFile, path string, ok bool) {
	var (
		fd  int
		err error
	)
	if dirFD >= 0 {
		fd, err = unix.Openat(dirFD, ".", unix.O_WRONLY|unix.O_TMPFILE|unix.O_CLOEXEC, 0o644)
	} else {
		fd, err = unix.Open(dir, unix.O_WRONLY|unix.O_TMPFILE|unix.O_CLOEXEC, 0o644)
	}
	if err != nil {
		return nil, "", false
	}
	// Readers of a fill in progress open the file by this name.
	return rawFile(fd), fmt.Sprintf("/proc/self/fd/%d", fd), true
}

// linkAnon names the unnamed file f, open at path (openAnon's), final; it
// fails with an error matching os.ErrExist when final is taken. dirFD
// (>= 0) is final's directory held open and name final's name in it: the
// link is then made relative to it, without walking final's path.
func linkAnon(f blockFile, path string, dirFD int, name, final string) error {
	if rf, ok := f.(rawFile); ok && !noEmptyPathLink.Load() {
		// By its descriptor: no walk of /proc/self/fd (a third of a small
		// block's commit). It takes CAP_DAC_READ_SEARCH; without it the
		// kernel answers ENOENT, and /proc does it from then on.
		var err error
		if dirFD >= 0 && name != "" {
			err = unix.Linkat(int(rf), "", dirFD, name, unix.AT_EMPTY_PATH)
		} else {
			err = unix.Linkat(int(rf), "", unix.AT_FDCWD, final, unix.AT_EMPTY_PATH)
		}
		if err == nil {
			return nil
		}
		if err != unix.ENOENT && err != unix.EPERM {
			return &os.LinkError{Op: "link", Old: path, New: final, Err: err}
		}
		if err := linkProc(path, final); err != nil {
			return err
		}
		noEmptyPathLink.Store(true)
		return nil
	}
	return linkProc(path, final)
}

// noEmptyPathLink: linkat(AT_EMPTY_PATH) was refused here (no capability).
var noEmptyPathLink atomic.Bool

// linkProc links through the file's /proc/self/fd name.
func linkProc(path, final string) error {
	if err := unix.Linkat(unix.AT_FDCWD, path, unix.AT_FDCWD, final, unix.AT_SYMLINK_FOLLOW); err != nil {
		return &os.LinkError{Op: "link", Old: path, New: final, Err: err}
	}
	return nil
}

// rawFile is a blocking file descriptor written with plain write(2).
type rawFile int

func (f rawFile) Write(p []byte) (int, error) {
	done := 0
	for done < len(p) {
		n, err := unix.Write(int(f), p[done:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return done, &os.PathError{Op: "write", Path: fmt.Sprintf("/proc/self/fd/%d", int(f)), Err: err}
		}
		done += n
	}
	return done, nil
}

func (f rawFile) Close() error { return unix.Close(int(f)) }

// openDirFD opens a tier directory to keep: -1 when it cannot.
func openDirFD(dir string) int {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	return fd
}

func closeDirFD(fd int) { unix.Close(fd) }

// writeInPlace creates a block file under its final name (name in the
// directory dirFD when >= 0, else the path final) with the sticky bit set,
// the mark of a block being written: a file so marked that a restart finds
// was cut short, and is removed (OpenStore). Commit clears the bit
// (sealInPlace). Against an unnamed file and its link this saves a block
// the link's directory walk and lock (a third of a 4 KiB block's kernel
// work on tmpfs), and the file is never whole-looking before it is whole:
// a kill -9 mid-write leaves a marked file. ok is false when the name is
// taken or the file cannot be made.
func writeInPlace(dirFD int, name, final string) (f blockFile, ok bool) {
	const flags = unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_CLOEXEC
	var (
		fd  int
		err error
	)
	if dirFD >= 0 && name != "" {
		fd, err = unix.Openat(dirFD, name, flags, 0o644|unix.S_ISVTX)
	} else {
		fd, err = unix.Open(final, flags, 0o644|unix.S_ISVTX)
	}
	if err != nil {
		return nil, false
	}
	return rawFile(fd), true
}

// sealInPlace marks a block written in place whole: its mode becomes a
// committed block's (0644, no sticky bit).
func sealInPlace(f blockFile) error {
	rf, ok := f.(rawFile)
	if !ok {
		return errors.ErrUnsupported
	}
	if err := unix.Fchmod(int(rf), 0o644); err != nil {
		return &os.PathError{Op: "fchmod", Path: fmt.Sprintf("/proc/self/fd/%d", int(rf)), Err: err}
	}
	return nil
}
