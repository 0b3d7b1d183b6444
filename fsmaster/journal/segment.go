package journal

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"time"

	"go.etcd.io/bbolt"

	"github.com/alluvium/alluvium/api"
)

const (
	logsDirName        = "logs"
	checkpointsDirName = "checkpoints"
	tmpPrefix          = ".tmp-"
)

// entriesBucket holds a segment's entries.
var entriesBucket = []byte("entries")

// SegmentInfo describes one segment file. For the open segment Last is the
// last durable sequence in it (First-1 while it is empty).
type SegmentInfo struct {
	Path   string
	First  int64
	Last   int64
	Closed bool
}

var (
	openName   = regexp.MustCompile(`^(\d{20})-open\.bolt$`)
	closedName = regexp.MustCompile(`^(\d{20})-(\d{20})\.bolt$`)
)

func openSegmentName(first int64) string { return fmt.Sprintf("%020d-open.bolt", first) }
func closedSegmentName(first, last int64) string {
	return fmt.Sprintf("%020d-%020d.bolt", first, last)
}

// parseSegmentName recognises segment file names.
func parseSegmentName(name string) (first, last int64, closed, ok bool) {
	if m := openName.FindStringSubmatch(name); m != nil {
		f, err := strconv.ParseInt(m[1], 10, 64)
		return f, f - 1, false, err == nil && f > 0
	}
	if m := closedName.FindStringSubmatch(name); m != nil {
		f, err1 := strconv.ParseInt(m[1], 10, 64)
		l, err2 := strconv.ParseInt(m[2], 10, 64)
		return f, l, true, err1 == nil && err2 == nil && f > 0 && l >= f
	}
	return 0, 0, false, false
}

// listSegments returns the segments in logsDir ordered by First. Of files
// sharing a First (left by a crash in the middle of a tail rewrite), a
// closed one wins over an open one and the shorter closed one wins over a
// longer one; the losers are returned in superseded. Other names are
// returned in other (temp files, strangers).
func listSegments(logsDir string) (segs []SegmentInfo, superseded []string, other []string, err error) {
	des, err := os.ReadDir(logsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil, nil
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("journal: list %s: %w", logsDir, err)
	}
	byFirst := map[int64]SegmentInfo{}
	for _, de := range des {
		first, last, closed, ok := parseSegmentName(de.Name())
		if !ok || de.IsDir() {
			other = append(other, filepath.Join(logsDir, de.Name()))
			continue
		}
		s := SegmentInfo{Path: filepath.Join(logsDir, de.Name()), First: first, Last: last, Closed: closed}
		if cur, dup := byFirst[first]; dup {
			if better(s, cur) {
				superseded = append(superseded, cur.Path)
				byFirst[first] = s
			} else {
				superseded = append(superseded, s.Path)
			}
			continue
		}
		byFirst[first] = s
	}
	for _, s := range byFirst {
		segs = append(segs, s)
	}
	sort.Slice(segs, func(a, b int) bool { return segs[a].First < segs[b].First })
	return segs, superseded, other, nil
}

func better(a, b SegmentInfo) bool {
	if a.Closed != b.Closed {
		return a.Closed
	}
	return a.Last < b.Last
}

// checkContiguous verifies that segments follow each other without gaps or
// overlaps; a gap means a lost file, never something to skip.
func checkContiguous(segs []SegmentInfo) error {
	for i := 1; i < len(segs); i++ {
		p, s := segs[i-1], segs[i]
		if !p.Closed {
			return fmt.Errorf("journal: open segment %s is followed by %s: only the newest segment may be open", p.Path, s.Path)
		}
		if s.First != p.Last+1 {
			return fmt.Errorf("journal: %w: segment %s ends at %d but the next one, %s, starts at %d: entries %d..%d are missing",
				ErrCorrupt, p.Path, p.Last, s.Path, s.First, p.Last+1, s.First-1)
		}
	}
	return nil
}

// segmentOptions are the bbolt options of a segment being written: fsync
// on every commit, no freelist on disk (it is rebuilt on open, and a
// segment is never reopened for writing, so each commit writes the new
// leaf pages and the meta page only).
func segmentOptions() *bbolt.Options {
	return &bbolt.Options{
		Timeout:        5 * time.Second,
		NoFreelistSync: true,
		FreelistType:   bbolt.FreelistMapType,
		PageSize:       segmentPageSize,
		NoSync:         false,
	}
}

func readOnlyOptions() *bbolt.Options {
	return &bbolt.Options{Timeout: 5 * time.Second, ReadOnly: true}
}

// openBoltReadOnly opens a bbolt file for reading after checking that its
// meta pages fit the file (see checkBoltFile).
func openBoltReadOnly(path string) (*bbolt.DB, error) {
	if err := checkBoltFile(path); err != nil {
		return nil, err
	}
	var db *bbolt.DB
	err := guarded(func() error {
		var err error
		db, err = bbolt.Open(path, 0o644, readOnlyOptions())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("journal: open %s: %w", path, err)
	}
	return db, nil
}

// readChunk decodes up to max entries of bucket entries in db, starting at
// sequence from and going no further than to. It returns the entries, all
// contiguous from from. A missing, out-of-order or undecodable entry
// stops the chunk with an error that names the file and sequence.
func readChunk(db *bbolt.DB, path string, from, to int64, max int) ([]*api.JournalEntry, error) {
	var out []*api.JournalEntry
	err := guarded(func() error {
		return db.View(func(tx *bbolt.Tx) error {
			b := tx.Bucket(entriesBucket)
			if b == nil {
				return fmt.Errorf("%w: segment %s has no %q bucket", ErrCorrupt, path, entriesBucket)
			}
			c := b.Cursor()
			next := from
			for k, v := c.Seek(seqKey(from)); next <= to && len(out) < max; k, v = c.Next() {
				if k == nil {
					return fmt.Errorf("%w: segment %s: entry %d is missing (segment ends)", ErrCorrupt, path, next)
				}
				e, err := DecodeEntry(k, v)
				if err != nil {
					return fmt.Errorf("segment %s: entry %d: %w", path, next, err)
				}
				if e.Sequence != next {
					return fmt.Errorf("%w: segment %s: entry %d is missing (found %d)", ErrCorrupt, path, next, e.Sequence)
				}
				out = append(out, e)
				next++
			}
			return nil
		})
	})
	if errors.Is(err, errFault) {
		err = fmt.Errorf("%w: segment %s: %v", ErrCorrupt, path, err)
	}
	return out, err
}

// replaySegmentFile calls fn for every entry of the closed segment s with
// sequence in [from, to], checking every entry.
func replaySegmentFile(ctx context.Context, s SegmentInfo, from, to int64, fn func(*api.JournalEntry) error) error {
	db, err := openBoltReadOnly(s.Path)
	if err != nil {
		return err
	}
	defer db.Close()
	for from <= to {
		if err := ctx.Err(); err != nil {
			return err
		}
		chunk, err := readChunk(db, s.Path, from, to, replayChunk)
		if err != nil {
			return err
		}
		for _, e := range chunk {
			if err := fn(e); err != nil {
				return err
			}
		}
		from += int64(len(chunk))
	}
	return nil
}

// replayChunk is how many entries are decoded per bbolt read transaction.
const replayChunk = 1024

// scanResult is what a full check of a segment found.
type scanResult struct {
	lastGood int64 // last entry of the contiguous valid run from First
	count    int64
	damage   error // why the run stopped before the end of the data (nil: clean)
	salvaged bool  // bbolt could not read it; entries come from salvage
	values   map[int64][]byte
}

// scanSegment reads every entry of segment s and finds the longest valid
// run from s.First (capped at capLast). It never fails on damage: damage
// is described in the result. When bbolt reads the file, the run ends at
// the first missing or corrupt entry; when bbolt cannot (truncated file,
// bad meta pages, a fault), the entries are salvaged from the leaf pages.
// keep asks for the entry values to be returned (for a rewrite).
func scanSegment(s SegmentInfo, capLast int64, keep bool) (scanResult, error) {
	res := scanResult{lastGood: s.First - 1}
	var vals map[int64][]byte
	if keep {
		vals = map[int64][]byte{}
	}
	st, err := os.Stat(s.Path)
	if err != nil {
		return res, fmt.Errorf("journal: %w", err)
	}
	var structural error
	if st.Size() == 0 {
		structural = fmt.Errorf("%w: %s is empty", ErrCorrupt, s.Path)
	} else if db, err := openBoltReadOnly(s.Path); err != nil {
		structural = err
	} else {
		err := guarded(func() error {
			return db.View(func(tx *bbolt.Tx) error {
				b := tx.Bucket(entriesBucket)
				if b == nil {
					return nil // created but not yet initialised: empty
				}
				next := s.First
				c := b.Cursor()
				for k, v := c.First(); k != nil && next <= capLast; k, v = c.Next() {
					e, err := DecodeEntry(k, v)
					if err != nil {
						res.damage = fmt.Errorf("entry %d: %w", next, err)
						return nil
					}
					if e.Sequence != next {
						res.damage = fmt.Errorf("%w: entry %d missing (found %d)", ErrCorrupt, next, e.Sequence)
						return nil
					}
					if vals != nil {
						vals[next] = append([]byte(nil), v...)
					}
					res.lastGood = next
					next++
				}
				return nil
			})
		})
		db.Close()
		if err != nil {
			if errors.Is(err, errFault) || errors.Is(err, ErrCorrupt) {
				structural = err
			} else {
				return res, err
			}
		}
	}
	if structural == nil {
		if res.damage == nil && capLast != math.MaxInt64 && res.lastGood < capLast {
			res.damage = fmt.Errorf("%w: entries %d..%d missing (segment ends at %d)", ErrCorrupt, res.lastGood+1, capLast, res.lastGood)
		}
		res.count = res.lastGood - s.First + 1
		res.values = vals
		return res, nil
	}
	// bbolt cannot give us the entries: salvage them from the leaf pages.
	found, conflicts, err := salvageEntries(s.Path)
	if err != nil {
		return res, fmt.Errorf("journal: salvage %s: %w", s.Path, err)
	}
	run := s.First - 1
	for seq := s.First; seq <= capLast && seq < math.MaxInt64; seq++ {
		if _, ok := found[seq]; !ok || conflicts[seq] {
			break
		}
		run = seq
	}
	// Keep whatever bbolt delivered before it failed if it went further.
	if run < res.lastGood {
		run = res.lastGood
	} else {
		for seq := s.First; seq <= run && vals != nil; seq++ {
			vals[seq] = found[seq]
		}
	}
	res.lastGood = run
	res.count = run - s.First + 1
	res.damage = structural
	res.salvaged = true
	res.values = vals
	return res, nil
}

// writeSegmentFile writes entries [first, last] from vals into a new
// segment file at path (through a temp file in the same directory: fsync,
// rename, fsync dir).
func writeSegmentFile(path string, first, last int64, vals map[int64][]byte) error {
	dir := filepath.Dir(path)
	tmp := filepath.Join(dir, tmpPrefix+filepath.Base(path))
	_ = os.Remove(tmp)
	opts := segmentOptions()
	opts.NoSync = true // one explicit sync below
	db, err := bbolt.Open(tmp, 0o644, opts)
	if err != nil {
		return fmt.Errorf("journal: create %s: %w", tmp, err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucket(entriesBucket)
		if err != nil {
			return err
		}
		b.FillPercent = 1.0
		for seq := first; seq <= last; seq++ {
			v, ok := vals[seq]
			if !ok {
				return fmt.Errorf("entry %d missing", seq)
			}
			if err := b.Put(seqKey(seq), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = db.Sync()
	}
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("journal: write segment %s: %w", path, err)
	}
	return nil
}

// syncDir fsyncs a directory so that renames and creations in it survive
// a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}
