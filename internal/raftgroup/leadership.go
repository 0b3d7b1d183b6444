package raftgroup

// MonitorLeadership follows raft's NotifyCh (which, unlike LeaderCh, never
// drops a change) until shutdown closes, as Nomad's monitorLeadership
// does: on gaining leadership it runs lead in a goroutine of its own, and
// on losing it (or at shutdown) it closes lead's stop channel and waits
// for lead to return, so a role's leader duties never overlap.
func MonitorLeadership(notify <-chan bool, shutdown <-chan struct{}, lead func(stop <-chan struct{})) {
	var stop, done chan struct{}
	step := func(isLeader bool) {
		if isLeader {
			if stop != nil {
				return
			}
			stop, done = make(chan struct{}), make(chan struct{})
			go func(stop, done chan struct{}) {
				defer close(done)
				lead(stop)
			}(stop, done)
			return
		}
		if stop == nil {
			return
		}
		close(stop)
		<-done
		stop, done = nil, nil
	}
	for {
		select {
		case isLeader := <-notify:
			step(isLeader)
		case <-shutdown:
			step(false)
			return
		}
	}
}
