package fsmaster

import (
	"context"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/client"
	"github.com/alluvium/alluvium/internal/config"
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
// LOST too. With a job master, a worker found silent is first checked with
// it (confirm): if the job worker of the same process still calls it, the
// process lives — only its heartbeats here are late — and it gets one more
// TTL, once per silence.
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
		lost, suspects := m.ns.blocks.markLost(jm != nil)
		for _, w := range lost {
			m.workerLost(ctx, jm, w)
		}
		for _, w := range suspects {
			go m.confirmLost(ctx, jm, w)
		}
	})
}

// workerLost logs a worker this master declared LOST and tells the job
// master.
func (m *Master) workerLost(ctx context.Context, jm *client.JobMaster, w *api.WorkerInfo) {
	reason := "no heartbeat to the FS master for " + time.Since(time.UnixMilli(w.GetLastHeartbeatMs())).Round(time.Millisecond).String()
	m.log.Warn("worker lost: no heartbeat", zap.Int64("worker", w.GetId()), zap.String("address", workerKey(w.GetAddress())), zap.String("reason", reason))
	if jm != nil {
		go m.tellJobMaster(ctx, jm, w, reason)
	}
}

// confirmLost asks the job master whether the job worker beside silent
// worker w called it within all of w's TTL but an interval; if so w is spared one more TTL,
// else (or when the job master cannot say) it is LOST.
func (m *Master) confirmLost(ctx context.Context, jm *client.JobMaster, w *api.WorkerInfo) {
	every, ttl := m.ns.blocks.timing()
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	resp, err := jm.BlockWorkerLost(cctx, &api.BlockWorkerLostRequest{
		BlockWorkerId: w.GetId(), BlockWorkerAddress: workerKey(w.GetAddress()),
		HeardWithinMs: max(config.ConfirmWithin(every, ttl), time.Millisecond).Milliseconds(),
	})
	cancel()
	if err == nil && resp.GetHeard() {
		m.ns.blocks.spare(w.GetId())
		m.log.Info("worker silent, but its job worker calls the job master: one more TTL before it is LOST",
			zap.Int64("worker", w.GetId()), zap.String("address", workerKey(w.GetAddress())))
		return
	}
	if lost, ok := m.ns.blocks.confirmLost(w.GetId()); ok {
		m.workerLost(ctx, jm, lost)
	}
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

// declareLost makes block worker id LOST now, at the job master's word —
// unless it heartbeated within unlessWithin (> 0): then the process lives
// (heard), and only its job worker's calls are late.
func (m *Master) declareLost(id int64, reason string, unlessWithin time.Duration) (wasLive, heard bool) {
	wasLive, heard = m.ns.blocks.declareLost(id, reason, unlessWithin)
	if wasLive && !heard {
		m.log.Warn("worker lost", zap.Int64("worker", id), zap.String("reason", reason))
	}
	return wasLive, heard
}
