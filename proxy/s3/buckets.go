package s3

import (
	"bytes"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/alluvium/alluvium/proxy/sigv4"
	"github.com/alluvium/alluvium/sdk"
)

const timeFormat = "2006-01-02T15:04:05.000Z"

func isoTime(ms int64) string { return time.UnixMilli(ms).UTC().Format(timeFormat) }

type owner struct {
	ID          string `xml:"ID"`
	DisplayName string `xml:"DisplayName"`
}

type listAllMyBucketsResult struct {
	XMLName           xml.Name     `xml:"ListAllMyBucketsResult"`
	NS                string       `xml:"xmlns,attr"`
	Owner             owner        `xml:"Owner"`
	Buckets           []bucketInfo `xml:"Buckets>Bucket"`
	ContinuationToken string       `xml:"ContinuationToken,omitempty"`
	Prefix            string       `xml:"Prefix,omitempty"`
}

type bucketInfo struct {
	Name         string `xml:"Name"`
	CreationDate string `xml:"CreationDate"`
	BucketRegion string `xml:"BucketRegion,omitempty"`
}

// ownerOf is the S3 owner of what q's caller creates: the cluster user, or
// the access key for the gateway's own identity.
func (q *request) owner() owner {
	id := q.user
	if id == "" {
		id = q.auth.AccessKey
	}
	return owner{ID: id, DisplayName: id}
}

// listBuckets lists the caller's buckets: the top-level directories the
// cluster user owns (every one for the gateway's own identity), in name
// order, max-buckets at a time.
func (q *request) listBuckets() {
	v := q.r.URL.Query()
	maxB := 10000
	if s := v.Get("max-buckets"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 10000 {
			q.fail(errInvalidArgument("max-buckets %q: want 1 to 10000", s), nil)
			return
		}
		maxB = n
	}
	after := ""
	if tok := v.Get("continuation-token"); tok != "" {
		b, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil {
			q.fail(errInvalidArgument("the continuation token %q is not valid", tok), nil)
			return
		}
		after = string(b)
	}
	prefix := v.Get("prefix")
	out := listAllMyBucketsResult{NS: xmlNS, Owner: q.owner(), Buckets: []bucketInfo{}, Prefix: prefix}
	for info, err := range q.g.c.ListFrom(q.sys, "/", sdk.ListFromOptions{After: after, PageSize: 1000}) {
		if err != nil {
			q.fail(err, nil)
			return
		}
		name := info.GetName()
		if !info.GetFolder() || name <= after || !strings.HasPrefix(name, prefix) || (q.user != "" && info.GetOwner() != q.user) {
			continue
		}
		if _, aerr := bucketPath(name); aerr != nil {
			continue
		}
		if len(out.Buckets) == maxB {
			out.ContinuationToken = base64.RawURLEncoding.EncodeToString([]byte(out.Buckets[maxB-1].Name))
			break
		}
		out.Buckets = append(out.Buckets, bucketInfo{Name: name, CreationDate: isoTime(info.GetCreationTimeMs()), BucketRegion: q.g.cfg.Region})
	}
	writeXML(q.w, http.StatusOK, out)
}

// validBucketName is S3's rule for new buckets: 3-63 lower-case letters,
// digits, dots and hyphens, starting and ending with a letter or digit,
// with no two dots (or a dot and a hyphen) side by side, not an IPv4
// address, and none of the prefixes and suffixes AWS reserves.
func validBucketName(b string) error {
	switch {
	case len(b) < 3 || len(b) > 63:
		return fmt.Errorf("a bucket name has 3 to 63 characters, not %d", len(b))
	case !bucketNameChars.MatchString(b):
		return fmt.Errorf("a bucket name has lower-case letters, digits, '.' and '-' only, and starts and ends with a letter or digit")
	case strings.Contains(b, "..") || strings.Contains(b, ".-") || strings.Contains(b, "-."):
		return fmt.Errorf("a bucket name has no \"..\", \".-\" or \"-.\"")
	case net.ParseIP(b) != nil:
		return fmt.Errorf("a bucket name is not an IP address")
	case strings.HasPrefix(b, "xn--") || strings.HasPrefix(b, "sthree-") || strings.HasSuffix(b, "-s3alias") || strings.HasSuffix(b, "--ol-s3"):
		return fmt.Errorf("the prefixes xn-- and sthree- and the suffixes -s3alias and --ol-s3 are reserved")
	}
	return nil
}

var bucketNameChars = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]*[a-z0-9]$`)

// bucketMode is the mode of a new bucket: private to its owner, as S3
// buckets are until granted (here: chmod in the namespace).
const bucketMode = 0o700

// createBucket makes the bucket's directory, owned by the caller. The
// caller may not be allowed to create top-level directories, so the
// gateway creates it for the user (as a superuser asking for that owner,
// in one step). Re-creating one's own bucket succeeds in us-east-1 and is
// BucketAlreadyOwnedByYou elsewhere, as on AWS; another user's bucket is
// BucketAlreadyExists.
func (q *request) createBucket() {
	if err := validBucketName(q.bucket); err != nil {
		q.fail(errorf("InvalidBucketName", http.StatusBadRequest, "the bucket name %q is not valid: %v", q.bucket, err), nil)
		return
	}
	bp, aerr := q.bucketPath()
	if aerr != nil {
		q.fail(aerr, nil)
		return
	}
	if aerr := q.readCreateBucketConfig(); aerr != nil {
		q.fail(aerr, nil)
		return
	}
	me := q.owner().ID
	_, err := q.g.c.Mkdir(q.sys, bp, sdk.MkdirOptions{WriteType: q.g.cfg.WriteType, Mode: bucketMode, Owner: q.user})
	if errors.Is(err, sdk.ErrAlreadyExists) {
		info, serr := q.g.c.Stat(q.sys, bp)
		switch {
		case serr != nil || !info.GetFolder() || q.user != "" && info.GetOwner() != q.user:
			q.fail(errorf("BucketAlreadyExists", http.StatusConflict, "the bucket %q exists and belongs to someone else (bucket names are shared by every user)", q.bucket), nil)
		case q.g.cfg.Region != "us-east-1":
			q.fail(errorf("BucketAlreadyOwnedByYou", http.StatusConflict, "the bucket %q exists already and is yours (%s)", q.bucket, me), nil)
		default:
			q.w.Header().Set("Location", "/"+q.bucket)
			q.w.WriteHeader(http.StatusOK)
		}
		return
	}
	if err != nil {
		q.fail(err, nil)
		return
	}
	q.w.Header().Set("Location", "/"+q.bucket)
	q.w.WriteHeader(http.StatusOK)
}

type createBucketConfiguration struct {
	XMLName            xml.Name `xml:"CreateBucketConfiguration"`
	LocationConstraint string   `xml:"LocationConstraint"`
}

// readCreateBucketConfig reads (and checks the digests of) the optional
// CreateBucketConfiguration. Its region is not checked: there is one.
func (q *request) readCreateBucketConfig() *apiError {
	if q.r.ContentLength == 0 {
		return nil
	}
	var c createBucketConfiguration
	body, err := sigv4.NewBody(q.r, q.auth)
	if err != nil {
		return toAPIError(err, nil)
	}
	b, err := io.ReadAll(io.LimitReader(body, 64<<10+1))
	if err != nil {
		return toAPIError(err, nil)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	if len(b) > 64<<10 {
		return errMalformedXML(fmt.Errorf("the CreateBucketConfiguration is larger than 64 KiB"))
	}
	if err := xml.Unmarshal(b, &c); err != nil {
		return errMalformedXML(err)
	}
	return nil
}

func (q *request) deleteBucket() {
	bp, aerr := q.bucketPath()
	if aerr != nil {
		q.fail(aerr, nil)
		return
	}
	info, err := q.g.stat(q.r.Context(), bp)
	if err != nil || !info.GetFolder() {
		if err == nil || errors.Is(err, sdk.ErrNotFound) {
			q.fail(errNoSuchBucket(q.bucket), nil)
			return
		}
		q.fail(err, nil)
		return
	}
	// Like creating it, removing a bucket changes the top level, where
	// users may not write: the gateway removes it for its owner.
	if q.user != "" && info.GetOwner() != q.user {
		q.fail(errorf("AccessDenied", http.StatusForbidden, "the bucket %q belongs to %s; only its owner may delete it", q.bucket, info.GetOwner()), nil)
		return
	}
	err = q.g.c.Delete(q.sys, bp, sdk.DeleteOptions{})
	if errors.Is(err, sdk.ErrFailedPrecondition) && q.dropUploads(bp) {
		err = q.g.c.Delete(q.sys, bp, sdk.DeleteOptions{})
	}
	if errors.Is(err, sdk.ErrFailedPrecondition) || errors.Is(err, sdk.ErrAlreadyExists) {
		q.fail(errorf("BucketNotEmpty", http.StatusConflict, "the bucket %q is not empty", q.bucket), nil)
		return
	}
	if err != nil {
		q.fail(err, errNoSuchBucket(q.bucket))
		return
	}
	q.w.WriteHeader(http.StatusNoContent)
}

// dropUploads aborts the multipart uploads in flight in bucket directory
// bp when it holds no object, and says whether it aborted any. S3 deletes
// a bucket whose only content is uploads in flight (they are not objects),
// and they go with it; here their parts written in place sit in the
// bucket's UFS directory, which a non-recursive delete will not remove
// while it holds anything.
func (q *request) dropUploads(bp string) bool {
	for range q.g.c.List(q.sys, bp, sdk.ListOptions{PageSize: 1}) {
		return false // an object, or a listing that failed: not empty
	}
	ups, err := q.g.c.Uploads(q.sys, bp)
	if err != nil || len(ups) == 0 {
		return false
	}
	for _, u := range ups {
		if err := q.g.c.AbortUpload(q.sys, u.GetPath(), u.GetFileId()); err != nil && !errors.Is(err, sdk.ErrNotFound) {
			q.g.log.Warn("delete bucket: aborting an upload in flight failed", zap.String("bucket", q.bucket), zap.String("path", u.GetPath()), zap.Error(err))
		}
	}
	return true
}

func (q *request) headBucket() {
	if aerr := q.checkBucketAccess(); aerr != nil {
		q.fail(aerr, nil)
		return
	}
	q.w.Header().Set("x-amz-bucket-region", q.g.cfg.Region)
	q.w.WriteHeader(http.StatusOK)
}

type locationConstraint struct {
	XMLName xml.Name `xml:"LocationConstraint"`
	NS      string   `xml:"xmlns,attr"`
	Value   string   `xml:",chardata"`
}

func (q *request) bucketLocation() {
	if aerr := q.checkBucketAccess(); aerr != nil {
		q.fail(aerr, nil)
		return
	}
	loc := q.g.cfg.Region
	if loc == "us-east-1" {
		loc = "" // S3 reports the default region as empty
	}
	writeXML(q.w, http.StatusOK, locationConstraint{NS: xmlNS, Value: loc})
}

type versioningConfiguration struct {
	XMLName xml.Name `xml:"VersioningConfiguration"`
	NS      string   `xml:"xmlns,attr"`
}

func (q *request) bucketVersioning() {
	if aerr := q.checkBucketAccess(); aerr != nil {
		q.fail(aerr, nil)
		return
	}
	writeXML(q.w, http.StatusOK, versioningConfiguration{NS: xmlNS})
}

type accessControlPolicy struct {
	XMLName xml.Name `xml:"AccessControlPolicy"`
	NS      string   `xml:"xmlns,attr"`
	Owner   owner    `xml:"Owner"`
	Grants  []grant  `xml:"AccessControlList>Grant"`
}

type grant struct {
	Grantee    grantee `xml:"Grantee"`
	Permission string  `xml:"Permission"`
}

type grantee struct {
	XMLNSXSI    string `xml:"xmlns:xsi,attr"`
	Type        string `xml:"xsi:type,attr"`
	ID          string `xml:"ID"`
	DisplayName string `xml:"DisplayName"`
}

// putACL accepts the one ACL there is — private, the owner's full control
// — as a canned ACL (x-amz-acl: private, no grant headers, no body) on a
// bucket or object that exists; any other ACL is NotImplemented: access is
// granted in the namespace (chmod, chown), not with S3 ACLs.
func (q *request) putACL() {
	for k := range q.r.Header {
		if strings.HasPrefix(strings.ToLower(k), "x-amz-grant-") {
			q.fail(errNotImplemented("ACL grants ("+k+")"), nil)
			return
		}
	}
	if acl := q.r.Header.Get("X-Amz-Acl"); acl != "private" || q.r.ContentLength > 0 {
		q.fail(errNotImplemented("ACLs other than the canned \"private\" (objects are private to their owner; grant access with chmod in the namespace)"), nil)
		return
	}
	if aerr := q.aclTarget(); aerr != nil {
		q.fail(aerr, nil)
		return
	}
	q.w.WriteHeader(http.StatusOK)
}

// aclTarget checks that the bucket or object an ACL call names exists.
func (q *request) aclTarget() *apiError {
	if q.key == "" {
		return q.checkBucketAccess()
	}
	p, _, aerr := objectPath(q.bucket, q.key)
	if aerr != nil {
		return aerr
	}
	if _, err := q.g.stat(q.r.Context(), p); err != nil {
		if errors.Is(err, sdk.ErrNotFound) {
			return q.notFoundErr()
		}
		return toAPIError(err, nil)
	}
	return nil
}

// getACL answers GetBucketAcl/GetObjectAcl with the one grant there is:
// the owner has full control.
func (q *request) getACL() {
	if aerr := q.aclTarget(); aerr != nil {
		q.fail(aerr, nil)
		return
	}
	o := q.owner()
	writeXML(q.w, http.StatusOK, accessControlPolicy{NS: xmlNS, Owner: o, Grants: []grant{{
		Grantee:    grantee{XMLNSXSI: "http://www.w3.org/2001/XMLSchema-instance", Type: "CanonicalUser", ID: o.ID, DisplayName: o.DisplayName},
		Permission: "FULL_CONTROL",
	}}})
}
