// Package security turns a process's security.* and limits.* configuration
// into the options of internal/rpc: the cluster token, the user map, the
// superuser, TLS and the request size limit. Every server role and the CLI
// use it, so authentication is configured one way everywhere (the SDK,
// which must not depend on the configuration, takes rpc options directly).
package security

import (
	"crypto/tls"

	"go.uber.org/zap"

	"github.com/alluvium/alluvium/internal/config"
	"github.com/alluvium/alluvium/internal/rpc"
)

// ServerOptions returns the options of a server of this cluster.
func ServerOptions(c *config.Config, log *zap.Logger) (rpc.ServerOptions, error) {
	o := rpc.ServerOptions{
		Token: c.Security.Token, Users: c.Security.Users, Superuser: c.Security.Superuser,
		Logger: log, MaxRecvMsgSize: c.Limits.MaxRequestBytes,
	}
	t, err := rpc.ServerTLS(Files(c))
	if err != nil {
		return o, err
	}
	o.TLS = t
	return o, nil
}

// ClientOptions returns how a process of this cluster dials another: with
// the cluster token and, when TLS is on, its CA and client certificate.
func ClientOptions(c *config.Config) (rpc.ClientOptions, error) {
	o := rpc.ClientOptions{Token: c.Security.Token, MaxSendMsgSize: c.Limits.MaxRequestBytes}
	t, err := ClientTLS(c)
	if err != nil {
		return o, err
	}
	o.TLS = t
	return o, nil
}

// ClientTLS is the client side of security.tls (nil when off).
func ClientTLS(c *config.Config) (*tls.Config, error) { return rpc.ClientTLS(Files(c)) }

// Files returns security.tls.* as rpc.TLSFiles.
func Files(c *config.Config) rpc.TLSFiles {
	t := c.Security.TLS
	return rpc.TLSFiles{
		Enabled: t.Enabled, Cert: t.Cert, Key: t.Key, ClientCA: t.ClientCA, CA: t.CA,
		ClientCert: t.ClientCert, ClientKey: t.ClientKey, ServerName: t.ServerName,
	}
}
