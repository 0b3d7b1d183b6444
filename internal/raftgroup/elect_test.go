package raftgroup

import (
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

type nopFSM struct{}

func (nopFSM) Apply(*raft.Log) any                 { return nil }
func (nopFSM) Snapshot() (raft.FSMSnapshot, error) { return nil, io.EOF }
func (nopFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }

// newNode starts an in-memory raft node with timeouts of an hour, so that
// only StandIfAlone can make it stand for election within a test.
func newNode(t *testing.T, id string, voters ...string) (*raft.Raft, *raft.Config) {
	t.Helper()
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(id)
	rc.HeartbeatTimeout, rc.ElectionTimeout, rc.LeaderLeaseTimeout = time.Hour, time.Hour, 500*time.Millisecond
	rc.LogLevel = "error"
	logs, snaps := raft.NewInmemStore(), raft.NewInmemSnapshotStore()
	_, trans := raft.NewInmemTransport(raft.ServerAddress(id))
	var conf raft.Configuration
	for _, v := range voters {
		conf.Servers = append(conf.Servers, raft.Server{ID: raft.ServerID(v), Address: raft.ServerAddress(v)})
	}
	if err := raft.BootstrapCluster(rc, logs, logs, snaps, trans, conf); err != nil {
		t.Fatal(err)
	}
	r, err := raft.NewRaft(rc, nopFSM{}, logs, logs, snaps, trans)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Shutdown().Error() })
	return r, rc
}

// TestStandIfAloneLeadsAtOnce: a lone voter leads without waiting out its
// heartbeat timeout (an hour here), and keeps its configured timeouts.
func TestStandIfAloneLeadsAtOnce(t *testing.T) {
	r, rc := newNode(t, "a", "a")
	if !StandIfAlone(r, rc) {
		t.Fatal("StandIfAlone did nothing for the only voter")
	}
	select {
	case <-waitLeader(r):
	case <-time.After(30 * time.Second):
		t.Fatalf("the only voter is %s 30 s after StandIfAlone (its heartbeat timeout is an hour)", r.State())
	}
	if got := r.ReloadableConfig().HeartbeatTimeout; got != time.Hour {
		t.Fatalf("heartbeat timeout after StandIfAlone = %s, want the configured 1h", got)
	}
	// A leader is left alone.
	if StandIfAlone(r, rc) {
		t.Error("StandIfAlone acted on a leader")
	}
}

// TestStandIfAloneNotForGroups: a member of a group of several waits for
// its leader as raft means it to.
func TestStandIfAloneNotForGroups(t *testing.T) {
	r, rc := newNode(t, "a", "a", "b", "c")
	if StandIfAlone(r, rc) {
		t.Fatal("StandIfAlone acted on a member of a three-voter group")
	}
	if r.State() != raft.Follower {
		t.Fatalf("state = %s, want Follower", r.State())
	}
}

func waitLeader(r *raft.Raft) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for r.State() != raft.Leader && r.State() != raft.Shutdown {
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return done
}
