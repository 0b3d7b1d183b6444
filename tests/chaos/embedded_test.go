package chaos

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alluvium/alluvium/internal/testutil"
	"github.com/alluvium/alluvium/sdk"
)

// The damaged-journal faults of an embedded journal: a member's raft log
// cut short, and every checkpoint of every member damaged. The group holds
// each committed entry on a majority, so neither costs an acknowledged
// change: the damaged member refuses to start (and says how to replace
// it), the group goes on, and the member is replaced from the others.

// group reads the FS masters' group as `fsadmin journal quorum info` shows it.
func (c *cluster) group() *sdk.MasterGroup {
	c.t.Helper()
	var g sdk.MasterGroup
	testutil.Eventually(c.t, 30*time.Second, func() error {
		out, errOut, code := c.CLI("fsadmin", "journal", "quorum", "info", "--output", "json")
		if code != 0 {
			return fmt.Errorf("quorum info: %s", errOut)
		}
		return json.Unmarshal([]byte(out), &g)
	})
	return &g
}

// caughtUp waits until all three FS masters answer, one leads, and none
// lags.
func (c *cluster) caughtUp() *sdk.MasterGroup {
	c.t.Helper()
	var g *sdk.MasterGroup
	testutil.Eventually(c.t, 60*time.Second, func() error {
		g = c.group()
		leaders := 0
		for _, m := range g.Masters {
			if m.Role == "UNREACHABLE" || m.Lag != 0 {
				return fmt.Errorf("%s: %s, %d behind", m.ID, m.Role, m.Lag)
			}
			if m.Role == "LEADER" {
				leaders++
			}
		}
		if len(g.Masters) != 3 || leaders != 1 {
			return fmt.Errorf("%d members, %d leaders", len(g.Masters), leaders)
		}
		return nil
	})
	return g
}

// TestDamagedRaftLogMember: a standby's raft log is cut in half while it
// is down. It refuses to start, naming the fix; the other two go on; the
// member is replaced (removed, formatted, started with --join, added) and
// holds the whole namespace again.
func TestDamagedRaftLogMember(t *testing.T) {
	c := newCluster(t, testutil.ClusterOptions{FSMasters: 3})
	c.StartFSMaster()
	c.Connect()
	seqMkdirs(t, c, "/r", 0, 300)
	l := c.WaitFSLeader()
	s := (l + 1) % 3
	if err := c.FSMasters[s].Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(c.FSMasterHomeOf(s), "journal", "raft", "raft.db")
	st, err := os.Stat(db)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(db, st.Size()/2); err != nil {
		t.Fatal(err)
	}
	_, env, args := c.FSMasterCommand(s)
	_, errOut, code := testutil.Run(t, c.Bin, env, args...)
	if code == 0 || !strings.Contains(errOut, "raft log of this member is damaged") || !strings.Contains(errOut, "quorum remove") {
		t.Fatalf("a member with a cut raft log: exit %d: %s", code, errOut)
	}
	seqMkdirs(t, c, "/r", 300, 400) // two of three commit
	id := fmt.Sprintf("fsm%d", s)
	c.MustCLI("fsadmin", "journal", "quorum", "remove", id)
	c.MustCLI("format", "--journal-type", "embedded", "--force", "--home", c.FSMasterHomeOf(s))
	c.StartFSMasterOf(s, "ALLUVIUM_FSMASTER_RAFT_JOIN=true")
	c.MustCLI("fsadmin", "journal", "quorum", "add", id, c.FSMasterRaftAddr(s), c.MasterAddrs[s])
	g := c.caughtUp()
	var seqs, inodes []int64
	for _, m := range g.Masters {
		seqs, inodes = append(seqs, m.Sequence), append(inodes, m.Info.GetInodeCount())
	}
	if seqs[0] != seqs[1] || seqs[1] != seqs[2] || inodes[0] != inodes[1] || inodes[1] != inodes[2] {
		t.Fatalf("after the replacement: sequences %v, inodes %v", seqs, inodes)
	}
	if n := survivors(t, c, "/r", 400); n != 400 {
		t.Fatalf("%d of 400 directories after the replacement", n)
	}
}

// TestDamagedCheckpointsEmbedded: every checkpoint (snapshot base) of
// every member is damaged while the group is down. The masters start from
// their raft snapshots and logs, skip the damaged files, and the next
// checkpoint is whole again.
func TestDamagedCheckpointsEmbedded(t *testing.T) {
	c := newCluster(t, testutil.ClusterOptions{FSMasters: 3, Env: []string{"ALLUVIUM_FSMASTER_RAFT_SNAPSHOT_THRESHOLD=16",
		"ALLUVIUM_FSMASTER_RAFT_SNAPSHOT_INTERVAL=200ms", "ALLUVIUM_FSMASTER_RAFT_TRAILING_LOGS=8"}})
	c.StartFSMaster()
	c.Connect()
	seqMkdirs(t, c, "/k", 0, 200)
	c.MustCLI("fsadmin", "checkpoint")
	seqMkdirs(t, c, "/k", 200, 300)
	before := walk(t, c.Client)
	if err := c.StopFSMasters(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	damaged := 0
	for i := range c.FSMasters {
		files, _ := filepath.Glob(filepath.Join(c.FSMasterHomeOf(i), "journal", "checkpoints", "*.bolt"))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for off := 4096 * 2; off < len(b); off += 4096 {
				b[off+100] ^= 0xff
			}
			if err := os.WriteFile(f, b, 0o644); err != nil {
				t.Fatal(err)
			}
			damaged++
		}
	}
	if damaged == 0 {
		t.Fatal("no checkpoint to damage")
	}
	t.Logf("damaged %d checkpoint files", damaged)
	c.StartFSMaster()
	c.Connect()
	after := walk(t, c.Client)
	if len(after) != len(before) {
		t.Fatalf("after the damage: %d paths, before %d", len(after), len(before))
	}
	for p, fi := range before {
		if g, ok := after[p]; !ok || g.FileId != fi.FileId {
			t.Fatalf("%s changed: %v -> %v", p, fi, g)
		}
	}
	out := c.MustCLI("fsadmin", "checkpoint")
	t.Logf("a new checkpoint: %s", strings.TrimSpace(out))
	seqMkdirs(t, c, "/k", 300, 320)
	c.caughtUp()
}
