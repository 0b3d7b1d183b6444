package s3

import (
	"encoding/xml"
	"net/http"
)

// Buckets are not versioned: each object has the one version "null".
// ListObjectVersions lists every object so (as S3 does for a bucket that
// never had versioning), so tools that clean a bucket version by version
// (s3-tests, `aws s3api`, rclone --s3-versions) work.

type listVersionsResult struct {
	XMLName             xml.Name       `xml:"ListVersionsResult"`
	NS                  string         `xml:"xmlns,attr"`
	Name                string         `xml:"Name"`
	Prefix              string         `xml:"Prefix"`
	KeyMarker           string         `xml:"KeyMarker"`
	VersionIDMarker     string         `xml:"VersionIdMarker"`
	NextKeyMarker       string         `xml:"NextKeyMarker,omitempty"`
	NextVersionIDMarker string         `xml:"NextVersionIdMarker,omitempty"`
	MaxKeys             int            `xml:"MaxKeys"`
	Delimiter           string         `xml:"Delimiter,omitempty"`
	EncodingType        string         `xml:"EncodingType,omitempty"`
	IsTruncated         bool           `xml:"IsTruncated"`
	Versions            []version      `xml:"Version"`
	CommonPrefixes      []commonPrefix `xml:"CommonPrefixes"`
}

type version struct {
	Key          string `xml:"Key"`
	VersionID    string `xml:"VersionId"`
	IsLatest     bool   `xml:"IsLatest"`
	LastModified string `xml:"LastModified"`
	ETag         string `xml:"ETag"`
	Size         int64  `xml:"Size"`
	StorageClass string `xml:"StorageClass"`
	Owner        owner  `xml:"Owner"`
}

// nullVersion is the id of an object's only version.
const nullVersion = "null"

func (q *request) listObjectVersions() {
	v := q.r.URL.Query()
	lq, enc, encode, aerr := listParams(v)
	if aerr != nil {
		q.fail(aerr, nil)
		return
	}
	// After key-marker's "null" version (its only one) is after the key.
	lq.after = v.Get("key-marker")
	vm := v.Get("version-id-marker")
	switch {
	case vm != "" && lq.after == "":
		q.fail(errInvalidArgument("version-id-marker needs key-marker"), nil)
		return
	case vm != "" && vm != nullVersion:
		q.fail(errInvalidArgument("version-id-marker %q: every object's only version is %q", vm, nullVersion), nil)
		return
	}
	res := listVersionsResult{NS: xmlNS, Name: q.bucket, Prefix: encode(lq.prefix), KeyMarker: encode(lq.after),
		VersionIDMarker: vm, MaxKeys: lq.maxKeys, Delimiter: encode(lq.delim), EncodingType: enc}
	entries, truncated, aerr := q.listPage(lq)
	if aerr != nil {
		q.fail(aerr, nil)
		return
	}
	res.IsTruncated = truncated
	etags := q.etags(entries)
	for i, e := range entries {
		if e.prefix {
			res.CommonPrefixes = append(res.CommonPrefixes, commonPrefix{Prefix: encode(e.key)})
			continue
		}
		o := version{Key: encode(e.key), VersionID: nullVersion, IsLatest: true, LastModified: isoTime(e.info.GetLastModificationTimeMs()),
			ETag: etags[i], StorageClass: "STANDARD", Owner: owner{ID: e.info.GetOwner(), DisplayName: e.info.GetOwner()}}
		if !e.info.GetFolder() {
			o.Size = e.info.GetLength()
		}
		res.Versions = append(res.Versions, o)
	}
	if truncated && len(entries) > 0 {
		res.NextKeyMarker = encode(entries[len(entries)-1].key)
		if !entries[len(entries)-1].prefix {
			res.NextVersionIDMarker = nullVersion
		}
	}
	writeXML(q.w, http.StatusOK, res)
}
