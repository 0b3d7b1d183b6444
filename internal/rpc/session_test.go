package rpc

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

// sessionServer serves /ui/login (the login handler for requests without
// credentials: POST logs in), /ui/whoami, /ui/csrf and /ui/logout, and
// /api/v1/whoami outside the session prefix.
func sessionServer(t *testing.T, o ServerOptions, ttl time.Duration) (string, *Sessions) {
	t.Helper()
	o.Logger = zap.NewNop()
	h := NewHTTPServerWith(o, nil)
	var sess *Sessions
	login := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, "login form")
			return
		}
		id, err := sess.Login(w, r, r.FormValue("token"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		fmt.Fprint(w, "hello "+id.User)
	})
	sess = h.EnableSessions(SessionConfig{Prefix: "/ui/", TTL: ttl, Login: login})
	whoami := func(w http.ResponseWriter, r *http.Request) {
		u, kind := describe(r.Context())
		fmt.Fprintf(w, "%s/%s", u, kind)
	}
	h.Mux.HandleFunc("/ui/whoami", whoami)
	h.Mux.HandleFunc("/api/v1/whoami", whoami)
	h.Mux.HandleFunc("/ui/csrf", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, sess.CSRF(r)) })
	h.Mux.HandleFunc("/ui/logout", func(w http.ResponseWriter, r *http.Request) { sess.Logout(w, r) })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go h.Serve(l) //nolint:errcheck
	t.Cleanup(func() { h.Shutdown(context.Background()) })
	return "http://" + l.Addr().String(), sess
}

func browser(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar}
}

func do(t *testing.T, c *http.Client, method, u string, form url.Values, hdr ...string) (int, string, *http.Response) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, u, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp
}

func TestSessionLoginAndCSRF(t *testing.T) {
	base, _ := sessionServer(t, ServerOptions{Token: clusterToken, Superuser: "root", Users: map[string]string{"alice": aliceToken}}, 0)
	c := browser(t)
	// No credentials: the login handler answers under the prefix, 401 JSON
	// elsewhere.
	if code, body, _ := do(t, c, "GET", base+"/ui/whoami", nil); code != 401 || body != "login form" {
		t.Fatalf("GET /ui/whoami without a session: %d %q", code, body)
	}
	if code, _, _ := do(t, c, "GET", base+"/api/v1/whoami", nil); code != 401 {
		t.Fatalf("GET /api/v1/whoami without a token: %d", code)
	}
	// A wrong token is refused and sets no cookie.
	code, body, resp := do(t, c, "POST", base+"/ui/login", url.Values{"token": {"wrong"}})
	if code != 401 || !strings.Contains(body, "wrong token") || len(resp.Cookies()) != 0 {
		t.Fatalf("login with a wrong token: %d %q %v", code, body, resp.Cookies())
	}
	// A login posted by another site's page is refused.
	if code, _, _ := do(t, c, "POST", base+"/ui/login", url.Values{"token": {aliceToken}}, "Origin", "http://evil.example"); code != 401 {
		t.Fatalf("cross-site login: %d", code)
	}
	code, body, resp = do(t, c, "POST", base+"/ui/login", url.Values{"token": {aliceToken}}, "Origin", base)
	if code != 200 || body != "hello alice" {
		t.Fatalf("login as alice: %d %q", code, body)
	}
	ck := resp.Cookies()
	if len(ck) != 1 || !ck[0].HttpOnly || ck[0].SameSite != http.SameSiteStrictMode || ck[0].Path != "/ui/" || !strings.HasPrefix(ck[0].Name, "alluvium_session_") {
		t.Fatalf("session cookie: %+v", ck)
	}
	if code, body, _ := do(t, c, "GET", base+"/ui/whoami", nil); code != 200 || body != "alice/user" {
		t.Fatalf("GET with alice's session: %d %q", code, body)
	}
	// The cookie is not sent outside the prefix, and would not count there.
	if code, _, _ := do(t, c, "GET", base+"/api/v1/whoami", nil); code != 401 {
		t.Fatalf("GET /api/v1 with a session: %d", code)
	}
	// A POST needs the session's CSRF token, from the same origin.
	if code, _, _ := do(t, c, "POST", base+"/ui/whoami", nil); code != 403 {
		t.Fatalf("POST without CSRF token: %d", code)
	}
	_, csrf, _ := do(t, c, "GET", base+"/ui/csrf", nil)
	if csrf == "" {
		t.Fatal("no CSRF token for a session")
	}
	if code, _, _ := do(t, c, "POST", base+"/ui/whoami", nil, CSRFHeader, csrf+"x"); code != 403 {
		t.Fatalf("POST with a wrong CSRF token: %d", code)
	}
	if code, _, _ := do(t, c, "POST", base+"/ui/whoami", nil, CSRFHeader, csrf, "Origin", "http://evil.example"); code != 403 {
		t.Fatalf("POST from another origin: %d", code)
	}
	if code, _, _ := do(t, c, "POST", base+"/ui/whoami", nil, CSRFHeader, csrf, "Sec-Fetch-Site", "cross-site"); code != 403 {
		t.Fatalf("POST with Sec-Fetch-Site cross-site: %d", code)
	}
	if code, body, _ := do(t, c, "POST", base+"/ui/whoami", nil, CSRFHeader, csrf, "Origin", base); code != 200 || body != "alice/user" {
		t.Fatalf("POST with CSRF token: %d %q", code, body)
	}
	// A session cannot act for someone else.
	if code, _, _ := do(t, c, "GET", base+"/ui/whoami", nil, UserHeader, "root"); code != 403 {
		t.Fatalf("a session acted as another user: %d", code)
	}
	// A tampered cookie is no session.
	u, _ := url.Parse(base + "/ui/")
	tampered := *ck[0]
	tampered.Value = strings.Replace(tampered.Value, ".", "x.", 1)
	c2 := browser(t)
	c2.Jar.SetCookies(u, []*http.Cookie{&tampered})
	if code, _, _ := do(t, c2, "GET", base+"/ui/whoami", nil); code != 401 {
		t.Fatalf("tampered cookie: %d", code)
	}
	// Logout clears it.
	do(t, c, "POST", base+"/ui/logout", nil, CSRFHeader, csrf)
	if code, _, _ := do(t, c, "GET", base+"/ui/whoami", nil); code != 401 {
		t.Fatalf("after logout: %d", code)
	}
	// The cluster token logs in as the system identity.
	c3 := browser(t)
	if code, _, _ := do(t, c3, "POST", base+"/ui/login", url.Values{"token": {clusterToken}}); code != 200 {
		t.Fatalf("login with the cluster token: %d", code)
	}
	if code, body, _ := do(t, c3, "GET", base+"/ui/whoami", nil); code != 200 || body != "root/system" {
		t.Fatalf("GET with the cluster's session: %d %q", code, body)
	}
}

// Sessions end when they expire or when the token they came from changes;
// the servers of one cluster accept each other's sessions.
func TestSessionExpiryAndTokenChange(t *testing.T) {
	o := ServerOptions{Token: clusterToken, Users: map[string]string{"alice": aliceToken}}
	base, sess := sessionServer(t, o, time.Hour)
	other, _ := sessionServer(t, o, time.Hour)
	changed, _ := sessionServer(t, ServerOptions{Token: clusterToken, Users: map[string]string{"alice": "a-new-token-for-alice"}}, time.Hour)
	c := browser(t)
	if code, _, _ := do(t, c, "POST", base+"/ui/login", url.Values{"token": {aliceToken}}); code != 200 {
		t.Fatalf("login: %d", code)
	}
	u, _ := url.Parse(base + "/ui/")
	cookies := c.Jar.Cookies(u)
	for _, b := range []struct {
		base string
		want int
	}{{other, 200}, {changed, 401}} {
		cb := browser(t)
		ub, _ := url.Parse(b.base + "/ui/")
		cb.Jar.SetCookies(ub, cookies)
		if code, _, _ := do(t, cb, "GET", b.base+"/ui/whoami", nil); code != b.want {
			t.Errorf("alice's session on %s: %d, want %d", b.base, code, b.want)
		}
	}
	sess.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	if code, _, _ := do(t, c, "GET", base+"/ui/whoami", nil); code != 401 {
		t.Fatalf("expired session: %d", code)
	}
}

// No cookie value a client makes up is a session, and none crashes the
// check: only what Login signed with the cluster's key authenticates. The
// seeds include a real session whose signature, payload and token tag are
// then altered.
func FuzzSessionCookie(f *testing.F) {
	h := NewHTTPServerWith(ServerOptions{Token: clusterToken, Users: map[string]string{"alice": aliceToken}, Logger: zap.NewNop()}, nil)
	sess := h.EnableSessions(SessionConfig{Prefix: "/ui/"})
	rec := httptest.NewRecorder()
	login := httptest.NewRequest(http.MethodPost, "/ui/login", nil)
	if _, err := sess.Login(rec, login, aliceToken); err != nil {
		f.Fatal(err)
	}
	valid := rec.Result().Cookies()[0].Value
	payload, sig, _ := strings.Cut(valid, ".")
	f.Add(valid + "x")
	f.Add(payload + "." + sig[:len(sig)-2] + "AA")
	f.Add(strings.ToUpper(payload) + "." + sig)
	f.Add(base64.RawURLEncoding.EncodeToString([]byte(`{"u":"root","s":true,"e":99999999999,"n":"x","t":"y"}`)) + "." + sig)
	f.Add("")
	f.Add(".")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, value string) {
		if value == valid {
			return
		}
		r := httptest.NewRequest(http.MethodGet, "/ui/api/session", nil)
		r.AddCookie(&http.Cookie{Name: sess.cookie, Value: value})
		if id, ok, err := sess.identity(r); ok || err != nil {
			t.Fatalf("cookie %q made a session: %+v %v %v", value, id, ok, err)
		}
	})
}
