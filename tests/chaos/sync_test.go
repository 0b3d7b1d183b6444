package chaos

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/alluvium/alluvium/internal/testutil"
	"github.com/alluvium/alluvium/sdk"
)

// ufsWritten sums the bytes every block worker wrote to a UFS
// (WriteUfsFileFrom: each copy of a file writes its bytes once).
func (c *cluster) ufsWritten() float64 {
	c.t.Helper()
	var sum float64
	for i, w := range c.Workers {
		if w == nil || !w.Running() {
			continue
		}
		m, err := testutil.Metrics(c.WorkerHTTP(i))
		if err != nil {
			c.t.Fatalf("worker %d metrics: %v", i, err)
		}
		sum += m["alluvium_worker_ufs_bytes_written_total"]
	}
	return sum
}

// ufsFiles reads the files under UFSDir/dir: relative path → sha256.
func (c *cluster) ufsFiles(dir string) map[string]string {
	c.t.Helper()
	root := filepath.Join(c.UFSDir, dir)
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(root, p)
		out[rel] = testutil.SHA256(b)
		return err
	})
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

// TestJobMasterLeaderKilledDuringSync: three job masters, a sync of 1,000
// new files into a destination holding 300 files the source lacks (to
// delete) and 20 the filter leaves out (to keep). The leader is SIGKILLed
// in the middle of the copy round and, restarted, the new leader again as
// soon as the delete round has begun. The job completes with no task run
// twice; the destination is the source plus the 20 kept files, byte for
// byte; the block workers wrote each copied byte to the UFS exactly once
// (no file copied twice); nothing else was deleted, and a second sync
// finds nothing to do.
func TestJobMasterLeaderKilledDuringSync(t *testing.T) {
	c := startCluster(t, testutil.ClusterOptions{Workers: 3, JobMasters: 3, Env: []string{"ALLUVIUM_JOBMASTER_WORKER_TIMEOUT=6s"}})
	sizes := map[string]int{}
	var total int64
	for i := range 1000 {
		n := 1024 + (i*37)%3072
		sizes[fmt.Sprintf("d%02d/f%04d", i%20, i)] = n
		total += int64(n)
	}
	c.UFSTree("src", sizes)
	stale := map[string]int{}
	for i := range 300 {
		stale[fmt.Sprintf("d%02d/old%04d", i%30, i)] = 100 // d20..d29: whole directories SRC lacks
	}
	for i := range 20 {
		stale[fmt.Sprintf("d%02d/k%02d.keep", i%25, i)] = 10
	}
	c.UFSTree("dst", stale)
	id, err := c.Jobs.Submit(context.Background(), "sync", map[string]any{
		"src": "/src", "dst": "/dst", "exclude": []string{"*.keep"}, "batchFiles": 2, "maxDelete": 300,
	})
	if err != nil {
		t.Fatal(err)
	}
	info := c.waitMidJob(id, 40)
	t.Logf("job %d at %d/%d tasks, round %d", id, info.GetTasksDone(), info.GetTasksTotal(), info.GetRound())
	dead, _ := c.KillJobMasterLeader()
	c.StartJobMaster(dead)
	// The delete round: kill the leader again once it has begun.
	testutil.Eventually(t, 120*time.Second, func() error {
		j, err := c.Jobs.Get(context.Background(), id, false)
		if err != nil {
			return err
		}
		if j.GetRound() < 1 && !sdk.IsTerminal(j.GetStatus()) {
			return fmt.Errorf("round %d, %d/%d tasks", j.GetRound(), j.GetTasksDone(), j.GetTasksTotal())
		}
		return nil
	})
	if j, _ := c.Jobs.Get(context.Background(), id, false); !sdk.IsTerminal(j.GetStatus()) {
		t.Logf("delete round: %d/%d tasks; killing the leader again", j.GetTasksDone(), j.GetTasksTotal())
		c.KillJobMasterLeader()
	} else {
		t.Logf("the job ended before the delete round could be interrupted: %v", j.GetStatus())
	}
	final := c.waitJob(id, 120*time.Second)
	if final.GetStatus() != sdk.JobCompleted || final.GetFilesTotal() != 1000 || final.GetDeletes() != 300 || final.GetBytesTotal() != total {
		t.Fatalf("after the failovers: %s %q, %d files (%d bytes), %d skipped, %d deletes; want COMPLETED, 1000 files (%d bytes), 300 deletes",
			final.GetStatus(), final.GetError(), final.GetFilesTotal(), final.GetBytesTotal(), final.GetFilesSkipped(), final.GetDeletes(), total)
	}
	for _, tk := range final.GetTasks() {
		if tk.GetAttempt() != 1 {
			t.Errorf("task %d (%s) ran %d times: its result was lost in the failover", tk.GetTaskId(), tk.GetDescription(), tk.GetAttempt())
		}
	}
	// Every byte is written exactly once: a task the killed leader handed
	// out without committing its DISPATCH is adopted by its successor, not
	// handed out again (jobmaster/broker.go, the settle at leadership
	// start), so no file is copied twice.
	if w := c.ufsWritten(); int64(w) != total {
		t.Errorf("the workers wrote %v bytes to the UFS, the source has %d: a file was copied twice (or not at all)", w, total)
	}
	src, dst := c.ufsFiles("src"), c.ufsFiles("dst")
	want := map[string]string{}
	for k, v := range src {
		want[k] = v
	}
	for k := range stale {
		if strings.HasSuffix(k, ".keep") {
			want[k] = dst[k]
			if dst[k] == "" {
				t.Errorf("%s, left out by the filter, was deleted", k)
			}
		}
	}
	var extra, missing []string
	for k, v := range dst {
		if want[k] != v {
			extra = append(extra, k)
		}
	}
	for k := range want {
		if _, ok := dst[k]; !ok {
			missing = append(missing, k)
		}
	}
	sort.Strings(extra)
	sort.Strings(missing)
	if len(extra)+len(missing) > 0 {
		t.Fatalf("DST differs from SRC + kept files: %d wrong or extra (%v), %d missing (%v)", len(extra), extra, len(missing), missing)
	}
	// Synced: nothing to copy or delete.
	again, err := c.Jobs.Submit(context.Background(), "sync", map[string]any{"src": "/src", "dst": "/dst", "exclude": []string{"*.keep"}})
	if err != nil {
		t.Fatal(err)
	}
	if j := c.waitJob(again, 60*time.Second); j.GetStatus() != sdk.JobCompleted || j.GetFilesTotal() != 0 || j.GetDeletes() != 0 || j.GetFilesSkipped() != 1000 {
		t.Errorf("second sync: %s, %d files, %d deletes, %d skipped", j.GetStatus(), j.GetFilesTotal(), j.GetDeletes(), j.GetFilesSkipped())
	}
}
