// Package sigv4 authenticates S3 requests signed with AWS Signature
// Version 4 — in the Authorization header or in the query string
// (presigned URLs) — and decodes aws-chunked request bodies, verifying each
// chunk's signature and collecting trailing checksums. The S3 gateway uses
// it; it knows nothing of buckets or files.
package sigv4

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Payload hash values of x-amz-content-sha256 other than a hex digest.
const (
	UnsignedPayload          = "UNSIGNED-PAYLOAD"
	StreamingSigned          = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
	StreamingSignedTrailer   = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
	StreamingUnsignedTrailer = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
	EmptySHA256              = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

	algorithm   = "AWS4-HMAC-SHA256"
	isoBasic    = "20060102T150405Z"
	maxSkew     = 15 * time.Minute
	maxPresign  = 7 * 24 * time.Hour
	terminator  = "aws4_request"
	serviceName = "s3"
)

// Error is a request the gateway refuses: an S3 error code, the HTTP
// status that goes with it, and a message for a person.
type Error struct {
	Code    string
	Status  int
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func errf(code string, status int, format string, a ...any) *Error {
	return &Error{Code: code, Status: status, Message: fmt.Sprintf(format, a...)}
}

// Credentials find the secret that signs an access key's requests.
type Credentials interface {
	// Secret returns accessKey's secret; ok is false for a key unknown here.
	Secret(accessKey string) (secret string, ok bool)
	// Required reports whether every request must be signed. When false,
	// requests are accepted unsigned and signatures are not checked.
	Required() bool
}

// Static is the gateway's credential source: a map of access key → secret
// and, for any other key, one shared secret (the cluster token). With
// neither, nothing is required.
type Static struct {
	Users  map[string]string
	Shared string
}

// Secret implements Credentials.
func (s Static) Secret(accessKey string) (string, bool) {
	if v, ok := s.Users[accessKey]; ok {
		return v, true
	}
	if s.Shared != "" {
		return s.Shared, true
	}
	return "", false
}

// Required implements Credentials.
func (s Static) Required() bool { return s.Shared != "" || len(s.Users) > 0 }

// Auth is an authenticated request: who signed it, and what the body's
// chunk signatures must chain from.
type Auth struct {
	AccessKey   string // "" when anonymous
	Anonymous   bool   // not signed (accepted because credentials are not required)
	Presigned   bool
	PayloadHash string // x-amz-content-sha256 as signed (UNSIGNED-PAYLOAD, STREAMING-..., or hex)

	signingKey []byte
	seed       string // the request's signature: the first chunk chains from it
	amzDate    string
	scope      string
}

// Verify authenticates r. It returns the *Auth of a well-signed (or, when
// credentials are not required, unsigned) request, and an *Error otherwise.
func Verify(r *http.Request, creds Credentials, now time.Time) (*Auth, error) {
	q := r.URL.Query()
	hdr := r.Header.Get("Authorization")
	switch {
	case q.Get("X-Amz-Algorithm") != "" || q.Get("X-Amz-Signature") != "":
		if !creds.Required() {
			return &Auth{Anonymous: true, Presigned: true, PayloadHash: UnsignedPayload}, nil
		}
		return verifyQuery(r, q, creds, now)
	case hdr != "":
		if !creds.Required() {
			a := &Auth{Anonymous: true, PayloadHash: r.Header.Get("X-Amz-Content-Sha256")}
			if p, err := ParseAuthorization(hdr); err == nil {
				a.AccessKey = p.AccessKey
			}
			if a.PayloadHash == "" {
				a.PayloadHash = UnsignedPayload
			}
			return a, nil
		}
		return verifyHeader(r, hdr, creds, now)
	default:
		if creds.Required() {
			return nil, errf("AccessDenied", http.StatusForbidden, "anonymous requests are not allowed: sign with AWS Signature Version 4 (access key = user, secret = the user's token)")
		}
		ph := r.Header.Get("X-Amz-Content-Sha256")
		if ph == "" {
			ph = UnsignedPayload
		}
		return &Auth{Anonymous: true, PayloadHash: ph}, nil
	}
}

// Authorization is a parsed SigV4 Authorization header.
type Authorization struct {
	AccessKey     string
	Date          string // yyyymmdd of the credential scope
	Region        string
	Service       string
	SignedHeaders []string
	Signature     string
}

// Scope is the credential scope date/region/service/aws4_request.
func (a *Authorization) Scope() string {
	return a.Date + "/" + a.Region + "/" + a.Service + "/" + terminator
}

// ParseAuthorization parses "AWS4-HMAC-SHA256 Credential=AK/date/region/s3/aws4_request,
// SignedHeaders=a;b, Signature=hex".
func ParseAuthorization(h string) (*Authorization, error) {
	alg, rest, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || alg != algorithm {
		if strings.HasPrefix(h, "AWS ") {
			return nil, errf("AccessDenied", http.StatusForbidden, "AWS Signature Version 2 is not supported: sign with Version 4")
		}
		return nil, errf("AuthorizationHeaderMalformed", http.StatusBadRequest, "the Authorization header does not start with %s", algorithm)
	}
	a := &Authorization{}
	var cred, signed string
	for _, part := range strings.Split(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			continue
		}
		switch k {
		case "Credential":
			cred = v
		case "SignedHeaders":
			signed = v
		case "Signature":
			a.Signature = v
		}
	}
	if err := a.setCredential(cred); err != nil {
		return nil, err
	}
	if signed == "" {
		return nil, errf("AuthorizationHeaderMalformed", http.StatusBadRequest, "the Authorization header has no SignedHeaders")
	}
	a.SignedHeaders = strings.Split(signed, ";")
	if len(a.Signature) != 64 {
		return nil, errf("AuthorizationHeaderMalformed", http.StatusBadRequest, "the Authorization header has no valid Signature")
	}
	return a, nil
}

func (a *Authorization) setCredential(cred string) error {
	parts := strings.Split(cred, "/")
	if len(parts) < 5 {
		return errf("AuthorizationHeaderMalformed", http.StatusBadRequest, "Credential %q: want ACCESSKEY/yyyymmdd/region/s3/aws4_request", cred)
	}
	// An access key may in principle contain '/': the scope is the last four.
	n := len(parts)
	a.AccessKey = strings.Join(parts[:n-4], "/")
	a.Date, a.Region, a.Service = parts[n-4], parts[n-3], parts[n-2]
	if parts[n-1] != terminator || len(a.Date) != 8 || a.AccessKey == "" {
		return errf("AuthorizationHeaderMalformed", http.StatusBadRequest, "Credential %q: want ACCESSKEY/yyyymmdd/region/s3/aws4_request", cred)
	}
	return nil
}

func verifyHeader(r *http.Request, hdr string, creds Credentials, now time.Time) (*Auth, error) {
	a, err := ParseAuthorization(hdr)
	if err != nil {
		return nil, err
	}
	secret, ok := creds.Secret(a.AccessKey)
	if !ok {
		return nil, errf("InvalidAccessKeyId", http.StatusForbidden, "the access key %q is not known to this gateway", a.AccessKey)
	}
	amzDate := r.Header.Get("X-Amz-Date")
	if amzDate == "" {
		if d, err := http.ParseTime(r.Header.Get("Date")); err == nil {
			amzDate = d.UTC().Format(isoBasic)
		}
	}
	t, err := time.Parse(isoBasic, amzDate)
	if err != nil {
		return nil, errf("AccessDenied", http.StatusForbidden, "missing or malformed X-Amz-Date %q", amzDate)
	}
	if d := now.Sub(t); d > maxSkew || d < -maxSkew {
		return nil, errf("RequestTimeTooSkewed", http.StatusForbidden, "the request time %s differs from the gateway's %s by more than %s", t.Format(time.RFC3339), now.UTC().Format(time.RFC3339), maxSkew)
	}
	if !strings.HasPrefix(amzDate, a.Date) {
		return nil, errf("AuthorizationHeaderMalformed", http.StatusBadRequest, "the credential date %s is not the request date %s", a.Date, amzDate[:8])
	}
	payload := r.Header.Get("X-Amz-Content-Sha256")
	if payload == "" {
		payload = UnsignedPayload
	}
	if !validPayloadHash(payload) {
		return nil, errf("InvalidArgument", http.StatusBadRequest, "x-amz-content-sha256 %q: want a hex SHA-256, UNSIGNED-PAYLOAD or STREAMING-...", payload)
	}
	key := SigningKey(secret, a.Date, a.Region, a.Service)
	scope := a.Scope()
	for _, uri := range canonicalURIs(r) {
		creq := canonicalRequest(r, uri, canonicalQuery(r.URL.RawQuery, false), a.SignedHeaders, payload)
		sig := sign(key, stringToSign(amzDate, scope, creq))
		if hmac.Equal([]byte(sig), []byte(a.Signature)) {
			return &Auth{AccessKey: a.AccessKey, PayloadHash: payload, signingKey: key, seed: sig, amzDate: amzDate, scope: scope}, nil
		}
	}
	return nil, errf("SignatureDoesNotMatch", http.StatusForbidden, "the request signature we calculated does not match the signature you provided: check your secret (for access key %q) and signing method", a.AccessKey)
}

func verifyQuery(r *http.Request, q url.Values, creds Credentials, now time.Time) (*Auth, error) {
	if alg := q.Get("X-Amz-Algorithm"); alg != algorithm {
		return nil, errf("AuthorizationQueryParametersError", http.StatusBadRequest, "X-Amz-Algorithm %q: only %s is supported", alg, algorithm)
	}
	a := &Authorization{Signature: q.Get("X-Amz-Signature")}
	if err := a.setCredential(q.Get("X-Amz-Credential")); err != nil {
		e := err.(*Error)
		e.Code = "AuthorizationQueryParametersError"
		return nil, e
	}
	signed := q.Get("X-Amz-SignedHeaders")
	if signed == "" || len(a.Signature) != 64 {
		return nil, errf("AuthorizationQueryParametersError", http.StatusBadRequest, "X-Amz-SignedHeaders and a 64-digit X-Amz-Signature are required")
	}
	a.SignedHeaders = strings.Split(signed, ";")
	secret, ok := creds.Secret(a.AccessKey)
	if !ok {
		return nil, errf("InvalidAccessKeyId", http.StatusForbidden, "the access key %q is not known to this gateway", a.AccessKey)
	}
	amzDate := q.Get("X-Amz-Date")
	t, err := time.Parse(isoBasic, amzDate)
	if err != nil {
		return nil, errf("AuthorizationQueryParametersError", http.StatusBadRequest, "malformed X-Amz-Date %q", amzDate)
	}
	exp, err := strconv.ParseInt(q.Get("X-Amz-Expires"), 10, 64)
	if err != nil || time.Duration(exp)*time.Second > maxPresign {
		return nil, errf("AuthorizationQueryParametersError", http.StatusBadRequest, "X-Amz-Expires %q: want seconds in [0, 604800]", q.Get("X-Amz-Expires"))
	}
	if exp < 0 {
		// A URL presigned to expire in the past (botocore signs whatever
		// ExpiresIn it is given) has expired.
		return nil, errf("AccessDenied", http.StatusForbidden, "request has expired (X-Amz-Date %s, X-Amz-Expires %d)", amzDate, exp)
	}
	if t.Sub(now) > maxSkew {
		return nil, errf("AccessDenied", http.StatusForbidden, "the request is not valid yet (X-Amz-Date %s)", amzDate)
	}
	if now.After(t.Add(time.Duration(exp) * time.Second)) {
		return nil, errf("AccessDenied", http.StatusForbidden, "request has expired (X-Amz-Date %s, X-Amz-Expires %d)", amzDate, exp)
	}
	payload := q.Get("X-Amz-Content-Sha256")
	if payload == "" {
		payload = r.Header.Get("X-Amz-Content-Sha256")
	}
	if payload == "" {
		payload = UnsignedPayload
	}
	key := SigningKey(secret, a.Date, a.Region, a.Service)
	scope := a.Scope()
	for _, uri := range canonicalURIs(r) {
		creq := canonicalRequest(r, uri, canonicalQuery(r.URL.RawQuery, true), a.SignedHeaders, payload)
		sig := sign(key, stringToSign(amzDate, scope, creq))
		if hmac.Equal([]byte(sig), []byte(a.Signature)) {
			return &Auth{AccessKey: a.AccessKey, Presigned: true, PayloadHash: payload, signingKey: key, seed: sig, amzDate: amzDate, scope: scope}, nil
		}
	}
	return nil, errf("SignatureDoesNotMatch", http.StatusForbidden, "the presigned URL's signature does not match: check the secret of access key %q", a.AccessKey)
}

func validPayloadHash(p string) bool {
	switch p {
	case UnsignedPayload, StreamingSigned, StreamingSignedTrailer, StreamingUnsignedTrailer:
		return true
	}
	if len(p) != 64 {
		return false
	}
	_, err := hex.DecodeString(p)
	return err == nil
}

// SigningKey derives the key that signs requests of one day, region and
// service.
func SigningKey(secret, date, region, service string) []byte {
	k := hmacSHA256([]byte("AWS4"+secret), date)
	k = hmacSHA256(k, region)
	k = hmacSHA256(k, service)
	return hmacSHA256(k, terminator)
}

func hmacSHA256(key []byte, data string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(data))
	return h.Sum(nil)
}

func sign(key []byte, s string) string { return hex.EncodeToString(hmacSHA256(key, s)) }

func sha256Hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func stringToSign(amzDate, scope, canonicalRequest string) string {
	return algorithm + "\n" + amzDate + "\n" + scope + "\n" + sha256Hex(canonicalRequest)
}

// canonicalURIs are the paths a client may have signed: the path exactly
// as sent, and the decoded path re-encoded the way AWS SDKs encode it.
func canonicalURIs(r *http.Request) []string {
	raw := r.RequestURI
	if i := strings.IndexByte(raw, '?'); i >= 0 {
		raw = raw[:i]
	}
	if !strings.HasPrefix(raw, "/") {
		raw = r.URL.EscapedPath()
	}
	if raw == "" {
		raw = "/"
	}
	enc := URIEncode(r.URL.Path, false)
	if enc == "" {
		enc = "/"
	}
	if enc == raw {
		return []string{raw}
	}
	return []string{raw, enc}
}

// URIEncode percent-encodes s as SigV4 wants: every byte but the unreserved
// A-Z a-z 0-9 - _ . ~ (and '/' unless encodeSlash), in upper-case hex.
func URIEncode(s string, encodeSlash bool) string {
	var b strings.Builder
	b.Grow(len(s))
	const hexd = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_', c == '.', c == '~':
			b.WriteByte(c)
		case c == '/' && !encodeSlash:
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hexd[c>>4])
			b.WriteByte(hexd[c&15])
		}
	}
	return b.String()
}

// canonicalQuery sorts and re-encodes the raw query; presigned drops the
// signature itself.
func canonicalQuery(raw string, presigned bool) string {
	if raw == "" {
		return ""
	}
	type kv struct{ k, v string }
	var pairs []kv
	for _, part := range strings.Split(raw, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		if dk, err := url.PathUnescape(k); err == nil {
			k = dk
		}
		if dv, err := url.PathUnescape(v); err == nil {
			v = dv
		}
		if presigned && k == "X-Amz-Signature" {
			continue
		}
		pairs = append(pairs, kv{URIEncode(k, true), URIEncode(v, true)})
	}
	sort.Slice(pairs, func(i, j int) bool {
		if pairs[i].k != pairs[j].k {
			return pairs[i].k < pairs[j].k
		}
		return pairs[i].v < pairs[j].v
	})
	var b strings.Builder
	for i, p := range pairs {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(p.k)
		b.WriteByte('=')
		b.WriteString(p.v)
	}
	return b.String()
}

func canonicalRequest(r *http.Request, uri, query string, signed []string, payload string) string {
	var b strings.Builder
	b.WriteString(r.Method)
	b.WriteByte('\n')
	b.WriteString(uri)
	b.WriteByte('\n')
	b.WriteString(query)
	b.WriteByte('\n')
	for _, h := range signed {
		b.WriteString(h)
		b.WriteByte(':')
		b.WriteString(headerValue(r, h))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	b.WriteString(strings.Join(signed, ";"))
	b.WriteByte('\n')
	b.WriteString(payload)
	return b.String()
}

// headerValue is the canonical value of a signed header: the values
// joined by commas, each trimmed, runs of spaces folded to one.
func headerValue(r *http.Request, name string) string {
	var vals []string
	switch name {
	case "host":
		vals = []string{r.Host}
	case "transfer-encoding":
		vals = r.TransferEncoding
		if len(vals) == 0 {
			vals = r.Header.Values(name)
		}
	case "content-length":
		vals = r.Header.Values(name)
		if len(vals) == 0 && r.ContentLength >= 0 {
			vals = []string{strconv.FormatInt(r.ContentLength, 10)}
		}
	default:
		vals = r.Header.Values(name)
	}
	out := make([]string, len(vals))
	for i, v := range vals {
		out[i] = strings.Join(strings.Fields(v), " ")
	}
	return strings.Join(out, ",")
}
