// Package fsmaster holds the FS master's end-to-end tests: they start the
// real alluvium binary (fsmaster, secondary, fs CLI) on loopback ports and
// check what a user checks.
package fsmaster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/fsmaster/journal"
	"github.com/alluvium/alluvium/internal/rpc"
	"github.com/alluvium/alluvium/internal/testutil"
	"github.com/alluvium/alluvium/sdk"
)

// node is one FS master home: its dirs, ports and environment.
type node struct {
	t    *testing.T
	bin  string
	home string
	base int
	env  []string
}

func newNode(t *testing.T, env ...string) *node {
	t.Helper()
	n := &node{t: t, bin: testutil.Binary(t), home: t.TempDir(), base: testutil.PortBase(t)}
	// GORACE: a -race binary otherwise sleeps 1s at exit, which adds up
	// over the CLI runs.
	n.env = append([]string{"ALLUVIUM_MASTER=" + n.addr(), "GORACE=atexit_sleep_ms=0"}, env...)
	return n
}

func (n *node) addr() string { return fmt.Sprintf("127.0.0.1:%d", n.base) }

func (n *node) journalDir() string { return filepath.Join(n.home, "journal") }

func (n *node) args(cmd ...string) []string {
	return append(cmd, "--home", n.home, "--port-base", strconv.Itoa(n.base))
}

// master starts `alluvium fsmaster` and waits until it is ready.
func (n *node) master(extraEnv ...string) *testutil.Process {
	n.t.Helper()
	p := testutil.Start(n.t, "fsmaster", n.bin, append(n.env, extraEnv...), n.args("fsmaster")...)
	p.WaitLog("fsmaster ready", 60*time.Second)
	return p
}

func (n *node) secondary(extraEnv ...string) *testutil.Process {
	n.t.Helper()
	p := testutil.Start(n.t, "secondary", n.bin, append(n.env, extraEnv...), n.args("secondary")...)
	p.WaitLog("secondary ready", 60*time.Second)
	return p
}

// cli runs `alluvium ARGS` against the node's master.
func (n *node) cli(args ...string) (stdout, stderr string, code int) {
	n.t.Helper()
	return testutil.Run(n.t, n.bin, n.env, args...)
}

func (n *node) mustCLI(args ...string) string {
	n.t.Helper()
	out, errOut, code := n.cli(args...)
	if code != 0 {
		n.t.Fatalf("alluvium %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func (n *node) grpc() (api.FileSystemMasterClient, func()) {
	n.t.Helper()
	cc, err := rpc.Dial(n.addr(), rpc.ClientOptions{Token: testutil.ClusterToken()})
	if err != nil {
		n.t.Fatal(err)
	}
	return api.NewFileSystemMasterClient(cc), func() { cc.Close() }
}

func (n *node) sdk() *sdk.Client {
	n.t.Helper()
	c, err := sdk.Dial(context.Background(), sdk.WithMaster(n.addr()), sdk.WithTimeout(10*time.Second), sdk.WithToken(testutil.ClusterToken()))
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(func() { c.Close() })
	return c
}

// walk lists the whole tree through the SDK and checks it is consistent:
// pre-order (every parent before its children), no path twice, every
// parent a directory, and each directory's child count equal to what a
// listing of it returns. It returns every path.
func walk(t *testing.T, c *sdk.Client) map[string]*api.FileInfo {
	t.Helper()
	ctx := context.Background()
	seen := map[string]*api.FileInfo{}
	for fi, err := range c.List(ctx, "/", sdk.ListOptions{Recursive: true, PageSize: 97}) {
		if err != nil {
			t.Fatalf("walk: %v", err)
		}
		if _, dup := seen[fi.Path]; dup {
			t.Fatalf("walk: %s listed twice", fi.Path)
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
		seen[fi.Path] = fi
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

// TestKill9KeepsAcknowledgedCreates: concurrent clients create and complete
// files; the master is killed with SIGKILL mid-stream; after a restart every
// acknowledged create is there (every acknowledged complete complete, with
// its length) and the tree is consistent. Two rounds, so the second replays
// a journal whose tail the first kill tore: the first with one gRPC call
// per create and complete, the second through one SDK client shared by the
// writers, which joins their concurrent creates and completes into
// CreateFiles and CompleteFiles batches.
func TestKill9KeepsAcknowledgedCreates(t *testing.T) {
	n := newNode(t, "ALLUVIUM_FSMASTER_JOURNAL_SEGMENT_ENTRIES=500")
	created := map[string]bool{}
	completed := map[string]int64{}
	var mu sync.Mutex
	for round := range 2 {
		p := n.master()
		fs, closeConn := n.grpc()
		ctx, cancel := context.WithCancel(context.Background())
		var acks atomic.Int64
		ack := func(path string) {
			mu.Lock()
			created[path] = true
			mu.Unlock()
			acks.Add(1)
		}
		done := func(path string, length int64) {
			mu.Lock()
			completed[path] = length
			mu.Unlock()
		}
		var write func(path string, i int) error
		switch round {
		case 0: // one call each
			write = func(path string, i int) error {
				resp, err := fs.CreateFile(ctx, &api.CreateFileRequest{Path: path, Recursive: true, WriteType: api.WriteType_MUST_CACHE, BlockSizeBytes: 1 << 20})
				if err != nil {
					return err
				}
				ack(path)
				length := int64(i * 10)
				if _, err := fs.CompleteFile(ctx, &api.CompleteFileRequest{Path: path, Length: length, FileId: resp.Info.FileId}); err != nil {
					return err
				}
				done(path, length)
				return nil
			}
		default: // the SDK's joined calls (empty files: no workers here)
			c, err := sdk.Dial(ctx, sdk.WithMaster(n.addr()), sdk.WithToken(testutil.ClusterToken()))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			write = func(path string, _ int) error {
				w, err := c.Create(ctx, path, sdk.CreateOptions{Recursive: true, WriteType: api.WriteType_MUST_CACHE, BlockSize: 1 << 20})
				if err != nil {
					return err
				}
				ack(path)
				if err := w.Close(); err != nil {
					return err
				}
				done(path, 0)
				return nil
			}
		}
		var wg sync.WaitGroup
		for w := range 16 {
			wg.Go(func() {
				for i := 0; ctx.Err() == nil; i++ {
					if write(fmt.Sprintf("/r%d/w%02d/d%d/f%05d", round, w, i%7, i), i) != nil {
						return
					}
				}
			})
		}
		deadline := time.Now().Add(30 * time.Second)
		for acks.Load() < 400 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		p.Kill() // SIGKILL while the clients are still writing
		wg.Wait()
		cancel()
		closeConn()
		if acks.Load() < 400 {
			t.Fatalf("round %d: only %d creates acknowledged in 30s", round, acks.Load())
		}
		t.Logf("round %d: %d creates acknowledged before SIGKILL", round, acks.Load())
	}
	p := n.master()
	c := n.sdk()
	seen := walk(t, c)
	for path := range created {
		fi, ok := seen[path]
		if !ok {
			t.Fatalf("acknowledged create %s lost after kill -9", path)
		}
		if length, done := completed[path]; done && (!fi.Completed || fi.Length != length) {
			t.Fatalf("acknowledged complete of %s lost: completed %v length %d, want %d", path, fi.Completed, fi.Length, length)
		}
	}
	t.Logf("%d acknowledged creates, %d completes, all present in a tree of %d", len(created), len(completed), len(seen))
	if err := p.Stop(20 * time.Second); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
}

var checkpointFile = regexp.MustCompile(`^(\d+)\.bolt$`)

// checkpoints lists the complete checkpoint files (sequence numbers).
func checkpoints(t *testing.T, dir string) []int64 {
	t.Helper()
	des, err := os.ReadDir(filepath.Join(dir, "checkpoints"))
	if err != nil {
		t.Fatal(err)
	}
	var seqs []int64
	for _, de := range des {
		if m := checkpointFile.FindStringSubmatch(de.Name()); m != nil {
			v, _ := strconv.ParseInt(m[1], 10, 64)
			seqs = append(seqs, v)
		}
	}
	return seqs
}

// closedSegments returns the [first, last] of the closed journal segments.
func closedSegments(t *testing.T, dir string) [][2]int64 {
	t.Helper()
	des, err := os.ReadDir(filepath.Join(dir, "logs"))
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`^(\d{20})-(\d{20})\.bolt$`)
	var out [][2]int64
	for _, de := range des {
		if m := re.FindStringSubmatch(de.Name()); m != nil {
			a, _ := strconv.ParseInt(m[1], 10, 64)
			b, _ := strconv.ParseInt(m[2], 10, 64)
			out = append(out, [2]int64{a, b})
		}
	}
	return out
}

func mkdirs(t *testing.T, fs api.FileSystemMasterClient, prefix string, count int) {
	t.Helper()
	for i := range count {
		if _, err := fs.CreateDirectory(context.Background(), &api.CreateDirectoryRequest{Path: fmt.Sprintf("%s%04d", prefix, i), Recursive: true, WriteType: api.WriteType_MUST_CACHE}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSecondaryCheckpointAndRestart: the secondary writes a checkpoint once
// the period has passed, the master deletes the segments it covers, and a
// restarted master logs that it loaded it and has everything.
func TestSecondaryCheckpointAndRestart(t *testing.T) {
	n := newNode(t,
		"ALLUVIUM_FSMASTER_JOURNAL_SEGMENT_ENTRIES=50",
		"ALLUVIUM_FSMASTER_JOURNAL_CHECKPOINT_PERIOD_ENTRIES=200",
		"ALLUVIUM_FSMASTER_JOURNAL_CHECKPOINT_POLL_INTERVAL=100ms",
		// One retained checkpoint: its segments go as soon as it exists.
		"ALLUVIUM_FSMASTER_JOURNAL_CHECKPOINTS_RETAINED=1")
	m := n.master()
	sec := n.secondary()
	fs, closeConn := n.grpc()
	defer closeConn()
	mkdirs(t, fs, "/ckpt/d", 450)
	var newest int64
	testutil.Eventually(t, 30*time.Second, func() error {
		for _, s := range checkpoints(t, n.journalDir()) {
			newest = max(newest, s)
		}
		if newest < 200 {
			return fmt.Errorf("newest checkpoint at %d", newest)
		}
		return nil
	})
	sec.WaitLog("secondary wrote checkpoint", 10*time.Second)
	testutil.Eventually(t, 30*time.Second, func() error {
		for _, s := range closedSegments(t, n.journalDir()) {
			if s[1] <= newest {
				return fmt.Errorf("segment %d-%d is covered by checkpoint %d but still there", s[0], s[1], newest)
			}
		}
		return nil
	})
	// Stop both (the secondary first, so no checkpoint appears meanwhile).
	if err := sec.Stop(20 * time.Second); err != nil {
		t.Fatalf("secondary SIGTERM: %v", err)
	}
	if err := m.Stop(20 * time.Second); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	path, seq, err := journal.LatestCheckpoint(n.journalDir(), nil)
	if err != nil || seq < newest {
		t.Fatalf("latest checkpoint %s at %d (%v), saw %d", path, seq, err, newest)
	}
	m = n.master()
	m.WaitLog(fmt.Sprintf("loaded checkpoint %s at sequence %d", path, seq), 10*time.Second)
	seen := walk(t, n.sdk())
	for i := range 450 {
		if _, ok := seen[fmt.Sprintf("/ckpt/d%04d", i)]; !ok {
			t.Fatalf("/ckpt/d%04d missing after restart from checkpoint", i)
		}
	}
	// fsadmin checkpoint with the secondary alive: it covers everything.
	sec = n.secondary()
	mkdirs(t, fs, "/more/d", 10)
	out := n.mustCLI("fsadmin", "checkpoint")
	info, err := n.sdk().MasterInfo(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, fmt.Sprintf("checkpoint at sequence %d", info.JournalSequence)) || info.LastCheckpointSequence != info.JournalSequence {
		t.Fatalf("fsadmin checkpoint: %q, master at %d, last checkpoint %d", out, info.JournalSequence, info.LastCheckpointSequence)
	}
	if strings.Contains(m.Log(), "wrote checkpoint") {
		t.Fatal("the master wrote the checkpoint itself although the secondary runs")
	}
	if err := sec.Stop(20 * time.Second); err != nil {
		t.Fatalf("secondary SIGTERM: %v", err)
	}
}

// TestSecondaryKilledMidCheckpoint: a secondary killed while it writes a
// checkpoint leaves no file the master would load; the master restarts from
// the journal alone and has everything.
func TestSecondaryKilledMidCheckpoint(t *testing.T) {
	n := newNode(t,
		"ALLUVIUM_FSMASTER_JOURNAL_SEGMENT_ENTRIES=40",
		"ALLUVIUM_FSMASTER_JOURNAL_CHECKPOINT_PERIOD_ENTRIES=100",
		"ALLUVIUM_FSMASTER_JOURNAL_CHECKPOINT_POLL_INTERVAL=100ms")
	m := n.master()
	// The test hook makes the secondary pause in the middle of writing.
	sec := n.secondary("ALLUVIUM_TEST_CHECKPOINT_STALL=1m")
	fs, closeConn := n.grpc()
	defer closeConn()
	mkdirs(t, fs, "/k/d", 150)
	sec.WaitLog("secondary writing checkpoint", 30*time.Second)
	testutil.Eventually(t, 10*time.Second, func() error {
		des, _ := os.ReadDir(filepath.Join(n.journalDir(), "checkpoints"))
		for _, de := range des {
			if strings.HasPrefix(de.Name(), ".tmp") {
				return nil
			}
		}
		return fmt.Errorf("no checkpoint being written yet")
	})
	sec.Kill()
	if got := checkpoints(t, n.journalDir()); len(got) != 0 {
		t.Fatalf("a killed secondary left checkpoint files %v", got)
	}
	if path, _, err := journal.LatestCheckpoint(n.journalDir(), nil); err != nil || path != "" {
		t.Fatalf("latest checkpoint after the kill: %q %v", path, err)
	}
	if err := m.Stop(20 * time.Second); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	m = n.master()
	if strings.Contains(m.Log(), "loaded checkpoint") {
		t.Fatal("the master loaded a checkpoint the killed secondary never finished")
	}
	seen := walk(t, n.sdk())
	for i := range 150 {
		if _, ok := seen[fmt.Sprintf("/k/d%04d", i)]; !ok {
			t.Fatalf("/k/d%04d missing", i)
		}
	}
	// A secondary started again (no stall) does write the checkpoint.
	n.secondary().WaitLog("secondary wrote checkpoint", 30*time.Second)
}
