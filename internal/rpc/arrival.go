package rpc

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/tap"
)

// arrivedKey keys the instant the server read a call's headers.
type arrivedKey struct{}

// arrivalTap records when the transport read the headers of a call to one
// of methods (ServerOptions.ArrivalTimes). It runs on the connection's
// reader goroutine, before the call waits for a stream worker and for a
// CPU, so a handler that measures from it sees the server's queueing as
// well as its own work — what a heartbeat's server-side latency is. Only
// the listed methods pay for the context value.
func arrivalTap(methods []string) func(context.Context, *tap.Info) (context.Context, error) {
	set := make(map[string]bool, len(methods))
	for _, m := range methods {
		set[m] = true
	}
	return func(ctx context.Context, info *tap.Info) (context.Context, error) {
		if !set[info.FullMethodName] {
			return ctx, nil
		}
		return context.WithValue(ctx, arrivedKey{}, time.Now()), nil
	}
}

// Arrived returns when the server read the headers of the call ctx belongs
// to; false for a method not in ServerOptions.ArrivalTimes (or a context
// not from a server built by NewServer).
func Arrived(ctx context.Context) (time.Time, bool) {
	t, ok := ctx.Value(arrivedKey{}).(time.Time)
	return t, ok
}

// SinceArrival is how long ago the call of ctx arrived (Arrived), or since
// start when its arrival was not recorded.
func SinceArrival(ctx context.Context, start time.Time) time.Duration {
	if t, ok := Arrived(ctx); ok {
		return time.Since(t)
	}
	return time.Since(start)
}

// CallTimer is a histogram of one kind of call's server-side latency in
// two parts (label "from"): "arrival", from when the transport read the
// call's headers (Arrived) to its answer, and "handler", the handler's own
// time. Their difference is the time the call queued in the server (for a
// stream worker, a CPU, the scheduler) before its handler ran.
type CallTimer struct {
	vec              *prometheus.HistogramVec
	arrival, handler prometheus.Observer
}

// NewCallTimer returns a timer named name (seconds) with buckets from 50 µs
// to 10 s, 30% apart: fine enough to read a p99 of a few milliseconds.
func NewCallTimer(name, help string) *CallTimer {
	vec := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: name, Help: help, Buckets: prometheus.ExponentialBucketsRange(50e-6, 10, 48),
	}, []string{"from"})
	return &CallTimer{vec: vec, arrival: vec.WithLabelValues("arrival"), handler: vec.WithLabelValues("handler")}
}

// Collector is what to register.
func (t *CallTimer) Collector() prometheus.Collector { return t.vec }

// Observe records a call whose handler started at start, less d (time the
// call spent waiting on purpose, as a long poll does; 0 for most). A nil
// timer records nothing.
func (t *CallTimer) Observe(ctx context.Context, start time.Time, less time.Duration) {
	if t == nil {
		return
	}
	t.handler.Observe(max(time.Since(start)-less, 0).Seconds())
	t.arrival.Observe(max(SinceArrival(ctx, start)-less, 0).Seconds())
}
