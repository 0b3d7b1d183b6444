package sdk

import (
	"context"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/coalesce"
	"github.com/alluvium/alluvium/internal/rpc"
)

// A client shared by many goroutines (an S3 gateway, a copy with many
// streams) makes the same small FS-master calls at once. Stat, Create and a
// writer's Close join them: a call made while as many of its kind as may
// be are in flight (one stat batch, two of a mutation) waits for the next, which carries every call that came meanwhile in one
// batch RPC (GetStatuses, CreateFiles, CompleteFiles; the master takes its
// lock once and group-commits the batch's journal entries). A lone call is
// sent at once as the single RPC it always was, so nothing is delayed; a
// batch starts after each of its calls was made, so no answer is older
// than its question; each path is checked and answered on its own (its
// error names it), and a batch's mutations are answered once all its
// entries are durable. Calls join only calls acting for the same user.

// A mutation's batch waits on the master's journal (its fsync), so while
// one is in flight a second of its kind may go: the callers that came
// meanwhile need not wait that batch's whole round trip before theirs is
// sent, and the master commits one batch's entries while the other's
// callers are on their way. Stats answer from memory: one batch at a time.
const mutationsInFlight = 2

// maxJoined bounds one batch RPC (a FileInfo is a few hundred bytes: far
// below the message limit); more waiting calls go in several.
const maxJoined = 1000

// joined is one call waiting in a batch: its answer is set before the
// batch's callers are released.
type joined[Req any] struct {
	ctx  context.Context
	req  Req
	info *FileInfo
	err  error
}

// joiner joins the concurrent calls of one kind.
type joiner[Req any] struct {
	single func(ctx context.Context, req Req) (*FileInfo, error)
	batch  func(ctx context.Context, reqs []Req) ([]*api.CreateFileResult, error)
	// inFlight is how many batches of this kind may be in flight at once.
	inFlight int
	// unjoined: the master does not know the batch RPC (an older master):
	// every call goes alone.
	unjoined atomic.Bool

	mu     sync.Mutex
	groups map[string]*coalesce.Group[*joined[Req], struct{}] // by the user acted for ("": the client's)
}

func newJoiner[Req any](inFlight int, single func(context.Context, Req) (*FileInfo, error), batch func(context.Context, []Req) ([]*api.CreateFileResult, error)) *joiner[Req] {
	return &joiner[Req]{inFlight: inFlight, single: single, batch: batch, groups: map[string]*coalesce.Group[*joined[Req], struct{}]{}}
}

// do makes the call of req, joined with the concurrent ones; op and path
// name it in its error.
func (j *joiner[Req]) do(ctx context.Context, op, path string, req Req) (*FileInfo, error) {
	if j.unjoined.Load() {
		info, err := j.single(ctx, req)
		return info, wrapErr(op, path, err)
	}
	user := rpc.ActingAs(ctx)
	j.mu.Lock()
	g := j.groups[user]
	if g == nil {
		g = coalesce.NewGathering(func(items []*joined[Req]) struct{} {
			j.run(user, items)
			return struct{}{}
		}).WithInFlight(j.inFlight)
		j.groups[user] = g
	}
	j.mu.Unlock()
	c := &joined[Req]{ctx: ctx, req: req}
	if _, ok := g.Do(ctx, c); !ok {
		return nil, wrapErr(op, path, ctx.Err())
	}
	return c.info, wrapErr(op, path, c.err)
}

// run answers the calls of one batch.
func (j *joiner[Req]) run(user string, items []*joined[Req]) {
	if len(items) == 1 {
		// Alone: the single call, with its caller's context.
		items[0].info, items[0].err = j.single(items[0].ctx, items[0].req)
		return
	}
	// The batch goes on while any of its callers waits.
	waiters := make([]context.Context, len(items))
	for i, c := range items {
		waiters[i] = c.ctx
	}
	ctx, stop := coalesce.WhileAnyWaits(rpc.ActAs(context.Background(), user), waiters)
	defer stop()
	for len(items) > 0 {
		n := min(len(items), maxJoined)
		j.runBatch(ctx, items[:n])
		items = items[n:]
	}
}

func (j *joiner[Req]) runBatch(ctx context.Context, items []*joined[Req]) {
	reqs := make([]Req, len(items))
	for i, c := range items {
		reqs[i] = c.req
	}
	results, err := j.batch(ctx, reqs)
	if status.Code(err) == codes.Unimplemented {
		// An older master: each call alone from now on (these at once).
		j.unjoined.Store(true)
		var wg sync.WaitGroup
		for _, c := range items {
			wg.Go(func() { c.info, c.err = j.single(c.ctx, c.req) })
		}
		wg.Wait()
		return
	}
	if err == nil && len(results) != len(items) {
		err = status.Errorf(codes.Internal, "the FS master answered %d of %d joined calls", len(results), len(items))
	}
	for i, c := range items {
		switch {
		case err != nil:
			c.err = err
		case results[i].GetCode() != int32(codes.OK):
			c.err = status.Error(codes.Code(results[i].GetCode()), results[i].GetError())
		default:
			c.info = results[i].GetInfo()
		}
	}
}

// joiners builds the client's joined calls.
func (c *Client) joiners() {
	c.stats = newJoiner(1, func(ctx context.Context, req *api.GetStatusRequest) (*FileInfo, error) {
		resp, err := c.fs.GetStatus(ctx, req)
		return resp.GetInfo(), err
	}, func(ctx context.Context, reqs []*api.GetStatusRequest) ([]*api.CreateFileResult, error) {
		resp, err := c.fs.GetStatuses(ctx, &api.GetStatusesRequest{Requests: reqs})
		return resp.GetResults(), err
	})
	c.creates = newJoiner(mutationsInFlight, func(ctx context.Context, req *api.CreateFileRequest) (*FileInfo, error) {
		resp, err := c.fs.CreateFile(ctx, req)
		return resp.GetInfo(), err
	}, func(ctx context.Context, reqs []*api.CreateFileRequest) ([]*api.CreateFileResult, error) {
		resp, err := c.fs.CreateFiles(ctx, &api.CreateFilesRequest{Files: reqs})
		return resp.GetResults(), err
	})
	c.completes = newJoiner(mutationsInFlight, func(ctx context.Context, req *api.CompleteFileRequest) (*FileInfo, error) {
		resp, err := c.fs.CompleteFile(ctx, req)
		return resp.GetInfo(), err
	}, func(ctx context.Context, reqs []*api.CompleteFileRequest) ([]*api.CreateFileResult, error) {
		resp, err := c.fs.CompleteFiles(ctx, &api.CompleteFilesRequest{Files: reqs})
		return resp.GetResults(), err
	})
}
