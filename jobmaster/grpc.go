package jobmaster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/google/btree"
	"github.com/hashicorp/raft"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/client"
	"github.com/alluvium/alluvium/internal/rpc"
	"github.com/alluvium/alluvium/plans"
	"github.com/alluvium/alluvium/plans/spec"
)

// rpcServer is the JobMaster gRPC service. The leader answers; a follower
// forwards the call to the leader (one hop: a forwarded call that lands on
// a non-leader fails with Unavailable, and the caller retries).
type rpcServer struct {
	api.UnimplementedJobMasterServer
	s *Server
}

const (
	forwardedKey = "x-alluvium-forwarded"
	userKey      = "x-alluvium-user"
	maxPollWait  = 30 * time.Second
	maxPageSize  = 1000
	defPageSize  = 100
	maxTasksInfo = 1000
)

// forwarder keeps connections to the other job masters.
type forwarder struct {
	dial  rpc.ClientOptions // also how this server dials the FS master
	conns *client.Pool
}

func (f *forwarder) client(addr string) (api.JobMasterClient, error) { return f.conns.JobMaster(addr) }

func (f *forwarder) close() { f.conns.Close() }

// rpcAddrOf maps a raft server id to its rpc address.
func (s *Server) rpcAddrOf(id raft.ServerID) string {
	if string(id) == s.self.ID {
		return s.rpcAddr
	}
	for _, p := range s.peers {
		if p.ID == string(id) {
			return p.RPCAddr
		}
	}
	return s.fsm.peerRPCAddr(string(id))
}

// route returns the leader state when this node leads, else a client for
// the leader and a context marking the call forwarded.
func (s *Server) route(ctx context.Context, op string) (*leaderState, api.JobMasterClient, context.Context, error) {
	if ls := s.leader.Load(); ls != nil {
		return ls, nil, ctx, nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	if len(md.Get(forwardedKey)) > 0 {
		return nil, nil, nil, status.Errorf(codes.Unavailable, "%s: job master %s is not the leader (forwarded call; retry)", op, s.self.ID)
	}
	_, id := s.raft.LeaderWithID()
	if id == "" {
		return nil, nil, nil, status.Errorf(codes.Unavailable, "%s: no job master leader yet (election in progress; retry)", op)
	}
	if string(id) == s.self.ID {
		return nil, nil, nil, status.Errorf(codes.Unavailable, "%s: this job master is becoming the leader (retry)", op)
	}
	addr := s.rpcAddrOf(id)
	if addr == "" {
		return nil, nil, nil, status.Errorf(codes.Unavailable, "%s: leader %s has no known rpc address (check jobmaster.raft.peers)", op, id)
	}
	c, err := s.fwd.client(addr)
	if err != nil {
		return nil, nil, nil, status.Errorf(codes.Unavailable, "%s: leader %s: %v", op, addr, err)
	}
	out := metadata.AppendToOutgoingContext(ctx, forwardedKey, s.self.ID)
	// The leader sees this node's system identity acting for the caller.
	if id, ok := rpc.IdentityFrom(ctx); ok && !id.System {
		out = rpc.ActAs(out, id.User)
	}
	return nil, c, out, nil
}

// forward is route for a unary call: on a follower it sends the call to
// the leader, and answered is true with the leader's answer (ans, err); an
// error of route is answered too. Otherwise this node leads: ls is its
// leader state and the caller answers.
func forward[Req, Resp any](s *Server, ctx context.Context, op string, req Req,
	call func(api.JobMasterClient, context.Context, Req, ...grpc.CallOption) (Resp, error)) (ls *leaderState, ans Resp, answered bool, err error) {
	ls, fwd, fctx, err := s.route(ctx, op)
	switch {
	case err != nil:
		return nil, ans, true, err
	case fwd != nil:
		ans, err = call(fwd, fctx, req)
		return nil, ans, true, err
	}
	return ls, ans, false, nil
}

// caller returns the call's user for display (the superuser's name for the
// system identity) and the user its jobs run as ("" for the system).
func caller(ctx context.Context) (name, runAs string) {
	id, ok := rpc.IdentityFrom(ctx)
	if !ok || id.System {
		if ok && id.User != "" {
			return id.User, ""
		}
		return "system", ""
	}
	return id.User, id.User
}

// checkInFlight refuses a submit by user when it has
// jobmaster.job.max-in-flight-per-user unfinished jobs, counting the
// submits of its under way (reserveInFlight). The system identity ("") is
// not bound.
func (s *Server) checkInFlight(user, plan string) error {
	s.submitMu.Lock()
	defer s.submitMu.Unlock()
	return s.checkInFlightLocked(user, plan)
}

func (s *Server) checkInFlightLocked(user, plan string) error {
	limit := s.cfg.JobMaster.Job.MaxInFlightPerUser
	if user == "" || limit <= 0 {
		return nil
	}
	n := s.submitting[user]
	s.fsm.view(func(st *state) { n += st.unfinished[user] })
	if n >= limit {
		return status.Errorf(codes.ResourceExhausted, "submit %s: user %s has %d unfinished jobs (jobmaster.job.max-in-flight-per-user); wait for some to end", plan, user, n)
	}
	return nil
}

// reserveInFlight checks user's bound and counts one more of its submits
// under way until release is called (after the submit's entry is applied:
// the job counts in the FSM then). So concurrent submits of one user cannot
// pass the bound together, and none waits for another's raft write.
func (s *Server) reserveInFlight(user, plan string) (release func(), err error) {
	if user == "" || s.cfg.JobMaster.Job.MaxInFlightPerUser <= 0 {
		return func() {}, nil
	}
	s.submitMu.Lock()
	defer s.submitMu.Unlock()
	if err := s.checkInFlightLocked(user, plan); err != nil {
		return nil, err
	}
	s.submitting[user]++
	return func() {
		s.submitMu.Lock()
		defer s.submitMu.Unlock()
		if s.submitting[user]--; s.submitting[user] <= 0 {
			delete(s.submitting, user)
		}
	}, nil
}

// mayManage reports whether the caller may cancel a job run as runAs: its
// own, or any for the system identity.
func mayManage(ctx context.Context, runAs string) bool {
	_, as := caller(ctx)
	return as == "" || as == runAs
}

// viewer is whose jobs a caller may list and read: a user its own (those
// it submitted or its policies ran); the system identity, superusers, and
// everyone under jobmaster.job.visible-to-all, all. A job it may not see
// is answered as one that does not exist.
type viewer struct {
	all  bool
	user string
}

func (s *Server) viewerOf(ctx context.Context) viewer {
	name, runAs := caller(ctx)
	if runAs == "" || s.cfg.JobMaster.Job.VisibleToAll || s.isSuperuser(name) {
		return viewer{all: true}
	}
	return viewer{user: runAs}
}

func (v viewer) sees(j *jobRec) bool { return v.all || j.RunAs == v.user || j.Submitter == v.user }

// seesPolicy: a policy is a job template (plan, paths): its owner's, like
// the jobs it runs.
func (v viewer) seesPolicy(p *api.PolicyInfo) bool { return v.all || p.GetOwner() == v.user }

// isSuperuser: security.superuser, or a member of security.supergroup.
func (s *Server) isSuperuser(user string) bool {
	sec := s.cfg.Security
	if user == sec.Superuser {
		return true
	}
	if sec.Supergroup == "" {
		return false
	}
	for _, g := range strings.Split(sec.Groups[user], ",") {
		if strings.TrimSpace(g) == sec.Supergroup {
			return true
		}
	}
	return false
}

// jobNotFound is the answer for a job that does not exist or that the
// caller may not see: the same, so ids cannot be probed.
func jobNotFound(op string, id int64) error {
	return status.Errorf(codes.NotFound, "%s: job %d not found (finished jobs are kept for jobmaster.job.retention)", op, id)
}

// visibleJob returns job id when the caller may see it.
func (s *Server) visibleJob(ctx context.Context, op string, id int64) (*jobRec, error) {
	j := s.fsm.Job(id)
	if j == nil || !s.viewerOf(ctx).sees(j) {
		return nil, jobNotFound(op, id)
	}
	return j, nil
}

// validateJob has plan validate cfg, reading the cluster as runAs would
// (so a path it may not read or write is refused), and returns the
// SUBMIT_JOB command of the job (without request id, submitter and time).
// An error that is not the config's fault is Unavailable.
func (s *Server) validateJob(ctx context.Context, plan plans.Plan, cfg, runAs string) (*api.SubmitJobCommand, error) {
	valid, err := plan.Validate(rpc.ActAs(ctx, runAs), s.env, []byte(cfg))
	if err != nil {
		if _, ok := status.FromError(err); ok {
			return nil, err
		}
		return nil, status.Errorf(codes.Unavailable, "submit %s: %v", plan.Name(), err)
	}
	return &api.SubmitJobCommand{Plan: plan.Name(), ConfigJson: string(valid.Config), Limits: valid.Limits.Proto(), RunAs: runAs,
		PlanVersion: plans.PluginVersion(plan)}, nil
}

func (r *rpcServer) SubmitJob(ctx context.Context, req *api.SubmitJobRequest) (*api.SubmitJobResponse, error) {
	s := r.s
	ls, ans, answered, err := forward(s, ctx, "submit", req, api.JobMasterClient.SubmitJob)
	if answered {
		return ans, err
	}
	return s.submit(ctx, ls, req)
}

// submit is SubmitJob on the leader (ls): a request id seen before answers
// its job; otherwise the job is validated, admitted and written.
func (s *Server) submit(ctx context.Context, ls *leaderState, req *api.SubmitJobRequest) (*api.SubmitJobResponse, error) {
	if rid := req.GetRequestId(); rid != "" {
		if id, ok := s.fsm.jobByRequest(rid); ok {
			if j := s.fsm.Job(id); j != nil && !s.viewerOf(ctx).sees(j) {
				// Request ids are the submitter's: another's must neither
				// pass for a submit nor tell that job's id.
				return nil, status.Errorf(codes.AlreadyExists, "submit %s: request id %q is taken by a job of another user; use another", req.GetPlan(), rid)
			}
			return &api.SubmitJobResponse{JobId: id, Existed: true}, nil
		}
		if len(rid) > 256 {
			return nil, status.Error(codes.InvalidArgument, "submit: request_id longer than 256 bytes")
		}
	}
	plan, err := plans.Lookup(req.GetPlan())
	if err != nil {
		return nil, err
	}
	cfg := req.GetConfigJson()
	if cfg == "" {
		return nil, status.Errorf(codes.InvalidArgument, "submit %s: empty config (want a JSON object)", req.GetPlan())
	}
	if err := spec.SyntaxError([]byte(cfg)); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "submit %s: config is not valid JSON: %v", req.GetPlan(), err)
	}
	name, runAs := caller(ctx)
	if err := s.checkInFlight(runAs, req.GetPlan()); err != nil {
		return nil, err
	}
	// What the validation asks the FS master (the path, the workers) answers
	// the planner too, and the config it decoded is the planner's.
	ctx = plans.WithDecodedConfigs(withSubmitMemo(ctx))
	cmd, err := s.validateJob(ctx, plan, cfg, runAs)
	if err != nil {
		return nil, err
	}
	if err := ls.jobRoom(ctx, "submit "+req.GetPlan()); err != nil {
		return nil, grpcErr("submit", err)
	}
	release, err := s.reserveInFlight(runAs, req.GetPlan())
	if err != nil {
		return nil, err
	}
	defer release()
	cmd.RequestId, cmd.Submitter, cmd.NowMs = req.GetRequestId(), name, time.Now().UnixMilli()
	resp, err := ls.submitJob(ctx, plan, cmd)
	if err != nil {
		return nil, grpcErr("submit", err)
	}
	sr, ok := resp.(submitResult)
	if !ok {
		return nil, grpcErr("submit", fmt.Errorf("unexpected FSM response %v", resp))
	}
	return &api.SubmitJobResponse{JobId: sr.id, Existed: sr.existed}, nil
}

func (r *rpcServer) GetJob(ctx context.Context, req *api.GetJobRequest) (*api.GetJobResponse, error) {
	s := r.s
	_, ans, answered, err := forward(s, ctx, "job stat", req, api.JobMasterClient.GetJob)
	if answered {
		return ans, err
	}
	if _, err := s.visibleJob(ctx, "job stat", req.GetJobId()); err != nil {
		return nil, err
	}
	info, err := s.jobInfo(req.GetJobId(), req.GetVerbose())
	if err != nil {
		return nil, err
	}
	return &api.GetJobResponse{Job: info}, nil
}

// jobInfo renders job id; verbose adds its tasks (unfinished first).
func (s *Server) jobInfo(id int64, verbose bool) (*api.JobInfo, error) {
	j := s.fsm.Job(id)
	if j == nil {
		return nil, status.Errorf(codes.NotFound, "job %d not found (finished jobs are kept for jobmaster.job.retention)", id)
	}
	info := j.info()
	if verbose {
		var open, done []*taskRec
		s.fsm.view(func(st *state) {
			st.jobTasks(id, func(t *taskRec) bool {
				if t.Status == api.TaskInfo_COMPLETED {
					if len(done) < maxTasksInfo {
						done = append(done, t)
					}
				} else {
					open = append(open, t)
				}
				return len(open) < maxTasksInfo
			})
		})
		for _, t := range append(open, done...) {
			if len(info.Tasks) >= maxTasksInfo {
				break
			}
			ti := t.info(s.fsm.worker)
			ti.Args = nil
			info.Tasks = append(info.Tasks, ti)
		}
	}
	return info, nil
}

func (r *rpcServer) ListJobs(ctx context.Context, req *api.ListJobsRequest) (*api.ListJobsResponse, error) {
	s := r.s
	_, ans, answered, err := forward(s, ctx, "job ls", req, api.JobMasterClient.ListJobs)
	if answered {
		return ans, err
	}
	return s.listJobs(req, s.viewerOf(ctx))
}

// listJobs lists the jobs of req that v may see.
func (s *Server) listJobs(req *api.ListJobsRequest, v viewer) (*api.ListJobsResponse, error) {
	p, err := newIDPage("job ls", req.GetPageSize(), req.GetPageToken(), req.GetNewestFirst())
	if err != nil {
		return nil, err
	}
	filter := jobFilter(req)
	match := func(j *jobRec) bool { return v.sees(j) && filter(j) }
	resp := &api.ListJobsResponse{}
	s.fsm.view(func(st *state) {
		resp.NextPageToken = pageByID(p, st.jobs, func(id int64) *jobRec { return &jobRec{ID: id} },
			func(j *jobRec) int64 { return j.ID }, match,
			func(j *jobRec) { resp.Jobs = append(resp.Jobs, j.info()) })
		if req.GetCountTotal() {
			st.jobs.Ascend(func(j *jobRec) bool {
				if match(j) {
					resp.Total++
				}
				return true
			})
		}
	})
	return resp, nil
}

// idPage is one page of a listing in id order: how many items, the id of
// the last item of the page before (0: none), and which way.
type idPage struct {
	size   int
	after  int64
	newest bool
}

// newIDPage reads a listing request's page size and token; op names the
// listing in the error.
func newIDPage(op string, size int32, token string, newest bool) (idPage, error) {
	p := idPage{size: int(size), newest: newest}
	if p.size <= 0 {
		p.size = defPageSize
	}
	p.size = min(p.size, maxPageSize)
	if token != "" {
		v, err := strconv.ParseInt(token, 10, 64)
		if err != nil || v < 0 {
			return idPage{}, status.Errorf(codes.InvalidArgument, "%s: bad page token %q", op, token)
		}
		p.after = v
	}
	return p, nil
}

// pageByID walks t (ordered by id) from where p starts, in p's order, and
// hands keep each item match accepts, up to p.size of them. It returns the
// next page's token: the last kept id when more items match, else "".
// key makes the pivot item of an id.
func pageByID[T any](p idPage, t *btree.BTreeG[T], key func(int64) T, id func(T) int64, match func(T) bool, keep func(T)) string {
	n, last, more := 0, int64(0), false
	visit := func(x T) bool {
		if !match(x) {
			return true
		}
		if n == p.size {
			more = true
			return false
		}
		keep(x)
		n++
		last = id(x)
		return true
	}
	switch {
	case !p.newest:
		t.AscendGreaterOrEqual(key(p.after+1), visit)
	case p.after > 0:
		t.DescendLessOrEqual(key(p.after-1), visit)
	default:
		t.Descend(visit)
	}
	if !more {
		return ""
	}
	return strconv.FormatInt(last, 10)
}

// jobFilter is the predicate of a ListJobs request's filters.
func jobFilter(req *api.ListJobsRequest) func(*jobRec) bool {
	var want [8]bool // by status; statuses are small enum values
	anyStatus := len(req.GetStatuses()) == 0
	for _, st := range req.GetStatuses() {
		if int(st) >= 0 && int(st) < len(want) {
			want[st] = true
		}
	}
	plan, submitter, policy, after := req.GetPlan(), req.GetSubmitter(), req.GetPolicy(), req.GetFinishedAfterMs()
	return func(j *jobRec) bool {
		switch {
		case !anyStatus && (int(j.Status) >= len(want) || !want[j.Status]):
			return false
		case plan != "" && plan != j.Plan:
			return false
		case submitter != "" && submitter != j.Submitter:
			return false
		case policy != "" && policy != j.Policy:
			return false
		case after > 0 && j.FinishedMs <= after:
			return false
		}
		return true
	}
}

func (r *rpcServer) CancelJob(ctx context.Context, req *api.CancelJobRequest) (*api.CancelJobResponse, error) {
	s := r.s
	_, ans, answered, err := forward(s, ctx, "job cancel", req, api.JobMasterClient.CancelJob)
	if answered {
		return ans, err
	}
	j := s.fsm.Job(req.GetJobId())
	switch {
	case j == nil || !s.viewerOf(ctx).sees(j):
		return nil, jobNotFound("job cancel", req.GetJobId())
	case j.Status == api.JobInfo_CANCELED:
		return &api.CancelJobResponse{}, nil
	case !mayManage(ctx, j.RunAs):
		name, _ := caller(ctx)
		return nil, status.Errorf(codes.PermissionDenied, "job cancel %d: user %s may not cancel a job of %s", j.ID, name, j.Submitter)
	case j.terminal():
		return nil, status.Errorf(codes.FailedPrecondition, "job cancel %d: the job already ended %s", j.ID, j.Status)
	}
	if err := s.applyErr(ctx, &api.CancelJobCommand{JobId: j.ID, Reason: "canceled by user", NowMs: time.Now().UnixMilli()}); err != nil {
		return nil, grpcErr("job cancel", err)
	}
	return &api.CancelJobResponse{}, nil
}

// relay sends on what the leader's stream sends (a follower forwarding a
// watch) until it ends.
func relay[T any](recv func() (T, error), send func(T) error) error {
	for {
		m, err := recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := send(m); err != nil {
			return err
		}
	}
}

func (r *rpcServer) WatchJob(req *api.WatchJobRequest, stream grpc.ServerStreamingServer[api.JobInfo]) error {
	s := r.s
	ctx := stream.Context()
	ls, fwd, fctx, err := s.route(ctx, "job watch")
	if err != nil {
		return err
	}
	if fwd != nil {
		up, err := fwd.WatchJob(fctx, req)
		if err != nil {
			return err
		}
		return relay(up.Recv, stream.Send)
	}
	interval := time.Duration(req.GetMinIntervalMs()) * time.Millisecond
	if interval <= 0 {
		interval = 100 * time.Millisecond
	}
	id := req.GetJobId()
	if sub := req.GetSubmit(); sub != nil {
		// A submit that follows its job: one call instead of two. The
		// submit's answer is the job's id; the job is the caller's (or its
		// request id's earlier job, which submit checked is visible).
		resp, err := s.submit(ctx, ls, sub)
		if err != nil {
			return err
		}
		id = resp.GetJobId()
	} else if _, err := s.visibleJob(ctx, "job watch", id); err != nil {
		return err
	}
	if req.GetFinalOnly() {
		return watchFinal(ctx, s.fsm, id, s.shutdown, stream.Send)
	}
	return watchJob(ctx, s.fsm, id, interval, realClock, s.shutdown, stream.Send)
}

func (r *rpcServer) GetLeader(ctx context.Context, req *api.GetLeaderRequest) (*api.GetLeaderResponse, error) {
	return r.s.leaderInfo(), nil
}

func (s *Server) leaderInfo() *api.GetLeaderResponse {
	return s.group().LeaderInfo(s.raft.AppliedIndex())
}

func (r *rpcServer) RegisterJobWorker(ctx context.Context, req *api.RegisterJobWorkerRequest) (*api.RegisterJobWorkerResponse, error) {
	s := r.s
	ls, ans, answered, err := forward(s, ctx, "register job worker", req, api.JobMasterClient.RegisterJobWorker)
	if answered {
		return ans, err
	}
	if req.GetAddress() == "" {
		return nil, status.Error(codes.InvalidArgument, "register job worker: empty address")
	}
	threads := req.GetThreads()
	if threads <= 0 {
		threads = 1
	}
	capacity := req.GetCapacity()
	if capacity <= 0 {
		capacity = 2 * threads
	}
	resp, err := s.apply(ctx, &api.RegisterWorkerCommand{
		Address: req.GetAddress(), Host: req.GetHost(), BlockWorkerId: req.GetBlockWorkerId(),
		BlockWorkerAddress: req.GetBlockWorkerAddress(), Threads: threads, Capacity: capacity, Plans: boundedPlans(req.GetPlans()),
		Instance: req.GetInstance(), RemoteCapacity: max(req.GetRemoteCapacity(), 0),
		MaxAttempts: int32(s.cfg.JobMaster.Task.MaxAttempts), NowMs: time.Now().UnixMilli(),
	})
	if err != nil {
		return nil, grpcErr("register job worker", err)
	}
	rr, ok := resp.(registerResult)
	if !ok {
		return nil, grpcErr("register job worker", fmt.Errorf("unexpected FSM response %v", resp))
	}
	every, ttl := ls.timing()
	return &api.RegisterJobWorkerResponse{WorkerId: rr.id, HeartbeatIntervalMs: every.Milliseconds(), TtlMs: ttl.Milliseconds()}, nil
}

func (r *rpcServer) JobWorkerHeartbeat(ctx context.Context, req *api.JobWorkerHeartbeatRequest) (*api.JobWorkerHeartbeatResponse, error) {
	s := r.s
	start := time.Now()
	ls, ans, answered, err := forward(s, ctx, "job worker heartbeat", req, api.JobMasterClient.JobWorkerHeartbeat)
	if answered {
		return ans, err
	}
	return s.workerHeartbeat(ctx, ls, req, start)
}

// JobWorkerPolls answers a stream of job worker heartbeats, each as
// JobWorkerHeartbeat would, in order, on this one handler goroutine: the
// stream's setup is paid once, not every interval by every worker. Each
// request needs this node to lead; when it does not (lost leadership,
// stopping) the stream ends UNAVAILABLE and the worker finds the leader
// again, as a forwarded unary call would have found it for it.
func (r *rpcServer) JobWorkerPolls(stream api.JobMaster_JobWorkerPollsServer) error {
	s := r.s
	ctx := stream.Context()
	return rpc.ServeCalls(stream, func(req *api.JobWorkerHeartbeatRequest) (*api.JobWorkerHeartbeatResponse, error) {
		start := time.Now()
		select {
		case <-s.shutdown:
			return nil, status.Errorf(codes.Unavailable, "job worker polls: job master %s is stopping (find the leader again)", s.self.ID)
		default:
		}
		ls := s.leader.Load()
		if ls == nil {
			return nil, status.Errorf(codes.Unavailable, "job worker polls: job master %s is not the leader (find the leader again)", s.self.ID)
		}
		return s.workerHeartbeat(ctx, ls, req, start)
	})
}

// workerHeartbeat answers one job worker heartbeat (a long poll when it
// waits) on the leader ls; start is when its handling began.
func (s *Server) workerHeartbeat(ctx context.Context, ls *leaderState, req *api.JobWorkerHeartbeatRequest, start time.Time) (*api.JobWorkerHeartbeatResponse, error) {
	id := req.GetWorkerId()
	every, ttl := ls.timing()
	resp := &api.JobWorkerHeartbeatResponse{TtlMs: ttl.Milliseconds(), HeartbeatIntervalMs: every.Milliseconds()}
	if w := s.fsm.worker(id); w == nil || w.State != api.WorkerState_LIVE {
		resp.Reregister = true
		return resp, nil
	}
	ls.hb.reset(id) // the broker's poll (below) records its call too
	if len(req.GetUpdates()) > 0 {
		trs := make([]*api.TaskTransition, 0, len(req.GetUpdates()))
		for _, u := range req.GetUpdates() {
			if tr := transitionOf(u, id); tr != nil {
				trs = append(trs, tr)
			}
		}
		done := ls.coll.submit(trs)
		var ended []taskKey
		for _, u := range req.GetUpdates() {
			if u.GetStatus() != api.TaskInfo_RUNNING {
				ended = append(ended, taskKey{u.GetJobId(), u.GetTaskId()})
			}
		}
		ls.broker.released(id, ended)
		if done != nil {
			select {
			case err := <-done:
				if err != nil {
					return nil, grpcErr("job worker heartbeat", err)
				}
			case <-ctx.Done():
				return nil, grpcErr("job worker heartbeat", ctx.Err())
			}
		}
		for _, u := range req.GetUpdates() {
			resp.Acked = append(resp.Acked, &api.TaskRef{JobId: u.GetJobId(), TaskId: u.GetTaskId(), Attempt: u.GetAttempt()})
		}
	}
	var ended []int64
	for _, jid := range req.GetRunningJobIds() {
		if j := s.fsm.Job(jid); j == nil || j.terminal() {
			ended = append(ended, jid)
		}
	}
	ls.broker.cancelJobs(id, ended)
	if req.GetWaitMs() > 0 {
		ls.coll.submit(ls.broker.reconcile(id, req.GetHolding()))
	}
	wait := min(time.Duration(req.GetWaitMs())*time.Millisecond, maxPollWait)
	p, err := ls.broker.poll(ctx, id, wait)
	if err != nil {
		if errors.Is(err, errUnknownWorker) {
			resp.Reregister = true
			return resp, nil
		}
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return resp, nil
		}
		return nil, grpcErr("job worker heartbeat", err)
	}
	ls.hb.reset(id)
	resp.Cancels, resp.LostBlockWorkers, resp.Bandwidth = p.cancels, p.lost, p.rates
	var dispatch []*api.TaskTransition
	resp.Tasks, dispatch = ls.broker.assign(id, p.keys)
	ls.coll.submit(dispatch)
	if wait > 0 && len(resp.Tasks) == 0 && len(resp.Cancels) == 0 {
		s.m.pollTimer.Observe(ctx, start, wait)
	}
	return resp, nil
}

// BlockWorkerLost declares LOST the job workers beside a block worker the
// FS master found silent: one process, one liveness.
func (r *rpcServer) BlockWorkerLost(ctx context.Context, req *api.BlockWorkerLostRequest) (*api.BlockWorkerLostResponse, error) {
	s := r.s
	ls, ans, answered, err := forward(s, ctx, "block worker lost", req, api.JobMasterClient.BlockWorkerLost)
	if answered {
		return ans, err
	}
	bwID, bwAddr := req.GetBlockWorkerId(), req.GetBlockWorkerAddress()
	if bwID == 0 && bwAddr == "" {
		return nil, status.Error(codes.InvalidArgument, "block worker lost: no block worker id or address")
	}
	var ids []int64
	within := time.Duration(req.GetHeardWithinMs()) * time.Millisecond
	s.fsm.view(func(st *state) {
		st.workers.Ascend(func(w *workerRec) bool {
			if w.State == api.WorkerState_LIVE && (bwID != 0 && w.BWID == bwID || bwAddr != "" && w.BWAddr == bwAddr) {
				ids = append(ids, w.ID)
			}
			return true
		})
	})
	resp := &api.BlockWorkerLostResponse{}
	if within > 0 {
		// Only asked: has the process been heard from here lately?
		for _, id := range ids {
			if ls.hb.heardWithin(id, within) {
				resp.Heard = true
			}
		}
		return resp, nil
	}
	for _, id := range ids {
		reason := req.GetReason()
		if reason == "" {
			reason = "its block worker is lost"
		}
		if err := ls.loseWorker(id, reason); err != nil {
			return nil, grpcErr("block worker lost", err)
		}
		s.log.Warn("job worker lost with its block worker", zap.Int64("worker", id), zap.Int64("block_worker", bwID), zap.String("reason", reason))
		resp.JobWorkerIds = append(resp.JobWorkerIds, id)
	}
	return resp, nil
}

// transitionOf maps a worker's report to a task transition.
func transitionOf(u *api.TaskUpdate, worker int64) *api.TaskTransition {
	tr := &api.TaskTransition{JobId: u.GetJobId(), TaskId: u.GetTaskId(), Attempt: u.GetAttempt(), WorkerId: worker, BytesDone: u.GetBytesDone(), Error: u.GetError(), Failed: u.GetFailed(),
		FilesSkipped: u.GetFilesSkipped(), BytesSkipped: u.GetBytesSkipped()}
	if r := u.GetResult(); len(r) <= plans.MaxOutput && u.GetStatus() != api.TaskInfo_RUNNING {
		tr.Result = r // a larger one is the worker's bug: dropped, not kept in raft
	}
	switch u.GetStatus() {
	case api.TaskInfo_RUNNING:
		tr.Kind = api.TaskTransition_PROGRESS
	case api.TaskInfo_COMPLETED:
		tr.Kind = api.TaskTransition_COMPLETE
	case api.TaskInfo_FAILED:
		tr.Kind = api.TaskTransition_FAIL
	case api.TaskInfo_CANCELED:
		// Cancelled on the worker without the job being cancelled (the
		// worker is stopping): this attempt is over.
		tr.Kind = api.TaskTransition_FAIL
		if tr.Error == "" {
			tr.Error = "canceled on the job worker"
		}
	default:
		return nil
	}
	return tr
}

func (r *rpcServer) ListJobWorkers(ctx context.Context, req *api.ListJobWorkersRequest) (*api.ListJobWorkersResponse, error) {
	s := r.s
	ls, ans, answered, err := forward(s, ctx, "list job workers", req, api.JobMasterClient.ListJobWorkers)
	if answered {
		return ans, err
	}
	st := ls.broker.stats()
	v := s.viewerOf(ctx)
	resp := &api.ListJobWorkersResponse{}
	s.fsm.view(func(fs *state) {
		fs.workers.Ascend(func(w *workerRec) bool {
			i := w.info()
			i.RunningTasks = int32(st.perWork[w.ID])
			if t, ok := st.lastSeen[w.ID]; ok {
				i.LastHeartbeatMs = t.UnixMilli()
			}
			if req.GetIncludeTasks() {
				i.Tasks = runningTasks(v, fs, w.ID)
			}
			resp.Workers = append(resp.Workers, i)
			return true
		})
	})
	return resp, nil
}

// maxWorkerTasks bounds the tasks ListJobWorkers lists per worker.
const maxWorkerTasks = 100

// runningTasks lists the tasks worker runs, of the jobs v may see (a user
// only its own jobs' tasks), in job and task order.
func runningTasks(v viewer, st *state, worker int64) []*api.TaskInfo {
	var out []*api.TaskInfo
	for _, k := range st.runningOn(worker) {
		j, t := st.job(k.job), st.task(k)
		if j == nil || t == nil || !v.sees(j) {
			continue
		}
		ti := t.info(st.worker)
		ti.Args = nil
		out = append(out, ti)
		if len(out) == maxWorkerTasks {
			break
		}
	}
	return out
}

// maxWorkerPlans bounds the plans a job worker may list at registration.
const maxWorkerPlans = 1024

func boundedPlans(ps []*api.PlanInfo) []*api.PlanInfo {
	if len(ps) > maxWorkerPlans {
		ps = ps[:maxWorkerPlans]
	}
	out := make([]*api.PlanInfo, 0, len(ps))
	for _, p := range ps {
		// What the scheduler matches on, and what listings show.
		out = append(out, &api.PlanInfo{Name: p.GetName(), Origin: p.GetOrigin(), Version: p.GetVersion()})
	}
	return out
}

func (r *rpcServer) ListPlans(ctx context.Context, req *api.ListPlansRequest) (*api.ListPlansResponse, error) {
	s := r.s
	_, ans, answered, err := forward(s, ctx, "job plans", req, api.JobMasterClient.ListPlans)
	if answered {
		return ans, err
	}
	resp := &api.ListPlansResponse{}
	var live []*workerRec
	s.fsm.view(func(st *state) {
		st.workers.Ascend(func(w *workerRec) bool {
			if w.State == api.WorkerState_LIVE {
				live = append(live, w)
			}
			return true
		})
	})
	resp.Workers = int32(len(live))
	for _, i := range plans.List() {
		pi := i.Proto()
		v := ""
		if i.Origin == plans.OriginPlugin {
			v = i.Version
		}
		for _, w := range live {
			if w.runs(i.Name, v) && (v != "" || w.lists(i.Name)) {
				pi.Workers++
			}
		}
		resp.Plans = append(resp.Plans, pi)
	}
	return resp, nil
}

// pluginVersionOf is the version a job of the plan called name records: a
// plugin's, "" for a built-in plan (or one not loaded here).
func pluginVersionOf(name string) string {
	if p, ok := plans.Registered(name); ok {
		return plans.PluginVersion(p)
	}
	return ""
}
