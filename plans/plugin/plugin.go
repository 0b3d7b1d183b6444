// Package plugin runs plan plugins: executables in plans.dir that
// implement a plan over hashicorp/go-plugin (sdk/planplugin is their side).
// Job masters and job workers load them at start (Load) and register each
// as a plans.Plan; this package also holds the Env plans run with on both
// (env.go: files read and written as the job's user, the exec allow list).
//
// Supervision. Each plugin runs as a small pool of child processes; a
// call takes one process for itself. A process that exits or breaks its
// connection during a call is dropped and the call fails Unavailable —
// the job master retries the task (jobmaster.task.max-attempts) and the
// next call starts a new process. A call whose context ends (the task's
// timeout, a cancel) kills its process: a hung plugin is gone at the
// timeout, whatever it does. Plugins start with an empty environment
// (go-plugin's SkipHostEnv) and get no credentials: each process is served
// a PlanHost (host.go) on go-plugin's broker that answers only the call
// under way, acting for the job's user through this process's own client.
package plugin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/plans"
	"github.com/alluvium/alluvium/plans/spec"
	"github.com/alluvium/alluvium/sdk/planplugin"
)

// maxIdle is how many idle processes a plugin keeps.
const maxIdle = 8

// startTimeout bounds a plugin process's start and its Describe.
const startTimeout = 20 * time.Second

var (
	loadMu sync.Mutex
	loaded = map[string]*Plan{} // by executable path: a process (alluvium local) loads each once
)

// Load starts every executable in dir, asks each its name and version and
// registers it as a plan. A missing dir is no plugins; a file that is not
// a plan plugin, or names a built-in plan, is logged and skipped.
func Load(dir string, log *zap.Logger) []plans.Info {
	if log == nil {
		log = zap.NewNop()
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			log.Warn("plans.dir: cannot list plan plugins", zap.String("dir", dir), zap.Error(err))
		}
		return nil
	}
	var out []plans.Info
	for _, e := range ents {
		path := filepath.Join(dir, e.Name())
		st, err := os.Stat(path)
		if err != nil || !st.Mode().IsRegular() || st.Mode()&0o111 == 0 || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		p, err := load(path, log)
		if err != nil {
			log.Error("plan plugin not loaded", zap.String("path", path), zap.Error(err))
			continue
		}
		out = append(out, p.info)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	return out
}

func load(path string, log *zap.Logger) (*Plan, error) {
	loadMu.Lock()
	defer loadMu.Unlock()
	if p := loaded[path]; p != nil {
		return p, nil
	}
	if log == nil {
		log = zap.NewNop()
	}
	p := &Plan{path: path, log: log.With(zap.String("plugin", filepath.Base(path)))}
	inst, err := p.start()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	d, err := inst.conn.Client.Describe(ctx, &api.PluginDescribeRequest{})
	cancel()
	if err != nil {
		inst.kill()
		return nil, fmt.Errorf("describe: %w", err)
	}
	if d.GetName() == "" || d.GetVersion() == "" {
		inst.kill()
		return nil, fmt.Errorf("it names no plan or no version (name %q, version %q)", d.GetName(), d.GetVersion())
	}
	if old, ok := plans.Registered(d.GetName()); ok {
		if i := plans.InfoOf(old); i.Origin != plans.OriginPlugin {
			inst.kill()
			return nil, fmt.Errorf("it is called %q, a built-in plan", d.GetName())
		} else if i.Path != path {
			inst.kill()
			return nil, fmt.Errorf("plan %q is already loaded from %s", d.GetName(), i.Path)
		}
	}
	p.info = plans.Info{Name: d.GetName(), Origin: plans.OriginPlugin, Version: d.GetVersion(), Description: d.GetDescription(), Path: path}
	p.put(inst)
	plans.Register(p)
	loaded[path] = p
	p.log.Info("plan plugin loaded", zap.String("plan", p.info.Name), zap.String("version", p.info.Version))
	return p, nil
}

// Plan is a plugin as a plans.Plan.
type Plan struct {
	path string
	info plans.Info
	log  *zap.Logger

	mu   sync.Mutex
	idle []*instance
}

var (
	_ plans.Plan      = (*Plan)(nil)
	_ plans.Describer = (*Plan)(nil)
)

// instance is one plugin process and the host it calls back.
type instance struct {
	c        *goplugin.Client
	conn     *planplugin.Conn
	pid      int
	host     *hostServer
	hostID   uint32
	stopHost func()
	killed   sync.Once
}

func (i *instance) kill() {
	i.killed.Do(func() {
		if i.stopHost != nil {
			i.stopHost()
		}
		i.c.Kill()
	})
}

// start starts a plugin process.
func (p *Plan) start() (*instance, error) {
	cmd := exec.Command(p.path)
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
	cmd.Dir = filepath.Dir(p.path)
	c := goplugin.NewClient(&goplugin.ClientConfig{
		HandshakeConfig:  planplugin.Handshake,
		Plugins:          goplugin.PluginSet{planplugin.PluginName: &planplugin.GRPCPlugin{}},
		Cmd:              cmd,
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		SkipHostEnv:      true, // no token or other setting of ours reaches it
		StartTimeout:     startTimeout,
		Logger:           hclog.New(&hclog.LoggerOptions{Name: "plugin." + filepath.Base(p.path), Level: hclog.Warn, Output: os.Stderr}),
	})
	proto, err := c.Client()
	if err != nil {
		c.Kill()
		return nil, fmt.Errorf("start %s: %w", p.path, err)
	}
	raw, err := proto.Dispense(planplugin.PluginName)
	if err != nil {
		c.Kill()
		return nil, fmt.Errorf("start %s: %w", p.path, err)
	}
	conn, ok := raw.(*planplugin.Conn)
	if !ok {
		c.Kill()
		return nil, fmt.Errorf("start %s: not a plan plugin", p.path)
	}
	inst := &instance{c: c, conn: conn}
	if rc := c.ReattachConfig(); rc != nil {
		inst.pid = rc.Pid
	}
	inst.host, inst.hostID, inst.stopHost = serveHost(conn.Broker)
	return inst, nil
}

// get takes an idle live process, or starts one.
func (p *Plan) get() (*instance, error) {
	p.mu.Lock()
	for len(p.idle) > 0 {
		inst := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if inst.c.Exited() {
			continue
		}
		p.mu.Unlock()
		return inst, nil
	}
	p.mu.Unlock()
	inst, err := p.start()
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "plan %s: plugin %s: %v", p.info.Name, p.path, err)
	}
	return inst, nil
}

// put returns a healthy process to the pool.
func (p *Plan) put(inst *instance) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle) >= maxIdle || inst.c.Exited() {
		go inst.kill()
		return
	}
	p.idle = append(p.idle, inst)
}

// PIDs lists the plugin's idle processes (tests kill them).
func (p *Plan) PIDs() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []int
	for _, i := range p.idle {
		out = append(out, i.pid)
	}
	return out
}

// call runs f on a process of its own, its host serving env acting as
// ctx's user for this call (f must call with the context it is given: it
// carries the call's token). It sorts out what went wrong: the plugin's
// own error is returned as is; a process that died, hung past ctx or
// broke the connection is killed and the error is Unavailable (the task is
// retried).
func (p *Plan) call(ctx context.Context, what string, env plans.Env, progress func(int64), f func(ctx context.Context, c api.PlanPluginClient, hostID uint32) error) error {
	inst, err := p.get()
	if err != nil {
		return err
	}
	token, end := inst.host.begin(ctx, env, progress)
	err = f(metadata.AppendToOutgoingContext(ctx, planplugin.CallHeader, token), inst.conn.Client, inst.hostID)
	end()
	switch {
	case ctx.Err() != nil:
		// Cancelled or timed out: whether the plugin stops or hangs, its
		// process goes.
		inst.kill()
		return ctx.Err()
	case inst.c.Exited():
		return status.Errorf(codes.Unavailable, "plan %s: plugin %s exited during %s (it is restarted on next use): %v", p.info.Name, p.path, what, err)
	case err != nil && brokenConn(err):
		inst.kill()
		return status.Errorf(codes.Unavailable, "plan %s: plugin %s lost during %s: %v", p.info.Name, p.path, what, err)
	}
	p.put(inst)
	return err
}

// brokenConn: the call failed on the way, not in the plugin.
func brokenConn(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.Canceled, codes.Internal:
		return true
	}
	return false
}

// Name implements plans.Plan.
func (p *Plan) Name() string { return p.info.Name }

// Info implements plans.Describer.
func (p *Plan) Info() plans.Info { return p.info }

// Validate implements plans.Plan.
func (p *Plan) Validate(ctx context.Context, env plans.Env, config []byte) (spec.Valid, error) {
	var resp *api.PluginValidateResponse
	err := p.call(ctx, "validate", env, nil, func(ctx context.Context, c api.PlanPluginClient, id uint32) (err error) {
		resp, err = c.Validate(ctx, &api.PluginValidateRequest{HostId: id, Config: config})
		return err
	})
	if err != nil {
		return spec.Valid{}, p.wrap(err)
	}
	if err := spec.SyntaxError(resp.GetConfig()); err != nil {
		return spec.Valid{}, status.Errorf(codes.Internal, "plan %s: plugin returned a config that is not JSON: %v", p.info.Name, err)
	}
	return spec.Valid{Config: resp.GetConfig(), Limits: spec.LimitsOf(resp.GetLimits())}, nil
}

// wrap names the plan in a plugin's error, keeping its code.
func (p *Plan) wrap(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	if strings.HasPrefix(st.Message(), "plan "+p.info.Name) {
		return err
	}
	return status.Errorf(st.Code(), "plan %s: %s", p.info.Name, st.Message())
}

func jobProto(j plans.Job) *api.PluginJob {
	return &api.PluginJob{Id: j.ID, Config: j.Config, Cursor: j.Cursor, Round: j.Round, RoundFailed: j.RoundFailed}
}

// NewPlanner implements plans.Plan: each Next is one stateless Plan call
// from the cursor, so nothing is held between batches.
func (p *Plan) NewPlanner(_ context.Context, env plans.Env, job plans.Job) (plans.Planner, error) {
	return &planner{p: p, env: env, job: job}, nil
}

type planner struct {
	p   *Plan
	env plans.Env
	job plans.Job
}

func (pl *planner) Close() error { return nil }

func (pl *planner) Next(ctx context.Context, max int) (plans.Batch, error) {
	var resp *api.PluginPlanResponse
	err := pl.p.call(ctx, "planning", pl.env, nil, func(ctx context.Context, c api.PlanPluginClient, id uint32) (err error) {
		resp, err = c.Plan(ctx, &api.PluginPlanRequest{HostId: id, Job: jobProto(pl.job), Max: int32(max)})
		return err
	})
	if err != nil {
		return plans.Batch{}, pl.p.wrap(err)
	}
	b := plans.Batch{Cursor: resp.GetCursor(), Done: resp.GetDone(), Failed: resp.GetFailed()}
	if len(resp.GetTasks()) > max {
		return plans.Batch{}, status.Errorf(codes.Internal, "plan %s: plugin planned %d tasks, more than the %d asked", pl.p.info.Name, len(resp.GetTasks()), max)
	}
	for _, t := range resp.GetTasks() {
		b.Tasks = append(b.Tasks, plans.TaskSpec{Args: t.GetArgs(), Description: t.GetDescription(), Bytes: t.GetBytes(),
			BlockWorkerID: t.GetBlockWorkerId(), BlockWorkerAddress: t.GetBlockWorkerAddress()})
	}
	pl.job.Cursor = b.Cursor
	return b, nil
}

// Run implements plans.Plan.
func (p *Plan) Run(ctx context.Context, env plans.Env, t *plans.Task) (plans.Result, error) {
	var resp *api.PluginRunResponse
	err := p.call(ctx, fmt.Sprintf("task %d/%d", t.JobID, t.TaskID), env, t.Progress, func(ctx context.Context, c api.PlanPluginClient, id uint32) (err error) {
		resp, err = c.Run(ctx, &api.PluginRunRequest{HostId: id, JobId: t.JobID, TaskId: t.TaskID, Attempt: t.Attempt,
			Args: t.Args, Config: t.Config, LocalBlockWorker: t.LocalBlockWorker})
		return err
	})
	if err != nil {
		// A failed attempt's result travels in the error's details.
		var res plans.Result
		if st, ok := status.FromError(err); ok {
			for _, d := range st.Details() {
				if r, ok := d.(*api.PluginRunResponse); ok {
					res = resultOf(r)
				}
			}
		}
		return res, p.wrap(err)
	}
	return resultOf(resp), nil
}

func resultOf(r *api.PluginRunResponse) plans.Result {
	return plans.Result{Bytes: r.GetBytes(), Failed: r.GetFailed(), Output: r.GetOutput()}
}

// Done implements plans.Plan.
func (p *Plan) Done(ctx context.Context, env plans.Env, job plans.Job) (bool, error) {
	var resp *api.PluginDoneResponse
	err := p.call(ctx, "done", env, nil, func(ctx context.Context, c api.PlanPluginClient, id uint32) (err error) {
		resp, err = c.Done(ctx, &api.PluginDoneRequest{HostId: id, Job: jobProto(job)})
		return err
	})
	if err != nil {
		return false, p.wrap(err)
	}
	return resp.GetDone(), nil
}
