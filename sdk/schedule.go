package sdk

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/robfig/cron/v3"
)

// cronParser reads the specs Schedule takes: the five standard fields with
// an optional leading seconds field, descriptors (@daily, @every 1h), and
// an optional CRON_TZ= prefix.
var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseCron checks a cron spec as Schedule reads it.
func ParseCron(spec string) error {
	_, err := parseCron(spec)
	return err
}

func parseCron(spec string) (cron.Schedule, error) {
	s, err := cronParser.Parse(strings.TrimSpace(spec))
	if err != nil {
		return nil, &Error{Op: "schedule", Path: fmt.Sprintf("%q", spec), Message: "bad cron spec: " + err.Error(), kind: ErrInvalidArgument}
	}
	return s, nil
}

// NextRun returns when spec fires next after t, in t's location (or the
// spec's CRON_TZ).
func NextRun(spec string, t time.Time) (time.Time, error) {
	s, err := parseCron(spec)
	if err != nil {
		return time.Time{}, err
	}
	return s.Next(t), nil
}

// OverlapPolicy says what Schedule does when a run falls due while the
// previous one still runs.
type OverlapPolicy int

// Overlap policies.
const (
	OverlapSkip  OverlapPolicy = iota // the due run is skipped (reported with Skipped); the default
	OverlapQueue                      // it starts when the previous run ends (at most one waits; more are skipped)
	OverlapAllow                      // it starts at once, beside the previous one
	// OverlapDrop is OverlapSkip said of an event policy (PolicySpec.
	// OnCreate), whose zero Overlap queues: the files that land while
	// its last run runs are dropped, not launched (counted in
	// skipped_events).
	OverlapDrop
)

// ScheduledRun is one firing of a schedule, for OnScheduledRun.
type ScheduledRun struct {
	Pipeline string
	Due      time.Time // the time the schedule fired for
	Started  time.Time
	Finished time.Time
	// Skipped is set when the run did not happen because of the overlap
	// policy; Report and Err are then nil.
	Skipped bool
	Report  *Report
	Err     error
}

type scheduleOptions struct {
	loc     *time.Location
	overlap OverlapPolicy
	onRun   func(ScheduledRun)
	limit   int
}

// ScheduleOption configures Schedule.
type ScheduleOption func(*scheduleOptions)

// ScheduleIn reads the spec in loc (default: the local time zone; a
// CRON_TZ= prefix in the spec wins).
func ScheduleIn(loc *time.Location) ScheduleOption {
	return func(o *scheduleOptions) { o.loc = loc }
}

// ScheduleOverlap sets the overlap policy (default OverlapSkip).
func ScheduleOverlap(p OverlapPolicy) ScheduleOption {
	return func(o *scheduleOptions) { o.overlap = p }
}

// OnScheduledRun calls f after each run ends and for each skipped firing.
// Calls are serialized.
func OnScheduledRun(f func(ScheduledRun)) ScheduleOption {
	return func(o *scheduleOptions) { o.onRun = f }
}

// ScheduleLimit makes Schedule return after n firings (runs and skips),
// once the runs have ended (default 0: until the context is done).
func ScheduleLimit(n int) ScheduleOption {
	return func(o *scheduleOptions) { o.limit = n }
}

// Schedule runs pipeline p against c each time the cron spec fires, until
// ctx is done. This is how a Go program gives a pipeline a policy's
// schedule: the schedule lives in the program, and each run submits the
// pipeline's jobs to the job master. (The job master's own policies, `alluvium
// policy add`, schedule single jobs and survive restarts; a program running
// Schedule must itself be kept running.)
//
// spec is a cron spec: "0 2 * * *" (02:00 daily), "*/10 * * * * *" (every
// 10 seconds: an optional leading seconds field), "@hourly", "@every 15m",
// optionally prefixed by "CRON_TZ=Europe/Paris ". Cancelling ctx cancels
// the running run (its jobs too) and Schedule returns once it has ended. A
// run that fails does not stop the schedule; see OnScheduledRun to learn how
// each went. Schedule returns an error only for a bad spec, pipeline or
// option, before anything runs, and nil otherwise.
func Schedule(ctx context.Context, c *Client, spec string, p *Pipeline, opts ...ScheduleOption) error {
	o := scheduleOptions{loc: time.Local}
	for _, f := range opts {
		f(&o)
	}
	sched, err := parseCron(spec)
	if err != nil {
		return err
	}
	if err := p.Validate(); err != nil {
		return err
	}
	if c == nil && p.hasJobSteps() {
		return p.invalidf("has job steps: Schedule needs a client")
	}
	switch {
	case o.loc == nil:
		return &Error{Op: "schedule", Path: p.name, Message: "ScheduleIn(nil): want a location", kind: ErrInvalidArgument}
	case o.overlap < OverlapSkip || o.overlap > OverlapAllow:
		return &Error{Op: "schedule", Path: p.name, Message: fmt.Sprintf("ScheduleOverlap(%d): unknown policy", o.overlap), kind: ErrInvalidArgument}
	case o.limit < 0:
		return &Error{Op: "schedule", Path: p.name, Message: fmt.Sprintf("ScheduleLimit(%d): want >= 0", o.limit), kind: ErrInvalidArgument}
	}
	runSchedule(ctx, sched, o, p.name, func(ctx context.Context) (*Report, error) { return p.Run(ctx, c) })
	return nil
}

// runSchedule is Schedule's loop, apart from parsing so tests can drive it
// with their own schedule.
func runSchedule(ctx context.Context, sched cron.Schedule, o scheduleOptions, name string, run func(context.Context) (*Report, error)) {
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		running int
		queued  *time.Time
		cbMu    sync.Mutex
	)
	report := func(r ScheduledRun) {
		if o.onRun == nil {
			return
		}
		r.Pipeline = name
		cbMu.Lock()
		defer cbMu.Unlock()
		o.onRun(r)
	}
	var launch func(due time.Time) // with mu held
	launch = func(due time.Time) {
		running++
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := ScheduledRun{Due: due, Started: time.Now()}
			r.Report, r.Err = run(ctx)
			r.Finished = time.Now()
			report(r)
			mu.Lock()
			defer mu.Unlock()
			running--
			if queued != nil && ctx.Err() == nil {
				next := *queued
				queued = nil
				launch(next)
			}
		}()
	}
	fired := 0
	next := sched.Next(time.Now().In(o.loc))
	for !next.IsZero() && (o.limit == 0 || fired < o.limit) {
		t := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		if ctx.Err() != nil {
			break
		}
		due := next
		fired++
		// From the later of now and due: a slow wake-up must not fire the
		// same time twice.
		now := time.Now().In(o.loc)
		if now.Before(due) {
			now = due
		}
		next = sched.Next(now)
		mu.Lock()
		skip := false
		switch {
		case running == 0 || o.overlap == OverlapAllow:
			launch(due)
		case o.overlap == OverlapQueue && queued == nil:
			queued = &due
		default:
			skip = true
		}
		mu.Unlock()
		if skip {
			report(ScheduledRun{Due: due, Skipped: true})
		}
	}
	wg.Wait()
}
