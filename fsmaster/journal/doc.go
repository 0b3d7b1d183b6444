// Package journal is the FS master's write-ahead journal and checkpoint
// store: every metadata change is one api.JournalEntry with a sequence
// number, made durable before the call that made it returns.
//
// # Layout
//
//	<dir>/FORMAT                   "alluvium journal 1" (written by Format, or by Open on an empty dir)
//	<dir>/LOCK                     flock'ed exclusively by the one Journal (master) writing the dir
//	<dir>/logs/<first>-open.bolt   the open segment, appended to
//	<dir>/logs/<first>-<last>.bolt closed segments: immutable
//	<dir>/checkpoints/<seq>.bolt   checkpoints: the state after entry <seq>
//
// Sequence numbers start at 1 and have no gaps. Segment names carry their
// first (and, once closed, last) sequence as 20-digit decimals, so that
// names sort in sequence order and a listing alone tells which entries
// exist; consecutive segments must be contiguous (a gap is an error, never
// skipped).
//
// # Segment format
//
// A segment is a bbolt database (page size 4096) with one bucket,
// "entries": key = sequence as 8 bytes big-endian, value = CRC32C
// (Castagnoli, 4 bytes big-endian) of the entry bytes followed by the
// deterministic protobuf encoding of the api.JournalEntry, whose own
// sequence field equals the key. DecodeEntry is the one decoder; it checks
// all of that, so an entry is self-checking wherever its bytes are found.
//
// The open segment is written with fsync on every commit (NoSync=false)
// and NoFreelistSync (each commit writes only the new leaf pages and the
// meta page; the freelist is rebuilt when a file is opened, and segments
// are never reopened for writing). Leaves are packed full (FillPercent 1)
// since keys only grow. The writer keeps the open segment's file written
// with zeros (and synced) a few MiB past the pages bbolt uses (prezero.go),
// so that a commit's new pages land on blocks the file system has already
// allocated and its fdatasync need not commit an allocation to the file
// system's own journal; bbolt reads no page past its high-water mark, and
// salvage takes only pages whose header names their own position, which
// a zero page never does. After SegmentEntries entries, or on Rotate, the
// segment is closed: its db is closed, the zeros past its high-water mark
// cut off, the file renamed to
// <first>-<last>.bolt, the dir fsynced, and <last+1>-open.bolt created:
// once the open segment is half full, a goroutine prepares its successor
// (bbolt file, bucket, zeros written ahead, all synced) under the temp
// name .tmp-spare-<n>.bolt, and the rotation renames that into place and
// fsyncs the dir again, rather than making the file with the writer
// stopped; a spare not ready yet serves the next rotation, Close removes
// an unused one, and Open removes one a crash left (a temp file).
// Close leaves the open segment as it is; the next Open closes it (cutting
// the zeros off it too, as after a crash). The
// open segment always exists, even empty, so its name keeps the next
// sequence after every closed segment was deleted.
//
// # Group commit
//
// Append assigns the next sequence under the journal's mutex and queues
// the encoded entry; one writer goroutine takes everything queued (up to
// MaxBatch, never crossing a segment end) and commits it in one bbolt
// transaction, i.e. one fsync (bbolt syncs the data pages, then the meta
// page), then releases every Pending in the batch. Callers that arrive
// while an fsync runs are carried by the next one. Before the next commit
// the writer yields (runtime.Gosched, a few times at most, only while the
// queue grows) so that the callers it just released can queue again:
// without that, closed-loop callers split into two alternating groups and
// each fsync carries half of them. After a commit that released many
// callers, or several batch callers (lingerTarget), it also waits on the
// clock, up to MaxLinger, for them (for three quarters of a batch
// caller's entries in flight); after one of a lone caller, never. Entries appended under a Hold (a
// batch call's, one Append each under the caller's lock) are committed
// only after its release, all in one commit; the release hands back the
// writer's wake-up, which the caller gives once its own lock is released
// (so the writer, not the lock's next waiter, is what runs next). A failed commit stops
// the journal for good: every later Append and Wait returns the error and
// the master must stop (its memory holds changes that are not durable).
//
// # Open and recovery
//
// Open takes the dir lock, then checks the segments: names contiguous;
// every segment but the newest maps safely and its first and last keys
// and key count are the ones its name gives (entry checksums are verified
// as Replay reads them; a bad one in a closed segment is an error naming
// the file and sequence). The newest segment — the tail — is read entry by
// entry. Before bbolt maps any file, its meta pages are read and checked
// (magic, version, checksum) and the meta bbolt would use must not point
// past the end of the file, which would make the mmap fault (SIGBUS). If
// bbolt cannot give the tail's entries (truncated file, bad meta, a fault
// while reading, which debug.SetPanicOnFault turns into an error), they
// are salvaged: the file's leaf pages are scanned for key/value pairs that
// pass DecodeEntry, and the longest run contiguous from the segment's
// first sequence is kept. That is sound because entries are immutable and
// self-checking, and each segment file is written by one run of the
// master only (so every copy of a sequence in it holds the same bytes).
// A torn or corrupt tail is cut after the last good entry — the good run
// is rewritten to a clean file (temp, fsync, rename, fsync dir) — with one
// warning "journal: cut the torn/corrupt tail of the journal" naming the
// segment and the last good sequence. Then the tail is closed as it is
// (renamed <first>-<last>.bolt) and a fresh <last+1>-open.bolt is
// started: a new run never appends to an old file, so stale pages of a
// transaction in flight at a crash can never pass for new entries. A
// crash between closing a segment and renaming it, or in the middle of a
// tail rewrite, is handled the same way on the next Open.
//
// Nothing acknowledged is lost by a crash without disk damage: Wait
// returns only after bbolt's commit (fsync of data and meta) returned,
// and bbolt's copy-on-write pages plus two meta pages keep the last
// committed transaction readable after a kill at any instant.
//
// # Checkpoints
//
// WriteCheckpoint writes <dir>/checkpoints/<seq>.bolt: the caller's
// buckets, plus, in the same bbolt transaction, the bucket
// "alluvium.checkpoint" holding the sequence, the number of key/value
// pairs and a CRC32C over every bucket name, key and value (each
// length-prefixed, in bbolt order). The file is written under a temp name
// (.tmp-<seq>-*.bolt) in the same dir, fsynced, renamed and the dir
// fsynced. LatestCheckpoint returns the newest file whose marker and
// checksum verify; temp files, files without the marker and damaged files
// are skipped with a log line. The master loads it and replays the entries
// after it. It deletes the closed segments that every retained checkpoint
// covers (RetainedCoverage), not just the newest: a newest checkpoint found
// damaged then falls back to the one before it, whose later entries are
// still in the segments.
//
// ReplayClosed is the secondary checkpointer's read-only view: closed
// segments only (the open one belongs to the master), no lock.
package journal
