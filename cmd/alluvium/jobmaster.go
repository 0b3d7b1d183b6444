package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/alluvium/alluvium/jobmaster"
	"github.com/alluvium/alluvium/plans/plugin"
)

func newJobMasterCmd(g *globals) *cobra.Command {
	var nodeID, peers string
	var join bool
	c := &cobra.Command{
		Use:   "jobmaster",
		Short: "Run a job master: the raft-replicated job service (plans jobs, hands tasks to job workers)",
		Long: `Run a job master. Job masters form a raft group (hashicorp/raft, bbolt log under
jobmaster.raft.dir, default <home>/jobmaster): the leader plans submitted jobs
into tasks, hands them to the job workers and tracks them; every change is in
the raft log, so a restarted or newly elected leader carries on with every
unfinished job.

Alone (jobmaster.raft.peers empty) a job master bootstraps itself. For a group
of 3 or 5, give every member the same peer list and its own id:

  jobmaster.raft.peers: [ "jm1=host1:20003|host1:20001",
                          "jm2=host2:20003|host2:20001",
                          "jm3=host3:20003|host3:20001" ]

Each entry is id=host:raft-port|host:rpc-port (the rpc address is where the
others forward clients' calls). Any member answers clients: followers forward
to the leader. The FS master is found at jobmaster.master (--master).

A running group grows or heals without a restart: start the new node with
--join (it waits, empty, instead of bootstrapping), then add it from anywhere
with 'alluvium job raft add-peer ID RAFT-ADDR RPC-ADDR'; take a dead member
out with 'alluvium job raft remove-peer ID'.`,
		Example: `  # one job master beside an FS master on the default ports
  alluvium jobmaster --home /var/lib/alluvium

  # ports from a base: rpc P+3, http P+4, raft P+5
  alluvium jobmaster --home /tmp/a --port-base 23000 --master localhost:23000

  # member jm2 of a three-node group
  alluvium jobmaster --home /data/jm2 --node-id jm2 \
    --peers 'jm1=h1:20003|h1:20001,jm2=h2:20003|h2:20001,jm3=h3:20003|h3:20001'

  # a fourth node, added to the running group afterwards
  alluvium jobmaster --home /data/jm4 --node-id jm4 --join
  alluvium job raft add-peer jm4 h4:20003 h4:20001`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load(cmd)
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("node-id") {
				cfg.JobMaster.Raft.NodeID = nodeID
			}
			if cmd.Flags().Changed("peers") {
				cfg.JobMaster.Raft.Peers = nil
				for _, p := range strings.Split(peers, ",") {
					if p = strings.TrimSpace(p); p != "" {
						cfg.JobMaster.Raft.Peers = append(cfg.JobMaster.Raft.Peers, p)
					}
				}
			}
			if cmd.Flags().Changed("join") {
				cfg.JobMaster.Raft.Join = join
			}
			if _, err := jobmaster.ParsePeers(cfg.JobMaster.Raft.Peers); err != nil {
				return usageError{err}
			}
			if err := serverAuth(cfg, false); err != nil {
				return err
			}
			log, err := serverProcess(cfg, "jobmaster")
			if err != nil {
				return usageError{err}
			}
			defer log.Sync() //nolint:errcheck
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			// Last, once the roles have stopped: the plan plugins they
			// started go too, sockets and all.
			defer plugin.Shutdown()
			setBuiltinVersion()
			m, err := jobmaster.New(cfg, log)
			if err != nil {
				return usageError{err}
			}
			if err := m.Start(ctx); err != nil {
				return err
			}
			group := "single node"
			if n := len(cfg.JobMaster.Raft.Peers); n > 0 {
				group = fmt.Sprintf("%d-node group", n)
			}
			if cfg.JobMaster.Raft.Join {
				group = "joining (or rejoining) a group"
			}
			closeConsole, err := mountConsole(ctx, cfg, m.HTTPServer(), "job master "+cfg.JobMaster.Raft.NodeID, cfg.JobMaster.Master, dialable(m.RPCAddr()), log)
			if err != nil {
				_ = m.Stop(context.Background())
				return err
			}
			defer closeConsole()
			fmt.Printf("jobmaster ready: id %s, rpc %s, http %s, raft port %d, %s, dir %s, FS master %s%s\n",
				cfg.JobMaster.Raft.NodeID, m.RPCAddr(), m.HTTPAddr(), cfg.JobMaster.Raft.Port, group, cfg.JobMaster.Raft.Dir, cfg.JobMaster.Master, uiNote(cfg, m.HTTPAddr()))
			<-ctx.Done()
			log.Info("stopping job master")
			sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			return m.Stop(sctx)
		},
	}
	c.Flags().StringVar(&nodeID, "node-id", "", "this member's raft id (jobmaster.raft.node-id; default host:raft-port)")
	c.Flags().StringVar(&peers, "peers", "", "comma-separated raft group, each id=host:raftport|host:rpcport (jobmaster.raft.peers)")
	c.Flags().BoolVar(&join, "join", false, "with no raft state yet, wait to be added to a running group (job raft add-peer) instead of bootstrapping one (jobmaster.raft.join)")
	return c
}
