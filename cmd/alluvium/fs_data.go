package main

import "github.com/spf13/cobra"

// fsDataCommands are the data commands: cat, put, get, free, location,
// copyFromLocal, copyToLocal. (Owned by the block worker work.)
func fsDataCommands(g *globals) []*cobra.Command { return nil }
