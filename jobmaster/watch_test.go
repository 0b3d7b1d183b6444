package jobmaster

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/alluvium/alluvium/api"
)

// fakeClock is a watch clock that stands still unless the test moves it,
// and whose timers fire only when the test fires them.
type fakeClock struct {
	mu     sync.Mutex
	t      time.Time
	timers chan fakeTimer // every timer the watch asks for
}

type fakeTimer struct {
	d    time.Duration
	fire chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Unix(1000, 0), timers: make(chan fakeTimer, 16)}
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func (c *fakeClock) clock() watchClock {
	return watchClock{
		now: func() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t },
		after: func(d time.Duration) (<-chan time.Time, func()) {
			ft := fakeTimer{d: d, fire: make(chan time.Time, 1)}
			c.timers <- ft
			return ft.fire, func() {}
		},
	}
}

// watching runs watchJob on ft's FSM in the background; its messages
// arrive on the returned channel, which is closed when it returns.
func watching(t *testing.T, ft *fsmT, id int64, interval time.Duration, clk watchClock) (<-chan *api.JobInfo, <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	msgs := make(chan *api.JobInfo, 64)
	errc := make(chan error, 1)
	go func() {
		defer close(msgs)
		errc <- watchJob(ctx, ft.f, id, interval, clk, nil, func(j *api.JobInfo) error { msgs <- j; return nil })
	}()
	return msgs, errc
}

// next waits for the watch's next message (the deadline only bounds a
// broken test; nothing here waits on time passing).
func next(t *testing.T, msgs <-chan *api.JobInfo) *api.JobInfo {
	t.Helper()
	select {
	case j, ok := <-msgs:
		if !ok {
			t.Fatal("the watch ended early")
		}
		return j
	case <-time.After(10 * time.Second):
		t.Fatal("no message from the watch")
	}
	return nil
}

// A job that completes a millisecond after its last progress message is
// reported complete at once, though the watch's progress interval (an
// hour, on a clock that stands still) is far from over: only a change of
// state can have sent it. Between the first message and the end, no
// message carries progress alone.
func TestWatchSendsStateChangesAtOnce(t *testing.T) {
	ft := newFSMT(t)
	id := ft.submit("")
	clk := newFakeClock()
	msgs, errc := watching(t, ft, id, time.Hour, clk.clock())
	if j := next(t, msgs); j.Status != api.JobInfo_CREATED {
		t.Fatalf("first message %v, want CREATED", j.Status)
	}
	ft.plan(id, 2, true) // planning done: a change of state
	if j := next(t, msgs); !j.PlanningDone {
		t.Fatalf("after planning: %+v", j)
	}
	w := ft.register("w:1")
	ft.update(tr(id, 1, 1, api.TaskTransition_DISPATCH, w), tr(id, 2, 1, api.TaskTransition_DISPATCH, w))
	p := tr(id, 1, 1, api.TaskTransition_PROGRESS, w)
	p.BytesDone = 60
	ft.update(p)
	ft.update(tr(id, 1, 1, api.TaskTransition_COMPLETE, w))
	clk.advance(time.Millisecond)
	ft.update(tr(id, 2, 1, api.TaskTransition_COMPLETE, w))
	if res := ft.apply(&api.FinishJobCommand{JobId: id, Status: api.JobInfo_COMPLETED, NowMs: 5000}); res != nil {
		t.Fatalf("finish: %v", res)
	}
	var last *api.JobInfo
	for j := range msgs {
		if last != nil && !stateChanged(last, j) {
			t.Errorf("a progress-only message went out before its interval: %+v after %+v", j, last)
		}
		last = j
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if last == nil || last.Status != api.JobInfo_COMPLETED || last.TasksDone != 2 || last.BytesDone != 200 {
		t.Fatalf("last message %+v, want COMPLETED with 2 tasks and 200 bytes done", last)
	}
}

// Progress held back is sent when the interval ends, with the latest
// figures, and the interval starts again from there.
func TestWatchSendsHeldProgressWhenTheIntervalEnds(t *testing.T) {
	ft := newFSMT(t)
	id := ft.submit("")
	ft.plan(id, 2, true)
	w := ft.register("w:1")
	clk := newFakeClock()
	msgs, _ := watching(t, ft, id, 200*time.Millisecond, clk.clock())
	if j := next(t, msgs); !j.PlanningDone || j.TasksRunning != 0 {
		t.Fatalf("first message %+v", j)
	}
	clk.advance(50 * time.Millisecond)
	ft.update(tr(id, 1, 1, api.TaskTransition_DISPATCH, w))
	var timer fakeTimer
	select {
	case timer = <-clk.timers:
	case <-time.After(10 * time.Second):
		t.Fatal("the watch held progress back without a timer")
	}
	if timer.d != 150*time.Millisecond {
		t.Fatalf("timer of %v, want the 150ms left of the interval", timer.d)
	}
	p := tr(id, 1, 1, api.TaskTransition_PROGRESS, w)
	p.BytesDone = 70
	ft.update(p)
	clk.advance(150 * time.Millisecond)
	timer.fire <- time.Time{}
	j := next(t, msgs)
	if j.TasksRunning != 1 || j.BytesDone != 70 {
		t.Fatalf("held progress %+v, want 1 running and 70 bytes", j)
	}
}
