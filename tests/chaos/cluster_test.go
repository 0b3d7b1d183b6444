// Package chaos is the fault-injection suite: each test starts real
// alluvium processes on loopback, injects one fault (SIGKILL, SIGSTOP, a
// full tier, damaged files on disk) in the middle of real work, and fails if
// anything acknowledged is lost or comes back wrong. Waits are on
// conditions with deadlines, never guessed sleeps.
package chaos

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/config"
	"github.com/alluvium/alluvium/internal/testutil"
	"github.com/alluvium/alluvium/sdk"
)

// blockSize is small so little data makes many blocks and tasks.
const blockSize = 1 << 20

// options shape a cluster. Zero values give one FS master, no job master
// and no worker.
type options struct {
	workers    int
	jobMasters int    // 0: none; workers then run the block role only
	memQuota   string // per worker; default 64MiB
	hddQuota   string // per worker; default 256MiB
	env        []string
}

// cluster is an FS master, optional job masters and workers, each its own
// alluvium process with its own ports and directories under one temp dir.
type cluster struct {
	t      *testing.T
	o      options
	bin    string
	base   int
	home   string
	ufsDir string
	master string // FS master rpc address
	env    []string

	fsm     *testutil.Process
	sec     *testutil.Process
	jms     []*testutil.Process
	jmRPC   []string
	jmArgs  [][]string
	workers []*testutil.Process

	client *sdk.Client
	jobs   *sdk.Jobs
}

// Ports under the base: FS master P, P+1; workers P+20+4i..; job master i
// at P+100+10i (rpc +3, http +4, raft +5).
func jmBase(base, i int) int { return base + 100 + 10*i }

// baseEnv keeps every timeout short so faults are noticed in seconds.
func baseEnv(master string, jobMasters []string) []string {
	return []string{
		"ALLUVIUM_MASTER=" + master,
		"ALLUVIUM_JOB_MASTER=" + strings.Join(jobMasters, ","),
		"GORACE=atexit_sleep_ms=0 halt_on_error=1",
		"ALLUVIUM_LOG_LEVEL=info",
		"ALLUVIUM_FSMASTER_WORKER_TIMEOUT=2s",
		"ALLUVIUM_FSMASTER_WORKER_HEARTBEAT_INTERVAL=200ms",
		"ALLUVIUM_FSMASTER_USER_BLOCK_SIZE=" + strconv.Itoa(blockSize),
		"ALLUVIUM_JOBMASTER_WORKER_TIMEOUT=2s",
		"ALLUVIUM_JOBMASTER_WORKER_HEARTBEAT_INTERVAL=200ms",
		"ALLUVIUM_JOBMASTER_RAFT_HEARTBEAT_TIMEOUT=300ms",
		"ALLUVIUM_JOBMASTER_RAFT_ELECTION_TIMEOUT=300ms",
		"ALLUVIUM_JOBWORKER_PROGRESS_INTERVAL=200ms",
		"ALLUVIUM_JOBWORKER_THREADS=4",
		"ALLUVIUM_CLIENT_TIMEOUT=10s",
	}
}

func newCluster(t *testing.T, o options) *cluster {
	t.Helper()
	if o.memQuota == "" {
		o.memQuota = "64MiB"
	}
	if o.hddQuota == "" {
		o.hddQuota = "256MiB"
	}
	c := &cluster{t: t, o: o, bin: testutil.Binary(t), base: testutil.PortBase(t), home: t.TempDir()}
	c.ufsDir = filepath.Join(c.home, "ufs")
	if err := os.MkdirAll(c.ufsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	c.master = fmt.Sprintf("localhost:%d", c.base)
	for i := 0; i < o.jobMasters; i++ {
		c.jmRPC = append(c.jmRPC, fmt.Sprintf("localhost:%d", jmBase(c.base, i)+3))
	}
	c.env = append(baseEnv(c.master, c.jmRPC), o.env...)
	return c
}

// start brings the whole cluster up and connects a client.
func startCluster(t *testing.T, o options) *cluster {
	t.Helper()
	c := newCluster(t, o)
	c.startMaster()
	var peers []string
	for i := 0; i < o.jobMasters; i++ {
		b := jmBase(c.base, i)
		peers = append(peers, fmt.Sprintf("jm%d=localhost:%d|localhost:%d", i, b+5, b+3))
	}
	for i := 0; i < o.jobMasters; i++ {
		args := []string{"jobmaster", "--home", filepath.Join(c.home, fmt.Sprintf("jm%d", i)),
			"--port-base", fmt.Sprint(jmBase(c.base, i)), "--master", c.master}
		if o.jobMasters > 1 {
			args = append(args, "--node-id", fmt.Sprintf("jm%d", i), "--peers", strings.Join(peers, ","))
		}
		c.jmArgs = append(c.jmArgs, args)
		c.jms = append(c.jms, nil)
	}
	// Start the job masters together: a 3-node group elects only once a
	// majority runs.
	done := make(chan struct{}, o.jobMasters)
	for i := 0; i < o.jobMasters; i++ {
		c.jms[i] = testutil.Start(t, fmt.Sprintf("jobmaster%d", i), c.bin, c.env, c.jmArgs[i]...)
	}
	for i := 0; i < o.jobMasters; i++ {
		c.jms[i].WaitLog("jobmaster ready", 60*time.Second)
		done <- struct{}{}
	}
	for i := 0; i < o.workers; i++ {
		c.workers = append(c.workers, nil)
		c.startWorker(i)
	}
	c.connect()
	c.waitWorkers(o.workers)
	return c
}

func (c *cluster) masterHome() string { return filepath.Join(c.home, "master") }

func (c *cluster) journalDir() string { return filepath.Join(c.masterHome(), "journal") }

// startMaster (re)starts the FS master and waits until it serves.
func (c *cluster) startMaster(extraEnv ...string) *testutil.Process {
	c.t.Helper()
	c.fsm = testutil.Start(c.t, "fsmaster", c.bin, append(append([]string{}, c.env...), extraEnv...),
		"fsmaster", "--home", c.masterHome(), "--port-base", fmt.Sprint(c.base), "--ufs", "file://"+c.ufsDir)
	c.fsm.WaitLog("fsmaster ready", 60*time.Second)
	return c.fsm
}

// startSecondary starts the secondary checkpointer beside the master.
func (c *cluster) startSecondary(extraEnv ...string) *testutil.Process {
	c.t.Helper()
	c.sec = testutil.Start(c.t, "secondary", c.bin, append(append([]string{}, c.env...), extraEnv...),
		"secondary", "--home", c.masterHome(), "--port-base", fmt.Sprint(c.base))
	c.sec.WaitLog("secondary ready", 60*time.Second)
	return c.sec
}

// startJobMaster restarts job master i (after a kill).
func (c *cluster) startJobMaster(i int) {
	c.t.Helper()
	c.jms[i] = testutil.Start(c.t, fmt.Sprintf("jobmaster%d", i), c.bin, c.env, c.jmArgs[i]...)
	c.jms[i].WaitLog("jobmaster ready", 60*time.Second)
}

func (c *cluster) workerDir(i int) string { return filepath.Join(c.home, fmt.Sprintf("worker%d", i)) }

// startWorker (re)starts worker i: block and job roles when the cluster
// has job masters, block only otherwise.
func (c *cluster) startWorker(i int) {
	c.t.Helper()
	dir := c.workerDir(i)
	conf := filepath.Join(dir, "worker.yaml")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		c.t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`
worker:
  tiers:
    - alias: MEM
      path: %s/mem
      quota: %s
    - alias: HDD
      path: %s/hdd
      quota: %s
`, dir, c.o.memQuota, dir, c.o.hddQuota)), 0o644); err != nil {
		c.t.Fatal(err)
	}
	role := "block"
	if c.o.jobMasters > 0 {
		role = "all"
	}
	args := []string{"worker", "--config", conf, "--home", dir, "--port-base", fmt.Sprint(c.base),
		"--index", fmt.Sprint(i), "--master", c.master, "--role", role}
	if c.o.jobMasters > 0 {
		args = append(args, "--job-master", strings.Join(c.jmRPC, ","))
	}
	p := testutil.Start(c.t, fmt.Sprintf("worker%d", i), c.bin, c.env, args...)
	p.WaitLog("worker ready", 60*time.Second)
	c.workers[i] = p
}

// connect dials the SDK client (FS master and, if any, job masters).
func (c *cluster) connect() {
	c.t.Helper()
	opts := []sdk.Option{sdk.WithMaster(c.master), sdk.WithTimeout(20 * time.Second), sdk.WithToken(testutil.ClusterToken())}
	if len(c.jmRPC) > 0 {
		opts = append(opts, sdk.WithJobMasters(c.jmRPC...))
	}
	cl, err := sdk.Dial(context.Background(), opts...)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cl.Close() })
	c.client = cl
	if len(c.jmRPC) > 0 {
		if c.jobs, err = cl.Jobs(); err != nil {
			c.t.Fatal(err)
		}
	}
}

// waitWorkers waits until n block workers are LIVE at the FS master and,
// with job masters, n job workers LIVE at the leader.
func (c *cluster) waitWorkers(n int) {
	c.t.Helper()
	testutil.Eventually(c.t, 60*time.Second, func() error {
		ws, err := c.client.Workers(context.Background())
		if err != nil {
			return err
		}
		if live := countLive(ws); live < n {
			return fmt.Errorf("%d of %d block workers live", live, n)
		}
		if c.jobs == nil {
			return nil
		}
		jws, err := c.jobs.Workers(context.Background())
		if err != nil {
			return err
		}
		live := 0
		for _, w := range jws {
			if w.GetState() == api.WorkerState_LIVE {
				live++
			}
		}
		if live < n {
			return fmt.Errorf("%d of %d job workers live", live, n)
		}
		return nil
	})
}

func countLive(ws []*api.WorkerInfo) int {
	live := 0
	for _, w := range ws {
		if w.GetState() == api.WorkerState_LIVE {
			live++
		}
	}
	return live
}

func (c *cluster) workerAddr(i int) string {
	rpc, _, _ := config.WorkerPorts(c.base, i)
	return fmt.Sprintf("localhost:%d", rpc)
}

func (c *cluster) workerHTTP(i int) string {
	_, http, _ := config.WorkerPorts(c.base, i)
	return fmt.Sprintf("127.0.0.1:%d", http)
}

func (c *cluster) jmHTTP(i int) string { return fmt.Sprintf("127.0.0.1:%d", jmBase(c.base, i)+4) }

// cli runs the alluvium binary against the cluster.
func (c *cluster) cli(args ...string) (stdout, stderr string, code int) {
	c.t.Helper()
	return testutil.Run(c.t, c.bin, c.env, args...)
}

// ufsTree writes files into the UFS under dir and returns their Alluvium
// paths with their contents' sha256.
func (c *cluster) ufsTree(dir string, sizes map[string]int) map[string]string {
	c.t.Helper()
	out := map[string]string{}
	for rel, n := range sizes {
		b := randBytes(n)
		p := filepath.Join(c.ufsDir, dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			c.t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			c.t.Fatal(err)
		}
		out["/"+dir+"/"+rel] = sum(b)
	}
	return out
}

// readSum reads a whole file through the SDK and returns its sha256.
func (c *cluster) readSum(ctx context.Context, p string) (string, error) {
	r, err := c.client.Open(ctx, p, sdk.OpenOptions{})
	if err != nil {
		return "", err
	}
	defer r.Close()
	h := sha256.New()
	if _, err := r.WriteTo(h); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// submitLoad submits a load job through the SDK.
func (c *cluster) submitLoad(cfg map[string]any) int64 {
	c.t.Helper()
	id, err := c.jobs.Submit(context.Background(), "load", cfg)
	if err != nil {
		c.t.Fatalf("submit load %v: %v", cfg, err)
	}
	return id
}

// waitJob waits for the job to end and returns it (verbose).
func (c *cluster) waitJob(id int64, timeout time.Duration) *sdk.JobInfo {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last *sdk.JobInfo
	for ctx.Err() == nil {
		j, err := c.jobs.Get(ctx, id, false)
		if err == nil {
			last = j
			if sdk.IsTerminal(j.GetStatus()) {
				v, err := c.jobs.Get(ctx, id, true)
				if err != nil {
					c.t.Fatalf("job %d: %v", id, err)
				}
				return v
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	c.t.Fatalf("job %d did not end within %s; last seen %v", id, timeout, last)
	return nil
}

// waitRunning waits until the job has at least minDone tasks done and one
// running, i.e. it is in the middle of its work.
func (c *cluster) waitMidJob(id int64, minDone int64) *sdk.JobInfo {
	c.t.Helper()
	var info *sdk.JobInfo
	testutil.Eventually(c.t, 60*time.Second, func() error {
		j, err := c.jobs.Get(context.Background(), id, false)
		if err != nil {
			return err
		}
		info = j
		if sdk.IsTerminal(j.GetStatus()) {
			c.t.Fatalf("job %d ended before the fault could be injected: %v", id, j)
		}
		if j.GetTasksDone() < minDone || j.GetTasksRunning() == 0 {
			return fmt.Errorf("not mid-job yet: %d done, %d running", j.GetTasksDone(), j.GetTasksRunning())
		}
		return nil
	})
	return info
}

// scrape reads one Prometheus series (name plus optional {labels}) from an
// http port's /metrics; it returns -1 when absent.
func scrape(t *testing.T, addr, series string) float64 {
	t.Helper()
	m, err := scrapeAll(addr)
	if err != nil {
		t.Fatalf("scrape %s: %v", addr, err)
	}
	if v, ok := m[series]; ok {
		return v
	}
	return -1
}

func scrapeAll(addr string) (map[string]float64, error) {
	resp, err := testutil.HTTPGet("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}

// getJSON fetches an http JSON document.
func getJSON(addr, path string, v any) error {
	resp, err := testutil.HTTPGet("http://" + addr + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s%s: %s", addr, path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// walk lists the whole tree through the SDK and checks it is consistent:
// every parent listed before its children and a directory, parent ids
// match, no path twice, each directory's child count equals the children
// listed, every completed file's blocks cover its length. It returns every
// path.
func walk(t *testing.T, c *sdk.Client) map[string]*api.FileInfo {
	t.Helper()
	ctx := context.Background()
	seen := map[string]*api.FileInfo{}
	ids := map[int64]string{}
	for fi, err := range c.List(ctx, "/", sdk.ListOptions{Recursive: true, PageSize: 97}) {
		if err != nil {
			t.Fatalf("walk: %v", err)
		}
		if _, dup := seen[fi.Path]; dup {
			t.Fatalf("walk: %s listed twice", fi.Path)
		}
		if other, dup := ids[fi.FileId]; dup {
			t.Fatalf("walk: %s and %s share inode id %d", fi.Path, other, fi.FileId)
		}
		parent := filepath.Dir(fi.Path)
		if parent != "/" {
			p, ok := seen[parent]
			if !ok || !p.Folder {
				t.Fatalf("walk: %s listed before (or without) its parent directory %s", fi.Path, parent)
			}
			if fi.ParentId != p.FileId {
				t.Fatalf("walk: %s has parent id %d, its parent %s is %d", fi.Path, fi.ParentId, parent, p.FileId)
			}
		}
		if !fi.Folder && fi.Completed && fi.BlockSizeBytes > 0 {
			want := (fi.Length + fi.BlockSizeBytes - 1) / fi.BlockSizeBytes
			if int64(len(fi.BlockIds)) != want {
				t.Fatalf("walk: %s is %d bytes in blocks of %d but has %d block ids", fi.Path, fi.Length, fi.BlockSizeBytes, len(fi.BlockIds))
			}
		}
		seen[fi.Path] = fi
		ids[fi.FileId] = fi.Path
	}
	children := map[string]int64{"/": 0}
	for p := range seen {
		children[filepath.Dir(p)]++
	}
	for p, fi := range seen {
		if fi.Folder && fi.ChildCount != children[p] {
			t.Fatalf("walk: %s says %d children, the tree holds %d", p, fi.ChildCount, children[p])
		}
	}
	return seen
}
