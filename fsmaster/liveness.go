package fsmaster

import (
	"context"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/client"
)

// A worker process — its block worker and its job worker — has one
// liveness: the FS master and the job master each time it out
// (fsmaster.worker.timeout, jobmaster.worker.timeout: one default), and
// whichever finds it silent first tells the other, so its block locations
// stop counting when its tasks go back to run elsewhere.

// newBlockMap is the block map with the liveness of fsmaster.worker.*.
func (m *Master) newBlockMap() *blockMap {
	b := newBlockMap(time.Now)
	w := m.cfg.FSMaster.Worker
	b.setLiveness(w.HeartbeatInterval, w.Timeout, w.MaxHeartbeatsPerSecond)
	return b
}

// lostWorkerLoop marks workers silent past their TTL LOST and tells the job
// master (fsmaster.job-master), which declares the job workers beside them
// LOST too.
func (m *Master) lostWorkerLoop(ctx context.Context) {
	var jm *client.JobMaster
	if addrs := strings.TrimSpace(m.cfg.FSMaster.JobMaster); addrs != "" && m.dialOpts != nil {
		o := client.Defaults(*m.dialOpts)
		o.ElectionWait = 5 * time.Second
		if c, err := client.NewJobMaster([]string{addrs}, o); err == nil {
			jm = c
			defer c.Close()
		}
	}
	// Look often: a worker's TTL is counted from its last heartbeat, and a
	// check costs a pass over the workers.
	every := min(max(m.cfg.FSMaster.Worker.Timeout/20, 50*time.Millisecond), time.Second)
	m.tick(ctx, every, 0, func() {
		for _, w := range m.ns.blocks.markLost() {
			reason := "no heartbeat to the FS master for " + time.Since(time.UnixMilli(w.GetLastHeartbeatMs())).Round(time.Millisecond).String()
			m.log.Warn("worker lost: no heartbeat", zap.Int64("worker", w.GetId()), zap.String("address", workerKey(w.GetAddress())), zap.String("reason", reason))
			if jm != nil {
				go m.tellJobMaster(ctx, jm, w, reason)
			}
		}
	})
}

// tellJobMaster declares the job workers beside lost block worker w LOST at
// the job master. Best effort: the job master times them out by itself
// otherwise.
func (m *Master) tellJobMaster(ctx context.Context, jm *client.JobMaster, w *api.WorkerInfo, reason string) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := jm.BlockWorkerLost(cctx, &api.BlockWorkerLostRequest{
		BlockWorkerId: w.GetId(), BlockWorkerAddress: workerKey(w.GetAddress()), Reason: "FS master: " + reason,
	})
	if err != nil {
		if ctx.Err() == nil {
			m.log.Warn("could not tell the job master a worker is lost (it times the job worker out itself)", zap.Int64("worker", w.GetId()), zap.Error(err))
		}
		return
	}
	if ids := resp.GetJobWorkerIds(); len(ids) > 0 {
		m.log.Info("job workers beside the lost worker declared lost", zap.Int64("worker", w.GetId()), zap.Int64s("job_workers", ids))
	}
}

// declareLost makes block worker id LOST now, at the job master's word.
func (m *Master) declareLost(id int64, reason string) bool {
	if !m.ns.blocks.declareLost(id, reason) {
		return false
	}
	m.log.Warn("worker lost", zap.Int64("worker", id), zap.String("reason", reason))
	return true
}
