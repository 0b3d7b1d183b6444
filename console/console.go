package console

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"

	"github.com/alluvium/alluvium/internal/rpc"
	"github.com/alluvium/alluvium/sdk"
)

//go:embed web
var webFS embed.FS

// Prefix is where the console lives on an http port.
const Prefix = "/ui/"

// Options configure Mount.
type Options struct {
	// Client reaches the cluster with the cluster's own identity; the
	// console acts for the logged-in user on every call (sdk.AsUser).
	Client *sdk.Client
	Log    *zap.Logger
	// Server names the process serving the pages ("FS master", "job
	// master", "local"); Version its build.
	Server  string
	Version string
	// SessionTTL is how long a login lasts (0: rpc.DefaultSessionTTL).
	SessionTTL time.Duration
}

// Console serves the web console on one http port.
type Console struct {
	c       *sdk.Client
	log     *zap.Logger
	sess    *rpc.Sessions
	server  string
	version string
	static  http.Handler
	index   []byte
	mux     *http.ServeMux

	ctx    context.Context // ends when the port shuts down: event streams end with it
	cancel context.CancelFunc

	tpOnce sync.Once
	tp     *throughput
}

// Mount serves the console under /ui/ of h (and redirects / there). It
// returns once the routes are registered; the console stops with h.
func Mount(h *rpc.HTTPServer, o Options) (*Console, error) {
	if o.Client == nil {
		return nil, errors.New("console: no cluster client")
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	sub, err := fs.Sub(webFS, "web")
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	index, err := fs.ReadFile(sub, "index.html")
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Console{
		c: o.Client, log: o.Log, server: o.Server, version: o.Version,
		static: http.StripPrefix(Prefix+"static/", http.FileServerFS(sub)),
		index:  index, ctx: ctx, cancel: cancel,
	}
	c.sess = h.EnableSessions(rpc.SessionConfig{Prefix: Prefix, TTL: o.SessionTTL, Login: http.HandlerFunc(c.serveLogin)})
	c.routes()
	h.Mux.Handle(Prefix, secure(c.mux))
	h.Mux.Handle("/{$}", http.RedirectHandler(Prefix, http.StatusFound))
	h.OnShutdown(c.Close)
	return c, nil
}

// Close ends the console's event streams and background sampling.
func (c *Console) Close() {
	c.cancel()
	if c.tp != nil {
		c.tp.stop()
	}
}

func (c *Console) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /ui/static/", func(w http.ResponseWriter, r *http.Request) {
		// The pages change with the binary; let the browser revalidate.
		w.Header().Set("Cache-Control", "no-cache")
		c.static.ServeHTTP(w, r)
	})
	m.HandleFunc("GET /ui/login", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, Prefix, http.StatusSeeOther) // already logged in
	})
	m.HandleFunc("POST /ui/login", c.serveLogin)
	m.HandleFunc("POST /ui/logout", c.serveLogout)
	m.HandleFunc("GET /ui/api/session", c.apiSession)
	m.HandleFunc("GET /ui/api/overview", bounded(c.apiOverview))
	m.HandleFunc("GET /ui/api/throughput", c.apiThroughput)
	m.HandleFunc("GET /ui/api/jobs", bounded(c.apiJobs))
	m.HandleFunc("POST /ui/api/jobs", bounded(c.apiSubmit))
	m.HandleFunc("GET /ui/api/jobs/events", c.apiJobsEvents)
	m.HandleFunc("GET /ui/api/jobs/{id}", bounded(c.apiJob))
	m.HandleFunc("GET /ui/api/jobs/{id}/events", c.apiJobEvents)
	m.HandleFunc("POST /ui/api/jobs/{id}/cancel", bounded(c.apiCancel))
	m.HandleFunc("GET /ui/api/policies", bounded(c.apiPolicies))
	m.HandleFunc("POST /ui/api/policies/{name}/{action}", bounded(c.apiPolicyAction))
	m.HandleFunc("GET /ui/api/pipelines", bounded(c.apiPipelines))
	m.HandleFunc("GET /ui/api/workers", bounded(c.apiWorkers))
	m.HandleFunc("GET /ui/api/files", bounded(c.apiFiles))
	m.HandleFunc("GET /ui/api/download", c.apiDownload)
	m.HandleFunc("/ui/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &sdk.Error{Op: r.Method, Path: r.URL.Path, Code: codes.NotFound, Message: "no such console API"})
	})
	// Every other path is a page of the single-page app.
	m.HandleFunc("/ui/", c.serveIndex)
	c.mux = m
}

// apiTimeout bounds a JSON call: the sdk retries an unreachable job master
// while a leader may be elected (20 s), and a page should say so sooner.
const apiTimeout = 10 * time.Second

// bounded runs h with a deadline of apiTimeout (event streams and
// downloads last as long as they need).
func bounded(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), apiTimeout)
		defer cancel()
		h(w, r.WithContext(ctx))
	}
}

// secure adds the headers every console response carries: no framing, no
// content sniffing, scripts and connections only from this origin.
func secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}

func (c *Console) serveIndex(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": r.Method + " " + r.URL.Path + ": a page takes GET only"})
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(c.index)
}

// as returns the context to call the cluster with for r's user, and the
// user. The cluster identity calls as itself; anyone else through
// sdk.AsUser, so the servers check that user's permissions.
func as(r *http.Request) (context.Context, rpc.Identity) {
	id, _ := rpc.IdentityFrom(r.Context())
	ctx := r.Context()
	if !id.System && id.User != "" {
		ctx = sdk.AsUser(ctx, id.User)
	}
	return ctx, id
}

// apiSession tells the page who is logged in, and its CSRF token.
func (c *Console) apiSession(w http.ResponseWriter, r *http.Request) {
	_, id := as(r)
	out := map[string]any{
		"user": id.User, "system": id.System, "server": c.server, "version": c.version,
		"csrf": c.sess.CSRF(r), "csrfHeader": rpc.CSRFHeader, "loginRequired": c.sess.Required(),
	}
	if exp := c.sess.Expires(r); !exp.IsZero() {
		out["expiresMs"] = exp.UnixMilli()
	}
	writeJSON(w, http.StatusOK, out)
}

func (c *Console) serveLogout(w http.ResponseWriter, r *http.Request) {
	c.sess.Logout(w, r)
	http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
}

// jobs returns the job-service client, or answers why there is none.
func (c *Console) jobs(w http.ResponseWriter) (*sdk.Jobs, bool) {
	j, err := c.c.Jobs()
	if err != nil {
		writeError(w, err)
		return nil, false
	}
	return j, true
}

// writeJSON writes v compactly (pages of 100k-job clusters are read by
// scripts, not people).
func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":"encoding the response failed"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// writeError answers with the error's http status and its message, which
// names the operation and path or id at fault.
func writeError(w http.ResponseWriter, err error) {
	code := codes.Internal
	var se *sdk.Error
	switch {
	case errors.As(err, &se):
		code = se.Code
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	}
	writeJSON(w, rpc.HTTPStatus(code), map[string]string{"error": err.Error(), "code": code.String()})
}

// badRequest answers 400 naming what is wrong.
func badRequest(w http.ResponseWriter, format string, args ...any) {
	writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf(format, args...), "code": codes.InvalidArgument.String()})
}

// maxBody bounds a request body the console reads (a job config).
const maxBody = 1 << 20

// readJSON decodes r's body into v, refusing unknown fields and bodies over
// maxBody.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		badRequest(w, "request body: %v", err)
		return false
	}
	if _, err := dec.Token(); err != io.EOF {
		badRequest(w, "request body: more than one JSON value")
		return false
	}
	return true
}

// paramList splits a comma-separated query parameter.
func paramList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
