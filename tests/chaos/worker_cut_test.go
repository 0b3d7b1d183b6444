package chaos

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/testutil"
	"github.com/alluvium/alluvium/sdk"
)

// TestWorkerCutDuringLoad: one liveness view. Three workers; the one
// running the most tasks of a load (slowed by a bandwidth limit) is cut
// off as a whole process — frozen with SIGSTOP, the fallback the issue
// allows where a test does not build network namespaces — and the job
// master declares its job worker LOST after its 2 s TTL. The FS master's
// own timeout is two minutes here, so only the job master's word can make
// the block worker LOST in time: the FS master lists it LOST at once, its
// tasks run again elsewhere, the job (with --verify, which loads again what
// tasks completed before the cut had cached on the lost worker) completes
// with no failed task, every file cached exactly once on the survivors
// (each filled once) and byte-exact. Thawed, the worker registers again (LIVE at both masters)
// and the FS master's view of its blocks matches its disk, every block
// file byte-exact. (The time from the cut to completion is a benchmark:
// BenchmarkWorkerCutMidLoad.)
func TestWorkerCutDuringLoad(t *testing.T) {
	c := startCluster(t, testutil.ClusterOptions{Workers: 3, JobMasters: 1, FSMasterJobMaster: true,
		Env: []string{"ALLUVIUM_FSMASTER_WORKER_TIMEOUT=2m"}})
	sizes := map[string]int{}
	for i := range 6 {
		sizes[fmt.Sprintf("big%d", i)] = 2*blockSize + 1000*i + 1
	}
	for i := range 30 {
		sizes[fmt.Sprintf("small/f%02d", i)] = 5000 + 999*i
	}
	files := c.UFSTree("wc", sizes)
	// verify: a task that completed on the worker before the cut cached its
	// blocks there, and they stopped counting with it: the verify round
	// loads them again on the survivors.
	id := c.submitLoad(map[string]any{"path": "/wc", "bandwidth": 4 << 20, "verify": true})
	cut := c.FreezeWorkerWithRunningTask(id, 3, 60*time.Second)
	victim := cut.Worker
	frozen := true
	defer func() {
		if frozen {
			_ = c.Workers[victim].Signal(syscall.SIGCONT)
		}
	}()
	// One process, one view: the FS master has it LOST too, long before its
	// own timeout.
	c.waitWorkerState(victim, api.WorkerState_LOST)

	final := c.waitJob(id, 90*time.Second)
	if final.GetStatus() != sdk.JobCompleted || final.GetTasksFailed() != 0 || final.GetTasksDone() != final.GetTasksTotal() {
		t.Fatalf("after cutting worker %d: %v", victim, final)
	}
	c.RequireRetried(cut)
	blocks, bytes := c.cacheReport("/wc", files, 1)
	c.checkFillsOnce(blocks, bytes, func(i int) bool { return i != victim })
	c.checkSums(files)

	// Back: it registers again, and what the FS master counts on it is
	// what it has on disk.
	if err := c.Workers[victim].Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	frozen = false
	c.waitWorkerState(victim, api.WorkerState_LIVE)
	ids := c.fileIDs("/wc")
	var bwID int64
	for wid, i := range c.workerIDs() {
		if i == victim {
			bwID = wid
		}
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		var counted []int64
		for fi, err := range c.Client.List(context.Background(), "/wc", sdk.ListOptions{Recursive: true, IncludeBlocks: true}) {
			if err != nil {
				return err
			}
			for _, fb := range fi.FileBlockInfos {
				for _, l := range fb.GetBlockInfo().GetLocations() {
					if l.GetWorkerId() == bwID {
						counted = append(counted, fb.GetBlockInfo().GetBlockId())
					}
				}
			}
		}
		onDisk := c.diskBlocks(victim, ids)
		sort.Slice(counted, func(i, j int) bool { return counted[i] < counted[j] })
		if fmt.Sprint(counted) != fmt.Sprint(onDisk) {
			return fmt.Errorf("the FS master counts blocks %v on worker %d, its disk holds %v", counted, victim, onDisk)
		}
		return nil
	})
	n := c.checkDiskBlocks(victim, c.ufsContent(ids))
	t.Logf("worker %d back: %d block files, all counted once and byte-exact", victim, n)
	c.checkSums(files)
}

// diskBlocks lists, in order, the ids of the blocks of files in ids that
// worker i holds in its tiers.
func (c *cluster) diskBlocks(i int, ids map[int64]string) []int64 {
	c.t.Helper()
	var out []int64
	for _, tier := range []string{"mem", "hdd"} {
		ents, err := os.ReadDir(filepath.Join(c.WorkerDir(i), tier))
		if err != nil {
			c.t.Fatalf("worker %d tier %s: %v", i, tier, err)
		}
		for _, e := range ents {
			id, err := strconv.ParseInt(strings.TrimSuffix(e.Name(), ".pin"), 10, 64)
			if err != nil || !e.Type().IsRegular() {
				continue
			}
			if _, ok := ids[api.FileIDOfBlock(id)]; ok {
				out = append(out, id)
			}
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a] < out[b] })
	return out
}
