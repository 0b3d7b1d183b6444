package sdk

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/alluvium/alluvium/api"
)

// Policy is a policy as the job master reports it: its cron spec (or, for
// an event policy, its on_create path, debounce, batch bound and feed
// cursor), plan and config, whether it is enabled, its next and last run,
// its last job and that job's status, and counters.
type Policy = api.PolicyInfo

// PolicySpec is a policy to add.
type PolicySpec struct {
	// Name: 1-64 letters, digits, '.', '_' or '-'.
	Name string
	// Cron is when it runs: five fields ("0 3 * * *"), or six with seconds
	// first ("*/10 * * * * *"), or a descriptor (@hourly, @every 15m);
	// optionally prefixed by "CRON_TZ=Europe/Paris ". Without CRON_TZ the
	// job master reads it in UTC.
	Cron string
	// OnCreate, instead of Cron, makes it an event policy: it fires when
	// files are completed at or below this directory (written through
	// Alluvium; read from the FS master's completion feed, so a failover
	// of either master neither loses nor repeats a file). The first file
	// opens a window of Debounce (0: none); the files completed in it, at
	// most BatchMax (0: 1000; at most 10000), are one run. A plan's job is
	// narrowed to them: persist names the files, load, replicate and exec
	// run on their common path; a pipeline gets the parameters paths (the
	// list), path (the common path) and events (how many) where it
	// declares them. Overlap: the zero value queues an event policy's
	// batch while its last run runs (OverlapAllow starts it at once,
	// OverlapDrop drops it).
	OnCreate string
	Debounce time.Duration
	BatchMax int
	// Plan and Config are the job it submits each time, as Jobs.Submit
	// takes them (e.g. "load", LoadConfig{Path: "/hot"}).
	Plan   string
	Config any
	// Overlap says what a run due while the policy's last job still runs
	// does: OverlapSkip (the default), OverlapQueue or OverlapAllow.
	Overlap OverlapPolicy
	// NoCatchUp skips runs missed while no job master led; by default the
	// latest of them runs once when a leader is back.
	NoCatchUp bool
	// Paused adds it paused (Resume starts it).
	Paused bool
	// Pipeline, instead of Plan and Config, makes each run submit this
	// pipeline (a run the job master keeps, see Pipelines) with Params;
	// a parameter date or scheduled the definition declares and Params
	// does not set is the run's scheduled time.
	Pipeline *PipelineDef
	Params   map[string]string
}

// Policies is the client of the job master's cron policies. They live in
// the job master's raft state: only the leader fires them, and a failover
// neither loses nor repeats a run.
type Policies struct{ j *Jobs }

// Policies returns the policy client of c.
func (c *Client) Policies() (*Policies, error) {
	j, err := c.Jobs()
	if err != nil {
		return nil, err
	}
	return &Policies{j: j}, nil
}

func overlapName(o OverlapPolicy) (string, error) {
	switch o {
	case OverlapSkip:
		return "skip", nil
	case OverlapQueue:
		return "queue", nil
	case OverlapAllow:
		return "allow", nil
	case OverlapDrop:
		return "skip", nil
	}
	return "", fmt.Errorf("overlap %d: want OverlapSkip, OverlapQueue, OverlapAllow or OverlapDrop", o)
}

// Add adds a policy. The job master checks the spec, the plan and the
// config (as a submit would) and stores nothing if any is wrong: the error
// is ErrInvalidArgument (or ErrNotFound, ErrFailedPrecondition from the
// plan's checks, ErrAlreadyExists for a name taken).
func (p *Policies) Add(ctx context.Context, s PolicySpec) (*Policy, error) {
	invalid := func(msg string) error {
		return &Error{Op: "policy add", Path: s.Name, Code: codes.InvalidArgument, Message: msg, kind: ErrInvalidArgument}
	}
	var cfg string
	if s.Pipeline == nil {
		var err error
		if cfg, err = configJSON("policy add", s.Name, s.Config); err != nil {
			return nil, err
		}
	}
	overlap, err := overlapName(s.Overlap)
	if err != nil {
		return nil, invalid(err.Error())
	}
	if s.OnCreate != "" && s.Overlap == OverlapSkip {
		overlap = "" // the job master's default for events: queue
	}
	if s.BatchMax < 0 || s.BatchMax > 1<<30 {
		return nil, invalid(fmt.Sprintf("BatchMax %d: want 1 to 10000 (0: 1000)", s.BatchMax))
	}
	req := &api.AddPolicyRequest{
		Policy: &api.PolicyInfo{Name: s.Name, Cron: s.Cron, Plan: s.Plan, ConfigJson: cfg, Overlap: overlap, CatchUp: !s.NoCatchUp,
			Pipeline: s.Pipeline, PipelineParams: s.Params,
			OnCreate: s.OnCreate, DebounceMs: s.Debounce.Milliseconds(), BatchMax: int32(s.BatchMax)},
		Paused: s.Paused,
	}
	var resp *api.AddPolicyResponse
	err = p.j.call(ctx, "policy add", s.Name, func(ctx context.Context, c api.JobMasterClient) (err error) {
		resp, err = c.AddPolicy(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp.GetPolicy(), nil
}

// List returns every policy, by name.
func (p *Policies) List(ctx context.Context) ([]*Policy, error) {
	var resp *api.ListPoliciesResponse
	err := p.j.call(ctx, "policy ls", "", func(ctx context.Context, c api.JobMasterClient) (err error) {
		resp, err = c.ListPolicies(ctx, &api.ListPoliciesRequest{})
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp.GetPolicies(), nil
}

// Get returns policy name (ErrNotFound if there is none).
func (p *Policies) Get(ctx context.Context, name string) (*Policy, error) {
	ps, err := p.List(ctx)
	if err != nil {
		return nil, err
	}
	for _, x := range ps {
		if x.GetName() == name {
			return x, nil
		}
	}
	return nil, &Error{Op: "policy get", Path: name, Code: codes.NotFound, Message: "no such policy", kind: ErrNotFound}
}

// Remove deletes a policy. Jobs it launched go on.
func (p *Policies) Remove(ctx context.Context, name string) error {
	return p.j.call(ctx, "policy rm", name, func(ctx context.Context, c api.JobMasterClient) error {
		_, err := c.RemovePolicy(ctx, &api.RemovePolicyRequest{Name: name})
		return err
	})
}

// Pause stops a policy from firing until Resume; a run waiting in the
// overlap queue is dropped.
func (p *Policies) Pause(ctx context.Context, name string) (*Policy, error) {
	return p.setEnabled(ctx, "policy pause", name, false)
}

// Resume makes a paused policy fire again from now on (runs that fell due
// while it was paused are not caught up).
func (p *Policies) Resume(ctx context.Context, name string) (*Policy, error) {
	return p.setEnabled(ctx, "policy resume", name, true)
}

func (p *Policies) setEnabled(ctx context.Context, op, name string, on bool) (*Policy, error) {
	var resp *api.SetPolicyEnabledResponse
	err := p.j.call(ctx, op, name, func(ctx context.Context, c api.JobMasterClient) (err error) {
		resp, err = c.SetPolicyEnabled(ctx, &api.SetPolicyEnabledRequest{Name: name, Enabled: on})
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp.GetPolicy(), nil
}

// RunNow launches a run of the policy at once, outside its schedule and
// whatever its overlap policy, and returns the job's id (follow it with
// Jobs().Wait); 0 for a policy that fires a pipeline (see Fire). The
// schedule is not moved.
func (p *Policies) RunNow(ctx context.Context, name string) (int64, error) {
	job, _, err := p.Fire(ctx, name)
	return job, err
}

// Fire is RunNow that also returns, for a policy that fires a pipeline, the
// run's id (follow it with Pipelines().Wait); job is 0 then.
func (p *Policies) Fire(ctx context.Context, name string) (job, run int64, err error) {
	var resp *api.RunPolicyNowResponse
	err = p.j.call(ctx, "policy run-now", name, func(ctx context.Context, c api.JobMasterClient) (err error) {
		resp, err = c.RunPolicyNow(ctx, &api.RunPolicyNowRequest{Name: name})
		return err
	})
	if err != nil {
		return 0, 0, err
	}
	return resp.GetJobId(), resp.GetPipelineRunId(), nil
}
