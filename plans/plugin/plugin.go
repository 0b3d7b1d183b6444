// Package plugin runs plan plugins: executables in plans.dir that
// implement a plan over hashicorp/go-plugin (sdk/planplugin is their side).
// Job masters and job workers load them at start (Load) and register each
// as a plans.Plan; this package also holds the Env plans run with on both
// (env.go: files read and written as the job's user, the exec allow list).
//
// Supervision. Each plugin runs as a small pool of child processes; a
// call takes one process for itself, and a job worker's batches of tasks
// (RunBatch) all go to one of them, the task runner, each on a stream of
// its own. A process that exits or breaks its connection during a call is
// dropped and the call (the batch's unanswered tasks) fails Unavailable —
// the job master retries the tasks (jobmaster.task.max-attempts) and the
// next call starts a new process. A call whose context ends, or a task
// that times out, kills its process: a hung plugin is gone at the
// timeout, whatever it does; a task cancelled mid-batch is cancelled in
// the plugin, and its process killed if it has not ended cancelGrace
// after the batch's others. The process that started plugins ends them
// with Shutdown (cmd/alluvium's jobmaster, worker and local commands do
// as they exit), so that none outlives it and no Unix socket of theirs or
// of their hosts is left in TMPDIR, where both sides make them; a plugin
// killed -9 has its socket removed when its host notices. Plugins start
// with an empty environment
// (go-plugin's SkipHostEnv) and get no credentials: each process is
// served a PlanHost (host.go) on go-plugin's broker that answers only the
// calls and tasks under way, each acting for its job's user through this
// process's own client.
package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/childproc"
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
	// runner is the process every batch of tasks goes to, at once (each
	// on a stream of its own): one process a job worker wakes for all its
	// tasks, not one per batch under way. Replaced when it dies or is
	// killed.
	runner *instance
	// live are the processes started and not yet killed: idle, the
	// runner and those in a call (Shutdown kills them all).
	live map[*instance]struct{}
	shut bool // Shutdown ran: no process starts or goes back to the pool
	// pages are the listing pages its processes' hosts asked for ahead.
	pages pagesAhead
}

var (
	_ plans.Plan        = (*Plan)(nil)
	_ plans.Describer   = (*Plan)(nil)
	_ plans.BatchRunner = (*Plan)(nil)
)

// instance is one plugin process and the host it calls back.
type instance struct {
	plan     *Plan
	c        *goplugin.Client
	conn     *planplugin.Conn
	pid      int
	sock     string // the plugin's Unix socket: left behind when it is killed -9
	host     *hostServer
	hostID   uint32
	stopHost func()
	killed   sync.Once
	dead     atomic.Bool // killed
}

// alive says i (nil: none) is a process not killed and not exited.
func (i *instance) alive() bool { return i != nil && !i.dead.Load() && !i.c.Exited() }

// kill ends the process and closes its host's listener (a Unix socket
// file, removed only when its listener closes). Killing an instance whose
// process exited by itself still closes its host.
func (i *instance) kill() {
	i.dead.Store(true)
	i.killed.Do(func() {
		if i.stopHost != nil {
			i.stopHost()
		}
		i.c.Kill()
		if i.sock != "" {
			// Gone with its process if that exited cleanly; one killed
			// (by us at a timeout, or by anyone -9) could not remove it.
			_ = os.Remove(i.sock)
		}
		i.plan.forget(i)
	})
}

// start starts a plugin process.
func (p *Plan) start() (*instance, error) {
	cmd := exec.Command(p.path)
	// The plugin makes its socket where this process makes its own (the
	// host's, on go-plugin's broker): under TMPDIR as the operator set it
	// for this process, rather than always in /tmp.
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", goplugin.EnvUnixSocketDir + "=" + os.TempDir()}
	cmd.Dir = filepath.Dir(p.path)
	// A job worker killed -9 takes its plugins with it.
	childproc.DieWithParent(cmd)
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
	inst := &instance{plan: p, c: c, conn: conn}
	if rc := c.ReattachConfig(); rc != nil {
		inst.pid = rc.Pid
		if rc.Addr != nil && rc.Addr.Network() == "unix" {
			inst.sock = rc.Addr.String()
		}
	}
	inst.host, inst.hostID, inst.stopHost = serveHost(conn.Broker, &p.pages)
	// The plugin connects to its host now: go-plugin's broker drops the
	// offer unless taken within 5 s, and a process may wait in the pool
	// longer than that before its first call.
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	_, err = conn.Client.Describe(ctx, &api.PluginDescribeRequest{HostId: inst.hostID})
	cancel()
	if err != nil {
		inst.kill()
		return nil, fmt.Errorf("start %s: connect it to its host: %w", p.path, err)
	}
	if !p.track(inst) {
		inst.kill()
		return nil, fmt.Errorf("start %s: this process is shutting its plugins down", p.path)
	}
	return inst, nil
}

// track counts inst among p's live processes, unless p is shut down.
func (p *Plan) track(inst *instance) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shut {
		return false
	}
	if p.live == nil {
		p.live = map[*instance]struct{}{}
	}
	p.live[inst] = struct{}{}
	return true
}

// forget drops a killed process from p's live ones.
func (p *Plan) forget(inst *instance) {
	p.mu.Lock()
	delete(p.live, inst)
	p.mu.Unlock()
}

// Shutdown kills every plugin process this process started, idle or in a
// call, and closes the hosts they call back, so that no Unix socket of
// theirs outlives the process: a process that exits with its plugins
// still running would leave them to the kernel (childproc.DieWithParent
// SIGKILLs them), and go-plugin removes a socket only when its listener
// closes. Roles call it once they have stopped; plans used after it fail
// Unavailable.
func Shutdown() {
	loadMu.Lock()
	ps := make([]*Plan, 0, len(loaded))
	for _, p := range loaded {
		ps = append(ps, p)
	}
	loadMu.Unlock()
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Go(p.shutdown)
	}
	wg.Wait()
}

// shutdown kills p's processes, each waited for, and starts no more.
func (p *Plan) shutdown() {
	p.mu.Lock()
	p.shut = true
	insts := make([]*instance, 0, len(p.live))
	for i := range p.live {
		insts = append(insts, i)
	}
	p.idle, p.runner = nil, nil
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, i := range insts {
		wg.Go(i.kill) // each waits for its process's graceful exit
	}
	wg.Wait()
}

// get takes an idle live process, or starts one.
func (p *Plan) get() (*instance, error) {
	p.mu.Lock()
	for len(p.idle) > 0 {
		inst := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if inst.c.Exited() {
			go inst.kill() // closes its host
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
	if len(p.idle) >= maxIdle || inst.c.Exited() || p.shut {
		go inst.kill()
		return
	}
	p.idle = append(p.idle, inst)
}

// taskRunner is the process that runs batches of tasks: the live runner,
// else an idle process or a new one made the runner.
func (p *Plan) taskRunner() (*instance, error) {
	p.mu.Lock()
	if r := p.runner; r.alive() {
		p.mu.Unlock()
		return r, nil
	}
	p.runner = nil
	p.mu.Unlock()
	inst, err := p.get()
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	if r := p.runner; r.alive() {
		// Another batch made one meanwhile.
		p.mu.Unlock()
		p.put(inst)
		return r, nil
	}
	p.runner = inst
	p.mu.Unlock()
	return inst, nil
}

// PIDs lists the plugin's idle processes and its task runner (tests kill
// them).
func (p *Plan) PIDs() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []int
	for _, i := range p.idle {
		out = append(out, i.pid)
	}
	if r := p.runner; r.alive() {
		out = append(out, r.pid)
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
		inst.kill() // closes its host
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

// NewPlanner implements plans.Plan: each batch is one stateless Plan call
// from the cursor, or several: a Next gathers the batches of Plan calls
// one after another for as long as the built-in planner gathers a batch
// of its own (plans.PlanBudget) and max allows, so both write the same
// few PLAN_TASKS entries a job, not one a listing page. Nothing is held
// between batches but the call under way: the one after the last batch
// taken is asked for at once, while the job master commits what Next
// returned (as the built-in planner lists its next page ahead), so a
// page's listing and planning in the plugin overlap the raft commit of
// the pages before.
func (p *Plan) NewPlanner(_ context.Context, env plans.Env, job plans.Job) (plans.Planner, error) {
	return &planner{p: p, env: env, job: job, budget: plans.PlanBudget}, nil
}

type planner struct {
	p   *Plan
	env plans.Env
	// job.Cursor is the cursor after the last batch taken (returned, or
	// gathered into the batch Next is making).
	job plans.Job
	// ahead is the call for the batch after job.Cursor, of max tasks at
	// most; nil when none is under way or waiting to be taken.
	ahead  *planAhead
	calls  int                           // Next calls so far
	budget func(calls int) time.Duration // plans.PlanBudget (tests: another)
}

type planAhead struct {
	max    int
	cancel context.CancelFunc
	done   chan struct{}
	b      plans.Batch
	err    error
}

func (pl *planner) Close() error {
	pl.drop()
	return nil
}

// drop abandons the batch planned ahead: it waits for the call to end on
// its own (cancelling a call kills its process) and cancels it only if it
// has not ended cancelGrace later.
func (pl *planner) drop() {
	a := pl.ahead
	if a == nil {
		return
	}
	pl.ahead = nil
	t := time.NewTimer(cancelGrace)
	defer t.Stop()
	select {
	case <-a.done:
	case <-t.C:
	}
	a.cancel()
	<-a.done
}

// planAhead starts the call for the batch after job.Cursor. It runs with
// ctx's values (the job's user) but ends on its own, or with drop.
func (pl *planner) planAhead(ctx context.Context, max int) {
	actx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a := &planAhead{max: max, cancel: cancel, done: make(chan struct{})}
	job := pl.job
	go func() {
		defer close(a.done)
		a.b, a.err = pl.plan(actx, job, max)
	}()
	pl.ahead = a
}

// take takes the batch after job.Cursor: the call ahead's (waiting for it
// until ctx ends), or a call of its own.
func (pl *planner) take(ctx context.Context, max int) (plans.Batch, error) {
	a := pl.ahead
	if a == nil || a.max != max {
		pl.drop()
		return pl.plan(ctx, pl.job, max)
	}
	select {
	case <-a.done:
	case <-ctx.Done():
		pl.drop()
		return plans.Batch{}, ctx.Err()
	}
	pl.ahead = nil
	a.cancel()
	return a.b, a.err
}

func (pl *planner) Next(ctx context.Context, max int) (plans.Batch, error) {
	start, budget := time.Now(), pl.budget(pl.calls)
	pl.calls++
	var out plans.Batch
	for {
		b, err := pl.take(ctx, max)
		if err != nil {
			// What was gathered is dropped with the planner: the job
			// master plans again from the cursor it committed.
			return plans.Batch{}, err
		}
		out.Tasks = append(out.Tasks, b.Tasks...)
		out.Failed = append(out.Failed, b.Failed...)
		out.Cursor, out.Done = b.Cursor, b.Done
		pl.job.Cursor = b.Cursor
		if b.Done {
			return out, nil
		}
		// The next batch is asked for at once, whether it goes into this
		// Next's batch or the next one's. (A plugin plan is never planned
		// inside its submit, the one caller that would ask once.)
		pl.planAhead(ctx, max)
		left := budget - time.Since(start)
		if left <= 0 || len(out.Tasks) >= max {
			return out, nil
		}
		// Gather the call ahead too if it ends within the budget and its
		// tasks fit; else it stays ahead for the next Next (a failed one
		// too: what was gathered is committed first).
		a := pl.ahead
		t := time.NewTimer(left)
		select {
		case <-a.done:
			t.Stop()
		case <-t.C:
			return out, nil
		case <-ctx.Done():
			t.Stop()
			pl.drop()
			return plans.Batch{}, ctx.Err()
		}
		if a.err != nil || len(out.Tasks)+len(a.b.Tasks) > max {
			return out, nil
		}
	}
}

// plan is one Plan call: the batch of at most max tasks after job.Cursor.
func (pl *planner) plan(ctx context.Context, job plans.Job, max int) (plans.Batch, error) {
	var resp *api.PluginPlanResponse
	err := pl.p.call(ctx, "planning", pl.env, nil, func(ctx context.Context, c api.PlanPluginClient, id uint32) (err error) {
		resp, err = c.Plan(ctx, &api.PluginPlanRequest{HostId: id, Job: jobProto(job), Max: int32(max)})
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
	return b, nil
}

// cancelGrace is how long a plugin has to end a task cancelled while its
// batch goes on; a process still running one then is killed.
const cancelGrace = 5 * time.Second

// Run implements plans.Plan: a batch of one.
func (p *Plan) Run(ctx context.Context, env plans.Env, t *plans.Task) (plans.Result, error) {
	var res plans.Result
	var err error
	p.RunBatch(ctx, env, []plans.BatchTask{{Ctx: ctx, Task: t}}, func(_ int, r plans.Result, e error) { res, err = r, e })
	return res, err
}

// RunBatch implements plans.BatchRunner: the tasks go to the task runner
// on one RunTasks stream, which runs them at once and answers each as it
// ends. Each task keeps its own context: one that is cancelled is
// answered at once and cancelled in the plugin (whose process is killed
// if the task has not ended cancelGrace after the batch's others); one
// that times out kills the process at once (a hung plugin goes at the
// task's timeout), and the other tasks it was running (of this batch and
// others) then fail Unavailable and are retried. A process that dies or
// breaks the stream fails the tasks it had not answered Unavailable
// (retried), as a lost call did.
func (p *Plan) RunBatch(ctx context.Context, env plans.Env, ts []plans.BatchTask, done func(int, plans.Result, error)) {
	answered := make([]bool, len(ts))
	left := len(ts)
	finish := func(i int, res plans.Result, err error) {
		if !answered[i] {
			answered[i] = true
			left--
			done(i, res, err)
		}
	}
	failRest := func(err error) {
		for i := range ts {
			finish(i, plans.Result{}, err)
		}
	}
	inst, err := p.taskRunner()
	if err != nil {
		failRest(err)
		return
	}
	what := fmt.Sprintf("tasks of job %d", ts[0].Task.JobID)
	lost := func(err error) error {
		exited := inst.c.Exited()
		inst.kill() // an exited one's host is closed too
		if exited {
			return status.Errorf(codes.Unavailable, "plan %s: plugin %s exited during %s (it is restarted on next use): %v", p.info.Name, p.path, what, err)
		}
		return status.Errorf(codes.Unavailable, "plan %s: plugin %s lost during %s: %v", p.info.Name, p.path, what, err)
	}
	sctx, cancel := context.WithCancel(ctx)
	stream, err := inst.conn.Client.RunTasks(sctx)
	if err != nil {
		cancel()
		failRest(lost(err))
		return
	}
	ends := make([]func(), len(ts))
	defer func() {
		for _, end := range ends {
			if end != nil {
				end()
			}
		}
	}()
	for i, bt := range ts {
		token, end := inst.host.begin(bt.Ctx, env, bt.Task.Progress)
		ends[i] = end
		t := bt.Task
		in := &api.PluginTaskIn{Seq: uint32(i), Run: &api.PluginRunRequest{HostId: inst.hostID, JobId: t.JobID, TaskId: t.TaskID,
			Attempt: t.Attempt, Args: t.Args, Config: t.Config, LocalBlockWorker: t.LocalBlockWorker, Token: token}}
		if err := stream.Send(in); err != nil {
			_, err = stream.Recv() // the stream's own error
			cancel()
			failRest(lost(err))
			return
		}
	}
	outs := make(chan *api.PluginTaskOut)
	errc := make(chan error, 1)
	go func() {
		for {
			out, err := stream.Recv()
			if err != nil {
				errc <- err
				return
			}
			select {
			case outs <- out:
			case <-sctx.Done():
				return
			}
		}
	}()
	ended := make(chan int, len(ts))
	for i, bt := range ts {
		stop := context.AfterFunc(bt.Ctx, func() { ended <- i })
		defer stop()
	}
	cancelled := false
	for left > 0 {
		select {
		case out := <-outs:
			i := int(out.GetSeq())
			if i >= len(ts) {
				continue
			}
			res := resultOf(out.GetResult())
			var err error
			if c := codes.Code(out.GetCode()); c != codes.OK {
				err = p.wrap(status.Error(c, out.GetError()))
			}
			finish(i, res, err)
		case i := <-ended:
			if answered[i] {
				continue
			}
			cerr := ts[i].Ctx.Err()
			if errors.Is(cerr, context.DeadlineExceeded) {
				// Whether it stops or hangs, the process goes.
				inst.kill()
				cancel()
				finish(i, plans.Result{}, cerr)
				failRest(status.Errorf(codes.Unavailable, "plan %s: plugin %s killed: task %d/%d of its batch timed out", p.info.Name, p.path, ts[i].Task.JobID, ts[i].Task.TaskID))
				return
			}
			cancelled = true
			_ = stream.Send(&api.PluginTaskIn{Seq: uint32(i), Cancel: true})
			finish(i, plans.Result{}, cerr)
		case err := <-errc:
			cancel()
			failRest(lost(err))
			return
		}
	}
	// Every task is answered: close the stream and keep the process once
	// the plugin has ended them all — at once, unless a cancelled one
	// still runs (then in the background, for cancelGrace at most).
	_ = stream.CloseSend()
	settle := func() {
		defer cancel()
		var grace <-chan time.Time
		if cancelled {
			t := time.NewTimer(cancelGrace)
			defer t.Stop()
			grace = t.C
		}
		for {
			select {
			case <-outs: // a cancelled task's late answer
			case err := <-errc:
				if !errors.Is(err, io.EOF) {
					inst.kill()
				}
				return
			case <-grace:
				inst.kill()
				return
			case <-sctx.Done():
				inst.kill()
				return
			}
		}
	}
	if cancelled {
		go settle()
	} else {
		settle()
	}
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
