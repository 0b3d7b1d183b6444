package config

import "time"

// DefaultWorkerTimeout is the one liveness timeout of a worker process: the
// default of fsmaster.worker.timeout and jobmaster.worker.timeout alike.
// Whichever master finds the process silent first declares it LOST to the
// other too (its block worker and its job worker are one process), so the
// two views never disagree for longer than a call.
const DefaultWorkerTimeout = 10 * time.Second

// Liveness is the heartbeat interval and the TTL a master hands a worker
// when n workers report to it, as Nomad does for its clients: the master
// takes about maxPerSecond heartbeats a second in all, so beyond
// maxPerSecond*interval workers each one's interval stretches to
// n/maxPerSecond, and its TTL (how long the master waits before declaring
// it LOST) stretches by the same factor, so as many heartbeats may be
// missed. maxPerSecond <= 0 stretches nothing.
func Liveness(interval, timeout time.Duration, maxPerSecond float64, n int) (every, ttl time.Duration) {
	every, ttl = interval, timeout
	if maxPerSecond <= 0 || interval <= 0 || n <= 0 {
		return every, ttl
	}
	need := time.Duration(float64(n) / maxPerSecond * float64(time.Second))
	if need <= interval {
		return every, ttl
	}
	return need, time.Duration(float64(timeout) * float64(need) / float64(interval))
}

// ConfirmWithin is how recently the other master must have heard from a
// worker process that one master finds silent past ttl (heartbeat
// interval every) for the process to count as alive, and be spared one
// more TTL: all of ttl but one interval. A process frozen or cut off from
// both was last heard by the other master about when it was last heard
// here, a TTL ago; one whose calls to this master merely queue (a leader
// swamped by registrations) beat to the other within an interval or two.
func ConfirmWithin(every, ttl time.Duration) time.Duration {
	return max(ttl-every, ttl/2)
}
