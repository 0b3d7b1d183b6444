package jobmaster

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"golang.org/x/time/rate"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/config"
	"github.com/alluvium/alluvium/internal/raftgroup"
	"github.com/alluvium/alluvium/internal/rpc"
	"github.com/alluvium/alluvium/jobworker"
	"github.com/alluvium/alluvium/plans"
	"github.com/alluvium/alluvium/plans/spec"
)

// The test cluster is modelled on Nomad's nomad/testing.go: real servers
// with short timeouts, here on hashicorp/raft's in-memory transport (and
// in-memory stores unless a test wants bbolt), real gRPC on loopback, and
// real job workers running a test plan.

// testPlan makes {"tasks": N} tasks. A task sleeps sleepMs, blocks until
// cancelled when block is set, and fails when its index is in fail.
type testPlan struct{}

type testConfig struct {
	Tasks     int   `json:"tasks"`
	SleepMs   int   `json:"sleepMs,omitempty"`
	Block     bool  `json:"block,omitempty"`
	Fail      []int `json:"fail,omitempty"`
	FailFirst int   `json:"failFirst,omitempty"` // every task fails its first N attempts
	// BlockFirst: every task's first N attempts block until cancelled.
	BlockFirst int     `json:"blockFirst,omitempty"`
	Bytes      int64   `json:"bytes,omitempty"`
	Bandwidth  int64   `json:"bandwidth,omitempty"`
	Tag        string  `json:"tag,omitempty"`
	Verify     bool    `json:"verify,omitempty"`
	Extra      []int64 `json:"extra,omitempty"`
	// Workers restricts the job to these block workers (its limits);
	// Place puts every task beside the block worker at this address.
	Workers []string `json:"workers,omitempty"`
	Place   string   `json:"place,omitempty"`
}

// testRuns records what tasks saw, per tag.
var testRuns sync.Map // tag → *runLog

type runLog struct {
	started  atomic.Int64
	finished atomic.Int64
	canceled atomic.Int64
	mu       sync.Mutex
	seen     map[string]int           // "job/index" → runs
	limits   map[string]int64         // block worker beside the job worker → bandwidth share it ran with
	lims     map[string]*rate.Limiter // block worker beside the job worker → its job's limiter (the share now)
	release  map[string]chan struct{} // block worker → closed: its blocked tasks complete
}

// share is the bandwidth share the job worker beside block worker bw runs
// the log's job with now (0: none seen).
func (l *runLog) share(bw string) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if lim := l.lims[bw]; lim != nil {
		return int64(lim.Limit())
	}
	return 0
}

// releaseCh is closed to let the blocked tasks beside block worker bw
// complete.
func (l *runLog) releaseCh(bw string) chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	ch := l.release[bw]
	if ch == nil {
		ch = make(chan struct{})
		l.release[bw] = ch
	}
	return ch
}

var tagSeq atomic.Int64

// uniqueTag names one test run's task log (tests may run more than once).
func uniqueTag(t *testing.T) string {
	return fmt.Sprintf("%s#%d", t.Name(), tagSeq.Add(1))
}

func runsOf(tag string) *runLog {
	v, _ := testRuns.LoadOrStore(tag, &runLog{seen: map[string]int{}, limits: map[string]int64{},
		lims: map[string]*rate.Limiter{}, release: map[string]chan struct{}{}})
	return v.(*runLog)
}

func (testPlan) Name() string { return "test" }

func decodeTest(b []byte) (testConfig, error) {
	var c testConfig
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("test config: %w", err)
	}
	return c, nil
}

func (testPlan) Validate(ctx context.Context, env plans.Env, config []byte) (spec.Valid, error) {
	c, err := decodeTest(config)
	if err != nil {
		return spec.Valid{}, err
	}
	if c.Tasks < 0 {
		return spec.Valid{}, fmt.Errorf("tasks < 0")
	}
	b, err := json.Marshal(c)
	return spec.Valid{Config: b, Limits: spec.Limits{Bandwidth: c.Bandwidth, Workers: c.Workers}}, err
}

type testPlanner struct {
	c    testConfig
	next int
}

func (testPlan) NewPlanner(ctx context.Context, env plans.Env, job plans.Job) (plans.Planner, error) {
	c, err := decodeTest(job.Config)
	if err != nil {
		return nil, err
	}
	p := &testPlanner{c: c}
	if len(job.Cursor) > 0 {
		if err := json.Unmarshal(job.Cursor, &p.next); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func (p *testPlanner) Next(ctx context.Context, max int) (plans.Batch, error) {
	var b plans.Batch
	for len(b.Tasks) < max && p.next < p.c.Tasks {
		args, _ := json.Marshal(map[string]int{"i": p.next})
		b.Tasks = append(b.Tasks, plans.TaskSpec{Args: args, Description: fmt.Sprintf("/t/%d", p.next), Bytes: p.c.Bytes, BlockWorkerAddress: p.c.Place})
		p.next++
	}
	b.Cursor, _ = json.Marshal(p.next)
	b.Done = p.next >= p.c.Tasks
	return b, nil
}

func (p *testPlanner) Close() error { return nil }

func (testPlan) Run(ctx context.Context, env plans.Env, t *plans.Task) (plans.Result, error) {
	c, err := decodeTest(t.Config)
	if err != nil {
		return plans.Result{}, err
	}
	var a struct{ I int }
	_ = json.Unmarshal(t.Args, &a)
	log := runsOf(c.Tag)
	log.started.Add(1)
	log.mu.Lock()
	log.seen[fmt.Sprintf("%d/%d", t.JobID, a.I)]++
	if t.Limiter != nil {
		log.limits[t.LocalBlockWorker] = int64(t.Limiter.Limit())
		log.lims[t.LocalBlockWorker] = t.Limiter
	}
	log.mu.Unlock()
	defer log.finished.Add(1)
	if c.Block || int(t.Attempt) <= c.BlockFirst {
		select {
		case <-ctx.Done():
			log.canceled.Add(1)
			return plans.Result{}, ctx.Err()
		case <-log.releaseCh(t.LocalBlockWorker):
			return plans.Result{Bytes: c.Bytes}, nil
		}
	}
	if c.SleepMs > 0 {
		select {
		case <-time.After(time.Duration(c.SleepMs) * time.Millisecond):
		case <-ctx.Done():
			log.canceled.Add(1)
			return plans.Result{}, ctx.Err()
		}
	}
	if int(t.Attempt) <= c.FailFirst {
		return plans.Result{}, fmt.Errorf("attempt %d fails on purpose", t.Attempt)
	}
	for _, f := range c.Fail {
		if f == a.I {
			return plans.Result{Failed: []*api.FailedPath{{Path: fmt.Sprintf("/t/%d", a.I), Error: "no such block"}}}, fmt.Errorf("task %d fails on purpose", a.I)
		}
	}
	if t.Progress != nil {
		t.Progress(c.Bytes)
	}
	return plans.Result{Bytes: c.Bytes}, nil
}

func (testPlan) Done(ctx context.Context, env plans.Env, job plans.Job) (bool, error) {
	c, err := decodeTest(job.Config)
	if err != nil {
		return true, err
	}
	return !(c.Verify && job.Round == 0), nil
}

func init() { plans.Register(testPlan{}) }

// nopEnv: the test plan needs no cluster.
type nopEnv struct{}

func (nopEnv) FS() api.FileSystemMasterClient                    { return nil }
func (nopEnv) BlockMaster() api.BlockMasterClient                { return nil }
func (nopEnv) BlockWorker(string) (api.BlockWorkerClient, error) { return nil, fmt.Errorf("none") }

func testConfigFor(t testing.TB) *config.Config {
	t.Helper()
	l := config.NewLoader()
	l.Set("home", t.TempDir())
	cfg, err := l.Load()
	if err != nil {
		t.Fatal(err)
	}
	jm := &cfg.JobMaster
	jm.Host, jm.BindHost = "127.0.0.1", "127.0.0.1"
	jm.RPCPort, jm.HTTPPort = 0, 0
	// Short enough for failover tests to be quick, long enough that a
	// loaded 2-core machine running -race does not depose a healthy leader
	// (at 100 ms, and now and then at 250 ms in CI, scheduling stalls cost
	// elections mid-test: a leader's lease is half the heartbeat timeout).
	jm.Raft.HeartbeatTimeout = time.Second
	jm.Raft.ElectionTimeout = time.Second
	jm.Worker.Timeout = time.Second
	jm.Worker.HeartbeatInterval = 100 * time.Millisecond
	jm.Task.Timeout = 20 * time.Second
	jm.Task.MaxAttempts = 3
	jm.Planner.BatchSize = 50
	cfg.Worker.Host, cfg.Worker.BindHost = "127.0.0.1", "127.0.0.1"
	cfg.JobWorker.Threads = 4
	cfg.JobWorker.ProgressInterval = 50 * time.Millisecond
	return cfg
}

type cluster struct {
	t       *testing.T
	env     plans.Env // the masters' cluster access; nil: nopEnv
	cfgs    []*config.Config
	servers []*Server
	trans   []*raft.InmemTransport
	parts   []*raftgroup.Parts
	peers   []Peer
	lns     []net.Listener
	workers []*jobworker.Worker
	down    map[int]bool
}

// newCluster starts n job masters in one raft group on the in-memory
// transport. tweak adjusts each node's config.
func newCluster(t *testing.T, n int, tweak func(*config.Config)) *cluster {
	t.Helper()
	return newClusterWith(t, n, tweak, nil)
}

// newClusterWith is newCluster whose masters reach the cluster through env.
func newClusterWith(t *testing.T, n int, tweak func(*config.Config), env plans.Env) *cluster {
	t.Helper()
	c := &cluster{t: t, down: map[int]bool{}, env: env}
	for i := 0; i < n; i++ {
		cfg := testConfigFor(t)
		cfg.JobMaster.Raft.NodeID = fmt.Sprintf("n%d", i)
		if tweak != nil {
			tweak(cfg)
		}
		_, tr := raft.NewInmemTransport("")
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		c.cfgs = append(c.cfgs, cfg)
		c.trans = append(c.trans, tr)
		c.lns = append(c.lns, ln)
		c.peers = append(c.peers, Peer{ID: cfg.JobMaster.Raft.NodeID, RaftAddr: string(tr.LocalAddr()), RPCAddr: ln.Addr().String()})
	}
	for i := range c.trans {
		for j := range c.trans {
			if i != j {
				c.trans[i].Connect(c.trans[j].LocalAddr(), c.trans[j])
			}
		}
	}
	for i := 0; i < n; i++ {
		store := raft.NewInmemStore()
		c.parts = append(c.parts, &raftgroup.Parts{Logs: store, Stable: store, Snaps: testSnapshots(t), Trans: c.trans[i]})
		c.servers = append(c.servers, nil)
		c.start(i)
	}
	t.Cleanup(c.stop)
	return c
}

// testSnapshots is a file snapshot store in a temp dir. raft's
// InmemSnapshotStore is not used: it lets a leader read the snapshot it is
// sending to a follower while a newer one is written into the same buffer
// (a data race the race detector reports in hashicorp/raft v1.7.3).
func testSnapshots(t testing.TB) raft.SnapshotStore {
	t.Helper()
	s, err := raft.NewFileSnapshotStoreWithLogger(t.TempDir(), 2, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (c *cluster) start(i int) {
	c.t.Helper()
	p := *c.parts[i]
	s, err := newServer(c.cfgs[i], testLogger(c.t).Named(c.peers[i].ID), serverOptions{
		parts: &p, env: c.masterEnv(), rpcLn: c.lns[i], noHTTP: false, peers: c.peers,
	})
	if err != nil {
		c.t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		c.t.Fatal(err)
	}
	c.servers[i] = s
	delete(c.down, i)
}

// kill stops node i as a crash would look to the others.
func (c *cluster) kill(i int) {
	c.t.Helper()
	for j := range c.trans {
		if j != i {
			c.trans[j].Disconnect(c.trans[i].LocalAddr())
		}
	}
	c.trans[i].DisconnectAll()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = c.servers[i].Stop(ctx)
	c.down[i] = true
}

func (c *cluster) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, w := range c.workers {
		_ = w.Stop(ctx)
	}
	for i, s := range c.servers {
		if s != nil && !c.down[i] {
			_ = s.Stop(ctx)
		}
	}
}

// leader waits for a node whose leader loops run.
func (c *cluster) leader() *Server {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for i, s := range c.servers {
			if !c.down[i] && s.IsLeader() {
				return s
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatal("no leader within 10s")
	return nil
}

func (c *cluster) index(s *Server) int {
	for i, x := range c.servers {
		if x == s {
			return i
		}
	}
	return -1
}

func (c *cluster) rpcAddrs() string {
	var a []string
	for _, p := range c.peers {
		a = append(a, p.RPCAddr)
	}
	return strings.Join(a, ",")
}

// client dials node i.
func (c *cluster) client(i int) api.JobMasterClient {
	c.t.Helper()
	cc, err := rpc.Dial(c.peers[i].RPCAddr, rpc.ClientOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cc.Close() })
	return api.NewJobMasterClient(cc)
}

// addWorker starts a real job worker that knows every job master.
func (c *cluster) addWorker(threads int) *jobworker.Worker {
	c.t.Helper()
	return c.addWorkerBeside(threads, jobworker.Colocated{})
}

// addWorkerBeside starts a job worker beside the block worker bw.
func (c *cluster) addWorkerBeside(threads int, bw jobworker.Colocated) *jobworker.Worker {
	c.t.Helper()
	return c.addWorkerWith(threads, bw, nopEnv{}, c.rpcAddrs())
}

func (c *cluster) masterEnv() plans.Env {
	if c.env != nil {
		return c.env
	}
	return nopEnv{}
}

// addWorkerWith starts a job worker beside bw that runs its tasks with env
// and reaches the job masters at masters.
func (c *cluster) addWorkerWith(threads int, bw jobworker.Colocated, env plans.Env, masters string) *jobworker.Worker {
	c.t.Helper()
	cfg := testConfigFor(c.t)
	cfg.JobWorker.JobMaster = masters
	cfg.JobWorker.Threads = threads
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	w, err := jobworker.NewWithOptions(cfg, testLogger(c.t).Named(fmt.Sprintf("w%d", len(c.workers))), bw, jobworker.Options{Env: env, Listener: ln})
	if err != nil {
		c.t.Fatal(err)
	}
	if err := w.Start(context.Background()); err != nil {
		c.t.Fatal(err)
	}
	c.workers = append(c.workers, w)
	return w
}

func testLogger(t testing.TB) *zap.Logger {
	if testing.Verbose() {
		return zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel))
	}
	return zap.NewNop()
}

func submitTest(t *testing.T, cl api.JobMasterClient, c testConfig, rid string) int64 {
	t.Helper()
	b, _ := json.Marshal(c)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var resp *api.SubmitJobResponse
	var err error
	for i := 0; i < 50; i++ {
		resp, err = cl.SubmitJob(ctx, &api.SubmitJobRequest{Plan: "test", ConfigJson: string(b), RequestId: rid})
		if err == nil {
			return resp.JobId
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("submit: %v", err)
	return 0
}

// waitJob waits until job id is in a terminal state and returns it.
func waitJob(t *testing.T, cl api.JobMasterClient, id int64, timeout time.Duration) *api.JobInfo {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last *api.JobInfo
	var err error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		var resp *api.GetJobResponse
		resp, err = cl.GetJob(ctx, &api.GetJobRequest{JobId: id})
		cancel()
		if err == nil {
			last = resp.Job
			if terminalJob(last.Status) {
				return last
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("job %d not finished within %s: last %v, err %v", id, timeout, last, err)
	return nil
}

func counterOf(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

func newTestWorker(t *testing.T, cfg *config.Config) (*jobworker.Worker, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	w, err := jobworker.NewWithOptions(cfg, testLogger(t).Named("worker"), jobworker.Colocated{}, jobworker.Options{Env: nopEnv{}, Listener: ln})
	if err != nil {
		return nil, err
	}
	return w, w.Start(context.Background())
}

func dialT(t *testing.T, addr string) api.JobMasterClient {
	t.Helper()
	cc, err := rpc.Dial(addr, rpc.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return api.NewJobMasterClient(cc)
}
