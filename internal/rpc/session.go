package rpc

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Browser sessions. A browser cannot send a bearer token with a page it
// navigates to, so a port that serves pages (the web console) lets a person
// trade a token for a session cookie once (Sessions.Login) and
// authenticates later requests under the session's prefix by that cookie,
// as requireAuth does bearers.
//
// The cookie is self-contained and signed (HMAC-SHA256 with a key derived
// from the cluster token), so every server of the cluster accepts the
// sessions of the others (the FS master's and the job masters' ports are
// one console) and none keeps session state. It carries the user, an
// expiry, a random nonce and a tag of the token it was made from: a session
// ends when it expires or when that user's token (or the cluster token)
// changes. It is HttpOnly, SameSite=Strict and scoped to the prefix; a
// request it authenticates that could change something (any method but
// GET, HEAD and OPTIONS) must also carry the session's CSRF token in
// CSRFHeader and, when the browser names one, an Origin equal to the
// server's own: a page of another site can neither read that token nor set
// the header.

// CSRFHeader is the request header that carries a session's CSRF token.
const CSRFHeader = "X-Alluvium-Csrf"

// DefaultSessionTTL is how long a session lasts when SessionConfig says
// nothing.
const DefaultSessionTTL = 12 * time.Hour

// SessionConfig configures EnableSessions.
type SessionConfig struct {
	// Prefix is the URL path the cookie is sent to and valid for ("/ui/").
	Prefix string
	// TTL is a session's lifetime (0: DefaultSessionTTL).
	TTL time.Duration
	// Login serves the requests under Prefix (and for "/") that carry no
	// credentials at all: the login form and its POST (which calls
	// Sessions.Login). Everything else without credentials still gets 401.
	Login http.Handler
}

// Sessions issues and checks the browser sessions of one http port.
type Sessions struct {
	auth   *authenticator
	key    []byte
	cookie string // cookie name: distinct per cluster, so clusters on one host do not clash
	prefix string
	ttl    time.Duration
	login  http.Handler
	now    func() time.Time
}

// session is the signed content of the cookie.
type session struct {
	User   string `json:"u"`
	System bool   `json:"s,omitempty"`
	Exp    int64  `json:"e"` // unix seconds
	Nonce  string `json:"n"`
	Tag    string `json:"t"` // tag of the token the session was made from
}

// EnableSessions turns on browser sessions under c.Prefix and returns
// their issuer. Call it once, before or while serving.
func (h *HTTPServer) EnableSessions(c SessionConfig) *Sessions {
	s := &Sessions{auth: h.auth, prefix: c.Prefix, ttl: c.TTL, login: c.Login, now: time.Now}
	if s.ttl <= 0 {
		s.ttl = DefaultSessionTTL
	}
	if !strings.HasSuffix(s.prefix, "/") {
		s.prefix += "/"
	}
	// The key follows from the secrets every server of the cluster has, so
	// they all accept each other's sessions; without any (no
	// authentication) sessions are not needed and the key is random.
	var secret []byte
	switch {
	case h.auth.token != "":
		secret = []byte(h.auth.token)
	case len(h.auth.users) > 0:
		names := make([]string, 0, len(h.auth.users))
		for u := range h.auth.users {
			names = append(names, u)
		}
		slices.Sort(names)
		for _, u := range names {
			secret = append(secret, u+"\x00"+h.auth.users[u]+"\x00"...)
		}
	default:
		secret = make([]byte, 32)
		_, _ = rand.Read(secret)
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("alluvium http session key v1"))
	s.key = m.Sum(nil)
	s.cookie = "alluvium_session_" + hex.EncodeToString(s.mac("cookie name")[:4])
	h.sessions.Store(s)
	return s
}

// Required reports whether the port needs credentials at all (false when
// the cluster runs without authentication: every caller is the system).
func (s *Sessions) Required() bool { return s.auth.required }

func (s *Sessions) mac(parts ...string) []byte {
	m := hmac.New(sha256.New, s.key)
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	return m.Sum(nil)
}

func (s *Sessions) tokenTag(token string) string {
	return base64.RawURLEncoding.EncodeToString(s.mac("token", token)[:16])
}

// ErrLoginRefused is Login's error for a wrong or missing token.
var ErrLoginRefused = errors.New("wrong token")

// Login checks token as a bearer would be checked and, when it is the
// cluster token or a user's token, sets the session cookie and returns the
// identity. A refusal is logged with the peer. It refuses a request sent by
// another site's page (Origin or Sec-Fetch-Site say so), so no page can log
// a visitor in under someone else's name.
func (s *Sessions) Login(w http.ResponseWriter, r *http.Request, token string) (Identity, error) {
	if !sameOrigin(r) {
		s.auth.log.Warn("login refused", zap.String("peer", r.RemoteAddr), zap.String("origin", r.Header.Get("Origin")), zap.String("reason", "cross-site request"))
		return Identity{}, errors.New("login refused: the request came from another site")
	}
	id, ok := s.auth.fromToken(strings.TrimSpace(token))
	if !ok {
		s.auth.log.Warn("login refused", zap.String("peer", r.RemoteAddr), zap.String("reason", "wrong token"))
		return Identity{}, ErrLoginRefused
	}
	nonce := make([]byte, 16)
	_, _ = rand.Read(nonce)
	sess := session{User: id.User, System: id.System, Exp: s.now().Add(s.ttl).Unix(),
		Nonce: base64.RawURLEncoding.EncodeToString(nonce), Tag: s.tokenTag(strings.TrimSpace(token))}
	body, _ := json.Marshal(sess)
	payload := base64.RawURLEncoding.EncodeToString(body)
	value := payload + "." + base64.RawURLEncoding.EncodeToString(s.mac("session", payload))
	http.SetCookie(w, &http.Cookie{
		Name: s.cookie, Value: value, Path: s.prefix, MaxAge: int(s.ttl / time.Second),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	})
	s.auth.log.Info("login", zap.String("peer", r.RemoteAddr), zap.String("user", id.User))
	return id, nil
}

// Logout clears the session cookie in the browser. (The cookie is
// self-contained: a copy someone kept stays valid until it expires or the
// token it came from changes.)
func (s *Sessions) Logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: s.cookie, Value: "", Path: s.prefix, MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
}

// CSRF returns the CSRF token of r's session ("" when r has none): a page
// sends it back in CSRFHeader with every request that changes something.
func (s *Sessions) CSRF(r *http.Request) string {
	sess, ok := s.read(r)
	if !ok {
		return ""
	}
	return s.csrfFor(sess)
}

func (s *Sessions) csrfFor(sess session) string {
	return base64.RawURLEncoding.EncodeToString(s.mac("csrf", sess.Nonce)[:24])
}

// Expires returns when r's session ends (zero when r has none).
func (s *Sessions) Expires(r *http.Request) time.Time {
	sess, ok := s.read(r)
	if !ok {
		return time.Time{}
	}
	return time.Unix(sess.Exp, 0)
}

// read returns r's valid session, if any.
func (s *Sessions) read(r *http.Request) (session, bool) {
	if !strings.HasPrefix(r.URL.Path, s.prefix) {
		return session{}, false
	}
	c, err := r.Cookie(s.cookie)
	if err != nil || c.Value == "" {
		return session{}, false
	}
	payload, sig, ok := strings.Cut(c.Value, ".")
	if !ok {
		return session{}, false
	}
	// Strict: one encoding per value, so the cookie is exactly what Login
	// wrote or nothing.
	got, err := base64.RawURLEncoding.Strict().DecodeString(sig)
	if err != nil || !hmac.Equal(got, s.mac("session", payload)) {
		return session{}, false
	}
	body, err := base64.RawURLEncoding.Strict().DecodeString(payload)
	if err != nil {
		return session{}, false
	}
	var sess session
	if json.Unmarshal(body, &sess) != nil || sess.User == "" || s.now().Unix() >= sess.Exp {
		return session{}, false
	}
	// The token it came from must still be that user's (or the cluster's).
	current := false
	if tok, ok := s.auth.users[sess.User]; ok && tok != "" && subtle.ConstantTimeCompare([]byte(s.tokenTag(tok)), []byte(sess.Tag)) == 1 {
		current = true
	}
	if sess.System && s.auth.token != "" && subtle.ConstantTimeCompare([]byte(s.tokenTag(s.auth.token)), []byte(sess.Tag)) == 1 {
		current = true
	}
	return sess, current
}

// identity authenticates r by its session cookie. ok is false when r has
// no valid session; err is set when it has one but r is an unsafe request
// without the session's CSRF token or from another origin.
func (s *Sessions) identity(r *http.Request) (id Identity, ok bool, err error) {
	sess, ok := s.read(r)
	if !ok {
		return Identity{}, false, nil
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
	default:
		if !sameOrigin(r) {
			return Identity{}, true, errors.New("request from another site")
		}
		want := s.csrfFor(sess)
		if subtle.ConstantTimeCompare([]byte(r.Header.Get(CSRFHeader)), []byte(want)) != 1 {
			return Identity{}, true, errors.New("missing or wrong " + CSRFHeader + " header")
		}
	}
	id = Identity{User: sess.User, System: sess.System}
	if as := r.Header.Get(UserHeader); as != "" && as != id.User {
		if !id.System {
			return Identity{}, true, errors.New("user " + id.User + " may not act as " + as + " (only the cluster identity may)")
		}
		id = Identity{User: as, Via: id.User}
	}
	return id, true, nil
}

// sameOrigin reports whether r was not sent by another site's page: its
// Origin (when the browser sends one) is this server's, and Sec-Fetch-Site
// (when sent) is same-origin or none.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	if err != nil || u.Host == "" {
		return false
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return u.Scheme == scheme && strings.EqualFold(u.Host, r.Host)
}
