package jobmaster

import (
	"context"
	"errors"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alluvium/alluvium/api"
)

// broker is the leader's scheduler: it holds the PENDING tasks not yet
// handed out, in one queue per job worker (tasks whose data goes to the
// block worker beside it) plus a shared queue, and answers job workers'
// long polls. It lives only on the leader and is rebuilt from the FSM when
// leadership starts; the FSM's hook feeds it every task change.
//
// A task handed out is "claimed" until its DISPATCH entry is applied (then
// it is RUNNING in the FSM) — so the hand-out does not wait for raft. A
// dispatch lost with a leader leaves the task PENDING while a worker runs
// it: the next leader must not hand it out again (it would run twice — a
// block cached twice, bytes written twice). So a new leader settles first
// (startSettle): the tasks PENDING when it took over are held back until
// every job worker live then has told it what it holds (its first long
// poll) or been declared LOST, and reconcile adopts each held attempt the
// FSM still has PENDING — claimed for its worker, its DISPATCH committed.
// Tasks that become PENDING under the new leader (new jobs, retries) are
// handed out at once: the settle costs nothing in steady state.
type broker struct {
	fsm         *FSM
	taskTimeout time.Duration
	// localityWait is how long a task waits in the queue of the job
	// worker beside its data before an idle worker elsewhere may steal it
	// (delay scheduling; jobmaster.task.locality-wait; 0: at once). A
	// backlog that lasts spreads; one its worker drains within the wait
	// keeps its locality — a task that reads data where it is cached
	// (checksum, exec) is not moved off it only because its worker was
	// busy for a moment.
	localityWait time.Duration
	// stealTimer wakes idle polls when the oldest task of a backlog has
	// waited out localityWait (stealAt; zero: not armed).
	stealTimer *time.Timer
	stealAt    time.Time

	mu      sync.Mutex
	closed  bool
	workers map[int64]*workerSlot
	live    atomic.Int64     // len(workers), read without mu
	byBW    map[string]int64 // block worker address → job worker id
	byBWID  map[int64]int64  // block worker id → job worker id
	pref    map[int64]*fifo  // job worker id → unplaced tasks for it
	anyq    fifo             // unplaced tasks for anyone
	queued  map[taskKey]int64
	claimed map[taskKey]claim
	running map[taskKey]runInfo
	// holders counts, per job, the tasks each job worker holds (claimed or
	// running, not yet reported done): the workers that run the job now.
	holders map[int64]map[int64]int
	// remoteJobs says, for each job in holders, whether its tasks count
	// against their workers' remote capacity (plans.RemoteRunner): fixed
	// while any is held, so a task's load is taken back from the count it
	// was added to. remote decides it (remoteJobOf: the job's plan, as the
	// leader knows it).
	remoteJobs map[int64]bool
	remote     func(job int64) bool
	// Indexes that keep a poll and a wake-up from looking at every worker
	// (thousands poll each second): the workers whose own queue holds
	// tasks, those whose queue holds more than they take at once (others
	// steal from these), and those whose poll waits for work.
	nonEmpty map[int64]struct{}
	over     map[int64]struct{}
	waiting  map[int64]*workerSlot
	// limited is the bandwidth budget (bytes/s) of each job with one whose
	// tasks are held now: its holders share it evenly, re-split as they
	// come and go (resplitLocked).
	limited map[int64]int64
	// The settle at leadership start (startSettle): the tasks PENDING then,
	// held out of the queues, and the workers live then not heard from
	// yet. settled is closed when the hold ends.
	suspect  map[taskKey]taskEvent
	unheard  map[int64]struct{}
	settling bool
	settled  chan struct{}
}

type workerSlot struct {
	id       int64
	bwID     int64  // the block worker beside it (0: none known)
	bwAddr   string // its address (host:port)
	threads  int32
	capacity int // tasks it holds at once
	load     int // tasks claimed by or running on it
	addr     string
	wake     chan struct{}
	cancels  []*api.TaskRef
	lost     []string        // block workers declared LOST, not yet told
	rates    map[int64]int64 // job → new bandwidth share, not yet told
	lastSeen time.Time
	waiting  bool       // a poll waits for work
	rec      *workerRec // as registered: the plans it runs
	// parked counts this worker's polls parked right now. A poll whose
	// wait ran out leaves without the broker lock (it only counts itself
	// out here), so the slot may stay in waiting until its next poll:
	// wakeIdleLocked wakes only slots with a poll parked.
	parked atomic.Int32
	// timer is the wait of this worker's long polls, reused from one poll
	// to the next (a fresh timer and its channel were a fifth of the job
	// master's allocation per poll, and so of its collections, at 10,000
	// workers polling each second); timerBusy says a poll holds it, so a
	// second poll of the same worker at once (a reconnecting worker's old
	// stream) takes a timer of its own.
	timer     *time.Timer
	timerBusy atomic.Bool

	// remoteCap is how many remote plans' tasks it runs beside capacity
	// (RegisterJobWorkerRequest.remote_capacity; 0: they count against
	// capacity), remoteLoad how many it holds.
	remoteCap  int
	remoteLoad int
}

func (w *workerSlot) free() int { return w.capacity - w.load }

// remoteFree is how many more remote plans' tasks it takes beside
// capacity.
func (w *workerSlot) remoteFree() int { return w.remoteCap - w.remoteLoad }

// room is how many more tasks of either kind it takes.
func (w *workerSlot) room() int { return max(w.free(), 0) + max(w.remoteFree(), 0) }

// remoteSlot says whether a task of a job whose class is remote counts
// against w's remote capacity.
func (w *workerSlot) remoteSlot(remote bool) bool { return remote && w.remoteCap > 0 }

type claim struct {
	worker   int64
	attempt  int32
	at       time.Time
	released bool // the worker reported it done: no longer load
}

type runInfo struct {
	worker   int64
	attempt  int32
	deadline time.Time
	timedOut bool
	released bool
}

// fifo is a queue of task keys; removed keys are skipped lazily. It keeps
// remote plans' tasks and the others in two lanes, in one arrival order
// (seq), so a take can pass over a kind the worker has no room for without
// scanning it: a full remote capacity does not hold back a persist queued
// behind a load's tasks, nor a full capacity a load.
type fifo struct {
	lanes [2]lane // [0]: tasks counted against capacity, [1]: remote plans'
	seq   uint64  // the last arrival number given
}

// lane is one kind's tasks in arrival order.
type lane struct {
	items []queuedTask
	head  int
}

// queuedTask is a task in a queue and when it was queued there (its
// locality wait counts from then).
type queuedTask struct {
	k      taskKey
	at     time.Time
	remote bool   // its job's plan is a remote one (the lane it is in)
	seq    uint64 // its arrival in the queue (set by push)
}

func laneOf(remote bool) int {
	if remote {
		return 1
	}
	return 0
}

// push adds it at the end of its kind's lane.
func (q *fifo) push(it queuedTask) {
	q.seq++
	it.seq = q.seq
	l := &q.lanes[laneOf(it.remote)]
	l.items = append(l.items, it)
}

func (q *fifo) len() int { return q.lanes[0].len() + q.lanes[1].len() }

// oldest is the lane, among those open, whose first task came first.
func (q *fifo) oldest(open [2]bool) (int, bool) {
	best, seq, found := 0, uint64(0), false
	for i := range q.lanes {
		if it, ok := q.lanes[i].peek(); ok && open[i] && (!found || it.seq < seq) {
			best, seq, found = i, it.seq, true
		}
	}
	return best, found
}

// peek and pop see the queue's oldest task, whatever its kind.
func (q *fifo) peek() (queuedTask, bool) {
	i, ok := q.oldest([2]bool{true, true})
	if !ok {
		return queuedTask{}, false
	}
	return q.lanes[i].peek()
}

func (q *fifo) pop() (queuedTask, bool) {
	i, ok := q.oldest([2]bool{true, true})
	if !ok {
		return queuedTask{}, false
	}
	return q.lanes[i].pop()
}

func (l *lane) len() int { return len(l.items) - l.head }
func (l *lane) peek() (queuedTask, bool) {
	if l.head >= len(l.items) {
		return queuedTask{}, false
	}
	return l.items[l.head], true
}
func (l *lane) pop() (queuedTask, bool) {
	it, ok := l.peek()
	if !ok {
		return it, false
	}
	l.head++
	if l.head > 1024 && l.head*2 > len(l.items) {
		l.items = append([]queuedTask(nil), l.items[l.head:]...)
		l.head = 0
	}
	return it, true
}

var (
	errBrokerClosed  = errors.New("job master is no longer the leader")
	errUnknownWorker = errors.New("job worker not registered with this leader")
)

// newBroker returns the leader's broker; remote says whether a job's tasks
// count against a worker's remote capacity (remoteJobOf; nil: none does).
func newBroker(fsm *FSM, taskTimeout, localityWait time.Duration, remote func(job int64) bool) *broker {
	if remote == nil {
		remote = func(int64) bool { return false }
	}
	return &broker{
		fsm: fsm, taskTimeout: taskTimeout, localityWait: localityWait, remote: remote,
		workers: map[int64]*workerSlot{}, byBW: map[string]int64{}, byBWID: map[int64]int64{},
		pref: map[int64]*fifo{}, queued: map[taskKey]int64{}, claimed: map[taskKey]claim{},
		running: map[taskKey]runInfo{}, holders: map[int64]map[int64]int{}, remoteJobs: map[int64]bool{},
		nonEmpty: map[int64]struct{}{}, over: map[int64]struct{}{}, waiting: map[int64]*workerSlot{},
		limited: map[int64]int64{},
		suspect: map[taskKey]taskEvent{}, unheard: map[int64]struct{}{}, settled: make(chan struct{}),
	}
}

// remoteLocked says whether job's tasks are remote plans' (see remoteJobs).
func (b *broker) remoteLocked(job int64) bool {
	if r, ok := b.remoteJobs[job]; ok {
		return r
	}
	return b.remote(job)
}

// startSettle begins a new leader's settle: pending are the tasks PENDING
// when it took over — any of them may run on a worker already, handed out
// by the old leader whose DISPATCH never reached raft — and they stay out
// of the queues until every LIVE worker (setWorker'd before) has reported
// what it holds (heard), or is gone, or endSettle is called.
func (b *broker) startSettle(pending []taskEvent) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for id := range b.workers {
		b.unheard[id] = struct{}{}
	}
	if len(b.unheard) == 0 || b.closed {
		// No worker can hold anything: nothing to wait for.
		b.endSettleLocked()
		b.onTasksLocked(pending, time.Now())
		return
	}
	b.settling = true
	for _, ev := range pending {
		if ev.status != api.TaskInfo_PENDING {
			continue
		}
		// The FSM hook may have queued it already: take it back out (the
		// queues skip keys no longer in queued).
		delete(b.queued, ev.key)
		b.suspect[ev.key] = ev
	}
}

// heardLocked marks worker as having reported what it holds; the last one
// ends the settle.
func (b *broker) heardLocked(worker int64) {
	if !b.settling {
		return
	}
	delete(b.unheard, worker)
	if len(b.unheard) == 0 {
		b.endSettleLocked()
	}
}

// endSettle ends the settle now (its deadline: a worker neither heard nor
// declared LOST in time) and returns how many held tasks it released.
func (b *broker) endSettle() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.endSettleLocked()
}

func (b *broker) endSettleLocked() int {
	select {
	case <-b.settled:
		return 0
	default:
	}
	close(b.settled)
	b.settling = false
	clear(b.unheard)
	n := 0
	keys := make([]taskKey, 0, len(b.suspect))
	for k := range b.suspect {
		keys = append(keys, k)
	}
	// In task order, as a fresh leader would have queued them.
	sort.Slice(keys, func(i, j int) bool { return keys[i].less(keys[j]) })
	for _, k := range keys {
		ev := b.suspect[k]
		delete(b.suspect, k)
		if _, ok := b.queued[k]; ok {
			continue
		}
		if _, ok := b.claimed[k]; ok {
			continue
		}
		if _, ok := b.running[k]; ok {
			continue
		}
		b.placeLocked(k, ev.bwID, ev.bwAddr)
		n++
	}
	b.wakeIdleLocked()
	return n
}

// settledCh is closed once the settle at leadership start has ended.
func (b *broker) settledCh() <-chan struct{} { return b.settled }

// noteQueueLocked keeps worker id in the queue indexes as its own queue
// and capacity now say.
func (b *broker) noteQueueLocked(id int64) {
	q := b.pref[id]
	n := 0
	if q != nil {
		n = q.len()
	}
	if n > 0 {
		b.nonEmpty[id] = struct{}{}
	} else {
		delete(b.nonEmpty, id)
	}
	if b.spareLocked(id) > 0 {
		b.over[id] = struct{}{}
	} else {
		delete(b.over, id)
	}
}

// spareLocked is how many of worker id's queued tasks exceed what it takes
// at once: what others may steal once the oldest has waited out the
// locality wait (stealableLocked).
func (b *broker) spareLocked(id int64) int {
	q := b.pref[id]
	if q == nil {
		return 0
	}
	spare := q.len()
	if w := b.workers[id]; w != nil {
		spare -= w.capacity + w.remoteCap
	}
	return spare
}

// stealableLocked is how many of worker id's queued tasks an idle worker
// may steal now: its spare, once the oldest task queued there has waited
// localityWait for it (a backlog that lasts, not a moment's: the worker
// beside the data drains a short one itself). Before that it is 0, and
// ripe says when the oldest task will have waited enough.
func (b *broker) stealableLocked(id int64, now time.Time) (n int, ripe time.Time) {
	spare := b.spareLocked(id)
	if spare <= 0 || b.localityWait <= 0 {
		return spare, time.Time{}
	}
	q := b.pref[id]
	for {
		it, ok := q.peek()
		if !ok {
			return 0, time.Time{}
		}
		if o, ok := b.queued[it.k]; !ok || o != id {
			q.pop() // ended or moved meanwhile: the next one is the oldest
			b.noteQueueLocked(id)
			continue
		}
		if ripe = it.at.Add(b.localityWait); now.Before(ripe) {
			return 0, ripe
		}
		return b.spareLocked(id), time.Time{}
	}
}

// stealableAllLocked is how many queued tasks idle workers may steal now,
// over every backlog; for a backlog still within its locality wait it arms
// the timer that wakes idle polls when it may be stolen from.
func (b *broker) stealableAllLocked(now time.Time) int {
	n := 0
	for id := range b.over {
		k, ripe := b.stealableLocked(id, now)
		n += k
		if !ripe.IsZero() {
			b.armStealLocked(ripe)
		}
	}
	return n
}

// armStealLocked makes sure idle polls are woken at (or before) at, when
// a backlog's oldest task will have waited out the locality wait.
func (b *broker) armStealLocked(at time.Time) {
	if b.closed || !b.stealAt.IsZero() && !at.Before(b.stealAt) {
		return
	}
	if b.stealTimer != nil {
		b.stealTimer.Stop()
	}
	b.stealAt = at
	b.stealTimer = time.AfterFunc(time.Until(at), func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.stealAt.Equal(at) {
			b.stealAt = time.Time{}
		}
		if !b.closed {
			b.wakeIdleLocked()
		}
	})
}

// setWaitingLocked records whether worker w's poll waits for work.
func (b *broker) setWaitingLocked(w *workerSlot, on bool) {
	w.waiting = on
	switch {
	case on && b.workers[w.id] == w:
		b.waiting[w.id] = w
	case !on && b.waiting[w.id] == w:
		delete(b.waiting, w.id)
	}
}

// close wakes every poll; they return errBrokerClosed.
func (b *broker) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	if b.stealTimer != nil {
		b.stealTimer.Stop()
	}
	for _, w := range b.workers {
		wakeSlot(w)
	}
}

func wakeSlot(w *workerSlot) {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// setWorker adds or refreshes a LIVE job worker, or removes a gone one.
func (b *broker) setWorker(w *workerRec) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if w.State != api.WorkerState_LIVE {
		b.removeWorkerLocked(w.ID)
		return
	}
	slot := b.workers[w.ID]
	if slot == nil {
		slot = &workerSlot{id: w.ID, wake: make(chan struct{}, 1), lastSeen: time.Now(), remoteCap: int(max(w.RemoteCapacity, 0))}
		b.countLoadLocked(slot)
		b.workers[w.ID] = slot
		b.live.Store(int64(len(b.workers)))
	}
	if rc := int(max(w.RemoteCapacity, 0)); rc != slot.remoteCap {
		// (A record's remote capacity does not change: a process that
		// registers again gets a new record. Kept right all the same.)
		slot.remoteCap = rc
		b.countLoadLocked(slot)
	}
	// The indexes by block worker hold each worker's current block worker
	// only (a removal then drops its entries without a walk of them all:
	// thousands of workers declared LOST at once cost the square of it).
	if slot.bwAddr != w.BWAddr {
		b.unindexBWLocked(w.ID, slot.bwAddr, 0)
	}
	if slot.bwID != w.BWID {
		b.unindexBWLocked(w.ID, "", slot.bwID)
	}
	slot.threads, slot.addr, slot.bwID, slot.bwAddr, slot.rec = w.Threads, w.Address, w.BWID, w.BWAddr, w
	slot.capacity = int(w.Capacity)
	if slot.capacity <= 0 {
		slot.capacity = 2 * int(max(w.Threads, 1))
	}
	if w.BWAddr != "" {
		b.byBW[w.BWAddr] = w.ID
	}
	if w.BWID != 0 {
		b.byBWID[w.BWID] = w.ID
	}
	b.noteQueueLocked(w.ID)
	// Tasks waiting in the shared queue may be this worker's.
	b.wakeIdleLocked()
}

// countLoadLocked counts slot's load from the tasks claimed by or running
// on it.
func (b *broker) countLoadLocked(slot *workerSlot) {
	slot.load, slot.remoteLoad = 0, 0
	add := func(k taskKey) {
		if slot.remoteSlot(b.remoteLocked(k.job)) {
			slot.remoteLoad++
		} else {
			slot.load++
		}
	}
	for k, c := range b.claimed {
		if c.worker == slot.id && !c.released {
			add(k)
		}
	}
	for k, r := range b.running {
		if r.worker == slot.id && !r.released {
			add(k)
		}
	}
}

// unindexBWLocked drops worker id's entries for block worker address addr
// and id bwID ("" and 0: none) — unless another worker holds them now (a
// replacement that registered the same block worker).
func (b *broker) unindexBWLocked(id int64, addr string, bwID int64) {
	if addr != "" && b.byBW[addr] == id {
		delete(b.byBW, addr)
	}
	if bwID != 0 && b.byBWID[bwID] == id {
		delete(b.byBWID, bwID)
	}
}

func (b *broker) removeWorkerLocked(id int64) {
	slot, ok := b.workers[id]
	if !ok {
		return
	}
	delete(b.workers, id)
	b.live.Store(int64(len(b.workers)))
	delete(b.waiting, id)
	// A worker declared LOST holds nothing the settle must wait for.
	b.heardLocked(id)
	b.unindexBWLocked(id, slot.bwAddr, slot.bwID)
	if q := b.pref[id]; q != nil {
		for {
			it, ok := q.pop()
			if !ok {
				break
			}
			if b.queued[it.k] == id {
				b.queued[it.k] = 0
				b.anyq.push(it)
			}
		}
		delete(b.pref, id)
	}
	b.noteQueueLocked(id)
	b.wakeIdleLocked()
}

// Load accounting: every change to claimed and running goes through these.
func (b *broker) setClaim(k taskKey, c claim) {
	b.dropClaim(k)
	b.claimed[k] = c
	if !c.released {
		b.count(k, c.worker, 1)
	}
}

func (b *broker) dropClaim(k taskKey) (claim, bool) {
	c, ok := b.claimed[k]
	if ok {
		delete(b.claimed, k)
		if !c.released {
			b.count(k, c.worker, -1)
		}
	}
	return c, ok
}

func (b *broker) setRun(k taskKey, r runInfo) {
	b.dropRun(k)
	b.running[k] = r
	if !r.released {
		b.count(k, r.worker, 1)
	}
}

func (b *broker) dropRun(k taskKey) (runInfo, bool) {
	r, ok := b.running[k]
	if ok {
		delete(b.running, k)
		if !r.released {
			b.count(k, r.worker, -1)
		}
	}
	return r, ok
}

// count moves worker's load (of k's kind), and its hold on k's job, by
// delta.
func (b *broker) count(k taskKey, worker int64, delta int) {
	remote := b.remoteLocked(k.job)
	if w := b.workers[worker]; w != nil {
		if w.remoteSlot(remote) {
			w.remoteLoad += delta
		} else {
			w.load += delta
		}
	}
	h := b.holders[k.job]
	if h == nil {
		if delta < 0 {
			return
		}
		h = map[int64]int{}
		b.holders[k.job] = h
		b.remoteJobs[k.job] = remote
	}
	held := h[worker] > 0
	if h[worker] += delta; h[worker] <= 0 {
		delete(h, worker)
		if len(h) == 0 {
			delete(b.holders, k.job)
			delete(b.remoteJobs, k.job)
			delete(b.limited, k.job)
		}
	}
	if held != (h[worker] > 0) {
		b.resplitLocked(k.job)
	}
}

// resplitLocked tells every job worker holding tasks of job (one with a
// bandwidth limit) its new share of the budget, now that one started or
// stopped holding some: the budget is split evenly over them.
func (b *broker) resplitLocked(job int64) {
	bw := b.limited[job]
	h := b.holders[job]
	if bw <= 0 || len(h) == 0 {
		return
	}
	share := max(bw/int64(len(h)), 1)
	for id := range h {
		w := b.workers[id]
		if w == nil {
			continue
		}
		if w.rates == nil {
			w.rates = map[int64]int64{}
		}
		w.rates[job] = share
		wakeSlot(w)
	}
}

// onTasks takes the FSM's task events.
func (b *broker) onTasks(evs []taskEvent) {
	if len(evs) == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.onTasksLocked(evs, time.Now())
}

func (b *broker) onTasksLocked(evs []taskEvent, now time.Time) {
	for _, ev := range evs {
		k := ev.key
		switch {
		case ev.status == api.TaskInfo_PENDING:
			// A failed attempt may still run somewhere: stop it.
			if r, ok := b.dropRun(k); ok && r.attempt != ev.attempt {
				b.cancelLocked(r.worker, &api.TaskRef{JobId: k.job, TaskId: k.task, Attempt: r.attempt})
			}
			b.dropClaim(k)
			if s, ok := b.suspect[k]; ok {
				if s.attempt == ev.attempt {
					continue // still held: a worker may run this attempt
				}
				delete(b.suspect, k) // a new attempt, made by this leader
			}
			if _, ok := b.queued[k]; ok {
				continue
			}
			b.placeLocked(k, ev.bwID, ev.bwAddr)
		case ev.status == api.TaskInfo_RUNNING:
			delete(b.suspect, k)
			// Run, then drop the claim: the worker holds the task throughout
			// (no re-split of the job's bandwidth in between).
			r := runInfo{worker: ev.worker, attempt: ev.attempt, deadline: now.Add(b.taskTimeout)}
			b.setRun(k, r)
			c, ok := b.dropClaim(k)
			if ok && c.released && c.worker == ev.worker {
				b.releaseLocked(k)
			}
		default: // ended
			delete(b.queued, k)
			delete(b.suspect, k)
			if c, ok := b.dropClaim(k); ok && ev.status != api.TaskInfo_COMPLETED {
				b.cancelLocked(c.worker, &api.TaskRef{JobId: k.job, TaskId: k.task, Attempt: c.attempt})
			}
			if r, ok := b.dropRun(k); ok && ev.status != api.TaskInfo_COMPLETED {
				b.cancelLocked(r.worker, &api.TaskRef{JobId: k.job, TaskId: k.task, Attempt: r.attempt})
			}
		}
	}
	// New tasks, or slots freed by ended ones: wake the polls that can
	// now take work.
	b.wakeIdleLocked()
}

// placeLocked queues k for the job worker beside its block worker, or the
// shared queue; it returns the job worker chosen (0: shared).
func (b *broker) placeLocked(k taskKey, bwID int64, bwAddr string) int64 {
	w, ok := b.byBW[bwAddr]
	if !ok && bwID != 0 {
		w, ok = b.byBWID[bwID]
	}
	if ok && b.workers[w] != nil && b.canRunLocked(b.workers[w], k) {
		q := b.pref[w]
		if q == nil {
			q = &fifo{}
			b.pref[w] = q
		}
		q.push(queuedTask{k: k, at: time.Now(), remote: b.remoteLocked(k.job)})
		b.queued[k] = w
		if b.noteQueueLocked(w); b.localityWait > 0 && b.spareLocked(w) == 1 {
			// A backlog begins: idle polls may steal from it once its
			// oldest task has waited out the locality wait.
			if _, ripe := b.stealableLocked(w, time.Now()); !ripe.IsZero() {
				b.armStealLocked(ripe)
			}
		}
		return w
	}
	b.anyq.push(queuedTask{k: k, remote: b.remoteLocked(k.job)})
	b.queued[k] = 0
	return 0
}

// wakeIdleLocked wakes the waiting polls that can take work now: enough of
// them for the shared queue and the backlogs they may steal from, and those
// whose own queue holds tasks. It looks at those sets, not every worker.
func (b *broker) wakeIdleLocked() {
	if len(b.waiting) == 0 {
		return
	}
	budget := b.anyq.len() + b.stealableAllLocked(time.Now())
	for _, w := range b.waiting {
		if budget <= 0 {
			break
		}
		if f := w.room(); f > 0 && w.parked.Load() > 0 {
			wakeSlot(w)
			// Its poll may have run out meanwhile (poll: no lock): then
			// this wake-up waits for its next poll, and the work is
			// offered to another.
			if w.parked.Load() > 0 {
				budget -= f
			}
		}
	}
	for id := range b.nonEmpty {
		if w := b.waiting[id]; w != nil && w.room() > 0 && w.parked.Load() > 0 {
			wakeSlot(w)
		}
	}
}

func (b *broker) cancelLocked(worker int64, ref *api.TaskRef) {
	if w := b.workers[worker]; w != nil {
		w.cancels = append(w.cancels, ref)
		wakeSlot(w)
	}
}

// cancelJobs queues cancels of whole jobs for a worker (the jobs it says it
// runs that have ended here).
func (b *broker) cancelJobs(worker int64, jobs []int64) {
	if len(jobs) == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, j := range jobs {
		b.cancelLocked(worker, &api.TaskRef{JobId: j})
	}
}

// released frees the slots of tasks a worker reports ended, before their
// results are in raft: the next tasks go out while the results commit.
func (b *broker) released(worker int64, keys []taskKey) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, k := range keys {
		if c, ok := b.claimed[k]; ok && c.worker == worker {
			b.releaseLocked(k)
		}
		if r, ok := b.running[k]; ok && r.worker == worker {
			b.releaseLocked(k)
		}
	}
	b.wakeIdleLocked()
}

func (b *broker) releaseLocked(k taskKey) {
	if c, ok := b.claimed[k]; ok && !c.released {
		c.released = true
		b.claimed[k] = c
		b.count(k, c.worker, -1)
	}
	if r, ok := b.running[k]; ok && !r.released {
		r.released = true
		b.running[k] = r
		b.count(k, r.worker, -1)
	}
}

// victimLocked is the worker whose own queue is longest beyond what it can
// take at once, among those whose oldest task has waited out the locality
// wait: an idle worker steals from it, so a backlog spreads while a small
// or short one keeps its locality.
func (b *broker) victimLocked(thief int64, now time.Time) (int64, int) {
	var best int64
	bestN := 0
	for id := range b.over {
		if id == thief {
			continue
		}
		if spare, _ := b.stealableLocked(id, now); spare > bestN {
			best, bestN = id, spare
		}
	}
	return best, bestN
}

// canRunLocked says whether worker w runs task k's plan: a plugin plan's
// tasks go only to job workers that registered it at the job's version.
// (The FSM never calls the broker while it holds its lock, so reading it
// here cannot deadlock.)
func (b *broker) canRunLocked(w *workerSlot, k taskKey) bool {
	if b.fsm == nil { // a broker tested alone
		return true
	}
	j := b.fsm.Job(k.job)
	if j == nil || j.PlanVersion == "" || w.rec == nil {
		return j == nil || j.PlanVersion == ""
	}
	return w.rec.runs(j.Plan, j.PlanVersion)
}

// takeLocked pops up to n tasks for worker w: its own queue, the shared
// one, then stolen ones, each within the room w has for its kind (remote
// plans' tasks in its remote capacity, the others in its capacity), oldest
// first among the kinds it has room for. Tasks of plans w does not run
// stay queued.
func (b *broker) takeLocked(w *workerSlot, n int) []taskKey {
	var out []taskKey
	free, remoteFree := w.free(), w.remoteFree()
	// room says whether w has room for a task of the lane's kind.
	room := func(lane int) bool {
		if w.remoteSlot(lane == 1) {
			return remoteFree > 0
		}
		return free > 0
	}
	// pop takes up to limit tasks off q; with a cutoff (a steal), only
	// tasks queued by then: those that have waited out the locality wait.
	pop := func(q *fifo, owner int64, limit int, cutoff time.Time) int {
		var skipped []queuedTask
		var through [2]bool // lanes whose rest still waits for its owner
		took := 0
		for len(out) < limit {
			l, ok := q.oldest([2]bool{!through[0] && room(0), !through[1] && room(1)})
			if !ok {
				break // empty, or no room for what is left
			}
			it, _ := q.lanes[l].peek()
			o, queued := b.queued[it.k]
			if queued && o == owner && !cutoff.IsZero() && it.at.After(cutoff) {
				through[l] = true // the rest still wait for their own worker
				continue
			}
			q.lanes[l].pop()
			if !queued || o != owner {
				continue // ended or moved meanwhile
			}
			if !b.canRunLocked(w, it.k) {
				skipped = append(skipped, it)
				continue
			}
			delete(b.queued, it.k)
			out = append(out, it.k)
			took++
			if w.remoteSlot(l == 1) {
				remoteFree--
			} else {
				free--
			}
		}
		for _, it := range skipped {
			q.push(it)
		}
		return took
	}
	if q := b.pref[w.id]; q != nil {
		pop(q, w.id, n, time.Time{})
		b.noteQueueLocked(w.id)
	}
	pop(&b.anyq, 0, n, time.Time{})
	now := time.Now()
	for len(out) < n {
		v, spare := b.victimLocked(w.id, now)
		if spare <= 0 {
			break
		}
		var cutoff time.Time
		if b.localityWait > 0 {
			cutoff = now.Add(-b.localityWait)
		}
		took := pop(b.pref[v], v, len(out)+min(spare, n-len(out)), cutoff)
		b.noteQueueLocked(v)
		if took == 0 {
			break // what is left there is not for w
		}
	}
	return out
}

// poll waits up to wait for tasks for worker (as many as its capacity
// minus its load) or cancels, and returns them. Handed-out tasks are
// claimed; the caller records their dispatch.
func (b *broker) poll(ctx context.Context, worker int64, wait time.Duration) (polled, error) {
	// The wait's timer, started at the first park and kept across
	// wake-ups; from is the slot it belongs to (nil: its own).
	var timer *time.Timer
	var from *workerSlot
	defer func() {
		if timer != nil {
			timer.Stop()
			if from != nil {
				from.timerBusy.Store(false)
			}
		}
	}()
	for {
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			return polled{}, errBrokerClosed
		}
		w := b.workers[worker]
		if w == nil {
			b.mu.Unlock()
			return polled{}, errUnknownWorker
		}
		w.lastSeen = time.Now()
		if wait <= 0 {
			// Not a poll (a report): notices only; the worker's long poll
			// takes the tasks.
			p := polled{cancels: w.cancels, lost: w.lost, rates: w.takeRates()}
			w.cancels, w.lost = nil, nil
			b.mu.Unlock()
			return p, nil
		}
		var p polled
		if n := w.room(); n > 0 {
			p.keys = b.takeLocked(w, n)
		}
		p.cancels, p.lost, p.rates = w.cancels, w.lost, w.takeRates()
		w.cancels, w.lost = nil, nil
		now := time.Now()
		if len(p.keys) > 0 || len(p.cancels) > 0 || len(p.lost) > 0 || len(p.rates) > 0 {
			b.setWaitingLocked(w, false)
			for _, k := range p.keys {
				b.setClaim(k, claim{worker: worker, at: now})
			}
			b.mu.Unlock()
			return p, nil
		}
		b.setWaitingLocked(w, true)
		if b.localityWait > 0 && b.stealAt.IsZero() {
			// A backlog it may not steal from yet: be woken when it may
			// (stealableAllLocked arms the timer).
			b.stealableAllLocked(now)
		}
		w.parked.Add(1)
		b.mu.Unlock()
		if timer == nil {
			timer, from = w.waitTimer(wait)
		}
		select {
		case <-w.wake:
			w.parked.Add(-1)
		case <-timer.C:
			// The common end of a poll (thousands a second): no broker
			// lock, the most waited-on lock of the job master, unless a
			// wake-up came meanwhile and must be passed on. A waker that
			// counted this poll sent its wake-up before it saw the count
			// drop (wakeIdleLocked), so it is in w.wake by now.
			w.parked.Add(-1)
			select {
			case <-w.wake:
				b.mu.Lock()
				b.wakeIdleLocked()
				b.mu.Unlock()
			default:
			}
			return polled{}, nil
		case <-ctx.Done():
			w.parked.Add(-1)
			b.stopWaiting(w)
			return polled{}, ctx.Err()
		}
	}
}

// waitTimer is a timer running for wait: the slot's own (and the slot,
// whose timerBusy the poll clears when it has stopped it) when no other
// poll of it holds that, else a new one (and nil).
func (w *workerSlot) waitTimer(wait time.Duration) (*time.Timer, *workerSlot) {
	if !w.timerBusy.CompareAndSwap(false, true) {
		return time.NewTimer(wait), nil
	}
	if w.timer == nil {
		w.timer = time.NewTimer(wait)
	} else {
		// Stopped when its last poll ended: since Go 1.23 a Reset timer
		// delivers no value left from before.
		w.timer.Reset(wait)
	}
	return w.timer, w
}

// polled is what a poll hands a worker.
type polled struct {
	keys    []taskKey      // tasks claimed for it
	cancels []*api.TaskRef // attempts (or jobs) to stop
	lost    []string       // block workers declared LOST since its last poll
	rates   []*api.JobBandwidth
}

// takeRates returns, once, the new bandwidth shares to tell the worker.
func (w *workerSlot) takeRates() []*api.JobBandwidth {
	if len(w.rates) == 0 {
		return nil
	}
	out := make([]*api.JobBandwidth, 0, len(w.rates))
	for job, bps := range w.rates {
		out = append(out, &api.JobBandwidth{JobId: job, BytesPerSec: bps})
	}
	w.rates = nil
	return out
}

// peerLost tells every job worker, on its next reply, that the block
// worker at addr (host:port) is LOST, unless a live job worker beside it
// has registered again meanwhile.
func (b *broker) peerLost(addr string) {
	if addr == "" {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, back := b.byBW[addr]; back || b.closed {
		return
	}
	for _, w := range b.workers {
		w.lost = append(w.lost, addr)
		wakeSlot(w)
	}
}

// cancel queues cancels of task attempts for a worker.
func (b *broker) cancel(worker int64, refs []*api.TaskRef) {
	if len(refs) == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, r := range refs {
		b.cancelLocked(worker, r)
	}
}

// liveCount is the number of LIVE job workers (every heartbeat asks, for
// its TTL: no lock).
func (b *broker) liveCount() int { return int(b.live.Load()) }

// stopWaiting ends w's wait without taking work. A wake-up it got
// meanwhile is passed on: wakeIdleLocked wakes only as many polls as the
// work needs, so a wake-up dropped here could leave tasks queued while
// other polls wait.
func (b *broker) stopWaiting(w *workerSlot) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.setWaitingLocked(w, false)
	select {
	case <-w.wake:
		b.wakeIdleLocked()
	default:
	}
}

// unclaim returns tasks that could not be handed out after all.
func (b *broker) unclaim(keys []taskKey) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, k := range keys {
		b.dropClaim(k)
	}
}

// setClaimAttempt remembers which attempt a claimed task was handed out as.
func (b *broker) setClaimAttempt(k taskKey, attempt int32) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if c, ok := b.claimed[k]; ok {
		c.attempt = attempt
		b.claimed[k] = c
	}
}

// assign turns tasks claimed by worker into its assignments, and returns
// the DISPATCH transitions that record them (the caller commits them).
func (b *broker) assign(worker int64, keys []taskKey) (out []*api.TaskAssignment, dispatch []*api.TaskTransition) {
	if len(keys) == 0 {
		return nil, nil
	}
	timeout := b.taskTimeout.Milliseconds()
	var (
		drop   []taskKey
		shares = map[int64]int64{} // job → this worker's bandwidth share
	)
	for _, k := range keys {
		t := b.fsm.task(k)
		j := b.fsm.Job(k.job)
		if t == nil || t.Status != api.TaskInfo_PENDING || j == nil || j.terminal() {
			drop = append(drop, k)
			continue
		}
		b.setClaimAttempt(k, t.Attempt)
		share, ok := shares[k.job]
		if !ok {
			share = b.bandwidthShare(j, worker)
			shares[k.job] = share
		}
		out = append(out, &api.TaskAssignment{
			JobId: k.job, TaskId: k.task, Attempt: t.Attempt, Plan: j.Plan, Args: t.Args,
			JobConfigJson: j.Config, TimeoutMs: timeout, User: j.RunAs,
			BandwidthBytesPerSec: share, Description: t.Desc, PlanVersion: j.PlanVersion,
		})
		dispatch = append(dispatch, &api.TaskTransition{JobId: k.job, TaskId: k.task, Attempt: t.Attempt, Kind: api.TaskTransition_DISPATCH, WorkerId: worker})
	}
	b.unclaim(drop)
	return out, dispatch
}

// lostGrace is how long after its dispatch a task a worker does not list
// counts as lost.
const lostGrace = 10 * time.Second

// reconcile compares what worker says it holds with the FSM. It returns
// the transitions to commit: a DISPATCH for each held attempt the FSM still
// has PENDING (handed out by a leader whose DISPATCH never reached raft —
// adopted here, so no one else is handed it), and a FAIL for each attempt
// the FSM has RUNNING on worker that it does not hold (the hand-out never
// reached it). It queues cancels of the attempts it holds that the leader
// has moved past. It counts as the worker's report for the settle at
// leadership start.
func (b *broker) reconcile(worker int64, holding []*api.TaskRef) []*api.TaskTransition {
	// A worker may hold two attempts of one task (an old attempt's result
	// not yet acked beside the new attempt running), so key by attempt too.
	type attemptKey struct {
		taskKey
		attempt int32
	}
	held := make(map[attemptKey]bool, len(holding))
	for _, h := range holding {
		held[attemptKey{taskKey{h.GetJobId(), h.GetTaskId()}, h.GetAttempt()}] = true
	}
	cutoff := time.Now().Add(-lostGrace).UnixMilli()
	var (
		trs   []*api.TaskTransition
		stale []*api.TaskRef
		adopt []attemptKey
	)
	b.fsm.view(func(st *state) {
		for _, h := range holding {
			k := taskKey{h.GetJobId(), h.GetTaskId()}
			t := st.task(k)
			// An attempt the leader has moved past (the worker was declared
			// lost, its tasks handed out again), or the same attempt
			// running elsewhere (handed out again while this worker went
			// unheard), is stopped: the worker must not finish work that
			// runs elsewhere.
			switch {
			case t == nil:
			case t.Attempt > h.GetAttempt(),
				t.Status == api.TaskInfo_RUNNING && t.Attempt == h.GetAttempt() && t.WorkerID != worker:
				stale = append(stale, h)
			case t.Status == api.TaskInfo_PENDING && t.Attempt == h.GetAttempt():
				if j := st.job(k.job); j != nil && !j.terminal() {
					adopt = append(adopt, attemptKey{k, t.Attempt})
				}
			}
		}
		for k := range st.running[worker] {
			t := st.task(k)
			if t == nil || t.DispatchedMs > cutoff {
				continue
			}
			if held[attemptKey{k, t.Attempt}] {
				continue
			}
			trs = append(trs, &api.TaskTransition{JobId: k.job, TaskId: k.task, Attempt: t.Attempt, Kind: api.TaskTransition_FAIL, WorkerId: worker, Error: "task was handed to the job worker but never reached it"})
		}
	})
	// Steady state: nothing to adopt and no settle to report to — the
	// broker lock, which every poll takes, is not taken a second time
	// (with thousands of polls a second it is the job master's most
	// waited-on lock). settled is never replaced, and once closed the
	// settle is over for good.
	settled := false
	select {
	case <-b.settled:
		settled = true
	default:
	}
	if len(adopt) == 0 && settled {
		sortTransitions(trs)
		b.cancel(worker, stale)
		return trs
	}
	now := time.Now()
	b.mu.Lock()
	for _, a := range adopt {
		k := a.taskKey
		if c, ok := b.claimed[k]; ok {
			if c.worker != worker {
				// Handed out again meanwhile (after the settle): that
				// hand-out's DISPATCH is on its way; this copy stops.
				stale = append(stale, &api.TaskRef{JobId: k.job, TaskId: k.task, Attempt: a.attempt})
			}
			continue
		}
		if _, ok := b.running[k]; ok {
			continue // the FSM has moved on since the view
		}
		delete(b.suspect, k)
		delete(b.queued, k) // its queue skips it
		b.setClaim(k, claim{worker: worker, attempt: a.attempt, at: now})
		trs = append(trs, &api.TaskTransition{JobId: k.job, TaskId: k.task, Attempt: a.attempt, Kind: api.TaskTransition_DISPATCH, WorkerId: worker})
	}
	// Heard only now, with its attempts claimed: ending the settle cannot
	// hand them to anyone else.
	b.heardLocked(worker)
	b.mu.Unlock()
	sortTransitions(trs)
	b.cancel(worker, stale)
	return trs
}

// sortTransitions orders transitions by task.
func sortTransitions(trs []*api.TaskTransition) {
	sort.Slice(trs, func(i, j int) bool {
		return taskKey{trs[i].JobId, trs[i].TaskId}.less(taskKey{trs[j].JobId, trs[j].TaskId})
	})
}

// bandwidthShare is worker's share of job's bandwidth limit (bytes/s; 0:
// none): the job's budget split evenly over the job workers that hold its
// tasks now (worker among them). The others learn their new share with
// their next heartbeat reply (resplitLocked), so the job's rate stays
// its budget as workers start and finish its tasks.
func (b *broker) bandwidthShare(job *jobRec, worker int64) int64 {
	bw := job.Limits.GetBandwidthBytesPerSec()
	if bw <= 0 {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	h := b.holders[job.ID]
	if b.limited[job.ID] != bw && len(h) > 0 {
		b.limited[job.ID] = bw
		b.resplitLocked(job.ID) // the first hand-out of the job: tell the holders so far
	}
	n := int64(len(h))
	if h[worker] == 0 {
		n++
	}
	return max(bw/max(n, 1), 1)
}

// expired returns running tasks past their deadline (each once) and
// claims that never turned into a dispatch.
func (b *broker) expired(now time.Time, claimTTL time.Duration) (timedOut []runInfoKey, staleClaims []taskKey) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for k, r := range b.running {
		if !r.timedOut && now.After(r.deadline) {
			r.timedOut = true
			b.running[k] = r
			timedOut = append(timedOut, runInfoKey{k, r})
		}
	}
	for k, c := range b.claimed {
		if now.Sub(c.at) > claimTTL {
			staleClaims = append(staleClaims, k)
			b.dropClaim(k)
		}
	}
	sort.Slice(timedOut, func(i, j int) bool { return timedOut[i].key.less(timedOut[j].key) })
	return timedOut, staleClaims
}

type runInfoKey struct {
	key taskKey
	run runInfo
}

// requeue puts PENDING tasks back in the queues (stale claims).
func (b *broker) requeue(ts []*taskRec) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, t := range ts {
		if _, ok := b.queued[t.key()]; ok {
			continue
		}
		b.placeLocked(t.key(), t.BWID, t.BWAddr)
	}
	b.wakeIdleLocked()
}

// stats for metrics and ListJobWorkers.
type brokerStats struct {
	unplaced int
	claimed  int
	running  int
	perWork  map[int64]int // running tasks per worker
	lastSeen map[int64]time.Time
}

func (b *broker) stats() brokerStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := brokerStats{unplaced: len(b.queued) + len(b.suspect), claimed: len(b.claimed), running: len(b.running), perWork: map[int64]int{}, lastSeen: map[int64]time.Time{}}
	for _, r := range b.running {
		s.perWork[r.worker]++
	}
	for _, c := range b.claimed {
		s.perWork[c.worker]++
	}
	for id, w := range b.workers {
		s.lastSeen[id] = w.lastSeen
	}
	return s
}
