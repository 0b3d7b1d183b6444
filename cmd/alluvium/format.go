package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/alluvium/alluvium/fsmaster"
	"github.com/alluvium/alluvium/internal/config"
)

func newFormatCmd(g *globals) *cobra.Command {
	var force bool
	var flags fsJournalFlags
	c := &cobra.Command{
		Use:   "format",
		Short: "Initialise the FS master's journal and create the root mount",
		Long: `Initialise an empty journal in fsmaster.journal.dir (default <home>/journal)
and record the root mount, / → --ufs (fsmaster.ufs, default file://<home>/ufs).
A journal dir that is not empty is refused unless --force is given; --force
wipes it (the namespace is lost, the UFS is untouched). A journal in use by a
running master is never wiped.`,
		Example: `  alluvium format --home /var/lib/alluvium --ufs file:///data
  alluvium format --config configs/fsmaster.yaml --force`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load(cmd)
			if err != nil {
				return err
			}
			if err := flags.apply(cmd, cfg); err != nil {
				return err
			}
			log, err := logger(cfg, "format")
			if err != nil {
				return usageError{err}
			}
			if err := serverAuth(cfg, true); err != nil {
				return err
			}
			if err := fsmaster.Format(cmd.Context(), cfg, force, log); err != nil {
				return err
			}
			if cfg.FSMaster.Journal.Type == config.JournalEmbedded {
				fmt.Printf("formatted embedded journal %s (empty; the group's first leader creates the root mount / -> its fsmaster.ufs)\n", cfg.FSMaster.Journal.Dir)
				return nil
			}
			fmt.Printf("formatted journal %s; root mount / -> %s\n", cfg.FSMaster.Journal.Dir, cfg.FSMaster.UFS)
			return nil
		},
	}
	c.Flags().BoolVar(&force, "force", false, "wipe a journal dir that is not empty")
	flags.add(c, false)
	return c
}
