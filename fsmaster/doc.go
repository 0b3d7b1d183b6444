// Package fsmaster is the FS master: the in-memory namespace (inode tree,
// mount table, worker ids), the block map and worker registry, the gRPC
// services FileSystemMaster and BlockMaster, and the secondary checkpointer.
//
// Every namespace change is one or more journal entries (api.JournalEntry).
// State.Apply is the only code that changes the namespace, and it is used
// both for live calls and for replay, so a restarted master reaches exactly
// the state it had: a mutation takes the state lock, validates, builds its
// entries, applies them, appends them to the journal, releases the lock and
// only then waits for the fsync (so concurrent calls share one). Block
// locations are soft state: workers report them again after a restart.
//
// The journal itself (segments, group commit, checkpoints files) lives in
// fsmaster/journal; this package decides what goes into a checkpoint and
// reads it back, for the master and the secondary alike.
package fsmaster
