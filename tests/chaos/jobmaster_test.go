package chaos

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/testutil"
	"github.com/alluvium/alluvium/sdk"
)

// cacheReport lists every file under dir with its blocks and checks each
// block is cached exactly `replication` times; it returns per block worker
// id the blocks and bytes located there.
func (c *cluster) cacheReport(dir string, files map[string][]byte, replication int) (blocks, bytes map[int64]int64) {
	c.t.Helper()
	blocks, bytes = map[int64]int64{}, map[int64]int64{}
	n := 0
	for fi, err := range c.Client.List(context.Background(), dir, sdk.ListOptions{Recursive: true, IncludeBlocks: true}) {
		if err != nil {
			c.t.Fatalf("list %s: %v", dir, err)
		}
		if fi.Folder {
			continue
		}
		if _, ok := files[fi.Path]; !ok {
			continue
		}
		n++
		if fi.Length > 0 && fi.CachedPercent != 100 {
			c.t.Errorf("%s: %d%% cached after the load completed", fi.Path, fi.CachedPercent)
		}
		for _, fb := range fi.FileBlockInfos {
			b := fb.GetBlockInfo()
			seen := map[int64]bool{}
			for _, l := range b.GetLocations() {
				if seen[l.GetWorkerId()] {
					c.t.Errorf("%s block %d: worker %d listed twice", fi.Path, b.GetBlockId(), l.GetWorkerId())
				}
				seen[l.GetWorkerId()] = true
				blocks[l.GetWorkerId()]++
				bytes[l.GetWorkerId()] += b.GetLength()
			}
			// Exactly as many copies as asked: one more is a task run twice
			// (a new job-master leader must not hand out again a task the
			// old one handed out without committing its DISPATCH — the
			// broker's settle at leadership start).
			if len(seen) != replication {
				c.t.Errorf("%s block %d: %d copies, want %d", fi.Path, b.GetBlockId(), len(seen), replication)
			}
		}
	}
	if n != len(files) {
		c.t.Fatalf("listed %d of the %d files under %s", n, len(files), dir)
	}
	return blocks, bytes
}

// workerIDs maps block worker id → worker index.
func (c *cluster) workerIDs() map[int64]int {
	c.t.Helper()
	ws, err := c.Client.Workers(context.Background())
	if err != nil {
		c.t.Fatal(err)
	}
	out := map[int64]int{}
	for _, w := range ws {
		for i := range c.Workers {
			if fmt.Sprintf("%s:%d", w.GetAddress().GetHost(), w.GetAddress().GetRpcPort()) == c.WorkerAddr(i) {
				out[w.GetId()] = i
			}
		}
	}
	return out
}

// checkFillsOnce compares each worker's fill counters with the blocks the
// FS master says it holds: a block cached twice into one worker (a task run
// again after its result was lost) shows as more fills than blocks.
func (c *cluster) checkFillsOnce(blocks, bytes map[int64]int64, alive func(i int) bool) {
	c.t.Helper()
	for id, i := range c.workerIDs() {
		if !alive(i) {
			continue
		}
		m, err := testutil.Metrics(c.WorkerHTTP(i))
		if err != nil {
			c.t.Fatalf("worker %d metrics: %v", i, err)
		}
		fills, fillBytes := m["alluvium_worker_blocks_cached_total"], m["alluvium_worker_bytes_cached_total"]
		if int64(fills) != blocks[id] || int64(fillBytes) != bytes[id] {
			c.t.Errorf("worker %d (id %d): %v fills of %v bytes from the UFS, but it holds %d blocks of %d bytes: a block was loaded twice (or not counted)",
				i, id, fills, fillBytes, blocks[id], bytes[id])
		}
		if ev := m["alluvium_worker_evictions_total"]; ev != 0 {
			c.t.Errorf("worker %d evicted %v blocks: the quotas are too small for this test", i, ev)
		}
	}
}

// TestJobMasterLeaderKilledDuringLoad: three job masters, three workers, a
// load of 1,000 small files in 250 tasks slowed by a bandwidth limit; the
// leader is SIGKILLed when a fifth of the tasks are done. A new leader
// finishes the job: every task COMPLETED on its first attempt (no result
// lost and re-run), every file 100% cached, and each worker filled each of
// its blocks from the UFS exactly once.
func TestJobMasterLeaderKilledDuringLoad(t *testing.T) {
	// A worker timeout well above the failover time: the point is what the
	// leader's death does, not a worker starved of CPU for two seconds.
	c := startCluster(t, testutil.ClusterOptions{Workers: 3, JobMasters: 3, Env: []string{"ALLUVIUM_JOBMASTER_WORKER_TIMEOUT=6s"}})
	sizes := map[string]int{}
	var total int64
	for i := range 1000 {
		n := 1024 + (i*37)%3072
		sizes[fmt.Sprintf("d%02d/f%04d", i%20, i)] = n
		total += int64(n)
	}
	files := c.UFSTree("load", sizes)
	// ~2.5 MB at 700 KB/s: the job runs about 3.5 s.
	id := c.submitLoad(map[string]any{"path": "/load", "batchFiles": 4, "bandwidth": 700_000})
	info := c.waitMidJob(id, 50)
	t.Logf("job %d at %d/%d tasks", id, info.GetTasksDone(), info.GetTasksTotal())
	// The leader as it is now, mid-job; the survivors must elect another.
	leader, _ := c.KillJobMasterLeader()

	final := c.waitJob(id, 90*time.Second)
	if final.GetStatus() != sdk.JobCompleted || final.GetTasksFailed() != 0 || final.GetTasksDone() != final.GetTasksTotal() ||
		final.GetBytesTotal() != total || final.GetBytesDone() != total {
		t.Fatalf("after the leader kill: %v; want COMPLETED, %d bytes", final, total)
	}
	if final.GetTasksTotal() < 250 {
		t.Fatalf("%d tasks, want at least 250 (batches of 4 files)", final.GetTasksTotal())
	}
	rerun := 0
	for _, tk := range final.GetTasks() {
		if tk.GetStatus() != api.TaskInfo_COMPLETED {
			t.Errorf("task %d: %s", tk.GetTaskId(), tk.GetStatus())
		}
		if tk.GetAttempt() != 1 {
			rerun++
			t.Errorf("task %d (%s) ran %d times: its result was lost in the failover", tk.GetTaskId(), tk.GetDescription(), tk.GetAttempt())
		}
	}
	if len(final.GetTasks()) != int(final.GetTasksTotal()) {
		t.Errorf("job lists %d tasks of %d", len(final.GetTasks()), final.GetTasksTotal())
	}
	blocks, bytes := c.cacheReport("/load", files, 1)
	c.checkFillsOnce(blocks, bytes, func(int) bool { return true })
	var filled int64
	for _, n := range blocks {
		filled += n
	}
	if filled != 1000 {
		t.Errorf("%d blocks cached, want 1000", filled)
	}
	// The restarted old leader rejoins as a follower and agrees.
	c.StartJobMaster(leader)
	c.waitJobsAgree(3, id)
}

// jobSummary is what the job masters must agree on about one job.
type jobSummary struct {
	Status      string `json:"status"`
	TasksTotal  int64  `json:"tasksTotal"`
	TasksDone   int64  `json:"tasksDone"`
	TasksFailed int64  `json:"tasksFailed"`
	BytesTotal  int64  `json:"bytesTotal"`
	BytesDone   int64  `json:"bytesDone"`
	Error       string `json:"error"`
	Running     int64  `json:"tasksRunning"`
	Planned     bool   `json:"planningDone"`
	Round       int32  `json:"round"`
	UpdatedMs   int64  `json:"updatedMs"`
	FinishedMs  int64  `json:"finishedMs"`
}

// jobsOf reads every job from one job master's own FSM over http.
func (c *cluster) jobsOf(i int) (map[int64]jobSummary, error) {
	out := map[int64]jobSummary{}
	token := ""
	for {
		var page struct {
			Jobs []struct {
				ID int64 `json:"id"`
				jobSummary
			} `json:"jobs"`
			NextPageToken string `json:"nextPageToken"`
		}
		if err := getJSON(c.JobMasterHTTP(i), "/api/v1/jobs?pageSize=1000&pageToken="+token, &page); err != nil {
			return nil, err
		}
		for _, j := range page.Jobs {
			out[j.ID] = j.jobSummary
		}
		if page.NextPageToken == "" {
			return out, nil
		}
		token = page.NextPageToken
	}
}

// waitJobsAgree waits until the first n job masters report the same jobs
// (read from each one's own FSM), and the given job is among them.
func (c *cluster) waitJobsAgree(n int, mustHave ...int64) map[int64]jobSummary {
	c.t.Helper()
	var agreed map[int64]jobSummary
	testutil.Eventually(c.t, 30*time.Second, func() error {
		var first map[int64]jobSummary
		for i := 0; i < n; i++ {
			js, err := c.jobsOf(i)
			if err != nil {
				return err
			}
			for _, id := range mustHave {
				if _, ok := js[id]; !ok {
					return fmt.Errorf("jm%d does not know job %d", i, id)
				}
			}
			if i == 0 {
				first = js
				continue
			}
			if d := diffJobs(first, js); d != "" {
				return fmt.Errorf("jm0 and jm%d differ: %s", i, d)
			}
		}
		agreed = first
		return nil
	})
	return agreed
}

func diffJobs(a, b map[int64]jobSummary) string {
	var d []string
	for id, ja := range a {
		if jb, ok := b[id]; !ok {
			d = append(d, fmt.Sprintf("job %d only in the first", id))
		} else if ja != jb {
			d = append(d, fmt.Sprintf("job %d: %+v vs %+v", id, ja, jb))
		}
	}
	for id := range b {
		if _, ok := a[id]; !ok {
			d = append(d, fmt.Sprintf("job %d only in the second", id))
		}
	}
	return strings.Join(d, "; ")
}
