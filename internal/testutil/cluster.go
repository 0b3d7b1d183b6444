package testutil

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/config"
	"github.com/alluvium/alluvium/internal/jobview"
	"github.com/alluvium/alluvium/sdk"
)

// BlockSize is the block size of every Cluster (fsmaster.user.block-size):
// small, so little data makes multi-block files and many tasks.
const BlockSize = 1 << 20

// Port layout under a Cluster's PortBase P (200 ports, see PortBase): the FS
// master at P (rpc) and P+1 (http), P+2 (raft, embedded journal); worker i
// at P+20+4i.. (config.WorkerPorts, i < maxClusterWorkers); FS masters 1
// and 2 of an embedded journal at P+92+3(i-1) (rpc, http, raft); job master
// i under P+100+10i (rpc +3, http +4, raft +5, i < maxClusterJobMasters).
// P+190..P+199 are never bound, so a test may use one as a closed port.
const (
	jobMasterPortOffset  = 100
	jobMasterPortStride  = 10
	fsMasterPortOffset   = 92
	maxClusterWorkers    = (fsMasterPortOffset - 20) / 4
	maxClusterJobMasters = (190 - jobMasterPortOffset) / jobMasterPortStride
	maxClusterFSMasters  = 3
)

// ClusterOptions shape a Cluster. The zero value is one FS master with no
// job master and no worker.
type ClusterOptions struct {
	// Workers is how many workers StartCluster starts (up to 20).
	Workers int
	// JobMasters is how many job masters StartCluster starts (up to 9): 0,
	// and workers run the block role only; 1 runs alone; more form one
	// Raft group.
	JobMasters int
	// GrowJobMasters starts job master 0 alone (it bootstraps) and the
	// others with --join, empty, to be added with `job raft add-peer`;
	// each is named jm<i>.
	GrowJobMasters bool
	// MemQuota and HDDQuota size each worker's two tiers; 64MiB and 256MiB
	// when empty.
	MemQuota, HDDQuota string
	// Env is added to every process's and the CLI's environment after the
	// defaults (see Cluster.Env), so an entry here overrides one there.
	Env []string
	// FSMasterJobMaster points the FS master at the job masters
	// (fsmaster.job-master), so it hands ASYNC_THROUGH files to the job
	// service to persist.
	FSMasterJobMaster bool
	// ClientTimeout is the Client's per-call timeout; 20s when zero.
	ClientTimeout time.Duration
	// ReadyTimeout bounds each process start and WaitWorkers; 30s when zero.
	ReadyTimeout time.Duration
	// FSMasters is 1 (or 0): one FS master with a local journal; or 3: a
	// raft group of FS masters sharing an embedded journal
	// (fsmaster.journal.type: embedded), fsm0..fsm2. Clients get the list.
	FSMasters int
}

// Embedded reports whether the cluster's FS masters share an embedded
// journal.
func (o ClusterOptions) Embedded() bool { return o.FSMasters > 1 }

// Cluster is a test cluster of real alluvium processes on loopback, in the
// manner of Nomad's nomad.TestServer: an FS master, optionally a secondary,
// job masters and workers, each with its own ports (under one PortBase)
// and directories (under one temp dir). Every process is killed and the
// client closed when the test ends.
type Cluster struct {
	Opts     ClusterOptions
	Bin      string // the alluvium binary
	PortBase int
	Home     string // holds every process's home and the UFS
	UFSDir   string // the local directory mounted at /
	Master   string // FS master rpc address (with several, the comma-separated list)
	// MasterAddrs are the FS masters' rpc addresses, by index.
	MasterAddrs []string
	// JobMasterAddrs are the job masters' rpc addresses, by index.
	JobMasterAddrs []string
	// Env is the environment of every process and CLI run: the master
	// addresses, short timeouts (so faults show in seconds), BlockSize,
	// then Opts.Env.
	Env []string

	FSMaster   *Process   // the FS master (with several, FSMasters[0])
	FSMasters  []*Process // by index; nil until started
	Secondary  *Process
	JobMasters []*Process // by index; nil until started
	Workers    []*Process // by index; nil until started

	Client *sdk.Client
	Jobs   *sdk.Jobs // nil without job masters

	t testing.TB
}

// NewCluster lays out a cluster (ports, directories, environment) and
// starts nothing: for tests that start and restart each process themselves.
func NewCluster(t testing.TB, o ClusterOptions) *Cluster {
	t.Helper()
	if o.Workers < 0 || o.Workers > maxClusterWorkers {
		t.Fatalf("testutil: ClusterOptions.Workers %d: want 0..%d", o.Workers, maxClusterWorkers)
	}
	if o.JobMasters < 0 || o.JobMasters > maxClusterJobMasters {
		t.Fatalf("testutil: ClusterOptions.JobMasters %d: want 0..%d", o.JobMasters, maxClusterJobMasters)
	}
	if o.FSMasters != 0 && o.FSMasters != 1 && o.FSMasters != maxClusterFSMasters {
		t.Fatalf("testutil: ClusterOptions.FSMasters %d: want 1 or %d", o.FSMasters, maxClusterFSMasters)
	}
	if o.FSMasters == 0 {
		o.FSMasters = 1
	}
	if o.MemQuota == "" {
		o.MemQuota = "64MiB"
	}
	if o.HDDQuota == "" {
		o.HDDQuota = "256MiB"
	}
	if o.ClientTimeout == 0 {
		o.ClientTimeout = 20 * time.Second
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 30 * time.Second
	}
	c := &Cluster{Opts: o, Bin: Binary(t), PortBase: PortBase(t), Home: t.TempDir(), t: t}
	c.UFSDir = filepath.Join(c.Home, "ufs")
	if err := os.MkdirAll(c.UFSDir, 0o755); err != nil {
		t.Fatalf("testutil: UFS dir %s: %v", c.UFSDir, err)
	}
	for i := 0; i < o.FSMasters; i++ {
		rpc, _, _ := c.fsMasterPorts(i)
		c.MasterAddrs = append(c.MasterAddrs, fmt.Sprintf("localhost:%d", rpc))
	}
	c.Master = strings.Join(c.MasterAddrs, ",")
	c.FSMasters = make([]*Process, o.FSMasters)
	for i := 0; i < o.JobMasters; i++ {
		c.JobMasterAddrs = append(c.JobMasterAddrs, fmt.Sprintf("localhost:%d", c.jobMasterBase(i)+3))
	}
	jobMasters := strings.Join(c.JobMasterAddrs, ",")
	c.Env = []string{
		"ALLUVIUM_MASTER=" + c.Master,
		// Set even when empty, so a developer's own setting never leaks in.
		"ALLUVIUM_JOB_MASTER=" + jobMasters,
		// Liveness: short for tests that lose a worker, with room for a
		// loaded CI machine (at 2 s a -race worker's heartbeats, late under
		// load, cost live workers their tasks).
		"ALLUVIUM_FSMASTER_WORKER_TIMEOUT=5s",
		"ALLUVIUM_FSMASTER_WORKER_HEARTBEAT_INTERVAL=200ms",
		"ALLUVIUM_FSMASTER_USER_BLOCK_SIZE=" + fmt.Sprint(BlockSize),
		"ALLUVIUM_JOBMASTER_WORKER_TIMEOUT=4s",
		"ALLUVIUM_JOBMASTER_WORKER_HEARTBEAT_INTERVAL=200ms",
		"ALLUVIUM_JOBMASTER_RAFT_HEARTBEAT_TIMEOUT=300ms",
		"ALLUVIUM_JOBMASTER_RAFT_ELECTION_TIMEOUT=300ms",
		"ALLUVIUM_JOBWORKER_PROGRESS_INTERVAL=200ms",
		"ALLUVIUM_JOBWORKER_THREADS=4",
	}
	if o.FSMasterJobMaster {
		c.Env = append(c.Env, "ALLUVIUM_FSMASTER_JOB_MASTER="+jobMasters)
	}
	// exec uses the last of duplicate keys: Opts.Env wins.
	c.Env = append(c.Env, o.Env...)
	c.JobMasters = make([]*Process, o.JobMasters)
	c.Workers = make([]*Process, o.Workers)
	return c
}

// StartCluster starts the FS master, the job masters and the workers of o,
// connects Client (and Jobs), and waits until every worker is LIVE.
func StartCluster(t testing.TB, o ClusterOptions) *Cluster {
	t.Helper()
	c := NewCluster(t, o)
	c.StartFSMaster()
	// Together, not one by one: a Raft group elects only once a majority
	// runs.
	for i := range c.JobMasters {
		c.JobMasters[i] = c.startJobMaster(i)
	}
	for _, p := range c.JobMasters {
		p.WaitLog("jobmaster ready", c.Opts.ReadyTimeout)
	}
	for i := range c.Workers {
		c.StartWorker(i)
	}
	c.Connect()
	c.WaitWorkers(len(c.Workers))
	return c
}

// FSMasterHome is the (first) FS master's (and the secondary's) --home.
func (c *Cluster) FSMasterHome() string { return filepath.Join(c.Home, "master") }

// JobMasterHome is job master i's --home.
func (c *Cluster) JobMasterHome(i int) string { return filepath.Join(c.Home, fmt.Sprintf("jm%d", i)) }

// WorkerDir is worker i's --home; its tiers are its mem/ and hdd/.
func (c *Cluster) WorkerDir(i int) string { return filepath.Join(c.Home, fmt.Sprintf("worker%d", i)) }

func (c *Cluster) jobMasterBase(i int) int { return jobMasterPortBase(c.PortBase, i) }

// jobMasterPortBase is job master i's --port-base under base.
func jobMasterPortBase(base, i int) int { return base + jobMasterPortOffset + jobMasterPortStride*i }

func withEnv(env []string, extra []string) []string {
	return append(append([]string(nil), env...), extra...)
}

// fsMasterPorts are FS master i's rpc, http and raft ports.
func (c *Cluster) fsMasterPorts(i int) (rpc, http, raft int) {
	if i == 0 {
		return c.PortBase, c.PortBase + 1, c.PortBase + 2
	}
	p := c.PortBase + fsMasterPortOffset + 3*(i-1)
	return p, p + 1, p + 2
}

// FSMasterHomeOf is FS master i's --home (FSMasterHome for the first).
func (c *Cluster) FSMasterHomeOf(i int) string {
	if i == 0 {
		return c.FSMasterHome()
	}
	return filepath.Join(c.Home, fmt.Sprintf("master%d", i))
}

// StartFSMaster (re)starts the FS master — with an embedded journal, every
// FS master that is not running, together (a group elects only once a
// majority runs) — with extraEnv after Env, and waits until they serve
// (and, with several, one leads).
func (c *Cluster) StartFSMaster(extraEnv ...string) *Process {
	c.t.Helper()
	var started []*Process
	for i := range c.FSMasters {
		if p := c.FSMasters[i]; p != nil && p.Running() {
			continue
		}
		c.FSMasters[i] = c.startFSMaster(i, extraEnv)
		started = append(started, c.FSMasters[i])
	}
	for _, p := range started {
		p.WaitLog("fsmaster ready", c.Opts.ReadyTimeout)
	}
	c.FSMaster = c.FSMasters[0]
	if c.Opts.Embedded() {
		c.WaitFSLeader()
	}
	return c.FSMaster
}

// StartFSMasterOf (re)starts FS master i alone and waits until it serves.
func (c *Cluster) StartFSMasterOf(i int, extraEnv ...string) *Process {
	c.t.Helper()
	c.FSMasters[i] = c.startFSMaster(i, extraEnv)
	c.FSMasters[i].WaitLog("fsmaster ready", c.Opts.ReadyTimeout)
	if i == 0 {
		c.FSMaster = c.FSMasters[0]
	}
	return c.FSMasters[i]
}

func (c *Cluster) startFSMaster(i int, extraEnv []string) *Process {
	c.t.Helper()
	name, env, args := c.FSMasterCommand(i, extraEnv...)
	return Start(c.t, name, c.Bin, env, args...)
}

// FSMasterCommand is how FS master i is started: its process name, its
// environment (Env, then extraEnv) and its arguments — for a test that
// expects a start to fail.
func (c *Cluster) FSMasterCommand(i int, extraEnv ...string) (name string, env, args []string) {
	name = "fsmaster"
	args = []string{"fsmaster", "--home", c.FSMasterHomeOf(i), "--port-base", fmt.Sprint(c.PortBase), "--ufs", "file://" + c.UFSDir}
	env = withEnv(c.Env, extraEnv)
	if c.Opts.Embedded() {
		name = fmt.Sprintf("fsmaster%d", i)
		var peers []string
		for k := range c.FSMasters {
			rpc, _, raft := c.fsMasterPorts(k)
			peers = append(peers, fmt.Sprintf("fsm%d=localhost:%d|localhost:%d", k, raft, rpc))
		}
		rpc, http, raft := c.fsMasterPorts(i)
		// Ports of its own, so no --port-base (it would set them all);
		// without a job master, one at a port nothing binds (P+190).
		args = []string{"fsmaster", "--home", c.FSMasterHomeOf(i), "--ufs", "file://" + c.UFSDir,
			"--journal-type", "embedded", "--node-id", fmt.Sprintf("fsm%d", i), "--peers", strings.Join(peers, ",")}
		env = withEnv([]string{fmt.Sprintf("ALLUVIUM_FSMASTER_RPC_PORT=%d", rpc), fmt.Sprintf("ALLUVIUM_FSMASTER_HTTP_PORT=%d", http),
			fmt.Sprintf("ALLUVIUM_FSMASTER_RAFT_PORT=%d", raft), fmt.Sprintf("ALLUVIUM_FSMASTER_JOB_MASTER=localhost:%d", c.PortBase+190)}, env)
	}
	return name, env, args
}

// FSMasterRaftAddr is FS master i's raft address (embedded journal).
func (c *Cluster) FSMasterRaftAddr(i int) string {
	_, _, raft := c.fsMasterPorts(i)
	return fmt.Sprintf("localhost:%d", raft)
}

// KillFSMasters SIGKILLs every running FS master at once: with an embedded
// journal, a power loss of the whole group.
func (c *Cluster) KillFSMasters() {
	for _, p := range c.FSMasters {
		if p != nil {
			p.Kill()
		}
	}
}

// StopFSMasters stops every running FS master (SIGTERM, then wait).
func (c *Cluster) StopFSMasters(timeout time.Duration) error {
	var errs []error
	for _, p := range c.FSMasters {
		if p != nil && p.Running() {
			if err := p.Stop(timeout); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// WaitFSLeader waits until an FS master leads and returns its index.
func (c *Cluster) WaitFSLeader() int {
	c.t.Helper()
	leader := -1
	Eventually(c.t, c.Opts.ReadyTimeout, func() error {
		for i, addr := range c.MasterAddrs {
			if p := c.FSMasters[i]; p == nil || !p.Running() {
				continue
			}
			out, _, code := Run(c.t, c.Bin, c.Env, "fsadmin", "report", "--master", addr, "--output", "json")
			if code != 0 {
				continue
			}
			var r struct {
				Masters []struct {
					RPC  string `json:"rpcAddress"`
					Role string `json:"role"`
				} `json:"masters"`
			}
			if json.Unmarshal([]byte(out), &r) != nil {
				continue
			}
			for _, m := range r.Masters {
				if m.Role == "LEADER" {
					for k, a := range c.MasterAddrs {
						if a == m.RPC {
							leader = k
							return nil
						}
					}
				}
			}
		}
		return fmt.Errorf("no FS master leads")
	})
	return leader
}

// StartSecondary starts the secondary checkpointer beside the FS master,
// with extraEnv after Env, and waits until it runs.
func (c *Cluster) StartSecondary(extraEnv ...string) *Process {
	c.t.Helper()
	c.Secondary = Start(c.t, "secondary", c.Bin, withEnv(c.Env, extraEnv), "secondary", "--home", c.FSMasterHome(),
		"--port-base", fmt.Sprint(c.PortBase))
	c.Secondary.WaitLog("secondary ready", c.Opts.ReadyTimeout)
	return c.Secondary
}

// StartJobMaster (re)starts job master i and waits until it is ready.
func (c *Cluster) StartJobMaster(i int) *Process {
	c.t.Helper()
	c.JobMasters[i] = c.startJobMaster(i)
	c.JobMasters[i].WaitLog("jobmaster ready", c.Opts.ReadyTimeout)
	return c.JobMasters[i]
}

// JobMasterRaftAddr is job master i's raft address.
func (c *Cluster) JobMasterRaftAddr(i int) string {
	return fmt.Sprintf("localhost:%d", c.jobMasterBase(i)+5)
}

func (c *Cluster) startJobMaster(i int) *Process {
	c.t.Helper()
	if i < 0 || i >= len(c.JobMasterAddrs) {
		c.t.Fatalf("testutil: job master %d: the cluster has %d", i, len(c.JobMasterAddrs))
	}
	args := []string{"jobmaster", "--home", c.JobMasterHome(i), "--port-base", fmt.Sprint(c.jobMasterBase(i)),
		"--master", c.Master}
	switch n := len(c.JobMasterAddrs); {
	case c.Opts.GrowJobMasters:
		args = append(args, "--node-id", fmt.Sprintf("jm%d", i))
		if i > 0 {
			args = append(args, "--join")
		}
	case n > 1:
		peers := make([]string, n)
		for k := range peers {
			peers[k] = fmt.Sprintf("jm%d=%s|%s", k, c.JobMasterRaftAddr(k), c.JobMasterAddrs[k])
		}
		args = append(args, "--node-id", fmt.Sprintf("jm%d", i), "--peers", strings.Join(peers, ","))
	}
	return Start(c.t, fmt.Sprintf("jobmaster%d", i), c.Bin, c.Env, args...)
}

// StartWorker (re)starts worker i and waits until it is ready: block and
// job roles when the cluster has job masters, the block role otherwise.
// Its tiers are MEM (Opts.MemQuota) and HDD (Opts.HDDQuota) under WorkerDir.
func (c *Cluster) StartWorker(i int) *Process {
	c.t.Helper()
	if i < 0 || i >= maxClusterWorkers {
		c.t.Fatalf("testutil: worker %d: want 0..%d", i, maxClusterWorkers-1)
	}
	for len(c.Workers) <= i {
		c.Workers = append(c.Workers, nil)
	}
	dir := c.WorkerDir(i)
	conf := WriteFile(c.t, filepath.Join(dir, "worker.yaml"), []byte(fmt.Sprintf(`
worker:
  tiers:
    - alias: MEM
      path: %s/mem
      quota: %s
    - alias: HDD
      path: %s/hdd
      quota: %s
`, dir, c.Opts.MemQuota, dir, c.Opts.HDDQuota)))
	args := []string{"worker", "--config", conf, "--home", dir, "--port-base", fmt.Sprint(c.PortBase),
		"--index", fmt.Sprint(i), "--master", c.Master}
	if len(c.JobMasterAddrs) > 0 {
		args = append(args, "--role", "all", "--job-master", strings.Join(c.JobMasterAddrs, ","))
	} else {
		args = append(args, "--role", "block")
	}
	c.Workers[i] = Start(c.t, fmt.Sprintf("worker%d", i), c.Bin, c.Env, args...)
	c.Workers[i].WaitLog("worker ready", c.Opts.ReadyTimeout)
	return c.Workers[i]
}

// Connect dials Client (and Jobs, with job masters) anew, e.g. after the
// FS master restarted; the old client stays open until the test ends.
func (c *Cluster) Connect() {
	c.t.Helper()
	opts := []sdk.Option{sdk.WithMaster(c.Master), sdk.WithTimeout(c.Opts.ClientTimeout), sdk.WithToken(ClusterToken())}
	if len(c.JobMasterAddrs) > 0 {
		opts = append(opts, sdk.WithJobMasters(c.JobMasterAddrs...))
	}
	cl, err := sdk.Dial(context.Background(), opts...)
	if err != nil {
		c.t.Fatalf("testutil: dial FS master %s: %v", c.Master, err)
	}
	c.t.Cleanup(func() { cl.Close() })
	c.Client, c.Jobs = cl, nil
	if len(c.JobMasterAddrs) > 0 {
		if c.Jobs, err = cl.Jobs(); err != nil {
			c.t.Fatalf("testutil: job masters %v: %v", c.JobMasterAddrs, err)
		}
	}
}

// WaitWorkers waits until exactly n block workers are LIVE at the FS master
// and, with job masters, n job workers at the leader: after a start, all
// are up; after a kill, the masters have noticed.
func (c *Cluster) WaitWorkers(n int) {
	c.t.Helper()
	Eventually(c.t, c.Opts.ReadyTimeout, func() error {
		ws, err := c.Client.Workers(context.Background())
		if err != nil {
			return err
		}
		if live := countLive(ws); live != n {
			return fmt.Errorf("%d block workers live at %s, want %d", live, c.Master, n)
		}
		if c.Jobs == nil {
			return nil
		}
		jws, err := c.Jobs.Workers(context.Background())
		if err != nil {
			return err
		}
		if live := countLive(jws); live != n {
			return fmt.Errorf("%d job workers live, want %d", live, n)
		}
		return nil
	})
}

// countLive counts the LIVE entries of a block or job worker listing.
func countLive[W interface{ GetState() api.WorkerState }](ws []W) int {
	live := 0
	for _, w := range ws {
		if w.GetState() == api.WorkerState_LIVE {
			live++
		}
	}
	return live
}

// WorkerPorts are worker i's rpc, http and job worker ports.
func (c *Cluster) WorkerPorts(i int) (rpc, http, job int) { return config.WorkerPorts(c.PortBase, i) }

// WorkerAddr is worker i's rpc address as it registers.
func (c *Cluster) WorkerAddr(i int) string {
	rpc, _, _ := c.WorkerPorts(i)
	return fmt.Sprintf("localhost:%d", rpc)
}

// WorkerHTTP is worker i's http address (/metrics).
func (c *Cluster) WorkerHTTP(i int) string {
	_, http, _ := c.WorkerPorts(i)
	return fmt.Sprintf("127.0.0.1:%d", http)
}

// JobMasterHTTP is job master i's http address (/metrics, /api/v1/jobs).
func (c *Cluster) JobMasterHTTP(i int) string {
	return fmt.Sprintf("127.0.0.1:%d", c.jobMasterBase(i)+4)
}

// CLI runs the alluvium binary against the cluster (with Env).
func (c *Cluster) CLI(args ...string) (stdout, stderr string, code int) {
	c.t.Helper()
	return Run(c.t, c.Bin, c.Env, args...)
}

// MustCLI runs the CLI and fails the test unless it exits 0; it returns
// stdout.
func (c *Cluster) MustCLI(args ...string) string {
	c.t.Helper()
	out, errOut, code := c.CLI(args...)
	if code != 0 {
		c.t.Fatalf("alluvium %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// JobJSON runs a job command with --output json, which prints one job; it
// returns the job (zero when nothing was printed), stderr and the exit code.
func (c *Cluster) JobJSON(args ...string) (jobview.Job, string, int) {
	c.t.Helper()
	out, errOut, code := c.CLI(append(args, "--output", "json")...)
	var j jobview.Job
	if out != "" {
		if err := json.Unmarshal([]byte(out), &j); err != nil {
			c.t.Fatalf("alluvium %s --output json: not one JSON job: %v\n%s\n%s", strings.Join(args, " "), err, out, errOut)
		}
	}
	return j, errOut, code
}

// MustJob runs a job command with --wait and fails the test unless the job
// COMPLETED.
func (c *Cluster) MustJob(args ...string) jobview.Job {
	c.t.Helper()
	j, errOut, code := c.JobJSON(append(args, "--wait")...)
	if code != 0 || j.Status != "COMPLETED" {
		c.t.Fatalf("alluvium %s --wait: exit %d, %+v\n%s", strings.Join(args, " "), code, j, errOut)
	}
	return j
}

// CountJobs counts the jobs the job masters list.
func (c *Cluster) CountJobs() int {
	c.t.Helper()
	n := 0
	for _, err := range c.Jobs.List(context.Background(), sdk.ListJobsOptions{}) {
		if err != nil {
			c.t.Fatalf("list jobs at %v: %v", c.JobMasterAddrs, err)
		}
		n++
	}
	return n
}

// FileJSON is what `fs stat --output json` prints (DESIGN.md's contract),
// decoded on its own rather than with the server's type, so a change of
// the output shows here.
type FileJSON struct {
	Path          string      `json:"path"`
	IsDir         bool        `json:"isDir"`
	Length        int64       `json:"length"`
	Persisted     bool        `json:"persisted"`
	CachedPercent int         `json:"cachedPercent"`
	Blocks        []BlockJSON `json:"blocks"`
}

// BlockJSON is one block of a FileJSON.
type BlockJSON struct {
	ID        int64 `json:"id"`
	Locations []struct {
		WorkerID int64  `json:"workerId"`
		Host     string `json:"host"`
		RPCPort  int32  `json:"rpcPort"`
		Tier     string `json:"tier"`
	} `json:"locations"`
}

// FSStat runs `fs stat --output json p`.
func (c *Cluster) FSStat(p string) FileJSON {
	c.t.Helper()
	out := c.MustCLI("fs", "stat", "--output", "json", p)
	var f FileJSON
	if err := json.Unmarshal([]byte(out), &f); err != nil {
		c.t.Fatalf("fs stat --output json %s: %v\n%s", p, err, out)
	}
	return f
}

// UFSTree writes files of random bytes, sizes by path relative to dir,
// under UFSDir/dir (unknown to Alluvium until listed); it returns each
// file's bytes by its Alluvium path.
func (c *Cluster) UFSTree(dir string, sizes map[string]int) map[string][]byte {
	c.t.Helper()
	out := make(map[string][]byte, len(sizes))
	for rel, n := range sizes {
		b := RandBytes(n)
		WriteFile(c.t, filepath.Join(c.UFSDir, dir, rel), b)
		out["/"+dir+"/"+rel] = b
	}
	return out
}
