package sdk

import (
	"context"
	"errors"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
)

// runFake is a job master whose WatchJob with a submit makes one job per
// request id; its first stream is lost after the job's first state (a
// leader change), its second sends the end. A plain SubmitJob or WatchJob
// fails the test: Run makes one call.
type runFake struct {
	api.UnimplementedJobMasterServer
	addr  string
	mu    sync.Mutex
	rids  []string // the request id of each WatchJob
	final api.JobInfo_Status
}

func (f *runFake) GetLeader(context.Context, *api.GetLeaderRequest) (*api.GetLeaderResponse, error) {
	return &api.GetLeaderResponse{LeaderId: f.addr, LeaderRpcAddress: f.addr}, nil
}

func (f *runFake) WatchJob(req *api.WatchJobRequest, stream grpc.ServerStreamingServer[api.JobInfo]) error {
	if req.GetSubmit() == nil {
		return status.Error(codes.Unimplemented, "Run sent a plain watch")
	}
	f.mu.Lock()
	f.rids = append(f.rids, req.GetSubmit().GetRequestId())
	n := len(f.rids)
	f.mu.Unlock()
	if n == 1 {
		if err := stream.Send(&api.JobInfo{Id: 7, Status: api.JobInfo_RUNNING}); err != nil {
			return err
		}
		return status.Error(codes.Unavailable, "leadership lost")
	}
	return stream.Send(&api.JobInfo{Id: 7, Status: f.final, Error: "boom"})
}

// Run submits and follows a job in one call; a stream lost mid-way is
// opened again with the same request id (the job master answers the job
// it made); the final state comes back as Wait's would, a *JobError for a
// job that failed.
func TestRunResumesWithOneRequestID(t *testing.T) {
	for _, final := range []api.JobInfo_Status{JobCompleted, JobFailed} {
		t.Run(final.String(), func(t *testing.T) {
			f := &runFake{final: final}
			f.addr = serveJobMaster(t, f)
			jobs := dialJobs(t, f.addr)
			var seen []JobStatus
			j, err := jobs.Run(context.Background(), "load", map[string]string{"path": "/a"}, func(j *JobInfo) { seen = append(seen, j.GetStatus()) })
			switch {
			case final == JobCompleted && err != nil:
				t.Fatalf("Run: %v", err)
			case final == JobFailed && !errors.Is(err, ErrJobFailed):
				t.Fatalf("Run of a failing job: %v, want ErrJobFailed", err)
			}
			if j.GetId() != 7 || j.GetStatus() != final || len(seen) != 2 || seen[0] != JobRunning {
				t.Fatalf("Run returned %v after states %v", j, seen)
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if len(f.rids) != 2 || f.rids[0] == "" || f.rids[0] != f.rids[1] {
				t.Fatalf("request ids %q: want one, non-empty, on both streams", f.rids)
			}
		})
	}
}

// oldFake is a job master from before the submit-watch: it ignores
// WatchJobRequest.submit (so it watches job 0, which does not exist) and
// knows SubmitJob and a plain WatchJob.
type oldFake struct {
	api.UnimplementedJobMasterServer
	addr string
	mu   sync.Mutex
	rids []string // the request id of each SubmitJob
}

func (f *oldFake) GetLeader(context.Context, *api.GetLeaderRequest) (*api.GetLeaderResponse, error) {
	return &api.GetLeaderResponse{LeaderId: f.addr, LeaderRpcAddress: f.addr}, nil
}

func (f *oldFake) SubmitJob(_ context.Context, req *api.SubmitJobRequest) (*api.SubmitJobResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rids = append(f.rids, req.GetRequestId())
	return &api.SubmitJobResponse{JobId: 9}, nil
}

func (f *oldFake) WatchJob(req *api.WatchJobRequest, stream grpc.ServerStreamingServer[api.JobInfo]) error {
	if req.GetJobId() != 9 {
		return status.Errorf(codes.NotFound, "job watch %d: no such job", req.GetJobId())
	}
	return stream.Send(&api.JobInfo{Id: 9, Status: api.JobInfo_COMPLETED})
}

// Against a job master that predates the submit-watch, Run submits and
// waits in two calls, once.
func TestRunAgainstAnOlderJobMaster(t *testing.T) {
	f := &oldFake{}
	f.addr = serveJobMaster(t, f)
	jobs := dialJobs(t, f.addr)
	j, err := jobs.Run(context.Background(), "load", map[string]string{"path": "/a"}, nil, WithRequestID("r1"))
	if err != nil || j.GetId() != 9 || j.GetStatus() != JobCompleted {
		t.Fatalf("Run against an older job master: %v, %v", j, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.rids) != 1 || f.rids[0] != "r1" {
		t.Fatalf("SubmitJob request ids %q, want [r1]", f.rids)
	}
}
