package client

import (
	"context"

	"github.com/alluvium/alluvium/api"
)

// JobMaster is a client of the job masters: calls go to the raft leader,
// found with GetLeader and followed across failovers. A job-master call
// may be sent again (a submit carries a request id; the rest change nothing
// or the same thing twice), so a call is retried while the group has no
// reachable leader, for up to Options.ElectionWait — all but RunPolicyNow,
// whose every call launches a run: one whose answer was lost may have
// launched it, and is returned to the caller rather than fired twice.
type JobMaster struct {
	*group
	api.JobMasterClient
}

// NewJobMaster returns a client of the job masters at addrs (host:port
// each, or comma-separated lists). Nothing is dialled before the first
// call.
func NewJobMaster(addrs []string, o Options) (*JobMaster, error) {
	g, err := newGroup(addrs, o, policy{
		what: "job master", lookup: api.JobMaster_GetLeader_FullMethodName,
		idempotent: jmIdempotent, retries: -1,
	})
	if err != nil {
		return nil, err
	}
	return &JobMaster{group: g, JobMasterClient: api.NewJobMasterClient(g)}, nil
}

// At returns a client of the job master at addr alone, with no leader
// discovery and no retries: for a caller that keeps its own session with
// the leader (a job worker's long poll) and follows Leader itself.
func (j *JobMaster) At(addr string) (api.JobMasterClient, error) { return j.pool.JobMaster(addr) }

// LeaderClient returns the leader's address and a client of it alone (see
// At).
func (j *JobMaster) LeaderClient(ctx context.Context) (api.JobMasterClient, string, error) {
	addr, err := j.Leader(ctx)
	if err != nil {
		return nil, "", err
	}
	c, err := j.At(addr)
	return c, addr, err
}

// jmIdempotent: every job-master call but RunPolicyNow (see JobMaster).
func jmIdempotent(method string) bool { return method != api.JobMaster_RunPolicyNow_FullMethodName }
