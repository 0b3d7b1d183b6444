package sigv4

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"hash"
	"hash/crc32"
	"hash/crc64"
	"io"
	"net/http"
	"strconv"
	"strings"
)

var (
	castagnoli = crc32.MakeTable(crc32.Castagnoli)
	// nvme is CRC-64/NVME (reflected polynomial 0x9a6c9329ac4bc9b5), the
	// CRC64NVME of S3's checksums.
	nvme = crc64.MakeTable(0x9a6c9329ac4bc9b5)
)

// ChecksumAlgorithms are the x-amz-checksum-<algo> names S3 defines.
var ChecksumAlgorithms = []string{"crc32", "crc32c", "crc64nvme", "sha1", "sha256"}

// NewChecksum returns the hash of an x-amz-checksum algorithm (any case).
func NewChecksum(algo string) (hash.Hash, bool) {
	switch strings.ToLower(algo) {
	case "crc32":
		return crc32.NewIEEE(), true
	case "crc32c":
		return crc32.New(castagnoli), true
	case "crc64nvme":
		return crc64.New(nvme), true
	case "sha1":
		return sha1.New(), true
	case "sha256":
		return sha256.New(), true
	}
	return nil, false
}

// Body reads a request body the way S3 does: it decodes aws-chunked
// encoding, and at the end checks every digest the client declared —
// x-amz-content-sha256, Content-MD5, x-amz-checksum-* (as a header or a
// trailer) — and the declared length. A mismatch turns the final io.EOF
// into an *Error, so a writer that stops on the error never commits a
// corrupt object. It always computes the MD5 (the object's ETag).
type Body struct {
	r       io.Reader
	chunked *ChunkedReader
	md5     hash.Hash
	sha     hash.Hash
	wantSHA string
	wantMD5 []byte
	ck      hash.Hash
	ckAlgo  string
	ckWant  string // from the header; else from the trailer at the end
	wantLen int64  // -1: unknown
	n       int64
	err     error
}

// NewBody prepares r's body for reading; a is r's authentication.
func NewBody(r *http.Request, a *Auth) (*Body, error) {
	b := &Body{r: r.Body, md5: md5.New(), wantLen: r.ContentLength}
	if r.Body == nil {
		b.r = http.NoBody
	}
	if vs, ok := r.Header["Content-Md5"]; ok {
		v := strings.Join(vs, ",")
		d, err := base64.StdEncoding.DecodeString(v)
		if err != nil || len(d) != md5.Size {
			return nil, errf("InvalidDigest", http.StatusBadRequest, "Content-MD5 %q is not a base64 MD5", v)
		}
		b.wantMD5 = d
	}
	ph := a.PayloadHash
	switch {
	case IsStreaming(ph):
		cr, err := NewChunkedReader(b.r, ph, a)
		if err != nil {
			return nil, err
		}
		b.r, b.chunked = cr, cr
		b.wantLen = -1
		if v := r.Header.Get("X-Amz-Decoded-Content-Length"); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return nil, errf("InvalidArgument", http.StatusBadRequest, "x-amz-decoded-content-length %q is not a length", v)
			}
			b.wantLen = n
		}
	case ph != "" && ph != UnsignedPayload:
		b.sha, b.wantSHA = sha256.New(), strings.ToLower(ph)
	}
	algo := strings.ToLower(r.Header.Get("X-Amz-Checksum-Algorithm"))
	if algo == "" {
		algo = strings.ToLower(r.Header.Get("X-Amz-Sdk-Checksum-Algorithm"))
	}
	for _, name := range ChecksumAlgorithms {
		if v := r.Header.Get("X-Amz-Checksum-" + name); v != "" {
			algo, b.ckWant = name, v
		}
	}
	for _, t := range r.Header.Values("X-Amz-Trailer") {
		for _, name := range strings.Split(t, ",") {
			name = strings.ToLower(strings.TrimSpace(name))
			if a, ok := strings.CutPrefix(name, "x-amz-checksum-"); ok {
				algo = a
			}
		}
	}
	if algo != "" {
		h, ok := NewChecksum(algo)
		if !ok {
			return nil, errf("InvalidRequest", http.StatusBadRequest, "checksum algorithm %q: want one of %s", algo, strings.Join(ChecksumAlgorithms, ", "))
		}
		b.ck, b.ckAlgo = h, algo
	}
	return b, nil
}

// Read implements io.Reader.
func (b *Body) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.r.Read(p)
	if n > 0 {
		b.n += int64(n)
		b.md5.Write(p[:n])
		if b.sha != nil {
			b.sha.Write(p[:n])
		}
		if b.ck != nil {
			b.ck.Write(p[:n])
		}
	}
	if err == nil && n > 0 && b.wantLen >= 0 && b.n >= b.wantLen {
		// The declared length is in. A reader that stops there (the SDK
		// reads a part through io.LimitReader) would never ask for the
		// EOF that checks the digests: read on to it now, so the last
		// bytes come with the verdict.
		err = b.atEnd()
	}
	if err == io.EOF {
		err = b.verify()
		if err == nil {
			err = io.EOF
		}
	}
	if err != nil {
		b.err = err
	}
	return n, err
}

// atEnd reads past the declared length: io.EOF when the body ends there
// (an aws-chunked body's final chunk and trailers are read), else the
// error of a body longer than declared or of the read.
func (b *Body) atEnd() error {
	var one [1]byte
	for range 100 { // a reader may return (0, nil) a few times
		m, err := b.r.Read(one[:])
		if m > 0 {
			return errf("IncompleteBody", http.StatusBadRequest, "the body has more bytes than the %d the request declared", b.wantLen)
		}
		if err != nil {
			return err
		}
	}
	return io.ErrNoProgress
}

func (b *Body) verify() error {
	if b.wantLen >= 0 && b.n != b.wantLen {
		return errf("IncompleteBody", http.StatusBadRequest, "the body has %d bytes, the request declared %d", b.n, b.wantLen)
	}
	if b.sha != nil {
		if got := hex.EncodeToString(b.sha.Sum(nil)); got != b.wantSHA {
			return errf("XAmzContentSHA256Mismatch", http.StatusBadRequest, "the body's SHA-256 %s is not the x-amz-content-sha256 %s", got, b.wantSHA)
		}
	}
	if b.wantMD5 != nil {
		if got := b.md5.Sum(nil); string(got) != string(b.wantMD5) {
			return errf("BadDigest", http.StatusBadRequest, "the Content-MD5 you specified did not match what we received")
		}
	}
	if b.ck != nil {
		want := b.ckWant
		if want == "" && b.chunked != nil {
			want = b.chunked.Trailers()["x-amz-checksum-"+b.ckAlgo]
		}
		if want == "" {
			if b.chunked != nil && b.chunked.trailer {
				return errf("InvalidRequest", http.StatusBadRequest, "x-amz-trailer names x-amz-checksum-%s but the body has no such trailer", b.ckAlgo)
			}
			// An algorithm named without a value: nothing to check.
			return nil
		}
		if got := base64.StdEncoding.EncodeToString(b.ck.Sum(nil)); got != want {
			return errf("BadDigest", http.StatusBadRequest, "the %s you specified did not match the calculated checksum", strings.ToUpper(b.ckAlgo))
		}
		b.ckWant = want
	}
	return nil
}

// Size returns the bytes read so far.
func (b *Body) Size() int64 { return b.n }

// DeclaredLength is the length the request declared for the (decoded)
// body: Content-Length, or x-amz-decoded-content-length for an
// aws-chunked one; -1 when it declared none.
func (b *Body) DeclaredLength() int64 { return b.wantLen }

// MD5 returns the MD5 of the bytes read (complete after io.EOF).
func (b *Body) MD5() []byte { return b.md5.Sum(nil) }

// Checksum returns the checksum algorithm the client declared and its
// verified value ("" when none), for echoing as x-amz-checksum-<algo>.
func (b *Body) Checksum() (algo, value string) {
	if b.ck == nil || b.ckWant == "" {
		return "", ""
	}
	return b.ckAlgo, b.ckWant
}
