package main

import "github.com/spf13/cobra"

// newFSCmd is the `alluvium fs` group. Metadata commands live in
// fs_meta.go, data commands (cat, put, get, ...) in fs_data.go.
func newFSCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "fs",
		Short: "Work with files: ls, stat, cat, put, get, mkdir, rm, mv, mount, free, ...",
		Long: `File-system commands against the FS master (and the block workers for data).

The master is found from --master, ALLUVIUM_MASTER, the config file, or
localhost:19998. Paths are absolute Alluvium paths; a path that exists in the
UFS but not yet in Alluvium is loaded on first ls or stat.`,
	}
	c.AddCommand(fsMetaCommands(g)...)
	c.AddCommand(fsDataCommands(g)...)
	c.AddCommand(newDistributedLoadCmd(g))
	c.AddCommand(jobPlanFSAliases(g)...)
	return c
}
