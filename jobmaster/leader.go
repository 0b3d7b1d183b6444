package jobmaster

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/config"
	"github.com/alluvium/alluvium/internal/raftgroup"
	"github.com/alluvium/alluvium/plans"
)

// leaderState is what exists only while this node leads: the broker, the
// update collector, worker TTLs, planners and the finisher.
type leaderState struct {
	s      *Server
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	broker   *broker
	coll     *collector
	hb       *heartbeats
	planners *planners
	finisher *finisher
	pol      *policyRunner
	events   *eventRunner
	pipes    *pipelineRunner
	submits  *submitBatcher
	term     uint64
}

// monitorLeadership starts and stops the leader loops as raft's
// leadership changes (raftgroup.MonitorLeadership).
func (s *Server) monitorLeadership() {
	raftgroup.MonitorLeadership(s.notifyCh, s.shutdown, s.leaderLoop)
}

// leaderLoop waits for a barrier (every entry of earlier terms applied, so
// the FSM is complete), then runs the leader's duties until stop.
func (s *Server) leaderLoop(stop <-chan struct{}) {
	backoff := 50 * time.Millisecond
	for {
		err := s.raft.Barrier(time.Minute).Error()
		if err == nil {
			break
		}
		s.log.Warn("raft barrier failed; retrying", zap.Error(err))
		select {
		case <-stop:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
	ls := s.establishLeadership()
	s.log.Info("job master is the leader", zap.Uint64("term", ls.term), zap.Uint64("applied", s.fsm.AppliedIndex()))
	<-stop
	s.revokeLeadership(ls)
	s.log.Info("job master is no longer the leader")
}

func (s *Server) establishLeadership() *leaderState {
	ctx, cancel := context.WithCancel(context.Background())
	ls := &leaderState{s: s, ctx: ctx, cancel: cancel, term: s.raft.CurrentTerm()}
	jm := s.cfg.JobMaster
	ls.broker = newBroker(s.fsm, jm.Task.Timeout, jm.Task.LocalityWait, remoteJobOf(s.fsm))
	ls.coll = newCollector(func(ctx context.Context, cmd *api.UpdateTasksCommand) error {
		return s.applyErr(ctx, cmd)
	}, jm.Task.BatchMax, int32(jm.Task.MaxAttempts))
	ls.coll.observe = s.m.observeBatch
	ls.submits = newSubmitBatcher(ctx, s.apply)
	ls.hb = newHeartbeats(func() time.Duration { _, ttl := ls.timing(); return ttl }, ls.workerLost)
	ls.planners = newPlanners(ls)
	ls.finisher = newFinisher(ls)
	ls.pol = newPolicyRunner(ls)
	ls.events = newEventRunner(ls)
	ls.pipes = newPipelineRunner(ls)

	// From here on the FSM tells us every change; the scan below covers what
	// happened before. Both paths tolerate seeing a change twice.
	s.fsm.setHook(ls.onEvents)
	var (
		workers  []*workerRec
		pending  []taskEvent
		running  []taskEvent
		planning []int64
		finished []int64
	)
	s.fsm.view(func(st *state) {
		st.workers.Ascend(func(w *workerRec) bool {
			if w.State == api.WorkerState_LIVE {
				workers = append(workers, w)
			}
			return true
		})
		st.jobs.Ascend(func(j *jobRec) bool {
			if j.terminal() {
				return true
			}
			if !j.PlanningDone {
				planning = append(planning, j.ID)
			} else if j.Outstanding == 0 {
				finished = append(finished, j.ID)
			}
			st.jobTasks(j.ID, func(t *taskRec) bool {
				ev := taskEvent{key: t.key(), status: t.Status, attempt: t.Attempt, worker: t.WorkerID, bwID: t.BWID, bwAddr: t.BWAddr}
				switch t.Status {
				case api.TaskInfo_PENDING:
					pending = append(pending, ev)
				case api.TaskInfo_RUNNING:
					running = append(running, ev)
				}
				return true
			})
			return true
		})
	})
	for _, w := range workers {
		ls.broker.setWorker(w)
	}
	every, ttl := ls.timing()
	// Spread over one more TTL, as Nomad staggers the TTLs after a leader
	// election: thousands of inherited workers that have not found this
	// leader yet do not all come due at one instant.
	for _, w := range workers {
		ls.hb.arm(w.ID, failoverTTL(every, ttl)+rand.N(ttl))
	}
	ls.broker.onTasks(running)
	// The PENDING tasks wait until every live worker has said what it
	// holds: the old leader may have handed some out without committing
	// the DISPATCH (settle, below).
	ls.broker.startSettle(pending)

	ls.wg.Add(6)
	// The settle's backstop: the failover TTL, its spread, one spare TTL
	// (workerLost) and an interval.
	go func() { defer ls.wg.Done(); ls.settle(ctx, len(pending), failoverTTL(every, ttl)+2*ttl+every) }()
	go func() { defer ls.wg.Done(); ls.pipes.run(ctx) }()
	go func() { defer ls.wg.Done(); ls.coll.run(ctx) }()
	go func() { defer ls.wg.Done(); ls.watchTimeouts(ctx) }()
	go func() { defer ls.wg.Done(); ls.gcLoop(ctx) }()
	go func() { defer ls.wg.Done(); ls.pol.run(ctx) }()
	for _, id := range planning {
		ls.planners.consider(id)
	}
	for _, id := range finished {
		ls.finisher.consider(id)
	}
	s.leader.Store(ls)
	s.m.leader.Set(1)
	return ls
}

func (s *Server) revokeLeadership(ls *leaderState) {
	s.leader.Store(nil)
	s.m.leader.Set(0)
	s.fsm.setHook(nil)
	ls.cancel()
	ls.events.stop()
	ls.broker.close()
	ls.hb.stop()
	ls.planners.wait()
	ls.finisher.wait()
	ls.wg.Wait()
}

// onEvents is the FSM hook: it runs on raft's FSM goroutine after each
// applied entry, so it only queues work.
func (ls *leaderState) onEvents(ev *events) {
	ls.broker.onTasks(ev.tasks)
	for _, id := range ev.workers {
		w := ls.s.fsm.worker(id)
		if w == nil {
			continue
		}
		ls.broker.setWorker(w)
		if w.State == api.WorkerState_LIVE {
			ls.hb.reset(id)
		} else {
			ls.hb.remove(id)
			ls.broker.peerLost(w.BWAddr)
		}
	}
	done := 0
	for _, t := range ev.tasks {
		if t.status == api.TaskInfo_COMPLETED {
			done++
		}
	}
	ls.s.m.addDone(done)
	if len(ev.pipelines) > 0 {
		ls.pipes.poke()
		ls.pol.poke() // a policy's run may have ended (overlap)
	}
	for _, id := range ev.jobs {
		j := ls.s.fsm.Job(id)
		if j == nil {
			continue
		}
		switch {
		case j.terminal():
			if j.Policy != "" {
				ls.pol.poke() // a queued run may start
			}
			if j.PipelineRunID != 0 {
				ls.pipes.poke() // its step ended
			}
		case !j.PlanningDone:
			ls.planners.consider(id)
		case j.Outstanding == 0:
			ls.finisher.consider(id)
		}
		ls.planners.poke(id)
	}
}

// settle waits for the broker's settle at leadership start to end (every
// worker live then has reported what it holds, or been declared LOST) and
// ends it at the deadline, by which the failover TTL timers started with
// this leadership have declared every silent worker LOST — as Nomad renews
// every node's TTL at failover and counts on the TTL to bound what it
// waits for. The deadline is only the backstop for a LOST declaration that
// could not be committed.
func (ls *leaderState) settle(ctx context.Context, pending int, deadline time.Duration) {
	start := time.Now()
	t := time.NewTimer(deadline)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-ls.broker.settledCh():
		if pending > 0 {
			ls.s.log.Info("job workers reported their tasks: tasks pending at leadership start handed out",
				zap.Int("pending", pending), zap.Duration("after", time.Since(start)))
		}
	case <-t.C:
		n := ls.broker.endSettle()
		ls.s.log.Warn("not every job worker reported its tasks to the new leader in time: tasks pending at leadership start handed out anyway (one a silent worker still runs may run twice)",
			zap.Int("released", n), zap.Duration("after", time.Since(start)))
	}
}

// timing is the heartbeat interval and TTL handed to job workers: the
// configured ones, stretched as the number of live workers grows
// (config.Liveness).
func (ls *leaderState) timing() (every, ttl time.Duration) {
	w := ls.s.cfg.JobMaster.Worker
	return config.Liveness(w.HeartbeatInterval, w.Timeout, w.MaxHeartbeatsPerSecond, max(ls.broker.liveCount(), 1))
}

// workerLost is the TTL timer's action. The FS master hears it first, so
// the block worker of the same process stops counting before the tasks go
// back to PENDING: a task run again elsewhere never finds its data "cached"
// on the worker that went silent. But first the FS master is asked whether
// the block worker of the process still heartbeats: then the process lives
// and only its calls to this leader are late (a leader swamped by a
// registration storm, or one that just took over), and it gets one more
// TTL — once per silence, so a process cut off from the job master alone
// is LOST after two TTLs at most.
func (ls *leaderState) workerLost(id int64) {
	if ls.ctx.Err() != nil {
		return
	}
	every, ttl := ls.timing()
	reason := fmt.Sprintf("job worker silent for %s", ttl)
	if w := ls.s.fsm.worker(id); w != nil && w.BWID != 0 {
		var within time.Duration
		if !ls.hb.wasSpared(id) {
			within = config.ConfirmWithin(every, ttl)
		}
		if ls.tellFSMaster(w, reason, within) && ls.hb.spare(id, ttl) {
			ls.s.log.Info("job worker silent, but its block worker heartbeats to the FS master: one more TTL before it is LOST",
				zap.Int64("worker", id), zap.Int64("block_worker", w.BWID), zap.Duration("ttl", ttl))
			return
		}
	}
	if err := ls.loseWorker(id, reason); err != nil {
		ls.s.log.Warn("marking job worker lost failed", zap.Int64("worker", id), zap.Error(err))
		return
	}
	ls.s.log.Warn("job worker lost: no heartbeat", zap.Int64("worker", id), zap.Duration("timeout", ttl))
}

// loseWorker declares job worker id LOST in raft: its running tasks go back
// to PENDING (attempt+1) or FAIL at max attempts.
func (ls *leaderState) loseWorker(id int64, reason string) error {
	err := ls.s.applyErr(ls.ctx, &api.WorkerLostCommand{
		WorkerId: id, MaxAttempts: int32(ls.s.cfg.JobMaster.Task.MaxAttempts),
		Reason: reason, NowMs: time.Now().UnixMilli(),
	})
	if err == nil {
		ls.s.m.workersLost.Inc()
	}
	return err
}

// tellFSMaster declares the block worker beside job worker w LOST at the FS
// master (best effort, briefly: the FS master times it out by itself too).
// With unlessWithin set, the FS master declares it only if it has not heard
// from it within that long either; heard reports that it has (nothing was
// declared).
func (ls *leaderState) tellFSMaster(w *workerRec, reason string, unlessWithin time.Duration) (heard bool) {
	bm := ls.s.env.BlockMaster()
	if bm == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ls.ctx, 2*time.Second)
	defer cancel()
	resp, err := bm.WorkerLost(ctx, &api.WorkerLostRequest{WorkerId: w.BWID, Reason: "job master: " + reason, UnlessHeardWithinMs: unlessWithin.Milliseconds()})
	if err != nil {
		if ls.ctx.Err() == nil {
			ls.s.log.Warn("could not tell the FS master a worker is lost (it times the block worker out itself)",
				zap.Int64("block_worker", w.BWID), zap.String("address", w.BWAddr), zap.Error(err))
		}
		return false
	}
	return unlessWithin > 0 && resp.GetHeard()
}

// watchTimeouts fails attempts that ran past the task timeout (the worker
// enforces it too; this catches a worker that cannot report) and re-queues
// hand-outs whose dispatch never made it into raft.
func (ls *leaderState) watchTimeouts(ctx context.Context) {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	grace := 5 * time.Second
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			timedOut, stale := ls.broker.expired(now.Add(-grace), 30*time.Second)
			var trs []*api.TaskTransition
			for _, r := range timedOut {
				trs = append(trs, &api.TaskTransition{
					JobId: r.key.job, TaskId: r.key.task, Attempt: r.run.attempt, Kind: api.TaskTransition_TIMEOUT,
					Error: fmt.Sprintf("task timed out after %s", ls.s.cfg.JobMaster.Task.Timeout),
				})
			}
			ls.coll.submit(trs)
			if len(stale) > 0 {
				var again []*taskRec
				for _, k := range stale {
					if t := ls.s.fsm.task(k); t != nil && t.Status == api.TaskInfo_PENDING {
						again = append(again, t)
					}
				}
				ls.broker.requeue(again)
			}
		}
	}
}

// jobRoom makes room for one more job under jobmaster.job.capacity,
// compacting the oldest finished job if need be; a ResourceExhausted error
// (naming what) when every kept job is unfinished.
func (ls *leaderState) jobRoom(ctx context.Context, what string) error {
	s := ls.s
	c := s.cfg.JobMaster.Job.Capacity
	if c <= 0 {
		return nil
	}
	n := 0
	s.fsm.view(func(st *state) { n = st.jobs.Len() })
	if n < c {
		return nil
	}
	if _, err := ls.gc(ctx, 1); err != nil {
		return err
	}
	s.fsm.view(func(st *state) { n = st.jobs.Len() })
	if n >= c {
		return status.Errorf(codes.ResourceExhausted, "%s: %d jobs are kept (jobmaster.job.capacity) and none has finished", what, n)
	}
	return nil
}

// gcLoop compacts finished jobs past jobmaster.job.retention, the oldest
// finished ones beyond jobmaster.job.capacity, and workers LOST for longer
// than the retention.
func (ls *leaderState) gcLoop(ctx context.Context) {
	every := ls.s.cfg.JobMaster.Job.GCInterval
	if every <= 0 {
		every = time.Minute
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if _, err := ls.gc(ctx, 0); err != nil && ctx.Err() == nil {
				ls.s.log.Warn("job GC failed", zap.Error(err))
			}
		}
	}
}

// gc deletes what retention and capacity allow; room asks for that many
// free places below the capacity (for a submit). It returns how many jobs
// it deleted.
func (ls *leaderState) gc(ctx context.Context, room int) (int, error) {
	lim := ls.s.cfg.JobMaster.Job
	now := time.Now().UnixMilli()
	var (
		finished []*jobRec
		total    int
		lost     []int64
	)
	ls.s.fsm.view(func(st *state) {
		total = st.jobs.Len()
		st.jobs.Ascend(func(j *jobRec) bool {
			if j.terminal() {
				finished = append(finished, j)
			}
			return true
		})
		st.workers.Ascend(func(w *workerRec) bool {
			if w.State != api.WorkerState_LIVE && lim.Retention > 0 && now-w.UpdatedMs > lim.Retention.Milliseconds() {
				lost = append(lost, w.ID)
			}
			return true
		})
	})
	sort.Slice(finished, func(i, j int) bool { return finished[i].FinishedMs < finished[j].FinishedMs })
	var del []int64
	over := 0
	if lim.Capacity > 0 {
		over = total + room - lim.Capacity
	}
	for _, j := range finished {
		expired := lim.Retention > 0 && now-j.FinishedMs > lim.Retention.Milliseconds()
		if expired || over > 0 {
			del = append(del, j.ID)
			over--
		}
	}
	if err := ls.gcPipelines(ctx, now); err != nil {
		return 0, err
	}
	deleted := len(del)
	for len(del) > 0 || len(lost) > 0 {
		n := min(len(del), 1000)
		cmd := &api.DeleteJobsCommand{JobIds: del[:n], WorkerIds: lost}
		if err := ls.s.applyErr(ctx, cmd); err != nil {
			return 0, err
		}
		if len(del[:n]) > 0 {
			ls.s.log.Info("compacted finished jobs", zap.Int("jobs", n))
		}
		del, lost = del[n:], nil
	}
	return deleted, nil
}

// maxFinishedPipelines bounds the finished pipeline runs kept (the oldest
// go first), besides jobmaster.job.retention.
const maxFinishedPipelines = 1000

// gcPipelines compacts finished runs past the retention and beyond
// maxFinishedPipelines.
func (ls *leaderState) gcPipelines(ctx context.Context, now int64) error {
	ret := ls.s.cfg.JobMaster.Job.Retention
	var finished []*api.PipelineRun
	ls.s.fsm.view(func(st *state) {
		st.pipelines.Ascend(func(r *api.PipelineRun) bool {
			if terminalRun(r.GetStatus()) {
				finished = append(finished, r)
			}
			return true
		})
	})
	sort.Slice(finished, func(i, j int) bool { return finished[i].GetFinishedMs() < finished[j].GetFinishedMs() })
	var del []int64
	over := len(finished) - maxFinishedPipelines
	for _, r := range finished {
		if (ret > 0 && now-r.GetFinishedMs() > ret.Milliseconds()) || over > 0 {
			del = append(del, r.GetId())
			over--
		}
	}
	if len(del) == 0 {
		return nil
	}
	if err := ls.s.applyErr(ctx, &api.DeletePipelinesCommand{RunIds: del}); err != nil {
		return err
	}
	ls.s.log.Info("compacted finished pipeline runs", zap.Int("runs", len(del)))
	return nil
}

// remoteJobOf says whether a job's tasks are a remote plan's
// (plans.RemoteRunner: a load), which the broker counts against a job
// worker's remote capacity (plans.RunsRemotely: never a plugin's). The
// scheduler itself never looks at plans.
func remoteJobOf(fsm *FSM) func(job int64) bool {
	return func(job int64) bool {
		j := fsm.Job(job)
		return j != nil && plans.RunsRemotely(j.Plan, j.PlanVersion)
	}
}
