package plans

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/plans/spec"
)

// Noop plans every file under a path as the per-file plans do — listed
// page by page, batched per block worker caching most of each file, each
// task placed on the job worker beside it — and its tasks do nothing but
// count their files. It checks the job service end to end (listing,
// placement, dispatch, commits in raft, the workers' reports) without
// touching a byte, and it is what the job service's own cost is measured
// with: the built-in twin of the plan plugin in the benchmark of plugin
// overhead (tests/bench PluginOverhead; sdk/examples/noop-plan is the same
// plan as a plugin). Alluxio's job service ships a no-op plan for its
// stress bench in the same spirit.
type Noop struct{}

// Name implements Plan.
func (Noop) Name() string { return "noop" }

// Validate implements Plan: the path must exist and the submitter must be
// able to read all of it (listing it is reading it).
func (Noop) Validate(ctx context.Context, env Env, config []byte) (spec.Valid, error) {
	c, err := spec.DecodeNoop(config)
	if err != nil {
		return spec.Valid{}, err
	}
	if _, err := statPath(ctx, env, "noop", c.Path); err != nil {
		return spec.Valid{}, err
	}
	if err := requireAccess(ctx, env, "noop", c.Path, accessRead, true); err != nil {
		return spec.Valid{}, err
	}
	return spec.Accept(c)
}

// Done implements Plan: one round.
func (Noop) Done(context.Context, Env, Job) (bool, error) { return true, nil }

// NoopItem is one file of a noop task (its JSON is the plugin twin's too).
type NoopItem struct {
	Path   string `json:"p"`
	Length int64  `json:"l"`
}

// NoopOutput is a noop task's Output: the files it counted.
type NoopOutput struct {
	Files int `json:"files"`
}

// NewPlanner implements Plan.
func (Noop) NewPlanner(ctx context.Context, env Env, job Job) (Planner, error) {
	c, err := spec.DecodeNoop(job.Config)
	if err != nil {
		return nil, err
	}
	gen := eachFileHeld(func(f *api.FileInfo) (any, *api.FailedPath) {
		return NoopItem{Path: f.GetPath(), Length: f.GetLength()}, nil
	})
	return newItemPlanner(env, "noop", job, walkOpts{Root: c.Path, PageSize: c.PageSize, Blocks: true}, c.Batching, gen)
}

// Run implements Plan: it decodes its files and reports them done, their
// bytes as covered, reading none.
func (Noop) Run(_ context.Context, _ Env, t *Task) (Result, error) {
	var a itemArgs
	if err := json.Unmarshal(t.Args, &a); err != nil {
		return Result{}, fmt.Errorf("noop task %d/%d: bad args: %w", t.JobID, t.TaskID, err)
	}
	var res Result
	for _, raw := range a.Items {
		var it NoopItem
		if err := json.Unmarshal(raw, &it); err != nil {
			return Result{}, fmt.Errorf("noop task %d/%d: bad item: %w", t.JobID, t.TaskID, err)
		}
		res.Bytes += it.Length
	}
	res.Output, _ = json.Marshal(NoopOutput{Files: len(a.Items)})
	return res, nil
}
