package s3

import (
	"container/heap"
	"context"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/sdk"
)

// entry is one listed item: an object (a file, or an empty directory shown
// as its "dir/" marker) or a common prefix.
type entry struct {
	key    string
	info   *api.FileInfo // nil for a common prefix
	prefix bool
}

// walker lists the keys of a bucket in S3 order (byte-wise by key) by
// walking the directory tree. A directory's children come from the FS
// master sorted by name, but a directory "d" sorts in S3 as "d/" — after a
// file "d-x" — so directories wait in a heap until their turn. Listing
// resumes after a key by seeking in each directory on its path, not by
// listing from the start.
type walker struct {
	c      *sdk.Client
	ctx    context.Context
	prefix string
	after  string
	slash  bool // delimiter "/": directories below the prefix roll up unwalked
	yield  func(entry) bool
	done   bool // yield said stop
}

// pred returns a string that sorts just before x with no path name
// strictly between the two: x with its last rune decremented and then a
// run of U+10FFFF longer than any name may be (255 bytes). It is valid
// UTF-8, as a page token must be; x is cut to its valid prefix first.
func pred(x string) string {
	x = validPrefix(x)
	if x == "" {
		return ""
	}
	r, n := utf8.DecodeLastRuneInString(x)
	x = x[:len(x)-n]
	switch {
	case r == 0:
		return x
	case r == 0xE000:
		r = 0xD7FF // skip the surrogates
	default:
		r--
	}
	return x + string(r) + strings.Repeat(string(rune(utf8.MaxRune)), 64)
}

// validPrefix cuts s at its first invalid UTF-8 byte.
func validPrefix(s string) string {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, n := utf8.DecodeRuneInString(s[i:]); n <= 1 {
				return s[:i]
			}
		}
	}
	return s
}

// seekFrom returns the first name at a level that can matter for a bound
// component c: names before c[:i], where c[i] is the first byte below '/',
// sort (as files, or as "name/" directories) before anything that starts
// with c.
func seekFrom(c string) string {
	for i := 0; i < len(c); i++ {
		if c[i] < '/' {
			return c[:i]
		}
	}
	return c
}

// dirHeap orders directories as S3 orders their keys: by name + "/".
type dirHeap []*api.FileInfo

func (h dirHeap) Len() int           { return len(h) }
func (h dirHeap) Less(i, j int) bool { return h[i].GetName()+"/" < h[j].GetName()+"/" }
func (h dirHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dirHeap) Push(x any)        { *h = append(*h, x.(*api.FileInfo)) }
func (h *dirHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// walk lists directory dir whose children's keys start with kp. It
// returns how many children dir has (counted only when nothing was
// skipped by a seek) and any error.
func (wk *walker) walk(dir, kp string) (children int, err error) {
	var pfxRem string
	if len(wk.prefix) > len(kp) {
		pfxRem = wk.prefix[len(kp):]
	}
	var start string
	if pfxRem != "" {
		start = seekFrom(pfxRem)
	}
	if rel, ok := strings.CutPrefix(wk.after, kp); ok && rel != "" {
		c, _, _ := strings.Cut(rel, "/")
		if s := seekFrom(c); s > start {
			start = s
		}
	}
	var pending dirHeap
	emitDir := func(d *api.FileInfo) error {
		dk := kp + d.GetName() + "/"
		if wk.slash && len(dk) > len(wk.prefix) {
			if dk > wk.after && strings.HasPrefix(dk, wk.prefix) {
				if !wk.yield(entry{key: dk, prefix: true}) {
					wk.done = true
				}
			}
			return nil
		}
		if dk <= wk.after && !strings.HasPrefix(wk.after, dk) {
			return nil
		}
		n, err := wk.walk(d.GetPath(), dk)
		if err != nil {
			if errors.Is(err, sdk.ErrNotFound) {
				return nil // removed while we listed
			}
			return err
		}
		if n == 0 && !wk.done && dk > wk.after && strings.HasPrefix(dk, wk.prefix) {
			if !wk.yield(entry{key: dk, info: d}) {
				wk.done = true
			}
		}
		return nil
	}
	for info, lerr := range wk.c.ListFrom(wk.ctx, dir, sdk.ListFromOptions{After: pred(start), PageSize: 1000, XAttrs: []string{xattrMeta}}) {
		if lerr != nil {
			return children, lerr
		}
		if info.GetPath() == dir {
			return 0, nil // a file, not a directory: nothing below it
		}
		children++
		name := info.GetName()
		if pfxRem != "" && !strings.HasPrefix(name, pfxRem) {
			if name > pfxRem {
				break
			}
			continue
		}
		sk := name
		if info.GetFolder() {
			sk += "/"
		}
		for len(pending) > 0 && pending[0].GetName()+"/" < sk {
			if err := emitDir(heap.Pop(&pending).(*api.FileInfo)); err != nil || wk.done {
				return children, err
			}
		}
		if info.GetFolder() {
			heap.Push(&pending, info)
			continue
		}
		if !info.GetCompleted() {
			continue // being written: not an object yet
		}
		if key := kp + name; key > wk.after {
			if !wk.yield(entry{key: key, info: info}) {
				wk.done = true
				return children, nil
			}
		}
	}
	for len(pending) > 0 {
		if err := emitDir(heap.Pop(&pending).(*api.FileInfo)); err != nil || wk.done {
			return children, err
		}
	}
	if start != "" {
		children = max(children, 1) // a seek skipped names: not known to be empty
	}
	return children, nil
}

// listQuery is a ListObjects(V2) request.
type listQuery struct {
	prefix, delim, after string
	maxKeys              int
}

// list returns up to maxKeys entries after q.after, and whether more
// follow.
func (q *request) list(lq listQuery) ([]entry, bool, *apiError) {
	bp, aerr := q.bucketPath()
	if aerr != nil {
		return nil, false, aerr
	}
	kp := ""
	if i := strings.LastIndexByte(lq.prefix, '/'); i >= 0 {
		kp = lq.prefix[:i+1]
	}
	root := bp
	if kp != "" {
		p, _, err := objectPath(q.bucket, kp)
		if err != nil {
			// No file path has this prefix: nothing to list.
			return nil, false, q.checkBucket()
		}
		root = p
	}
	var out []entry
	truncated := false
	lastCP := ""
	wk := &walker{c: q.g.c, ctx: q.r.Context(), prefix: lq.prefix, after: lq.after, slash: lq.delim == "/"}
	wk.yield = func(e entry) bool {
		if lq.delim != "" && lq.delim != "/" && !e.prefix {
			if i := strings.Index(e.key[len(lq.prefix):], lq.delim); i >= 0 {
				cp := e.key[:len(lq.prefix)+i+len(lq.delim)]
				if cp == lastCP || cp <= lq.after {
					return true
				}
				lastCP = cp
				e = entry{key: cp, prefix: true}
			}
		}
		if len(out) == lq.maxKeys {
			truncated = true
			return false
		}
		out = append(out, e)
		return true
	}
	n, err := wk.walk(root, kp)
	if err != nil {
		if errors.Is(err, sdk.ErrNotFound) {
			return nil, false, q.checkBucket()
		}
		return nil, false, toAPIError(err, nil)
	}
	// An empty directory named by the prefix itself is its own marker.
	if kp != "" && n == 0 && kp == lq.prefix && kp > lq.after && !wk.done {
		if info, err := q.g.c.Stat(q.r.Context(), root); err == nil && info.GetFolder() {
			wk.yield(entry{key: kp, info: info})
		}
	}
	return out, truncated, nil
}

type listBucketResult struct {
	XMLName               xml.Name       `xml:"ListBucketResult"`
	NS                    string         `xml:"xmlns,attr"`
	Name                  string         `xml:"Name"`
	Prefix                string         `xml:"Prefix"`
	Marker                *string        `xml:"Marker,omitempty"`
	NextMarker            string         `xml:"NextMarker,omitempty"`
	StartAfter            string         `xml:"StartAfter,omitempty"`
	ContinuationToken     *string        `xml:"ContinuationToken"`
	NextContinuationToken string         `xml:"NextContinuationToken,omitempty"`
	KeyCount              *int           `xml:"KeyCount,omitempty"`
	MaxKeys               int            `xml:"MaxKeys"`
	Delimiter             string         `xml:"Delimiter,omitempty"`
	EncodingType          string         `xml:"EncodingType,omitempty"`
	IsTruncated           bool           `xml:"IsTruncated"`
	Contents              []object       `xml:"Contents"`
	CommonPrefixes        []commonPrefix `xml:"CommonPrefixes"`
}

type object struct {
	Key          string `xml:"Key"`
	LastModified string `xml:"LastModified"`
	ETag         string `xml:"ETag"`
	Size         int64  `xml:"Size"`
	StorageClass string `xml:"StorageClass"`
	Owner        *owner `xml:"Owner,omitempty"`
}

type commonPrefix struct {
	Prefix string `xml:"Prefix"`
}

// emptyETag is the MD5 of no bytes: the ETag of a directory marker.
const emptyETag = "d41d8cd98f00b204e9800998ecf8427e"

// s3URLEncode encodes a key for encoding-type=url as S3 does: percent
// encoding as in a URL's path (a space is %20, '+' is %2B), '/' kept.
func s3URLEncode(s string) string {
	e := strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
	return strings.ReplaceAll(e, "%2F", "/")
}

// listParams reads what every listing takes: prefix, delimiter, max-keys
// and encoding-type (and returns the key encoder it asks for).
func listParams(v url.Values) (listQuery, string, func(string) string, *apiError) {
	lq := listQuery{prefix: v.Get("prefix"), delim: v.Get("delimiter"), maxKeys: 1000}
	if s := v.Get("max-keys"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return lq, "", nil, errInvalidArgument("max-keys %q: want a number from 0 to 1000", s)
		}
		lq.maxKeys = min(n, 1000)
	}
	enc := v.Get("encoding-type")
	if enc != "" && enc != "url" {
		return lq, "", nil, errInvalidArgument("encoding-type %q: only url is supported", enc)
	}
	encode := func(s string) string {
		if enc == "url" {
			return s3URLEncode(s)
		}
		return s
	}
	return lq, enc, encode, nil
}

// listPage runs a listing (none for max-keys 0, but the bucket must exist).
func (q *request) listPage(lq listQuery) ([]entry, bool, *apiError) {
	if lq.maxKeys == 0 {
		// Nothing to list, but only for someone who may list it.
		if aerr := q.checkBucket(); aerr != nil {
			return nil, false, aerr
		}
		bp, _ := q.bucketPath()
		if err := q.g.c.CheckAccess(q.r.Context(), bp, 5); err != nil {
			return nil, false, toAPIError(err, errNoSuchBucket(q.bucket))
		}
		return nil, false, nil
	}
	return q.list(lq)
}

// etags returns the ETag (quoted) of each listed object ("" for a common
// prefix).
func (q *request) etags(entries []entry) []string {
	out := make([]string, len(entries))
	for i, e := range entries {
		if !e.prefix {
			etag, _ := etagOf(e.info)
			out[i] = `"` + etag + `"`
		}
	}
	return out
}

func (q *request) listObjects(version int) {
	v := q.r.URL.Query()
	lq, enc, encode, aerr := listParams(v)
	if aerr != nil {
		q.fail(aerr, nil)
		return
	}
	res := listBucketResult{NS: xmlNS, Name: q.bucket, MaxKeys: lq.maxKeys, EncodingType: enc}
	// V1 echoes the prefix as sent, V2 encoded (botocore decodes exactly
	// these fields).
	res.Prefix, res.Delimiter = lq.prefix, encode(lq.delim)
	if version == 2 {
		res.Prefix = encode(lq.prefix)
		lq.after = v.Get("start-after")
		res.StartAfter = encode(lq.after)
		if _, ok := v["continuation-token"]; ok {
			// Echoed as sent, even empty (which starts at the beginning).
			tok := v.Get("continuation-token")
			b, err := base64.RawURLEncoding.DecodeString(tok)
			if err != nil {
				q.fail(errInvalidArgument("the continuation token %q is not valid", tok), nil)
				return
			}
			if tok != "" {
				lq.after = string(b)
			}
			res.ContinuationToken = &tok
		}
	} else {
		lq.after = v.Get("marker")
		m := encode(lq.after)
		res.Marker = &m
	}
	entries, truncated, aerr := q.listPage(lq)
	if aerr != nil {
		q.fail(aerr, nil)
		return
	}
	res.IsTruncated = truncated
	fetchOwner := version == 1 || v.Get("fetch-owner") == "true"
	etags := q.etags(entries)
	for i, e := range entries {
		if e.prefix {
			res.CommonPrefixes = append(res.CommonPrefixes, commonPrefix{Prefix: encode(e.key)})
			continue
		}
		o := object{Key: encode(e.key), LastModified: isoTime(e.info.GetLastModificationTimeMs()), StorageClass: "STANDARD", ETag: etags[i]}
		if !e.info.GetFolder() {
			o.Size = e.info.GetLength()
		}
		if fetchOwner {
			o.Owner = &owner{ID: e.info.GetOwner(), DisplayName: e.info.GetOwner()}
		}
		res.Contents = append(res.Contents, o)
	}
	if truncated && len(entries) > 0 {
		last := entries[len(entries)-1].key
		if version == 2 {
			res.NextContinuationToken = base64.RawURLEncoding.EncodeToString([]byte(last))
		} else {
			res.NextMarker = encode(last)
		}
	}
	if version == 2 {
		n := len(entries)
		res.KeyCount = &n
	}
	writeXML(q.w, http.StatusOK, res)
}
