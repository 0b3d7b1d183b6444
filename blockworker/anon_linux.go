package blockworker

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// openAnon opens an unnamed file in dir (O_TMPFILE): a block being written
// has no directory entry until linkAnon names it, so a commit is one link
// instead of a create and a rename across two directories, and a crash
// leaves nothing behind to clean up. The descriptor stays bare (rawFile):
// an *os.File would try the poller and flip O_NONBLOCK on and off — five
// syscalls a block that small-file loads pay 20,000 times. ok is false when
// the file system or kernel cannot.
func openAnon(dir string) (f blockFile, path string, ok bool) {
	fd, err := unix.Open(dir, unix.O_WRONLY|unix.O_TMPFILE|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, "", false
	}
	// Readers of a fill in progress open the file by this name.
	return rawFile(fd), fmt.Sprintf("/proc/self/fd/%d", fd), true
}

// linkAnon names the unnamed file open at path (openAnon's) final; it fails
// with an error matching os.ErrExist when final is taken.
func linkAnon(path, final string) error {
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
