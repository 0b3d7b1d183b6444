package blockworker

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/rpc"
)

// fakeAuthMaster answers AuthorizeBlockAccess from a table and counts calls.
type fakeAuthMaster struct {
	api.BlockMasterClient
	calls  atomic.Int64
	answer func(user string, req *api.AuthorizeBlockAccessRequest) error
}

func (f *fakeAuthMaster) AuthorizeBlockAccess(ctx context.Context, req *api.AuthorizeBlockAccessRequest, _ ...grpc.CallOption) (*api.AuthorizeBlockAccessResponse, error) {
	f.calls.Add(1)
	var user string
	if md, ok := metadata.FromOutgoingContext(ctx); ok && len(md.Get(rpc.UserHeader)) > 0 {
		user = md.Get(rpc.UserHeader)[0]
	}
	if err := f.answer(user, req); err != nil {
		return nil, err
	}
	return &api.AuthorizeBlockAccessResponse{Info: &api.FileInfo{FileId: req.GetFileId(), UfsPath: "file:///u/f", MountId: 1}}, nil
}

func TestAccessCheckerCachesAndActsForTheUser(t *testing.T) {
	down := false
	f := &fakeAuthMaster{answer: func(user string, req *api.AuthorizeBlockAccessRequest) error {
		switch {
		case down:
			return status.Error(codes.Unavailable, "master down")
		case user == "alice":
			return nil
		default:
			return status.Errorf(codes.PermissionDenied, "user %s may not", user)
		}
	}}
	a := newAccessChecker(f, 10*time.Second)
	now := time.Unix(1000, 0)
	a.now = func() time.Time { return now }
	as := func(user string) context.Context {
		return rpc.WithIdentity(context.Background(), rpc.Identity{User: user})
	}
	block := api.BlockID(42, 3)

	// The cluster itself is never asked about.
	if info, err := a.check(rpc.WithIdentity(context.Background(), rpc.Identity{User: "alluvium", System: true}), "read", block, false); info != nil || err != nil || f.calls.Load() != 0 {
		t.Fatalf("system call: %v %v, %d master calls", info, err, f.calls.Load())
	}
	// alice is allowed, once asked; the answer is cached for the TTL.
	for range 3 {
		info, err := a.check(as("alice"), "read", block, false)
		if err != nil || info.GetFileId() != 42 {
			t.Fatalf("alice: %v %v", info, err)
		}
	}
	if n := f.calls.Load(); n != 1 {
		t.Fatalf("%d master calls for three reads, want 1", n)
	}
	// bob is refused, with the block and user named; the refusal is cached briefly.
	_, err := a.check(as("bob"), "read", block, false)
	if status.Code(err) != codes.PermissionDenied || !contains(err.Error(), "block", "bob") {
		t.Fatalf("bob: %v", err)
	}
	_, _ = a.check(as("bob"), "read", block, false)
	if n := f.calls.Load(); n != 2 {
		t.Fatalf("%d master calls, want 2", n)
	}
	now = now.Add(2 * time.Second) // past the refusal's TTL, within alice's
	_, _ = a.check(as("bob"), "read", block, false)
	_, _ = a.check(as("alice"), "read", block, false)
	if n := f.calls.Load(); n != 3 {
		t.Fatalf("%d master calls, want 3 (bob asked again, alice cached)", n)
	}
	// A master that cannot answer is not remembered.
	down = true
	now = now.Add(time.Minute)
	if _, err := a.check(as("alice"), "read", block, false); status.Code(err) != codes.Unavailable {
		t.Fatalf("master down: %v", err)
	}
	down = false
	if _, err := a.check(as("alice"), "read", block, false); err != nil {
		t.Fatalf("master back: %v", err)
	}
	// Read and write are separate questions.
	if _, err := a.check(as("alice"), "write", block, true); err != nil {
		t.Fatal(err)
	}
	if n := f.calls.Load(); n != 6 {
		t.Fatalf("%d master calls, want 6", n)
	}
}

func TestSameUFSFile(t *testing.T) {
	info := &api.FileInfo{Path: "/a", UfsPath: "file:///u/a", MountId: 1}
	if err := sameUFSFile("read", 1, info, 1, "file:///u/a"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		mount int64
		uri   string
	}{{1, "file:///u/b"}, {2, "file:///u/a"}, {1, "file:///u/a/../b"}} {
		if err := sameUFSFile("read", 1, info, c.mount, c.uri); status.Code(err) != codes.PermissionDenied {
			t.Errorf("mount %d %s: %v, want PermissionDenied", c.mount, c.uri, err)
		}
	}
	if err := sameUFSFile("read", 1, nil, 9, "s3://x"); err != nil {
		t.Fatalf("system call (no info): %v", err)
	}
}

func contains(s string, words ...string) bool {
	for _, w := range words {
		if !strings.Contains(s, w) {
			return false
		}
	}
	return true
}
