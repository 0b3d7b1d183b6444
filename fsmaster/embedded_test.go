package fsmaster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/config"
	"github.com/alluvium/alluvium/internal/raftgroup"
	"github.com/alluvium/alluvium/internal/rpc"
	"github.com/alluvium/alluvium/internal/testutil"
)

// raftCluster is an in-process group of FS masters with an embedded
// journal on raft's in-memory transport (so a test can cut a master off)
// and in-memory log stores that survive a master's restart; snapshots and
// checkpoints are files. Clients talk gRPC over loopback.
type raftCluster struct {
	t       *testing.T
	n       int
	cfgs    []*config.Config
	trans   []*raft.InmemTransport
	stores  []*raft.InmemStore
	snaps   []raft.SnapshotStore
	addrs   []string // rpc addresses
	ports   int      // the next free port of the range PortBase reserved
	masters []*Master
	conns   []*grpc.ClientConn
	ufs     string
}

func newRaftCluster(t *testing.T, n int, set map[string]any) *raftCluster {
	t.Helper()
	// Masters stop and start again on their ports: they come from
	// testutil's reserved ranges, which no other test's listener or
	// outgoing connection can take meanwhile (a closed :0 listener's could).
	c := &raftCluster{t: t, n: n, ufs: filepath.Join(t.TempDir(), "ufs"), ports: testutil.PortBase(t)}
	if err := os.MkdirAll(c.ufs, 0o755); err != nil {
		t.Fatal(err)
	}
	var peers []string
	for i := 0; i < n; i++ {
		_, tr := raft.NewInmemTransport(raft.ServerAddress(fmt.Sprintf("m%d.inmem:1", i)))
		c.trans = append(c.trans, tr)
		addr := c.nextAddr()
		c.addrs = append(c.addrs, addr)
		peers = append(peers, fmt.Sprintf("m%d=%s|%s", i, tr.LocalAddr(), addr))
	}
	for i := range c.trans {
		for j := range c.trans {
			if i != j {
				c.trans[i].Connect(c.trans[j].LocalAddr(), c.trans[j])
			}
		}
	}
	for i := 0; i < n; i++ {
		_, port, _ := net.SplitHostPort(c.addrs[i])
		s := map[string]any{
			"fsmaster.journal.type":                      "embedded",
			"fsmaster.raft.node-id":                      fmt.Sprintf("m%d", i),
			"fsmaster.raft.peers":                        strings.Join(peers, ","),
			"fsmaster.rpc-port":                          port,
			"fsmaster.host":                              "127.0.0.1",
			"fsmaster.ufs":                               "file://" + c.ufs,
			"fsmaster.raft.heartbeat-timeout":            "1s",
			"fsmaster.raft.election-timeout":             "1s",
			"fsmaster.user.block-size":                   1024,
			"fsmaster.journal.checkpoint-period-entries": 0,
		}
		for k, v := range set {
			s[k] = v
		}
		c.cfgs = append(c.cfgs, testConfig(t, s))
		c.stores = append(c.stores, raft.NewInmemStore())
		snaps, err := raft.NewFileSnapshotStoreWithLogger(t.TempDir(), 2, hclog.NewNullLogger())
		if err != nil {
			t.Fatal(err)
		}
		c.snaps = append(c.snaps, snaps)
		c.masters = append(c.masters, nil)
		c.conns = append(c.conns, nil)
	}
	for i := 0; i < n; i++ {
		c.start(i)
	}
	t.Cleanup(func() {
		for i := range c.masters {
			c.stop(i)
		}
	})
	return c
}

func (c *raftCluster) start(i int) {
	c.t.Helper()
	m, err := New(c.cfgs[i], zaptest.NewLogger(c.t, zaptest.Level(zap.WarnLevel)).Named(fmt.Sprintf("m%d", i)))
	if err != nil {
		c.t.Fatal(err)
	}
	m.testParts = &raftgroup.Parts{Logs: c.stores[i], Stable: c.stores[i], Snaps: c.snaps[i], Trans: c.trans[i]}
	if err := m.Start(context.Background()); err != nil {
		c.t.Fatal(err)
	}
	cc, err := rpc.Dial(c.addrs[i], rpc.ClientOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	c.masters[i], c.conns[i] = m, cc
}

func (c *raftCluster) stop(i int) {
	if c.masters[i] == nil {
		return
	}
	c.conns[i].Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.masters[i].Stop(ctx); err != nil {
		c.t.Logf("stop m%d: %v", i, err)
	}
	c.masters[i], c.conns[i] = nil, nil
}

func (c *raftCluster) fs(i int) api.FileSystemMasterClient {
	return api.NewFileSystemMasterClient(c.conns[i])
}

// leader waits for a master that takes writes, other than those in not.
func (c *raftCluster) leader(not ...int) int {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for i, m := range c.masters {
			if m == nil || m.emb == nil || !m.emb.isLeader() || contains(not, i) {
				continue
			}
			return i
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatalf("no leader after 20s")
	return -1
}

func contains(xs []int, x int) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}

// isolate cuts master i off from the others (both directions).
func (c *raftCluster) isolate(i int) {
	for j := range c.trans {
		if j != i {
			c.trans[j].Disconnect(c.trans[i].LocalAddr())
		}
	}
	c.trans[i].DisconnectAll()
}

func (c *raftCluster) heal(i int) {
	for j := range c.trans {
		if j != i {
			c.trans[j].Connect(c.trans[i].LocalAddr(), c.trans[i])
			c.trans[i].Connect(c.trans[j].LocalAddr(), c.trans[j])
		}
	}
}

// settled waits until every running master's state is at the same
// sequence (at least min) and returns it.
func (c *raftCluster) settled(min int64) int64 {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var seqs []int64
	for time.Now().Before(deadline) {
		seqs = seqs[:0]
		same := true
		for _, m := range c.masters {
			if m == nil {
				continue
			}
			_, s := m.emb.fsm.position()
			m.ns.mu.RLock()
			if m.ns.st.lastSeq != s {
				same = false
			}
			m.ns.mu.RUnlock()
			seqs = append(seqs, s)
		}
		for _, s := range seqs {
			same = same && s == seqs[0] && s >= min
		}
		if same && len(seqs) > 0 {
			return seqs[0]
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatalf("masters did not settle at one sequence >= %d: %v", min, seqs)
	return 0
}

// sameState checks that every running master holds the same namespace.
func (c *raftCluster) sameState() {
	c.t.Helper()
	var first string
	for i, m := range c.masters {
		if m == nil {
			continue
		}
		check(c.t, m.ns)
		d := dump(m.ns)
		if first == "" {
			first = d
			continue
		}
		if d != first {
			c.t.Fatalf("m%d's namespace differs:\n%s\n--- first:\n%s", i, d, first)
		}
	}
}

// leaderTrailer calls CreateDirectory on master i and returns the error
// and the alluvium-leader trailer.
func (c *raftCluster) createOn(i int, p string) (error, string) {
	var tr metadata.MD
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := c.fs(i).CreateDirectory(ctx, &api.CreateDirectoryRequest{Path: p, Recursive: true}, grpc.Trailer(&tr))
	v := tr.Get(api.LeaderTrailer)
	if len(v) == 0 {
		return err, "<none>"
	}
	return err, v[0]
}

func TestEmbeddedReplicatesAndRedirects(t *testing.T) {
	c := newRaftCluster(t, 3, nil)
	l := c.leader()
	ctx := context.Background()
	for i := 0; i < 50; i++ {
		p := fmt.Sprintf("/d%d/f", i%7)
		must(c.fs(l).CreateDirectory(ctx, &api.CreateDirectoryRequest{Path: fmt.Sprintf("/d%d", i%7), AllowExists: true}))
		must(c.fs(l).CreateFile(ctx, &api.CreateFileRequest{Path: fmt.Sprintf("%s%d", p, i)}))
	}
	must(c.fs(l).Rename(ctx, &api.RenameRequest{Src: "/d1", Dst: "/e1"}))
	must(c.fs(l).Delete(ctx, &api.DeleteRequest{Path: "/d2", Recursive: true}))
	c.settled(1)
	c.sameState()

	f := (l + 1) % 3
	err, leader := c.createOn(f, "/x")
	if status.Code(err) != codes.Unavailable || leader != c.addrs[l] {
		t.Fatalf("create on a standby: %v, trailer %q; want Unavailable naming %s", err, leader, c.addrs[l])
	}
	if _, err := c.fs(f).GetStatus(ctx, &api.GetStatusRequest{Path: "/d0"}); status.Code(err) != codes.Unavailable {
		t.Fatalf("read on a standby: %v, want Unavailable (standbys redirect reads)", err)
	}
	gl := must(c.fs(f).GetLeader(ctx, &api.GetLeaderRequest{}))
	if gl.GetLeaderRpcAddress() != c.addrs[l] || gl.GetNodeId() != fmt.Sprintf("m%d", f) || len(gl.GetServers()) != 3 {
		t.Fatalf("GetLeader on a standby: %+v", gl)
	}
	info := must(c.fs(f).GetMasterInfo(ctx, &api.GetMasterInfoRequest{}))
	if info.GetRole() != "FOLLOWER" || info.GetJournalType() != "embedded" || info.GetAppliedIndex() == 0 {
		t.Fatalf("GetMasterInfo on a standby: %+v", info)
	}
	if st := c.masters[l].JournalStats(); st.Entries == 0 || st.Batches == 0 {
		t.Fatalf("journal stats %+v", st)
	}
}

// TestEmbeddedGroupCommit: concurrent creates share raft entries.
func TestEmbeddedGroupCommit(t *testing.T) {
	c := newRaftCluster(t, 3, nil)
	l := c.leader()
	ctx := context.Background()
	must(c.fs(l).CreateDirectory(ctx, &api.CreateDirectoryRequest{Path: "/g"}))
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				if _, err := c.fs(l).CreateFile(ctx, &api.CreateFileRequest{Path: fmt.Sprintf("/g/w%d-%d", w, i)}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	st := c.masters[l].emb.rj.stats()
	if st.Entries < 640 || st.Batches >= st.Entries || st.MaxBatch < 2 {
		t.Fatalf("640 concurrent creates in %d raft entries (largest %d): no group commit", st.Batches, st.MaxBatch)
	}
	t.Logf("%d entries in %d raft entries (largest %d)", st.Entries, st.Batches, st.MaxBatch)
	c.settled(1)
	c.sameState()
}

// TestEmbeddedFailover: the leader stops; a standby leads with every
// acknowledged change; the old leader comes back as a standby.
func TestEmbeddedFailover(t *testing.T) {
	c := newRaftCluster(t, 3, nil)
	l := c.leader()
	ctx := context.Background()
	for i := 0; i < 30; i++ {
		must(c.fs(l).CreateDirectory(ctx, &api.CreateDirectoryRequest{Path: fmt.Sprintf("/a%d", i)}))
	}
	c.stop(l)
	n := c.leader(l)
	for i := 0; i < 30; i++ {
		must(c.fs(n).GetStatus(ctx, &api.GetStatusRequest{Path: fmt.Sprintf("/a%d", i)}))
	}
	must(c.fs(n).CreateDirectory(ctx, &api.CreateDirectoryRequest{Path: "/after"}))
	c.start(l)
	c.settled(1)
	c.sameState()
	if c.masters[l].emb.isLeader() {
		t.Fatalf("the restarted master leads at once")
	}
}

// TestEmbeddedLostQuorumNamesIt: both standbys vanish while a write is in
// flight on the leader. raft fails the write with "leadership lost while
// committing log" when the leader's lease runs out; the caller is told
// that it may or may not have been applied (so it is not retried for a
// non-idempotent call) and why: the quorum the group lacks. After healing
// nothing diverged.
func TestEmbeddedLostQuorumNamesIt(t *testing.T) {
	c := newRaftCluster(t, 3, nil)
	l := c.leader()
	ctx := context.Background()
	must(c.fs(l).CreateDirectory(ctx, &api.CreateDirectoryRequest{Path: "/before"}))
	a, b := (l+1)%3, (l+2)%3
	c.isolate(a)
	c.isolate(b)
	err, trailer := c.createOn(l, "/during")
	if err == nil {
		t.Fatal("a write was acknowledged without a quorum")
	}
	msg := status.Convert(err).Message()
	t.Logf("without a quorum (trailer %q): %s", trailer, msg)
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("code %v, want Unavailable: %v", status.Code(err), err)
	}
	if strings.Contains(msg, "may or may not") {
		// The write was in flight when leadership ended: no leader named,
		// so the client layer does not send it again.
		if trailer != "<none>" {
			t.Fatalf("an uncertain answer names a leader to retry on: %q", trailer)
		}
	} else if trailer != "" {
		t.Fatalf("refused before it reached raft, yet a leader is named: %q", trailer)
	}
	if !strings.Contains(msg, "quorum") || !strings.Contains(msg, "2 of its 3 voters") {
		t.Fatalf("the error does not name the lost quorum: %s", msg)
	}
	c.heal(a)
	c.heal(b)
	n := c.leader()
	must(c.fs(n).CreateDirectory(ctx, &api.CreateDirectoryRequest{Path: "/after"}))
	c.settled(1)
	c.sameState()
}

// TestEmbeddedPartitionedLeader: the leader is cut off while clients
// write to it; its unacknowledged changes never become visible once the
// majority leads, it refuses writes, and after healing it holds exactly
// the majority's namespace.
func TestEmbeddedPartitionedLeader(t *testing.T) {
	c := newRaftCluster(t, 3, nil)
	l := c.leader()
	ctx := context.Background()
	must(c.fs(l).CreateDirectory(ctx, &api.CreateDirectoryRequest{Path: "/p"}))
	c.settled(1)

	var (
		mu    sync.Mutex
		acked []string
		wg    sync.WaitGroup
		stop  = make(chan struct{})
	)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				p := fmt.Sprintf("/p/w%d-%d", w, i)
				cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				_, err := c.fs(l).CreateFile(cctx, &api.CreateFileRequest{Path: p})
				cancel()
				if err == nil {
					mu.Lock()
					acked = append(acked, p)
					mu.Unlock()
				}
			}
		}()
	}
	// Writes are flowing (some acknowledged) when the leader is cut off.
	testutil.Eventually(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(acked) < 16 {
			return fmt.Errorf("%d writes acknowledged", len(acked))
		}
		return nil
	})
	c.isolate(l)
	n := c.leader(l)
	// The old leader must stop taking writes on its own.
	deadline := time.Now().Add(10 * time.Second)
	for c.masters[l].emb.isLeader() {
		if time.Now().After(deadline) {
			t.Fatalf("the cut-off leader still takes writes")
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if err, _ := c.createOn(l, "/p/late"); status.Code(err) != codes.Unavailable {
		t.Fatalf("write to the deposed leader: %v, want Unavailable", err)
	}
	must(c.fs(n).CreateFile(ctx, &api.CreateFileRequest{Path: "/p/majority"}))
	c.heal(l)
	c.settled(1)
	c.sameState()
	mu.Lock()
	defer mu.Unlock()
	for _, p := range acked {
		if _, err := c.fs(n).GetStatus(ctx, &api.GetStatusRequest{Path: p}); err != nil {
			t.Fatalf("acknowledged %s is gone: %v", p, err)
		}
	}
	list := must(c.fs(n).ListStatus(ctx, &api.ListStatusRequest{Path: "/p"}))
	t.Logf("%d acknowledged, %d in /p, %d rebuilds on the old leader", len(acked), len(list.GetInfos()), c.masters[l].emb.fsm.rebuilds.Load())
}

// TestEmbeddedSnapshotCatchUp: a standby that was down while the log it
// needs was compacted catches up from a snapshot whose base another
// standby wrote.
func TestEmbeddedSnapshotCatchUp(t *testing.T) {
	c := newRaftCluster(t, 3, map[string]any{
		"fsmaster.raft.snapshot-threshold": 8,
		"fsmaster.raft.trailing-logs":      4,
		"fsmaster.raft.snapshot-interval":  "100ms",
	})
	l := c.leader()
	down := (l + 1) % 3
	other := (l + 2) % 3
	ctx := context.Background()
	c.stop(down)
	for i := 0; i < 200; i++ {
		must(c.fs(l).CreateDirectory(ctx, &api.CreateDirectoryRequest{Path: fmt.Sprintf("/s%d", i)}))
	}
	resp := must(c.fs(l).Checkpoint(ctx, &api.CheckpointRequest{}))
	if resp.GetSequence() < 200 {
		t.Fatalf("checkpoint at %d", resp.GetSequence())
	}
	if b, ok := c.masters[other].emb.fsm.newestBase(); !ok || b.seq != resp.GetSequence() {
		t.Fatalf("the checkpoint %d was not written by the standby (its newest: %+v)", resp.GetSequence(), b)
	}
	first, err := c.stores[l].FirstIndex()
	if err != nil || first <= 2 {
		t.Fatalf("log not compacted: first index %d (%v)", first, err)
	}
	for i := 200; i < 220; i++ {
		must(c.fs(l).CreateDirectory(ctx, &api.CreateDirectoryRequest{Path: fmt.Sprintf("/s%d", i)}))
	}
	// The leader sends its newest raft snapshot. Raft takes one on its own
	// only every snapshot-interval, so the newest may still predate the
	// checkpoint (and carry no base) when the standby comes back: take one
	// now, as the next interval would.
	if _, ok := c.masters[l].emb.fsm.newestBase(); !ok {
		t.Fatal("the leader holds no checkpoint after the checkpoint call")
	}
	if err := c.masters[l].emb.raft.Snapshot().Error(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
		t.Fatalf("leader snapshot: %v", err)
	}
	c.start(down)
	c.settled(220)
	c.sameState()
	if _, ok := c.masters[down].emb.fsm.newestBase(); !ok {
		t.Fatalf("the restored standby kept no checkpoint")
	}
}

// join starts one more master with fsmaster.raft.join, as an operator
// starts a master to add, and returns its index.
func (c *raftCluster) join() int {
	c.t.Helper()
	i := len(c.masters)
	_, tr := raft.NewInmemTransport(raft.ServerAddress(fmt.Sprintf("m%d.inmem:1", i)))
	for _, o := range c.trans {
		tr.Connect(o.LocalAddr(), o)
		o.Connect(tr.LocalAddr(), tr)
	}
	addr := c.nextAddr()
	_, port, _ := net.SplitHostPort(addr)
	cfg := *c.cfgs[0]
	cfg.Home = c.t.TempDir()
	cfg.FSMaster.Journal.Dir = filepath.Join(cfg.Home, "journal")
	cfg.FSMaster.Raft.Dir = filepath.Join(cfg.Home, "journal", "raft")
	cfg.FSMaster.Raft.NodeID = fmt.Sprintf("m%d", i)
	cfg.FSMaster.Raft.Peers = []string{fmt.Sprintf("m%d=%s|%s", i, tr.LocalAddr(), addr)}
	cfg.FSMaster.Raft.Join = true
	cfg.FSMaster.RPCPort = mustAtoi(port)
	snaps, err := raft.NewFileSnapshotStoreWithLogger(c.t.TempDir(), 2, hclog.NewNullLogger())
	if err != nil {
		c.t.Fatal(err)
	}
	c.cfgs, c.trans, c.stores, c.snaps = append(c.cfgs, &cfg), append(c.trans, tr), append(c.stores, raft.NewInmemStore()), append(c.snaps, snaps)
	c.addrs, c.masters, c.conns = append(c.addrs, addr), append(c.masters, nil), append(c.conns, nil)
	c.start(i)
	return i
}

// nextAddr is a loopback address on the next port of the cluster's range.
func (c *raftCluster) nextAddr() string {
	c.t.Helper()
	if c.ports%200 == 199 {
		c.t.Fatal("the cluster used its 200 ports")
	}
	c.ports++
	return fmt.Sprintf("127.0.0.1:%d", c.ports-1)
}

func mustAtoi(s string) int {
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		panic(err)
	}
	return n
}

func (c *raftCluster) journal(i int) api.EmbeddedJournalClient {
	return api.NewEmbeddedJournalClient(c.conns[i])
}

func (c *raftCluster) voters(i int) map[string]raft.ServerSuffrage {
	c.t.Helper()
	f := c.masters[i].emb.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		c.t.Fatal(err)
	}
	out := map[string]raft.ServerSuffrage{}
	for _, s := range f.Configuration().Servers {
		out[string(s.ID)] = s.Suffrage
	}
	return out
}

// TestEmbeddedQuorumAddRemove: a master started with join is added (it
// gets the state, then a vote), named by the others, and removed again.
func TestEmbeddedQuorumAddRemove(t *testing.T) {
	c := newRaftCluster(t, 3, nil)
	l := c.leader()
	ctx := context.Background()
	for i := 0; i < 20; i++ {
		must(c.fs(l).CreateDirectory(ctx, &api.CreateDirectoryRequest{Path: fmt.Sprintf("/q%d", i)}))
	}
	j := c.join()
	if c.masters[j].emb.isLeader() {
		t.Fatal("a joining master leads")
	}
	f := (l + 1) % 3
	// A standby names the leader; the add runs there.
	_, err := c.journal(f).AddPeer(ctx, &api.AddPeerRequest{Id: "m3", RaftAddress: string(c.trans[j].LocalAddr()), RpcAddress: c.addrs[j]})
	wantCode(t, err, codes.Unavailable, "add peer on a standby")
	_, err = c.journal(l).AddPeer(ctx, &api.AddPeerRequest{Id: "wrong", RaftAddress: string(c.trans[j].LocalAddr()), RpcAddress: c.addrs[j]})
	wantCode(t, err, codes.FailedPrecondition, "add peer under the wrong id")
	must(c.journal(l).AddPeer(ctx, &api.AddPeerRequest{Id: "m3", RaftAddress: string(c.trans[j].LocalAddr()), RpcAddress: c.addrs[j]}))
	if v := c.voters(l); len(v) != 4 || v["m3"] != raft.Voter {
		t.Fatalf("after add: %v", v)
	}
	c.settled(20)
	c.sameState()
	if got := c.masters[f].emb.rpcAddrOf("m3"); got != c.addrs[j] {
		t.Fatalf("a standby knows m3 at %q, want %s", got, c.addrs[j])
	}
	_, err = c.journal(l).RemovePeer(ctx, &api.RemovePeerRequest{Id: "nobody"})
	wantCode(t, err, codes.NotFound, "remove of a non-member")
	must(c.journal(l).RemovePeer(ctx, &api.RemovePeerRequest{Id: "m3"}))
	if v := c.voters(l); len(v) != 3 {
		t.Fatalf("after remove: %v", v)
	}
}
