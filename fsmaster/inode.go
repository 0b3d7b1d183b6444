package fsmaster

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/ufs"
)

// inode is one file or directory of the namespace, laid out for tens of
// millions of them: 80 bytes, no per-inode maps, strings that repeat across
// inodes (owner and group, block size) interned in the State, flags packed
// into one word, and the attributes few inodes have (a TTL, replication
// bounds, a fingerprint other than a local UFS's) kept aside in State.ext.
// Read and change it through its methods and the State's; adding a field
// here costs every inode, adding one to inodeExt costs only those that set
// it.
type inode struct {
	id     int64
	parent *inode // nil for the root
	name   string
	ctime  int64 // ms
	mtime  int64 // ms
	// Files: length in bytes. Directories: the unix ns of the last UFS sync
	// (in memory only; 0 after a restart).
	length int64
	// Files whose fingerprint is a local UFS's "<length>:<mtime ns>"
	// (bitFPLocal): the mtime ns.
	fpNs int64
	kids *children // directories: the children by name; nil while empty
	bits uint32    // mode, flags, persistence, write type, block size (see bit*)
	own  uint32    // owner and group: State.owners index
}

// Layout of inode.bits.
const (
	bitsModeMask = 0o7777 // permission bits, 12

	bitDir         = 1 << 12
	bitPinned      = 1 << 13
	bitCompleted   = 1 << 14
	bitLoaded      = 1 << 15 // directories: UFS children merged in
	bitMountPoint  = 1 << 16
	bitFPLocal     = 1 << 17 // fingerprint is "<length>:<fpNs>"
	bitExt         = 1 << 18 // State.ext holds more attributes
	shiftPersist   = 19      // 2 bits: api.PersistenceState
	shiftWriteType = 21      // 3 bits: api.WriteType
	shiftBlockSize = 24      // 8 bits: State.blockSizes index (0: none)

	maskPersist   = 3 << shiftPersist
	maskWriteType = 7 << shiftWriteType
	maskBlockSize = 0xff << shiftBlockSize
)

// inodeExt holds the attributes few inodes have. An inode without one has
// the defaults: no TTL, replication 0..-1 (no maximum) for files, and a
// fingerprint that is empty or compact.
type inodeExt struct {
	replMin     int32
	replMax     int32
	ttl         int64
	ttlAction   string
	fingerprint string // when it is not the compact local form
	blockSize   int64  // when more distinct block sizes exist than bits.blockSize can name
	xattrs      map[string][]byte
	extents     []extent     // files assembled from parts (see layout.go)
	upload      *uploadState // multipart uploads in flight (see upload.go)
}

func (n *inode) flag(b uint32) bool { return n.bits&b != 0 }

func (n *inode) setFlag(b uint32, on bool) {
	if on {
		n.bits |= b
	} else {
		n.bits &^= b
	}
}

func (n *inode) dir() bool            { return n.flag(bitDir) }
func (n *inode) pinned() bool         { return n.flag(bitPinned) }
func (n *inode) completed() bool      { return n.flag(bitCompleted) }
func (n *inode) childrenLoaded() bool { return n.flag(bitLoaded) }
func (n *inode) mountPoint() bool     { return n.flag(bitMountPoint) }
func (n *inode) mode() uint32         { return n.bits & bitsModeMask }

func (n *inode) persist() api.PersistenceState {
	return api.PersistenceState(n.bits & maskPersist >> shiftPersist)
}

func (n *inode) writeType() api.WriteType {
	return api.WriteType(n.bits & maskWriteType >> shiftWriteType)
}

// persisted reports whether n's bytes (or directory) are in the UFS.
func (n *inode) persisted() bool { return n.persist() == api.PersistenceState_PERSISTED }

func (n *inode) setMode(m uint32) { n.bits = n.bits&^bitsModeMask | m&bitsModeMask }

func (n *inode) setPersist(p api.PersistenceState) {
	n.bits = n.bits&^maskPersist | uint32(p)<<shiftPersist&maskPersist
}

func (n *inode) setWriteType(w api.WriteType) {
	n.bits = n.bits&^maskWriteType | uint32(w)<<shiftWriteType&maskWriteType
}

// syncedAt is when a directory was last synced with its UFS (unix ns).
func (n *inode) syncedAt() int64 {
	if !n.dir() {
		return 0
	}
	return n.length
}

func (n *inode) setSyncedAt(ns int64) {
	if n.dir() {
		n.length = ns
	}
}

// checkEnums refuses values the packed fields cannot hold: a journal
// entry carrying one was not written by a master of this format.
func checkEnums(mode uint32, p api.PersistenceState, w api.WriteType) error {
	switch {
	case mode&^bitsModeMask != 0:
		return fmt.Errorf("mode %o is not a permission mode", mode)
	case p < 0 || p > api.PersistenceState_PERSISTED:
		return fmt.Errorf("unknown persistence state %d", p)
	case w < 0 || w > api.WriteType_ASYNC_THROUGH:
		return fmt.Errorf("unknown write type %d", w)
	}
	return nil
}

// compactFingerprint returns the mtime ns of a fingerprint in a local UFS's
// canonical form "<length>:<mtime ns>" (ufs.Local), and whether it is one.
func compactFingerprint(fp string, length int64) (int64, bool) {
	// Compared in a buffer on the stack: each file learned from a local
	// UFS comes through here (FormatInt allocated one string a file).
	var b [24]byte
	i := strings.IndexByte(fp, ':')
	if i <= 0 || fp[:i] != string(strconv.AppendInt(b[:0], length, 10)) {
		return 0, false
	}
	ns, err := strconv.ParseInt(fp[i+1:], 10, 64)
	if err != nil || string(strconv.AppendInt(b[:0], ns, 10)) != fp[i+1:] {
		return 0, false
	}
	return ns, true
}

// ownerPair is an (owner, group) the State interns.
type ownerPair struct{ owner, group string }

// owners interns (owner, group) pairs: an inode keeps a 4-byte index. Pairs
// are few (users × their groups) and are never dropped while the master
// runs; a restart from a checkpoint keeps only those in use.
type owners struct {
	pairs []ownerPair
	index map[ownerPair]uint32
}

func (o *owners) intern(owner, group string) uint32 {
	k := ownerPair{owner, group}
	if i, ok := o.index[k]; ok {
		return i
	}
	if o.index == nil {
		o.index = map[ownerPair]uint32{}
	}
	i := uint32(len(o.pairs))
	o.pairs = append(o.pairs, k)
	o.index[k] = i
	return i
}

func (o *owners) get(i uint32) ownerPair { return o.pairs[i] }

// blockSizes interns the block sizes of files: few distinct ones exist
// (the default and what clients ask for), so an inode names its one with 8
// bits; index 0 means none (directories) or, for a file, that the size
// lives in its inodeExt (more than 255 distinct sizes were seen).
type blockSizes struct {
	sizes []int64 // index-1 → size
	index map[int64]uint8
}

// intern returns the index of size, 0 when the table is full.
func (b *blockSizes) intern(size int64) uint8 {
	if i, ok := b.index[size]; ok {
		return i
	}
	if len(b.sizes) == 255 {
		return 0
	}
	if b.index == nil {
		b.index = map[int64]uint8{}
	}
	b.sizes = append(b.sizes, size)
	i := uint8(len(b.sizes))
	b.index[size] = i
	return i
}

// ---- State accessors of the interned and rare attributes ----

func (s *State) owner(n *inode) string { return s.owners.get(n.own).owner }
func (s *State) group(n *inode) string { return s.owners.get(n.own).group }

func (s *State) setOwner(n *inode, owner, group string) { n.own = s.owners.intern(owner, group) }

// ext returns n's rare attributes, nil when it has none.
func (s *State) ext(n *inode) *inodeExt {
	if !n.flag(bitExt) {
		return nil
	}
	return s.exts[n.id]
}

// extFor returns n's rare attributes, creating them with n's defaults.
func (s *State) extFor(n *inode) *inodeExt {
	if e := s.ext(n); e != nil {
		return e
	}
	e := &inodeExt{}
	if !n.dir() {
		e.replMax = -1
		e.blockSize = s.blockSize(n)
	}
	s.exts[n.id] = e
	n.setFlag(bitExt, true)
	return e
}

// tidyExt drops n's rare attributes once they all hold their defaults.
func (s *State) tidyExt(n *inode) {
	e := s.ext(n)
	if e == nil {
		return
	}
	defMax := int32(-1)
	if n.dir() {
		defMax = 0
	}
	if e.replMin == 0 && e.replMax == defMax && e.ttl == 0 && e.ttlAction == "" && e.fingerprint == "" && len(e.xattrs) == 0 && len(e.extents) == 0 && e.upload == nil &&
		(n.dir() || n.bits&maskBlockSize != 0) {
		delete(s.exts, n.id)
		n.setFlag(bitExt, false)
	}
}

func (s *State) dropExt(n *inode) {
	if n.flag(bitExt) {
		delete(s.exts, n.id)
		n.setFlag(bitExt, false)
	}
}

func (s *State) blockSize(n *inode) int64 {
	if i := n.bits & maskBlockSize >> shiftBlockSize; i != 0 {
		return s.sizes.sizes[i-1]
	}
	if e := s.ext(n); e != nil {
		return e.blockSize
	}
	return 0
}

func (s *State) setBlockSize(n *inode, size int64) {
	i := s.sizes.intern(size)
	n.bits = n.bits&^maskBlockSize | uint32(i)<<shiftBlockSize
	if i == 0 {
		s.extFor(n).blockSize = size
	}
}

func (s *State) fingerprint(n *inode) string {
	return s.fingerprintIn(n, nil)
}

// fingerprintIn is fingerprint, a compact one built in strs (nil: a
// string of its own).
func (s *State) fingerprintIn(n *inode, strs *strSlab) string {
	if n.flag(bitFPLocal) {
		if strs != nil {
			return strs.End(ufs.AppendLocalFingerprint(strs.Start(ufs.MaxLocalFingerprint), n.length, n.fpNs))
		}
		return ufs.LocalFingerprint(n.length, n.fpNs)
	}
	if e := s.ext(n); e != nil {
		return e.fingerprint
	}
	return ""
}

func (s *State) setFingerprint(n *inode, fp string) {
	if ns, ok := compactFingerprint(fp, n.length); ok {
		n.fpNs = ns
		n.setFlag(bitFPLocal, true)
		if e := s.ext(n); e != nil {
			e.fingerprint = ""
			s.tidyExt(n)
		}
		return
	}
	n.fpNs = 0
	n.setFlag(bitFPLocal, false)
	if fp != "" {
		s.extFor(n).fingerprint = fp
	} else if e := s.ext(n); e != nil {
		e.fingerprint = ""
		s.tidyExt(n)
	}
}

// setLength changes a file's length, keeping its fingerprint as it was (a
// compact one names the length it was taken at).
func (s *State) setLength(n *inode, length int64) {
	if n.flag(bitFPLocal) && length != n.length {
		fp := s.fingerprint(n)
		n.length = length
		s.setFingerprint(n, fp)
		return
	}
	n.length = length
}

// replication returns a file's replication bounds.
func (s *State) replication(n *inode) (lo, hi int32) {
	if e := s.ext(n); e != nil {
		return e.replMin, e.replMax
	}
	if n.dir() {
		return 0, 0
	}
	return 0, -1
}

func (s *State) setReplication(n *inode, lo, hi int32) {
	if dlo, dhi := s.replication(n); dlo == lo && dhi == hi {
		return
	}
	e := s.extFor(n)
	e.replMin, e.replMax = lo, hi
	s.tidyExt(n)
}

// ttl returns n's TTL (ms after creation; 0: none) and its action.
func (s *State) ttl(n *inode) (int64, string) {
	if e := s.ext(n); e != nil {
		return e.ttl, e.ttlAction
	}
	return 0, ""
}

// setTTL changes n's TTL and keeps the TTL index in step.
func (s *State) setTTL(n *inode, ttl int64) {
	if cur, _ := s.ttl(n); cur != ttl {
		s.extFor(n).ttl = ttl
		s.tidyExt(n)
	}
	s.indexTTL(n)
}

func (s *State) setTTLAction(n *inode, action string) {
	if _, cur := s.ttl(n); cur != action {
		s.extFor(n).ttlAction = action
		s.tidyExt(n)
	}
}
