package plans

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/paths"
)

// Access bits of requireAccess (a mode's rwx triple).
const (
	accessRead    = 4
	accessWrite   = 2
	accessExecute = 1
)

// requireAccess checks, at validation, that the job's user may access path
// as bits asks (recursive: every file and directory below too), so a job
// on something its submitter may not read or write is refused with
// PermissionDenied before any task runs. The job master calls Validate
// acting for the submitter; the FS master answers for that user. The
// tasks act for the submitter as well, so a permission changed later still
// stops them.
func requireAccess(ctx context.Context, env Env, op, path string, bits uint32, recursive bool) error {
	_, err := env.FS().CheckAccess(ctx, &api.CheckAccessRequest{Path: path, Bits: bits, Recursive: recursive})
	switch status.Code(err) {
	case codes.OK, codes.Unimplemented: // an FS master without permissions
		return nil
	case codes.PermissionDenied, codes.NotFound, codes.InvalidArgument, codes.ResourceExhausted:
		return status.Errorf(status.Code(err), "%s %s: %s", op, path, status.Convert(err).Message())
	}
	return status.Errorf(codes.Unavailable, "%s %s: check access: %s", op, path, status.Convert(err).Message())
}

// statReadable stats path for a plan that reads all of it (op names it)
// and checks, as requireAccess(accessRead, recursive) does, that the job's
// user may read all of it: for a file the stat checks read on it in the
// same call (GetStatusRequest.access, one round trip less per job); a
// directory's tree is checked with CheckAccess. The errors are those of a
// stat and of requireAccess.
func statReadable(ctx context.Context, env Env, op, path string) (*api.FileInfo, error) {
	resp, err := env.FS().GetStatus(ctx, &api.GetStatusRequest{Path: path, Access: accessRead})
	switch status.Code(err) {
	case codes.OK:
	case codes.NotFound:
		return nil, status.Errorf(codes.NotFound, "%s %s: no such file or directory", op, path)
	case codes.PermissionDenied:
		return nil, status.Errorf(codes.PermissionDenied, "%s %s: %s", op, path, status.Convert(err).Message())
	default:
		return nil, status.Errorf(status.Code(err), "%s %s: stat: %v", op, path, status.Convert(err).Message())
	}
	if resp.GetInfo().GetFolder() {
		if err := requireAccess(ctx, env, op, path, accessRead, true); err != nil {
			return nil, err
		}
	}
	return resp.GetInfo(), nil
}

// requireParentWrite checks that the job's user may add and remove entries
// in the directory holding path (write+execute).
func requireParentWrite(ctx context.Context, env Env, op, path string) error {
	parent, _ := paths.Split(path)
	if parent == "" {
		return nil
	}
	return requireAccess(ctx, env, op, parent, accessWrite|accessExecute, false)
}
