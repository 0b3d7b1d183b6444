package s3

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/alluvium/alluvium/api"
)

// What S3 keeps about an object beyond its bytes — the ETag, Content-Type
// and friends, x-amz-meta-*, a checksum, the parts of a multipart upload —
// lives in the file's extended attributes in the FS master: journaled,
// seen by every gateway, and set in the same step that completes the file
// (so the metadata of the old bytes never shows with the new ones, nor the
// other way round). Two attributes: xattrMeta, small, which listings fetch
// for the ETag, and xattrParts, the part sizes and checksums, which only
// GETs by part and GetObjectAttributes need.
const (
	xattrMeta  = "s3"
	xattrParts = "s3.parts"
)

// objMeta is the xattrMeta attribute (JSON).
type objMeta struct {
	ETag               string            `json:"etag"` // without quotes
	ContentType        string            `json:"contentType,omitempty"`
	ContentEncoding    string            `json:"contentEncoding,omitempty"`
	ContentDisposition string            `json:"contentDisposition,omitempty"`
	ContentLanguage    string            `json:"contentLanguage,omitempty"`
	CacheControl       string            `json:"cacheControl,omitempty"`
	Expires            string            `json:"expires,omitempty"`
	Meta               map[string]string `json:"meta,omitempty"` // x-amz-meta-<name> (lower-case name) → value
	ChecksumAlgo       string            `json:"checksumAlgo,omitempty"`
	Checksum           string            `json:"checksum,omitempty"`
	// An object written by a multipart upload: how many parts, and the
	// upload's id (a retried CompleteMultipartUpload finds it).
	PartsCount int    `json:"partsCount,omitempty"`
	UploadID   string `json:"uploadId,omitempty"`
	// Parts is not stored here but in xattrParts; metaOf fills it.
	Parts []objPart `json:"-"`
}

// xattrs returns the extended attributes that store m (xattrParts is
// removed when m has no parts, so a replaced object does not keep them).
func (m *objMeta) xattrs() map[string][]byte {
	b, _ := json.Marshal(m)
	x := map[string][]byte{xattrMeta: b, xattrParts: nil}
	if len(m.Parts) > 0 {
		x[xattrParts], _ = json.Marshal(m.Parts)
	}
	return x
}

// metaOf decodes the S3 metadata of a file (nil when it has none: it was
// written some other way than through the gateway).
func metaOf(info *api.FileInfo) *objMeta {
	b := info.GetXattrs()[xattrMeta]
	if len(b) == 0 {
		return nil
	}
	var m objMeta
	if json.Unmarshal(b, &m) != nil {
		return nil
	}
	if pb := info.GetXattrs()[xattrParts]; len(pb) > 0 {
		_ = json.Unmarshal(pb, &m.Parts)
	}
	return &m
}

// fallbackETag is the ETag of a file the gateway has no metadata for
// (written through the REST API, the CLI, or found in the UFS). It is
// stable while the file is unchanged, and ends in "-1" like a multipart
// ETag so that clients do not take it for the MD5 of the bytes.
func fallbackETag(info *api.FileInfo) string {
	sum := md5.Sum([]byte(fmt.Sprintf("%d/%d/%d", info.GetFileId(), info.GetLength(), info.GetLastModificationTimeMs())))
	return hex.EncodeToString(sum[:]) + "-1"
}

// etagOf returns the ETag (unquoted) and S3 metadata of a file.
func etagOf(info *api.FileInfo) (string, *objMeta) {
	if info.GetFolder() {
		return emptyETag, nil
	}
	if m := metaOf(info); m != nil && m.ETag != "" {
		return m.ETag, m
	}
	return fallbackETag(info), nil
}
