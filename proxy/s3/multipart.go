package s3

import (
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/proxy/sigv4"
	"github.com/alluvium/alluvium/sdk"
)

// Multipart uploads live in the FS master (sdk.CreateUpload and friends):
// an upload is a file written aside, its parts blocks of that file on the
// block workers, recorded with their ETag and checksum as they complete.
// Any gateway serves any part, a gateway that dies loses nothing, and
// CompleteMultipartUpload links the parts' blocks as the object's without
// moving them (a UFS copy, for write types that have one, is written from
// them by the worker holding most). The upload id is the upload file's id;
// the FS master lets only the user who began an upload see or change it.

const (
	minPartSize = 5 << 20 // every part but the last (S3's rule)
	maxParts    = 10000
)

// uploadID is the S3 upload id of upload file id.
func uploadID(fileID int64) string { return strconv.FormatInt(fileID, 16) }

func parseUploadID(s string) (int64, bool) {
	n, err := strconv.ParseInt(s, 16, 64)
	return n, err == nil && n > 0 && uploadID(n) == s
}

// partTag is what the gateway keeps with a part: its ETag and checksum.
type partTag struct {
	ETag     string `json:"e"`
	Checksum string `json:"c,omitempty"` // base64, of the upload's algorithm
}

func decodeTag(b []byte) partTag {
	var t partTag
	_ = json.Unmarshal(b, &t)
	return t
}

// upload returns the upload of the request's uploadId (as the caller: the
// FS master refuses another user's) and its parts.
func (q *request) upload(p string) (*api.FileInfo, []*api.UploadPart, *apiError) {
	s := q.r.URL.Query().Get("uploadId")
	id, ok := parseUploadID(s)
	if !ok {
		return nil, nil, errNoSuchUpload(s)
	}
	up, parts, err := q.g.c.UploadParts(q.r.Context(), p, id)
	if err != nil {
		if errors.Is(err, sdk.ErrNotFound) {
			return nil, nil, errNoSuchUpload(s)
		}
		return nil, nil, toAPIError(err, nil)
	}
	return up, parts, nil
}

type initiateResult struct {
	XMLName  xml.Name `xml:"InitiateMultipartUploadResult"`
	NS       string   `xml:"xmlns,attr"`
	Bucket   string   `xml:"Bucket"`
	Key      string   `xml:"Key"`
	UploadID string   `xml:"UploadId"`
}

// checksumAlgos are the x-amz-checksum-algorithm values, lower-cased as in
// x-amz-checksum-<algo>.
var checksumAlgos = map[string]bool{"crc32": true, "crc32c": true, "crc64nvme": true, "sha1": true, "sha256": true}

func (q *request) createUpload() {
	p, dir, aerr := objectPath(q.bucket, q.key)
	if aerr == nil && dir {
		aerr = errInvalidArgument("the key %q ends in '/', which names a directory here", q.key)
	}
	if aerr != nil {
		q.fail(aerr, nil)
		return
	}
	if aerr := q.checkBucket(); aerr != nil {
		q.fail(aerr, nil)
		return
	}
	meta := metaFromHeaders(q.r.Header)
	if a := strings.ToLower(q.r.Header.Get("X-Amz-Checksum-Algorithm")); a != "" {
		if !checksumAlgos[a] {
			q.fail(errInvalidArgument("x-amz-checksum-algorithm %q: want CRC32, CRC32C, CRC64NVME, SHA1 or SHA256", a), nil)
			return
		}
		meta.ChecksumAlgo = a
	}
	ctx := q.r.Context()
	o := sdk.CreateOptions{WriteType: q.g.cfg.WriteType, Mode: objectMode, XAttrs: meta.xattrs()}
	up, err := q.g.c.CreateUpload(ctx, p, o)
	if err != nil {
		q.fail(createErr(q.bucket, p, err), nil)
		return
	}
	if meta.ChecksumAlgo != "" {
		q.w.Header().Set("x-amz-checksum-algorithm", strings.ToUpper(meta.ChecksumAlgo))
	}
	writeXML(q.w, http.StatusOK, initiateResult{NS: xmlNS, Bucket: q.bucket, Key: q.key, UploadID: uploadID(up.GetFileId())})
}

type copyPartResult struct {
	XMLName      xml.Name `xml:"CopyPartResult"`
	NS           string   `xml:"xmlns,attr"`
	LastModified string   `xml:"LastModified"`
	ETag         string   `xml:"ETag"`
}

// uploadPart stores one part (UploadPart, or UploadPartCopy from an
// object's range).
func (q *request) uploadPart() {
	v := q.r.URL.Query()
	num, err := strconv.Atoi(v.Get("partNumber"))
	if err != nil || num < 1 || num > maxParts {
		q.fail(errInvalidArgument("partNumber %q: want 1 to %d", v.Get("partNumber"), maxParts), nil)
		return
	}
	p, _, aerr := objectPath(q.bucket, q.key)
	if aerr != nil {
		q.fail(aerr, nil)
		return
	}
	id, ok := parseUploadID(v.Get("uploadId"))
	if !ok {
		q.fail(errNoSuchUpload(v.Get("uploadId")), nil)
		return
	}
	ctx := q.r.Context()
	var src io.Reader
	var length int64
	var body *sigv4.Body
	isCopy := q.r.Header.Get("X-Amz-Copy-Source") != ""
	if isCopy {
		srcPath, info, _, _, aerr := q.openSource()
		if aerr != nil {
			q.fail(aerr, nil)
			return
		}
		start, n := int64(0), info.GetLength()
		if rg := q.r.Header.Get("X-Amz-Copy-Source-Range"); rg != "" {
			if start, n, aerr = copySourceRange(rg, info.GetLength()); aerr != nil {
				q.fail(aerr, nil)
				return
			}
		}
		fr, err := q.g.c.Open(ctx, srcPath, sdk.OpenOptions{})
		if err != nil {
			q.fail(err, errNoSuchKey(srcPath))
			return
		}
		defer fr.Close()
		if _, err := fr.Seek(start, io.SeekStart); err != nil {
			q.fail(err, nil)
			return
		}
		src, length = io.LimitReader(fr, n), n
	} else {
		if body, err = sigv4.NewBody(q.r, q.auth); err != nil {
			q.fail(err, nil)
			return
		}
		if length = body.DeclaredLength(); length < 0 {
			q.fail(errorf("MissingContentLength", http.StatusLengthRequired, "UploadPart needs the part's length (Content-Length, or x-amz-decoded-content-length for an aws-chunked body)"), nil)
			return
		}
		src = body
	}
	// The ETag is the part's MD5: a body computes it as it verifies the
	// request (one pass over the bytes, not two); a copied range has no
	// body, so its bytes are hashed on their way.
	sum := func() []byte { return body.MD5() }
	if body == nil {
		h := md5.New()
		src, sum = io.TeeReader(src, h), func() []byte { return h.Sum(nil) }
	}
	sr := &srcReader{r: src}
	var tag partTag
	part, err := q.g.c.WritePart(ctx, &api.FileInfo{Path: p, FileId: id}, int32(num), sr, length, func() []byte {
		tag.ETag = hex.EncodeToString(sum())
		if body != nil {
			_, tag.Checksum = body.Checksum()
		}
		b, _ := json.Marshal(tag)
		return b
	})
	if body != nil {
		q.in = body.Size()
	}
	if err != nil {
		var se *sigv4.Error
		switch {
		case sr.err != nil && errors.As(sr.err, &se):
			err = sr.err
		case sr.err != nil && !isCopy:
			err = errorf("IncompleteBody", http.StatusBadRequest, "reading part %d: %v", num, sr.err)
		case errors.Is(err, sdk.ErrNotFound):
			err = errNoSuchUpload(v.Get("uploadId"))
		case stagedBytesExceeded(err):
			// A bound on what a user may stage (fsmaster.multipart.
			// max-staged-bytes): retrying will not help until uploads end.
			// Other ResourceExhausted (a full worker) stay SlowDown.
			err = errorf("XAlluviumStagedBytesExceeded", http.StatusBadRequest, "%v", err)
		}
		q.fail(err, nil)
		return
	}
	if isCopy {
		writeXML(q.w, http.StatusOK, copyPartResult{NS: xmlNS, LastModified: isoTime(part.GetModificationTimeMs()), ETag: `"` + tag.ETag + `"`})
		return
	}
	q.w.Header().Set("ETag", `"`+tag.ETag+`"`)
	if algo, val := body.Checksum(); algo != "" {
		q.w.Header().Set("x-amz-checksum-"+algo, val)
	}
	q.w.WriteHeader(http.StatusOK)
}

type completeRequest struct {
	XMLName xml.Name `xml:"CompleteMultipartUpload"`
	Parts   []struct {
		PartNumber int    `xml:"PartNumber"`
		ETag       string `xml:"ETag"`
		checksumXML
	} `xml:"Part"`
}

type completeResult struct {
	XMLName  xml.Name `xml:"CompleteMultipartUploadResult"`
	NS       string   `xml:"xmlns,attr"`
	Location string   `xml:"Location"`
	Bucket   string   `xml:"Bucket"`
	Key      string   `xml:"Key"`
	ETag     string   `xml:"ETag"`
	checksumXML
}

// keepAliveAfter is how long a CompleteMultipartUpload may take before the
// gateway commits to 200 and sends spaces to keep the client waiting (as
// S3 does); an error after that goes in the 200's body, where AWS SDKs
// look for it.
const keepAliveAfter = 5 * time.Second

// value returns the checksum c holds for algo.
func (c checksumXML) value(algo string) string {
	switch algo {
	case "crc32":
		return c.CRC32
	case "crc32c":
		return c.CRC32C
	case "crc64nvme":
		return c.CRC64NVME
	case "sha1":
		return c.SHA1
	case "sha256":
		return c.SHA256
	}
	return ""
}

// compositeChecksum is S3's checksum of an object made of parts: the
// algorithm's digest of the parts' digests, "-" the number of parts ("":
// a part without a checksum, or an algorithm that does not compose so).
func compositeChecksum(algo string, parts []string) string {
	var h hash.Hash
	switch algo {
	case "crc32":
		h = crc32.NewIEEE()
	case "crc32c":
		h = crc32.New(crc32.MakeTable(crc32.Castagnoli))
	case "sha1":
		h = sha1.New()
	case "sha256":
		h = sha256.New()
	default:
		return ""
	}
	for _, p := range parts {
		d, err := base64.StdEncoding.DecodeString(p)
		if p == "" || err != nil {
			return ""
		}
		h.Write(d)
	}
	return fmt.Sprintf("%s-%d", base64.StdEncoding.EncodeToString(h.Sum(nil)), len(parts))
}

func (q *request) completeUpload() {
	p, _, aerr := objectPath(q.bucket, q.key)
	if aerr != nil {
		q.fail(aerr, nil)
		return
	}
	up, have, aerr := q.upload(p)
	if aerr != nil {
		// A retry of a Complete that succeeded (its answer was lost): the
		// object it made says so, and S3 answers 200 again.
		if info, err := q.g.c.Stat(q.r.Context(), p); err == nil && !info.GetFolder() && info.GetCompleted() {
			if etag, m := etagOf(info); m != nil && m.UploadID == q.r.URL.Query().Get("uploadId") {
				res := completeResult{NS: xmlNS, Location: "/" + q.bucket + "/" + q.key, Bucket: q.bucket, Key: q.key, ETag: `"` + etag + `"`}
				if c := newChecksumXML(m.ChecksumAlgo, m.Checksum); c != nil {
					res.checksumXML = *c
				}
				writeXML(q.w, http.StatusOK, res)
				return
			}
		}
		q.fail(aerr, nil)
		return
	}
	// x-amz-checksum-* of a Complete are the object's (its parts'
	// checksums' checksum), not the body's: kept aside, not checked
	// against the XML.
	objSums := map[string]string{}
	for k, v := range q.r.Header {
		if a, ok := strings.CutPrefix(strings.ToLower(k), "x-amz-checksum-"); ok && checksumAlgos[a] && len(v) > 0 {
			objSums[a] = v[0]
			delete(q.r.Header, k)
		}
	}
	var req completeRequest
	if aerr := q.readXMLBody(&req, 4<<20); aerr != nil {
		q.fail(aerr, nil)
		return
	}
	if len(req.Parts) == 0 {
		q.fail(errMalformedXML(fmt.Errorf("no parts")), nil)
		return
	}
	// A part named twice in a row (a client that saw it uploaded twice,
	// racing itself) counts once, as last named.
	for i := 1; i < len(req.Parts); i++ {
		if req.Parts[i].PartNumber == req.Parts[i-1].PartNumber {
			req.Parts = append(req.Parts[:i-1], req.Parts[i:]...)
			i--
		}
	}
	meta := metaOf(up)
	if meta == nil {
		meta = &objMeta{}
	}
	byNum := map[int]*api.UploadPart{}
	for _, pt := range have {
		byNum[int(pt.GetPartNumber())] = pt
	}
	etags := md5.New()
	var parts []*api.UploadPart
	var sums []string
	meta.Parts = nil
	for i, rp := range req.Parts {
		if i > 0 && rp.PartNumber <= req.Parts[i-1].PartNumber {
			q.fail(errorf("InvalidPartOrder", http.StatusBadRequest, "the list of parts was not in ascending order (part %d after %d)", rp.PartNumber, req.Parts[i-1].PartNumber), nil)
			return
		}
		pt := byNum[rp.PartNumber]
		var tag partTag
		if pt != nil {
			tag = decodeTag(pt.GetTag())
		}
		want := strings.ToLower(strings.Trim(strings.TrimSpace(rp.ETag), `"`))
		if pt == nil || want != tag.ETag {
			q.fail(errorf("InvalidPart", http.StatusBadRequest, "part %d was not uploaded, or its ETag %q is not that of the part uploaded", rp.PartNumber, rp.ETag), nil)
			return
		}
		if c := rp.value(meta.ChecksumAlgo); c != "" && c != tag.Checksum {
			q.fail(errorf("InvalidPart", http.StatusBadRequest, "part %d: the %s checksum %q is not that of the part uploaded", rp.PartNumber, strings.ToUpper(meta.ChecksumAlgo), c), nil)
			return
		}
		if i < len(req.Parts)-1 && pt.GetLength() < minPartSize {
			q.fail(errorf("EntityTooSmall", http.StatusBadRequest, "part %d is %d bytes; every part but the last must be at least %d", rp.PartNumber, pt.GetLength(), minPartSize), nil)
			return
		}
		d, _ := hex.DecodeString(tag.ETag)
		etags.Write(d)
		parts = append(parts, pt)
		sums = append(sums, tag.Checksum)
		meta.Parts = append(meta.Parts, objPart{Size: pt.GetLength(), Checksum: tag.Checksum})
	}
	meta.ETag = fmt.Sprintf("%s-%d", hex.EncodeToString(etags.Sum(nil)), len(parts))
	meta.UploadID, meta.PartsCount = uploadID(up.GetFileId()), len(parts)
	meta.Checksum = compositeChecksum(meta.ChecksumAlgo, sums)
	if meta.ChecksumAlgo != "" {
		if want := objSums[meta.ChecksumAlgo]; want != "" && want != meta.Checksum {
			q.fail(errorf("BadDigest", http.StatusBadRequest, "the %s checksum %q is not the object's (%q, of the parts' checksums)", strings.ToUpper(meta.ChecksumAlgo), want, meta.Checksum), nil)
			return
		}
	}
	ifReplaces, aerr := q.writeConditions(p)
	if aerr != nil {
		q.fail(aerr, nil)
		return
	}
	res := completeResult{NS: xmlNS, Location: "/" + q.bucket + "/" + q.key, Bucket: q.bucket, Key: q.key, ETag: `"` + meta.ETag + `"`}
	if c := newChecksumXML(meta.ChecksumAlgo, meta.Checksum); c != nil {
		res.checksumXML = *c
	}
	// Complete in the background; answer early with keep-alive spaces if
	// it takes long (writing a UFS copy of a big object does).
	done := make(chan error, 1)
	go func() {
		_, err := q.g.c.CompleteUpload(q.r.Context(), up, parts, sdk.CompleteOptions{XAttrs: meta.xattrs(), IfReplaces: ifReplaces})
		switch {
		case err == nil:
		case ifReplaces != 0 && errors.Is(err, sdk.ErrFailedPrecondition):
			err = errorf("PreconditionFailed", http.StatusPreconditionFailed, "the object changed while the upload completed, and the condition no longer holds: %v", err)
		case errors.Is(err, sdk.ErrFailedPrecondition):
			err = errorf("InvalidPart", http.StatusBadRequest, "a part was uploaded again while the upload completed: %v", err)
		case errors.Is(err, sdk.ErrNotFound):
			err = errNoSuchUpload(q.r.URL.Query().Get("uploadId"))
		}
		done <- err
	}()
	var err error
	select {
	case err = <-done:
	case <-time.After(keepAliveAfter):
		q.w.Header().Set("Content-Type", "application/xml")
		q.w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(q.w, xml.Header)
		flusher, _ := q.w.(http.Flusher)
		tick := time.NewTicker(keepAliveAfter)
	wait:
		for {
			if flusher != nil {
				flusher.Flush()
			}
			select {
			case err = <-done:
				break wait
			case <-tick.C:
				_, _ = io.WriteString(q.w, " ")
			}
		}
		tick.Stop()
		var b []byte
		if err != nil {
			ae := toAPIError(err, nil)
			b, _ = xml.Marshal(errorBody{Code: ae.Code, Message: ae.Message, BucketName: q.bucket, Key: q.key, RequestID: q.id, HostID: q.id})
		} else {
			b, _ = xml.Marshal(res)
		}
		_, _ = q.w.Write(b)
		return
	}
	if err != nil {
		q.fail(err, nil)
		return
	}
	writeXML(q.w, http.StatusOK, res)
}

func (q *request) abortUpload() {
	p, _, aerr := objectPath(q.bucket, q.key)
	if aerr != nil {
		q.fail(aerr, nil)
		return
	}
	up, _, aerr := q.upload(p)
	if aerr != nil {
		q.fail(aerr, nil)
		return
	}
	if err := q.g.c.AbortUpload(q.r.Context(), p, up.GetFileId()); err != nil {
		q.fail(err, errNoSuchUpload(q.r.URL.Query().Get("uploadId")))
		return
	}
	bp, _ := q.bucketPath()
	q.g.removeEmptyParents(q.r.Context(), bp, p)
	q.w.WriteHeader(http.StatusNoContent)
}

type listPartsResult struct {
	XMLName              xml.Name   `xml:"ListPartsResult"`
	NS                   string     `xml:"xmlns,attr"`
	Bucket               string     `xml:"Bucket"`
	Key                  string     `xml:"Key"`
	UploadID             string     `xml:"UploadId"`
	Initiator            owner      `xml:"Initiator"`
	Owner                owner      `xml:"Owner"`
	StorageClass         string     `xml:"StorageClass"`
	PartNumberMarker     int        `xml:"PartNumberMarker"`
	NextPartNumberMarker int        `xml:"NextPartNumberMarker"`
	MaxParts             int        `xml:"MaxParts"`
	IsTruncated          bool       `xml:"IsTruncated"`
	ChecksumAlgorithm    string     `xml:"ChecksumAlgorithm,omitempty"`
	Parts                []partItem `xml:"Part"`
}

type partItem struct {
	PartNumber   int    `xml:"PartNumber"`
	LastModified string `xml:"LastModified"`
	ETag         string `xml:"ETag"`
	Size         int64  `xml:"Size"`
	checksumXML
}

func (q *request) listParts() {
	v := q.r.URL.Query()
	maxP := 1000
	if s := v.Get("max-parts"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			q.fail(errInvalidArgument("max-parts %q: want a number", s), nil)
			return
		}
		maxP = min(n, 1000)
	}
	marker := 0
	if s := v.Get("part-number-marker"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			q.fail(errInvalidArgument("part-number-marker %q: want a number", s), nil)
			return
		}
		marker = n
	}
	p, _, aerr := objectPath(q.bucket, q.key)
	if aerr != nil {
		q.fail(aerr, nil)
		return
	}
	up, parts, aerr := q.upload(p)
	if aerr != nil {
		q.fail(aerr, nil)
		return
	}
	algo := ""
	if m := metaOf(up); m != nil {
		algo = m.ChecksumAlgo
	}
	o := owner{ID: up.GetOwner(), DisplayName: up.GetOwner()}
	res := listPartsResult{NS: xmlNS, Bucket: q.bucket, Key: q.key, UploadID: uploadID(up.GetFileId()), Initiator: o, Owner: o,
		StorageClass: "STANDARD", PartNumberMarker: marker, MaxParts: maxP, ChecksumAlgorithm: strings.ToUpper(algo)}
	for _, pt := range parts {
		if int(pt.GetPartNumber()) <= marker {
			continue
		}
		if len(res.Parts) == maxP {
			res.IsTruncated = true
			break
		}
		tag := decodeTag(pt.GetTag())
		it := partItem{PartNumber: int(pt.GetPartNumber()), LastModified: isoTime(pt.GetModificationTimeMs()), ETag: `"` + tag.ETag + `"`, Size: pt.GetLength()}
		if c := newChecksumXML(algo, tag.Checksum); c != nil {
			it.checksumXML = *c
		}
		res.Parts = append(res.Parts, it)
	}
	if len(res.Parts) > 0 {
		res.NextPartNumberMarker = res.Parts[len(res.Parts)-1].PartNumber
	}
	writeXML(q.w, http.StatusOK, res)
}

type listUploadsResult struct {
	XMLName            xml.Name       `xml:"ListMultipartUploadsResult"`
	NS                 string         `xml:"xmlns,attr"`
	Bucket             string         `xml:"Bucket"`
	KeyMarker          string         `xml:"KeyMarker"`
	UploadIDMarker     string         `xml:"UploadIdMarker"`
	NextKeyMarker      string         `xml:"NextKeyMarker"`
	NextUploadIDMarker string         `xml:"NextUploadIdMarker"`
	Prefix             string         `xml:"Prefix"`
	Delimiter          string         `xml:"Delimiter,omitempty"`
	MaxUploads         int            `xml:"MaxUploads"`
	IsTruncated        bool           `xml:"IsTruncated"`
	Uploads            []uploadItem   `xml:"Upload"`
	CommonPrefixes     []commonPrefix `xml:"CommonPrefixes"`
}

type uploadItem struct {
	Key          string `xml:"Key"`
	UploadID     string `xml:"UploadId"`
	Initiator    owner  `xml:"Initiator"`
	Owner        owner  `xml:"Owner"`
	StorageClass string `xml:"StorageClass"`
	Initiated    string `xml:"Initiated"`
}

// listUploads lists the caller's uploads in flight in the bucket (the FS
// master shows a user only their own).
func (q *request) listUploads() {
	if aerr := q.checkBucketAccess(); aerr != nil {
		q.fail(aerr, nil)
		return
	}
	v := q.r.URL.Query()
	maxU := 1000
	if s := v.Get("max-uploads"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			q.fail(errInvalidArgument("max-uploads %q: want a number", s), nil)
			return
		}
		maxU = min(n, 1000)
	}
	prefix, delim, keyMarker, idMarker := v.Get("prefix"), v.Get("delimiter"), v.Get("key-marker"), v.Get("upload-id-marker")
	bp, _ := q.bucketPath()
	ups, err := q.g.c.Uploads(q.r.Context(), bp)
	if err != nil {
		q.fail(err, errNoSuchBucket(q.bucket))
		return
	}
	type entry struct {
		key string
		id  int64
		fi  *api.FileInfo
	}
	var all []entry
	for _, u := range ups {
		key := strings.TrimPrefix(u.GetPath(), bp+"/")
		all = append(all, entry{key, u.GetFileId(), u})
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].key != all[j].key {
			return all[i].key < all[j].key
		}
		return all[i].id < all[j].id
	})
	res := listUploadsResult{NS: xmlNS, Bucket: q.bucket, KeyMarker: keyMarker, UploadIDMarker: idMarker, Prefix: prefix, Delimiter: delim, MaxUploads: maxU}
	markerID, _ := parseUploadID(idMarker)
	lastCP := ""
	for _, u := range all {
		if !strings.HasPrefix(u.key, prefix) {
			continue
		}
		if keyMarker != "" && (u.key < keyMarker || u.key == keyMarker && (idMarker == "" || u.id <= markerID)) {
			continue
		}
		if delim != "" {
			if i := strings.Index(u.key[len(prefix):], delim); i >= 0 {
				cp := u.key[:len(prefix)+i+len(delim)]
				if cp != lastCP {
					lastCP = cp
					res.CommonPrefixes = append(res.CommonPrefixes, commonPrefix{Prefix: cp})
				}
				continue
			}
		}
		if len(res.Uploads) == maxU {
			res.IsTruncated = true
			break
		}
		o := owner{ID: u.fi.GetOwner(), DisplayName: u.fi.GetOwner()}
		res.Uploads = append(res.Uploads, uploadItem{Key: u.key, UploadID: uploadID(u.id), Initiator: o, Owner: o, StorageClass: "STANDARD", Initiated: isoTime(u.fi.GetCreationTimeMs())})
	}
	if n := len(res.Uploads); n > 0 && res.IsTruncated {
		res.NextKeyMarker, res.NextUploadIDMarker = res.Uploads[n-1].Key, res.Uploads[n-1].UploadID
	}
	writeXML(q.w, http.StatusOK, res)
}

// expireUploads aborts the uploads of every user begun before cutoff.
func (g *Gateway) expireUploads(ctx context.Context, cutoff time.Time) (int, error) {
	ups, err := g.c.Uploads(ctx, "/")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, u := range ups {
		if time.UnixMilli(u.GetCreationTimeMs()).Before(cutoff) {
			if err := g.c.AbortUpload(ctx, u.GetPath(), u.GetFileId()); err == nil {
				n++
				bucket, _, _ := strings.Cut(strings.TrimPrefix(u.GetPath(), "/"), "/")
				g.removeEmptyParents(ctx, "/"+bucket, u.GetPath())
			}
		}
	}
	return n, nil
}

// stagedBytesExceeded: err is the FS master's refusal of a part past the
// user's fsmaster.multipart.max-staged-bytes.
func stagedBytesExceeded(err error) bool {
	var se *sdk.Error
	return errors.As(err, &se) && se.Reason == api.ReasonStagedBytesExceeded
}
