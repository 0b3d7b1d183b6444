package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"
	"google.golang.org/grpc/codes"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/humanize"
	"github.com/alluvium/alluvium/internal/jobview"
	"github.com/alluvium/alluvium/plans/spec"
	"github.com/alluvium/alluvium/sdk"
)

func newJobCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "job",
		Short: "Submit and follow jobs: load, persist, replicate, move, copy, sync",
		Long: `Job commands against the job master. Any job master of the group will do (a
follower forwards to the leader); they are found from --job-master,
ALLUVIUM_JOB_MASTER, the config file (client.job-master) or localhost:20001.

A job is split into tasks that run on the job workers beside the block
workers; 'job stat' shows its progress, 'job wait' follows it to the end.`,
		Example: `  alluvium job submit load /data --replication 2 --wait
  alluvium job ls --status RUNNING
  alluvium job stat 7 -v
  alluvium job cancel 7`,
	}
	c.AddCommand(newJobSubmitCmd(g), newJobLsCmd(g), newJobStatCmd(g), newJobCancelCmd(g),
		newJobWaitCmd(g), newJobLeaderCmd(g), newJobWorkersCmd(g), newJobPlansCmd(g), newJobRaftCmd(g))
	return c
}

// jobsClient connects to the job masters named by the flags, env and config.
func jobsClient(cmd *cobra.Command, g *globals) (*sdk.Client, *sdk.Jobs, error) {
	cfg, err := g.load(cmd)
	if err != nil {
		return nil, nil, err
	}
	c, err := dialCluster(cmd.Context(), cfg)
	if err != nil {
		return nil, nil, err
	}
	j, err := c.Jobs()
	if err != nil {
		c.Close()
		return nil, nil, usageError{err}
	}
	return c, j, nil
}

// jobErr keeps a server error on one line; bad input (InvalidArgument) is
// a usage error (exit 2).
func jobErr(err error) error {
	var se *sdk.Error
	if errors.As(err, &se) {
		switch se.Code {
		case codes.InvalidArgument:
			return usageError{errors.New(se.Message)}
		case codes.Unavailable:
			return fmt.Errorf("%s: %s (are the job masters and the FS master running? --job-master / ALLUVIUM_JOB_MASTER)", se.Op, se.Message)
		case codes.NotFound, codes.FailedPrecondition, codes.ResourceExhausted:
			return errors.New(se.Message)
		}
	}
	return err
}

func checkJobOutput(o string) error {
	if o != "" && o != "json" {
		return usagef("--output %q: want json (or nothing for text)", o)
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func parseJobID(s string) (int64, error) {
	id, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || id <= 0 {
		return 0, usagef("job id %q: want a positive number (see 'alluvium job ls')", s)
	}
	return id, nil
}

// loadFlags are the load plan's options, shared by `job submit load` and
// `fs distributedLoad`.
type loadFlags struct {
	replication int
	workers     []string
	exclude     []string
	verify      bool
	bandwidth   string
	sync        bool
	filter      filterFlags
}

// filterFlags select the files a job works on (load, persist, copy, move,
// sync): spec.Filter as flags.
type filterFlags struct {
	include, exclude []string
	minSize, maxSize string
	minAge, maxAge   string
}

// filterHelp is what every command taking filterFlags says about them.
const filterHelp = `Filters (applied while listing, so only matching files are planned):
  --include / --exclude PATTERN   glob on the path below SRC (PATH), repeatable:
                                  *  any run of characters but /   ** any depth
                                  ?  one character   [a-z] [!a-z]   {a,b} one of
                                  "/x" anchors at the top, "dir/" means all under dir
                                  A file is taken if it matches an --include (or
                                  there is none) and no --exclude.
  --min-size / --max-size SIZE    e.g. 1MiB, 10G (bytes if no unit)
  --min-age / --max-age AGE       modification time before the job was submitted:
                                  ms s m h d w M y, combined: 1d12h; --max-age 7d is
                                  "changed in the last 7 days"
`

func (f *filterFlags) add(fs *pflag.FlagSet) {
	fs.StringArrayVar(&f.include, "include", nil, "only files whose path below the job's root matches this glob (repeatable; ** any depth)")
	fs.StringArrayVar(&f.exclude, "exclude", nil, "leave out files whose path below the job's root matches this glob (repeatable)")
	fs.StringVar(&f.minSize, "min-size", "", "only files of at least this size, e.g. 1MiB")
	fs.StringVar(&f.maxSize, "max-size", "", "only files of at most this size, e.g. 1GiB")
	fs.StringVar(&f.minAge, "min-age", "", "only files last modified at least this long ago, e.g. 1d")
	fs.StringVar(&f.maxAge, "max-age", "", "only files last modified at most this long ago, e.g. 7d")
}

// filter is the spec.Filter of the flags; sizes are parsed here, the rest
// is checked by the job master (a bad pattern or age is a usage error).
func (f *filterFlags) filter() (spec.Filter, error) {
	out := spec.Filter{Include: f.include, Exclude: f.exclude, MinAge: f.minAge, MaxAge: f.maxAge}
	for _, sz := range []struct {
		flag, v string
		dst     *int64
	}{{"--min-size", f.minSize, &out.MinSize}, {"--max-size", f.maxSize, &out.MaxSize}} {
		if sz.v == "" {
			continue
		}
		n, err := humanize.ParseBytes(sz.v)
		if err != nil || n < 0 {
			return out, usagef("%s %q: want a size, e.g. 10MiB", sz.flag, sz.v)
		}
		*sz.dst = n
	}
	for _, a := range []struct{ flag, v string }{{"--min-age", f.minAge}, {"--max-age", f.maxAge}} {
		if a.v == "" {
			continue
		}
		if _, err := spec.ParseAge(a.v); err != nil {
			return out, usagef("%s %q: %v", a.flag, a.v, err)
		}
	}
	return out, nil
}

func (f *loadFlags) add(fs *pflag.FlagSet) {
	fs.IntVar(&f.replication, "replication", 1, "copies of every block to cache, each on a different worker")
	fs.StringSliceVar(&f.workers, "workers", nil, "use only these block workers (ids, hosts or host:port, comma-separated)")
	fs.StringSliceVar(&f.exclude, "exclude-workers", nil, "never use these block workers (ids, hosts or host:port)")
	fs.BoolVar(&f.verify, "verify", false, "when done, check every block again and load what is missing")
	fs.StringVar(&f.bandwidth, "bandwidth", "", bandwidthHelp)
	fs.BoolVar(&f.sync, "sync", true, "sync each directory with the UFS as it is listed, so new, changed and vanished UFS files are seen (--sync=false trusts what Alluvium knows)")
	f.filter.add(fs)
}

func (f *loadFlags) config(path string) (sdk.LoadConfig, error) {
	if f.replication < 1 {
		return sdk.LoadConfig{}, usagef("--replication %d: want 1 or more", f.replication)
	}
	c := sdk.LoadConfig{Path: path, Replication: f.replication, Workers: f.workers, ExcludeWorkers: f.exclude, Verify: f.verify, NoSync: !f.sync}
	var err error
	if c.Filter, err = f.filter.filter(); err != nil {
		return c, err
	}
	c.Bandwidth, err = parseBandwidth(f.bandwidth)
	return c, err
}

// bandwidthHelp is --bandwidth of every plan's submit command.
const bandwidthHelp = "limit the whole job to this many bytes/s, e.g. 100MiB, split over the workers running it and enforced on the bytes as they flow (default: unlimited)"

// parseBandwidth reads --bandwidth ("" is unlimited: 0).
func parseBandwidth(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	b, err := humanize.ParseBytes(s)
	if err != nil || b <= 0 {
		return 0, usagef("--bandwidth %q: want bytes per second, e.g. 50MiB", s)
	}
	return b, nil
}

// checkConfigJSON refuses a --config that is not one JSON value (the job
// master checks the rest).
func checkConfigJSON(s string) error {
	if err := spec.SyntaxError([]byte(s)); err != nil {
		return usagef("--config: not valid JSON: %v", err)
	}
	return nil
}

// submitFlags are what every submit takes.
type submitFlags struct {
	wait      bool
	output    string
	requestID string
	dryRun    bool
}

func (f *submitFlags) add(fs *pflag.FlagSet, waitDefault bool) {
	fs.BoolVar(&f.wait, "wait", waitDefault, "wait for the job to end, showing progress; exit 0 only if it COMPLETED")
	fs.BoolVar(&f.dryRun, "dry-run", false, "plan the job and report what it would do (files, bytes, deletes) without doing it; waits unless --wait=false")
	fs.StringVar(&f.output, "output", "", "output format: json (one object: id, plan, status, tasksTotal, ...)")
	fs.StringVar(&f.requestID, "request-id", "", "idempotency key: submitting again with it returns the same job (default: random)")
}

func newJobSubmitCmd(g *globals) *cobra.Command {
	var sf submitFlags
	var configJSON string
	c := &cobra.Command{
		Use:   "submit PLAN [ARGS] [flags]",
		Short: "Submit a job: load, persist, replicate, move, copy, sync (or any plan with --config JSON)",
		Long: `Submit a job. Each plan has its own subcommand and flags (load PATH, persist
PATH, replicate PATH --replication N, move SRC DST, copy SRC DST, sync SRC
DST; see their --help); any plan can also be given its config as JSON:

  alluvium job submit load --config '{"path":"/data","replication":2}'

Without --wait it prints the new job's id and returns; with --wait it follows
the job (a progress bar on a terminal, a line every few seconds otherwise) and
exits 0 only if the job COMPLETED (1 if it FAILED or was CANCELED).
--dry-run, on every plan, plans the job and reports what it would do (files,
bytes, deletes) without doing anything.`,
		Example: `  alluvium job submit load /data --wait
  alluvium job submit load /data/2024 --replication 2 --verify --bandwidth 200MiB
  alluvium job submit copy /data /s3/backup --checksum --wait
  alluvium job submit sync /data /s3/mirror --dry-run
  alluvium job submit replicate /hot --replication 3
  alluvium job submit load --config '{"path":"/data"}' --output json`,
		Args: minArgs(1, "PLAN"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("job submit %s: give the plan's config with --config JSON (or see 'alluvium job submit load --help')", args[0])
			}
			if configJSON == "" {
				return usagef("job submit %s: --config JSON is required for this plan", args[0])
			}
			if err := checkConfigJSON(configJSON); err != nil {
				return err
			}
			return submit(cmd, g, args[0], json.RawMessage(configJSON), sf)
		},
	}
	c.Flags().StringVar(&configJSON, "config", "", "the plan's config as a JSON object")
	sf.add(c.Flags(), false)
	c.AddCommand(newJobSubmitLoadCmd(g))
	c.AddCommand(jobPlanSubmitCmds(g)...)
	return c
}

func newJobSubmitLoadCmd(g *globals) *cobra.Command {
	var sf submitFlags
	var lf loadFlags
	var configJSON string
	c := &cobra.Command{
		Use:   "load PATH",
		Short: "Load (warm up) every block under PATH into the block workers' cache",
		Long: `Cache every block of every file under PATH (recursively) in the block
workers, to --replication copies each. Blocks already cached that often are
skipped; each task is one large block or a batch of small files, run by the
job worker beside the block worker that will hold the data, spread evenly.
Each directory is synced with the UFS as the job lists it, so files added,
changed or deleted there since Alluvium last looked are loaded, reloaded or
forgotten (--sync=false skips that and trusts the namespace).
--verify checks every block again at the end and loads what is missing
(when the load found every block cached already, that check was the load);
--bandwidth caps the whole job's rate (bytes read from the UFS, throttled
as they flow into the block workers). Files all of whose blocks are cached
already count as skipped.

` + filterHelp,
		Example: `  alluvium job submit load /data --wait
  alluvium job submit load /lake --include '**.parquet' --max-age 7d --dry-run
  alluvium job submit load /data --replication 2 --exclude-workers host3
  alluvium job submit load /logs --bandwidth 100MiB --output json`,
		Args: func(cmd *cobra.Command, args []string) error {
			if configJSON != "" {
				return nil
			}
			return exactArgs(1, "PATH")(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if configJSON != "" {
				if len(args) > 0 {
					return usagef("job submit load: give PATH or --config, not both")
				}
				if err := checkConfigJSON(configJSON); err != nil {
					return err
				}
				return submit(cmd, g, "load", json.RawMessage(configJSON), sf)
			}
			cfg, err := lf.config(args[0])
			if err != nil {
				return err
			}
			return submit(cmd, g, "load", cfg, sf)
		},
	}
	lf.add(c.Flags())
	sf.add(c.Flags(), false)
	c.Flags().StringVar(&configJSON, "config", "", "the whole load config as JSON instead of PATH and flags")
	return c
}

// newDistributedLoadCmd is `alluvium fs distributedLoad`, Alluxio's name
// for a load job; it waits by default.
func newDistributedLoadCmd(g *globals) *cobra.Command {
	var sf submitFlags
	var lf loadFlags
	var async bool
	c := &cobra.Command{
		Use:   "distributedLoad PATH",
		Short: "Load PATH into the cache with a load job (alias of 'job submit load PATH --wait')",
		Long: `Alluxio's familiar command: submit a load job for PATH and wait for it,
showing progress. Same flags as 'alluvium job submit load'; --async returns
once submitted.`,
		Example: `  alluvium fs distributedLoad /data
  alluvium fs distributedLoad /data --replication 2 --async`,
		Args: exactArgs(1, "PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := lf.config(args[0])
			if err != nil {
				return err
			}
			if async {
				sf.wait = false
			}
			return submit(cmd, g, "load", cfg, sf)
		},
	}
	lf.add(c.Flags())
	sf.add(c.Flags(), true)
	c.Flags().BoolVar(&async, "async", false, "do not wait for the job")
	return c
}

func submit(cmd *cobra.Command, g *globals, plan string, cfg any, sf submitFlags) error {
	if sf.dryRun {
		var err error
		if cfg, err = withDryRun(plan, cfg); err != nil {
			return err
		}
	}
	if h, ok := cmd.Context().Value(submitHookKey{}).(submitHook); ok {
		return h(cmd, plan, cfg, sf) // `policy add`: these job words become the policy's job
	}
	if sf.dryRun && !cmd.Flags().Changed("wait") {
		sf.wait = true // what a dry run finds is its result
	}
	if err := checkJobOutput(sf.output); err != nil {
		return err
	}
	cl, jobs, err := jobsClient(cmd, g)
	if err != nil {
		return err
	}
	defer cl.Close()
	rid := sf.requestID
	if rid == "" {
		rid = sdk.NewRequestID()
	}
	if sf.wait { // one call: the submit's stream follows its job
		return followAndReport(cmd, 0, sf.output, func(ctx context.Context, progress func(*api.JobInfo)) (*api.JobInfo, error) {
			return jobs.Run(ctx, plan, cfg, progress, sdk.WithRequestID(rid))
		})
	}
	id, err := jobs.Submit(cmd.Context(), plan, cfg, sdk.WithRequestID(rid))
	if err != nil {
		return jobErr(err)
	}
	if sf.output == "json" {
		info, err := jobs.Get(cmd.Context(), id, false)
		if err != nil {
			return jobErr(err)
		}
		return writeJSON(cmd.OutOrStdout(), jobview.FromInfo(info))
	}
	fmt.Fprintf(cmd.OutOrStdout(), "Submitted job %d (%s). Follow it: alluvium job wait %d\n", id, plan, id)
	return nil
}

// withDryRun sets "dryRun" in any plan's config (flags or --config JSON).
func withDryRun(plan string, cfg any) (any, error) {
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil || m == nil {
		return nil, usagef("job submit %s --dry-run: the config is not a JSON object", plan)
	}
	m["dryRun"] = json.RawMessage("true")
	return m, nil
}

// waitAndReport follows job id to its end and prints the outcome; the exit
// status is 0 only for COMPLETED.
func waitAndReport(cmd *cobra.Command, jobs *sdk.Jobs, id int64, output string) error {
	return followAndReport(cmd, id, output, func(ctx context.Context, progress func(*api.JobInfo)) (*api.JobInfo, error) {
		return jobs.Wait(ctx, id, progress)
	})
}

// followAndReport follows a job to its end with follow (Wait, or Run: a
// submit that follows its job, id 0 until its first state names it) and
// prints the outcome; the exit status is 0 only for COMPLETED.
func followAndReport(cmd *cobra.Command, id int64, output string, follow func(context.Context, func(*api.JobInfo)) (*api.JobInfo, error)) error {
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errw := cmd.ErrOrStderr()
	var prog progress
	newProgress := func() {
		if f, ok := errw.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			prog = newBarProgress(ctx, f, id)
		} else {
			// The first line after a few seconds: a short job prints only its summary.
			prog = &lineProgress{w: errw, every: 3 * time.Second, last: time.Now()}
		}
	}
	if id != 0 {
		newProgress()
	}
	start := time.Now()
	final, err := follow(ctx, func(j *api.JobInfo) {
		if prog == nil {
			id = j.GetId()
			newProgress()
		}
		prog.update(j)
	})
	if prog != nil {
		prog.done(final)
	}
	stopped := func() error {
		if id == 0 {
			return fmt.Errorf("stopped before the job master answered; the job may have been made (alluvium job ls shows it)")
		}
		return fmt.Errorf("stopped waiting; job %d goes on (alluvium job cancel %d stops it)", id, id)
	}
	if final == nil {
		if ctx.Err() != nil {
			return stopped()
		}
		return jobErr(err)
	}
	if err != nil && !errors.Is(err, sdk.ErrJobFailed) && !errors.Is(err, sdk.ErrJobCanceled) {
		if ctx.Err() != nil {
			return stopped()
		}
		return jobErr(err)
	}
	out := cmd.OutOrStdout()
	if output == "json" {
		if werr := writeJSON(out, jobview.FromInfo(final)); werr != nil {
			return werr
		}
	} else {
		printSummary(out, final, time.Since(start))
	}
	if final.GetStatus() != api.JobInfo_COMPLETED {
		return exitError{exitFail}
	}
	return nil
}

func printSummary(w io.Writer, j *api.JobInfo, took time.Duration) {
	if j.GetFinishedMs() > 0 && j.GetCreatedMs() > 0 {
		took = time.Duration(j.GetFinishedMs()-j.GetCreatedMs()) * time.Millisecond
	}
	rate := ""
	if r := humanize.Rate(j.GetBytesDone(), took); r != "" {
		rate = " (" + r + ")"
	}
	if j.GetLimits().GetDryRun() {
		fmt.Fprintf(w, "Job %d %s (dry run) %s in %s: nothing was changed\n  %s\n", j.GetId(), j.GetPlan(),
			jobview.Status(j.GetStatus()), took.Round(time.Millisecond), fileCounts(j, true))
	} else {
		fmt.Fprintf(w, "Job %d %s %s: %s in %s%s\n", j.GetId(), j.GetPlan(), jobview.Status(j.GetStatus()),
			humanize.Progress(j), took.Round(time.Millisecond), rate)
		if j.GetFilesTotal()+j.GetFilesSkipped()+j.GetDeletes() > 0 {
			fmt.Fprintf(w, "  %s\n", fileCounts(j, false))
		}
	}
	if j.GetError() != "" && j.GetStatus() != api.JobInfo_COMPLETED {
		fmt.Fprintf(w, "  error: %s\n", j.GetError())
	}
	printFailed(w, j, 10)
}

// fileCounts says what a job did (or, in a dry run, would do) file by
// file: "12 files (4.0MiB), 988 skipped (3.1GiB), 3 deleted".
func fileCounts(j *api.JobInfo, dry bool) string {
	s := fmt.Sprintf("%d file(s) (%s), %d skipped (%s)", j.GetFilesTotal(), humanize.Bytes(j.GetBytesTotal()),
		j.GetFilesSkipped(), humanize.Bytes(j.GetBytesSkipped()))
	if dry {
		s = fmt.Sprintf("would %s %d file(s) (%s), skip %d (%s)", j.GetPlan(), j.GetFilesTotal(), humanize.Bytes(j.GetBytesTotal()),
			j.GetFilesSkipped(), humanize.Bytes(j.GetBytesSkipped()))
	}
	if j.GetDeletes() > 0 || j.GetPlan() == "sync" {
		if dry {
			s += fmt.Sprintf(", delete %d", j.GetDeletes())
		} else {
			s += fmt.Sprintf(", %d to delete", j.GetDeletes())
		}
	}
	return s
}

func printFailed(w io.Writer, j *api.JobInfo, limit int) {
	fs := j.GetFailed()
	if len(fs) == 0 {
		return
	}
	fmt.Fprintf(w, "  failed paths:\n")
	for i, f := range fs {
		if limit > 0 && i == limit {
			fmt.Fprintf(w, "    ... and %d more (alluvium job stat %d -v)\n", len(fs)-limit, j.GetId())
			break
		}
		fmt.Fprintf(w, "    %s: %s\n", f.GetPath(), f.GetError())
	}
}

// progress shows a job's advance while waiting.
type progress interface {
	update(*api.JobInfo)
	done(*api.JobInfo)
}

// lineProgress prints one plain line every few seconds (logs, pipes).
type lineProgress struct {
	w     io.Writer
	every time.Duration
	last  time.Time
	prev  *api.JobInfo
	prevT time.Time
}

func (p *lineProgress) update(j *api.JobInfo) {
	now := time.Now()
	if p.prevT.IsZero() {
		p.prev, p.prevT = j, now // the rate needs a first sample
	}
	if now.Sub(p.last) < p.every {
		return
	}
	rate := ""
	if p.prev != nil && p.prev != j {
		if r := humanize.Rate(j.GetBytesDone()-p.prev.GetBytesDone(), now.Sub(p.prevT)); r != "" {
			rate = ", " + r
		}
	}
	fmt.Fprintf(p.w, "job %d %s: %s%s\n", j.GetId(), jobview.Status(j.GetStatus()), humanize.Progress(j), rate)
	p.last, p.prev, p.prevT = now, j, now
}

func (p *lineProgress) done(*api.JobInfo) {}

// barProgress draws two mpb bars: tasks, and bytes with rate and ETA.
type barProgress struct {
	p      *mpb.Progress
	tasks  *mpb.Bar
	bytes  *mpb.Bar
	failed int64
}

func newBarProgress(ctx context.Context, w io.Writer, id int64) *barProgress {
	b := &barProgress{p: mpb.NewWithContext(ctx, mpb.WithOutput(w), mpb.WithWidth(40), mpb.WithRefreshRate(150*time.Millisecond))}
	// Total 0: no completion until done() says so (totals grow while the
	// job is planned).
	b.tasks = b.p.AddBar(0,
		mpb.PrependDecorators(decor.Name(fmt.Sprintf("job %d tasks ", id), decor.WC{W: 16}), decor.CountersNoUnit("%d / %d", decor.WC{W: 14})),
		mpb.AppendDecorators(decor.Any(func(decor.Statistics) string { return fmt.Sprintf(" %d failed", b.failed) })),
	)
	b.bytes = b.p.AddBar(0,
		mpb.PrependDecorators(decor.Name("bytes ", decor.WC{W: 16}), decor.Counters(decor.SizeB1024(0), "% .1f / % .1f", decor.WC{W: 14})),
		// Averages since the start: progress arrives about once a second,
		// too seldom for a moving average to settle.
		mpb.AppendDecorators(decor.AverageSpeed(decor.SizeB1024(0), " % .1f"), decor.Name("  ETA "), decor.AverageETA(decor.ET_STYLE_GO)),
	)
	return b
}

func (b *barProgress) update(j *api.JobInfo) {
	b.failed = j.GetTasksFailed()
	b.tasks.SetTotal(j.GetTasksTotal(), false)
	b.tasks.SetCurrent(j.GetTasksDone() + j.GetTasksFailed())
	b.bytes.SetTotal(j.GetBytesTotal(), false)
	b.bytes.SetCurrent(j.GetBytesDone())
}

func (b *barProgress) done(j *api.JobInfo) {
	if j != nil && j.GetStatus() == api.JobInfo_COMPLETED {
		b.tasks.SetCurrent(j.GetTasksTotal())
		b.tasks.SetTotal(j.GetTasksTotal(), true)
		b.bytes.SetCurrent(j.GetBytesTotal())
		b.bytes.SetTotal(j.GetBytesTotal(), true)
	} else {
		b.tasks.Abort(false)
		b.bytes.Abort(false)
	}
	b.p.Wait()
}

func newJobLsCmd(g *globals) *cobra.Command {
	var statuses []string
	var plan, submitter, policy, output string
	var limit int
	c := &cobra.Command{
		Use:   "ls",
		Short: "List jobs (oldest first), optionally by status, plan, submitter or policy",
		Example: `  alluvium job ls
  alluvium job ls --status RUNNING,FAILED --plan load
  alluvium job ls --submitter alice --limit 20     # alice's 20 newest jobs
  alluvium job ls --policy nightly-warm --limit 5  # the policy's last 5 runs
  alluvium job ls --output json | jq '.jobs[] | select(.status=="FAILED") | .id'`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkJobOutput(output); err != nil {
				return err
			}
			var want []api.JobInfo_Status
			for _, s := range statuses {
				st, ok := jobview.ParseStatus(s)
				if !ok {
					return usagef("--status %q: want CREATED, RUNNING, COMPLETED, FAILED or CANCELED", s)
				}
				want = append(want, st)
			}
			cl, jobs, err := jobsClient(cmd, g)
			if err != nil {
				return err
			}
			defer cl.Close()
			if limit < 0 {
				return usagef("--limit %d: want 0 (all) or more", limit)
			}
			o := sdk.ListJobsOptions{Statuses: want, Plan: plan, Submitter: submitter, Policy: policy, PageSize: 500}
			if limit > 0 {
				// Only the newest N: the job master pages from the newest
				// down, so this reads N jobs, not all it keeps.
				o.NewestFirst, o.PageSize = true, int32(min(limit, 500))
			}
			var list []*api.JobInfo
			for j, err := range jobs.List(cmd.Context(), o) {
				if err != nil {
					return jobErr(err)
				}
				list = append(list, j)
				if limit > 0 && len(list) == limit {
					break
				}
			}
			if o.NewestFirst {
				slices.Reverse(list) // shown oldest first, as without --limit
			}
			out := cmd.OutOrStdout()
			if output == "json" {
				v := struct {
					Jobs []jobview.Job `json:"jobs"`
				}{Jobs: []jobview.Job{}}
				for _, j := range list {
					v.Jobs = append(v.Jobs, jobview.FromInfo(j))
				}
				return writeJSON(out, v)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tPLAN\tSTATUS\tTASKS\tFAILED\tBYTES\tCREATED\tWHAT")
			for _, j := range list {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%d/%d\t%d\t%s/%s\t%s\t%s\n", j.GetId(), j.GetPlan(), jobview.Status(j.GetStatus()),
					j.GetTasksDone(), j.GetTasksTotal(), j.GetTasksFailed(), humanize.Bytes(j.GetBytesDone()),
					humanize.Bytes(j.GetBytesTotal()), time.UnixMilli(j.GetCreatedMs()).Format("2006-01-02 15:04:05"), sdk.JobSubject(j))
			}
			return tw.Flush()
		},
	}
	c.Flags().StringSliceVar(&statuses, "status", nil, "only jobs in these states (CREATED, RUNNING, COMPLETED, FAILED, CANCELED)")
	c.Flags().StringVar(&plan, "plan", "", "only jobs of this plan (load, ...)")
	c.Flags().StringVar(&submitter, "submitter", "", "only jobs this user submitted")
	c.Flags().StringVar(&policy, "policy", "", "only jobs this policy launched")
	c.Flags().IntVar(&limit, "limit", 0, "show only the newest N")
	c.Flags().StringVar(&output, "output", "", "output format: json")
	return c
}

func newJobStatCmd(g *globals) *cobra.Command {
	var verbose bool
	var output string
	c := &cobra.Command{
		Use:   "stat ID",
		Short: "Show a job: status, progress, errors; -v adds failed paths and tasks",
		Example: `  alluvium job stat 7
  alluvium job stat 7 -v
  alluvium job stat 7 --output json | jq .status`,
		Args: exactArgs(1, "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkJobOutput(output); err != nil {
				return err
			}
			id, err := parseJobID(args[0])
			if err != nil {
				return err
			}
			cl, jobs, err := jobsClient(cmd, g)
			if err != nil {
				return err
			}
			defer cl.Close()
			j, err := jobs.Get(cmd.Context(), id, verbose)
			if err != nil {
				return jobErr(err)
			}
			out := cmd.OutOrStdout()
			if output == "json" {
				return writeJSON(out, jobview.FromInfo(j))
			}
			printJob(out, j, verbose)
			return nil
		},
	}
	c.Flags().BoolVarP(&verbose, "verbose", "v", false, "list failed paths with their errors, and the tasks")
	c.Flags().StringVar(&output, "output", "", "output format: json")
	return c
}

func printJob(out io.Writer, j *api.JobInfo, verbose bool) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Job\t%d\n", j.GetId())
	fmt.Fprintf(tw, "Plan\t%s\n", j.GetPlan())
	fmt.Fprintf(tw, "Status\t%s\n", jobview.Status(j.GetStatus()))
	fmt.Fprintf(tw, "Config\t%s\n", j.GetConfigJson())
	fmt.Fprintf(tw, "Tasks\t%d total, %d done, %d failed, %d running%s\n", j.GetTasksTotal(), j.GetTasksDone(), j.GetTasksFailed(), j.GetTasksRunning(),
		map[bool]string{true: "", false: " (planning)"}[j.GetPlanningDone() || sdk.IsTerminal(j.GetStatus())])
	fmt.Fprintf(tw, "Bytes\t%s of %s\n", humanize.Bytes(j.GetBytesDone()), humanize.Bytes(j.GetBytesTotal()))
	fmt.Fprintf(tw, "Files\t%s\n", fileCounts(j, j.GetLimits().GetDryRun()))
	if j.GetLimits().GetDryRun() {
		fmt.Fprintf(tw, "Dry run\tyes: it only counts, nothing is changed\n")
	}
	if j.GetRound() > 0 {
		fmt.Fprintf(tw, "Round\t%d\n", j.GetRound())
	}
	fmt.Fprintf(tw, "Created\t%s\n", time.UnixMilli(j.GetCreatedMs()).Format(time.RFC3339))
	if j.GetFinishedMs() > 0 {
		fmt.Fprintf(tw, "Finished\t%s (took %s)\n", time.UnixMilli(j.GetFinishedMs()).Format(time.RFC3339),
			(time.Duration(j.GetFinishedMs()-j.GetCreatedMs()) * time.Millisecond).String())
	}
	if j.GetSubmitter() != "" {
		fmt.Fprintf(tw, "Submitter\t%s\n", j.GetSubmitter())
	}
	if j.GetError() != "" {
		fmt.Fprintf(tw, "Error\t%s\n", j.GetError())
	}
	tw.Flush()
	if !verbose {
		if n := len(j.GetFailed()); n > 0 {
			fmt.Fprintf(out, "%d failed path(s); -v lists them\n", n)
		}
		return
	}
	printFailed(out, j, 0)
	if len(j.GetTasks()) == 0 {
		return
	}
	ts := append([]*api.TaskInfo(nil), j.GetTasks()...)
	sort.Slice(ts, func(a, b int) bool { return ts[a].GetTaskId() < ts[b].GetTaskId() })
	fmt.Fprintln(out, "Tasks:")
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  TASK\tSTATUS\tATTEMPT\tWORKER\tBYTES\tWHAT\tERROR")
	for _, t := range ts {
		fmt.Fprintf(tw, "  %d\t%s\t%d\t%s\t%s/%s\t%s\t%s\n", t.GetTaskId(), jobview.TaskStatus(t.GetStatus()), t.GetAttempt(),
			t.GetWorkerAddress(), humanize.Bytes(t.GetBytesDone()), humanize.Bytes(t.GetBytesTotal()), t.GetDescription(), t.GetError())
	}
	tw.Flush()
	printResults(out, ts)
}

// printResults prints what tasks reported: exec's runs as one line per
// file (exit code, error) with their output indented below; another
// plan's output as its JSON.
func printResults(out io.Writer, ts []*api.TaskInfo) {
	header := false
	for _, t := range ts {
		r := t.GetResult()
		if len(r) == 0 || string(r) == "null" || string(r) == "[]" {
			continue
		}
		if !header {
			fmt.Fprintln(out, "Results:")
			header = true
		}
		var runs []struct {
			Path   string `json:"path"`
			Paths  []string
			Exit   *int   `json:"exit"`
			Output string `json:"output"`
			Error  string `json:"error"`
		}
		if json.Unmarshal(r, &runs) != nil || len(runs) == 0 || runs[0].Exit == nil {
			fmt.Fprintf(out, "  task %d: %s\n", t.GetTaskId(), r)
			continue
		}
		for _, run := range runs {
			what := run.Path
			if len(run.Paths) > 1 {
				what = fmt.Sprintf("%s (+%d more)", run.Path, len(run.Paths)-1)
			}
			line := fmt.Sprintf("  %s\texit %d", what, *run.Exit)
			if run.Error != "" {
				line += "\t" + run.Error
			}
			fmt.Fprintln(out, line)
			for _, l := range strings.Split(strings.TrimRight(run.Output, "\n"), "\n") {
				if l != "" {
					fmt.Fprintf(out, "    | %s\n", l)
				}
			}
		}
	}
}

func newJobCancelCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "cancel ID",
		Short:   "Cancel a job: its running tasks are stopped and it ends CANCELED",
		Example: `  alluvium job cancel 7`,
		Args:    exactArgs(1, "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseJobID(args[0])
			if err != nil {
				return err
			}
			cl, jobs, err := jobsClient(cmd, g)
			if err != nil {
				return err
			}
			defer cl.Close()
			if err := jobs.Cancel(cmd.Context(), id); err != nil {
				return jobErr(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Canceled job %d\n", id)
			return nil
		},
	}
}

func newJobWaitCmd(g *globals) *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "wait ID",
		Short: "Wait for a job to end, showing progress; exit 0 only if it COMPLETED",
		Example: `  alluvium job wait 7
  alluvium job wait 7 --output json`,
		Args: exactArgs(1, "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkJobOutput(output); err != nil {
				return err
			}
			id, err := parseJobID(args[0])
			if err != nil {
				return err
			}
			cl, jobs, err := jobsClient(cmd, g)
			if err != nil {
				return err
			}
			defer cl.Close()
			return waitAndReport(cmd, jobs, id, output)
		},
	}
	c.Flags().StringVar(&output, "output", "", "output format: json")
	return c
}

func newJobLeaderCmd(g *globals) *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:     "leader",
		Short:   "Show which job master leads, and the raft group",
		Example: `  alluvium job leader --job-master host1:20001,host2:20001,host3:20001`,
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkJobOutput(output); err != nil {
				return err
			}
			cl, jobs, err := jobsClient(cmd, g)
			if err != nil {
				return err
			}
			defer cl.Close()
			r, err := jobs.Leader(cmd.Context())
			if err != nil {
				return jobErr(err)
			}
			out := cmd.OutOrStdout()
			if output == "json" {
				type server struct {
					ID            string `json:"id"`
					RaftAddr      string `json:"raftAddress"`
					RPCAddress    string `json:"rpcAddress"`
					Suffrage      string `json:"suffrage"`
					Leader        bool   `json:"leader"`
					Unreachable   bool   `json:"unreachable"`
					UnreachableMs int64  `json:"unreachableSinceMs,omitempty"`
				}
				v := struct {
					LeaderID    string   `json:"leaderId"`
					LeaderRPC   string   `json:"leaderRpcAddress"`
					Term        uint64   `json:"term"`
					CommitIndex uint64   `json:"commitIndex"`
					Servers     []server `json:"servers"`
				}{LeaderID: r.GetLeaderId(), LeaderRPC: r.GetLeaderRpcAddress(), Term: r.GetTerm(), CommitIndex: r.GetCommitIndex()}
				for _, s := range r.GetServers() {
					v.Servers = append(v.Servers, server{s.GetId(), s.GetRaftAddress(), s.GetRpcAddress(), s.GetSuffrage(), s.GetLeader(), s.GetUnreachable(), s.GetUnreachableSinceMs()})
				}
				return writeJSON(out, v)
			}
			fmt.Fprintf(out, "Leader %s at %s (term %d, commit index %d)\n", r.GetLeaderId(), r.GetLeaderRpcAddress(), r.GetTerm(), r.GetCommitIndex())
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tRAFT\tRPC\tROLE")
			for _, s := range r.GetServers() {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.GetId(), s.GetRaftAddress(), s.GetRpcAddress(), raftRole(s, time.Now()))
			}
			return tw.Flush()
		},
	}
	c.Flags().StringVar(&output, "output", "", "output format: json")
	return c
}

// raftRole is a member's ROLE in `job leader`: leader or follower, a
// member still catching up, and one the leader cannot reach (raft lists a
// killed member as a follower like any other; the leader's failing
// heartbeats tell it apart).
func raftRole(s *api.RaftServer, now time.Time) string {
	role := "follower"
	if s.GetLeader() {
		role = "leader"
	}
	if sf := s.GetSuffrage(); sf != "" && sf != "Voter" {
		role += " (" + strings.ToLower(sf) + ", catching up)"
	}
	if s.GetUnreachable() {
		role = "unreachable"
		if ms := s.GetUnreachableSinceMs(); ms > 0 {
			role += fmt.Sprintf(" (heartbeats failing for %s)", now.Sub(time.UnixMilli(ms)).Round(time.Second))
		}
	}
	return role
}

func newJobWorkersCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "workers",
		Short: "List the job workers the leader knows, with their state and running tasks",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, jobs, err := jobsClient(cmd, g)
			if err != nil {
				return err
			}
			defer cl.Close()
			ws, err := jobs.Workers(cmd.Context())
			if err != nil {
				return jobErr(err)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tADDRESS\tSTATE\tTHREADS\tRUNNING\tBLOCK WORKER\tLAST SEEN")
			for _, w := range ws {
				seen := "-"
				if w.GetLastHeartbeatMs() > 0 {
					seen = time.Since(time.UnixMilli(w.GetLastHeartbeatMs())).Round(time.Millisecond).String() + " ago"
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%s\t%s\n", w.GetId(), w.GetAddress(), w.GetState(), w.GetThreads(), w.GetRunningTasks(), w.GetBlockWorkerAddress(), seen)
			}
			return tw.Flush()
		},
	}
}

func newJobPlansCmd(g *globals) *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "plans",
		Short: "List every plan: built in or a plugin from plans.dir, its version, the job workers that run it",
		Long: `List the plans the job-master leader knows: the built-in ones and the plan
plugins it loaded from plans.dir (default <home>/plans), with their origin,
version and how many live job workers run each at that version. A plugin
plan's tasks run only on job workers that have it at the same version; submit
one with 'alluvium job submit NAME --config JSON'.`,
		Example: `  alluvium job plans
  alluvium job plans --output json`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkJobOutput(output); err != nil {
				return err
			}
			cl, jobs, err := jobsClient(cmd, g)
			if err != nil {
				return err
			}
			defer cl.Close()
			ps, workers, err := jobs.Plans(cmd.Context())
			if err != nil {
				return jobErr(err)
			}
			out := cmd.OutOrStdout()
			if output == "json" {
				type plan struct {
					Name        string `json:"name"`
					Origin      string `json:"origin"`
					Version     string `json:"version"`
					Description string `json:"description,omitempty"`
					Path        string `json:"path,omitempty"`
					Workers     int32  `json:"workers"`
				}
				list := []plan{}
				for _, p := range ps {
					list = append(list, plan{p.GetName(), p.GetOrigin(), p.GetVersion(), p.GetDescription(), p.GetPath(), p.GetWorkers()})
				}
				return writeJSON(out, list)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tORIGIN\tVERSION\tWORKERS\tDESCRIPTION")
			for _, p := range ps {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s\n", p.GetName(), p.GetOrigin(), p.GetVersion(), p.GetWorkers(), workers, p.GetDescription())
			}
			return tw.Flush()
		},
	}
	c.Flags().StringVar(&output, "output", "", "output format: json")
	return c
}
