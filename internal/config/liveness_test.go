package config

import (
	"testing"
	"time"
)

func TestLivenessStretchesWithTheCluster(t *testing.T) {
	for _, c := range []struct {
		n          int
		rate       float64
		every, ttl time.Duration
	}{
		{n: 1, rate: 50, every: time.Second, ttl: 10 * time.Second},
		{n: 50, rate: 50, every: time.Second, ttl: 10 * time.Second},
		{n: 500, rate: 50, every: 10 * time.Second, ttl: 100 * time.Second},
		{n: 100, rate: 50, every: 2 * time.Second, ttl: 20 * time.Second},
		{n: 5000, rate: 0, every: time.Second, ttl: 10 * time.Second},
	} {
		every, ttl := Liveness(time.Second, 10*time.Second, c.rate, c.n)
		if every != c.every || ttl != c.ttl {
			t.Errorf("%d workers at %v/s: every %v ttl %v, want %v %v", c.n, c.rate, every, ttl, c.every, c.ttl)
		}
	}
}

// A silent process counts as alive when the other master heard it within
// its TTL but one interval (never less than half the TTL).
func TestConfirmWithin(t *testing.T) {
	for _, c := range []struct{ every, ttl, want time.Duration }{
		{time.Second, 10 * time.Second, 9 * time.Second},
		{100 * time.Millisecond, time.Second, 900 * time.Millisecond},
		{10 * time.Second, 10 * time.Second, 5 * time.Second},
	} {
		if got := ConfirmWithin(c.every, c.ttl); got != c.want {
			t.Errorf("ConfirmWithin(%s, %s) = %s, want %s", c.every, c.ttl, got, c.want)
		}
	}
}
