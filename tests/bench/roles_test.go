package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/alluvium/alluvium/api"
)

// The in-process clusters run every role in the benchmark's process, so
// one CPU profile holds them all. Each role starts under a pprof label
// (role=fsmaster, blockworker, jobmaster, jobworker): the goroutines it
// starts — its gRPC servers, their handlers, its loops — inherit it, so
// `go tool pprof -tagfocus role=fsmaster` shows one role's share.

// asRole runs start (a role's Start) under the label role=name.
func asRole(name string, start func(ctx context.Context) error) error {
	var err error
	pprof.Do(context.Background(), pprof.Labels("role", name), func(ctx context.Context) {
		err = start(ctx)
	})
	return err
}

// profileRun starts a CPU profile of one timed run when BENCH_PROFILE
// names a directory, written to DIR/<benchmark>-<name>.cpu.pprof when the
// returned stop is called (a no-op otherwise). Only the timed run is in
// it: no setup, no reference tool (those are other processes anyway).
func profileRun(b *testing.B, name string) (stop func()) {
	dir := os.Getenv("BENCH_PROFILE")
	if dir == "" {
		return func() {}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	bn := strings.NewReplacer("/", "-", "=", "-").Replace(strings.TrimPrefix(b.Name(), "Benchmark"))
	p := filepath.Join(dir, fmt.Sprintf("%s-%s.cpu.pprof", bn, name))
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		b.Logf("no CPU profile of %s: %v", name, err)
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
		b.Logf("CPU profile of %s: %s", name, p)
	}
}

// jobTimeline records when a watched job reached its milestones, for
// BENCH_TRACE's wall-clock breakdown: planning (submit to planning done),
// the tasks (first to last done) and the completion (last task done to
// COMPLETED seen by the client).
type jobTimeline struct {
	start                                  time.Time
	firstTask, planned, lastTask, finished time.Duration
	// cpu samples the process's CPU (user, system) every cpuEvery while
	// the job runs (BENCH_TRACE only): are both cores busy all along?
	cpu     []cpuSample
	stopCPU chan struct{}
	cpuDone chan struct{}
}

type cpuSample struct{ at, user, sys time.Duration }

const cpuEvery = 50 * time.Millisecond

func newJobTimeline() *jobTimeline {
	t := &jobTimeline{start: time.Now()}
	if os.Getenv("BENCH_TRACE") != "" {
		t.stopCPU, t.cpuDone = make(chan struct{}), make(chan struct{})
		go t.sampleCPU()
	}
	return t
}

func (t *jobTimeline) sampleCPU() {
	defer close(t.cpuDone)
	tick := time.NewTicker(cpuEvery)
	defer tick.Stop()
	for {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		t.cpu = append(t.cpu, cpuSample{time.Since(t.start), time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())})
		select {
		case <-t.stopCPU:
			return
		case <-tick.C:
		}
	}
}

// see notes one update of the job.
func (t *jobTimeline) see(j *api.JobInfo) {
	at := time.Since(t.start)
	if t.firstTask == 0 && j.GetTasksDone() > 0 {
		t.firstTask = at
	}
	if t.planned == 0 && j.GetPlanningDone() {
		t.planned = at
	}
	if t.planned != 0 && t.lastTask == 0 && j.GetTasksDone() == j.GetTasksTotal() {
		t.lastTask = at
	}
	switch j.GetStatus() {
	case api.JobInfo_COMPLETED, api.JobInfo_FAILED, api.JobInfo_CANCELED:
		t.finished = at
	}
}

// report prints the breakdown when BENCH_TRACE is set (the watch reports
// every 10 ms at most, so each figure is that coarse), on stderr: on
// stdout it would split the benchmark's result line, which benchreport
// reads.
func (t *jobTimeline) report(what string) {
	if os.Getenv("BENCH_TRACE") == "" {
		return
	}
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	fmt.Fprintf(os.Stderr, "TIMELINE %s: first task done %.0f ms, planning done %.0f ms, last task done %.0f ms, completed seen %.0f ms\n",
		what, ms(t.firstTask), ms(t.planned), ms(t.lastTask), ms(t.finished))
	if t.stopCPU == nil {
		return
	}
	close(t.stopCPU)
	<-t.cpuDone
	// Cores busy (user+system, and the system part) in each interval.
	var b strings.Builder
	for i := 1; i < len(t.cpu); i++ {
		p, c := t.cpu[i-1], t.cpu[i]
		span := float64(c.at - p.at)
		fmt.Fprintf(&b, " %.0f:%.2f/%.2f", ms(c.at), float64(c.user-p.user+c.sys-p.sys)/span, float64(c.sys-p.sys)/span)
	}
	fmt.Fprintf(os.Stderr, "CPU %s (ms:cores busy/of which kernel):%s\n", what, b.String())
}
