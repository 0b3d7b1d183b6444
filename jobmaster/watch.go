package jobmaster

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
)

// watchClock is the time a watch throttles progress by; tests replace it.
type watchClock struct {
	now   func() time.Time
	after func(time.Duration) (<-chan time.Time, func())
}

var realClock = watchClock{
	now: time.Now,
	after: func(d time.Duration) (<-chan time.Time, func()) {
		t := time.NewTimer(d)
		return t.C, func() { t.Stop() }
	},
}

// watchJob sends job id's state to send on every change the FSM applies
// until the job ends. Progress (tasks and bytes done, tasks running) is sent
// at most once per interval — the latest of it when the interval ends — but
// a change of the job's state (its status, round, error, the end of its
// planning) is sent as soon as the FSM applies it, so a job that completes a
// millisecond after its last progress message is reported complete then,
// not an interval later. It returns nil when the job ended (or vanished
// after it was seen) or ctx ended.
func watchJob(ctx context.Context, f *FSM, id int64, interval time.Duration, clk watchClock, stop <-chan struct{}, send func(*api.JobInfo) error) error {
	var (
		last     *api.JobInfo
		lastSent time.Time
		flush    <-chan time.Time // progress held back until then
		cancel   = func() {}
	)
	defer func() { cancel() }()
	for {
		j, changed := f.jobAndChange(id)
		if j == nil {
			if last == nil {
				return status.Errorf(codes.NotFound, "job watch %d: no such job", id)
			}
			return nil
		}
		info := j.info()
		if last == nil || infoChanged(last, info) {
			if now := clk.now(); last == nil || stateChanged(last, info) || now.Sub(lastSent) >= interval {
				if err := send(info); err != nil {
					return err
				}
				last, lastSent = info, now
				cancel()
				flush, cancel = nil, func() {}
			} else if flush == nil {
				flush, cancel = clk.after(interval - clk.now().Sub(lastSent))
			}
		}
		if j.terminal() {
			return nil
		}
		select {
		case <-changed:
		case <-flush:
			// Make the next pass send whatever progress is held back, even
			// if the clock says a hair less than interval has passed.
			flush, cancel, lastSent = nil, func() {}, time.Time{}
		case <-ctx.Done():
			return nil
		case <-stop:
			return status.Error(codes.Unavailable, "job master shutting down")
		}
	}
}

// watchFinal sends job id's final state alone, as soon as the FSM applies
// it (WatchJobRequest.final_only: a caller that waits without watching —
// nothing is built or sent for the states before).
func watchFinal(ctx context.Context, f *FSM, id int64, stop <-chan struct{}, send func(*api.JobInfo) error) error {
	for {
		j, changed := f.jobAndChange(id)
		if j == nil {
			return status.Errorf(codes.NotFound, "job watch %d: no such job", id)
		}
		if j.terminal() {
			return send(j.info())
		}
		if ended, err := awaitChange(ctx, changed, stop); ended {
			return err
		}
	}
}

// awaitChange waits for changed to close; ended says the watch is over: ctx
// ended (err nil) or the job master shuts down (err Unavailable).
func awaitChange(ctx context.Context, changed, stop <-chan struct{}) (ended bool, err error) {
	select {
	case <-changed:
		return false, nil
	case <-ctx.Done():
		return true, nil
	case <-stop:
		return true, status.Error(codes.Unavailable, "job master shutting down")
	}
}

// infoChanged reports whether b differs from a in anything a watcher sees.
func infoChanged(a, b *api.JobInfo) bool {
	return stateChanged(a, b) || a.TasksTotal != b.TasksTotal || a.TasksDone != b.TasksDone ||
		a.TasksFailed != b.TasksFailed || a.BytesDone != b.BytesDone || a.BytesTotal != b.BytesTotal ||
		a.TasksRunning != b.TasksRunning
}

// stateChanged reports a change a watcher must see at once: status, round,
// error, or the end of planning (not progress).
func stateChanged(a, b *api.JobInfo) bool {
	return a.Status != b.Status || a.Round != b.Round || a.Error != b.Error || a.PlanningDone != b.PlanningDone
}
