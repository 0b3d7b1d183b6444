// Package membership tests changing the job masters' raft group while it
// runs, on real processes: a single job master grows to three with
// `job raft add-peer` (the new ones started with --join), loses the first
// to SIGKILL, goes on with the joiners, drops the dead member with
// `job raft remove-peer`, and at last removes its own leader.
package membership

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alluvium/alluvium/internal/testutil"
)

type peersJSON struct {
	LeaderID string `json:"leaderId"`
	Servers  []struct {
		ID string `json:"id"`
	} `json:"servers"`
}

type jobJSON struct {
	ID     int64  `json:"id"`
	Status string `json:"status"`
}

func TestGrowFailOverShrink(t *testing.T) {
	// jm0 bootstraps alone; jm1 and jm2 start with --join and wait.
	c := testutil.StartCluster(t, testutil.ClusterOptions{Workers: 1, JobMasters: 3, GrowJobMasters: true})
	c.JobMasters[1].WaitLog("waiting to be added", 10*time.Second)
	for i := range 6 {
		p := filepath.Join(c.UFSDir, "data", fmt.Sprintf("f%d", i))
		testutil.WriteFile(t, p, []byte(strings.Repeat("x", 1000*(i+1))))
	}
	all := c.JobMasterAddrs
	// cli runs the CLI against the job masters given.
	cli := func(jobMasters []string, args ...string) (string, string, int) {
		t.Helper()
		return testutil.Run(t, c.Bin, append(c.Env, "ALLUVIUM_JOB_MASTER="+strings.Join(jobMasters, ",")), args...)
	}
	must := func(jobMasters []string, args ...string) string {
		t.Helper()
		out, errOut, code := cli(jobMasters, args...)
		if code != 0 {
			t.Fatalf("alluvium %s: exit %d: %s", strings.Join(args, " "), code, errOut)
		}
		return out
	}
	peers := func(jobMasters []string) peersJSON {
		t.Helper()
		var p peersJSON
		if err := json.Unmarshal([]byte(must(jobMasters, "job", "raft", "list-peers", "--output", "json")), &p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	load := func(jobMasters []string, path string) jobJSON {
		t.Helper()
		var j jobJSON
		out := must(jobMasters, "job", "submit", "load", path, "--wait", "--output", "json")
		if err := json.Unmarshal([]byte(out), &j); err != nil || j.Status != "COMPLETED" {
			t.Fatalf("load %s: %q (%v)", path, out, err)
		}
		return j
	}
	add := func(i int) {
		t.Helper()
		must(all[:1], "job", "raft", "add-peer", fmt.Sprintf("jm%d", i), c.JobMasterRaftAddr(i), all[i])
	}

	// Bad input is refused and changes nothing.
	if _, errOut, code := cli(all[:1], "job", "raft", "add-peer", "jm1", "nohostport", all[1]); code != 2 || !strings.Contains(errOut, "RAFT-ADDR") {
		t.Fatalf("add-peer with a bad address: exit %d %q", code, errOut)
	}
	if _, errOut, code := cli(all[:1], "job", "raft", "remove-peer", "nobody"); code != 1 || !strings.Contains(errOut, "nobody") {
		t.Fatalf("remove-peer of a non-member: exit %d %q", code, errOut)
	}
	// A node that is not running is not added (a dead voter would cost
	// the one-node group its quorum).
	if _, errOut, code := cli(all[:1], "job", "raft", "add-peer", "jm9", "localhost:1", "localhost:2"); code != 1 || !strings.Contains(errOut, "--join") {
		t.Fatalf("add-peer of a node that is not running: exit %d %q", code, errOut)
	}
	if n := len(peers(all[:1]).Servers); n != 1 {
		t.Fatalf("%d members before any add, want 1", n)
	}

	first := load(all[:1], "/data/f0")
	add(1)
	add(2)
	// Adding voters may cost an election on a loaded machine: wait for the
	// group of three to have a leader (whichever; the kill below only needs
	// jm0 to be a member the survivors can do without).
	testutil.Eventually(t, 20*time.Second, func() error {
		if p := peers(all); len(p.Servers) != 3 || p.LeaderID == "" {
			return fmt.Errorf("after two adds: %+v", p)
		}
		return nil
	})
	// The joiners hold the state: a job finished before they joined is
	// visible from them once jm0 is gone.
	load(all, "/data")

	c.JobMasters[0].Kill()
	survivors := all[1:]
	testutil.Eventually(t, 20*time.Second, func() error {
		p := peers(survivors)
		if p.LeaderID != "jm1" && p.LeaderID != "jm2" {
			return fmt.Errorf("leader %q", p.LeaderID)
		}
		return nil
	})
	var j jobJSON
	if err := json.Unmarshal([]byte(must(survivors, "job", "stat", fmt.Sprint(first.ID), "--output", "json")), &j); err != nil || j.Status != "COMPLETED" {
		t.Fatalf("job %d seen from the joiners: %+v (%v)", first.ID, j, err)
	}
	load(survivors, "/data/f5")

	must(survivors, "job", "raft", "remove-peer", "jm0")
	p := peers(survivors)
	if len(p.Servers) != 2 {
		t.Fatalf("after removing jm0: %+v", p)
	}
	for _, s := range p.Servers {
		if s.ID == "jm0" {
			t.Fatalf("jm0 still listed: %+v", p)
		}
	}
	// A restarted joiner keeps its membership (it has raft state now).
	var restart int
	if p.LeaderID == "jm1" {
		restart = 2
	} else {
		restart = 1
	}
	if err := c.JobMasters[restart].Stop(15 * time.Second); err != nil {
		t.Fatalf("stop jm%d: %v", restart, err)
	}
	c.StartJobMaster(restart)
	load(survivors, "/data/f3")

	// Removing the leader hands leadership over first (the CLI asks again).
	// The restart may have cost an election: wait until one leads.
	var leader string
	testutil.Eventually(t, 20*time.Second, func() error {
		if leader = peers(survivors).LeaderID; leader == "" {
			return errors.New("no leader")
		}
		return nil
	})
	must(survivors, "job", "raft", "remove-peer", leader)
	p = peers(survivors)
	if len(p.Servers) != 1 || p.LeaderID == leader || p.LeaderID == "" {
		t.Fatalf("after removing the leader %s: %+v", leader, p)
	}
	load(survivors, "/data/f4")
}
