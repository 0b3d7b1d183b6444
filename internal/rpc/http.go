package rpc

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// HTTPServer is a role's http port: /healthz (open), /metrics and JSON APIs
// (token-protected when a token is set).
type HTTPServer struct {
	Mux      *http.ServeMux
	Registry *prometheus.Registry
	srv      *http.Server
}

// NewHTTPServer returns a server with /healthz and /metrics registered.
// healthy reports readiness; nil means always healthy.
func NewHTTPServer(token string, log *zap.Logger, healthy func() error) *HTTPServer {
	if log == nil {
		log = zap.NewNop()
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
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
	outer.Handle("/", requireToken(token, log, mux))
	return &HTTPServer{
		Mux:      mux,
		Registry: reg,
		srv:      &http.Server{Handler: outer, ReadHeaderTimeout: 10 * time.Second},
	}
}

func requireToken(token string, log *zap.Logger, next http.Handler) http.Handler {
	if token == "" {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		if subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
			log.Warn("unauthenticated http request refused", zap.String("peer", r.RemoteAddr), zap.String("path", r.URL.Path))
			WriteJSON(w, http.StatusUnauthorized, map[string]string{"statusCode": "UNAUTHENTICATED", "message": "missing or wrong token (Authorization: Bearer <token>)"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Serve serves on l until Shutdown.
func (h *HTTPServer) Serve(l net.Listener) error {
	if err := h.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Shutdown stops the server, waiting for requests in flight until ctx ends.
func (h *HTTPServer) Shutdown(ctx context.Context) error { return h.srv.Shutdown(ctx) }

// WriteJSON writes v as a JSON body with the exact content type
// "application/json".
func WriteJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
