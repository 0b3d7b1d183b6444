package sdk

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/rpc"
)

// fakePolicies is a job master that keeps policies in a map, to check what
// the Policies calls send and how they read the answers. The real job
// master is exercised in tests/policy.
type fakePolicies struct {
	api.UnimplementedJobMasterServer
	addr string
	mu   sync.Mutex
	last *api.AddPolicyRequest
	ps   map[string]*api.PolicyInfo
}

func (f *fakePolicies) GetLeader(context.Context, *api.GetLeaderRequest) (*api.GetLeaderResponse, error) {
	return &api.GetLeaderResponse{LeaderId: "fake", LeaderRpcAddress: f.addr}, nil
}

func (f *fakePolicies) AddPolicy(_ context.Context, req *api.AddPolicyRequest) (*api.AddPolicyResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.last = req
	p := req.GetPolicy()
	if p.GetCron() == "bad" {
		return nil, status.Errorf(codes.InvalidArgument, "policy add %s: --cron \"bad\": expected 5 to 6 fields", p.GetName())
	}
	if _, ok := f.ps[p.GetName()]; ok {
		return nil, status.Errorf(codes.AlreadyExists, "policy add %s: a policy of that name exists", p.GetName())
	}
	p.Enabled = !req.GetPaused()
	f.ps[p.GetName()] = p
	return &api.AddPolicyResponse{Policy: p}, nil
}

func (f *fakePolicies) ListPolicies(context.Context, *api.ListPoliciesRequest) (*api.ListPoliciesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := &api.ListPoliciesResponse{}
	for _, p := range f.ps {
		r.Policies = append(r.Policies, p)
	}
	return r, nil
}

func (f *fakePolicies) SetPolicyEnabled(_ context.Context, req *api.SetPolicyEnabledRequest) (*api.SetPolicyEnabledResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.ps[req.GetName()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "policy pause %s: no such policy", req.GetName())
	}
	p.Enabled = req.GetEnabled()
	return &api.SetPolicyEnabledResponse{Policy: p}, nil
}

func (f *fakePolicies) RemovePolicy(_ context.Context, req *api.RemovePolicyRequest) (*api.RemovePolicyResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.ps[req.GetName()]; !ok {
		return nil, status.Errorf(codes.NotFound, "policy rm %s: no such policy", req.GetName())
	}
	delete(f.ps, req.GetName())
	return &api.RemovePolicyResponse{}, nil
}

func (f *fakePolicies) RunPolicyNow(_ context.Context, req *api.RunPolicyNowRequest) (*api.RunPolicyNowResponse, error) {
	return &api.RunPolicyNowResponse{JobId: 42}, nil
}

func TestPoliciesCalls(t *testing.T) {
	f := &fakePolicies{ps: map[string]*api.PolicyInfo{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = l.Addr().String()
	s := rpc.NewServer(rpc.ServerOptions{})
	api.RegisterJobMasterServer(s, f)
	go s.Serve(l)
	t.Cleanup(s.Stop)
	ctx := context.Background()
	c, err := Dial(ctx, WithMaster(l.Addr().String()), WithJobMasters(l.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ps, err := c.Policies()
	if err != nil {
		t.Fatal(err)
	}
	// Defaults: skip, catch up, enabled; the config is sent as JSON.
	p, err := ps.Add(ctx, PolicySpec{Name: "hot", Cron: "*/10 * * * * *", Plan: "load", Config: LoadConfig{Path: "/hot", Replication: 2}})
	if err != nil {
		t.Fatal(err)
	}
	got := f.last.GetPolicy()
	if got.GetOverlap() != "skip" || !got.GetCatchUp() || f.last.GetPaused() || got.GetConfigJson() != `{"path":"/hot","replication":2}` || !p.GetEnabled() {
		t.Fatalf("sent %v", f.last)
	}
	if _, err := ps.Add(ctx, PolicySpec{Name: "q", Cron: "@hourly", Plan: "persist", Config: `{"path":"/out"}`, Overlap: OverlapQueue, NoCatchUp: true, Paused: true}); err != nil {
		t.Fatal(err)
	}
	if got = f.last.GetPolicy(); got.GetOverlap() != "queue" || got.GetCatchUp() || !f.last.GetPaused() {
		t.Fatalf("sent %v", f.last)
	}
	// Errors keep the server's words and their kind.
	_, err = ps.Add(ctx, PolicySpec{Name: "b", Cron: "bad", Plan: "load", Config: "{}"})
	if !errors.Is(err, ErrInvalidArgument) || err.Error() != `policy add b: --cron "bad": expected 5 to 6 fields` {
		t.Fatalf("bad cron: %v", err)
	}
	if _, err := ps.Add(ctx, PolicySpec{Name: "hot", Cron: "@hourly", Plan: "load", Config: "{}"}); !errors.Is(err, ErrAlreadyExists) {
		t.Fatalf("duplicate: %v", err)
	}
	if _, err := ps.Add(ctx, PolicySpec{Name: "x", Cron: "@hourly", Plan: "load", Config: "{}", Overlap: OverlapPolicy(9)}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("bad overlap: %v", err)
	}
	if p, err := ps.Pause(ctx, "hot"); err != nil || p.GetEnabled() {
		t.Fatalf("pause: %v %v", p, err)
	}
	if p, err := ps.Resume(ctx, "hot"); err != nil || !p.GetEnabled() {
		t.Fatalf("resume: %v %v", p, err)
	}
	if id, err := ps.RunNow(ctx, "hot"); err != nil || id != 42 {
		t.Fatalf("run-now: %d %v", id, err)
	}
	if p, err := ps.Get(ctx, "hot"); err != nil || p.GetName() != "hot" {
		t.Fatalf("get: %v %v", p, err)
	}
	if err := ps.Remove(ctx, "hot"); err != nil {
		t.Fatal(err)
	}
	if _, err := ps.Get(ctx, "hot"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get removed: %v", err)
	}
	if err := ps.Remove(ctx, "hot"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("rm twice: %v", err)
	}
}
