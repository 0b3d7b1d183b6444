package s3

import (
	"encoding/xml"
	"errors"
	"net/http"
	"regexp"
	"time"

	"github.com/alluvium/alluvium/sdk"
)

const timeFormat = "2006-01-02T15:04:05.000Z"

func isoTime(ms int64) string { return time.UnixMilli(ms).UTC().Format(timeFormat) }

type owner struct {
	ID          string `xml:"ID"`
	DisplayName string `xml:"DisplayName"`
}

type listAllMyBucketsResult struct {
	XMLName xml.Name     `xml:"ListAllMyBucketsResult"`
	NS      string       `xml:"xmlns,attr"`
	Owner   owner        `xml:"Owner"`
	Buckets []bucketInfo `xml:"Buckets>Bucket"`
}

type bucketInfo struct {
	Name         string `xml:"Name"`
	CreationDate string `xml:"CreationDate"`
}

// listBuckets lists the top-level directories.
func (q *request) listBuckets() {
	out := listAllMyBucketsResult{NS: xmlNS, Owner: owner{ID: q.auth.AccessKey, DisplayName: q.auth.AccessKey}, Buckets: []bucketInfo{}}
	for info, err := range q.g.c.List(q.r.Context(), "/", sdk.ListOptions{}) {
		if err != nil {
			q.fail(err, nil)
			return
		}
		if !info.GetFolder() {
			continue
		}
		if _, aerr := bucketPath(info.GetName()); aerr != nil {
			continue
		}
		out.Buckets = append(out.Buckets, bucketInfo{Name: info.GetName(), CreationDate: isoTime(info.GetCreationTimeMs())})
	}
	writeXML(q.w, http.StatusOK, out)
}

// validBucketName is S3's rule for new buckets: 3-63 lower-case letters,
// digits, dots and hyphens, starting and ending with a letter or digit.
var validBucketName = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

func (q *request) createBucket() {
	if !validBucketName.MatchString(q.bucket) {
		q.fail(errorf("InvalidBucketName", http.StatusBadRequest, "the bucket name %q is not valid: 3-63 lower-case letters, digits, '.' and '-'", q.bucket), nil)
		return
	}
	bp, aerr := q.bucketPath()
	if aerr != nil {
		q.fail(aerr, nil)
		return
	}
	// The body (CreateBucketConfiguration) names a region; any will do.
	_, err := q.g.c.Mkdir(q.r.Context(), bp, sdk.MkdirOptions{WriteType: q.g.cfg.WriteType})
	if errors.Is(err, sdk.ErrAlreadyExists) {
		q.fail(errorf("BucketAlreadyOwnedByYou", http.StatusConflict, "the bucket %q exists already", q.bucket), nil)
		return
	}
	if err != nil {
		q.fail(err, nil)
		return
	}
	q.w.Header().Set("Location", "/"+q.bucket)
	q.w.WriteHeader(http.StatusOK)
}

func (q *request) deleteBucket() {
	bp, aerr := q.bucketPath()
	if aerr != nil {
		q.fail(aerr, nil)
		return
	}
	if aerr := q.checkBucket(); aerr != nil {
		q.fail(aerr, nil)
		return
	}
	err := q.g.c.Delete(q.r.Context(), bp, sdk.DeleteOptions{})
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

func (q *request) headBucket() {
	if aerr := q.checkBucket(); aerr != nil {
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
	if aerr := q.checkBucket(); aerr != nil {
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
	if aerr := q.checkBucket(); aerr != nil {
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

// getACL answers GetBucketAcl/GetObjectAcl with the one grant there is:
// the caller has full control.
func (q *request) getACL() {
	if q.key == "" {
		if aerr := q.checkBucket(); aerr != nil {
			q.fail(aerr, nil)
			return
		}
	} else {
		p, _, aerr := objectPath(q.bucket, q.key)
		if aerr != nil {
			q.fail(aerr, nil)
			return
		}
		if _, err := q.g.stat(q.r.Context(), p); err != nil {
			q.fail(err, q.notFoundErr())
			return
		}
	}
	o := owner{ID: q.auth.AccessKey, DisplayName: q.auth.AccessKey}
	writeXML(q.w, http.StatusOK, accessControlPolicy{NS: xmlNS, Owner: o, Grants: []grant{{
		Grantee:    grantee{XMLNSXSI: "http://www.w3.org/2001/XMLSchema-instance", Type: "CanonicalUser", ID: o.ID, DisplayName: o.DisplayName},
		Permission: "FULL_CONTROL",
	}}})
}
