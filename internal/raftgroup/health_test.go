package raftgroup

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/alluvium/alluvium/api"
)

type addrBook struct{}

func (addrBook) Probe(context.Context, string) (*api.GetLeaderResponse, error) { return nil, nil }
func (addrBook) Record(context.Context, Peer, bool) error                      { return nil }
func (addrBook) Recorded(string) bool                                          { return true }
func (addrBook) RPCAddr(id string) string                                      { return id + ":rpc" }

// threeNodes starts an in-memory raft group of three with short timeouts
// and returns its nodes and transports.
func threeNodes(t *testing.T) ([]*raft.Raft, []*raft.InmemTransport) {
	t.Helper()
	ids := []string{"a", "b", "c"}
	var conf raft.Configuration
	var trans []*raft.InmemTransport
	for _, id := range ids {
		_, tr := raft.NewInmemTransport(raft.ServerAddress(id))
		trans = append(trans, tr)
		conf.Servers = append(conf.Servers, raft.Server{ID: raft.ServerID(id), Address: raft.ServerAddress(id)})
	}
	for _, a := range trans {
		for _, b := range trans {
			if a != b {
				a.Connect(b.LocalAddr(), b)
			}
		}
	}
	var nodes []*raft.Raft
	for i, id := range ids {
		rc := raft.DefaultConfig()
		rc.LocalID = raft.ServerID(id)
		rc.HeartbeatTimeout, rc.ElectionTimeout, rc.LeaderLeaseTimeout = 100*time.Millisecond, 100*time.Millisecond, 50*time.Millisecond
		rc.CommitTimeout = 10 * time.Millisecond
		rc.LogLevel = "error"
		logs, snaps := raft.NewInmemStore(), raft.NewInmemSnapshotStore()
		if err := raft.BootstrapCluster(rc, logs, logs, snaps, trans[i], conf); err != nil {
			t.Fatal(err)
		}
		r, err := raft.NewRaft(rc, nopFSM{}, logs, logs, snaps, trans[i])
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r.Shutdown().Error() })
		nodes = append(nodes, r)
	}
	return nodes, trans
}

func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: %v", what, err)
}

// TestHealthMarksUnreachableMember: raft lists a member cut off from the
// leader as a voter like any other; the leader's failing heartbeats mark
// it unreachable in LeaderInfo, and it is a follower again once they pass.
func TestHealthMarksUnreachableMember(t *testing.T) {
	nodes, trans := threeNodes(t)
	var leader int
	eventually(t, "a leader", func() error {
		for i, n := range nodes {
			if n.State() == raft.Leader {
				leader = i
				return nil
			}
		}
		return fmt.Errorf("no leader yet")
	})
	h := WatchHealth(nodes[leader])
	defer h.Close()
	g := &Group{Raft: nodes[leader], Book: addrBook{}, Self: Peer{ID: string(rune('a' + leader))}, Health: h}
	down := (leader + 1) % 3
	downID := string(rune('a' + down))
	roles := func() map[string]*api.RaftServer {
		out := map[string]*api.RaftServer{}
		for _, s := range g.LeaderInfo(0).GetServers() {
			out[s.GetId()] = s
		}
		return out
	}
	if s := roles()[downID]; s == nil || s.GetUnreachable() {
		t.Fatalf("%s before the cut: %v", downID, s)
	}

	// Cut it off both ways, as a killed process is.
	trans[down].DisconnectAll()
	for i, tr := range trans {
		if i != down {
			tr.Disconnect(trans[down].LocalAddr())
		}
	}
	cut := time.Now()
	eventually(t, downID+" marked unreachable", func() error {
		s := roles()[downID]
		if !s.GetUnreachable() {
			return fmt.Errorf("%s: %v", downID, s)
		}
		// Milliseconds: the cut, rounded down, is the earliest it can say.
		if since := time.UnixMilli(s.GetUnreachableSinceMs()); since.Before(cut.Truncate(time.Millisecond)) {
			return fmt.Errorf("unreachable since %v, before the cut at %v", since, cut)
		}
		return nil
	})
	// The other follower stays reachable, and raft still counts the cut
	// one a voter.
	other := roles()[string(rune('a'+(leader+2)%3))]
	if other.GetUnreachable() || roles()[downID].GetSuffrage() != "Voter" {
		t.Fatalf("after the cut: %v", roles())
	}

	for i, tr := range trans {
		if i != down {
			tr.Connect(trans[down].LocalAddr(), trans[down])
			trans[down].Connect(tr.LocalAddr(), tr)
		}
	}
	eventually(t, downID+" reachable again", func() error {
		if s := roles()[downID]; s.GetUnreachable() {
			return fmt.Errorf("%s: %v", downID, s)
		}
		return nil
	})
}

// TestHealthForgetsStaleFailures: a member whose failures stopped coming
// (its ResumedHeartbeatObservation lost) is not marked for ever, and a new
// leader starts from nothing.
func TestHealthForgetsStaleFailures(t *testing.T) {
	now := time.Unix(1000, 0)
	h := &Health{failing: map[raft.ServerID]failure{}, now: func() time.Time { return now }}
	first := now
	h.observe(raft.FailedHeartbeatObservation{PeerID: "x"})
	now = now.Add(time.Second)
	h.observe(raft.FailedHeartbeatObservation{PeerID: "x"})
	if down, since := h.Unreachable("x"); !down || !since.Equal(first) {
		t.Fatalf("after two failures: %v since %v, want since %v", down, since, first)
	}
	h.observe(raft.ResumedHeartbeatObservation{PeerID: "x"})
	if down, _ := h.Unreachable("x"); down {
		t.Fatal("unreachable after its heartbeats resumed")
	}
	h.observe(raft.FailedHeartbeatObservation{PeerID: "x"})
	now = now.Add(failingFor + time.Second)
	if down, _ := h.Unreachable("x"); down {
		t.Fatal("still unreachable long after its last failure")
	}
	h.observe(raft.FailedHeartbeatObservation{PeerID: "x"})
	h.observe(raft.LeaderObservation{})
	if down, _ := h.Unreachable("x"); down {
		t.Fatal("a change of leader did not forget the failures")
	}
	var none *Health
	if down, _ := none.Unreachable("x"); down {
		t.Fatal("a nil Health marks members")
	}
}
