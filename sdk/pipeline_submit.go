package sdk

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/pipespec"
)

// Pipelines the cluster keeps. Run runs a Pipeline in this process: kill
// the process and the pipeline is gone. Submit hands it to the job master
// instead: the run is stored in the job master's raft state and driven by
// whichever job master leads, so it carries on when the submitter exits or
// the leader fails over, and anyone can watch it (Pipelines.Get, Wait,
// `alluvium pipeline stat RUN`).

// PipelineDef is a pipeline definition as the job master takes it (what
// ParsePipeline reads from YAML, or Pipeline.Definition builds).
type PipelineDef = api.PipelineDef

// PipelineRun is one run of a submitted pipeline as the job master keeps
// it: its steps with status, attempts, jobs and times.
type PipelineRun = api.PipelineRun

// Pipeline run statuses.
const (
	PipelineRunning   = api.PipelineRun_RUNNING
	PipelineSucceeded = api.PipelineRun_SUCCEEDED
	PipelineFailed    = api.PipelineRun_FAILED
	PipelineCanceled  = api.PipelineRun_CANCELED
)

// Errors Pipelines.Wait returns for a run that did not succeed; the
// *PipelineRunError carries the run.
var (
	ErrPipelineFailed   = errors.New("pipeline failed")
	ErrPipelineCanceled = errors.New("pipeline canceled")
)

// PipelineRunError is a run that ended FAILED or CANCELED.
type PipelineRunError struct {
	Run  *PipelineRun
	kind error
}

func (e *PipelineRunError) Error() string {
	msg := fmt.Sprintf("pipeline %s run %d %s", e.Run.GetName(), e.Run.GetId(), e.Run.GetStatus())
	if e.Run.GetError() != "" {
		msg += ": " + e.Run.GetError()
	}
	return msg
}

// Is makes errors.Is(err, ErrPipelineFailed) work.
func (e *PipelineRunError) Is(target error) bool { return e.kind == target }

// ParsePipeline reads a pipeline definition in its YAML form (see
// configs/pipelines/example.yaml) and checks it: an unknown key, a bad
// duration, a cycle, an After naming no step or a bad template is an
// ErrInvalidPipeline error naming the step.
func ParsePipeline(yaml []byte) (*PipelineDef, error) {
	def, err := pipespec.Parse(yaml)
	if err != nil {
		return nil, &invalidPipelineError{msg: err.Error()}
	}
	return def, nil
}

// Definition returns the pipeline as a definition the job master can run:
// job steps only. A Func or JobFunc step is a Go function that only this
// process can call, and a Retryable is one too: they make it an
// ErrInvalidPipeline error naming the step (use Run for them). OnEvent and
// OnJobProgress observe a Run only; a submitted run is watched with
// Pipelines.Wait.
func (p *Pipeline) Definition() (*PipelineDef, error) {
	if _, err := p.plan(); err != nil {
		return nil, err
	}
	retry := func(r RetryPolicy) *api.PipelineRetry {
		return &api.PipelineRetry{Attempts: int32(r.Attempts), BackoffMs: r.Backoff.Milliseconds(), MaxBackoffMs: r.MaxBackoff.Milliseconds(), Multiplier: r.Multiplier}
	}
	if p.retry.Retryable != nil {
		return nil, p.invalidf("DefaultRetry has a Retryable function: a submitted pipeline cannot call it (use Run)")
	}
	def := &api.PipelineDef{Name: p.name, Parallelism: int32(p.parallelism), FailFast: p.failFast}
	if r := p.retry; r.Attempts != 0 || r.Backoff != 0 || r.MaxBackoff != 0 || r.Multiplier != 0 {
		def.Retry = retry(p.retry)
	}
	for _, s := range p.steps {
		if s.fn != nil || s.jobFn != nil {
			return nil, p.invalidf("step %q is a Go function (%s): a submitted pipeline runs in the job master, which cannot call it; use Run, or make it a Job step", s.name, map[bool]string{true: "Func", false: "JobFunc"}[s.fn != nil])
		}
		cfg, err := configJSON("pipeline submit", s.name, s.job.Config)
		if err != nil {
			return nil, p.invalidf("step %q: config: %v", s.name, err)
		}
		ps := &api.PipelineStep{Name: s.name, Plan: s.job.Plan, ConfigJson: cfg, After: s.after, TimeoutMs: s.timeout.Milliseconds()}
		if s.retry != nil {
			if s.retry.Retryable != nil {
				return nil, p.invalidf("step %q: its retry has a Retryable function: a submitted pipeline cannot call it (use Run)", s.name)
			}
			ps.Retry = retry(*s.retry)
		}
		def.Steps = append(def.Steps, ps)
	}
	if err := pipespec.Check(def, nil); err != nil {
		return nil, &invalidPipelineError{msg: err.Error()}
	}
	return def, nil
}

// Submit hands the pipeline to the job master (see Definition for what it
// refuses) and returns the run as first stored. Pipelines.Wait follows it.
func (p *Pipeline) Submit(ctx context.Context, c *Client, opts ...RunOption) (*PipelineRun, error) {
	def, err := p.Definition()
	if err != nil {
		return nil, err
	}
	ps, err := c.Pipelines()
	if err != nil {
		return nil, err
	}
	return ps.Submit(ctx, def, opts...)
}

// Pipelines is the client of the pipelines the job master keeps.
type Pipelines struct{ j *Jobs }

// Pipelines returns the pipeline client of c.
func (c *Client) Pipelines() (*Pipelines, error) {
	j, err := c.Jobs()
	if err != nil {
		return nil, err
	}
	return &Pipelines{j: j}, nil
}

// RunOption tunes Pipelines.Submit.
type RunOption func(*api.SubmitPipelineRequest)

// WithParams gives the run's parameters: the definition's templates see
// them as {{.name}}.
func WithParams(params map[string]string) RunOption {
	return func(r *api.SubmitPipelineRequest) {
		if r.Params == nil {
			r.Params = map[string]string{}
		}
		for k, v := range params {
			r.Params[k] = v
		}
	}
}

// WithRunRequestID sets the idempotency key of a submit (default: a random
// one): a submit retried with the same id returns the first run.
func WithRunRequestID(id string) RunOption {
	return func(r *api.SubmitPipelineRequest) { r.RequestId = id }
}

// Submit stores a run of def with the job master, which renders the
// parameters into the steps' configs and checks them (an ErrInvalidArgument
// error naming the step when something is wrong, and nothing stored).
func (ps *Pipelines) Submit(ctx context.Context, def *PipelineDef, opts ...RunOption) (*PipelineRun, error) {
	req := &api.SubmitPipelineRequest{Pipeline: def}
	for _, o := range opts {
		o(req)
	}
	if req.RequestId == "" {
		req.RequestId = NewRequestID()
	}
	var resp *api.SubmitPipelineResponse
	err := ps.j.call(ctx, "pipeline submit", def.GetName(), func(ctx context.Context, c api.JobMasterClient) (err error) {
		resp, err = c.SubmitPipeline(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp.GetRun(), nil
}

// Get returns run id.
func (ps *Pipelines) Get(ctx context.Context, id int64) (*PipelineRun, error) {
	var resp *api.GetPipelineResponse
	err := ps.j.call(ctx, "pipeline stat", strconv.FormatInt(id, 10), func(ctx context.Context, c api.JobMasterClient) (err error) {
		resp, err = c.GetPipeline(ctx, &api.GetPipelineRequest{Id: id})
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp.GetRun(), nil
}

// ListPipelinesOptions filter Pipelines.List.
type ListPipelinesOptions struct {
	Name     string                   // only runs of this pipeline
	Statuses []api.PipelineRun_Status // any of these; none: all
	Policy   string                   // only runs this policy launched
	Limit    int                      // at most this many (0: all)
	// NewestFirst lists from the newest run down (default: oldest first).
	NewestFirst bool
}

// List returns the runs the job master keeps that match o.
func (ps *Pipelines) List(ctx context.Context, o ListPipelinesOptions) ([]*PipelineRun, error) {
	var out []*PipelineRun
	token := ""
	for {
		req := &api.ListPipelinesRequest{Name: o.Name, Statuses: o.Statuses, Policy: o.Policy, PageToken: token, NewestFirst: o.NewestFirst}
		if o.Limit > 0 {
			req.PageSize = int32(min(o.Limit-len(out), 1000))
		}
		var resp *api.ListPipelinesResponse
		err := ps.j.call(ctx, "pipeline ls", o.Name, func(ctx context.Context, c api.JobMasterClient) (err error) {
			resp, err = c.ListPipelines(ctx, req)
			return err
		})
		if err != nil {
			return nil, err
		}
		out = append(out, resp.GetRuns()...)
		token = resp.GetNextPageToken()
		if token == "" || (o.Limit > 0 && len(out) >= o.Limit) {
			return out, nil
		}
	}
}

// Cancel cancels run id: its running steps' jobs are cancelled and no
// other step starts. Cancelling a cancelled run is fine; one that ended
// otherwise is ErrFailedPrecondition.
func (ps *Pipelines) Cancel(ctx context.Context, id int64) (*PipelineRun, error) {
	var resp *api.CancelPipelineResponse
	err := ps.j.call(ctx, "pipeline cancel", strconv.FormatInt(id, 10), func(ctx context.Context, c api.JobMasterClient) (err error) {
		resp, err = c.CancelPipeline(ctx, &api.CancelPipelineRequest{Id: id})
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp.GetRun(), nil
}

// Wait blocks until run id ends, calling progress (if not nil) with each
// state the job master sends (one per change). It follows the job-master
// leader across failovers. It returns the final run, and a
// *PipelineRunError (errors.Is ErrPipelineFailed or ErrPipelineCanceled)
// unless it SUCCEEDED.
func (ps *Pipelines) Wait(ctx context.Context, id int64, progress func(*PipelineRun)) (*PipelineRun, error) {
	var last *PipelineRun
	done := func(r *PipelineRun) bool { return r.GetStatus() != api.PipelineRun_RUNNING }
	for run, err := range resumeWatch(ctx, ps.j, "pipeline wait", strconv.FormatInt(id, 10),
		func(ctx context.Context) (func() (*PipelineRun, error), error) {
			stream, err := ps.j.jm.WatchPipeline(ctx, &api.WatchPipelineRequest{Id: id})
			if err != nil {
				return nil, err
			}
			return stream.Recv, nil
		}, done) {
		if err != nil {
			return last, err
		}
		last = run
		if progress != nil {
			progress(run)
		}
	}
	if last == nil || !done(last) {
		var err error
		if last, err = ps.Get(ctx, id); err != nil {
			return nil, err
		}
	}
	switch last.GetStatus() {
	case api.PipelineRun_SUCCEEDED:
		return last, nil
	case api.PipelineRun_CANCELED:
		return last, &PipelineRunError{Run: last, kind: ErrPipelineCanceled}
	}
	return last, &PipelineRunError{Run: last, kind: ErrPipelineFailed}
}

// ParseParams reads k=v words (the CLI's --param) into a map; a word
// without '=' or with an empty key is ErrInvalidArgument.
func ParseParams(words []string) (map[string]string, error) {
	out := map[string]string{}
	for _, w := range words {
		k, v, ok := strings.Cut(w, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, &Error{Op: "pipeline submit", Path: w, Code: codes.InvalidArgument, Message: "want --param NAME=VALUE", kind: ErrInvalidArgument}
		}
		out[k] = v
	}
	return out, nil
}
