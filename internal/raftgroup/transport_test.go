package raftgroup

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func newTestLayer(t *testing.T, token string, srv, cli *tls.Config) (*authLayer, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zap.InfoLevel)
	l, err := newAuthLayer(JobMasterMagic, "127.0.0.1:0", nil, token, srv, cli, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, logs
}

// accepted returns the next connection the layer admits, or nil after d.
func accepted(l *authLayer, d time.Duration) net.Conn {
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			ch <- nil
			return
		}
		ch <- c
	}()
	select {
	case c := <-ch:
		return c
	case <-time.After(d):
		return nil
	}
}

func roundTrip(t *testing.T, from, to net.Conn) {
	t.Helper()
	if _, err := from.Write([]byte("append")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	_ = to.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(to, buf); err != nil || string(buf) != "append" {
		t.Fatalf("read %q, %v", buf, err)
	}
}

func TestRaftTransportNeedsTheToken(t *testing.T) {
	server, logs := newTestLayer(t, "cluster-token", nil, nil)
	member, _ := newTestLayer(t, "cluster-token", nil, nil)
	addr := raft.ServerAddress(server.Addr().String())

	c, err := member.Dial(addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	in := accepted(server, 5*time.Second)
	if in == nil {
		t.Fatal("a member with the token was not admitted")
	}
	defer in.Close()
	roundTrip(t, c, in)

	// A wrong token: the connection is closed, never handed to raft, and
	// the refusal is logged with the peer.
	stranger, _ := newTestLayer(t, "guessed-token", nil, nil)
	bad, err := stranger.Dial(addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	_ = bad.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := bad.Read(make([]byte, 1)); err == nil {
		t.Fatalf("the server talked to a wrong token (%d bytes)", n)
	}
	if got := accepted(server, 300*time.Millisecond); got != nil {
		t.Fatal("a connection with a wrong token reached raft")
	}
	found := false
	for _, e := range logs.All() {
		if e.Message == "raft connection refused" && strings.HasPrefix(e.ContextMap()["peer"].(string), "127.0.0.1:") &&
			strings.Contains(e.ContextMap()["error"].(string), "wrong cluster token") {
			found = true
		}
	}
	if !found {
		t.Errorf("no log line names the refused peer: %v", logs.All())
	}

	// Raw bytes (someone speaking raft without the handshake) never reach
	// raft either.
	raw, err := net.Dial("tcp", string(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_, _ = raw.Write(make([]byte, 64))
	if got := accepted(server, 300*time.Millisecond); got != nil {
		t.Fatal("a connection without the handshake reached raft")
	}
	// A member dialing a non-Alluvium port fails clearly.
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	go func() {
		if c, err := plain.Accept(); err == nil {
			c.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n..........................."))
			time.Sleep(time.Second)
			c.Close()
		}
	}()
	if _, err := member.Dial(raft.ServerAddress(plain.Addr().String()), time.Second); err == nil || !strings.Contains(err.Error(), "not an Alluvium raft port") {
		t.Errorf("dial of a non-raft port: %v", err)
	}
}

// selfSigned returns a certificate for 127.0.0.1 and a pool trusting it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "jobmaster"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

func TestRaftTransportOverMutualTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	srv := &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
	cli := &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}
	server, _ := newTestLayer(t, "tok", srv, cli)
	member, _ := newTestLayer(t, "tok", srv, cli)
	c, err := member.Dial(raft.ServerAddress(server.Addr().String()), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	in := accepted(server, 5*time.Second)
	if in == nil {
		t.Fatal("a member with certificate and token was not admitted")
	}
	defer in.Close()
	roundTrip(t, in, c)
	// Without a client certificate the TLS handshake fails.
	noCert, _ := newTestLayer(t, "tok", srv, &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	if bad, err := noCert.Dial(raft.ServerAddress(server.Addr().String()), 2*time.Second); err == nil {
		_ = bad.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, rerr := bad.Read(make([]byte, 1)); rerr == nil {
			t.Fatal("a member without a client certificate was served")
		}
		bad.Close()
	}
	if got := accepted(server, 300*time.Millisecond); got != nil {
		t.Fatal("a member without a client certificate reached raft")
	}
}
