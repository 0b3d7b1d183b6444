package blockworker

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/alluvium/alluvium/internal/rpc"
)

// throttles are the byte budgets calls draw from (rpc.RateHeader): a job's
// share of its bandwidth on the job worker that drives this block worker.
// The bytes a fill reads from the UFS, a copy reads from a peer and a UFS
// write takes from its sources are throttled as they flow, so a job's rate
// holds second by second, not just on average over its blocks.
type throttles struct {
	mu    sync.Mutex
	m     map[string]*throttle
	swept time.Time
	flow  func(n int) // counts the bytes that flowed under a budget (metrics)
}

// throttle is one budget: a token bucket of bytes.
type throttle struct {
	lim  *rate.Limiter
	used atomic.Int64 // unix nanos of the last call or take
	flow func(n int)
}

// throttleIdle is how long a budget nobody drew from is kept.
const throttleIdle = 5 * time.Minute

// throttleBurst is how many bytes a budget lets through at once: a tenth
// of a second's worth (at least 4 KiB), so that no second carries much
// more than the rate.
func throttleBurst(bps int64) int {
	return int(min(max(bps/10, 4<<10), 1<<30))
}

func newThrottles(flow func(n int)) *throttles {
	return &throttles{m: map[string]*throttle{}, flow: flow}
}

// of is the budget the call of ctx draws from (nil: none), at the rate the
// call names: the latest call's rate is the budget's.
func (t *throttles) of(ctx context.Context) *throttle {
	key, bps, ok := rpc.RateOf(ctx)
	if !ok {
		return nil
	}
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if now.Sub(t.swept) > throttleIdle {
		t.swept = now
		for k, th := range t.m {
			if now.Sub(time.Unix(0, th.used.Load())) > throttleIdle {
				delete(t.m, k)
			}
		}
	}
	th := t.m[key]
	switch {
	case th == nil:
		th = &throttle{lim: rate.NewLimiter(rate.Limit(bps), throttleBurst(bps)), flow: t.flow}
		t.m[key] = th
	case th.lim.Limit() != rate.Limit(bps):
		th.lim.SetLimit(rate.Limit(bps))
		th.lim.SetBurst(throttleBurst(bps))
	}
	th.used.Store(now.UnixNano())
	return th
}

// take waits until n more bytes may flow (at once for a nil throttle).
func (th *throttle) take(ctx context.Context, n int) error {
	if th == nil || n <= 0 {
		return nil
	}
	th.used.Store(time.Now().UnixNano())
	for n > 0 {
		k := min(n, th.lim.Burst())
		if err := th.lim.WaitN(ctx, k); err != nil {
			if k > th.lim.Burst() {
				continue // the burst shrank meanwhile (a new rate): ask again
			}
			return err
		}
		if th.flow != nil {
			th.flow(k)
		}
		n -= k
	}
	return nil
}
