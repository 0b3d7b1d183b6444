package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/fsmaster"
	"github.com/alluvium/alluvium/internal/config"
	"github.com/alluvium/alluvium/internal/rpc"
	"github.com/alluvium/alluvium/jobmaster"
	"github.com/alluvium/alluvium/plans/plugin"
	"github.com/alluvium/alluvium/proxy"
)

func newLocalCmd(g *globals) *cobra.Command {
	var workers, masters int
	c := &cobra.Command{
		Use:   "local",
		Short: "Run an all-in-one cluster on this machine (every role in one process, on loopback)",
		Long: `Run every role in one process on 127.0.0.1: the FS master and its secondary
checkpointer, the job master (a single raft node), and N workers (each a block
worker with its own tiers plus a job worker beside it).

Everything lives under --home (default ./alluvium-data): the journal, the raft
data, each worker's tiers (MEM under /dev/shm, HDD under <home>/worker-<i>),
and the UFS when --ufs is not given (<home>/ufs). A restart with the same home
keeps the namespace and the cache.

Every port is in [P, P+200) for --port-base P (default 19998): FS master rpc P,
http P+1; job master rpc P+3, http P+4, raft P+5; proxy REST P+6, S3 P+7;
worker i at P+20+4i... With --masters 3 (or 5) the FS masters form a raft
group sharing an embedded journal — m1 on the ports above (raft P+2), m2, m3
from P+180 (rpc, http, raft each), journals under <home>/master-<i> — and
every client gets the list, so 'alluvium fsadmin journal quorum info' shows
the group. When the cluster is ready it writes <home>/env (export
lines for ALLUVIUM_MASTER, ALLUVIUM_JOB_MASTER, ALLUVIUM_PROXY (REST URL),
ALLUVIUM_S3 (S3 endpoint URL), ALLUVIUM_UI (the web console's URL: open it
and log in with the token) and, when auth is on, ALLUVIUM_TOKEN) and prints
a line with "ready". Ctrl-C or SIGTERM stops it cleanly.`,
		Example: `  alluvium local --home /tmp/alluvium --ufs /data --workers 3
  alluvium local --home /tmp/ha --masters 3   # three FS masters, one raft group
  # in another shell:
  source /tmp/alluvium/env
  alluvium fs ls /
  alluvium job submit load / --wait`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if workers < 1 || workers > config.MaxLocalWorkers {
				return usagef("--workers %d: want 1..%d", workers, config.MaxLocalWorkers)
			}
			if masters < 1 || masters > config.MaxLocalMasters || masters%2 == 0 {
				return usagef("--masters %d: want 1, 3 or 5 (a raft group of FS masters needs an odd number)", masters)
			}
			if !cmd.Flags().Changed("port-base") {
				_ = cmd.Flags().Set("port-base", fmt.Sprint(config.DefaultPortBase))
			}
			if cmd.Flags().Changed("ufs") {
				u, err := localUFS(g.ufs)
				if err != nil {
					return usageError{err}
				}
				g.ufs = u
			}
			cfg, err := g.load(cmd)
			if err != nil {
				return err
			}
			log, err := serverProcess(cfg, "local")
			if err != nil {
				return usageError{err}
			}
			defer log.Sync() //nolint:errcheck
			if err := os.MkdirAll(cfg.Home, 0o755); err != nil {
				return fmt.Errorf("home %s: %w", cfg.Home, err)
			}
			if err := serverAuth(cfg, true); err != nil {
				return err
			}
			fsmaster.Version = version
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			// Last, once the roles have stopped: the plan plugins they
			// started go too, sockets and all.
			defer plugin.Shutdown()
			return runLocal(ctx, cfg, g.portBase, workers, masters, log)
		},
	}
	c.Flags().IntVar(&workers, "workers", 2, "number of workers (block + job worker each)")
	c.Flags().IntVar(&masters, "masters", 1, "FS masters: 1 (a local journal and its secondary) or 3 or 5 (a raft group sharing an embedded journal)")
	return c
}

// localUFS accepts a plain directory for --ufs as well as a URI.
func localUFS(s string) (string, error) {
	if strings.Contains(s, "://") {
		return s, nil
	}
	abs, err := filepath.Abs(s)
	if err != nil {
		return "", fmt.Errorf("--ufs %q: %w", s, err)
	}
	return "file://" + abs, nil
}

// stopper is a started role, stopped in reverse order of starting.
type stopper struct {
	name string
	stop func(context.Context) error
}

// localMasters returns the configs of n FS masters under base: one is cfg
// (a local journal); several share an embedded journal, master i with its
// own ports (config.LocalMasterPorts) and journal under <home>/master-<i>,
// and every client of the cluster gets the list of them.
func localMasters(cfg *config.Config, base, n int) []*config.Config {
	if n == 1 {
		return []*config.Config{cfg}
	}
	var peers, addrs []string
	for i := 0; i < n; i++ {
		rpcPort, _, raftPort := config.LocalMasterPorts(base, i)
		peers = append(peers, fmt.Sprintf("m%d=localhost:%d|localhost:%d", i+1, raftPort, rpcPort))
		addrs = append(addrs, fmt.Sprintf("localhost:%d", rpcPort))
	}
	list := strings.Join(addrs, ",")
	cfg.Client.Master, cfg.Worker.Master, cfg.JobMaster.Master = list, list, list
	var out []*config.Config
	for i := 0; i < n; i++ {
		mc := *cfg
		mc.FSMaster.RPCPort, mc.FSMaster.HTTPPort, mc.FSMaster.Raft.Port = config.LocalMasterPorts(base, i)
		mc.FSMaster.Journal.Type = config.JournalEmbedded
		if i > 0 {
			mc.FSMaster.Journal.Dir = filepath.Join(cfg.Home, fmt.Sprintf("master-%d", i+1), "journal")
		}
		mc.FSMaster.Raft.Dir = filepath.Join(mc.FSMaster.Journal.Dir, "raft")
		mc.FSMaster.Raft.NodeID = fmt.Sprintf("m%d", i+1)
		mc.FSMaster.Raft.Peers = peers
		out = append(out, &mc)
	}
	return out
}

func runLocal(ctx context.Context, cfg *config.Config, base, workers, masters int, log *zap.Logger) (err error) {
	if err := os.MkdirAll(cfg.Home, 0o755); err != nil {
		return fmt.Errorf("home %s: %w", cfg.Home, err)
	}
	var started []stopper
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		for i := len(started) - 1; i >= 0; i-- {
			if serr := started[i].stop(sctx); serr != nil {
				log.Warn("stopping "+started[i].name, zap.Error(serr))
				err = errors.Join(err, fmt.Errorf("stop %s: %w", started[i].name, serr))
			}
		}
		_ = os.Remove(filepath.Join(cfg.Home, "env"))
	}()

	var ms []*fsmaster.Master
	failed := make(chan error, masters)
	for i, mc := range localMasters(cfg, base, masters) {
		name := "fsmaster"
		if masters > 1 {
			name = fmt.Sprintf("fsmaster-%d", i+1)
		}
		m, err := fsmaster.New(mc, log.Named(name))
		if err != nil {
			return err
		}
		if err := m.Start(ctx); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		started = append(started, stopper{name, m.Stop})
		ms = append(ms, m)
		go func() {
			<-m.Failed()
			failed <- fmt.Errorf("%s failed: %w", name, m.Err())
		}()
	}
	m := ms[0]

	if masters == 1 && cfg.FSMaster.Journal.Type != config.JournalEmbedded {
		sec, err := fsmaster.NewSecondary(cfg, log.Named("secondary"))
		if err != nil {
			return err
		}
		if err := sec.Start(ctx); err != nil {
			return err
		}
		started = append(started, stopper{"secondary", sec.Stop})
	}

	setBuiltinVersion()
	jm, err := jobmaster.New(cfg, log.Named("jobmaster"))
	if err != nil {
		return err
	}
	if err := jm.Start(ctx); err != nil {
		return err
	}
	started = append(started, stopper{"jobmaster", jm.Stop})

	for i := 0; i < workers; i++ {
		wc := workerConfig(cfg, base, i)
		wlog := log.Named(fmt.Sprintf("worker-%d", i))
		stop, err := startLocalWorker(ctx, wc, wlog)
		if err != nil {
			return fmt.Errorf("worker %d: %w", i, err)
		}
		started = append(started, stopper{fmt.Sprintf("worker-%d", i), stop})
	}

	if err := waitClusterReady(ctx, cfg, workers); err != nil {
		return err
	}
	px, err := proxy.New(cfg, log.Named("proxy"))
	if err != nil {
		return err
	}
	if err := px.Start(ctx); err != nil {
		return err
	}
	started = append(started, stopper{"proxy", px.Stop})
	// The console on both masters' http ports (one console: a login on
	// either is valid on the other); ALLUVIUM_UI names the FS master's.
	ui := ""
	for _, srv := range []struct {
		name string
		h    *rpc.HTTPServer
		addr string
	}{{"local", m.HTTPServer(), m.HTTPAddr()}, {"local (job master)", jm.HTTPServer(), jm.HTTPAddr()}} {
		closeConsole, err := mountConsole(ctx, cfg, srv.h, srv.name, cfg.Client.Master, cfg.Client.JobMaster, log)
		if err != nil {
			return err
		}
		started = append(started, stopper{"console", func(context.Context) error { closeConsole(); return nil }})
		if ui == "" && cfg.Console.Enabled {
			ui = consoleURL(cfg, srv.addr)
		}
	}
	envPath, err := writeEnv(cfg, px, ui)
	if err != nil {
		return err
	}
	uiWords := ""
	if ui != "" {
		uiWords = ", console " + ui
	}
	what := "FS master"
	if masters > 1 {
		what = fmt.Sprintf("%d FS masters (embedded journal)", masters)
	}
	fmt.Printf("alluvium local ready: %d workers, %s %s, job master %s, REST http://%s, S3 http://%s%s, UFS %s; env in %s\n",
		workers, what, cfg.Client.Master, cfg.Client.JobMaster, px.RESTAddr(), px.S3Addr(), uiWords, cfg.FSMaster.UFS, envPath)
	select {
	case <-ctx.Done():
		log.Info("stopping the local cluster")
		return nil
	case err := <-failed:
		// The journal failed: memory holds changes that are not durable.
		return err
	}
}

// workerConfig is cfg with worker i's ports and dirs.
func workerConfig(cfg *config.Config, base, i int) *config.Config {
	wc := *cfg
	wc.Worker.RPCPort, wc.Worker.HTTPPort, wc.JobWorker.RPCPort = config.WorkerPorts(base, i)
	wc.Worker.Dir = filepath.Join(cfg.Home, fmt.Sprintf("worker-%d", i))
	if len(cfg.Worker.Tiers) > 0 && !isDefaultTiers(cfg) {
		// Configured tiers: each worker gets its own subdirectory of each.
		wc.Worker.Tiers = make([]config.TierConfig, len(cfg.Worker.Tiers))
		for j, t := range cfg.Worker.Tiers {
			t.Path = filepath.Join(t.Path, fmt.Sprintf("worker-%d", i))
			wc.Worker.Tiers[j] = t
		}
	} else {
		wc.Worker.Tiers = config.DefaultTiers(wc.Worker.Dir, wc.Worker.RPCPort)
	}
	return &wc
}

func isDefaultTiers(cfg *config.Config) bool {
	def := config.DefaultTiers(cfg.Worker.Dir, cfg.Worker.RPCPort)
	if len(def) != len(cfg.Worker.Tiers) {
		return false
	}
	for i := range def {
		if def[i] != cfg.Worker.Tiers[i] {
			return false
		}
	}
	return true
}

// startLocalWorker runs one worker's roles in the background and returns
// their stop function.
func startLocalWorker(ctx context.Context, cfg *config.Config, log *zap.Logger) (func(context.Context) error, error) {
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- runWorkerRoles(wctx, cfg, log, func() { close(ready) }) }()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		return nil, err
	}
	return func(context.Context) error {
		cancel()
		return <-done
	}, nil
}

// waitClusterReady waits until the FS master sees every block worker live
// and the job master has a leader that knows every job worker.
func waitClusterReady(ctx context.Context, cfg *config.Config, workers int) error {
	c, err := dialCluster(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	jobs, err := c.Jobs()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(60 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		last = func() error {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			ws, err := c.Workers(cctx)
			if err != nil {
				return err
			}
			live := 0
			for _, w := range ws {
				if w.State == api.WorkerState_LIVE {
					live++
				}
			}
			if live < workers {
				return fmt.Errorf("%d of %d block workers live", live, workers)
			}
			jws, err := jobs.Workers(cctx)
			if err != nil {
				return err
			}
			live = 0
			for _, w := range jws {
				if w.State == api.WorkerState_LIVE {
					live++
				}
			}
			if live < workers {
				return fmt.Errorf("%d of %d job workers registered", live, workers)
			}
			return nil
		}()
		if last == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("cluster not ready after 60s: %w", last)
}

// writeEnv writes <home>/env with the export lines clients source.
func writeEnv(cfg *config.Config, px *proxy.Proxy, ui string) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "export ALLUVIUM_MASTER=%s\n", cfg.Client.Master)
	fmt.Fprintf(&b, "export ALLUVIUM_JOB_MASTER=%s\n", cfg.Client.JobMaster)
	fmt.Fprintf(&b, "export ALLUVIUM_PROXY=http://%s\n", px.RESTAddr())
	fmt.Fprintf(&b, "export ALLUVIUM_S3=http://%s\n", px.S3Addr())
	if ui != "" {
		fmt.Fprintf(&b, "export ALLUVIUM_UI=%s\n", ui)
	}
	if cfg.Security.Token != "" {
		fmt.Fprintf(&b, "export ALLUVIUM_TOKEN=%s\n", cfg.Security.Token)
	}
	path := filepath.Join(cfg.Home, "env")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return path, nil
}
