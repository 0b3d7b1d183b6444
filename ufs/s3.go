package ufs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3 option keys, read from the mount options (ufs.Open's options map) with
// the AWS_* environment variables as fallbacks.
const (
	// S3Endpoint is host:port or a URL (http://host:port picks secure=false).
	// Env: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL. Default s3.amazonaws.com.
	S3Endpoint = "s3.endpoint"
	// S3AccessKey and S3SecretKey are the credentials.
	// Env: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN).
	S3AccessKey = "s3.access-key"
	S3SecretKey = "s3.secret-key"
	// S3Region is the bucket's region. Env: AWS_REGION, AWS_DEFAULT_REGION.
	S3Region = "s3.region"
	// S3Secure chooses https ("true", the default) or http ("false").
	S3Secure = "s3.secure"
	// S3PathStyle forces path-style bucket addressing ("true"), as MinIO
	// and most self-hosted servers want. Default: automatic.
	S3PathStyle = "s3.path-style"
	// S3ConnectTimeout bounds connecting to the endpoint (a Go duration,
	// default 5s): an unreachable endpoint fails within it.
	S3ConnectTimeout = "s3.connect-timeout"
	// S3PartSize is the multipart part size of uploads (bytes, default 16MiB).
	S3PartSize = "s3.part-size"
	// S3MaxRetries is how often a failed request is retried (default 3).
	S3MaxRetries = "s3.max-retries"
	// S3CreateBucket creates a missing bucket at open ("true"); default false.
	S3CreateBucket = "s3.create-bucket"
)

// S3Options are the parsed settings of an S3 file system.
type S3Options struct {
	Endpoint       string
	AccessKey      string
	SecretKey      string
	SessionToken   string
	Region         string
	Secure         bool
	PathStyle      bool
	ConnectTimeout time.Duration
	PartSize       uint64
	MaxRetries     int
	CreateBucket   bool
}

// ParseS3Options reads the s3.* keys of opts, falling back to the AWS_*
// environment variables.
func ParseS3Options(opts map[string]string) (S3Options, error) {
	get := func(key string, envs ...string) string {
		if v, ok := opts[key]; ok && v != "" {
			return v
		}
		for _, e := range envs {
			if v := os.Getenv(e); v != "" {
				return v
			}
		}
		return ""
	}
	o := S3Options{
		Endpoint:       get(S3Endpoint, "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
		AccessKey:      get(S3AccessKey, "AWS_ACCESS_KEY_ID"),
		SecretKey:      get(S3SecretKey, "AWS_SECRET_ACCESS_KEY"),
		SessionToken:   os.Getenv("AWS_SESSION_TOKEN"),
		Region:         get(S3Region, "AWS_REGION", "AWS_DEFAULT_REGION"),
		Secure:         true,
		ConnectTimeout: 5 * time.Second,
		PartSize:       16 << 20,
		MaxRetries:     3,
	}
	if _, ok := opts[S3AccessKey]; ok {
		o.SessionToken = "" // explicit keys: do not mix in an env session
	}
	if o.Endpoint == "" {
		o.Endpoint = "s3.amazonaws.com"
	}
	if strings.Contains(o.Endpoint, "://") {
		u, err := url.Parse(o.Endpoint)
		if err != nil || u.Host == "" {
			return o, fmt.Errorf("%s %q: want host:port or http(s)://host:port", S3Endpoint, o.Endpoint)
		}
		switch u.Scheme {
		case "http":
			o.Secure = false
		case "https":
		default:
			return o, fmt.Errorf("%s %q: scheme must be http or https", S3Endpoint, o.Endpoint)
		}
		o.Endpoint = u.Host
	}
	parseBool := func(key string, dst *bool) error {
		v, ok := opts[key]
		if !ok || v == "" {
			return nil
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("%s %q: want true or false", key, v)
		}
		*dst = b
		return nil
	}
	for _, kv := range []struct {
		key string
		dst *bool
	}{{S3Secure, &o.Secure}, {S3PathStyle, &o.PathStyle}, {S3CreateBucket, &o.CreateBucket}} {
		if err := parseBool(kv.key, kv.dst); err != nil {
			return o, err
		}
	}
	if v := opts[S3ConnectTimeout]; v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return o, fmt.Errorf("%s %q: want a positive duration such as 5s", S3ConnectTimeout, v)
		}
		o.ConnectTimeout = d
	}
	if v := opts[S3PartSize]; v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n < 5<<20 {
			return o, fmt.Errorf("%s %q: want a byte count of at least 5242880 (5 MiB)", S3PartSize, v)
		}
		o.PartSize = n
	}
	if v := opts[S3MaxRetries]; v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return o, fmt.Errorf("%s %q: want a count >= 0", S3MaxRetries, v)
		}
		o.MaxRetries = n
	}
	return o, nil
}

// S3 is a FileSystem over a bucket and key prefix. Directories are key
// prefixes; an empty directory is kept by a zero-byte "dir/" marker object.
type S3 struct {
	client   *minio.Client
	bucket   string
	prefix   string // no leading or trailing slash; "" is the bucket root
	endpoint string // for error messages, with its scheme
	o        S3Options
	tr       *http.Transport
}

// NewS3 opens s3://bucket/prefix. It checks the endpoint and the bucket
// before returning, so a wrong endpoint fails here, within the connect
// timeout, with an error naming it.
func NewS3(ctx context.Context, uri string, opts map[string]string) (*S3, error) {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "s3" || u.Host == "" {
		return nil, fmt.Errorf("s3 uri %q: want s3://bucket/prefix", uri)
	}
	o, err := ParseS3Options(opts)
	if err != nil {
		return nil, fmt.Errorf("s3 %s: %w", uri, err)
	}
	scheme := "https"
	if !o.Secure {
		scheme = "http"
	}
	s := &S3{
		bucket:   u.Host,
		prefix:   strings.Trim(path.Clean("/"+u.Path), "/"),
		endpoint: scheme + "://" + o.Endpoint,
		o:        o,
	}
	newClient := func(retries int) (*minio.Client, error) {
		tr, err := minio.DefaultTransport(o.Secure)
		if err != nil {
			return nil, err
		}
		if s.tr == nil {
			s.tr = tr
		}
		tr.DialContext = (&net.Dialer{Timeout: o.ConnectTimeout, KeepAlive: 30 * time.Second}).DialContext
		tr.TLSHandshakeTimeout = o.ConnectTimeout
		// A store that goes silent after the mount fails requests instead
		// of hanging them (headers come early even for big objects).
		tr.ResponseHeaderTimeout = max(60*time.Second, 6*o.ConnectTimeout)
		var creds *credentials.Credentials
		if o.AccessKey != "" || o.SecretKey != "" {
			creds = credentials.NewStaticV4(o.AccessKey, o.SecretKey, o.SessionToken)
		} else {
			creds = credentials.NewChainCredentials([]credentials.Provider{&credentials.EnvAWS{}, &credentials.IAM{}})
		}
		mo := &minio.Options{Creds: creds, Secure: o.Secure, Region: o.Region, Transport: tr, MaxRetries: retries}
		if o.PathStyle {
			mo.BucketLookup = minio.BucketLookupPath
		}
		return minio.New(o.Endpoint, mo)
	}
	retries := o.MaxRetries + 1
	if s.client, err = newClient(retries); err != nil {
		return nil, fmt.Errorf("s3 %s: endpoint %s: %w", uri, s.endpoint, err)
	}
	// The probe does not retry: an endpoint that refuses or never answers
	// fails now, not after the retry schedule.
	probe, err := newClient(1)
	if err != nil {
		return nil, fmt.Errorf("s3 %s: endpoint %s: %w", uri, s.endpoint, err)
	}
	pctx, cancel := context.WithTimeout(ctx, 2*o.ConnectTimeout)
	defer cancel()
	ok, err := probe.BucketExists(pctx, s.bucket)
	if err != nil {
		return nil, s.endpointErr(uri, err)
	}
	if !ok {
		if !o.CreateBucket {
			return nil, fmt.Errorf("s3 %s: bucket %q does not exist at %s (create it, or set %s=true)", uri, s.bucket, s.endpoint, S3CreateBucket)
		}
		if err := probe.MakeBucket(pctx, s.bucket, minio.MakeBucketOptions{Region: o.Region}); err != nil {
			if c := minio.ToErrorResponse(err).Code; c != "BucketAlreadyOwnedByYou" && c != "BucketAlreadyExists" {
				return nil, fmt.Errorf("s3 %s: create bucket %q at %s: %w", uri, s.bucket, s.endpoint, err)
			}
		}
	}
	return s, nil
}

func (s *S3) endpointErr(uri string, err error) error {
	var ne net.Error
	var oe *net.OpError
	switch {
	case errors.As(err, &oe), errors.As(err, &ne), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("s3 %s: endpoint %s unreachable (timeout %s): %w", uri, s.endpoint, s.o.ConnectTimeout, err)
	}
	if r := minio.ToErrorResponse(err); r.Code != "" {
		return fmt.Errorf("s3 %s: endpoint %s refused access to bucket %q: %s: %w", uri, s.endpoint, s.bucket, r.Code, err)
	}
	return fmt.Errorf("s3 %s: endpoint %s: %w", uri, s.endpoint, err)
}

// clean turns a UFS path into a path relative to the root: "" is the root.
func (s *S3) clean(p string) (string, error) {
	if strings.ContainsRune(p, 0) {
		return "", fmt.Errorf("s3 %s: %q: %w", s.URI(""), p, ErrEscape)
	}
	return strings.TrimPrefix(path.Clean("/"+p), "/"), nil
}

// key is the object key of a relative path ("" for the root).
func (s *S3) key(rel string) string {
	switch {
	case s.prefix == "":
		return rel
	case rel == "":
		return s.prefix
	}
	return s.prefix + "/" + rel
}

// dirPrefix is the key prefix of the children of a relative dir path.
func (s *S3) dirPrefix(rel string) string {
	k := s.key(rel)
	if k == "" {
		return ""
	}
	return k + "/"
}

// URI implements FileSystem.
func (s *S3) URI(p string) string {
	rel, err := s.clean(p)
	if err != nil {
		rel = p
	}
	root := "s3://" + s.bucket
	if s.prefix != "" {
		root += "/" + s.prefix
	}
	return JoinURI(root, rel)
}

func isNotFound(err error) bool {
	switch minio.ToErrorResponse(err).Code {
	case "NoSuchKey", "NotFound", "NoSuchObject":
		return true
	}
	return false
}

func (s *S3) wrap(op, rel string, err error) error {
	if err == nil {
		return nil
	}
	r := minio.ToErrorResponse(err)
	var kind error
	switch {
	case isNotFound(err):
		kind = ErrNotFound
	case r.Code == "PreconditionFailed":
		kind = ErrExist
	case r.Code == "NoSuchBucket":
		return fmt.Errorf("%s %s: bucket %q does not exist at %s: %w", op, s.URI(rel), s.bucket, s.endpoint, err)
	}
	if kind != nil {
		return fmt.Errorf("%s %s: %w (%v)", op, s.URI(rel), kind, err)
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return fmt.Errorf("%s %s: endpoint %s: %w", op, s.URI(rel), s.endpoint, err)
	}
	return fmt.Errorf("%s %s: %w", op, s.URI(rel), err)
}

func fileStatus(name string, oi minio.ObjectInfo) FileStatus {
	return FileStatus{
		Name:        name,
		Size:        oi.Size,
		ModTime:     oi.LastModified,
		Mode:        0o644,
		Fingerprint: fmt.Sprintf("%s:%d", strings.Trim(oi.ETag, `"`), oi.Size),
	}
}

func dirStatus(name string) FileStatus { return FileStatus{Name: name, IsDir: true, Mode: 0o755} }

// statObject returns the object at rel, or ErrNotFound.
func (s *S3) statObject(ctx context.Context, rel string) (minio.ObjectInfo, error) {
	if rel == "" {
		return minio.ObjectInfo{}, ErrNotFound
	}
	oi, err := s.client.StatObject(ctx, s.bucket, s.key(rel), minio.StatObjectOptions{})
	if err != nil {
		if isNotFound(err) {
			return oi, ErrNotFound
		}
		return oi, s.wrap("stat", rel, err)
	}
	return oi, nil
}

// dirEntries reports whether the directory rel has any key under it
// (its marker included) and whether it has children other than the marker.
func (s *S3) dirEntries(ctx context.Context, rel string) (exists, hasChildren bool, err error) {
	if rel == "" {
		return true, false, nil
	}
	prefix := s.dirPrefix(rel)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for oi := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: prefix, MaxKeys: 2}) {
		if oi.Err != nil {
			return false, false, s.wrap("list", rel, oi.Err)
		}
		exists = true
		if oi.Key != prefix {
			return true, true, nil
		}
	}
	return exists, false, nil
}

// isDir reports whether rel is a directory (the root always is).
func (s *S3) isDir(ctx context.Context, rel string) (bool, error) {
	ok, _, err := s.dirEntries(ctx, rel)
	return ok, err
}

// Stat implements FileSystem.
func (s *S3) Stat(ctx context.Context, p string) (FileStatus, error) {
	rel, err := s.clean(p)
	if err != nil {
		return FileStatus{}, err
	}
	if rel == "" {
		return dirStatus(""), nil
	}
	oi, err := s.statObject(ctx, rel)
	if err == nil {
		return fileStatus(path.Base(rel), oi), nil
	}
	if !errors.Is(err, ErrNotFound) {
		return FileStatus{}, err
	}
	dir, err := s.isDir(ctx, rel)
	if err != nil {
		return FileStatus{}, err
	}
	if !dir {
		return FileStatus{}, fmt.Errorf("stat %s: %w", s.URI(rel), ErrNotFound)
	}
	return dirStatus(path.Base(rel)), nil
}

// List implements FileSystem: one delimited listing, streamed page by page.
func (s *S3) List(ctx context.Context, dir string, fn func(FileStatus) error) error {
	rel, err := s.clean(dir)
	if err != nil {
		return err
	}
	prefix := s.dirPrefix(rel)
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	seen := false
	for oi := range s.client.ListObjects(lctx, s.bucket, minio.ListObjectsOptions{Prefix: prefix}) {
		if oi.Err != nil {
			return s.wrap("list", rel, oi.Err)
		}
		seen = true
		if oi.Key == prefix {
			continue // the directory's own marker
		}
		name := strings.TrimPrefix(oi.Key, prefix)
		var st FileStatus
		if strings.HasSuffix(name, "/") {
			st = dirStatus(strings.TrimSuffix(name, "/"))
		} else {
			st = fileStatus(name, oi)
		}
		if IsTemp(st.Name) || st.Name == "" {
			continue
		}
		if err := fn(st); err != nil {
			return err
		}
	}
	if seen || rel == "" {
		return nil
	}
	if _, err := s.statObject(ctx, rel); err == nil {
		return fmt.Errorf("list %s: %w", s.URI(rel), ErrNotDir)
	}
	return fmt.Errorf("list %s: %w", s.URI(rel), ErrNotFound)
}

// Open implements FileSystem with a ranged GET pinned to the object's ETag,
// so a concurrent overwrite fails the read instead of mixing versions.
func (s *S3) Open(ctx context.Context, p string, offset, length int64) (io.ReadCloser, error) {
	rel, err := s.clean(p)
	if err != nil {
		return nil, err
	}
	oi, err := s.statObject(ctx, rel)
	if err != nil {
		if !errors.Is(err, ErrNotFound) {
			return nil, err
		}
		if dir, derr := s.isDir(ctx, rel); derr == nil && dir {
			return nil, fmt.Errorf("open %s: %w", s.URI(rel), ErrIsDir)
		}
		return nil, fmt.Errorf("open %s: %w", s.URI(rel), ErrNotFound)
	}
	if offset < 0 || offset > oi.Size {
		return nil, fmt.Errorf("open %s: offset %d outside the file (size %d)", s.URI(rel), offset, oi.Size)
	}
	if length < 0 || offset+length > oi.Size {
		length = oi.Size - offset
	}
	if length == 0 {
		return io.NopCloser(strings.NewReader("")), nil
	}
	var o minio.GetObjectOptions
	if err := o.SetRange(offset, offset+length-1); err != nil {
		return nil, s.wrap("open", rel, err)
	}
	if err := o.SetMatchETag(strings.Trim(oi.ETag, `"`)); err != nil {
		return nil, s.wrap("open", rel, err)
	}
	obj, err := s.client.GetObject(ctx, s.bucket, s.key(rel), o)
	if err != nil {
		return nil, s.wrap("open", rel, err)
	}
	return &s3Reader{obj: obj, s: s, rel: rel}, nil
}

type s3Reader struct {
	obj *minio.Object
	s   *S3
	rel string
}

func (r *s3Reader) Read(b []byte) (int, error) {
	n, err := r.obj.Read(b)
	if err != nil && err != io.EOF {
		err = r.s.wrap("read", r.rel, err)
	}
	return n, err
}

func (r *s3Reader) Close() error { return r.obj.Close() }

// Create implements FileSystem: bytes stream into a multipart upload that
// the store makes visible only when Commit completes it.
func (s *S3) Create(ctx context.Context, p string, opts CreateOptions) (Writer, error) {
	rel, err := s.clean(p)
	if err != nil {
		return nil, err
	}
	if rel == "" {
		return nil, fmt.Errorf("create %s: %w", s.URI(rel), ErrIsDir)
	}
	if _, err := s.statObject(ctx, rel); err == nil {
		if !opts.Overwrite {
			return nil, fmt.Errorf("create %s: %w", s.URI(rel), ErrExist)
		}
	} else if !errors.Is(err, ErrNotFound) {
		return nil, err
	} else if dir, err := s.isDir(ctx, rel); err != nil {
		return nil, err
	} else if dir {
		return nil, fmt.Errorf("create %s: %w", s.URI(rel), ErrIsDir)
	}
	if parent := parentOf(rel); parent != "" {
		if _, err := s.statObject(ctx, parent); err == nil {
			return nil, fmt.Errorf("create %s: parent %s: %w", s.URI(rel), s.URI(parent), ErrNotDir)
		}
		if !opts.CreateParent {
			dir, err := s.isDir(ctx, parent)
			if err != nil {
				return nil, err
			}
			if !dir {
				return nil, fmt.Errorf("create %s: parent %s: %w", s.URI(rel), s.URI(parent), ErrNotFound)
			}
		}
	}
	return &s3Writer{s: s, ctx: ctx, rel: rel, overwrite: opts.Overwrite, mtime: opts.ModTime, buf: make([]byte, 0, s.o.PartSize)}, nil
}

func parentOf(rel string) string {
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		return rel[:i]
	}
	return ""
}

// s3Writer buffers one part; a file smaller than a part is one PUT, a
// bigger one a multipart upload (one part in flight while the next fills)
// that the store makes visible only when Commit completes it. Without
// Overwrite both carry If-None-Match: *, so a file another writer created
// meanwhile is never replaced.
type s3Writer struct {
	s         *S3
	ctx       context.Context
	rel       string
	overwrite bool
	mtime     time.Time // kept as the "mtime" metadata; zero: none
	buf       []byte
	spare     []byte
	uploadID  string
	parts     []minio.CompletePart
	inflight  chan error
	err       error
	fin       bool
}

func (w *s3Writer) putOptions() minio.PutObjectOptions {
	po := minio.PutObjectOptions{ContentType: "application/octet-stream"}
	if !w.mtime.IsZero() {
		// rclone's key and format: seconds since the epoch, fractional.
		po.UserMetadata = map[string]string{"mtime": strconv.FormatFloat(float64(w.mtime.UnixNano())/1e9, 'f', 9, 64)}
	}
	if !w.overwrite {
		po.SetMatchETagExcept("*")
	}
	return po
}

func (w *s3Writer) core() minio.Core { return minio.Core{Client: w.s.client} }

func (w *s3Writer) Write(b []byte) (int, error) {
	if w.fin {
		return 0, fmt.Errorf("write %s: writer already closed", w.s.URI(w.rel))
	}
	if w.err != nil {
		return 0, w.err
	}
	n := 0
	for len(b) > 0 {
		c := copy(w.buf[len(w.buf):cap(w.buf)], b)
		w.buf = w.buf[:len(w.buf)+c]
		b, n = b[c:], n+c
		if len(w.buf) == cap(w.buf) {
			if err := w.flush(); err != nil {
				w.err = err
				return n, err
			}
		}
	}
	return n, nil
}

// wait collects the part upload in flight, if any.
func (w *s3Writer) wait() error {
	if w.inflight == nil {
		return nil
	}
	err := <-w.inflight
	w.inflight = nil
	return err
}

// flush uploads the buffer as the next part, in the background.
func (w *s3Writer) flush() error {
	if w.uploadID == "" {
		id, err := w.core().NewMultipartUpload(w.ctx, w.s.bucket, w.s.key(w.rel), w.putOptions())
		if err != nil {
			return w.s.wrap("create", w.rel, err)
		}
		w.uploadID = id
	}
	if err := w.wait(); err != nil {
		return err
	}
	data := w.buf
	if w.spare == nil {
		w.spare = make([]byte, 0, cap(w.buf))
	}
	w.buf, w.spare = w.spare[:0], nil
	num := len(w.parts) + 1
	w.parts = append(w.parts, minio.CompletePart{PartNumber: num})
	done := make(chan error, 1)
	w.inflight = done
	go func() {
		p, err := w.core().PutObjectPart(w.ctx, w.s.bucket, w.s.key(w.rel), w.uploadID, num,
			bytes.NewReader(data), int64(len(data)), minio.PutObjectPartOptions{DisableContentSha256: true})
		if err == nil {
			w.parts[num-1].ETag = p.ETag
		}
		w.spare = data[:0]
		done <- w.s.wrap("write", w.rel, err)
	}()
	return nil
}

func (w *s3Writer) Commit() (FileStatus, error) {
	if w.fin {
		return FileStatus{}, fmt.Errorf("commit %s: writer already closed", w.s.URI(w.rel))
	}
	w.fin = true
	err := w.err
	if err == nil && w.uploadID == "" {
		_, perr := w.core().PutObject(w.ctx, w.s.bucket, w.s.key(w.rel), bytes.NewReader(w.buf), int64(len(w.buf)), "", "", w.putOptions())
		err = w.s.wrap("commit", w.rel, perr)
	} else if err == nil {
		if len(w.buf) > 0 {
			err = w.flush()
		}
		if werr := w.wait(); err == nil {
			err = werr
		}
		if err == nil {
			_, cerr := w.core().CompleteMultipartUpload(w.ctx, w.s.bucket, w.s.key(w.rel), w.uploadID, w.parts, w.putOptions())
			err = w.s.wrap("commit", w.rel, cerr)
		}
	}
	if err != nil {
		w.abortUpload()
		return FileStatus{}, err
	}
	// Stat for the same fingerprint a later Stat returns.
	oi, err := w.s.statObject(w.ctx, w.rel)
	if err != nil {
		return FileStatus{}, w.s.wrap("commit", w.rel, err)
	}
	return fileStatus(path.Base(w.rel), oi), nil
}

func (w *s3Writer) abortUpload() {
	_ = w.wait()
	if w.uploadID != "" {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(w.ctx), 30*time.Second)
		defer cancel()
		_ = w.core().AbortMultipartUpload(ctx, w.s.bucket, w.s.key(w.rel), w.uploadID)
	}
}

func (w *s3Writer) Abort() error {
	if w.fin {
		return nil
	}
	w.fin = true
	w.abortUpload()
	return nil
}

// putMarker writes the zero-byte "dir/" object that keeps rel as a directory.
func (s *S3) putMarker(ctx context.Context, rel string) error {
	_, err := s.client.PutObject(ctx, s.bucket, s.dirPrefix(rel), strings.NewReader(""), 0, minio.PutObjectOptions{ContentType: "application/x-directory"})
	return s.wrap("mkdir", rel, err)
}

// Mkdirs implements FileSystem. Parents need no markers of their own: the
// marker's key already makes them exist as prefixes.
func (s *S3) Mkdirs(ctx context.Context, p string) error {
	rel, err := s.clean(p)
	if err != nil {
		return err
	}
	if rel == "" {
		return nil
	}
	for r := rel; r != ""; r = parentOf(r) {
		if _, err := s.statObject(ctx, r); err == nil {
			return fmt.Errorf("mkdir %s: %s is a file: %w", s.URI(rel), s.URI(r), ErrNotDir)
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	if ok, err := s.isDir(ctx, rel); err != nil || ok {
		return err
	}
	return s.putMarker(ctx, rel)
}

// keepParent re-creates the marker of rel's parent when removing rel left
// it without keys, so deleting a directory's last file keeps the directory.
func (s *S3) keepParent(ctx context.Context, rel string) error {
	parent := parentOf(rel)
	if parent == "" {
		return nil
	}
	ok, err := s.isDir(ctx, parent)
	if err != nil || ok {
		return err
	}
	return s.putMarker(ctx, parent)
}

// Delete implements FileSystem.
func (s *S3) Delete(ctx context.Context, p string) error {
	rel, err := s.clean(p)
	if err != nil {
		return err
	}
	if rel == "" {
		return fmt.Errorf("delete %s: refusing to delete the mount root", s.URI(""))
	}
	if _, err := s.statObject(ctx, rel); err == nil {
		if err := s.client.RemoveObject(ctx, s.bucket, s.key(rel), minio.RemoveObjectOptions{}); err != nil {
			return s.wrap("delete", rel, err)
		}
		return s.keepParent(ctx, rel)
	} else if !errors.Is(err, ErrNotFound) {
		return err
	}
	exists, children, err := s.dirEntries(ctx, rel)
	switch {
	case err != nil:
		return err
	case !exists:
		return fmt.Errorf("delete %s: %w", s.URI(rel), ErrNotFound)
	case children:
		return fmt.Errorf("delete %s: %w", s.URI(rel), ErrNotEmpty)
	}
	if err := s.client.RemoveObject(ctx, s.bucket, s.dirPrefix(rel), minio.RemoveObjectOptions{}); err != nil {
		return s.wrap("delete", rel, err)
	}
	return s.keepParent(ctx, rel)
}

// removePrefix deletes every key under prefix in batches.
func (s *S3) removePrefix(ctx context.Context, rel, prefix string) error {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	objs := make(chan minio.ObjectInfo)
	var listErr error
	go func() {
		defer close(objs)
		for oi := range s.client.ListObjects(lctx, s.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
			if oi.Err != nil {
				listErr = oi.Err
				return
			}
			select {
			case objs <- oi:
			case <-lctx.Done():
				return
			}
		}
	}()
	var firstErr error
	for re := range s.client.RemoveObjects(lctx, s.bucket, objs, minio.RemoveObjectsOptions{}) {
		if firstErr == nil && re.Err != nil {
			firstErr = re.Err
		}
	}
	cancel()
	if firstErr == nil {
		firstErr = listErr
	}
	return s.wrap("delete", rel, firstErr)
}

// DeleteAll implements FileSystem.
func (s *S3) DeleteAll(ctx context.Context, p string) error {
	rel, err := s.clean(p)
	if err != nil {
		return err
	}
	if rel == "" {
		return fmt.Errorf("delete %s: refusing to delete the mount root", s.URI(""))
	}
	if err := s.client.RemoveObject(ctx, s.bucket, s.key(rel), minio.RemoveObjectOptions{}); err != nil && !isNotFound(err) {
		return s.wrap("delete", rel, err)
	}
	if err := s.removePrefix(ctx, rel, s.dirPrefix(rel)); err != nil {
		return err
	}
	return s.keepParent(ctx, rel)
}

// copyObject copies one key server-side; ComposeObject takes sources over
// the 5 GiB limit of a single copy.
func (s *S3) copyObject(ctx context.Context, srcKey, dstKey string, size int64) error {
	dst := minio.CopyDestOptions{Bucket: s.bucket, Object: dstKey}
	src := minio.CopySrcOptions{Bucket: s.bucket, Object: srcKey}
	var err error
	if size > 5<<30 {
		_, err = s.client.ComposeObject(ctx, dst, src)
	} else {
		_, err = s.client.CopyObject(ctx, dst, src)
	}
	return err
}

// Rename implements FileSystem. S3 has no rename: files are copied
// server-side and the source deleted, so a crash mid-way can leave both.
func (s *S3) Rename(ctx context.Context, src, dst string) error {
	rs, rd, err := s.clean2(src, dst)
	if err != nil {
		return err
	}
	if rs == "" || rd == "" {
		return fmt.Errorf("rename %s to %s: cannot rename the mount root", s.URI(rs), s.URI(rd))
	}
	if rs == rd {
		return fmt.Errorf("rename %s: %w", s.URI(rd), ErrExist)
	}
	if _, err := s.Stat(ctx, rd); err == nil {
		return fmt.Errorf("rename %s to %s: %w", s.URI(rs), s.URI(rd), ErrExist)
	} else if !errors.Is(err, ErrNotFound) {
		return err
	}
	if parent := parentOf(rd); parent != "" {
		if ok, err := s.isDir(ctx, parent); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("rename %s to %s: parent: %w", s.URI(rs), s.URI(rd), ErrNotFound)
		}
	}
	oi, err := s.statObject(ctx, rs)
	if err == nil {
		if err := s.copyObject(ctx, s.key(rs), s.key(rd), oi.Size); err != nil {
			return s.wrap("rename", rs, err)
		}
		if err := s.client.RemoveObject(ctx, s.bucket, s.key(rs), minio.RemoveObjectOptions{}); err != nil {
			return s.wrap("rename", rs, err)
		}
		return s.keepParent(ctx, rs)
	} else if !errors.Is(err, ErrNotFound) {
		return err
	}
	if strings.HasPrefix(rd+"/", rs+"/") {
		return fmt.Errorf("rename %s to %s: cannot move a directory into itself", s.URI(rs), s.URI(rd))
	}
	srcPrefix, dstPrefix := s.dirPrefix(rs), s.dirPrefix(rd)
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	found := false
	for o := range s.client.ListObjects(lctx, s.bucket, minio.ListObjectsOptions{Prefix: srcPrefix, Recursive: true}) {
		if o.Err != nil {
			return s.wrap("rename", rs, o.Err)
		}
		found = true
		if err := s.copyObject(ctx, o.Key, dstPrefix+strings.TrimPrefix(o.Key, srcPrefix), o.Size); err != nil {
			return s.wrap("rename", rs, err)
		}
	}
	if !found {
		return fmt.Errorf("rename %s: %w", s.URI(rs), ErrNotFound)
	}
	if err := s.removePrefix(ctx, rs, srcPrefix); err != nil {
		return err
	}
	return s.keepParent(ctx, rs)
}

// clean2 checks the two paths of a rename.
func (s *S3) clean2(src, dst string) (string, string, error) {
	rs, err := s.clean(src)
	if err != nil {
		return "", "", err
	}
	rd, err := s.clean(dst)
	return rs, rd, err
}

// Replace implements Replacer: a server-side copy onto dst replaces the
// object in one step; the source is deleted after.
func (s *S3) Replace(ctx context.Context, src, dst string) error {
	rs, rd, err := s.clean2(src, dst)
	if err != nil {
		return err
	}
	if rs == "" || rd == "" || rs == rd {
		return fmt.Errorf("replace %s with %s: not two files", s.URI(rd), s.URI(rs))
	}
	oi, err := s.statObject(ctx, rs)
	if err != nil {
		return err
	}
	if err := s.copyObject(ctx, s.key(rs), s.key(rd), oi.Size); err != nil {
		return s.wrap("replace", rd, err)
	}
	if err := s.client.RemoveObject(ctx, s.bucket, s.key(rs), minio.RemoveObjectOptions{}); err != nil {
		return s.wrap("replace", rs, err)
	}
	return nil
}

// Close implements FileSystem.
func (s *S3) Close() error {
	s.tr.CloseIdleConnections()
	return nil
}
