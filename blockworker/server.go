package blockworker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/client"
	"github.com/alluvium/alluvium/internal/config"
	"github.com/alluvium/alluvium/internal/humanize"
	"github.com/alluvium/alluvium/internal/rpc"
	"github.com/alluvium/alluvium/internal/security"
)

// Worker is one block worker: the tiered store, its gRPC service, its http
// port, and its link to the FS master.
type Worker struct {
	cfg    *config.Config
	log    *zap.Logger
	store  *Store
	chunk  int
	chunks *rpc.ChunkPool // read buffers, lent to the transport while sent

	master  *client.FSMaster // follows the leading FS master
	link    *masterLink
	mounts  *mountTable
	peers   *client.Pool // other block workers (copies, transfers)
	leases  *leaseTable
	access  *accessChecker
	metrics *metrics
	http    *rpc.HTTPServer
	srvOpts rpc.ServerOptions
	grpc    *grpc.Server

	fillMu sync.Mutex
	fills  map[int64]*fill
	// throttles are the jobs' bandwidth budgets (throttle.go).
	throttles *throttles

	ctx    context.Context // the worker's lifetime
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	rpcAddr  net.Addr
	httpAddr net.Addr
	sockPath string // unix socket serving the rpc service, "" when none
	started  bool
	stopped  bool
}

// TierSpecs turns the worker.tiers configuration into store tiers.
func TierSpecs(tiers []config.TierConfig) ([]TierSpec, error) {
	var out []TierSpec
	for i, t := range tiers {
		q, err := humanize.ParseBytes(t.Quota)
		if err != nil {
			return nil, fmt.Errorf("worker.tiers[%d].quota: %w", i, err)
		}
		if t.Path == "" {
			return nil, fmt.Errorf("worker.tiers[%d].path: empty", i)
		}
		out = append(out, TierSpec{Alias: t.Alias, Dir: t.Path, Quota: q})
	}
	return out, nil
}

// New opens the store (re-indexing the blocks on disk) and prepares the
// worker; Start serves it.
func New(cfg *config.Config, log *zap.Logger) (*Worker, error) {
	if log == nil {
		log = zap.NewNop()
	}
	specs, err := TierSpecs(cfg.Worker.Tiers)
	if err != nil {
		return nil, fmt.Errorf("block worker: %w", err)
	}
	ev, err := NewEvictor(cfg.Worker.Eviction)
	if err != nil {
		return nil, fmt.Errorf("block worker: %w", err)
	}
	store, err := OpenStore(specs, ev, log)
	if err != nil {
		return nil, fmt.Errorf("block worker: %w", err)
	}
	chunk := int(cfg.Worker.ChunkSize)
	if chunk <= 0 {
		chunk = DefaultChunkSize
	}
	chunk = min(max(chunk, minChunkSize), maxChunkSize)
	so, err := security.ServerOptions(cfg, log)
	if err != nil {
		return nil, fmt.Errorf("block worker: %w", err)
	}
	// Bulk moves between workers and UFS writes on behalf of a job are for
	// the cluster's job workers (acting for the job's submitter) only.
	so.SystemOnly = []string{
		api.BlockWorker_MoveBlock_FullMethodName, api.BlockWorker_CacheBlock_FullMethodName,
		api.BlockWorker_CacheBlocks_FullMethodName, api.BlockWorker_CopyBlockFrom_FullMethodName,
		api.BlockWorker_WriteUfsFileFrom_FullMethodName, api.BlockWorker_HashBlocks_FullMethodName,
		api.BlockWorker_WriteUfsFilesFrom_FullMethodName,
	}
	dial, err := security.ClientOptions(cfg)
	if err != nil {
		return nil, fmt.Errorf("block worker: %w", err)
	}
	master, err := client.NewFSMaster([]string{cfg.Worker.Master}, client.Defaults(dial))
	if err != nil {
		return nil, fmt.Errorf("block worker: FS master %s: %w", cfg.Worker.Master, err)
	}
	lease := cfg.Worker.LeaseTimeout
	if lease <= 0 {
		lease = 5 * time.Minute
	}
	w := &Worker{
		cfg: cfg, log: log, store: store, chunk: chunk, chunks: rpc.NewChunkPool(chunk),
		master:  master,
		mounts:  newMountTable(master.FS()),
		leases:  newLeaseTable(lease),
		peers:   client.NewPool(dial),
		srvOpts: so,
		fills:   map[int64]*fill{},
	}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	w.access = newAccessChecker(master.BlockMaster(), cfg.Worker.AccessCacheTTL)
	w.link = newMasterLink(master.BlockMaster(), store, log, cfg.FSMaster.Worker.HeartbeatInterval, w.Address)
	w.link.onCmd = w.removeBlocks
	w.link.onPin = w.pinBlocks
	store.SetListener(w.link)
	w.http = rpc.NewHTTPServerWith(so, w.healthy)
	w.metrics = newMetrics(w.http.Registry, store, w.fillsRunning)
	w.throttles = newThrottles(func(n int) { w.metrics.bytesThrottled.Add(float64(n)) })
	return w, nil
}

// Start listens on the rpc and http ports, starts registering with the FS
// master, and returns once serving. It waits up to 5 s (or ctx) for the
// first registration, so ID is set when the master is up; a master that is
// not is retried in the background.
func (w *Worker) Start(ctx context.Context) error {
	w.mu.Lock()
	if w.started {
		w.mu.Unlock()
		return errors.New("block worker: already started")
	}
	w.started = true
	w.mu.Unlock()
	bind := w.cfg.Worker.BindHost
	rl, err := rpc.Listen(bind, w.cfg.Worker.RPCPort)
	if err != nil {
		return fmt.Errorf("block worker rpc: %w", err)
	}
	hl, err := rpc.Listen(bind, w.cfg.Worker.HTTPPort)
	if err != nil {
		rl.Close()
		return fmt.Errorf("block worker http: %w", err)
	}
	w.mu.Lock()
	w.rpcAddr, w.httpAddr = rl.Addr(), hl.Addr()
	w.mu.Unlock()
	w.grpc = rpc.NewServer(w.srvOpts)
	api.RegisterBlockWorkerServer(w.grpc, &service{w: w})
	if ul := w.listenUnix(); ul != nil {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			if err := w.grpc.Serve(ul); err != nil {
				w.log.Error("block worker unix socket server stopped", zap.Error(err))
			}
		}()
	}
	w.wg.Add(4)
	go func() {
		defer w.wg.Done()
		if err := w.grpc.Serve(rl); err != nil {
			w.log.Error("block worker rpc server stopped", zap.Error(err))
		}
	}()
	go func() {
		defer w.wg.Done()
		if err := w.http.Serve(hl); err != nil {
			w.log.Error("block worker http server stopped", zap.Error(err))
		}
	}()
	go func() {
		defer w.wg.Done()
		w.link.run(w.ctx)
	}()
	go func() {
		defer w.wg.Done()
		w.reapLeases()
	}()
	w.log.Info("block worker serving", zap.String("rpc", rl.Addr().String()), zap.String("http", hl.Addr().String()),
		zap.String("master", w.cfg.Worker.Master), zap.Any("tiers", w.store.Usage()))
	wait, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	select {
	case <-w.link.firstReg:
	case <-wait.Done():
		w.log.Warn("not yet registered with the FS master; retrying in the background", zap.String("master", w.cfg.Worker.Master))
	}
	return nil
}

// listenUnix opens the worker's unix socket (worker.domain-socket), which
// local clients use instead of loopback TCP. Failing to is not fatal: they
// fall back to TCP.
func (w *Worker) listenUnix() net.Listener {
	p := w.cfg.Worker.DomainSocket
	switch p {
	case "off":
		return nil
	case "":
		p = filepath.Join(w.cfg.Worker.Dir, "worker.sock")
	}
	if len(p) > 100 { // sun_path is 108 bytes
		w.log.Info("no unix socket: path too long", zap.String("path", p))
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		w.log.Warn("no unix socket", zap.String("path", p), zap.Error(err))
		return nil
	}
	// A socket left by a worker that was killed.
	if st, err := os.Lstat(p); err == nil && st.Mode()&os.ModeSocket != 0 {
		_ = os.Remove(p)
	}
	l, err := net.Listen("unix", p)
	if err != nil {
		w.log.Warn("no unix socket", zap.String("path", p), zap.Error(err))
		return nil
	}
	// As open as the TCP port: a caller authenticates on it the same way
	// (token or certificate), and a client running as another user (a pod
	// beside a worker in Kubernetes) must be able to connect.
	if err := os.Chmod(p, 0o666); err != nil {
		w.log.Warn("unix socket mode", zap.String("path", p), zap.Error(err))
	}
	w.mu.Lock()
	w.sockPath = p
	w.mu.Unlock()
	return l
}

// DomainSocket returns the unix socket path serving the rpc service, or "".
func (w *Worker) DomainSocket() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.sockPath
}

// Stop stops serving: in-flight calls get until ctx ends, then are cut.
func (w *Worker) Stop(ctx context.Context) error {
	w.mu.Lock()
	if w.stopped {
		w.mu.Unlock()
		return nil
	}
	w.stopped = true
	started := w.started
	w.mu.Unlock()
	w.cancel()
	var err error
	if started {
		rpc.StopServer(ctx, w.grpc, 0)
		err = w.http.Shutdown(ctx)
	}
	w.wg.Wait()
	w.store.Close()
	w.mounts.close()
	w.peers.Close()
	if cerr := w.master.Close(); err == nil {
		err = cerr
	}
	w.log.Info("block worker stopped")
	return err
}

// RPCAddr returns the rpc listen address (host:port) once started.
func (w *Worker) RPCAddr() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.rpcAddr == nil {
		return ""
	}
	return w.rpcAddr.String()
}

// HTTPAddr returns the http listen address once started.
func (w *Worker) HTTPAddr() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.httpAddr == nil {
		return ""
	}
	return w.httpAddr.String()
}

// ID returns the worker id the FS master assigned (0 before registration).
func (w *Worker) ID() int64 { return w.link.ID() }

// WaitRegistered waits for the first registration with the FS master.
func (w *Worker) WaitRegistered(ctx context.Context) error {
	select {
	case <-w.link.firstReg:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("block worker: not registered with the FS master %s: %w", w.cfg.Worker.Master, ctx.Err())
	}
}

// Address is the address this worker advertises: worker.host with the
// bound ports; the data port is the colocated job worker's when the role
// is "all".
func (w *Worker) Address() *api.WorkerNetAddress {
	a := &api.WorkerNetAddress{Host: w.cfg.Worker.Host}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.rpcAddr != nil {
		a.RpcPort = int32(portOf(w.rpcAddr))
	}
	if w.httpAddr != nil {
		a.WebPort = int32(portOf(w.httpAddr))
	}
	if w.cfg.Worker.Role == "all" {
		a.DataPort = int32(w.cfg.JobWorker.RPCPort)
	}
	return a
}

func portOf(a net.Addr) int {
	_, p, _ := net.SplitHostPort(a.String())
	n, _ := strconv.Atoi(p)
	return n
}

// Store exposes the block store (for tests and the bench).
func (w *Worker) Store() *Store { return w.store }

func (w *Worker) healthy() error {
	if !w.link.isRegistered() {
		return fmt.Errorf("not registered with the FS master %s", w.cfg.Worker.Master)
	}
	return nil
}

// removeBlocks carries out the master's REMOVE_BLOCKS command.
func (w *Worker) removeBlocks(_ context.Context, ids []int64) {
	n := 0
	for _, id := range ids {
		if err := w.store.Remove(id); err == nil {
			n++
		}
	}
	w.log.Debug("removed blocks on the master's command", zap.Int("asked", len(ids)), zap.Int("removed", n))
}

// pinBlocks pins or unpins blocks on the master's command: a pinned block
// is never evicted (its file is pinned, or this is the only copy of bytes
// not in the UFS yet). A block gone meanwhile is skipped; its removal is in
// the next heartbeat.
func (w *Worker) pinBlocks(ids []int64, pinned bool) {
	n := 0
	for _, id := range ids {
		if err := w.store.SetPinned(id, pinned); err == nil {
			n++
		}
	}
	w.log.Debug("pinned blocks on the master's command", zap.Bool("pinned", pinned), zap.Int("asked", len(ids)), zap.Int("done", n))
}

// promote moves a block to the top tier in the background (CACHE_PROMOTE).
func (w *Worker) promote(id int64) {
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		if err := w.store.Move(id, w.store.TopTier()); err != nil {
			w.log.Debug("promote block", zap.Int64("block", id), zap.Error(err))
		}
	}()
}

func (w *Worker) reapLeases() {
	tick := min(max(w.leases.ttl/4, 100*time.Millisecond), 10*time.Second)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-w.ctx.Done():
			return
		case now := <-t.C:
			for _, id := range w.leases.expired(now) {
				w.log.Warn("short-circuit lease expired without close", zap.Int64("block", id))
				w.store.Unlease(id)
			}
		}
	}
}
