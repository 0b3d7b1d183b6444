package jobmaster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/robfig/cron/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/plans"
)

// Cron policies: a policy submits a job of its plan and config each time
// its cron spec fires. Only the leader fires them (policyRunner, a leader
// loop); every decision goes into raft first (POLICY_LAUNCH, see
// policy_fsm.go), like Nomad's periodic launches:
//
//  1. a run falls due: the leader records LAUNCH with the job's request id,
//     "policy/<name>/<created>/<scheduled ms>", moving the policy's cursor
//     to the run's scheduled time;
//  2. it submits the job with that request id; the SUBMIT_JOB entry clears
//     the pending launch and sets the policy's last job.
//
// A leader that dies between 1 and 2 leaves the launch pending: the next
// leader submits it with the same request id, so the run happens once. A
// leader that dies before 1 committed leaves the cursor before the run: the
// next leader launches it (late) itself. Runs that fell due while no leader
// was up are caught up once (the latest of them; policy catch_up) or
// skipped.

// cronParser reads policy specs: five fields with an optional leading
// seconds field, descriptors (@hourly, @every 10s), and a CRON_TZ= prefix.
// Without CRON_TZ times are UTC, so every job master reads a spec alike.
var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Overlap policies: what a run due while the policy's last job still runs
// does.
const (
	overlapSkip  = "skip"  // it is skipped (the default)
	overlapQueue = "queue" // it starts when the last job ends (one waits at most; more are skipped)
	overlapAllow = "allow" // it starts at once
)

var policyNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

const (
	// misfireGrace: a run this late is still an ordinary run; later ones
	// were missed (no leader) and are caught up only with catch_up.
	misfireGrace = 2 * time.Second
	// policyMaxSleep bounds the scheduler's sleep: it looks again at least
	// this often even without a change.
	policyMaxSleep = 5 * time.Second
	// maxDueScan bounds the runs counted one by one when many were missed.
	maxDueScan = 10000
)

// parseCron parses and checks a policy's spec: it must fire at some time.
func parseCron(spec string) (cron.Schedule, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" {
		return nil, errors.New("empty cron spec")
	}
	s, err := cronParser.Parse(spec)
	if err != nil {
		return nil, err
	}
	if s.Next(time.Now().UTC()).IsZero() {
		return nil, errors.New("the spec never fires")
	}
	return s, nil
}

// checkOverlap normalizes an overlap policy name ("" is skip).
func checkOverlap(o string) (string, error) {
	switch strings.ToLower(strings.TrimSpace(o)) {
	case "", overlapSkip:
		return overlapSkip, nil
	case overlapQueue:
		return overlapQueue, nil
	case overlapAllow:
		return overlapAllow, nil
	}
	return "", fmt.Errorf("overlap %q: want skip, queue or allow", o)
}

// policyRequestID is the request id of the job of a policy's run.
func policyRequestID(p *api.PolicyInfo, scheduledMs int64, manual bool) string {
	if manual {
		return fmt.Sprintf("policy/%s/%d/now-%d", p.GetName(), p.GetCreatedMs(), scheduledMs)
	}
	return fmt.Sprintf("policy/%s/%d/%d", p.GetName(), p.GetCreatedMs(), scheduledMs)
}

func msTime(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

// decision is what the scheduler does about a policy now.
type decision struct {
	kind      api.PolicyLaunchCommand_Kind // KIND_UNSPECIFIED: nothing is due
	scheduled time.Time                    // the run it is about
	missed    int64                        // earlier due runs folded into it
	next      time.Time                    // nothing due: when the next run is (zero: never)
}

// decide is the scheduler's rule for an enabled policy with no launch
// pending; running says whether its last job has not ended.
func decide(sched cron.Schedule, p *api.PolicyInfo, now time.Time, running bool) decision {
	first := sched.Next(msTime(p.GetCursorMs()))
	if first.IsZero() || first.After(now) {
		return decision{next: first}
	}
	latest, n := latestDue(sched, first, now)
	d := decision{scheduled: latest, missed: n - 1}
	if now.Sub(latest) > misfireGrace && !p.GetCatchUp() {
		// Every due run was missed (no leader was up) and is not caught up.
		d.kind, d.missed = api.PolicyLaunchCommand_SKIP, n-1
		return d
	}
	d.kind = api.PolicyLaunchCommand_LAUNCH
	if running {
		switch p.GetOverlap() {
		case overlapAllow:
		case overlapQueue:
			d.kind = api.PolicyLaunchCommand_QUEUE
			if p.GetQueuedMs() != 0 {
				d.kind = api.PolicyLaunchCommand_SKIP // one run waits at most
			}
		default:
			d.kind = api.PolicyLaunchCommand_SKIP
		}
	}
	return d
}

// latestDue returns the latest run at or before now, starting from first
// (due), and how many runs are due.
func latestDue(sched cron.Schedule, first, now time.Time) (time.Time, int64) {
	latest, n := first, int64(1)
	for t := sched.Next(first); !t.IsZero() && !t.After(now); t = sched.Next(t) {
		latest, n = t, n+1
		if n == maxDueScan {
			// Very many missed: find the latest from a window before now
			// that widens until it holds a run.
			for w := time.Second; w < 400*24*time.Hour; w *= 2 {
				u := sched.Next(now.Add(-w))
				if u.IsZero() || u.After(now) {
					continue
				}
				for v := sched.Next(u); !v.IsZero() && !v.After(now); v = sched.Next(v) {
					u = v
				}
				if u.After(latest) {
					latest = u
				}
				break
			}
			return latest, n
		}
	}
	return latest, n
}

// policyRunner is the leader's cron loop.
type policyRunner struct {
	ls   *leaderState
	wake chan struct{}

	mu     sync.Mutex // one launch at a time (the loop and run-now)
	scheds map[string]cron.Schedule
	retry  map[string]time.Time // policy → no submit retry before
	tries  map[string]int
}

func newPolicyRunner(ls *leaderState) *policyRunner {
	return &policyRunner{
		ls: ls, wake: make(chan struct{}, 1),
		scheds: map[string]cron.Schedule{}, retry: map[string]time.Time{}, tries: map[string]int{},
	}
}

// poke makes the loop look at the policies now (and the event policies'
// watchers at theirs).
func (r *policyRunner) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
	if r.ls.events != nil {
		r.ls.events.poke()
	}
}

// run is the loop: each pass first keeps a watcher running for each
// enabled event policy (outside r.mu: a watcher being stopped may be
// waiting for it), then handles the cron policies and every pending
// launch.
func (r *policyRunner) run(ctx context.Context) {
	wakeLoop(ctx, r.wake, policyMaxSleep, func(ctx context.Context, now time.Time) time.Time {
		r.ls.events.sync(ctx)
		return r.tick(ctx, now)
	})
}

// wakeLoop is a leader loop that calls tick, then sleeps until the time
// tick returned (at most maxSleep) or a wake, until ctx ends.
func wakeLoop(ctx context.Context, wake <-chan struct{}, maxSleep time.Duration, tick func(ctx context.Context, now time.Time) time.Time) {
	for {
		next := tick(ctx, time.Now())
		t := time.NewTimer(min(max(time.Until(next), 0), maxSleep))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-wake:
			t.Stop()
		}
	}
}

// tick handles every policy and returns when to look again.
func (r *policyRunner) tick(ctx context.Context, now time.Time) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	var names []string
	r.ls.s.fsm.view(func(st *state) {
		st.policies.Ascend(func(p *api.PolicyInfo) bool { names = append(names, p.GetName()); return true })
	})
	next := now.Add(policyMaxSleep)
	for _, name := range names {
		if ctx.Err() != nil {
			return next
		}
		if at := r.step(ctx, name, now); at.Before(next) {
			next = at
		}
	}
	return next
}

func (r *policyRunner) policy(name string) *api.PolicyInfo {
	var p *api.PolicyInfo
	r.ls.s.fsm.view(func(st *state) { p = st.policy(name) })
	return p
}

func (r *policyRunner) schedule(spec string) (cron.Schedule, error) {
	if s, ok := r.scheds[spec]; ok {
		return s, nil
	}
	s, err := parseCron(spec)
	if err != nil {
		return nil, err
	}
	r.scheds[spec] = s
	return s, nil
}

// lastRunning reports whether the policy's last job or pipeline run
// exists and has not ended.
func (r *policyRunner) lastRunning(p *api.PolicyInfo) bool {
	if id := p.GetLastPipelineId(); id != 0 {
		if run := r.ls.s.fsm.Pipeline(id); run != nil && !terminalRun(run.GetStatus()) {
			return true
		}
	}
	if id := p.GetLastJobId(); id != 0 {
		j := r.ls.s.fsm.Job(id)
		return j != nil && !j.terminal()
	}
	return false
}

// step brings one policy up to date and returns when it wants to be looked
// at again. Each pass acts at most once per kind of work and re-reads the
// policy after each raft entry.
func (r *policyRunner) step(ctx context.Context, name string, now time.Time) time.Time {
	log := r.ls.s.log.With(zap.String("policy", name))
	later := now.Add(policyMaxSleep)
	for range 4 {
		p := r.policy(name)
		if p == nil {
			return later
		}
		// A launch recorded but not yet submitted goes first.
		if p.GetPendingRequestId() != "" {
			if at, ok := r.retry[name]; ok && now.Before(at) {
				return at
			}
			if _, err := r.submit(ctx, p); err != nil {
				return r.backoff(name, now, err, log)
			}
			continue
		}
		running := r.lastRunning(p)
		if p.GetQueuedMs() != 0 && !running {
			if err := r.launch(ctx, p, api.PolicyLaunchCommand_LAUNCH, p.GetQueuedMs(), 0, false, true); err != nil {
				return r.backoff(name, now, err, log)
			}
			continue
		}
		if !p.GetEnabled() || p.GetOnCreate() != "" {
			return later // an event policy's watcher launches its runs
		}
		sched, err := r.schedule(p.GetCron())
		if err != nil {
			log.Warn("policy has a bad cron spec; it never fires", zap.String("cron", p.GetCron()), zap.Error(err))
			return later
		}
		d := decide(sched, p, now, running)
		if d.kind == api.PolicyLaunchCommand_KIND_UNSPECIFIED {
			if d.next.IsZero() {
				return later
			}
			return d.next
		}
		if d.missed > 0 {
			log.Info("policy runs were missed while no leader was up", zap.Int64("missed", d.missed),
				zap.Bool("catchUp", p.GetCatchUp()), zap.Time("latest", d.scheduled))
		}
		if err := r.launch(ctx, p, d.kind, d.scheduled.UnixMilli(), d.missed, false, false); err != nil {
			return r.backoff(name, now, err, log)
		}
	}
	return now
}

func (r *policyRunner) backoff(name string, now time.Time, err error, log *zap.Logger) time.Time {
	r.tries[name]++
	wait := min(100*time.Millisecond<<min(r.tries[name], 6), 5*time.Second)
	if r.ls.ctx.Err() == nil {
		log.Warn("policy launch failed; retrying", zap.Duration("in", wait), zap.Error(err))
	}
	at := now.Add(wait)
	r.retry[name] = at
	return at
}

// launch records a decision in raft and, for a LAUNCH, submits the job.
func (r *policyRunner) launch(ctx context.Context, p *api.PolicyInfo, kind api.PolicyLaunchCommand_Kind, scheduledMs, missed int64, manual, fromQueue bool) error {
	cmd := &api.PolicyLaunchCommand{
		Name: p.GetName(), PolicyCreatedMs: p.GetCreatedMs(), Kind: kind, ScheduledMs: scheduledMs,
		Manual: manual, FromQueue: fromQueue, Missed: missed, NowMs: time.Now().UnixMilli(),
	}
	if kind == api.PolicyLaunchCommand_LAUNCH {
		cmd.RequestId = policyRequestID(p, scheduledMs, manual)
	}
	if err := r.ls.s.applyErr(ctx, cmd); err != nil {
		return err
	}
	if kind != api.PolicyLaunchCommand_LAUNCH {
		r.ls.s.log.Info("policy run not launched", zap.String("policy", p.GetName()), zap.String("decision", kind.String()),
			zap.Time("scheduled", msTime(scheduledMs)), zap.String("overlap", p.GetOverlap()))
		return nil
	}
	p = r.policy(p.GetName())
	if p == nil || p.GetPendingRequestId() != cmd.RequestId {
		return nil
	}
	_, err := r.submit(ctx, p)
	return err
}

// submit creates the job (or the pipeline run) of p's pending launch
// with its request id; it returns the job's id (0 for a run).
func (r *policyRunner) submit(ctx context.Context, p *api.PolicyInfo) (int64, error) {
	s := r.ls.s
	rid := p.GetPendingRequestId()
	if def := p.GetPipeline(); def != nil {
		return 0, r.submitRun(ctx, p, def)
	}
	if err := r.ls.jobRoom(ctx, "policy "+p.GetName()); err != nil {
		return 0, err
	}
	cfg := p.GetConfigJson()
	if len(p.GetPendingEvents()) > 0 {
		b, err := plans.EventConfig(p.GetPlan(), []byte(cfg), eventFiles(p))
		if err != nil {
			return 0, fmt.Errorf("policy %s: %w", p.GetName(), err)
		}
		cfg = string(b)
	}
	cmd := &api.SubmitJobCommand{
		Plan: p.GetPlan(), ConfigJson: cfg, Limits: p.GetLimits(), RequestId: rid,
		Submitter: "policy " + p.GetName(), RunAs: p.GetOwner(), Policy: p.GetName(), NowMs: time.Now().UnixMilli(),
		PlanVersion: pluginVersionOf(p.GetPlan()),
	}
	var resp any
	var err error
	if plan, lerr := plans.Lookup(p.GetPlan()); lerr == nil {
		resp, err = r.ls.submitJob(ctx, plan, cmd)
	} else {
		resp, err = s.apply(ctx, cmd) // the planner fails the job, naming the plan
	}
	if err != nil {
		return 0, err
	}
	sr, ok := resp.(submitResult)
	if !ok {
		return 0, fmt.Errorf("policy %s: unexpected FSM response %v", p.GetName(), resp)
	}
	delete(r.retry, p.GetName())
	delete(r.tries, p.GetName())
	s.log.Info("policy launched a job", zap.String("policy", p.GetName()), zap.Int64("job", sr.id),
		zap.String("requestId", rid), zap.Bool("existed", sr.existed), zap.Time("scheduled", msTime(p.GetPendingScheduledMs())))
	return sr.id, nil
}

// runNow launches a run of policy name at once, outside its schedule and
// regardless of its overlap policy, and returns the job's id (or, for a
// policy that fires a pipeline, the run's).
func (r *policyRunner) runNow(ctx context.Context, name string) (job, run int64, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.policy(name)
	if p == nil {
		return 0, 0, status.Errorf(codes.NotFound, "policy run-now %s: no such policy (see 'alluvium policy ls')", name)
	}
	if p.GetOnCreate() != "" {
		return 0, 0, status.Errorf(codes.FailedPrecondition, "policy run-now %s: it fires on files completed under %s, not on a clock: its runs are the files' (submit a job for the rest: alluvium job submit %s %s)", name, p.GetOnCreate(), cmp.Or(p.GetPlan(), "persist"), p.GetOnCreate())
	}
	if p.GetPendingRequestId() != "" {
		if _, err := r.submit(ctx, p); err != nil {
			return 0, 0, grpcErr("policy run-now "+name, err)
		}
		p = r.policy(name)
	}
	now := time.Now().UnixMilli()
	if err := r.launch(ctx, p, api.PolicyLaunchCommand_LAUNCH, now, 0, true, false); err != nil {
		return 0, 0, grpcErr("policy run-now "+name, err)
	}
	rid := policyRequestID(p, now, true)
	if p.GetPipeline() != nil {
		run, ok := r.ls.s.fsm.pipelineByRequest(rid)
		if !ok {
			return 0, 0, status.Errorf(codes.Unavailable, "policy run-now %s: the launch was recorded but its pipeline is not yet submitted (the leader retries)", name)
		}
		r.poke()
		return 0, run, nil
	}
	id, ok := r.ls.s.fsm.jobByRequest(rid)
	if !ok {
		return 0, 0, status.Errorf(codes.Unavailable, "policy run-now %s: the launch was recorded but its job is not yet submitted (the leader retries)", name)
	}
	r.poke()
	return id, 0, nil
}

// submitRun submits the pipeline run of p's pending launch: the
// definition with the policy's parameters (and the run's scheduled time
// as scheduled_ms, for a definition that declares it), as p's owner.
func (r *policyRunner) submitRun(ctx context.Context, p *api.PolicyInfo, def *api.PipelineDef) error {
	s := r.ls.s
	rid := p.GetPendingRequestId()
	kind := api.PipelineTrigger_CRON
	if strings.Contains(rid, "/now-") {
		kind = api.PipelineTrigger_RUN_NOW
	}
	sched := p.GetPendingScheduledMs()
	offers := cronOffers(sched)
	trigger := &api.PipelineTrigger{Kind: kind, Policy: p.GetName(), ScheduledMs: sched}
	if evs := p.GetPendingEvents(); len(evs) > 0 {
		offers = eventOffers(p)
		trigger = &api.PipelineTrigger{Kind: api.PipelineTrigger_EVENTS, Policy: p.GetName(), Events: int64(len(evs)),
			FirstSequence: evs[0].GetSequence(), LastSequence: evs[len(evs)-1].GetSequence()}
	}
	run, err := newRun(def, triggerParams(def, p.GetPipelineParams(), offers))
	if err != nil {
		// It was checked when the policy was added; retried with backoff
		// (and logged) rather than dropped.
		return fmt.Errorf("policy %s: pipeline: %w", p.GetName(), err)
	}
	run.Submitter, run.RunAs, run.RequestId = "policy "+p.GetName(), p.GetOwner(), rid
	run.Trigger = trigger
	out, existed, err := s.submitRun(ctx, run)
	if err != nil {
		return err
	}
	delete(r.retry, p.GetName())
	delete(r.tries, p.GetName())
	s.log.Info("policy launched a pipeline", zap.String("policy", p.GetName()), zap.Int64("pipeline", out.GetId()),
		zap.String("requestId", rid), zap.Bool("existed", existed), zap.Time("scheduled", msTime(sched)))
	return nil
}

// cronOffers are the parameters a cron or run-now run offers a definition
// that declares them: scheduled (RFC 3339, UTC) and date (YYYY-MM-DD).
func cronOffers(scheduledMs int64) map[string]any {
	t := msTime(scheduledMs)
	return map[string]any{"scheduled": t.Format(time.RFC3339), "date": t.Format(time.DateOnly)}
}

// triggerParams are a policy run's parameters: the policy's, then what the
// trigger offers (scheduled, date, paths, ...) for the parameters the
// definition declares and the policy did not set.
func triggerParams(def *api.PipelineDef, given map[string]string, offered map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range given {
		out[k] = v
	}
	for _, p := range def.GetParams() {
		if _, set := out[p.GetName()]; set {
			continue
		}
		if v, ok := offered[p.GetName()]; ok {
			out[p.GetName()] = v
		}
	}
	return out
}
