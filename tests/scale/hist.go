package scale

import (
	"bytes"
	"fmt"
	"math"
	"sort"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// bucketCounts is one histogram series read from a /metrics page: the
// cumulative count at or below each upper bound, bounds ascending.
type bucketCounts struct {
	le    []float64
	count []float64
}

// histogram reads the series of histogram name whose label label is value
// from a /metrics page.
func histogram(page []byte, name, label, value string) (bucketCounts, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(page))
	if err != nil {
		return bucketCounts{}, fmt.Errorf("parse /metrics: %w", err)
	}
	f := fams[name]
	if f == nil || f.GetType() != dto.MetricType_HISTOGRAM {
		return bucketCounts{}, fmt.Errorf("/metrics: no histogram %s", name)
	}
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() != label || l.GetValue() != value {
				continue
			}
			var b bucketCounts
			bs := m.GetHistogram().GetBucket()
			sort.Slice(bs, func(i, j int) bool { return bs[i].GetUpperBound() < bs[j].GetUpperBound() })
			for _, x := range bs {
				b.le = append(b.le, x.GetUpperBound())
				b.count = append(b.count, float64(x.GetCumulativeCount()))
			}
			b.le = append(b.le, math.Inf(1))
			b.count = append(b.count, float64(m.GetHistogram().GetSampleCount()))
			return b, nil
		}
	}
	return bucketCounts{}, fmt.Errorf("/metrics: histogram %s has no series %s=%q", name, label, value)
}

// since is what was observed between two readings of the same series.
func (b bucketCounts) since(before bucketCounts) bucketCounts {
	out := bucketCounts{le: b.le, count: make([]float64, len(b.count))}
	for i := range b.count {
		out.count[i] = b.count[i]
		if i < len(before.count) {
			out.count[i] -= before.count[i]
		}
	}
	return out
}

// n is how many observations the series holds.
func (b bucketCounts) n() float64 {
	if len(b.count) == 0 {
		return 0
	}
	return b.count[len(b.count)-1]
}

// quantile estimates quantile q (0..1) in seconds, interpolating linearly
// inside the bucket it falls in, as Prometheus's histogram_quantile does
// (so within a bucket's width, 30% with rpc.CallTimer's buckets). NaN when
// empty; the last finite bound when q falls in the +Inf bucket.
func (b bucketCounts) quantile(q float64) float64 {
	total := b.n()
	if total == 0 {
		return math.NaN()
	}
	rank := q * total
	lo, below := 0.0, 0.0
	for i, c := range b.count {
		if c >= rank {
			if math.IsInf(b.le[i], 1) {
				return lo
			}
			if c == below {
				return b.le[i]
			}
			return lo + (b.le[i]-lo)*(rank-below)/(c-below)
		}
		lo, below = b.le[i], c
	}
	return lo
}
