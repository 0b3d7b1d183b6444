package sim

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/client"
	"github.com/alluvium/alluvium/plans"
)

// jobWorker is one simulated job worker beside block worker bw: it
// registers, long-polls for tasks, completes each at once and reports the
// results until the leader acks them, as jobworker does.
type jobWorker struct {
	s  *Sim
	i  int
	bw *blockWorker
	m  *masters

	// instance is this simulated process's, as a real job worker's
	// (jobworker.Worker.instance): a retried registration keeps its record.
	instance string

	mu       sync.Mutex
	id       int64
	interval time.Duration
	leader   string
	// spreadNext: asked to register again, wait this long first (run's
	// goroutine only).
	spreadNext time.Duration
	// due: when the running long poll is to end (run's goroutine only;
	// zero before the first): polls end every interval, however late the
	// replies come.
	due     time.Time
	unacked map[taskRef]*api.TaskUpdate
	// polls carries the polls and reports over one stream to the leader,
	// as jobworker's (run's goroutine only).
	polls client.Polls
}

type taskRef struct {
	job, task int64
	attempt   int32
}

func (j *jobWorker) registered() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.id != 0
}

// leaderClient is a client of the leading job master alone, found by the
// client layer, for this worker's session with it (as jobworker's).
func (j *jobWorker) leaderClient(ctx context.Context) (api.JobMasterClient, error) {
	c, addr, err := j.m.jm.LeaderClient(ctx)
	if err != nil {
		return nil, err
	}
	j.leader = addr
	return c, nil
}

func (j *jobWorker) run(ctx context.Context) {
	j.unacked = map[taskRef]*api.TaskUpdate{}
	defer j.polls.Close()
	backoff := client.NewBackoff(50*time.Millisecond, 2*time.Second)
	fail := func(err error) bool {
		if c := status.Code(err); (c == codes.Unavailable || c == codes.DeadlineExceeded || c == codes.FailedPrecondition) && j.leader != "" {
			j.m.jm.Forget(j.leader)
			j.leader = ""
		}
		return sleep(ctx, backoff.Next())
	}
	// Wait for the colocated block worker's id: tasks are placed by it.
	for j.bw.idOrZero() == 0 {
		if !sleep(ctx, 50*time.Millisecond) {
			return
		}
	}
	for ctx.Err() == nil {
		c, err := j.leaderClient(ctx)
		if err != nil {
			if !fail(err) {
				return
			}
			continue
		}
		if j.id == 0 {
			// Told to register again: first a random part of the
			// interval, as jobworker's session.
			if !sleep(ctx, j.spreadNext) {
				return
			}
			j.spreadNext = 0
			j.due = time.Time{}
			if err := j.register(ctx, c); err != nil {
				j.s.st.jobRegErrors.Add(1)
				if !fail(err) {
					return
				}
				continue
			}
		}
		if err := j.poll(ctx, c); err != nil {
			if ctx.Err() != nil {
				return
			}
			j.s.st.pollErrors.Add(1)
			if !fail(err) {
				return
			}
			continue
		}
		// Results go back at once, again while a reply hands over more.
		if err := j.reportAll(ctx, c); err != nil {
			if ctx.Err() != nil {
				return
			}
			j.s.st.reportErrors.Add(1)
			if !fail(err) {
				return
			}
			continue
		}
		backoff.Reset()
	}
}

func (b *blockWorker) idOrZero() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.id
}

func (j *jobWorker) register(ctx context.Context, c api.JobMasterClient) error {
	host := j.bw.host
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := c.RegisterJobWorker(cctx, &api.RegisterJobWorkerRequest{
		Address: host + ":30001", Host: host, BlockWorkerId: j.bw.idOrZero(),
		BlockWorkerAddress: host + ":29999", Threads: int32(j.s.cfg.Capacity), Capacity: int32(j.s.cfg.Capacity),
		Instance: j.instance,
	})
	if err != nil {
		return err
	}
	j.s.st.jobRegistrations.Add(1)
	j.mu.Lock()
	j.id = resp.GetWorkerId()
	j.interval = time.Duration(resp.GetHeartbeatIntervalMs()) * time.Millisecond
	if j.interval <= 0 {
		j.interval = time.Second
	}
	j.mu.Unlock()
	return nil
}

// poll long-polls for tasks, until the poll's due instant (an interval
// after the last one's; the first's as firstDue says), and completes what
// it gets.
func (j *jobWorker) poll(ctx context.Context, c api.JobMasterClient) error {
	now := time.Now()
	if j.due.IsZero() {
		j.due = j.s.firstDue(now, j.interval)
	}
	// At least a millisecond: a wait of 0 is a report, not a poll. Whole
	// milliseconds rounded up: rounded down, a fast answer comes back just
	// before the due instant and the worker polls once more for the last
	// fraction of a millisecond (at 10,000 workers over streams, a sixth
	// more polls than due).
	wait := max((j.due.Sub(now) + time.Millisecond - 1).Truncate(time.Millisecond), time.Millisecond)
	req := &api.JobWorkerHeartbeatRequest{WorkerId: j.id, WaitMs: wait.Milliseconds(), FreeSlots: int32(j.s.cfg.Capacity)}
	for r := range j.unacked {
		req.Holding = append(req.Holding, &api.TaskRef{JobId: r.job, TaskId: r.task, Attempt: r.attempt})
	}
	start := time.Now()
	resp, err := j.polls.Poll(ctx, c, j.leader, req, wait+10*time.Second)
	if err != nil {
		return err
	}
	took := time.Since(start)
	j.s.st.polls.Add(1)
	if now := time.Now(); !now.Before(j.due) {
		// This poll ran to its end (one that brought tasks early leaves
		// the next to end at the same instant).
		j.due = j.s.nextDue(j.due, j.interval, now)
	}
	if resp.GetReregister() {
		j.s.st.reregisterAsks.Add(1)
		j.mu.Lock()
		j.id = 0
		j.spreadNext = client.Spread(j.interval)
		j.mu.Unlock()
		return nil
	}
	if len(resp.GetTasks()) == 0 && len(resp.GetCancels()) == 0 {
		j.s.st.poll.add(max(took-wait, 0))
	}
	j.take(ctx, resp.GetTasks())
	return nil
}

// take completes the tasks a reply handed over.
func (j *jobWorker) take(ctx context.Context, tasks []*api.TaskAssignment) {
	for _, a := range tasks {
		r := taskRef{a.GetJobId(), a.GetTaskId(), a.GetAttempt()}
		if _, ok := j.unacked[r]; ok {
			continue
		}
		j.unacked[r] = j.execute(ctx, a)
	}
}

// execute completes a task at once. A load task's blocks become cached on
// the block worker it targets (CommitBlocks, as a worker does after
// CacheBlocks stored them); any other task just completes.
func (j *jobWorker) execute(ctx context.Context, a *api.TaskAssignment) *api.TaskUpdate {
	u := &api.TaskUpdate{JobId: a.GetJobId(), TaskId: a.GetTaskId(), Attempt: a.GetAttempt(), Status: api.TaskInfo_COMPLETED}
	if a.GetPlan() == "load" {
		target, refs, err := plans.LoadTaskBlocks(a.GetArgs())
		if err == nil {
			err = j.commit(ctx, target, refs)
		}
		if err != nil {
			u.Status, u.Error = api.TaskInfo_FAILED, err.Error()
			return u
		}
		for _, r := range refs {
			u.BytesDone += r.Length
		}
	}
	j.s.st.tasksDone.Add(1)
	return u
}

func (j *jobWorker) commit(ctx context.Context, target int64, refs []plans.BlockRef) error {
	v, ok := j.s.byID.Load(target)
	if !ok {
		return fmt.Errorf("simulated block worker %d is not here", target)
	}
	bw := v.(*blockWorker)
	bm := bw.client()
	req := &api.CommitBlocksRequest{WorkerId: target}
	recs := make([]blockRec, len(refs))
	for i, r := range refs {
		req.Blocks = append(req.Blocks, &api.BlockReport{BlockId: r.ID, Length: r.Length, Tier: "MEM"})
		recs[i] = blockRec{id: r.ID, length: r.Length}
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := bm.CommitBlocks(cctx, req); err != nil {
		j.s.st.commitErrors.Add(1)
		return fmt.Errorf("commit blocks on worker %d: %w", target, err)
	}
	j.s.st.commit.add(time.Since(start))
	j.s.st.blocksCommitted.Add(int64(len(refs)))
	bw.add(recs)
	return nil
}

func (j *jobWorker) reportAll(ctx context.Context, c api.JobMasterClient) error {
	for len(j.unacked) > 0 && ctx.Err() == nil && j.id != 0 {
		if err := j.report(ctx, c); err != nil {
			return err
		}
	}
	return nil
}

// report sends the unacked results (wait 0) and forgets those acked.
func (j *jobWorker) report(ctx context.Context, c api.JobMasterClient) error {
	req := &api.JobWorkerHeartbeatRequest{WorkerId: j.id, FreeSlots: int32(j.s.cfg.Capacity)}
	for _, u := range j.unacked {
		req.Updates = append(req.Updates, u)
	}
	start := time.Now()
	resp, err := j.polls.Poll(ctx, c, j.leader, req, 30*time.Second)
	if err != nil {
		return err
	}
	j.s.st.report.add(time.Since(start))
	j.s.st.reports.Add(1)
	if resp.GetReregister() {
		j.s.st.reregisterAsks.Add(1)
		j.mu.Lock()
		j.id = 0
		j.spreadNext = client.Spread(j.interval)
		j.mu.Unlock()
		return nil
	}
	for _, a := range resp.GetAcked() {
		delete(j.unacked, taskRef{a.GetJobId(), a.GetTaskId(), a.GetAttempt()})
	}
	j.take(ctx, resp.GetTasks())
	return nil
}
