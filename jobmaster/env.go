package jobmaster

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/plans"
)

// planEnv is the cluster as the job master's plans see it (validating,
// planning), with two savings on what every job asks the FS master:
//
//   - GetWorkerInfoList calls made at the same time share one call
//     (sharedWorkers): every submit and every planner lists the block
//     workers, and the answer is the same for all of them;
//   - within one submit, the GetStatus and GetWorkerInfoList calls the
//     plan's planner makes repeat the ones its validation made
//     (submitMemo): the planner runs right after the validation, in the
//     same call.
type planEnv struct {
	plans.Env
	workers *sharedWorkers
}

func newPlanEnv(env plans.Env) *planEnv { return &planEnv{Env: env, workers: &sharedWorkers{}} }

func (e *planEnv) FS() api.FileSystemMasterClient { return memoFS{e.Env.FS()} }

func (e *planEnv) BlockMaster() api.BlockMasterClient {
	return sharedBM{BlockMasterClient: e.Env.BlockMaster(), s: e.workers}
}

// ForgetBlockWorker passes on to the cluster client, as the plans' Env
// wrappers do.
func (e *planEnv) ForgetBlockWorker(addr string) {
	if f, ok := e.Env.(interface{ ForgetBlockWorker(addr string) }); ok {
		f.ForgetBlockWorker(addr)
	}
}

// sharedWorkers answers GetWorkerInfoList calls together: a call that
// arrives while one is in flight waits for the next one, which starts when
// that one ends and answers every caller that arrived meanwhile. So each
// caller gets a list read after it asked (never an older one), and the FS
// master serves at most one listing at a time however many jobs are
// submitted. The answer is shared: callers only read it.
type sharedWorkers struct {
	mu   sync.Mutex
	busy bool         // a call is in flight
	next *workersCall // the call the callers that came during it wait for
}

type workersCall struct {
	done chan struct{}
	resp *api.GetWorkerInfoListResponse
	err  error
}

// sharedBM is the block master client whose GetWorkerInfoList is shared.
type sharedBM struct {
	api.BlockMasterClient
	s *sharedWorkers
}

func (b sharedBM) GetWorkerInfoList(ctx context.Context, req *api.GetWorkerInfoListRequest, opts ...grpc.CallOption) (*api.GetWorkerInfoListResponse, error) {
	return memoized(ctx, "GetWorkerInfoList", req, func() (*api.GetWorkerInfoListResponse, error) {
		if len(opts) > 0 || !proto.Equal(req, &api.GetWorkerInfoListRequest{}) {
			return b.BlockMasterClient.GetWorkerInfoList(ctx, req, opts...)
		}
		return b.s.list(ctx, b.BlockMasterClient)
	})
}

// list answers a GetWorkerInfoList made through bm, sharing the call.
func (s *sharedWorkers) list(ctx context.Context, bm api.BlockMasterClient) (*api.GetWorkerInfoListResponse, error) {
	s.mu.Lock()
	c := s.next
	if c == nil {
		c = &workersCall{done: make(chan struct{})}
		s.next = c
	}
	if !s.busy {
		s.start(bm)
	}
	s.mu.Unlock()
	select {
	case <-c.done:
		return c.resp, c.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// start runs the waiting call (s.mu held); when it ends, the one the
// callers that came meanwhile wait for starts.
func (s *sharedWorkers) start(bm api.BlockMasterClient) {
	c := s.next
	s.next, s.busy = nil, true
	go func() {
		// Not any caller's context: the others wait on this call too. The
		// job master's own identity lists the workers (the answer is the
		// same for every user).
		ctx, cancel := context.WithTimeout(context.Background(), sharedCallTimeout)
		c.resp, c.err = bm.GetWorkerInfoList(ctx, &api.GetWorkerInfoListRequest{})
		cancel()
		close(c.done)
		s.mu.Lock()
		s.busy = false
		if s.next != nil {
			s.start(bm)
		}
		s.mu.Unlock()
	}()
}

// sharedCallTimeout bounds a shared call (a caller gives up on its own
// context earlier).
const sharedCallTimeout = 30 * time.Second

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
// has seen req; else it calls and keeps a successful answer. Each caller
// gets a copy of its own.
func memoized[Resp proto.Message](ctx context.Context, method string, req proto.Message, call func() (Resp, error)) (Resp, error) {
	memo, _ := ctx.Value(submitMemoKey{}).(*submitMemo)
	if memo == nil {
		return call()
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(req)
	if err != nil {
		return call()
	}
	key := method + "\x00" + string(b)
	memo.mu.Lock()
	kept, ok := memo.answers[key]
	memo.mu.Unlock()
	if ok {
		return proto.Clone(kept).(Resp), nil
	}
	resp, err := call()
	if err == nil {
		memo.mu.Lock()
		memo.answers[key] = proto.Clone(resp)
		memo.mu.Unlock()
	}
	return resp, err
}

// memoFS is the FS master client whose GetStatus goes through the
// context's submitMemo.
type memoFS struct{ api.FileSystemMasterClient }

func (m memoFS) GetStatus(ctx context.Context, req *api.GetStatusRequest, opts ...grpc.CallOption) (*api.GetStatusResponse, error) {
	return memoized(ctx, "GetStatus", req, func() (*api.GetStatusResponse, error) {
		return m.FileSystemMasterClient.GetStatus(ctx, req, opts...)
	})
}
