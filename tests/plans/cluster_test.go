// Package plans tests the persist, replicate, move and copy plans end to
// end on real processes: an FS master with a local root mount and a MinIO
// S3 mount beside it, three block+job workers and a job master, each its
// own alluvium process on loopback.
package plans

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/config"
	"github.com/alluvium/alluvium/internal/jobview"
	"github.com/alluvium/alluvium/internal/testutil"
	"github.com/alluvium/alluvium/sdk"
)

const blockSize = 1 << 20 // small blocks: multi-block files from little data

type cluster struct {
	t       *testing.T
	bin     string
	base    int
	home    string
	ufsDir  string
	master  string
	jm      string
	env     []string
	workers []*testutil.Process
	client  *sdk.Client
	jobs    *sdk.Jobs
	minio   *testutil.MinIO
	s3      *minio.Client
	bucket  string
}

func writeFile(t *testing.T, p string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
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

// startCluster starts MinIO, the FS master (root on a local dir, /s3 on a
// MinIO bucket), one job master and three workers.
func startCluster(t *testing.T) *cluster {
	t.Helper()
	c := &cluster{t: t, bin: testutil.Binary(t), base: testutil.PortBase(t), home: t.TempDir(), bucket: "plans"}
	c.minio = testutil.StartMinIO(t)
	c.ufsDir = filepath.Join(c.home, "ufs")
	if err := os.MkdirAll(c.ufsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	c.master = fmt.Sprintf("localhost:%d", c.base)
	jmBase := c.base + 60
	c.jm = fmt.Sprintf("localhost:%d", jmBase+3)
	c.env = []string{
		"ALLUVIUM_MASTER=" + c.master,
		"ALLUVIUM_JOB_MASTER=" + c.jm,
		"GORACE=atexit_sleep_ms=0",
		"ALLUVIUM_FSMASTER_JOB_MASTER=" + c.jm,
		"ALLUVIUM_FSMASTER_PERSIST_DELAY=1s",
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
	fsm := testutil.Start(t, "fsmaster", c.bin, c.env, "fsmaster", "--home", filepath.Join(c.home, "master"),
		"--port-base", fmt.Sprint(c.base), "--ufs", "file://"+c.ufsDir)
	fsm.WaitLog("fsmaster ready", 30*time.Second)
	jm := testutil.Start(t, "jobmaster", c.bin, c.env, "jobmaster", "--home", filepath.Join(c.home, "jm"),
		"--port-base", fmt.Sprint(jmBase), "--master", c.master)
	jm.WaitLog("jobmaster ready", 30*time.Second)
	for i := 0; i < 3; i++ {
		c.workers = append(c.workers, nil)
		c.startWorker(i)
	}
	cl, err := sdk.Dial(context.Background(), sdk.WithMaster(c.master), sdk.WithJobMasters(c.jm), sdk.WithTimeout(30*time.Second), sdk.WithToken(testutil.ClusterToken()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	c.client = cl
	if c.jobs, err = cl.Jobs(); err != nil {
		t.Fatal(err)
	}
	c.waitWorkers(3)
	c.s3, err = minio.New(c.minio.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(c.minio.AccessKey, c.minio.SecretKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	c.mustCLI("fs", "mount", "/s3", "s3://"+c.bucket+"/pre",
		"--option", "s3.endpoint=http://"+c.minio.Endpoint, "--option", "s3.access-key="+c.minio.AccessKey,
		"--option", "s3.secret-key="+c.minio.SecretKey, "--option", "s3.path-style=true", "--option", "s3.create-bucket=true")
	return c
}

func (c *cluster) startWorker(i int) {
	c.t.Helper()
	dir := filepath.Join(c.home, fmt.Sprintf("worker%d", i))
	conf := filepath.Join(dir, "worker.yaml")
	writeFile(c.t, conf, []byte(fmt.Sprintf(`
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
		"--master", c.master, "--job-master", c.jm)
	p.WaitLog("worker ready", 30*time.Second)
	c.workers[i] = p
}

func (c *cluster) workerAddr(i int) string {
	rpc, _, _ := config.WorkerPorts(c.base, i)
	return fmt.Sprintf("localhost:%d", rpc)
}

// waitWorkers waits for n live block workers and n live job workers.
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
		if live != n {
			return fmt.Errorf("%d block workers live, want %d", live, n)
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
		if live != n {
			return fmt.Errorf("%d job workers live, want %d", live, n)
		}
		return nil
	})
}

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

// job runs a job command that prints one JSON job (--output json).
func (c *cluster) job(args ...string) (jobview.Job, string, int) {
	c.t.Helper()
	out, errOut, code := c.cli(append(args, "--output", "json")...)
	var j jobview.Job
	if out != "" {
		if err := json.Unmarshal([]byte(out), &j); err != nil {
			c.t.Fatalf("alluvium %s: not one JSON job: %v\n%s\n%s", strings.Join(args, " "), err, out, errOut)
		}
	}
	return j, errOut, code
}

// mustJob runs a job to completion.
func (c *cluster) mustJob(args ...string) jobview.Job {
	c.t.Helper()
	j, errOut, code := c.job(append(args, "--wait")...)
	if code != 0 || j.Status != "COMPLETED" {
		c.t.Fatalf("alluvium %s: exit %d, %+v\n%s", strings.Join(args, " "), code, j, errOut)
	}
	return j
}

// fileJSON is what `fs stat --output json` prints (the fields checked).
type fileJSON struct {
	Path          string `json:"path"`
	IsDir         bool   `json:"isDir"`
	Length        int64  `json:"length"`
	Persisted     bool   `json:"persisted"`
	CachedPercent int    `json:"cachedPercent"`
	Blocks        []struct {
		ID        int64 `json:"id"`
		Locations []struct {
			WorkerID int64 `json:"workerId"`
		} `json:"locations"`
	} `json:"blocks"`
}

func (c *cluster) fsStat(p string) fileJSON {
	c.t.Helper()
	out := c.mustCLI("fs", "stat", "--output", "json", p)
	var f fileJSON
	if err := json.Unmarshal([]byte(out), &f); err != nil {
		c.t.Fatalf("fs stat %s: %v\n%s", p, err, out)
	}
	return f
}

// read returns a file's bytes through Alluvium.
func (c *cluster) read(p string) []byte {
	c.t.Helper()
	r, err := c.client.Open(context.Background(), p, sdk.OpenOptions{ReadType: api.ReadType_NO_CACHE})
	if err != nil {
		c.t.Fatalf("open %s: %v", p, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		c.t.Fatalf("read %s: %v", p, err)
	}
	return b
}

// object returns an object's bytes straight from MinIO (nil when absent).
func (c *cluster) object(key string) []byte {
	c.t.Helper()
	o, err := c.s3.GetObject(context.Background(), c.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	defer o.Close()
	b, err := io.ReadAll(o)
	if err != nil {
		if minio.ToErrorResponse(err).Code == "NoSuchKey" {
			return nil
		}
		c.t.Fatalf("get %s: %v", key, err)
	}
	return b
}

// objects lists the keys under a prefix.
func (c *cluster) objects(prefix string) []string {
	var keys []string
	for o := range c.s3.ListObjects(context.Background(), c.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			c.t.Fatal(o.Err)
		}
		keys = append(keys, o.Key)
	}
	sort.Strings(keys)
	return keys
}

// tree writes files under ufs/<dir> (in the local UFS, unknown to Alluvium
// until listed) and returns Alluvium path → bytes.
func (c *cluster) tree(dir string, sizes map[string]int) map[string][]byte {
	c.t.Helper()
	out := map[string][]byte{}
	for rel, n := range sizes {
		b := randBytes(n)
		writeFile(c.t, filepath.Join(c.ufsDir, dir, rel), b)
		out["/"+dir+"/"+rel] = b
	}
	return out
}

// mixed is a tree of small files in nested directories, two multi-block
// files and an empty one.
func mixed() map[string]int {
	m := map[string]int{
		"big/a.bin": 2*blockSize + 12345, // 3 blocks
		"big/b.bin": 3 * blockSize,       // 3 full blocks
		"empty":     0,
	}
	for i := 0; i < 24; i++ {
		m[fmt.Sprintf("s/%d/f%02d", i%4, i)] = 100 + 1777*i
	}
	return m
}

// checkTree reads every file of want (src path → bytes) at its place under
// dst through Alluvium and compares SHA-256s.
func (c *cluster) checkTree(want map[string][]byte, src, dst string) {
	c.t.Helper()
	for p, b := range want {
		d := dst + strings.TrimPrefix(p, src)
		if got := c.read(d); sum(got) != sum(b) {
			c.t.Errorf("%s: sha256 %s (%d bytes), want %s (%d bytes)", d, sum(got)[:12], len(got), sum(b)[:12], len(b))
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func equalBytes(a, b []byte) bool { return bytes.Equal(a, b) }
