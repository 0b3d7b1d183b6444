package rpc

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// HTTPServer is a role's http port: /healthz (open), /metrics and JSON APIs
// (authenticated as gRPC calls are: a bearer token or a client certificate;
// the handlers find the caller with IdentityFrom(r.Context())).
type HTTPServer struct {
	Mux      *http.ServeMux
	Registry *prometheus.Registry
	srv      *http.Server
	tls      *tls.Config
	auth     *authenticator
	sessions atomic.Pointer[Sessions] // browser sessions, once EnableSessions ran
}

// NewHTTPServerWith returns a server with /healthz and /metrics
// registered, authenticating as the gRPC servers do (o: token, users,
// superuser, TLS). healthy reports readiness; nil means always healthy.
func NewHTTPServerWith(o ServerOptions, healthy func() error) *HTTPServer {
	log := o.Logger
	if log == nil {
		log = zap.NewNop()
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	// Go's profiler, for the cluster identity only: a profile shows paths
	// and names, and a CPU or trace profile costs the server while it runs.
	mux.Handle("/debug/pprof/", systemOnly(http.HandlerFunc(pprof.Index)))
	mux.Handle("/debug/pprof/cmdline", systemOnly(http.HandlerFunc(pprof.Cmdline)))
	mux.Handle("/debug/pprof/profile", systemOnly(http.HandlerFunc(pprof.Profile)))
	mux.Handle("/debug/pprof/symbol", systemOnly(http.HandlerFunc(pprof.Symbol)))
	mux.Handle("/debug/pprof/trace", systemOnly(http.HandlerFunc(pprof.Trace)))
	// Contention profiles are off by default (they cost every lock); a
	// delta profile (?seconds=N) turns their sampling on for its window.
	mux.Handle("/debug/pprof/mutex", systemOnly(contentionProfile("mutex")))
	mux.Handle("/debug/pprof/block", systemOnly(contentionProfile("block")))
	outer := http.NewServeMux()
	outer.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if healthy != nil {
			if err := healthy(); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	h := &HTTPServer{
		Mux:      mux,
		Registry: reg,
		srv:      &http.Server{Handler: outer, ReadHeaderTimeout: 10 * time.Second},
		auth:     newAuthenticator(o, log),
	}
	outer.Handle("/", h.requireAuth(mux))
	if o.TLS != nil {
		h.tls = o.TLS.Clone()
		if h.tls.ClientCAs != nil {
			// /healthz answers probes without a certificate; every other
			// path still needs a token or a verified certificate.
			h.tls.ClientAuth = tls.VerifyClientCertIfGiven
		}
	}
	return h
}

// systemOnly lets only the cluster identity itself (not a user, nor the
// cluster acting for one) through to next.
func systemOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id, ok := IdentityFrom(r.Context()); !ok || !id.System || id.Via != "" {
			WriteJSON(w, http.StatusForbidden, map[string]string{"statusCode": "PERMISSION_DENIED", "message": "profiling is for the cluster identity only"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// requireAuth wraps next so that a request without valid credentials gets
// 401 (logged with the peer) and others carry their Identity. Credentials
// are a bearer token, a verified client certificate or, under the sessions'
// prefix, a session cookie (EnableSessions).
func (h *HTTPServer) requireAuth(next http.Handler) http.Handler {
	a := h.auth
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var bearer string
		if v := r.Header.Get("Authorization"); v != "" {
			bearer = strings.TrimPrefix(v, "Bearer ")
		}
		chains := tlsChains(r.TLS)
		if sess := h.sessions.Load(); sess != nil && bearer == "" && len(chains) == 0 && a.required {
			id, ok, err := sess.identity(r)
			if err != nil {
				a.log.Warn("http request refused", zap.String("peer", r.RemoteAddr), zap.String("path", r.URL.Path), zap.String("user", id.User), zap.String("reason", err.Error()))
				WriteJSON(w, http.StatusForbidden, map[string]string{"statusCode": "PERMISSION_DENIED", "message": err.Error()})
				return
			}
			if ok {
				next.ServeHTTP(w, r.WithContext(WithIdentity(r.Context(), id)))
				return
			}
			if sess.login != nil && (strings.HasPrefix(r.URL.Path, sess.prefix) || r.URL.Path == "/") && r.Header.Get(UserHeader) == "" {
				sess.login.ServeHTTP(w, r)
				return
			}
		}
		id, aerr := a.resolve(bearer, chains, r.Header.Get(UserHeader))
		if aerr != nil {
			a.log.Warn("http request refused", zap.String("peer", r.RemoteAddr), zap.String("path", r.URL.Path), zap.String("reason", aerr.reason))
			if aerr.code == codes.Unauthenticated {
				w.Header().Set("WWW-Authenticate", `Bearer realm="alluvium"`)
				WriteJSON(w, http.StatusUnauthorized, map[string]string{"statusCode": "UNAUTHENTICATED", "message": aerr.reason + ": send Authorization: Bearer <token> (the cluster token, ALLUVIUM_TOKEN)"})
				return
			}
			WriteJSON(w, http.StatusForbidden, map[string]string{"statusCode": "PERMISSION_DENIED", "message": aerr.reason})
			return
		}
		next.ServeHTTP(w, r.WithContext(WithIdentity(r.Context(), id)))
	})
}

// Serve serves on l (over TLS when configured) until Shutdown.
func (h *HTTPServer) Serve(l net.Listener) error {
	if h.tls != nil {
		l = tls.NewListener(l, h.tls)
	}
	if err := h.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Shutdown stops the server, waiting for requests in flight until ctx ends.
func (h *HTTPServer) Shutdown(ctx context.Context) error { return h.srv.Shutdown(ctx) }

// OnShutdown calls f when Shutdown starts, so long-lived responses (event
// streams) can end instead of holding Shutdown up.
func (h *HTTPServer) OnShutdown(f func()) { h.srv.RegisterOnShutdown(f) }

// HTTPStatus is the http status of a gRPC code, for JSON APIs that relay
// a call's error.
func HTTPStatus(c codes.Code) int {
	switch c {
	case codes.OK:
		return http.StatusOK
	case codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists, codes.FailedPrecondition, codes.Aborted:
		return http.StatusConflict
	case codes.InvalidArgument, codes.OutOfRange:
		return http.StatusBadRequest
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.Unimplemented:
		return http.StatusNotImplemented
	case codes.Canceled:
		return 499 // client closed the request
	}
	return http.StatusInternalServerError
}

// WriteError answers a call's gRPC error as JSON,
// {"statusCode": "NotFound", "message": ...}, with the HTTP status HTTPStatus
// gives its code: the masters' JSON APIs relay errors this one way.
func WriteError(w http.ResponseWriter, err error) {
	st := status.Convert(err)
	WriteJSON(w, HTTPStatus(st.Code()), map[string]string{"statusCode": st.Code().String(), "message": st.Message()})
}

// WriteJSON writes v as a JSON body with the exact content type
// "application/json".
func WriteJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// contentionProfiles counts the contention profiles being taken, so the
// sampling stays on until the last one ends.
var contentionProfiles atomic.Int32

// contentionProfile serves the mutex or block profile; with ?seconds=N it
// samples contention for those N seconds (1 in 5 mutex contentions, a
// blocking event every 10 µs of blocking) and returns what it saw.
func contentionProfile(name string) http.Handler {
	h := pprof.Handler(name)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.FormValue("seconds") != "" {
			if contentionProfiles.Add(1) == 1 {
				runtime.SetMutexProfileFraction(5)
				runtime.SetBlockProfileRate(int((10 * time.Microsecond).Nanoseconds()))
			}
			defer func() {
				if contentionProfiles.Add(-1) == 0 {
					runtime.SetMutexProfileFraction(0)
					runtime.SetBlockProfileRate(0)
				}
			}()
		}
		h.ServeHTTP(w, r)
	})
}
