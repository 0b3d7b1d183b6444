package jobmaster

import (
	"sync"
	"time"
)

// heartbeats keeps one TTL timer per live job worker on the leader, as
// Nomad's heartbeat.go does for its nodes: any call from the worker resets
// its timer; when one fires, the worker is declared LOST through raft. A
// new leader starts every known worker with a fresh TTL, so a failover
// never loses workers that are merely waiting to find the new leader.
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

// reset (re)starts worker's timer.
func (h *heartbeats) reset(worker int64) {
	ttl := h.ttl()
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
