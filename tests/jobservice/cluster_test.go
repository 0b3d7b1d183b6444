// Package jobservice tests the job service end to end on real processes:
// an FS master, block+job workers and one or three job masters, each its
// own alluvium process on loopback with its own ports and directories.
package jobservice

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/config"
	"github.com/alluvium/alluvium/internal/jobview"
	"github.com/alluvium/alluvium/internal/testutil"
	"github.com/alluvium/alluvium/sdk"
)

const blockSize = 1 << 20 // small blocks: many tasks from little data

type clusterOptions struct {
	workers    int
	jobMasters int
}

type cluster struct {
	t       *testing.T
	bin     string
	base    int
	home    string
	ufsDir  string
	master  string
	env     []string
	fsm     *testutil.Process
	workers []*testutil.Process
	jms     []*testutil.Process
	jmRPC   []string
	jmArgs  [][]string
	client  *sdk.Client
	jobs    *sdk.Jobs
}

func writeFile(t *testing.T, p string, data []byte) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// Ports under the base: FS master P, P+1; workers P+20+4i..; job master i
// at P+60+10i (rpc +3, http +4, raft +5).
func jmBase(base, i int) int { return base + 60 + 10*i }

func startCluster(t *testing.T, o clusterOptions) *cluster {
	t.Helper()
	if o.workers == 0 {
		o.workers = 3
	}
	if o.jobMasters == 0 {
		o.jobMasters = 1
	}
	c := &cluster{t: t, bin: testutil.Binary(t), base: testutil.PortBase(t), home: t.TempDir()}
	c.ufsDir = filepath.Join(c.home, "ufs")
	if err := os.MkdirAll(c.ufsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	c.master = fmt.Sprintf("localhost:%d", c.base)
	for i := 0; i < o.jobMasters; i++ {
		c.jmRPC = append(c.jmRPC, fmt.Sprintf("localhost:%d", jmBase(c.base, i)+3))
	}
	jobMasters := strings.Join(c.jmRPC, ",")
	c.env = []string{
		"ALLUVIUM_MASTER=" + c.master,
		"ALLUVIUM_JOB_MASTER=" + jobMasters,
		"GORACE=atexit_sleep_ms=0",
		// Short timeouts keep failures (and this suite) fast.
		"ALLUVIUM_FSMASTER_WORKER_TIMEOUT=3s",
		"ALLUVIUM_FSMASTER_WORKER_HEARTBEAT_INTERVAL=200ms",
		"ALLUVIUM_FSMASTER_USER_BLOCK_SIZE=" + fmt.Sprint(blockSize),
		"ALLUVIUM_JOBMASTER_WORKER_TIMEOUT=2s",
		"ALLUVIUM_JOBMASTER_WORKER_HEARTBEAT_INTERVAL=200ms",
		"ALLUVIUM_JOBMASTER_RAFT_HEARTBEAT_TIMEOUT=300ms",
		"ALLUVIUM_JOBMASTER_RAFT_ELECTION_TIMEOUT=300ms",
		"ALLUVIUM_JOBWORKER_PROGRESS_INTERVAL=200ms",
		"ALLUVIUM_JOBWORKER_THREADS=4",
	}
	c.fsm = testutil.Start(t, "fsmaster", c.bin, c.env, "fsmaster", "--home", filepath.Join(c.home, "master"),
		"--port-base", fmt.Sprint(c.base), "--ufs", "file://"+c.ufsDir)
	c.fsm.WaitLog("fsmaster ready", 30*time.Second)
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
		c.startJobMaster(i)
	}
	for i := 0; i < o.workers; i++ {
		c.workers = append(c.workers, nil)
		c.startWorker(i)
	}
	cl, err := sdk.Dial(context.Background(), sdk.WithMaster(c.master), sdk.WithJobMasters(c.jmRPC...), sdk.WithTimeout(20*time.Second), sdk.WithToken(testutil.ClusterToken()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	c.client = cl
	if c.jobs, err = cl.Jobs(); err != nil {
		t.Fatal(err)
	}
	c.waitWorkers(o.workers)
	return c
}

func (c *cluster) startJobMaster(i int) {
	c.t.Helper()
	p := testutil.Start(c.t, fmt.Sprintf("jobmaster%d", i), c.bin, c.env, c.jmArgs[i]...)
	p.WaitLog("jobmaster ready", 30*time.Second)
	c.jms[i] = p
}

// startWorker starts worker i: block and job roles in one process.
func (c *cluster) startWorker(i int) {
	c.t.Helper()
	dir := filepath.Join(c.home, fmt.Sprintf("worker%d", i))
	conf := writeFile(c.t, filepath.Join(dir, "worker.yaml"), []byte(fmt.Sprintf(`
worker:
  tiers:
    - alias: MEM
      path: %s/mem
      quota: 64MiB
    - alias: HDD
      path: %s/hdd
      quota: 256MiB
`, dir, dir)))
	p := testutil.Start(c.t, fmt.Sprintf("worker%d", i), c.bin, c.env, "worker", "--config", conf,
		"--home", dir, "--port-base", fmt.Sprint(c.base), "--index", fmt.Sprint(i),
		"--master", c.master, "--job-master", strings.Join(c.jmRPC, ","))
	p.WaitLog("worker ready", 30*time.Second)
	c.workers[i] = p
}

func (c *cluster) workerAddr(i int) string {
	rpc, _, _ := config.WorkerPorts(c.base, i)
	return fmt.Sprintf("localhost:%d", rpc)
}

// waitWorkers waits until n block workers are live at the FS master and n
// job workers at the job master leader.
func (c *cluster) waitWorkers(n int) {
	c.t.Helper()
	testutil.Eventually(c.t, 30*time.Second, func() error {
		ws, err := c.client.Workers(context.Background())
		if err != nil {
			return err
		}
		live := 0
		for _, w := range ws {
			if w.GetState() == api.WorkerState_LIVE {
				live++
			}
		}
		if live < n {
			return fmt.Errorf("%d of %d block workers live", live, n)
		}
		jws, err := c.jobs.Workers(context.Background())
		if err != nil {
			return err
		}
		live = 0
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

// cli runs the alluvium binary against the cluster.
func (c *cluster) cli(args ...string) (stdout, stderr string, code int) {
	c.t.Helper()
	return testutil.Run(c.t, c.bin, c.env, args...)
}

func (c *cluster) mustCLI(args ...string) string {
	c.t.Helper()
	out, errOut, code := c.cli(args...)
	if code != 0 {
		c.t.Fatalf("alluvium %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// jobJSON runs a job command that prints one JSON job.
func (c *cluster) jobJSON(args ...string) (jobview.Job, string, int) {
	c.t.Helper()
	out, errOut, code := c.cli(args...)
	var j jobview.Job
	if out != "" {
		if err := json.Unmarshal([]byte(out), &j); err != nil {
			c.t.Fatalf("alluvium %s: output is not one JSON job: %v\n%s\n%s", strings.Join(args, " "), err, out, errOut)
		}
	}
	return j, errOut, code
}

// tree writes files of the given sizes under ufs/<dir> and returns their
// Alluvium paths with sizes.
func (c *cluster) tree(dir string, sizes map[string]int) map[string]int {
	c.t.Helper()
	out := map[string]int{}
	for rel, n := range sizes {
		writeFile(c.t, filepath.Join(c.ufsDir, dir, rel), randBytes(n))
		out["/"+dir+"/"+rel] = n
	}
	return out
}

func sortedKeys(m map[string]int) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// fsStat runs `fs stat --output json PATH`.
func (c *cluster) fsStat(p string) fileJSON {
	c.t.Helper()
	out := c.mustCLI("fs", "stat", "--output", "json", p)
	var f fileJSON
	if err := json.Unmarshal([]byte(out), &f); err != nil {
		c.t.Fatalf("fs stat %s: %v\n%s", p, err, out)
	}
	return f
}

// fileJSON is what `fs stat --output json` prints (the fields we check).
type fileJSON struct {
	Path          string `json:"path"`
	IsDir         bool   `json:"isDir"`
	Length        int64  `json:"length"`
	CachedPercent int    `json:"cachedPercent"`
	Blocks        []struct {
		ID        int64 `json:"id"`
		Locations []struct {
			WorkerID int64  `json:"workerId"`
			Host     string `json:"host"`
			Tier     string `json:"tier"`
		} `json:"locations"`
	} `json:"blocks"`
}

// cachedBytes sums the cached bytes of files under dir (by block count).
func (c *cluster) cachedBlocks(files map[string]int) (cached, total int) {
	c.t.Helper()
	for _, p := range sortedKeys(files) {
		fi, err := c.client.Stat(context.Background(), p)
		if err != nil {
			c.t.Fatalf("stat %s: %v", p, err)
		}
		for _, b := range fi.GetFileBlockInfos() {
			total++
			if len(b.GetBlockInfo().GetLocations()) > 0 {
				cached++
			}
		}
	}
	return cached, total
}
