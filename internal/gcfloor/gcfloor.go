// Package gcfloor gives a long-running server process a heap floor: the
// garbage collector runs when the heap has grown by the larger of its live
// size (Go's default, GOGC=100) and a fixed floor, so a process with a
// small live heap and a high allocation rate (a job master answering
// thousands of tiny jobs a second holds tens of MiB and allocates hundreds
// a second) is not collected many times a second for nothing. It costs at
// most the floor in extra heap, and nothing once the live heap is larger
// than the floor. A GOGC in the environment turns it off: the user's
// setting wins.
package gcfloor

import (
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
)

// maxPercent bounds the GOGC the floor sets (a nearly empty heap).
const maxPercent = 2000

// Start keeps the heap goal at least floor bytes above the live heap until
// the returned stop is called, by setting GOGC after every collection; it
// does nothing (and stop is a no-op) when GOGC is set in the environment or
// floor is not positive.
func Start(floor int64) (stop func()) {
	if floor <= 0 || os.Getenv("GOGC") != "" {
		return func() {}
	}
	t := &tuner{floor: uint64(floor), sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/gogc:percent"}}}
	t.adjust()
	t.arm()
	return func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		if t.stopped.CompareAndSwap(false, true) {
			debug.SetGCPercent(100)
		}
	}
}

type tuner struct {
	floor   uint64
	mu      sync.Mutex // a stop and an adjustment
	stopped atomic.Bool
	percent int
	sample  []metrics.Sample
}

// sentinel is garbage whose finalizer runs after each collection that
// found it unreachable; it re-arms itself. (Larger than the tiny
// allocator's 16 bytes, so it is freed on its own.)
type sentinel struct{ _ [32]byte }

func (t *tuner) arm() {
	runtime.SetFinalizer(&sentinel{}, func(*sentinel) {
		if t.stopped.Load() {
			return
		}
		t.adjust()
		t.arm()
	})
}

// adjust sets GOGC so that the next goal is live + max(live, floor).
func (t *tuner) adjust() {
	t.mu.Lock()
	defer t.mu.Unlock()
	metrics.Read(t.sample)
	live := uint64(0)
	if t.sample[0].Value.Kind() == metrics.KindUint64 {
		live = t.sample[0].Value.Uint64()
	}
	// The collector turned off (GOGC -1: the FS master pauses it while a
	// checkpoint loads) stays off: whoever paused it sets it back, and a
	// collection that ended just before the pause must not undo it.
	if g := t.sample[1].Value; g.Kind() == metrics.KindUint64 && g.Uint64() > math.MaxInt32 {
		return
	}
	p := percentFor(live, t.floor)
	if p != t.percent && !t.stopped.Load() {
		t.percent = p
		debug.SetGCPercent(p)
	}
}

// percentFor is the GOGC that puts the goal floor above a live heap of
// live bytes (never below Go's default of 100), rounded to tens so small
// swings of the live heap do not reset it every cycle.
func percentFor(live, floor uint64) int {
	if live == 0 {
		return maxPercent
	}
	p := floor * 100 / live
	p = (p + 9) / 10 * 10
	return int(max(100, min(p, maxPercent)))
}
