package sdk

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	_ "time/tzdata" // the zones TestNextRun uses, whatever the machine has
)

// every fires every d; tests drive runSchedule with it, as cron specs
// have one-second granularity.
type every time.Duration

func (e every) Next(t time.Time) time.Time { return t.Add(time.Duration(e)) }

type runLog struct {
	mu   sync.Mutex
	runs []ScheduledRun
}

func (l *runLog) add(r ScheduledRun) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.runs = append(l.runs, r)
}

func (l *runLog) count() (ran, skipped int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.runs {
		if r.Skipped {
			skipped++
		} else {
			ran++
		}
	}
	return
}

// slowRun takes d per run and counts how many run at once.
func slowRun(d time.Duration, cur, peak *atomic.Int32) func(context.Context) (*Report, error) {
	return func(ctx context.Context) (*Report, error) {
		n := cur.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		defer cur.Add(-1)
		select {
		case <-time.After(d):
			return &Report{}, nil
		case <-ctx.Done():
			return &Report{}, ctx.Err()
		}
	}
}

func TestScheduleOverlapPolicies(t *testing.T) {
	for _, tc := range []struct {
		name    string
		policy  OverlapPolicy
		check   func(ran, skipped int, peak int32) bool
		explain string
	}{
		// 6 firings 20ms apart, runs of 50ms.
		{"skip", OverlapSkip, func(ran, skipped int, peak int32) bool {
			return peak == 1 && skipped > 0 && ran+skipped == 6 && ran >= 2
		}, "one at a time, the rest skipped"},
		{"queue", OverlapQueue, func(ran, skipped int, peak int32) bool { return peak == 1 && ran >= 3 && ran+skipped == 6 }, "one at a time, one waiting"},
		{"allow", OverlapAllow, func(ran, skipped int, peak int32) bool { return peak >= 2 && ran == 6 && skipped == 0 }, "every firing runs, overlapping"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cur, peak atomic.Int32
			log := &runLog{}
			o := scheduleOptions{loc: time.Local, overlap: tc.policy, onRun: log.add, limit: 6}
			runSchedule(context.Background(), every(20*time.Millisecond), o, "p", slowRun(50*time.Millisecond, &cur, &peak))
			ran, skipped := log.count()
			if !tc.check(ran, skipped, peak.Load()) {
				t.Fatalf("%d ran, %d skipped, %d at once; want %s", ran, skipped, peak.Load(), tc.explain)
			}
			if cur.Load() != 0 {
				t.Fatal("runSchedule returned with a run still going")
			}
			for _, r := range log.runs {
				if r.Pipeline != "p" || r.Due.IsZero() || (!r.Skipped && (r.Report == nil || r.Finished.Before(r.Started))) {
					t.Errorf("run %+v", r)
				}
			}
		})
	}
}

// Cancelling the context cancels the running run and returns.
func TestScheduleCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	log := &runLog{}
	var cur, peak atomic.Int32
	o := scheduleOptions{loc: time.Local, onRun: func(r ScheduledRun) { log.add(r) }}
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	runSchedule(ctx, every(10*time.Millisecond), o, "p", slowRun(time.Hour, &cur, &peak))
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("returned %s after the cancel", took)
	}
	ran := 0
	for _, r := range log.runs {
		if !r.Skipped {
			ran++
			if !errors.Is(r.Err, context.Canceled) {
				t.Errorf("run due %s ended with %v; want it cancelled", r.Due, r.Err)
			}
		}
	}
	if ran != 1 {
		t.Fatalf("%d runs; want 1, cancelled", ran)
	}
}

// Schedule with a real cron spec runs a real pipeline, and refuses bad
// input before running anything.
func TestSchedule(t *testing.T) {
	var runs atomic.Int32
	p := NewPipeline("tick").Func("count", func(ctx context.Context) error { runs.Add(1); return nil })
	var got []ScheduledRun
	start := time.Now()
	err := Schedule(context.Background(), nil, "* * * * * *", p, ScheduleLimit(2), OnScheduledRun(func(r ScheduledRun) { got = append(got, r) }))
	if err != nil {
		t.Fatal(err)
	}
	if runs.Load() != 2 || len(got) != 2 || got[0].Report == nil || !got[0].Report.OK() || got[1].Due.Sub(got[0].Due) != time.Second {
		t.Fatalf("%d runs, reports %+v", runs.Load(), got)
	}
	if took := time.Since(start); took > 6*time.Second {
		t.Fatalf("two every-second runs took %s", took)
	}

	for _, tc := range []struct {
		spec string
		p    *Pipeline
		opts []ScheduleOption
		want string
	}{
		{"61 * * * *", p, nil, `schedule "61 * * * *": bad cron spec`},
		{"every day", p, nil, "bad cron spec"},
		{"", p, nil, "bad cron spec"},
		{"@daily", NewPipeline("empty"), nil, `pipeline "empty": no steps`},
		{"@daily", NewPipeline("j").Job("x", JobSpec{Plan: "load", Config: "{}"}), nil, "Schedule needs a client"},
		{"@daily", p, []ScheduleOption{ScheduleOverlap(7)}, "ScheduleOverlap(7)"},
		{"@daily", p, []ScheduleOption{ScheduleIn(nil)}, "ScheduleIn(nil)"},
		{"@daily", p, []ScheduleOption{ScheduleLimit(-1)}, "ScheduleLimit(-1)"},
	} {
		err := Schedule(context.Background(), nil, tc.spec, tc.p, tc.opts...)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("Schedule(%q): %v; want an ErrInvalidArgument with %q", tc.spec, err, tc.want)
		}
	}
	if runs.Load() != 2 {
		t.Fatal("a bad schedule ran its pipeline")
	}
}

func TestNextRun(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris") // time/tzdata: no system database needed
	if err != nil {
		t.Fatal(err)
	}
	from := time.Date(2026, 3, 1, 1, 30, 0, 0, paris)
	for spec, want := range map[string]time.Time{
		"0 2 * * *":      time.Date(2026, 3, 1, 2, 0, 0, 0, paris),
		"*/15 * * * * *": time.Date(2026, 3, 1, 1, 30, 15, 0, paris),
		"@hourly":        time.Date(2026, 3, 1, 2, 0, 0, 0, paris),
		"@every 90m":     time.Date(2026, 3, 1, 3, 0, 0, 0, paris),
	} {
		got, err := NextRun(spec, from)
		if err != nil || !got.Equal(want) {
			t.Errorf("NextRun(%q) = %s, %v; want %s", spec, got, err, want)
		}
	}
	if err := ParseCron("0 25 * * *"); err == nil || !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("ParseCron(hour 25) = %v", err)
	}
}
