package client

import (
	"math/rand/v2"
	"time"
)

// Backoff is the delay between a worker's attempts to reach a master
// (register, poll, report): it doubles from Min up to Max after each
// failure, and each delay is spread at random between half and all of it,
// so that thousands of workers failing together — a master restarting, a
// leader swamped by registrations — retry spread out instead of in
// lockstep. The zero value is not usable; Reset after a success.
type Backoff struct {
	Min, Max time.Duration
	cur      time.Duration
}

// NewBackoff returns a Backoff from lo doubling up to hi.
func NewBackoff(lo, hi time.Duration) *Backoff { return &Backoff{Min: lo, Max: hi} }

// Next is the delay before the next attempt (and doubles the one after).
func (b *Backoff) Next() time.Duration {
	d := max(b.cur, b.Min)
	b.cur = min(2*d, max(b.Max, b.Min))
	return d/2 + rand.N(d/2+1)
}

// Cap lowers the longest delay (say to the heartbeat interval).
func (b *Backoff) Cap(hi time.Duration) {
	b.Max = max(hi, b.Min)
	b.cur = min(b.cur, b.Max)
}

// Reset starts again from Min (after a success).
func (b *Backoff) Reset() { b.cur = 0 }

// Spread is a random delay in [0, d): a worker a master told to register
// again waits it first, so that the thousands a restarted master (or a
// storm) asks at once arrive spread over one heartbeat interval, not at
// one instant.
func Spread(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d)
}
