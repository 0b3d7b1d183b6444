package fsmaster

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/fsmaster/journal"
	"github.com/alluvium/alluvium/internal/client"
	"github.com/alluvium/alluvium/internal/raftgroup"
	"github.com/alluvium/alluvium/internal/security"
)

// embedded is what a master of an embedded journal (fsmaster.journal.type:
// embedded) has besides the namespace: its raft node, the FSM that
// applies committed entries, the appender that batches the leader's
// entries into raft, and the leader's duties.
type embedded struct {
	m     *Master
	raft  *raft.Raft
	parts *raftgroup.Parts
	fsm   *raftFSM
	rj    *raftJournal
	self  raftgroup.Peer
	peers []raftgroup.Peer // fsmaster.raft.peers
	lock  *os.File         // the journal dir's lock
	conns *client.Pool     // to the other masters

	notify      chan bool
	epochFailed chan uint64
	shutdown    chan struct{}
	wg          sync.WaitGroup
	leading     atomic.Bool // leader duties run and the state takes writes
	leaderSince atomic.Int64
	health      *raftgroup.Health // which members the leader cannot reach
}

// leaderState is what exists only while this master leads.
type leaderState struct {
	epoch  uint64
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// errStandby is what a standby answers before the interceptor names the
// leader.
var errStandby = &notLeaderError{msg: "this FS master is a standby: it does not lead"}

// startEmbedded is Start for an embedded journal: the master joins its
// raft group as a standby and serves; it takes writes once it leads.
func (m *Master) startEmbedded(ctx context.Context, ncfg nsConfig) error {
	c := m.cfg.FSMaster
	peers, err := raftgroup.ParsePeers("fsmaster.raft.peers", c.Raft.Peers)
	if err != nil {
		return err
	}
	self, found := raftgroup.Self(peers, raftgroup.Peer{
		ID:       c.Raft.NodeID,
		RaftAddr: net.JoinHostPort(c.Host, fmt.Sprint(c.Raft.Port)),
		RPCAddr:  net.JoinHostPort(c.Host, fmt.Sprint(c.RPCPort)),
	})
	if !found && !c.Raft.Join {
		return fmt.Errorf("fsmaster.raft.node-id %q is not among fsmaster.raft.peers (ids: %s); a master added with 'fsadmin journal quorum add' runs with --join (fsmaster.raft.join)", self.ID, raftgroup.IDs(peers))
	}
	lock, err := journal.OpenEmbedded(m.dir)
	if err != nil {
		return fmt.Errorf("fsmaster: %w", err)
	}
	e := &embedded{m: m, self: self, peers: peers, lock: lock, notify: make(chan bool, 16),
		epochFailed: make(chan uint64, 1), shutdown: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			e.health.Close()
			e.close()
		}
	}()
	so, err := security.ServerOptions(m.cfg, m.log)
	if err != nil {
		return fmt.Errorf("fsmaster: %w", err)
	}
	dial, err := security.ClientOptions(m.cfg)
	if err != nil {
		return fmt.Errorf("fsmaster: %w", err)
	}
	e.conns = client.NewPool(dial)
	e.rj = newRaftJournal(c.Journal.MaxBatchEntries, m.log)
	e.rj.onFail = func(epoch uint64, err error) {
		m.log.Warn("a journal batch was not committed; this master stops taking writes", zap.Error(err))
		e.fsm.wake() // a checkpoint waiting for its batches gives up
		select {
		case e.epochFailed <- epoch:
		default:
		}
	}
	m.ns = newNamespace(NewState(), e.rj, ncfg, m.newBlockMap(), m.log)
	m.ns.standby = errStandby
	m.ns.gate = newGate(c.MaxExpensiveCalls, c.ExpensiveCallWait)
	m.ns.onFail = m.journalFailed
	m.ns.onToBePersist = m.toBePersisted
	m.emb = e

	hl := raftgroup.HCLog(m.log, m.cfg.Log.Level)
	if err := journal.CheckRaftLog(c.Raft.Dir); err != nil && m.testParts == nil {
		return fmt.Errorf("fsmaster: %w", err)
	}
	if m.testParts != nil {
		p := *m.testParts
		e.parts = &p
	} else if e.parts, err = raftgroup.Open(raftgroup.StoreOptions{
		Dir: c.Raft.Dir, DirKey: "fsmaster.raft.dir", BindHost: c.BindHost, Host: c.Host, HostKey: "fsmaster.host",
		Port: c.Raft.Port, Magic: raftgroup.FSMasterMagic, Token: m.cfg.Security.Token,
		SrvTLS: so.TLS, CliTLS: dial.TLS, Log: m.log.Named("raft"), HCLog: hl,
	}); err != nil {
		return fmt.Errorf("fsmaster: %w", err)
	}
	e.parts.Count()
	e.fsm = newRaftFSM(m, m.ns, e.parts.Logs, e.parts.Snaps)
	e.fsm.refreshBases()
	if b, ok := e.fsm.newestBase(); ok {
		m.setCheckpoint(b.path, b.seq)
	}
	rc := raftgroup.Config(c.Raft, self.ID, e.notify, hl)
	// A leader steps down after a whole heartbeat timeout without a
	// majority, not half: with short timeouts a busy machine would
	// otherwise cost elections (and rebuilds) for nothing. That is about
	// when a standby can first be elected (one to two timeouts and a
	// vote); a cut-off leader may answer reads until then, but it never
	// acknowledges a write without a majority, whatever its lease.
	rc.LeaderLeaseTimeout = rc.HeartbeatTimeout
	boot, joining, err := raftgroup.Bootstrap(rc, e.parts, self, peers, c.Raft.Join)
	if err != nil {
		return fmt.Errorf("fsmaster: %s: %w", c.Raft.Dir, err)
	}
	if boot {
		m.log.Info("raft group of FS masters bootstrapped", zap.Int("voters", max(1, len(peers))))
	}
	t0 := time.Now()
	r, err := raft.NewRaft(rc, e.fsm, e.parts.Logs, e.parts.Stable, e.parts.Snaps, e.parts.Trans)
	if err != nil {
		return fmt.Errorf("fsmaster: raft: %w", err)
	}
	e.raft = r
	raftgroup.StandIfAlone(r, rc)
	e.health = raftgroup.WatchHealth(r)
	e.rj.start(r)
	idx, seq := e.fsm.position()
	m.log.Info("raft started", zap.String("id", self.ID), zap.String("raft", string(e.parts.Trans.LocalAddr())),
		zap.Uint64("snapshot_index", idx), zap.Int64("sequence", seq), zap.Duration("took", time.Since(t0)))
	if err := m.serve(); err != nil {
		return err
	}
	m.started = time.Now()
	e.wg.Add(2)
	go func() { defer e.wg.Done(); e.monitorLeadership() }()
	go func() { defer e.wg.Done(); e.baseLoop() }()
	if joining {
		e.group().WaitingToJoin(e.rpcAddr())
	}
	ok = true
	m.log.Info("FS master serving (embedded journal)", zap.String("rpc", m.RPCAddr()), zap.String("http", m.HTTPAddr()),
		zap.String("id", self.ID), zap.Int("peers", len(peers)))
	return nil
}

// journalFailed stops the master for good: memory may hold what the
// journal does not.
func (m *Master) journalFailed(err error) {
	m.failOnce.Do(func() {
		m.failErr = fmt.Errorf("fsmaster: journal failed: %w", err)
		close(m.failed)
	})
}

// toBePersisted hands complete ASYNC_THROUGH files to the persister (of
// this leader; none while it does not lead).
func (m *Master) toBePersisted(ids ...int64) {
	if p := m.persist.Load(); p != nil {
		p.add(ids...)
	}
}

// failAsync marks the namespace broken (call with ns.mu held) and tells
// onFail in the background.
func (ns *namespace) failAsync(err error) {
	if ns.failLocked(err) && ns.onFail != nil {
		go ns.onFail(err)
	}
}

// rpcAddr is this master's advertised rpc address.
func (e *embedded) rpcAddr() string {
	if _, port, err := net.SplitHostPort(e.m.RPCAddr()); err == nil && e.m.cfg.FSMaster.RPCPort == 0 {
		return net.JoinHostPort(e.m.cfg.FSMaster.Host, port)
	}
	return e.self.RPCAddr
}

// stop leaves leadership and stops raft. The caller has stopped serving.
func (e *embedded) stop() error {
	close(e.shutdown)
	e.wg.Wait()
	e.health.Close()
	var err error
	if e.raft != nil {
		err = e.raft.Shutdown().Error()
	}
	e.rj.close()
	e.close()
	return err
}

func (e *embedded) close() {
	if e.parts != nil {
		if err := e.parts.Close(); err != nil {
			e.m.log.Warn("closing raft stores", zap.Error(err))
		}
	}
	if e.conns != nil {
		e.conns.Close()
	}
	if e.lock != nil {
		e.lock.Close()
	}
}

// monitorLeadership starts and stops the leader's duties as raft's
// leadership changes (raftgroup.MonitorLeadership, as the job master).
func (e *embedded) monitorLeadership() {
	raftgroup.MonitorLeadership(e.notify, e.shutdown, e.leaderLoop)
}

// leaderLoop waits for a barrier (every entry of earlier terms applied),
// takes the lead, and gives it up when raft says so, or when a batch of
// its epoch failed (then, still leading, it starts a new epoch).
func (e *embedded) leaderLoop(stop <-chan struct{}) {
	for {
		backoff := 20 * time.Millisecond
		for {
			err := e.raft.Barrier(time.Minute).Error()
			if err == nil {
				break
			}
			e.m.log.Warn("raft barrier failed; retrying", zap.Error(err))
			select {
			case <-stop:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
		}
		ls, err := e.establish()
		if err != nil {
			e.m.log.Error("could not take the lead", zap.Error(err))
			select {
			case <-stop:
				return
			case <-time.After(time.Second):
				continue
			}
		}
		for again := false; !again; {
			select {
			case <-stop:
				e.revoke(ls, true)
				return
			case ep := <-e.epochFailed:
				if ep == ls.epoch {
					e.revoke(ls, true)
					again = true
				}
			}
		}
	}
}

func newEpoch() uint64 {
	var b [8]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			panic(err)
		}
		if v := binary.BigEndian.Uint64(b[:]); v != 0 {
			return v
		}
	}
}

// establish makes this master the one that takes writes.
func (e *embedded) establish() (*leaderState, error) {
	m, ns := e.m, e.m.ns
	ls := &leaderState{epoch: newEpoch()}
	ns.mu.Lock()
	if err := e.fsm.beginEpoch(ls.epoch); err != nil {
		ns.failAsync(err)
		ns.mu.Unlock()
		return nil, err
	}
	e.rj.begin(ls.epoch, ns.st.lastSeq+1)
	// Block locations are soft state: the workers report them again when
	// they register with this leader.
	ns.blocks.reset()
	ns.standby = nil
	hasRoot := ns.st.HasRoot()
	seq := ns.st.lastSeq
	ns.mu.Unlock()
	e.leading.Store(true)
	e.leaderSince.Store(time.Now().UnixMilli())
	ctx, cancel := context.WithCancel(context.Background())
	ls.cancel = cancel
	if !hasRoot {
		if err := ns.bootstrap(ctx, m.cfg.FSMaster.UFS, m.cfg.FSMaster.UFSOptions); err != nil {
			m.log.Error("could not create the root mount", zap.Error(err))
		} else {
			m.log.Info("created the root mount", zap.String("ufs", m.cfg.FSMaster.UFS))
		}
	}
	m.startLeaderLoops(ctx, &ls.wg)
	m.log.Info("FS master is the leader", zap.Uint64("term", e.raft.CurrentTerm()), zap.Int64("sequence", seq),
		zap.Uint64("applied_index", e.fsm.appliedIdx.Load()))
	return ls, nil
}

// revoke stops taking writes: queued entries fail, the leader's duties
// stop, and a state that may hold uncommitted changes is rebuilt.
func (e *embedded) revoke(ls *leaderState, rebuild bool) {
	m, ns := e.m, e.m.ns
	e.leading.Store(false)
	ns.mu.Lock()
	ns.standby = errStandby
	e.rj.end(errNotLeadingNow)
	select {
	case <-e.shutdown:
		rebuild = false // the state is dropped anyway
	default:
	}
	if rebuild {
		if err := e.fsm.endEpoch(); err != nil {
			ns.failAsync(err)
		}
	} else {
		e.fsm.mu.Lock()
		e.fsm.epoch = 0
		e.fsm.mu.Unlock()
	}
	ns.mu.Unlock()
	ns.feed.kick() // long polls answer: not leading
	ls.cancel()
	ls.wg.Wait()
	m.log.Info("FS master is no longer the leader")
}

// isLeader reports whether this master takes writes now.
func (e *embedded) isLeader() bool { return e.leading.Load() }

// leader returns the leader's id and rpc address as raft knows them.
func (e *embedded) leader() (id, addr string) {
	_, lid := e.raft.LeaderWithID()
	if lid == "" {
		return "", ""
	}
	return string(lid), e.rpcAddrOf(string(lid))
}

// rpcAddrOf maps a member id to its rpc address.
func (e *embedded) rpcAddrOf(id string) string {
	if id == e.self.ID {
		return e.rpcAddr()
	}
	for _, p := range e.peers {
		if p.ID == id {
			return p.RPCAddr
		}
	}
	return e.fsm.peerRPCAddr(id)
}

// notLeader is the answer of a master that does not lead: it names the
// leader, or says why there is none.
func (e *embedded) notLeader() (*notLeaderError, string) {
	id, addr := e.leader()
	switch {
	case id == e.self.ID:
		return &notLeaderError{msg: fmt.Sprintf("FS master %s was just elected and is taking the lead; retry", e.self.ID)}, addr
	case id != "":
		return &notLeaderError{msg: fmt.Sprintf("FS master %s is a standby; the leader is %s at %s", e.self.ID, id, addr)}, addr
	}
	return &notLeaderError{msg: e.noLeaderMessage()}, ""
}

// noLeaderMessage explains why no leader is known: it names the quorum the
// group needs and how long it has been without one.
func (e *embedded) noLeaderMessage() string {
	var voters []string
	if f := e.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			if s.Suffrage == raft.Voter {
				voters = append(voters, string(s.ID))
			}
		}
	}
	last := e.raft.LastContact()
	since := "never"
	if !last.IsZero() {
		since = time.Since(last).Round(time.Millisecond).String() + " ago"
	}
	return fmt.Sprintf("no FS master leads: the group has no quorum (it needs %d of its %d voters %s to elect a leader; %s, a %s, last heard from a leader %s)",
		len(voters)/2+1, len(voters), strings.Join(voters, ", "), e.self.ID, strings.ToLower(e.raft.State().String()), since)
}

// standbyMethods are the calls a master answers whether or not it leads.
var standbyMethods = map[string]bool{
	api.FileSystemMaster_GetLeader_FullMethodName:     true,
	api.FileSystemMaster_GetMasterInfo_FullMethodName: true,
	api.EmbeddedJournal_GetCheckpoint_FullMethodName:  true,
}

// leaderOnly is the interceptor of an embedded journal's master: a
// standby refuses every call but standbyMethods with Unavailable and the
// leader in the alluvium-leader trailer (the call was not executed), and
// a call that fails because leadership ended gets the same treatment.
func (e *embedded) leaderOnlyUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if standbyMethods[info.FullMethod] {
		return h(ctx, req)
	}
	if !e.isLeader() {
		return nil, e.redirect(ctx)
	}
	resp, err := h(ctx, req)
	if err != nil {
		return nil, e.answerLost(ctx, err)
	}
	return resp, nil
}

func (e *embedded) leaderOnlyStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if standbyMethods[info.FullMethod] {
		return h(srv, ss)
	}
	if !e.isLeader() {
		return e.redirect(ss.Context())
	}
	if err := h(srv, ss); err != nil {
		return e.answerLost(ss.Context(), err)
	}
	return nil
}

// answerLost is the answer to a call that failed: one that failed because
// this master does not lead (any more) is redirected; one whose change was
// being replicated when leadership ended (it may or may not be committed)
// says why it ended — who leads now, or which quorum the group lacks.
func (e *embedded) answerLost(ctx context.Context, err error) error {
	var nl *notLeaderError
	if errors.As(err, &nl) {
		return e.redirect(ctx)
	}
	var ue *uncertainError
	if errors.As(err, &ue) {
		return &uncertainError{msg: ue.msg + "; " + e.afterStepDown()}
	}
	return err
}

// afterStepDown says who leads after this master stopped leading, or why
// no one does. raft answers a deposed leader's pending changes before it
// forgets that it led, and a master deposed by a candidate learns the new
// leader an election later: it waits up to stepDownWait for a leader other
// than itself before it names the quorum the group lacks.
func (e *embedded) afterStepDown() string {
	deadline := time.Now().Add(stepDownWait)
	for time.Now().Before(deadline) {
		if id, addr := e.leader(); id != "" && id != e.self.ID {
			return fmt.Sprintf("the FS master leader is now %s at %s", id, addr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return e.noLeaderMessage()
}

// stepDownWait bounds afterStepDown's wait: about two election timeouts
// at the defaults.
const stepDownWait = time.Second

func (e *embedded) redirect(ctx context.Context) error {
	err, addr := e.notLeader()
	_ = grpc.SetTrailer(ctx, metadata.Pairs(api.LeaderTrailer, addr))
	return err
}

// startLeaderLoops starts the leader's background duties (lost workers,
// TTLs, async persist); they stop when ctx ends. With a local journal
// they run from start to stop.
func (m *Master) startLeaderLoops(ctx context.Context, wg *sync.WaitGroup) {
	run := func(f func(context.Context)) {
		wg.Add(1)
		m.wg.Add(1) // tick marks m.wg done
		go func() { defer wg.Done(); f(ctx) }()
	}
	run(m.lostWorkerLoop)
	run(m.ttlLoop)
	run(m.ufsWatchLoop)
	if pc := m.cfg.FSMaster; strings.TrimSpace(pc.JobMaster) != "" && m.dialOpts != nil {
		p := newPersister(m.ns, m.log, pc.JobMaster, *m.dialOpts, pc.Persist.Delay, pc.Persist.MaxBackoff, pc.Persist.BatchSize)
		m.persist.Store(p)
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.run(ctx)
			m.persist.CompareAndSwap(p, nil)
		}()
	}
}

// group is this master's raftgroup view (membership changes, GetLeader).
func (e *embedded) group() *raftgroup.Group {
	return &raftgroup.Group{Raft: e.raft, Book: book{e}, Self: raftgroup.Peer{ID: e.self.ID, RaftAddr: e.self.RaftAddr, RPCAddr: e.rpcAddr()},
		Role: "FS master", AddHint: "alluvium fsadmin journal quorum add", Log: e.m.log, Health: e.health}
}

// book is the FS masters' raftgroup.Book: rpc addresses of added members
// are SET_PEER raft commands, kept by the FSM and its snapshots.
type book struct{ e *embedded }

func (b book) Probe(ctx context.Context, rpcAddr string) (*api.GetLeaderResponse, error) {
	fs, _, err := b.e.conns.FSMasterMember(rpcAddr)
	if err != nil {
		return nil, err
	}
	return fs.GetLeader(ctx, &api.GetLeaderRequest{})
}

func (b book) Record(ctx context.Context, p raftgroup.Peer, remove bool) error {
	data, err := encodeSetPeer(&api.SetPeerCommand{Id: p.ID, RaftAddress: p.RaftAddr, RpcAddress: p.RPCAddr, Remove: remove})
	if err != nil {
		return err
	}
	if err := b.e.raft.Apply(data, raftgroup.PeerChangeTimeout).Error(); err != nil {
		return classifyApplyErr(err)
	}
	return nil
}

func (b book) Recorded(id string) bool  { return b.e.fsm.peerRPCAddr(id) != "" }
func (b book) RPCAddr(id string) string { return b.e.rpcAddrOf(id) }

// role is this master's role in the group: LEADER, FOLLOWER, NONVOTER,
// CANDIDATE (or SHUTDOWN).
func (e *embedded) role() string {
	st := e.raft.State()
	if st == raft.Follower {
		if f := e.raft.GetConfiguration(); f.Error() == nil {
			for _, s := range f.Configuration().Servers {
				if string(s.ID) == e.self.ID && s.Suffrage != raft.Voter {
					return "NONVOTER"
				}
			}
		}
	}
	return strings.ToUpper(st.String())
}

// leaveLead stops the leader's duties before the master stops serving.
func (e *embedded) leaveLead() {
	e.m.ns.mu.Lock()
	e.m.ns.standby = &notLeaderError{msg: "this FS master is stopping"}
	e.m.ns.mu.Unlock()
	e.m.ns.feed.kick() // long polls answer: not leading
}

// embeddedOnly returns the embedded part, or an error for op naming the
// journal type.
func (m *Master) embeddedOnly(op string) (*embedded, error) {
	if m.emb == nil {
		return nil, status.Errorf(codes.FailedPrecondition, "%s: this FS master has a local journal (fsmaster.journal.type: local); raft groups need fsmaster.journal.type: embedded", op)
	}
	return m.emb, nil
}

// journalService serves EmbeddedJournal.
type journalService struct {
	api.UnimplementedEmbeddedJournalServer
	m *Master
}

func (s journalService) AddPeer(ctx context.Context, r *api.AddPeerRequest) (*api.AddPeerResponse, error) {
	e, err := s.m.embeddedOnly("add peer")
	if err != nil {
		return nil, err
	}
	if err := e.group().AddPeer(ctx, raftgroup.Peer{ID: r.GetId(), RaftAddr: r.GetRaftAddress(), RPCAddr: r.GetRpcAddress()}); err != nil {
		return nil, err
	}
	return &api.AddPeerResponse{}, nil
}

func (s journalService) RemovePeer(ctx context.Context, r *api.RemovePeerRequest) (*api.RemovePeerResponse, error) {
	e, err := s.m.embeddedOnly("remove peer")
	if err != nil {
		return nil, err
	}
	if err := e.group().RemovePeer(ctx, r.GetId()); err != nil {
		return nil, err
	}
	return &api.RemovePeerResponse{}, nil
}

func (s journalService) GetCheckpoint(r *api.GetCheckpointRequest, stream api.EmbeddedJournal_GetCheckpointServer) error {
	e, err := s.m.embeddedOnly("get checkpoint")
	if err != nil {
		return err
	}
	return e.getCheckpoint(r, stream)
}
