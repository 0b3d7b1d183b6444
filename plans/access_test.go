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

// statFS answers GetStatus with info or err and records the requests.
type statFS struct {
	accessFS
	info  *api.FileInfo
	err   error
	stats []*api.GetStatusRequest
}

func (s *statFS) GetStatus(_ context.Context, r *api.GetStatusRequest, _ ...grpc.CallOption) (*api.GetStatusResponse, error) {
	s.stats = append(s.stats, r)
	if s.err != nil {
		return nil, s.err
	}
	return &api.GetStatusResponse{Info: s.info}, nil
}

type statEnv struct {
	Env
	fs *statFS
}

func (e statEnv) FS() api.FileSystemMasterClient { return e.fs }

// A file's read check rides on its stat (one call); a directory's tree
// is checked recursively with CheckAccess after the stat; the errors name
// the plan and path as requireAccess's do.
func TestStatReadable(t *testing.T) {
	ctx := context.Background()
	file := &statFS{info: &api.FileInfo{Path: "/a"}}
	if _, err := statReadable(ctx, statEnv{fs: file}, "load", "/a"); err != nil {
		t.Fatal(err)
	}
	if len(file.stats) != 1 || file.stats[0].GetAccess() != accessRead || len(file.reqs) != 0 {
		t.Fatalf("file: stats %v (want one with access read), CheckAccess %v (want none)", file.stats, file.reqs)
	}
	dir := &statFS{info: &api.FileInfo{Path: "/d", Folder: true}}
	if _, err := statReadable(ctx, statEnv{fs: dir}, "load", "/d"); err != nil {
		t.Fatal(err)
	}
	if len(dir.reqs) != 1 || !dir.reqs[0].GetRecursive() || dir.reqs[0].GetBits() != accessRead {
		t.Fatalf("directory: CheckAccess %v, want one recursive read check", dir.reqs)
	}
	dir.accessFS.err = status.Error(codes.PermissionDenied, "access /d/x: permission denied")
	if _, err := statReadable(ctx, statEnv{fs: dir}, "load", "/d"); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("unreadable tree: %v", err)
	}
	for _, tc := range []struct {
		err  error
		want codes.Code
	}{
		{status.Error(codes.PermissionDenied, "open /a: permission denied: user alice needs read on /a"), codes.PermissionDenied},
		{status.Error(codes.NotFound, "no such file"), codes.NotFound},
		{status.Error(codes.Unavailable, "no leader"), codes.Unavailable},
	} {
		_, err := statReadable(ctx, statEnv{fs: &statFS{err: tc.err}}, "load", "/a")
		if status.Code(err) != tc.want || !strings.HasPrefix(status.Convert(err).Message(), "load /a: ") {
			t.Errorf("%v: %v, want %v starting with the plan and path", tc.err, err, tc.want)
		}
	}
}
