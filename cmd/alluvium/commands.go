package main

import "github.com/spf13/cobra"

// addCommands registers every command. Each role's file provides its
// constructor; add one line here per top-level command.
func addCommands(root *cobra.Command, g *globals) {
	root.AddCommand(
	// newFSMasterCmd(g), newSecondaryCmd(g), newFormatCmd(g), newFSAdminCmd(g),
	// newWorkerCmd(g), newFSCmd(g), newLocalCmd(g),
	// newJobMasterCmd(g), newJobCmd(g), newPolicyCmd(g), newProxyCmd(g),
	)
}
