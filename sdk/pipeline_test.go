package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// tracer records when Go-function steps start and end.
type tracer struct {
	mu     sync.Mutex
	events []string
	cur    int
	peak   int
}

func (tr *tracer) step(name string, body func(ctx context.Context) error) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		tr.mu.Lock()
		tr.events = append(tr.events, "start "+name)
		tr.cur++
		tr.peak = max(tr.peak, tr.cur)
		tr.mu.Unlock()
		var err error
		if body != nil {
			err = body(ctx)
		}
		tr.mu.Lock()
		tr.events = append(tr.events, "end "+name)
		tr.cur--
		tr.mu.Unlock()
		return err
	}
}

func (tr *tracer) index(ev string) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for i, e := range tr.events {
		if e == ev {
			return i
		}
	}
	return -1
}

func sleepStep(d time.Duration) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		select {
		case <-time.After(d):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func mustStatus(t *testing.T, rep *Report, name string, want StepStatus) StepResult {
	t.Helper()
	s, ok := rep.Step(name)
	if !ok {
		t.Fatalf("no step %q in report", name)
	}
	if s.Status != want {
		t.Fatalf("step %q: status %s, want %s (err %v, reason %q)\n%s", name, s.Status, want, s.Err, s.Reason, rep)
	}
	return s
}

// A diamond runs in dependency order: a, then b and c, then d.
func TestPipelineRunsInDependencyOrder(t *testing.T) {
	tr := &tracer{}
	p := NewPipeline("diamond")
	p.Func("d", tr.step("d", nil), After("b", "c"))
	p.Func("b", tr.step("b", sleepStep(20*time.Millisecond)), After("a"))
	p.Func("c", tr.step("c", sleepStep(5*time.Millisecond)), After("a"))
	p.Func("a", tr.step("a", sleepStep(10*time.Millisecond)))
	rep, err := p.Run(context.Background(), nil)
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, rep)
	}
	for _, dep := range [][2]string{{"end a", "start b"}, {"end a", "start c"}, {"end b", "start d"}, {"end c", "start d"}} {
		if i, j := tr.index(dep[0]), tr.index(dep[1]); i < 0 || j < 0 || i > j {
			t.Errorf("%q at %d, %q at %d: want the first before the second (%v)", dep[0], i, dep[1], j, tr.events)
		}
	}
	for _, n := range []string{"a", "b", "c", "d"} {
		s := mustStatus(t, rep, n, StepSucceeded)
		if s.Attempts != 1 || s.Err != nil || s.Duration <= 0 || s.Kind != "func" {
			t.Errorf("step %s: %+v", n, s)
		}
	}
	// The report keeps the order the steps were added in.
	if got := strings.Join(p.Steps(), ","); got != "d,b,c,a" {
		t.Errorf("Steps() = %s", got)
	}
	if rep.Steps[0].Name != "d" || rep.Steps[3].Name != "a" || !rep.OK() {
		t.Errorf("report steps %v", rep.Steps)
	}
}

// Independent steps run at the same time: each waits until all have
// started, which deadlocks (and times out) if they ran one by one.
func TestPipelineIndependentStepsRunConcurrently(t *testing.T) {
	const n = 4
	var started sync.WaitGroup
	started.Add(n)
	all := make(chan struct{})
	go func() { started.Wait(); close(all) }()
	p := NewPipeline("fan-out")
	for i := 0; i < n; i++ {
		p.Func(fmt.Sprintf("s%d", i), func(ctx context.Context) error {
			started.Done()
			select {
			case <-all:
				return nil
			case <-time.After(10 * time.Second):
				return errors.New("the other steps never started alongside this one")
			}
		})
	}
	if rep, err := p.Run(context.Background(), nil); err != nil {
		t.Fatalf("Run: %v\n%s", err, rep)
	}
}

func TestPipelineParallelismBound(t *testing.T) {
	for _, limit := range []int{1, 2} {
		tr := &tracer{}
		p := NewPipeline("bounded", Parallelism(limit))
		for i := 0; i < 6; i++ {
			name := fmt.Sprintf("s%d", i)
			p.Func(name, tr.step(name, sleepStep(15*time.Millisecond)))
		}
		rep, err := p.Run(context.Background(), nil)
		if err != nil {
			t.Fatalf("Run: %v\n%s", err, rep)
		}
		if tr.peak != limit {
			t.Errorf("Parallelism(%d): %d steps ran at once", limit, tr.peak)
		}
		if limit == 1 {
			for i := 0; i < 6; i++ {
				if tr.events[2*i] != fmt.Sprintf("start s%d", i) {
					t.Fatalf("Parallelism(1): steps did not run one by one in the order added: %v", tr.events)
				}
			}
		}
	}
}

func TestPipelineValidation(t *testing.T) {
	ok := func(ctx context.Context) error { return nil }
	var ran atomic.Int32
	counting := func(ctx context.Context) error { ran.Add(1); return nil }
	cases := []struct {
		name  string
		build func() *Pipeline
		want  string
	}{
		{"no steps", func() *Pipeline { return NewPipeline("p") }, `pipeline "p": no steps`},
		{"empty name", func() *Pipeline { return NewPipeline("p").Func("a", counting).Func(" ", ok) }, "step 2 has an empty name"},
		{"duplicate", func() *Pipeline {
			return NewPipeline("p").Func("a", counting).Func("b", ok).Func("a", ok)
		}, `duplicate step name "a" (steps 1 and 3)`},
		{"unknown dependency", func() *Pipeline {
			return NewPipeline("p").Func("a", counting).Func("b", ok, After("a", "warmup"))
		}, `step "b" depends on unknown step "warmup" (steps: a, b)`},
		{"cycle", func() *Pipeline {
			return NewPipeline("p").Func("x", counting).Func("a", ok, After("c")).Func("b", ok, After("a")).Func("c", ok, After("b"))
		}, `dependency cycle: "a" → "c" → "b" → "a"`},
		{"self", func() *Pipeline { return NewPipeline("p").Func("a", ok, After("a")) }, `dependency cycle: "a" → "a"`},
		{"nil func", func() *Pipeline { return NewPipeline("p").Func("a", nil) }, `step "a": nil function`},
		{"no plan", func() *Pipeline { return NewPipeline("p").Job("a", JobSpec{Config: map[string]any{}}) }, `step "a": job spec without a plan`},
		{"negative retries", func() *Pipeline { return NewPipeline("p").Func("a", ok, Retries(-1)) }, "Retries(-1): want >= 0"},
		{"bad multiplier", func() *Pipeline {
			return NewPipeline("p").Func("a", ok, Retry(RetryPolicy{Attempts: 2, Multiplier: 0.5}))
		}, "Multiplier 0.5: want >= 1"},
		{"bad timeout", func() *Pipeline { return NewPipeline("p").Func("a", ok, StepTimeout(0)) }, "StepTimeout(0s): want > 0"},
		{"bad parallelism", func() *Pipeline { return NewPipeline("p", Parallelism(-1)).Func("a", ok) }, "Parallelism(-1)"},
		{"bad default retry", func() *Pipeline {
			return NewPipeline("p", DefaultRetry(RetryPolicy{Attempts: -2})).Func("a", ok)
		}, "DefaultRetry: Attempts -2"},
		{"job without client", func() *Pipeline {
			return NewPipeline("p").Func("a", counting).Job("b", JobSpec{Plan: "load", Config: LoadConfig{Path: "/"}})
		}, `step "b" is a job step: Run needs a client`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := tc.build().Run(context.Background(), nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run: %v; want an error containing %q", err, tc.want)
			}
			if !errors.Is(err, ErrInvalidPipeline) || !errors.Is(err, ErrInvalidArgument) {
				t.Errorf("errors.Is(%v, ErrInvalidPipeline/ErrInvalidArgument) = false", err)
			}
			if rep != nil {
				t.Errorf("a report for an invalid pipeline: %v", rep)
			}
		})
	}
	if n := ran.Load(); n != 0 {
		t.Fatalf("%d steps ran in invalid pipelines", n)
	}
}

// A step that fails twice then succeeds is retried with growing backoff.
func TestPipelineRetryThenSucceed(t *testing.T) {
	var calls atomic.Int32
	var mu sync.Mutex
	var backoffs []time.Duration
	p := NewPipeline("flaky", OnEvent(func(e Event) {
		if e.Kind == EventRetry {
			mu.Lock()
			backoffs = append(backoffs, e.Backoff)
			mu.Unlock()
		}
	}))
	p.Func("flaky", func(ctx context.Context) error {
		if n := calls.Add(1); n <= 2 {
			return fmt.Errorf("transient failure %d", n)
		}
		return nil
	}, Retry(RetryPolicy{Attempts: 5, Backoff: 20 * time.Millisecond}))
	p.Func("after", func(ctx context.Context) error {
		up, ok := Upstream(ctx, "flaky")
		if !ok || up.Status != StepSucceeded || up.Attempts != 3 {
			return fmt.Errorf("Upstream(flaky) = %+v, %v", up, ok)
		}
		return nil
	}, After("flaky"))
	start := time.Now()
	rep, err := p.Run(context.Background(), nil)
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, rep)
	}
	s := mustStatus(t, rep, "flaky", StepSucceeded)
	if s.Attempts != 3 || calls.Load() != 3 || s.Err != nil {
		t.Fatalf("flaky: %d attempts, %d calls, err %v; want 3, 3, nil", s.Attempts, calls.Load(), s.Err)
	}
	if len(backoffs) != 2 || backoffs[0] != 20*time.Millisecond || backoffs[1] != 40*time.Millisecond {
		t.Fatalf("backoffs %v, want [20ms 40ms]", backoffs)
	}
	if took := time.Since(start); took < 60*time.Millisecond {
		t.Fatalf("took %s: the backoffs were not waited", took)
	}
	mustStatus(t, rep, "after", StepSucceeded)
}

func TestRetryPolicyDelay(t *testing.T) {
	r := RetryPolicy{Backoff: 100 * time.Millisecond, MaxBackoff: time.Second, Multiplier: 3}
	want := []time.Duration{100 * time.Millisecond, 300 * time.Millisecond, 900 * time.Millisecond, time.Second, time.Second}
	for i, w := range want {
		if got := r.Delay(i + 1); got != w {
			t.Errorf("Delay(%d) = %s, want %s", i+1, got, w)
		}
	}
	def := RetryPolicy{}
	if def.Delay(1) != time.Second || def.Delay(2) != 2*time.Second || def.Delay(20) != time.Minute {
		t.Errorf("default delays %s %s %s", def.Delay(1), def.Delay(2), def.Delay(20))
	}
}

var errDisk = errors.New("disk on fire")

// A step that fails for good skips its dependents (saying why, through
// the whole chain) while an independent branch completes.
func TestPipelineFailureSkipsDependents(t *testing.T) {
	var calls atomic.Int32
	var ranDependent atomic.Bool
	var events []string
	p := NewPipeline("etl", DefaultRetry(RetryPolicy{Attempts: 2, Backoff: time.Millisecond}), OnEvent(func(e Event) {
		events = append(events, e.Step+":"+e.Kind.String()) // serialized by the pipeline
	}))
	p.Func("extract", func(ctx context.Context) error { calls.Add(1); return errDisk })
	p.Func("transform", func(ctx context.Context) error { ranDependent.Store(true); return nil }, After("extract"))
	p.Func("load", func(ctx context.Context) error { ranDependent.Store(true); return nil }, After("transform"))
	p.Func("other", sleepStep(10*time.Millisecond))
	rep, err := p.Run(context.Background(), nil)
	if err == nil {
		t.Fatalf("Run succeeded with a failing step\n%s", rep)
	}
	var pe *PipelineError
	if !errors.As(err, &pe) || !errors.Is(err, errDisk) || len(pe.Failed) != 1 || pe.Skipped != 2 {
		t.Fatalf("err = %#v; want a *PipelineError wrapping errDisk, 1 failed, 2 skipped", err)
	}
	if !strings.Contains(err.Error(), `step "extract" failed: disk on fire; 2 steps skipped`) {
		t.Errorf("err text %q", err)
	}
	s := mustStatus(t, rep, "extract", StepFailed)
	if s.Attempts != 2 || calls.Load() != 2 || !errors.Is(s.Err, errDisk) {
		t.Errorf("extract: %+v (calls %d)", s, calls.Load())
	}
	tr := mustStatus(t, rep, "transform", StepSkipped)
	if tr.Reason != `dependency "extract" failed: disk on fire` || tr.Attempts != 0 {
		t.Errorf("transform: reason %q attempts %d", tr.Reason, tr.Attempts)
	}
	ld := mustStatus(t, rep, "load", StepSkipped)
	if ld.Reason != `dependency "transform" skipped: step "extract" failed: disk on fire` {
		t.Errorf("load: reason %q", ld.Reason)
	}
	mustStatus(t, rep, "other", StepSucceeded)
	if ranDependent.Load() {
		t.Fatal("a dependent of the failed step ran")
	}
	table := rep.String()
	for _, want := range []string{"STEP", "extract", "FAILED", "disk on fire", "SKIPPED", `dependency "extract" failed`, "1 succeeded, 1 failed, 2 skipped"} {
		if !strings.Contains(table, want) {
			t.Errorf("summary lacks %q:\n%s", want, table)
		}
	}
	joined := strings.Join(events, " ")
	for _, want := range []string{"extract:attempt", "extract:retry", "extract:done", "transform:done", "load:done", "other:done"} {
		if !strings.Contains(joined, want) {
			t.Errorf("events lack %s: %s", want, joined)
		}
	}
}

// Permanent errors and the policy's Retryable stop retries early.
func TestPipelinePermanentErrors(t *testing.T) {
	var a, b atomic.Int32
	p := NewPipeline("perm", DefaultRetry(RetryPolicy{Attempts: 5, Backoff: time.Millisecond}))
	p.Func("bad-input", func(ctx context.Context) error { a.Add(1); return Permanent(errors.New("no such table")) })
	p.Func("custom", func(ctx context.Context) error { b.Add(1); return errDisk },
		Retry(RetryPolicy{Attempts: 5, Backoff: time.Millisecond, Retryable: func(err error) bool { return !errors.Is(err, errDisk) }}))
	rep, err := p.Run(context.Background(), nil)
	if err == nil {
		t.Fatal("Run succeeded")
	}
	if mustStatus(t, rep, "bad-input", StepFailed); a.Load() != 1 {
		t.Errorf("Permanent error tried %d times", a.Load())
	}
	if mustStatus(t, rep, "custom", StepFailed); b.Load() != 1 {
		t.Errorf("non-retryable error tried %d times", b.Load())
	}
	for _, e := range []error{
		&Error{kind: ErrInvalidArgument}, &Error{kind: ErrNotFound}, &JobError{Job: &JobInfo{}, kind: ErrJobCanceled}, context.Canceled,
	} {
		if DefaultRetryable(e) {
			t.Errorf("DefaultRetryable(%v) = true", e)
		}
	}
	for _, e := range []error{&Error{kind: ErrUnavailable}, &JobError{Job: &JobInfo{}, kind: ErrJobFailed}, errDisk} {
		if !DefaultRetryable(e) {
			t.Errorf("DefaultRetryable(%v) = false", e)
		}
	}
}

// Cancelling the context stops running steps (CANCELED) and starts nothing
// more; Run waits for the running ones and returns context.Canceled.
func TestPipelineContextCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan struct{})
	var late atomic.Bool
	p := NewPipeline("cancel", DefaultRetry(RetryPolicy{Attempts: 3}))
	p.Func("long", func(ctx context.Context) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	})
	p.Func("next", func(ctx context.Context) error { late.Store(true); return nil }, After("long"))
	quickDone := make(chan struct{})
	p.Func("quick", func(ctx context.Context) error { close(quickDone); return nil })
	go func() { <-started; <-quickDone; cancel() }()
	rep, err := p.Run(ctx, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v; want context.Canceled", err)
	}
	long := mustStatus(t, rep, "long", StepCanceled)
	if long.Attempts != 1 || !errors.Is(long.Err, context.Canceled) {
		t.Errorf("long: %+v (a cancelled step is not retried)", long)
	}
	next := mustStatus(t, rep, "next", StepCanceled)
	if !strings.Contains(next.Reason, "not started: pipeline canceled") {
		t.Errorf("next: reason %q", next.Reason)
	}
	mustStatus(t, rep, "quick", StepSucceeded)
	if late.Load() {
		t.Fatal("a step started after the cancel")
	}
	// A cancel during a retry backoff ends the step at once.
	ctx2, cancel2 := context.WithCancel(context.Background())
	p2 := NewPipeline("backoff").Func("f", func(ctx context.Context) error {
		time.AfterFunc(20*time.Millisecond, cancel2)
		return errDisk
	}, Retry(RetryPolicy{Attempts: 2, Backoff: time.Hour}))
	start := time.Now()
	rep, err = p2.Run(ctx2, nil)
	if !errors.Is(err, context.Canceled) || time.Since(start) > 10*time.Second {
		t.Fatalf("Run: %v after %s", err, time.Since(start))
	}
	if f := mustStatus(t, rep, "f", StepCanceled); !strings.Contains(f.Err.Error(), "canceled while waiting to retry after attempt 1 failed (disk on fire)") {
		t.Errorf("f: %v", f.Err)
	}
}

func TestPipelineFailFast(t *testing.T) {
	var neverStarted atomic.Bool
	p := NewPipeline("ff", FailFast(), Parallelism(2))
	p.Func("slow", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	p.Func("boom", func(ctx context.Context) error { time.Sleep(5 * time.Millisecond); return errDisk })
	p.Func("queued", func(ctx context.Context) error { neverStarted.Store(true); return nil })
	rep, err := p.Run(context.Background(), nil)
	if !errors.Is(err, errDisk) || errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	mustStatus(t, rep, "boom", StepFailed)
	if s := mustStatus(t, rep, "slow", StepCanceled); !strings.Contains(fmt.Sprint(s.Err), `step "boom" failed (FailFast)`) {
		t.Errorf("slow: %v", s.Err)
	}
	if s := mustStatus(t, rep, "queued", StepSkipped); s.Reason != `not started: step "boom" failed (FailFast)` {
		t.Errorf("queued: %q", s.Reason)
	}
	if neverStarted.Load() {
		t.Fatal("a step started after FailFast stopped the run")
	}
}

func TestPipelineStepTimeoutAndPanic(t *testing.T) {
	var tries atomic.Int32
	p := NewPipeline("guards")
	p.Func("hangs", func(ctx context.Context) error {
		tries.Add(1)
		<-ctx.Done()
		return ctx.Err()
	}, StepTimeout(20*time.Millisecond), Retry(RetryPolicy{Attempts: 2, Backoff: time.Millisecond}))
	p.Func("panics", func(ctx context.Context) error { panic("nil map") }, Retries(3))
	rep, err := p.Run(context.Background(), nil)
	if err == nil {
		t.Fatal("Run succeeded")
	}
	h := mustStatus(t, rep, "hangs", StepFailed)
	if tries.Load() != 2 || !errors.Is(h.Err, context.DeadlineExceeded) || !strings.Contains(h.Err.Error(), "timed out after 20ms") {
		t.Errorf("hangs: %d tries, err %v", tries.Load(), h.Err)
	}
	pn := mustStatus(t, rep, "panics", StepFailed)
	if pn.Attempts != 1 || !strings.Contains(pn.Err.Error(), `step "panics" panicked: nil map`) {
		t.Errorf("panics: %d attempts, %v", pn.Attempts, pn.Err)
	}
}

func TestReportJSONAndTable(t *testing.T) {
	p := NewPipeline("json")
	p.Func("ok", func(ctx context.Context) error { return nil })
	p.Func("bad", func(ctx context.Context) error { return errDisk })
	p.Func("dep", func(ctx context.Context) error { return nil }, After("bad"))
	rep, _ := p.Run(context.Background(), nil)
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		Pipeline string
		Steps    []struct {
			Name, Status, Error, Reason string
			Attempts                    int
		}
	}
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Pipeline != "json" || len(back.Steps) != 3 || back.Steps[1].Status != "FAILED" || back.Steps[1].Error != "disk on fire" ||
		back.Steps[2].Status != "SKIPPED" || back.Steps[2].Reason == "" || back.Steps[0].Attempts != 1 {
		t.Fatalf("JSON %s", b)
	}
	lines := strings.Split(strings.TrimSpace(rep.String()), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "STEP") || !strings.HasPrefix(lines[4], `pipeline "json": 1 succeeded, 1 failed, 1 skipped in `) {
		t.Fatalf("table:\n%s", rep)
	}
	// Columns line up: STATUS starts at the same offset on every row.
	col := strings.Index(lines[0], "STATUS")
	for _, l := range lines[1:4] {
		if !strings.Contains(l[col:col+9], "SUCCEEDED") && !strings.Contains(l[col:col+9], "FAILED") && !strings.Contains(l[col:col+9], "SKIPPED") {
			t.Errorf("misaligned row %q", l)
		}
	}
	var sb strings.Builder
	log := LogEvents(&sb)
	log(Event{Pipeline: "p", Step: "s", Kind: EventRetry, Attempt: 1, Err: errDisk, Backoff: time.Second})
	log(Event{Pipeline: "p", Step: "s", Kind: EventDone, Status: StepSkipped, Reason: "dependency x failed"})
	if got := sb.String(); got != "[p/s] attempt 1 failed: disk on fire; retrying in 1s\n[p/s] SKIPPED: dependency x failed\n" {
		t.Fatalf("LogEvents wrote %q", got)
	}
}

// BenchmarkPipelineRun measures the engine's own cost per step: 100
// no-op Go steps, half in a chain, half fanned out from its first step.
func BenchmarkPipelineRun(b *testing.B) {
	p := NewPipeline("bench")
	noop := func(ctx context.Context) error { return nil }
	p.Func("s0", noop)
	for i := 1; i < 50; i++ {
		p.Func(fmt.Sprintf("s%d", i), noop, After(fmt.Sprintf("s%d", i-1)))
	}
	for i := 0; i < 50; i++ {
		p.Func(fmt.Sprintf("f%d", i), noop, After("s0"))
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Run(context.Background(), nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100, "ns/step")
}
