package coalesce

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

// Joiner joins concurrent single calls into batch calls, per key (the user
// the calls act for, say: calls join only calls of the same key): a call
// made while a batch of its key is in flight waits for the next one, which
// carries every call that came meanwhile (a gathering Group). A call alone
// in its batch is made as the single call, with its caller's context, so
// an idle caller is not delayed; a batch of several runs with a context
// that ends when the last of its callers gives up (WhileAnyWaits), and
// answers each call on its own.
type Joiner[K comparable, Req, Resp any] struct {
	base   func(key K) context.Context
	single func(ctx context.Context, req Req) (Resp, error)
	batch  func(ctx context.Context, reqs []Req) ([]Resp, []error, error)
	max    int
	// inFlight is how many batches of one key may be in flight at once.
	inFlight int
	// unsupported tells a batch call the server does not know (an older
	// one) from other failures; once one is seen, unjoined is set and
	// every call goes alone.
	unsupported func(error) bool
	unjoined    atomic.Bool

	mu     sync.Mutex
	groups map[K]*Group[*joinedCall[Req, Resp], struct{}]
}

// joinedCall is one call waiting in a batch: its answer is set before the
// batch's callers are released.
type joinedCall[Req, Resp any] struct {
	ctx  context.Context
	req  Req
	resp Resp
	err  error
}

// NewJoiner makes a Joiner. base is the context a batch of key's calls
// derives from (its identity); single makes one call; batch makes one call
// of several requests and answers each (resps[i], errs[i] for reqs[i]), or
// fails them all with err; a batch carries at most max requests (more
// waiting calls go in several batches, one after another).
func NewJoiner[K comparable, Req, Resp any](max int, base func(key K) context.Context,
	single func(ctx context.Context, req Req) (Resp, error),
	batch func(ctx context.Context, reqs []Req) ([]Resp, []error, error)) *Joiner[K, Req, Resp] {
	return &Joiner[K, Req, Resp]{base: base, single: single, batch: batch, max: max, inFlight: 1,
		groups: map[K]*Group[*joinedCall[Req, Resp], struct{}]{}}
}

// WithInFlight lets up to n batches of one key be in flight at once
// (Group.WithInFlight; 1 by default): for calls whose batch waits on
// something slow (a journal's fsync) while the next one's callers gather.
// Call it before the first Do; it returns j.
func (j *Joiner[K, Req, Resp]) WithInFlight(n int) *Joiner[K, Req, Resp] {
	j.inFlight = max(n, 1)
	return j
}

// WithFallback names the batch errors that mean the server does not have
// the batch call (a server older than its client): the calls of such a
// batch are then made alone, at once, each with its caller's context, and
// so is every later call. Call it before the first Do; it returns j.
func (j *Joiner[K, Req, Resp]) WithFallback(unsupported func(error) bool) *Joiner[K, Req, Resp] {
	j.unsupported = unsupported
	return j
}

// Unjoined reports whether the joiner gave up batching (WithFallback).
func (j *Joiner[K, Req, Resp]) Unjoined() bool { return j.unjoined.Load() }

// Do makes the call of req, joined with the concurrent calls of key.
func (j *Joiner[K, Req, Resp]) Do(ctx context.Context, key K, req Req) (Resp, error) {
	if j.unjoined.Load() {
		return j.single(ctx, req)
	}
	j.mu.Lock()
	g := j.groups[key]
	if g == nil {
		g = NewGathering(func(calls []*joinedCall[Req, Resp]) struct{} {
			j.run(key, calls)
			return struct{}{}
		}).WithInFlight(j.inFlight)
		j.groups[key] = g
	}
	j.mu.Unlock()
	c := &joinedCall[Req, Resp]{ctx: ctx, req: req}
	if _, ok := g.Do(ctx, c); !ok {
		var zero Resp
		return zero, ctx.Err()
	}
	return c.resp, c.err
}

// Waiting is how many calls of key wait for the next batch (not the one
// in flight).
func (j *Joiner[K, Req, Resp]) Waiting(key K) int {
	j.mu.Lock()
	g := j.groups[key]
	j.mu.Unlock()
	if g == nil {
		return 0
	}
	return g.Waiting()
}

// run answers the calls of one batch.
func (j *Joiner[K, Req, Resp]) run(key K, calls []*joinedCall[Req, Resp]) {
	if len(calls) == 1 {
		calls[0].resp, calls[0].err = j.single(calls[0].ctx, calls[0].req)
		return
	}
	waiters := make([]context.Context, len(calls))
	for i, c := range calls {
		waiters[i] = c.ctx
	}
	ctx, stop := WhileAnyWaits(j.base(key), waiters)
	defer stop()
	for len(calls) > 0 {
		n := min(len(calls), j.max)
		j.runBatch(ctx, calls[:n])
		calls = calls[n:]
	}
}

func (j *Joiner[K, Req, Resp]) runBatch(ctx context.Context, calls []*joinedCall[Req, Resp]) {
	reqs := make([]Req, len(calls))
	for i, c := range calls {
		reqs[i] = c.req
	}
	resps, errs, err := j.batch(ctx, reqs)
	if err != nil && j.unsupported != nil && j.unsupported(err) {
		j.unjoined.Store(true)
		var wg sync.WaitGroup
		for _, c := range calls {
			wg.Go(func() { c.resp, c.err = j.single(c.ctx, c.req) })
		}
		wg.Wait()
		return
	}
	if err == nil && len(resps) != len(reqs) {
		err = fmt.Errorf("a batch of %d calls answered %d", len(reqs), len(resps))
	}
	for i, c := range calls {
		switch {
		case err != nil:
			c.err = err
		case i < len(errs) && errs[i] != nil:
			c.err = errs[i]
		default:
			c.resp = resps[i]
		}
	}
}
