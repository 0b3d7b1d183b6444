package sigv4

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// Bounds on what a chunked body may hold.
const (
	maxChunkLine    = 4096     // one "size;chunk-signature=..." line
	maxSignedChunk  = 16 << 20 // a signed chunk is held whole until its signature is checked
	maxTrailerBytes = 16 << 10
)

// readers are the buffered readers of chunked bodies, reused: a small PUT
// should not pay for zeroing a fresh buffer.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 64<<10) }}

// IsStreaming reports whether a payload hash names an aws-chunked body.
func IsStreaming(payloadHash string) bool {
	switch payloadHash {
	case StreamingSigned, StreamingSignedTrailer, StreamingUnsignedTrailer:
		return true
	}
	return false
}

// ChunkedReader decodes an aws-chunked body:
//
//	<hex size>;chunk-signature=<sig>\r\n<data>\r\n ... 0;chunk-signature=<sig>\r\n
//	[trailer lines name:value, x-amz-trailer-signature:<sig>]\r\n
//
// (unsigned bodies leave out the signatures). Each signed chunk is checked
// against the chain that starts at the request's signature before any of
// its bytes are returned; a bad one fails the read with
// SignatureDoesNotMatch. Trailers (x-amz-checksum-*) are available after
// io.EOF.
type ChunkedReader struct {
	br      *bufio.Reader
	signed  bool // chunks carry signatures
	trailer bool // a trailer section follows the last chunk
	check   bool // signatures are verified (false for anonymous requests)
	auth    *Auth
	prevSig string

	buf    []byte // the current signed chunk
	cbuf   bytes.Buffer
	off    int
	remain int64 // unsigned: bytes of the current chunk still to return
	done   bool
	err    error

	decoded  int64
	trailers map[string]string
}

// NewChunkedReader decodes body, whose x-amz-content-sha256 was mode (one of
// the STREAMING-* values), for the request authenticated as a.
func NewChunkedReader(body io.Reader, mode string, a *Auth) (*ChunkedReader, error) {
	br := readers.Get().(*bufio.Reader)
	br.Reset(body)
	c := &ChunkedReader{br: br, auth: a, trailers: map[string]string{}}
	switch mode {
	case StreamingSigned:
		c.signed = true
	case StreamingSignedTrailer:
		c.signed, c.trailer = true, true
	case StreamingUnsignedTrailer:
		c.trailer = true
	default:
		return nil, errf("InvalidArgument", http.StatusBadRequest, "x-amz-content-sha256 %q is not an aws-chunked mode", mode)
	}
	if c.signed && a != nil && !a.Anonymous && a.signingKey != nil {
		c.check = true
		c.prevSig = a.seed
	}
	return c, nil
}

// Decoded returns how many payload bytes have been returned so far.
func (c *ChunkedReader) Decoded() int64 { return c.decoded }

// Trailers returns the trailer headers (lower-case names), complete once
// Read has returned io.EOF.
func (c *ChunkedReader) Trailers() map[string]string { return c.trailers }

func incomplete(format string, a ...any) error {
	return errf("IncompleteBody", http.StatusBadRequest, "aws-chunked body: "+format, a...)
}

// Read implements io.Reader.
func (c *ChunkedReader) Read(p []byte) (int, error) {
	for {
		if c.err != nil {
			return 0, c.err
		}
		if len(p) == 0 {
			return 0, nil
		}
		if c.signed {
			if c.off < len(c.buf) {
				n := copy(p, c.buf[c.off:])
				c.off += n
				c.decoded += int64(n)
				return n, nil
			}
		} else if c.remain > 0 {
			n, err := c.br.Read(p[:min(int64(len(p)), c.remain)])
			c.remain -= int64(n)
			c.decoded += int64(n)
			if err == io.EOF {
				err = incomplete("ends inside a chunk")
			}
			if err != nil {
				c.err = err
			}
			if c.remain == 0 && err == nil {
				if e := c.expectCRLF(); e != nil {
					c.err = e
				}
			}
			if n > 0 {
				return n, nil
			}
			continue
		}
		if c.done {
			c.err = io.EOF
			c.release()
			continue
		}
		if err := c.next(); err != nil {
			c.err = err
			c.release()
		}
	}
}

// release returns the buffered reader once the body is over.
func (c *ChunkedReader) release() {
	if c.br != nil {
		c.br.Reset(nil)
		readers.Put(c.br)
		c.br = nil
	}
}

// next reads the next chunk header (and, signed, the whole chunk).
func (c *ChunkedReader) next() error {
	line, err := c.readLine(maxChunkLine)
	if err != nil {
		return err
	}
	sizeStr, ext, _ := strings.Cut(line, ";")
	size, err := strconv.ParseInt(strings.TrimSpace(sizeStr), 16, 64)
	if err != nil || size < 0 {
		return incomplete("bad chunk size %q", truncate(sizeStr))
	}
	var sig string
	for _, e := range strings.Split(ext, ";") {
		if k, v, ok := strings.Cut(strings.TrimSpace(e), "="); ok && k == "chunk-signature" {
			sig = v
		}
	}
	if c.signed {
		if sig == "" {
			return incomplete("chunk without chunk-signature")
		}
		if size > maxSignedChunk {
			return incomplete("signed chunk of %d bytes exceeds %d", size, maxSignedChunk)
		}
		// Grown as bytes arrive, so a lying size costs no memory.
		c.cbuf.Reset()
		if n, _ := io.CopyN(&c.cbuf, c.br, size); n != size {
			return incomplete("ends inside a chunk")
		}
		c.buf, c.off = c.cbuf.Bytes(), 0
		if c.check {
			h := sha256.Sum256(c.buf)
			want := sign(c.auth.signingKey, "AWS4-HMAC-SHA256-PAYLOAD\n"+c.auth.amzDate+"\n"+c.auth.scope+"\n"+c.prevSig+"\n"+EmptySHA256+"\n"+hex.EncodeToString(h[:]))
			if !hmac.Equal([]byte(want), []byte(sig)) {
				return errf("SignatureDoesNotMatch", http.StatusForbidden, "the signature of chunk %d bytes at offset %d does not match", size, c.decoded)
			}
			c.prevSig = want
		}
		if size == 0 {
			return c.finish()
		}
		return c.expectCRLF()
	}
	if size == 0 {
		return c.finish()
	}
	c.remain = size
	return nil
}

// finish reads what follows the last chunk: trailers, or just CRLF.
func (c *ChunkedReader) finish() error {
	c.done = true
	var canon strings.Builder
	var trailerSig string
	total := 0
	for {
		line, err := c.readLine(maxChunkLine)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		total += len(line) + 2
		if total > maxTrailerBytes {
			return incomplete("trailer section exceeds %d bytes", maxTrailerBytes)
		}
		if line == "" {
			continue
		}
		if !c.trailer {
			return incomplete("data after the last chunk")
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return incomplete("malformed trailer %q", truncate(line))
		}
		k = strings.ToLower(strings.TrimSpace(k))
		v = strings.TrimSpace(v)
		if k == "x-amz-trailer-signature" {
			trailerSig = v
			continue
		}
		c.trailers[k] = v
		canon.WriteString(k + ":" + v + "\n")
	}
	if c.trailer && c.signed && c.check {
		if trailerSig == "" {
			return errf("SignatureDoesNotMatch", http.StatusForbidden, "the signed trailer has no x-amz-trailer-signature")
		}
		want := sign(c.auth.signingKey, "AWS4-HMAC-SHA256-TRAILER\n"+c.auth.amzDate+"\n"+c.auth.scope+"\n"+c.prevSig+"\n"+sha256Hex(canon.String()))
		if !hmac.Equal([]byte(want), []byte(trailerSig)) {
			return errf("SignatureDoesNotMatch", http.StatusForbidden, "the trailer signature does not match")
		}
	}
	return nil
}

// readLine reads one line ending in \n (a \r before it is dropped). At the
// very end of the body it returns io.EOF; a line cut short is an error.
func (c *ChunkedReader) readLine(limit int) (string, error) {
	var b []byte
	for {
		frag, err := c.br.ReadSlice('\n')
		b = append(b, frag...)
		if len(b) > limit {
			return "", incomplete("line longer than %d bytes", limit)
		}
		if err == nil {
			break
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF {
			if len(b) == 0 {
				return "", io.EOF
			}
			if !c.done {
				return "", incomplete("ends inside a chunk header")
			}
			break // a last trailer line without its newline
		}
		return "", err
	}
	s := strings.TrimSuffix(string(b), "\n")
	return strings.TrimSuffix(s, "\r"), nil
}

func (c *ChunkedReader) expectCRLF() error {
	var two [2]byte
	if _, err := io.ReadFull(c.br, two[:]); err != nil || two != [2]byte{'\r', '\n'} {
		return incomplete("chunk data not followed by CRLF")
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}
