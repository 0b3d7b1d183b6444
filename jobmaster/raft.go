package jobmaster

import "github.com/alluvium/alluvium/internal/raftgroup"

// Peer is one member of the job master raft group.
type Peer = raftgroup.Peer

// ParsePeers reads jobmaster.raft.peers (see raftgroup.ParsePeers).
func ParsePeers(entries []string) ([]Peer, error) {
	return raftgroup.ParsePeers("jobmaster.raft.peers", entries)
}
