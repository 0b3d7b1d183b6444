package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/alluvium/alluvium/internal/config"
	"github.com/alluvium/alluvium/internal/gcfloor"
	"github.com/alluvium/alluvium/internal/logging"
	"github.com/alluvium/alluvium/internal/security"
	"github.com/alluvium/alluvium/sdk"
)

// version is set by the linker (-X main.version=...).
var version = "dev"

// globals are the flags every command shares.
type globals struct {
	configFile string
	home       string
	portBase   int
	ufs        string
	master     string
	jobMaster  string
	token      string
	logLevel   string
}

func newRootCmd() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "alluvium",
		Short: "Alluvium: a caching data-orchestration layer over slow storage, with a job service",
		Long: `Alluvium puts tiered local storage (memory, SSD, disk) in front of slow under
storage (a local directory, S3) and runs jobs over it: load (warm-up), persist,
replicate, move and copy.

Start an all-in-one cluster on this machine:
  alluvium local --home /tmp/alluvium
then, in another shell:
  source /tmp/alluvium/env
  alluvium fs ls /
  alluvium job submit load / --wait`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.configFile, "config", "", "YAML config file (keys: configs/README.md)")
	pf.StringVar(&g.home, "home", "", "directory for journal, raft data, tiers and token (default ./alluvium-data)")
	pf.IntVar(&g.portBase, "port-base", 0, "put every port at an offset from this base (FS master rpc = base)")
	pf.StringVar(&g.ufs, "ufs", "", "UFS URI of the root mount, e.g. file:///data or s3://bucket/prefix")
	pf.StringVar(&g.master, "master", "", "FS master rpc address host:port, or the masters' comma-separated (env ALLUVIUM_MASTER)")
	pf.StringVar(&g.jobMaster, "job-master", "", "job master rpc addresses, comma-separated (env ALLUVIUM_JOB_MASTER)")
	pf.StringVar(&g.token, "token", "", "cluster token (env ALLUVIUM_TOKEN)")
	pf.StringVar(&g.logLevel, "log-level", "", "debug, info, warn or error")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%w (see '%s --help')", err, c.CommandPath())}
	})

	// Each role's command file adds its commands here.
	addCommands(root, g)
	return root
}

// load builds the configuration from defaults, --config, ALLUVIUM_* and the
// global flags of cmd.
func (g *globals) load(cmd *cobra.Command) (*config.Config, error) {
	l := config.NewLoader()
	if err := l.ReadFile(g.configFile); err != nil {
		return nil, usageError{err}
	}
	// The short client variables DESIGN.md names.
	if v := os.Getenv("ALLUVIUM_MASTER"); v != "" {
		l.Set("client.master", v)
	}
	if v := os.Getenv("ALLUVIUM_JOB_MASTER"); v != "" {
		l.Set("client.job-master", v)
	}
	if v := os.Getenv("ALLUVIUM_TOKEN"); v != "" {
		l.Set("security.token", v)
	}
	flags := cmd.Flags()
	changed := func(name string) bool { f := flags.Lookup(name); return f != nil && f.Changed }
	if changed("home") {
		l.Set("home", g.home)
	}
	if changed("port-base") {
		if g.portBase <= 0 || g.portBase > 65535-200 {
			return nil, usagef("--port-base %d: want 1..%d", g.portBase, 65535-200)
		}
		l.SetPortBase(g.portBase)
	}
	if changed("ufs") {
		l.Set("fsmaster.ufs", g.ufs)
	}
	if changed("master") {
		for _, k := range []string{"client.master", "worker.master", "jobmaster.master"} {
			l.Set(k, g.master)
		}
	}
	if changed("job-master") {
		for _, k := range []string{"client.job-master", "jobworker.job-master", "fsmaster.job-master"} {
			l.Set(k, g.jobMaster)
		}
	}
	if changed("token") {
		l.Set("security.token", g.token)
	}
	if changed("log-level") {
		l.Set("log.level", g.logLevel)
	}
	c, err := l.Load()
	if err != nil {
		return nil, usageError{err}
	}
	return c, nil
}

// serverProcess readies the process of a long-running server role: the
// garbage collector's heap floor (internal/gcfloor: at most
// process.gc-heap-floor more heap than Go's default, none once the live
// heap is larger; off when GOGC is set or the key is 0) and the role's
// logger.
func serverProcess(c *config.Config, role string) (*zap.Logger, error) {
	gcfloor.Start(c.Process.HeapFloor())
	return logger(c, role)
}

// logger builds the process logger for a server role.
func logger(c *config.Config, role string) (*zap.Logger, error) {
	return logging.New(role, c.Log.Level, c.Log.Format)
}

// exactArgs is cobra.ExactArgs with a usage error naming what is missing.
func exactArgs(n int, names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s: want %d argument(s) %s, got %d (see '%s --help')", cmd.CommandPath(), n, strings.Join(names, " "), len(args), cmd.CommandPath())
		}
		return nil
	}
}

// minArgs is cobra.MinimumNArgs with a usage error.
func minArgs(n int, names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < n {
			return usagef("%s: want at least %d argument(s) %s (see '%s --help')", cmd.CommandPath(), n, strings.Join(names, " "), cmd.CommandPath())
		}
		return nil
	}
}

// dialCluster opens an SDK client on the FS master and job masters the
// configuration names (flags > env > file > defaults), with the client's
// credentials (token, TLS from security.tls.*) and timeout.
func dialCluster(ctx context.Context, cfg *config.Config) (*sdk.Client, error) {
	tlsConf, err := security.ClientTLS(cfg)
	if err != nil {
		return nil, usageError{err}
	}
	opts := []sdk.Option{sdk.WithToken(cfg.Security.Token), sdk.WithTimeout(cfg.Client.Timeout),
		sdk.WithMaster(cfg.Client.Master), sdk.WithJobMasters(sdk.SplitAddrs(cfg.Client.JobMaster)...)}
	if tlsConf != nil {
		opts = append(opts, sdk.WithTLS(tlsConf))
	}
	return sdk.Dial(ctx, opts...)
}

// serverAuth makes sure a server process is not open by accident: the FS
// master's commands create the cluster token when there is none (own
// true), the others need one (or mTLS, or security.insecure).
func serverAuth(cfg *config.Config, own bool) error {
	if own {
		created, err := config.EnsureToken(cfg)
		if err != nil {
			return err
		}
		if created {
			fmt.Fprintf(os.Stderr, "alluvium: created the cluster token in %s (mode 0600); clients and the other servers need it (ALLUVIUM_TOKEN, --token or security.token-file)\n", cfg.Security.TokenFile)
		}
		return nil
	}
	if err := config.CheckAuth(cfg); err != nil {
		return usageError{err}
	}
	return nil
}
