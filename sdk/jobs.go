package sdk

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/client"
	"github.com/alluvium/alluvium/internal/jobview"
)

// JobInfo is a job's state as the job master reports it.
type JobInfo = api.JobInfo

// JobStatus is a job's status.
type JobStatus = api.JobInfo_Status

// Job statuses.
const (
	JobCreated   = api.JobInfo_CREATED
	JobRunning   = api.JobInfo_RUNNING
	JobCompleted = api.JobInfo_COMPLETED
	JobFailed    = api.JobInfo_FAILED
	JobCanceled  = api.JobInfo_CANCELED
)

// JobJSON is the JSON form of a job that the CLI's --output json and the
// job master's /api/v1/jobs print.
type JobJSON = jobview.Job

// ToJSON converts a job to its JSON form.
func ToJSON(j *JobInfo) JobJSON { return jobview.FromInfo(j) }

// Errors Wait returns for a job that ended without completing; the
// *JobError carries the job.
var (
	ErrJobFailed   = errors.New("job failed")
	ErrJobCanceled = errors.New("job canceled")
)

// JobError is a job that ended FAILED or CANCELED.
type JobError struct {
	Job  *JobInfo
	kind error
}

func (e *JobError) Error() string {
	msg := fmt.Sprintf("job %d (%s) %s", e.Job.GetId(), e.Job.GetPlan(), jobview.Status(e.Job.GetStatus()))
	if e.Job.GetError() != "" {
		msg += ": " + e.Job.GetError()
	}
	return msg
}

// Is makes errors.Is(err, ErrJobFailed) work.
func (e *JobError) Is(target error) bool { return e.kind == target }

// IsTerminal reports whether a job status is final.
func IsTerminal(s JobStatus) bool {
	return s == JobCompleted || s == JobFailed || s == JobCanceled
}

// Jobs is the job-service client. Any job master will do: calls go to the
// leader (found with GetLeader and followed across failovers by the client
// layer, internal/client), and are retried while a new leader is elected,
// for up to 20 s or the WithTimeout, whichever is longer.
type Jobs struct {
	c  *Client
	jm *client.JobMaster
}

// Jobs returns the job-service client of c.
func (c *Client) Jobs() (*Jobs, error) {
	c.jobsOnce.Do(func() {
		if len(c.o.jobMasters) == 0 {
			c.jobsErr = fmt.Errorf("sdk: no job master address (WithJobMasters or ALLUVIUM_JOB_MASTER)")
			return
		}
		jm, err := client.NewJobMaster(c.o.jobMasters, c.o.clientOptions())
		if err != nil {
			c.jobsErr = fmt.Errorf("sdk: %w", err)
			return
		}
		c.jobs = &Jobs{c: c, jm: jm}
	})
	return c.jobs, c.jobsErr
}

func (j *Jobs) close() { _ = j.jm.Close() }

// electionWait bounds how long a watch keeps resuming while the job
// masters have no leader.
const electionWait = client.DefaultElectionWait

// call runs f against the leading job master (the client layer finds it and
// retries while there is none) and names op and what in the error. The
// user a call acts for (WithUser, AsUser) travels with every connection's
// calls; the job master takes the submitter from the call's authenticated
// identity.
func (j *Jobs) call(ctx context.Context, op, what string, f func(ctx context.Context, c api.JobMasterClient) error) error {
	return wrapErr(op, what, f(ctx, j.jm))
}

// SubmitOption tunes Submit.
type SubmitOption func(*api.SubmitJobRequest)

// WithRequestID sets the idempotency key (default: a random one). A submit
// retried with the same id returns the first job instead of a second.
func WithRequestID(id string) SubmitOption {
	return func(r *api.SubmitJobRequest) { r.RequestId = id }
}

// NewRequestID returns a random request id.
func NewRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Submit starts a job of plan with config (a struct, a map, or JSON as
// []byte, json.RawMessage or string) and returns its id. It always sends a
// request id, so its own retries never make a second job.
func (j *Jobs) Submit(ctx context.Context, plan string, config any, opts ...SubmitOption) (int64, error) {
	req, err := submitRequest(plan, config, opts)
	if err != nil {
		return 0, err
	}
	return j.submit(ctx, req)
}

// submit sends req (SubmitJob).
func (j *Jobs) submit(ctx context.Context, req *api.SubmitJobRequest) (int64, error) {
	plan := req.GetPlan()
	var resp *api.SubmitJobResponse
	err := j.call(ctx, "job submit", plan, func(ctx context.Context, c api.JobMasterClient) (err error) {
		resp, err = c.SubmitJob(ctx, req)
		return err
	})
	if err != nil {
		return 0, err
	}
	return resp.GetJobId(), nil
}

// submitRequest is the SubmitJob request of plan and config with opts, a
// random request id unless one is given.
func submitRequest(plan string, config any, opts []SubmitOption) (*api.SubmitJobRequest, error) {
	cfg, err := configJSON("job submit", plan, config)
	if err != nil {
		return nil, err
	}
	req := &api.SubmitJobRequest{Plan: plan, ConfigJson: cfg}
	for _, o := range opts {
		o(req)
	}
	if req.RequestId == "" {
		req.RequestId = NewRequestID()
	}
	return req, nil
}

// Run submits a job as Submit does and waits for its end as Wait does, in
// one call to the job master instead of two (the submit's stream follows
// its job): progress (if not nil) sees each state, the first one as soon
// as the job exists (its id is in it); without it the job master sends
// the final state alone. A stream lost to a leader change is
// opened again with the same request id, which watches the job the first
// submit made instead of submitting a second. The final state is returned,
// and a *JobError unless the job COMPLETED; an error before the job
// existed returns a nil JobInfo. Against a job master that predates the
// submit-watch, Run submits and waits in two calls.
func (j *Jobs) Run(ctx context.Context, plan string, config any, progress func(*JobInfo), opts ...SubmitOption) (*JobInfo, error) {
	req, err := submitRequest(plan, config, opts)
	if err != nil {
		return nil, err
	}
	watch := &api.WatchJobRequest{Submit: req, MinIntervalMs: waitInterval.Milliseconds(), FinalOnly: progress == nil}
	seen := false
	final, err := j.follow(ctx, j.watch(ctx, watch), 0, func(info *JobInfo) {
		seen = true
		if progress != nil {
			progress(info)
		}
	})
	if err != nil && !seen && errors.Is(err, ErrNotFound) {
		// An older job master ignores `submit` and watches job 0, which
		// does not exist (or the submit itself found no such path: then
		// SubmitJob says so again). The same request id: a job the first
		// call made is found, not doubled.
		id, err := j.submit(ctx, req)
		if err != nil {
			return nil, err
		}
		return j.Wait(ctx, id, progress)
	}
	return final, err
}

// configJSON is a job config as Submit takes it (a struct, a map, or JSON
// as []byte, json.RawMessage or string) in JSON; op and what name it in
// an error.
func configJSON(op, what string, config any) (string, error) {
	switch v := config.(type) {
	case []byte:
		return string(v), nil
	case json.RawMessage:
		return string(v), nil
	case string:
		return v, nil
	}
	b, err := json.Marshal(config)
	if err != nil {
		return "", &Error{Op: op, Path: what, Code: codes.InvalidArgument, Message: err.Error(), kind: ErrInvalidArgument}
	}
	return string(b), nil
}

// Get returns job id; verbose adds its tasks.
func (j *Jobs) Get(ctx context.Context, id int64, verbose bool) (*JobInfo, error) {
	var resp *api.GetJobResponse
	err := j.call(ctx, "job stat", strconv.FormatInt(id, 10), func(ctx context.Context, c api.JobMasterClient) (err error) {
		resp, err = c.GetJob(ctx, &api.GetJobRequest{JobId: id, Verbose: verbose})
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp.GetJob(), nil
}

// ListJobsOptions filter List.
type ListJobsOptions struct {
	Statuses []JobStatus // any of these; none: all
	Plan     string      // only this plan
	PageSize int32       // 0: server default
	// NewestFirst lists from the newest job down (default: oldest first).
	NewestFirst   bool
	Submitter     string    // only jobs this user submitted
	Policy        string    // only jobs this policy launched
	FinishedAfter time.Time // only jobs that ended after this (zero: any)
}

// request is the ListJobs request of o for one page.
func (o ListJobsOptions) request(token string) *api.ListJobsRequest {
	r := &api.ListJobsRequest{Statuses: o.Statuses, Plan: o.Plan, PageSize: o.PageSize, PageToken: token,
		NewestFirst: o.NewestFirst, Submitter: o.Submitter, Policy: o.Policy}
	if !o.FinishedAfter.IsZero() {
		r.FinishedAfterMs = o.FinishedAfter.UnixMilli()
	}
	return r
}

// List streams the jobs the job master keeps, oldest first, page by page.
func (j *Jobs) List(ctx context.Context, o ListJobsOptions) iter.Seq2[*JobInfo, error] {
	return func(yield func(*JobInfo, error) bool) {
		token := ""
		for {
			var resp *api.ListJobsResponse
			err := j.call(ctx, "job ls", "", func(ctx context.Context, c api.JobMasterClient) (err error) {
				resp, err = c.ListJobs(ctx, o.request(token))
				return err
			})
			if err != nil {
				yield(nil, err)
				return
			}
			for _, job := range resp.GetJobs() {
				if !yield(job, nil) {
					return
				}
			}
			if token = resp.GetNextPageToken(); token == "" {
				return
			}
		}
	}
}

// Cancel cancels job id: its running tasks are stopped and it ends
// CANCELED. Cancelling a canceled job is fine.
func (j *Jobs) Cancel(ctx context.Context, id int64) error {
	return j.call(ctx, "job cancel", strconv.FormatInt(id, 10), func(ctx context.Context, c api.JobMasterClient) error {
		_, err := c.CancelJob(ctx, &api.CancelJobRequest{JobId: id})
		return err
	})
}

// Watch streams job id's state on every change until it ends (the last
// item is the final state). A leader change mid-way is followed.
func (j *Jobs) Watch(ctx context.Context, id int64) iter.Seq2[*JobInfo, error] {
	return j.watch(ctx, &api.WatchJobRequest{JobId: id, MinIntervalMs: 100})
}

// watch follows the job req names (or submits: WatchJobRequest.submit) to
// its end, opening the stream again after a lost one.
func (j *Jobs) watch(ctx context.Context, req *api.WatchJobRequest) iter.Seq2[*JobInfo, error] {
	op, what := "job watch", strconv.FormatInt(req.GetJobId(), 10)
	if req.GetSubmit() != nil {
		op, what = "job submit", req.GetSubmit().GetPlan()
	}
	return resumeWatch(ctx, j, op, what,
		func(ctx context.Context) (func() (*JobInfo, error), error) {
			stream, err := j.jm.WatchJob(ctx, req)
			if err != nil {
				return nil, err
			}
			return stream.Recv, nil
		},
		func(info *JobInfo) bool { return IsTerminal(info.GetStatus()) })
}

// resumeWatch yields what a server stream sends until it ends, done says
// the last message is final, or ctx ends; a stream lost because the
// leader moved or is down is opened again (the client layer asks who leads
// first) for up to the election wait.
func resumeWatch[T any](ctx context.Context, j *Jobs, op, what string, open func(ctx context.Context) (func() (T, error), error), done func(T) bool) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		var zero T
		backoff := 50 * time.Millisecond
		var lost time.Time
		for {
			recv, err := open(ctx)
			for err == nil {
				var m T
				m, err = recv()
				if err == io.EOF {
					return
				}
				if err != nil {
					break
				}
				lost, backoff = time.Time{}, 50*time.Millisecond
				if !yield(m, nil) {
					return
				}
				if done(m) {
					return
				}
			}
			if ctx.Err() != nil {
				yield(zero, wrapErr(op, what, ctx.Err()))
				return
			}
			if lost.IsZero() {
				lost = time.Now()
			}
			if !retryable(err) || time.Since(lost) > max(electionWait, j.c.o.timeout) {
				yield(zero, wrapErr(op, what, err))
				return
			}
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
			}
			backoff = min(2*backoff, time.Second)
		}
	}
}

// Wait blocks until job id ends, calling progress (if not nil) with each
// state seen (without it the job master sends the final state alone). It returns the final state, and a *JobError (errors.Is
// ErrJobFailed or ErrJobCanceled) unless the job COMPLETED.
func (j *Jobs) Wait(ctx context.Context, id int64, progress func(*JobInfo)) (*JobInfo, error) {
	return j.follow(ctx, j.watch(ctx, &api.WatchJobRequest{JobId: id, MinIntervalMs: waitInterval.Milliseconds(), FinalOnly: progress == nil}), id, progress)
}

// waitInterval is how often Wait and Run hear of progress (a change of
// status comes at once).
const waitInterval = 200 * time.Millisecond

// follow reads a job's states to its end, calling progress with each, and
// returns the final one as Wait does; a watch that ended before a final
// state asks the job (id, or the one the states named) once more.
func (j *Jobs) follow(ctx context.Context, states iter.Seq2[*JobInfo, error], id int64, progress func(*JobInfo)) (*JobInfo, error) {
	var last *JobInfo
	for info, err := range states {
		if err != nil {
			return last, err
		}
		last = info
		if progress != nil {
			progress(info)
		}
	}
	if last != nil {
		id = last.GetId()
	}
	if id == 0 {
		return nil, wrapErr("job submit", "", io.ErrUnexpectedEOF)
	}
	if last == nil || !IsTerminal(last.GetStatus()) {
		var err error
		if last, err = j.Get(ctx, id, false); err != nil {
			return nil, err
		}
	}
	switch last.GetStatus() {
	case JobCompleted:
		return last, nil
	case JobCanceled:
		return last, &JobError{Job: last, kind: ErrJobCanceled}
	default:
		return last, &JobError{Job: last, kind: ErrJobFailed}
	}
}

// Leader says which job master leads and lists the raft group.
func (j *Jobs) Leader(ctx context.Context) (*api.GetLeaderResponse, error) {
	var resp *api.GetLeaderResponse
	err := j.call(ctx, "job leader", "", func(ctx context.Context, c api.JobMasterClient) (err error) {
		resp, err = c.GetLeader(ctx, &api.GetLeaderRequest{})
		return err
	})
	return resp, err
}

// AddPeer adds a job master started with jobmaster.raft.join (--join) to
// the raft group as a voter. It needs the cluster's own identity.
func (j *Jobs) AddPeer(ctx context.Context, id, raftAddr, rpcAddr string) error {
	return j.call(ctx, "job raft add-peer", id, func(ctx context.Context, c api.JobMasterClient) error {
		_, err := c.AddPeer(ctx, &api.AddPeerRequest{Id: id, RaftAddress: raftAddr, RpcAddress: rpcAddr})
		return err
	})
}

// RemovePeer takes a member (a dead one, say) out of the raft group. It
// needs the cluster's own identity.
func (j *Jobs) RemovePeer(ctx context.Context, id string) error {
	return j.call(ctx, "job raft remove-peer", id, func(ctx context.Context, c api.JobMasterClient) error {
		_, err := c.RemovePeer(ctx, &api.RemovePeerRequest{Id: id})
		return err
	})
}

// Workers lists the job workers the leader knows.
func (j *Jobs) Workers(ctx context.Context) ([]*api.JobWorkerInfo, error) {
	var resp *api.ListJobWorkersResponse
	err := j.call(ctx, "job workers", "", func(ctx context.Context, c api.JobMasterClient) (err error) {
		resp, err = c.ListJobWorkers(ctx, &api.ListJobWorkersRequest{})
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp.GetWorkers(), nil
}

// Plans lists the plans the job-master leader knows — built in and plugins
// from plans.dir — each with how many live job workers run it at that
// version, and the number of live job workers.
func (j *Jobs) Plans(ctx context.Context) ([]*api.PlanInfo, int, error) {
	var resp *api.ListPlansResponse
	err := j.call(ctx, "job plans", "", func(ctx context.Context, c api.JobMasterClient) (err error) {
		resp, err = c.ListPlans(ctx, &api.ListPlansRequest{})
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	return resp.GetPlans(), int(resp.GetWorkers()), nil
}
