package ufs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/alluvium/alluvium/internal/strslab"
)

// Local is a FileSystem over a local directory. It resolves every path
// through an os.Root, so neither ".." nor a symlink can leave the directory.
type Local struct {
	dir  string
	root *os.Root
	fast *beneath // openat2 opens; nil: every open goes through root
}

// NewLocal opens the directory dir (created if missing) as a UFS.
func NewLocal(dir string) (*Local, error) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("local ufs %q: need an absolute directory", dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("local ufs %s: %w", dir, err)
	}
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("local ufs %s: %w", dir, err)
	}
	return &Local{dir: dir, root: r, fast: openBeneath(dir)}, nil
}

// openFile opens rel under the root, never outside it.
func (l *Local) openFile(rel string, flag int, perm fs.FileMode) (*os.File, error) {
	if l.fast != nil {
		return l.fast.open(rel, flag, perm)
	}
	return l.root.OpenFile(rel, flag, perm)
}

// rel turns a UFS path into a name for os.Root; "." is the root.
func (l *Local) rel(p string) (string, error) {
	if strings.ContainsRune(p, 0) {
		return "", fmt.Errorf("local ufs %s: %q: %w", l.dir, p, ErrEscape)
	}
	// The usual path is relative and clean already, with no leading "..":
	// it is its own answer, without the "/"+p string below (a small-file
	// load asks 20,000 times).
	if p != "" && p[0] != '/' && p != "." && p != ".." && !strings.HasPrefix(p, "../") && path.Clean(p) == p {
		return p, nil
	}
	c := path.Clean("/" + p)
	if c == "/" {
		return ".", nil
	}
	return c[1:], nil
}

func (l *Local) wrap(op, p string, err error) error {
	if err == nil {
		return nil
	}
	full := filepath.Join(l.dir, filepath.FromSlash(strings.TrimPrefix(p, "/")))
	var kind error
	switch {
	case errors.Is(err, fs.ErrNotExist):
		kind = ErrNotFound
	case errors.Is(err, syscall.ENOTEMPTY): // before ErrExist: ENOTEMPTY.Is(fs.ErrExist) holds
		kind = ErrNotEmpty
	case errors.Is(err, fs.ErrExist):
		kind = ErrExist
	case errors.Is(err, syscall.ENOTDIR):
		kind = ErrNotDir
	case errors.Is(err, syscall.EISDIR):
		kind = ErrIsDir
	case strings.Contains(err.Error(), "path escapes from parent"):
		kind = ErrEscape
	}
	if kind != nil {
		return fmt.Errorf("%s %s: %w (%v)", op, full, kind, err)
	}
	return fmt.Errorf("%s %s: %w", op, full, err)
}

// URI implements FileSystem.
func (l *Local) URI(p string) string { return JoinURI("file://"+l.dir, p) }

// HostPath is the host path of UFS path p, for watching it (inotify):
// reads and writes go through the root, never through this path.
func (l *Local) HostPath(p string) (string, error) {
	r, err := l.rel(p)
	if err != nil {
		return "", err
	}
	return filepath.Join(l.dir, filepath.FromSlash(r)), nil
}

func statusOf(name string, fi fs.FileInfo) FileStatus {
	st := FileStatus{Name: name, IsDir: fi.IsDir(), ModTime: fi.ModTime(), Mode: uint32(fi.Mode().Perm())}
	if !st.IsDir {
		st.Size = fi.Size()
		st.Fingerprint = fingerprint(st.Size, fi.ModTime())
	}
	return st
}

// fingerprint identifies a version of a local file: size and mtime.
func fingerprint(size int64, mtime time.Time) string {
	return LocalFingerprint(size, mtime.UnixNano())
}

// LocalFingerprint is a local file's fingerprint, "<size>:<mtime ns>":
// the FS master keeps only the mtime and rebuilds it for each listing.
func LocalFingerprint(size, mtimeNs int64) string {
	// One allocation (the string), not three: a listing makes one per file.
	var b [MaxLocalFingerprint]byte
	return string(AppendLocalFingerprint(b[:0], size, mtimeNs))
}

// AppendLocalFingerprint appends LocalFingerprint(size, mtimeNs) to b:
// for callers that build many strings in one buffer (a listing's page).
func AppendLocalFingerprint(b []byte, size, mtimeNs int64) []byte {
	b = strconv.AppendInt(b, size, 10)
	b = append(b, ':')
	return strconv.AppendInt(b, mtimeNs, 10)
}

// MaxLocalFingerprint is the longest local fingerprint: two int64s (20
// bytes each at most, sign included) and the colon.
const MaxLocalFingerprint = 2*20 + 1

// Stat implements FileSystem.
func (l *Local) Stat(_ context.Context, p string) (FileStatus, error) {
	r, err := l.rel(p)
	if err != nil {
		return FileStatus{}, err
	}
	fi, err := l.root.Stat(r)
	if err != nil {
		return FileStatus{}, l.wrap("stat", p, err)
	}
	return statusOf(path.Base("/"+r), fi), nil
}

// List implements FileSystem; it reads the directory in batches.
func (l *Local) List(ctx context.Context, dir string, fn func(FileStatus) error) error {
	r, err := l.rel(dir)
	if err != nil {
		return err
	}
	// Through openat2 when it can: a directory opened in an os.Root has
	// ReadDir lstat every entry (Go cannot stat lazily there), and the
	// loop below stats each once anyway.
	f, err := l.openFile(r, os.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		return l.wrap("list", dir, err)
	}
	defer f.Close()
	sp := entryStats.Get().(*[]entryStat)
	stats, used := (*sp)[:0], 0
	// A batch's fingerprints are built in shared chunks: one string a file
	// was one allocation a file learned, besides its name (the FS master
	// keeps a local fingerprint as a number and drops the string).
	fps := strslab.Slab{Chunk: 8 << 10}
	defer func() {
		clear(stats[:used]) // keep no names or errors alive
		*sp = stats[:0]
		entryStats.Put(sp)
	}()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		// Names only: the loop stats each entry itself (ReadDir would
		// build a DirEntry per name for nothing).
		names, err := f.Readdirnames(1024)
		stats = statEntries(f, names, stats[:0])
		used = max(used, len(stats))
		for i, name := range names {
			if IsTemp(name) {
				continue
			}
			st, link, ierr := stats[i].st, stats[i].link, stats[i].err
			if ierr != nil {
				if errors.Is(ierr, fs.ErrNotExist) {
					continue // removed while listing
				}
				return l.wrap("list", dir, ierr)
			}
			if link {
				// Follow the link inside the root only; one that leaves it is
				// skipped, never reported.
				fi, serr := l.root.Stat(path.Join(r, name))
				if serr != nil {
					continue
				}
				st = statusOf(name, fi)
			}
			if !st.IsDir && st.Fingerprint == "" {
				st.Fingerprint = fps.End(AppendLocalFingerprint(fps.Start(MaxLocalFingerprint), st.Size, st.ModTime.UnixNano()))
			}
			if ferr := fn(st); ferr != nil {
				return ferr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return l.wrap("list", dir, err)
		}
	}
}

// entryStats recycles List's batches of stats (one grown per directory
// was a good part of what listing a tree allocated).
var entryStats = sync.Pool{New: func() any { return new([]entryStat) }}

// entryStat is the lstat of one entry of a directory being listed.
type entryStat struct {
	st   FileStatus
	link bool
	err  error
}

// parallelStatMin is the batch from which statEntries spreads the stats
// over the cores: below it the goroutines cost more than they save.
const parallelStatMin = 256

// Cold inodes. A stat whose inode is cached costs a microsecond or two of
// CPU, and more goroutines than cores only add switches; one whose inode
// must be read first (a tree nobody touched lately, a file system mounted
// again) waits on the disk, and then many stats in flight are what makes
// it fast. statEntries times a probe of a batch's first stats and widens
// when they waited.
const (
	statProbe     = 32                          // stats timed before choosing a width
	coldStatNanos = int64(8 * time.Microsecond) // a probe stat slower than this on average waited on the disk
	coldStatWidth = 32                          // stats in flight on a cold batch
)

// statEntries lstats names in the open directory dir into out (reused),
// in order. Stats are most of a listing's time (find, which stats
// nothing, lists several times faster), so a big batch is split over the
// cores, or over many more goroutines when its inodes are cold.
func statEntries(dir *os.File, names []string, out []entryStat) []entryStat {
	out = slices.Grow(out[:0], len(names))[:len(names)]
	stat := func(from, to int) {
		for i := from; i < to; i++ {
			if IsTemp(names[i]) {
				continue
			}
			st, link, err := lstatIn(dir, names[i])
			out[i] = entryStat{st: st, link: link, err: err}
		}
	}
	if len(names) < parallelStatMin {
		stat(0, len(names))
		return out
	}
	t0 := time.Now()
	stat(0, statProbe)
	cold := time.Since(t0).Nanoseconds() > coldStatNanos*statProbe
	rest := len(names) - statProbe
	statSpread(rest, statWidth(rest, cold), func(from, to int) { stat(statProbe+from, statProbe+to) })
	return out
}

// statWidth is how many goroutines stat n names: the cores (at most 4)
// when the inodes are cached, up to coldStatWidth when they are read from
// the disk.
func statWidth(n int, cold bool) int {
	if cold {
		return max(1, min(coldStatWidth, n/8))
	}
	return max(1, min(runtime.GOMAXPROCS(0), 4, n/(parallelStatMin/2)))
}

// statSpread runs stat over [0, n) split into w contiguous ranges, the
// first on the calling goroutine.
func statSpread(n, w int, stat func(from, to int)) {
	if w <= 1 {
		stat(0, n)
		return
	}
	var wg sync.WaitGroup
	per := (n + w - 1) / w
	for from := per; from < n; from += per {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stat(from, min(from+per, n))
		}()
	}
	stat(0, min(per, n))
	wg.Wait()
}

// sectionReader is what Local.Open returns: the section read, the file
// to close, its status. One allocation a file opened (a small-file load
// opens 20,000): the section is held by value, and only Read is exposed.
type sectionReader struct {
	sec io.SectionReader
	f   io.Closer
	st  FileStatus
}

func (s *sectionReader) Read(p []byte) (int, error) { return s.sec.Read(p) }

// readerAtCloser is an open file Open reads a section of.
type readerAtCloser interface {
	io.ReaderAt
	io.Closer
}

// Status implements Statter: the file as it was when opened.
func (s *sectionReader) Status() FileStatus { return s.st }

func (s *sectionReader) Close() error { return s.f.Close() }

// Open implements FileSystem.
func (l *Local) Open(_ context.Context, p string, offset, length int64) (io.ReadCloser, error) {
	r, err := l.rel(p)
	if err != nil {
		return nil, err
	}
	var (
		f  readerAtCloser
		st FileStatus
	)
	if l.fast != nil {
		f, st, err = l.fast.openRead(r, path.Base(r))
	} else {
		f, st, err = l.rootOpenRead(r)
	}
	if err != nil {
		return nil, l.wrap("open", p, err)
	}
	if st.IsDir {
		f.Close()
		return nil, l.wrap("open", p, syscall.EISDIR)
	}
	if offset < 0 || offset > st.Size {
		f.Close()
		return nil, fmt.Errorf("open %s: offset %d outside the file (size %d)", l.URI(p), offset, st.Size)
	}
	if length < 0 || offset+length > st.Size {
		length = st.Size - offset
	}
	return &sectionReader{sec: *io.NewSectionReader(f, offset, length), f: f, st: st}, nil
}

// rootOpenRead opens rel for reading through os.Root, with its status.
func (l *Local) rootOpenRead(rel string) (readerAtCloser, FileStatus, error) {
	f, err := l.root.Open(rel)
	if err != nil {
		return nil, FileStatus{}, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, FileStatus{}, err
	}
	return f, statusOf(path.Base(rel), fi), nil
}

type localWriter struct {
	l        *Local
	rel, tmp string
	f        *os.File
	opts     CreateOptions
	done     bool
}

// Create implements FileSystem: bytes go to a temporary file beside the
// target, which Commit fsyncs and renames into place.
func (l *Local) Create(_ context.Context, p string, opts CreateOptions) (Writer, error) {
	return l.create(p, opts, nil)
}

// NewBatch implements Batcher: the files of a batch share one descriptor
// of each directory they go to, and each directory is fsynced once, when
// the batch closes.
func (l *Local) NewBatch() Batch {
	if l.fast == nil {
		return soloBatch{l}
	}
	return &dirBatch{l: l, dirs: map[string]*batchDir{}}
}

func (l *Local) create(p string, opts CreateOptions, batch *dirBatch) (Writer, error) {
	r, err := l.rel(p)
	if err != nil {
		return nil, err
	}
	if r == "." {
		return nil, l.wrap("create", p, syscall.EISDIR)
	}
	dir, name := path.Split(r)
	dir = strings.TrimSuffix(dir, "/")
	if dir == "" {
		dir = "."
	}
	if !opts.Overwrite && l.fast == nil {
		if _, err := l.root.Lstat(r); err == nil {
			return nil, l.wrap("create", p, fs.ErrExist)
		}
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	tmpName := tempPrefix + name + "-" + hex.EncodeToString(rnd[:])
	mode := fs.FileMode(opts.Mode)
	if mode == 0 {
		mode = 0o644
	}
	if l.fast != nil {
		w, err := l.fast.create(l, r, dir, name, tmpName, opts, mode, batch)
		if err != nil {
			return nil, l.wrap("create", p, err)
		}
		return w, nil
	}
	tmp := path.Join(dir, tmpName)
	f, err := l.openFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if errors.Is(err, fs.ErrNotExist) && opts.CreateParent {
		// Parents are made only when missing: a MkdirAll per file walks
		// every component again, which small-file copies pay 10,000 times.
		if err = l.root.MkdirAll(dir, 0o755); err == nil {
			f, err = l.openFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
		}
	}
	if err != nil {
		return nil, l.wrap("create", p, err)
	}
	return &localWriter{l: l, rel: r, tmp: tmp, f: f, opts: opts}, nil
}

func (w *localWriter) Write(b []byte) (int, error) { return w.f.Write(b) }

func (w *localWriter) Commit() (FileStatus, error) {
	if w.done {
		return FileStatus{}, fmt.Errorf("commit %s: writer already closed", w.l.URI(w.rel))
	}
	w.done = true
	var err error
	if mt := w.opts.ModTime; !mt.IsZero() {
		// Before the fsync, so the time is as durable as the bytes.
		tv := syscall.NsecToTimeval(mt.UnixNano())
		err = syscall.Futimes(int(w.f.Fd()), []syscall.Timeval{tv, tv})
	}
	if err == nil {
		err = w.f.Sync()
	}
	var fi fs.FileInfo
	if err == nil {
		// The status of the written file, before close: the rename below
		// changes neither its size nor its mtime, and a second path walk
		// costs more than the fstat.
		fi, err = w.f.Stat()
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if err == nil && !w.opts.Overwrite {
		if _, serr := w.l.root.Lstat(w.rel); serr == nil {
			err = fs.ErrExist
		}
	}
	if err == nil {
		err = w.l.root.Rename(w.tmp, w.rel)
	}
	if err != nil {
		_ = w.l.root.Remove(w.tmp)
		return FileStatus{}, w.l.wrap("commit", w.rel, err)
	}
	syncDir(w.l.dir, path.Dir(w.rel))
	return statusOf(path.Base(w.rel), fi), nil
}

func (w *localWriter) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	w.f.Close()
	return w.l.wrap("abort", w.rel, w.l.root.Remove(w.tmp))
}

// syncDir makes a rename durable. Failure only weakens durability, so it is
// not reported.
func syncDir(root, rel string) {
	if d, err := os.Open(filepath.Join(root, filepath.FromSlash(rel))); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// regionWriter writes a region of a file in place (RegionWriter).
//
// The whole pages of the region go to the disk with O_DIRECT (where the
// file system takes it), the way MinIO writes a part: a multipart upload
// writes a big file once, from many streams at a time, and copying it
// through the page cache cost more CPU than all the rest of the upload
// (docs/profiles/s3-upload). The bytes of a page the region shares with
// another (its ends, when not page-aligned) go through the page cache:
// a direct write covers only pages this writer alone fills, so the two
// paths never write one page. Commit fsyncs the file either way.
type regionWriter struct {
	l    *Local
	rel  string
	f    *os.File
	off  int64
	done bool
	// direct is f opened again with O_DIRECT (nil: the file system
	// refuses it, or it failed once); bounce is its page-aligned copy
	// buffer for bytes that do not sit page-aligned in memory.
	direct *os.File
	bounce []byte
}

// directAlign is the alignment of O_DIRECT offsets, lengths and memory:
// a page, which satisfies every block device's logical block size.
const directAlign = 4096

// directBounce is the size of a region writer's aligned copy buffer.
const directBounce = 1 << 20

// WriteRegion implements RegionWriter.
func (l *Local) WriteRegion(_ context.Context, p string, offset int64, mode uint32) (Writer, error) {
	r, err := l.rel(p)
	if err != nil {
		return nil, err
	}
	if r == "." {
		return nil, l.wrap("write region", p, syscall.EISDIR)
	}
	if offset < 0 {
		return nil, fmt.Errorf("write region %s: negative offset %d", l.URI(r), offset)
	}
	m := fs.FileMode(mode)
	if m == 0 {
		m = 0o644
	}
	f, err := l.openFile(r, os.O_WRONLY|os.O_CREATE, m)
	if errors.Is(err, fs.ErrNotExist) {
		if err = l.root.MkdirAll(path.Dir(r), 0o755); err == nil {
			f, err = l.openFile(r, os.O_WRONLY|os.O_CREATE, m)
		}
	}
	if err != nil {
		return nil, l.wrap("write region", p, err)
	}
	w := &regionWriter{l: l, rel: r, f: f, off: offset}
	if oDirect != 0 {
		// tmpfs and some others refuse O_DIRECT (EINVAL): buffered then.
		if d, err := l.openFile(r, os.O_WRONLY|oDirect, 0); err == nil {
			w.direct = d
		}
	}
	return w, nil
}

func (w *regionWriter) Write(b []byte) (int, error) {
	total := 0
	for len(b) > 0 {
		var n int
		var err error
		if k := w.directSpan(len(b)); k > 0 {
			n, err = w.writeDirect(b[:k])
			if errors.Is(err, syscall.EINVAL) && n == 0 {
				// The file system takes O_DIRECT at open but not these
				// writes (an alignment larger than a page): buffered.
				w.dropDirect()
				continue
			}
		} else {
			k := len(b)
			if w.direct != nil {
				k = min(k, directAlign-int(w.off%directAlign))
			}
			n, err = w.f.WriteAt(b[:k], w.off)
		}
		w.off += int64(n)
		total += n
		b = b[n:]
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// directSpan is how many of the next n bytes go out with O_DIRECT: the
// whole pages from the offset, which must be page-aligned (0: none).
func (w *regionWriter) directSpan(n int) int {
	if w.direct == nil || w.off%directAlign != 0 {
		return 0
	}
	return n &^ (directAlign - 1)
}

// writeDirect writes b (whole pages at an aligned offset) with O_DIRECT,
// through the bounce buffer when b is not page-aligned in memory.
func (w *regionWriter) writeDirect(b []byte) (int, error) {
	if uintptr(unsafe.Pointer(unsafe.SliceData(b)))%directAlign == 0 {
		return w.direct.WriteAt(b, w.off)
	}
	if w.bounce == nil {
		raw := make([]byte, directBounce+directAlign)
		skip := (directAlign - int(uintptr(unsafe.Pointer(unsafe.SliceData(raw)))%directAlign)) % directAlign
		w.bounce = raw[skip : skip+directBounce]
	}
	k := copy(w.bounce, b)
	return w.direct.WriteAt(w.bounce[:k], w.off)
}

func (w *regionWriter) dropDirect() {
	if w.direct != nil {
		w.direct.Close()
		w.direct, w.bounce = nil, nil
	}
}

func (w *regionWriter) Commit() (FileStatus, error) {
	if w.done {
		return FileStatus{}, fmt.Errorf("commit %s: writer already closed", w.l.URI(w.rel))
	}
	w.done = true
	w.dropDirect()
	// One fsync covers both descriptors' writes: the direct ones have
	// reached the device, this makes them (and the file's size and
	// extents) durable.
	err := w.f.Sync()
	var fi fs.FileInfo
	if err == nil {
		fi, err = w.f.Stat()
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return FileStatus{}, w.l.wrap("commit", w.rel, err)
	}
	return statusOf(path.Base(w.rel), fi), nil
}

func (w *regionWriter) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	w.dropDirect()
	return w.f.Close()
}

// Truncate implements RegionWriter.
func (l *Local) Truncate(_ context.Context, p string, size int64) error {
	r, err := l.rel(p)
	if err != nil {
		return err
	}
	f, err := l.openFile(r, os.O_WRONLY, 0)
	if err != nil {
		return l.wrap("truncate", p, err)
	}
	err = f.Truncate(size)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return l.wrap("truncate", p, err)
}

// Mkdirs implements FileSystem.
func (l *Local) Mkdirs(_ context.Context, p string) error {
	r, err := l.rel(p)
	if err != nil {
		return err
	}
	return l.wrap("mkdir", p, l.root.MkdirAll(r, 0o755))
}

// Delete implements FileSystem.
func (l *Local) Delete(_ context.Context, p string) error {
	r, err := l.rel(p)
	if err != nil {
		return err
	}
	if r == "." {
		return fmt.Errorf("delete %s: refusing to delete the mount root", l.dir)
	}
	return l.wrap("delete", p, l.root.Remove(r))
}

// DeleteAll implements FileSystem.
func (l *Local) DeleteAll(_ context.Context, p string) error {
	r, err := l.rel(p)
	if err != nil {
		return err
	}
	if r == "." {
		return fmt.Errorf("delete %s: refusing to delete the mount root", l.dir)
	}
	return l.wrap("delete", p, l.root.RemoveAll(r))
}

// Rename implements FileSystem.
func (l *Local) Rename(_ context.Context, src, dst string) error {
	rs, rd, err := l.rel2(src, dst)
	if err != nil {
		return err
	}
	if _, err := l.root.Lstat(rd); err == nil {
		return l.wrap("rename", dst, fs.ErrExist)
	}
	if err := l.root.Rename(rs, rd); err != nil {
		return l.wrap("rename", src, err)
	}
	syncDir(l.dir, path.Dir(rd))
	return nil
}

// rel2 checks the two paths of a rename.
func (l *Local) rel2(src, dst string) (string, string, error) {
	rs, err := l.rel(src)
	if err != nil {
		return "", "", err
	}
	rd, err := l.rel(dst)
	return rs, rd, err
}

// Replace implements Replacer: rename(2) swaps the file in atomically.
func (l *Local) Replace(_ context.Context, src, dst string) error {
	rs, rd, err := l.rel2(src, dst)
	if err != nil {
		return err
	}
	if fi, err := l.root.Lstat(rd); err == nil && fi.IsDir() {
		return l.wrap("replace", dst, syscall.EISDIR)
	}
	if err := l.root.Rename(rs, rd); err != nil {
		return l.wrap("replace", src, err)
	}
	syncDir(l.dir, path.Dir(rd))
	return nil
}

// Close implements FileSystem.
func (l *Local) Close() error {
	l.fast.close()
	return l.root.Close()
}
