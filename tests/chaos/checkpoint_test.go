package chaos

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
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

// mkdirLoad creates directories prefix0000.. from several clients until
// stop is closed (or n are acknowledged when n > 0); it returns the
// acknowledged paths.
type mkdirLoad struct {
	mu    sync.Mutex
	acked map[string]bool
	n     atomic.Int64
	wg    sync.WaitGroup
	stop  chan struct{}
	cc    interface{ Close() error }
}

func startMkdirs(t *testing.T, addr, prefix string, clients int) *mkdirLoad {
	t.Helper()
	cc, err := rpc.Dial(addr, rpc.ClientOptions{Token: testutil.ClusterToken()})
	if err != nil {
		t.Fatal(err)
	}
	fs := api.NewFileSystemMasterClient(cc)
	l := &mkdirLoad{acked: map[string]bool{}, stop: make(chan struct{}), cc: cc}
	for w := range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				p := fmt.Sprintf("%s/w%02d/d%05d", prefix, w, i)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := fs.CreateDirectory(ctx, &api.CreateDirectoryRequest{Path: p, Recursive: true, WriteType: api.WriteType_MUST_CACHE})
				cancel()
				if err != nil {
					return // the master is gone
				}
				l.mu.Lock()
				l.acked[p] = true
				l.mu.Unlock()
				l.n.Add(1)
			}
		}()
	}
	return l
}

// until waits for at least n acknowledged mkdirs.
func (l *mkdirLoad) until(t *testing.T, n int64) {
	t.Helper()
	testutil.Eventually(t, 60*time.Second, func() error {
		if got := l.n.Load(); got < n {
			return fmt.Errorf("%d of %d mkdirs acknowledged", got, n)
		}
		return nil
	})
}

func (l *mkdirLoad) halt() map[string]bool {
	close(l.stop)
	l.wg.Wait()
	l.cc.Close()
	return l.acked
}

// tempCheckpoints lists unfinished checkpoint files.
func tempCheckpoints(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(filepath.Join(dir, "checkpoints"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, de := range des {
		if strings.HasPrefix(de.Name(), ".tmp") {
			out = append(out, de.Name())
		}
	}
	return out
}

// TestSecondaryKilledMidCheckpoint: a secondary writes checkpoint A; a
// second secondary, stalled by the test hook in the middle of writing
// checkpoint B (inodes written, the rest not), is SIGKILLed while clients
// keep creating; then the master is SIGKILLed too. The restarted master
// loads A — never the half-written B — replays the journal after it, and
// has every acknowledged directory. A secondary started again writes a
// complete checkpoint, which the next restart loads.
func TestSecondaryKilledMidCheckpoint(t *testing.T) {
	c := newCluster(t, testutil.ClusterOptions{Env: []string{
		"ALLUVIUM_FSMASTER_JOURNAL_SEGMENT_ENTRIES=100",
		"ALLUVIUM_FSMASTER_JOURNAL_CHECKPOINT_PERIOD_ENTRIES=400",
		"ALLUVIUM_FSMASTER_JOURNAL_CHECKPOINT_POLL_INTERVAL=100ms",
	}})
	c.StartFSMaster()
	sec := c.StartSecondary()
	load := startMkdirs(t, c.Master, "/a", 8)
	var seqA int64
	testutil.Eventually(t, 60*time.Second, func() error {
		p, s, err := journal.LatestCheckpoint(c.journalDir(), nil)
		if err != nil {
			return err
		}
		if p == "" {
			return fmt.Errorf("no checkpoint yet (%d mkdirs)", load.n.Load())
		}
		seqA = s
		return nil
	})
	if err := sec.Stop(30 * time.Second); err != nil {
		t.Fatalf("secondary SIGTERM: %v", err)
	}
	pathA, seqA, err := journal.LatestCheckpoint(c.journalDir(), nil)
	if err != nil || pathA == "" {
		t.Fatalf("checkpoint A: %q %v", pathA, err)
	}
	t.Logf("checkpoint A at sequence %d", seqA)

	// The stalled secondary starts checkpoint B once 400 more entries are in.
	// (It may start writing before it says ready: no wait for that.)
	sec = testutil.Start(t, "secondary-stalled", c.Bin, append(append([]string{}, c.Env...), "ALLUVIUM_TEST_CHECKPOINT_STALL=5m"),
		"secondary", "--home", c.FSMasterHome(), "--port-base", fmt.Sprint(c.PortBase))
	sec.WaitLog("secondary writing checkpoint", 60*time.Second)
	testutil.Eventually(t, 30*time.Second, func() error {
		if len(tempCheckpoints(t, c.journalDir())) == 0 {
			return fmt.Errorf("no checkpoint being written yet")
		}
		return nil
	})
	sec.Kill()
	before := load.n.Load()
	load.until(t, before+300) // the master goes on without its secondary
	c.FSMaster.Kill()
	acked := load.halt()
	t.Logf("%d mkdirs acknowledged; secondary killed mid-checkpoint, then the master", len(acked))

	if p, s, err := journal.LatestCheckpoint(c.journalDir(), nil); err != nil || p != pathA || s != seqA {
		t.Fatalf("latest checkpoint after the kills: %q at %d (%v); want A %q at %d", p, s, err, pathA, seqA)
	}
	if tmp := tempCheckpoints(t, c.journalDir()); len(tmp) == 0 {
		t.Fatalf("the killed secondary left no temp file: the kill did not land mid-checkpoint")
	}
	m := c.StartFSMaster()
	m.WaitLog(fmt.Sprintf("loaded checkpoint %s at sequence %d", pathA, seqA), 10*time.Second)
	if strings.Count(m.Log(), "loaded checkpoint") != 1 {
		t.Fatalf("master loaded more than one checkpoint:\n%s", m.Log())
	}
	c.Connect()
	seen := walk(t, c.Client)
	for p := range acked {
		if _, ok := seen[p]; !ok {
			t.Fatalf("acknowledged mkdir %s lost", p)
		}
	}

	// A healthy secondary writes a complete checkpoint; the master,
	// restarted from it, has the same tree.
	sec = c.StartSecondary("ALLUVIUM_FSMASTER_JOURNAL_CHECKPOINT_PERIOD_ENTRIES=1")
	info, err := c.Client.Checkpoint(context.Background())
	if err != nil {
		t.Fatalf("fsadmin checkpoint: %v", err)
	}
	if info.GetSequence() <= seqA {
		t.Fatalf("new checkpoint at %d, A was at %d", info.GetSequence(), seqA)
	}
	_ = sec.Stop(30 * time.Second)
	c.FSMaster.Kill()
	m = c.StartFSMaster()
	m.WaitLog(fmt.Sprintf("loaded checkpoint %s at sequence %d", info.GetPath(), info.GetSequence()), 10*time.Second)
	c.Connect()
	again := walk(t, c.Client)
	if len(again) != len(seen) {
		t.Fatalf("restarted from the new checkpoint: %d paths, before %d", len(again), len(seen))
	}

	// The master writing a checkpoint itself (no secondary alive) is
	// SIGKILLed mid-write: the next start loads the last complete one.
	_ = m.Stop(30 * time.Second)
	m = c.StartFSMaster("ALLUVIUM_TEST_CHECKPOINT_STALL=5m")
	c.Connect()
	mkdirsN(t, c, "/b", 50)
	tmpBefore := len(tempCheckpoints(t, c.journalDir()))
	go func() { _, _ = c.Client.Checkpoint(context.Background()) }()
	testutil.Eventually(t, 30*time.Second, func() error {
		if len(tempCheckpoints(t, c.journalDir())) <= tmpBefore {
			return fmt.Errorf("the master's checkpoint temp file is not there yet")
		}
		return nil
	})
	m.Kill()
	m = c.StartFSMaster()
	m.WaitLog(fmt.Sprintf("loaded checkpoint %s at sequence %d", info.GetPath(), info.GetSequence()), 10*time.Second)
	c.Connect()
	final := walk(t, c.Client)
	if len(final) != len(seen)+51 {
		t.Fatalf("after the master died mid-checkpoint: %d paths, want %d", len(final), len(seen)+51)
	}
}

// mkdirsN creates prefix/d0000.. through the SDK.
func mkdirsN(t *testing.T, c *cluster, prefix string, n int) {
	t.Helper()
	for i := range n {
		if _, err := c.Client.Mkdir(context.Background(), fmt.Sprintf("%s/d%04d", prefix, i), sdk.MkdirOptions{Parents: true}); err != nil {
			t.Fatal(err)
		}
	}
}
