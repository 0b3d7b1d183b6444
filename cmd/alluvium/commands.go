package main

import "github.com/spf13/cobra"

// addCommands registers every top-level command; one line per command.
func addCommands(root *cobra.Command, g *globals) {
	root.AddCommand(newFSCmd(g))
	root.AddCommand(newLocalCmd(g))
	root.AddCommand(newWorkerCmd(g))
	root.AddCommand(newJobMasterCmd(g))
	root.AddCommand(newJobCmd(g))
	root.AddCommand(newFSMasterCmd(g))
	root.AddCommand(newSecondaryCmd(g))
	root.AddCommand(newFormatCmd(g))
	root.AddCommand(newFSAdminCmd(g))
	root.AddCommand(newPolicyCmd(g))
	root.AddCommand(newPipelineCmd(g))
	root.AddCommand(newProxyCmd(g))
	root.AddCommand(newSimCmd(g))
}
