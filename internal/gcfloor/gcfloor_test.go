package gcfloor

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

// testFloor is the server roles' default floor (process.gc-heap-floor).
const testFloor = 128 << 20

func gogc() uint64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func TestPercentFor(t *testing.T) {
	for _, tc := range []struct {
		live, floor uint64
		want        int
	}{
		{0, 128 << 20, maxPercent},
		{1 << 20, 128 << 20, maxPercent}, // 12,800% bounded
		{32 << 20, 128 << 20, 400},
		{50 << 20, 128 << 20, 260}, // 256% rounded up to tens
		{128 << 20, 128 << 20, 100},
		{1 << 30, 128 << 20, 100}, // a big live heap: Go's default
	} {
		if got := percentFor(tc.live, tc.floor); got != tc.want {
			t.Errorf("percentFor(%d, %d) = %d, want %d", tc.live, tc.floor, got, tc.want)
		}
	}
}

// Start raises GOGC after collections while the live heap is below the
// floor, brings it back to 100 when the live heap outgrows it, and stop
// restores Go's default. GOGC in the environment turns it off.
func TestStartFollowsTheLiveHeap(t *testing.T) {
	t.Setenv("GOGC", "")
	stop := Start(64 << 20)
	defer stop()
	waitGOGC := func(ok func(uint64) bool, what string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !ok(gogc()) {
			if time.Now().After(deadline) {
				t.Fatalf("GOGC %d, want %s", gogc(), what)
			}
			runtime.GC()
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitGOGC(func(p uint64) bool { return p > 100 }, "above 100 with a small live heap")
	hold := make([][]byte, 0, 160)
	for range 160 { // 160 MiB live, past the floor
		hold = append(hold, make([]byte, 1<<20))
	}
	waitGOGC(func(p uint64) bool { return p == 100 }, "100 with a live heap past the floor")
	runtime.KeepAlive(hold)
	stop()
	if p := gogc(); p != 100 {
		t.Fatalf("GOGC %d after stop, want 100", p)
	}
}

func TestGOGCSetTurnsItOff(t *testing.T) {
	t.Setenv("GOGC", "100")
	stop := Start(64 << 20)
	defer stop()
	runtime.GC()
	runtime.GC()
	if p := gogc(); p != 100 {
		t.Fatalf("GOGC %d with GOGC=100 in the environment", p)
	}
}

// A collector someone turned off (the FS master's checkpoint load) stays
// off through an adjustment.
func TestAdjustLeavesAPausedCollector(t *testing.T) {
	t.Setenv("GOGC", "")
	stop := Start(testFloor)
	defer stop()
	old := debug.SetGCPercent(-1)
	tu := &tuner{floor: testFloor, sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/gogc:percent"}}}
	tu.adjust()
	if got := debug.SetGCPercent(old); got != -1 {
		t.Fatalf("the paused collector's GOGC became %d after an adjustment, want it left off (-1)", got)
	}
}
