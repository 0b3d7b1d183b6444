package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/alluvium/alluvium/sdk"
)

// newJobRaftCmd groups the raft membership commands: the group grows with
// a node started with --join and heals by removing a dead member.
func newJobRaftCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "raft",
		Short: "Change the job masters' raft group: list-peers, add-peer, remove-peer",
		Long: `Inspect and change the job masters' raft group while it runs. A new member is
started with 'alluvium jobmaster --join' (it waits, empty) and then added with
add-peer; it receives the whole job state from the leader. remove-peer takes a
member out — typically one whose machine died, so that a replacement can be
added and the group is back to 3 (or 5) voters. Both need the cluster token.
Keep an odd number of voters; a group of N survives the loss of (N-1)/2.`,
		Example: `  alluvium job raft list-peers
  alluvium job raft add-peer jm4 host4:20003 host4:20001
  alluvium job raft remove-peer jm2`,
	}
	list := newJobLeaderCmd(g)
	list.Use, list.Short, list.Example = "list-peers", "List the raft group's members and which one leads (as 'job leader')", `  alluvium job raft list-peers --output json`
	c.AddCommand(list, &cobra.Command{
		Use:   "add-peer ID RAFT-ADDR RPC-ADDR",
		Short: "Add a job master started with --join to the raft group as a voter",
		Example: `  alluvium jobmaster --home /data/jm4 --node-id jm4 --join   # on host4
  alluvium job raft add-peer jm4 host4:20003 host4:20001`,
		Args: exactArgs(3, "ID", "RAFT-ADDR", "RPC-ADDR"),
		RunE: func(cmd *cobra.Command, args []string) error {
			for i, flag := range []string{"RAFT-ADDR", "RPC-ADDR"} {
				if !sdk.IsHostPort(args[i+1]) {
					return usagef("%s %q: want host:port", flag, args[i+1])
				}
			}
			cl, jobs, err := jobsClient(cmd, g)
			if err != nil {
				return err
			}
			defer cl.Close()
			if err := jobs.AddPeer(cmd.Context(), args[0], args[1], args[2]); err != nil {
				return jobErr(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Added %s (raft %s, rpc %s) to the raft group\n", args[0], args[1], args[2])
			return nil
		},
	}, &cobra.Command{
		Use:     "remove-peer ID",
		Short:   "Take a member (a dead one, say) out of the raft group",
		Example: `  alluvium job raft remove-peer jm2`,
		Args:    exactArgs(1, "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, jobs, err := jobsClient(cmd, g)
			if err != nil {
				return err
			}
			defer cl.Close()
			if err := jobs.RemovePeer(cmd.Context(), args[0]); err != nil {
				return jobErr(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Removed %s from the raft group\n", args[0])
			return nil
		},
	})
	return c
}
