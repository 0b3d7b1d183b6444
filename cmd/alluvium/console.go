package main

import (
	"context"
	"fmt"
	"net"
	"strings"

	"go.uber.org/zap"

	"github.com/alluvium/alluvium/console"
	"github.com/alluvium/alluvium/internal/config"
	"github.com/alluvium/alluvium/internal/rpc"
)

// mountConsole serves the web console under /ui/ on h (a server's http
// port), as a client of the cluster at master and jobMasters acting with the
// cluster's identity from cfg. It returns a close function (nil error and a
// no-op when console.enabled is off).
func mountConsole(ctx context.Context, cfg *config.Config, h *rpc.HTTPServer, server, master, jobMasters string, log *zap.Logger) (func(), error) {
	if !cfg.Console.Enabled || h == nil {
		return func() {}, nil
	}
	c := *cfg
	c.Client.Master, c.Client.JobMaster = master, jobMasters
	client, err := dialCluster(ctx, &c)
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	con, err := console.Mount(h, console.Options{
		Client: client, Log: log.Named("console"), Server: server, Version: version, SessionTTL: cfg.Console.SessionTimeout,
	})
	if err != nil {
		client.Close()
		return nil, err
	}
	return func() {
		con.Close()
		client.Close()
	}, nil
}

// dialable turns a listener's address into one to dial: an unspecified
// host (0.0.0.0, ::) becomes loopback.
func dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// consoleURL is the console's address on an http listener, for people.
func consoleURL(cfg *config.Config, httpAddr string) string {
	scheme := "http"
	if cfg.Security.TLS.Enabled {
		scheme = "https"
	}
	return scheme + "://" + dialable(httpAddr) + console.Prefix
}

// firstNonEmpty returns the first of ss that is not blank.
func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if strings.TrimSpace(s) != "" {
			return s
		}
	}
	return ""
}

// uiNote is the ready line's mention of the console ("" when it is off).
func uiNote(cfg *config.Config, httpAddr string) string {
	if !cfg.Console.Enabled {
		return ""
	}
	return ", console " + consoleURL(cfg, httpAddr)
}
