// Command nightly runs a pipeline on a cron schedule from a Go program:
// every night (by default at 02:00) it warms the hot set into the cache and,
// at the same time, persists the day's output; once the output is
// persisted it copies it to a dated snapshot directory. Each run prints a
// summary table; a failed run does not stop the schedule.
//
// This is the SDK's way to give a pipeline a policy's schedule. (The job
// master's own policies — `alluvium policy add NAME --cron SPEC load /hot` —
// schedule single jobs and live in its Raft state; a program like this one
// schedules whole pipelines and must itself be kept running, e.g. by
// systemd.)
//
//	source /tmp/alluvium/env
//	go run ./sdk/examples/nightly -hot /hot -out /out -snapshots /snapshots
//	go run ./sdk/examples/nightly -cron '*/20 * * * * *' -runs 3   # every 20 seconds, 3 times
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path"
	"syscall"
	"time"

	"github.com/alluvium/alluvium/sdk"
)

func main() {
	spec := flag.String("cron", "0 2 * * *", "when to run: a cron spec, optionally with a leading seconds field, or @daily, @every 6h …")
	hot := flag.String("hot", "/hot", "tree to keep cached")
	out := flag.String("out", "/out", "tree to persist and snapshot")
	snapshots := flag.String("snapshots", "/snapshots", "where the dated copies of -out go")
	runs := flag.Int("runs", 0, "stop after this many firings; 0: run until interrupted")
	flag.Parse()
	if err := sdk.ParseCron(*spec); err != nil || *runs < 0 {
		fmt.Fprintf(os.Stderr, "nightly: -cron %q / -runs %d: %v\n", *spec, *runs, err)
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := sdk.Dial(ctx, sdk.FromEnv())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer c.Close()

	p := sdk.NewPipeline("nightly",
		sdk.DefaultRetry(sdk.RetryPolicy{Attempts: 3, Backoff: 30 * time.Second, MaxBackoff: 5 * time.Minute}),
		sdk.Parallelism(2),
		sdk.OnEvent(sdk.LogEvents(os.Stderr)))
	// No dependency between these two: they run at the same time.
	p.Job("warm-hot", sdk.JobSpec{Plan: "load", Config: sdk.LoadConfig{Path: *hot}})
	p.Job("persist-out", sdk.JobSpec{Plan: "persist", Config: map[string]any{"path": *out}})
	// The snapshot's name depends on the day the run happens, so its spec
	// is computed when the step starts.
	p.JobFunc("snapshot", func(ctx context.Context) (sdk.JobSpec, error) {
		dst := path.Join(*snapshots, time.Now().Format("2006-01-02T15-04-05"))
		return sdk.JobSpec{Plan: "copy", Config: map[string]any{"src": *out, "dst": dst}}, nil
	}, sdk.After("persist-out"), sdk.StepTimeout(2*time.Hour))

	next, _ := sdk.NextRun(*spec, time.Now())
	fmt.Fprintf(os.Stderr, "nightly: %q, first run at %s\n", *spec, next.Format(time.RFC3339))
	failed := 0
	err = sdk.Schedule(ctx, c, *spec, p,
		sdk.ScheduleLimit(*runs),
		sdk.OnScheduledRun(func(r sdk.ScheduledRun) {
			if r.Skipped {
				fmt.Fprintf(os.Stderr, "nightly: run due %s skipped: the previous run is still going\n", r.Due.Format(time.RFC3339))
				return
			}
			fmt.Printf("run due %s:\n%s", r.Due.Format(time.RFC3339), r.Report)
			if r.Err != nil {
				failed++
				fmt.Fprintln(os.Stderr, r.Err)
			}
		}))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if failed > 0 {
		os.Exit(1)
	}
}
