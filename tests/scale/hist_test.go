package scale

import (
	"math"
	"testing"
)

func TestHistogramQuantile(t *testing.T) {
	page := []byte(`# HELP h x
# TYPE h histogram
h_bucket{from="arrival",le="0.001"} 50
h_bucket{from="arrival",le="0.01"} 99
h_bucket{from="arrival",le="0.1"} 100
h_bucket{from="arrival",le="+Inf"} 100
h_sum{from="arrival"} 1
h_count{from="arrival"} 100
h_bucket{from="handler",le="0.001"} 1
h_bucket{from="handler",le="0.01"} 1
h_bucket{from="handler",le="0.1"} 1
h_bucket{from="handler",le="+Inf"} 1
h_sum{from="handler"} 1
h_count{from="handler"} 1
`)
	b, err := histogram(page, "h", "from", "arrival")
	if err != nil {
		t.Fatal(err)
	}
	if got := b.quantile(0.5); got != 0.001 {
		t.Errorf("p50 %v, want 0.001", got)
	}
	if got := b.quantile(0.99); math.Abs(got-0.01) > 1e-12 {
		t.Errorf("p99 %v, want 0.01", got)
	}
	// Half the first bucket: interpolated.
	if got := b.quantile(0.25); math.Abs(got-0.0005) > 1e-12 {
		t.Errorf("p25 %v, want 0.0005", got)
	}
	d := b.since(b)
	if d.n() != 0 || !math.IsNaN(d.quantile(0.99)) {
		t.Errorf("empty difference: n %v, p99 %v", d.n(), d.quantile(0.99))
	}
	if _, err := histogram(page, "h", "from", "nope"); err == nil {
		t.Error("a missing series: no error")
	}
	if _, err := histogram(page, "nope", "from", "arrival"); err == nil {
		t.Error("a missing histogram: no error")
	}
}
