package jobmaster

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/alluvium/alluvium/api"
)

func brokerWithWorkers(t *testing.T, n int, capacity int32) *broker {
	t.Helper()
	b := newBroker(nil, time.Minute, 0, nil)
	for i := 1; i <= n; i++ {
		b.setWorker(&workerRec{ID: int64(i), BWID: int64(100 + i), BWAddr: fmt.Sprintf("bw%d:1", i), Capacity: capacity, State: api.WorkerState_LIVE})
	}
	return b
}

func pendingEvents(job int64, n int, bwAddr string) []taskEvent {
	evs := make([]taskEvent, n)
	for i := range evs {
		evs[i] = taskEvent{key: taskKey{job, int64(i)}, status: api.TaskInfo_PENDING, bwAddr: bwAddr}
	}
	return evs
}

// checkIndexes compares the broker's indexes with what a scan of every
// worker says.
func checkIndexes(t *testing.T, b *broker) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for id := range b.workers {
		_, ne := b.nonEmpty[id]
		if want := b.pref[id] != nil && b.pref[id].len() > 0; ne != want {
			t.Errorf("worker %d: in nonEmpty %v, queue non-empty %v", id, ne, want)
		}
		_, ov := b.over[id]
		if want := b.spareLocked(id) > 0; ov != want {
			t.Errorf("worker %d: in over %v, spare %d", id, ov, b.spareLocked(id))
		}
		_, wt := b.waiting[id]
		if wt != b.workers[id].waiting {
			t.Errorf("worker %d: in waiting %v, slot waiting %v", id, wt, b.workers[id].waiting)
		}
	}
	for id := range b.nonEmpty {
		if b.workers[id] == nil {
			t.Errorf("nonEmpty holds gone worker %d", id)
		}
	}
	for id := range b.over {
		if b.workers[id] == nil {
			t.Errorf("over holds gone worker %d", id)
		}
	}
}

// pollAll runs a long poll per worker until every one of want tasks was
// handed out, and returns who got what.
func pollAll(t *testing.T, b *broker, workers []int64, want int) map[taskKey]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var (
		mu  sync.Mutex
		got = map[taskKey]int64{}
		wg  sync.WaitGroup
	)
	done := make(chan struct{})
	for _, id := range workers {
		wg.Add(1)
		go func(id int64) {
			defer wg.Done()
			for {
				p, err := b.poll(ctx, id, time.Second)
				keys := p.keys
				if err != nil {
					return
				}
				mu.Lock()
				for _, k := range keys {
					if prev, dup := got[k]; dup {
						t.Errorf("task %v handed to %d and %d", k, prev, id)
					}
					got[k] = id
				}
				n := len(got)
				mu.Unlock()
				if len(keys) > 0 {
					// Done at once: free the slots.
					b.released(id, keys)
				}
				if n >= want {
					select {
					case <-done:
					default:
						close(done)
					}
					return
				}
				select {
				case <-done:
					return
				default:
				}
			}
		}(id)
	}
	select {
	case <-done:
	case <-ctx.Done():
		mu.Lock()
		t.Fatalf("only %d of %d tasks handed out", len(got), want)
	}
	cancel()
	wg.Wait()
	return got
}

func ids(from, to int64) []int64 {
	var out []int64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

func TestBrokerSharedQueueReachesWaitingPolls(t *testing.T) {
	b := brokerWithWorkers(t, 200, 2)
	go func() {
		// Some polls wait before the tasks arrive, some after.
		time.Sleep(10 * time.Millisecond)
		b.onTasks(pendingEvents(1, 150, ""))
	}()
	got := pollAll(t, b, ids(1, 200), 150)
	if len(got) != 150 {
		t.Fatalf("handed out %d tasks, want 150", len(got))
	}
	checkIndexes(t, b)
}

func TestBrokerIdleWorkersStealBacklog(t *testing.T) {
	b := brokerWithWorkers(t, 8, 2)
	// Every task's data is beside worker 1; it takes 2 at once.
	b.onTasks(pendingEvents(1, 40, "bw1:1"))
	checkIndexes(t, b)
	b.mu.Lock()
	if _, ok := b.over[1]; !ok {
		t.Fatal("worker 1's backlog is not indexed for stealing")
	}
	b.mu.Unlock()
	// Worker 1 takes what it can at once and keeps it; the others steal
	// the rest of its backlog beyond that.
	p, err := b.poll(context.Background(), 1, time.Second)
	mine := p.keys
	if err != nil || len(mine) != 2 {
		t.Fatalf("worker 1's poll: %v %v, want 2 tasks", mine, err)
	}
	got := pollAll(t, b, ids(2, 8), 36)
	if len(got) != 36 {
		t.Fatalf("stolen %d tasks, want 36", len(got))
	}
	checkIndexes(t, b)
	b.mu.Lock()
	if _, ok := b.over[1]; ok || b.pref[1].len() != 2 {
		t.Errorf("worker 1 keeps %d queued (over: %v), want its capacity, 2, and no backlog", b.pref[1].len(), ok)
	}
	b.mu.Unlock()
	b.released(1, mine)
	if got := pollAll(t, b, ids(1, 1), 2); len(got) != 2 {
		t.Fatalf("worker 1 took %d of its last 2", len(got))
	}
	checkIndexes(t, b)
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.over) != 0 || len(b.nonEmpty) != 0 {
		t.Fatalf("indexes hold drained queues: over %v nonEmpty %v", b.over, b.nonEmpty)
	}
}

// A worker busy with shared tasks when its own (tasks whose data is
// beside it) arrive keeps them for the locality wait: an idle worker does
// not steal them at once. This is TestChecksumPlugin's failure: the
// shared queue's tasks came first and filled both workers, then the
// first's own backlog (beyond its capacity) was stolen by the second the
// moment a slot freed there — files cached on one worker checksummed
// beside another, when the first would have run them a moment later.
// Once the oldest has waited out the wait, the backlog spreads: an idle
// poll parked meanwhile is woken for it.
func TestBrokerLocalityWaitBeforeSteal(t *testing.T) {
	const wait = 300 * time.Millisecond
	b := brokerWithWorkers(t, 2, 8)
	b.localityWait = wait
	ctx := context.Background()
	b.onTasks(pendingEvents(1, 13, "")) // shared: no block worker named
	p1, err := b.poll(ctx, 1, time.Second)
	if err != nil || len(p1.keys) != 8 {
		t.Fatalf("worker 1 took %v (%v), want 8 shared tasks", p1.keys, err)
	}
	p2, err := b.poll(ctx, 2, time.Second)
	if err != nil || len(p2.keys) != 5 {
		t.Fatalf("worker 2 took %v (%v), want the 5 shared tasks left", p2.keys, err)
	}
	// Worker 1's own: 13, 5 beyond its capacity of 8.
	own := pendingEvents(2, 13, "bw1:1")
	queuedAt := time.Now()
	b.onTasks(own)
	checkIndexes(t, b)
	// Worker 2 has 3 slots free.
	if p, err := b.poll(ctx, 2, 50*time.Millisecond); err != nil || len(p.keys) != 0 {
		t.Fatalf("worker 2 stole %v (%v) from worker 1's backlog within the locality wait", p.keys, err)
	}
	// Parked past the wait: woken when the backlog may be stolen, not at
	// the end of its own wait.
	p, err := b.poll(ctx, 2, 10*time.Second)
	took := time.Since(queuedAt)
	if err != nil || len(p.keys) != 3 {
		t.Fatalf("worker 2 after the locality wait: %v (%v), want 3 of worker 1's backlog", p.keys, err)
	}
	if took < wait || took > 5*time.Second {
		t.Errorf("worker 2 stole %s after the tasks were queued, want just past the wait %s", took, wait)
	}
	for _, k := range p.keys {
		if k.job != 2 || k.task > 2 {
			t.Errorf("stole %v, want the oldest of worker 1's own (job 2, tasks 0-2)", k)
		}
	}
	checkIndexes(t, b)
	// Worker 1 keeps the rest: its capacity's worth plus the 2 not stolen.
	b.released(1, p1.keys)
	got, err := b.poll(ctx, 1, time.Second)
	if err != nil || len(got.keys) != 8 {
		t.Fatalf("worker 1 took %v (%v), want 8 of its own", got.keys, err)
	}
	b.mu.Lock()
	if n := b.pref[1].len(); n != 2 {
		t.Errorf("worker 1 has %d queued, want 2", n)
	}
	b.mu.Unlock()
	b.close()
}

func TestBrokerIndexesFollowWorkerChanges(t *testing.T) {
	b := brokerWithWorkers(t, 3, 2)
	b.onTasks(pendingEvents(1, 5, "bw2:1"))
	checkIndexes(t, b)
	// A larger capacity takes the whole queue at once: no backlog.
	b.setWorker(&workerRec{ID: 2, BWID: 102, BWAddr: "bw2:1", Capacity: 8, State: api.WorkerState_LIVE})
	checkIndexes(t, b)
	// A lost worker's queue goes to the shared one.
	b.setWorker(&workerRec{ID: 2, State: api.WorkerState_LOST})
	checkIndexes(t, b)
	b.mu.Lock()
	if n := b.anyq.len(); n != 5 {
		t.Errorf("shared queue holds %d tasks after worker 2 was lost, want 5", n)
	}
	b.mu.Unlock()
	got := pollAll(t, b, ids(1, 1), 5)
	if len(got) != 5 {
		t.Fatalf("handed out %d tasks, want 5", len(got))
	}
}

// A poll that ends (timer or caller gone) after it was woken passes the
// wake-up on, since only as many polls are woken as the work needs.
func TestBrokerStoppedPollPassesWakeOn(t *testing.T) {
	b := brokerWithWorkers(t, 2, 2)
	b.mu.Lock()
	x, y := b.workers[1], b.workers[2]
	b.setWaitingLocked(x, true)
	b.setWaitingLocked(y, true)
	x.parked.Add(1) // a poll of each is parked (as poll does)
	y.parked.Add(1)
	b.anyq.push(queuedTask{k: taskKey{1, 1}})
	b.queued[taskKey{1, 1}] = 0
	b.mu.Unlock()
	wakeSlot(x) // x was chosen, but its wait ends before it takes the task
	x.parked.Add(-1)
	b.stopWaiting(x)
	select {
	case <-y.wake:
	default:
		t.Fatal("the wake-up x did not use was not passed on to y")
	}
	checkIndexes(t, b)
}

// A poll whose wait ran out leaves without the broker lock, its slot still
// among the waiting until its next poll: work that comes meanwhile goes to
// a poll that is parked, not to a slot with none (whose wake-up would wait
// for its next poll while the parked one waited out its time).
func TestBrokerWorkGoesToParkedPollsNotRunOutOnes(t *testing.T) {
	b := brokerWithWorkers(t, 9, 2)
	ctx := context.Background()
	for id := int64(1); id <= 8; id++ {
		if p, err := b.poll(ctx, id, time.Millisecond); err != nil || len(p.keys) != 0 {
			t.Fatalf("worker %d's poll with nothing queued: %v, %v", id, p.keys, err)
		}
	}
	checkIndexes(t, b)
	got := make(chan polled, 1)
	go func() {
		p, _ := b.poll(ctx, 9, 20*time.Second)
		got <- p
	}()
	for b.workers[9].parked.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	b.onTasks(pendingEvents(1, 1, ""))
	select {
	case p := <-got:
		if len(p.keys) != 1 {
			t.Fatalf("the parked poll got %v, want the task", p.keys)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("the parked poll did not get the task in %s: the wake-up went to a poll that had run out", time.Since(start))
	}
	checkIndexes(t, b)
}

// At leadership start the broker holds back only the tasks PENDING then
// (the old leader may have handed them out): a task made PENDING by the new
// leader — a new job's, a retry's — goes out at once, so the settle adds
// no latency to new work. The held tasks go out once every worker live at
// the start has been heard from or is gone.
func TestBrokerSettleHoldsOnlyTasksPendingAtStart(t *testing.T) {
	b := brokerWithWorkers(t, 2, 8)
	b.startSettle(pendingEvents(1, 3, ""))
	b.onTasks(pendingEvents(2, 2, ""))                                                       // a new job's tasks
	b.onTasks([]taskEvent{{key: taskKey{1, 2}, status: api.TaskInfo_PENDING, attempt: 1}})   // a retry of a held task
	b.onTasks([]taskEvent{{key: taskKey{1, 0}, status: api.TaskInfo_PENDING, attempt: 0}})   // a held task seen again
	b.onTasks([]taskEvent{{key: taskKey{1, 1}, status: api.TaskInfo_COMPLETED, attempt: 0}}) // a held task's result
	p, err := b.poll(context.Background(), 1, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	want := map[taskKey]bool{{2, 0}: true, {2, 1}: true, {1, 2}: true}
	if len(p.keys) != len(want) {
		t.Fatalf("handed out %v while settling, want %v", p.keys, want)
	}
	for _, k := range p.keys {
		if !want[k] {
			t.Fatalf("handed out %v while settling: %v was pending at leadership start", p.keys, k)
		}
	}
	checkIndexes(t, b)
	// Worker 2 is lost, worker 1 not heard yet: still held.
	b.setWorker(&workerRec{ID: 2, State: api.WorkerState_LOST})
	select {
	case <-b.settledCh():
		t.Fatal("settled before worker 1 was heard")
	default:
	}
	if p, _ := b.poll(context.Background(), 1, 50*time.Millisecond); len(p.keys) != 0 {
		t.Fatalf("handed out %v before every worker was heard", p.keys)
	}
	b.mu.Lock()
	b.heardLocked(1)
	b.mu.Unlock()
	select {
	case <-b.settledCh():
	default:
		t.Fatal("not settled once every worker was heard or lost")
	}
	// Only the held task that neither ended nor was retried is left.
	if p, _ := b.poll(context.Background(), 1, 100*time.Millisecond); len(p.keys) != 1 || p.keys[0] != (taskKey{1, 0}) {
		t.Fatalf("after the settle handed out %v, want [{1 0}]", p.keys)
	}
	checkIndexes(t, b)
}

// With no live worker, nothing can hold a task: no settle.
func TestBrokerSettleWithoutWorkers(t *testing.T) {
	b := newBroker(nil, time.Minute, 0, nil)
	b.startSettle(pendingEvents(1, 2, ""))
	select {
	case <-b.settledCh():
	default:
		t.Fatal("settling with no worker to wait for")
	}
	b.setWorker(&workerRec{ID: 1, Capacity: 4, State: api.WorkerState_LIVE})
	if p, _ := b.poll(context.Background(), 1, 100*time.Millisecond); len(p.keys) != 2 {
		t.Fatalf("handed out %v, want both tasks", p.keys)
	}
}

// The indexes by block worker hold each live worker's current block
// worker: a removal drops its own entries only (not a replacement's that
// took the same block worker), and a worker moved to another block worker
// leaves no entry behind.
func TestBrokerBlockWorkerIndexes(t *testing.T) {
	b := brokerWithWorkers(t, 2, 2)
	want := func(byBW map[string]int64, byBWID map[int64]int64) {
		t.Helper()
		b.mu.Lock()
		defer b.mu.Unlock()
		if fmt.Sprint(b.byBW) != fmt.Sprint(byBW) || fmt.Sprint(b.byBWID) != fmt.Sprint(byBWID) {
			t.Fatalf("indexes %v %v, want %v %v", b.byBW, b.byBWID, byBW, byBWID)
		}
	}
	want(map[string]int64{"bw1:1": 1, "bw2:1": 2}, map[int64]int64{101: 1, 102: 2})
	// Worker 3 replaces worker 1 on its block worker; then 1 is lost.
	b.setWorker(&workerRec{ID: 3, BWID: 101, BWAddr: "bw1:1", Capacity: 2, State: api.WorkerState_LIVE})
	b.setWorker(&workerRec{ID: 1, State: api.WorkerState_LOST})
	want(map[string]int64{"bw1:1": 3, "bw2:1": 2}, map[int64]int64{101: 3, 102: 2})
	// Worker 2 moves to another block worker.
	b.setWorker(&workerRec{ID: 2, BWID: 109, BWAddr: "bw9:1", Capacity: 2, State: api.WorkerState_LIVE})
	want(map[string]int64{"bw1:1": 3, "bw9:1": 2}, map[int64]int64{101: 3, 109: 2})
	b.setWorker(&workerRec{ID: 2, State: api.WorkerState_LOST})
	b.setWorker(&workerRec{ID: 3, State: api.WorkerState_LOST})
	want(map[string]int64{}, map[int64]int64{})
}

// A worker with a remote capacity takes remote plans' tasks (a load) up to
// it beside its capacity, the others' up to its capacity; one without
// counts every task against its capacity. Their load is taken back from
// the count it went to.
func TestBrokerRemoteCapacity(t *testing.T) {
	newB := func(remoteCap int32) *broker {
		b := newBroker(nil, time.Minute, 0, func(job int64) bool { return job == 1 }) // job 1 is a load
		b.setWorker(&workerRec{ID: 1, Capacity: 2, RemoteCapacity: remoteCap, State: api.WorkerState_LIVE})
		return b
	}
	take := func(b *broker) []taskKey {
		t.Helper()
		p, err := b.poll(context.Background(), 1, 10*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		return p.keys
	}
	loads := func(b *broker) (int, int) {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.workers[1].load, b.workers[1].remoteLoad
	}

	b := newB(3)
	b.onTasks(pendingEvents(1, 5, ""))
	if got := take(b); len(got) != 3 {
		t.Fatalf("remote tasks taken: %v, want 3 (the remote capacity)", got)
	}
	if l, r := loads(b); l != 0 || r != 3 {
		t.Fatalf("load %d, remote load %d; want 0, 3", l, r)
	}
	b.released(1, []taskKey{{1, 0}})
	if got := take(b); len(got) != 1 || got[0] != (taskKey{1, 3}) {
		t.Fatalf("after one released: %v, want [{1 3}]", got)
	}
	// The local tasks queued behind the last remote one do not wait for it:
	// with the remote capacity full, a take passes over it to them.
	b.onTasks(pendingEvents(2, 3, ""))
	if got := take(b); len(got) != 2 || got[0] != (taskKey{2, 0}) || got[1] != (taskKey{2, 1}) {
		t.Fatalf("took %v with the remote capacity full, want the first 2 local tasks (the capacity)", got)
	}
	// Now both kinds are full: nothing more, though tasks of each wait.
	if got := take(b); len(got) != 0 {
		t.Fatalf("took %v with both capacities full", got)
	}
	b.released(1, []taskKey{{1, 1}})
	if got := take(b); len(got) != 1 || got[0] != (taskKey{1, 4}) {
		t.Fatalf("took %v, want the last remote task (its slot freed; the capacity is still full)", got)
	}
	if l, r := loads(b); l != 2 || r != 3 {
		t.Fatalf("load %d, remote load %d; want 2, 3", l, r)
	}
	// Tasks ending take their load back from the count they went to.
	var ended []taskEvent
	for _, k := range []taskKey{{1, 2}, {1, 3}, {1, 4}, {2, 0}, {2, 1}, {2, 2}} {
		ended = append(ended, taskEvent{key: k, status: api.TaskInfo_COMPLETED})
	}
	b.onTasks(ended)
	if l, r := loads(b); l != 0 || r != 0 {
		t.Fatalf("after every task ended: load %d, remote load %d; want 0, 0", l, r)
	}
	if len(b.remoteJobs) != 0 || len(b.holders) != 0 {
		t.Fatalf("jobs still held: %v %v", b.remoteJobs, b.holders)
	}

	// Without a remote capacity a load's tasks count against the capacity.
	b = newB(0)
	b.onTasks(pendingEvents(1, 5, ""))
	if got := take(b); len(got) != 2 {
		t.Fatalf("remote tasks taken without a remote capacity: %v, want 2 (the capacity)", got)
	}
	if l, r := loads(b); l != 2 || r != 0 {
		t.Fatalf("load %d, remote load %d; want 2, 0", l, r)
	}
	// Both kinds in one capacity: a take goes in arrival order across them.
	b.onTasks(pendingEvents(2, 1, ""))
	b.released(1, []taskKey{{1, 0}, {1, 1}})
	if got := take(b); len(got) != 2 || got[0] != (taskKey{1, 2}) || got[1] != (taskKey{1, 3}) {
		t.Fatalf("took %v, want the older remote tasks {1 2} {1 3} before the local {2 0}", got)
	}
}

// A worker's polls reuse one timer: each later poll still waits its own
// full time (no expiry left from the one before returns it at once), a
// poll cut short by its caller leaves the timer usable, and two polls of
// the same worker at once (a reconnecting worker's old stream) each wait
// out their own time.
func TestBrokerPollsReuseTheirTimer(t *testing.T) {
	b := brokerWithWorkers(t, 1, 2)
	waited := func(ctx context.Context, wait time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		p, err := b.poll(ctx, 1, wait)
		if err != nil && ctx.Err() == nil {
			t.Fatal(err)
		}
		if len(p.keys) != 0 {
			t.Fatalf("a poll with no work got %v", p.keys)
		}
		return time.Since(start)
	}
	for i := range 3 {
		if d := waited(context.Background(), 30*time.Millisecond); d < 30*time.Millisecond {
			t.Fatalf("poll %d returned after %s, before its 30ms wait", i, d)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	waited(ctx, time.Hour) // ended by its caller: the timer is stopped and given back
	cancel()
	if d := waited(context.Background(), 30*time.Millisecond); d < 30*time.Millisecond {
		t.Fatalf("the poll after a cancelled one returned after %s, before its 30ms wait", d)
	}
	b.mu.Lock()
	slot := b.workers[1]
	b.mu.Unlock()
	if slot.timerBusy.Load() {
		t.Fatal("no poll runs, yet the slot's timer is held")
	}
	done := make(chan time.Duration, 2)
	for _, wait := range []time.Duration{40 * time.Millisecond, 80 * time.Millisecond} {
		go func() {
			start := time.Now()
			b.poll(context.Background(), 1, wait)
			done <- time.Since(start) - wait
		}()
	}
	for range 2 {
		if early := <-done; early < 0 {
			t.Fatalf("one of two polls at once of the same worker returned %s before its wait", -early)
		}
	}
	if slot.timerBusy.Load() {
		t.Fatal("after both polls ended the slot's timer is still held")
	}
}
