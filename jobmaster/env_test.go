package jobmaster

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/rpc"
)

type bmEnv struct {
	nopEnv
	bm api.BlockMasterClient
}

func (e bmEnv) BlockMaster() api.BlockMasterClient { return e.bm }

type countFS struct {
	api.FileSystemMasterClient
	mu    sync.Mutex
	calls map[string]int
}

func (f *countFS) GetStatus(_ context.Context, req *api.GetStatusRequest, _ ...grpc.CallOption) (*api.GetStatusResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[req.GetPath()]++
	if req.GetPath() == "/missing" {
		return nil, errors.New("not found")
	}
	return &api.GetStatusResponse{Info: &api.FileInfo{Path: req.GetPath(), Length: int64(f.calls[req.GetPath()])}}, nil
}

type fsEnv struct {
	nopEnv
	fs api.FileSystemMasterClient
}

func (e fsEnv) FS() api.FileSystemMasterClient { return e.fs }

// Within a submit (a context with a status memo) a stat repeats the first
// answer for the same request; without one every stat is asked; errors are
// not kept.
func TestStatusMemoWithinASubmit(t *testing.T) {
	fs := &countFS{calls: map[string]int{}}
	env := newPlanEnv(fsEnv{fs: fs})
	stat := func(ctx context.Context, p string) (*api.GetStatusResponse, error) {
		return env.FS().GetStatus(ctx, &api.GetStatusRequest{Path: p})
	}
	ctx := withSubmitMemo(context.Background())
	a, _ := stat(ctx, "/a")
	a.Info.Length = 99 // a caller changing its answer changes no one else's
	b, _ := stat(ctx, "/a")
	if b.GetInfo().GetLength() != 1 || fs.calls["/a"] != 1 {
		t.Fatalf("memoized stat: %v after %d calls", b, fs.calls["/a"])
	}
	if _, err := stat(ctx, "/missing"); err == nil {
		t.Fatal("stat of a missing path")
	}
	if _, err := stat(ctx, "/missing"); err == nil || fs.calls["/missing"] != 2 {
		t.Fatalf("an error was kept: %d calls", fs.calls["/missing"])
	}
	if c, _ := stat(context.Background(), "/a"); c.GetInfo().GetLength() != 2 {
		t.Fatalf("stat outside a submit: %v", c)
	}
	if d, _ := stat(withSubmitMemo(context.Background()), "/a"); d.GetInfo().GetLength() != 3 {
		t.Fatalf("stat in another submit: %v", d)
	}
}

type countBM struct {
	api.BlockMasterClient
	calls atomic.Int64
}

func (c *countBM) GetWorkerInfoList(context.Context, *api.GetWorkerInfoListRequest, ...grpc.CallOption) (*api.GetWorkerInfoListResponse, error) {
	return &api.GetWorkerInfoListResponse{Workers: []*api.WorkerInfo{{Id: c.calls.Add(1)}}}, nil
}

// Within a submit the worker list is asked once; outside, every time.
func TestWorkerListMemoWithinASubmit(t *testing.T) {
	c := &countBM{}
	env := newPlanEnv(bmEnv{bm: c})
	list := func(ctx context.Context) int64 {
		resp, err := env.BlockMaster().GetWorkerInfoList(ctx, &api.GetWorkerInfoListRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetWorkers()[0].GetId()
	}
	ctx := withSubmitMemo(context.Background())
	if a, b := list(ctx), list(ctx); a != 1 || b != 1 {
		t.Fatalf("within a submit: calls %d, %d", a, b)
	}
	if a, b := list(context.Background()), list(context.Background()); a != 2 || b != 3 {
		t.Fatalf("outside a submit: calls %d, %d", a, b)
	}
}

// gatedBM answers GetWorkerInfoList with the number of the call (as the
// first worker's id), each call held until the test lets it go.
type gatedBM struct {
	api.BlockMasterClient
	calls   atomic.Int64
	started chan int64
	release chan struct{}
}

func (g *gatedBM) GetWorkerInfoList(ctx context.Context, _ *api.GetWorkerInfoListRequest, _ ...grpc.CallOption) (*api.GetWorkerInfoListResponse, error) {
	n := g.calls.Add(1)
	g.started <- n
	<-g.release
	return &api.GetWorkerInfoListResponse{Workers: []*api.WorkerInfo{{Id: n}}}, nil
}

// Submits that list the block workers while a listing is in flight share
// the next one: each gets a list read after it asked (the wave's one
// answer, which they only read), and the FS master sees one call per wave,
// not one per submit.
func TestSharedWorkerListNeverAnswersOlderThanTheAsk(t *testing.T) {
	g := &gatedBM{started: make(chan int64, 4), release: make(chan struct{})}
	env := newPlanEnv(bmEnv{bm: g})
	ask := func() <-chan *api.GetWorkerInfoListResponse {
		out := make(chan *api.GetWorkerInfoListResponse, 1)
		go func() {
			// Each as a submit does: with a memo of its own.
			resp, err := env.BlockMaster().GetWorkerInfoList(withSubmitMemo(context.Background()), &api.GetWorkerInfoListRequest{})
			if err != nil {
				t.Error(err)
			}
			out <- resp
		}()
		return out
	}
	first := ask()
	if n := <-g.started; n != 1 {
		t.Fatalf("first call is call %d", n)
	}
	second, third := ask(), ask()
	waitFor(t, "the two callers to wait for the next call", func() bool { return env.workers.Waiting() == 2 })
	g.release <- struct{}{}
	if got := (<-first).GetWorkers()[0].GetId(); got != 1 {
		t.Fatalf("first caller got call %d", got)
	}
	if n := <-g.started; n != 2 {
		t.Fatalf("second call is call %d", n)
	}
	g.release <- struct{}{}
	a, b := <-second, <-third
	if a.GetWorkers()[0].GetId() != 2 || b.GetWorkers()[0].GetId() != 2 {
		t.Fatalf("callers who asked during call 1 got calls %d and %d, want 2", a.GetWorkers()[0].GetId(), b.GetWorkers()[0].GetId())
	}
	// The wave's answer is shared, not copied per caller (plans only read
	// the list: liveBlockWorkers copies what it keeps).
	if a != b {
		t.Fatal("two callers of one wave got two copies; they share its answer")
	}
	if n := g.calls.Load(); n != 2 {
		t.Fatalf("%d calls for 3 callers in two waves", n)
	}
	// A caller whose context ends stops waiting; the call goes on.
	cctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := env.BlockMaster().GetWorkerInfoList(cctx, &api.GetWorkerInfoListRequest{})
		done <- err
	}()
	<-g.started
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller: %v", err)
	}
	g.release <- struct{}{}
}

// A stat that checks access (the validation's) is always asked, even when
// the memo holds the path, and answers the plain stats after it (the
// planner's) within the submit.
func TestStatusMemoAccessStatAlwaysAsked(t *testing.T) {
	fs := &countFS{calls: map[string]int{}}
	env := newPlanEnv(fsEnv{fs: fs})
	ctx := withSubmitMemo(context.Background())
	for i := 1; i <= 2; i++ {
		if _, err := env.FS().GetStatus(ctx, &api.GetStatusRequest{Path: "/a", Access: 4}); err != nil {
			t.Fatal(err)
		}
		if fs.calls["/a"] != i {
			t.Fatalf("access stat %d answered from the memo (%d calls)", i, fs.calls["/a"])
		}
	}
	plain, err := env.FS().GetStatus(ctx, &api.GetStatusRequest{Path: "/a"})
	if err != nil {
		t.Fatal(err)
	}
	if fs.calls["/a"] != 2 || plain.GetInfo().GetLength() != 2 {
		t.Fatalf("plain stat after the access stat: %v after %d calls, want the second answer and no call", plain, fs.calls["/a"])
	}
}

// joinFS answers single stats held until the test lets each go, and
// batches at once (a path named /denied refused), recording each batch's
// paths and the user it acted for.
type joinFS struct {
	api.FileSystemMasterClient
	singles chan string
	release chan struct{}
	mu      sync.Mutex
	batches map[string][]string // user → the paths of its one batch
}

func (f *joinFS) GetStatus(ctx context.Context, req *api.GetStatusRequest, _ ...grpc.CallOption) (*api.GetStatusResponse, error) {
	f.singles <- req.GetPath()
	<-f.release
	return &api.GetStatusResponse{Info: &api.FileInfo{Path: req.GetPath(), Owner: rpc.ActingAs(ctx)}}, nil
}

func (f *joinFS) GetStatuses(ctx context.Context, req *api.GetStatusesRequest, _ ...grpc.CallOption) (*api.GetStatusesResponse, error) {
	user := rpc.ActingAs(ctx)
	resp := &api.GetStatusesResponse{}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range req.GetRequests() {
		f.batches[user] = append(f.batches[user], r.GetPath())
		if r.GetPath() == "/denied" {
			resp.Results = append(resp.Results, &api.CreateFileResult{Code: int32(codes.PermissionDenied), Error: "stat /denied: permission denied"})
			continue
		}
		resp.Results = append(resp.Results, &api.CreateFileResult{Info: &api.FileInfo{Path: r.GetPath(), Owner: user}})
	}
	return resp, nil
}

// The validations' stats (with an access check) that come while one of the
// same user is in flight go as one GetStatuses acting for that user, each
// answered on its own (a refused path refused alone); another user's go in
// a batch of their own; a lone stat goes as the single call.
func TestValidationStatsJoinPerUser(t *testing.T) {
	fs := &joinFS{singles: make(chan string, 4), release: make(chan struct{}), batches: map[string][]string{}}
	env := newPlanEnv(fsEnv{fs: fs})
	type answer struct {
		path string
		resp *api.GetStatusResponse
		err  error
	}
	answers := make(chan answer, 16)
	stat := func(user, p string) {
		go func() {
			ctx := rpc.ActAs(withSubmitMemo(context.Background()), user)
			resp, err := env.FS().GetStatus(ctx, &api.GetStatusRequest{Path: p, Access: 4})
			answers <- answer{p, resp, err}
		}()
	}
	stat("alice", "/a0")
	stat("bob", "/b0")
	for range 2 { // each user's first stat goes alone and is held
		<-fs.singles
	}
	for _, p := range []string{"/a1", "/a2", "/denied"} {
		stat("alice", p)
	}
	for _, p := range []string{"/b1", "/b2"} {
		stat("bob", p)
	}
	waitFor(t, "the stats to wait for the next batch", func() bool {
		return env.stats.Waiting("alice") == 3 && env.stats.Waiting("bob") == 2
	})
	fs.release <- struct{}{}
	fs.release <- struct{}{}
	for range 7 {
		a := <-answers
		switch {
		case a.path == "/denied":
			if status.Code(a.err) != codes.PermissionDenied {
				t.Errorf("/denied: %v, want PermissionDenied", a.err)
			}
		case a.err != nil:
			t.Errorf("%s: %v", a.path, a.err)
		case a.resp.GetInfo().GetPath() != a.path || a.resp.GetInfo().GetOwner() != map[byte]string{'a': "alice", 'b': "bob"}[a.path[1]]:
			t.Errorf("%s: answered %v", a.path, a.resp.GetInfo())
		}
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for _, b := range fs.batches {
		sort.Strings(b)
	}
	if got := fmt.Sprint(fs.batches); got != "map[alice:[/a1 /a2 /denied] bob:[/b1 /b2]]" {
		t.Errorf("batches %s, want one for each user with its own paths", got)
	}
}
