package jobmaster

import (
	"sync"
	"testing"
	"time"
)

// lostLog records the workers a heartbeats declares LOST, and when.
type lostLog struct {
	mu   sync.Mutex
	when map[int64]time.Time
}

func (l *lostLog) lost(w int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.when[w]; !ok {
		l.when[w] = time.Now()
	}
}

func (l *lostLog) at(w int64) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t, ok := l.when[w]
	return t, ok
}

// TestHeartbeatsTTL: a worker that calls within its TTL is never LOST
// however many TTLs pass (its calls move the deadline, the timer catches
// up), a silent one is LOST one TTL after its last call, a shorter TTL
// armed later is kept to, and a removed worker is never LOST.
func TestHeartbeatsTTL(t *testing.T) {
	const ttl = 200 * time.Millisecond
	log := &lostLog{when: map[int64]time.Time{}}
	h := newHeartbeats(func() time.Duration { return ttl }, log.lost)
	defer h.stop()

	start := time.Now()
	for _, w := range []int64{1, 2, 3, 4} {
		h.reset(w)
	}
	h.arm(3, 10*ttl)
	h.arm(3, ttl/2) // sooner than the timer is set for: kept to
	h.remove(4)
	var lastCall time.Time
	for time.Since(start) < 5*ttl {
		h.reset(1)
		lastCall = time.Now()
		time.Sleep(ttl / 10)
	}
	if at, ok := log.at(1); ok {
		t.Fatalf("worker 1 called every %s and was declared LOST after %s (TTL %s)", ttl/10, at.Sub(start), ttl)
	}
	at2, ok := log.at(2)
	if !ok {
		t.Fatalf("worker 2, silent for %s, not declared LOST (TTL %s)", time.Since(start), ttl)
	}
	if d := at2.Sub(start); d < ttl {
		t.Errorf("worker 2 declared LOST %s after its call, before its TTL %s", d, ttl)
	}
	at3, ok := log.at(3)
	if !ok || at3.Sub(start) >= ttl {
		t.Errorf("worker 3 re-armed with %s: LOST %v after %s, want within its TTL %s", ttl/2, ok, at3.Sub(start), ttl)
	}
	if _, ok := log.at(4); ok {
		t.Errorf("removed worker 4 declared LOST")
	}
	// Worker 2, declared LOST, is spared: one more TTL, then LOST again.
	spared := time.Now()
	if !h.spare(2, ttl) {
		t.Fatalf("worker 2 not spared")
	}
	log.mu.Lock()
	delete(log.when, 2)
	log.mu.Unlock()
	// Worker 1 falls silent: LOST one TTL after its last call.
	deadline := time.Now().Add(10 * ttl)
	for {
		if at, ok := log.at(1); ok {
			if d := at.Sub(lastCall); d < ttl {
				t.Errorf("worker 1 declared LOST %s after its last call, before its TTL %s", d, ttl)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker 1, silent since %s ago, not declared LOST (TTL %s)", time.Since(lastCall), ttl)
		}
		time.Sleep(ttl / 20)
	}
	waitLost := func(w int64, since time.Time) {
		t.Helper()
		for deadline := time.Now().Add(10 * ttl); ; time.Sleep(ttl / 20) {
			if at, ok := log.at(w); ok {
				if d := at.Sub(since); d < ttl {
					t.Errorf("worker %d declared LOST %s after it was spared, before its TTL %s", w, d, ttl)
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("worker %d, spared %s ago, not declared LOST again (TTL %s)", w, time.Since(since), ttl)
			}
		}
	}
	waitLost(2, spared)
}

// BenchmarkHeartbeatsReset is the TTL bookkeeping of a job worker's call
// (two a poll) with 10,000 workers tracked, from every core at once.
func BenchmarkHeartbeatsReset(b *testing.B) {
	h := newHeartbeats(func() time.Duration { return time.Minute }, func(int64) {})
	defer h.stop()
	const workers = 10000
	for w := range int64(workers) {
		h.reset(w)
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var w int64
		for pb.Next() {
			h.reset(w % workers)
			w += 7
		}
	})
}
