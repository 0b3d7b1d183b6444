package jobworker

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sort"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/client"
	"github.com/alluvium/alluvium/internal/config"
	"github.com/alluvium/alluvium/internal/rpc"
	"github.com/alluvium/alluvium/internal/security"
	"github.com/alluvium/alluvium/plans"
	"github.com/alluvium/alluvium/plans/plugin"
)

// Colocated names the block worker a job worker runs beside; tasks whose
// data goes to that block worker are placed here.
type Colocated struct {
	BlockWorkerID      int64
	BlockWorkerAddress string // host:rpc-port
}

// Worker is one job worker.
type Worker struct {
	cfg      *config.Config
	log      *zap.Logger
	bw       Colocated
	masters  []string
	threads  int
	capacity int
	// remote is how many remote plans' tasks (plans.RemoteRunner) run at
	// once beside the threads, each on a goroutine of its own
	// (jobworker.remote-tasks; 0: they run on the threads).
	remote   int
	progress time.Duration
	env      plans.Env
	envClose func() error
	wenv     *taskEnv
	srvOpts  rpc.ServerOptions // authentication, TLS
	dial     rpc.ClientOptions // how it dials the masters

	grpc *grpc.Server
	ln   net.Listener
	addr string
	// instance names this process to the job master: a registration
	// retried after a timeout keeps the record the first call made.
	instance string

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	sess session

	mu       sync.Mutex
	cond     *sync.Cond
	queue    []*api.TaskAssignment
	rqueue   []*api.TaskAssignment // remote plans' tasks waiting for one of remote
	tasks    map[ref]*taskState    // queued or running
	results  map[ref]*api.TaskUpdate
	dirty    map[ref]int64 // progress not yet sent
	limiters map[int64]*rate.Limiter
	running  int // tasks running: at most threads
	rrunning int // remote plans' tasks running: at most remote
	wakeRep  chan struct{}
	stopping bool
}

type ref struct {
	job, task int64
	attempt   int32
}

func refOf(a *api.TaskAssignment) ref { return ref{a.GetJobId(), a.GetTaskId(), a.GetAttempt()} }

type taskState struct {
	a        *api.TaskAssignment
	cancel   context.CancelFunc // set while running
	running  bool
	canceled bool // by the leader: do not report
}

// Options replace parts in tests.
type Options struct {
	Env      plans.Env    // nil: dial worker.master
	Listener net.Listener // nil: listen on worker.bind-host:jobworker.rpc-port
}

// New returns a job worker beside the block worker bw.
func New(cfg *config.Config, log *zap.Logger, bw Colocated) (*Worker, error) {
	return NewWithOptions(cfg, log, bw, Options{})
}

// NewWithOptions is New with parts replaced.
func NewWithOptions(cfg *config.Config, log *zap.Logger, bw Colocated, o Options) (*Worker, error) {
	if log == nil {
		log = zap.NewNop()
	}
	masters := client.SplitAddrs(cfg.JobWorker.JobMaster)
	if len(masters) == 0 {
		return nil, errors.New("jobworker.job-master: no job master address")
	}
	threads := cfg.JobWorker.Threads
	if threads < 1 {
		return nil, fmt.Errorf("jobworker.threads = %d: want >= 1", threads)
	}
	depth := cfg.JobWorker.QueueDepth
	if depth <= 0 {
		depth = threads
	}
	if cfg.JobWorker.RemoteTasks < 0 {
		return nil, fmt.Errorf("jobworker.remote-tasks = %d: want >= 0", cfg.JobWorker.RemoteTasks)
	}
	pi := cfg.JobWorker.ProgressInterval
	if pi <= 0 {
		pi = time.Second
	}
	w := &Worker{
		cfg: cfg, log: log, bw: bw, masters: masters, threads: threads, capacity: threads + depth, remote: cfg.JobWorker.RemoteTasks, progress: pi,
		tasks: map[ref]*taskState{}, results: map[ref]*api.TaskUpdate{}, dirty: map[ref]int64{},
		limiters: map[int64]*rate.Limiter{}, wakeRep: make(chan struct{}, 1), instance: rand.Text(),
	}
	w.cond = sync.NewCond(&w.mu)
	var err error
	if w.srvOpts, err = security.ServerOptions(cfg, log); err != nil {
		return nil, fmt.Errorf("jobworker: %w", err)
	}
	if w.dial, err = security.ClientOptions(cfg); err != nil {
		return nil, fmt.Errorf("jobworker: %w", err)
	}
	jm, err := client.NewJobMaster(masters, client.Defaults(w.dial))
	if err != nil {
		return nil, fmt.Errorf("jobworker.job-master: %w", err)
	}
	w.sess = session{w: w, jm: jm}
	if o.Env != nil {
		w.env = o.Env
	} else {
		e, err := client.NewCluster([]string{cfg.Worker.Master}, client.Defaults(w.dial))
		if err != nil {
			return nil, fmt.Errorf("jobworker: %w", err)
		}
		w.env, w.envClose = e, e.Close
	}
	// Plugins in plans.dir become plans (they are listed at registration).
	plugin.Load(cfg.Plans.Dir, log)
	we, err := plugin.NewEnv(w.env, cfg, cfg.Worker.Master, cfg.Worker.Dir, w.dial)
	if err != nil {
		if w.envClose != nil {
			_ = w.envClose()
		}
		return nil, err
	}
	w.wenv = newTaskEnv(we) // tasks run with it; w.env stays the cluster (its optional interfaces)
	w.ln = o.Listener
	return w, nil
}

// Start listens on the job worker's port and starts registering, polling
// and executing. It returns at once: the job master may come up later.
func (w *Worker) Start(ctx context.Context) error {
	if w.ln == nil {
		ln, err := rpc.Listen(w.cfg.Worker.BindHost, w.cfg.JobWorker.RPCPort)
		if err != nil {
			return fmt.Errorf("jobworker: %w", err)
		}
		w.ln = ln
	}
	_, port, _ := net.SplitHostPort(w.ln.Addr().String())
	w.addr = net.JoinHostPort(w.cfg.Worker.Host, port)
	w.grpc = rpc.NewServer(w.srvOpts)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(w.grpc, hs)
	w.ctx, w.cancel = context.WithCancel(context.Background())
	w.wg.Add(3 + w.threads)
	go func() {
		defer w.wg.Done()
		if err := w.grpc.Serve(w.ln); err != nil {
			w.log.Warn("job worker rpc server stopped", zap.Error(err))
		}
	}()
	go func() { defer w.wg.Done(); w.pollLoop() }()
	go func() { defer w.wg.Done(); w.reportLoop() }()
	for i := 0; i < w.threads; i++ {
		go func() { defer w.wg.Done(); w.execLoop() }()
	}
	w.log.Info("job worker started", zap.String("address", w.addr), zap.Int("threads", w.threads),
		zap.Strings("job_masters", w.masters), zap.String("block_worker", w.bw.BlockWorkerAddress))
	return nil
}

// ID is the id the leader gave this worker (0 before registration).
func (w *Worker) ID() int64 { return w.sess.workerID() }

// Stop cancels running tasks, sends what results it can within ctx, and
// stops.
func (w *Worker) Stop(ctx context.Context) error {
	if w.cancel == nil {
		return nil
	}
	w.mu.Lock()
	w.stopping = true
	for _, t := range w.tasks {
		if t.cancel != nil {
			t.cancel()
		}
	}
	w.cond.Broadcast()
	w.mu.Unlock()
	// Give finished tasks' results a moment to reach the leader.
	deadline := time.Now().Add(time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	for time.Now().Before(deadline) {
		w.mu.Lock()
		n := len(w.results)
		running := 0
		for _, t := range w.tasks {
			if t.running {
				running++
			}
		}
		w.mu.Unlock()
		if n == 0 && running == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	w.cancel()
	w.mu.Lock()
	w.cond.Broadcast()
	w.mu.Unlock()
	w.grpc.Stop()
	w.wg.Wait()
	w.sess.close()
	if w.envClose != nil {
		_ = w.envClose()
	}
	_ = w.wenv.Close()
	return nil
}

// pollLoop keeps one long poll open: its reply brings tasks and cancels.
// The polls go over one stream to the leader (client.Polls); results go
// on their own (reportLoop) as unary calls, which are few.
func (w *Worker) pollLoop() {
	var polls client.Polls
	defer polls.Close()
	backoff := client.NewBackoff(50*time.Millisecond, 2*time.Second)
	for w.ctx.Err() == nil {
		c, id, interval, err := w.sess.get(w.ctx)
		if err != nil {
			if w.ctx.Err() != nil {
				return
			}
			w.log.Debug("no job master leader yet", zap.Error(err))
			w.sleep(backoff.Next())
			continue
		}
		if w.isStopping() {
			w.sleep(interval)
			continue
		}
		req := w.pollRequest(id, interval)
		resp, err := polls.Poll(w.ctx, c, c.addr, req, interval+w.sess.pollSlack())
		if err != nil {
			if w.ctx.Err() != nil {
				return
			}
			w.sess.failed(c, err)
			w.log.Debug("poll failed", zap.Error(err))
			w.sleep(backoff.Next())
			continue
		}
		backoff.Reset()
		w.handle(id, resp)
	}
}

func (w *Worker) pollRequest(id int64, wait time.Duration) *api.JobWorkerHeartbeatRequest {
	w.mu.Lock()
	defer w.mu.Unlock()
	req := &api.JobWorkerHeartbeatRequest{WorkerId: id, FreeSlots: int32(w.freeLocked()), WaitMs: wait.Milliseconds()}
	jobs := map[int64]bool{}
	for r := range w.tasks {
		req.Holding = append(req.Holding, &api.TaskRef{JobId: r.job, TaskId: r.task, Attempt: r.attempt})
		jobs[r.job] = true
	}
	for r := range w.results {
		req.Holding = append(req.Holding, &api.TaskRef{JobId: r.job, TaskId: r.task, Attempt: r.attempt})
	}
	for j := range jobs {
		req.RunningJobIds = append(req.RunningJobIds, j)
	}
	sort.Slice(req.RunningJobIds, func(a, b int) bool { return req.RunningJobIds[a] < req.RunningJobIds[b] })
	return req
}

func (w *Worker) isStopping() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stopping
}

func (w *Worker) freeLocked() int {
	if w.stopping {
		return 0
	}
	return max(w.capacity+w.remote-len(w.tasks), 0)
}

// isRemote says whether a's plan runs remotely here: its task waits on
// calls, on a goroutine of its own, not on one of the threads.
func (w *Worker) isRemote(a *api.TaskAssignment) bool {
	return w.remote > 0 && plans.RunsRemotely(a.GetPlan(), a.GetPlanVersion())
}

// handle applies a heartbeat reply: re-registration, the heartbeat
// interval and TTL, block workers lost, cancels, new tasks.
func (w *Worker) handle(id int64, resp *api.JobWorkerHeartbeatResponse) {
	if resp.GetReregister() {
		w.log.Info("job master does not know this worker; registering again", zap.Int64("old_id", id))
		w.sess.forget(id)
	}
	w.sess.setTiming(resp.GetHeartbeatIntervalMs(), resp.GetTtlMs())
	if f, ok := w.env.(interface{ ForgetBlockWorker(addr string) }); ok {
		for _, addr := range resp.GetLostBlockWorkers() {
			// Calls to it in flight fail now (and the tasks making them
			// move their work elsewhere) instead of waiting on a dead peer
			// until the connection's keepalive gives up.
			w.log.Info("block worker lost: dropping its connection", zap.String("address", addr))
			f.ForgetBlockWorker(addr)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, b := range resp.GetBandwidth() {
		// The job's budget re-split: the tasks running draw from the new
		// share from their next call to a block worker on.
		if l := w.limiters[b.GetJobId()]; l != nil && b.GetBytesPerSec() > 0 {
			setShare(l, b.GetBytesPerSec())
		}
	}
	for _, c := range resp.GetCancels() {
		w.cancelLocked(c)
	}
	for _, a := range resp.GetTasks() {
		r := refOf(a)
		if _, ok := w.tasks[r]; ok {
			continue
		}
		if _, ok := w.results[r]; ok {
			continue
		}
		w.tasks[r] = &taskState{a: a}
		if w.isRemote(a) {
			w.rqueue = append(w.rqueue, a)
		} else {
			w.queue = append(w.queue, a)
		}
		w.limiterLocked(a)
	}
	w.startRemoteLocked()
	// One executor woken a task (each takes at least one): a broadcast
	// would wake every idle one of jobworker.threads for each task that
	// comes or ends, most only to find the queue empty again.
	for range min(len(resp.GetTasks()), w.threads) {
		w.cond.Signal()
	}
}

// cancelLocked stops a task attempt, or with task id 0 the whole job.
func (w *Worker) cancelLocked(c *api.TaskRef) {
	for r, t := range w.tasks {
		if r.job != c.GetJobId() || c.GetTaskId() != 0 && (r.task != c.GetTaskId() || c.GetAttempt() != 0 && r.attempt != c.GetAttempt()) {
			continue
		}
		t.canceled = true
		if t.running {
			t.cancel()
			continue
		}
		delete(w.tasks, r)
	}
	w.queue = w.heldLocked(w.queue)
	w.rqueue = w.heldLocked(w.rqueue)
}

// heldLocked is q without the tasks no longer held.
func (w *Worker) heldLocked(q []*api.TaskAssignment) []*api.TaskAssignment {
	if len(q) == 0 {
		return q
	}
	out := q[:0]
	for _, a := range q {
		if _, ok := w.tasks[refOf(a)]; ok {
			out = append(out, a)
		}
	}
	return out
}

// startRemoteLocked starts queued remote plans' tasks while fewer than
// remote run, each on a goroutine of its own: such a task only waits on
// calls, so it holds none of the threads.
func (w *Worker) startRemoteLocked() {
	for len(w.rqueue) > 0 && w.rrunning < w.remote && !w.stopping && w.ctx != nil && w.ctx.Err() == nil {
		a := w.rqueue[0]
		w.rqueue = w.rqueue[1:]
		st := w.tasks[refOf(a)]
		if st == nil {
			continue
		}
		s := w.startLocked(a, st, true)
		w.wg.Add(1) // the poll or report loop calling is counted: not zero now
		go func() {
			defer w.wg.Done()
			w.runBatch([]*started{s})
		}()
	}
}

// limiterLocked keeps one limiter per job at the share the leader gave.
func (w *Worker) limiterLocked(a *api.TaskAssignment) {
	bps := a.GetBandwidthBytesPerSec()
	if bps <= 0 {
		delete(w.limiters, a.GetJobId())
		return
	}
	l := w.limiters[a.GetJobId()]
	if l == nil {
		w.limiters[a.GetJobId()] = rate.NewLimiter(rate.Limit(bps), int(max(bps, 1)))
		return
	}
	setShare(l, bps)
}

// setShare sets a job's limiter to the share bps (bytes/s).
func setShare(l *rate.Limiter, bps int64) {
	if l.Limit() != rate.Limit(bps) {
		l.SetLimit(rate.Limit(bps))
		l.SetBurst(int(max(bps, 1)))
	}
}

// execLoop runs queued tasks: one at a time, or, for a plan that takes
// batches (plans.BatchRunner: plugins, whose tasks cost a round trip to
// another process each), the queued tasks of the first one's job at once,
// up to the threads free. w.running counts the tasks running, so no more
// than jobworker.threads run at once whatever the batches.
func (w *Worker) execLoop() {
	for {
		w.mu.Lock()
		for (len(w.queue) == 0 || w.running >= w.threads) && w.ctx.Err() == nil && !w.stopping {
			w.cond.Wait()
		}
		if w.ctx.Err() != nil || w.stopping {
			w.mu.Unlock()
			return
		}
		batch := w.takeLocked()
		w.mu.Unlock()
		if len(batch) > 0 {
			w.runBatch(batch)
		}
	}
}

// started is a task taken off the queue to run.
type started struct {
	a      *api.TaskAssignment
	st     *taskState
	ctx    context.Context // its timeout, and the cancel of st
	cancel context.CancelFunc
	lim    *rate.Limiter
	remote bool // on a goroutine of its own, not a thread
}

// takeLocked takes the queue's first task and, when its plan runs
// batches, the other queued tasks of its job (and plan version), while
// threads are free, and marks them running.
func (w *Worker) takeLocked() []*started {
	a := w.queue[0]
	w.queue = w.queue[1:]
	st := w.tasks[refOf(a)]
	if st == nil {
		return nil
	}
	out := []*started{w.startLocked(a, st, false)}
	if plan, err := plans.Lookup(a.GetPlan()); err != nil {
		return out
	} else if _, ok := plan.(plans.BatchRunner); !ok {
		return out
	}
	q := w.queue[:0]
	for _, b := range w.queue {
		if st := w.tasks[refOf(b)]; st != nil && w.running < w.threads && b.GetJobId() == a.GetJobId() &&
			b.GetPlan() == a.GetPlan() && b.GetPlanVersion() == a.GetPlanVersion() {
			out = append(out, w.startLocked(b, st, false))
			continue
		}
		q = append(q, b)
	}
	w.queue = q
	return out
}

func (w *Worker) startLocked(a *api.TaskAssignment, st *taskState, remote bool) *started {
	ctx, cancel := context.WithCancel(w.ctx)
	if ms := a.GetTimeoutMs(); ms > 0 {
		ctx, cancel = context.WithTimeout(w.ctx, time.Duration(ms)*time.Millisecond)
	}
	st.running, st.cancel = true, cancel
	if remote {
		w.rrunning++
	} else {
		w.running++
	}
	return &started{a: a, st: st, ctx: ctx, cancel: cancel, lim: w.limiters[a.GetJobId()], remote: remote}
}

// finished records a task's report and frees its thread.
func (w *Worker) finished(s *started, u *api.TaskUpdate) {
	s.cancel()
	a := s.a
	switch u.GetStatus() {
	case api.TaskInfo_CANCELED:
		w.log.Info("task canceled", zap.Int64("job", a.GetJobId()), zap.Int64("task", a.GetTaskId()), zap.Int32("attempt", a.GetAttempt()), zap.String("what", a.GetDescription()))
	case api.TaskInfo_FAILED:
		w.log.Warn("task failed", zap.Int64("job", a.GetJobId()), zap.Int64("task", a.GetTaskId()), zap.Int32("attempt", a.GetAttempt()), zap.String("what", a.GetDescription()), zap.String("error", u.GetError()))
	}
	w.mu.Lock()
	r := refOf(a)
	canceled := s.st.canceled
	delete(w.tasks, r)
	delete(w.dirty, r)
	if !canceled && !w.stopping || u.GetStatus() == api.TaskInfo_COMPLETED {
		w.results[r] = u
	}
	w.dropLimiterLocked(a.GetJobId())
	if s.remote {
		w.rrunning--
		w.startRemoteLocked()
	} else {
		w.running--
		w.cond.Signal() // a thread is free: one executor may take the next task
	}
	w.mu.Unlock()
	select {
	case w.wakeRep <- struct{}{}:
	default:
	}
}

func (w *Worker) dropLimiterLocked(job int64) {
	for r := range w.tasks {
		if r.job == job {
			return
		}
	}
	delete(w.limiters, job)
}

// runBatch runs tasks taken together (one, unless their plan runs
// batches) and reports each as it ends.
func (w *Worker) runBatch(batch []*started) {
	var (
		plan plans.Plan
		runs []plans.BatchTask
		of   []*started
	)
	for _, s := range batch {
		p, t, ctx, u := w.prepare(s)
		if u != nil {
			w.finished(s, u)
			continue
		}
		plan = p
		runs = append(runs, plans.BatchTask{Ctx: ctx, Task: t})
		of = append(of, s)
	}
	if len(runs) == 0 {
		return
	}
	var mu sync.Mutex
	answered := make([]bool, len(runs))
	done := func(i int, res plans.Result, err error) {
		mu.Lock()
		if answered[i] {
			mu.Unlock()
			return
		}
		answered[i] = true
		mu.Unlock()
		w.finished(of[i], w.outcome(of[i], res, err))
	}
	defer func() {
		if p := recover(); p != nil {
			w.log.Error("task panicked", zap.Int64("job", of[0].a.GetJobId()), zap.Int64("task", of[0].a.GetTaskId()), zap.Any("panic", p))
			for i := range runs {
				done(i, plans.Result{}, fmt.Errorf("task panicked: %v", p))
			}
		}
	}()
	if br, ok := plan.(plans.BatchRunner); ok {
		br.RunBatch(w.ctx, w.wenv, runs, done)
		return
	}
	for i, r := range runs {
		res, err := plan.Run(r.Ctx, w.wenv, r.Task)
		done(i, res, err)
	}
}

// prepare makes a task's plans.Task and the context it runs with (acting
// for the job's user, throttled to the job's share); a task that cannot
// run here gets its report instead.
func (w *Worker) prepare(s *started) (plans.Plan, *plans.Task, context.Context, *api.TaskUpdate) {
	a := s.a
	r := refOf(a)
	fail := func(msg string) *api.TaskUpdate {
		return &api.TaskUpdate{JobId: r.job, TaskId: r.task, Attempt: r.attempt, Status: api.TaskInfo_FAILED, Error: msg}
	}
	plan, err := plans.Lookup(a.GetPlan())
	if err != nil {
		return nil, nil, nil, fail(fmt.Sprintf("job worker %s: plan %q is not installed here (plans.dir %s): %v", w.addr, a.GetPlan(), w.cfg.Plans.Dir, status.Convert(err).Message()))
	}
	if want, have := a.GetPlanVersion(), plans.PluginVersion(plan); want != "" && want != have {
		return nil, nil, nil, fail(fmt.Sprintf("job worker %s: plan %s is version %s here, the job needs %s (plans.dir %s)", w.addr, a.GetPlan(), have, want, w.cfg.Plans.Dir))
	}
	task := &plans.Task{
		JobID: r.job, TaskID: r.task, Attempt: r.attempt, Args: a.GetArgs(), Config: []byte(a.GetJobConfigJson()),
		Limiter: s.lim, LocalBlockWorker: w.bw.BlockWorkerAddress,
		Progress: func(b int64) {
			w.mu.Lock()
			if _, ok := w.tasks[r]; ok {
				w.dirty[r] = b
			}
			w.mu.Unlock()
		},
	}
	ctx := s.ctx
	if lim := s.lim; lim != nil {
		// The block workers throttle the bytes this task moves to the job's
		// share here, as it is at each call (the leader re-splits the job's
		// budget as workers start and finish its tasks).
		ctx = rpc.WithRate(ctx, fmt.Sprintf("job-%d", r.job), func() int64 { return int64(lim.Limit()) })
	}
	// The task acts for the job's user: the FS master checks that user's
	// permissions on everything the plan touches.
	return plan, task, rpc.ActAs(ctx, a.GetUser()), nil
}

// outcome is a task attempt's report from what its plan returned.
func (w *Worker) outcome(s *started, res plans.Result, err error) *api.TaskUpdate {
	a, ctx := s.a, s.ctx
	r := refOf(a)
	u := &api.TaskUpdate{JobId: r.job, TaskId: r.task, Attempt: r.attempt}
	u.BytesDone = res.Bytes
	u.Failed = res.Failed
	u.Result = boundedOutput(res.Output)
	u.FilesSkipped, u.BytesSkipped = res.FilesSkipped, res.BytesSkipped
	// A call the plan made may fail on the task's deadline (gRPC keeps a
	// timer of its own) a moment before ctx's timer marks ctx: that is the
	// timeout too.
	deadline, hasDeadline := ctx.Deadline()
	timedOut := errors.Is(ctx.Err(), context.DeadlineExceeded) || err != nil && hasDeadline && !time.Now().Before(deadline)
	switch {
	case err == nil:
		u.Status = api.TaskInfo_COMPLETED
	case timedOut:
		u.Status = api.TaskInfo_FAILED
		u.Error = fmt.Sprintf("task timed out after %s", time.Duration(a.GetTimeoutMs())*time.Millisecond)
	case ctx.Err() != nil:
		u.Status, u.Error = api.TaskInfo_CANCELED, "canceled"
	default:
		u.Status, u.Error = api.TaskInfo_FAILED, err.Error()
	}
	return u
}

// reportLoop sends results as soon as they exist (and progress every
// jobworker.progress-interval) and re-sends them until acked.
func (w *Worker) reportLoop() {
	tick := time.NewTicker(w.progress)
	defer tick.Stop()
	backoff := client.NewBackoff(50*time.Millisecond, 2*time.Second)
	for {
		select {
		case <-w.ctx.Done():
			return
		case <-w.wakeRep:
		case <-tick.C:
		}
		for w.ctx.Err() == nil {
			updates, free := w.pending()
			if len(updates) == 0 {
				break
			}
			c, id, _, err := w.sess.get(w.ctx)
			if err == nil {
				cctx, cancel := context.WithTimeout(w.ctx, 30*time.Second)
				// The poll loop may find the leader gone (partitioned: it
				// never answers) and move to a new one: follow it at once
				// rather than wait out the timeout on the old one.
				go func(gone <-chan struct{}) {
					select {
					case <-gone:
						cancel()
					case <-cctx.Done():
					}
				}(w.sess.goneFor(c))
				var resp *api.JobWorkerHeartbeatResponse
				resp, err = c.JobWorkerHeartbeat(cctx, &api.JobWorkerHeartbeatRequest{WorkerId: id, Updates: updates, FreeSlots: int32(free)})
				cancel()
				if err == nil {
					w.acked(updates, resp.GetAcked())
					w.handle(id, resp)
					backoff.Reset()
					continue
				}
				w.sess.failed(c, err)
			}
			if w.ctx.Err() != nil {
				return
			}
			w.log.Debug("report failed; will re-send", zap.Int("updates", len(updates)), zap.Error(err))
			w.sleep(backoff.Next())
		}
	}
}

// pending returns every unacked result and the progress not yet sent.
func (w *Worker) pending() ([]*api.TaskUpdate, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]*api.TaskUpdate, 0, len(w.results)+len(w.dirty))
	for _, u := range w.results {
		out = append(out, u)
	}
	for r, b := range w.dirty {
		out = append(out, &api.TaskUpdate{JobId: r.job, TaskId: r.task, Attempt: r.attempt, Status: api.TaskInfo_RUNNING, BytesDone: b})
	}
	return out, w.freeLocked()
}

// acked forgets the results the leader has made durable.
func (w *Worker) acked(sent []*api.TaskUpdate, acked []*api.TaskRef) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ok := map[ref]bool{}
	for _, a := range acked {
		ok[ref{a.GetJobId(), a.GetTaskId(), a.GetAttempt()}] = true
	}
	for _, u := range sent {
		r := ref{u.GetJobId(), u.GetTaskId(), u.GetAttempt()}
		if !ok[r] {
			continue
		}
		if u.GetStatus() == api.TaskInfo_RUNNING {
			if w.dirty[r] == u.GetBytesDone() {
				delete(w.dirty, r)
			}
			continue
		}
		if w.results[r] == u {
			delete(w.results, r)
		}
	}
}

func (w *Worker) sleep(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-w.ctx.Done():
	}
}

// boundedOutput is a task's output as the job master keeps it: at most
// plans.MaxOutput bytes, else a note saying how much there was.
func boundedOutput(b []byte) []byte {
	if len(b) <= plans.MaxOutput {
		return b
	}
	out, _ := json.Marshal(map[string]any{"error": fmt.Sprintf("the task's output of %d bytes is over the %d kept", len(b), plans.MaxOutput)})
	return out
}
