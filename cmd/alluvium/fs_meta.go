package main

import "github.com/spf13/cobra"

// fsMetaCommands are the namespace commands: ls, stat, mkdir, rm, mv, mount,
// unmount. (Owned by the FS master work.)
func fsMetaCommands(g *globals) []*cobra.Command { return nil }
