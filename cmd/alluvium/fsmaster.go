package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/alluvium/alluvium/fsmaster"
)

func newFSMasterCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "fsmaster",
		Short: "Run the FS master: namespace, mounts, block locations, journal",
		Long: `Run the leading FS master. It keeps the namespace (inodes, mounts, worker ids)
in memory and journals every change to bbolt segments under
fsmaster.journal.dir (default <home>/journal) before answering; on start it
loads the newest checkpoint and replays the journal after it.

A fresh journal dir is initialised on first start with the root mount from
--ufs / fsmaster.ufs (default file://<home>/ufs); 'alluvium format' does the
same explicitly. Stop it with SIGTERM or Ctrl-C.`,
		Example: `  # a master on the default ports (rpc 19998, http 19999) over a local directory
  alluvium fsmaster --home /var/lib/alluvium --ufs file:///data

  # ports from a base: rpc 23000, http 23001
  alluvium fsmaster --home /tmp/a --port-base 23000

  # from a config file (keys: configs/README.md)
  alluvium fsmaster --config configs/fsmaster.yaml`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load(cmd)
			if err != nil {
				return err
			}
			log, err := logger(cfg, "fsmaster")
			if err != nil {
				return usageError{err}
			}
			defer log.Sync() //nolint:errcheck
			fsmaster.Version = version
			if err := serverAuth(cfg, true); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			m, err := fsmaster.New(cfg, log)
			if err != nil {
				return err
			}
			if err := m.Start(ctx); err != nil {
				return err
			}
			closeConsole, err := mountConsole(ctx, cfg, m.HTTPServer(), "FS master", dialable(m.RPCAddr()),
				firstNonEmpty(cfg.FSMaster.JobMaster, cfg.Client.JobMaster), log)
			if err != nil {
				_ = m.Stop(context.Background())
				return err
			}
			defer closeConsole()
			info := m.Info()
			fmt.Printf("fsmaster ready: rpc %s, http %s, journal %s at sequence %d, root %s%s\n",
				m.RPCAddr(), m.HTTPAddr(), cfg.FSMaster.Journal.Dir, info.JournalSequence, info.UfsRoot, uiNote(cfg, m.HTTPAddr()))
			var failed error
			select {
			case <-ctx.Done():
			case <-m.Failed():
				failed = m.Err() // memory is ahead of the disk: stop, restart replays
			}
			log.Info("stopping FS master")
			sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			if err := m.Stop(sctx); failed == nil {
				return err
			}
			return failed
		},
	}
}
