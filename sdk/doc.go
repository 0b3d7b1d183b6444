// Package sdk is Alluvium's public Go client: file-system calls against the
// FS master and the block workers, job calls against the job master, and
// pipelines that chain jobs.
//
//	c, err := sdk.Dial(ctx, sdk.WithMaster("localhost:19998"))
//	if err != nil { ... }
//	defer c.Close()
//	info, err := c.Stat(ctx, "/data/file")
//	if errors.Is(err, sdk.ErrNotFound) { ... }
//
// Jobs: c.Jobs() submits jobs (with a request id, so retries never make a
// second job), gets, lists, cancels, watches and waits for them with a
// progress callback; Run submits and waits in one call to the job master;
// a job that ends FAILED or CANCELED is a *JobError.
//
// Pipelines: a Pipeline is a DAG of steps, each a job (plan + config) or a
// Go function, with dependencies (After), per-step retries with exponential
// backoff (RetryPolicy), independent steps run concurrently (Parallelism),
// and context cancellation that cancels the running jobs on the job master.
// Run returns a Report (one StepResult per step; printing it gives a summary
// table). Schedule runs a pipeline on a cron spec from a Go program:
//
//	p := sdk.NewPipeline("refresh", sdk.DefaultRetry(sdk.RetryPolicy{Attempts: 3}))
//	p.Job("warm", sdk.JobSpec{Plan: "load", Config: sdk.LoadConfig{Path: "/raw"}})
//	p.Job("copy", sdk.JobSpec{Plan: "copy", Config: map[string]any{"src": "/raw", "dst": "/out"}}, sdk.After("warm"))
//	p.Job("persist", sdk.JobSpec{Plan: "persist", Config: map[string]any{"path": "/out"}}, sdk.After("copy"))
//	report, err := p.Run(ctx, c)                      // once, or
//	err = sdk.Schedule(ctx, c, "0 2 * * *", p)         // every night at 02:00
//
// sdk/examples holds whole programs (warm-up → copy → persist; a nightly
// pipeline on a schedule).
//
// The SDK talks to the servers only through the api package; it imports no
// server internals (imports_test.go checks the import graph), so it can be
// vendored into any program.
package sdk
