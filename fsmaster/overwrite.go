package fsmaster

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/ufs"
)

// An overwrite (CreateFile with overwrite) is written aside: a file inode
// that knows its directory and name but is in no directory's children, so
// the path keeps showing the old file (or nothing) while the new bytes are
// written. CompleteFile swaps it in with one journal entry, replacing
// whatever file is at the name then — the last overwrite to complete wins —
// and, when the new bytes went to the UFS, renames their temporary UFS file
// onto the path first. An abandoned overwrite (the writer aborted, failed
// or vanished) never touched the old file; Delete with its file_id drops it.

// asideUFSRel is where the UFS bytes of the file id, written aside to
// replace rel, go until it completes: beside rel, under a name listings
// hide.
func asideUFSRel(rel string, id int64) string {
	name := ufs.TempName(fmt.Sprintf("overwrite-%d", id))
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		return rel[:i+1] + name
	}
	return name
}

// aside returns the file id being written aside to replace p, or nil.
// Call with ns.mu held.
func (ns *namespace) aside(p string, id int64) *inode {
	if id == 0 {
		return nil
	}
	a := ns.st.asides[id]
	if a == nil || ns.st.pathOf(a) != p {
		return nil
	}
	return a
}

// completeAsideLocked completes the file n written aside to replace p:
// its UFS bytes (if any) are renamed onto p's UFS path — or, when the new
// file has none there, the old file's UFS copy is removed so the path never
// shows stale bytes — and one entry links it in place of the file at p.
// Call with ns.mu held (write); the caller has checked the request.
func (ns *namespace) completeAsideLocked(ctx context.Context, p string, n *inode, req *api.CompleteFileRequest) (*txn, error) {
	const op = "complete"
	old := n.parent.child(n.name)
	if old != nil && old.dir() {
		return nil, errf(codes.FailedPrecondition, op, p, "a directory was created there while file %d was written", n.id)
	}
	if err := ns.readOnly(op, p); err != nil {
		return nil, err
	}
	fp := req.GetUfsFingerprint()
	// ufsBytes: the new bytes are in the UFS file beside the path — written
	// whole (a fingerprint), or a multipart upload's parts written there in
	// place (checked by checkUploadComplete).
	ufsBytes := fp != "" || req.GetUfsInPlace()
	if ufsBytes || old != nil && old.persisted() {
		m, rel := ns.st.mountOf(p)
		if m == nil || rel == "" {
			return nil, errf(codes.FailedPrecondition, op, p, "no mount holds it")
		}
		fs, err := ns.fsFor(ctx, m)
		if err != nil {
			return nil, err
		}
		if ufsBytes {
			tmp := asideUFSRel(rel, n.id)
			if req.GetUfsInPlace() {
				// The parts fill the file's first length bytes; a part
				// written in place but not named may have left more.
				rw, ok := fs.(ufs.RegionWriter)
				if !ok {
					return nil, errf(codes.FailedPrecondition, op, p, "the UFS of %s cannot hold parts in place", m.GetAlluviumPath())
				}
				if err := rw.Truncate(ctx, tmp, req.GetLength()); err != nil {
					return nil, ufsErr(op, p, err)
				}
			}
			st, err := fs.Stat(ctx, tmp)
			if err != nil {
				return nil, ufsErr(op, p, err)
			}
			if st.IsDir || st.Size != req.GetLength() {
				return nil, errf(codes.FailedPrecondition, op, p, "the UFS copy %s has %d bytes, the file %d", tmp, st.Size, req.GetLength())
			}
			if err := ufs.Replace(ctx, fs, tmp, rel); err != nil {
				return nil, ufsErr(op, p, err)
			}
			// A copy (S3) may change what the fingerprint is made of.
			if st, err = fs.Stat(ctx, rel); err != nil {
				return nil, ufsErr(op, p, err)
			}
			fp = st.Fingerprint
		} else if err := fs.Delete(ctx, rel); err != nil && !errors.Is(err, ufs.ErrNotFound) {
			// The new bytes are cached only (MUST_CACHE, or ASYNC_THROUGH
			// until persisted): the old UFS copy must not show through.
			return nil, ufsErr(op, p, err)
		}
	}
	var replaces int64
	if old != nil {
		replaces = old.id
	}
	t := ns.begin()
	if err := t.add(&api.JournalEntry{Body: &api.JournalEntry_CompleteFile{CompleteFile: &api.CompleteFileEntry{
		Id: n.id, Length: req.GetLength(), UfsFingerprint: fp, ReplacesId: replaces, Xattrs: req.GetXattrs(),
		Parts: partNumbers(req.GetParts()), LastModificationTimeMs: req.GetLastModificationTimeMs(),
	}}}); err != nil {
		return nil, err
	}
	if old != nil {
		ns.blocks.removeFiles([]int64{old.id})
	}
	return t, nil
}

// dropAsideLocked removes the file a written aside to replace p (Delete
// with its file_id: the writer gave up), its temporary UFS bytes with it.
// The file at p is not touched. Call with ns.mu held (write).
func (ns *namespace) dropAsideLocked(ctx context.Context, p string, a *inode) (*txn, error) {
	const op = "delete"
	pr := ns.caller(ctx)
	if err := ns.traverse(op, p, pr, a); err != nil {
		return nil, err
	}
	if ns.st.owner(a) != pr.user && !ns.may(pr, a, permW) {
		return nil, ns.denied(op, p, pr, a, permW)
	}
	if ns.st.upload(a) != nil && ns.st.owner(a) != pr.user && !pr.super {
		// A multipart upload is its initiator's alone to abort.
		return nil, errf(codes.PermissionDenied, op, p, "permission denied: multipart upload %d belongs to another user, not %s", a.id, pr.user)
	}
	if m, rel := ns.st.mountOf(p); m != nil && rel != "" {
		if fs, err := ns.fsFor(ctx, m); err == nil {
			tmp := asideUFSRel(rel, a.id)
			if err := fs.Delete(ctx, tmp); err != nil && !errors.Is(err, ufs.ErrNotFound) {
				// Best effort: a leftover is hidden from listings by its name.
				ns.log.Warn("could not remove the UFS bytes of an abandoned overwrite", zap.String("path", p), zap.String("ufs", tmp), zap.Error(err))
			}
		}
	}
	t := ns.begin()
	if err := t.add(deleteEntry(a.id)); err != nil {
		return nil, err
	}
	ns.blocks.removeFiles([]int64{a.id})
	return t, nil
}
