package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/alluvium/alluvium/sdk"
)

// Connect with the addresses and token `alluvium local` writes to
// <home>/env, then look at a file. (Needs a running cluster.)
func ExampleDial() {
	ctx := context.Background()
	c, err := sdk.Dial(ctx, sdk.FromEnv(), sdk.WithTimeout(10*time.Second), sdk.WithRetries(5))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	info, err := c.Stat(ctx, "/data/file.csv")
	switch {
	case errors.Is(err, sdk.ErrNotFound):
		fmt.Println("no such file")
	case err != nil:
		log.Fatal(err)
	default:
		fmt.Println(info.GetPath(), info.GetLength(), "bytes,", info.GetCachedPercent(), "% cached")
	}
}

// Submit a load job and wait for it, printing its progress. (Needs a
// running cluster.)
func ExampleJobs_Wait() {
	ctx := context.Background()
	c, err := sdk.Dial(ctx, sdk.FromEnv())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	jobs, err := c.Jobs()
	if err != nil {
		log.Fatal(err)
	}
	id, err := jobs.Submit(ctx, "load", sdk.LoadConfig{Path: "/hot", Replication: 2})
	if err != nil {
		log.Fatal(err)
	}
	final, err := jobs.Wait(ctx, id, func(j *sdk.JobInfo) {
		fmt.Printf("job %d %s: %d/%d tasks, %d/%d bytes\n", j.GetId(), j.GetStatus(), j.GetTasksDone(), j.GetTasksTotal(), j.GetBytesDone(), j.GetBytesTotal())
	})
	if errors.Is(err, sdk.ErrJobFailed) {
		for _, f := range final.GetFailed() {
			fmt.Println("failed:", f.GetPath(), f.GetError())
		}
	}
	if err != nil {
		log.Fatal(err)
	}
}

// Follow a job's state changes, and cancel it if it is still running
// after a minute. (Needs a running cluster.)
func ExampleJobs_Watch() {
	ctx := context.Background()
	c, err := sdk.Dial(ctx, sdk.FromEnv())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	jobs, _ := c.Jobs()
	id, err := jobs.Submit(ctx, "load", sdk.LoadConfig{Path: "/big", Bandwidth: 100 << 20})
	if err != nil {
		log.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for j, err := range jobs.Watch(wctx, id) {
		if errors.Is(err, sdk.ErrDeadlineExceeded) {
			if err := jobs.Cancel(ctx, id); err != nil {
				log.Fatal(err)
			}
			fmt.Println("canceled job", id)
			return
		}
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(j.GetStatus(), j.GetTasksDone(), "/", j.GetTasksTotal())
	}
}

// Warm a tree up, copy it, persist the copy: three jobs, each after the one
// before, each retried up to twice. Ctrl-C (a cancelled context) cancels the
// running job. (Needs a running cluster; see sdk/examples for whole
// programs.)
func ExamplePipeline() {
	ctx := context.Background()
	c, err := sdk.Dial(ctx, sdk.FromEnv())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	p := sdk.NewPipeline("refresh",
		sdk.DefaultRetry(sdk.RetryPolicy{Attempts: 3, Backoff: 5 * time.Second}),
		sdk.OnEvent(sdk.LogEvents(os.Stderr)))
	p.Job("warm-up", sdk.JobSpec{Plan: "load", Config: sdk.LoadConfig{Path: "/raw"}})
	p.Job("copy", sdk.JobSpec{Plan: "copy", Config: map[string]any{"src": "/raw", "dst": "/curated"}}, sdk.After("warm-up"))
	p.Job("persist", sdk.JobSpec{Plan: "persist", Config: map[string]any{"path": "/curated"}}, sdk.After("copy"))

	report, err := p.Run(ctx, c)
	fmt.Print(report) // the summary table
	if err != nil {
		log.Fatal(err)
	}
}

// Steps can be Go functions too; they run concurrently when independent, a
// failure skips what depends on it, and the report says why.
func ExamplePipeline_Run() {
	p := sdk.NewPipeline("example")
	p.Func("fetch", func(ctx context.Context) error { return nil })
	p.Func("parse", func(ctx context.Context) error { return errors.New("bad header") }, sdk.After("fetch"))
	p.Func("publish", func(ctx context.Context) error { return nil }, sdk.After("parse"))
	p.Func("notify", func(ctx context.Context) error { return nil }, sdk.After("fetch"))

	report, err := p.Run(context.Background(), nil) // no job steps: no client needed
	for _, s := range report.Steps {
		fmt.Println(s.Name, s.Status)
		if s.Reason != "" {
			fmt.Println("  because", s.Reason)
		}
	}
	fmt.Println(err)
	// Output:
	// fetch SUCCEEDED
	// parse FAILED
	// publish SKIPPED
	//   because dependency "parse" failed: bad header
	// notify SUCCEEDED
	// pipeline "example": step "parse" failed: bad header; 1 step skipped
}

// Mistakes in the graph are found before anything runs.
func ExamplePipeline_Validate() {
	noop := func(ctx context.Context) error { return nil }
	p := sdk.NewPipeline("nightly")
	p.Func("load", noop, sdk.After("persist"))
	p.Func("persist", noop, sdk.After("load"))
	fmt.Println(p.Validate())

	q := sdk.NewPipeline("typo").Func("load", noop).Func("copy", noop, sdk.After("laod"))
	err := q.Validate()
	fmt.Println(err, errors.Is(err, sdk.ErrInvalidPipeline))
	// Output:
	// pipeline "nightly": dependency cycle: "load" → "persist" → "load" (each waits for the next)
	// pipeline "typo": step "copy" depends on unknown step "laod" (steps: load, copy) true
}

// A step that fails is retried with exponential backoff: here twice, after
// 10ms then 20ms, and the third attempt succeeds.
func ExampleRetryPolicy() {
	tries := 0
	p := sdk.NewPipeline("flaky")
	p.Func("call", func(ctx context.Context) error {
		if tries++; tries < 3 {
			return fmt.Errorf("try %d: connection reset", tries)
		}
		return nil
	}, sdk.Retry(sdk.RetryPolicy{Attempts: 5, Backoff: 10 * time.Millisecond}))
	report, _ := p.Run(context.Background(), nil)
	s, _ := report.Step("call")
	fmt.Println(s.Status, "after", s.Attempts, "attempts")
	// Output:
	// SUCCEEDED after 3 attempts
}

// A later step can read what an earlier one did, e.g. to build its job's
// config from the earlier job's result.
func ExampleUpstream() {
	p := sdk.NewPipeline("chain")
	p.Func("first", func(ctx context.Context) error { return nil })
	p.Func("second", func(ctx context.Context) error {
		first, ok := sdk.Upstream(ctx, "first")
		fmt.Println("first:", ok, first.Status, first.Attempts)
		return nil
	}, sdk.After("first"))
	if _, err := p.Run(context.Background(), nil); err != nil {
		log.Fatal(err)
	}
	// Output:
	// first: true SUCCEEDED 1
}

// Run a pipeline every night at 02:00 until the program is stopped; each
// run's report is printed. This is how a Go program gives a pipeline a
// policy's schedule. (Needs a running cluster.)
func ExampleSchedule() {
	ctx := context.Background()
	c, err := sdk.Dial(ctx, sdk.FromEnv())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	p := sdk.NewPipeline("nightly", sdk.DefaultRetry(sdk.RetryPolicy{Attempts: 3, Backoff: time.Minute}))
	p.Job("warm", sdk.JobSpec{Plan: "load", Config: sdk.LoadConfig{Path: "/hot"}})
	p.Job("persist", sdk.JobSpec{Plan: "persist", Config: map[string]any{"path": "/out"}})

	err = sdk.Schedule(ctx, c, "0 2 * * *", p, sdk.OnScheduledRun(func(r sdk.ScheduledRun) {
		fmt.Printf("run due %s:\n%s", r.Due.Format(time.RFC3339), r.Report)
	}))
	if err != nil {
		log.Fatal(err) // a bad spec or pipeline
	}
}
