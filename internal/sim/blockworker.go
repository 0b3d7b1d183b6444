package sim

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/client"
)

// blockRec is a block a simulated worker holds.
type blockRec struct {
	id, length int64
}

// blockWorker is one simulated block worker: it registers with a full
// report of the blocks it holds, then heartbeats the blocks added and
// removed since, as blockworker's masterLink does.
type blockWorker struct {
	s    *Sim
	i    int
	host string
	m    *masters

	mu         sync.Mutex
	id         int64
	registered bool
	interval   time.Duration
	spreadNext time.Duration // asked to register again: wait this long first
	held       []blockRec
	used       int64
	added      []blockRec
	removed    []int64
	// beats carries the heartbeats over one stream to the leader, as
	// blockworker's masterLink (run's goroutine only).
	beats client.Heartbeats
}

func (b *blockWorker) address() *api.WorkerNetAddress {
	// Ports only need to be unique per host; nothing connects to them.
	return &api.WorkerNetAddress{Host: b.host, RpcPort: 29999, DataPort: 29999, WebPort: 30000}
}

func (b *blockWorker) gauges() (bool, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.registered, len(b.held)
}

// client is the leading FS master's block service (the client layer
// finds the leader and follows it, as for a block worker process).
func (b *blockWorker) client() api.BlockMasterClient { return b.m.fs.BlockMaster() }

func (b *blockWorker) run(ctx context.Context) {
	defer b.beats.Close()
	// A random phase: real workers start at different times.
	if !sleep(ctx, time.Duration(rand.Int64N(int64(time.Second)))) {
		return
	}
	backoff := client.NewBackoff(100*time.Millisecond, 2*time.Second)
	var due time.Time // when the next heartbeat is due
	for ctx.Err() == nil {
		b.mu.Lock()
		registered, every, wait := b.registered, b.interval, b.spreadNext
		b.spreadNext = 0
		b.mu.Unlock()
		if !registered {
			// Asked to register again: first a random part of the
			// interval, as blockworker's masterLink.
			if !sleep(ctx, wait) {
				return
			}
			if err := b.register(ctx); err != nil {
				if !sleep(ctx, backoff.Next()) {
					return
				}
				continue
			}
			backoff.Reset()
			due = time.Time{}
			continue
		}
		// Beats are due every interval, not an interval after the last
		// reply: the simulator holds every worker to the rate the master
		// asked for however slow the replies are (a real worker's period
		// is the interval plus its latency). The first is due an interval
		// after the registration, or at a random point of it (firstDue).
		now := time.Now()
		if due.IsZero() {
			due = b.s.firstDue(now, every)
		}
		if !sleep(ctx, due.Sub(now)) {
			return
		}
		b.s.st.hbLate.add(time.Since(due))
		b.heartbeat(ctx)
		due = b.s.nextDue(due, every, time.Now())
	}
}

// register sends the full report; the deltas it covers are dropped.
func (b *blockWorker) register(ctx context.Context) error {
	bm := b.client()
	b.mu.Lock()
	b.held = dedupe(b.held)
	b.used = 0
	for _, r := range b.held {
		b.used += r.length
	}
	req := &api.RegisterWorkerRequest{Address: b.address(), Tiers: b.s.tiers(b.used)}
	req.Blocks = make([]*api.BlockReport, len(b.held))
	for i, r := range b.held {
		req.Blocks[i] = &api.BlockReport{BlockId: r.id, Length: r.length, Tier: "MEM"}
	}
	b.added, b.removed = nil, nil
	b.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	start := time.Now()
	resp, err := bm.RegisterWorker(cctx, req)
	if err != nil {
		b.s.st.regErrors.Add(1)
		return err
	}
	b.s.st.reg.add(time.Since(start))
	b.s.st.registrations.Add(1)
	b.mu.Lock()
	if b.id != 0 && b.id != resp.GetWorkerId() {
		b.s.byID.Delete(b.id)
	}
	b.id = resp.GetWorkerId()
	b.registered = true
	b.interval = time.Duration(resp.GetHeartbeatIntervalMs()) * time.Millisecond
	if b.interval <= 0 {
		b.interval = time.Second
	}
	b.mu.Unlock()
	b.s.byID.Store(resp.GetWorkerId(), b)
	return nil
}

func (b *blockWorker) heartbeat(ctx context.Context) {
	bm := b.client()
	b.mu.Lock()
	req := &api.WorkerHeartbeatRequest{WorkerId: b.id, Tiers: b.s.tiers(b.used)}
	added, removed := b.added, b.removed
	b.added, b.removed = nil, nil
	for _, r := range added {
		req.AddedBlocks = append(req.AddedBlocks, &api.BlockReport{BlockId: r.id, Length: r.length, Tier: "MEM"})
	}
	req.RemovedBlockIds = removed
	b.mu.Unlock()
	start := time.Now()
	resp, err := b.beats.Beat(ctx, bm, req, 10*time.Second)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		b.s.st.hbErrors.Add(1)
		b.mu.Lock()
		b.added = append(added, b.added...)
		b.removed = append(removed, b.removed...)
		if status.Code(err) == codes.NotFound {
			b.registered = false
		}
		b.mu.Unlock()
		return
	}
	b.s.st.hb.add(time.Since(start))
	b.s.st.heartbeats.Add(1)
	for _, c := range resp.GetCommands() {
		switch c.GetType() {
		case api.WorkerCommand_REGISTER:
			b.s.st.registerAsks.Add(1)
			b.mu.Lock()
			b.registered = false
			b.spreadNext = client.Spread(b.interval)
			b.mu.Unlock()
		case api.WorkerCommand_REMOVE_BLOCKS:
			b.remove(c.GetBlockIds())
		}
	}
}

// add records blocks this worker now holds (a task stored them).
func (b *blockWorker) add(rs []blockRec) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.held = append(b.held, rs...)
	b.added = append(b.added, rs...)
	for _, r := range rs {
		b.used += r.length
	}
}

// remove drops blocks the master told this worker to remove.
func (b *blockWorker) remove(ids []int64) {
	drop := make(map[int64]bool, len(ids))
	for _, id := range ids {
		drop[id] = true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.held = slices.DeleteFunc(b.held, func(r blockRec) bool {
		if drop[r.id] {
			b.used -= r.length
			return true
		}
		return false
	})
	b.removed = append(b.removed, ids...)
}

// dedupe sorts rs by id and keeps the last record of each id.
func dedupe(rs []blockRec) []blockRec {
	slices.SortStableFunc(rs, func(a, b blockRec) int {
		switch {
		case a.id < b.id:
			return -1
		case a.id > b.id:
			return 1
		}
		return 0
	})
	out := rs[:0]
	for i, r := range rs {
		if i+1 < len(rs) && rs[i+1].id == r.id {
			continue
		}
		out = append(out, r)
	}
	return out
}
