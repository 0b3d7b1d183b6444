package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/jobview"
	"github.com/alluvium/alluvium/sdk"
)

func newPipelineCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "pipeline",
		Short: "Pipelines the cluster keeps: DAGs of jobs run by the job master",
		Long: `A pipeline is a DAG of job steps (load, copy, persist, ...): a step starts
when every step it comes after has succeeded; failed steps are retried with
backoff; on-failure steps run when a step failed for good. A submitted
pipeline is stored in the job master's raft state and run by whichever job
master leads: it carries on when the submitting command exits or the leader
fails over, and a step's job is never started twice.

The definition is a YAML file (see configs/pipelines/example.yaml). Its step
configs may use parameters as {{.name}} (text/template), given at submit
with --param name=value.`,
		Example: `  alluvium pipeline submit configs/pipelines/example.yaml --param date=2026-12-06 --wait
  alluvium pipeline ls
  alluvium pipeline stat 3
  alluvium pipeline wait 3
  alluvium pipeline cancel 3`,
	}
	c.AddCommand(newPipelineSubmitCmd(g), newPipelineLsCmd(g), newPipelineStatCmd(g), newPipelineCancelCmd(g), newPipelineWaitCmd(g))
	return c
}

// pipelinesClient connects to the job masters for the pipeline commands.
func pipelinesClient(cmd *cobra.Command, g *globals) (*sdk.Client, *sdk.Pipelines, error) {
	cl, _, err := jobsClient(cmd, g)
	if err != nil {
		return nil, nil, err
	}
	ps, err := cl.Pipelines()
	if err != nil {
		cl.Close()
		return nil, nil, usageError{err}
	}
	return cl, ps, nil
}

func parseRunID(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, usagef("RUN %q: want a pipeline run id (a positive number, see 'alluvium pipeline ls')", s)
	}
	return id, nil
}

// readPipelineFile reads and checks a definition ("-": stdin).
func readPipelineFile(path string) (*sdk.PipelineDef, error) {
	var (
		b   []byte
		err error
	)
	if path == "-" {
		b, err = io.ReadAll(io.LimitReader(os.Stdin, 2<<20))
	} else {
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, usagef("pipeline file %s: %v", path, err)
	}
	def, err := sdk.ParsePipeline(b)
	if err != nil {
		return nil, usagef("%s: %v", path, err)
	}
	return def, nil
}

func newPipelineSubmitCmd(g *globals) *cobra.Command {
	var (
		params []string
		wait   bool
		output string
	)
	c := &cobra.Command{
		Use:   "submit FILE.yaml [--param k=v]... [--wait]",
		Short: "Submit a pipeline definition; the job master runs it",
		Long: `Submit the pipeline defined in FILE.yaml ("-": stdin). The definition and the
parameters are checked first — a cycle, an 'after' naming no step, an
unknown plan, a bad template, a missing parameter are refused naming the
step, and nothing is stored. It prints the run's id; 'pipeline wait RUN' or
--wait follows it (exit 0 only if it SUCCEEDED). The run goes on if this
command is interrupted.`,
		Example: `  alluvium pipeline submit configs/pipelines/example.yaml --param date=2026-12-06
  alluvium pipeline submit nightly.yaml --wait --output json`,
		Args: exactArgs(1, "FILE.yaml"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkJobOutput(output); err != nil {
				return err
			}
			def, err := readPipelineFile(args[0])
			if err != nil {
				return err
			}
			pm, err := sdk.ParseParams(params)
			if err != nil {
				return usagef("--param: %v", err)
			}
			cl, ps, err := pipelinesClient(cmd, g)
			if err != nil {
				return err
			}
			defer cl.Close()
			run, err := ps.Submit(cmd.Context(), def, sdk.WithParams(pm))
			if err != nil {
				return jobErr(err)
			}
			out := cmd.OutOrStdout()
			if !wait {
				if output == "json" {
					return writeJSON(out, jobview.FromRun(run))
				}
				fmt.Fprintf(out, "Submitted pipeline %s as run %d (%d steps)\n", run.GetName(), run.GetId(), len(run.GetSteps()))
				return nil
			}
			if output != "json" {
				fmt.Fprintf(out, "Submitted pipeline %s as run %d (%d steps)\n", run.GetName(), run.GetId(), len(run.GetSteps()))
			}
			return waitPipeline(cmd, ps, run.GetId(), output)
		},
	}
	c.Flags().StringArrayVar(&params, "param", nil, "a parameter of the run, NAME=VALUE (repeat for more)")
	c.Flags().BoolVar(&wait, "wait", false, "follow the run to its end; exit 0 only if it SUCCEEDED")
	c.Flags().StringVar(&output, "output", "", "output format: json")
	return c
}

// waitPipeline follows run id, printing each step change (text) or the
// final run (json), and exits 1 unless it SUCCEEDED.
func waitPipeline(cmd *cobra.Command, ps *sdk.Pipelines, id int64, output string) error {
	out := cmd.OutOrStdout()
	seen := map[string]string{}
	final, err := ps.Wait(cmd.Context(), id, func(r *sdk.PipelineRun) {
		if output == "json" {
			return
		}
		for _, s := range r.GetSteps() {
			line := stepLine(s)
			if seen[s.GetName()] != line {
				seen[s.GetName()] = line
				fmt.Fprintf(out, "%s  %s\n", time.Now().Format("15:04:05"), line)
			}
		}
	})
	var re *sdk.PipelineRunError
	if err != nil && !errors.As(err, &re) {
		return jobErr(err)
	}
	if output == "json" {
		if err := writeJSON(out, jobview.FromRun(final)); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(out, "Pipeline %s run %d %s", final.GetName(), final.GetId(), final.GetStatus())
		if final.GetFinishedMs() > 0 {
			fmt.Fprintf(out, " in %s", msDur(final.GetFinishedMs()-final.GetCreatedMs()))
		}
		if final.GetError() != "" {
			fmt.Fprintf(out, ": %s", final.GetError())
		}
		fmt.Fprintln(out)
	}
	if final.GetStatus() != api.PipelineRun_SUCCEEDED {
		return exitError{exitFail}
	}
	return nil
}

func msDur(ms int64) time.Duration {
	d := time.Duration(ms) * time.Millisecond
	if d > time.Minute {
		return d.Round(time.Second)
	}
	return d.Round(10 * time.Millisecond)
}

// stepLine is one step in a few words: name, status, attempt, job, why.
func stepLine(s *api.PipelineStepState) string {
	var b strings.Builder
	fmt.Fprintf(&b, "step %s %s", s.GetName(), s.GetStatus())
	if s.GetAttempt() > 0 {
		fmt.Fprintf(&b, " attempt %d/%d", s.GetAttempt(), max(s.GetRetry().GetAttempts(), 1))
	}
	if s.GetJobId() != 0 {
		fmt.Fprintf(&b, " job %d", s.GetJobId())
	}
	if s.GetRetryAtMs() != 0 {
		fmt.Fprintf(&b, " (retry at %s)", time.UnixMilli(s.GetRetryAtMs()).Format("15:04:05"))
	}
	if s.GetError() != "" {
		fmt.Fprintf(&b, ": %s", s.GetError())
	} else if s.GetReason() != "" {
		fmt.Fprintf(&b, " (%s)", s.GetReason())
	}
	return b.String()
}

func newPipelineLsCmd(g *globals) *cobra.Command {
	var (
		name, policy, output string
		statuses             []string
		limit                int
	)
	c := &cobra.Command{
		Use:   "ls",
		Short: "List pipeline runs, newest first: trigger, steps done, outcome",
		Example: `  alluvium pipeline ls
  alluvium pipeline ls --status RUNNING
  alluvium pipeline ls --name nightly --limit 5 --output json`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkJobOutput(output); err != nil {
				return err
			}
			o := sdk.ListPipelinesOptions{Name: name, Policy: policy, Limit: limit, NewestFirst: true}
			for _, s := range statuses {
				v, ok := api.PipelineRun_Status_value[strings.ToUpper(s)]
				if !ok || v == 0 {
					return usagef("--status %q: want RUNNING, SUCCEEDED, FAILED or CANCELED", s)
				}
				o.Statuses = append(o.Statuses, api.PipelineRun_Status(v))
			}
			cl, ps, err := pipelinesClient(cmd, g)
			if err != nil {
				return err
			}
			defer cl.Close()
			runs, err := ps.List(cmd.Context(), o)
			if err != nil {
				return jobErr(err)
			}
			out := cmd.OutOrStdout()
			if output == "json" {
				v := make([]jobview.Pipeline, 0, len(runs))
				for _, r := range runs {
					v = append(v, jobview.FromRun(r))
				}
				return writeJSON(out, v)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "RUN\tNAME\tSTATUS\tSTEPS\tTRIGGER\tCREATED\tDURATION\tERROR")
			for _, r := range runs {
				done := 0
				for _, s := range r.GetSteps() {
					if s.GetStatus() == api.PipelineStepState_SUCCEEDED {
						done++
					}
				}
				dur := "-"
				if r.GetFinishedMs() > 0 {
					dur = msDur(r.GetFinishedMs() - r.GetCreatedMs()).String()
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%d/%d\t%s\t%s\t%s\t%s\n", r.GetId(), r.GetName(), r.GetStatus(), done, len(r.GetSteps()),
					triggerWords(r.GetTrigger()), time.UnixMilli(r.GetCreatedMs()).Format("2006-01-02 15:04:05"), dur, clip(r.GetError(), 60))
			}
			return tw.Flush()
		},
	}
	c.Flags().StringVar(&name, "name", "", "only runs of this pipeline")
	c.Flags().StringVar(&policy, "policy", "", "only runs this policy launched")
	c.Flags().StringSliceVar(&statuses, "status", nil, "only runs in these statuses (RUNNING, SUCCEEDED, FAILED, CANCELED)")
	c.Flags().IntVar(&limit, "limit", 50, "at most this many runs (0: all)")
	c.Flags().StringVar(&output, "output", "", "output format: json")
	return c
}

// triggerWords says what started a run.
func triggerWords(t *api.PipelineTrigger) string {
	switch t.GetKind() {
	case api.PipelineTrigger_CRON:
		return fmt.Sprintf("policy %s (cron %s)", t.GetPolicy(), time.UnixMilli(t.GetScheduledMs()).UTC().Format("01-02 15:04:05"))
	case api.PipelineTrigger_RUN_NOW:
		return fmt.Sprintf("policy %s (run-now)", t.GetPolicy())
	case api.PipelineTrigger_EVENTS:
		return fmt.Sprintf("policy %s (%d files)", t.GetPolicy(), t.GetEvents())
	}
	return "manual"
}

// clip is s on one line, cut to n runes for a table.
func clip(s string, n int) string {
	r := []rune(oneLine(s))
	if len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return string(r)
}

func newPipelineStatCmd(g *globals) *cobra.Command {
	return newRunCmd(g, "stat", "Show a pipeline run: each step's status, attempts, jobs and times", `  alluvium pipeline stat 3
  alluvium pipeline stat 3 --output json`, true,
		func(cmd *cobra.Command, ps *sdk.Pipelines, id int64, output string) error {
			r, err := ps.Get(cmd.Context(), id)
			if err != nil {
				return jobErr(err)
			}
			out := cmd.OutOrStdout()
			if output == "json" {
				return writeJSON(out, jobview.FromRun(r))
			}
			fmt.Fprintf(out, "Run %d of pipeline %s: %s\n", r.GetId(), r.GetName(), r.GetStatus())
			if r.GetError() != "" {
				fmt.Fprintf(out, "Error: %s\n", r.GetError())
			}
			fmt.Fprintf(out, "Trigger: %s; submitter %s; created %s", triggerWords(r.GetTrigger()), r.GetSubmitter(), time.UnixMilli(r.GetCreatedMs()).Format(time.DateTime))
			if r.GetFinishedMs() > 0 {
				fmt.Fprintf(out, "; took %s", msDur(r.GetFinishedMs()-r.GetCreatedMs()))
			}
			fmt.Fprintln(out)
			if p := r.GetParamsJson(); p != "" && p != "{}" {
				fmt.Fprintf(out, "Params: %s\n", p)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "STEP\tPLAN\tSTATUS\tATTEMPT\tJOBS\tAFTER\tSTARTED\tDURATION\tERROR/REASON")
			for _, s := range r.GetSteps() {
				name := s.GetName()
				if s.GetOnFailure() {
					name += " (on failure)"
				}
				jobs := "-"
				if len(s.GetJobIds()) > 0 {
					var js []string
					for _, j := range s.GetJobIds() {
						js = append(js, strconv.FormatInt(j, 10))
					}
					jobs = strings.Join(js, ",")
				}
				started, dur := "-", "-"
				if s.GetStartedMs() > 0 {
					started = time.UnixMilli(s.GetStartedMs()).Format("15:04:05")
					end := s.GetFinishedMs()
					if end == 0 {
						end = time.Now().UnixMilli()
					}
					dur = msDur(end - s.GetStartedMs()).String()
				}
				why := s.GetError()
				if why == "" {
					why = s.GetReason()
				}
				after := strings.Join(s.GetAfter(), ",")
				if after == "" {
					after = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s\t%s\t%s\t%s\t%s\n", name, s.GetPlan(), s.GetStatus(), s.GetAttempt(),
					max(s.GetRetry().GetAttempts(), 1), jobs, after, started, dur, clip(why, 80))
			}
			return tw.Flush()
		})
}

func newPipelineCancelCmd(g *globals) *cobra.Command {
	return newRunCmd(g, "cancel", "Cancel a pipeline run: its running steps' jobs are cancelled, no other step starts",
		`  alluvium pipeline cancel 3`, false,
		func(cmd *cobra.Command, ps *sdk.Pipelines, id int64, _ string) error {
			if _, err := ps.Cancel(cmd.Context(), id); err != nil {
				return jobErr(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Canceled pipeline run %d\n", id)
			return nil
		})
}

func newPipelineWaitCmd(g *globals) *cobra.Command {
	return newRunCmd(g, "wait", "Follow a pipeline run to its end; exit 0 only if it SUCCEEDED", `  alluvium pipeline wait 3
  alluvium pipeline wait 3 --output json`, true, waitPipeline)
}

// newRunCmd is a command on one run (VERB RUN [--output json]): it reads
// the id, connects and calls do.
func newRunCmd(g *globals, verb, short, example string, withOutput bool, do func(cmd *cobra.Command, ps *sdk.Pipelines, id int64, output string) error) *cobra.Command {
	var output string
	c := &cobra.Command{
		Use: verb + " RUN", Short: short, Example: example,
		Args: exactArgs(1, "RUN"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkJobOutput(output); err != nil {
				return err
			}
			id, err := parseRunID(args[0])
			if err != nil {
				return err
			}
			cl, ps, err := pipelinesClient(cmd, g)
			if err != nil {
				return err
			}
			defer cl.Close()
			return do(cmd, ps, id, output)
		},
	}
	if withOutput {
		c.Flags().StringVar(&output, "output", "", "output format: json")
	}
	return c
}
