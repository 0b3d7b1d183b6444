// Package membership tests changing the job masters' raft group while it
// runs, on real processes: a single job master grows to three with
// `job raft add-peer` (the new ones started with --join), loses the first
// to SIGKILL, goes on with the joiners, drops the dead member with
// `job raft remove-peer`, and at last removes its own leader.
package membership

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
	bin := testutil.Binary(t)
	base := testutil.PortBase(t)
	home := t.TempDir()
	ufsDir := filepath.Join(home, "ufs")
	for i := range 6 {
		p := filepath.Join(ufsDir, "data", fmt.Sprintf("f%d", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(strings.Repeat("x", 1000*(i+1))), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	master := fmt.Sprintf("localhost:%d", base)
	jmBase := func(i int) int { return base + 60 + 10*i }
	rpcAddr := func(i int) string { return fmt.Sprintf("localhost:%d", jmBase(i)+3) }
	raftAddr := func(i int) string { return fmt.Sprintf("localhost:%d", jmBase(i)+5) }
	all := []string{rpcAddr(0), rpcAddr(1), rpcAddr(2)}
	env := []string{
		"ALLUVIUM_MASTER=" + master,
		"ALLUVIUM_FSMASTER_WORKER_HEARTBEAT_INTERVAL=200ms",
		"ALLUVIUM_JOBMASTER_WORKER_TIMEOUT=2s",
		"ALLUVIUM_JOBMASTER_WORKER_HEARTBEAT_INTERVAL=200ms",
		"ALLUVIUM_JOBMASTER_RAFT_HEARTBEAT_TIMEOUT=300ms",
		"ALLUVIUM_JOBMASTER_RAFT_ELECTION_TIMEOUT=300ms",
	}
	fsm := testutil.Start(t, "fsmaster", bin, env, "fsmaster", "--home", filepath.Join(home, "master"),
		"--port-base", fmt.Sprint(base), "--ufs", "file://"+ufsDir)
	fsm.WaitLog("fsmaster ready", 30*time.Second)

	jm := make([]*testutil.Process, 3)
	startJM := func(i int, extra ...string) {
		args := append([]string{"jobmaster", "--home", filepath.Join(home, fmt.Sprintf("jm%d", i)),
			"--port-base", fmt.Sprint(jmBase(i)), "--master", master, "--node-id", fmt.Sprintf("jm%d", i)}, extra...)
		jm[i] = testutil.Start(t, fmt.Sprintf("jobmaster%d", i), bin, env, args...)
		jm[i].WaitLog("jobmaster ready", 30*time.Second)
	}
	startJM(0) // alone: bootstraps itself
	startJM(1, "--join")
	startJM(2, "--join")
	jm[1].WaitLog("waiting to be added", 10*time.Second)

	wdir := filepath.Join(home, "worker0")
	conf := filepath.Join(wdir, "worker.yaml")
	if err := os.MkdirAll(wdir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("worker:\n  tiers:\n    - alias: MEM\n      path: %s/mem\n      quota: 64MiB\n", wdir)), 0o644); err != nil {
		t.Fatal(err)
	}
	w := testutil.Start(t, "worker0", bin, env, "worker", "--config", conf, "--home", wdir,
		"--port-base", fmt.Sprint(base), "--index", "0", "--master", master, "--job-master", strings.Join(all, ","))
	w.WaitLog("worker ready", 30*time.Second)

	cli := func(jobMasters []string, args ...string) (string, string, int) {
		t.Helper()
		return testutil.Run(t, bin, append(env, "ALLUVIUM_JOB_MASTER="+strings.Join(jobMasters, ",")), args...)
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

	// Bad input is refused and changes nothing.
	if _, errOut, code := cli(all[:1], "job", "raft", "add-peer", "jm1", "nohostport", rpcAddr(1)); code != 2 || !strings.Contains(errOut, "RAFT-ADDR") {
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
	must(all[:1], "job", "raft", "add-peer", "jm1", raftAddr(1), rpcAddr(1))
	must(all[:1], "job", "raft", "add-peer", "jm2", raftAddr(2), rpcAddr(2))
	if p := peers(all); len(p.Servers) != 3 || p.LeaderID != "jm0" {
		t.Fatalf("after two adds: %+v", p)
	}
	// The joiners hold the state: a job finished before they joined is
	// visible from them once jm0 is gone.
	load(all, "/data")

	jm[0].Kill()
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
	if err := jm[restart].Stop(15 * time.Second); err != nil {
		t.Fatalf("stop jm%d: %v", restart, err)
	}
	startJM(restart, "--join")
	load(survivors, "/data/f3")

	// Removing the leader hands leadership over first (the CLI asks again).
	leader := peers(survivors).LeaderID
	must(survivors, "job", "raft", "remove-peer", leader)
	p = peers(survivors)
	if len(p.Servers) != 1 || p.LeaderID == leader || p.LeaderID == "" {
		t.Fatalf("after removing the leader %s: %+v", leader, p)
	}
	load(survivors, "/data/f4")
}
