// Package ufs is Alluvium's view of under storage: one small interface,
// FileSystem, and its implementations (a local directory, S3). Paths handed
// to a FileSystem are relative to its root URI, so a mount can never reach
// outside the directory or prefix it was mounted from.
package ufs

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/url"
	"strings"
	"time"
)

// Errors every implementation returns (wrapped, with the path) so callers can
// use errors.Is.
var (
	ErrNotFound = errors.New("no such file or directory")
	ErrExist    = errors.New("already exists")
	ErrNotEmpty = errors.New("directory not empty")
	ErrNotDir   = errors.New("not a directory")
	ErrIsDir    = errors.New("is a directory")
	ErrEscape   = errors.New("path escapes the mount root")
)

// FileStatus describes one UFS entry.
type FileStatus struct {
	Name    string // last path element
	IsDir   bool
	Size    int64
	ModTime time.Time
	Mode    uint32
	// Fingerprint changes whenever the content may have changed (size and
	// mtime locally, ETag and size on S3).
	Fingerprint string
}

// CreateOptions tune Create.
type CreateOptions struct {
	Overwrite    bool   // replace an existing file
	CreateParent bool   // make missing parent directories
	Mode         uint32 // 0: 0644
	// ModTime is the new file's modification time (a copy keeps its
	// source's); zero: when it is written. A local file gets it; on S3,
	// which sets its own, it is kept as the object's "mtime" metadata (as
	// rclone does).
	ModTime time.Time
}

// Writer receives a new file's bytes. Nothing is visible at the path until
// Commit; Abort (or a failed Commit) leaves nothing behind.
type Writer interface {
	io.Writer
	Commit() (FileStatus, error)
	Abort() error
}

// FileCopier is implemented by Writers that can take the bytes of a
// reader Open returned on the same kind of file system without passing
// them through the process (a local file: copy_file_range, which on most
// file systems copies once in the kernel, or shares extents).
type FileCopier interface {
	// CopyFrom appends what is left of r. With check, it then reads the
	// copy back and compares it with the source byte for byte (both read
	// where they lie: mapped, not copied), writing the bytes compared to
	// h when h is not nil (one pass checks and hashes); a difference is
	// an error wrapping ErrCopyDiffers. ok is false when it cannot take r
	// (another kind of reader, or the kernel refuses the pair): nothing
	// was copied or hashed, and the caller streams the bytes instead.
	CopyFrom(r io.Reader, check bool, h hash.Hash) (n int64, ok bool, err error)
}

// ErrCopyDiffers: a copy read back is not its source.
var ErrCopyDiffers = errors.New("the copy differs from its source")

// Batcher is implemented by file systems that create many files more
// cheaply together than one by one.
type Batcher interface {
	NewBatch() Batch
}

// Batch creates files as FileSystem.Create does, except that a file's
// Commit may leave the durability of its name (the directory's fsync) to
// Close: a caller acknowledges the files of a batch only once Close has
// returned. Its Create may be called from several goroutines at once.
type Batch interface {
	Create(ctx context.Context, path string, opts CreateOptions) (Writer, error)
	// Close makes every name committed through the batch durable; the
	// batch creates nothing more.
	Close() error
}

// NewBatch returns fs's batch, or one that creates each file on its own.
func NewBatch(fs FileSystem) Batch {
	if b, ok := fs.(Batcher); ok {
		return b.NewBatch()
	}
	return soloBatch{fs}
}

// soloBatch creates each file on its own (Commit is durable by itself).
type soloBatch struct{ fs FileSystem }

func (b soloBatch) Create(ctx context.Context, p string, opts CreateOptions) (Writer, error) {
	return b.fs.Create(ctx, p, opts)
}

func (soloBatch) Close() error { return nil }

// WrittenHasher is implemented by Writers that can read back what they
// wrote before Commit gives it its name, so a copy that reads back wrong
// never appears under that name.
type WrittenHasher interface {
	// HashWritten writes the file's bytes, read back from the file, to w
	// (a hash, or a comparison with the bytes written).
	HashWritten(w io.Writer) (n int64, err error)
}

// Statter is implemented by the readers Open returns when they know the
// status of the file they read, as it was when opened (local files): a
// caller checking a fingerprint then need not stat the path again.
type Statter interface {
	Status() FileStatus
}

// FileSystem is one under storage rooted at a URI. Paths are "/"-separated
// and relative to the root; "" and "/" are the root itself.
type FileSystem interface {
	// URI returns the full URI of path, e.g. file:///data/a/b.
	URI(path string) string
	Stat(ctx context.Context, path string) (FileStatus, error)
	// List calls fn for each direct child of dir. It streams: a directory of
	// millions of entries is never held whole. fn returning an error stops
	// the listing with that error.
	List(ctx context.Context, dir string, fn func(FileStatus) error) error
	// Open reads length bytes from offset (length < 0: to the end).
	Open(ctx context.Context, path string, offset, length int64) (io.ReadCloser, error)
	Create(ctx context.Context, path string, opts CreateOptions) (Writer, error)
	Mkdirs(ctx context.Context, path string) error
	// Delete removes a file or an empty directory.
	Delete(ctx context.Context, path string) error
	// DeleteAll removes path and everything below it; a missing path is fine.
	DeleteAll(ctx context.Context, path string) error
	// Rename moves src to dst; dst must not exist.
	Rename(ctx context.Context, src, dst string) error
	Close() error
}

// Open returns the FileSystem for uri (file:///dir or s3://bucket/prefix).
func Open(ctx context.Context, uri string, options map[string]string) (FileSystem, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("ufs uri %q: %w", uri, err)
	}
	switch u.Scheme {
	case "file", "":
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("ufs uri %q: file URIs take no host (file:///abs/dir)", uri)
		}
		return NewLocal(u.Path)
	case "s3":
		return NewS3(ctx, uri, options)
	default:
		return nil, fmt.Errorf("ufs uri %q: unknown scheme %q (want file or s3)", uri, u.Scheme)
	}
}

// JoinURI appends a relative path to a root URI.
func JoinURI(root, rel string) string {
	rel = strings.Trim(rel, "/")
	if rel == "" {
		return root
	}
	return strings.TrimRight(root, "/") + "/" + rel
}

// AppendJoinURI appends JoinURI(root, rel) to b: for callers that build
// many UFS paths in one buffer (a listing's page).
func AppendJoinURI(b []byte, root, rel string) []byte {
	rel = strings.Trim(rel, "/")
	if rel == "" {
		return append(b, root...)
	}
	b = append(b, strings.TrimRight(root, "/")...)
	b = append(b, '/')
	return append(b, rel...)
}

// tempPrefix names in-flight files so listings can hide them.
const tempPrefix = ".alluvium-tmp-"

// IsTemp reports whether name is an in-flight file of a Writer.
func IsTemp(name string) bool { return strings.HasPrefix(name, tempPrefix) }

// TempName is the name of an in-flight file for purpose (e.g.
// "overwrite-42"): hidden from listings, like a Writer's own.
func TempName(purpose string) string { return tempPrefix + purpose }

// RegionWriter is implemented by file systems that write a region of a
// file in place (a local directory): each part of a multipart upload goes
// straight to its offset in the file that becomes the object.
type RegionWriter interface {
	// WriteRegion returns a Writer of path from offset: the file is made
	// (and its parents) when missing and never truncated; Commit fsyncs
	// it and returns its status; Abort leaves what was written.
	WriteRegion(ctx context.Context, path string, offset int64, mode uint32) (Writer, error)
	// Truncate cuts the file path to size bytes and fsyncs it.
	Truncate(ctx context.Context, path string, size int64) error
}

// Replacer is implemented by file systems that can move a file onto
// another in one step: a reader of dst sees the old bytes or the new ones,
// never neither.
type Replacer interface {
	// Replace moves the file src onto dst, replacing a file there.
	Replace(ctx context.Context, src, dst string) error
}

// Replace moves the file src onto dst, replacing a file there: in one step
// where fs is a Replacer, else by deleting dst and renaming src.
func Replace(ctx context.Context, fs FileSystem, src, dst string) error {
	if r, ok := fs.(Replacer); ok {
		return r.Replace(ctx, src, dst)
	}
	if err := fs.Delete(ctx, dst); err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	return fs.Rename(ctx, src, dst)
}
