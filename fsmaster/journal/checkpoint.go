package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"syscall"
	"time"

	"go.etcd.io/bbolt"
	"go.uber.org/zap"
)

// checkpointBucket is the marker bucket WriteCheckpoint adds last, in the
// same transaction as the content. Callers must not use this name.
var checkpointBucket = []byte("alluvium.checkpoint")

var (
	markerSeq      = []byte("sequence")
	markerChecksum = []byte("checksum") // CRC32C of the content, see contentChecksum
	markerPairs    = []byte("pairs")    // number of key/value pairs in the content
	markerVersion  = []byte("version")
)

const checkpointVersion = 1

// staleTempAge is how old an unlocked temp file must be before
// RemoveOldCheckpoints removes it.
const staleTempAge = time.Minute

var checkpointName = regexp.MustCompile(`^(\d+)\.bolt$`)

func checkpointsDir(dir string) string { return filepath.Join(dir, checkpointsDirName) }

// CheckpointPath is where the checkpoint at seq of the journal in dir lives.
func CheckpointPath(dir string, seq int64) string {
	return filepath.Join(checkpointsDir(dir), strconv.FormatInt(seq, 10)+".bolt")
}

// WriteCheckpoint writes <dir>/checkpoints/<seq>.bolt atomically: write
// fills a bbolt file through one transaction, then the marker (sequence,
// content checksum) is added in that same transaction, the file is
// fsynced under a temp name in the same dir, renamed into place and the
// dir fsynced. A crash at any point leaves either no <seq>.bolt or a
// complete one. dir is the journal dir. An existing checkpoint at seq is
// replaced.
// checkpointMmapSize is the address space a checkpoint being written maps
// (16 GiB: a checkpoint of a hundred million inodes).
const checkpointMmapSize = 16 << 30

func WriteCheckpoint(dir string, seq int64, write func(tx *bbolt.Tx) error) (path string, err error) {
	if seq < 0 {
		return "", fmt.Errorf("journal: checkpoint sequence %d is negative", seq)
	}
	cdir := checkpointsDir(dir)
	if err := os.MkdirAll(cdir, 0o755); err != nil {
		return "", fmt.Errorf("journal: checkpoint: %w", err)
	}
	final := CheckpointPath(dir, seq)
	f, err := os.CreateTemp(cdir, fmt.Sprintf("%s%d-*.bolt", tmpPrefix, seq))
	if err != nil {
		return "", fmt.Errorf("journal: checkpoint: %w", err)
	}
	tmp := f.Name()
	f.Close()
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	// No fsync per commit: one explicit sync before the rename. The map
	// is reserved large (address space, not memory): bbolt remaps as the
	// file grows, and each remap copies every value the transaction holds
	// into the heap (a third of a million-inode checkpoint's time).
	db, err := bbolt.Open(tmp, 0o644, &bbolt.Options{Timeout: time.Second, NoSync: true, NoGrowSync: true, NoFreelistSync: true,
		InitialMmapSize: checkpointMmapSize})
	if err != nil {
		return "", fmt.Errorf("journal: checkpoint %s: %w", tmp, err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		if err := write(tx); err != nil {
			return err
		}
		if tx.Bucket(checkpointBucket) != nil {
			return fmt.Errorf("the content uses the reserved bucket %q", checkpointBucket)
		}
		sum, pairs, err := contentChecksum(tx)
		if err != nil {
			return err
		}
		m, err := tx.CreateBucket(checkpointBucket)
		if err != nil {
			return err
		}
		for k, v := range map[string][]byte{
			string(markerSeq):      seqKey(seq),
			string(markerChecksum): binary.BigEndian.AppendUint32(nil, sum),
			string(markerPairs):    binary.BigEndian.AppendUint64(nil, uint64(pairs)),
			string(markerVersion):  binary.BigEndian.AppendUint32(nil, checkpointVersion),
		} {
			if err := m.Put([]byte(k), v); err != nil {
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
		err = fsyncFile(tmp)
	}
	if err == nil {
		err = os.Rename(tmp, final)
	}
	if err == nil {
		err = syncDir(cdir)
	}
	if err != nil {
		return "", fmt.Errorf("journal: write checkpoint %s: %w", final, err)
	}
	return final, nil
}

func fsyncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// contentChecksum is a CRC32C over every bucket and key/value pair of the
// transaction except the marker bucket, in bbolt's order, each field
// length-prefixed so that no two different contents hash the same stream.
func contentChecksum(tx *bbolt.Tx) (uint32, int64, error) {
	h := crc32.New(castagnoli)
	var pairs int64
	var walk func(b *bbolt.Bucket, depth int) error
	walk = func(b *bbolt.Bucket, depth int) error {
		return b.ForEach(func(k, v []byte) error {
			if v == nil {
				if sub := b.Bucket(k); sub != nil {
					hashField(h, 'B', k)
					if err := walk(sub, depth+1); err != nil {
						return err
					}
					hashField(h, 'E', nil)
					return nil
				}
			}
			hashField(h, 'K', k)
			hashField(h, 'V', v)
			pairs++
			return nil
		})
	}
	err := tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
		if string(name) == string(checkpointBucket) {
			return nil
		}
		hashField(h, 'B', name)
		if err := walk(b, 1); err != nil {
			return err
		}
		hashField(h, 'E', nil)
		return nil
	})
	return h.Sum32(), pairs, err
}

func hashField(h hash.Hash32, tag byte, b []byte) {
	var hdr [1 + binary.MaxVarintLen64]byte
	hdr[0] = tag
	n := binary.PutUvarint(hdr[1:], uint64(len(b)))
	h.Write(hdr[:1+n])
	h.Write(b)
}

// VerifyCheckpoint checks that path is a complete checkpoint at seq: bbolt
// can map it, its completion marker says seq, and its content matches the
// marker's checksum.
func VerifyCheckpoint(path string, seq int64) error { return verifyCheckpoint(path, seq) }

// verifyCheckpoint checks that path is a complete checkpoint at seq: bbolt
// can map it, the marker is there with seq, and the content checksum and
// pair count match.
func verifyCheckpoint(path string, seq int64) error {
	db, err := openBoltReadOnly(path)
	if err != nil {
		return err
	}
	defer db.Close()
	err = guarded(func() error {
		return db.View(func(tx *bbolt.Tx) error {
			m := tx.Bucket(checkpointBucket)
			if m == nil {
				return fmt.Errorf("%w: no completion marker (bucket %q): the write did not finish", ErrCorrupt, checkpointBucket)
			}
			if v := m.Get(markerVersion); len(v) != 4 || binary.BigEndian.Uint32(v) != checkpointVersion {
				return fmt.Errorf("%w: unknown checkpoint version %x", ErrCorrupt, v)
			}
			if v := m.Get(markerSeq); len(v) != 8 || int64(binary.BigEndian.Uint64(v)) != seq {
				return fmt.Errorf("%w: marker sequence %x does not match the name's %d", ErrCorrupt, v, seq)
			}
			sum, pairs, err := contentChecksum(tx)
			if err != nil {
				return err
			}
			if v := m.Get(markerPairs); len(v) != 8 || int64(binary.BigEndian.Uint64(v)) != pairs {
				return fmt.Errorf("%w: holds %d key/value pairs, the marker says %x", ErrCorrupt, pairs, v)
			}
			if v := m.Get(markerChecksum); len(v) != 4 || binary.BigEndian.Uint32(v) != sum {
				return fmt.Errorf("%w: content checksum %08x does not match the marker's %x", ErrCorrupt, sum, v)
			}
			return nil
		})
	})
	if errors.Is(err, errFault) {
		err = fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return err
}

type cpFile struct {
	path string
	seq  int64
}

// listCheckpoints returns named checkpoints, newest first, and temp files.
func listCheckpoints(dir string) (cps []cpFile, temps []string, err error) {
	cdir := checkpointsDir(dir)
	des, err := os.ReadDir(cdir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("journal: list %s: %w", cdir, err)
	}
	for _, de := range des {
		name := de.Name()
		if m := checkpointName.FindStringSubmatch(name); m != nil && !de.IsDir() {
			if seq, err := strconv.ParseInt(m[1], 10, 64); err == nil {
				cps = append(cps, cpFile{path: filepath.Join(cdir, name), seq: seq})
				continue
			}
		}
		if len(name) > len(tmpPrefix) && name[:len(tmpPrefix)] == tmpPrefix {
			temps = append(temps, filepath.Join(cdir, name))
		}
	}
	sort.Slice(cps, func(a, b int) bool { return cps[a].seq > cps[b].seq })
	return cps, temps, nil
}

// LatestCheckpoint returns the newest complete and valid checkpoint of the
// journal in dir (path and sequence), or ("", 0, nil) if there is none.
// Temp files of unfinished writes, files without the completion marker and
// files whose checksum does not match are skipped with a log line and
// never returned. It reads each candidate in full (to verify it).
func LatestCheckpoint(dir string, log *zap.Logger) (path string, seq int64, err error) {
	if log == nil {
		log = zap.NewNop()
	}
	cps, temps, err := listCheckpoints(dir)
	if err != nil {
		return "", 0, err
	}
	for _, t := range temps {
		log.Info("journal: skipping unfinished checkpoint (temp file)", zap.String("file", t))
	}
	for _, c := range cps {
		if err := verifyCheckpoint(c.path, c.seq); err != nil {
			log.Warn("journal: skipping invalid checkpoint", zap.String("file", c.path), zap.Error(err))
			continue
		}
		return c.path, c.seq, nil
	}
	return "", 0, nil
}

// RetainedCoverage returns the sequence that every one of the keep newest
// valid checkpoints covers — the keep-th newest one's — or 0 when fewer
// than keep are valid. Segments up to it may be deleted: whichever retained
// checkpoint a restart ends up loading (the newest may be found damaged),
// the entries after it are still there.
func RetainedCoverage(dir string, keep int) (int64, error) {
	if keep < 1 {
		keep = 1
	}
	cps, _, err := listCheckpoints(dir)
	if err != nil {
		return 0, err
	}
	valid := 0
	for _, c := range cps {
		if verifyCheckpoint(c.path, c.seq) != nil {
			continue
		}
		if valid++; valid == keep {
			return c.seq, nil
		}
	}
	return 0, nil
}

// OpenCheckpoint opens a checkpoint read-only (after checking that bbolt
// can map it safely). The caller closes it.
func OpenCheckpoint(path string) (*bbolt.DB, error) {
	return openBoltReadOnly(path)
}

// RemoveOldCheckpoints keeps the keep newest valid checkpoints (at least
// one) and removes older ones, damaged ones (they would never be loaded),
// and temp files left by writers that died.
func RemoveOldCheckpoints(dir string, keep int) error {
	if keep < 1 {
		keep = 1
	}
	cps, temps, err := listCheckpoints(dir)
	if err != nil {
		return err
	}
	var errs []error
	valid := 0
	for _, c := range cps {
		err := verifyCheckpoint(c.path, c.seq)
		if err == nil && valid < keep {
			valid++
			continue
		}
		if err != nil && !errors.Is(err, ErrCorrupt) {
			continue // could not tell (I/O error): leave it
		}
		if err := os.Remove(c.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	for _, t := range temps {
		// A live writer holds a bbolt lock on its temp file; the age test
		// covers the instants before its bbolt.Open and after its Close.
		st, err := os.Stat(t)
		if err != nil || time.Since(st.ModTime()) < staleTempAge || fileLocked(t) {
			continue
		}
		if err := os.Remove(t); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := syncDir(checkpointsDir(dir)); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("journal: remove old checkpoints: %w", err)
	}
	return nil
}

// fileLocked reports whether some process holds a flock on path (bbolt
// locks the file it writes).
func fileLocked(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return true
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}
