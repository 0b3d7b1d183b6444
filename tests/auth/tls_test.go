package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alluvium/alluvium/internal/testutil"
)

// pki is a CA made for the test and the certificates it signs.
type pki struct {
	dir    string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	caPath string
	serial int64
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir(), serial: 1}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "alluvium test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p.ca, _ = x509.ParseCertificate(der)
	p.caKey = key
	p.caPath = filepath.Join(p.dir, "ca.pem")
	writePEM(t, p.caPath, "CERTIFICATE", der)
	return p
}

// issue signs a certificate for cn: a server one (127.0.0.1, localhost)
// that also serves as a client one, or a client one.
func (p *pki) issue(t *testing.T, cn string, server bool) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p.serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &k.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(p.dir, cn+".pem"), filepath.Join(p.dir, cn+"-key.pem")
	writePEM(t, cert, "CERTIFICATE", der)
	writePEM(t, key, "EC PRIVATE KEY", kb)
	return cert, key
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// tlsYAML is a security.tls section.
func tlsYAML(p *pki, srvCert, srvKey, clientCert, clientKey string) string {
	s := "security:\n  tls:\n    enabled: true\n    ca: " + p.caPath + "\n"
	if srvCert != "" {
		s += "    cert: " + srvCert + "\n    key: " + srvKey + "\n    client-ca: " + p.caPath + "\n"
	}
	if clientCert != "" {
		s += "    client-cert: " + clientCert + "\n    client-key: " + clientKey + "\n"
	}
	return s
}

// TestMutualTLS runs `alluvium local` with mTLS on every server: the CLI
// with a certificate and the token works (data too, over TCP and the
// worker's unix socket), a certificate alone makes its CN the user, no
// certificate or plain text is refused, /healthz answers over https.
func TestMutualTLS(t *testing.T) {
	p := newPKI(t)
	srvCert, srvKey := p.issue(t, "server", true)
	internalCert, internalKey := p.issue(t, "cluster", false)
	aliceCert, aliceKey := p.issue(t, "alice", false)
	c := startLocal(t, tlsYAML(p, srvCert, srvKey, internalCert, internalKey))

	conf := func(name, yaml string) string {
		path := filepath.Join(t.TempDir(), name+".yaml")
		if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	withCert := conf("client", tlsYAML(p, "", "", internalCert, internalKey))
	asAlice := conf("alice", tlsYAML(p, "", "", aliceCert, aliceKey))
	noCert := conf("nocert", tlsYAML(p, "", "", "", ""))

	// Certificate and token: the system identity; data moves over TLS.
	data := strings.Repeat("over mTLS\n", 5000)
	local := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(local, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	c.must(t, c.token, "--config", withCert, "fs", "mkdir", "/tls")
	c.must(t, c.token, "--config", withCert, "fs", "put", local, "/tls/f")
	if out := c.must(t, c.token, "--config", withCert, "fs", "cat", "/tls/f"); out != data {
		t.Fatalf("cat over mTLS: %d bytes, want %d", len(out), len(data))
	}
	// (job submit load has a --config of its own, the job's JSON: the
	// client's TLS comes from the environment here.)
	env := []string{"ALLUVIUM_MASTER=" + c.master, "ALLUVIUM_JOB_MASTER=" + c.jobMaster, "ALLUVIUM_TOKEN=" + c.token,
		"ALLUVIUM_SECURITY_TLS_ENABLED=true", "ALLUVIUM_SECURITY_TLS_CA=" + p.caPath,
		"ALLUVIUM_SECURITY_TLS_CLIENT_CERT=" + internalCert, "ALLUVIUM_SECURITY_TLS_CLIENT_KEY=" + internalKey}
	if _, errOut, code := testutil.Run(t, c.bin, env, "job", "submit", "load", "/tls", "--wait"); code != 0 {
		t.Fatalf("load over mTLS: exit %d: %s", code, errOut)
	}

	// A certificate alone: its CN is the user, checked as such.
	if out := c.must(t, "", "--config", asAlice, "fs", "cat", "/tls/f"); out != data {
		t.Fatalf("alice (certificate only) reads %d bytes", len(out))
	}
	c.refused(t, "", []string{"permission denied", "user alice"}, "--config", asAlice, "fs", "mkdir", "/alice-top")

	// No client certificate (even with the token), or no TLS: refused.
	if _, errOut, code := c.cli(t, c.token, "--config", noCert, "fs", "ls", "/"); code != 1 {
		t.Fatalf("no client certificate: exit %d %q", code, errOut)
	}
	if _, errOut, code := c.cli(t, c.token, "fs", "ls", "/"); code != 1 {
		t.Fatalf("plain text to a TLS cluster: exit %d %q", code, errOut)
	}

	// http: https only; /healthz without a certificate, the rest with one
	// (or the token).
	pool := x509.NewCertPool()
	pool.AddCert(p.ca)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	url := fmt.Sprintf("https://127.0.0.1:%d", c.base+1)
	get := func(path, token string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, url+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get("/healthz", ""); code != 200 {
		t.Errorf("https /healthz: %d", code)
	}
	if code := get("/metrics", ""); code != 401 {
		t.Errorf("https /metrics without certificate or token: %d, want 401", code)
	}
	if code := get("/metrics", c.token); code != 200 {
		t.Errorf("https /metrics with the token: %d", code)
	}
	if _, err := testutil.HTTPGet(fmt.Sprintf("http://127.0.0.1:%d/healthz", c.base+1)); err == nil {
		// A TLS server answers plain http with a 400; either way no data.
		resp, _ := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", c.base+1))
		if resp != nil && resp.StatusCode == 200 {
			t.Error("plain http /metrics answered 200 on a TLS port")
		}
	}
}
