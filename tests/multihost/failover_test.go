package multihost

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alluvium/alluvium/internal/testutil"
)

// fixture puts what the faults must not disturb in place: a file cached
// on a worker (MUST_CACHE: its bytes exist nowhere else) and a UFS tree a
// load job will warm up while the fault happens.
type fixture struct {
	cached []byte
	loadN  int
}

func (c *cluster) fixture() fixture {
	c.t.Helper()
	f := fixture{cached: make([]byte, 3<<20+12345), loadN: 80}
	for i := range f.cached {
		f.cached[i] = byte(rand.IntN(256))
	}
	local := filepath.Join(c.dir, "cached.bin")
	if err := os.WriteFile(local, f.cached, 0o644); err != nil {
		c.t.Fatal(err)
	}
	c.mustCLI("fs", "put", "--write-type", "MUST_CACHE", "--block-size", "1MiB", local, "/cached.bin")
	src := filepath.Join(c.ufs, "loadsrc")
	if err := os.MkdirAll(src, 0o755); err != nil {
		c.t.Fatal(err)
	}
	for i := 0; i < f.loadN; i++ {
		b := make([]byte, 200<<10+i)
		for j := range b {
			b[j] = byte(i + j)
		}
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("f%03d", i)), b, 0o644); err != nil {
			c.t.Fatal(err)
		}
	}
	return f
}

// submitLoad starts a load of the UFS tree and returns its job id.
func (c *cluster) submitLoad() string {
	c.t.Helper()
	out := c.mustCLI("job", "submit", "load", "/loadsrc", "--output", "json")
	var j struct {
		ID json.Number `json:"id"`
	}
	if err := json.Unmarshal([]byte(out), &j); err != nil || j.ID == "" {
		c.t.Fatalf("job submit: %v: %s", err, out)
	}
	return j.ID.String()
}

// checkAfter checks what must hold after a fault: the cached file reads
// back byte for byte, the load job completes, both workers are registered
// with the leader.
func (c *cluster) checkAfter(f fixture, job string) {
	c.t.Helper()
	got := c.mustCLI("fs", "cat", "/cached.bin")
	if !bytes.Equal([]byte(got), f.cached) {
		c.t.Fatalf("the cached file reads back %d bytes, not the %d written", len(got), len(f.cached))
	}
	if out, errOut, code := c.cli("job", "wait", job); code != 0 {
		c.t.Fatalf("the load running during the fault: exit %d: %s%s", code, out, errOut)
	}
	c.waitReady(2)
	stat := c.mustCLI("fs", "stat", "/loadsrc/f079", "--output", "json")
	if !strings.Contains(stat, `"cachedPercent": 100`) {
		c.t.Fatalf("a loaded file is not cached: %s", stat)
	}
}

// TestLeaderKilled: three FS masters on three hosts, 64 clients creating
// files; the leader is SIGKILLed. A standby leads; every acknowledged
// create is there; the workers register with the new leader; the cached
// file still reads; a load running at the time completes; the killed
// master comes back as a standby and catches up.
func TestLeaderKilled(t *testing.T) {
	c := newCluster(t)
	f := c.fixture()
	cr := c.startCreators(64, "/load")
	cr.waitAcked(2000, 2*time.Minute)
	job := c.submitLoad()
	l := c.leader()
	before := cr.acked()
	c.fs[l].Kill()
	t0 := time.Now()
	n := c.leader(l)
	t.Logf("m%d killed; m%d leads after %v (as the client saw it)", l+1, n+1, time.Since(t0).Round(time.Millisecond))
	cr.waitAcked(before+2000, 2*time.Minute) // creates go on on the new leader
	res := cr.finish()
	if res.Acked == 0 {
		t.Fatal("nothing acknowledged")
	}
	cr.verify()
	c.checkAfter(f, job)
	c.startFS(l)
	c.caughtUp()
	cr.verify()
}

// TestLeaderPartitioned: the leader's host is cut off — its link down,
// then (once it has rejoined) a partition between it and the other
// hosts. Each time the majority elects a leader and goes on; the old
// leader, reached from its own host, refuses writes; after healing it is a
// standby that has caught up, and nothing acknowledged is lost or twice.
func TestLeaderPartitioned(t *testing.T) {
	c := newCluster(t)
	f := c.fixture()
	cr := c.startCreators(16, "/part")
	cr.waitAcked(500, 2*time.Minute)
	job := c.submitLoad()

	cut := func(what string, isolate func(h *testutil.Host) (heal func())) {
		l := c.leader()
		old := c.masters[l]
		before := cr.acked()
		heal := isolate(old)
		n := c.leader(l)
		t.Logf("%s: %s cut off, %s leads", what, old.Name, c.masters[n].Name)
		cr.waitAcked(before+500, 2*time.Minute)
		// The old leader, asked on its own host, takes no write.
		out, errOut, code := old.Run([]string{"ALLUVIUM_MASTER=localhost:19998"}, "fs", "mkdir", "/from-the-deposed-leader-"+what)
		if code == 0 {
			t.Fatalf("%s: the cut-off old leader took a write: %s", what, out)
		}
		t.Logf("%s: the old leader refused: %s", what, strings.TrimSpace(errOut))
		t0 := time.Now()
		heal()
		c.caughtUp()
		t.Logf("%s: healed; %s caught up as a standby %v later", what, old.Name, time.Since(t0).Round(time.Millisecond))
		if _, _, code := c.cli("fs", "stat", "/from-the-deposed-leader-"+what); code == 0 {
			t.Fatalf("%s: the write refused on the old leader exists", what)
		}
	}
	cut("link-down", func(h *testutil.Host) func() {
		h.LinkDown()
		return h.LinkUp
	})
	cut("partition", func(h *testutil.Host) func() {
		var others []*testutil.Host
		for _, o := range c.net.Hosts() {
			if o != h {
				others = append(others, o)
			}
		}
		return c.net.Partition([]*testutil.Host{h}, others)
	})
	cr.finish()
	cr.verify()
	c.checkAfter(f, job)
}

// TestMajorityLost: two of the three FS masters die. Writes stop with an
// error that names the quorum the group lacks; when the masters come back
// the group goes on where it was, nothing acknowledged lost.
func TestMajorityLost(t *testing.T) {
	c := newCluster(t)
	cr := c.startCreators(8, "/maj")
	cr.waitAcked(300, 2*time.Minute)
	l := c.leader()
	a, b := (l+1)%3, (l+2)%3
	c.fs[a].Kill()
	c.fs[b].Kill()
	// The leader cannot commit: it steps down, and clients are told why.
	out, errOut, code := c.cli("fs", "mkdir", "/during-the-loss")
	if code == 0 {
		t.Fatalf("a write succeeded without a quorum: %s", out)
	}
	if !strings.Contains(errOut, "quorum") || !strings.Contains(errOut, "2 of its 3 voters") {
		t.Fatalf("the error does not name the lost quorum: %s", errOut)
	}
	t.Logf("without a quorum: %s", strings.TrimSpace(errOut))
	c.startFS(a)
	c.startFS(b)
	c.leader()
	c.mustCLI("fs", "mkdir", "/after-the-loss")
	cr.finish()
	c.caughtUp()
	cr.verify()
}

// TestOldLeaderCatchesUpFromSnapshot: the leader dies; while it is down
// the group writes far more than the raft log keeps after a snapshot, so
// when it restarts it can only catch up from a snapshot (whose base a
// standby wrote) — and does.
func TestOldLeaderCatchesUpFromSnapshot(t *testing.T) {
	c := newCluster(t,
		"ALLUVIUM_FSMASTER_RAFT_SNAPSHOT_THRESHOLD=64",
		"ALLUVIUM_FSMASTER_RAFT_TRAILING_LOGS=32",
		"ALLUVIUM_FSMASTER_RAFT_SNAPSHOT_INTERVAL=300ms",
		"ALLUVIUM_FSMASTER_JOURNAL_CHECKPOINT_PERIOD_ENTRIES=400",
	)
	l := c.leader()
	c.fs[l].Kill()
	c.leader(l)
	cr := c.startCreators(8, "/snap")
	cr.waitAcked(3000, 3*time.Minute)
	cr.finish()
	c.mustCLI("fsadmin", "checkpoint")
	c.startFS(l)
	c.fs[l].WaitLog("restored a raft snapshot", 2*time.Minute)
	c.caughtUp()
	cr.verify()
}

// TestImpairedNetwork: the leader's host sends with added latency and
// loss (tc netem; where the kernel has no netem, loss alone through
// nftables). The group keeps committing, and nothing acknowledged is lost.
func TestImpairedNetwork(t *testing.T) {
	c := newCluster(t)
	cr := c.startCreators(16, "/slow")
	cr.waitAcked(300, 2*time.Minute)
	l := c.leader()
	undo, err := c.masters[l].Impair(20*time.Millisecond, 5)
	if errors.Is(err, testutil.ErrNoNetem) {
		t.Logf("no netem in this kernel: loss only")
		undo, err = c.masters[l].Impair(0, 5)
	}
	if err != nil {
		t.Fatal(err)
	}
	before := cr.acked()
	cr.waitAcked(before+500, 3*time.Minute)
	undo()
	cr.finish()
	c.caughtUp()
	cr.verify()
}
