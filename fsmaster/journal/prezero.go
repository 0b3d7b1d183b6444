package journal

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.etcd.io/bbolt"
	"go.uber.org/zap"
)

// Written ahead: the open segment's file is kept written with zeros (and
// fdatasynced) some way past the pages bbolt uses, so that a commit's
// pages land on blocks the file system has already allocated and
// recorded. A commit appends a page or two past bbolt's high-water mark;
// bbolt grows the file with ftruncate, so on ext4 (and most file
// systems) those pages land in a hole and the commit's fdatasync must
// also commit the block allocation to the file system's own journal — an
// extra journal write and cache flush in every commit. Over blocks
// already written, fdatasync writes the data pages only: 0.74-0.84 ms
// against 0.83-1.22 ms a commit of 31 entries (four interleaved runs of
// 1,500 commits each, same disk).
//
// It changes nothing bbolt reads: bbolt's own growth leaves zero pages
// (a hole) past its high-water mark too; the meta pages say which pages
// are in use, salvage takes only pages whose header names their own
// position, and zero pages never do. Old segments load as before, and an
// older master reads these. The zeros are written only past the file's
// end and only between commits, by the writer: bbolt writes nothing but
// inside a commit, and never past the end it grew the file to.
const (
	// zeroAheadMin: when fewer bytes than this are written ahead of
	// bbolt's high-water mark, the writer writes zeroChunk more. A commit
	// of MaxBatch entries of a few hundred bytes each fits in it many
	// times over; a bigger one makes bbolt grow the file itself, as it
	// would without this.
	zeroAheadMin = 2 << 20
	// zeroChunk is how much is written at once: one fdatasync of it every
	// ~25,000 small entries.
	zeroChunk = 4 << 20
)

// zeros is one chunk of them, shared (never written to).
var zeros = make([]byte, 1<<20)

// zeroAhead writes zeros past the end of the open segment's file if fewer
// than zeroAheadMin bytes lie between hwm (bbolt's high-water mark, in
// bytes) and that end, then syncs them. Called by the writer between
// commits only (or before the segment's first).
func (o *openSegment) zeroAhead(hwm int64) error {
	if o.zeroed-hwm >= zeroAheadMin {
		return nil
	}
	if o.zfile == nil {
		f, err := os.OpenFile(o.path, os.O_WRONLY, 0)
		if err != nil {
			return fmt.Errorf("open %s to write ahead: %w", o.path, err)
		}
		o.zfile = f
	}
	st, err := o.zfile.Stat()
	if err != nil {
		return fmt.Errorf("write ahead in %s: %w", o.path, err)
	}
	// Only past the end: everything before it may be bbolt's (it grows
	// the file itself once it outruns the zeros).
	off := max(o.zeroed, st.Size())
	end := max(off, hwm) + zeroChunk
	for off < end {
		n := min(int64(len(zeros)), end-off)
		if _, err := o.zfile.WriteAt(zeros[:n], off); err != nil {
			return fmt.Errorf("write ahead in %s: %w", o.path, err)
		}
		off += n
	}
	if err := o.zfile.Sync(); err != nil {
		return fmt.Errorf("write ahead in %s: %w", o.path, err)
	}
	o.zeroed = end
	return nil
}

// closeZeroer closes the file zeroAhead writes through.
func (o *openSegment) closeZeroer() {
	if o.zfile != nil {
		o.zfile.Close()
		o.zfile = nil
	}
}

// closeDB closes the segment's db and cuts its file back to the bytes
// bbolt uses, so that a closed segment is no bigger than its pages: the
// zeros this writer wrote ahead, and those a segment open at a crash kept
// (reopened, it may be closed before this writer writes ahead in it).
// Readers of the segment read no page past bbolt's high-water mark, so
// the cut takes nothing they use. It needs no sync: a crash before it is
// durable leaves the zeros, which nothing reads.
func (o *openSegment) closeDB() error {
	used := boltUsed(o.db)
	o.closeZeroer()
	if err := o.db.Close(); err != nil {
		return err
	}
	return cutPastPages(o.path, used)
}

// cutPastPages cuts the segment file at path back to used bytes (bbolt's
// high-water mark) when it is bigger; used <= 0 leaves it as it is.
func cutPastPages(path string, used int64) error {
	if fi, err := os.Stat(path); err == nil && used > 0 && fi.Size() > used {
		if err := os.Truncate(path, used); err != nil {
			return fmt.Errorf("cut the zeros written ahead off %s: %w", path, err)
		}
	}
	return nil
}

// cutClosedTail cuts the previous run's open segment, closed as it is by
// recoverTail, back to the pages bbolt uses: a crash left it with the
// zeros written ahead (and perhaps pages of a transaction in flight,
// past the high-water mark, which nothing reads either).
func cutClosedTail(path string) error {
	db, err := openBoltReadOnly(path)
	if err != nil {
		return err
	}
	used := boltUsed(db)
	if err := db.Close(); err != nil {
		return err
	}
	return cutPastPages(path, used)
}

// boltUsed is db's high-water mark in bytes (the pages bbolt reads), or -1
// when it cannot be read.
func boltUsed(db *bbolt.DB) int64 {
	used := int64(-1)
	if err := db.View(func(tx *bbolt.Tx) error { used = tx.Size(); return nil }); err != nil {
		return -1
	}
	return used
}

// spareName is the name a spare segment is prepared under: a temp file
// (tmpPrefix), so that Open removes one a crash left, and so that nothing
// takes it for a segment before it is renamed into one.
func spareName(logsDir string) string {
	return filepath.Join(logsDir, fmt.Sprintf("%sspare-%d.bolt", tmpPrefix, time.Now().UnixNano()))
}

// prepareSpare makes the next segment's file ahead of its rotation: a
// bbolt file with the entries bucket and zeros written ahead, synced,
// under a temp name; it hands it to the writer on j.spares (nil if it
// could not: the rotation then makes its file itself, as it always did).
// Rotating a full segment took a few ms with the writer stopped (a new
// bbolt file's two syncs and its first zeroChunk of zeros); with a spare
// it renames the file into place.
func (j *Journal) prepareSpare() {
	defer j.prepWG.Done()
	path := spareName(j.logsDir)
	o, err := prepareSegmentFile(path)
	if err != nil {
		j.log.Warn("journal: cannot prepare the next segment ahead; the rotation will make it", zap.String("file", path), zap.Error(err))
		_ = os.Remove(path)
		o = nil
	}
	j.spares <- o
}

// prepareSegmentFile creates the bbolt file of a segment at path, with
// its bucket and zeros written ahead, all synced.
func prepareSegmentFile(path string) (*openSegment, error) {
	db, err := bbolt.Open(path, 0o644, segmentOptions())
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucket(entriesBucket)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	o := &openSegment{path: path, db: db}
	if err := o.zeroAhead(0); err != nil {
		o.closeZeroer()
		db.Close()
		return nil, err
	}
	return o, nil
}

// useSpare makes the prepared spare, if one is ready, the open segment
// starting at first (writer only, segMu held): it is renamed into place
// and the dir synced. It reports whether it did; if not, the caller
// makes the segment itself.
func (j *Journal) useSpare(first int64) bool {
	if !j.preparing {
		return false
	}
	var o *openSegment
	select {
	case o = <-j.spares:
		j.preparing = false
	default:
		return false // still being prepared: it serves the next rotation
	}
	if o == nil {
		return false
	}
	path := filepath.Join(j.logsDir, openSegmentName(first))
	if err := os.Rename(o.path, path); err != nil {
		j.log.Warn("journal: cannot use the segment prepared ahead", zap.String("file", o.path), zap.Error(err))
		j.discardSpare(o)
		return false
	}
	o.path, o.first, o.last = path, first, first-1
	j.open = o
	if err := syncDir(j.logsDir); err != nil {
		// The segment is in place but its name may not be durable: a
		// crash before the next sync of the dir leaves the temp name,
		// which Open removes (it holds no entry until the next commit,
		// whose fsync does not cover the dir); make sure before taking
		// entries into it.
		j.log.Warn("journal: cannot sync the logs dir", zap.String("dir", j.logsDir), zap.Error(err))
		j.open = nil
		o.closeZeroer()
		o.db.Close()
		_ = os.Remove(path)
		return false
	}
	return true
}

// discardSpare closes and removes a spare segment file (nil: nothing).
func (j *Journal) discardSpare(o *openSegment) {
	if o == nil {
		return
	}
	o.closeZeroer()
	o.db.Close()
	_ = os.Remove(o.path)
}
