package fsmaster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/alluvium/alluvium/api"
)

// Checkpoint format 2 keeps the inodes compact and in large values, so that
// a master of tens of millions of inodes restarts in seconds (format 1, a
// protobuf record per inode, spent a microsecond and several allocations
// on each):
//
//	owners:  index (8-byte BE) → owner "\x00" group: the State's pairs
//	sizes:   index (8-byte BE) → block size (8-byte BE): the State's sizes
//	inodes2: chunk number (8-byte BE) → a chunk: uvarint count, then that
//	         many records, in walk order (parents before children, children
//	         by name)
//	asides2: the same, of the files written aside (overwrites in flight,
//	         linked to their directory but in no directory's children)
//
// A record (varints zigzag-encoded where marked):
//
//	uvarint id, uvarint parent id (0: the root), uvarint bits (the packed
//	inode word, its rare-attribute flag included), uvarint owner index,
//	uvarint name length, name, varint ctime ms, varint mtime - ctime;
//	files: uvarint length, and varint fingerprint mtime ns when the
//	fingerprint is compact;
//	with the rare-attribute flag: varint replication min, varint max,
//	varint ttl, string ttl action, string fingerprint, varint block size
//	(strings as uvarint length + bytes); and, from format 3 on, a string
//	holding an InodeFileEntry (protobuf) with only the extended
//	attributes, extents and multipart-upload state (empty when none).
//
// Format 3 is format 2 with that last string; both are read.
//
// The directories' last-sync times are not kept (in memory only).
var (
	bucketOwners  = []byte("owners")
	bucketSizes   = []byte("sizes")
	bucketInodes2 = []byte("inodes2")
	bucketAsides2 = []byte("asides2")
)

const (
	checkpointFmtV2 = uint64(2)
	checkpointFmtV3 = uint64(3)
	chunkInodes     = 4096 // inodes per checkpoint value
)

// writeInodesV2 writes the tables and the inode chunks, in format 3 (rare:
// with the rare-attribute string) or 2.
func (s *State) writeInodesV2(tx *bolt.Tx, rare bool) error {
	ob, err := tx.CreateBucketIfNotExists(bucketOwners)
	if err != nil {
		return err
	}
	for i, p := range s.owners.pairs {
		if err := ob.Put(u64(uint64(i)), []byte(p.owner+"\x00"+p.group)); err != nil {
			return err
		}
	}
	sb, err := tx.CreateBucketIfNotExists(bucketSizes)
	if err != nil {
		return err
	}
	for i, size := range s.sizes.sizes {
		if err := sb.Put(u64(uint64(i+1)), u64(uint64(size))); err != nil {
			return err
		}
	}
	if err := s.writeChunks(tx, bucketInodes2, rare, func(each func(*inode)) {
		if s.root != nil {
			walk(s.root, func(n *inode) bool { each(n); return true })
		}
	}); err != nil {
		return err
	}
	return s.writeChunks(tx, bucketAsides2, rare, func(each func(*inode)) {
		for _, id := range s.asideIDs() {
			each(s.asides[id])
		}
	})
}

// writeChunks writes the inodes gen yields into bucket, chunkInodes a value.
func (s *State) writeChunks(tx *bolt.Tx, bucket []byte, rare bool, gen func(each func(*inode))) error {
	ib, err := tx.CreateBucketIfNotExists(bucket)
	if err != nil {
		return err
	}
	ib.FillPercent = 1.0 // keys only ever grow
	var (
		buf   []byte
		count int
		chunk uint64
		werr  error
	)
	flush := func() {
		if count == 0 || werr != nil {
			return
		}
		// bbolt keeps the value until the commit: a fresh buffer each.
		v := binary.AppendUvarint(make([]byte, 0, len(buf)+binary.MaxVarintLen64), uint64(count))
		v = append(v, buf...)
		werr = ib.Put(u64(chunk), v)
		chunk++
		buf, count = buf[:0], 0
	}
	gen(func(n *inode) {
		if werr != nil {
			return
		}
		buf = s.appendRecord(buf, n, rare)
		if count++; count == chunkInodes {
			flush()
		}
	})
	flush()
	return werr
}

func appendString(b []byte, v string) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// appendRecord encodes inode n (rare: with the format-3 string).
func (s *State) appendRecord(b []byte, n *inode, rare bool) []byte {
	var parent int64
	if n.parent != nil {
		parent = n.parent.id
	}
	b = binary.AppendUvarint(b, uint64(n.id))
	b = binary.AppendUvarint(b, uint64(parent))
	b = binary.AppendUvarint(b, uint64(n.bits))
	b = binary.AppendUvarint(b, uint64(n.own))
	b = appendString(b, n.name)
	b = binary.AppendVarint(b, n.ctime)
	b = binary.AppendVarint(b, n.mtime-n.ctime)
	if !n.dir() {
		b = binary.AppendUvarint(b, uint64(n.length))
		if n.flag(bitFPLocal) {
			b = binary.AppendVarint(b, n.fpNs)
		}
	}
	if e := s.ext(n); e != nil {
		b = binary.AppendVarint(b, int64(e.replMin))
		b = binary.AppendVarint(b, int64(e.replMax))
		b = binary.AppendVarint(b, e.ttl)
		b = appendString(b, e.ttlAction)
		b = appendString(b, e.fingerprint)
		b = binary.AppendVarint(b, e.blockSize)
		if rare {
			b = appendString(b, s.rareRecord(n, e))
		}
	}
	return b
}

// rareRecord is the format-3 string of n's extended attributes, extents
// and upload state ("" when none).
func (s *State) rareRecord(n *inode, e *inodeExt) string {
	if len(e.xattrs) == 0 && len(e.extents) == 0 && e.upload == nil {
		return ""
	}
	f := &api.InodeFileEntry{Xattrs: e.xattrs, Extents: apiExtents(e.extents), Upload: e.upload != nil}
	if e.upload != nil {
		f.UploadState = e.upload.record()
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(f)
	if err != nil {
		panic(fmt.Sprintf("checkpoint: inode %d's attributes do not marshal: %v", n.id, err)) // only plain fields: cannot happen
	}
	return string(b)
}

// setRare gives n (in the State, with its rare attributes) what a
// format-3 string holds, checked as a journal entry's would be.
func (s *State) setRare(n *inode, rec string, aside bool) error {
	if rec == "" {
		return nil
	}
	var f api.InodeFileEntry
	if err := proto.Unmarshal([]byte(rec), &f); err != nil {
		return fmt.Errorf("inode %d: rare attributes: %w", n.id, err)
	}
	if err := checkXattrNames("checkpoint", s.pathOf(n), f.GetXattrs()); err != nil {
		return fmt.Errorf("inode %d: %w", n.id, err)
	}
	s.setXattrs(n, f.GetXattrs())
	if ex := extentsOf(f.GetExtents()); len(ex) > 0 {
		if n.dir() || !n.completed() {
			return fmt.Errorf("inode %d: extents on a directory or an incomplete file", n.id)
		}
		if err := checkExtents(ex, n.length, s.blockSize(n)); err != nil {
			return fmt.Errorf("file %d: %w", n.id, err)
		}
		s.setExtents(n, ex)
	}
	if f.GetUpload() {
		if n.dir() || n.completed() || !aside {
			return fmt.Errorf("inode %d: a multipart upload must be an incomplete file written aside", n.id)
		}
		u, err := uploadOf(&api.InodeFileEntry{BlockSizeBytes: s.blockSize(n), UploadState: f.GetUploadState()})
		if err != nil {
			return fmt.Errorf("file %d: %w", n.id, err)
		}
		s.extFor(n).upload = u
	}
	return nil
}

// reader decodes a chunk; the first error sticks.
type reader struct {
	b   []byte
	err error
}

var errShort = errors.New("record cut short")

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errShort
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errShort
		return 0
	}
	r.b = r.b[n:]
	return v
}

// int returns a uvarint that must fit an int64.
func (r *reader) int() int64 {
	v := r.uvarint()
	if v > math.MaxInt64 && r.err == nil {
		r.err = fmt.Errorf("value %d out of range", v)
	}
	return int64(v)
}

func (r *reader) str() string {
	n := r.uvarint()
	if r.err != nil {
		return ""
	}
	if n > uint64(len(r.b)) {
		r.err = errShort
		return ""
	}
	v := string(r.b[:n])
	r.b = r.b[n:]
	return v
}

// loadTablesV2 reads the owners and block sizes into s, which must be
// fresh: their indices then stay what the records name.
func (s *State) loadTablesV2(tx *bolt.Tx) error {
	if ob := tx.Bucket(bucketOwners); ob != nil {
		i := uint64(0)
		err := ob.ForEach(func(k, v []byte) error {
			if len(k) != 8 || binary.BigEndian.Uint64(k) != i {
				return fmt.Errorf("checkpoint owners: entry %x out of order", k)
			}
			owner, group, ok := strings.Cut(string(v), "\x00")
			if !ok {
				return fmt.Errorf("checkpoint owners: entry %d malformed", i)
			}
			if got := s.owners.intern(owner, group); uint64(got) != i {
				return fmt.Errorf("checkpoint owners: entry %d repeats entry %d", i, got)
			}
			i++
			return nil
		})
		if err != nil {
			return err
		}
	}
	if sb := tx.Bucket(bucketSizes); sb != nil {
		i := uint64(1)
		err := sb.ForEach(func(k, v []byte) error {
			if len(k) != 8 || binary.BigEndian.Uint64(k) != i || len(v) != 8 {
				return fmt.Errorf("checkpoint block sizes: entry %x malformed or out of order", k)
			}
			size := int64(binary.BigEndian.Uint64(v))
			if size <= 0 || s.sizes.intern(size) != uint8(i) {
				return fmt.Errorf("checkpoint block sizes: entry %d (%d) invalid or repeated", i, size)
			}
			i++
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// loadChunkV2 decodes one chunk of inode records into s, checking each as
// loadRecord checks a format-1 record: a record that does not fit leaves
// no trace and fails the load. aside: the chunk holds files written aside.
func (s *State) loadChunkV2(v []byte, aside, rare bool) error {
	r := &reader{b: v}
	defer func() { s.lastParent = nil }()
	count := r.uvarint()
	if r.err != nil {
		return r.err
	}
	if count == 0 || count > chunkInodes {
		return fmt.Errorf("chunk of %d records", count)
	}
	for i := uint64(0); i < count; i++ {
		if err := s.loadRecordV2(r, aside, rare); err != nil {
			return fmt.Errorf("record %d: %w", i, err)
		}
	}
	if len(r.b) != 0 {
		return fmt.Errorf("%d bytes after the last record", len(r.b))
	}
	return nil
}

func (s *State) loadRecordV2(r *reader, aside, rare bool) error {
	id := r.int()
	parentID := r.int()
	bits := r.uvarint()
	own := r.uvarint()
	name := r.str()
	ctime := r.varint()
	mtime := ctime + r.varint()
	if r.err != nil {
		return r.err
	}
	if bits > math.MaxUint32 || own >= uint64(len(s.owners.pairs)) {
		return fmt.Errorf("inode %d: packed fields %x/%d out of range", id, bits, own)
	}
	n := &inode{id: id, name: name, ctime: ctime, mtime: mtime, bits: uint32(bits), own: uint32(own)}
	if !n.dir() {
		n.length = r.int()
		if n.flag(bitFPLocal) {
			n.fpNs = r.varint()
		}
	}
	var e *inodeExt
	var rec string
	if n.flag(bitExt) {
		e = &inodeExt{
			replMin: int32(r.varint()), replMax: int32(r.varint()), ttl: r.varint(),
			ttlAction: r.str(), fingerprint: r.str(), blockSize: r.varint(),
		}
		if rare {
			rec = r.str()
		}
	}
	if r.err != nil {
		return r.err
	}
	if err := checkEnums(n.mode(), n.persist(), n.writeType()); err != nil {
		return fmt.Errorf("inode %d: %w", id, err)
	}
	// Records come in walk order: most share the previous record's parent
	// and sort after its children so far, which makes the checks cheap.
	if lp := s.lastParent; !aside && lp != nil && id > 0 && lp.id == parentID && parentID != 0 && lp.kids.sortsAfterAll(name) && validName(name) {
		if e != nil {
			if s.exts[id] != nil {
				return fmt.Errorf("inode %d exists", id)
			}
			s.exts[id] = e
		}
		if err := s.checkPacked(n); err != nil {
			delete(s.exts, id)
			return err
		}
		if s.deferIndex && !n.dir() {
			// A file is never looked up by id while loading: LoadCheckpoint
			// indexes it with the others at the end (and fails there on
			// an id seen twice).
			s.deferred = append(s.deferred, n)
		} else if !s.inodes.putNew(n) {
			delete(s.exts, id)
			return fmt.Errorf("inode %d exists", id)
		}
		s.indexTTL(n)
		s.bumpInodeID(id)
		s.addChild(lp, n)
		return s.setRare(n, rec, aside)
	}
	p, err := s.parentFor(id, parentID, name, aside)
	if err != nil {
		return err
	}
	s.lastParent = p
	if p == nil && (!n.dir() || aside) {
		return fmt.Errorf("the root must be a directory")
	}
	if aside && (n.dir() || n.completed()) {
		return fmt.Errorf("inode %d: only an incomplete file is written aside", id)
	}
	if e != nil {
		s.exts[id] = e
	}
	if err := s.checkPacked(n); err != nil {
		delete(s.exts, id)
		return err
	}
	s.insert(p, n, 0, aside)
	return s.setRare(n, rec, aside)
}
