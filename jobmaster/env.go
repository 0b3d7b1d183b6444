package jobmaster

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/coalesce"
	"github.com/alluvium/alluvium/internal/rpc"
	"github.com/alluvium/alluvium/plans"
)

// planEnv is the cluster as the job master's plans see it (validating,
// planning), with two savings on what every job asks the FS master:
//
//   - GetWorkerInfoList calls made at the same time share one call
//     (internal/coalesce): every submit lists the block workers, and the
//     answer is the same for all of them; a caller that comes while a
//     listing is in flight waits for the next one, so it never gets a list
//     older than its question. Idle, a lone submit lists at once; 64
//     concurrent submitters make a listing a wave, not one each;
//   - within one submit, the GetStatus and GetWorkerInfoList calls the
//     plan's planner makes repeat the ones its validation made
//     (submitMemo) — the planner runs right after the validation, in the
//     same call (planInline).
type planEnv struct {
	plans.Env
	workers *coalesce.Group[struct{}, workersAnswer]
	stats   *coalesce.Joiner[string, *api.GetStatusRequest, *api.GetStatusResponse]
}

// workersAnswer is one shared listing: callers only read it.
type workersAnswer struct {
	resp *api.GetWorkerInfoListResponse
	err  error
}

// sharedCallTimeout bounds a shared listing (a caller gives up on its own
// context earlier).
const sharedCallTimeout = 30 * time.Second

func newPlanEnv(env plans.Env) *planEnv {
	e := &planEnv{Env: env}
	// Gathering: the submits of a wave (each submitter's next job, sent as
	// its last one is answered) list a moment apart; one listing answers
	// them all instead of the first alone and the rest after its round trip.
	e.workers = coalesce.NewGathering(func([]struct{}) workersAnswer {
		// Not any caller's context: the others wait on this call too. The
		// job master's own identity lists the workers (the answer is the
		// same for every user).
		ctx, cancel := context.WithTimeout(context.Background(), sharedCallTimeout)
		defer cancel()
		resp, err := env.BlockMaster().GetWorkerInfoList(ctx, &api.GetWorkerInfoListRequest{})
		return workersAnswer{resp, err}
	})
	e.stats = coalesce.NewJoiner(maxJoinedStats,
		func(user string) context.Context { return rpc.ActAs(context.Background(), user) },
		func(ctx context.Context, req *api.GetStatusRequest) (*api.GetStatusResponse, error) {
			return env.FS().GetStatus(ctx, req)
		}, func(ctx context.Context, reqs []*api.GetStatusRequest) ([]*api.GetStatusResponse, []error, error) {
			return getStatuses(ctx, env.FS(), reqs)
		}).WithFallback(func(err error) bool { return status.Code(err) == codes.Unimplemented }) // an FS master from before GetStatuses
	return e
}

// maxJoinedStats bounds one GetStatuses of joined submits' stats (an
// answer is a few hundred bytes).
const maxJoinedStats = 512

// getStatuses asks reqs in one GetStatuses call.
func getStatuses(ctx context.Context, fs api.FileSystemMasterClient, reqs []*api.GetStatusRequest) ([]*api.GetStatusResponse, []error, error) {
	resp, err := fs.GetStatuses(ctx, &api.GetStatusesRequest{Requests: reqs})
	if err != nil {
		return nil, nil, err
	}
	resps, errs := make([]*api.GetStatusResponse, len(resp.GetResults())), make([]error, len(resp.GetResults()))
	for i, r := range resp.GetResults() {
		if errs[i] = r.Err(); errs[i] == nil {
			resps[i] = &api.GetStatusResponse{Info: r.GetInfo()}
		}
	}
	return resps, errs, nil
}

func (e *planEnv) FS() api.FileSystemMasterClient { return memoFS{e.Env.FS(), e.stats} }

// BlockMaster: the GetWorkerInfoList answers it gives are shared between
// callers (the wave's, the memo's): read them, never change them.
func (e *planEnv) BlockMaster() api.BlockMasterClient {
	return memoBM{BlockMasterClient: e.Env.BlockMaster(), workers: e.workers}
}

// ForgetBlockWorker passes on to the cluster client, as the plans' Env
// wrappers do.
func (e *planEnv) ForgetBlockWorker(addr string) {
	if f, ok := e.Env.(interface{ ForgetBlockWorker(addr string) }); ok {
		f.ForgetBlockWorker(addr)
	}
}

// memoBM is the block master client whose GetWorkerInfoList goes through
// the context's submitMemo, and else is shared with the calls of the
// moment.
type memoBM struct {
	api.BlockMasterClient
	workers *coalesce.Group[struct{}, workersAnswer]
}

func (b memoBM) GetWorkerInfoList(ctx context.Context, req *api.GetWorkerInfoListRequest, opts ...grpc.CallOption) (*api.GetWorkerInfoListResponse, error) {
	// The listing is shared, not copied per caller: its one reader,
	// plans.liveBlockWorkers, copies the few fields it keeps (a copy of the
	// whole list was ~2% of the job master's CPU at 64 submitters).
	pooled := len(opts) == 0 && b.workers != nil && proto.Equal(req, &api.GetWorkerInfoListRequest{})
	return memoized(ctx, "GetWorkerInfoList", req, false, pooled, func() (*api.GetWorkerInfoListResponse, error) {
		if !pooled {
			return b.BlockMasterClient.GetWorkerInfoList(ctx, req, opts...)
		}
		a, ok := b.workers.Do(ctx, struct{}{})
		if !ok {
			return nil, ctx.Err()
		}
		if a.err != nil {
			return nil, a.err
		}
		return a.resp, nil
	})
}

// submitMemo holds the answers of one submit's calls, by method and
// request.
type submitMemo struct {
	mu      sync.Mutex
	answers map[string]proto.Message
}

type submitMemoKey struct{}

// withSubmitMemo makes the GetStatus and GetWorkerInfoList calls made with
// the returned context (through planEnv) answer a request made before with
// it from the first answer: a submit's planner asks what its validation
// asked a moment before.
func withSubmitMemo(ctx context.Context) context.Context {
	return context.WithValue(ctx, submitMemoKey{}, &submitMemo{answers: map[string]proto.Message{}})
}

// memoized answers req from the context's submitMemo, if it has one and
// has seen req (as key); else it calls and keeps a successful answer under
// key. Each caller gets a copy of its own, unless the method's answers are
// shared (every caller only reads them: no copy is made at all). A call
// whose answer must not come from the memo (it checks something for its
// caller) but may answer later ones passes ask: it is always asked, and
// kept under key.
func memoized[Resp proto.Message](ctx context.Context, method string, key proto.Message, ask, shared bool, call func() (Resp, error)) (Resp, error) {
	memo, _ := ctx.Value(submitMemoKey{}).(*submitMemo)
	if memo == nil {
		return call()
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(key)
	if err != nil {
		return call()
	}
	k := method + "\x00" + string(b)
	if !ask {
		memo.mu.Lock()
		kept, ok := memo.answers[k]
		memo.mu.Unlock()
		if ok {
			if shared {
				return kept.(Resp), nil
			}
			return proto.Clone(kept).(Resp), nil
		}
	}
	resp, err := call()
	if err == nil {
		var keep proto.Message = resp
		if !shared {
			keep = proto.Clone(resp)
		}
		memo.mu.Lock()
		memo.answers[k] = keep
		memo.mu.Unlock()
	}
	return resp, err
}

// memoFS is the FS master client whose GetStatus goes through the
// context's submitMemo.
type memoFS struct {
	api.FileSystemMasterClient
	stats *coalesce.Joiner[string, *api.GetStatusRequest, *api.GetStatusResponse]
}

// GetStatus: a stat that also checks access (the validation's, with
// GetStatusRequest.access) is always asked, and answers the plain stats of
// the same path after it (the planner's). The validations' stats of the
// moment go as one GetStatuses per acting user (the FS master answers and
// checks each on its own, as the single call does, and learns the paths
// it does not hold yet with one wait for its journal): concurrent submits
// share one round trip.
func (m memoFS) GetStatus(ctx context.Context, req *api.GetStatusRequest, opts ...grpc.CallOption) (*api.GetStatusResponse, error) {
	key := req
	ask := req.GetAccess() != 0
	if ask {
		key = proto.CloneOf(req)
		key.Access = 0
	}
	return memoized(ctx, "GetStatus", key, ask, false, func() (*api.GetStatusResponse, error) {
		if ask && len(opts) == 0 && m.stats != nil {
			return m.stats.Do(ctx, rpc.ActingAs(ctx), req)
		}
		return m.FileSystemMasterClient.GetStatus(ctx, req, opts...)
	})
}
