package jobmaster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/client"
	"github.com/alluvium/alluvium/internal/config"
	"github.com/alluvium/alluvium/internal/raftgroup"
	"github.com/alluvium/alluvium/internal/rpc"
	"github.com/alluvium/alluvium/internal/security"
	"github.com/alluvium/alluvium/plans"
	"github.com/alluvium/alluvium/plans/plugin"
)

// Server is one job master: a raft member that, while it leads, plans jobs,
// hands tasks to job workers and tracks them.
type Server struct {
	cfg  *config.Config
	log  *zap.Logger
	opts serverOptions

	fsm      *FSM
	raft     *raft.Raft
	health   *raftgroup.Health // which members the leader cannot reach
	parts    *raftgroup.Parts
	notifyCh chan bool
	self     Peer
	peers    []Peer

	env    plans.Env
	envCls func() error
	penv   *plugin.Env // s.env with files and the exec allow list

	grpc    *grpc.Server
	srvOpts rpc.ServerOptions // authentication, TLS, limits (rpc and http)
	rpcLn   net.Listener
	rpcAddr string
	http    *httpServer

	leader atomic.Pointer[leaderState]
	fwd    forwarder
	// submitMu guards submitting: the submits under way by user, counted
	// against jobmaster.job.max-in-flight-per-user with its unfinished jobs.
	submitMu   sync.Mutex
	submitting map[string]int
	m          *metrics

	shutdown chan struct{}
	wg       sync.WaitGroup
	stopOnce sync.Once
	started  bool
}

// serverOptions replace real parts in tests.
type serverOptions struct {
	parts  *raftgroup.Parts // raft stores and transport; nil: bbolt + TCP
	env    plans.Env        // cluster access for plans; nil: dial jobmaster.master
	rpcLn  net.Listener     // nil: listen on jobmaster.bind-host:rpc-port
	noHTTP bool
	peers  []Peer // nil: from jobmaster.raft.peers
}

// New returns a job master for cfg. Start makes it serve.
func New(cfg *config.Config, log *zap.Logger) (*Server, error) {
	return newServer(cfg, log, serverOptions{})
}

func newServer(cfg *config.Config, log *zap.Logger, o serverOptions) (*Server, error) {
	if log == nil {
		log = zap.NewNop()
	}
	peers := o.peers
	if peers == nil {
		var err error
		if peers, err = ParsePeers(cfg.JobMaster.Raft.Peers); err != nil {
			return nil, err
		}
	}
	self, found := raftgroup.Self(peers, Peer{
		ID:       cfg.JobMaster.Raft.NodeID,
		RaftAddr: net.JoinHostPort(cfg.JobMaster.Host, fmt.Sprint(cfg.JobMaster.Raft.Port)),
		RPCAddr:  net.JoinHostPort(cfg.JobMaster.Host, fmt.Sprint(cfg.JobMaster.RPCPort)),
	})
	if !found && !cfg.JobMaster.Raft.Join {
		return nil, fmt.Errorf("jobmaster.raft.node-id %q is not among jobmaster.raft.peers (ids: %s); a member added with 'job raft add-peer' runs with --join (jobmaster.raft.join)", self.ID, raftgroup.IDs(peers))
	}
	if cfg.JobMaster.Worker.Timeout <= 0 || cfg.JobMaster.Worker.HeartbeatInterval <= 0 {
		return nil, fmt.Errorf("jobmaster.worker.timeout and heartbeat-interval must be positive")
	}
	if cfg.JobMaster.Task.MaxAttempts < 1 {
		return nil, fmt.Errorf("jobmaster.task.max-attempts = %d: want >= 1", cfg.JobMaster.Task.MaxAttempts)
	}
	s := &Server{
		cfg: cfg, log: log, opts: o, fsm: NewFSM(log.Named("fsm")),
		self: self, peers: peers, notifyCh: make(chan bool, 16), shutdown: make(chan struct{}),
		submitting: map[string]int{},
	}
	var err error
	if s.srvOpts, err = security.ServerOptions(cfg, log); err != nil {
		return nil, fmt.Errorf("jobmaster: %w", err)
	}
	// Job workers register and heartbeat as the cluster's own processes.
	s.srvOpts.ConnBuffer = rpc.MasterConnBuffer // every job worker keeps a connection
	// A poll's server-side overrun counts from its arrival.
	s.srvOpts.ArrivalTimes = []string{api.JobMaster_JobWorkerHeartbeat_FullMethodName}
	s.srvOpts.SystemOnly = []string{api.JobMaster_RegisterJobWorker_FullMethodName, api.JobMaster_JobWorkerHeartbeat_FullMethodName, api.JobMaster_JobWorkerPolls_FullMethodName,
		api.JobMaster_BlockWorkerLost_FullMethodName}
	if s.fwd.dial, err = security.ClientOptions(cfg); err != nil {
		return nil, fmt.Errorf("jobmaster: %w", err)
	}
	s.fwd.conns = client.NewPool(s.fwd.dial)
	s.m = newMetrics(s)
	return s, nil
}

// Start opens the raft stores, joins or bootstraps the group and serves
// gRPC and HTTP. It returns once serving; leadership follows within an
// election timeout.
func (s *Server) Start(ctx context.Context) error {
	if s.started {
		return errors.New("jobmaster: started twice")
	}
	s.started = true
	hl := raftgroup.HCLog(s.log, s.cfg.Log.Level)
	parts := s.opts.parts
	if parts == nil {
		var err error
		jm := s.cfg.JobMaster
		if parts, err = raftgroup.Open(raftgroup.StoreOptions{
			Dir: jm.Raft.Dir, DirKey: "jobmaster.raft.dir", BindHost: jm.BindHost, Host: jm.Host, HostKey: "jobmaster.host",
			Port: jm.Raft.Port, Magic: raftgroup.JobMasterMagic, Token: s.cfg.Security.Token,
			SrvTLS: s.srvOpts.TLS, CliTLS: s.fwd.dial.TLS, Log: s.log.Named("raft"), HCLog: hl,
		}); err != nil {
			return err
		}
	}
	parts.Count()
	s.parts = parts

	if s.opts.env != nil {
		s.env = s.opts.env
	} else {
		e, err := client.NewCluster([]string{s.cfg.JobMaster.Master}, client.Defaults(s.fwd.dial))
		if err != nil {
			s.closeParts()
			return fmt.Errorf("jobmaster.master: %w", err)
		}
		s.env, s.envCls = e, e.Close
	}
	s.env = newPlanEnv(s.env)
	// The exec plan refuses at submit a command the administrator did not
	// allow (job workers check their own list again).
	// Plugins in plans.dir become plans before any job is validated.
	plugin.Load(s.cfg.Plans.Dir, s.log)
	// Plugins read and write files as the job's user through it.
	penv, err := plugin.NewEnv(s.env, s.cfg, s.cfg.JobMaster.Master, "", s.fwd.dial)
	if err != nil {
		s.closeParts()
		return err
	}
	s.env, s.penv = penv, penv

	rc := raftgroup.Config(s.cfg.JobMaster.Raft, s.self.ID, s.notifyCh, hl)
	// A node started with --join waits empty on purpose: the group's
	// leader adds it (AddPeer) and sends it the state.
	boot, joining, err := raftgroup.Bootstrap(rc, parts, s.self, s.peers, s.cfg.JobMaster.Raft.Join)
	if err != nil {
		s.closeParts()
		return fmt.Errorf("%s: %w", s.cfg.JobMaster.Raft.Dir, err)
	}
	if boot {
		s.log.Info("raft group bootstrapped", zap.Int("voters", max(1, len(s.peers))))
	}
	r, err := raft.NewRaft(rc, s.fsm, parts.Logs, parts.Stable, parts.Snaps, parts.Trans)
	if err != nil {
		s.closeParts()
		return fmt.Errorf("raft: %w", err)
	}
	s.raft = r
	raftgroup.StandIfAlone(r, rc)
	s.health = raftgroup.WatchHealth(r)

	ln := s.opts.rpcLn
	if ln == nil {
		if ln, err = rpc.Listen(s.cfg.JobMaster.BindHost, s.cfg.JobMaster.RPCPort); err != nil {
			s.health.Close()
			_ = r.Shutdown().Error()
			s.closeParts()
			return fmt.Errorf("jobmaster rpc: %w", err)
		}
	}
	s.rpcLn = ln
	s.rpcAddr = s.self.RPCAddr
	if _, port, err := net.SplitHostPort(ln.Addr().String()); err == nil && s.cfg.JobMaster.RPCPort == 0 && len(s.peers) == 0 {
		s.rpcAddr = net.JoinHostPort(s.cfg.JobMaster.Host, port)
	}
	s.grpc = rpc.NewServer(s.srvOpts)
	api.RegisterJobMasterServer(s.grpc, &rpcServer{s: s})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.grpc.Serve(ln); err != nil {
			s.log.Error("jobmaster rpc server stopped", zap.Error(err))
		}
	}()
	if !s.opts.noHTTP {
		h, err := s.startHTTP()
		if err != nil {
			s.grpc.Stop()
			s.health.Close()
			_ = r.Shutdown().Error()
			s.closeParts()
			return err
		}
		s.http = h
	}
	s.wg.Add(2)
	go func() { defer s.wg.Done(); s.monitorLeadership() }()
	go func() { defer s.wg.Done(); s.m.sample(s.shutdown) }()
	s.log.Info("job master serving",
		zap.String("rpc", s.rpcAddr), zap.String("raft", string(parts.Trans.LocalAddr())),
		zap.String("id", s.self.ID), zap.Int("peers", len(s.peers)), zap.String("dir", s.cfg.JobMaster.Raft.Dir))
	if joining {
		s.group().WaitingToJoin(s.rpcAddr)
	}
	return nil
}

func (s *Server) closeParts() {
	if err := s.parts.Close(); err != nil {
		s.log.Warn("closing raft stores", zap.Error(err))
	}
	if s.envCls != nil {
		_ = s.envCls()
	}
	if s.penv != nil {
		_ = s.penv.Close()
	}
}

// Stop leaves leadership, stops serving and closes the raft stores.
func (s *Server) Stop(ctx context.Context) error {
	var err error
	s.stopOnce.Do(func() {
		if !s.started {
			return
		}
		close(s.shutdown)
		if s.http != nil {
			_ = s.http.Shutdown(ctx)
		}
		rpc.StopServer(ctx, s.grpc, 2*time.Second) // long polls would hold a graceful stop
		s.health.Close()
		if s.raft != nil {
			err = s.raft.Shutdown().Error()
		}
		s.wg.Wait()
		s.fwd.close()
		s.closeParts()
	})
	return err
}

// RPCAddr is the address clients and job workers use (host:port).
func (s *Server) RPCAddr() string { return s.rpcAddr }

// HTTPServer is the http port's server (nil before Start), for what the
// command mounts on it besides the job API (the web console).
func (s *Server) HTTPServer() *rpc.HTTPServer {
	if s.http == nil {
		return nil
	}
	return s.http.HTTPServer
}

// HTTPAddr is the http listener's address, or "".
func (s *Server) HTTPAddr() string {
	if s.http == nil {
		return ""
	}
	return s.http.addr
}

// IsLeader reports whether this job master leads and its leader loops run.
func (s *Server) IsLeader() bool { return s.leader.Load() != nil }

// FSM exposes the replicated state (read-only use).
func (s *Server) FSM() *FSM { return s.fsm }

// errNotLeader: this node stopped leading while a call was in progress.
var errNotLeader = errors.New("not the job master leader")

// apply runs one command through raft and returns its FSM response.
func (s *Server) apply(ctx context.Context, m proto.Message) (any, error) {
	defer markEnqueued(ctx)
	buf, err := encodeCommand(m)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	f := s.raft.Apply(buf, 30*time.Second)
	markEnqueued(ctx)
	// raft answers every future eventually — except entries already
	// committed and queued for the FSM when raft shuts down, whose futures
	// are never answered. Never let Stop wait on one of those.
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err = <-done:
	case <-s.shutdown:
		return nil, fmt.Errorf("%w: %v", errNotLeader, raft.ErrRaftShutdown)
	}
	if err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrRaftShutdown) || errors.Is(err, raft.ErrLeadershipTransferInProgress) {
			return nil, fmt.Errorf("%w: %v", errNotLeader, err)
		}
		return nil, err
	}
	s.m.applyLatency.Observe(time.Since(start).Seconds())
	return f.Response(), nil
}

// applyErr is apply for commands whose response is an error or nil.
func (s *Server) applyErr(ctx context.Context, m proto.Message) error {
	resp, err := s.apply(ctx, m)
	if err != nil {
		return err
	}
	if e, ok := resp.(error); ok {
		return e
	}
	return nil
}

// grpcErr maps internal errors to gRPC status errors.
func grpcErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, errNotLeader), errors.Is(err, errBrokerClosed), errors.Is(err, raft.ErrRaftShutdown):
		return status.Errorf(codes.Unavailable, "%s: %v (retry: a new leader is being elected)", op, err)
	case errors.Is(err, context.Canceled):
		return status.Errorf(codes.Canceled, "%s: %v", op, err)
	case errors.Is(err, context.DeadlineExceeded):
		return status.Errorf(codes.DeadlineExceeded, "%s: %v", op, err)
	}
	return status.Errorf(codes.Internal, "%s: %v", op, err)
}

// Stats are counters for benchmarks and tests.
type Stats struct {
	LogWrites     uint64 // raft log-store writes (one fsync each with bbolt)
	LogEntries    uint64 // raft entries written
	LogBytes      uint64 // their data bytes
	TaskUpdates   uint64 // task transitions written to raft by the collector
	UpdateEntries uint64 // raft entries that carried them
	Applied       uint64 // entries applied to the FSM
}

// Stats returns the counters since Start.
func (s *Server) Stats() Stats {
	st := Stats{Applied: s.fsm.applied.Load(), TaskUpdates: s.m.nUpdates.Load(), UpdateEntries: s.m.nEntries.Load()}
	if s.parts != nil && s.parts.Counted != nil {
		st.LogWrites, st.LogEntries, st.LogBytes = s.parts.Counted.Writes(), s.parts.Counted.Entries(), s.parts.Counted.Bytes()
	}
	return st
}
