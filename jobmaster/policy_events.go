package jobmaster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/pipespec"
	"github.com/alluvium/alluvium/internal/rpc"
	"github.com/alluvium/alluvium/plans"
)

// Event policies (policy add --on-create PATH): the leader reads the FS
// master's completion feed under each enabled event policy's path — one
// watcher goroutine per policy, a long poll from the policy's committed
// cursor, acting for the policy's owner so it sees only what the owner
// may — and batches what it reads: the first completion opens a window of
// the policy's debounce; the window's files (at most batch_max, and no
// more bytes of paths than a run's parameters hold) are one run.
//
// Firing is one raft entry (POLICY_LAUNCH with event_from/event_to and the
// files): the cursor moves and the launch is recorded together, and the
// job or pipeline run is then submitted with the launch's request id
// ("policy/<name>/<created>/ev-<cursor>"), exactly as a cron launch. A
// leader that dies at any point leaves either the old cursor (the next
// leader reads the same events again and fires them) or the new cursor
// with the launch pending (the next leader submits it with the same id):
// every completion is in exactly one run. What is read but not yet fired
// lives only in the leader's memory, and is read again by the next.

const (
	// Validation ranges of --debounce and --batch-max.
	maxDebounce        = time.Hour
	defaultBatchMax    = 1000
	maxBatchMax        = 10000
	eventFeedWait      = 30 * time.Second // one long poll with nothing in the window
	eventQueueRecheck  = 500 * time.Millisecond
	eventPlanPathBytes = 2 << 20 // paths in one run of a plan (a raft entry's worth)
	// eventParamRoom is what an event run's parameters keep free for the
	// policy's own and the path: the rest of pipespec.MaxParamBytes holds
	// the batch's paths.
	eventParamRoom = 8 << 10
)

// eventRunner keeps one watcher per enabled event policy while this node
// leads.
type eventRunner struct {
	ls       *leaderState
	mu       sync.Mutex
	watchers map[string]*eventWatcher // by policy name
	wakeMu   sync.Mutex
	wakeCh   chan struct{} // closed (and replaced) by poke
}

type eventWatcher struct {
	created int64
	cancel  context.CancelFunc
	done    chan struct{}
}

func newEventRunner(ls *leaderState) *eventRunner {
	return &eventRunner{ls: ls, watchers: map[string]*eventWatcher{}, wakeCh: make(chan struct{})}
}

// poke wakes every watcher waiting for a pending launch to be submitted
// or for the policy's last run to end.
func (r *eventRunner) poke() {
	r.wakeMu.Lock()
	close(r.wakeCh)
	r.wakeCh = make(chan struct{})
	r.wakeMu.Unlock()
}

func (r *eventRunner) wake() <-chan struct{} {
	r.wakeMu.Lock()
	defer r.wakeMu.Unlock()
	return r.wakeCh
}

// sync starts a watcher for every enabled event policy without one and
// stops those of policies removed, paused or added again.
func (r *eventRunner) sync(ctx context.Context) {
	want := map[string]int64{}
	r.ls.s.fsm.view(func(st *state) {
		st.policies.Ascend(func(p *api.PolicyInfo) bool {
			if p.GetOnCreate() != "" && p.GetEnabled() {
				want[p.GetName()] = p.GetCreatedMs()
			}
			return true
		})
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	for name, w := range r.watchers {
		if c, ok := want[name]; !ok || c != w.created {
			w.cancel()
			<-w.done
			delete(r.watchers, name)
		}
	}
	if ctx.Err() != nil {
		return
	}
	for name, created := range want {
		if _, ok := r.watchers[name]; ok {
			continue
		}
		wctx, cancel := context.WithCancel(ctx)
		w := &eventWatcher{created: created, cancel: cancel, done: make(chan struct{})}
		r.watchers[name] = w
		go func() { defer close(w.done); r.watch(wctx, name, created) }()
	}
}

// stop ends every watcher (leadership lost).
func (r *eventRunner) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for name, w := range r.watchers {
		w.cancel()
		<-w.done
		delete(r.watchers, name)
	}
}

// batch is what a watcher read and has not fired yet.
type eventBatch struct {
	from   int64 // the committed cursor it was read from
	cursor int64 // read up to here
	events []*api.PolicyEvent
	bytes  int
	opened time.Time // when its first event was read (zero: empty)
	full   bool      // no room for more: batch_max or the bytes bound
}

// watch is one event policy's loop.
func (r *eventRunner) watch(ctx context.Context, name string, created int64) {
	s := r.ls.s
	log := s.log.With(zap.String("policy", name))
	var b *eventBatch
	backoff := 100 * time.Millisecond
	fail := func(msg string, err error) {
		if ctx.Err() == nil {
			log.Warn(msg, zap.Duration("retry", backoff), zap.Error(err))
		}
		sleepCtx(ctx, backoff)
		backoff = min(2*backoff, 5*time.Second)
	}
	for ctx.Err() == nil {
		wake := r.wake()
		p := s.fsm.policy(name)
		if p == nil || p.GetCreatedMs() != created || !p.GetEnabled() || p.GetOnCreate() == "" {
			return
		}
		if p.GetPendingRequestId() != "" {
			// The policy runner submits it (with its own retries); the
			// next batch waits for the launch to complete.
			waitWake(ctx, wake, eventQueueRecheck)
			continue
		}
		if b == nil || b.from != p.GetEventCursor() {
			b = &eventBatch{from: p.GetEventCursor(), cursor: p.GetEventCursor()}
		}
		limit, room := batchLimits(p)
		debounce := time.Duration(p.GetDebounceMs()) * time.Millisecond
		if !b.full {
			wait := eventFeedWait
			if len(b.events) > 0 {
				wait = max(time.Until(b.opened.Add(debounce)), 0)
			}
			if err := r.read(ctx, p, b, limit, room, wait); err != nil {
				var exp *expiredError
				switch {
				case errors.As(err, &exp) && len(b.events) > 0:
					b.full = true // fire what was read; the gap is met from the new cursor
				case errors.As(err, &exp):
					r.expired(ctx, p, b, exp.oldest, log)
					b = nil
					continue
				default:
					fail("reading the completion feed failed", err)
					continue
				}
			} else {
				backoff = 100 * time.Millisecond
			}
		}
		if len(b.events) == 0 || !b.full && time.Since(b.opened) < debounce {
			continue
		}
		fired, err := r.fire(ctx, p, b)
		switch {
		case err != nil:
			fail("firing an event run failed", err)
		case !fired: // overlap queue: the last run still runs
			waitWake(ctx, wake, eventQueueRecheck)
		default:
			b = nil
		}
	}
}

// expiredError is the feed's answer to a cursor older than it keeps.
type expiredError struct{ oldest int64 }

func (e *expiredError) Error() string {
	return fmt.Sprintf("completion feed cursor expired (oldest kept %d)", e.oldest)
}

// read adds to b what the feed holds after b.cursor, waiting up to wait
// for a first event.
func (r *eventRunner) read(ctx context.Context, p *api.PolicyInfo, b *eventBatch, limit, room int, wait time.Duration) error {
	actx := rpc.ActAs(ctx, p.GetOwner())
	resp, err := r.ls.s.env.FS().WatchCompletions(actx, &api.WatchCompletionsRequest{
		Path: p.GetOnCreate(), After: b.cursor, MaxEvents: int32(limit - len(b.events)), WaitMs: wait.Milliseconds(),
	})
	if err != nil {
		if reason, meta := api.ReasonOf(err); reason == api.ReasonCompletionsExpired && status.Code(err) == codes.OutOfRange {
			if v, err := strconv.ParseInt(meta[api.MetaCompletionsOldest], 10, 64); err == nil {
				return &expiredError{oldest: v}
			}
		}
		return err
	}
	for _, e := range resp.GetEvents() {
		if b.bytes+len(e.GetPath()) > room && len(b.events) > 0 {
			b.full = true // the rest is read again after this batch fires
			return nil
		}
		if len(b.events) == 0 {
			b.opened = time.Now()
		}
		b.events = append(b.events, &api.PolicyEvent{Path: e.GetPath(), FileId: e.GetFileId(), Sequence: e.GetSequence()})
		b.bytes += len(e.GetPath())
		b.cursor = e.GetSequence()
	}
	if len(b.events) >= limit {
		b.full = true
		return nil
	}
	b.cursor = max(b.cursor, resp.GetCursor())
	return nil
}

// batchLimits are a run's bounds for p: files, and bytes of paths (a
// pipeline's parameters are bounded by pipespec.MaxParamBytes).
func batchLimits(p *api.PolicyInfo) (files, bytes int) {
	files = int(p.GetBatchMax())
	if files <= 0 {
		files = defaultBatchMax
	}
	bytes = eventPlanPathBytes
	if p.GetPipeline() != nil {
		own := 0
		for k, v := range p.GetPipelineParams() {
			own += len(k) + len(v)
		}
		bytes = max(pipespec.MaxParamBytes-eventParamRoom-own, 1)
	}
	return files, bytes
}

// fire launches (or, overlap skip, skips) b as one raft entry and then
// submits the launch. It reports false, with nothing done, when the
// policy's overlap is queue and its last run has not ended.
func (r *eventRunner) fire(ctx context.Context, p *api.PolicyInfo, b *eventBatch) (bool, error) {
	pol := r.ls.pol
	pol.mu.Lock()
	defer pol.mu.Unlock()
	kind := api.PolicyLaunchCommand_LAUNCH
	if pol.lastRunning(p) {
		switch p.GetOverlap() {
		case overlapAllow:
		case overlapSkip:
			kind = api.PolicyLaunchCommand_SKIP
		default:
			return false, nil
		}
	}
	cmd := &api.PolicyLaunchCommand{
		Name: p.GetName(), PolicyCreatedMs: p.GetCreatedMs(), Kind: kind, NowMs: time.Now().UnixMilli(),
		EventFrom: b.from, EventTo: b.cursor, Events: b.events,
	}
	if kind == api.PolicyLaunchCommand_LAUNCH {
		cmd.RequestId = fmt.Sprintf("policy/%s/%d/ev-%d", p.GetName(), p.GetCreatedMs(), b.cursor)
	}
	if err := r.ls.s.applyErr(ctx, cmd); err != nil {
		return false, err
	}
	if kind == api.PolicyLaunchCommand_SKIP {
		r.ls.s.log.Info("event run skipped: the policy's last run still runs (overlap skip)", zap.String("policy", p.GetName()),
			zap.Int("files", len(b.events)), zap.Int64("cursor", b.cursor))
		return true, nil
	}
	if np := pol.policy(p.GetName()); np != nil && np.GetPendingRequestId() == cmd.RequestId {
		if _, err := pol.submit(ctx, np); err != nil {
			// The policy runner retries the pending launch.
			r.ls.s.log.Warn("event run recorded; its submit failed and is retried", zap.String("policy", p.GetName()), zap.Error(err))
			pol.poke()
		}
	}
	return true, nil
}

// expired moves a policy whose cursor the feed no longer serves to the
// oldest it does: the completions in between are unknown and so not
// launched. It is logged as an error and counted in the policy's
// skipped_events (as one: their number is unknown).
func (r *eventRunner) expired(ctx context.Context, p *api.PolicyInfo, b *eventBatch, oldest int64, log *zap.Logger) {
	log.Error("the completion feed no longer holds this policy's cursor: completions in between are not launched (rescan the path by hand, e.g. 'alluvium job submit persist PATH')",
		zap.String("path", p.GetOnCreate()), zap.Int64("cursor", b.from), zap.Int64("oldest", oldest))
	if oldest <= b.from {
		sleepCtx(ctx, time.Second)
		return
	}
	pol := r.ls.pol
	pol.mu.Lock()
	defer pol.mu.Unlock()
	err := r.ls.s.applyErr(ctx, &api.PolicyLaunchCommand{
		Name: p.GetName(), PolicyCreatedMs: p.GetCreatedMs(), Kind: api.PolicyLaunchCommand_SKIP, NowMs: time.Now().UnixMilli(),
		EventFrom: b.from, EventTo: oldest, SkippedEvents: 1,
	})
	if err != nil && ctx.Err() == nil {
		log.Warn("moving the policy past the expired cursor failed; retrying", zap.Error(err))
		sleepCtx(ctx, time.Second)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func waitWake(ctx context.Context, wake <-chan struct{}, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-wake:
	case <-t.C:
	}
}

// eventFiles are the files of p's pending launch.
func eventFiles(p *api.PolicyInfo) []plans.EventFile {
	out := make([]plans.EventFile, len(p.GetPendingEvents()))
	for i, e := range p.GetPendingEvents() {
		out[i] = plans.EventFile{Path: e.GetPath(), ID: e.GetFileId()}
	}
	return out
}

// eventOffers are the parameters an event run offers a pipeline that
// declares them: paths (the list), path (their common path: the file for
// one, else the deepest directory holding them all), events (how many).
func eventOffers(p *api.PolicyInfo) map[string]any {
	ps := make([]string, len(p.GetPendingEvents()))
	for i, e := range p.GetPendingEvents() {
		ps[i] = e.GetPath()
	}
	return map[string]any{"paths": ps, "path": plans.EventPath(ps), "events": strconv.Itoa(len(ps))}
}
