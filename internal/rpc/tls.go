package rpc

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// TLSFiles are the PEM files of security.tls.*.
type TLSFiles struct {
	Enabled    bool
	Cert, Key  string // the server certificate
	ClientCA   string // set: client certificates are required (mTLS)
	CA         string // what clients trust; empty: the system roots
	ClientCert string
	ClientKey  string
	ServerName string
}

// ServerTLS builds the server side of security.tls (nil when off): the
// server certificate and, with client-ca, verification of client
// certificates.
func ServerTLS(t TLSFiles) (*tls.Config, error) {
	if !t.Enabled {
		return nil, nil
	}
	if t.Cert == "" || t.Key == "" {
		return nil, fmt.Errorf("security.tls.enabled: a server needs security.tls.cert and security.tls.key")
	}
	cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
	if err != nil {
		return nil, fmt.Errorf("security.tls.cert %s / key %s: %w", t.Cert, t.Key, err)
	}
	out := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if t.ClientCA != "" {
		pool, err := loadPool("security.tls.client-ca", t.ClientCA)
		if err != nil {
			return nil, err
		}
		out.ClientCAs = pool
		out.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return out, nil
}

// ClientTLS builds the client side of security.tls (nil when off).
func ClientTLS(t TLSFiles) (*tls.Config, error) {
	if !t.Enabled {
		return nil, nil
	}
	out := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CA != "" {
		pool, err := loadPool("security.tls.ca", t.CA)
		if err != nil {
			return nil, err
		}
		out.RootCAs = pool
	}
	if t.ClientCert != "" {
		cert, err := tls.LoadX509KeyPair(t.ClientCert, t.ClientKey)
		if err != nil {
			return nil, fmt.Errorf("security.tls.client-cert %s / client-key %s: %w", t.ClientCert, t.ClientKey, err)
		}
		out.Certificates = []tls.Certificate{cert}
	}
	return out, nil
}

func loadPool(key, path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s %s: no PEM certificate in it", key, path)
	}
	return pool, nil
}
