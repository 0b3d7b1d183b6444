package fsmaster

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/fsmaster/journal"
)

// An FS master raft snapshot (embedded journal) is the state at a raft
// index written without pausing the leader: a base — a checkpoint file in
// the format of local checkpoints, written by a standby (or by the leader
// while alone), covering the log up to its own index — followed by the
// journal batches of the raft entries after it. Restoring loads the base
// and applies the tail through State.Apply. A standby writes bases every
// fsmaster.journal.checkpoint-period-entries entries; the leader fetches
// a standby's when its tail grows that long, so the tail stays short.
//
// Stream layout:
//
//	magic "ALVFSSN1"
//	u32 header length, RaftSnapshotHeader (protobuf)
//	base_bytes bytes: the base checkpoint file (none when 0)
//	tail records: u64 raft index (>0), u32 length, u32 CRC32C, command
//	u64 0: the end
const snapshotMagic = "ALVFSSN1"

// baseRaftBucket is the bucket a base checkpoint keeps its raft position
// in (the rest of the file is a plain checkpoint).
var (
	baseRaftBucket = []byte("raft")
	baseKeyIndex   = []byte("index")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// maxTailRecord bounds one tail record (a raft entry is one journal batch).
const maxTailRecord = 1 << 30

// base is a checkpoint usable as a snapshot base.
type base struct {
	path  string
	seq   int64
	index uint64
}

// writeBaseCheckpoint writes st (which holds exactly the raft entries up
// to index) as a checkpoint of the journal in dir.
func writeBaseCheckpoint(dir string, st *State, index uint64) (base, error) {
	path, err := journal.WriteCheckpoint(dir, st.lastSeq, func(tx *bolt.Tx) error {
		if err := st.WriteCheckpoint(tx); err != nil {
			return err
		}
		b, err := tx.CreateBucketIfNotExists(baseRaftBucket)
		if err != nil {
			return err
		}
		return b.Put(baseKeyIndex, u64(index))
	})
	if err != nil {
		return base{}, err
	}
	return base{path: path, seq: st.lastSeq, index: index}, nil
}

// readBaseIndex reads the raft index of a base checkpoint file.
func readBaseIndex(path string) (uint64, error) {
	db, err := journal.OpenCheckpoint(path)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var idx uint64
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(baseRaftBucket)
		if b == nil {
			return fmt.Errorf("checkpoint %s has no raft position (not written by a master of an embedded journal)", path)
		}
		v := b.Get(baseKeyIndex)
		if len(v) != 8 {
			return fmt.Errorf("checkpoint %s: bad raft index", path)
		}
		idx = binary.BigEndian.Uint64(v)
		return nil
	})
	return idx, err
}

var checkpointFileName = regexp.MustCompile(`^(\d+)\.bolt$`)

// listBases returns the valid base checkpoints of dir, newest first.
// Invalid files are skipped (RemoveOldCheckpoints removes them).
func listBases(dir string) ([]base, error) {
	des, err := os.ReadDir(journal.CheckpointsDir(dir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []base
	for _, de := range des {
		m := checkpointFileName.FindStringSubmatch(de.Name())
		if m == nil || de.IsDir() {
			continue
		}
		seq, err := strconv.ParseInt(m[1], 10, 64)
		if err != nil {
			continue
		}
		path := filepath.Join(journal.CheckpointsDir(dir), de.Name())
		if journal.VerifyCheckpoint(path, seq) != nil {
			continue
		}
		idx, err := readBaseIndex(path)
		if err != nil {
			continue
		}
		out = append(out, base{path: path, seq: seq, index: idx})
	}
	sort.Slice(out, func(a, b int) bool { return out[a].seq > out[b].seq })
	return out, nil
}

// tailRecord is one raft entry of a snapshot's tail.
type tailRecord struct {
	index uint64
	data  []byte
}

// snapshotWriter writes the stream.
type snapshotWriter struct {
	w   *bufio.Writer
	buf [16]byte
}

func (s *snapshotWriter) header(h *api.RaftSnapshotHeader) error {
	hb, err := proto.Marshal(h)
	if err != nil {
		return err
	}
	if _, err := s.w.WriteString(snapshotMagic); err != nil {
		return err
	}
	binary.BigEndian.PutUint32(s.buf[:4], uint32(len(hb)))
	if _, err := s.w.Write(s.buf[:4]); err != nil {
		return err
	}
	_, err = s.w.Write(hb)
	return err
}

func (s *snapshotWriter) record(r tailRecord) error {
	binary.BigEndian.PutUint64(s.buf[:8], r.index)
	binary.BigEndian.PutUint32(s.buf[8:12], uint32(len(r.data)))
	binary.BigEndian.PutUint32(s.buf[12:16], crc32.Checksum(r.data, castagnoli))
	if _, err := s.w.Write(s.buf[:16]); err != nil {
		return err
	}
	_, err := s.w.Write(r.data)
	return err
}

func (s *snapshotWriter) end() error {
	binary.BigEndian.PutUint64(s.buf[:8], 0)
	if _, err := s.w.Write(s.buf[:8]); err != nil {
		return err
	}
	return s.w.Flush()
}

// snapshotReader reads the stream.
type snapshotReader struct {
	r   *bufio.Reader
	buf [16]byte
}

func newSnapshotReader(r io.Reader) *snapshotReader {
	return &snapshotReader{r: bufio.NewReaderSize(r, 1<<20)}
}

func (s *snapshotReader) header() (*api.RaftSnapshotHeader, error) {
	if _, err := io.ReadFull(s.r, s.buf[:12]); err != nil {
		return nil, fmt.Errorf("snapshot header: %w", err)
	}
	if string(s.buf[:8]) != snapshotMagic {
		return nil, fmt.Errorf("not an FS master snapshot (magic %q)", s.buf[:8])
	}
	n := binary.BigEndian.Uint32(s.buf[8:12])
	if n > 64<<20 {
		return nil, fmt.Errorf("snapshot header of %d bytes", n)
	}
	hb := make([]byte, n)
	if _, err := io.ReadFull(s.r, hb); err != nil {
		return nil, fmt.Errorf("snapshot header: %w", err)
	}
	var h api.RaftSnapshotHeader
	if err := proto.Unmarshal(hb, &h); err != nil {
		return nil, fmt.Errorf("snapshot header: %w", err)
	}
	if h.GetBaseBytes() < 0 || h.GetBaseIndex() > h.GetIndex() || h.GetBaseSequence() > h.GetSequence() {
		return nil, fmt.Errorf("snapshot header is inconsistent: index %d sequence %d, base at %d/%d of %d bytes",
			h.GetIndex(), h.GetSequence(), h.GetBaseIndex(), h.GetBaseSequence(), h.GetBaseBytes())
	}
	return &h, nil
}

// baseTo copies the base's n bytes to a new file in dir and returns its
// path (the caller removes or renames it).
func (s *snapshotReader) baseTo(dir string, n int64) (string, error) {
	f, err := os.CreateTemp(dir, ".tmp-snapshot-base-*.bolt")
	if err != nil {
		return "", err
	}
	_, err = io.CopyN(f, s.r, n)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("snapshot base: %w", err)
	}
	return f.Name(), nil
}

// next returns the next tail record, or ok=false at the end.
func (s *snapshotReader) next() (tailRecord, bool, error) {
	if _, err := io.ReadFull(s.r, s.buf[:8]); err != nil {
		return tailRecord{}, false, fmt.Errorf("snapshot tail: %w", err)
	}
	idx := binary.BigEndian.Uint64(s.buf[:8])
	if idx == 0 {
		return tailRecord{}, false, nil
	}
	if _, err := io.ReadFull(s.r, s.buf[8:16]); err != nil {
		return tailRecord{}, false, fmt.Errorf("snapshot tail: %w", err)
	}
	n := binary.BigEndian.Uint32(s.buf[8:12])
	if n > maxTailRecord {
		return tailRecord{}, false, fmt.Errorf("snapshot tail record at %d of %d bytes", idx, n)
	}
	data := make([]byte, n)
	if _, err := io.ReadFull(s.r, data); err != nil {
		return tailRecord{}, false, fmt.Errorf("snapshot tail at %d: %w", idx, err)
	}
	if crc32.Checksum(data, castagnoli) != binary.BigEndian.Uint32(s.buf[12:16]) {
		return tailRecord{}, false, fmt.Errorf("snapshot tail record at %d: checksum mismatch", idx)
	}
	return tailRecord{index: idx, data: data}, true, nil
}

// loadedSnapshot is a snapshot read back into a state.
type loadedSnapshot struct {
	hdr  *api.RaftSnapshotHeader
	st   *State
	base string // the base written out to a temp file in the checkpoints dir ("" without one)
}

// readSnapshot reads a whole snapshot stream into a state: the base is
// written to a temp file in tmpDir and loaded, the tail applied with the
// rules of live entries (applyCommitted).
func readSnapshot(r io.Reader, tmpDir string) (*loadedSnapshot, error) {
	sr := newSnapshotReader(r)
	hdr, err := sr.header()
	if err != nil {
		return nil, err
	}
	out := &loadedSnapshot{hdr: hdr}
	st := NewState()
	if n := hdr.GetBaseBytes(); n > 0 {
		path, err := sr.baseTo(tmpDir, n)
		if err != nil {
			return nil, err
		}
		out.base = path
		if err := journal.VerifyCheckpoint(path, hdr.GetBaseSequence()); err != nil {
			os.Remove(path)
			return nil, fmt.Errorf("snapshot base: %w", err)
		}
		if st, err = loadCheckpointFile(path); err != nil {
			os.Remove(path)
			return nil, fmt.Errorf("snapshot base: %w", err)
		}
	}
	fail := func(err error) (*loadedSnapshot, error) {
		if out.base != "" {
			os.Remove(out.base)
		}
		return nil, err
	}
	last := hdr.GetBaseIndex()
	for {
		rec, ok, err := sr.next()
		if err != nil {
			return fail(err)
		}
		if !ok {
			break
		}
		if rec.index <= last || rec.index > hdr.GetIndex() {
			return fail(fmt.Errorf("snapshot tail record at %d out of order (after %d, up to %d)", rec.index, last, hdr.GetIndex()))
		}
		last = rec.index
		if len(rec.data) == 0 || rec.data[0] != cmdJournal {
			continue
		}
		b, err := decodeBatch(rec.data)
		if err != nil {
			return fail(fmt.Errorf("snapshot tail at %d: %w", rec.index, err))
		}
		if _, err := applyCommitted(st, b); err != nil {
			return fail(fmt.Errorf("snapshot tail at %d: %w", rec.index, err))
		}
	}
	if st.lastSeq != hdr.GetSequence() {
		return fail(fmt.Errorf("snapshot restores the state at sequence %d, its header says %d", st.lastSeq, hdr.GetSequence()))
	}
	out.st = st
	return out, nil
}

// errBatchGap: a committed journal batch does not follow the state's last
// sequence. It comes from a leader whose epoch failed after a batch it
// had sent was refused; every master skips it alike.
var errBatchGap = errors.New("journal batch does not follow the last sequence")

// applyCommitted applies a committed batch to st: every master, and every
// restore, applies the log by this one rule. A batch that does not start
// right after st's last sequence is skipped (errBatchGap, applied=false);
// an entry that does not apply is a divergence (error).
func applyCommitted(st *State, b *batch) (bool, error) {
	if b.first() != st.lastSeq+1 {
		return false, nil
	}
	for _, e := range b.entries {
		if err := st.Apply(e); err != nil {
			return false, err
		}
	}
	return true, nil
}

// snapshotTail streams the tail records for raft indices (after, upTo]:
// from the previous snapshot for what the log no longer holds, then from
// the log store.
func snapshotTail(snaps raft.SnapshotStore, logs raft.LogStore, after, upTo uint64, emit func(tailRecord) error) error {
	next := after + 1
	if next > upTo {
		return nil
	}
	first, err := logs.FirstIndex()
	if err != nil {
		return fmt.Errorf("raft log: %w", err)
	}
	if first == 0 || next < first {
		// The log was compacted past next: the previous snapshot has it.
		metas, err := snaps.List()
		if err != nil {
			return fmt.Errorf("raft snapshots: %w", err)
		}
		if len(metas) == 0 {
			return fmt.Errorf("raft entries from %d are neither in the log (it starts at %d) nor in a snapshot", next, first)
		}
		_, rc, err := snaps.Open(metas[0].ID)
		if err != nil {
			return fmt.Errorf("raft snapshot %s: %w", metas[0].ID, err)
		}
		err = func() error {
			defer rc.Close()
			sr := newSnapshotReader(rc)
			h, err := sr.header()
			if err != nil {
				return err
			}
			if h.GetBaseIndex() > after {
				return fmt.Errorf("previous snapshot %s starts its tail at %d, after %d", metas[0].ID, h.GetBaseIndex(), after)
			}
			if _, err := io.CopyN(io.Discard, sr.r, h.GetBaseBytes()); err != nil {
				return err
			}
			for {
				rec, ok, err := sr.next()
				if err != nil {
					return err
				}
				if !ok {
					return nil
				}
				if rec.index < next || rec.index > upTo {
					continue
				}
				if err := emit(rec); err != nil {
					return err
				}
				next = rec.index + 1
			}
		}()
		if err != nil {
			return fmt.Errorf("previous snapshot: %w", err)
		}
		// Entries between the old snapshot's end and the log's start
		// are gone from both; it covered up to its index.
		if next < first && next <= metas[0].Index {
			next = metas[0].Index + 1
		}
		if next < first && next <= upTo {
			return fmt.Errorf("raft entries %d..%d are neither in the log nor in snapshot %s", next, first-1, metas[0].ID)
		}
	}
	var l raft.Log
	for i := next; i <= upTo; i++ {
		if err := logs.GetLog(i, &l); err != nil {
			return fmt.Errorf("raft log entry %d: %w", i, err)
		}
		if l.Type != raft.LogCommand || len(l.Data) == 0 || l.Data[0] != cmdJournal {
			continue
		}
		if err := emit(tailRecord{index: i, data: l.Data}); err != nil {
			return err
		}
	}
	return nil
}
