package jobmaster

import (
	"sync"
	"sync/atomic"
	"time"
)

// heartbeats keeps one TTL timer per live job worker on the leader, as
// Nomad's heartbeat.go does for its nodes: any call from the worker resets
// its timer; when one fires, the worker is declared LOST through raft. A
// new leader starts every known worker with a longer, failover TTL (as
// Nomad's FailoverHeartbeatTTL), so a failover never loses workers that
// are merely finding the new leader — a worker declared LOST while it runs
// its tasks would see them run again elsewhere.
//
// Every job worker's call resets its timer (thousands a second with
// thousands of workers), so the workers are spread over shards, each with
// its own lock: no call waits on another worker's.
type heartbeats struct {
	ttl    func() time.Duration // the TTL handed to workers now (it grows with their number)
	onLost func(worker int64)
	closed atomic.Bool
	shards [hbShards]hbShard
}

const hbShards = 64

type hbShard struct {
	mu sync.Mutex
	m  map[int64]*hbEntry
}

// hbEntry is one worker's timer and last contact.
//
// A call moves the deadline, not the timer: the timer fires at due (never
// after the deadline) and, finding the deadline moved on, sets itself for
// the rest. Resetting the timer on every call cost a timer-heap update
// twice per poll (20,000 a second at 10,000 workers); now a worker that
// calls steadily costs one fire per TTL.
type hbEntry struct {
	timer    *time.Timer
	deadline time.Time // when the worker is LOST unless it calls
	due      time.Time // when the timer is set to fire: at or before deadline
	last     time.Time // the worker's last call (zero: none since this leadership began)
	// spared: since its last call, it was found alive through the FS master
	// (its block worker heartbeats) and given one more TTL (spare).
	spared bool
}

func newHeartbeats(ttl func() time.Duration, onLost func(int64)) *heartbeats {
	h := &heartbeats{ttl: ttl, onLost: onLost}
	for i := range h.shards {
		h.shards[i].m = map[int64]*hbEntry{}
	}
	return h
}

func (h *heartbeats) shard(worker int64) *hbShard {
	return &h.shards[uint64(worker)%hbShards]
}

// reset records a call from worker and (re)starts its timer with the TTL
// handed to workers now.
func (h *heartbeats) reset(worker int64) {
	ttl := h.ttl()
	s := h.shard(worker)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := h.armLocked(s, worker, ttl); e != nil {
		e.last, e.spared = time.Now(), false
	}
}

// arm (re)starts worker's timer to fire after ttl without counting a
// contact (a new leader's failover TTL).
func (h *heartbeats) arm(worker int64, ttl time.Duration) {
	s := h.shard(worker)
	s.mu.Lock()
	defer s.mu.Unlock()
	h.armLocked(s, worker, ttl)
}

func (h *heartbeats) armLocked(s *hbShard, worker int64, ttl time.Duration) *hbEntry {
	if h.closed.Load() {
		return nil
	}
	e := s.m[worker]
	now := time.Now()
	deadline := now.Add(ttl)
	if e == nil {
		e = &hbEntry{deadline: deadline, due: deadline}
		s.m[worker] = e
		e.timer = time.AfterFunc(ttl, func() { h.fire(s, worker, e) })
		return e
	}
	e.deadline = deadline
	if !e.due.After(now) || deadline.Before(e.due) {
		// The timer fired (a worker declared LOST, or spared, re-armed
		// here) or is set for later than the deadline (a shorter TTL):
		// set it again.
		e.due = deadline
		e.timer.Reset(ttl)
	}
	return e
}

func (h *heartbeats) fire(s *hbShard, worker int64, e *hbEntry) {
	s.mu.Lock()
	if h.closed.Load() || s.m[worker] != e {
		s.mu.Unlock() // removed
		return
	}
	if rest := time.Until(e.deadline); rest > 0 {
		// Called (or re-armed) since the timer was set: wait the rest.
		e.due = e.deadline
		e.timer.Reset(rest)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	h.onLost(worker)
}

// spare gives a silent worker one more ttl, once per silence: false when
// it was spared already since its last call (then it is LOST whatever the
// FS master hears: a process cut off from the job master alone must not
// keep its tasks forever).
func (h *heartbeats) spare(worker int64, ttl time.Duration) bool {
	s := h.shard(worker)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.m[worker]
	if e == nil || e.spared {
		return false
	}
	e.spared = true
	h.armLocked(s, worker, ttl)
	return true
}

// wasSpared reports whether worker was spared since its last call.
func (h *heartbeats) wasSpared(worker int64) bool {
	s := h.shard(worker)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.m[worker]
	return e != nil && e.spared
}

// heardWithin reports whether worker called within d.
func (h *heartbeats) heardWithin(worker int64, d time.Duration) bool {
	s := h.shard(worker)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.m[worker]
	return e != nil && !e.last.IsZero() && time.Since(e.last) < d
}

// remove stops tracking worker.
func (h *heartbeats) remove(worker int64) {
	s := h.shard(worker)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.m[worker]; ok {
		e.timer.Stop()
		delete(s.m, worker)
	}
}

// stop cancels every timer.
func (h *heartbeats) stop() {
	h.closed.Store(true)
	for i := range h.shards {
		s := &h.shards[i]
		s.mu.Lock()
		for id, e := range s.m {
			e.timer.Stop()
			delete(s.m, id)
		}
		s.mu.Unlock()
	}
}

// failoverTTL is the TTL a new leader starts the workers it inherits with:
// long enough for a worker to find it. A worker whose long poll went to the
// old leader, frozen or cut off, gives up after its heartbeat interval plus
// half its TTL (at least 1 s, at most 10 s: jobworker's pollSlack); then
// finding the leader may wait out a member that does not answer (2 s, the
// client layer's lookup timeout) and a retry backoff (at most 2 s). The
// worker's normal TTL comes on top, as it would in steady state.
func failoverTTL(every, ttl time.Duration) time.Duration {
	slack := min(max(ttl/2, time.Second), 10*time.Second)
	return ttl + every + slack + 4*time.Second
}
