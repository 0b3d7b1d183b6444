package raftgroup

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Health is the leader's view of which members it cannot reach. Raft's
// configuration lists a killed member as a follower like any other; what
// tells them apart is the leader's heartbeats, which raft reports to
// observers: FailedHeartbeatObservation on every failed attempt (with the
// member's last contact), ResumedHeartbeatObservation when one succeeds
// again. A member is unreachable while its failures keep coming; a change
// of leader forgets everything (the new leader's heartbeats decide). Raft's
// own LastContact of a member is not used: a new leader's replication
// starts it afresh, so after an election it says "just now" of a member
// that has been dead for minutes.
type Health struct {
	r    *raft.Raft
	obs  *raft.Observer
	ch   chan raft.Observation
	done chan struct{}
	wg   sync.WaitGroup
	once sync.Once

	mu      sync.Mutex
	failing map[raft.ServerID]failure
	now     func() time.Time
}

type failure struct {
	since time.Time // the first failed heartbeat of this streak
	seen  time.Time // the latest
}

// failingFor bounds how long a failed heartbeat marks a member without a
// newer one: longer than the gap between two attempts to a member that
// does not answer (raft backs off up to half a heartbeat timeout, and an
// attempt to a partitioned member waits out the transport's 10 s timeout),
// so that a lost ResumedHeartbeatObservation (observers drop what they
// cannot take at once) does not mark a member for ever.
const failingFor = 30 * time.Second

// WatchHealth starts following r's heartbeats. Close it before shutting r
// down.
func WatchHealth(r *raft.Raft) *Health {
	h := &Health{
		r: r, ch: make(chan raft.Observation, 256), done: make(chan struct{}),
		failing: map[raft.ServerID]failure{}, now: time.Now,
	}
	h.obs = raft.NewObserver(h.ch, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation, raft.LeaderObservation:
			return true
		}
		return false
	})
	r.RegisterObserver(h.obs)
	h.wg.Add(1)
	go h.run()
	return h
}

func (h *Health) run() {
	defer h.wg.Done()
	for {
		select {
		case o := <-h.ch:
			h.observe(o.Data)
		case <-h.done:
			return
		}
	}
}

func (h *Health) observe(d any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch o := d.(type) {
	case raft.FailedHeartbeatObservation:
		now := h.now()
		f, ok := h.failing[o.PeerID]
		if !ok || now.Sub(f.seen) > failingFor {
			f.since = now
		}
		f.seen = now
		h.failing[o.PeerID] = f
	case raft.ResumedHeartbeatObservation:
		delete(h.failing, o.PeerID)
	case raft.LeaderObservation:
		clear(h.failing)
	}
}

// Unreachable reports whether the leader's heartbeats to member id are
// failing, and since when.
func (h *Health) Unreachable(id string) (bool, time.Time) {
	if h == nil {
		return false, time.Time{}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	f, ok := h.failing[raft.ServerID(id)]
	if !ok || h.now().Sub(f.seen) > failingFor {
		return false, time.Time{}
	}
	return true, f.since
}

// Close stops following the heartbeats. Closing twice is harmless.
func (h *Health) Close() {
	if h == nil {
		return
	}
	h.once.Do(func() {
		h.r.DeregisterObserver(h.obs)
		close(h.done)
		h.wg.Wait()
	})
}
