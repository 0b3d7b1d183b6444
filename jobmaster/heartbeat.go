package jobmaster

import (
	"sync"
	"time"
)

// heartbeats keeps one TTL timer per live job worker on the leader, as
// Nomad's heartbeat.go does for its nodes: any call from the worker resets
// its timer; when one fires, the worker is declared LOST through raft. A
// new leader starts every known worker with a longer, failover TTL (as
// Nomad's FailoverHeartbeatTTL), so a failover never loses workers that
// are merely finding the new leader — a worker declared LOST while it runs
// its tasks would see them run again elsewhere.
type heartbeats struct {
	ttl    func() time.Duration // the TTL handed to workers now (it grows with their number)
	onLost func(worker int64)

	mu     sync.Mutex
	timers map[int64]*time.Timer
	closed bool
}

func newHeartbeats(ttl func() time.Duration, onLost func(int64)) *heartbeats {
	return &heartbeats{ttl: ttl, onLost: onLost, timers: map[int64]*time.Timer{}}
}

// reset (re)starts worker's timer with the TTL handed to workers now.
func (h *heartbeats) reset(worker int64) { h.resetFor(worker, h.ttl()) }

// resetFor (re)starts worker's timer to fire after ttl.
func (h *heartbeats) resetFor(worker int64, ttl time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	if t, ok := h.timers[worker]; ok {
		t.Reset(ttl)
		return
	}
	h.timers[worker] = time.AfterFunc(ttl, func() {
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			return
		}
		delete(h.timers, worker)
		h.mu.Unlock()
		h.onLost(worker)
	})
}

// remove stops tracking worker.
func (h *heartbeats) remove(worker int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if t, ok := h.timers[worker]; ok {
		t.Stop()
		delete(h.timers, worker)
	}
}

// stop cancels every timer.
func (h *heartbeats) stop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for id, t := range h.timers {
		t.Stop()
		delete(h.timers, id)
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
