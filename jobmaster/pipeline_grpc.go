package jobmaster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/pipespec"
	"github.com/alluvium/alluvium/plans"
)

// maxRequestID bounds a caller's idempotency key.
const maxRequestID = 256

// newRun checks def, renders params into its steps and returns the run to
// submit; errors are InvalidArgument and name the step at fault.
func newRun(def *api.PipelineDef, params map[string]any) (*api.PipelineRun, error) {
	known := func(name string) error {
		_, err := plans.Lookup(name)
		if err != nil {
			return errors.New(status.Convert(err).Message())
		}
		return nil
	}
	steps, pj, err := pipespec.Render(def, params, known)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	// What a built-in plan's config must be is known without the cluster:
	// check it now, so a typo fails the submit, not the step hours later.
	for _, s := range steps {
		if err := plans.CheckConfig(s.GetPlan(), []byte(s.GetConfigJson())); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "pipeline %q: step %q: %s", def.GetName(), s.GetName(), status.Convert(err).Message())
		}
	}
	return &api.PipelineRun{
		Name: def.GetName(), Description: def.GetDescription(), Steps: steps, ParamsJson: pj,
		Parallelism: def.GetParallelism(), FailFast: def.GetFailFast(),
	}, nil
}

// submitRun commits run and returns it as the FSM holds it.
func (s *Server) submitRun(ctx context.Context, run *api.PipelineRun) (*api.PipelineRun, bool, error) {
	resp, err := s.apply(ctx, &api.SubmitPipelineCommand{Run: run, NowMs: time.Now().UnixMilli()})
	if err != nil {
		return nil, false, err
	}
	if e, ok := resp.(error); ok {
		return nil, false, e
	}
	pr, ok := resp.(pipelineResult)
	if !ok {
		return nil, false, fmt.Errorf("unexpected FSM response %v", resp)
	}
	if ls := s.leader.Load(); ls != nil {
		ls.pipes.poke()
	}
	return s.fsm.Pipeline(pr.id), pr.existed, nil
}

func (r *rpcServer) SubmitPipeline(ctx context.Context, req *api.SubmitPipelineRequest) (*api.SubmitPipelineResponse, error) {
	s := r.s
	_, ans, answered, err := forward(s, ctx, "pipeline submit", req, api.JobMasterClient.SubmitPipeline)
	if answered {
		return ans, err
	}
	rid := req.GetRequestId()
	if len(rid) > maxRequestID {
		return nil, status.Errorf(codes.InvalidArgument, "pipeline submit: request_id longer than %d bytes", maxRequestID)
	}
	if rid != "" {
		if id, ok := s.fsm.pipelineByRequest(rid); ok {
			run := s.fsm.Pipeline(id)
			if run != nil && !s.viewerOf(ctx).seesRun(run) {
				return nil, status.Errorf(codes.AlreadyExists, "pipeline submit: request id %q is taken by a run of another user; use another", rid)
			}
			return &api.SubmitPipelineResponse{Run: run, Existed: true}, nil
		}
	}
	if req.GetPipeline() == nil {
		return nil, status.Error(codes.InvalidArgument, "pipeline submit: no pipeline definition")
	}
	params := make(map[string]any, len(req.GetParams()))
	for k, v := range req.GetParams() {
		params[k] = v
	}
	run, err := newRun(req.GetPipeline(), params)
	if err != nil {
		return nil, err
	}
	name, runAs := caller(ctx)
	run.Submitter, run.RunAs, run.RequestId = name, runAs, rid
	run.Trigger = &api.PipelineTrigger{Kind: api.PipelineTrigger_MANUAL}
	out, existed, err := s.submitRun(ctx, run)
	if err != nil {
		return nil, grpcErr("pipeline submit", err)
	}
	return &api.SubmitPipelineResponse{Run: out, Existed: existed}, nil
}

func (r *rpcServer) GetPipeline(ctx context.Context, req *api.GetPipelineRequest) (*api.GetPipelineResponse, error) {
	s := r.s
	_, ans, answered, err := forward(s, ctx, "pipeline stat", req, api.JobMasterClient.GetPipeline)
	if answered {
		return ans, err
	}
	run, err := s.visibleRun(ctx, "pipeline stat", req.GetId())
	if err != nil {
		return nil, err
	}
	return &api.GetPipelineResponse{Run: run}, nil
}

func (r *rpcServer) ListPipelines(ctx context.Context, req *api.ListPipelinesRequest) (*api.ListPipelinesResponse, error) {
	s := r.s
	_, ans, answered, err := forward(s, ctx, "pipeline ls", req, api.JobMasterClient.ListPipelines)
	if answered {
		return ans, err
	}
	return s.listPipelines(req, s.viewerOf(ctx))
}

// visibleRun returns run id when the caller may see it; one it may not is
// answered as one that does not exist.
func (s *Server) visibleRun(ctx context.Context, op string, id int64) (*api.PipelineRun, error) {
	run := s.fsm.Pipeline(id)
	if run == nil || !s.viewerOf(ctx).seesRun(run) {
		return nil, status.Errorf(codes.NotFound, "%s: pipeline run %d not found (finished runs are kept for jobmaster.job.retention)", op, id)
	}
	return run, nil
}

// seesRun: a run is its submitter's, like its jobs.
func (v viewer) seesRun(r *api.PipelineRun) bool {
	return v.all || r.GetRunAs() == v.user || r.GetSubmitter() == v.user
}

func (s *Server) listPipelines(req *api.ListPipelinesRequest, v viewer) (*api.ListPipelinesResponse, error) {
	p, err := newIDPage("pipeline ls", req.GetPageSize(), req.GetPageToken(), req.GetNewestFirst())
	if err != nil {
		return nil, err
	}
	want := map[api.PipelineRun_Status]bool{}
	for _, st := range req.GetStatuses() {
		want[st] = true
	}
	match := func(p *api.PipelineRun) bool {
		switch {
		case !v.seesRun(p):
			return false
		case len(want) > 0 && !want[p.GetStatus()]:
			return false
		case req.GetName() != "" && req.GetName() != p.GetName():
			return false
		case req.GetPolicy() != "" && req.GetPolicy() != p.GetTrigger().GetPolicy():
			return false
		}
		return true
	}
	resp := &api.ListPipelinesResponse{}
	s.fsm.view(func(st *state) {
		resp.NextPageToken = pageByID(p, st.pipelines, func(id int64) *api.PipelineRun { return &api.PipelineRun{Id: id} },
			(*api.PipelineRun).GetId, match,
			func(r *api.PipelineRun) { resp.Runs = append(resp.Runs, r) })
	})
	return resp, nil
}

func (r *rpcServer) CancelPipeline(ctx context.Context, req *api.CancelPipelineRequest) (*api.CancelPipelineResponse, error) {
	s := r.s
	_, ans, answered, err := forward(s, ctx, "pipeline cancel", req, api.JobMasterClient.CancelPipeline)
	if answered {
		return ans, err
	}
	run, err := s.visibleRun(ctx, "pipeline cancel", req.GetId())
	if err != nil {
		return nil, err
	}
	switch {
	case run.GetStatus() == api.PipelineRun_CANCELED:
		return &api.CancelPipelineResponse{Run: run}, nil
	case !mayManage(ctx, run.GetRunAs()):
		name, _ := caller(ctx)
		return nil, status.Errorf(codes.PermissionDenied, "pipeline cancel %d: user %s may not cancel a pipeline of %s", run.GetId(), name, run.GetSubmitter())
	case terminalRun(run.GetStatus()):
		return nil, status.Errorf(codes.FailedPrecondition, "pipeline cancel %d: the run already ended %s", run.GetId(), run.GetStatus())
	}
	name, _ := caller(ctx)
	if err := s.applyErr(ctx, &api.CancelPipelineCommand{RunId: run.GetId(), Reason: "canceled by " + name, NowMs: time.Now().UnixMilli()}); err != nil {
		return nil, grpcErr("pipeline cancel", err)
	}
	return &api.CancelPipelineResponse{Run: s.fsm.Pipeline(run.GetId())}, nil
}

func (r *rpcServer) WatchPipeline(req *api.WatchPipelineRequest, stream grpc.ServerStreamingServer[api.PipelineRun]) error {
	s := r.s
	ctx := stream.Context()
	_, fwd, fctx, err := s.route(ctx, "pipeline watch")
	if err != nil {
		return err
	}
	if fwd != nil {
		up, err := fwd.WatchPipeline(fctx, req)
		if err != nil {
			return err
		}
		return relay(up.Recv, stream.Send)
	}
	if _, err := s.visibleRun(ctx, "pipeline watch", req.GetId()); err != nil {
		return err
	}
	return watchPipeline(ctx, s.fsm, req.GetId(), s.shutdown, stream.Send)
}

// watchPipeline sends run id on every change the FSM applies to it until
// it ends (nil) or ctx ends.
func watchPipeline(ctx context.Context, f *FSM, id int64, stop <-chan struct{}, send func(*api.PipelineRun) error) error {
	var last *api.PipelineRun
	for {
		changed := f.Changed()
		run := f.Pipeline(id)
		if run == nil {
			if last == nil {
				return status.Errorf(codes.NotFound, "pipeline watch %d: no such pipeline run", id)
			}
			return nil
		}
		// Records are immutable: a change is a new record.
		if last == nil || (run != last && !proto.Equal(run, last)) {
			if err := send(run); err != nil {
				return err
			}
			last = run
		}
		if terminalRun(run.GetStatus()) {
			return nil
		}
		if ended, err := awaitChange(ctx, changed, stop); ended {
			return err
		}
	}
}
