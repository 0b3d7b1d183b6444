package client

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/rpc"
)

// fakeFS is an FS master in a group: it answers GetLeader with the leader
// it believes in, serves GetStatus, CreateFile and SetAttribute when it
// leads and refuses them with api.NotLeaderError otherwise. failNext
// makes the next served calls execute and then fail with a plain
// Unavailable (a connection lost after the call ran).
type fakeFS struct {
	api.UnimplementedFileSystemMasterServer
	addr string
	srv  *grpc.Server

	mu       sync.Mutex
	leader   string // who it says leads ("" none)
	refuseTo string // when set, calls are refused naming this leader even if leader is itself
	failNext int

	lookups, stats, creates, setattrs atomic.Int32
}

func startFakeFS(t *testing.T, so rpc.ServerOptions) *fakeFS {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeFS{addr: ln.Addr().String(), srv: rpc.NewServer(so)}
	api.RegisterFileSystemMasterServer(f.srv, f)
	go func() { _ = f.srv.Serve(ln) }()
	t.Cleanup(f.srv.Stop)
	return f
}

func (f *fakeFS) setLeader(l string) { f.mu.Lock(); f.leader = l; f.mu.Unlock() }

func (f *fakeFS) GetLeader(ctx context.Context, _ *api.GetLeaderRequest) (*api.GetLeaderResponse, error) {
	f.lookups.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &api.GetLeaderResponse{NodeId: f.addr, LeaderId: f.leader, LeaderRpcAddress: f.leader}
	return resp, nil
}

// serve says whether this member executes a call, and how it fails.
func (f *fakeFS) serve(ctx context.Context, op string, n *atomic.Int32) error {
	f.mu.Lock()
	leader, refuse := f.leader, f.refuseTo
	if refuse == "" && leader != f.addr {
		refuse = leader
	}
	if refuse != "" || leader == "" {
		f.mu.Unlock()
		return api.NotLeaderError(ctx, op, refuse)
	}
	n.Add(1)
	fail := f.failNext > 0
	if fail {
		f.failNext--
	}
	f.mu.Unlock()
	if fail {
		return status.Error(codes.Unavailable, "connection reset (fake)")
	}
	return nil
}

func (f *fakeFS) GetStatus(ctx context.Context, r *api.GetStatusRequest) (*api.GetStatusResponse, error) {
	if err := f.serve(ctx, "stat", &f.stats); err != nil {
		return nil, err
	}
	return &api.GetStatusResponse{Info: &api.FileInfo{Path: r.GetPath(), Owner: f.addr}}, nil
}

func (f *fakeFS) CreateFile(ctx context.Context, r *api.CreateFileRequest) (*api.CreateFileResponse, error) {
	if err := f.serve(ctx, "create", &f.creates); err != nil {
		return nil, err
	}
	return &api.CreateFileResponse{Info: &api.FileInfo{Path: r.GetPath(), Owner: f.addr}}, nil
}

func (f *fakeFS) SetAttribute(ctx context.Context, r *api.SetAttributeRequest) (*api.SetAttributeResponse, error) {
	if err := f.serve(ctx, "setattr", &f.setattrs); err != nil {
		return nil, err
	}
	return &api.SetAttributeResponse{Info: &api.FileInfo{Path: r.GetPath(), Owner: f.addr}}, nil
}

func testOptions() Options {
	return Options{Retries: 3, ElectionWait: 10 * time.Second, CallTimeout: 5 * time.Second}
}

func newTestFSMaster(t *testing.T, o Options, addrs ...string) *FSMaster {
	t.Helper()
	m, err := NewFSMaster(addrs, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// servedBy stats path and returns which member answered.
func servedBy(t *testing.T, m *FSMaster) string {
	t.Helper()
	resp, err := m.FS().GetStatus(context.Background(), &api.GetStatusRequest{Path: "/x"})
	if err != nil {
		t.Fatalf("stat: %v", err)
	}
	return resp.GetInfo().GetOwner()
}

// A client given every member finds the leader with GetLeader, follows a
// member's redirect when leadership moves, and finds the new leader again
// when the one it used goes down.
func TestFSMasterFollowsLeaderAcrossChanges(t *testing.T) {
	a, b, c := startFakeFS(t, rpc.ServerOptions{}), startFakeFS(t, rpc.ServerOptions{}), startFakeFS(t, rpc.ServerOptions{})
	all := []*fakeFS{a, b, c}
	lead := func(l *fakeFS) {
		for _, f := range all {
			f.setLeader(l.addr)
		}
	}
	lead(a)
	// Listed with the leader last: discovery, not the order, finds it.
	m := newTestFSMaster(t, testOptions(), c.addr+","+b.addr, a.addr)
	if got := servedBy(t, m); got != a.addr {
		t.Fatalf("served by %s, want the leader %s", got, a.addr)
	}

	// Leadership moves to b: a's refusal names b, the call goes there.
	lead(b)
	if got := servedBy(t, m); got != b.addr {
		t.Fatalf("after the move: served by %s, want %s", got, b.addr)
	}
	if n := a.stats.Load(); n != 1 {
		t.Fatalf("a executed %d stats, want 1 (the refused one must not run)", n)
	}

	// b dies and c takes over: the client finds c by asking again.
	b.srv.Stop()
	lead(c)
	before := a.lookups.Load() + c.lookups.Load()
	if got := servedBy(t, m); got != c.addr {
		t.Fatalf("after b died: served by %s, want %s", got, c.addr)
	}
	if a.lookups.Load()+c.lookups.Load() == before {
		t.Fatal("the new leader was found without asking GetLeader")
	}
	if l, err := m.Leader(context.Background()); err != nil || l != c.addr {
		t.Fatalf("Leader = %q, %v; want %s", l, err, c.addr)
	}
}

// A member that is asked but does not lead refuses with the leader's
// address in the trailer; the call — a mutation too — is then executed
// once, by the leader.
func TestFSMasterFollowsAFollowersRedirect(t *testing.T) {
	leader, follower := startFakeFS(t, rpc.ServerOptions{}), startFakeFS(t, rpc.ServerOptions{})
	leader.setLeader(leader.addr)
	// The follower still believes it leads when asked, but refuses calls:
	// only the redirect can bring the client to the leader.
	follower.setLeader(follower.addr)
	follower.mu.Lock()
	follower.refuseTo = leader.addr
	follower.mu.Unlock()

	m := newTestFSMaster(t, Options{Retries: 0, ElectionWait: 10 * time.Second}, follower.addr)
	resp, err := m.FS().CreateFile(context.Background(), &api.CreateFileRequest{Path: "/new"})
	if err != nil {
		t.Fatalf("create through a follower: %v", err)
	}
	if resp.GetInfo().GetOwner() != leader.addr {
		t.Fatalf("created by %s, want the leader %s", resp.GetInfo().GetOwner(), leader.addr)
	}
	if n, f := leader.creates.Load(), follower.creates.Load(); n != 1 || f != 0 {
		t.Fatalf("creates: leader %d, follower %d; want 1 and 0", n, f)
	}
	// The redirect is remembered: the next call goes straight there.
	if got := servedBy(t, m); got != leader.addr {
		t.Fatalf("next call served by %s", got)
	}

	// A follower that knows no leader: the call waits and is not run.
	lonely := startFakeFS(t, rpc.ServerOptions{})
	m2 := newTestFSMaster(t, Options{ElectionWait: 300 * time.Millisecond}, lonely.addr)
	_, err = m2.FS().CreateFile(context.Background(), &api.CreateFileRequest{Path: "/new"})
	if status.Code(err) != codes.Unavailable || lonely.creates.Load() != 0 {
		t.Fatalf("with no leader: err %v, creates %d; want Unavailable and none", err, lonely.creates.Load())
	}
}

// A call lost to a connection failure (it may have run) is sent again only
// when it is idempotent: reads, and calls the caller marks.
func TestFSMasterRetriesOnlyIdempotentCalls(t *testing.T) {
	f := startFakeFS(t, rpc.ServerOptions{})
	f.setLeader(f.addr)
	m := newTestFSMaster(t, testOptions(), f.addr)
	ctx := context.Background()
	fail := func(n int) { f.mu.Lock(); f.failNext = n; f.mu.Unlock() }

	fail(1)
	if _, err := m.FS().GetStatus(ctx, &api.GetStatusRequest{Path: "/x"}); err != nil {
		t.Fatalf("stat after one lost answer: %v", err)
	}
	if n := f.stats.Load(); n != 2 {
		t.Fatalf("stat ran %d times, want 2 (retried once)", n)
	}

	fail(1)
	_, err := m.FS().CreateFile(ctx, &api.CreateFileRequest{Path: "/y"})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("create after a lost answer: %v, want Unavailable", err)
	}
	if n := f.creates.Load(); n != 1 {
		t.Fatalf("create ran %d times, want 1 (never resent)", n)
	}

	fail(1)
	if _, err := m.FS().SetAttribute(Idempotent(ctx), &api.SetAttributeRequest{Path: "/y"}); err != nil {
		t.Fatalf("setattr marked idempotent: %v", err)
	}
	if n := f.setattrs.Load(); n != 2 {
		t.Fatalf("setattr ran %d times, want 2", n)
	}

	// Retries bounds the resends.
	fail(10)
	before := f.stats.Load()
	if _, err := m.FS().GetStatus(ctx, &api.GetStatusRequest{Path: "/x"}); status.Code(err) != codes.Unavailable {
		t.Fatalf("stat failing for good: %v", err)
	}
	if n := f.stats.Load() - before; n != 4 {
		t.Fatalf("stat ran %d times, want 1 + 3 retries", n)
	}
}

// A wrong token is refused by the server's authentication and never sent
// again, by either client: asking again cannot make it right.
func TestWrongTokenIsNeverRetried(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	so := rpc.ServerOptions{Token: "right", Logger: zap.New(core)}
	fs := startFakeFS(t, so)
	fs.setLeader(fs.addr)
	jm := startFakeJM(t, so)
	jm.setLeader(jm.addr)
	refused := func() int { return logs.FilterMessage("call refused").Len() }

	o := testOptions()
	o.Auth = rpc.ClientOptions{Token: "wrong"}
	m := newTestFSMaster(t, o, fs.addr)
	_, err := m.FS().GetStatus(context.Background(), &api.GetStatusRequest{Path: "/x"})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("FS master with a wrong token: %v, want Unauthenticated", err)
	}
	if n := refused(); n != 1 {
		t.Fatalf("the FS master refused %d calls, want 1 (no retry)", n)
	}

	j, err := NewJobMaster([]string{jm.addr}, o)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if _, err := j.SubmitJob(context.Background(), &api.SubmitJobRequest{Plan: "load", RequestId: "r"}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("job master with a wrong token: %v, want Unauthenticated", err)
	}
	if n := refused(); n != 2 {
		t.Fatalf("%d calls refused in all, want 2 (no retry)", n)
	}
	if fs.stats.Load()+jm.submits.Load() != 0 {
		t.Fatal("a call with a wrong token ran")
	}
}

// fakeJM is a job master in a raft group, as fakeFS.
type fakeJM struct {
	api.UnimplementedJobMasterServer
	addr string
	srv  *grpc.Server

	mu     sync.Mutex
	leader string

	submits atomic.Int32
	ids     sync.Map // request id → job id
	runs    atomic.Int32
}

// RunPolicyNow launches a run and then loses its answer (a plain
// Unavailable, as a connection reset after the call ran).
func (f *fakeJM) RunPolicyNow(context.Context, *api.RunPolicyNowRequest) (*api.RunPolicyNowResponse, error) {
	f.runs.Add(1)
	return nil, status.Error(codes.Unavailable, "connection reset (fake)")
}

// A run-now whose answer is lost may have launched its run: it is not
// sent again (the policy would fire twice), while a submit, which carries
// a request id, is.
func TestJobMasterDoesNotResendRunPolicyNow(t *testing.T) {
	a := startFakeJM(t, rpc.ServerOptions{})
	a.setLeader(a.addr)
	j, err := NewJobMaster([]string{a.addr}, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if _, err := j.RunPolicyNow(context.Background(), &api.RunPolicyNowRequest{Name: "nightly"}); status.Code(err) != codes.Unavailable {
		t.Fatalf("run-now with its answer lost: %v, want Unavailable", err)
	}
	if n := a.runs.Load(); n != 1 {
		t.Fatalf("run-now sent %d times, want 1", n)
	}
}

func startFakeJM(t *testing.T, so rpc.ServerOptions) *fakeJM {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeJM{addr: ln.Addr().String(), srv: rpc.NewServer(so)}
	api.RegisterJobMasterServer(f.srv, f)
	go func() { _ = f.srv.Serve(ln) }()
	t.Cleanup(f.srv.Stop)
	return f
}

func (f *fakeJM) setLeader(l string) { f.mu.Lock(); f.leader = l; f.mu.Unlock() }

func (f *fakeJM) GetLeader(context.Context, *api.GetLeaderRequest) (*api.GetLeaderResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &api.GetLeaderResponse{NodeId: f.addr, LeaderId: f.leader, LeaderRpcAddress: f.leader}, nil
}

func (f *fakeJM) SubmitJob(_ context.Context, r *api.SubmitJobRequest) (*api.SubmitJobResponse, error) {
	f.mu.Lock()
	lead := f.leader == f.addr
	f.mu.Unlock()
	if !lead {
		return nil, status.Error(codes.Unavailable, "not the leader (fake)")
	}
	f.submits.Add(1)
	id, _ := f.ids.LoadOrStore(r.GetRequestId(), int64(f.submits.Load()))
	return &api.SubmitJobResponse{JobId: id.(int64)}, nil
}

// A job-master call is retried while the group elects a new leader, and
// reaches it once it is known.
func TestJobMasterWaitsOutAnElection(t *testing.T) {
	a, b := startFakeJM(t, rpc.ServerOptions{}), startFakeJM(t, rpc.ServerOptions{})
	a.setLeader(a.addr)
	b.setLeader(a.addr)
	j, err := NewJobMaster([]string{b.addr, a.addr}, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	ctx := context.Background()
	if _, err := j.SubmitJob(ctx, &api.SubmitJobRequest{Plan: "load", RequestId: "1"}); err != nil {
		t.Fatal(err)
	}
	if a.submits.Load() != 1 {
		t.Fatalf("a took %d submits, want 1", a.submits.Load())
	}
	gone := j.Gone(a.addr)

	// a dies; b knows no leader until it wins the election.
	a.srv.Stop()
	b.setLeader("")
	elected := make(chan struct{})
	go func() {
		defer close(elected)
		for b.submits.Load() == 0 && j.current() != "" {
			time.Sleep(10 * time.Millisecond)
		}
		b.setLeader(b.addr)
	}()
	if _, err := j.SubmitJob(ctx, &api.SubmitJobRequest{Plan: "load", RequestId: "2"}); err != nil {
		t.Fatalf("submit across the election: %v", err)
	}
	<-elected
	if b.submits.Load() != 1 {
		t.Fatalf("b took %d submits, want 1", b.submits.Load())
	}
	select {
	case <-gone:
	default:
		t.Fatal("Gone(a) was not closed when a stopped leading")
	}
	if c, addr, err := j.LeaderClient(ctx); err != nil || addr != b.addr || c == nil {
		t.Fatalf("LeaderClient = %q, %v; want %s", addr, err, b.addr)
	}
}
