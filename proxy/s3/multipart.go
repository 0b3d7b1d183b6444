package s3

import (
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/alluvium/alluvium/proxy/sigv4"
	"github.com/alluvium/alluvium/sdk"
)

// Multipart uploads are staged in the gateway's own directory, never in
// the namespace: <staging>/multipart/<uploadId>/ holds upload.json and,
// per part, <n>.part (the bytes) and <n>.json (its ETag and size).
// CompleteMultipartUpload streams the parts, in order, into the object.

const (
	minPartSize = 5 << 20 // every part but the last (S3's rule)
	maxParts    = 10000
)

type upload struct {
	ID        string    `json:"id"`
	Bucket    string    `json:"bucket"`
	Key       string    `json:"key"`
	Initiated time.Time `json:"initiated"`
	Initiator string    `json:"initiator"`
	Meta      *objMeta  `json:"meta"`
}

type partInfo struct {
	Number   int       `json:"number"`
	ETag     string    `json:"etag"`
	Size     int64     `json:"size"`
	Modified time.Time `json:"modified"`
}

type multipartStore struct {
	dir   string
	mu    sync.Mutex
	locks map[string]*sync.Mutex // per upload: parts, complete and abort do not interleave
}

func openMultipartStore(staging string) (*multipartStore, error) {
	dir := filepath.Join(staging, "multipart")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("s3 multipart dir %s: %w", dir, err)
	}
	return &multipartStore{dir: dir, locks: map[string]*sync.Mutex{}}, nil
}

func (s *multipartStore) lock(id string) func() {
	s.mu.Lock()
	l := s.locks[id]
	if l == nil {
		l = &sync.Mutex{}
		s.locks[id] = l
	}
	s.mu.Unlock()
	l.Lock()
	return l.Unlock
}

func (s *multipartStore) forget(id string) {
	s.mu.Lock()
	delete(s.locks, id)
	s.mu.Unlock()
}

func validUploadID(id string) bool {
	if len(id) != 32 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}

func (s *multipartStore) path(id string, name string) string { return filepath.Join(s.dir, id, name) }

func writeJSONFile(p string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

func (s *multipartStore) create(u *upload) error {
	if err := os.Mkdir(filepath.Join(s.dir, u.ID), 0o700); err != nil {
		return err
	}
	return writeJSONFile(s.path(u.ID, "upload.json"), u)
}

// get returns the upload id of bucket/key.
func (s *multipartStore) get(id, bucket, key string) (*upload, *apiError) {
	if !validUploadID(id) {
		return nil, errNoSuchUpload(id)
	}
	b, err := os.ReadFile(s.path(id, "upload.json"))
	if err != nil {
		return nil, errNoSuchUpload(id)
	}
	var u upload
	if json.Unmarshal(b, &u) != nil || u.Bucket != bucket || u.Key != key {
		return nil, errNoSuchUpload(id)
	}
	return &u, nil
}

func (s *multipartStore) parts(id string) ([]partInfo, error) {
	ents, err := os.ReadDir(filepath.Join(s.dir, id))
	if err != nil {
		return nil, err
	}
	var out []partInfo
	for _, e := range ents {
		n, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || n == "upload" {
			continue
		}
		if _, err := strconv.Atoi(n); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.dir, id, e.Name()))
		if err != nil {
			continue
		}
		var p partInfo
		if json.Unmarshal(b, &p) == nil {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Number < out[j].Number })
	return out, nil
}

func (s *multipartStore) remove(id string) error {
	err := os.RemoveAll(filepath.Join(s.dir, id))
	s.forget(id)
	return err
}

// expire removes uploads initiated before cutoff.
func (s *multipartStore) expire(cutoff time.Time) int {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		if !validUploadID(e.Name()) {
			continue
		}
		var u upload
		b, err := os.ReadFile(s.path(e.Name(), "upload.json"))
		if err == nil && json.Unmarshal(b, &u) == nil && u.Initiated.After(cutoff) {
			continue
		}
		if err != nil {
			// Half-created: judge by the directory's age.
			if fi, serr := e.Info(); serr == nil && fi.ModTime().After(cutoff) {
				continue
			}
		}
		unlock := s.lock(e.Name())
		_ = os.RemoveAll(filepath.Join(s.dir, e.Name()))
		unlock()
		s.forget(e.Name())
		n++
	}
	return n
}

type initiateResult struct {
	XMLName  xml.Name `xml:"InitiateMultipartUploadResult"`
	NS       string   `xml:"xmlns,attr"`
	Bucket   string   `xml:"Bucket"`
	Key      string   `xml:"Key"`
	UploadID string   `xml:"UploadId"`
}

func (q *request) createUpload() {
	if _, dir, aerr := objectPath(q.bucket, q.key); aerr != nil || dir {
		if aerr == nil {
			aerr = errInvalidArgument("the key %q ends in '/', which names a directory here", q.key)
		}
		q.fail(aerr, nil)
		return
	}
	if aerr := q.checkBucket(); aerr != nil {
		q.fail(aerr, nil)
		return
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	u := &upload{ID: hex.EncodeToString(b[:]), Bucket: q.bucket, Key: q.key, Initiated: time.Now().UTC(),
		Initiator: q.auth.AccessKey, Meta: metaFromHeaders(q.r.Header)}
	if err := q.g.mp.create(u); err != nil {
		q.fail(err, nil)
		return
	}
	writeXML(q.w, http.StatusOK, initiateResult{NS: xmlNS, Bucket: q.bucket, Key: q.key, UploadID: u.ID})
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
	id := v.Get("uploadId")
	num, err := strconv.Atoi(v.Get("partNumber"))
	if err != nil || num < 1 || num > maxParts {
		q.fail(errInvalidArgument("partNumber %q: want 1 to %d", v.Get("partNumber"), maxParts), nil)
		return
	}
	if _, aerr := q.g.mp.get(id, q.bucket, q.key); aerr != nil {
		q.fail(aerr, nil)
		return
	}
	var src io.Reader
	var body *sigv4.Body
	isCopy := q.r.Header.Get("X-Amz-Copy-Source") != ""
	if isCopy {
		srcPath, info, _, _, aerr := q.openSource()
		if aerr != nil {
			q.fail(aerr, nil)
			return
		}
		start, length := int64(0), info.GetLength()
		if rg := q.r.Header.Get("X-Amz-Copy-Source-Range"); rg != "" {
			s, n, ok, aerr := parseRange(rg, info.GetLength())
			if aerr != nil || !ok {
				q.fail(errInvalidArgument("x-amz-copy-source-range %q is not a valid range of the %d-byte source", rg, info.GetLength()), nil)
				return
			}
			start, length = s, n
		}
		fr, err := q.g.c.Open(q.r.Context(), srcPath, sdk.OpenOptions{})
		if err != nil {
			q.fail(err, errNoSuchKey(srcPath))
			return
		}
		defer fr.Close()
		if _, err := fr.Seek(start, io.SeekStart); err != nil {
			q.fail(err, nil)
			return
		}
		src = io.LimitReader(fr, length)
	} else {
		body, err = sigv4.NewBody(q.r, q.auth)
		if err != nil {
			q.fail(err, nil)
			return
		}
		src = body
	}
	// The bytes go to a temp file first; the part appears (by rename)
	// only once they are all there and verified.
	tmp, err := os.CreateTemp(filepath.Join(q.g.mp.dir, id), fmt.Sprintf("%d.part.tmp-*", num))
	if err != nil {
		q.fail(errNoSuchUpload(id), nil)
		return
	}
	defer os.Remove(tmp.Name())
	h := md5.New()
	buf := copyBufs.Get().(*[]byte)
	n, err := io.CopyBuffer(io.MultiWriter(tmp, h), src, *buf)
	copyBufs.Put(buf)
	q.in = n
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		var se *sigv4.Error
		if !isCopy && !errors.As(err, &se) {
			err = errorf("IncompleteBody", http.StatusBadRequest, "reading part %d: %v", num, err)
		}
		q.fail(err, nil)
		return
	}
	p := partInfo{Number: num, ETag: hex.EncodeToString(h.Sum(nil)), Size: n, Modified: time.Now().UTC()}
	unlock := q.g.mp.lock(id)
	defer unlock()
	if _, aerr := q.g.mp.get(id, q.bucket, q.key); aerr != nil {
		q.fail(aerr, nil) // aborted or completed meanwhile
		return
	}
	if err := os.Rename(tmp.Name(), q.g.mp.path(id, fmt.Sprintf("%d.part", num))); err != nil {
		q.fail(err, nil)
		return
	}
	if err := writeJSONFile(q.g.mp.path(id, fmt.Sprintf("%d.json", num)), p); err != nil {
		q.fail(err, nil)
		return
	}
	if isCopy {
		writeXML(q.w, http.StatusOK, copyPartResult{NS: xmlNS, LastModified: p.Modified.Format(timeFormat), ETag: `"` + p.ETag + `"`})
		return
	}
	q.w.Header().Set("ETag", `"`+p.ETag+`"`)
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
	} `xml:"Part"`
}

type completeResult struct {
	XMLName  xml.Name `xml:"CompleteMultipartUploadResult"`
	NS       string   `xml:"xmlns,attr"`
	Location string   `xml:"Location"`
	Bucket   string   `xml:"Bucket"`
	Key      string   `xml:"Key"`
	ETag     string   `xml:"ETag"`
}

// keepAliveAfter is how long a CompleteMultipartUpload may take before the
// gateway commits to 200 and sends spaces to keep the client waiting (as
// S3 does); an error after that goes in the 200's body, where AWS SDKs
// look for it.
const keepAliveAfter = 5 * time.Second

func (q *request) completeUpload() {
	id := q.r.URL.Query().Get("uploadId")
	p, _, aerr := objectPath(q.bucket, q.key)
	if aerr != nil {
		q.fail(aerr, nil)
		return
	}
	u, aerr := q.g.mp.get(id, q.bucket, q.key)
	if aerr != nil {
		q.fail(aerr, nil)
		return
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
	unlock := q.g.mp.lock(id)
	defer unlock()
	if _, aerr := q.g.mp.get(id, q.bucket, q.key); aerr != nil {
		q.fail(aerr, nil)
		return
	}
	have, err := q.g.mp.parts(id)
	if err != nil {
		q.fail(errNoSuchUpload(id), nil)
		return
	}
	byNum := map[int]partInfo{}
	for _, pi := range have {
		byNum[pi.Number] = pi
	}
	etags := md5.New()
	var total int64
	for i, rp := range req.Parts {
		if i > 0 && rp.PartNumber <= req.Parts[i-1].PartNumber {
			q.fail(errorf("InvalidPartOrder", http.StatusBadRequest, "the list of parts was not in ascending order (part %d after %d)", rp.PartNumber, req.Parts[i-1].PartNumber), nil)
			return
		}
		pi, ok := byNum[rp.PartNumber]
		want := strings.ToLower(strings.Trim(strings.TrimSpace(rp.ETag), `"`))
		if !ok || want != pi.ETag {
			q.fail(errorf("InvalidPart", http.StatusBadRequest, "part %d was not uploaded, or its ETag %q is not that of the part uploaded", rp.PartNumber, rp.ETag), nil)
			return
		}
		if i < len(req.Parts)-1 && pi.Size < minPartSize {
			q.fail(errorf("EntityTooSmall", http.StatusBadRequest, "part %d is %d bytes; every part but the last must be at least %d", rp.PartNumber, pi.Size, minPartSize), nil)
			return
		}
		d, _ := hex.DecodeString(pi.ETag)
		etags.Write(d)
		total += pi.Size
	}
	etag := fmt.Sprintf("%s-%d", hex.EncodeToString(etags.Sum(nil)), len(req.Parts))

	// Write the object in the background; answer early with keep-alive
	// spaces if it takes long.
	type result struct {
		err  error
		size int64
	}
	done := make(chan result, 1)
	go func() {
		var files []io.Reader
		var opened []*os.File
		defer func() {
			for _, f := range opened {
				f.Close()
			}
		}()
		for _, rp := range req.Parts {
			f, err := os.Open(q.g.mp.path(id, fmt.Sprintf("%d.part", rp.PartNumber)))
			if err != nil {
				done <- result{err: errorf("InvalidPart", http.StatusBadRequest, "part %d: %v", rp.PartNumber, err)}
				return
			}
			opened = append(opened, f)
			files = append(files, f)
		}
		info, n, err := q.g.write(q.r.Context(), q.bucket, p, io.MultiReader(files...))
		if err == nil && n != total {
			err = errorf("InternalError", http.StatusInternalServerError, "wrote %d bytes of %d", n, total)
		}
		if err == nil {
			m := u.Meta
			if m == nil {
				m = &objMeta{}
			}
			m.FileID, m.Length, m.ETag = info.GetFileId(), info.GetLength(), etag
			q.g.meta.put(p, m)
		}
		done <- result{err: err, size: n}
	}()
	res := completeResult{NS: xmlNS, Location: "/" + q.bucket + "/" + q.key, Bucket: q.bucket, Key: q.key, ETag: `"` + etag + `"`}
	var r result
	select {
	case r = <-done:
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
			case r = <-done:
				break wait
			case <-tick.C:
				_, _ = io.WriteString(q.w, " ")
			}
		}
		tick.Stop()
		var b []byte
		if r.err != nil {
			ae := toAPIError(r.err, nil)
			b, _ = xml.Marshal(errorBody{Code: ae.Code, Message: ae.Message, BucketName: q.bucket, Key: q.key, RequestID: q.id, HostID: q.id})
		} else {
			_ = q.g.mp.remove(id)
			b, _ = xml.Marshal(res)
		}
		_, _ = q.w.Write(b)
		q.in = r.size
		return
	}
	q.in = r.size
	if r.err != nil {
		q.failObject(r.err)
		return
	}
	_ = q.g.mp.remove(id)
	writeXML(q.w, http.StatusOK, res)
}

func (q *request) abortUpload() {
	id := q.r.URL.Query().Get("uploadId")
	if _, aerr := q.g.mp.get(id, q.bucket, q.key); aerr != nil {
		q.fail(aerr, nil)
		return
	}
	unlock := q.g.mp.lock(id)
	err := os.RemoveAll(filepath.Join(q.g.mp.dir, id))
	unlock()
	q.g.mp.forget(id)
	if err != nil {
		q.fail(err, nil)
		return
	}
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
	Parts                []partItem `xml:"Part"`
}

type partItem struct {
	PartNumber   int    `xml:"PartNumber"`
	LastModified string `xml:"LastModified"`
	ETag         string `xml:"ETag"`
	Size         int64  `xml:"Size"`
}

func (q *request) listParts() {
	v := q.r.URL.Query()
	id := v.Get("uploadId")
	u, aerr := q.g.mp.get(id, q.bucket, q.key)
	if aerr != nil {
		q.fail(aerr, nil)
		return
	}
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
	parts, err := q.g.mp.parts(id)
	if err != nil {
		q.fail(errNoSuchUpload(id), nil)
		return
	}
	o := owner{ID: u.Initiator, DisplayName: u.Initiator}
	res := listPartsResult{NS: xmlNS, Bucket: q.bucket, Key: q.key, UploadID: id, Initiator: o, Owner: o,
		StorageClass: "STANDARD", PartNumberMarker: marker, MaxParts: maxP}
	for _, p := range parts {
		if p.Number <= marker {
			continue
		}
		if len(res.Parts) == maxP {
			res.IsTruncated = true
			break
		}
		res.Parts = append(res.Parts, partItem{PartNumber: p.Number, LastModified: p.Modified.Format(timeFormat), ETag: `"` + p.ETag + `"`, Size: p.Size})
	}
	if len(res.Parts) > 0 {
		res.NextPartNumberMarker = res.Parts[len(res.Parts)-1].PartNumber
	}
	writeXML(q.w, http.StatusOK, res)
}

type listUploadsResult struct {
	XMLName            xml.Name     `xml:"ListMultipartUploadsResult"`
	NS                 string       `xml:"xmlns,attr"`
	Bucket             string       `xml:"Bucket"`
	KeyMarker          string       `xml:"KeyMarker"`
	UploadIDMarker     string       `xml:"UploadIdMarker"`
	NextKeyMarker      string       `xml:"NextKeyMarker"`
	NextUploadIDMarker string       `xml:"NextUploadIdMarker"`
	Prefix             string       `xml:"Prefix"`
	MaxUploads         int          `xml:"MaxUploads"`
	IsTruncated        bool         `xml:"IsTruncated"`
	Uploads            []uploadItem `xml:"Upload"`
}

type uploadItem struct {
	Key          string `xml:"Key"`
	UploadID     string `xml:"UploadId"`
	Initiator    owner  `xml:"Initiator"`
	Owner        owner  `xml:"Owner"`
	StorageClass string `xml:"StorageClass"`
	Initiated    string `xml:"Initiated"`
}

func (q *request) listUploads() {
	if aerr := q.checkBucket(); aerr != nil {
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
	prefix, keyMarker, idMarker := v.Get("prefix"), v.Get("key-marker"), v.Get("upload-id-marker")
	ents, _ := os.ReadDir(q.g.mp.dir)
	var all []upload
	for _, e := range ents {
		if !validUploadID(e.Name()) {
			continue
		}
		b, err := os.ReadFile(q.g.mp.path(e.Name(), "upload.json"))
		if err != nil {
			continue
		}
		var u upload
		if json.Unmarshal(b, &u) != nil || u.Bucket != q.bucket || !strings.HasPrefix(u.Key, prefix) {
			continue
		}
		if keyMarker != "" && (u.Key < keyMarker || u.Key == keyMarker && (idMarker == "" || u.ID <= idMarker)) {
			continue
		}
		all = append(all, u)
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].Key != all[j].Key {
			return all[i].Key < all[j].Key
		}
		return all[i].ID < all[j].ID
	})
	res := listUploadsResult{NS: xmlNS, Bucket: q.bucket, KeyMarker: keyMarker, UploadIDMarker: idMarker, Prefix: prefix, MaxUploads: maxU}
	for _, u := range all {
		if len(res.Uploads) == maxU {
			res.IsTruncated = true
			break
		}
		o := owner{ID: u.Initiator, DisplayName: u.Initiator}
		res.Uploads = append(res.Uploads, uploadItem{Key: u.Key, UploadID: u.ID, Initiator: o, Owner: o, StorageClass: "STANDARD", Initiated: u.Initiated.Format(timeFormat)})
	}
	if n := len(res.Uploads); n > 0 && res.IsTruncated {
		res.NextKeyMarker, res.NextUploadIDMarker = res.Uploads[n-1].Key, res.Uploads[n-1].UploadID
	}
	writeXML(q.w, http.StatusOK, res)
}
