package coalesce

import (
	"context"
	"sync/atomic"
)

// WhileAnyWaits is the context a batch's call runs with when the batch
// carries several callers' items: derived from base (the identity the
// batch acts for), it ends once every one of waiters has ended — a
// caller that gives up leaves the batch to the others, and a batch nobody
// waits for any more stops. A waiter that never ends keeps it alive. The
// returned func releases it; call it when the batch's call returns.
func WhileAnyWaits(base context.Context, waiters []context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancel(base)
	var left atomic.Int64
	left.Store(int64(len(waiters)))
	stops := make([]func() bool, 0, len(waiters))
	for _, w := range waiters {
		if w.Done() == nil {
			continue // never ends: the batch never stops for lack of callers
		}
		stops = append(stops, context.AfterFunc(w, func() {
			if left.Add(-1) == 0 {
				cancel()
			}
		}))
	}
	return ctx, func() {
		for _, s := range stops {
			s()
		}
		cancel()
	}
}
