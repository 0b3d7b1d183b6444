package console

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/jobview"
	"github.com/alluvium/alluvium/sdk"
)

// overview is the front page: who leads, workers, cache use, jobs.
type overview struct {
	FSMaster   fsMasterView   `json:"fsMaster"`
	FSMasters  jobMastersView `json:"fsMasters"` // who leads the FS masters, and the group
	JobMasters jobMastersView `json:"jobMasters"`
	Workers    struct {
		Live int `json:"live"`
		Lost int `json:"lost"`
	} `json:"workers"`
	Tiers  []tierView       `json:"tiers"`
	Jobs   map[string]int64 `json:"jobs"`
	Errors []string         `json:"errors,omitempty"`
}

type fsMasterView struct {
	Address       string `json:"address"`
	Version       string `json:"version"`
	StartedMs     int64  `json:"startedMs"`
	JournalSeq    int64  `json:"journalSequence"`
	CheckpointSeq int64  `json:"checkpointSequence"`
	CheckpointMs  int64  `json:"checkpointMs"`
	Inodes        int64  `json:"inodes"`
	UFSRoot       string `json:"ufsRoot"`
}

// jobMastersView is a group of masters (job masters, or FS masters) and
// who leads it.
type jobMastersView struct {
	LeaderID      string          `json:"leaderId"`
	LeaderAddress string          `json:"leaderAddress"`
	Term          uint64          `json:"term"`
	Commit        uint64          `json:"commitIndex"`
	Servers       []jobMasterView `json:"servers"`
}

func groupView(l *api.GetLeaderResponse) jobMastersView {
	v := jobMastersView{LeaderID: l.GetLeaderId(), LeaderAddress: l.GetLeaderRpcAddress(), Term: l.GetTerm(), Commit: l.GetCommitIndex(), Servers: []jobMasterView{}}
	for _, s := range l.GetServers() {
		v.Servers = append(v.Servers, jobMasterView{
			ID: s.GetId(), Address: s.GetRpcAddress(), Raft: s.GetRaftAddress(), Suffrage: s.GetSuffrage(), Leader: s.GetLeader(),
			Unreachable: s.GetUnreachable(), UnreachableSinceMs: s.GetUnreachableSinceMs(),
		})
	}
	return v
}

type jobMasterView struct {
	ID       string `json:"id"`
	Address  string `json:"address"`
	Raft     string `json:"raftAddress"`
	Suffrage string `json:"suffrage"`
	Leader   bool   `json:"leader"`
	// The leader's heartbeats to this member fail (killed, cut off): raft
	// lists it, but it takes no part.
	Unreachable        bool  `json:"unreachable,omitempty"`
	UnreachableSinceMs int64 `json:"unreachableSinceMs,omitempty"`
}

type tierView struct {
	Tier     string `json:"tier"`
	Capacity int64  `json:"capacity"`
	Used     int64  `json:"used"`
}

// GET /ui/api/overview
func (c *Console) apiOverview(w http.ResponseWriter, r *http.Request) {
	ctx, _ := as(r)
	c.throughput().touch()
	// One unreachable part (a job master being elected) must not hold the
	// rest of the page: each part gets a few seconds and says what failed.
	ctx, cancel := context.WithTimeout(ctx, 4*time.Second)
	defer cancel()
	var (
		out overview
		mu  sync.Mutex
		wg  sync.WaitGroup
	)
	out.Jobs = map[string]int64{}
	fail := func(what string, err error) {
		mu.Lock()
		out.Errors = append(out.Errors, what+": "+err.Error())
		mu.Unlock()
	}
	wg.Add(3)
	go func() {
		defer wg.Done()
		l, err := c.c.Masters(ctx)
		if err != nil {
			fail("FS masters", err)
			return
		}
		out.FSMasters = groupView(l)
	}()
	go func() {
		defer wg.Done()
		info, err := c.c.MasterInfo(ctx)
		if err != nil {
			fail("FS master", err)
			return
		}
		out.FSMaster = fsMasterView{
			Address: info.GetRpcAddress(), Version: info.GetVersion(), StartedMs: info.GetStartTimeMs(),
			JournalSeq: info.GetJournalSequence(), CheckpointSeq: info.GetLastCheckpointSequence(),
			CheckpointMs: info.GetLastCheckpointTimeMs(), Inodes: info.GetInodeCount(), UFSRoot: info.GetUfsRoot(),
		}
		out.Workers.Live, out.Workers.Lost = int(info.GetLiveWorkers()), int(info.GetLostWorkers())
		for _, t := range info.GetCapacity() {
			out.Tiers = append(out.Tiers, tierView{Tier: t.GetAlias(), Capacity: t.GetCapacityBytes(), Used: t.GetUsedBytes()})
		}
	}()
	jobs, err := c.c.Jobs()
	if err != nil {
		fail("job master", err)
		wg.Done()
	} else {
		go func() {
			defer wg.Done()
			l, err := jobs.Leader(ctx)
			if err != nil {
				fail("job master", err)
				return
			}
			out.JobMasters = groupView(l)
		}()
		hour := time.Now().Add(-time.Hour)
		counts := map[string]sdk.ListJobsOptions{
			"running":           {Statuses: []sdk.JobStatus{sdk.JobRunning}},
			"queued":            {Statuses: []sdk.JobStatus{sdk.JobCreated}},
			"failedLastHour":    {Statuses: []sdk.JobStatus{sdk.JobFailed}, FinishedAfter: hour},
			"completedLastHour": {Statuses: []sdk.JobStatus{sdk.JobCompleted}, FinishedAfter: hour},
			"canceledLastHour":  {Statuses: []sdk.JobStatus{sdk.JobCanceled}, FinishedAfter: hour},
		}
		for name, o := range counts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				n, err := jobs.Count(ctx, o)
				if err != nil {
					fail("jobs "+name, err)
					return
				}
				mu.Lock()
				out.Jobs[name] = n
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	writeJSON(w, http.StatusOK, out)
}

// workersView is the workers page: block workers (from the FS master) and
// job workers with the tasks each runs (from the job master).
type workersView struct {
	Block  []blockWorkerView `json:"block"`
	Job    []jobWorkerView   `json:"job"`
	Errors []string          `json:"errors,omitempty"`
}

type blockWorkerView struct {
	ID            int64      `json:"id"`
	Address       string     `json:"address"`
	WebAddress    string     `json:"webAddress,omitempty"`
	State         string     `json:"state"`
	Tiers         []tierView `json:"tiers"`
	Blocks        int64      `json:"blocks"`
	LastHeartbeat int64      `json:"lastHeartbeatMs"`
	StartedMs     int64      `json:"startedMs"`
}

type jobWorkerView struct {
	ID            int64        `json:"id"`
	Address       string       `json:"address"`
	BlockWorker   string       `json:"blockWorker,omitempty"`
	State         string       `json:"state"`
	Threads       int32        `json:"threads"`
	Capacity      int32        `json:"capacity"`
	Running       int32        `json:"running"`
	LastHeartbeat int64        `json:"lastHeartbeatMs"`
	Tasks         []workerTask `json:"tasks"`
}

// workerTask is a task a worker runs, with its job.
type workerTask struct {
	JobID int64 `json:"jobId"`
	jobview.Task
}

// GET /ui/api/workers
func (c *Console) apiWorkers(w http.ResponseWriter, r *http.Request) {
	ctx, _ := as(r)
	var out workersView
	var wg sync.WaitGroup
	var blockErr, jobErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		ws, err := c.c.Workers(ctx)
		if err != nil {
			blockErr = err
			return
		}
		for _, x := range ws {
			v := blockWorkerView{
				ID: x.GetId(), Address: hostPort(x.GetAddress().GetHost(), x.GetAddress().GetRpcPort()),
				State: x.GetState().String(), Blocks: x.GetBlockCount(), LastHeartbeat: x.GetLastHeartbeatMs(), StartedMs: x.GetStartTimeMs(),
			}
			if p := x.GetAddress().GetWebPort(); p > 0 {
				v.WebAddress = hostPort(x.GetAddress().GetHost(), p)
			}
			for _, t := range x.GetTiers() {
				v.Tiers = append(v.Tiers, tierView{Tier: t.GetAlias(), Capacity: t.GetCapacityBytes(), Used: t.GetUsedBytes()})
			}
			out.Block = append(out.Block, v)
		}
	}()
	if jobs, err := c.c.Jobs(); err != nil {
		jobErr = err
	} else {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ws, err := jobs.WorkerTasks(ctx)
			if err != nil {
				jobErr = err
				return
			}
			for _, x := range ws {
				v := jobWorkerView{
					ID: x.GetId(), Address: x.GetAddress(), BlockWorker: x.GetBlockWorkerAddress(), State: x.GetState().String(),
					Threads: x.GetThreads(), Capacity: x.GetCapacity(), Running: x.GetRunningTasks(), LastHeartbeat: x.GetLastHeartbeatMs(),
					Tasks: []workerTask{},
				}
				for _, t := range x.GetTasks() {
					v.Tasks = append(v.Tasks, taskView(t))
				}
				out.Job = append(out.Job, v)
			}
		}()
	}
	wg.Wait()
	if blockErr != nil {
		out.Errors = append(out.Errors, "block workers: "+blockErr.Error())
	}
	if jobErr != nil {
		out.Errors = append(out.Errors, "job workers: "+jobErr.Error())
	}
	writeJSON(w, http.StatusOK, out)
}

// taskView is a task as JSON, with its job id.
func taskView(t *api.TaskInfo) workerTask {
	j := jobview.FromInfo(&api.JobInfo{Tasks: []*api.TaskInfo{t}})
	return workerTask{JobID: t.GetJobId(), Task: j.Tasks[0]}
}

func hostPort(host string, port int32) string {
	return net.JoinHostPort(host, strconv.Itoa(int(port)))
}

// ---- throughput ----

// throughput samples the bytes the cluster's jobs move, for the overview's
// chart: every few seconds the bytes done of running jobs and of jobs that
// ended since the last sample, minus what they had done before. It runs
// while someone looks (it stops after idle minutes without a viewer) and
// keeps the last quarter of an hour. It counts every job, whoever submitted
// it: the chart shows the cluster's load, as /metrics does, not the jobs.
type throughput struct {
	c     *Console
	every time.Duration
	keep  int

	mu      sync.Mutex
	samples [][2]float64 // [unix ms, bytes/s]
	seen    time.Time    // last viewer
	running bool
	cancel  context.CancelFunc
}

const (
	throughputEvery = 5 * time.Second
	throughputKeep  = 180 // 15 minutes
	throughputIdle  = 10 * time.Minute
)

func (c *Console) throughput() *throughput {
	c.tpOnce.Do(func() { c.tp = &throughput{c: c, every: throughputEvery, keep: throughputKeep} })
	return c.tp
}

// touch records a viewer and starts sampling if it is not running.
func (t *throughput) touch() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.seen = time.Now()
	if t.running || t.c.ctx.Err() != nil {
		return
	}
	t.running = true
	ctx, cancel := context.WithCancel(t.c.ctx)
	t.cancel = cancel
	go t.loop(ctx)
}

func (t *throughput) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cancel != nil {
		t.cancel()
	}
}

func (t *throughput) snapshot() [][2]float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([][2]float64(nil), t.samples...)
}

func (t *throughput) loop(ctx context.Context) {
	defer func() {
		t.mu.Lock()
		t.running = false
		t.mu.Unlock()
	}()
	jobs, err := t.c.c.Jobs()
	if err != nil {
		return
	}
	start := time.Now()
	prev := map[int64]int64{} // job → bytes done at the last sample
	last := start
	tick := time.NewTicker(t.every)
	defer tick.Stop()
	first := true
	for {
		now := time.Now()
		cur := map[int64]int64{}
		var moved int64
		ok := true
		add := func(j *sdk.JobInfo) {
			id, b := j.GetId(), j.GetBytesDone()
			if _, dup := cur[id]; dup {
				return
			}
			cur[id] = b
			p, known := prev[id]
			switch {
			case known:
				moved += max(0, b-p)
			case !first && j.GetCreatedMs() >= last.Add(-t.every).UnixMilli():
				moved += b // new since the last sample
			}
		}
		for _, o := range []sdk.ListJobsOptions{
			{Statuses: []sdk.JobStatus{sdk.JobRunning, sdk.JobCreated}, PageSize: 1000},
			{Statuses: []sdk.JobStatus{sdk.JobCompleted, sdk.JobFailed, sdk.JobCanceled}, FinishedAfter: last.Add(-t.every), PageSize: 1000, NewestFirst: true},
		} {
			page, _, err := jobs.ListPage(ctx, o, "")
			if err != nil {
				ok = false
				break
			}
			for _, j := range page {
				add(j)
			}
		}
		if ok {
			if !first {
				rate := float64(moved) / now.Sub(last).Seconds()
				t.mu.Lock()
				t.samples = append(t.samples, [2]float64{float64(now.UnixMilli()), rate})
				if len(t.samples) > t.keep {
					t.samples = t.samples[len(t.samples)-t.keep:]
				}
				t.mu.Unlock()
			}
			prev, last, first = cur, now, false
		}
		t.mu.Lock()
		idle := time.Since(t.seen) > throughputIdle
		t.mu.Unlock()
		if idle {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// GET /ui/api/throughput: [unix ms, bytes/s] samples of the last minutes.
func (c *Console) apiThroughput(w http.ResponseWriter, r *http.Request) {
	tp := c.throughput()
	tp.touch()
	writeJSON(w, http.StatusOK, map[string]any{"everyMs": tp.every.Milliseconds(), "samples": tp.snapshot()})
}
