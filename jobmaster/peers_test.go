package jobmaster

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/raftgroup"
)

// join starts one more node on the in-memory transport with
// jobmaster.raft.join set and no static peers but itself, as an operator
// would start a node to add, and returns its index.
func (c *cluster) join(id string) int {
	c.t.Helper()
	cfg := testConfigFor(c.t)
	cfg.JobMaster.Raft.NodeID = id
	cfg.JobMaster.Raft.Join = true
	// host:port, as AddPeer asks of a raft address.
	_, tr := raft.NewInmemTransport(raft.ServerAddress(id + ".inmem:20003"))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	for _, o := range c.trans {
		tr.Connect(o.LocalAddr(), o)
		o.Connect(tr.LocalAddr(), tr)
	}
	self := Peer{ID: id, RaftAddr: string(tr.LocalAddr()), RPCAddr: ln.Addr().String()}
	store := raft.NewInmemStore()
	parts := &raftgroup.Parts{Logs: store, Stable: store, Snaps: testSnapshots(c.t), Trans: tr}
	s, err := newServer(cfg, testLogger(c.t).Named(id), serverOptions{parts: parts, env: nopEnv{}, rpcLn: ln, peers: []Peer{self}})
	if err != nil {
		c.t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		c.t.Fatal(err)
	}
	c.cfgs, c.trans, c.parts, c.lns = append(c.cfgs, cfg), append(c.trans, tr), append(c.parts, parts), append(c.lns, ln)
	c.peers, c.servers = append(c.peers, self), append(c.servers, s)
	return len(c.servers) - 1
}

func voters(t *testing.T, s *Server) int {
	t.Helper()
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		t.Fatal(err)
	}
	return len(f.Configuration().Servers)
}

// led runs call until it is answered by something other than Unavailable
// (no leader yet, or a leader change in flight — under a loaded machine an
// election can happen at any step), as the SDK's client layer does, and
// returns that answer.
func led(t *testing.T, call func(ctx context.Context) error) error {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := call(ctx)
		cancel()
		if status.Code(err) != codes.Unavailable || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func wantStatus(t *testing.T, err error, c codes.Code, what string) {
	t.Helper()
	if status.Code(err) != c {
		t.Fatalf("%s: %v, want %v", what, err, c)
	}
}

// TestPeersGrowAndShrink: a single node grows to three with add-peer; the
// joiners receive the state; the first node dies, a joiner leads and
// forwards for the other; remove-peer takes the dead node out.
func TestPeersGrowAndShrink(t *testing.T) {
	c := newCluster(t, 1, nil)
	c.leader()
	ctx := context.Background()
	id := submitTest(t, c.client(0), testConfig{Tasks: 3}, "before-join")

	err := led(t, func(ctx context.Context) error {
		_, err := c.client(0).RemovePeer(ctx, &api.RemovePeerRequest{Id: "n0"})
		return err
	})
	wantStatus(t, err, codes.FailedPrecondition, "remove of the only member")

	// A joiner waits: it holds no raft configuration — so it cannot even
	// vote for itself, let alone lead — and no state.
	a := c.join("j1")
	cf := c.servers[a].raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		t.Fatal(err)
	}
	if n := len(cf.Configuration().Servers); n != 0 || c.servers[a].IsLeader() || c.servers[a].fsm.Job(id) != nil {
		t.Fatalf("a joining node must wait to be added, not lead or hold state: %d servers in its configuration", n)
	}
	b := c.join("j2")
	// A node that does not answer, or answers as someone else, is never
	// added: a dead voter would cost a one-node group its quorum.
	err = led(t, func(ctx context.Context) error {
		_, err := c.client(0).AddPeer(ctx, &api.AddPeerRequest{Id: "ghost", RaftAddress: "ghost.inmem:20003", RpcAddress: "127.0.0.1:1"})
		return err
	})
	wantStatus(t, err, codes.FailedPrecondition, "add of a node that is not running")
	err = led(t, func(ctx context.Context) error {
		_, err := c.client(0).AddPeer(ctx, &api.AddPeerRequest{Id: "j9", RaftAddress: c.peers[a].RaftAddr, RpcAddress: c.peers[a].RPCAddr})
		return err
	})
	wantStatus(t, err, codes.FailedPrecondition, "add of a node under another id")
	if n := voters(t, c.servers[0]); n != 1 {
		t.Fatalf("%d members after refused adds, want 1", n)
	}
	submitTest(t, c.client(0), testConfig{Tasks: 1}, "still-writable") // the group still commits
	for _, i := range []int{a, b} {
		p := c.peers[i]
		if err := led(t, func(ctx context.Context) error {
			_, err := c.client(0).AddPeer(ctx, &api.AddPeerRequest{Id: p.ID, RaftAddress: p.RaftAddr, RpcAddress: p.RPCAddr})
			return err
		}); err != nil {
			t.Fatalf("add %s: %v", p.ID, err)
		}
	}
	// Retried: no change, no error.
	if err := led(t, func(ctx context.Context) error {
		_, err := c.client(1).AddPeer(ctx, &api.AddPeerRequest{Id: c.peers[a].ID, RaftAddress: c.peers[a].RaftAddr, RpcAddress: c.peers[a].RPCAddr})
		return err
	}); err != nil {
		t.Fatalf("a retried add, forwarded by a follower: %v", err)
	}
	if n := voters(t, c.servers[0]); n != 3 {
		t.Fatalf("%d voters after two adds, want 3", n)
	}
	c.addWorker(2) // knows all three job masters
	if j := waitJob(t, c.client(0), id, 20*time.Second); j.Status != api.JobInfo_COMPLETED {
		t.Fatalf("job submitted before the join: %v", j.Status)
	}
	deadline := time.Now().Add(10 * time.Second)
	for c.servers[a].fsm.Job(id) == nil || c.servers[b].fsm.Job(id) == nil {
		if time.Now().After(deadline) {
			t.Fatal("the joiners never received the group's state")
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Bad requests change nothing.
	err = led(t, func(ctx context.Context) error {
		_, err := c.client(0).AddPeer(ctx, &api.AddPeerRequest{Id: "x", RaftAddress: "nohost", RpcAddress: "h:1"})
		return err
	})
	wantStatus(t, err, codes.InvalidArgument, "add with a bad raft address")
	err = led(t, func(ctx context.Context) error {
		_, err := c.client(0).AddPeer(ctx, &api.AddPeerRequest{Id: "j1", RaftAddress: "elsewhere:1", RpcAddress: "h:1"})
		return err
	})
	wantStatus(t, err, codes.AlreadyExists, "add of a member id at another address")
	err = led(t, func(ctx context.Context) error {
		_, err := c.client(0).RemovePeer(ctx, &api.RemovePeerRequest{Id: "nobody"})
		return err
	})
	wantStatus(t, err, codes.NotFound, "remove of a non-member")
	if n := voters(t, c.servers[0]); n != 3 {
		t.Fatalf("%d voters after refused changes, want 3", n)
	}

	// The original node dies; a joiner leads, the other forwards to it
	// (it knows the leader's rpc address only from the group's state).
	c.kill(0)
	// Asked until the answer matches the leader of the moment: on a loaded
	// machine the two joiners may trade the lead before they settle.
	var l *Server
	other := a
	deadline = time.Now().Add(30 * time.Second)
	for {
		l = c.leader()
		other = a
		if c.index(l) == a {
			other = b
		}
		info, err := c.client(other).GetLeader(ctx, &api.GetLeaderRequest{})
		if err == nil && info.GetLeaderRpcAddress() == l.rpcAddr {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("leader seen from %s: %v (%v), want %s", c.peers[other].ID, info, err, l.rpcAddr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	id2 := submitTest(t, c.client(other), testConfig{Tasks: 4}, "after-failover")
	if j := waitJob(t, c.client(other), id2, 20*time.Second); j.Status != api.JobInfo_COMPLETED {
		t.Fatalf("job after the failover: %v", j.Status)
	}
	if err := led(t, func(ctx context.Context) error {
		_, err := c.client(other).RemovePeer(ctx, &api.RemovePeerRequest{Id: "n0"})
		return err
	}); err != nil {
		t.Fatalf("remove the dead node: %v", err)
	}
	if n := voters(t, l); n != 2 {
		t.Fatalf("%d voters after removing the dead node, want 2", n)
	}
	if got := l.fsm.peerRPCAddr("n0"); got != "" {
		t.Fatalf("the removed node's address is still recorded: %s", got)
	}
}

// TestRemoveLeaderHandsOver: removing the leader hands leadership over
// first; the call asked again (as the SDK does on Unavailable) reaches the
// new leader, which removes the old one.
func TestRemoveLeaderHandsOver(t *testing.T) {
	c := newCluster(t, 3, nil)
	ctx := context.Background()
	l := c.leader()
	li := c.index(l)
	_, err := c.client(li).RemovePeer(ctx, &api.RemovePeerRequest{Id: l.self.ID})
	wantStatus(t, err, codes.Unavailable, "remove of the leader, first ask")
	deadline := time.Now().Add(10 * time.Second)
	for c.leader() == l {
		if time.Now().After(deadline) {
			t.Fatal("leadership was not handed over")
		}
		time.Sleep(20 * time.Millisecond)
	}
	l2 := c.leader()
	if err := led(t, func(ctx context.Context) error {
		_, err := c.client(li).RemovePeer(ctx, &api.RemovePeerRequest{Id: l.self.ID})
		return err
	}); err != nil {
		t.Fatalf("remove of the old leader, asked again (forwarded): %v", err)
	}
	if n := voters(t, l2); n != 2 {
		t.Fatalf("%d voters, want 2", n)
	}
	c.addWorker(2)
	other := c.index(l2)
	id := submitTest(t, c.client(other), testConfig{Tasks: 3}, "after-remove")
	if j := waitJob(t, c.client(other), id, 20*time.Second); j.Status != api.JobInfo_COMPLETED {
		t.Fatalf("job after removing the old leader: %v", j.Status)
	}
	err = led(t, func(ctx context.Context) error {
		_, err := c.client(other).RemovePeer(ctx, &api.RemovePeerRequest{Id: "nobody"})
		return err
	})
	wantStatus(t, err, codes.NotFound, "remove of a non-member")
}

// TestJoinerMayLackFromStaticPeers: a node added at run time can be
// restarted with the group's original peer list as long as it runs with
// join; without it the error says so.
func TestJoinerMayLackFromStaticPeers(t *testing.T) {
	peers := []Peer{{ID: "jm1", RaftAddr: "h1:20003", RPCAddr: "h1:20001"}, {ID: "jm2", RaftAddr: "h2:20003", RPCAddr: "h2:20001"}}
	cfg := testConfigFor(t)
	cfg.JobMaster.Raft.NodeID = "jm4"
	_, err := newServer(cfg, nil, serverOptions{peers: peers})
	if err == nil || !strings.Contains(err.Error(), "--join") {
		t.Fatalf("jm4 outside the static peers without join: %v", err)
	}
	cfg.JobMaster.Raft.Join = true
	if _, err := newServer(cfg, nil, serverOptions{peers: peers}); err != nil {
		t.Fatalf("jm4 with join: %v", err)
	}
}
