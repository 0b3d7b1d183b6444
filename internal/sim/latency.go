package sim

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// histogram counts durations in log-spaced buckets (16 per power of two,
// so a quantile is within 7% of the true value); safe for concurrent use.
type histogram struct {
	counts [64 * subBuckets]atomic.Int64
	n      atomic.Int64
	max    atomic.Int64
}

const subBits = 4
const subBuckets = 1 << subBits

func bucketOf(ns int64) int {
	if ns < subBuckets {
		return int(max(ns, 0))
	}
	b := bits.Len64(uint64(ns)) // ns in [2^(b-1), 2^b)
	sub := int(ns>>(b-1-subBits)) & (subBuckets - 1)
	return (b-subBits)*subBuckets + sub
}

// lowerBound is the smallest duration in bucket i.
func lowerBound(i int) int64 {
	if i < subBuckets {
		return int64(i)
	}
	b := i/subBuckets + subBits // ns has b bits
	sub := int64(i % subBuckets)
	return 1<<(b-1) | sub<<(b-1-subBits)
}

func (h *histogram) add(d time.Duration) {
	ns := int64(d)
	h.counts[bucketOf(ns)].Add(1)
	h.n.Add(1)
	for {
		m := h.max.Load()
		if ns <= m || h.max.CompareAndSwap(m, ns) {
			return
		}
	}
}

// Latency summarises a histogram.
type Latency struct {
	N   int64         `json:"n"`
	P50 time.Duration `json:"p50"`
	P99 time.Duration `json:"p99"`
	Max time.Duration `json:"max"`
}

func (h *histogram) summary() Latency {
	var c [len(histogram{}.counts)]int64
	var n int64
	for i := range h.counts {
		c[i] = h.counts[i].Load()
		n += c[i]
	}
	l := Latency{N: n, Max: time.Duration(h.max.Load())}
	if n == 0 {
		return l
	}
	q := func(p float64) time.Duration {
		want := int64(p * float64(n))
		var seen int64
		for i, k := range c {
			seen += k
			if seen > want {
				return time.Duration(lowerBound(i))
			}
		}
		return l.Max
	}
	l.P50, l.P99 = q(0.50), q(0.99)
	return l
}

func (h *histogram) reset() {
	for i := range h.counts {
		h.counts[i].Store(0)
	}
	h.n.Store(0)
	h.max.Store(0)
}
