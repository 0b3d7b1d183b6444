package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/alluvium/alluvium/internal/client"
	"github.com/alluvium/alluvium/internal/security"
	"github.com/alluvium/alluvium/internal/sim"
)

func newSimCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "sim",
		Short: "Simulate parts of a cluster against real masters (scale testing)",
	}
	c.AddCommand(newSimWorkersCmd(g))
	return c
}

func newSimWorkersCmd(g *globals) *cobra.Command {
	var (
		count, conns, capacity int
		every, duration        time.Duration
		output                 string
		spread                 bool
	)
	c := &cobra.Command{
		Use:   "workers",
		Short: "Run many simulated block+job workers against the FS master and job masters",
		Long: `Run --count simulated workers in this process, each a real gRPC client of the
masters: a block worker that registers with a full block report and heartbeats
at the interval the FS master gives (re-registering when asked), and a job
worker beside it that long-polls the job master and completes every task at
once — a load task by committing its blocks to the FS master as cached on
its target worker, as a real worker does after storing them.

It shows how the masters bear a big cluster: every --every it prints the
workers registered, heartbeats and their latency (p50, p99, max), how late
this process sent them after they were due and how many it skipped (its own
lag: a latency measured on a busy host holds it too), task-result reports,
and how often a master asked a registered worker to register again (a worker
it thought LOST). Each worker's heartbeats and long polls are due an interval
apart, however slow the replies. Stop it with Ctrl-C (or --duration).

The workers are named sim-<i> and listen nowhere; nothing should dial them.
Each has its own connection to each master unless --conns shares fewer.`,
		Example: `  # 10,000 workers against a local cluster, a line every 10 s
  alluvium sim workers --count 10000 --master localhost:19998 --job-master localhost:20001

  # one JSON object per line, for a script
  alluvium sim workers --count 500 --every 5s --output json`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load(cmd)
			if err != nil {
				return err
			}
			switch {
			case count < 1:
				return usagef("--count %d: want at least 1", count)
			case conns < 0:
				return usagef("--conns %d: want 0 (one per worker) or more", conns)
			case every <= 0:
				return usagef("--every %s: want a positive duration", every)
			case output != "" && output != "json":
				return usagef("--output %q: want json or nothing", output)
			}
			if err := serverAuth(cfg, false); err != nil {
				return err
			}
			dial, err := security.ClientOptions(cfg)
			if err != nil {
				return usageError{err}
			}
			sim.RaiseFileLimit()
			defer sim.TuneGC(count)()
			s, err := sim.New(sim.Config{
				Workers: count, FSMasters: client.SplitAddrs(cfg.Client.Master), JobMasters: client.SplitAddrs(cfg.Client.JobMaster),
				Dial: dial, Conns: conns, Capacity: capacity, SpreadPhases: spread,
			})
			if err != nil {
				return usageError{err}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if duration > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, duration)
				defer cancel()
			}
			s.Start()
			defer s.Stop()
			out := cmd.OutOrStdout()
			t := time.NewTicker(every)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return nil
				case <-t.C:
				}
				st := s.Stats()
				s.ResetStats()
				if output == "json" {
					b, _ := json.Marshal(st)
					fmt.Fprintln(out, string(b))
					continue
				}
				fmt.Fprintf(out, "workers %d registered %d/%d (job %d) heartbeats %d p50 %s p99 %s max %s errors %d | sent late p99 %s, skipped %d | reports %d p99 %s | tasks %d blocks %d | re-register asked: FS master %d, job master %d\n",
					st.Workers, st.BlockRegistered, st.Workers, st.JobRegistered, st.Heartbeats,
					ms(st.Heartbeat.P50), ms(st.Heartbeat.P99), ms(st.Heartbeat.Max), st.HeartbeatErrors+st.PollErrors+st.RegisterErrors,
					ms(st.HeartbeatLate.P99), st.Skipped,
					st.Reports, ms(st.Report.P99), st.TasksDone, st.BlocksHeld, st.RegisterAsks, st.ReregisterAsks)
			}
		},
	}
	f := c.Flags()
	f.IntVar(&count, "count", 100, "simulated workers (a block worker and a job worker each)")
	f.IntVar(&conns, "conns", 0, "connections to each master the workers share (0: one per worker)")
	f.IntVar(&capacity, "capacity", 8, "tasks each job worker takes at once")
	f.BoolVar(&spread, "spread-phases", false, "start each worker's heartbeats and polls at a random point of the interval after its registration (the spread real workers drift to) instead of a whole interval on (bunched as the masters answered the registrations)")
	f.DurationVar(&every, "every", 10*time.Second, "print the statistics this often")
	f.DurationVar(&duration, "duration", 0, "stop after this long (0: run until interrupted)")
	f.StringVarP(&output, "output", "o", "", "json: one JSON object per line")
	return c
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }
