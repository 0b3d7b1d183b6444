package fsmaster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/user"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/fsmaster/journal"
	"github.com/alluvium/alluvium/internal/config"
	"github.com/alluvium/alluvium/internal/raftgroup"
	"github.com/alluvium/alluvium/internal/rpc"
	"github.com/alluvium/alluvium/internal/security"
	"github.com/alluvium/alluvium/ufs"
)

// Version is reported by GetMasterInfo; the binary sets it.
var Version = "dev"

// journalAdapter lets the namespace use *journal.Journal through its small
// appender interface.
type journalAdapter struct{ j *journal.Journal }

func (a journalAdapter) Append(e *api.JournalEntry) waiter { return a.j.Append(e) }

func (a journalAdapter) Hold() (release func() (wake func())) { return a.j.Hold() }

// Master is the FS master: journal, namespace, block map, gRPC and HTTP.
type Master struct {
	cfg *config.Config
	log *zap.Logger

	j       *journal.Journal // local journal; nil with an embedded one
	emb     *embedded        // embedded journal; nil with a local one
	ns      *namespace
	persist atomic.Pointer[persister] // ASYNC_THROUGH files to the job service; nil: off (or not leading)
	dir     string
	started time.Time
	// dialOpts is how the master dials other processes (job masters,
	// other FS masters).
	dialOpts *rpc.ClientOptions
	// Tests replace real parts: raft's stores and transport, the rpc
	// listener.
	testParts *raftgroup.Parts
	testRPCLn net.Listener

	grpc *grpc.Server
	http *rpc.HTTPServer
	// hbTimer times block worker heartbeats server-side (made before the
	// rpc server serves).
	hbTimer *rpc.CallTimer
	rpcL    net.Listener
	httpL   net.Listener

	cancel context.CancelFunc
	wg     sync.WaitGroup

	ckptMu       sync.Mutex // one checkpoint at a time
	lastCkptSeq  atomic.Int64
	lastCkptTime atomic.Int64 // ms
	lastCkptPath atomic.Value // string
	stopOnce     sync.Once
	// stopping: Stop began; heartbeat streams end at their next message
	// (Stop waits for them up to streamDrain).
	stopping atomic.Bool

	failOnce sync.Once
	failed   chan struct{} // closed when the journal fails
	failErr  error
}

// New returns a master for cfg; Start opens the journal and serves.
func New(cfg *config.Config, log *zap.Logger) (*Master, error) {
	if cfg == nil {
		return nil, errors.New("fsmaster: no config")
	}
	if log == nil {
		log = zap.NewNop()
	}
	if cfg.FSMaster.Journal.Dir == "" {
		return nil, errors.New("fsmaster: fsmaster.journal.dir is empty")
	}
	return &Master{cfg: cfg, log: log, dir: cfg.FSMaster.Journal.Dir, failed: make(chan struct{})}, nil
}

// Failed is closed when the journal failed: memory may then hold changes
// the disk does not, so the process must stop (Err says why) and restart
// from the journal.
func (m *Master) Failed() <-chan struct{} { return m.failed }

// Err is the journal failure once Failed is closed.
func (m *Master) Err() error {
	select {
	case <-m.failed:
		return m.failErr
	default:
		return nil
	}
}

func nsConfigFrom(cfg *config.Config) (nsConfig, error) {
	c := nsConfig{
		blockSize:   cfg.FSMaster.User.BlockSize,
		defaultPage: cfg.FSMaster.List.DefaultPageSize,
		maxPage:     cfg.FSMaster.List.MaxPageSize,
		owner:       "alluvium",
		group:       "alluvium",
		perm: permConfigFrom(securityView{
			Permissions: cfg.Security.Permissions, Superuser: cfg.Security.Superuser,
			Supergroup: cfg.Security.Supergroup, Groups: cfg.Security.Groups,
		}),
		pathLimits:   pathLimitsFrom(cfg.FSMaster.Path.MaxLength, cfg.FSMaster.Path.MaxDepth),
		syncInterval: cfg.FSMaster.UFSSyncInterval,
		watch: ufsWatchConfig{enabled: cfg.FSMaster.UFSWatch.Enabled, interval: cfg.FSMaster.UFSWatch.Interval,
			settle: cfg.FSMaster.UFSWatch.Settle, maxDirs: cfg.FSMaster.UFSWatch.MaxDirs},
		maxStagedBytes: cfg.FSMaster.Multipart.MaxStagedBytes,
	}
	if u, err := user.Current(); err == nil && u.Username != "" {
		c.owner, c.group = u.Username, u.Username
		if g, err := user.LookupGroupId(u.Gid); err == nil && g.Name != "" {
			c.group = g.Name
		}
	}
	// What the system identity creates belongs to the superuser.
	if su := cfg.Security.Superuser; su != "" && su != c.owner {
		c.owner, c.group = su, su
		if cfg.Security.Supergroup != "" {
			c.group = cfg.Security.Supergroup
		}
	}
	wt := strings.ToUpper(strings.TrimSpace(cfg.FSMaster.User.WriteType))
	if wt != "" {
		v, ok := api.WriteType_value[wt]
		if !ok || v == 0 {
			return c, fmt.Errorf("fsmaster.user.write-type %q: want MUST_CACHE, CACHE_THROUGH, THROUGH or ASYNC_THROUGH", cfg.FSMaster.User.WriteType)
		}
		c.writeType = api.WriteType(v)
	}
	if c.blockSize < 0 {
		return c, fmt.Errorf("fsmaster.user.block-size %d is negative", c.blockSize)
	}
	if c.maxStagedBytes < 0 {
		return c, fmt.Errorf("fsmaster.multipart.max-staged-bytes %d is negative (0: no bound)", c.maxStagedBytes)
	}
	return c, nil
}

// recoverState loads the newest checkpoint of the journal in dir and
// returns it with its sequence (an empty state and 0 without one).
func recoverState(dir string, log *zap.Logger) (*State, string, int64, error) {
	path, seq, err := journal.LatestCheckpoint(dir, log)
	if err != nil {
		return nil, "", 0, fmt.Errorf("find checkpoint in %s: %w", dir, err)
	}
	if path == "" {
		return NewState(), "", 0, nil
	}
	st, err := loadCheckpointFile(path)
	if err != nil {
		return nil, "", 0, err
	}
	if st.lastSeq != seq {
		return nil, "", 0, fmt.Errorf("checkpoint %s: content is at sequence %d, the file name says %d", path, st.lastSeq, seq)
	}
	return st, path, seq, nil
}

func loadCheckpointFile(path string) (*State, error) {
	db, err := journal.OpenCheckpoint(path)
	if err != nil {
		return nil, fmt.Errorf("open checkpoint %s: %w", path, err)
	}
	defer db.Close()
	var st *State
	err = db.View(func(tx *bolt.Tx) error {
		var err error
		st, err = LoadCheckpoint(tx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("load checkpoint %s: %w", path, err)
	}
	return st, nil
}

// Start opens the journal, recovers the state (newest checkpoint + the
// entries after it), creates the root mount on a fresh journal, and serves
// gRPC and HTTP. It returns once serving.
func (m *Master) Start(ctx context.Context) error {
	ncfg, err := nsConfigFrom(m.cfg)
	if err != nil {
		return err
	}
	dial, err := security.ClientOptions(m.cfg)
	if err != nil {
		return fmt.Errorf("fsmaster: %w", err)
	}
	m.dialOpts = &dial
	if m.cfg.FSMaster.Journal.Type == config.JournalEmbedded {
		err := m.startEmbedded(ctx, ncfg)
		if err == nil {
			m.logPersist()
		}
		return err
	}
	jc := m.cfg.FSMaster.Journal
	fd := newFeed(0)
	j, err := journal.Open(journal.Options{Dir: m.dir, SegmentEntries: jc.SegmentEntries, MaxBatch: jc.MaxBatchEntries, MaxLinger: jc.MaxLinger, WriterNice: jc.WriterNice, Logger: m.log,
		OnDurable: fd.advance})
	if err != nil {
		return fmt.Errorf("fsmaster: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			j.Close()
		}
	}()
	m.j = j
	st, path, seq, err := recoverState(m.dir, m.log)
	if err != nil {
		return fmt.Errorf("fsmaster: %w", err)
	}
	if path != "" {
		m.log.Info(fmt.Sprintf("loaded checkpoint %s at sequence %d", path, seq), zap.Int("inodes", st.InodeCount()))
		m.setCheckpoint(path, seq)
	}
	t0 := time.Now()
	replayed := 0
	if err := j.Replay(ctx, seq, func(e *api.JournalEntry) error {
		replayed++
		return st.Apply(e)
	}); err != nil {
		return fmt.Errorf("fsmaster: replay journal %s after %d: %w", m.dir, seq, err)
	}
	m.log.Info("journal replayed", zap.Int("entries", replayed), zap.Int64("sequence", st.lastSeq),
		zap.Int("inodes", st.InodeCount()), zap.Duration("took", time.Since(t0)))
	m.ns = newNamespace(st, journalAdapter{j}, ncfg, m.newBlockMap(), m.log)
	fd.reset(st.lastSeq) // everything replayed is durable
	m.ns.feed = fd
	m.ns.gate = newGate(m.cfg.FSMaster.MaxExpensiveCalls, m.cfg.FSMaster.ExpensiveCallWait)
	m.ns.onFail = m.journalFailed
	m.ns.onToBePersist = m.toBePersisted
	if !st.HasRoot() {
		if err := m.ns.bootstrap(ctx, m.cfg.FSMaster.UFS, m.cfg.FSMaster.UFSOptions); err != nil {
			return fmt.Errorf("fsmaster: create root mount: %w", err)
		}
		m.log.Info("created the root mount", zap.String("ufs", m.cfg.FSMaster.UFS))
	} else if root := st.mounts["/"]; root != nil && m.cfg.FSMaster.UFS != "" && root.GetUfsUri() != m.cfg.FSMaster.UFS {
		m.log.Warn("the root mount comes from the journal; fsmaster.ufs is ignored (reformat to change it)",
			zap.String("journal", root.GetUfsUri()), zap.String("config", m.cfg.FSMaster.UFS))
	}
	if path != "" {
		if _, err := m.deleteCovered(); err != nil {
			m.log.Warn("could not delete covered segments", zap.Error(err))
		}
	}
	if err := m.serve(); err != nil {
		return err
	}
	m.started = time.Now()
	bg, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	m.wg.Add(1)
	go m.checkpointWatchLoop(bg)
	// A single master leads from start to stop.
	m.startLeaderLoops(bg, &m.wg)
	m.logPersist()
	ok = true
	m.log.Info("FS master serving", zap.String("rpc", m.RPCAddr()), zap.String("http", m.HTTPAddr()),
		zap.Int64("journal_sequence", st.lastSeq))
	return nil
}

// logPersist says when async persist is off.
func (m *Master) logPersist() {
	if strings.TrimSpace(m.cfg.FSMaster.JobMaster) == "" {
		m.log.Info("async persist is off: no fsmaster.job-master")
	}
}

func (m *Master) serve() error {
	c := m.cfg.FSMaster
	rl, err := m.testRPCLn, error(nil)
	if rl == nil {
		rl, err = rpc.Listen(c.BindHost, c.RPCPort)
	}
	if err != nil {
		return fmt.Errorf("fsmaster rpc: %w", err)
	}
	hl, err := rpc.Listen(c.BindHost, c.HTTPPort)
	if err != nil {
		rl.Close()
		return fmt.Errorf("fsmaster http: %w", err)
	}
	so, err := security.ServerOptions(m.cfg, m.log)
	if err != nil {
		rl.Close()
		hl.Close()
		return fmt.Errorf("fsmaster: %w", err)
	}
	m.rpcL, m.httpL = rl, hl
	so.ConnBuffer = rpc.MasterConnBuffer // every worker keeps a connection
	// Only the cluster's own processes (block workers) register, heartbeat
	// and commit blocks; only they (and admins with the cluster token)
	// change or copy the FS masters' raft group — refused before anything
	// else is looked at, on a master with a local journal too.
	so.SystemOnly = []string{
		api.BlockMaster_RegisterWorker_FullMethodName, api.BlockMaster_WorkerHeartbeat_FullMethodName, api.BlockMaster_WorkerHeartbeats_FullMethodName,
		api.BlockMaster_CommitBlock_FullMethodName, api.BlockMaster_CommitBlocks_FullMethodName,
		"/" + api.EmbeddedJournal_ServiceDesc.ServiceName + "/",
		api.BlockMaster_WorkerLost_FullMethodName,
	}
	if e := m.emb; e != nil {
		so.Unary = append(so.Unary, e.leaderOnlyUnary)
		so.Stream = append(so.Stream, e.leaderOnlyStream)
	}
	// A heartbeat's server-side latency counts from its arrival.
	so.ArrivalTimes = []string{api.BlockMaster_WorkerHeartbeat_FullMethodName}
	m.hbTimer = rpc.NewCallTimer("alluvium_fsmaster_worker_heartbeat_seconds",
		"Block worker heartbeats: server-side latency from the call's arrival (from=arrival: queueing included) or of the handler alone (from=handler).")
	m.grpc = rpc.NewServer(so)
	srv := &server{m: m}
	api.RegisterFileSystemMasterServer(m.grpc, srv)
	api.RegisterBlockMasterServer(m.grpc, srv)
	api.RegisterEmbeddedJournalServer(m.grpc, journalService{m: m})
	m.http = rpc.NewHTTPServerWith(so, m.healthy)
	m.registerHTTP()
	go func() {
		if err := m.grpc.Serve(rl); err != nil {
			m.log.Error("rpc server stopped", zap.Error(err))
		}
	}()
	go func() {
		if err := m.http.Serve(hl); err != nil {
			m.log.Error("http server stopped", zap.Error(err))
		}
	}()
	return nil
}

// healthy is /healthz: a standby of an embedded journal is healthy too.
func (m *Master) healthy() error {
	m.ns.mu.RLock()
	defer m.ns.mu.RUnlock()
	if m.ns.broken != nil {
		return m.ns.usable()
	}
	return nil
}

// RPCAddr is the address gRPC listens on.
func (m *Master) RPCAddr() string {
	if m.rpcL == nil {
		return ""
	}
	return m.rpcL.Addr().String()
}

// HTTPServer is the http port's server (nil before Start), for what the
// command mounts on it besides the master's own API (the web console).
func (m *Master) HTTPServer() *rpc.HTTPServer { return m.http }

// AdvertisedRPCAddr is the rpc address clients are told to use:
// fsmaster.host with the port gRPC listens on.
func (m *Master) AdvertisedRPCAddr() string {
	if m.emb != nil {
		return m.emb.rpcAddr()
	}
	a := m.RPCAddr()
	_, port, err := net.SplitHostPort(a)
	if err != nil || m.cfg.FSMaster.Host == "" {
		return a
	}
	return net.JoinHostPort(m.cfg.FSMaster.Host, port)
}

// leaderInfo is the GetLeader answer: a single master names itself; a
// member of an embedded journal's group says who leads as raft knows it.
func (m *Master) leaderInfo() *api.GetLeaderResponse {
	if e := m.emb; e != nil {
		return e.group().LeaderInfo(e.raft.AppliedIndex())
	}
	self := m.AdvertisedRPCAddr()
	seq := uint64(m.j.LastSequence())
	return &api.GetLeaderResponse{
		LeaderId: self, LeaderRpcAddress: self, NodeId: self,
		CommitIndex: seq, AppliedIndex: seq,
		Servers: []*api.RaftServer{{Id: self, RpcAddress: self, Suffrage: "Voter", Leader: true}},
	}
}

// HTTPAddr is the address HTTP listens on.
func (m *Master) HTTPAddr() string {
	if m.httpL == nil {
		return ""
	}
	return m.httpL.Addr().String()
}

// streamDrain is how long Stop waits for calls in flight before it cuts
// them: two heartbeat intervals and a second, so every live worker's
// heartbeat stream has met its next beat (which ends it) and ordinary
// calls have finished.
func (m *Master) streamDrain() time.Duration {
	return 2*m.cfg.FSMaster.Worker.HeartbeatInterval + time.Second
}

// Stop stops serving (waiting for calls in flight until ctx ends, or
// streamDrain) and closes the journal.
func (m *Master) Stop(ctx context.Context) error {
	var err error
	m.stopOnce.Do(func() {
		m.stopping.Store(true)
		if m.cancel != nil {
			m.cancel()
		}
		if m.emb != nil {
			// Leave the lead first: the leader's loops stop, writes fail.
			m.emb.leaveLead()
		}
		if m.ns != nil {
			m.ns.feed.close() // long polls end now
		}
		if m.grpc != nil {
			// A live worker's heartbeat stream ends at its next beat; a
			// frozen one's would hold the stop until ctx ends.
			rpc.StopServer(ctx, m.grpc, m.streamDrain())
		}
		if m.http != nil {
			_ = m.http.Shutdown(ctx)
		}
		if m.emb != nil {
			err = m.emb.stop()
		}
		m.wg.Wait()
		if m.ns != nil {
			m.ns.closeUFS()
		}
		if m.j != nil {
			err = m.j.Close()
		}
	})
	return err
}

// tick runs f every d (def when d is not positive) until ctx ends, and
// marks the loop done: the master's background loops are all this shape.
func (m *Master) tick(ctx context.Context, d, def time.Duration, f func()) {
	defer m.wg.Done()
	if d <= 0 {
		d = def
	}
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}

// deleteCovered deletes the journal segments every retained checkpoint
// covers (fsmaster.journal.checkpoints-retained of them), not just the
// newest: if the newest checkpoint is found damaged at a restart, the one
// before it plus the segments after it still recover everything.
func (m *Master) deleteCovered() (int, error) {
	upTo, err := journal.RetainedCoverage(m.dir, m.cfg.FSMaster.Journal.CheckpointsRetained)
	if err != nil || upTo == 0 {
		return 0, err
	}
	return m.j.DeleteCoveredSegments(upTo)
}

func (m *Master) setCheckpoint(path string, seq int64) {
	m.lastCkptSeq.Store(seq)
	m.lastCkptPath.Store(path)
	m.lastCkptTime.Store(time.Now().UnixMilli())
}

// checkpointWatchLoop notices checkpoints the secondary writes and deletes
// the segments they cover.
func (m *Master) checkpointWatchLoop(ctx context.Context) {
	m.tick(ctx, m.cfg.FSMaster.Journal.CheckpointPollInterval, time.Second, func() { m.adoptNewCheckpoint() })
}

// adoptNewCheckpoint deletes the segments covered by a checkpoint newer
// than the last one seen, and returns its sequence.
func (m *Master) adoptNewCheckpoint() int64 {
	newest := newestCheckpointName(m.dir)
	if newest <= m.lastCkptSeq.Load() {
		return m.lastCkptSeq.Load()
	}
	path, seq, err := journal.LatestCheckpoint(m.dir, m.log)
	if err != nil || path == "" || seq <= m.lastCkptSeq.Load() {
		return m.lastCkptSeq.Load()
	}
	m.setCheckpoint(path, seq)
	n, err := m.deleteCovered()
	if err != nil {
		m.log.Warn("could not delete covered segments", zap.Error(err))
	}
	m.log.Info("new checkpoint", zap.String("path", path), zap.Int64("sequence", seq), zap.Int("segments_deleted", n))
	return seq
}

// Checkpoint makes a checkpoint covering at least the current sequence:
// the secondary writes it when one is alive, else the master itself.
func (m *Master) Checkpoint(ctx context.Context) (string, int64, error) {
	m.ckptMu.Lock()
	defer m.ckptMu.Unlock()
	if m.emb != nil {
		return m.emb.checkpoint(ctx)
	}
	m.ns.mu.RLock()
	target, last := m.ns.st.lastSeq, m.ns.last
	m.ns.mu.RUnlock()
	if last != nil {
		if err := last.Wait(ctx); err != nil {
			return "", 0, err
		}
	}
	if err := m.j.Rotate(); err != nil {
		return "", 0, fmt.Errorf("rotate journal: %w", err)
	}
	if secondaryAlive(m.dir) {
		path, seq, err := m.askSecondary(ctx, target)
		if err == nil {
			m.afterCheckpoint(path, seq)
			return path, seq, nil
		}
		if ctx.Err() != nil {
			return "", 0, err
		}
		m.log.Warn("secondary did not write the checkpoint; writing it here", zap.Error(err))
	}
	path, seq, err := m.selfCheckpoint(ctx)
	if err != nil {
		return "", 0, err
	}
	m.afterCheckpoint(path, seq)
	return path, seq, nil
}

func (m *Master) afterCheckpoint(path string, seq int64) {
	if seq > m.lastCkptSeq.Load() {
		m.setCheckpoint(path, seq)
	}
	if _, err := m.deleteCovered(); err != nil {
		m.log.Warn("could not delete covered segments", zap.Error(err))
	}
	if err := journal.RemoveOldCheckpoints(m.dir, m.cfg.FSMaster.Journal.CheckpointsRetained); err != nil {
		m.log.Warn("could not remove old checkpoints", zap.Error(err))
	}
}

// askSecondary leaves a request for a checkpoint at target or later and
// waits until one exists, the secondary dies, or the timeout passes.
func (m *Master) askSecondary(ctx context.Context, target int64) (string, int64, error) {
	if err := writeCheckpointRequest(m.dir, target); err != nil {
		return "", 0, err
	}
	timeout := m.cfg.FSMaster.Journal.CheckpointTimeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	deadline := time.Now().Add(timeout)
	for {
		if newestCheckpointName(m.dir) >= target {
			path, seq, err := journal.LatestCheckpoint(m.dir, m.log)
			if err == nil && path != "" && seq >= target {
				// The request is answered: take it away now rather than
				// when the secondary next looks, so none is left behind
				// once the call returns.
				removeCheckpointRequest(m.dir, seq)
				return path, seq, nil
			}
		}
		if !secondaryAlive(m.dir) {
			return "", 0, errors.New("the secondary stopped")
		}
		if time.Now().After(deadline) {
			return "", 0, fmt.Errorf("no checkpoint at sequence %d after %s", target, timeout)
		}
		select {
		case <-ctx.Done():
			return "", 0, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// selfCheckpoint writes the master's own state. Writers wait meanwhile.
func (m *Master) selfCheckpoint(ctx context.Context) (string, int64, error) {
	m.ns.mu.RLock()
	defer m.ns.mu.RUnlock()
	if err := m.ns.usable(); err != nil {
		return "", 0, err
	}
	// Everything in the state must be durable before a checkpoint may
	// cover it; no entry is appended while the read lock is held.
	if m.ns.last != nil {
		if err := m.ns.last.Wait(ctx); err != nil {
			return "", 0, err
		}
	}
	seq := m.ns.st.lastSeq
	t0 := time.Now()
	path, err := journal.WriteCheckpoint(m.dir, seq, m.ns.st.WriteCheckpoint)
	if err != nil {
		return "", 0, err
	}
	m.log.Info("wrote checkpoint", zap.String("path", path), zap.Int64("sequence", seq), zap.Duration("took", time.Since(t0)))
	return path, seq, nil
}

// Info reports the master's state for GetMasterInfo and fsadmin report.
func (m *Master) Info() *api.GetMasterInfoResponse {
	m.ns.mu.RLock()
	inodes := m.ns.st.InodeCount()
	root := m.ns.st.mounts["/"]
	m.ns.mu.RUnlock()
	live, lost, capacity := m.ns.blocks.summary()
	resp := &api.GetMasterInfoResponse{
		Version: Version, StartTimeMs: m.started.UnixMilli(), RpcAddress: m.AdvertisedRPCAddr(),
		LastCheckpointSequence: m.lastCkptSeq.Load(), LastCheckpointTimeMs: m.lastCkptTime.Load(),
		InodeCount: int64(inodes), LiveWorkers: int32(live), LostWorkers: int32(lost), Capacity: capacity,
		JournalType: config.JournalLocal,
	}
	if e := m.emb; e != nil {
		_, seq := e.fsm.position()
		resp.JournalType, resp.JournalSequence = config.JournalEmbedded, seq
		resp.NodeId, resp.Role, resp.AppliedIndex, resp.CommitIndex = e.self.ID, e.role(), e.raft.AppliedIndex(), e.raft.CommitIndex()
	} else {
		resp.JournalSequence, resp.JournalSegments = m.j.LastSequence(), int32(len(m.j.Segments()))
		resp.Role = "LEADER"
	}
	if root != nil {
		resp.UfsRootMountId = root.GetMountId()
		resp.UfsRoot = root.GetUfsUri()
	}
	return resp
}

// Format initialises the journal of cfg (refusing a non-empty one unless
// force) and creates the root directory and the root mount from
// fsmaster.ufs.
func Format(ctx context.Context, cfg *config.Config, force bool, log *zap.Logger) error {
	if log == nil {
		log = zap.NewNop()
	}
	dir := cfg.FSMaster.Journal.Dir
	ncfg, err := nsConfigFrom(cfg)
	if err != nil {
		return err
	}
	// Check the root UFS first: a bad URI must not leave a wiped journal.
	fs, err := ufs.Open(ctx, cfg.FSMaster.UFS, cfg.FSMaster.UFSOptions)
	if err != nil {
		return fmt.Errorf("format: root UFS (fsmaster.ufs / --ufs): %w", err)
	}
	fs.Close()
	if cfg.FSMaster.Journal.Type == config.JournalEmbedded {
		// Each member is formatted empty; the first leader of the group
		// creates the root mount from its fsmaster.ufs.
		return journal.FormatEmbedded(dir, force)
	}
	if err := journal.Format(dir, force); err != nil {
		return err
	}
	j, err := journal.Open(journal.Options{Dir: dir, SegmentEntries: cfg.FSMaster.Journal.SegmentEntries, MaxBatch: cfg.FSMaster.Journal.MaxBatchEntries, MaxLinger: cfg.FSMaster.Journal.MaxLinger, Logger: log})
	if err != nil {
		return err
	}
	ns := newNamespace(NewState(), journalAdapter{j}, ncfg, nil, log)
	if err := ns.bootstrap(ctx, cfg.FSMaster.UFS, cfg.FSMaster.UFSOptions); err != nil {
		j.Close()
		return err
	}
	return j.Close()
}

// JournalStats returns the journal's counters (entries made durable, group
// commits), for benchmarks and reports.
func (m *Master) JournalStats() journal.Stats {
	if e := m.emb; e != nil {
		st := e.rj.stats()
		_, st.LastSequence = e.fsm.position()
		// Batches: log-store writes, each one fsync on this master.
		st.Batches = int64(e.parts.Counted.Writes())
		return st
	}
	return m.j.Stats()
}
