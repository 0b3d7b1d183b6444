package sigv4

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"testing"
)

var fuzzModes = []string{StreamingSigned, StreamingSignedTrailer, StreamingUnsignedTrailer}

func fuzzAuth() *Auth {
	key := SigningKey(testSecret, "20130524", "us-east-1", "s3")
	return &Auth{AccessKey: testAK, PayloadHash: StreamingSigned, signingKey: key,
		seed: "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9", amzDate: "20130524T000000Z",
		scope: "20130524/us-east-1/s3/aws4_request"}
}

// FuzzChunkedReader feeds arbitrary bodies to the aws-chunked decoder: it
// must never panic, never return more bytes than it was given, and say
// how many it returned.
func FuzzChunkedReader(f *testing.F) {
	// Small valid bodies in each mode (a large seed makes minimizing slow).
	for i, mode := range fuzzModes {
		f.Add(encodeChunked([]byte("hello, chunked world"), 7, mode, fuzzAuth()), uint8(i))
	}
	f.Add([]byte("5\r\nhello\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n"), uint8(2))
	f.Add([]byte("0;chunk-signature=b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9\r\n\r\n"), uint8(0))
	f.Add([]byte("3;chunk-signature=x\r\nabc\r\n0;chunk-signature=y\r\nx-amz-checksum-crc32c:AAAAAA==\nx-amz-trailer-signature:z\r\n\r\n"), uint8(1))
	f.Add([]byte("ffffffffffffffff\r\n"), uint8(2))
	f.Add([]byte("-1\r\n"), uint8(2))
	f.Fuzz(func(t *testing.T, body []byte, m uint8) {
		mode := fuzzModes[int(m)%len(fuzzModes)]
		for _, a := range []*Auth{fuzzAuth(), {Anonymous: true}} {
			c, err := NewChunkedReader(bytes.NewReader(body), mode, a)
			if err != nil {
				t.Fatal(err)
			}
			out, err := io.ReadAll(io.LimitReader(c, int64(len(body))+1))
			if len(out) > len(body) {
				t.Fatalf("decoded %d bytes from a %d-byte body", len(out), len(body))
			}
			if c.Decoded() != int64(len(out)) {
				t.Fatalf("Decoded() = %d, returned %d", c.Decoded(), len(out))
			}
			if err == nil && c.err != io.EOF {
				t.Fatalf("clean end but state %v", c.err)
			}
		}
	})
}

// encodeChunked writes payload as an aws-chunked body in chunks of size
// chunk, signed with a (or unsigned), with one crc32 trailer when trailer.
func encodeChunked(payload []byte, chunk int, mode string, a *Auth) []byte {
	var b bytes.Buffer
	prev := a.seed
	emit := func(data []byte) {
		switch mode {
		case StreamingUnsignedTrailer:
			fmt.Fprintf(&b, "%x\r\n", len(data))
		default:
			h := sha256.Sum256(data)
			sig := sign(a.signingKey, "AWS4-HMAC-SHA256-PAYLOAD\n"+a.amzDate+"\n"+a.scope+"\n"+prev+"\n"+EmptySHA256+"\n"+hex.EncodeToString(h[:]))
			prev = sig
			fmt.Fprintf(&b, "%x;chunk-signature=%s\r\n", len(data), sig)
		}
		b.Write(data)
		if len(data) > 0 {
			b.WriteString("\r\n")
		}
	}
	for off := 0; off < len(payload); off += chunk {
		emit(payload[off:min(off+chunk, len(payload))])
	}
	emit(nil)
	switch mode {
	case StreamingSigned:
		b.WriteString("\r\n")
	case StreamingSignedTrailer:
		tr := "x-amz-checksum-crc32:AAAAAA==\n"
		sig := sign(a.signingKey, "AWS4-HMAC-SHA256-TRAILER\n"+a.amzDate+"\n"+a.scope+"\n"+prev+"\n"+sha256Hex(tr))
		b.WriteString(tr + "\r\nx-amz-trailer-signature:" + sig + "\r\n\r\n")
	case StreamingUnsignedTrailer:
		b.WriteString("x-amz-checksum-crc32:AAAAAA==\r\n\r\n")
	}
	return b.Bytes()
}

// FuzzChunkedRoundTrip encodes a payload with any chunk size in every mode
// and checks the decoder returns it exactly, trailers included.
func FuzzChunkedRoundTrip(f *testing.F) {
	f.Add([]byte("hello world"), uint16(3))
	f.Add([]byte{}, uint16(1))
	f.Add(bytes.Repeat([]byte{'\r', '\n'}, 100), uint16(7))
	f.Fuzz(func(t *testing.T, payload []byte, chunk uint16) {
		if chunk == 0 {
			chunk = 1
		}
		for _, mode := range fuzzModes {
			a := fuzzAuth()
			body := encodeChunked(payload, int(chunk), mode, a)
			c, err := NewChunkedReader(bytes.NewReader(body), mode, a)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("%s: %v", mode, err)
			}
			if !bytes.Equal(got, payload) {
				t.Fatalf("%s: decoded %q, want %q", mode, got, payload)
			}
			if mode != StreamingSigned && c.Trailers()["x-amz-checksum-crc32"] != "AAAAAA==" {
				t.Fatalf("%s: trailers %v", mode, c.Trailers())
			}
		}
	})
}

// FuzzParseAuthorization: any header parses or fails cleanly; a parsed one
// has a well-formed scope.
func FuzzParseAuthorization(f *testing.F) {
	f.Add("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
	f.Add("AWS AKIA:c2lnbmF0dXJl")
	f.Add("AWS4-HMAC-SHA256 Credential=/////,SignedHeaders=,Signature=")
	f.Fuzz(func(t *testing.T, h string) {
		a, err := ParseAuthorization(h)
		if err != nil {
			return
		}
		if a.AccessKey == "" || len(a.Date) != 8 || len(a.Signature) != 64 || len(a.SignedHeaders) == 0 {
			t.Fatalf("accepted %q as %+v", h, a)
		}
		if !strings.HasSuffix(a.Scope(), "/aws4_request") {
			t.Fatalf("scope %q", a.Scope())
		}
	})
}
