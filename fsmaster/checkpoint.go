package fsmaster

import (
	"encoding/binary"
	"fmt"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/alluvium/alluvium/api"
)

// A checkpoint is a bbolt database with these buckets:
//
//	meta:    format version, sequence, id counters (8-byte big-endian values)
//	inodes2: the inodes in compact chunks, with their tables (format 2,
//	         written now; see checkpoint_v2.go)
//	inodes:  walk order (8-byte BE) → JournalEntry holding an InodeDirectory
//	         or InodeFile record, parents always before their children
//	         (format 1, still read)
//	mounts:  alluvium path → MountPointInfo
//	workers: host:port → worker id (8-byte BE)
//	completions: sequence (8-byte BE) → CompletionEvent, the completion
//	         feed's recent events (completions.go)
//
// Writing inodes in walk order gives bbolt sequential keys (fast appends)
// and lets the loader link every inode to its parent in one pass.
var (
	bucketMeta    = []byte("meta")
	bucketInodes  = []byte("inodes")
	bucketMounts  = []byte("mounts")
	bucketWorkers = []byte("workers")

	keyVersion      = []byte("version")
	keySequence     = []byte("sequence")
	keyNextInode    = []byte("next-inode-id")
	keyNextMount    = []byte("next-mount-id")
	keyNextWorker   = []byte("next-worker-id")
	checkpointFmtV1 = uint64(1)
)

func u64(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

// checkpointStallEnv names a test hook: when set to a duration, checkpoint
// writers pause that long after writing the inodes, so an end-to-end test can
// kill a secondary in the middle of a checkpoint.
const checkpointStallEnv = "ALLUVIUM_TEST_CHECKPOINT_STALL"

// WriteCheckpoint writes the whole state into tx (given by
// journal.WriteCheckpoint, which makes the file atomic).
func (s *State) WriteCheckpoint(tx *bolt.Tx) error {
	return s.writeCheckpoint(tx, checkpointFmtV3)
}

// writeCheckpoint writes the state in format 3 or 2 (tests: a format-2
// checkpoint of a state with no extended attributes, extents or uploads
// still loads).
func (s *State) writeCheckpoint(tx *bolt.Tx, format uint64) error {
	meta, err := tx.CreateBucketIfNotExists(bucketMeta)
	if err != nil {
		return err
	}
	for _, kv := range []struct {
		k []byte
		v uint64
	}{
		{keyVersion, format}, {keySequence, uint64(s.lastSeq)},
		{keyNextInode, uint64(s.nextInodeID)}, {keyNextMount, uint64(s.nextMountID)},
		{keyNextWorker, uint64(s.nextWorkerID)},
	} {
		if err := meta.Put(kv.k, u64(kv.v)); err != nil {
			return err
		}
	}
	if err := s.writeInodesV2(tx, format >= checkpointFmtV3); err != nil {
		return fmt.Errorf("checkpoint inodes: %w", err)
	}
	if d, err := time.ParseDuration(os.Getenv(checkpointStallEnv)); err == nil && d > 0 {
		time.Sleep(d)
	}
	mb, err := tx.CreateBucketIfNotExists(bucketMounts)
	if err != nil {
		return err
	}
	for p, m := range s.mounts {
		b, err := proto.Marshal(m)
		if err != nil {
			return err
		}
		if err := mb.Put([]byte(p), b); err != nil {
			return err
		}
	}
	wb, err := tx.CreateBucketIfNotExists(bucketWorkers)
	if err != nil {
		return err
	}
	for addr, id := range s.workerIDs {
		if err := wb.Put([]byte(addr), u64(uint64(id))); err != nil {
			return err
		}
	}
	return s.writeCompletions(tx)
}

// DecodeInodeRecord decodes one format-1 checkpoint inode record and checks
// that it holds an inode.
func DecodeInodeRecord(b []byte) (*api.JournalEntry, error) {
	var e api.JournalEntry
	if err := proto.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("inode record: %w", err)
	}
	switch e.GetBody().(type) {
	case *api.JournalEntry_InodeDirectory, *api.JournalEntry_InodeFile:
		return &e, nil
	}
	return nil, fmt.Errorf("inode record holds %T, not an inode", e.GetBody())
}

// LoadCheckpoint reads a state written by WriteCheckpoint.
func LoadCheckpoint(tx *bolt.Tx) (*State, error) {
	s := NewState()
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return nil, fmt.Errorf("checkpoint: no meta bucket")
	}
	get := func(k []byte) (int64, error) {
		v := meta.Get(k)
		if len(v) != 8 {
			return 0, fmt.Errorf("checkpoint: meta %s missing", k)
		}
		return int64(binary.BigEndian.Uint64(v)), nil
	}
	ver, err := get(keyVersion)
	if err != nil {
		return nil, err
	}
	if uint64(ver) != checkpointFmtV1 && uint64(ver) != checkpointFmtV2 && uint64(ver) != checkpointFmtV3 {
		return nil, fmt.Errorf("checkpoint: format version %d, this build reads %d to %d (a newer Alluvium wrote it)", ver, checkpointFmtV1, checkpointFmtV3)
	}
	for _, f := range []struct {
		k []byte
		p *int64
	}{{keySequence, &s.lastSeq}, {keyNextInode, &s.nextInodeID}, {keyNextMount, &s.nextMountID}, {keyNextWorker, &s.nextWorkerID}} {
		if *f.p, err = get(f.k); err != nil {
			return nil, err
		}
	}
	if uint64(ver) >= checkpointFmtV2 {
		if err := s.loadTablesV2(tx); err != nil {
			return nil, err
		}
		// Format 1 makes a protobuf's garbage per inode: only the compact
		// formats load with the collector paused.
		defer pauseGC()()
		s.deferIndex = true
		for _, b := range []struct {
			name  []byte
			aside bool
		}{{bucketInodes2, false}, {bucketAsides2, true}} {
			ib := tx.Bucket(b.name)
			if ib == nil {
				continue
			}
			err := ib.ForEach(func(k, v []byte) error {
				if err := s.loadChunkV2(v, b.aside, uint64(ver) >= checkpointFmtV3); err != nil {
					return fmt.Errorf("checkpoint %s chunk %x: %w", b.name, k, err)
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
		}
		s.deferIndex = false
		if id, ok := s.inodes.addAll(s.deferred); !ok {
			return nil, fmt.Errorf("checkpoint: inode %d exists twice", id)
		}
		s.deferred = nil
	} else if ib := tx.Bucket(bucketInodes); ib != nil {
		err := ib.ForEach(func(k, v []byte) error {
			e, err := DecodeInodeRecord(v)
			if err != nil {
				return err
			}
			if err := s.loadRecord(e); err != nil {
				return fmt.Errorf("checkpoint inode at %x: %w", k, err)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if mb := tx.Bucket(bucketMounts); mb != nil {
		err := mb.ForEach(func(k, v []byte) error {
			var m api.MountPointInfo
			if err := proto.Unmarshal(v, &m); err != nil {
				return fmt.Errorf("checkpoint mount %s: %w", k, err)
			}
			return s.applyAddMountPoint(nil, &api.AddMountPointEntry{Mount: &m})
		})
		if err != nil {
			return nil, err
		}
	}
	if wb := tx.Bucket(bucketWorkers); wb != nil {
		err := wb.ForEach(func(k, v []byte) error {
			if len(v) != 8 {
				return fmt.Errorf("checkpoint worker %s: bad id", k)
			}
			return s.applyWorkerID(nil, &api.WorkerIdEntry{Address: string(k), WorkerId: int64(binary.BigEndian.Uint64(v))})
		})
		if err != nil {
			return nil, err
		}
	}
	if err := s.loadCompletions(tx); err != nil {
		return nil, err
	}
	// Apply bumped the counters past every id seen; the stored counters also
	// remember ids of inodes deleted before the checkpoint. Keep the larger.
	return s, nil
}
