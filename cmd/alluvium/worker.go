package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/alluvium/alluvium/blockworker"
	"github.com/alluvium/alluvium/internal/config"
	"github.com/alluvium/alluvium/plans/plugin"
)

func newWorkerCmd(g *globals) *cobra.Command {
	var role string
	var index int
	c := &cobra.Command{
		Use:   "worker",
		Short: "Run a worker: the block worker (tiered cache) and the job worker beside it",
		Long: `Run a worker process. The block worker keeps blocks in its tiers (worker.tiers:
MEM, SSD, HDD directories with quotas; by default MEM under /dev/shm and HDD
under <home>/worker), serves reads and writes, reads the UFS on a miss, and
reports its blocks to the FS master. The job worker runs job tasks beside it.

--role all (default) runs both, block only the block worker, job only the job
worker. With --port-base P the worker's ports are P+20+4i.. for --index i, so
several workers of one cluster can share a host.`,
		Example: `  # the first worker of a cluster whose FS master listens on port 19998
  alluvium worker --config worker.yaml

  # a second worker on the same host, its own home and ports
  alluvium worker --home /tmp/w1 --port-base 19998 --index 1 --master localhost:19998`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load(cmd)
			if err != nil {
				return err
			}
			flags := cmd.Flags()
			if flags.Changed("role") {
				switch role {
				case "all", "block", "job":
					cfg.Worker.Role = role
				default:
					return usagef("--role %q: want all, block or job", role)
				}
			}
			if flags.Changed("index") {
				if !flags.Changed("port-base") {
					return usagef("--index needs --port-base")
				}
				if index < 0 || index >= config.MaxLocalWorkers {
					return usagef("--index %d: want 0..%d", index, config.MaxLocalWorkers-1)
				}
				rpcPort, httpPort, jobPort := config.WorkerPorts(g.portBase, index)
				cfg.Worker.RPCPort, cfg.Worker.HTTPPort, cfg.JobWorker.RPCPort = rpcPort, httpPort, jobPort
				if !g.tiersConfigured(cmd) {
					cfg.Worker.Tiers = config.DefaultTiers(cfg.Worker.Dir, rpcPort)
				}
			}
			if err := serverAuth(cfg, false); err != nil {
				return err
			}
			log, err := serverProcess(cfg, "worker")
			if err != nil {
				return usageError{err}
			}
			defer log.Sync() //nolint:errcheck
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			// Last, once the roles have stopped: the plan plugins they
			// started go too, sockets and all.
			defer plugin.Shutdown()
			return runWorker(ctx, cfg, log)
		},
	}
	c.Flags().StringVar(&role, "role", "all", "which roles to run: all, block or job (worker.role)")
	c.Flags().IntVar(&index, "index", 0, "this worker's index under --port-base: ports P+20+4i, P+21+4i, P+22+4i")
	return c
}

// tiersConfigured reports whether worker.tiers came from the config file
// or the environment (else the defaults follow the worker's ports).
func (g *globals) tiersConfigured(cmd *cobra.Command) bool {
	if os.Getenv("ALLUVIUM_WORKER_TIERS") != "" {
		return true
	}
	if g.configFile == "" {
		return false
	}
	l := config.NewLoader()
	if err := l.ReadFile(g.configFile); err != nil {
		return false
	}
	return l.Viper().InConfig("worker.tiers")
}

// runWorker runs the configured roles until ctx ends, then stops them.
func runWorker(ctx context.Context, cfg *config.Config, log *zap.Logger) error {
	return runWorkerRoles(ctx, cfg, log, nil)
}

// runWorkerRoles starts the configured roles, calls ready (or prints the
// ready line when ready is nil), and stops them when ctx ends. `alluvium
// local` runs one per worker.
func runWorkerRoles(ctx context.Context, cfg *config.Config, log *zap.Logger, ready func()) error {
	var bw *blockworker.Worker
	col := colocated{}
	if cfg.Worker.Role == "all" || cfg.Worker.Role == "block" {
		var err error
		bw, err = blockworker.New(cfg, log.Named("block"))
		if err != nil {
			return err
		}
		if err := bw.Start(ctx); err != nil {
			_ = bw.Stop(context.Background())
			return err
		}
		_, port, _ := net.SplitHostPort(bw.RPCAddr())
		col = colocated{BlockWorkerID: bw.ID(), BlockWorkerAddress: net.JoinHostPort(cfg.Worker.Host, port)}
	}
	stopJob := func(context.Context) error { return nil }
	if cfg.Worker.Role == "all" || cfg.Worker.Role == "job" {
		s, err := startJobWorker(ctx, cfg, log.Named("job"), col)
		if err != nil {
			if bw != nil {
				_ = bw.Stop(context.Background())
			}
			return err
		}
		stopJob = s
	}
	if ready != nil {
		ready()
	} else if bw != nil {
		fmt.Printf("worker ready: role %s, block worker id %d, rpc %s, http %s, master %s\n",
			cfg.Worker.Role, bw.ID(), bw.RPCAddr(), bw.HTTPAddr(), cfg.Worker.Master)
	} else {
		fmt.Printf("worker ready: role %s, job worker rpc port %s\n", cfg.Worker.Role, strconv.Itoa(cfg.JobWorker.RPCPort))
	}
	<-ctx.Done()
	log.Info("stopping worker")
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err := stopJob(sctx)
	if bw != nil {
		if berr := bw.Stop(sctx); err == nil {
			err = berr
		}
	}
	return err
}
