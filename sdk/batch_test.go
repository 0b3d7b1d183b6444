package sdk

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/rpc"
)

// fakeMaster records the single and batch calls a joiner makes; single
// calls wait for release while hold is set.
type fakeMaster struct {
	mu      sync.Mutex
	singles []string
	batches [][]string
	users   []string // the user each batch acted for
	hold    chan struct{}
	started chan string
	unimpl  bool
}

func (f *fakeMaster) answer(p string) (*FileInfo, error) {
	if p == "/bad" {
		return nil, status.Errorf(codes.NotFound, "stat %s: no such file or directory", p)
	}
	return &FileInfo{Path: p}, nil
}

func (f *fakeMaster) joiner() *joiner[string] {
	return newJoiner(1, func(ctx context.Context, p string) (*FileInfo, error) {
		f.mu.Lock()
		f.singles = append(f.singles, p)
		hold := f.hold
		f.mu.Unlock()
		if f.started != nil {
			f.started <- p
		}
		if hold != nil {
			<-hold
		}
		return f.answer(p)
	}, func(ctx context.Context, ps []string) ([]*api.CreateFileResult, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.unimpl {
			return nil, status.Error(codes.Unimplemented, "unknown method GetStatuses")
		}
		f.batches = append(f.batches, slices.Clone(ps))
		f.users = append(f.users, rpc.ActingAs(ctx))
		var out []*api.CreateFileResult
		for _, p := range ps {
			info, err := f.answer(p)
			st := status.Convert(err)
			out = append(out, &api.CreateFileResult{Info: info, Code: int32(st.Code()), Error: st.Message()})
		}
		return out, nil
	})
}

// waitJoined waits (up to a minute) until n calls wait in user's group.
func waitJoined(t *testing.T, j *joiner[string], user string, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		if j.j.Waiting(user) == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d calls never joined the next batch of user %q", n, user)
		}
		time.Sleep(time.Millisecond)
	}
}

type answer struct {
	info *FileInfo
	err  error
}

func ask(j *joiner[string], ctx context.Context, p string) <-chan answer {
	ch := make(chan answer, 1)
	go func() {
		info, err := j.do(ctx, "stat", p, p)
		ch <- answer{info, err}
	}()
	return ch
}

// A lone call goes alone, as the single RPC; the calls made while it is in
// flight go together in one batch, each answered on its own (its error
// names its path); calls acting for another user are never joined with
// them.
func TestJoinerBatchesConcurrentCallsPerUser(t *testing.T) {
	f := &fakeMaster{hold: make(chan struct{}), started: make(chan string, 1)}
	j := f.joiner()
	ctx := context.Background()
	first := ask(j, ctx, "/first")
	if p := <-f.started; p != "/first" {
		t.Fatalf("first single call was %s", p)
	}
	f.mu.Lock()
	f.started = nil
	f.mu.Unlock()
	a, bad, c := ask(j, ctx, "/a"), ask(j, ctx, "/bad"), ask(j, ctx, "/c")
	waitJoined(t, j, "", 3)
	other := ask(j, AsUser(ctx, "bob"), "/bobs")
	close(f.hold) // the first call ends; the next batch starts
	if r := <-first; r.err != nil || r.info.GetPath() != "/first" {
		t.Fatalf("first: %+v", r)
	}
	for p, ch := range map[string]<-chan answer{"/a": a, "/c": c, "/bobs": other} {
		if r := <-ch; r.err != nil || r.info.GetPath() != p {
			t.Errorf("%s: %v, %v", p, r.info, r.err)
		}
	}
	r := <-bad
	var se *Error
	if !errors.As(r.err, &se) || !errors.Is(r.err, ErrNotFound) || se.Path != "/bad" || se.Op != "stat" {
		t.Fatalf("/bad: %v, want a NotFound *Error naming stat /bad", r.err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.batches) != 1 || !slices.Equal(sorted(f.batches[0]), []string{"/a", "/bad", "/c"}) || f.users[0] != "" {
		t.Fatalf("batches %v (users %q), want one of /a /bad /c for the client's user", f.batches, f.users)
	}
	// bob's call came alone in its own group: a single call.
	if !slices.Contains(f.singles, "/bobs") {
		t.Fatalf("singles %v: bob's lone call was not sent alone", f.singles)
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// A master without the batch RPCs (an older one) gets every call alone.
func TestJoinerFallsBackToSingleCalls(t *testing.T) {
	f := &fakeMaster{hold: make(chan struct{}), started: make(chan string, 1), unimpl: true}
	j := f.joiner()
	ctx := context.Background()
	first := ask(j, ctx, "/first")
	<-f.started
	f.mu.Lock()
	f.started = nil
	f.mu.Unlock()
	var chs []<-chan answer
	for i := range 3 {
		chs = append(chs, ask(j, ctx, fmt.Sprintf("/f%d", i)))
	}
	waitJoined(t, j, "", 3)
	close(f.hold)
	<-first
	for i, ch := range chs {
		if r := <-ch; r.err != nil || r.info.GetPath() != fmt.Sprintf("/f%d", i) {
			t.Fatalf("/f%d: %v, %v", i, r.info, r.err)
		}
	}
	if !j.j.Unjoined() {
		t.Fatal("the joiner still joins calls after Unimplemented")
	}
	if r := <-ask(j, ctx, "/later"); r.err != nil {
		t.Fatal(r.err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.singles) != 5 {
		t.Fatalf("singles %v, want all 5 calls sent alone", f.singles)
	}
}

// A caller whose context ends stops waiting with its context's error; the
// batch goes on for the others.
func TestJoinerCallerGivesUp(t *testing.T) {
	f := &fakeMaster{hold: make(chan struct{}), started: make(chan string, 1)}
	j := f.joiner()
	first := ask(j, context.Background(), "/first")
	<-f.started
	f.mu.Lock()
	f.started = nil
	f.mu.Unlock()
	cctx, cancel := context.WithCancel(context.Background())
	gone := ask(j, cctx, "/gone")
	stay := ask(j, context.Background(), "/stay")
	waitJoined(t, j, "", 2)
	cancel()
	if r := <-gone; !errors.Is(r.err, ErrCanceled) {
		t.Fatalf("cancelled caller: %v, want ErrCanceled", r.err)
	}
	close(f.hold)
	<-first
	if r := <-stay; r.err != nil || r.info.GetPath() != "/stay" {
		t.Fatalf("/stay: %v, %v", r.info, r.err)
	}
}
