package fsmaster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/client"
	"github.com/alluvium/alluvium/internal/rpc"
	"github.com/alluvium/alluvium/plans/spec"
)

// persister hands ASYNC_THROUGH files to the job service. A file that
// completes TO_BE_PERSISTED is queued; once fsmaster.persist.delay has
// passed it goes, batched with others that are due, into one persist job
// submitted to the job master (fsmaster.job-master). When the job ends, the
// files it did not persist are queued again with a doubling backoff (up to
// fsmaster.persist.max-backoff). A job master that is down or not yet up
// only delays this: the queue waits and retries. The queue is soft state
// rebuilt from the namespace on start (every completed TO_BE_PERSISTED
// file), so nothing is lost across a restart.
type persister struct {
	ns         *namespace
	log        *zap.Logger
	jm         *client.JobMaster // nil: no job master configured
	delay      time.Duration
	maxBackoff time.Duration
	batch      int

	mu      sync.Mutex
	queue   map[int64]*persistEntry // file id → state
	jobs    map[int64][]int64       // job id → file ids in flight
	kick    chan struct{}
	submits int64
	// The job masters could not be reached: nothing is submitted before
	// downUntil (doubling per failure), so the files waiting meanwhile go
	// together once they are back.
	downUntil time.Time
	downFor   time.Duration
}

type persistEntry struct {
	due      time.Time
	attempts int
	job      int64 // in flight in this job (0: waiting)
}

func newPersister(ns *namespace, log *zap.Logger, jobMasters string, dial rpc.ClientOptions, delay, maxBackoff time.Duration, batch int) *persister {
	if batch <= 0 {
		batch = 1000
	}
	if delay < 0 {
		delay = 0
	}
	if maxBackoff <= 0 {
		maxBackoff = 10 * time.Minute
	}
	p := &persister{
		ns: ns, log: log, delay: delay, maxBackoff: maxBackoff, batch: batch,
		queue: map[int64]*persistEntry{}, jobs: map[int64][]int64{},
		kick: make(chan struct{}, 1),
	}
	// The persister retries by itself (downUntil, so that the files that
	// wait meanwhile go together): each call is sent once. An empty list
	// leaves jm nil: submit says no job master is configured.
	o := client.Defaults(dial)
	o.ElectionWait = -1
	p.jm, _ = client.NewJobMaster([]string{jobMasters}, o)
	return p
}

// add queues files that are now TO_BE_PERSISTED, due after the delay.
func (p *persister) add(ids ...int64) {
	if p == nil || len(ids) == 0 {
		return
	}
	due := time.Now().Add(p.delay)
	p.mu.Lock()
	for _, id := range ids {
		if _, ok := p.queue[id]; !ok {
			p.queue[id] = &persistEntry{due: due}
		}
	}
	p.mu.Unlock()
	p.poke()
}

func (p *persister) poke() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// scan queues every completed TO_BE_PERSISTED file of the namespace.
func (p *persister) scan() {
	var ids []int64
	p.ns.mu.RLock()
	p.ns.st.inodes.each(func(n *inode) bool {
		if !n.dir() && n.completed() && n.persist() == api.PersistenceState_TO_BE_PERSISTED {
			ids = append(ids, n.id)
		}
		return true
	})
	p.ns.mu.RUnlock()
	if len(ids) > 0 {
		p.log.Info("async persist: files waiting from before the restart", zap.Int("files", len(ids)))
	}
	p.add(ids...)
}

// tick is how often the loop looks at the queue and the jobs in flight.
func (p *persister) tick() time.Duration {
	return min(max(p.delay/2, 100*time.Millisecond), time.Second)
}

func (p *persister) run(ctx context.Context) {
	defer p.closeConns()
	p.scan()
	t := time.NewTicker(p.tick())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-p.kick:
		}
		p.checkJobs(ctx)
		p.submitDue(ctx)
	}
}

// submitDue submits the files that are due, in batches.
func (p *persister) submitDue(ctx context.Context) {
	for ctx.Err() == nil {
		now := time.Now()
		p.mu.Lock()
		if now.Before(p.downUntil) {
			p.mu.Unlock()
			return
		}
		var due []int64
		var wait time.Duration = -1
		soon := now.Add(p.tick() / 2) // files due within half a tick join the batch
		for id, e := range p.queue {
			if e.job != 0 {
				continue
			}
			if !e.due.After(soon) {
				due = append(due, id)
			} else if d := e.due.Sub(now); wait < 0 || d < wait {
				wait = d
			}
		}
		p.mu.Unlock()
		if len(due) == 0 {
			if wait >= 0 && wait < p.tick() {
				// Wake for the next one rather than a whole tick later.
				time.AfterFunc(wait, p.poke)
			}
			return
		}
		sort.Slice(due, func(i, j int) bool { return due[i] < due[j] })
		if len(due) > p.batch {
			due = due[:p.batch]
		}
		files, drop := p.resolve(due)
		p.mu.Lock()
		for _, id := range drop {
			delete(p.queue, id)
		}
		p.mu.Unlock()
		if len(files) == 0 {
			continue
		}
		jobID, err := p.submit(ctx, files)
		p.mu.Lock()
		if err != nil {
			p.downFor = min(max(2*p.downFor, 100*time.Millisecond), p.maxBackoff)
			p.downUntil = time.Now().Add(p.downFor)
			retry := p.downFor
			p.mu.Unlock()
			p.log.Warn("async persist: could not submit a persist job; will retry", zap.Int("files", len(files)), zap.Duration("retry_in", retry), zap.Error(err))
			return
		}
		p.downFor = 0
		ids := make([]int64, len(files))
		for i, f := range files {
			ids[i] = f.ID
			if e := p.queue[f.ID]; e != nil {
				e.job = jobID
			}
		}
		p.jobs[jobID] = ids
		p.submits++
		p.mu.Unlock()
		p.log.Info("async persist: submitted a persist job", zap.Int64("job", jobID), zap.Int("files", len(files)))
	}
}

func (p *persister) backoffLocked(e *persistEntry) {
	e.attempts++
	d := p.delay
	if d <= 0 {
		d = 100 * time.Millisecond
	}
	for i := 1; i < e.attempts && d < p.maxBackoff; i++ {
		d *= 2
	}
	e.due = time.Now().Add(min(d, p.maxBackoff))
	e.job = 0
}

// resolve returns the current paths of the files still to persist, and the
// ids to drop (deleted, persisted, or no longer TO_BE_PERSISTED).
func (p *persister) resolve(ids []int64) (files []spec.PersistFile, drop []int64) {
	p.ns.mu.RLock()
	defer p.ns.mu.RUnlock()
	for _, id := range ids {
		n := p.ns.st.get(id)
		if n == nil || n.dir() || n.persist() != api.PersistenceState_TO_BE_PERSISTED {
			drop = append(drop, id)
			continue
		}
		if !n.completed() {
			continue // queued again when it completes
		}
		files = append(files, spec.PersistFile{Path: p.ns.st.pathOf(n), ID: id})
	}
	return files, drop
}

// checkJobs looks at the jobs in flight; when one has ended, its files
// that are still TO_BE_PERSISTED are queued again with a backoff.
func (p *persister) checkJobs(ctx context.Context) {
	p.mu.Lock()
	jobs := make([]int64, 0, len(p.jobs))
	for id := range p.jobs {
		jobs = append(jobs, id)
	}
	p.mu.Unlock()
	for _, id := range jobs {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		resp, err := p.jm.GetJob(cctx, &api.GetJobRequest{JobId: id})
		cancel()
		ended := false
		var info *api.JobInfo
		switch {
		case err == nil:
			info = resp.GetJob()
			switch info.GetStatus() {
			case api.JobInfo_COMPLETED, api.JobInfo_FAILED, api.JobInfo_CANCELED:
				ended = true
			}
		case status.Code(err) == codes.NotFound:
			ended = true // compacted, or lost with the job master's state
		default:
			continue // asked again next tick
		}
		if !ended {
			continue
		}
		p.mu.Lock()
		ids := p.jobs[id]
		delete(p.jobs, id)
		p.mu.Unlock()
		_, drop := p.resolve(ids)
		dropped := map[int64]bool{}
		for _, d := range drop {
			dropped[d] = true
		}
		retry := 0
		p.mu.Lock()
		for _, f := range ids {
			e := p.queue[f]
			if e == nil || e.job != id {
				continue
			}
			if dropped[f] {
				delete(p.queue, f)
				continue
			}
			p.backoffLocked(e)
			retry++
		}
		p.mu.Unlock()
		if retry > 0 {
			msg := ""
			if info != nil {
				msg = info.GetError()
			}
			p.log.Warn("async persist: a persist job left files unpersisted; retrying them with backoff",
				zap.Int64("job", id), zap.Int("files", retry), zap.String("error", msg))
		}
	}
}

// submit sends one persist job to the leading job master (the client
// layer finds it and retries while there is none; the request id keeps a
// resent submit one job).
func (p *persister) submit(ctx context.Context, files []spec.PersistFile) (int64, error) {
	if p.jm == nil {
		return 0, fmt.Errorf("no job master configured (fsmaster.job-master)")
	}
	cfg, err := json.Marshal(spec.PersistConfig{Files: files})
	if err != nil {
		return 0, err
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	req := &api.SubmitJobRequest{Plan: "persist", ConfigJson: string(cfg), RequestId: "fsmaster-async-persist-" + hex.EncodeToString(rnd[:])}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := p.jm.SubmitJob(cctx, req)
	if err != nil {
		return 0, fmt.Errorf("job master: %w", err)
	}
	return resp.GetJobId(), nil
}

func (p *persister) closeConns() {
	if p.jm != nil {
		_ = p.jm.Close()
	}
}

// pending returns how many files wait to be persisted (queued or in a job).
func (p *persister) pending() int {
	if p == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.queue)
}
