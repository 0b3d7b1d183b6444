package jobworker

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/client"
	"github.com/alluvium/alluvium/plans"
)

// The job worker's link to the job masters: its registration with the
// leader, which the client layer finds and follows.

// session is this worker's registration with the leading job master; the
// client layer finds the leader and follows it.
type session struct {
	w     *Worker
	jm    *client.JobMaster
	mu    sync.Mutex
	id    int64
	every time.Duration
	ttl   time.Duration // silent this long, the leader declares us LOST
	// registerAfter: told to register again, not before this.
	registerAfter time.Time
}

// leader is a client of the job master that led when it was found.
type leader struct {
	api.JobMasterClient
	addr string
}

func (s *session) workerID() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.id
}

// get returns a client for the leader and this worker's id, finding the
// leader and registering as needed.
func (s *session) get(ctx context.Context) (leader, int64, time.Duration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, addr, err := s.jm.LeaderClient(ctx)
	if err != nil {
		return leader{}, 0, 0, err
	}
	if s.id == 0 {
		// Told to register again: a random part of the interval first
		// (forget), so that thousands told at once spread out.
		if wait := time.Until(s.registerAfter); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return leader{}, 0, 0, ctx.Err()
			}
		}
		w := s.w
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		host, _, _ := net.SplitHostPort(w.addr)
		resp, err := c.RegisterJobWorker(cctx, &api.RegisterJobWorkerRequest{
			Address: w.addr, Host: host, BlockWorkerId: w.bw.BlockWorkerID,
			BlockWorkerAddress: w.bw.BlockWorkerAddress, Threads: int32(w.threads), Capacity: int32(w.capacity), RemoteCapacity: int32(w.remote),
			Plans: planInfos(), Instance: w.instance,
		})
		cancel()
		if err != nil {
			s.jm.Forget(addr)
			return leader{}, 0, 0, fmt.Errorf("register with %s: %w", addr, err)
		}
		s.id = resp.GetWorkerId()
		s.every = time.Duration(resp.GetHeartbeatIntervalMs()) * time.Millisecond
		if s.every <= 0 {
			s.every = time.Second
		}
		s.ttl = time.Duration(resp.GetTtlMs()) * time.Millisecond
		w.log.Info("job worker registered", zap.Int64("id", s.id), zap.String("leader", addr))
	}
	return leader{c, addr}, s.id, s.every, nil
}

// setTiming takes the heartbeat interval and TTL a reply hands this worker
// (they grow with the number of workers); zero keeps the current ones.
func (s *session) setTiming(everyMs, ttlMs int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if everyMs > 0 {
		s.every = time.Duration(everyMs) * time.Millisecond
	}
	if ttlMs > 0 {
		s.ttl = time.Duration(ttlMs) * time.Millisecond
	}
}

// pollSlack is how long past its wait a long poll may take before the
// leader counts as gone: half the worker timeout the leader gave (1-10 s),
// so that a worker whose leader stopped answering (partitioned, frozen)
// reaches the new one before that one declares it LOST.
func (s *session) pollSlack() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ttl <= 0 {
		return 10 * time.Second
	}
	return min(max(s.ttl/2, time.Second), 10*time.Second)
}

// goneFor returns a channel closed once l no longer leads as far as this
// worker knows (at once if it already does not).
func (s *session) goneFor(l leader) <-chan struct{} { return s.jm.Gone(l.addr) }

// failed drops the leader after an error that says it may have moved.
func (s *session) failed(l leader, err error) {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Unknown, codes.Internal:
		s.jm.Forget(l.addr)
	}
}

// forget drops the registration id (the leader asked to register again).
func (s *session) forget(id int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.id == id {
		s.id = 0
		s.registerAfter = time.Now().Add(client.Spread(s.every))
	}
}

func (s *session) close() { _ = s.jm.Close() }

// planInfos describes the plans this worker runs, for its registration: a
// plugin plan's tasks come only to workers with its name and version.
func planInfos() []*api.PlanInfo {
	var out []*api.PlanInfo
	for _, i := range plans.List() {
		out = append(out, i.Proto())
	}
	return out
}
