package membership

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/testutil"
)

// TestWorkerPollsFollowLeaderHandover: the job-master leader hands
// leadership over while its process keeps running (removed from the group
// with `job raft remove-peer`), so the job workers' poll streams to it stay
// open and are not cut by a dead connection. Each worker's stream must end
// there (the old leader's broker closes, its polls answer UNAVAILABLE) and
// the worker must poll the new leader: within the TTL every job worker is
// LIVE on the new leader under the id it had (no LOST, no
// re-registration), heard from recently, and a load runs on them.
func TestWorkerPollsFollowLeaderHandover(t *testing.T) {
	c := testutil.StartCluster(t, testutil.ClusterOptions{Workers: 2, JobMasters: 3})
	old, term := c.JobMasterLeader(-1)
	ids := map[int64]bool{}
	testutil.Eventually(t, 30*time.Second, func() error {
		ws, err := c.Jobs.Workers(context.Background())
		if err != nil {
			return err
		}
		clear(ids)
		for _, w := range ws {
			if w.GetState() != api.WorkerState_LIVE {
				return fmt.Errorf("job worker %d is %s before the handover", w.GetId(), w.GetState())
			}
			ids[w.GetId()] = true
		}
		if len(ids) != 2 {
			return fmt.Errorf("%d job workers listed, want 2", len(ids))
		}
		return nil
	})

	// Removing the leader hands leadership over first; the CLI asks the
	// new leader again, which does the removal. jm<old> keeps running.
	c.MustCLI("job", "raft", "remove-peer", fmt.Sprintf("jm%d", old))
	var survivors []int
	for i := range c.JobMasterAddrs {
		if i != old {
			survivors = append(survivors, i)
		}
	}
	leader, newTerm := c.JobMasterLeader(old, survivors...)
	if newTerm <= term {
		t.Fatalf("jm%d leads in term %d, not after term %d", leader, newTerm, term)
	}
	if !c.JobMasters[old].Running() {
		t.Fatalf("jm%d exited after handing leadership over: the test is of a live old leader", old)
	}
	handover := time.Now()

	// Heard from by the new leader: a poll of each worker reached it after
	// the handover (a worker still stuck on the old leader's stream would
	// go unheard and, after its TTL, be declared LOST).
	testutil.Eventually(t, 30*time.Second, func() error {
		ws, err := c.Jobs.Workers(context.Background())
		if err != nil {
			return err
		}
		seen := 0
		for _, w := range ws {
			if !ids[w.GetId()] {
				return fmt.Errorf("job worker %d (%s) is new: a worker registered again instead of following the leader", w.GetId(), w.GetState())
			}
			if w.GetState() != api.WorkerState_LIVE {
				t.Fatalf("job worker %d is %s after the handover, want LIVE", w.GetId(), w.GetState())
			}
			if last := time.UnixMilli(w.GetLastHeartbeatMs()); last.After(handover) {
				seen++
			}
		}
		if seen != len(ids) {
			return fmt.Errorf("%d of %d job workers heard from by jm%d since the handover", seen, len(ids), leader)
		}
		return nil
	})
	t.Logf("jm%d handed over to jm%d (term %d); both job workers polled it within %v", old, leader, newTerm, time.Since(handover).Round(time.Millisecond))

	// And the new leader hands them work over those polls.
	for i := range 4 {
		testutil.WriteFile(t, fmt.Sprintf("%s/data/f%d", c.UFSDir, i), []byte(fmt.Sprintf("file %d", i)))
	}
	c.MustJob("job", "submit", "load", "/data")
}
