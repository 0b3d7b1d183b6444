// Package s3 is Alluvium's S3 gateway: S3's REST API (path-style) over the
// SDK, where a bucket is a top-level directory and an object key is the
// path below it. Requests are authenticated with SigV4 (package sigv4).
// Metadata S3 keeps and the namespace does not (ETag, Content-Type,
// x-amz-meta-*) lives in a bbolt file in the gateway's staging dir;
// multipart parts live there too until CompleteMultipartUpload writes the
// object, so they are never visible in the namespace.
package s3

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/paths"
	"github.com/alluvium/alluvium/proxy/sigv4"
	"github.com/alluvium/alluvium/sdk"
)

// Config configures a Gateway.
type Config struct {
	Creds           sigv4.Credentials
	Region          string        // reported by GetBucketLocation
	WriteType       api.WriteType // of objects written (UNSPECIFIED: the FS master's default)
	MultipartExpiry time.Duration // uploads left this long are removed
	// Observe, when set, is called after each request with the operation,
	// the status sent, the duration and the body bytes in and out.
	Observe func(op string, status int, d time.Duration, in, out int64)
	// ActAs, when set, names the cluster user a verified access key acts
	// as ("": the gateway's own identity); the cluster then checks that
	// user's permissions on everything the request touches.
	ActAs func(accessKey string) string
}

// Gateway serves the S3 API.
type Gateway struct {
	c   *sdk.Client
	cfg Config
	log *zap.Logger

	stopOnce sync.Once
	stop     chan struct{}
	wg       sync.WaitGroup
}

// New returns a gateway over the cluster c reaches. It keeps nothing of
// its own: objects, their metadata and multipart uploads are in the
// cluster, so any number of gateways serve the same buckets.
func New(c *sdk.Client, cfg Config, log *zap.Logger) (*Gateway, error) {
	if cfg.Creds == nil {
		cfg.Creds = sigv4.Static{}
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	if cfg.MultipartExpiry <= 0 {
		cfg.MultipartExpiry = 24 * time.Hour
	}
	return &Gateway{c: c, cfg: cfg, log: log, stop: make(chan struct{})}, nil
}

// Start runs the janitor that aborts multipart uploads left for longer
// than the expiry (every gateway runs one: an upload aborted twice is
// aborted once).
func (g *Gateway) Start(ctx context.Context) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		every := min(max(g.cfg.MultipartExpiry/4, time.Second), time.Hour)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			n, err := g.expireUploads(ctx, time.Now().Add(-g.cfg.MultipartExpiry))
			if n > 0 {
				g.log.Info("aborted expired multipart uploads", zap.Int("uploads", n), zap.Duration("expiry", g.cfg.MultipartExpiry))
			}
			if err != nil && ctx.Err() == nil {
				g.log.Debug("listing multipart uploads to expire", zap.Error(err))
			}
			select {
			case <-t.C:
			case <-g.stop:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
}

// Close stops the janitor.
func (g *Gateway) Close() error {
	g.stopOnce.Do(func() { close(g.stop) })
	g.wg.Wait()
	return nil
}

// request is one S3 call in flight.
type request struct {
	g      *Gateway
	w      http.ResponseWriter
	r      *http.Request
	bucket string
	key    string
	auth   *sigv4.Auth
	// user is the cluster user the request acts for ("": the gateway's own
	// identity, a superuser); sys is the request's context as the gateway
	// itself, for the few steps it takes on a user's behalf (creating a
	// bucket owned by the user, listing the user's buckets).
	user   string
	sys    context.Context
	id     string
	op     string
	status int
	in     int64
	out    int64
}

// statusWriter records the status sent.
type statusWriter struct {
	http.ResponseWriter
	req *request
}

func (s statusWriter) WriteHeader(code int) {
	if s.req.status == 0 {
		s.req.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s statusWriter) Write(b []byte) (int, error) {
	if s.req.status == 0 {
		s.req.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Flush lets long responses (CompleteMultipartUpload keep-alives) through.
func (s statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// ReadFrom keeps the connection's zero-copy path (sendfile) for GETs.
func (s statusWriter) ReadFrom(src io.Reader) (int64, error) {
	if s.req.status == 0 {
		s.req.status = http.StatusOK
	}
	if rf, ok := s.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(src)
	}
	return io.Copy(struct{ io.Writer }{s.ResponseWriter}, src)
}

// Handler serves the S3 API under prefix ("" on the gateway's own port,
// "/api/v1/s3" on the REST port). Signatures cover the whole path as sent.
func (g *Gateway) Handler(prefix string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		req := &request{g: g, r: r, id: newRequestID(), op: "unknown"}
		req.w = statusWriter{ResponseWriter: w, req: req}
		w.Header().Set("x-amz-request-id", req.id)
		w.Header().Set("Server", "Alluvium")
		defer func() {
			if g.cfg.Observe != nil {
				st := req.status
				if st == 0 {
					st = http.StatusOK
				}
				g.cfg.Observe(req.op, st, time.Since(start), req.in, req.out)
			}
		}()
		p := strings.TrimPrefix(r.URL.Path, prefix)
		if !strings.HasPrefix(p, "/") {
			p = "/" + p
		}
		req.bucket, req.key, _ = strings.Cut(p[1:], "/")
		a, err := sigv4.Verify(r, g.cfg.Creds, time.Now())
		if err != nil {
			req.fail(err, nil)
			return
		}
		req.auth = a
		req.sys = r.Context()
		if g.cfg.ActAs != nil {
			if u := g.cfg.ActAs(a.AccessKey); u != "" {
				req.user = u
				req.r = r.WithContext(sdk.AsUser(r.Context(), u))
			}
		}
		req.dispatch()
	})
}

func newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return strings.ToUpper(hex.EncodeToString(b[:]))
}

// fail writes err as an S3 error (no body for HEAD).
func (q *request) fail(err error, notFound *apiError) {
	ae := toAPIError(err, notFound)
	if ae.Status >= 500 {
		q.g.log.Warn("s3 request failed", zap.String("op", q.op), zap.String("bucket", q.bucket), zap.String("key", q.key), zap.String("code", ae.Code), zap.String("error", ae.Message))
	} else {
		q.g.log.Debug("s3 request refused", zap.String("op", q.op), zap.String("bucket", q.bucket), zap.String("key", q.key), zap.String("code", ae.Code), zap.String("error", ae.Message))
	}
	if q.r.ContentLength != 0 && strings.EqualFold(q.r.Header.Get("Expect"), "100-continue") {
		// The client may not have sent the body it offered (no 100
		// Continue went out): what follows on this connection is not
		// known to be a request, so it ends here.
		q.w.Header().Set("Connection", "close")
	}
	if q.r.Method == http.MethodHead {
		q.w.Header().Set("x-amz-error-code", ae.Code)
		q.w.WriteHeader(ae.Status)
		return
	}
	writeXML(q.w, ae.Status, errorBody{Code: ae.Code, Message: ae.Message, BucketName: q.bucket, Key: q.key,
		Resource: q.r.URL.Path, RequestID: q.id, HostID: q.id})
}

// has reports whether the query names a subresource (?uploads, ?acl...).
func (q *request) has(name string) bool {
	_, ok := q.r.URL.Query()[name]
	return ok
}

// unsupported are subresources the gateway does not implement.
var unsupported = []string{"tagging", "retention", "legal-hold", "torrent", "restore", "select",
	"policy", "cors", "lifecycle", "encryption", "website", "logging", "notification", "replication",
	"requestPayment", "accelerate", "object-lock", "ownershipControls", "publicAccessBlock", "analytics",
	"metrics", "inventory", "intelligent-tiering", "policyStatus"}

func (q *request) dispatch() {
	m := q.r.Method
	for _, s := range unsupported {
		if q.has(s) {
			q.op = strings.ToLower(m) + "-" + s
			q.fail(errNotImplemented("?"+s), nil)
			return
		}
	}
	if v, ok := q.r.URL.Query()["versionId"]; ok && (len(v) != 1 || v[0] != nullVersion) {
		// Every object has one version, "null".
		q.op = strings.ToLower(m) + "-versionId"
		if m == http.MethodPut || m == http.MethodPost {
			q.fail(errNotImplemented("versionId on "+m), nil)
		} else {
			q.fail(errNoSuchVersion(strings.Join(v, ",")), nil)
		}
		return
	}
	switch {
	case q.bucket == "":
		if m == http.MethodGet || m == http.MethodHead {
			q.op = "ListBuckets"
			q.listBuckets()
			return
		}
	case q.key == "":
		switch {
		case m == http.MethodPut && q.has("acl"):
			q.op = "PutBucketAcl"
			q.putACL()
		case m == http.MethodPut && q.has("versioning"):
			q.op = "PutBucketVersioning"
			q.fail(errNotImplemented("bucket versioning"), nil)
		case m == http.MethodPut:
			q.op = "CreateBucket"
			q.createBucket()
		case m == http.MethodDelete:
			q.op = "DeleteBucket"
			q.deleteBucket()
		case m == http.MethodHead:
			q.op = "HeadBucket"
			q.headBucket()
		case m == http.MethodGet && q.has("location"):
			q.op = "GetBucketLocation"
			q.bucketLocation()
		case m == http.MethodGet && q.has("versioning"):
			q.op = "GetBucketVersioning"
			q.bucketVersioning()
		case m == http.MethodGet && q.has("acl"):
			q.op = "GetBucketAcl"
			q.getACL()
		case m == http.MethodGet && q.has("uploads"):
			q.op = "ListMultipartUploads"
			q.listUploads()
		case m == http.MethodGet && q.has("versions"):
			q.op = "ListObjectVersions"
			q.listObjectVersions()
		case m == http.MethodGet && q.r.URL.Query().Get("list-type") == "2":
			q.op = "ListObjectsV2"
			q.listObjects(2)
		case m == http.MethodGet:
			q.op = "ListObjects"
			q.listObjects(1)
		case m == http.MethodPost && q.has("delete"):
			q.op = "DeleteObjects"
			q.deleteObjects()
		default:
			q.op = "bucket-" + strings.ToLower(m)
			q.fail(errNotImplemented(m+" on a bucket"), nil)
		}
		return
	default:
		switch {
		case m == http.MethodPut && q.has("uploadId"):
			if q.r.Header.Get("X-Amz-Copy-Source") != "" {
				q.op = "UploadPartCopy"
			} else {
				q.op = "UploadPart"
			}
			q.uploadPart()
		case m == http.MethodPut && q.has("acl"):
			q.op = "PutObjectAcl"
			q.putACL()
		case m == http.MethodPut && q.r.Header.Get("X-Amz-Copy-Source") != "":
			q.op = "CopyObject"
			q.copyObject()
		case m == http.MethodPut:
			q.op = "PutObject"
			q.putObject()
		case m == http.MethodGet && q.has("uploadId"):
			q.op = "ListParts"
			q.listParts()
		case m == http.MethodGet && q.has("acl"):
			q.op = "GetObjectAcl"
			q.getACL()
		case m == http.MethodGet && q.has("attributes"):
			q.op = "GetObjectAttributes"
			q.getObjectAttributes()
		case m == http.MethodGet || m == http.MethodHead:
			q.op = "GetObject"
			if m == http.MethodHead {
				q.op = "HeadObject"
			}
			q.getObject()
		case m == http.MethodDelete && q.has("uploadId"):
			q.op = "AbortMultipartUpload"
			q.abortUpload()
		case m == http.MethodDelete:
			q.op = "DeleteObject"
			q.deleteObject()
		case m == http.MethodPost && q.has("uploads"):
			q.op = "CreateMultipartUpload"
			q.createUpload()
		case m == http.MethodPost && q.has("uploadId"):
			q.op = "CompleteMultipartUpload"
			q.completeUpload()
		default:
			q.op = "object-" + strings.ToLower(m)
			q.fail(errNotImplemented(m+" on an object"), nil)
		}
		return
	}
	q.fail(errorf("MethodNotAllowed", http.StatusMethodNotAllowed, "%s is not allowed on %s", m, q.r.URL.Path), nil)
}

// bucketPath returns the directory of the request's bucket.
func (q *request) bucketPath() (string, *apiError) {
	return bucketPath(q.bucket)
}

func bucketPath(b string) (string, *apiError) {
	if b == "" || b == "." || b == ".." || strings.ContainsAny(b, "/\x00") {
		return "", errorf("InvalidBucketName", http.StatusBadRequest, "the bucket name %q is not valid", b)
	}
	p, err := paths.Clean("/" + b)
	if err != nil || p != "/"+b {
		return "", errorf("InvalidBucketName", http.StatusBadRequest, "the bucket name %q is not valid", b)
	}
	return p, nil
}

// maxKeyLength is S3's limit on a key.
const maxKeyLength = 1024

// objectPath maps bucket and key to a path. A key ending in "/" names a
// directory (a "folder" marker); other keys name files. Keys that cannot
// be paths — empty, "." or ".." components, "//" — are refused.
func objectPath(bucket, key string) (p string, dir bool, err *apiError) {
	bp, err := bucketPath(bucket)
	if err != nil {
		return "", false, err
	}
	if len(key) > maxKeyLength {
		return "", false, errorf("KeyTooLongError", http.StatusBadRequest, "the key is %d bytes; the limit is %d", len(key), maxKeyLength)
	}
	for _, r := range key {
		// Control characters (C0, DEL, C1) cannot be in an XML listing
		// and make poor file names; invalid UTF-8 is no key at all.
		if r < 0x20 || r >= 0x7f && r <= 0x9f || r == utf8.RuneError && !utf8.ValidString(key) {
			return "", false, errorf("InvalidURI", http.StatusBadRequest, "Couldn't parse the specified URI.")
		}
	}
	dir = strings.HasSuffix(key, "/")
	k := strings.TrimSuffix(key, "/")
	if k == "" {
		return "", false, errInvalidArgument("the key %q names no object", key)
	}
	for _, c := range strings.Split(k, "/") {
		if c == "" || c == "." || c == ".." {
			return "", false, errInvalidArgument("the key %q cannot be stored: Alluvium keeps objects as files, and a key with an empty, '.' or '..' path component is not a file path", key)
		}
	}
	p = bp + "/" + k
	clean, cerr := paths.Clean(p)
	if cerr != nil || clean != p {
		return "", false, errInvalidArgument("the key %q cannot be stored as a file path: %v", key, cerr)
	}
	return p, dir, nil
}

// stat returns the status of p. A path the namespace does not know is
// looked up in the UFS once more (LoadMetadataType ALWAYS), so an object
// that appeared in the under storage after its directory was listed is
// found when asked for by name; listings follow the namespace's own sync.
func (g *Gateway) stat(ctx context.Context, p string) (*api.FileInfo, error) {
	info, err := g.c.Stat(ctx, p)
	if errors.Is(err, sdk.ErrNotFound) {
		info, err = g.c.StatWith(ctx, p, api.LoadMetadataType_ALWAYS)
	}
	return info, err
}

// checkBucket returns NoSuchBucket unless the bucket directory exists.
func (q *request) checkBucket() *apiError {
	bp, aerr := q.bucketPath()
	if aerr != nil {
		return aerr
	}
	info, err := q.g.stat(q.r.Context(), bp)
	if err != nil {
		return toAPIError(err, errNoSuchBucket(q.bucket))
	}
	if !info.GetFolder() {
		return errNoSuchBucket(q.bucket)
	}
	return nil
}

// checkBucketAccess is checkBucket that also needs the caller to be able
// to reach into the bucket (execute on its directory): HeadBucket of a
// bucket one may not use answers 403, as S3 does.
func (q *request) checkBucketAccess() *apiError {
	if aerr := q.checkBucket(); aerr != nil {
		return aerr
	}
	bp, _ := q.bucketPath()
	if err := q.g.c.CheckAccess(q.r.Context(), bp, 1); err != nil {
		return toAPIError(err, errNoSuchBucket(q.bucket))
	}
	return nil
}

// notFoundErr tells NoSuchKey from NoSuchBucket after a NotFound.
func (q *request) notFoundErr() *apiError {
	if err := q.checkBucket(); err != nil {
		return err
	}
	return errNoSuchKey(q.key)
}
