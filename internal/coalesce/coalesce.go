// Package coalesce runs calls that come at the same time as one call: a
// caller that arrives while a call is in flight joins the next one, which
// starts when that one ends and carries every item added meanwhile. So a
// caller's item is always in a call that starts after it was added (never
// answered by an older one), at most one call is in flight, and under load
// the callers of a wave share one round trip — a group commit, as raft
// and the FS master's journal do for their writes. A Group made with
// WithInFlight(n) lets up to n batches be in flight (a pipeline: callers
// that come while one batch waits on a server's group commit need not wait
// for its whole round trip before theirs is sent).
package coalesce

import (
	"context"
	"runtime"
	"sync"
	"time"
)

// Group coalesces calls of items of type T into batches answered with R.
// The zero value is not usable: make one with New.
type Group[T, R any] struct {
	run func(items []T) R
	// gather: a batch that starts lets the runnable goroutines run first
	// (see NewGathering).
	gather bool

	// limit is how many batches may be in flight at once (1 unless
	// WithInFlight).
	limit int

	// idle hands a batch to a worker waiting for one (work); unbuffered:
	// a send succeeds only if one waits.
	idle chan *batch[T, R]

	mu      sync.Mutex
	running int          // batches in flight (gathering included)
	next    *batch[T, R] // the batch the callers that came during them wait for
}

type batch[T, R any] struct {
	items   []T
	started bool // running (a gathering batch stays next while it gathers)
	done    chan struct{}
	res     R
}

// New makes a Group whose batches run is called with, one at a time, on a
// goroutine of the Group's (not any caller's: every caller of the batch
// waits on it, so run must bound its own time). run gets the items in the
// order they were added; its answer goes to every caller of the batch.
func New[T, R any](run func(items []T) R) *Group[T, R] {
	return &Group[T, R]{run: run, limit: 1, idle: make(chan *batch[T, R])}
}

// NewGathering is New for callers that come in waves: the answer of one
// batch releases its callers at once, and each goes on to its next call.
// Without gathering, the first of them to come back starts a batch alone
// and the others wait for its whole round trip, which (when it waits on a
// group commit that itself waits for them) makes every wave two. So a
// batch that starts first yields (runtime.Gosched) while the callers the
// scheduler has ready keep joining it — at most gatherYields times, and
// only while it grows: microseconds, never a timer's wait, and a truly
// lone caller (nothing else runnable) is not delayed.
func NewGathering[T, R any](run func(items []T) R) *Group[T, R] {
	return &Group[T, R]{run: run, gather: true, limit: 1, idle: make(chan *batch[T, R])}
}

// WithInFlight lets up to n (at least 1) of g's batches be in flight at
// once, each on its own goroutine: a batch starts when fewer than n run,
// so callers that come while one waits on a slow answer go in the next at
// once. run must then be safe to call concurrently. Call it before g's
// first Do; it returns g.
func (g *Group[T, R]) WithInFlight(n int) *Group[T, R] {
	g.limit = max(n, 1)
	return g
}

// gatherYields bounds the yields of a gathering batch.
const gatherYields = 8

// Do adds item to the next batch and waits for that batch's answer, or for
// ctx to end (the batch goes on for the others; ok is false).
func (g *Group[T, R]) Do(ctx context.Context, item T) (res R, ok bool) {
	g.mu.Lock()
	b := g.nextLocked()
	b.items = append(b.items, item)
	return g.wait(ctx, b)
}

// DoAll is Do for several items of one caller: they all go in the next
// batch, and its answer is theirs.
func (g *Group[T, R]) DoAll(ctx context.Context, items []T) (res R, ok bool) {
	g.mu.Lock()
	b := g.nextLocked()
	b.items = append(b.items, items...)
	return g.wait(ctx, b)
}

// nextLocked is the batch the next items go in (g.mu held).
func (g *Group[T, R]) nextLocked() *batch[T, R] {
	if g.next == nil {
		g.next = &batch[T, R]{done: make(chan struct{})}
	}
	return g.next
}

// wait starts b when no batch is in flight, lets go of g.mu and waits for
// b's answer or ctx's end.
func (g *Group[T, R]) wait(ctx context.Context, b *batch[T, R]) (res R, ok bool) {
	if !b.started && g.running < g.limit {
		g.startLocked()
	}
	g.mu.Unlock()
	select {
	case <-b.done:
		return b.res, true
	case <-ctx.Done():
		return res, false
	}
}

// Waiting is how many items wait for the next batch (not the one in
// flight).
func (g *Group[T, R]) Waiting() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.next == nil {
		return 0
	}
	return len(g.next.items)
}

// startLocked runs the waiting batch (g.mu held) on a worker of g's: one
// waiting for work (idle) if there is one, else a new one.
func (g *Group[T, R]) startLocked() {
	b := g.takeNextLocked()
	select {
	case g.idle <- b:
	default:
		go g.work(b)
	}
}

// takeNextLocked marks the waiting batch started and returns it (g.mu
// held).
func (g *Group[T, R]) takeNextLocked() *batch[T, R] {
	b := g.next
	b.started = true
	g.running++
	if !g.gather {
		g.next = nil
	}
	return b
}

// workerIdle is how long a worker whose batch ended waits for the next
// before it exits. A batch's goroutine goes deep (a gRPC call): a new one
// grows its stack to that depth, copying it several times (~19 us a batch,
// 2.6% of FSMasterCreate/sdk/clients=64's CPU, on the path of every batch
// sent); a worker kept between batches has it grown already.
const workerIdle = 100 * time.Millisecond

// work runs b and then, while batches come within workerIdle of each
// other, the next ones: each batch that ends starts the one the callers
// that came meanwhile wait for (if it has not yet) on this goroutine.
func (g *Group[T, R]) work(b *batch[T, R]) {
	var idle *time.Timer
	for {
		if b = g.runBatch(b); b != nil {
			continue
		}
		if idle == nil {
			idle = time.NewTimer(workerIdle)
		} else {
			idle.Reset(workerIdle)
		}
		select {
		case b = <-g.idle:
			idle.Stop()
		case <-idle.C:
			return
		}
	}
}

// runBatch gathers (if g gathers) and runs b, answers its callers and
// returns the next batch if it may start now (then marked started), else
// nil.
func (g *Group[T, R]) runBatch(b *batch[T, R]) *batch[T, R] {
	if g.gather {
		// b stays the next batch while it gathers: callers join it
		// (none starts another: b is started).
		g.mu.Lock()
		for range gatherYields {
			n := len(b.items)
			g.mu.Unlock()
			runtime.Gosched()
			g.mu.Lock()
			if len(b.items) == n {
				break
			}
		}
		g.next = nil
		// Callers that came while b gathered are in b; a later one
		// starts its own batch if the limit lets it.
		g.mu.Unlock()
	}
	b.res = g.run(b.items)
	close(b.done)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.running--
	if g.next != nil && !g.next.started && g.running < g.limit {
		return g.takeNextLocked()
	}
	return nil
}
