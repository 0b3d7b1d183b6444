package jobmaster

import (
	"context"
	"fmt"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/coalesce"
)

// Submit batching. Each submit used to be a raft entry of its own: with
// many clients submitting at once, raft wrote them in one fsync anyway, but
// every entry still cost its log record, its future, its FSM transaction
// and its change notice. The leader's submits instead go through a
// coalesce.Group: a lone submit is applied at once as it always was
// (SUBMIT_PLANNED_JOB, or SUBMIT_JOB with no plan inline), and the
// submits that come while submitsInFlight entries of them are in raft wait
// and go together as the next SUBMIT_JOBS entry. Each caller gets its own
// job's answer from it.
const (
	// submitsInFlight submit entries may be in raft at once: while one
	// waits for its fsync, the next is on its way (raft writes both in one
	// fsync when they meet), as the SDK's joined calls keep two batches in
	// flight.
	submitsInFlight = 2
	// maxSubmitsPerEntry bounds one SUBMIT_JOBS entry: a bigger wave is
	// split, its entries applied together, so no entry holds the FSM for
	// long or grows without bound.
	maxSubmitsPerEntry = 256
)

// pendingSubmit is one job's submit waiting in a batch; res and err are
// its own answer (res the FSM's: a submitResult or an error; err the
// raft apply's), set before the batch's callers are let go.
type pendingSubmit struct {
	cmd *api.SubmitPlannedJobCommand
	res any
	err error
}

// submitBatcher turns concurrent submits into shared raft entries.
type submitBatcher struct {
	apply func(context.Context, proto.Message) (any, error)
	group *coalesce.Group[*pendingSubmit, struct{}]
}

func newSubmitBatcher(ctx context.Context, apply func(context.Context, proto.Message) (any, error)) *submitBatcher {
	b := &submitBatcher{apply: apply}
	// Gathering: submits come in waves (a watch answered, its submitter's
	// next submit), so the first of a wave does not go alone.
	b.group = coalesce.NewGathering(func(items []*pendingSubmit) struct{} {
		b.run(ctx, items)
		return struct{}{}
	}).WithInFlight(submitsInFlight)
	return b
}

// submit applies one job's submit (its plan nil when not planned inline)
// and returns the FSM's answer for it. Like a lone apply, it waits for its
// entry however the caller's context ends: the job may be made either way,
// and the caller's request id finds it again.
func (b *submitBatcher) submit(cmd *api.SubmitPlannedJobCommand) (any, error) {
	p := &pendingSubmit{cmd: cmd}
	b.group.Do(context.Background(), p)
	return p.res, p.err
}

// run applies a batch: a lone submit as its own command, more as
// SUBMIT_JOBS entries of at most maxSubmitsPerEntry, applied together.
func (b *submitBatcher) run(ctx context.Context, items []*pendingSubmit) {
	if len(items) == 1 {
		p := items[0]
		var m proto.Message = p.cmd
		if p.cmd.GetPlan() == nil {
			m = p.cmd.GetSubmit()
		}
		p.res, p.err = b.apply(ctx, m)
		return
	}
	var wg sync.WaitGroup
	for len(items) > maxSubmitsPerEntry {
		chunk := items[:maxSubmitsPerEntry]
		items = items[maxSubmitsPerEntry:]
		wg.Add(1)
		go func() { defer wg.Done(); b.applyMany(ctx, chunk) }()
	}
	b.applyMany(ctx, items)
	wg.Wait()
}

// applyMany applies items as one SUBMIT_JOBS entry and hands each its
// answer.
func (b *submitBatcher) applyMany(ctx context.Context, items []*pendingSubmit) {
	cmd := &api.SubmitJobsCommand{Jobs: make([]*api.SubmitPlannedJobCommand, len(items))}
	for i, p := range items {
		cmd.Jobs[i] = p.cmd
	}
	resp, err := b.apply(ctx, cmd)
	rs, ok := resp.(submitResults)
	if err == nil && (!ok || len(rs) != len(items)) {
		err = fmt.Errorf("submit %d jobs: unexpected FSM response %v", len(items), resp)
	}
	for i, p := range items {
		if err != nil {
			p.err = err
			continue
		}
		p.res = rs[i]
	}
}
