package jobmaster

import (
	"context"
	"errors"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/paths"
	"github.com/alluvium/alluvium/internal/rpc"
	"github.com/alluvium/alluvium/plans"
	"github.com/alluvium/alluvium/plans/spec"
)

// The Policy RPCs. Like the job calls, the leader answers and a follower
// forwards.

func (r *rpcServer) AddPolicy(ctx context.Context, req *api.AddPolicyRequest) (*api.AddPolicyResponse, error) {
	s := r.s
	ls, ans, answered, err := forward(s, ctx, "policy add", req, api.JobMasterClient.AddPolicy)
	if answered {
		return ans, err
	}
	existing := s.fsm.policy(req.GetPolicy().GetName())
	p, err := s.checkPolicy(ctx, req.GetPolicy())
	if err != nil {
		return nil, err
	}
	// The policy's jobs run as whoever added it.
	_, p.Owner = caller(ctx)
	if existing != nil {
		// A client resends an add whose answer it lost (the leader
		// changed): the same policy is the answer, another a refusal.
		if proto.Equal(policyDefinition(existing), policyDefinition(p)) {
			return &api.AddPolicyResponse{Policy: s.policyView(existing)}, nil
		}
		return nil, status.Errorf(codes.AlreadyExists, "policy add %s: a policy of that name exists (policy rm %s first)", p.GetName(), p.GetName())
	}
	now := time.Now().UnixMilli()
	p.Enabled = !req.GetPaused()
	p.CreatedMs, p.CursorMs = now, now
	if p.GetOnCreate() != "" {
		// Files completed from now on: the feed's head.
		head, err := s.feedHead(ctx, p)
		if err != nil {
			return nil, err
		}
		p.EventCursor = head
	}
	if err := s.applyErr(ctx, &api.PutPolicyCommand{Policy: p, NowMs: now, CreateOnly: true}); err != nil {
		if errors.Is(err, errPolicyExists) {
			return nil, status.Errorf(codes.AlreadyExists, "policy add %s: a policy of that name exists (policy rm %s first)", p.GetName(), p.GetName())
		}
		return nil, grpcErr("policy add "+p.GetName(), err)
	}
	ls.pol.poke()
	return &api.AddPolicyResponse{Policy: s.policyView(p)}, nil
}

// checkPolicy validates a policy to add and returns it normalized: name,
// cron spec, overlap, plan and the plan's own validation of the config
// (the config stored is the normalized one the plan returns). Any error is
// returned before anything is stored.
func (s *Server) checkPolicy(ctx context.Context, in *api.PolicyInfo) (*api.PolicyInfo, error) {
	name := in.GetName()
	if !policyNameRE.MatchString(name) {
		return nil, status.Errorf(codes.InvalidArgument, "policy add %q: bad name: want 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit", name)
	}
	cron := strings.TrimSpace(in.GetCron())
	ev, err := s.checkEventTrigger(ctx, name, in)
	if err != nil {
		return nil, err
	}
	switch {
	case ev != nil && cron != "":
		return nil, status.Errorf(codes.InvalidArgument, "policy add %s: --cron and --on-create: give one", name)
	case ev == nil:
		if _, err := parseCron(cron); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "policy add %s: --cron %q: %v (want 5 fields, or 6 with seconds first, e.g. \"0 */5 * * * *\", or @hourly, @every 10m)", name, in.GetCron(), err)
		}
	}
	overlap, err := checkOverlap(in.GetOverlap())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "policy add %s: --%v", name, err)
	}
	if ev != nil && strings.TrimSpace(in.GetOverlap()) == "" {
		overlap = overlapQueue // events are never dropped unless asked (--overlap skip)
	}
	out, err := s.checkPolicyJob(ctx, name, in)
	if err != nil {
		return nil, err
	}
	out.Name, out.Cron, out.Overlap, out.CatchUp = name, cron, overlap, in.GetCatchUp()
	if ev != nil {
		if out.GetPipeline() == nil {
			if err := plans.CheckEventPlan(out.GetPlan()); err != nil {
				return nil, status.Errorf(codes.InvalidArgument, "policy add %s: --on-create %s: %s", name, ev.GetOnCreate(), status.Convert(err).Message())
			}
		}
		out.OnCreate, out.DebounceMs, out.BatchMax, out.CatchUp = ev.GetOnCreate(), ev.GetDebounceMs(), ev.GetBatchMax(), false
	}
	return out, nil
}

// checkEventTrigger checks an event policy's trigger: the path (a
// directory the caller may list), the debounce and the batch bound. It
// returns nil for a policy without --on-create.
func (s *Server) checkEventTrigger(ctx context.Context, name string, in *api.PolicyInfo) (*api.PolicyInfo, error) {
	raw := in.GetOnCreate()
	if raw == "" {
		if in.GetDebounceMs() != 0 || in.GetBatchMax() != 0 {
			return nil, status.Errorf(codes.InvalidArgument, "policy add %s: --debounce and --batch-max are for --on-create policies", name)
		}
		return nil, nil
	}
	p, err := paths.Clean(raw)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "policy add %s: --on-create %q: %v", name, raw, err)
	}
	if d := in.GetDebounceMs(); d < 0 || d > maxDebounce.Milliseconds() {
		return nil, status.Errorf(codes.InvalidArgument, "policy add %s: --debounce %v: want 0s to %v", name, time.Duration(d)*time.Millisecond, maxDebounce)
	}
	bm := in.GetBatchMax()
	if bm == 0 {
		bm = defaultBatchMax
	}
	if bm < 1 || bm > maxBatchMax {
		return nil, status.Errorf(codes.InvalidArgument, "policy add %s: --batch-max %d: want 1 to %d files a run", name, in.GetBatchMax(), maxBatchMax)
	}
	// The policy's runs read the feed as its owner: the owner must list
	// the directory.
	_, runAs := caller(ctx)
	actx := rpc.ActAs(ctx, runAs)
	st, err := s.env.FS().GetStatus(actx, &api.GetStatusRequest{Path: p})
	switch {
	case status.Code(err) == codes.NotFound:
		return nil, status.Errorf(codes.NotFound, "policy add %s: --on-create %s: no such directory (create it first: alluvium fs mkdir %s)", name, p, p)
	case err != nil:
		return nil, status.Errorf(status.Code(err), "policy add %s: --on-create %s: %s", name, p, status.Convert(err).Message())
	case !st.GetInfo().GetFolder():
		return nil, status.Errorf(codes.InvalidArgument, "policy add %s: --on-create %s: a file, want a directory", name, p)
	}
	if _, err := s.env.FS().CheckAccess(actx, &api.CheckAccessRequest{Path: p, Bits: 5}); err != nil {
		return nil, status.Errorf(status.Code(err), "policy add %s: --on-create %s: %s", name, p, status.Convert(err).Message())
	}
	return &api.PolicyInfo{OnCreate: p, DebounceMs: in.GetDebounceMs(), BatchMax: bm}, nil
}

// checkPolicyJob checks what a policy fires — a pipeline, or a plan and
// its config — and returns it normalized.
func (s *Server) checkPolicyJob(ctx context.Context, name string, in *api.PolicyInfo) (*api.PolicyInfo, error) {
	if def := in.GetPipeline(); def != nil {
		// A policy that fires a pipeline: its definition and parameters
		// are checked (and rendered) as a submit would check them.
		if in.GetPlan() != "" {
			return nil, status.Errorf(codes.InvalidArgument, "policy add %s: a plan and a pipeline: give one", name)
		}
		offers := cronOffers(time.Now().UnixMilli())
		if in.GetOnCreate() != "" {
			offers = eventOffers(&api.PolicyInfo{PendingEvents: []*api.PolicyEvent{{Path: in.GetOnCreate() + "/example", FileId: 1, Sequence: 1}}})
		}
		if _, err := newRun(def, triggerParams(def, in.GetPipelineParams(), offers)); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "policy add %s: %s", name, status.Convert(err).Message())
		}
		return &api.PolicyInfo{Pipeline: def, PipelineParams: in.GetPipelineParams()}, nil
	}
	plan, err := plans.Lookup(in.GetPlan())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "policy add %s: %s", name, status.Convert(err).Message())
	}
	cfg := in.GetConfigJson()
	if cfg == "" || spec.SyntaxError([]byte(cfg)) != nil {
		return nil, status.Errorf(codes.InvalidArgument, "policy add %s: the %s config is not a JSON object", name, in.GetPlan())
	}
	_, runAs := caller(ctx)
	valid, err := plan.Validate(rpc.ActAs(ctx, runAs), s.env, []byte(cfg))
	if err != nil {
		if st, ok := status.FromError(err); ok {
			return nil, status.Errorf(st.Code(), "policy add %s: %s", name, st.Message())
		}
		return nil, status.Errorf(codes.Unavailable, "policy add %s: %v", name, err)
	}
	return &api.PolicyInfo{Plan: in.GetPlan(), ConfigJson: string(valid.Config), Limits: valid.Limits.Proto()}, nil
}

// policyDefinition is what a user gave of a policy (normalized), without
// what its runs changed since.
func policyDefinition(p *api.PolicyInfo) *api.PolicyInfo {
	return &api.PolicyInfo{
		Name: p.GetName(), Cron: p.GetCron(), Plan: p.GetPlan(), ConfigJson: p.GetConfigJson(), Overlap: p.GetOverlap(),
		CatchUp: p.GetCatchUp(), Owner: p.GetOwner(), Limits: p.GetLimits(), Pipeline: p.GetPipeline(),
		PipelineParams: p.GetPipelineParams(), OnCreate: p.GetOnCreate(), DebounceMs: p.GetDebounceMs(), BatchMax: p.GetBatchMax(),
	}
}

// feedHead is the completion feed's cursor now under p's path: an event
// policy fires for files completed after it was added.
func (s *Server) feedHead(ctx context.Context, p *api.PolicyInfo) (int64, error) {
	_, runAs := caller(ctx)
	resp, err := s.env.FS().WatchCompletions(rpc.ActAs(ctx, runAs), &api.WatchCompletionsRequest{Path: p.GetOnCreate(), FromNow: true})
	if err != nil {
		return 0, status.Errorf(status.Code(err), "policy add %s: --on-create %s: the FS master's completion feed: %s", p.GetName(), p.GetOnCreate(), status.Convert(err).Message())
	}
	return resp.GetCursor(), nil
}

// mayManagePolicy refuses a change to policy name by anyone but its owner
// and the system identity. A missing policy is left to the caller.
func (s *Server) mayManagePolicy(ctx context.Context, op, name string) error {
	p := s.fsm.policy(name)
	if p == nil || mayManage(ctx, p.GetOwner()) {
		return nil
	}
	if !s.viewerOf(ctx).seesPolicy(p) {
		return status.Errorf(codes.NotFound, "%s %s: no such policy", op, name)
	}
	who, _ := caller(ctx)
	return status.Errorf(codes.PermissionDenied, "%s %s: user %s may not change a policy of %s", op, name, who, p.GetOwner())
}

// policyView is a policy as clients see it: with its next run and the
// status of its last job.
func (s *Server) policyView(p *api.PolicyInfo) *api.PolicyInfo {
	v := policyCopy(p)
	if v.GetEnabled() {
		if sched, err := parseCron(v.GetCron()); err == nil {
			if next := sched.Next(msTime(v.GetCursorMs())); !next.IsZero() {
				v.NextRunMs = next.UnixMilli()
			}
		}
	}
	if id := v.GetLastPipelineId(); id != 0 {
		if run := s.fsm.Pipeline(id); run != nil {
			v.LastPipelineStatus = run.GetStatus()
		}
	}
	if id := v.GetLastJobId(); id != 0 {
		if j := s.fsm.Job(id); j != nil {
			v.LastJobStatus = j.Status
		} else {
			v.LastJobStatus = api.JobInfo_STATUS_UNSPECIFIED // compacted away
		}
	}
	return v
}

func (f *FSM) policy(name string) *api.PolicyInfo {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.policy(name)
}

func (r *rpcServer) ListPolicies(ctx context.Context, req *api.ListPoliciesRequest) (*api.ListPoliciesResponse, error) {
	s := r.s
	_, ans, answered, err := forward(s, ctx, "policy ls", req, api.JobMasterClient.ListPolicies)
	if answered {
		return ans, err
	}
	return &api.ListPoliciesResponse{Policies: s.visiblePolicies(ctx)}, nil
}

// visiblePolicies are the policies the caller sees, by name, as clients
// see them (policyView).
func (s *Server) visiblePolicies(ctx context.Context) []*api.PolicyInfo {
	v := s.viewerOf(ctx)
	var ps []*api.PolicyInfo
	s.fsm.view(func(st *state) {
		st.policies.Ascend(func(p *api.PolicyInfo) bool {
			if v.seesPolicy(p) {
				ps = append(ps, p)
			}
			return true
		})
	})
	for i, p := range ps {
		ps[i] = s.policyView(p)
	}
	return ps
}

func (r *rpcServer) RemovePolicy(ctx context.Context, req *api.RemovePolicyRequest) (*api.RemovePolicyResponse, error) {
	s := r.s
	ls, ans, answered, err := forward(s, ctx, "policy rm", req, api.JobMasterClient.RemovePolicy)
	if answered {
		return ans, err
	}
	name := req.GetName()
	if err := s.mayManagePolicy(ctx, "policy rm", name); err != nil {
		return nil, err
	}
	if err := s.applyErr(ctx, &api.DeletePolicyCommand{Name: name}); err != nil {
		if errors.Is(err, errPolicyNotFound) {
			return nil, status.Errorf(codes.NotFound, "policy rm %s: no such policy (see 'alluvium policy ls')", name)
		}
		return nil, grpcErr("policy rm "+name, err)
	}
	ls.pol.poke()
	return &api.RemovePolicyResponse{}, nil
}

func (r *rpcServer) SetPolicyEnabled(ctx context.Context, req *api.SetPolicyEnabledRequest) (*api.SetPolicyEnabledResponse, error) {
	s := r.s
	ls, ans, answered, err := forward(s, ctx, "policy pause/resume", req, api.JobMasterClient.SetPolicyEnabled)
	if answered {
		return ans, err
	}
	name := req.GetName()
	op := "policy pause " + name
	if req.GetEnabled() {
		op = "policy resume " + name
	}
	if err := s.mayManagePolicy(ctx, op, name); err != nil {
		return nil, err
	}
	err = s.applyErr(ctx, &api.SetPolicyEnabledCommand{Name: name, Enabled: req.GetEnabled(), NowMs: time.Now().UnixMilli()})
	if err != nil {
		if errors.Is(err, errPolicyNotFound) {
			return nil, status.Errorf(codes.NotFound, "%s: no such policy (see 'alluvium policy ls')", op)
		}
		return nil, grpcErr(op, err)
	}
	ls.pol.poke()
	p := s.fsm.policy(name)
	if p == nil {
		return nil, status.Errorf(codes.NotFound, "%s: no such policy (removed meanwhile)", op)
	}
	return &api.SetPolicyEnabledResponse{Policy: s.policyView(p)}, nil
}

func (r *rpcServer) RunPolicyNow(ctx context.Context, req *api.RunPolicyNowRequest) (*api.RunPolicyNowResponse, error) {
	s := r.s
	ls, ans, answered, err := forward(s, ctx, "policy run-now", req, api.JobMasterClient.RunPolicyNow)
	if answered {
		return ans, err
	}
	if err := s.mayManagePolicy(ctx, "policy run-now", req.GetName()); err != nil {
		return nil, err
	}
	id, run, err := ls.pol.runNow(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	return &api.RunPolicyNowResponse{JobId: id, PipelineRunId: run}, nil
}
