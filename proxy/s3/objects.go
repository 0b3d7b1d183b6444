package s3

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/proxy/sigv4"
	"github.com/alluvium/alluvium/sdk"
)

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// srcReader remembers the error of the source side of a copy, to tell a
// client that sent a bad body from a store that failed.
type srcReader struct {
	r   io.Reader
	err error
}

func (s *srcReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}

// failObject writes err, telling NoSuchKey from NoSuchBucket on NotFound.
func (q *request) failObject(err error) {
	var nf *apiError
	if errors.Is(err, sdk.ErrNotFound) {
		nf = q.notFoundErr()
	}
	q.fail(err, nf)
}

// create opens path for writing as an object of bucket: parents are made
// as needed, but only inside an existing bucket.
func (g *Gateway) create(ctx context.Context, bucket, p string, ifReplaces int64) (*sdk.FileWriter, *apiError) {
	o := sdk.CreateOptions{WriteType: g.cfg.WriteType, Overwrite: true, Mode: objectMode, IfReplaces: ifReplaces}
	fw, err := g.c.Create(ctx, p, o)
	if errors.Is(err, sdk.ErrNotFound) {
		// A directory on the way is missing: make it, but only in a
		// bucket that exists.
		if aerr := g.checkBucketOf(ctx, bucket); aerr != nil {
			return nil, aerr
		}
		o.Recursive = true
		fw, err = g.c.Create(ctx, p, o)
	}
	if err != nil {
		return nil, createErr(bucket, p, err)
	}
	return fw, nil
}

// checkBucketOf returns NoSuchBucket unless bucket's directory exists.
func (g *Gateway) checkBucketOf(ctx context.Context, bucket string) *apiError {
	bp, aerr := bucketPath(bucket)
	if aerr != nil {
		return aerr
	}
	info, err := g.stat(ctx, bp)
	if err != nil {
		return toAPIError(err, errNoSuchBucket(bucket))
	}
	if !info.GetFolder() {
		return errNoSuchBucket(bucket)
	}
	return nil
}

// createErr is the S3 error of a failed create of object p in bucket.
func createErr(bucket, p string, err error) *apiError {
	switch {
	case errors.Is(err, sdk.ErrNotFound):
		return errNoSuchBucketOrKey(bucket, err)
	case errors.Is(err, sdk.ErrAlreadyExists):
		return errorf("XAlluviumObjectIsDirectory", http.StatusConflict, "%s is a directory with objects below it, so it cannot also be an object", p)
	case errors.Is(err, sdk.ErrFailedPrecondition):
		return errorf("XAlluviumParentIsObject", http.StatusConflict, "a parent of %s is an object, so nothing can be stored below it", p)
	}
	return toAPIError(err, nil)
}

// objectMode is the mode of an object's file: private to its owner, as S3
// objects are unless granted (here: chmod in the namespace).
const objectMode = 0o600

// write copies src into a new object at p and returns the completed file.
// meta, called once the bytes are in, gives the object's S3 metadata: it
// is set as the file completes, in the same step.
//
// ifReplaces (see sdk.CreateOptions.IfReplaces) makes it a conditional
// write: PreconditionFailed when the object changed since the caller
// checked its conditions.
func (g *Gateway) write(ctx context.Context, bucket, p string, src io.Reader, ifReplaces int64, meta func() *objMeta) (*api.FileInfo, int64, error) {
	fw, aerr := g.create(ctx, bucket, p, ifReplaces)
	if aerr != nil {
		return nil, 0, aerr
	}
	sr := &srcReader{r: src}
	buf := copyBufs.Get().(*[]byte)
	n, err := io.CopyBuffer(fw, sr, *buf)
	copyBufs.Put(buf)
	if err != nil {
		fw.Abort()
		if sr.err != nil {
			var se *sigv4.Error
			if errors.As(sr.err, &se) {
				return nil, n, sr.err
			}
			return nil, n, errorf("IncompleteBody", http.StatusBadRequest, "reading the body: %v", sr.err)
		}
		return nil, n, err
	}
	fw.SetXAttrs(meta().xattrs())
	if err := fw.Close(); err != nil {
		if ifReplaces != 0 && errors.Is(err, sdk.ErrFailedPrecondition) {
			return nil, n, errorf("PreconditionFailed", http.StatusPreconditionFailed, "the object changed while it was written, and the write's condition no longer holds: %v", err)
		}
		if errors.Is(err, sdk.ErrNotFound) {
			// The bucket (or the directory the object was written in)
			// was removed meanwhile.
			return nil, n, errNoSuchBucketOrKey(bucket, err)
		}
		return nil, n, err
	}
	return fw.Info(), n, nil
}

// metaFromHeaders reads the headers S3 stores with an object.
func metaFromHeaders(h http.Header) *objMeta {
	m := &objMeta{
		ContentType:        h.Get("Content-Type"),
		ContentDisposition: h.Get("Content-Disposition"),
		ContentLanguage:    h.Get("Content-Language"),
		CacheControl:       h.Get("Cache-Control"),
		Expires:            h.Get("Expires"),
	}
	m.ContentEncoding = contentEncoding(h.Get("Content-Encoding"))
	for k, v := range h {
		if name, ok := strings.CutPrefix(strings.ToLower(k), "x-amz-meta-"); ok && len(v) > 0 {
			if m.Meta == nil {
				m.Meta = map[string]string{}
			}
			m.Meta[name] = decodeMetaValue(v[0])
		}
	}
	return m
}

// contentEncoding is the Content-Encoding an object keeps: as sent, less
// aws-chunked (the transfer's framing, not the object's encoding).
func contentEncoding(v string) string {
	var encs []string
	chunked := false
	for _, e := range strings.Split(v, ",") {
		switch e = strings.TrimSpace(e); {
		case strings.EqualFold(e, "aws-chunked"):
			chunked = true
		case e != "":
			encs = append(encs, e)
		}
	}
	if !chunked {
		return strings.TrimSpace(v)
	}
	return strings.Join(encs, ", ")
}

// A user metadata value that is not ASCII travels as an RFC 2047
// encoded-word, as AWS sends it: headers are ASCII on the wire, and
// clients decode header bytes in different ways.
var metaWords mime.WordDecoder

func decodeMetaValue(v string) string {
	if strings.HasPrefix(v, "=?") {
		if d, err := metaWords.DecodeHeader(v); err == nil {
			return d
		}
	}
	return v
}

func encodeMetaValue(v string) string {
	for i := 0; i < len(v); i++ {
		if v[i] >= 0x80 || v[i] < 0x20 && v[i] != '\t' {
			return mime.BEncoding.Encode("UTF-8", v)
		}
	}
	return v
}

func (q *request) putObject() {
	p, dir, aerr := objectPath(q.bucket, q.key)
	if aerr != nil {
		q.fail(aerr, nil)
		return
	}
	body, err := sigv4.NewBody(q.r, q.auth)
	if err != nil {
		q.fail(err, nil)
		return
	}
	ctx := q.r.Context()
	if dir {
		// A "folder" marker: an empty object whose key ends in "/".
		n, err := io.Copy(io.Discard, body)
		if err != nil {
			q.fail(err, nil)
			return
		}
		if n != 0 {
			q.fail(errInvalidArgument("the key %q ends in '/', which names a directory here: it cannot hold %d bytes", q.key, n), nil)
			return
		}
		if aerr := q.checkBucket(); aerr != nil {
			q.fail(aerr, nil)
			return
		}
		if _, err := q.g.c.Mkdir(ctx, p, sdk.MkdirOptions{Parents: true, WriteType: q.g.cfg.WriteType}); err != nil {
			if errors.Is(err, sdk.ErrAlreadyExists) || errors.Is(err, sdk.ErrFailedPrecondition) {
				q.fail(errorf("XAlluviumParentIsObject", http.StatusConflict, "%s or a parent of it is an object, so it cannot be a directory", p), nil)
				return
			}
			q.failObject(err)
			return
		}
		q.w.Header().Set("ETag", `"`+emptyETag+`"`)
		q.w.WriteHeader(http.StatusOK)
		return
	}
	ifReplaces, aerr := q.writeConditions(p)
	if aerr != nil {
		q.fail(aerr, nil)
		return
	}
	meta := metaFromHeaders(q.r.Header)
	_, n, err := q.g.write(ctx, q.bucket, p, body, ifReplaces, func() *objMeta {
		meta.ETag = hex.EncodeToString(body.MD5())
		meta.ChecksumAlgo, meta.Checksum = body.Checksum()
		return meta
	})
	q.in = n
	if err != nil {
		q.failObject(err)
		return
	}
	q.w.Header().Set("ETag", `"`+meta.ETag+`"`)
	if meta.ChecksumAlgo != "" {
		q.w.Header().Set("x-amz-checksum-"+meta.ChecksumAlgo, meta.Checksum)
	}
	q.w.WriteHeader(http.StatusOK)
}

// writeConditions applies a write's If-Match and If-None-Match (an ETag, a
// list of them, or *) to the object now at p: If-Match needs the object to
// exist (NoSuchKey) and match, If-None-Match that it does not. It returns
// what the write may replace when it completes (sdk.CreateOptions.
// IfReplaces): the object checked, or nothing — so an object changed
// between the check and the end of the write fails it too.
func (q *request) writeConditions(p string) (int64, *apiError) {
	im, inm := q.r.Header.Get("If-Match"), q.r.Header.Get("If-None-Match")
	if im == "" && inm == "" {
		return 0, nil
	}
	info, err := q.g.c.Stat(q.r.Context(), p)
	exists := err == nil && !info.GetFolder() && info.GetCompleted()
	if err != nil && !errors.Is(err, sdk.ErrNotFound) {
		return 0, toAPIError(err, nil)
	}
	etag := ""
	if exists {
		etag, _ = etagOf(info)
	}
	if im != "" {
		if !exists {
			return 0, errNoSuchKey(q.key)
		}
		if !etagMatches(im, etag) {
			return 0, errorf("PreconditionFailed", http.StatusPreconditionFailed, "the object's ETag %q does not match If-Match %s", etag, im)
		}
	}
	if inm != "" && exists && etagMatches(inm, etag) {
		return 0, errorf("PreconditionFailed", http.StatusPreconditionFailed, "the object exists with ETag %q (If-None-Match: %s)", etag, inm)
	}
	if !exists {
		return -1, nil
	}
	return info.GetFileId(), nil
}

// etagMatches reports whether an If-Match/If-None-Match list names etag
// (unquoted) or is *.
func etagMatches(list, etag string) bool {
	for _, t := range strings.Split(list, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || strings.Trim(t, `"`) == etag {
			return true
		}
	}
	return false
}

// statKey returns the path and file of the request's object key (a
// directory for a "dir/" key); when there is none it has answered the
// request, and ok is false.
func (q *request) statKey() (p string, dir bool, info *api.FileInfo, ok bool) {
	p, dir, aerr := objectPath(q.bucket, q.key)
	if aerr != nil {
		q.fail(aerr, nil)
		return "", false, nil, false
	}
	info, err := q.g.stat(q.r.Context(), p)
	if err != nil {
		q.failObject(err)
		return "", false, nil, false
	}
	if info.GetFolder() != dir || !dir && !info.GetCompleted() {
		q.fail(errNoSuchKey(q.key), nil)
		return "", false, nil, false
	}
	return p, dir, info, true
}

// preconditions applies If-Match, If-None-Match, If-Modified-Since and
// If-Unmodified-Since: 0 to go on, else the status to answer.
func preconditions(h http.Header, etag string, mod time.Time) int {
	mod = mod.Truncate(time.Second)
	match := func(list string) bool { return etagMatches(list, etag) }
	if v := h.Get("If-Match"); v != "" {
		if !match(v) {
			return http.StatusPreconditionFailed
		}
	} else if v := h.Get("If-Unmodified-Since"); v != "" {
		if t, err := http.ParseTime(v); err == nil && mod.After(t) {
			return http.StatusPreconditionFailed
		}
	}
	if v := h.Get("If-None-Match"); v != "" {
		if match(v) {
			return http.StatusNotModified
		}
	} else if v := h.Get("If-Modified-Since"); v != "" {
		if t, err := http.ParseTime(v); err == nil && !mod.After(t) {
			return http.StatusNotModified
		}
	}
	return 0
}

// parseRange reads a single "bytes=" range; ok is false for none (or one
// S3 ignores), and err is InvalidRange for one that cannot be satisfied.
func parseRange(h string, size int64) (start, length int64, ok bool, err *apiError) {
	spec, found := strings.CutPrefix(strings.TrimSpace(h), "bytes=")
	if !found || strings.Contains(spec, ",") {
		return 0, 0, false, nil
	}
	a, b, found := strings.Cut(spec, "-")
	if !found {
		return 0, 0, false, nil
	}
	invalid := errorf("InvalidRange", http.StatusRequestedRangeNotSatisfiable, "the range %q is not satisfiable for an object of %d bytes", h, size)
	a, b = strings.TrimSpace(a), strings.TrimSpace(b)
	if a == "" {
		n, e := strconv.ParseInt(b, 10, 64)
		if e != nil || n < 0 {
			return 0, 0, false, nil
		}
		if n == 0 {
			return 0, 0, false, invalid
		}
		n = min(n, size)
		return size - n, n, true, nil
	}
	s, e := strconv.ParseInt(a, 10, 64)
	if e != nil || s < 0 {
		return 0, 0, false, nil
	}
	end := size - 1
	if b != "" {
		x, e := strconv.ParseInt(b, 10, 64)
		if e != nil || x < s {
			return 0, 0, false, nil
		}
		end = min(x, size-1)
	}
	if s >= size {
		return 0, 0, false, invalid
	}
	return s, end - s + 1, true, nil
}

// partRange returns the byte range of part number pn of an object made of
// parts (nil: an object written whole, which is its own part 1).
func partRange(pn string, parts []objPart, size int64) (start, length int64, aerr *apiError) {
	n, err := strconv.Atoi(pn)
	if err != nil || n < 1 || n > maxParts {
		return 0, 0, errInvalidArgument("partNumber %q: want 1 to %d", pn, maxParts)
	}
	if len(parts) == 0 {
		if n != 1 {
			return 0, 0, errorf("InvalidPart", http.StatusBadRequest, "the object was not written by a multipart upload: its only part is 1, not %d", n)
		}
		return 0, size, nil
	}
	if n > len(parts) {
		return 0, 0, errorf("InvalidPart", http.StatusBadRequest, "the object has %d parts, not %d", len(parts), n)
	}
	for _, p := range parts[:n-1] {
		start += p.Size
	}
	return start, parts[n-1].Size, nil
}

func setObjectHeaders(h http.Header, key string, info *api.FileInfo, etag string, m *objMeta) {
	h.Set("ETag", `"`+etag+`"`)
	h.Set("Last-Modified", time.UnixMilli(info.GetLastModificationTimeMs()).UTC().Format(http.TimeFormat))
	h.Set("Accept-Ranges", "bytes")
	ct := ""
	if m != nil {
		ct = m.ContentType
		for k, v := range map[string]string{"Content-Encoding": m.ContentEncoding, "Content-Disposition": m.ContentDisposition,
			"Content-Language": m.ContentLanguage, "Cache-Control": m.CacheControl, "Expires": m.Expires} {
			if v != "" {
				h.Set(k, v)
			}
		}
		for k, v := range m.Meta {
			// As stored: lower case, not Go's canonical X-Amz-Meta-Key
			// (boto3 looks the key up as S3 sends it).
			h["x-amz-meta-"+k] = []string{encodeMetaValue(v)}
		}
	}
	if ct == "" {
		ct = mime.TypeByExtension(path.Ext(key))
	}
	if ct == "" {
		ct = "application/octet-stream"
	}
	h.Set("Content-Type", ct)
}

// getObject serves GetObject and HeadObject.
func (q *request) getObject() {
	p, dir, info, ok := q.statKey()
	if !ok {
		return
	}
	etag, meta := etagOf(info)
	h := q.w.Header()
	if st := preconditions(q.r.Header, etag, time.UnixMilli(info.GetLastModificationTimeMs())); st != 0 {
		if st == http.StatusPreconditionFailed {
			q.fail(errorf("PreconditionFailed", st, "at least one of the preconditions you specified did not hold"), nil)
			return
		}
		h.Set("ETag", `"`+etag+`"`)
		q.w.WriteHeader(st)
		return
	}
	size := info.GetLength()
	start, length, ranged, rerr := parseRange(q.r.Header.Get("Range"), size)
	if pn := q.r.URL.Query().Get("partNumber"); pn != "" {
		var parts []objPart
		if meta != nil {
			parts = meta.Parts
		}
		start, length, rerr = partRange(pn, parts, size)
		if rerr != nil {
			q.fail(rerr, nil)
			return
		}
		ranged = true
		if len(parts) > 0 {
			h.Set("x-amz-mp-parts-count", strconv.Itoa(len(parts)))
		}
	}
	if rerr != nil {
		// No object headers (checksums above all: botocore takes a
		// checksum on an error for a body to verify).
		h.Set("Content-Range", fmt.Sprintf("bytes */%d", size))
		q.fail(rerr, nil)
		return
	}
	setObjectHeaders(h, q.key, info, etag, meta)
	if !ranged && meta != nil && meta.ChecksumAlgo != "" && strings.EqualFold(q.r.Header.Get("X-Amz-Checksum-Mode"), "ENABLED") {
		h.Set("x-amz-checksum-"+meta.ChecksumAlgo, meta.Checksum)
	}
	v := q.r.URL.Query()
	for param, header := range map[string]string{"response-content-type": "Content-Type", "response-content-language": "Content-Language",
		"response-expires": "Expires", "response-cache-control": "Cache-Control", "response-content-disposition": "Content-Disposition",
		"response-content-encoding": "Content-Encoding"} {
		if s := v.Get(param); s != "" {
			h.Set(header, s)
		}
	}
	status := http.StatusOK
	if !ranged {
		start, length = 0, size
	} else {
		status = http.StatusPartialContent
		if length > 0 {
			h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, start+length-1, size))
		}
	}
	h.Set("Content-Length", strconv.FormatInt(length, 10))
	if q.r.Method == http.MethodHead || dir || length == 0 {
		q.w.WriteHeader(status)
		return
	}
	fr, err := q.g.c.Open(q.r.Context(), p, sdk.OpenOptions{})
	if err != nil {
		h.Del("Content-Length")
		q.failObject(err)
		return
	}
	defer fr.Close()
	q.w.WriteHeader(status)
	var n int64
	if ranged {
		if _, err = fr.Seek(start, io.SeekStart); err == nil {
			n, err = io.CopyN(q.w, fr, length)
		}
	} else {
		n, err = io.Copy(q.w, fr)
	}
	q.out = n
	if err != nil {
		// The status is out; cutting the body short tells the client.
		q.g.log.Debug("GetObject cut short: " + err.Error())
	}
}

// deleteCond is what a delete is conditional on: the object's ETag, last
// modification time and size (each unset: any).
type deleteCond struct {
	etag    string
	modTime *time.Time
	size    *int64
}

func (c deleteCond) none() bool { return c.etag == "" && c.modTime == nil && c.size == nil }

// deleteCondFromHeaders reads DeleteObject's If-Match,
// x-amz-if-match-last-modified-time and x-amz-if-match-size.
func deleteCondFromHeaders(h http.Header) (deleteCond, *apiError) {
	c := deleteCond{etag: h.Get("If-Match")}
	if v := h.Get("X-Amz-If-Match-Last-Modified-Time"); v != "" {
		t, err := http.ParseTime(v)
		if err != nil {
			if t, err = time.Parse(time.RFC3339, v); err != nil {
				return c, errInvalidArgument("x-amz-if-match-last-modified-time %q is not a date", v)
			}
		}
		c.modTime = &t
	}
	if v := h.Get("X-Amz-If-Match-Size"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return c, errInvalidArgument("x-amz-if-match-size %q is not a size", v)
		}
		c.size = &n
	}
	return c, nil
}

// check returns PreconditionFailed unless the object (file info, ETag
// etag) meets c.
func (c deleteCond) check(key string, info *api.FileInfo, etag string) *apiError {
	pf := func(what string) *apiError {
		return errorf("PreconditionFailed", http.StatusPreconditionFailed, "the object %q does not match the delete's condition on its %s", key, what)
	}
	switch {
	case c.etag != "" && !etagMatches(c.etag, etag):
		return pf("ETag")
	case c.modTime != nil && !time.UnixMilli(info.GetLastModificationTimeMs()).Truncate(time.Second).Equal(c.modTime.Truncate(time.Second)):
		return pf("last modification time")
	case c.size != nil && *c.size != info.GetLength():
		return pf("size")
	}
	return nil
}

// deleteObject removes a key; a missing key is not an error (S3), whatever
// the delete's conditions.
func (q *request) deleteObject() {
	if v := q.r.URL.Query().Get("versionId"); v != "" && v != "null" {
		q.fail(errNoSuchVersion(v), nil)
		return
	}
	cond, aerr := deleteCondFromHeaders(q.r.Header)
	if aerr != nil {
		q.fail(aerr, nil)
		return
	}
	if aerr := q.removeKey(q.r.Context(), q.key, cond); aerr != nil {
		q.fail(aerr, nil)
		return
	}
	q.w.WriteHeader(http.StatusNoContent)
}

// removeKey deletes the object of key and then the directories its
// removal left empty, up to the bucket — in S3 a prefix exists only while
// keys have it.
func (q *request) removeKey(ctx context.Context, key string, cond deleteCond) *apiError {
	p, dir, aerr := objectPath(q.bucket, key)
	if aerr != nil {
		return aerr
	}
	bp, _ := q.bucketPath()
	info, err := q.g.c.Stat(ctx, p)
	switch {
	case errors.Is(err, sdk.ErrNotFound):
		if aerr := q.checkBucket(); aerr != nil {
			return aerr
		}
		return nil
	case err != nil:
		return toAPIError(err, nil)
	case info.GetFolder() != dir:
		return nil // the key names no object
	}
	if !cond.none() {
		etag, _ := etagOf(info)
		if aerr := cond.check(key, info, etag); aerr != nil {
			return aerr
		}
	}
	err = q.g.c.Delete(ctx, p, sdk.DeleteOptions{})
	if dir && (errors.Is(err, sdk.ErrFailedPrecondition) || errors.Is(err, sdk.ErrAlreadyExists)) {
		return nil // a marker of a directory that holds objects: they stay
	}
	if err != nil && !errors.Is(err, sdk.ErrNotFound) {
		return toAPIError(err, nil)
	}
	q.g.removeEmptyParents(ctx, bp, p)
	return nil
}

// removeEmptyParents removes the directories above p, up to the bucket bp,
// that hold nothing now: in S3 a prefix exists only while keys have it.
// Never a directory a PUT or an upload is writing in (that write would go
// with it).
func (g *Gateway) removeEmptyParents(ctx context.Context, bp, p string) {
	for d := path.Dir(p); d != bp && d != "/" && d != "."; d = path.Dir(d) {
		if g.c.Delete(ctx, d, sdk.DeleteOptions{UnlessWriting: true}) != nil {
			break
		}
	}
}

type deleteRequest struct {
	XMLName xml.Name `xml:"Delete"`
	Quiet   bool     `xml:"Quiet"`
	Objects []struct {
		Key              string `xml:"Key"`
		VersionID        string `xml:"VersionId"`
		ETag             string `xml:"ETag"`
		LastModifiedTime string `xml:"LastModifiedTime"`
		Size             *int64 `xml:"Size"`
	} `xml:"Object"`
}

type deleteResult struct {
	XMLName xml.Name        `xml:"DeleteResult"`
	NS      string          `xml:"xmlns,attr"`
	Deleted []deletedObject `xml:"Deleted"`
	Errors  []deleteError   `xml:"Error"`
}

type deletedObject struct {
	Key string `xml:"Key"`
}

type deleteError struct {
	Key     string `xml:"Key"`
	Code    string `xml:"Code"`
	Message string `xml:"Message"`
}

// readXMLBody reads a small XML request body through the digest checks.
func (q *request) readXMLBody(v any, limit int64) *apiError {
	body, err := sigv4.NewBody(q.r, q.auth)
	if err != nil {
		return toAPIError(err, nil)
	}
	b, err := io.ReadAll(io.LimitReader(body, limit+1))
	if err != nil {
		return toAPIError(err, nil)
	}
	if int64(len(b)) > limit {
		return errorf("MalformedXML", http.StatusBadRequest, "the request body is larger than %d bytes", limit)
	}
	if err := xml.Unmarshal(b, v); err != nil {
		return errMalformedXML(err)
	}
	return nil
}

func (q *request) deleteObjects() {
	var req deleteRequest
	if aerr := q.readXMLBody(&req, 2<<20); aerr != nil {
		q.fail(aerr, nil)
		return
	}
	if len(req.Objects) == 0 || len(req.Objects) > 1000 {
		q.fail(errMalformedXML(fmt.Errorf("%d objects: want 1 to 1000", len(req.Objects))), nil)
		return
	}
	if aerr := q.checkBucket(); aerr != nil {
		q.fail(aerr, nil)
		return
	}
	res := deleteResult{NS: xmlNS}
	for _, o := range req.Objects {
		cond := deleteCond{etag: o.ETag, size: o.Size}
		if o.LastModifiedTime != "" {
			t, err := time.Parse(time.RFC3339, o.LastModifiedTime)
			if err != nil {
				res.Errors = append(res.Errors, deleteError{Key: o.Key, Code: "InvalidArgument", Message: fmt.Sprintf("LastModifiedTime %q is not a date", o.LastModifiedTime)})
				continue
			}
			cond.modTime = &t
		}
		if o.VersionID != "" && o.VersionID != "null" {
			ae := errNoSuchVersion(o.VersionID)
			res.Errors = append(res.Errors, deleteError{Key: o.Key, Code: ae.Code, Message: ae.Message})
			continue
		}
		if aerr := q.removeKey(q.r.Context(), o.Key, cond); aerr != nil {
			res.Errors = append(res.Errors, deleteError{Key: o.Key, Code: aerr.Code, Message: aerr.Message})
			continue
		}
		if !req.Quiet {
			res.Deleted = append(res.Deleted, deletedObject{Key: o.Key})
		}
	}
	writeXML(q.w, http.StatusOK, res)
}

// copySource parses x-amz-copy-source: "/bucket/key" or "bucket/key",
// URL-encoded, maybe with "?versionId=null".
func copySource(h string) (bucket, key string, aerr *apiError) {
	src, version, _ := strings.Cut(h, "?")
	if version != "" && version != "versionId=null" {
		return "", "", errNotImplemented("copying a version")
	}
	s, err := url.PathUnescape(src)
	if err != nil {
		return "", "", errInvalidArgument("x-amz-copy-source %q: %v", h, err)
	}
	s = strings.TrimPrefix(s, "/")
	bucket, key, ok := strings.Cut(s, "/")
	if !ok || bucket == "" || key == "" {
		return "", "", errInvalidArgument("x-amz-copy-source %q: want /bucket/key", h)
	}
	return bucket, key, nil
}

type copyObjectResult struct {
	XMLName      xml.Name `xml:"CopyObjectResult"`
	NS           string   `xml:"xmlns,attr"`
	LastModified string   `xml:"LastModified"`
	ETag         string   `xml:"ETag"`
}

// copyPreconditions applies the x-amz-copy-source-if-* headers.
func copyPreconditions(h http.Header, etag string, mod time.Time) *apiError {
	ch := http.Header{}
	for _, k := range []string{"Match", "None-Match", "Modified-Since", "Unmodified-Since"} {
		if v := h.Get("X-Amz-Copy-Source-If-" + k); v != "" {
			ch.Set("If-"+k, v)
		}
	}
	if preconditions(ch, etag, mod) != 0 {
		return errorf("PreconditionFailed", http.StatusPreconditionFailed, "at least one of the copy-source preconditions you specified did not hold")
	}
	return nil
}

// openSource stats and checks the source of a copy.
func (q *request) openSource() (srcPath string, info *api.FileInfo, etag string, meta *objMeta, aerr *apiError) {
	sb, sk, aerr := copySource(q.r.Header.Get("X-Amz-Copy-Source"))
	if aerr != nil {
		return "", nil, "", nil, aerr
	}
	srcPath, sdir, aerr := objectPath(sb, sk)
	if aerr != nil {
		return "", nil, "", nil, aerr
	}
	if sdir {
		return "", nil, "", nil, errInvalidArgument("the copy source %q is a directory marker", sk)
	}
	info, err := q.g.stat(q.r.Context(), srcPath)
	if err != nil || info.GetFolder() || !info.GetCompleted() {
		if err != nil && !errors.Is(err, sdk.ErrNotFound) {
			return "", nil, "", nil, toAPIError(err, nil)
		}
		if _, err := q.g.c.Stat(q.r.Context(), "/"+sb); err != nil {
			return "", nil, "", nil, errNoSuchBucket(sb)
		}
		return "", nil, "", nil, errNoSuchKey(sk)
	}
	etag, meta = etagOf(info)
	if aerr := copyPreconditions(q.r.Header, etag, time.UnixMilli(info.GetLastModificationTimeMs())); aerr != nil {
		return "", nil, "", nil, aerr
	}
	return srcPath, info, etag, meta, nil
}

func (q *request) copyObject() {
	dst, ddir, aerr := objectPath(q.bucket, q.key)
	if aerr != nil {
		q.fail(aerr, nil)
		return
	}
	if ddir {
		q.fail(errInvalidArgument("the destination %q is a directory marker", q.key), nil)
		return
	}
	srcPath, info, etag, srcMeta, aerr := q.openSource()
	if aerr != nil {
		q.fail(aerr, nil)
		return
	}
	replace := strings.EqualFold(q.r.Header.Get("X-Amz-Metadata-Directive"), "REPLACE")
	var meta *objMeta
	if replace {
		meta = metaFromHeaders(q.r.Header)
	} else if srcMeta != nil {
		c := *srcMeta
		meta = &c
	} else {
		meta = &objMeta{}
	}
	ctx := q.r.Context()
	if srcPath == dst {
		if !replace {
			q.fail(errorf("InvalidRequest", http.StatusBadRequest, "this copy request is illegal because it is trying to copy an object to itself without changing the object's metadata"), nil)
			return
		}
		meta.ETag = etag
		if srcMeta != nil {
			meta.ChecksumAlgo, meta.Checksum = srcMeta.ChecksumAlgo, srcMeta.Checksum
			meta.Parts, meta.PartsCount, meta.UploadID = srcMeta.Parts, srcMeta.PartsCount, srcMeta.UploadID
		}
		// The same bytes with new metadata: only if the object is still
		// the one whose ETag was read.
		out, err := q.g.c.SetAttribute(ctx, &api.SetAttributeRequest{Path: dst, FileId: info.GetFileId(), Xattrs: meta.xattrs()})
		if err != nil {
			q.failObject(err)
			return
		}
		writeXML(q.w, http.StatusOK, copyObjectResult{NS: xmlNS, LastModified: isoTime(out.GetLastModificationTimeMs()), ETag: `"` + etag + `"`})
		return
	}
	fr, err := q.g.c.Open(ctx, srcPath, sdk.OpenOptions{})
	if err != nil {
		q.fail(err, errNoSuchKey(srcPath))
		return
	}
	defer fr.Close()
	h := md5.New()
	out, _, err := q.g.write(ctx, q.bucket, dst, io.TeeReader(fr, h), 0, func() *objMeta {
		// A copy is one object written whole: its ETag is its MD5 and it
		// has no parts (S3 does the same).
		meta.ETag = hex.EncodeToString(h.Sum(nil))
		meta.Parts, meta.PartsCount, meta.UploadID = nil, 0, ""
		return meta
	})
	if err != nil {
		q.failObject(err)
		return
	}
	writeXML(q.w, http.StatusOK, copyObjectResult{NS: xmlNS, LastModified: isoTime(out.GetLastModificationTimeMs()), ETag: `"` + meta.ETag + `"`})
}

// copySourceRange reads x-amz-copy-source-range: "bytes=first-last", both
// given and inside the source (S3 does not clamp it).
func copySourceRange(rg string, size int64) (start, length int64, aerr *apiError) {
	invalid := errorf("InvalidRange", http.StatusRequestedRangeNotSatisfiable, "x-amz-copy-source-range %q is not a range of the %d-byte source", rg, size)
	spec, ok := strings.CutPrefix(strings.TrimSpace(rg), "bytes=")
	if !ok {
		return 0, 0, errInvalidArgument("x-amz-copy-source-range %q: want bytes=first-last", rg)
	}
	a, b, ok := strings.Cut(spec, "-")
	first, err1 := strconv.ParseInt(strings.TrimSpace(a), 10, 64)
	last, err2 := strconv.ParseInt(strings.TrimSpace(b), 10, 64)
	if !ok || err1 != nil || err2 != nil || first < 0 || last < first {
		return 0, 0, errInvalidArgument("x-amz-copy-source-range %q: want bytes=first-last", rg)
	}
	if last >= size {
		return 0, 0, invalid
	}
	return first, last - first + 1, nil
}
