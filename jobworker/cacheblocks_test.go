package jobworker

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/coalesce"
	"github.com/alluvium/alluvium/internal/rpc"
	"github.com/alluvium/alluvium/internal/testutil"
)

// cacheWorker is a block worker's client that records the cache calls it
// gets (with the user each acts for); a CacheBlock of block 1 waits for
// release, and block 13 fails.
type cacheWorker struct {
	api.BlockWorkerClient
	release chan struct{}
	started chan struct{}

	mu    sync.Mutex
	calls []string // "one 1 alice", "many [2 3] alice"
}

func (w *cacheWorker) record(s string) {
	w.mu.Lock()
	w.calls = append(w.calls, s)
	w.mu.Unlock()
}

func (w *cacheWorker) CacheBlock(ctx context.Context, req *api.CacheBlockRequest, _ ...grpc.CallOption) (*api.CacheBlockResponse, error) {
	w.record(fmt.Sprintf("one %d %s", req.GetBlockId(), rpc.ActingAs(ctx)))
	if req.GetBlockId() == 1 {
		w.started <- struct{}{}
		<-w.release
	}
	return &api.CacheBlockResponse{Bytes: req.GetSource().GetLength()}, nil
}

func (w *cacheWorker) CacheBlocks(ctx context.Context, req *api.CacheBlocksRequest, _ ...grpc.CallOption) (*api.CacheBlocksResponse, error) {
	var ids []int64
	resp := &api.CacheBlocksResponse{}
	for _, b := range req.GetBlocks() {
		ids = append(ids, b.GetBlockId())
		r := &api.CacheBlockResult{BlockId: b.GetBlockId(), Bytes: b.GetSource().GetLength()}
		if b.GetBlockId() == 13 {
			r.Bytes, r.Code, r.Error = 0, int32(codes.FailedPrecondition), "ufs /f13 changed"
		}
		resp.Results = append(resp.Results, r)
	}
	slices.Sort(ids)
	w.record(fmt.Sprintf("many %v %s", ids, rpc.ActingAs(ctx)))
	return resp, nil
}

func cacheReq(id int64) *api.CacheBlockRequest {
	return &api.CacheBlockRequest{BlockId: id, Source: &api.UfsBlockSource{UfsPath: fmt.Sprintf("/f%d", id), Length: 4096}}
}

// batchingTo is a batching client of the fake block worker bw at w1:1.
func batchingTo(bw *cacheWorker) batchingClient {
	b := &cacheBatcher{dial: func(string) (api.BlockWorkerClient, error) { return bw, nil },
		groups: map[cacheKey]*coalesce.Group[*cacheCall, struct{}]{}}
	return batchingClient{BlockWorkerClient: bw, b: b, addr: "w1:1"}
}

// The CacheBlock calls made while one is in flight go as one CacheBlocks
// (per user), each caller answered with its own block's result; a call
// drawing from a bandwidth budget, or of a big block, goes on its own.
func TestConcurrentCacheBlocksShareACall(t *testing.T) {
	bw := &cacheWorker{release: make(chan struct{}), started: make(chan struct{}, 1)}
	c := batchingTo(bw)
	alice := rpc.ActAs(context.Background(), "alice")
	bob := rpc.ActAs(context.Background(), "bob")

	type answer struct {
		id   int64
		resp *api.CacheBlockResponse
		err  error
	}
	answers := make(chan answer, 8)
	ask := func(ctx context.Context, id int64) {
		go func() {
			resp, err := c.CacheBlock(ctx, cacheReq(id))
			answers <- answer{id, resp, err}
		}()
	}
	ask(alice, 1) // alone: a CacheBlock of its own, held
	<-bw.started
	ask(alice, 2)
	ask(alice, 3)
	ask(alice, 13)
	ask(bob, 4) // another user: a group of its own (alone there: a CacheBlock)
	testutil.Eventually(t, time.Minute, func() error {
		if n := c.b.group("w1:1", "alice").Waiting(); n != 3 {
			return fmt.Errorf("%d of alice's calls wait, want 3", n)
		}
		return nil
	})
	// A rated call or a big block does not wait for the batch.
	rated := rpc.WithRate(alice, "job-1", func() int64 { return 1 << 20 })
	if _, err := c.CacheBlock(rated, cacheReq(5)); err != nil {
		t.Fatal(err)
	}
	big := cacheReq(6)
	big.Source.Length = 64 << 20
	if _, err := c.CacheBlock(alice, big); err != nil {
		t.Fatal(err)
	}
	close(bw.release)
	got := map[int64]answer{}
	for range 5 {
		a := <-answers
		got[a.id] = a
	}
	for _, id := range []int64{1, 2, 3, 4} {
		if a := got[id]; a.err != nil || a.resp.GetBytes() != 4096 {
			t.Errorf("block %d: %+v, %v; want 4096 bytes", id, a.resp, a.err)
		}
	}
	if a := got[13]; status.Code(a.err) != codes.FailedPrecondition || status.Convert(a.err).Message() != "ufs /f13 changed" {
		t.Errorf("block 13: %v, want its own FailedPrecondition", a.err)
	}
	bw.mu.Lock()
	calls := slices.Clone(bw.calls)
	bw.mu.Unlock()
	want := []string{"one 1 alice", "one 4 bob", "one 5 alice", "one 6 alice", "many [2 3 13] alice"}
	slices.Sort(calls)
	slices.Sort(want)
	if !slices.Equal(calls, want) {
		t.Fatalf("calls %q, want %q", calls, want)
	}
}

// A wave of CacheBlock calls made at once (the tasks a poll's answer
// starts together) goes as one CacheBlocks, not its first call alone and
// the rest after that call's round trip: the group gathers. Gathering
// yields to the callers the scheduler has ready, so a wave is asked
// several times and one sent whole is enough.
func TestCacheBlockWaveGoesTogether(t *testing.T) {
	bw := &cacheWorker{release: make(chan struct{}), started: make(chan struct{}, 1)}
	c := batchingTo(bw)
	alice := rpc.ActAs(context.Background(), "alice")
	const waves, per = 20, 6
	whole := 0
	for wave := range waves {
		bw.mu.Lock()
		bw.calls = nil
		bw.mu.Unlock()
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range per {
			id := int64(100 + wave*per + i) // not 1 (held) nor 13 (fails)
			wg.Go(func() {
				<-start
				if resp, err := c.CacheBlock(alice, cacheReq(id)); err != nil || resp.GetBytes() != 4096 {
					t.Errorf("block %d: %+v, %v", id, resp, err)
				}
			})
		}
		close(start)
		wg.Wait()
		bw.mu.Lock()
		if len(bw.calls) == 1 && bw.calls[0] != "" && bw.calls[0][:4] == "many" {
			whole++
		}
		bw.mu.Unlock()
	}
	if whole == 0 {
		t.Fatalf("none of %d waves of %d calls made at once went as one CacheBlocks", waves, per)
	}
}
