package jobmaster

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/alluvium/alluvium/api"
)

// fsmApply is a submitBatcher's apply onto an FSM, as raft would apply the
// entries, recording each entry's command type; each entry waits for hold
// to close (the raft write in flight), and says so on started.
type fsmApply struct {
	mu      sync.Mutex
	f       *FSM
	index   uint64
	types   []api.JobCommandType
	sizes   []int
	started chan struct{}
	hold    chan struct{}
}

func (a *fsmApply) apply(_ context.Context, m proto.Message) (any, error) {
	buf, err := encodeCommand(m)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	t, _ := commandType(m)
	a.types = append(a.types, t)
	size := 1
	if c, ok := m.(*api.SubmitJobsCommand); ok {
		size = len(c.GetJobs())
	}
	a.sizes = append(a.sizes, size)
	a.mu.Unlock()
	a.started <- struct{}{}
	<-a.hold
	a.mu.Lock()
	defer a.mu.Unlock()
	a.index++
	return a.f.Apply(&raft.Log{Index: a.index, Term: 1, Type: raft.LogCommand, Data: buf}), nil
}

// Submits that come while one is in raft wait, and go together as one
// SUBMIT_JOBS entry; each caller gets its own job (or its own error). A
// lone submit is still its own SUBMIT_JOB / SUBMIT_PLANNED_JOB.
func TestSubmitBatcherSharesEntries(t *testing.T) {
	a := &fsmApply{f: NewFSM(nil), started: make(chan struct{}, 100), hold: make(chan struct{})}
	b := newSubmitBatcher(context.Background(), a.apply)
	cmd := func(rid string, plan bool) *api.SubmitPlannedJobCommand {
		c := &api.SubmitPlannedJobCommand{Submit: &api.SubmitJobCommand{Plan: "load", ConfigJson: `{}`, RequestId: rid, NowMs: 1000}}
		if plan {
			c.Plan = &api.PlanTasksCommand{PlanningDone: true, Tasks: []*api.PlannedTask{{Args: []byte("{}"), Description: "/" + rid}}}
		}
		return c
	}
	type answer struct {
		res any
		err error
	}
	// The first submitsInFlight submits are alone: each entry is its own
	// command, held in "raft" while the others come.
	lone := make(chan answer, submitsInFlight)
	for i := range submitsInFlight {
		go func() { r, err := b.submit(cmd(fmt.Sprint("lone", i), i == 0)); lone <- answer{r, err} }()
		<-a.started
	}
	const n = 40
	answers := make([]answer, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := cmd(fmt.Sprintf("r%d", i), i%2 == 0)
			if i == 7 {
				c.Submit.PipelineRunId, c.Submit.PipelineStep = 99, "s" // its own error
			}
			r, err := b.submit(c)
			answers[i] = answer{r, err}
		}()
	}
	// Every submitter queues before the held entries end.
	deadline := time.Now().Add(10 * time.Second)
	for b.group.Waiting() < n && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	close(a.hold)
	wg.Wait()
	seen := map[int64]bool{}
	for range submitsInFlight {
		an := <-lone
		sr, ok := an.res.(submitResult)
		if an.err != nil || !ok || seen[sr.id] {
			t.Fatalf("lone submit: %+v", an)
		}
		seen[sr.id] = true
	}
	for i, an := range answers {
		if i == 7 {
			if err, _ := an.res.(error); an.err != nil || err == nil {
				t.Fatalf("the stale submit answered %+v", an)
			}
			continue
		}
		sr, ok := an.res.(submitResult)
		if an.err != nil || !ok || sr.existed || seen[sr.id] {
			t.Fatalf("submit %d answered %+v", i, an)
		}
		seen[sr.id] = true
		j := a.f.Job(sr.id)
		if j == nil || j.RequestID != fmt.Sprintf("r%d", i) || (i%2 == 0) != j.PlanningDone {
			t.Fatalf("submit %d's job: %+v", i, j)
		}
	}
	want := []api.JobCommandType{api.JobCommandType_SUBMIT_PLANNED_JOB, api.JobCommandType_SUBMIT_JOB, api.JobCommandType_SUBMIT_JOBS}
	if len(a.types) != 3 || !slices.Equal(a.types[:2], want[:2]) && !slices.Equal(a.types[:2], []api.JobCommandType{want[1], want[0]}) ||
		a.types[2] != want[2] || a.sizes[2] != n {
		t.Fatalf("entries %v of sizes %v: want two lone ones and the %d queued in one", a.types, a.sizes, n)
	}
}

// A wave bigger than maxSubmitsPerEntry is split into entries of at most
// that many, every caller answered.
func TestSubmitBatcherSplitsBigWaves(t *testing.T) {
	a := &fsmApply{f: NewFSM(nil), started: make(chan struct{}, 100), hold: make(chan struct{})}
	close(a.hold)
	b := newSubmitBatcher(context.Background(), a.apply)
	items := make([]*pendingSubmit, 2*maxSubmitsPerEntry+3)
	for i := range items {
		items[i] = &pendingSubmit{cmd: &api.SubmitPlannedJobCommand{Submit: &api.SubmitJobCommand{Plan: "load", ConfigJson: `{}`, RequestId: fmt.Sprint(i), NowMs: 1}}}
	}
	b.run(context.Background(), items)
	for i, p := range items {
		if sr, ok := p.res.(submitResult); p.err != nil || !ok || a.f.Job(sr.id).RequestID != fmt.Sprint(i) {
			t.Fatalf("item %d: %+v", i, p)
		}
	}
	for _, s := range a.sizes {
		if s > maxSubmitsPerEntry {
			t.Fatalf("entry sizes %v", a.sizes)
		}
	}
	if len(a.sizes) != 3 {
		t.Fatalf("entry sizes %v", a.sizes)
	}
}

// A failed raft apply is every caller's of its entry.
func TestSubmitBatcherApplyError(t *testing.T) {
	boom := fmt.Errorf("boom: %w", raft.ErrNotLeader)
	b := newSubmitBatcher(context.Background(), func(context.Context, proto.Message) (any, error) { return nil, boom })
	items := []*pendingSubmit{{cmd: &api.SubmitPlannedJobCommand{Submit: &api.SubmitJobCommand{}}}, {cmd: &api.SubmitPlannedJobCommand{Submit: &api.SubmitJobCommand{}}}}
	b.run(context.Background(), items)
	for _, p := range items {
		if p.err != boom || p.res != nil {
			t.Fatalf("item: %+v", p)
		}
	}
}
