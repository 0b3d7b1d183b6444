package raftgroup

import (
	"time"

	"github.com/hashicorp/raft"
)

// StandIfAlone makes a node that is the only voter of its group stand for
// election now. hashicorp/raft starts every node as a follower that waits
// out a heartbeat timeout (one to two times raft.heartbeat-timeout) for a
// leader before it stands; a lone voter has no leader to wait for and
// cannot lose the vote, so that wait is the whole start-up delay of a
// single job master (`alluvium local`: about a second and a half of its
// start). It reports whether it did.
//
// How: raft's ReloadConfig, given a shorter heartbeat timeout, fires a
// follower's heartbeat timer at once, and a follower that has never heard
// from a leader then becomes a candidate (runFollower). The configured
// timeout is put back right away; it only ever matters once the group has
// other members. Electing earlier is safe whatever the membership: raft's
// vote decides, the timing only decides when it is held.
func StandIfAlone(r *raft.Raft, rc *raft.Config) bool {
	f := r.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	voters, me := 0, false
	for _, sv := range f.Configuration().Servers {
		if sv.Suffrage == raft.Voter {
			voters++
			me = me || sv.ID == rc.LocalID
		}
	}
	if voters != 1 || !me || r.State() != raft.Follower {
		return false
	}
	was := r.ReloadableConfig()
	short := was
	// The shortest timeout raft accepts: no shorter than the leader lease.
	short.HeartbeatTimeout = max(rc.LeaderLeaseTimeout, 5*time.Millisecond)
	if short.HeartbeatTimeout >= was.HeartbeatTimeout {
		return false
	}
	if err := r.ReloadConfig(short); err != nil {
		return false
	}
	// Raising it again sends no signal: the timer already fired.
	return r.ReloadConfig(was) == nil
}
