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
	"github.com/alluvium/alluvium/internal/config"
)

func newFSMasterCmd(g *globals) *cobra.Command {
	var flags fsJournalFlags
	c := &cobra.Command{
		Use:   "fsmaster",
		Short: "Run an FS master: namespace, mounts, block locations, journal",
		Long: `Run an FS master. It keeps the namespace (inodes, mounts, worker ids) in
memory and journals every change before answering.

With a local journal (fsmaster.journal.type: local, the default) it is the
only master: changes go to bbolt segments under fsmaster.journal.dir (default
<home>/journal); on start it loads the newest checkpoint and replays the
journal after it. 'alluvium secondary' beside it writes the checkpoints.

With an embedded journal (--journal-type embedded) three or five masters form
a raft group: the leader answers clients and replicates every change to a
majority before answering; the others are standbys holding the namespace in
memory, and one of them leads within about two seconds of the leader's loss.
Clients, workers and job masters take the list of masters (--master
h1:19998,h2:19998,h3:19998) and follow the leader. Give every member the
same --peers (fsmaster.raft.peers) and its own --node-id:

  fsmaster.raft.peers: [ "m1=host1:19997|host1:19998",
                         "m2=host2:19997|host2:19998",
                         "m3=host3:19997|host3:19998" ]

A fresh journal dir is initialised on first start ('alluvium format' does it
explicitly); the first leader creates the root mount from --ufs /
fsmaster.ufs (default file://<home>/ufs). Stop it with SIGTERM or Ctrl-C.`,
		Example: `  # a master on the default ports (rpc 19998, http 19999) over a local directory
  alluvium fsmaster --home /var/lib/alluvium --ufs file:///data

  # ports from a base: rpc 23000, http 23001
  alluvium fsmaster --home /tmp/a --port-base 23000

  # from a config file (keys: configs/README.md)
  alluvium fsmaster --config configs/fsmaster.yaml

  # member m2 of a group of three (configs/ha/ has the files)
  alluvium fsmaster --home /data/m2 --journal-type embedded --node-id m2 \
    --peers 'm1=h1:19997|h1:19998,m2=h2:19997|h2:19998,m3=h3:19997|h3:19998'`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load(cmd)
			if err != nil {
				return err
			}
			if err := flags.apply(cmd, cfg); err != nil {
				return err
			}
			log, err := serverProcess(cfg, "fsmaster")
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
			if cfg.FSMaster.Journal.Type == config.JournalEmbedded {
				fmt.Printf("fsmaster ready: id %s, rpc %s, http %s, raft port %d, embedded journal %s at sequence %d, %d members%s\n",
					cfg.FSMaster.Raft.NodeID, m.RPCAddr(), m.HTTPAddr(), cfg.FSMaster.Raft.Port, cfg.FSMaster.Journal.Dir, info.JournalSequence,
					max(1, len(cfg.FSMaster.Raft.Peers)), uiNote(cfg, m.HTTPAddr()))
			} else {
				fmt.Printf("fsmaster ready: rpc %s, http %s, journal %s at sequence %d, root %s%s\n",
					m.RPCAddr(), m.HTTPAddr(), cfg.FSMaster.Journal.Dir, info.JournalSequence, info.UfsRoot, uiNote(cfg, m.HTTPAddr()))
			}
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
	flags.add(c, true)
	return c
}
