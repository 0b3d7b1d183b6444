package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/alluvium/alluvium/fsmaster"
	"github.com/alluvium/alluvium/internal/config"
	"github.com/alluvium/alluvium/internal/raftgroup"
	"github.com/alluvium/alluvium/sdk"
)

// fsJournalFlags are the FS master's journal flags (fsmaster, format):
// the journal type and, for an embedded journal, this master's place in
// its raft group.
type fsJournalFlags struct {
	journalType, nodeID, peers string
	join                       bool
}

func (f *fsJournalFlags) add(c *cobra.Command, group bool) {
	c.Flags().StringVar(&f.journalType, "journal-type", "", "local (one master, the default) or embedded (a raft group of masters) (fsmaster.journal.type)")
	if !group {
		return
	}
	c.Flags().StringVar(&f.nodeID, "node-id", "", "embedded journal: this master's raft id (fsmaster.raft.node-id; default host:raft-port)")
	c.Flags().StringVar(&f.peers, "peers", "", "embedded journal: the group, comma-separated id=host:raftport|host:rpcport (fsmaster.raft.peers)")
	c.Flags().BoolVar(&f.join, "join", false, "embedded journal: with no raft state yet, wait to be added to a running group ('fsadmin journal quorum add') instead of bootstrapping one (fsmaster.raft.join)")
}

// apply sets the flags given on cfg and checks them.
func (f *fsJournalFlags) apply(cmd *cobra.Command, cfg *config.Config) error {
	fl := cmd.Flags()
	if fl.Changed("journal-type") {
		switch f.journalType {
		case config.JournalLocal, config.JournalEmbedded:
			cfg.FSMaster.Journal.Type = f.journalType
		default:
			return usagef("--journal-type %q: want %s or %s", f.journalType, config.JournalLocal, config.JournalEmbedded)
		}
	}
	if fl.Changed("node-id") {
		cfg.FSMaster.Raft.NodeID = f.nodeID
	}
	if fl.Changed("peers") {
		cfg.FSMaster.Raft.Peers = nil
		for _, p := range strings.Split(f.peers, ",") {
			if p = strings.TrimSpace(p); p != "" {
				cfg.FSMaster.Raft.Peers = append(cfg.FSMaster.Raft.Peers, p)
			}
		}
	}
	if fl.Changed("join") {
		cfg.FSMaster.Raft.Join = f.join
	}
	if _, err := raftgroup.ParsePeers("fsmaster.raft.peers", cfg.FSMaster.Raft.Peers); err != nil {
		return usageError{err}
	}
	return nil
}

func newFSAdminJournalCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "journal",
		Short: "The FS masters' journal: its raft group (quorum) and its type (convert)",
	}
	c.AddCommand(newFSAdminQuorumCmd(g), newFSAdminConvertCmd(g))
	return c
}

func newFSAdminQuorumCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "quorum",
		Short: "Show and change the group of FS masters of an embedded journal: info, add, remove",
		Long: `With fsmaster.journal.type: embedded the FS masters form a raft group: one leads
and journals every change to a majority before answering; the others are
standbys that hold the namespace and take over within seconds. A group of N
survives the loss of (N-1)/2; keep 3 or 5 voters.

A new master is started with --join (it waits, empty) and added with 'add': it
receives the state from the leader and votes once it has caught up. 'remove'
takes a member out — a dead one, so a replacement can be added. Changes need
the cluster token.`,
		Example: `  alluvium fsadmin journal quorum info
  alluvium fsmaster --home /data/m4 --journal-type embedded --node-id m4 --join   # on host4
  alluvium fsadmin journal quorum add m4 host4:19997 host4:19998
  alluvium fsadmin journal quorum remove m2`,
	}
	var output string
	info := &cobra.Command{
		Use:   "info",
		Short: "One line per member: id, raft and rpc addresses, role (LEADER, FOLLOWER, NONVOTER), applied index, lag",
		Example: `  alluvium fsadmin journal quorum info --master m1:19998,m2:19998,m3:19998
  alluvium fsadmin journal quorum info --output json`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			cl, err := metaClient(cmd, g)
			if err != nil {
				return err
			}
			defer cl.Close()
			grp, err := cl.MasterGroup(cmd.Context())
			if err != nil {
				return cliErr(err)
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), grp)
			}
			return printQuorum(cmd, grp)
		},
	}
	info.Flags().StringVar(&output, "output", "", "output format: json (default: text)")
	add := &cobra.Command{
		Use:   "add ID RAFT-ADDR RPC-ADDR",
		Short: "Add an FS master started with --join to the group (a non-voter until it has caught up)",
		Example: `  alluvium fsmaster --home /data/m4 --journal-type embedded --node-id m4 --join   # on host4
  alluvium fsadmin journal quorum add m4 host4:19997 host4:19998`,
		Args: exactArgs(3, "ID", "RAFT-ADDR", "RPC-ADDR"),
		RunE: func(cmd *cobra.Command, args []string) error {
			for i, what := range []string{"RAFT-ADDR", "RPC-ADDR"} {
				if !sdk.IsHostPort(args[i+1]) {
					return usagef("%s %q: want host:port", what, args[i+1])
				}
			}
			cl, err := metaClient(cmd, g)
			if err != nil {
				return err
			}
			defer cl.Close()
			if err := cl.AddMaster(cmd.Context(), args[0], args[1], args[2]); err != nil {
				return cliErr(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Added FS master %s (raft %s, rpc %s) to the group\n", args[0], args[1], args[2])
			return nil
		},
	}
	remove := &cobra.Command{
		Use:     "remove ID",
		Short:   "Take a member (a dead one, say) out of the group",
		Example: `  alluvium fsadmin journal quorum remove m2`,
		Args:    exactArgs(1, "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := metaClient(cmd, g)
			if err != nil {
				return err
			}
			defer cl.Close()
			if err := cl.RemoveMaster(cmd.Context(), args[0]); err != nil {
				return cliErr(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Removed FS master %s from the group\n", args[0])
			return nil
		},
	}
	c.AddCommand(info, add, remove)
	return c
}

// printQuorum prints the group, one line per member (DESIGN.md's
// contract): id, raft address, rpc address, role, applied index, then how
// far behind the leader it is. A member that did not answer is
// UNREACHABLE with "-" for its numbers; why goes to stderr.
func printQuorum(cmd *cobra.Command, grp *sdk.MasterGroup) error {
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	for _, m := range grp.Masters {
		raftAddr := m.RaftAddress
		if raftAddr == "" {
			raftAddr = "-"
		}
		applied, lag := fmt.Sprint(m.AppliedIndex), fmt.Sprint(m.Lag)
		if m.Info == nil {
			applied, lag = "-", "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, raftAddr, m.RPCAddress, m.Role, applied, lag)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, m := range grp.Masters {
		if m.Error != "" {
			fmt.Fprintf(cmd.ErrOrStderr(), "%s: %s\n", m.ID, m.Error)
		}
	}
	return nil
}

func newFSAdminConvertCmd(g *globals) *cobra.Command {
	var to string
	var flags fsJournalFlags
	c := &cobra.Command{
		Use:   "convert --to embedded|local",
		Short: "Turn a stopped master's journal into the other type, keeping the namespace",
		Long: `Convert the journal in fsmaster.journal.dir (default <home>/journal) of a
stopped FS master to the other type. Nothing is deleted: what belonged to the
old type is moved into <journal>/converted-<type>-<time>/.

--to embedded: the local checkpoint and segments become the first raft
snapshot of a group of one, this master (--node-id, fsmaster.raft.node-id).
Start it with fsmaster.journal.type: embedded, start the other masters empty
with --join, and add them with 'alluvium fsadmin journal quorum add'. The
secondary is no longer needed.

--to local: the newest raft snapshot becomes a local checkpoint. A stopped
group cannot tell which entries after its last snapshot were committed, so
first run 'alluvium fsadmin checkpoint' against the running group, stop the
masters, and convert the journal of the master that led. Then start it with
fsmaster.journal.type: local (and a secondary beside it).`,
		Example: `  alluvium fsadmin journal convert --to embedded --home /var/lib/alluvium --node-id m1
  alluvium fsadmin journal convert --to local --config configs/ha/master.yaml`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if to != config.JournalLocal && to != config.JournalEmbedded {
				return usagef("--to %q: want %s or %s", to, config.JournalEmbedded, config.JournalLocal)
			}
			cfg, err := g.load(cmd)
			if err != nil {
				return err
			}
			if err := flags.apply(cmd, cfg); err != nil {
				return err
			}
			log, err := logger(cfg, "convert")
			if err != nil {
				return usageError{err}
			}
			msg, err := fsmaster.ConvertJournal(cmd.Context(), cfg, to, log)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), msg)
			return nil
		},
	}
	c.Flags().StringVar(&to, "to", "", "the journal type to convert to: embedded or local")
	flags.add(c, true)
	_ = c.Flags().MarkHidden("journal-type")
	return c
}
