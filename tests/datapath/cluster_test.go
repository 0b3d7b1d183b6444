package datapath

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/config"
	"github.com/alluvium/alluvium/internal/testutil"
	"github.com/alluvium/alluvium/sdk"
)

const blockSize = 1 << 20 // small blocks keep the suite fast

// clusterOptions shape a test cluster.
type clusterOptions struct {
	workers  int
	memQuota string // per worker
	hddQuota string
}

// cluster is an FS master and block workers, each its own alluvium
// process with its own ports and directories.
type cluster struct {
	t       *testing.T
	bin     string
	base    int
	home    string
	ufsDir  string
	master  string
	fsm     *testutil.Process
	workers []*testutil.Process
	wconfs  []string
	env     []string
	client  *sdk.Client
}

func writeFile(t *testing.T, p, body string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func startCluster(t *testing.T, o clusterOptions) *cluster {
	t.Helper()
	if o.workers == 0 {
		o.workers = 2
	}
	if o.memQuota == "" {
		o.memQuota = "64MiB"
	}
	if o.hddQuota == "" {
		o.hddQuota = "256MiB"
	}
	c := &cluster{t: t, bin: testutil.Binary(t), base: testutil.PortBase(t), home: t.TempDir()}
	c.ufsDir = filepath.Join(c.home, "ufs")
	c.master = fmt.Sprintf("localhost:%d", c.base)
	// A race-enabled binary sleeps 1s at exit unless told not to: that
	// would dominate a suite of short CLI calls.
	c.env = []string{"ALLUVIUM_MASTER=" + c.master, "GORACE=atexit_sleep_ms=0"}
	mconf := writeFile(t, filepath.Join(c.home, "master.yaml"), fmt.Sprintf(`
log:
  level: debug
fsmaster:
  ufs: file://%s
  worker:
    timeout: 2s
    heartbeat-interval: 200ms
  user:
    block-size: %d
    write-type: CACHE_THROUGH
`, c.ufsDir, blockSize))
	c.fsm = testutil.Start(t, "fsmaster", c.bin, nil, "fsmaster", "--config", mconf,
		"--home", filepath.Join(c.home, "master"), "--port-base", fmt.Sprint(c.base))
	testutil.WaitPort(t, fmt.Sprintf("127.0.0.1:%d", c.base), 30*time.Second)
	for i := 0; i < o.workers; i++ {
		dir := filepath.Join(c.home, fmt.Sprintf("worker%d", i))
		c.wconfs = append(c.wconfs, writeFile(t, filepath.Join(dir, "worker.yaml"), fmt.Sprintf(`
log:
  level: debug
fsmaster:
  worker:
    heartbeat-interval: 200ms
worker:
  lease-timeout: 30s
  tiers:
    - alias: MEM
      path: %s/mem
      quota: %s
    - alias: HDD
      path: %s/hdd
      quota: %s
`, dir, o.memQuota, dir, o.hddQuota)))
		c.workers = append(c.workers, nil)
		c.startWorker(i)
	}
	cl, err := sdk.Dial(context.Background(), sdk.WithMaster(c.master), sdk.WithTimeout(20*time.Second), sdk.WithToken(testutil.ClusterToken()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	c.client = cl
	c.waitLive(o.workers)
	return c
}

// startWorker (re)starts worker i.
func (c *cluster) startWorker(i int) {
	c.t.Helper()
	dir := filepath.Join(c.home, fmt.Sprintf("worker%d", i))
	p := testutil.Start(c.t, fmt.Sprintf("worker%d", i), c.bin, nil, "worker", "--config", c.wconfs[i],
		"--home", dir, "--port-base", fmt.Sprint(c.base), "--index", fmt.Sprint(i), "--role", "block")
	p.WaitLog("worker ready", 30*time.Second)
	c.workers[i] = p
}

// workerAddr is worker i's rpc address as it registers.
func (c *cluster) workerAddr(i int) string {
	rpc, _, _ := config.WorkerPorts(c.base, i)
	return fmt.Sprintf("localhost:%d", rpc)
}

func (c *cluster) workerHTTP(i int) string {
	_, http, _ := config.WorkerPorts(c.base, i)
	return fmt.Sprintf("127.0.0.1:%d", http)
}

func (c *cluster) waitLive(n int) {
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
			return fmt.Errorf("%d of %d workers live", live, n)
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

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func writeLocal(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// sizes are the round-trip sizes the issue names.
var sizes = []struct {
	name string
	n    int
}{
	{"0", 0}, {"1", 1}, {"block-1", blockSize - 1}, {"block", blockSize}, {"block+1", blockSize + 1}, {"3.5blocks", blockSize * 7 / 2},
}

var writeTypes = []api.WriteType{api.WriteType_MUST_CACHE, api.WriteType_CACHE_THROUGH, api.WriteType_THROUGH, api.WriteType_ASYNC_THROUGH}
