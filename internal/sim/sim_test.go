package sim

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestHistogramQuantiles: the summary's quantiles are within the bucket
// precision (1/16 of a power of two) of the exact ones, and reset clears.
func TestHistogramQuantiles(t *testing.T) {
	var h histogram
	rng := rand.New(rand.NewPCG(1, 2))
	var all []time.Duration
	for range 100000 {
		d := time.Duration(rng.ExpFloat64() * float64(3*time.Millisecond))
		all = append(all, d)
		h.add(d)
	}
	slices.Sort(all)
	s := h.summary()
	for _, q := range []struct {
		got  time.Duration
		want time.Duration
	}{{s.P50, all[len(all)/2]}, {s.P99, all[len(all)*99/100]}} {
		if q.got > q.want || float64(q.want-q.got) > float64(q.want)/8 {
			t.Errorf("quantile %s, exact %s: want within 1/8 below", q.got, q.want)
		}
	}
	if s.N != int64(len(all)) || s.Max != all[len(all)-1] {
		t.Errorf("n %d max %s, want %d and %s", s.N, s.Max, len(all), all[len(all)-1])
	}
	for i := 0; i <= bucketOf(math.MaxInt64); i++ {
		if lowerBound(i) > 0 && bucketOf(lowerBound(i)) != i {
			t.Fatalf("bucket %d's lower bound %d falls in bucket %d", i, lowerBound(i), bucketOf(lowerBound(i)))
		}
	}
	h.reset()
	if s := h.summary(); s.N != 0 || s.Max != 0 {
		t.Errorf("after reset: %+v", s)
	}
}

// TestDedupeKeepsLastOfEachBlock: a worker's report names each block once,
// with its latest length.
func TestDedupeKeepsLastOfEachBlock(t *testing.T) {
	got := dedupe([]blockRec{{5, 1}, {3, 1}, {5, 2}, {9, 1}, {3, 7}})
	want := []blockRec{{3, 7}, {5, 2}, {9, 1}}
	if !slices.Equal(got, want) {
		t.Fatalf("dedupe: %v, want %v", got, want)
	}
}

// ConnsFor shares connections only when one per worker and master would
// not fit the open-file limit, and then as many as fit.
func TestConnsForTheFileLimit(t *testing.T) {
	for _, c := range []struct{ workers, per, limit, want int }{
		{10000, 2, 1 << 20, 0},
		{10000, 2, 20000, 9500},
		{500, 2, 2000, 0},
		{10000, 1, 0, 0}, // unknown limit: one each
		{100, 2, 1000, 1},
	} {
		if got := ConnsFor(c.workers, c.per, c.limit); got != c.want {
			t.Errorf("ConnsFor(%d, %d, %d) = %d, want %d", c.workers, c.per, c.limit, got, c.want)
		}
	}
}

// TestNextDueKeepsTheRate: beats are due an interval apart whatever the
// replies took; a simulator more than half an interval behind skips (and
// counts) the beats it cannot send in time instead of sending a burst.
func TestNextDueKeepsTheRate(t *testing.T) {
	s := &Sim{}
	t0 := time.Unix(1000, 0)
	sec := time.Second
	for _, c := range []struct {
		now     time.Duration // after t0
		want    time.Duration // after t0
		skipped int64
	}{
		{now: 10 * time.Millisecond, want: sec},   // a fast reply
		{now: 900 * time.Millisecond, want: sec},  // a slow one: still due a second after the last
		{now: 1400 * time.Millisecond, want: sec}, // late, by less than half an interval: sent at once
		{now: 1600 * time.Millisecond, want: 2 * sec, skipped: 1},
		{now: 3200 * time.Millisecond, want: 3 * sec, skipped: 2},
		{now: 3600 * time.Millisecond, want: 4 * sec, skipped: 3},
	} {
		before := s.st.skipped.Load()
		got := s.nextDue(t0, sec, t0.Add(c.now))
		if got.Sub(t0) != c.want || s.st.skipped.Load()-before != c.skipped {
			t.Errorf("now t0+%s: next due t0+%s (%d skipped), want t0+%s (%d)", c.now, got.Sub(t0), s.st.skipped.Load()-before, c.want, c.skipped)
		}
	}
}

// A worker's first beat is due a whole interval after its registration,
// or with SpreadPhases at a random point of the interval (never at once).
func TestFirstDue(t *testing.T) {
	now := time.Now()
	every := time.Second
	if got := (&Sim{}).firstDue(now, every); !got.Equal(now.Add(every)) {
		t.Fatalf("first due %v after registration, want %v", got.Sub(now), every)
	}
	s := &Sim{cfg: Config{SpreadPhases: true}}
	var early, late bool
	for range 1000 {
		d := s.firstDue(now, every).Sub(now)
		if d <= 0 || d > every+time.Millisecond {
			t.Fatalf("spread first due %v after registration, want within (0, %v]", d, every)
		}
		early = early || d < every/4
		late = late || d > 3*every/4
	}
	if !early || !late {
		t.Fatalf("1000 spread first dues all in the middle half of the interval (early %v, late %v)", early, late)
	}
}
