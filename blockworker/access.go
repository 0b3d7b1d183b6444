package blockworker

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/rpc"
)

// accessChecker decides whether the user of a data call (a read, a block
// write, a write through to the UFS) may touch the file a block id names.
// A block id carries no path, so the worker asks the FS master — which owns
// modes and owners — and remembers the answer for a short time; the
// cluster's own processes (the system identity, for itself) are not asked
// about. Calls a job worker makes on behalf of a submitter are checked like
// the submitter's own, except the bulk RPCs, which are system-only and
// whose access the plan checked when it was submitted.
type accessChecker struct {
	bm  api.BlockMasterClient
	ttl time.Duration
	now func() time.Time

	mu    sync.Mutex
	cache map[accessKey]accessEntry
	sf    singleflight.Group
}

type accessKey struct {
	user  string
	file  int64
	write bool
}

type accessEntry struct {
	info    *api.FileInfo
	err     error
	expires time.Time
}

// maxAccessEntries bounds the cache; when full it starts over (answers are
// cheap to fetch again, and a bound matters more than a perfect eviction).
const maxAccessEntries = 1 << 16

// deniedTTL is how long a refusal is remembered: short, so a chmod that
// grants access takes effect almost at once.
const deniedTTL = time.Second

func newAccessChecker(bm api.BlockMasterClient, ttl time.Duration) *accessChecker {
	return &accessChecker{bm: bm, ttl: ttl, now: time.Now, cache: map[accessKey]accessEntry{}}
}

// check returns nil, nil when the call is the cluster's own, the file's
// status (no blocks) when the user may do what it asks, and a gRPC status
// error naming the block otherwise.
func (a *accessChecker) check(ctx context.Context, op string, blockID int64, write bool) (*api.FileInfo, error) {
	id, ok := rpc.IdentityFrom(ctx)
	if !ok || id.System {
		return nil, nil
	}
	k := accessKey{user: id.User, file: api.FileIDOfBlock(blockID), write: write}
	now := a.now()
	a.mu.Lock()
	e, hit := a.cache[k]
	a.mu.Unlock()
	if !hit || now.After(e.expires) {
		v, _, _ := a.sf.Do(fmt.Sprintf("%s\x00%d\x00%t", k.user, k.file, k.write), func() (any, error) {
			return a.ask(ctx, k), nil
		})
		e = v.(accessEntry)
	}
	if e.err != nil {
		st := status.Convert(e.err)
		return nil, status.Errorf(st.Code(), "%s block %d for user %s: %s", op, blockID, id.User, st.Message())
	}
	return e.info, nil
}

// ask fetches one answer from the FS master, acting for the user, and
// caches it unless it was a failure to ask (the master down, a timeout).
func (a *accessChecker) ask(ctx context.Context, k accessKey) accessEntry {
	actx, cancel := context.WithTimeout(rpc.ActAs(context.WithoutCancel(ctx), k.user), 10*time.Second)
	defer cancel()
	resp, err := a.bm.AuthorizeBlockAccess(actx, &api.AuthorizeBlockAccessRequest{FileId: k.file, Write: k.write})
	e := accessEntry{err: err}
	switch status.Code(err) {
	case codes.OK:
		e.info = resp.GetInfo()
		e.expires = a.now().Add(a.ttl)
	case codes.PermissionDenied, codes.NotFound, codes.FailedPrecondition:
		e.expires = a.now().Add(min(deniedTTL, a.ttl))
	default:
		return e // not remembered
	}
	if a.ttl > 0 {
		a.mu.Lock()
		if len(a.cache) >= maxAccessEntries {
			clear(a.cache)
		}
		a.cache[k] = e
		a.mu.Unlock()
	}
	return e
}

// sameUFSFile refuses a request whose UFS path is not the file's own: a
// user allowed to read file A must not name file B's UFS path.
func sameUFSFile(op string, blockID int64, info *api.FileInfo, mountID int64, uri string) error {
	if info == nil || info.GetUfsPath() == uri && info.GetMountId() == mountID {
		return nil
	}
	return status.Errorf(codes.PermissionDenied, "%s block %d: the UFS path %s is not that of file %s (%s)", op, blockID, uri, info.GetPath(), info.GetUfsPath())
}
