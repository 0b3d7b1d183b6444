package raftgroup

import (
	"fmt"
	"strings"

	"github.com/alluvium/alluvium/internal/client"
)

// Peer is one member of a raft group.
type Peer struct {
	ID       string // raft server id
	RaftAddr string // host:raft-port
	RPCAddr  string // host:rpc-port, where clients and forwarded calls go
}

// ParsePeers reads a peer list (jobmaster.raft.peers, fsmaster.raft.peers:
// key names it in errors). Each entry is
//
//	[id=]host:raftport|host:rpcport
//
// e.g. "jm1=10.0.0.1:20003|10.0.0.1:20001"; without "id=" the id is
// host:raftport (the default node id). All members list the same peers; an
// empty list makes a single node that bootstraps itself.
func ParsePeers(key string, entries []string) ([]Peer, error) {
	var out []Peer
	seen := map[string]bool{}
	for _, e := range entries {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		var p Peer
		rest := e
		if i := strings.IndexByte(e, '='); i >= 0 {
			p.ID, rest = strings.TrimSpace(e[:i]), e[i+1:]
			if p.ID == "" {
				return nil, fmt.Errorf("%s %q: empty id before '='", key, e)
			}
		}
		raftAddr, rpcAddr, ok := strings.Cut(rest, "|")
		if !ok {
			return nil, fmt.Errorf("%s %q: want [id=]host:raftport|host:rpcport", key, e)
		}
		for _, a := range []string{raftAddr, rpcAddr} {
			if !client.IsHostPort(a) {
				return nil, fmt.Errorf("%s %q: %q is not host:port", key, e, a)
			}
		}
		p.RaftAddr, p.RPCAddr = raftAddr, rpcAddr
		if p.ID == "" {
			p.ID = raftAddr
		}
		if seen[p.ID] {
			return nil, fmt.Errorf("%s: id %q listed twice", key, p.ID)
		}
		seen[p.ID] = true
		out = append(out, p)
	}
	return out, nil
}

// IDs joins the peers' ids for messages.
func IDs(ps []Peer) string {
	s := ""
	for i, p := range ps {
		if i > 0 {
			s += ", "
		}
		s += p.ID
	}
	return s
}

// Self picks this node among peers by id. Without peers it is self as
// given. found is false when peers are listed but id is not among them.
func Self(peers []Peer, self Peer) (Peer, bool) {
	if len(peers) == 0 {
		return self, true
	}
	for _, p := range peers {
		if p.ID == self.ID {
			return p, true
		}
	}
	return self, false
}
