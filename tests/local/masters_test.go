package local

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alluvium/alluvium/internal/testutil"
)

// TestLocalThreeMasters: `alluvium local --masters 3` is the way to try
// standby FS masters on one machine. Its env names all three masters, the
// group shows one leader and two standbys that have caught up, files
// written through it read back (the cache and the namespace), and a
// restart with the same home keeps them.
func TestLocalThreeMasters(t *testing.T) {
	bin := testutil.Binary(t)
	base := testutil.PortBase(t)
	root := t.TempDir()
	home, ufsDir := filepath.Join(root, "home"), filepath.Join(root, "ufs")
	if err := os.MkdirAll(ufsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{"local", "--home", home, "--ufs", ufsDir, "--workers", "1", "--masters", "3", "--port-base", fmt.Sprint(base)}
	p := testutil.Start(t, "local-masters", bin, nil, args...)
	p.WaitLog("ready", 2*time.Minute)
	if !strings.Contains(p.Log(), "3 FS masters (embedded journal)") {
		t.Fatalf("the ready line does not say three FS masters: %s", p.Log())
	}
	cli, env := newLocalCLI(t, bin, home)
	if ms := strings.Split(env["ALLUVIUM_MASTER"], ","); len(ms) != 3 {
		t.Fatalf("ALLUVIUM_MASTER=%q: want the three masters", env["ALLUVIUM_MASTER"])
	}

	src := filepath.Join(root, "a.txt")
	if err := os.WriteFile(src, []byte("kept by three masters\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cli.must("fs", "put", src, "/ha/a.txt", "--write-type", "MUST_CACHE")
	if got := cli.must("fs", "cat", "/ha/a.txt"); got != "kept by three masters\n" {
		t.Fatalf("fs cat = %q", got)
	}
	group := func() error {
		var g struct {
			JournalType string `json:"journalType"`
			Masters     []struct {
				ID   string `json:"id"`
				Role string `json:"role"`
				Lag  uint64 `json:"lag"`
			} `json:"masters"`
		}
		out := cli.must("fsadmin", "journal", "quorum", "info", "--output", "json")
		if err := json.Unmarshal([]byte(out), &g); err != nil {
			return fmt.Errorf("quorum info: %v: %s", err, out)
		}
		roles := map[string]int{}
		for _, m := range g.Masters {
			roles[m.Role]++
			if m.Role == "FOLLOWER" && m.Lag != 0 {
				return fmt.Errorf("%s is %d entries behind", m.ID, m.Lag)
			}
		}
		if len(g.Masters) != 3 || roles["LEADER"] != 1 || roles["FOLLOWER"] != 2 {
			return fmt.Errorf("group %s: %+v", g.JournalType, g.Masters)
		}
		return nil
	}
	testutil.Eventually(t, time.Minute, group)

	if err := p.Stop(30 * time.Second); err != nil {
		t.Fatalf("alluvium local --masters 3 exited with %v after SIGTERM", err)
	}
	p2 := testutil.Start(t, "local-masters-restart", bin, nil, args...)
	p2.WaitLog("ready", 2*time.Minute)
	if got := cli.must("fs", "cat", "/ha/a.txt"); got != "kept by three masters\n" {
		t.Fatalf("fs cat after restart = %q", got)
	}
	testutil.Eventually(t, time.Minute, group)
	if err := p2.Stop(30 * time.Second); err != nil {
		t.Fatalf("second run exited with %v", err)
	}
}

// TestLocalMastersBadCount: a raft group needs an odd number of members.
func TestLocalMastersBadCount(t *testing.T) {
	bin := testutil.Binary(t)
	for _, n := range []string{"0", "2", "4", "7"} {
		_, errOut, code := testutil.Run(t, bin, nil, "local", "--masters", n)
		if code != 2 || !strings.Contains(errOut, "--masters "+n) {
			t.Errorf("alluvium local --masters %s: exit %d, stderr %q; want exit 2 naming the flag", n, code, errOut)
		}
	}
}
