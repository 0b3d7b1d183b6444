package console

import (
	"html/template"
	"net/http"
	"strings"

	"google.golang.org/grpc/codes"
)

// The login form is one self-contained page (no script, inline style): it
// is all a request without credentials can get, besides /healthz.
var loginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Alluvium — log in</title>
<link rel="icon" href="data:,">
<style>
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#f4f6f8;color:#1d2733}
main{max-width:380px;margin:12vh auto;background:#fff;border:1px solid #d8dee4;border-radius:8px;padding:28px 32px}
h1{font-size:20px;margin:0 0 4px}p{margin:0 0 18px;color:#5b6875}
label{display:block;font-weight:600;margin-bottom:6px}
input{width:100%;box-sizing:border-box;padding:8px 10px;border:1px solid #b9c3cd;border-radius:6px;font:inherit}
button{margin-top:16px;width:100%;padding:9px;border:0;border-radius:6px;background:#1f6feb;color:#fff;font:inherit;font-weight:600;cursor:pointer}
.err{background:#fdecea;border:1px solid #f5c2bd;color:#8a1c12;padding:8px 10px;border-radius:6px;margin-bottom:14px}
.hint{font-size:13px;margin-top:16px;color:#5b6875}
code{background:#eef1f4;padding:1px 4px;border-radius:4px}
</style></head>
<body><main>
<h1>Alluvium</h1><p>Log in to the web console of this cluster.</p>
{{if .Error}}<div class="err" id="login-error" role="alert">{{.Error}}</div>{{end}}
<form method="post" action="/ui/login" id="login-form">
<label for="token">Token</label>
<input id="token" name="token" type="password" autocomplete="current-password" autofocus required>
<input type="hidden" name="next" value="{{.Next}}">
<button type="submit" id="login-submit">Log in</button>
</form>
<p class="hint">The cluster token (<code>ALLUVIUM_TOKEN</code>, in <code>&lt;home&gt;/env</code> of <code>alluvium local</code>) logs in as the superuser; a user's token from <code>security.users</code> as that user.</p>
</main></body></html>
`))

// serveLogin answers requests without credentials (and a repeated login):
// the form, its POST, 401 JSON for the console's API, a redirect for "/".
func (c *Console) serveLogin(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/":
		http.Redirect(w, r, Prefix, http.StatusFound)
		return
	case r.Method == http.MethodPost && r.URL.Path == Prefix+"login":
	case r.Method != http.MethodGet && r.Method != http.MethodHead || strings.HasPrefix(r.URL.Path, Prefix+"api/"):
		w.Header().Set("WWW-Authenticate", `Bearer realm="alluvium"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "not logged in: log in at " + Prefix + "login or send Authorization: Bearer <token>", "code": codes.Unauthenticated.String()})
		return
	default:
		next := r.URL.RequestURI()
		if r.URL.Path == Prefix+"login" {
			next = safeNext(r.URL.Query().Get("next"))
		}
		c.loginForm(w, http.StatusUnauthorized, "", next)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		c.loginForm(w, http.StatusBadRequest, "The login form could not be read.", Prefix)
		return
	}
	next := safeNext(r.PostFormValue("next"))
	if _, err := c.sess.Login(w, r, r.PostFormValue("token")); err != nil {
		msg := "Wrong token."
		if !strings.Contains(err.Error(), "wrong token") {
			msg = "Login refused: " + err.Error()
		}
		c.loginForm(w, http.StatusUnauthorized, msg, next)
		return
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (c *Console) loginForm(w http.ResponseWriter, code int, msg, next string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; img-src data:; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_ = loginPage.Execute(w, struct{ Error, Next string }{msg, next})
}

// safeNext keeps a post-login redirect inside the console.
func safeNext(next string) string {
	if !strings.HasPrefix(next, Prefix) || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") ||
		strings.HasPrefix(next, Prefix+"login") || strings.HasPrefix(next, Prefix+"api/") {
		return Prefix
	}
	return next
}
