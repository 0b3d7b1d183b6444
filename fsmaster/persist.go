package fsmaster

import (
	"context"
	"errors"
	"strings"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/ufs"
)

// ufsRel returns uri relative to a mount's UFS root, when it is below it.
func ufsRel(root, uri string) (string, bool) {
	root = strings.TrimRight(root, "/")
	switch {
	case uri == root || uri == root+"/":
		return "", true
	case strings.HasPrefix(uri, root+"/"):
		return uri[len(root)+1:], true
	}
	return "", false
}

// dropPersistTemp removes the temporary UFS file of a persist that cannot
// be committed (the file it was for is gone). Best effort: a leftover is
// hidden from listings by its name. Call with ns.mu held.
func (ns *namespace) dropPersistTemp(ctx context.Context, p, tempURI string) {
	m, _ := ns.st.mountOf(p)
	if m == nil {
		return
	}
	rel, ok := ufsRel(m.GetUfsUri(), tempURI)
	if !ok || rel == "" || !ufs.IsTemp(baseName(rel)) {
		return // only ever our own temporary names
	}
	fs, err := ns.fsFor(ctx, m)
	if err != nil {
		return
	}
	if err := fs.Delete(ctx, rel); err != nil && !errors.Is(err, ufs.ErrNotFound) {
		ns.log.Warn("persist: could not remove the temporary UFS file", zap.String("ufs", tempURI), zap.Error(err))
	}
}

func baseName(rel string) string {
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		return rel[i+1:]
	}
	return rel
}

// commitPersistLocked finishes a persist: the bytes a job wrote to a
// temporary UFS name in the file's mount are renamed onto the file's UFS
// path and the file recorded PERSISTED with the fingerprint the UFS then
// reports. Doing it under the namespace lock orders it with deletes,
// renames and re-creates of the path: either the persist lands on the file
// it was for, or it is dropped. Call with ns.mu held (write).
func (ns *namespace) commitPersistLocked(ctx context.Context, p string, n *inode, req *api.SetAttributeRequest) (*api.FileInfo, *txn, error) {
	const op = "persist"
	from := req.GetPersistFrom()
	fail := func(c codes.Code, format string, a ...any) (*api.FileInfo, *txn, error) {
		ns.dropPersistTemp(ctx, p, from)
		return nil, nil, errf(c, op, p, format, a...)
	}
	switch {
	case req.GetPersistenceState() != api.PersistenceState_PERSISTED:
		return fail(codes.InvalidArgument, "persist_from needs persistence state PERSISTED")
	case req.GetRecursive():
		return fail(codes.InvalidArgument, "persist_from is for one file, not recursive")
	case n.dir():
		return fail(codes.InvalidArgument, "is a directory")
	case !n.completed():
		return fail(codes.FailedPrecondition, "file %d is still being written", n.id)
	}
	if err := ns.usable(); err != nil {
		return nil, nil, err
	}
	if n.persisted() {
		// An earlier attempt got there: nothing to do but tidy up.
		ns.dropPersistTemp(ctx, p, from)
		return ns.info(n, p, false), nil, nil
	}
	if err := ns.readOnly(op, p); err != nil {
		ns.dropPersistTemp(ctx, p, from)
		return nil, nil, err
	}
	m, rel := ns.st.mountOf(p)
	if m == nil || rel == "" {
		return fail(codes.InvalidArgument, "no mount holds it")
	}
	tmp, ok := ufsRel(m.GetUfsUri(), from)
	if !ok || tmp == "" {
		return fail(codes.InvalidArgument, "persist_from %s is not in the file's mount %s", from, m.GetUfsUri())
	}
	fs, err := ns.fsFor(ctx, m)
	if err != nil {
		return nil, nil, err
	}
	st, err := fs.Stat(ctx, tmp)
	if err != nil {
		return nil, nil, ufsErr(op, p, err)
	}
	if st.IsDir || st.Size != n.length {
		return fail(codes.FailedPrecondition, "the persisted copy %s has %d bytes, the file %d", from, st.Size, n.length)
	}
	if tmp != rel {
		// Whatever is at the UFS path is not this file's (it is not
		// persisted): a leftover of an earlier attempt, or stale.
		if err := fs.Delete(ctx, rel); err != nil && !errors.Is(err, ufs.ErrNotFound) {
			return nil, nil, ufsErr(op, p, err)
		}
		if err := fs.Rename(ctx, tmp, rel); err != nil {
			return nil, nil, ufsErr(op, p, err)
		}
		if st, err = fs.Stat(ctx, rel); err != nil {
			return nil, nil, ufsErr(op, p, err)
		}
	}
	persisted := api.PersistenceState_PERSISTED
	fp := st.Fingerprint
	t := ns.begin()
	if err := t.add(setAttrEntry(&api.SetAttributeEntry{Id: n.id, PersistenceState: &persisted, UfsFingerprint: &fp})); err != nil {
		return nil, nil, err
	}
	ns.blocks.reconcile([]int64{n.id}) // in the UFS now: its copies may go
	return ns.info(n, p, false), t, nil
}
