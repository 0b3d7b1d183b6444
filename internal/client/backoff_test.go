package client

import (
	"testing"
	"time"
)

// Backoff doubles from Min to Max, each delay between half and all of the
// step; Reset starts again; Spread stays below its bound.
func TestBackoffDoublesWithJitter(t *testing.T) {
	b := NewBackoff(100*time.Millisecond, time.Second)
	for i, step := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		step *= time.Millisecond
		if d := b.Next(); d < step/2 || d > step {
			t.Fatalf("attempt %d: delay %s, want in [%s, %s]", i, d, step/2, step)
		}
	}
	b.Cap(300 * time.Millisecond)
	if d := b.Next(); d > 300*time.Millisecond {
		t.Fatalf("after Cap(300ms): %s", d)
	}
	b.Reset()
	if d := b.Next(); d > 100*time.Millisecond {
		t.Fatalf("after Reset: %s, want at most Min", d)
	}
	seen := map[time.Duration]bool{}
	for range 1000 {
		d := Spread(time.Second)
		if d < 0 || d >= time.Second {
			t.Fatalf("Spread(1s) = %s", d)
		}
		seen[d/(100*time.Millisecond)] = true
	}
	if len(seen) < 5 {
		t.Fatalf("Spread(1s) over 1000 draws fell in %d of 10 tenths: not spread", len(seen))
	}
	if Spread(0) != 0 {
		t.Fatal("Spread(0) != 0")
	}
}
