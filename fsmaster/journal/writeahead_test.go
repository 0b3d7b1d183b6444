package journal

import (
	"os"
	"path/filepath"
	"testing"
)

// boltSize is the high-water mark bbolt records in a segment file: the
// bytes it reads.
func boltSize(t *testing.T, path string) int64 {
	t.Helper()
	db, err := openBoltReadOnly(path)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer db.Close()
	return boltUsed(db)
}

// The open segment is kept written with zeros past bbolt's pages, a
// journal opened from that state (a crash while it was open) replays
// every entry and goes on appending, and a closed segment is cut back to
// the size bbolt uses.
func TestWriteAheadZerosSurviveACrashAndAreCutOnClose(t *testing.T) {
	dir := t.TempDir()
	j := openJournal(t, Options{Dir: dir, SegmentEntries: 1000})
	want := appendConcurrent(t, j, 4, 200)

	// The state a kill -9 leaves: the open segment with its zeros.
	crashed := t.TempDir()
	copyDir(t, dir, crashed)
	logs := logFiles(t, crashed)
	if len(logs) != 1 {
		t.Fatalf("log files %v, want one open segment", logs)
	}
	seg := filepath.Join(crashed, "logs", logs[0])
	fi, err := os.Stat(seg)
	if err != nil {
		t.Fatal(err)
	}
	// At least zeroAheadMin less a commit or two (written ahead again
	// between commits, once the next is done).
	if used := boltSize(t, seg); fi.Size()-used < zeroAheadMin/2 {
		t.Fatalf("open segment is %d bytes, bbolt uses %d: want at least %d written ahead", fi.Size(), used, zeroAheadMin/2)
	}
	j2 := openJournal(t, Options{Dir: crashed, SegmentEntries: 100})
	sameEntries(t, replayAll(t, j2, 0), want)
	more := appendConcurrent(t, j2, 4, 250) // rotates the segment it reopened, twice
	if err := j2.Close(); err != nil {
		t.Fatal(err)
	}

	// Every closed segment is as big as bbolt's pages, no bigger.
	for _, name := range logFiles(t, crashed) {
		p := filepath.Join(crashed, "logs", name)
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if used := boltSize(t, p); fi.Size() != used {
			t.Errorf("%s: %d bytes on disk, bbolt uses %d: the zeros written ahead were not cut", name, fi.Size(), used)
		}
	}
	j3 := openJournal(t, Options{Dir: crashed, SegmentEntries: 100})
	sameEntries(t, replayAll(t, j3, 0), append(want, more...))
}
