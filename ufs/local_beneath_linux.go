package ufs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

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
	fst := statusOfStatBare(name, st)
	if !fst.IsDir {
		fst.Fingerprint = fingerprint(fst.Size, fst.ModTime)
	}
	return fst
}

// statusOfStatBare is statusOfStat without the fingerprint.
func statusOfStatBare(name string, st *unix.Stat_t) FileStatus {
	fst := FileStatus{Name: name, IsDir: st.Mode&unix.S_IFMT == unix.S_IFDIR, ModTime: time.Unix(st.Mtim.Unix()), Mode: st.Mode & 0o777}
	if !fst.IsDir {
		fst.Size = st.Size
	}
	return fst
}

// lstatIn is the status of the entry name of the open directory dir: one
// fstatat of a single component, where DirEntry.Info resolves the whole
// absolute path again for every entry of a listing. A file's Fingerprint
// may be left empty for the caller (List builds a batch's together).
func lstatIn(dir *os.File, name string) (FileStatus, bool, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(int(dir.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return FileStatus{}, false, &fs.PathError{Op: "fstatat", Path: name, Err: err}
	}
	return statusOfStatBare(name, &st), st.Mode&unix.S_IFMT == unix.S_IFLNK, nil
}

func (b *beneath) close() {
	if b != nil {
		b.dir.Close()
	}
}

// oDirect opens a file for writes that bypass the page cache.
const oDirect = unix.O_DIRECT

// dirWriter is Create's writer on Linux: the target's directory is opened
// once (openat2, beneath the root) and the temporary file is made, renamed
// into place and the directory fsynced through that descriptor — single
// path components only, so nothing walks the path again, and no *os.File
// (its poller registration) for a file written in one go. A small-file
// copy pays each of those walks once per file (docs/profiles/smallfiles).
type dirWriter struct {
	l         *Local
	rel       string    // the target, for errors
	dir       int       // the target's directory
	batch     *batchDir // dir is the batch's: not closed, fsynced by the batch
	name, tmp string    // single components in dir
	f         int       // the temporary file
	opts      CreateOptions
	done      bool
}

// create makes the writer of rel (dir/name) under the root; with a batch,
// through the batch's descriptor of dir.
func (b *beneath) create(l *Local, rel, dir, name, tmp string, opts CreateOptions, mode fs.FileMode, batch *dirBatch) (Writer, error) {
	var (
		d   int
		bd  *batchDir
		err error
	)
	if batch != nil {
		bd, err = batch.dir(dir, opts.CreateParent)
		if bd != nil {
			d = bd.fd
		}
	} else {
		d, err = b.openDir(l, dir, opts.CreateParent)
	}
	if err != nil {
		return nil, err
	}
	w := &dirWriter{l: l, rel: rel, dir: d, batch: bd, name: name, tmp: tmp, opts: opts}
	if !opts.Overwrite {
		var st unix.Stat_t
		if err := unix.Fstatat(d, name, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil {
			w.releaseDir()
			return nil, fs.ErrExist
		}
	}
	// Read-write: the copy may be read back before it takes its name.
	w.f, err = openatRetry(d, tmp, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, uint32(mode.Perm()))
	if err != nil {
		w.releaseDir()
		return nil, &fs.PathError{Op: "openat", Path: path.Join(dir, tmp), Err: err}
	}
	return w, nil
}

// openDir opens the directory dir under the root, making it (and its
// parents) first when missing and asked to.
func (b *beneath) openDir(l *Local, dir string, mkdir bool) (int, error) {
	d, err := b.openFD(dir, os.O_RDONLY|unix.O_DIRECTORY, 0)
	if errors.Is(err, fs.ErrNotExist) && mkdir {
		// Parents are made only when missing (see Local.Create).
		if err = l.root.MkdirAll(dir, 0o755); err == nil {
			d, err = b.openFD(dir, os.O_RDONLY|unix.O_DIRECTORY, 0)
		}
	}
	return int(d), err
}

// releaseDir lets go of the writer's directory: closed, or left to its
// batch.
func (w *dirWriter) releaseDir() {
	if w.batch == nil {
		unix.Close(w.dir)
		return
	}
	w.batch.release()
	w.batch = nil
}

// dirBatch is Local's Batch: one descriptor per directory its files go
// to, each fsynced once at Close if a name was committed in it.
type dirBatch struct {
	l      *Local
	mu     sync.Mutex
	dirs   map[string]*batchDir
	closed bool
}

type batchDir struct {
	b     *dirBatch
	fd    int
	dirty atomic.Bool // a name was committed in it
	refs  int         // writers using fd (under b.mu)
}

// release is a writer letting go of d: its descriptor closes with the
// batch, or with its last writer when the batch closed before.
func (d *batchDir) release() {
	d.b.mu.Lock()
	defer d.b.mu.Unlock()
	d.refs--
	if d.b.closed && d.refs == 0 {
		if d.dirty.Load() {
			_ = fsyncRetry(d.fd)
		}
		unix.Close(d.fd)
	}
}

// dir is the batch's descriptor of dir, opened on first use.
func (b *dirBatch) dir(dir string, mkdir bool) (*batchDir, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, fmt.Errorf("create in %s: the batch is closed", b.l.URI(dir))
	}
	if d := b.dirs[dir]; d != nil {
		d.refs++
		return d, nil
	}
	fd, err := b.l.fast.openDir(b.l, dir, mkdir)
	if err != nil {
		return nil, err
	}
	d := &batchDir{b: b, fd: fd, refs: 1}
	b.dirs[dir] = d
	return d, nil
}

// Create implements Batch.
func (b *dirBatch) Create(_ context.Context, p string, opts CreateOptions) (Writer, error) {
	return b.l.create(p, opts, b)
}

// Close implements Batch: the directories' fsyncs (a failure only weakens
// durability, as syncDir's), then their descriptors.
func (b *dirBatch) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	for _, d := range b.dirs {
		if d.refs > 0 {
			continue // a writer still open: its release closes d
		}
		if d.dirty.Load() {
			_ = fsyncRetry(d.fd)
		}
		unix.Close(d.fd)
	}
	b.dirs = nil
	return nil
}

func openatRetry(dir int, name string, flags int, mode uint32) (int, error) {
	for {
		fd, err := unix.Openat(dir, name, flags, mode)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

func (w *dirWriter) Write(p []byte) (int, error) {
	done := 0
	for done < len(p) {
		n, err := unix.Write(w.f, p[done:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return done, &fs.PathError{Op: "write", Path: w.l.URI(w.rel), Err: err}
		}
		done += n
	}
	return done, nil
}

func (w *dirWriter) Commit() (FileStatus, error) {
	if w.done {
		return FileStatus{}, fmt.Errorf("commit %s: writer already closed", w.l.URI(w.rel))
	}
	w.done = true
	defer w.releaseDir()
	var err error
	if mt := w.opts.ModTime; !mt.IsZero() {
		// Before the fsync, so the time is as durable as the bytes.
		err = futimens(w.f, mt)
	}
	if err == nil {
		err = fsyncRetry(w.f)
	}
	// The status of the written file, before close: the rename changes
	// neither its size nor its mtime.
	var st unix.Stat_t
	if err == nil {
		err = unix.Fstat(w.f, &st)
	}
	if cerr := unix.Close(w.f); err == nil {
		err = cerr
	}
	if err == nil {
		err = w.rename()
	}
	if err != nil {
		_ = unix.Unlinkat(w.dir, w.tmp, 0)
		return FileStatus{}, w.l.wrap("commit", w.rel, err)
	}
	// The rename made durable (by the batch, once for its directory);
	// failure only weakens durability (syncDir).
	if w.batch != nil {
		w.batch.dirty.Store(true)
	} else {
		_ = fsyncRetry(w.dir)
	}
	return statusOfStat(w.name, &st), nil
}

// rename moves the temporary file onto its name: without replacing a file
// there when the options say so (atomically where the file system can).
func (w *dirWriter) rename() error {
	if w.opts.Overwrite {
		return unix.Renameat(w.dir, w.tmp, w.dir, w.name)
	}
	err := unix.Renameat2(w.dir, w.tmp, w.dir, w.name, unix.RENAME_NOREPLACE)
	if err == unix.EEXIST {
		return fs.ErrExist
	}
	if err != unix.EINVAL && err != unix.ENOSYS {
		return err
	}
	// No RENAME_NOREPLACE here: look, then rename (as Local.Create did).
	var st unix.Stat_t
	if unix.Fstatat(w.dir, w.name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
		return fs.ErrExist
	}
	return unix.Renameat(w.dir, w.tmp, w.dir, w.name)
}

func (w *dirWriter) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	unix.Close(w.f)
	err := unix.Unlinkat(w.dir, w.tmp, 0)
	w.releaseDir()
	if err != nil {
		return w.l.wrap("abort", w.rel, &fs.PathError{Op: "unlinkat", Path: w.tmp, Err: err})
	}
	return nil
}

func fsyncRetry(fd int) error {
	for {
		if err := unix.Fsync(fd); err != unix.EINTR {
			return err
		}
	}
}

// futimens sets a descriptor's access and modification times: utimensat
// with no path (unix.Futimes goes through /proc/self/fd/N, a path walk
// that cost small-file copies 7% of the block worker's CPU).
func futimens(fd int, t time.Time) error {
	ts := [2]unix.Timespec{unix.NsecToTimespec(t.UnixNano()), unix.NsecToTimespec(t.UnixNano())}
	for {
		_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
		switch e {
		case 0:
			return nil
		case unix.EINTR:
			continue
		}
		return &fs.PathError{Op: "utimensat", Path: "fd", Err: e}
	}
}

// CopyFrom implements FileCopier for a reader of a local file (any Local).
func (w *dirWriter) CopyFrom(r io.Reader, check bool, h hash.Hash) (int64, bool, error) {
	sr, ok := r.(*sectionReader)
	if !ok {
		return 0, false, nil
	}
	sec := &sr.sec
	ra, base, size := sec.Outer()
	src, ok := ra.(rawReader)
	if !ok {
		return 0, false, nil
	}
	pos, err := sec.Seek(0, io.SeekCurrent)
	if err != nil {
		return 0, false, nil
	}
	off := base + pos
	var start int64 // where the copy starts in the file written, for the check
	if check {
		if start, err = unix.Seek(w.f, 0, io.SeekCurrent); err != nil {
			return 0, false, nil
		}
	}
	// With a check, the range goes in pieces, each compared while both
	// its copies are still in the CPU's cache: the check then reads the
	// source from the cache, not from memory a second time.
	step := int64(1 << 30)
	if check {
		step = checkPiece
	}
	var n int64
	for left := size - pos; left > 0; {
		at := off
		c, err := unix.CopyFileRange(int(src), &off, w.f, nil, int(min(left, step)), 0)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil && n == 0 && (err == unix.EXDEV || err == unix.EINVAL || err == unix.ENOSYS || err == unix.EOPNOTSUPP || err == unix.EPERM):
			return 0, false, nil // this pair cannot: stream
		case err != nil:
			sec.Seek(pos+n, io.SeekStart)
			return n, true, &fs.PathError{Op: "copy_file_range", Path: w.l.URI(w.rel), Err: err}
		case c == 0 && n == 0:
			// Nothing at all: a file system whose files copy_file_range
			// cannot read (some report no bytes): stream it instead, which
			// also tells a file that really is short.
			return 0, false, nil
		case c == 0:
			left = 0 // the source ends early: the caller sees the short count
		}
		if check && c > 0 {
			if f := afterKernelCopy.Load(); f != nil {
				(*f)(w.f, start+n, int64(c))
			}
			if err := comparePiece(int(src), at, w.f, start+n, c, h); err != nil {
				sec.Seek(pos+n, io.SeekStart)
				return n, true, fmt.Errorf("checking %s against its source: %w", w.l.URI(w.rel), err)
			}
		}
		n += int64(c)
		left -= int64(c)
	}
	sec.Seek(pos+n, io.SeekStart)
	return n, true, nil
}

// afterKernelCopy, when a test sets it, sees each piece CopyFrom copied
// with a check (the file written, where the piece starts, its length)
// before the piece is checked.
var afterKernelCopy atomic.Pointer[func(fd int, at, n int64)]

// AfterKernelCopyForTest makes f see each piece a local writer copies in
// the kernel with a check (the file written, where the piece starts, its
// length) before CopyFrom checks it — a test corrupts the copy there —
// until the returned restore. For tests only.
func AfterKernelCopyForTest(f func(fd int, at, n int64)) (restore func()) {
	old := afterKernelCopy.Swap(&f)
	return func() { afterKernelCopy.Store(old) }
}

// checkPiece is how much of a range CopyFrom copies before it checks
// the copy: small enough for both copies of the piece to be in the CPU's
// cache still when they are read back.
const checkPiece = 256 << 10

// cmpBufs are comparePiece's read buffers.
var cmpBufs = sync.Pool{New: func() any { b := make([]byte, 2*checkPiece); return &b }}

// comparePiece reads n bytes of the file a from aoff and of b from boff
// and compares them, writing b's bytes to h (when not nil): a difference
// is ErrCopyDiffers, naming the byte of b.
func comparePiece(a int, aoff int64, b int, boff int64, n int, h hash.Hash) error {
	bp := cmpBufs.Get().(*[]byte)
	defer cmpBufs.Put(bp)
	x, y := (*bp)[:n], (*bp)[checkPiece:checkPiece+n]
	if err := preadFull(a, x, aoff); err != nil {
		return err
	}
	if err := preadFull(b, y, boff); err != nil {
		return err
	}
	if !bytes.Equal(x, y) {
		k := 0
		for x[k] == y[k] {
			k++
		}
		return fmt.Errorf("%w at byte %d", ErrCopyDiffers, boff+int64(k))
	}
	if h != nil {
		h.Write(y)
	}
	return nil
}

// preadFull reads len(p) bytes of fd at off.
func preadFull(fd int, p []byte, off int64) error {
	for len(p) > 0 {
		c, err := unix.Pread(fd, p, off)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return &fs.PathError{Op: "pread", Path: "fd", Err: err}
		case c == 0:
			return io.ErrUnexpectedEOF
		}
		p = p[c:]
		off += int64(c)
	}
	return nil
}

// HashWritten implements WrittenHasher.
func (w *dirWriter) HashWritten(h io.Writer) (int64, error) {
	if w.done {
		return 0, fmt.Errorf("read back %s: writer already closed", w.l.URI(w.rel))
	}
	var st unix.Stat_t
	if err := unix.Fstat(w.f, &st); err != nil {
		return 0, &fs.PathError{Op: "fstat", Path: w.l.URI(w.rel), Err: err}
	}
	if err := hashFD(w.f, 0, st.Size, h); err != nil {
		return 0, fmt.Errorf("read back %s: %w", w.l.URI(w.rel), err)
	}
	return st.Size, nil
}

// mapAtLeast: sections this long are hashed from a memory mapping of the
// file (no copy into the process); shorter ones are read (a mapping's
// set-up costs more than copying a few pages).
const mapAtLeast = 1 << 20

// mapWindow is how much of a file one mapping covers.
const mapWindow = 64 << 20

// readBufs are hashFD's read buffers.
var readBufs = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// hashFD writes n bytes of the file fd from off to h.
func hashFD(fd int, off, n int64, h io.Writer) error {
	if n < mapAtLeast {
		bp := readBufs.Get().(*[]byte)
		defer readBufs.Put(bp)
		for done := int64(0); done < n; {
			c := min(n-done, int64(len(*bp)))
			if err := preadFull(fd, (*bp)[:c], off+done); err != nil {
				return err
			}
			h.Write((*bp)[:c])
			done += c
		}
		return nil
	}
	for done := int64(0); done < n; {
		c := min(n-done, mapWindow)
		if err := withMapped(fd, off+done, c, func(b []byte) error { h.Write(b); return nil }); err != nil {
			return err
		}
		done += c
	}
	return nil
}

// withMapped calls fn with n bytes of fd from off, mapped (read-only). A
// file cut short meanwhile (someone truncated it) faults on the pages past
// its end: that is an error here, not a crash of the process.
func withMapped(fd int, off, n int64, fn func([]byte) error) (err error) {
	page := int64(os.Getpagesize())
	start := off &^ (page - 1)
	skip := off - start
	data, err := unix.Mmap(fd, start, int(skip+n), unix.PROT_READ, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return &fs.PathError{Op: "mmap", Path: "fd", Err: err}
	}
	defer unix.Munmap(data)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("the file changed while it was read (%v)", r)
		}
	}()
	return fn(data[skip:])
}
