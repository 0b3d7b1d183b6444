package raftgroup

import (
	"fmt"
	"net"
	"strings"
	"testing"
)

// FuzzParsePeers: jobmaster.raft.peers and fsmaster.raft.peers come from config files, env and
// flags. Parsing never panics; an accepted list has unique ids and
// host:port addresses, and parsing its canonical form gives it back.
func FuzzParsePeers(f *testing.F) {
	for _, s := range []string{
		"jm1=10.0.0.1:20003|10.0.0.1:20001,jm2=10.0.0.2:20003|10.0.0.2:20001",
		"h:1|h:2", "=h:1|h:2", "a=h:1", "a=h:1|h:2,a=h:3|h:4", "a=h|h:2", " , ", "a=[::1]:3|[::1]:4",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		peers, err := ParsePeers("jobmaster.raft.peers", strings.Split(s, ","))
		if err != nil {
			return
		}
		var canon []string
		seen := map[string]bool{}
		for _, p := range peers {
			if p.ID == "" || seen[p.ID] {
				t.Fatalf("accepted empty or duplicate id in %q: %+v", s, peers)
			}
			seen[p.ID] = true
			for _, a := range []string{p.RaftAddr, p.RPCAddr} {
				if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
					t.Fatalf("accepted %q as an address in %q", a, s)
				}
			}
			canon = append(canon, p.ID+"="+p.RaftAddr+"|"+p.RPCAddr)
		}
		again, err := ParsePeers("jobmaster.raft.peers", canon)
		if err != nil || fmt.Sprint(again) != fmt.Sprint(peers) {
			t.Fatalf("canonical form %v of %q parses to %v (%v)", canon, s, again, err)
		}
	})
}
