// Package chaos is the fault-injection suite: each test starts real
// alluvium processes on loopback (testutil.Cluster), injects one fault
// (SIGKILL, SIGSTOP, a full tier, damaged files on disk) in the middle of
// real work, and fails if anything acknowledged is lost or comes back
// wrong. Waits are on conditions with deadlines, never guessed sleeps.
package chaos

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/client"
	"github.com/alluvium/alluvium/internal/rpc"
	"github.com/alluvium/alluvium/internal/testutil"
	"github.com/alluvium/alluvium/sdk"
)

// blockSize is small so little data makes many blocks and tasks.
const blockSize = testutil.BlockSize

// cluster adds the suite's fault checks to testutil.Cluster.
type cluster struct {
	*testutil.Cluster
	t *testing.T
}

// chaosOptions puts the suite's settings ahead of o.Env: every timeout
// short, so faults are noticed in seconds, and a minute for a start, which
// a restart replaying a long journal may need.
func chaosOptions(o testutil.ClusterOptions) testutil.ClusterOptions {
	o.Env = append([]string{
		"ALLUVIUM_LOG_LEVEL=info",
		"ALLUVIUM_FSMASTER_WORKER_TIMEOUT=2s",
		"ALLUVIUM_CLIENT_TIMEOUT=10s",
	}, o.Env...)
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 60 * time.Second
	}
	return o
}

// bothJournals runs f as two subtests: one FS master with a local journal
// ("local"), and three sharing an embedded journal ("embedded") — every
// fault of the FS master must be survived by both.
func bothJournals(t *testing.T, f func(t *testing.T, fsMasters int)) {
	t.Run("local", func(t *testing.T) { f(t, 1) })
	t.Run("embedded", func(t *testing.T) { f(t, 3) })
}

// fsClient is a client of the FS masters that follows the leader but
// sends each call once and waits for no election: a call cut by a kill
// fails at once, as one to a single master does.
func (c *cluster) fsClient() (api.FileSystemMasterClient, func()) {
	c.t.Helper()
	m, err := client.NewFSMaster(c.MasterAddrs, client.Options{Auth: rpc.ClientOptions{Token: testutil.ClusterToken()}, ElectionWait: -1})
	if err != nil {
		c.t.Fatal(err)
	}
	return m.FS(), func() { m.Close() }
}

// newCluster lays out a cluster and starts nothing: the test starts (and
// restarts) each process itself.
func newCluster(t *testing.T, o testutil.ClusterOptions) *cluster {
	t.Helper()
	return &cluster{Cluster: testutil.NewCluster(t, chaosOptions(o)), t: t}
}

// startCluster brings the whole cluster up and connects a client.
func startCluster(t *testing.T, o testutil.ClusterOptions) *cluster {
	t.Helper()
	return &cluster{Cluster: testutil.StartCluster(t, chaosOptions(o)), t: t}
}

func (c *cluster) journalDir() string { return filepath.Join(c.FSMasterHome(), "journal") }

// readSum reads a whole file through the SDK and returns its sha256.
func (c *cluster) readSum(ctx context.Context, p string) (string, error) {
	r, err := c.Client.Open(ctx, p, sdk.OpenOptions{})
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
	id, err := c.Jobs.Submit(context.Background(), "load", cfg)
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
		j, err := c.Jobs.Get(ctx, id, false)
		if err == nil {
			last = j
			if sdk.IsTerminal(j.GetStatus()) {
				v, err := c.Jobs.Get(ctx, id, true)
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

// waitMidJob waits until the job has at least minDone tasks done and one
// running, i.e. it is in the middle of its work.
func (c *cluster) waitMidJob(id int64, minDone int64) *sdk.JobInfo {
	c.t.Helper()
	var info *sdk.JobInfo
	testutil.Eventually(c.t, 60*time.Second, func() error {
		j, err := c.Jobs.Get(context.Background(), id, false)
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
