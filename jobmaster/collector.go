package jobmaster

import (
	"context"
	"sync"
	"time"

	"github.com/alluvium/alluvium/api"
)

// collector batches task transitions from every worker (results, progress)
// and from the leader itself (dispatches, timeouts) into UPDATE_TASKS raft
// entries: one goroutine drains the queue, so while one entry is being
// written the next fills up, and one fsync carries as many updates as
// arrived meanwhile. A few entries are kept in flight so raft can put
// several into one disk write.
type collector struct {
	apply       func(ctx context.Context, cmd *api.UpdateTasksCommand) error
	maxBatch    int
	maxAttempts int32
	observe     func(updates int, took time.Duration) // metrics

	mu      sync.Mutex
	q       []collected
	wake    chan struct{}
	closed  bool
	flights chan struct{} // bounds entries in flight
}

type collected struct {
	tr   *api.TaskTransition
	done chan error // set on the last transition of a submit; nil otherwise
}

const collectorInFlight = 4

func newCollector(apply func(context.Context, *api.UpdateTasksCommand) error, maxBatch int, maxAttempts int32) *collector {
	if maxBatch <= 0 {
		maxBatch = 8192
	}
	return &collector{
		apply: apply, maxBatch: maxBatch, maxAttempts: maxAttempts,
		wake: make(chan struct{}, 1), flights: make(chan struct{}, collectorInFlight),
	}
}

// submit queues transitions. The returned channel gets the outcome once
// the entry holding the last of them is applied (nil: durable), or an
// error (not leader any more). With no transitions it is nil.
func (c *collector) submit(trs []*api.TaskTransition) <-chan error {
	if len(trs) == 0 {
		return nil
	}
	done := make(chan error, 1)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		done <- errNotLeader
		return done
	}
	for i, tr := range trs {
		it := collected{tr: tr}
		if i == len(trs)-1 {
			it.done = done
		}
		c.q = append(c.q, it)
	}
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return done
}

// depth is the number of queued transitions.
func (c *collector) depth() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.q)
}

// run drains the queue until ctx ends; then it fails whatever is queued.
func (c *collector) run(ctx context.Context) {
	var wg sync.WaitGroup
	defer func() {
		wg.Wait()
		c.mu.Lock()
		c.closed = true
		q := c.q
		c.q = nil
		c.mu.Unlock()
		for _, it := range q {
			if it.done != nil {
				it.done <- errNotLeader
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.wake:
		}
		for {
			c.mu.Lock()
			n := min(len(c.q), c.maxBatch)
			batch := make([]collected, n)
			copy(batch, c.q[:n])
			c.q = c.q[n:]
			if len(c.q) == 0 {
				c.q = nil
			}
			c.mu.Unlock()
			if n == 0 {
				break
			}
			select {
			case c.flights <- struct{}{}:
			case <-ctx.Done():
				for _, it := range batch {
					if it.done != nil {
						it.done <- errNotLeader
					}
				}
				return
			}
			cmd := &api.UpdateTasksCommand{Transitions: make([]*api.TaskTransition, n), MaxAttempts: c.maxAttempts, NowMs: time.Now().UnixMilli()}
			for i, it := range batch {
				cmd.Transitions[i] = it.tr
			}
			// The raft Apply enqueues in order; waiting happens beside it,
			// so the next batch is already on its way while this one syncs.
			wg.Add(1)
			ready := make(chan struct{})
			go func() {
				defer wg.Done()
				defer func() { <-c.flights }()
				start := time.Now()
				err := c.apply(withEnqueued(ctx, ready), cmd)
				if c.observe != nil && err == nil {
					c.observe(n, time.Since(start))
				}
				for _, it := range batch {
					if it.done != nil {
						it.done <- err
					}
				}
			}()
			// Keep raft's log order equal to the queue's order.
			select {
			case <-ready:
			case <-ctx.Done():
			}
		}
	}
}

// enqueuedKey carries a channel an apply function closes once its entry is
// handed to raft (so the next one may follow).
type enqueuedKey struct{}

func withEnqueued(ctx context.Context, ch chan struct{}) context.Context {
	return context.WithValue(ctx, enqueuedKey{}, ch)
}

// markEnqueued closes the channel withEnqueued put in ctx, if any.
func markEnqueued(ctx context.Context) {
	if ch, ok := ctx.Value(enqueuedKey{}).(chan struct{}); ok {
		select {
		case <-ch:
		default:
			close(ch)
		}
	}
}
