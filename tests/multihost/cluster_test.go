// Package multihost runs a highly available cluster — three FS masters
// sharing an embedded journal, three job masters, two workers — as it would
// run on separate machines: every host is a network namespace of a
// testutil.Net with its own address, the processes use the sample
// configuration configs/ha/ (host names host1..host3 resolve on every
// host), and faults are the kernel's: SIGKILL, a link down, partitions.
// Clients run on a host of their own: the CLI, and this test binary
// re-executed as a helper (helper_test.go) for work with many clients.
package multihost

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

const (
	fsRPC = 19998
	jmRPC = 20001
)

// cluster is the test's cluster on its Net.
type cluster struct {
	t       *testing.T
	net     *testutil.Net
	dir     string
	ufs     string // the root mount's directory: the "shared storage" every host reaches
	masters []*testutil.Host
	workers []*testutil.Host
	client  *testutil.Host
	fs      []*testutil.Process // FS master of host i
	jm      []*testutil.Process
	ws      []*testutil.Process
	env     []string // extra env of every server process
}

// masterList is ALLUVIUM_MASTER for clients.
const masterList = "host1:19998,host2:19998,host3:19998"

func newCluster(t *testing.T, env ...string) *cluster {
	t.Helper()
	n := testutil.NewNet(t)
	c := &cluster{t: t, net: n, dir: t.TempDir(), env: env}
	c.ufs = filepath.Join(c.dir, "ufs")
	if err := os.MkdirAll(c.ufs, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		c.masters = append(c.masters, n.AddHost(fmt.Sprintf("host%d", i)))
	}
	for i := 1; i <= 2; i++ {
		c.workers = append(c.workers, n.AddHost(fmt.Sprintf("worker%d", i)))
	}
	c.client = n.AddHost("client")
	c.fs, c.jm, c.ws = make([]*testutil.Process, 3), make([]*testutil.Process, 3), make([]*testutil.Process, 2)
	for i := range c.masters {
		c.startFS(i)
	}
	for i := range c.masters {
		c.startJM(i)
	}
	for i := range c.workers {
		c.startWorker(i)
	}
	c.waitReady(2)
	return c
}

func (c *cluster) config(name string) string {
	return filepath.Join(testutil.RepoRoot(c.t), "configs", "ha", name)
}

// serverEnv is what every server gets: short timeouts for a test, the
// shared UFS, logs readable in the test's output.
func (c *cluster) serverEnv(extra ...string) []string {
	env := []string{
		"ALLUVIUM_LOG_FORMAT=console",
		"ALLUVIUM_FSMASTER_UFS=file://" + c.ufs,
		"ALLUVIUM_FSMASTER_WORKER_TIMEOUT=6s",
		"ALLUVIUM_FSMASTER_WORKER_HEARTBEAT_INTERVAL=300ms",
		"ALLUVIUM_FSMASTER_JOURNAL_CHECKPOINT_POLL_INTERVAL=300ms",
		"ALLUVIUM_JOBMASTER_WORKER_TIMEOUT=6s",
		"ALLUVIUM_JOBMASTER_WORKER_HEARTBEAT_INTERVAL=300ms",
	}
	return append(append(env, c.env...), extra...)
}

func (c *cluster) startFS(i int) {
	h := c.masters[i]
	c.fs[i] = h.Start(fmt.Sprintf("fsmaster-%s", h.Name), c.serverEnv("ALLUVIUM_FSMASTER_HOST="+h.Name),
		"fsmaster", "--config", c.config("master.yaml"), "--home", filepath.Join(c.dir, h.Name, "fs"), "--node-id", fmt.Sprintf("m%d", i+1))
}

func (c *cluster) startJM(i int) {
	h := c.masters[i]
	c.jm[i] = h.Start(fmt.Sprintf("jobmaster-%s", h.Name), c.serverEnv("ALLUVIUM_JOBMASTER_HOST="+h.Name),
		"jobmaster", "--config", c.config("master.yaml"), "--home", filepath.Join(c.dir, h.Name, "jm"), "--node-id", fmt.Sprintf("jm%d", i+1))
}

func (c *cluster) startWorker(i int) {
	h := c.workers[i]
	c.ws[i] = h.Start(fmt.Sprintf("worker-%s", h.Name), c.serverEnv("ALLUVIUM_WORKER_HOST="+h.Name),
		"worker", "--config", c.config("worker.yaml"), "--home", filepath.Join(c.dir, h.Name))
}

// clientEnv is a client's environment on the client host.
func clientEnv() []string {
	return []string{"ALLUVIUM_MASTER=" + masterList, "ALLUVIUM_JOB_MASTER=host1:20001,host2:20001,host3:20001"}
}

// cli runs the alluvium CLI on the client host.
func (c *cluster) cli(args ...string) (string, string, int) {
	return c.client.Run(clientEnv(), args...)
}

// mustCLI runs it and fails the test unless it succeeds.
func (c *cluster) mustCLI(args ...string) string {
	c.t.Helper()
	out, errOut, code := c.cli(args...)
	if code != 0 {
		c.t.Fatalf("alluvium %s: exit %d: %s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// group reads the FS masters' group (fsadmin journal quorum info).
func (c *cluster) group() (*sdk.MasterGroup, error) {
	out, errOut, code := c.cli("fsadmin", "journal", "quorum", "info", "--output", "json")
	if code != 0 {
		return nil, fmt.Errorf("quorum info: exit %d: %s", code, strings.TrimSpace(errOut))
	}
	var g sdk.MasterGroup
	if err := json.Unmarshal([]byte(out), &g); err != nil {
		return nil, fmt.Errorf("quorum info: %v: %s", err, out)
	}
	return &g, nil
}

// leader waits for a leader other than those named and returns the index
// of its host.
func (c *cluster) leader(not ...int) int {
	c.t.Helper()
	idx := -1
	testutil.Eventually(c.t, 60*time.Second, func() error {
		g, err := c.group()
		if err != nil {
			return err
		}
		for _, m := range g.Masters {
			if m.Role != "LEADER" {
				continue
			}
			var i int
			if _, err := fmt.Sscanf(m.ID, "m%d", &i); err != nil {
				return err
			}
			for _, n := range not {
				if n == i-1 {
					return fmt.Errorf("%s still leads", m.ID)
				}
			}
			idx = i - 1
			return nil
		}
		return fmt.Errorf("no leader: %+v", g.Masters)
	})
	return idx
}

// caughtUp waits until every FS master answers and has applied what the
// group had committed when it began, under one leader.
func (c *cluster) caughtUp() {
	c.t.Helper()
	// Caught up means every member has applied what the group had
	// committed when the wait began. Not "no lag at one instant": the
	// creators may still be writing, and a member asked a moment before
	// the others then shows an entry or two behind however fast it
	// follows (once in CI, for 90 s).
	var target uint64
	testutil.Eventually(c.t, 90*time.Second, func() error {
		g, err := c.group()
		if err != nil {
			return err
		}
		top := g.CommitIndex
		for _, m := range g.Masters {
			top = max(top, m.AppliedIndex)
		}
		if target == 0 {
			target = top
		}
		leaders := 0
		for _, m := range g.Masters {
			if m.Role == "UNREACHABLE" || m.AppliedIndex < target {
				return fmt.Errorf("%s is %s, applied %d of the %d committed when the wait began (%d now)", m.ID, m.Role, m.AppliedIndex, target, top)
			}
			if m.Role == "LEADER" {
				leaders++
			}
		}
		if leaders != 1 || len(g.Masters) != 3 {
			return fmt.Errorf("%d leaders among %d members", leaders, len(g.Masters))
		}
		return nil
	})
}

// report is fsadmin report --output json.
type report struct {
	LiveWorkers int          `json:"liveWorkers"`
	Masters     []sdk.Master `json:"masters"`
}

// waitReady waits for a leader that knows n live workers.
func (c *cluster) waitReady(n int) {
	c.t.Helper()
	testutil.Eventually(c.t, 90*time.Second, func() error {
		out, errOut, code := c.cli("fsadmin", "report", "--output", "json")
		if code != 0 {
			return fmt.Errorf("report: %s", strings.TrimSpace(errOut))
		}
		var r report
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			return err
		}
		if r.LiveWorkers != n {
			return fmt.Errorf("%d of %d workers live", r.LiveWorkers, n)
		}
		return nil
	})
}
