package jobworker

import (
	"context"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/coalesce"
	"github.com/alluvium/alluvium/internal/rpc"
	"github.com/alluvium/alluvium/plans/plugin"
)

// coalescedCacheMax is the longest block whose CacheBlock may share a
// CacheBlocks call with others': a small block's fill is quick, so no
// caller waits long behind another's.
const coalescedCacheMax = 1 << 20

// taskEnv is the env tasks run with: the plugin env (files, scratch, exec
// policy), whose block-worker clients send the concurrent CacheBlock calls
// of a wave — the tasks of many tiny load jobs at once — as one CacheBlocks
// call per block worker and user (cacheBatcher).
type taskEnv struct {
	*plugin.Env
	batches *cacheBatcher
}

func newTaskEnv(e *plugin.Env) *taskEnv {
	return &taskEnv{Env: e, batches: &cacheBatcher{dial: e.BlockWorker, groups: map[cacheKey]*coalesce.Group[*cacheCall, struct{}]{}}}
}

// BlockWorker implements plans.Env.
func (e *taskEnv) BlockWorker(addr string) (api.BlockWorkerClient, error) {
	c, err := e.Env.BlockWorker(addr)
	if err != nil {
		return nil, err
	}
	return batchingClient{BlockWorkerClient: c, b: e.batches, addr: addr}, nil
}

// cacheBatcher coalesces CacheBlock calls (internal/coalesce: a call made
// while one is in flight joins the next) per block worker and user. Only
// calls that draw from no bandwidth budget share a call: a budget is per
// task, on the bytes the block worker moves for it. The user a call acts
// for stays its own (calls of different users never share one); access to
// each file was checked when its job was submitted, and the block worker's
// cache calls are the cluster's own (system-only), as they were one by one.
type cacheBatcher struct {
	dial func(addr string) (api.BlockWorkerClient, error) // the env's clients

	mu     sync.Mutex
	groups map[cacheKey]*coalesce.Group[*cacheCall, struct{}]
}

type cacheKey struct{ addr, user string }

// cacheCall is one caller's CacheBlock in a batch, answered in place.
type cacheCall struct {
	ctx  context.Context
	req  *api.CacheBlockRequest
	resp *api.CacheBlockResponse
	err  error
}

func (b *cacheBatcher) group(addr, user string) *coalesce.Group[*cacheCall, struct{}] {
	k := cacheKey{addr, user}
	b.mu.Lock()
	defer b.mu.Unlock()
	g := b.groups[k]
	if g == nil {
		// Gathering: a poll's answer starts several tasks at once, and
		// their CacheBlock calls come a moment apart; a plain group sent
		// the first alone and made the rest wait for its round trip (half
		// the batches were of one block), where gathering sends the wave
		// as one call.
		g = coalesce.NewGathering(func(calls []*cacheCall) struct{} {
			// The client as the env has it now: a block worker declared
			// LOST is refused, or dialled again once back.
			c, err := b.dial(addr)
			if err != nil {
				for _, call := range calls {
					call.err = err
				}
				return struct{}{}
			}
			cacheMany(c, user, calls)
			return struct{}{}
		})
		b.groups[k] = g
	}
	return g
}

// batchingClient is a block worker's client whose small unthrottled
// CacheBlock calls go through the batcher.
type batchingClient struct {
	api.BlockWorkerClient
	b    *cacheBatcher
	addr string
}

// CacheBlock implements api.BlockWorkerClient.
func (c batchingClient) CacheBlock(ctx context.Context, req *api.CacheBlockRequest, opts ...grpc.CallOption) (*api.CacheBlockResponse, error) {
	if len(opts) > 0 || rpc.Rated(ctx) || req.GetSource().GetLength() > coalescedCacheMax {
		return c.BlockWorkerClient.CacheBlock(ctx, req, opts...)
	}
	call := &cacheCall{ctx: ctx, req: req}
	if _, ok := c.b.group(c.addr, rpc.ActingAs(ctx)).Do(ctx, call); !ok {
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	return call.resp, call.err
}

// cacheMany sends a batch of CacheBlock calls: a lone one as it is, on its
// caller's context; more in one CacheBlocks that lives while any of their
// callers waits, each answered with its own block's result.
func cacheMany(c api.BlockWorkerClient, user string, calls []*cacheCall) {
	if len(calls) == 1 {
		call := calls[0]
		call.resp, call.err = c.CacheBlock(call.ctx, call.req)
		return
	}
	req := &api.CacheBlocksRequest{Blocks: make([]*api.CacheBlockRequest, len(calls))}
	waiters := make([]context.Context, len(calls))
	for i, call := range calls {
		req.Blocks[i], waiters[i] = call.req, call.ctx
	}
	ctx, stop := coalesce.WhileAnyWaits(rpc.ActAs(context.Background(), user), waiters)
	defer stop()
	resp, err := c.CacheBlocks(ctx, req)
	if status.Code(err) == codes.Unimplemented {
		// An older block worker: one call each, at once.
		var wg sync.WaitGroup
		for _, call := range calls {
			wg.Go(func() { call.resp, call.err = c.CacheBlock(call.ctx, call.req) })
		}
		wg.Wait()
		return
	}
	results := resp.GetResults()
	for i, call := range calls {
		switch {
		case err != nil:
			call.err = err
		case i >= len(results):
			call.err = status.Errorf(codes.Internal, "cache block %d: the block worker's CacheBlocks answered %d of %d blocks", call.req.GetBlockId(), len(results), len(calls))
		case results[i].GetError() != "":
			call.err = status.Error(codes.Code(results[i].GetCode()), results[i].GetError())
		default:
			call.resp = &api.CacheBlockResponse{Bytes: results[i].GetBytes(), AlreadyCached: results[i].GetAlreadyCached()}
		}
	}
}
