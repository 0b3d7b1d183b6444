package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/jobview"
	"github.com/alluvium/alluvium/sdk"
)

func newPolicyCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "policy",
		Short: "Policies: submit a job (load, persist, ...) on a schedule or when files land",
		Long: `A policy submits a job each time its cron spec fires: a nightly persist, a
warm-up of a hot directory every few minutes — or, with --on-create PATH,
when files are completed under PATH (see 'alluvium policy add --help').
Policies live in the job master's raft state: only the leader fires them,
and a job master failover neither loses a run nor runs one twice. Runs missed while no job master led
are caught up once (the latest of them), unless --catch-up=false.

Cron specs have five fields (minute hour day-of-month month day-of-week), or
six with seconds first, or a descriptor: @hourly, @daily, @every 10m. They
are read in UTC unless prefixed with CRON_TZ=Area/City.`,
		Example: `  alluvium policy add hot --cron "*/10 * * * * *" load /hot --replication 2
  alluvium policy add nightly --cron "0 2 * * *" persist /out
  alluvium policy add landed --on-create /landing --debounce 2s persist /landing
  alluvium policy ls
  alluvium policy pause hot; alluvium policy resume hot
  alluvium policy run-now nightly --wait
  alluvium policy rm hot`,
	}
	c.AddCommand(newPolicyAddCmd(g), newPolicyLsCmd(g), newPolicyRmCmd(g),
		newPolicyEnableCmd(g, "pause", false), newPolicyEnableCmd(g, "resume", true), newPolicyRunNowCmd(g))
	return c
}

// submitHook replaces a job submit: `policy add` runs the job's words
// through the `job submit` commands (so every plan's flags work the same)
// and takes the plan and config they build instead of submitting.
type (
	submitHookKey struct{}
	submitHook    func(cmd *cobra.Command, plan string, cfg any, sf submitFlags) error
)

// policyJob is what the job words of `policy add` built.
type policyJob struct {
	plan   string
	config string
	output string
	global map[string]string // global flags given among the job words
}

func newPolicyAddCmd(g *globals) *cobra.Command {
	var (
		spec, overlap, output string
		pipelineFile          string
		params                []string
		catchUp, paused       bool
		onCreate              string
		debounce              time.Duration
		batchMax              int
	)
	c := &cobra.Command{
		Use:   "add NAME (--cron SPEC | --on-create PATH [--debounce D] [--batch-max N]) [flags] (PLAN ARGS... [plan flags] | --pipeline FILE [--param k=v]...)",
		Short: "Add a policy: NAME --cron SPEC or --on-create PATH, then the job's words as 'job submit' takes them",
		Long: `Add a policy that submits a job each time SPEC fires — or, with --on-create
PATH, each time files are completed under the directory PATH. After NAME and the
policy's flags come the job's own words, exactly as 'alluvium job submit'
takes them (see 'alluvium job submit PLAN --help' for each plan's flags), or
any plan with --config JSON.

The spec, the plan and its config are checked as a submit would check them
(the path must exist, and so on); if anything is wrong nothing is stored.

--overlap says what a run that falls due while the policy's last job still
runs does: skip it (default), queue it (it starts when the job ends; one run
waits at most), or allow it (it starts at once).

Event policies (--on-create PATH) fire on files written through Alluvium and
completed under PATH, read from the FS master's completion feed. The first
file opens a window of --debounce (default 30s); the files completed in it,
at most --batch-max (default 1000), are one run, and the next file opens the
next window. The policy's cursor in the feed moves in the same raft entry
that launches the run, so a failover of the job masters or the FS masters
neither loses nor repeats a file. A run's job is the policy's job narrowed
to its files: persist persists exactly them; load, replicate and exec run on
their common path (the file for one, else the deepest directory holding
them all). A pipeline (--pipeline FILE) gets them as parameters where it
declares them: {{.paths}} (the list), {{.path}} (the common path) and
{{.events}} (how many). Overlap defaults to queue for event policies: files
that land while the last run runs wait for the next one (--overlap skip
drops them, --overlap allow starts a run at once).`,
		Example: `  alluvium policy add hot --cron "*/10 * * * * *" load /hot --replication 2
  alluvium policy add nightly --cron "0 2 * * *" --overlap queue persist /out
  alluvium policy add warm --cron @hourly --catch-up=false load /data --verify
  alluvium policy add tz --cron "CRON_TZ=Europe/Paris 30 6 * * 1-5" load /reports
  alluvium policy add any --cron @daily replicate --config '{"path":"/x","replicas":2}'
  alluvium policy add nightly-chain --cron "0 2 * * *" --pipeline configs/pipelines/example.yaml
  alluvium policy add landed --on-create /landing --debounce 2s persist /landing
  alluvium policy add landed-chain --on-create /landing --debounce 1m --pipeline configs/pipelines/landed.yaml`,
		DisableFlagParsing: true,
		Args:               cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			own, words := splitPolicyArgs(cmd, args)
			cmd.DisableFlagParsing = false
			if err := cmd.ParseFlags(own); err != nil {
				return usageError{fmt.Errorf("%w (see '%s --help')", err, cmd.CommandPath())}
			}
			if help, _ := cmd.Flags().GetBool("help"); help {
				return cmd.Help()
			}
			pos := cmd.Flags().Args()
			if len(pos) == 0 {
				return usagef("policy add: want NAME --cron SPEC PLAN ARGS... (see 'alluvium policy add --help')")
			}
			name := pos[0]
			events := cmd.Flags().Changed("on-create")
			switch {
			case events && cmd.Flags().Changed("cron"):
				return usagef("policy add %s: --cron and --on-create: give one (a policy fires on a clock or on files)", name)
			case !events && !cmd.Flags().Changed("cron"):
				return usagef("policy add %s: --cron SPEC or --on-create PATH is required, e.g. --cron \"*/10 * * * * *\", --cron @hourly or --on-create /landing", name)
			case !events && (cmd.Flags().Changed("debounce") || cmd.Flags().Changed("batch-max")):
				return usagef("policy add %s: --debounce and --batch-max are for --on-create policies", name)
			case events && debounce < 0:
				return usagef("policy add %s: --debounce %v: want 0s or more", name, debounce)
			case events && (batchMax < 1 || batchMax > 10000):
				return usagef("policy add %s: --batch-max %d: want 1 to 10000 files a run", name, batchMax)
			}
			var (
				job = &policyJob{}
				def *sdk.PipelineDef
			)
			switch {
			case pipelineFile != "" && len(words) > 0:
				return usagef("policy add %s: --pipeline %s and a job (%s): give one", name, pipelineFile, strings.Join(words, " "))
			case pipelineFile != "":
				var err error
				if def, err = readPipelineFile(pipelineFile); err != nil {
					return err
				}
			case len(params) > 0:
				return usagef("policy add %s: --param is for --pipeline", name)
			case len(words) == 0:
				return usagef("policy add %s: the job is missing: give PLAN and its arguments, e.g. 'load /hot', or --pipeline FILE (see 'alluvium policy add --help')", name)
			}
			if err := checkJobOutput(output); err != nil {
				return err
			}
			if def == nil {
				var err error
				if job, err = policyJobWords(cmd, name, words); err != nil || job == nil {
					return err // nil job: the words asked for help, which was printed
				}
			}
			pm, err := sdk.ParseParams(params)
			if err != nil {
				return usagef("--param: %v", err)
			}
			for k, v := range job.global {
				if err := cmd.Flags().Set(k, v); err != nil {
					return usagef("--%s %q: %v", k, v, err)
				}
			}
			if job.output != "" {
				output = job.output
			}
			if err := checkJobOutput(output); err != nil {
				return err
			}
			var o sdk.OverlapPolicy
			switch strings.ToLower(overlap) {
			case "":
				// skip on a clock; on files the job master's default: queue
			case "skip":
				o = sdk.OverlapSkip
			case "queue":
				o = sdk.OverlapQueue
			case "allow":
				o = sdk.OverlapAllow
			default:
				return usagef("--overlap %q: want skip, queue or allow", overlap)
			}
			cl, ps, err := policiesClient(cmd, g)
			if err != nil {
				return err
			}
			defer cl.Close()
			ps0 := sdk.PolicySpec{Name: name, Cron: spec, Overlap: o, NoCatchUp: !catchUp, Paused: paused, Pipeline: def, Params: pm}
			if events {
				ps0.OnCreate, ps0.Debounce, ps0.BatchMax = onCreate, debounce, batchMax
				if strings.EqualFold(overlap, "skip") {
					ps0.Overlap = sdk.OverlapDrop // OverlapSkip is an event policy's default: queue
				}
			}
			if def == nil {
				ps0.Plan, ps0.Config = job.plan, json.RawMessage(job.config)
			}
			p, err := ps.Add(cmd.Context(), ps0)
			if err != nil {
				return jobErr(err)
			}
			out := cmd.OutOrStdout()
			if output == "json" {
				return writeJSON(out, jobview.FromPolicy(p))
			}
			state := "next run " + fmtWhen(p.GetNextRunMs())
			if p.GetOnCreate() != "" {
				state = fmt.Sprintf("fires on files completed under %s from now on (debounce %v, at most %d files a run, overlap %s)",
					p.GetOnCreate(), time.Duration(p.GetDebounceMs())*time.Millisecond, p.GetBatchMax(), p.GetOverlap())
			}
			if !p.GetEnabled() {
				state = "paused ('alluvium policy resume " + name + "' starts it)"
			}
			if p.GetOnCreate() != "" {
				fmt.Fprintf(out, "Added policy %s: %s, %s\n", name, policyFires(p), state)
				return nil
			}
			fmt.Fprintf(out, "Added policy %s: %s on %q, %s\n", name, policyFires(p), p.GetCron(), state)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&spec, "cron", "", `when to run: "MIN HOUR DOM MON DOW", "SEC MIN HOUR DOM MON DOW", @hourly, @every 10m (UTC unless CRON_TZ=...)`)
	f.StringVar(&overlap, "overlap", "", "a run due while the last job still runs: skip, queue or allow (default skip with --cron, queue with --on-create: files are never dropped unless asked)")
	f.StringVar(&onCreate, "on-create", "", "fire on files completed under this directory instead of a clock (written through Alluvium; see --debounce, --batch-max)")
	f.DurationVar(&debounce, "debounce", 30*time.Second, "with --on-create: the first file opens a window this long; the files completed in it are one run (0: a run per read)")
	f.IntVar(&batchMax, "batch-max", 1000, "with --on-create: at most this many files a run (1-10000)")
	f.BoolVar(&catchUp, "catch-up", true, "run once for runs missed while no job master led")
	f.BoolVar(&paused, "paused", false, "add it paused")
	f.StringVar(&output, "output", "", "output format: json")
	f.StringVar(&pipelineFile, "pipeline", "", "fire the pipeline defined in this YAML file instead of one job (see 'alluvium pipeline --help')")
	f.StringArrayVar(&params, "param", nil, "with --pipeline: a parameter of its runs, NAME=VALUE (repeat for more); date and scheduled are the run's if declared and not set")
	return c
}

// policyFires says what a policy fires: "pipeline NAME" or "PLAN PATH".
func policyFires(p *sdk.Policy) string {
	if d := p.GetPipeline(); d != nil {
		return "pipeline " + d.GetName()
	}
	return p.GetPlan() + " " + policyWhat(p)
}

// splitPolicyArgs splits `policy add`'s arguments into its own part (NAME
// and flags) and the job's words, which start at the second positional
// argument. A flag that takes a value takes the next argument with it.
func splitPolicyArgs(cmd *cobra.Command, args []string) (own, words []string) {
	lookup := func(name string, short bool) *pflag.Flag {
		for _, fs := range []*pflag.FlagSet{cmd.Flags(), cmd.InheritedFlags()} {
			var f *pflag.Flag
			if short {
				f = fs.ShorthandLookup(name)
			} else {
				f = fs.Lookup(name)
			}
			if f != nil {
				return f
			}
		}
		return nil
	}
	positional := 0
	for i := 0; i < len(args); i++ {
		a := args[i]
		if len(a) > 1 && a[0] == '-' && a != "--" {
			name, short := strings.TrimLeft(a, "-"), !strings.HasPrefix(a, "--")
			if strings.Contains(name, "=") {
				continue
			}
			if short && len(name) > 1 {
				name = name[len(name)-1:] // -abc: only the last may take a value
			}
			if f := lookup(name, short); f != nil && f.NoOptDefVal == "" && i+1 < len(args) {
				i++
			}
			continue
		}
		positional++
		if positional == 2 {
			return args[:i], args[i:]
		}
	}
	return args, nil
}

// policyJobWords runs the job's words through a fresh `job submit` command
// tree with a hook that keeps the plan and config instead of submitting.
func policyJobWords(cmd *cobra.Command, name string, words []string) (*policyJob, error) {
	var known []string
	for _, sc := range newJobSubmitCmd(&globals{}).Commands() {
		known = append(known, sc.Name())
	}
	if !slices.Contains(known, words[0]) && !slices.Contains(words, "--config") && !slices.ContainsFunc(words, func(w string) bool { return strings.HasPrefix(w, "--config=") }) {
		return nil, usagef("policy add %s: unknown plan %q: want %s, or PLAN --config JSON", name, words[0], strings.Join(known, ", "))
	}
	var job *policyJob
	hook := submitHook(func(c *cobra.Command, plan string, cfg any, sf submitFlags) error {
		if sf.wait {
			return usagef("policy add %s: --wait is for one job; 'alluvium policy run-now %s --wait' runs one and waits", name, name)
		}
		if sf.requestID != "" {
			return usagef("policy add %s: --request-id: each run's request id comes from the policy and its scheduled time", name)
		}
		b, err := json.Marshal(cfg)
		if err != nil {
			return usagef("policy add %s: job config: %v", name, err)
		}
		job = &policyJob{plan: plan, config: string(b), output: sf.output, global: map[string]string{}}
		c.InheritedFlags().VisitAll(func(f *pflag.Flag) {
			if f.Changed {
				job.global[f.Name] = f.Value.String()
			}
		})
		return nil
	})
	root := newRootCmd()
	root.SetArgs(append([]string{"job", "submit"}, words...))
	root.SetOut(cmd.OutOrStdout())
	root.SetErr(cmd.ErrOrStderr())
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	if err := root.ExecuteContext(context.WithValue(ctx, submitHookKey{}, hook)); err != nil {
		return nil, err
	}
	return job, nil
}

// policiesClient connects to the job masters as the job commands do.
func policiesClient(cmd *cobra.Command, g *globals) (*sdk.Client, *sdk.Policies, error) {
	cl, _, err := jobsClient(cmd, g)
	if err != nil {
		return nil, nil, err
	}
	ps, err := cl.Policies()
	if err != nil {
		cl.Close()
		return nil, nil, usageError{err}
	}
	return cl, ps, nil
}

func policyWhat(p *sdk.Policy) string {
	return sdk.JobSubject(&api.JobInfo{ConfigJson: p.GetConfigJson()})
}

// fmtWhen prints a time in ms as local time with how far it is from now.
func fmtWhen(ms int64) string {
	if ms == 0 {
		return "-"
	}
	t := time.UnixMilli(ms)
	d := time.Until(t).Round(time.Second)
	rel := "in " + d.String()
	if d < 0 {
		rel = (-d).String() + " ago"
	}
	if d == 0 {
		rel = "now"
	}
	return t.Format("2006-01-02 15:04:05") + " (" + rel + ")"
}

func newPolicyLsCmd(g *globals) *cobra.Command {
	var (
		output  string
		verbose bool
	)
	c := &cobra.Command{
		Use:   "ls",
		Short: "List policies: spec, job, next and last run, last job and its status",
		Example: `  alluvium policy ls
  alluvium policy ls -v
  alluvium policy ls --output json | jq '.policies[] | {name, lastJobStatus}'`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkJobOutput(output); err != nil {
				return err
			}
			cl, ps, err := policiesClient(cmd, g)
			if err != nil {
				return err
			}
			defer cl.Close()
			list, err := ps.List(cmd.Context())
			if err != nil {
				return jobErr(err)
			}
			out := cmd.OutOrStdout()
			if output == "json" {
				v := struct {
					Policies []jobview.Policy `json:"policies"`
				}{Policies: []jobview.Policy{}}
				for _, p := range list {
					v.Policies = append(v.Policies, jobview.FromPolicy(p))
				}
				return writeJSON(out, v)
			}
			printPolicies(out, list)
			if verbose {
				return printPolicyHistory(cmd, cl, list)
			}
			return nil
		},
	}
	c.Flags().StringVar(&output, "output", "", "output format: json")
	c.Flags().BoolVarP(&verbose, "verbose", "v", false, "also list each policy's last 5 runs: trigger, job or pipeline run, outcome")
	return c
}

// printPolicyHistory lists each policy's last runs: its pipeline runs (with
// their trigger) or its jobs, newest first.
func printPolicyHistory(cmd *cobra.Command, cl *sdk.Client, list []*sdk.Policy) error {
	const last = 5
	out := cmd.OutOrStdout()
	jobs, err := cl.Jobs()
	if err != nil {
		return err
	}
	pl, err := cl.Pipelines()
	if err != nil {
		return err
	}
	for _, p := range list {
		if p.GetOnCreate() != "" {
			fmt.Fprintf(out, "\nPolicy %s fires on files completed under %s: debounce %v, at most %d files a run; feed cursor %d; %d files launched, %d skipped\n",
				p.GetName(), p.GetOnCreate(), time.Duration(p.GetDebounceMs())*time.Millisecond, p.GetBatchMax(), p.GetEventCursor(), p.GetEvents(), p.GetSkippedEvents())
		} else {
			fmt.Fprintf(out, "\nPolicy %s fires on %q\n", p.GetName(), p.GetCron())
		}
		fmt.Fprintf(out, "Policy %s, last runs:\n", p.GetName())
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		if p.GetPipeline() != nil {
			runs, err := pl.List(cmd.Context(), sdk.ListPipelinesOptions{Policy: p.GetName(), Limit: last, NewestFirst: true})
			if err != nil {
				return jobErr(err)
			}
			fmt.Fprintln(tw, "  RUN\tTRIGGER\tSTATUS\tJOBS\tERROR")
			for _, r := range runs {
				var ids []string
				for _, s := range r.GetSteps() {
					for _, j := range s.GetJobIds() {
						ids = append(ids, strconv.FormatInt(j, 10))
					}
				}
				fmt.Fprintf(tw, "  run %d\t%s\t%s\t%s\t%s\n", r.GetId(), triggerWords(r.GetTrigger()), r.GetStatus(), strings.Join(ids, ","), clip(r.GetError(), 60))
			}
		} else {
			fmt.Fprintln(tw, "  JOB\tCREATED\tSTATUS\tERROR")
			n := 0
			for j, err := range jobs.List(cmd.Context(), sdk.ListJobsOptions{Policy: p.GetName(), NewestFirst: true, PageSize: last}) {
				if err != nil {
					return jobErr(err)
				}
				fmt.Fprintf(tw, "  job %d\t%s\t%s\t%s\n", j.GetId(), time.UnixMilli(j.GetCreatedMs()).Format(time.DateTime), jobview.Status(j.GetStatus()), clip(j.GetError(), 60))
				if n++; n == last {
					break
				}
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

func printPolicies(out io.Writer, list []*sdk.Policy) {
	if len(list) == 0 {
		fmt.Fprintln(out, "No policies. Add one: alluvium policy add NAME --cron SPEC PLAN ARGS...")
		return
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tTRIGGER\tJOB\tOVERLAP\tNEXT RUN\tLAST RUN\tLAST JOB\tSTATUS\tRUNS\tSKIPPED")
	for _, p := range list {
		state := "enabled"
		if !p.GetEnabled() {
			state = "paused"
		}
		if p.GetPendingRequestId() != "" {
			state += ", launching"
		}
		if p.GetQueuedMs() != 0 {
			state += ", 1 queued"
		}
		last, st := "-", jobview.LastJobStatus(p)
		if p.GetLastJobId() != 0 {
			last = fmt.Sprint(p.GetLastJobId())
		}
		if id := p.GetLastPipelineId(); id != 0 {
			last, st = fmt.Sprintf("run %d", id), "GONE"
			if p.GetLastPipelineStatus() != api.PipelineRun_STATUS_UNSPECIFIED {
				st = p.GetLastPipelineStatus().String()
			}
		}
		if st == "" {
			st = "-"
		}
		trigger := p.GetCron()
		if p.GetOnCreate() != "" {
			trigger = "on-create " + p.GetOnCreate()
			if n := len(p.GetPendingEvents()); n > 0 {
				state += fmt.Sprintf(" (%d files)", n)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\n", p.GetName(), state, trigger, policyFires(p),
			p.GetOverlap(), fmtWhen(p.GetNextRunMs()), fmtWhen(p.GetLastRunMs()), last, st, p.GetRuns(), p.GetSkipped())
	}
	tw.Flush()
}

func newPolicyRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "rm NAME",
		Short:   "Remove a policy (jobs it launched go on)",
		Example: `  alluvium policy rm hot`,
		Args:    exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, ps, err := policiesClient(cmd, g)
			if err != nil {
				return err
			}
			defer cl.Close()
			if err := ps.Remove(cmd.Context(), args[0]); err != nil {
				return jobErr(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Removed policy %s\n", args[0])
			return nil
		},
	}
}

func newPolicyEnableCmd(g *globals, verb string, enable bool) *cobra.Command {
	short := "Pause a policy: it does not fire until resumed (a queued run is dropped)"
	if enable {
		short = "Resume a paused policy: it fires from now on (runs due while paused are not caught up)"
	}
	return &cobra.Command{
		Use:     verb + " NAME",
		Short:   short,
		Example: "  alluvium policy " + verb + " hot",
		Args:    exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, ps, err := policiesClient(cmd, g)
			if err != nil {
				return err
			}
			defer cl.Close()
			var p *sdk.Policy
			if enable {
				p, err = ps.Resume(cmd.Context(), args[0])
			} else {
				p, err = ps.Pause(cmd.Context(), args[0])
			}
			if err != nil {
				return jobErr(err)
			}
			if enable {
				fmt.Fprintf(cmd.OutOrStdout(), "Resumed policy %s; next run %s\n", p.GetName(), fmtWhen(p.GetNextRunMs()))
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "Paused policy %s\n", p.GetName())
			}
			return nil
		},
	}
}

func newPolicyRunNowCmd(g *globals) *cobra.Command {
	var wait bool
	var output string
	c := &cobra.Command{
		Use:   "run-now NAME",
		Short: "Run a policy's job now, outside its schedule (--wait follows it)",
		Example: `  alluvium policy run-now nightly
  alluvium policy run-now nightly --wait`,
		Args: exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkJobOutput(output); err != nil {
				return err
			}
			cl, ps, err := policiesClient(cmd, g)
			if err != nil {
				return err
			}
			defer cl.Close()
			id, run, err := ps.Fire(cmd.Context(), args[0])
			if err != nil {
				return jobErr(err)
			}
			if run != 0 {
				pl, err := cl.Pipelines()
				if err != nil {
					return err
				}
				if wait {
					return waitPipeline(cmd, pl, run, output)
				}
				r, err := pl.Get(cmd.Context(), run)
				if err != nil {
					return jobErr(err)
				}
				if output == "json" {
					return writeJSON(cmd.OutOrStdout(), jobview.FromRun(r))
				}
				fmt.Fprintf(cmd.OutOrStdout(), "Policy %s launched pipeline run %d. Follow it: alluvium pipeline wait %d\n", args[0], run, run)
				return nil
			}
			jobs, err := cl.Jobs()
			if err != nil {
				return err
			}
			if wait {
				return waitAndReport(cmd, jobs, id, output)
			}
			if output == "json" {
				info, err := jobs.Get(cmd.Context(), id, false)
				if err != nil {
					return jobErr(err)
				}
				return writeJSON(cmd.OutOrStdout(), jobview.FromInfo(info))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Policy %s launched job %d. Follow it: alluvium job wait %d\n", args[0], id, id)
			return nil
		},
	}
	c.Flags().BoolVar(&wait, "wait", false, "wait for the job to end, showing progress; exit 0 only if it COMPLETED")
	c.Flags().StringVar(&output, "output", "", "output format: json")
	return c
}
