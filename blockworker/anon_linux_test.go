package blockworker

import "testing"

// Unnamed block files are linked by descriptor (AT_EMPTY_PATH) where the
// process may, else through /proc/self/fd: the second way too.
func TestInvisibleUntilCommitLinkedThroughProc(t *testing.T) {
	was := noEmptyPathLink.Load()
	noEmptyPathLink.Store(true)
	defer noEmptyPathLink.Store(was)
	testInvisibleUntilCommit(t, false)
}
