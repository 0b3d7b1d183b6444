package fsmaster

import "google.golang.org/grpc/codes"

// checkReplaces applies CompleteFileRequest.if_replaces to completing n at
// p: compare what completing it would replace there now with what the
// caller saw (S3's conditional writes: If-Match, If-None-Match). Call with
// ns.mu held.
func (ns *namespace) checkReplaces(op, p string, n *inode, want int64) error {
	if want == 0 {
		return nil
	}
	cur := ns.st.lookup(p) // what completing n replaces
	if cur == n {
		cur = nil // n itself is at the path: it replaces nothing
	}
	switch {
	case want < 0 && cur != nil:
		return errf(codes.FailedPrecondition, op, p, "the condition does not hold: inode %d is there (the write asked for nothing there)", cur.id)
	case want > 0 && cur == nil:
		return errf(codes.FailedPrecondition, op, p, "the condition does not hold: nothing is there (the write asked to replace file %d)", want)
	case want > 0 && cur.id != want:
		return errf(codes.FailedPrecondition, op, p, "the condition does not hold: inode %d is there (the write asked to replace file %d)", cur.id, want)
	}
	return nil
}
