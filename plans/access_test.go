package plans

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
)

// CheckAccess of the fake cluster: everything is allowed.
func (f fakeFS) CheckAccess(context.Context, *api.CheckAccessRequest, ...grpc.CallOption) (*api.CheckAccessResponse, error) {
	return &api.CheckAccessResponse{}, nil
}

// accessFS answers CheckAccess with err and records the request.
type accessFS struct {
	api.FileSystemMasterClient
	err  error
	reqs []*api.CheckAccessRequest
}

func (a *accessFS) CheckAccess(_ context.Context, r *api.CheckAccessRequest, _ ...grpc.CallOption) (*api.CheckAccessResponse, error) {
	a.reqs = append(a.reqs, r)
	return &api.CheckAccessResponse{}, a.err
}

type accessEnv struct {
	Env
	fs *accessFS
}

func (e accessEnv) FS() api.FileSystemMasterClient { return e.fs }

func TestRequireAccess(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want codes.Code
	}{
		{nil, codes.OK},
		{status.Error(codes.Unimplemented, "old master"), codes.OK},
		{status.Error(codes.PermissionDenied, "access /a: permission denied: user alice needs read on /a"), codes.PermissionDenied},
		{status.Error(codes.NotFound, "no such file"), codes.NotFound},
		{status.Error(codes.Internal, "boom"), codes.Unavailable},
	} {
		fs := &accessFS{err: tc.err}
		err := requireAccess(context.Background(), accessEnv{fs: fs}, "load", "/a", accessRead, true)
		if status.Code(err) != tc.want {
			t.Errorf("%v: %v, want %v", tc.err, err, tc.want)
		}
		if err != nil && !strings.HasPrefix(status.Convert(err).Message(), "load /a: ") {
			t.Errorf("error %q does not start with the plan and path", err)
		}
		if len(fs.reqs) != 1 || fs.reqs[0].GetBits() != accessRead || !fs.reqs[0].GetRecursive() || fs.reqs[0].GetPath() != "/a" {
			t.Errorf("request %v", fs.reqs)
		}
	}
	fs := &accessFS{}
	if err := requireParentWrite(context.Background(), accessEnv{fs: fs}, "move", "/a/b"); err != nil {
		t.Fatal(err)
	}
	if fs.reqs[0].GetPath() != "/a" || fs.reqs[0].GetBits() != accessWrite|accessExecute || fs.reqs[0].GetRecursive() {
		t.Errorf("parent check %v", fs.reqs[0])
	}
}
