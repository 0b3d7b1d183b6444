package rpc

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/tap"
)

func TestArrivalTap(t *testing.T) {
	tp := arrivalTap([]string{"/s/Timed"})
	before := time.Now()
	ctx, err := tp(context.Background(), &tap.Info{FullMethodName: "/s/Timed"})
	if err != nil {
		t.Fatal(err)
	}
	at, ok := Arrived(ctx)
	if !ok || at.Before(before) || at.After(time.Now()) {
		t.Fatalf("a listed method: arrived %v, %v; want a time since %v", at, ok, before)
	}
	ctx, err = tp(context.Background(), &tap.Info{FullMethodName: "/s/Other"})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := Arrived(ctx); ok {
		t.Fatal("a method not listed carries an arrival time")
	}
	// Unrecorded: SinceArrival counts from the handler's start.
	start := time.Now().Add(-time.Second)
	if d := SinceArrival(ctx, start); d < time.Second {
		t.Fatalf("SinceArrival without an arrival: %v, want ≥ 1s", d)
	}
}

func TestCallTimer(t *testing.T) {
	var none *CallTimer
	none.Observe(context.Background(), time.Now(), 0) // a nil timer records nothing, and does not panic
	ct := NewCallTimer("test_call_seconds", "test")
	tp := arrivalTap([]string{"/s/Timed"})
	ctx, _ := tp(context.Background(), &tap.Info{FullMethodName: "/s/Timed"})
	ct.Observe(ctx, time.Now(), 0)
	ct.Observe(ctx, time.Now(), time.Hour) // less than waited on purpose: counted as 0, not negative
	reg := prometheus.NewRegistry()
	reg.MustRegister(ct.Collector())
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(fams) != 1 || len(fams[0].GetMetric()) != 2 {
		t.Fatalf("gathered %v, want one histogram of two series (arrival, handler)", fams)
	}
	for _, m := range fams[0].GetMetric() {
		h := m.GetHistogram()
		if h.GetSampleCount() != 2 || h.GetSampleSum() < 0 {
			t.Errorf("%v: %d samples summing to %v, want 2, not negative", m.GetLabel(), h.GetSampleCount(), h.GetSampleSum())
		}
	}
}
