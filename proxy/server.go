package proxy

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/config"
	"github.com/alluvium/alluvium/internal/security"
	"github.com/alluvium/alluvium/proxy/s3"
	"github.com/alluvium/alluvium/proxy/sigv4"
	"github.com/alluvium/alluvium/sdk"
)

// Proxy is the REST proxy and S3 gateway of one cluster.
type Proxy struct {
	cfg *config.Config
	log *zap.Logger
	m   *metrics

	client  *sdk.Client
	streams *streamTable
	rest    *restAPI
	gw      *s3.Gateway

	ctx    context.Context
	cancel context.CancelFunc

	restSrv, s3Srv *http.Server
	restLn, s3Ln   net.Listener
	wg             sync.WaitGroup
}

// New builds a proxy for the cluster cfg.Client names. It connects lazily;
// it fails only on a bad configuration or staging dir.
func New(cfg *config.Config, log *zap.Logger) (*Proxy, error) {
	if log == nil {
		log = zap.NewNop()
	}
	wt := api.WriteType_WRITE_TYPE_UNSPECIFIED
	if s := strings.ToUpper(strings.TrimSpace(cfg.Proxy.S3.WriteType)); s != "" {
		v, ok := api.WriteType_value[s]
		if !ok || v == 0 {
			return nil, fmt.Errorf("config: proxy.s3.write-type = %q: want MUST_CACHE, CACHE_THROUGH, THROUGH or ASYNC_THROUGH", cfg.Proxy.S3.WriteType)
		}
		wt = api.WriteType(v)
	}
	if cfg.Proxy.StreamTimeout <= 0 {
		return nil, fmt.Errorf("config: proxy.stream-timeout = %s: want a positive duration", cfg.Proxy.StreamTimeout)
	}
	if cfg.Proxy.BodyReadTimeout <= 0 {
		return nil, fmt.Errorf("config: proxy.body-read-timeout = %s: want a positive duration", cfg.Proxy.BodyReadTimeout)
	}
	if cfg.Proxy.MaxStreamsPerUser <= 0 {
		return nil, fmt.Errorf("config: proxy.max-streams-per-user = %d: want 1 or more", cfg.Proxy.MaxStreamsPerUser)
	}
	tlsConf, err := security.ClientTLS(cfg)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	opts := []sdk.Option{sdk.WithMaster(cfg.Client.Master), sdk.WithJobMasters(sdk.SplitAddrs(cfg.Client.JobMaster)...),
		sdk.WithToken(cfg.Security.Token), sdk.WithTimeout(cfg.Client.Timeout)}
	if tlsConf != nil {
		opts = append(opts, sdk.WithTLS(tlsConf))
	}
	ctx, cancel := context.WithCancel(context.Background())
	c, err := sdk.Dial(ctx, opts...)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("proxy: %w", err)
	}
	p := &Proxy{cfg: cfg, log: log, m: newMetrics(), client: c, ctx: ctx, cancel: cancel}
	p.streams = newStreamTable(cfg.Proxy.StreamTimeout, cfg.Proxy.MaxStreamsPerUser, log, func(n int) { p.m.streams.Set(float64(n)) })
	p.rest = &restAPI{c: c, streams: p.streams, ctx: ctx, log: log, m: p.m}
	// A cluster user (security.users) signs S3 requests with its name as the
	// access key and its token as the secret, and acts as itself.
	s3Users := map[string]string{}
	for u, tok := range cfg.Security.Users {
		s3Users[u] = tok
	}
	for k, secret := range cfg.Proxy.S3.Users {
		s3Users[k] = secret
	}
	creds := sigv4.Static{Users: s3Users, Shared: cfg.Security.Token}
	p.gw, err = s3.New(c, s3.Config{
		Creds: creds, Region: cfg.Proxy.S3.Region, WriteType: wt,
		MultipartExpiry: cfg.Proxy.S3.MultipartExpiry,
		ActAs:           p.clusterUser,
		Observe: func(op string, status int, d time.Duration, in, out int64) {
			p.m.requests.WithLabelValues("s3", op, strconv.Itoa(status)).Inc()
			p.m.latency.WithLabelValues("s3", op).Observe(d.Seconds())
			p.m.bytesIn.WithLabelValues("s3").Add(float64(in))
			p.m.bytesOut.WithLabelValues("s3").Add(float64(out))
		},
	}, log.Named("s3"))
	if err != nil {
		c.Close()
		cancel()
		return nil, err
	}
	if !creds.Required() {
		log.Warn("the S3 gateway does not authenticate requests: the cluster has no token and proxy.s3.users is empty")
	}
	return p, nil
}

// Start listens on the REST and S3 ports and serves until Stop.
func (p *Proxy) Start(ctx context.Context) error {
	host := p.cfg.Proxy.BindHost
	var err error
	if p.restLn, err = net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p.cfg.Proxy.RESTPort))); err != nil {
		return fmt.Errorf("proxy REST port: %w", err)
	}
	if p.s3Ln, err = net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p.cfg.Proxy.S3Port))); err != nil {
		p.restLn.Close()
		return fmt.Errorf("proxy S3 port: %w", err)
	}
	bt := p.cfg.Proxy.BodyReadTimeout
	p.restSrv = &http.Server{Handler: bodyDeadline(p.restHandler(), bt), ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	p.s3Srv = &http.Server{Handler: bodyDeadline(p.gw.Handler(""), bt), ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	for _, s := range []struct {
		srv *http.Server
		ln  net.Listener
	}{{p.restSrv, p.restLn}, {p.s3Srv, p.s3Ln}} {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				p.log.Error("proxy server stopped", zap.String("addr", s.ln.Addr().String()), zap.Error(err))
			}
		}()
	}
	p.gw.Start(p.ctx)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		every := min(max(p.cfg.Proxy.StreamTimeout/4, 100*time.Millisecond), 30*time.Second)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				p.streams.expire(time.Now())
			case <-p.ctx.Done():
				return
			}
		}
	}()
	p.log.Info("proxy serving", zap.String("rest", p.RESTAddr()), zap.String("s3", p.S3Addr()))
	return nil
}

// Stop stops serving, discards open streams and flushes the gateway.
func (p *Proxy) Stop(ctx context.Context) error {
	var errs []error
	for _, s := range []*http.Server{p.restSrv, p.s3Srv} {
		if s != nil {
			if err := s.Shutdown(ctx); err != nil {
				errs = append(errs, err)
				s.Close()
			}
		}
	}
	p.streams.closeAll()
	p.cancel()
	p.wg.Wait()
	errs = append(errs, p.gw.Close(), p.client.Close())
	return errors.Join(errs...)
}

// RESTAddr is the REST API's host:port.
func (p *Proxy) RESTAddr() string { return addrOf(p.restLn) }

// S3Addr is the S3 gateway's host:port.
func (p *Proxy) S3Addr() string { return addrOf(p.s3Ln) }

func addrOf(l net.Listener) string {
	if l == nil {
		return ""
	}
	return l.Addr().String()
}

// restHandler routes the REST port: /healthz, /metrics, the S3 API under
// /api/v1/s3/, and the Alluxio-style API under /api/v1/. It routes on the
// raw path: a ServeMux would clean "//" away (and the root with it).
func (p *Proxy) restHandler() http.Handler {
	metricsH := promhttp.HandlerFor(p.m.reg, promhttp.HandlerOpts{})
	s3h := p.gw.Handler("/api/v1/s3")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw := r.URL.EscapedPath()
		switch {
		case raw == "/healthz":
			w.Header().Set("Content-Type", "text/plain")
			_, _ = w.Write([]byte("ok\n"))
			return
		case raw == "/api/v1/s3" || strings.HasPrefix(raw, "/api/v1/s3/"):
			s3h.ServeHTTP(w, r) // SigV4, not the bearer token
			return
		}
		user, ok := p.authorized(r)
		if !ok {
			p.log.Warn("unauthenticated REST request refused", zap.String("peer", r.RemoteAddr), zap.String("path", raw))
			w.Header().Set("WWW-Authenticate", `Bearer realm="alluvium"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"statusCode": statusName(codes.Unauthenticated),
				"message": "missing or wrong token: send Authorization: Bearer <token> (the cluster's security.token)"})
			return
		}
		if raw == "/metrics" {
			metricsH.ServeHTTP(w, r)
			return
		}
		p.serveAPI(w, r.WithContext(withCaller(r.Context(), user)), raw)
	})
}

// clusterUser is the cluster user an S3 access key acts as: a user of
// security.users (not overridden by proxy.s3.users), else none.
func (p *Proxy) clusterUser(accessKey string) string {
	if _, s3only := p.cfg.Proxy.S3.Users[accessKey]; s3only {
		return ""
	}
	if _, ok := p.cfg.Security.Users[accessKey]; ok {
		return accessKey
	}
	return ""
}

// authorized checks the cluster token or a user's token (Bearer, or the
// password of Basic) unless the cluster has none. A user's token makes the
// request act as that user. With proxy.rest-open a request without
// credentials is served as the cluster (Alluxio's clients send none), but
// one that names a user still acts as that user, and a wrong token is
// refused.
func (p *Proxy) authorized(r *http.Request) (user string, ok bool) {
	tok := p.cfg.Security.Token
	if tok == "" && len(p.cfg.Security.Users) == 0 {
		return "", true
	}
	if p.cfg.Proxy.RESTOpen && r.Header.Get("Authorization") == "" {
		return "", true
	}
	h := r.Header.Get("Authorization")
	var got string
	switch {
	case strings.HasPrefix(h, "Bearer "):
		got = strings.TrimPrefix(h, "Bearer ")
	case strings.HasPrefix(h, "Basic "):
		b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(h, "Basic "))
		if err == nil {
			_, got, _ = strings.Cut(string(b), ":")
		}
	}
	if got == "" {
		return "", false
	}
	if tok != "" && subtle.ConstantTimeCompare([]byte(got), []byte(tok)) == 1 {
		return "", true
	}
	for u, ut := range p.cfg.Security.Users {
		if subtle.ConstantTimeCompare([]byte(got), []byte(ut)) == 1 {
			return u, true
		}
	}
	return "", false
}

// serveAPI serves one /api/v1 call and records it.
func (p *Proxy) serveAPI(w http.ResponseWriter, r *http.Request, raw string) {
	start := time.Now()
	rt, rerr := parseRoute(raw)
	op := "unknown"
	var err error
	sw := &statusRecorder{ResponseWriter: w}
	if rerr != nil {
		err = rerr
	} else {
		switch rt.kind {
		case routePaths:
			op = rt.action
			err = p.rest.servePaths(sw, r, rt)
		case routeStreams:
			op = "stream-" + rt.action
			err = p.rest.serveStreams(sw, r, rt)
		case routeJobs:
			op = "jobs"
			err = p.rest.serveJobs(sw, r, rt)
		}
	}
	if err != nil {
		if sw.status != 0 {
			p.log.Warn("REST call failed after its response began", zap.String("op", op), zap.String("path", raw), zap.Error(err))
		} else {
			re := writeError(sw, err)
			if re.code == codes.Internal || re.code == codes.Unknown {
				p.log.Warn("REST call failed", zap.String("op", op), zap.String("path", raw), zap.Error(err))
			}
		}
	}
	st := sw.status
	if st == 0 {
		st = http.StatusOK
	}
	p.m.requests.WithLabelValues("rest", op, strconv.Itoa(st)).Inc()
	p.m.latency.WithLabelValues("rest", op).Observe(time.Since(start).Seconds())
}

// statusRecorder notes the status a handler sent.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
