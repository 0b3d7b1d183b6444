package rpc

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
)

// whoami answers GetStatus with the caller's identity: owner = user,
// group = "system" / "via:<name>" / "user"; ReadBlock (a stream) sends the
// user as one chunk.
type whoami struct {
	api.UnimplementedFileSystemMasterServer
	api.UnimplementedBlockWorkerServer
}

func describe(ctx context.Context) (string, string) {
	id, ok := IdentityFrom(ctx)
	if !ok {
		return "", "none"
	}
	switch {
	case id.System:
		return id.User, "system"
	case id.Via != "":
		return id.User, "via:" + id.Via
	}
	return id.User, "user"
}

func (whoami) GetStatus(ctx context.Context, r *api.GetStatusRequest) (*api.GetStatusResponse, error) {
	u, kind := describe(ctx)
	return &api.GetStatusResponse{Info: &api.FileInfo{Path: r.GetPath(), Owner: u, Group: kind}}, nil
}

func (whoami) Mount(ctx context.Context, r *api.MountRequest) (*api.MountResponse, error) {
	return &api.MountResponse{}, nil
}

func (whoami) ReadBlock(r *api.ReadBlockRequest, s grpc.ServerStreamingServer[api.ReadBlockResponse]) error {
	u, kind := describe(s.Context())
	return s.Send(&api.ReadBlockResponse{Chunk: []byte(u + "/" + kind)})
}

type testServer struct {
	addr string
	logs *observer.ObservedLogs
}

func startServer(t *testing.T, o ServerOptions) testServer {
	t.Helper()
	core, logs := observer.New(zap.InfoLevel)
	o.Logger = zap.New(core)
	s := NewServer(o)
	api.RegisterFileSystemMasterServer(s, whoami{})
	api.RegisterBlockWorkerServer(s, whoami{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l) //nolint:errcheck
	t.Cleanup(s.Stop)
	return testServer{addr: l.Addr().String(), logs: logs}
}

func call(t *testing.T, addr string, o ClientOptions, ctx context.Context) (*api.FileInfo, error) {
	t.Helper()
	cc, err := Dial(addr, o)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	r, err := api.NewFileSystemMasterClient(cc).GetStatus(ctx, &api.GetStatusRequest{Path: "/x"})
	return r.GetInfo(), err
}

const (
	clusterToken = "cluster-token-0123456789"
	aliceToken   = "alice-token-0123456789ab"
)

func TestTokenAuthentication(t *testing.T) {
	srv := startServer(t, ServerOptions{Token: clusterToken, Superuser: "root",
		Users: map[string]string{"alice": aliceToken}})
	for _, tc := range []struct {
		name, token string
		code        codes.Code
		user, kind  string
		reason      string
	}{
		{"cluster token", clusterToken, codes.OK, "root", "system", ""},
		{"user token", aliceToken, codes.OK, "alice", "user", ""},
		{"no token", "", codes.Unauthenticated, "", "", "no token"},
		{"wrong token", "guess-guess-guess-guess", codes.Unauthenticated, "", "", "wrong token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := srv.logs.Len()
			info, err := call(t, srv.addr, ClientOptions{Token: tc.token}, context.Background())
			if status.Code(err) != tc.code {
				t.Fatalf("code %v (%v), want %v", status.Code(err), err, tc.code)
			}
			if tc.code != codes.OK {
				if !strings.Contains(err.Error(), "ALLUVIUM_TOKEN") {
					t.Errorf("error %q does not say how to pass the token", err)
				}
				entries := srv.logs.All()[before:]
				if len(entries) != 1 {
					t.Fatalf("%d log lines, want 1: %v", len(entries), entries)
				}
				f := entries[0].ContextMap()
				if p, _ := f["peer"].(string); !strings.HasPrefix(p, "127.0.0.1:") {
					t.Errorf("log line names peer %q, want 127.0.0.1:port", f["peer"])
				}
				if f["reason"] != tc.reason || !strings.Contains(fmt.Sprint(f["method"]), "GetStatus") {
					t.Errorf("log line %v, want reason %q and the method", f, tc.reason)
				}
				return
			}
			if info.GetOwner() != tc.user || info.GetGroup() != tc.kind {
				t.Errorf("identity %s/%s, want %s/%s", info.GetOwner(), info.GetGroup(), tc.user, tc.kind)
			}
		})
	}
}

// Only the system identity may act for another user; a user may name
// itself; the header travels on streams too.
func TestImpersonation(t *testing.T) {
	srv := startServer(t, ServerOptions{Token: clusterToken, Superuser: "root",
		Users: map[string]string{"alice": aliceToken}})
	info, err := call(t, srv.addr, ClientOptions{Token: clusterToken}, ActAs(context.Background(), "bob"))
	if err != nil || info.GetOwner() != "bob" || info.GetGroup() != "via:root" {
		t.Fatalf("system as bob: %v %v", info, err)
	}
	// ClientOptions.User is the default; ActAs in the context wins.
	info, err = call(t, srv.addr, ClientOptions{Token: clusterToken, User: "carol"}, context.Background())
	if err != nil || info.GetOwner() != "carol" {
		t.Fatalf("system with User carol: %v %v", info, err)
	}
	info, err = call(t, srv.addr, ClientOptions{Token: clusterToken, User: "carol"}, ActAs(context.Background(), "dave"))
	if err != nil || info.GetOwner() != "dave" {
		t.Fatalf("system with User carol, ActAs dave: %v %v", info, err)
	}
	if info, err = call(t, srv.addr, ClientOptions{Token: aliceToken}, ActAs(context.Background(), "alice")); err != nil || info.GetGroup() != "user" {
		t.Fatalf("alice as alice: %v %v", info, err)
	}
	before := srv.logs.Len()
	_, err = call(t, srv.addr, ClientOptions{Token: aliceToken}, ActAs(context.Background(), "bob"))
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("alice as bob: %v, want PermissionDenied", err)
	}
	if srv.logs.Len() != before+1 {
		t.Errorf("refused impersonation not logged")
	}

	cc, err := Dial(srv.addr, ClientOptions{Token: clusterToken, User: "erin"})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	st, err := api.NewBlockWorkerClient(cc).ReadBlock(context.Background(), &api.ReadBlockRequest{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.Recv()
	if err != nil || string(m.GetChunk()) != "erin/via:root" {
		t.Fatalf("stream identity %q, %v", m.GetChunk(), err)
	}
}

func TestNoAuthConfiguredIsSystem(t *testing.T) {
	srv := startServer(t, ServerOptions{Superuser: "root"})
	info, err := call(t, srv.addr, ClientOptions{}, context.Background())
	if err != nil || info.GetOwner() != "root" || info.GetGroup() != "system" {
		t.Fatalf("open server: %v %v", info, err)
	}
	info, err = call(t, srv.addr, ClientOptions{}, ActAs(context.Background(), "bob"))
	if err != nil || info.GetOwner() != "bob" {
		t.Fatalf("open server, as bob: %v %v", info, err)
	}
}

func TestSystemOnlyMethods(t *testing.T) {
	srv := startServer(t, ServerOptions{Token: clusterToken, Users: map[string]string{"alice": aliceToken},
		SystemOnly: []string{api.FileSystemMaster_Mount_FullMethodName, "/" + api.BlockWorker_ServiceDesc.ServiceName + "/"}})
	mount := func(o ClientOptions, ctx context.Context) error {
		cc, err := Dial(srv.addr, o)
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		_, err = api.NewFileSystemMasterClient(cc).Mount(ctx, &api.MountRequest{})
		return err
	}
	if err := mount(ClientOptions{Token: aliceToken}, context.Background()); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("alice Mount: %v, want PermissionDenied", err)
	}
	if err := mount(ClientOptions{Token: clusterToken}, context.Background()); err != nil {
		t.Fatalf("system Mount: %v", err)
	}
	if err := mount(ClientOptions{Token: clusterToken}, ActAs(context.Background(), "alice")); err != nil {
		t.Fatalf("system acting for alice, Mount: %v", err)
	}
	cc, _ := Dial(srv.addr, ClientOptions{Token: aliceToken})
	defer cc.Close()
	st, err := api.NewBlockWorkerClient(cc).ReadBlock(context.Background(), &api.ReadBlockRequest{})
	if err == nil {
		_, err = st.Recv()
	}
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("alice ReadBlock under a system-only service prefix: %v", err)
	}
	if _, err := call(t, srv.addr, ClientOptions{Token: aliceToken}, context.Background()); err != nil {
		t.Fatalf("alice GetStatus (not restricted): %v", err)
	}
}

func TestOversizeRequestIsResourceExhausted(t *testing.T) {
	srv := startServer(t, ServerOptions{Token: clusterToken, MaxRecvMsgSize: 1 << 20})
	cc, err := Dial(srv.addr, ClientOptions{Token: clusterToken, MaxSendMsgSize: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	c := api.NewFileSystemMasterClient(cc)
	_, err = c.GetStatus(context.Background(), &api.GetStatusRequest{Path: "/" + strings.Repeat("a", 2<<20)})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("2 MiB request to a 1 MiB server: %v, want ResourceExhausted", err)
	}
	if _, err := c.GetStatus(context.Background(), &api.GetStatusRequest{Path: "/small"}); err != nil {
		t.Fatalf("small request after the big one: %v", err)
	}
}

// ---- TLS ----

type testPKI struct {
	dir     string
	ca      *x509.Certificate
	caKey   *ecdsa.PrivateKey
	caPath  string
	serial  int64
	badCA   string // a CA nobody's certificates are signed by
	srvCert string
	srvKey  string
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	p := &testPKI{dir: t.TempDir(), serial: 1}
	p.ca, p.caKey, p.caPath = p.selfSigned(t, "alluvium test CA", "ca")
	_, _, p.badCA = p.selfSigned(t, "other CA", "bad-ca")
	p.srvCert, p.srvKey = p.issue(t, "server", "server", true)
	return p
}

func (p *testPKI) selfSigned(t *testing.T, cn, name string) (*x509.Certificate, *ecdsa.PrivateKey, string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p.serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	path := filepath.Join(p.dir, name+".pem")
	writePEM(t, path, "CERTIFICATE", der)
	return cert, key, path
}

// issue signs a certificate for cn (a server one valid for 127.0.0.1 and
// localhost, or a client one) and returns its cert and key paths.
func (p *testPKI) issue(t *testing.T, cn, name string, server bool) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p.serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert, keyPath := filepath.Join(p.dir, name+".pem"), filepath.Join(p.dir, name+"-key.pem")
	writePEM(t, cert, "CERTIFICATE", der)
	writePEM(t, keyPath, "EC PRIVATE KEY", kb)
	return cert, keyPath
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// files are TLS settings of this PKI with a client certificate.
func (p *testPKI) files(clientCert, clientKey string) TLSFiles {
	return TLSFiles{Enabled: true, Cert: p.srvCert, Key: p.srvKey, ClientCA: p.caPath,
		CA: p.caPath, ClientCert: clientCert, ClientKey: clientKey}
}

func serverOptions(t *testing.T, f TLSFiles) ServerOptions {
	t.Helper()
	c, err := ServerTLS(f)
	if err != nil {
		t.Fatal(err)
	}
	return ServerOptions{TLS: c, Superuser: "root"}
}

func clientOptions(t *testing.T, f TLSFiles) ClientOptions {
	t.Helper()
	c, err := ClientTLS(f)
	if err != nil {
		t.Fatal(err)
	}
	return ClientOptions{TLS: c}
}

// mTLS: a client certificate's CN is the user (the superuser's CN is the
// system identity); a client without a certificate, or with one from
// another CA, is refused; a token still works beside a certificate.
func TestMutualTLS(t *testing.T) {
	p := newPKI(t)
	srvOpts := serverOptions(t, p.files("", ""))
	srvOpts.Token = clusterToken
	srv := startServer(t, srvOpts)

	aliceCert, aliceKey := p.issue(t, "alice", "alice", false)
	rootCert, rootKey := p.issue(t, "root", "root", false)
	clientOpts := func(cert, key string) ClientOptions { return clientOptions(t, p.files(cert, key)) }
	info, err := call(t, srv.addr, clientOpts(aliceCert, aliceKey), context.Background())
	if err != nil || info.GetOwner() != "alice" || info.GetGroup() != "user" {
		t.Fatalf("alice's certificate: %v %v", info, err)
	}
	info, err = call(t, srv.addr, clientOpts(rootCert, rootKey), ActAs(context.Background(), "bob"))
	if err != nil || info.GetOwner() != "bob" || info.GetGroup() != "via:root" {
		t.Fatalf("root's certificate acting for bob: %v %v", info, err)
	}
	if _, err := call(t, srv.addr, clientOpts(aliceCert, aliceKey), ActAs(context.Background(), "bob")); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("alice's certificate acting for bob: %v", err)
	}
	// No client certificate: the handshake fails, even with the token.
	noCert := clientOpts("", "")
	noCert.Token = clusterToken
	if _, err := call(t, srv.addr, noCert, context.Background()); status.Code(err) != codes.Unavailable {
		t.Fatalf("no client certificate: %v, want the handshake refused (Unavailable)", err)
	}
	// A certificate of another CA.
	other := &testPKI{dir: t.TempDir(), serial: 100}
	other.ca, other.caKey, other.caPath = other.selfSigned(t, "rogue CA", "ca")
	rogueCert, rogueKey := other.issue(t, "root", "rogue", false)
	if _, err := call(t, srv.addr, clientOpts(rogueCert, rogueKey), context.Background()); err == nil {
		t.Fatal("a certificate from another CA was accepted")
	}
	// A client that does not trust the server's CA refuses the server.
	distrust := p.files(aliceCert, aliceKey)
	distrust.CA = p.badCA
	if _, err := call(t, srv.addr, clientOptions(t, distrust), context.Background()); err == nil {
		t.Fatal("a client that does not trust the server's CA connected")
	}
	// Plain text to a TLS server fails.
	if _, err := call(t, srv.addr, ClientOptions{Token: clusterToken}, context.Background()); err == nil {
		t.Fatal("a plaintext client reached a TLS server")
	}
}

func TestTLSConfigErrors(t *testing.T) {
	if _, err := ServerTLS(TLSFiles{Enabled: true, Cert: "/nonexistent/cert.pem", Key: "/nonexistent/key.pem"}); err == nil || !strings.Contains(err.Error(), "security.tls.cert") {
		t.Errorf("missing server cert: %v", err)
	}
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.pem")
	os.WriteFile(junk, []byte("not pem"), 0o600)
	if _, err := ClientTLS(TLSFiles{Enabled: true, CA: junk}); err == nil || !strings.Contains(err.Error(), "security.tls.ca") {
		t.Errorf("junk CA: %v", err)
	}
	if c, err := ClientTLS(TLSFiles{}); err != nil || c != nil {
		t.Errorf("TLS off: %v %v", c, err)
	}
}

// ---- HTTP ----

func startHTTP(t *testing.T, o ServerOptions) (string, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zap.InfoLevel)
	o.Logger = zap.New(core)
	h := NewHTTPServerWith(o, nil)
	h.Mux.HandleFunc("/api/v1/whoami", func(w http.ResponseWriter, r *http.Request) {
		u, kind := describe(r.Context())
		fmt.Fprintf(w, "%s/%s", u, kind)
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go h.Serve(l) //nolint:errcheck
	t.Cleanup(func() { h.Shutdown(context.Background()) })
	return l.Addr().String(), logs
}

func get(t *testing.T, c *http.Client, url, token string, hdr ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestHTTPAuthentication(t *testing.T) {
	addr, logs := startHTTP(t, ServerOptions{Token: clusterToken, Superuser: "root", Users: map[string]string{"alice": aliceToken}})
	base := "http://" + addr
	c := http.DefaultClient
	if code, body := get(t, c, base+"/healthz", ""); code != 200 || body != "ok\n" {
		t.Errorf("/healthz without token: %d %q", code, body)
	}
	if code, _ := get(t, c, base+"/metrics", ""); code != http.StatusUnauthorized {
		t.Errorf("/metrics without token: %d, want 401", code)
	}
	if len(logs.All()) != 1 || !strings.HasPrefix(fmt.Sprint(logs.All()[0].ContextMap()["peer"]), "127.0.0.1:") {
		t.Errorf("refused request not logged with its peer: %v", logs.All())
	}
	if code, _ := get(t, c, base+"/metrics", "wrong-wrong-wrong"); code != http.StatusUnauthorized {
		t.Errorf("/metrics with a wrong token: %d, want 401", code)
	}
	if code, body := get(t, c, base+"/metrics", clusterToken); code != 200 || !strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics with the token: %d", code)
	}
	if code, body := get(t, c, base+"/api/v1/whoami", aliceToken); code != 200 || body != "alice/user" {
		t.Errorf("whoami as alice: %d %q", code, body)
	}
	if code, body := get(t, c, base+"/api/v1/whoami", clusterToken, UserHeader, "bob"); code != 200 || body != "bob/via:root" {
		t.Errorf("whoami as system for bob: %d %q", code, body)
	}
	if code, _ := get(t, c, base+"/api/v1/whoami", aliceToken, UserHeader, "bob"); code != http.StatusForbidden {
		t.Errorf("alice acting for bob over http: %d, want 403", code)
	}
	// The profiler is the cluster identity's alone.
	if code, body := get(t, c, base+"/debug/pprof/heap?debug=1", clusterToken); code != 200 || !strings.Contains(body, "heap profile") {
		t.Errorf("heap profile with the token: %d", code)
	}
	for _, who := range [][]string{{""}, {aliceToken}, {clusterToken, UserHeader, "bob"}} {
		if code, _ := get(t, c, base+"/debug/pprof/heap", who[0], who[1:]...); code != http.StatusForbidden && code != http.StatusUnauthorized {
			t.Errorf("heap profile as %v: %d, want 401 or 403", who, code)
		}
	}
}

func TestHTTPOverMutualTLS(t *testing.T) {
	p := newPKI(t)
	o := serverOptions(t, p.files("", ""))
	o.Token = clusterToken
	addr, _ := startHTTP(t, o)
	base := "https://" + addr
	aliceCert, aliceKey := p.issue(t, "alice", "alice-http", false)
	client := func(cert, key string) *http.Client {
		co := clientOptions(t, p.files(cert, key))
		return &http.Client{Transport: &http.Transport{TLSClientConfig: co.TLS}}
	}
	anon := client("", "")
	if code, _ := get(t, anon, base+"/healthz", ""); code != 200 {
		t.Errorf("/healthz over TLS without a certificate: %d", code)
	}
	if code, _ := get(t, anon, base+"/metrics", ""); code != http.StatusUnauthorized {
		t.Errorf("/metrics without certificate or token: %d, want 401", code)
	}
	if code, _ := get(t, anon, base+"/metrics", clusterToken); code != 200 {
		t.Errorf("/metrics with the token, no certificate: %d", code)
	}
	if code, body := get(t, client(aliceCert, aliceKey), base+"/api/v1/whoami", ""); code != 200 || body != "alice/user" {
		t.Errorf("whoami with alice's certificate: %d %q", code, body)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("a client not trusting the CA reached the TLS http server")
	}
	_ = tls.VersionTLS12
}
