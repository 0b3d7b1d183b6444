package testutil

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"syscall"
	"time"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/sdk"
)

// Faults that must land. A fault test proves nothing when its fault hits
// an idle process (a worker whose tasks had all ended, a job master that
// was not the leader), so these helpers choose the victim by what it holds
// at the moment of the fault and give the test what to check afterwards.

// WorkerKill records a worker frozen, or killed, while it ran tasks of a
// job.
type WorkerKill struct {
	Worker int // the index of the frozen or killed worker
	Job    int64
	// Running are the job's tasks the worker was running when it was
	// frozen and killed and that were handed out again, by task id, with
	// their attempt on the worker.
	Running map[int64]int32
}

// KillWorkerWithRunningTask kills (SIGKILL) a worker in the middle of job
// id, chosen so the fault lands: FreezeWorkerWithRunningTask, then the
// frozen worker is killed. RequireRetried checks, once the job has ended,
// what the kill cost.
func (c *Cluster) KillWorkerWithRunningTask(id int64, minDone int64, timeout time.Duration) WorkerKill {
	c.t.Helper()
	k := c.FreezeWorkerWithRunningTask(id, minDone, timeout)
	c.Workers[k.Worker].Kill()
	c.t.Logf("SIGKILL worker %d", k.Worker)
	return k
}

// FreezeWorkerWithRunningTask freezes (SIGSTOP) a worker in the middle of
// job id, chosen so the fault lands — a worker cut off as a whole process:
// it waits (up to timeout) until the job has done at least minDone tasks
// and has tasks RUNNING, picks the worker running the most of them and
// freezes it, so it can finish nothing more. A result already on its way
// may still arrive, so it then waits until the job master declares the
// frozen job worker LOST — every result sent has been applied by then —
// and checks that a task the worker held was handed out again. If none
// was (all had just finished), it thaws the worker, waits until it is
// back, and tries again. It returns with the worker frozen (SIGCONT thaws
// it).
func (c *Cluster) FreezeWorkerWithRunningTask(id int64, minDone int64, timeout time.Duration) WorkerKill {
	c.t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(timeout)
	get := func() *sdk.JobInfo {
		c.t.Helper()
		j, err := c.Jobs.Get(ctx, id, true)
		if err != nil {
			c.t.Fatalf("job %d: %v", id, err)
		}
		if sdk.IsTerminal(j.GetStatus()) {
			c.t.Fatalf("job %d ended before a worker could be killed mid-task: %v", id, j)
		}
		return j
	}
	for {
		if time.Now().After(deadline) {
			c.t.Fatalf("job %d: no worker could be killed while a task of its ran there within %s", id, timeout)
		}
		j := get()
		victim, most := -1, 0
		for i, ts := range c.runningByWorker(j) {
			if len(ts) > most && c.Workers[i] != nil && c.Workers[i].Running() {
				victim, most = i, len(ts)
			}
		}
		if j.GetTasksDone() < minDone || victim < 0 {
			time.Sleep(20 * time.Millisecond) // polling the job, within deadline
			continue
		}
		p := c.Workers[victim]
		if err := p.Signal(syscall.SIGSTOP); err != nil {
			c.t.Fatalf("SIGSTOP worker %d: %v", victim, err)
		}
		held := map[int64]int32{}
		for _, t := range c.runningByWorker(get())[victim] {
			held[t.GetTaskId()] = t.GetAttempt()
		}
		var requeued map[int64]int32
		if len(held) > 0 {
			c.waitJobWorker(victim, api.WorkerState_LOST)
			requeued = map[int64]int32{}
			for _, t := range get().GetTasks() {
				if at, ok := held[t.GetTaskId()]; ok && t.GetAttempt() > at {
					requeued[t.GetTaskId()] = at
				}
			}
		}
		if len(requeued) > 0 {
			c.t.Logf("SIGSTOP worker %d: %d of the %d task(s) of job %d it was running were handed out again", victim, len(requeued), len(held), id)
			return WorkerKill{Worker: victim, Job: id, Running: requeued}
		}
		// Everything it ran had finished: thaw it and look again.
		if err := p.Signal(syscall.SIGCONT); err != nil {
			c.t.Fatalf("SIGCONT worker %d: %v", victim, err)
		}
		if len(held) > 0 {
			c.waitJobWorker(victim, api.WorkerState_LIVE)
		}
	}
}

// waitJobWorker waits until the job master lists worker i's job worker in
// state st.
func (c *Cluster) waitJobWorker(i int, st api.WorkerState) {
	c.t.Helper()
	_, _, port := c.WorkerPorts(i)
	Eventually(c.t, c.Opts.ReadyTimeout, func() error {
		ws, err := c.Jobs.Workers(context.Background())
		if err != nil {
			return err
		}
		for _, w := range ws {
			if _, p, err := net.SplitHostPort(w.GetAddress()); err == nil && p == strconv.Itoa(port) {
				if w.GetState() == st {
					return nil
				}
				return fmt.Errorf("job worker of worker %d is %s, want %s", i, w.GetState(), st)
			}
		}
		return fmt.Errorf("job worker of worker %d not listed", i)
	})
}

// runningByWorker groups the RUNNING tasks of a verbose job by the index
// of the worker whose job worker runs them.
func (c *Cluster) runningByWorker(j *sdk.JobInfo) map[int][]*api.TaskInfo {
	byPort := map[int]int{}
	for i := range c.Workers {
		_, _, job := c.WorkerPorts(i)
		byPort[job] = i
	}
	out := map[int][]*api.TaskInfo{}
	for _, t := range j.GetTasks() {
		if t.GetStatus() != api.TaskInfo_RUNNING {
			continue
		}
		_, port, err := net.SplitHostPort(t.GetWorkerAddress())
		if err != nil {
			continue
		}
		n, _ := strconv.Atoi(port)
		if i, ok := byPort[n]; ok {
			out[i] = append(out[i], t)
		}
	}
	return out
}

// RequireRetried checks, once the job has ended, that the tasks the killed
// worker was running ran again (an attempt more) and ended COMPLETED: the
// fault landed and was repaired. It returns how many.
func (c *Cluster) RequireRetried(k WorkerKill) int {
	c.t.Helper()
	j, err := c.Jobs.Get(context.Background(), k.Job, true)
	if err != nil {
		c.t.Fatalf("job %d: %v", k.Job, err)
	}
	retried := 0
	for _, t := range j.GetTasks() {
		at, ok := k.Running[t.GetTaskId()]
		if !ok {
			continue
		}
		if t.GetAttempt() > at && t.GetStatus() == api.TaskInfo_COMPLETED {
			retried++
		} else {
			c.t.Errorf("job %d task %d (%s), running on killed worker %d: attempt %d, %s", k.Job, t.GetTaskId(), t.GetDescription(), k.Worker, t.GetAttempt(), t.GetStatus())
		}
	}
	if retried == 0 {
		c.t.Fatalf("job %d: none of the task(s) running on killed worker %d ran again: the fault hit nothing", k.Job, k.Worker)
	}
	c.t.Logf("job %d: the %d task(s) running on killed worker %d ran again and completed", k.Job, retried, k.Worker)
	return retried
}

// JobMasterLeader asks the job masters of the given indices (none: all)
// who leads, waiting until one of them other than not (-1: any) is named,
// and returns its index and term. A leader id that is not jm<i> fails the
// test.
func (c *Cluster) JobMasterLeader(not int, only ...int) (leader int, term uint64) {
	c.t.Helper()
	if len(only) == 0 {
		for i := range c.JobMasterAddrs {
			only = append(only, i)
		}
	}
	var addrs []string
	for _, i := range only {
		addrs = append(addrs, c.JobMasterAddrs[i])
	}
	cl, err := sdk.Dial(context.Background(), sdk.WithMaster(c.Master), sdk.WithJobMasters(addrs...),
		sdk.WithTimeout(2*time.Second), sdk.WithToken(ClusterToken()))
	if err != nil {
		c.t.Fatal(err)
	}
	defer cl.Close()
	jobs, err := cl.Jobs()
	if err != nil {
		c.t.Fatal(err)
	}
	Eventually(c.t, 30*time.Second, func() error {
		l, err := jobs.Leader(context.Background())
		if err != nil {
			return err
		}
		if l.GetLeaderId() == "" {
			return fmt.Errorf("no leader among %v", addrs)
		}
		var i int
		if _, err := fmt.Sscanf(l.GetLeaderId(), "jm%d", &i); err != nil || i < 0 || i >= len(c.JobMasterAddrs) {
			c.t.Fatalf("leader id %q is not one of this cluster's jm0..jm%d", l.GetLeaderId(), len(c.JobMasterAddrs)-1)
		}
		if i == not {
			return fmt.Errorf("jm%d still named leader", i)
		}
		leader, term = i, l.GetTerm()
		return nil
	})
	return leader, term
}

// KillJobMasterLeader kills (SIGKILL) the job master that leads now and
// checks the fault landed: the survivors elect another in a later term (a
// kill that hit a follower, leadership having moved meanwhile, elects no
// one). It returns the killed index and the new leader's.
func (c *Cluster) KillJobMasterLeader() (dead, leader int) {
	c.t.Helper()
	dead, term := c.JobMasterLeader(-1)
	c.JobMasters[dead].Kill()
	var survivors []int
	for i, p := range c.JobMasters {
		if i != dead && p != nil && p.Running() {
			survivors = append(survivors, i)
		}
	}
	leader, newTerm := c.JobMasterLeader(dead, survivors...)
	if newTerm <= term {
		c.t.Fatalf("killed jm%d, leader in term %d, but jm%d leads in term %d: the kill hit a follower", dead, term, leader, newTerm)
	}
	c.t.Logf("SIGKILL leader jm%d (term %d); jm%d leads in term %d", dead, term, leader, newTerm)
	return dead, leader
}
