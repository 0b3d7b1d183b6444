package sdk

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/alluvium/alluvium/internal/pipespec"
)

// A Pipeline is a DAG of steps run by Run: each step is a job (a plan and
// its config, submitted and waited on) or a Go function. A step starts once
// every step it comes After has SUCCEEDED; independent steps run at the same
// time (up to Parallelism). A failed attempt is retried with exponential
// backoff as the step's RetryPolicy says; a step that fails for good marks
// every step depending on it SKIPPED, saying why, while independent
// branches carry on (unless FailFast). Cancelling Run's context cancels the
// steps' running jobs on the job master and stops the pipeline.
//
// Build a pipeline once and run it as often as you like, even concurrently
// (Run does not change it); Schedule runs one on a cron schedule. Adding
// steps while it runs is not supported.
//
//	p := sdk.NewPipeline("refresh", sdk.DefaultRetry(sdk.RetryPolicy{Attempts: 3}))
//	p.Job("warm", sdk.JobSpec{Plan: "load", Config: sdk.LoadConfig{Path: "/in"}})
//	p.Job("copy", sdk.JobSpec{Plan: "copy", Config: map[string]any{"src": "/in", "dst": "/out"}}, sdk.After("warm"))
//	p.Job("persist", sdk.JobSpec{Plan: "persist", Config: map[string]any{"path": "/out"}}, sdk.After("copy"))
//	report, err := p.Run(ctx, client)
//	fmt.Print(report)
type Pipeline struct {
	name        string
	steps       []*step
	parallelism int
	retry       RetryPolicy
	failFast    bool
	onEvent     func(Event)
	cancelGrace time.Duration
}

// JobSpec is a job a step submits: a plan name ("load", "copy", "persist",
// …) and its config — anything Jobs.Submit accepts (a struct such as
// LoadConfig, a map, or JSON as []byte or string).
type JobSpec struct {
	Plan   string
	Config any
}

// step is one node of the DAG. Exactly one of job, jobFn and fn is set.
type step struct {
	name     string
	index    int
	job      *JobSpec
	jobFn    func(ctx context.Context) (JobSpec, error)
	fn       func(ctx context.Context) error
	after    []string
	retry    *RetryPolicy
	timeout  time.Duration
	progress func(*JobInfo)
	invalid  []string // option errors, reported by Validate
}

func (s *step) kind() string {
	if s.fn != nil {
		return "func"
	}
	if s.job != nil {
		return "job " + s.job.Plan
	}
	return "job"
}

// PipelineOption configures NewPipeline.
type PipelineOption func(*Pipeline)

// Parallelism bounds how many steps run at once (default 0: no bound). A
// step holds its slot from its first attempt to its end, backoffs included.
func Parallelism(n int) PipelineOption { return func(p *Pipeline) { p.parallelism = n } }

// DefaultRetry sets the retry policy of steps that set none (default: one
// attempt, no retry).
func DefaultRetry(r RetryPolicy) PipelineOption { return func(p *Pipeline) { p.retry = r } }

// FailFast stops the whole pipeline when a step fails for good: running
// steps are cancelled (their jobs too) and steps not started are SKIPPED.
// Without it only the failed step's dependents are skipped.
func FailFast() PipelineOption { return func(p *Pipeline) { p.failFast = true } }

// OnEvent calls f on every step event: attempt started, job submitted, job
// progress, retry scheduled, step finished. Calls are serialized (never two
// at once) and come from the goroutines running the steps, so f should be
// quick. LogEvents gives a ready-made f.
func OnEvent(f func(Event)) PipelineOption { return func(p *Pipeline) { p.onEvent = f } }

// CancelGrace bounds how long a cancelled step waits for the job master to
// confirm that its job is CANCELED (default 30s).
func CancelGrace(d time.Duration) PipelineOption { return func(p *Pipeline) { p.cancelGrace = d } }

// StepOption configures one step.
type StepOption func(*step)

// After makes the step wait for the named steps to succeed.
func After(names ...string) StepOption {
	return func(s *step) { s.after = append(s.after, names...) }
}

// Retry sets the step's retry policy (default: the pipeline's DefaultRetry).
func Retry(r RetryPolicy) StepOption {
	return func(s *step) { s.retry = &r }
}

// Retries lets the step be retried n times (n+1 attempts) with the default
// backoff: 1s, doubling, at most 1m between attempts.
func Retries(n int) StepOption {
	return func(s *step) {
		if n < 0 {
			s.invalid = append(s.invalid, fmt.Sprintf("Retries(%d): want >= 0", n))
			return
		}
		s.retry = &RetryPolicy{Attempts: n + 1}
	}
}

// StepTimeout bounds each attempt of the step. A job still running at the
// deadline is cancelled and the attempt fails (and is retried if the policy
// allows).
func StepTimeout(d time.Duration) StepOption {
	return func(s *step) {
		if d <= 0 {
			s.invalid = append(s.invalid, fmt.Sprintf("StepTimeout(%s): want > 0", d))
			return
		}
		s.timeout = d
	}
}

// OnJobProgress calls f with every state of the step's job the job master
// reports (a job step only), from the step's goroutine.
func OnJobProgress(f func(*JobInfo)) StepOption {
	return func(s *step) { s.progress = f }
}

// NewPipeline returns an empty pipeline called name.
func NewPipeline(name string, opts ...PipelineOption) *Pipeline {
	p := &Pipeline{name: name, cancelGrace: 30 * time.Second}
	for _, o := range opts {
		o(p)
	}
	return p
}

// Name returns the pipeline's name.
func (p *Pipeline) Name() string { return p.name }

// Steps returns the step names in the order they were added.
func (p *Pipeline) Steps() []string {
	out := make([]string, len(p.steps))
	for i, s := range p.steps {
		out[i] = s.name
	}
	return out
}

func (p *Pipeline) add(s *step, opts []StepOption) *Pipeline {
	for _, o := range opts {
		o(s)
	}
	s.index = len(p.steps)
	p.steps = append(p.steps, s)
	return p
}

// Job adds a step that submits spec and waits for the job to end; the step
// succeeds when the job COMPLETES. Every attempt submits a new job.
func (p *Pipeline) Job(name string, spec JobSpec, opts ...StepOption) *Pipeline {
	return p.add(&step{name: name, job: &spec}, opts)
}

// JobFunc adds a job step whose spec is computed when the step starts, e.g.
// from a date or from what an earlier step found (see Upstream). An error
// from f fails the attempt like a failed job.
func (p *Pipeline) JobFunc(name string, f func(ctx context.Context) (JobSpec, error), opts ...StepOption) *Pipeline {
	return p.add(&step{name: name, jobFn: f}, opts)
}

// Func adds a step that runs f. f must return when ctx is cancelled: Run
// waits for it.
func (p *Pipeline) Func(name string, f func(ctx context.Context) error, opts ...StepOption) *Pipeline {
	return p.add(&step{name: name, fn: f}, opts)
}

// ErrInvalidPipeline is what Validate and Run return (wrapped, and matching
// ErrInvalidArgument too) for a pipeline that cannot run: a duplicate or
// empty step name, an unknown dependency, a cycle, a bad option.
var ErrInvalidPipeline = errors.New("invalid pipeline")

type invalidPipelineError struct{ msg string }

func (e *invalidPipelineError) Error() string { return e.msg }
func (e *invalidPipelineError) Is(target error) bool {
	return target == ErrInvalidPipeline || target == ErrInvalidArgument
}

func (p *Pipeline) invalidf(format string, args ...any) error {
	return &invalidPipelineError{msg: fmt.Sprintf("pipeline %q: ", p.name) + fmt.Sprintf(format, args...)}
}

// Validate checks the pipeline without running anything: step names are
// non-empty and unique, every dependency names a step, there is no cycle,
// options are in range.
func (p *Pipeline) Validate() error {
	_, err := p.plan()
	return err
}

// graph is a validated pipeline: deps[i] and dependents[i] are step indexes.
type graph struct {
	deps       [][]int
	dependents [][]int
}

func (p *Pipeline) plan() (*graph, error) {
	if len(p.steps) == 0 {
		return nil, p.invalidf("no steps")
	}
	if p.parallelism < 0 {
		return nil, p.invalidf("Parallelism(%d): want >= 0", p.parallelism)
	}
	if p.cancelGrace <= 0 {
		return nil, p.invalidf("CancelGrace(%s): want > 0", p.cancelGrace)
	}
	if err := p.retry.check(); err != nil {
		return nil, p.invalidf("DefaultRetry: %v", err)
	}
	byName := make(map[string]int, len(p.steps))
	for i, s := range p.steps {
		if strings.TrimSpace(s.name) == "" {
			return nil, p.invalidf("step %d has an empty name", i+1)
		}
		if j, dup := byName[s.name]; dup {
			return nil, p.invalidf("duplicate step name %q (steps %d and %d)", s.name, j+1, i+1)
		}
		byName[s.name] = i
		if len(s.invalid) > 0 {
			return nil, p.invalidf("step %q: %s", s.name, strings.Join(s.invalid, "; "))
		}
		switch {
		case s.fn == nil && s.job == nil && s.jobFn == nil:
			return nil, p.invalidf("step %q: nil function", s.name)
		case s.job != nil && strings.TrimSpace(s.job.Plan) == "":
			return nil, p.invalidf("step %q: job spec without a plan", s.name)
		}
		if s.retry != nil {
			if err := s.retry.check(); err != nil {
				return nil, p.invalidf("step %q: retry: %v", s.name, err)
			}
		}
	}
	g := &graph{deps: make([][]int, len(p.steps)), dependents: make([][]int, len(p.steps))}
	for i, s := range p.steps {
		seen := map[int]bool{}
		for _, d := range s.after {
			j, ok := byName[d]
			if !ok {
				return nil, p.invalidf("step %q depends on unknown step %q (steps: %s)", s.name, d, strings.Join(p.Steps(), ", "))
			}
			if seen[j] {
				continue
			}
			seen[j] = true
			g.deps[i] = append(g.deps[i], j)
			g.dependents[j] = append(g.dependents[j], i)
		}
	}
	if cyc := pipespec.Cycle(g.deps); cyc != nil {
		names := make([]string, len(cyc))
		for k, i := range cyc {
			names[k] = fmt.Sprintf("%q", p.steps[i].name)
		}
		return nil, p.invalidf("dependency cycle: %s (each waits for the next)", strings.Join(names, " → "))
	}
	return g, nil
}

// RetryPolicy says how often a step is tried and how long to wait between
// tries: Backoff before the second attempt, then Multiplier times longer
// each time, never more than MaxBackoff.
type RetryPolicy struct {
	// Attempts is the total number of tries, the first included (0 or 1:
	// no retry).
	Attempts int
	// Backoff is the wait before the first retry (default 1s).
	Backoff time.Duration
	// MaxBackoff caps the wait (default 1m).
	MaxBackoff time.Duration
	// Multiplier grows the wait after each retry (default 2; >= 1).
	Multiplier float64
	// Retryable says whether an attempt's error is worth another try
	// (default: DefaultRetryable).
	Retryable func(error) bool
}

func (r RetryPolicy) check() error {
	switch {
	case r.Attempts < 0:
		return fmt.Errorf("Attempts %d: want >= 0", r.Attempts)
	case r.Backoff < 0:
		return fmt.Errorf("Backoff %s: want >= 0", r.Backoff)
	case r.MaxBackoff < 0:
		return fmt.Errorf("MaxBackoff %s: want >= 0", r.MaxBackoff)
	case r.Multiplier != 0 && r.Multiplier < 1:
		return fmt.Errorf("Multiplier %g: want >= 1", r.Multiplier)
	}
	return nil
}

func (r RetryPolicy) attempts() int { return max(r.Attempts, 1) }

// Delay returns the wait before retry n (1: the first retry).
func (r RetryPolicy) Delay(n int) time.Duration {
	return pipespec.Backoff(r.Backoff, r.MaxBackoff, r.Multiplier, n)
}

func (r RetryPolicy) retryable(err error) bool {
	if r.Retryable != nil {
		return r.Retryable(err)
	}
	return DefaultRetryable(err)
}

// DefaultRetryable reports whether err may go away on another try. Not
// retried: errors marked Permanent, bad input (ErrInvalidArgument,
// ErrNotFound, ErrAlreadyExists), refused access (ErrPermissionDenied,
// ErrUnauthenticated), a job someone else cancelled (ErrJobCanceled) and a
// cancelled context. Everything else — a FAILED job, an unreachable master,
// a Go function's error — is.
func DefaultRetryable(err error) bool {
	var pe *permanentError
	switch {
	case err == nil:
		return false
	case errors.As(err, &pe),
		errors.Is(err, ErrInvalidArgument),
		errors.Is(err, ErrNotFound),
		errors.Is(err, ErrAlreadyExists),
		errors.Is(err, ErrPermissionDenied),
		errors.Is(err, ErrUnauthenticated),
		errors.Is(err, ErrJobCanceled),
		errors.Is(err, context.Canceled):
		return false
	}
	return true
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as not worth retrying: a step whose attempt returns it
// fails at once, whatever its retry policy's Attempts (unless its Retryable
// says otherwise). Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}
