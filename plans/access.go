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

// requireParentWrite checks that the job's user may add and remove entries
// in the directory holding path (write+execute).
func requireParentWrite(ctx context.Context, env Env, op, path string) error {
	parent, _ := paths.Split(path)
	if parent == "" {
		return nil
	}
	return requireAccess(ctx, env, op, parent, accessWrite|accessExecute, false)
}
