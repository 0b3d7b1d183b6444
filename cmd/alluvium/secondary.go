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
)

func newSecondaryCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "secondary",
		Short: "Run the secondary master: replays closed journal segments and writes checkpoints",
		Long: `Run the secondary checkpointer beside the FS master (same host, same
fsmaster.journal.dir). It replays the closed journal segments into its own
copy of the namespace and writes <journal>/checkpoints/<seq>.bolt every
fsmaster.journal.checkpoint-period-entries entries, or when 'alluvium fsadmin
checkpoint' asks. The master loads the newest checkpoint on start and deletes
the segments it covers. It never serves clients; one per journal.`,
		Example: `  alluvium secondary --home /var/lib/alluvium
  alluvium secondary --config configs/fsmaster.yaml`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load(cmd)
			if err != nil {
				return err
			}
			log, err := serverProcess(cfg, "secondary")
			if err != nil {
				return usageError{err}
			}
			defer log.Sync() //nolint:errcheck
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			s, err := fsmaster.NewSecondary(cfg, log)
			if err != nil {
				return err
			}
			if err := s.Start(ctx); err != nil {
				return err
			}
			fmt.Printf("secondary ready: journal %s at sequence %d, last checkpoint %d, period %d entries\n",
				cfg.FSMaster.Journal.Dir, s.Sequence(), s.LastCheckpoint(), cfg.FSMaster.Journal.CheckpointPeriodEntries)
			<-ctx.Done()
			log.Info("stopping secondary")
			sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			return s.Stop(sctx)
		},
	}
}
