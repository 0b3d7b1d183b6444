package fsmaster

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/paths"
)

// State is the journaled state of the FS master: the inode tree, the mount
// table, worker ids and the id counters. It is not safe for concurrent use;
// the master guards it with its state lock, the secondary owns its copy.
type State struct {
	inodes       idIndex
	root         *inode
	nextInodeID  int64
	mounts       map[string]*api.MountPointInfo // alluvium path → mount
	nextMountID  int64
	workerIDs    map[string]int64 // host:rpc_port → worker id
	nextWorkerID int64
	lastSeq      int64 // sequence of the last applied entry
	// ttls indexes the inodes with a TTL, so the TTL check looks at those
	// and not at every inode of the namespace.
	ttls map[int64]*inode
	// Interned per-inode strings and sizes, and the rare attributes.
	owners owners
	sizes  blockSizes
	exts   map[int64]*inodeExt
	// asides are the files written aside (overwrites in flight): in the id
	// index, knowing their directory and name, but in no directory's
	// children, so invisible to lookups and listings until completed (see
	// overwrite.go). Few at any time; membership here is what makes an
	// inode one.
	asides map[int64]*inode
	// done is the completion feed's recent events (completions.go).
	done completions
	// fresh holds the directories learned from the UFS as news (an
	// announcing UfsChildrenEntry) whose children are not loaded yet:
	// their first listing announces what it finds (ufswatch.go).
	fresh map[int64]struct{}
	// lastParent is the parent of the checkpoint record loaded last
	// (loading only).
	lastParent *inode
	// deferred, while LoadCheckpoint runs (deferIndex), holds the files
	// loaded but not yet in the id index: it adds them all at once at the
	// end (idIndex.addAll), in the order of their slots, instead of one
	// cache miss each in a table of tens of millions.
	deferIndex bool
	deferred   []*inode
}

// NewState returns an empty state: no root yet (the first entries of a
// journal create it).
func NewState() *State {
	return &State{
		nextInodeID:  1,
		mounts:       map[string]*api.MountPointInfo{},
		nextMountID:  1,
		workerIDs:    map[string]int64{},
		nextWorkerID: 1,
		ttls:         map[int64]*inode{},
		exts:         map[int64]*inodeExt{},
		asides:       map[int64]*inode{},
		fresh:        map[int64]struct{}{},
	}
}

// isFresh reports whether directory id appeared in the UFS behind
// Alluvium's back and is not listed yet: its first listing is news.
func (s *State) isFresh(id int64) bool {
	_, ok := s.fresh[id]
	return ok
}

// isAside reports whether n is a file written aside.
func (s *State) isAside(n *inode) bool { return len(s.asides) > 0 && s.asides[n.id] == n }

// LastSequence is the sequence of the last entry applied.
func (s *State) LastSequence() int64 { return s.lastSeq }

// NextInodeID is the id the next new inode gets.
func (s *State) NextInodeID() int64 { return s.nextInodeID }

// InodeCount is the number of inodes, the root included.
func (s *State) InodeCount() int { return s.inodes.len() }

// HasRoot reports whether the root directory exists (a formatted journal's
// first entries create it).
func (s *State) HasRoot() bool { return s.root != nil }

// get returns the inode with id, or nil.
func (s *State) get(id int64) *inode { return s.inodes.get(id) }

// childCount returns the number of children of a directory.
func (n *inode) childCount() int { return n.kids.len() }

func (s *State) blockCount(n *inode) int64 {
	bs := s.blockSize(n)
	if n.dir() || bs <= 0 || n.length <= 0 {
		return 0
	}
	return (n.length + bs - 1) / bs
}

func (s *State) addChild(parent, child *inode) {
	if parent.kids == nil {
		parent.kids = &children{}
	}
	parent.kids.insert(child)
	child.parent = parent
}

func (s *State) removeChild(parent, child *inode) {
	if parent.kids == nil {
		return
	}
	parent.kids.remove(child.name)
	if parent.kids.len() == 0 {
		parent.kids = nil
	}
}

// child returns the child of dir named name, or nil.
func (n *inode) child(name string) *inode { return n.kids.get(name) }

// walk follows the clean path p in place from the root as far as it
// exists (every lookup walks a path: no slice of components is built). It
// returns the deepest inode reached and whether components of p remain
// past it: a child it lacks, or a file reached before p's end (nil and
// true for any path but the root's before the root exists).
func (s *State) walk(p string) (n *inode, short bool) {
	n = s.root
	if n == nil {
		return nil, len(p) > 1
	}
	for i := 1; i < len(p); {
		j := strings.IndexByte(p[i:], '/')
		if j < 0 {
			j = len(p) - i
		}
		if !n.dir() {
			return n, true
		}
		next := n.child(p[i : i+j])
		if next == nil {
			return n, true
		}
		n = next
		i += j + 1
	}
	return n, false
}

// lookup returns the inode at a clean path, or nil.
func (s *State) lookup(p string) *inode {
	if n, short := s.walk(p); !short {
		return n
	}
	return nil
}

// learned reports whether the namespace has nothing to learn from the UFS
// for the clean path p (learnPath with LoadMetadataType_ONCE would learn
// nothing): p exists, or the walk stops at a file, or the deepest
// directory of p that exists has its children loaded (a batch asks it of
// every path it creates).
func (s *State) learned(p string) bool {
	n, short := s.walk(p)
	return !short || n == nil || !n.dir() || n.childrenLoaded()
}

// lookupPrefix walks as far as p exists: it returns the deepest existing
// inode, how many components of p it covers, and the components.
func (s *State) lookupPrefix(p string) (*inode, int, []string) {
	comps := paths.Components(p)
	n := s.root
	if n == nil {
		return nil, 0, comps
	}
	for i, c := range comps {
		if !n.dir() {
			return n, i, comps
		}
		next := n.child(c)
		if next == nil {
			return n, i, comps
		}
		n = next
	}
	return n, len(comps), comps
}

// pathOf returns the absolute path of n.
func (s *State) pathOf(n *inode) string {
	if n.parent == nil {
		return "/"
	}
	// The names on a stack array for the usual depths and the path built
	// in one allocation: every completion records its path (the feed).
	var stack [16]string
	parts := stack[:0]
	size := 0
	for x := n; x.parent != nil; x = x.parent {
		parts = append(parts, x.name)
		size += 1 + len(x.name)
	}
	var b strings.Builder
	b.Grow(size)
	for i := len(parts) - 1; i >= 0; i-- {
		b.WriteByte('/')
		b.WriteString(parts[i])
	}
	return b.String()
}

// isAncestor reports whether a is n or one of n's ancestors.
func isAncestor(a, n *inode) bool {
	for x := n; x != nil; x = x.parent {
		if x == a {
			return true
		}
	}
	return false
}

// walk calls fn for n and every inode below it, parents before children,
// children in name order. fn returning false skips the inode's subtree.
func walk(n *inode, fn func(*inode) bool) {
	if !fn(n) || n.kids == nil {
		return
	}
	n.kids.ascend("", func(c *inode) bool {
		walk(c, fn)
		return true
	})
}

// Apply applies one journal entry. It validates the entry against the state
// before changing anything, so an entry that does not fit leaves the state as
// it was and returns an error. Live calls and replay both come through here.
func (s *State) Apply(e *api.JournalEntry) error {
	var err error
	switch b := e.GetBody().(type) {
	case *api.JournalEntry_InodeDirectory:
		err = s.applyInodeDirectory(e, b.InodeDirectory)
	case *api.JournalEntry_InodeFile:
		err = s.applyInodeFile(e, b.InodeFile)
	case *api.JournalEntry_CompleteFile:
		err = s.applyCompleteFile(e, b.CompleteFile)
	case *api.JournalEntry_DeleteInode:
		err = s.applyDeleteInode(e, b.DeleteInode)
	case *api.JournalEntry_Rename:
		err = s.applyRename(e, b.Rename)
	case *api.JournalEntry_SetAttribute:
		err = s.applySetAttribute(e, b.SetAttribute)
	case *api.JournalEntry_UpdateDirectory:
		err = s.applyUpdateDirectory(e, b.UpdateDirectory)
	case *api.JournalEntry_UfsChildren:
		err = s.applyUfsChildren(e, b.UfsChildren)
	case *api.JournalEntry_AddMountPoint:
		err = s.applyAddMountPoint(e, b.AddMountPoint)
	case *api.JournalEntry_DeleteMountPoint:
		err = s.applyDeleteMountPoint(e, b.DeleteMountPoint)
	case *api.JournalEntry_WorkerId:
		err = s.applyWorkerID(e, b.WorkerId)
	case *api.JournalEntry_UploadBlocks:
		err = s.applyUploadBlocks(e, b.UploadBlocks)
	case *api.JournalEntry_UploadPart:
		err = s.applyUploadPart(e, b.UploadPart)
	case nil:
		err = fmt.Errorf("entry has no body")
	default:
		err = fmt.Errorf("unknown entry type %T", b)
	}
	if err != nil {
		return fmt.Errorf("journal entry %d: %w", e.GetSequence(), err)
	}
	if e.GetSequence() > s.lastSeq {
		s.lastSeq = e.GetSequence()
	}
	return nil
}

// parentFor checks that a new inode id/name can go under parentID (or, for
// a file written aside, beside name in parentID: the name may be taken).
func (s *State) parentFor(id, parentID int64, name string, aside bool) (*inode, error) {
	if id <= 0 {
		return nil, fmt.Errorf("inode id %d is not positive", id)
	}
	if s.get(id) != nil {
		return nil, fmt.Errorf("inode %d exists", id)
	}
	if parentID == 0 && name == "" {
		if s.root != nil {
			return nil, fmt.Errorf("root exists")
		}
		return nil, nil
	}
	p := s.get(parentID)
	switch {
	case p == nil:
		return nil, fmt.Errorf("parent %d of %q does not exist", parentID, name)
	case !p.dir():
		return nil, fmt.Errorf("parent %d of %q is a file", parentID, name)
	case !validName(name):
		return nil, fmt.Errorf("invalid name %q", name)
	case !aside && p.child(name) != nil:
		return nil, fmt.Errorf("%q exists in %d", name, parentID)
	}
	return p, nil
}

// validName reports whether name can be a path component: what
// paths.Clean accepts as one (no '/', not "." or "..", at most 255 bytes of
// UTF-8 without control characters), checked without building a path.
func validName(name string) bool {
	if name == "" || name == "." || name == ".." || len(name) > paths.MaxComponentLength {
		return false
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c == '/' || c < 0x20 || c == 0x7f:
			return false
		case c >= 0x80:
			// Not ASCII: the slow, exact check (UTF-8, C1 controls are fine).
			_, err := paths.Clean("/" + name)
			return err == nil && !strings.ContainsRune(name, '/')
		}
	}
	return true
}

// indexTTL keeps n in the TTL index exactly while it has a TTL and is in
// the tree (a file written aside starts counting once swapped in).
func (s *State) indexTTL(n *inode) {
	if ttl, _ := s.ttl(n); ttl > 0 && !s.isAside(n) {
		s.ttls[n.id] = n
	} else {
		delete(s.ttls, n.id)
	}
}

func (s *State) bumpInodeID(id int64) {
	if id >= s.nextInodeID {
		s.nextInodeID = id + 1
	}
}

// insert links n, built by newDir or newFile, into the tree below p (the
// root when p is nil) and indexes it. A file written aside (aside) only
// learns its directory.
func (s *State) insert(p, n *inode, opTime int64, aside bool) {
	s.inodes.put(n)
	s.bumpInodeID(n.id)
	if aside {
		n.parent = p
		s.asides[n.id] = n
		return
	}
	s.indexTTL(n)
	if p == nil {
		s.root = n
		return
	}
	s.addChild(p, n)
	if opTime != 0 {
		p.mtime = opTime
	}
}

// dirAttrs are the attributes a directory is created with.
type dirAttrs struct {
	id                    int64
	name                  string
	mode                  uint32
	owner, group          string
	ctime, mtime          int64
	persist               api.PersistenceState
	pinned, loaded, mount bool
	ttl                   int64
	ttlAction             string
	xattrs                map[string][]byte
}

// newDir builds a directory inode (not yet in the tree).
func (s *State) newDir(a dirAttrs) (*inode, error) {
	if err := checkEnums(a.mode, a.persist, 0); err != nil {
		return nil, fmt.Errorf("directory %d: %w", a.id, err)
	}
	n := &inode{id: a.id, name: a.name, ctime: a.ctime, mtime: a.ctime, bits: bitDir}
	if a.mtime != 0 {
		n.mtime = a.mtime
	}
	n.setMode(a.mode)
	n.setPersist(a.persist)
	n.setFlag(bitPinned, a.pinned)
	n.setFlag(bitLoaded, a.loaded)
	n.setFlag(bitMountPoint, a.mount)
	s.setOwner(n, a.owner, a.group)
	if a.ttl != 0 || a.ttlAction != "" {
		e := s.extFor(n)
		e.ttl, e.ttlAction = a.ttl, a.ttlAction
	}
	s.setXattrs(n, a.xattrs)
	return n, nil
}

func (s *State) dirInode(d *api.InodeDirectoryEntry) (*inode, error) {
	return s.newDir(dirAttrs{
		id: d.GetId(), name: d.GetName(), mode: d.GetMode(), owner: d.GetOwner(), group: d.GetGroup(),
		ctime: d.GetCreationTimeMs(), mtime: d.GetLastModificationTimeMs(),
		persist: d.GetPersistenceState(), pinned: d.GetPinned(),
		loaded: d.GetChildrenLoaded(), mount: d.GetMountPoint(),
		ttl: d.GetTtl(), ttlAction: d.GetTtlAction(), xattrs: d.GetXattrs(),
	})
}

// fileAttrs are the attributes a file is created with.
type fileAttrs struct {
	id                int64
	name              string
	mode              uint32
	owner, group      string
	ctime, mtime      int64
	persist           api.PersistenceState
	pinned, completed bool
	length, blockSize int64
	writeType         api.WriteType
	fingerprint       string
	replMin, replMax  int32
	ttl               int64
	ttlAction         string
	xattrs            map[string][]byte
	extents           []extent
	upload            *uploadState
}

// newFile builds a file inode (not yet in the tree).
func (s *State) newFile(a fileAttrs) (*inode, error) {
	if a.blockSize <= 0 {
		return nil, fmt.Errorf("file %d: block size %d", a.id, a.blockSize)
	}
	if a.length < 0 {
		return nil, fmt.Errorf("file %d: negative length %d", a.id, a.length)
	}
	if err := checkEnums(a.mode, a.persist, a.writeType); err != nil {
		return nil, fmt.Errorf("file %d: %w", a.id, err)
	}
	n := &inode{id: a.id, name: a.name, ctime: a.ctime, mtime: a.ctime, length: a.length}
	if a.mtime != 0 {
		n.mtime = a.mtime
	}
	n.setMode(a.mode)
	n.setPersist(a.persist)
	n.setWriteType(a.writeType)
	n.setFlag(bitPinned, a.pinned)
	n.setFlag(bitCompleted, a.completed)
	s.setOwner(n, a.owner, a.group)
	s.setBlockSize(n, a.blockSize)
	s.setFingerprint(n, a.fingerprint)
	if a.replMin != 0 || a.replMax != -1 {
		e := s.extFor(n)
		e.replMin, e.replMax = a.replMin, a.replMax
	}
	if a.ttl != 0 || a.ttlAction != "" {
		e := s.extFor(n)
		e.ttl, e.ttlAction = a.ttl, a.ttlAction
	}
	s.setXattrs(n, a.xattrs)
	if len(a.extents) > 0 {
		if !a.completed {
			return nil, fmt.Errorf("file %d: extents on an incomplete file", a.id)
		}
		if err := checkExtents(a.extents, a.length, a.blockSize); err != nil {
			return nil, fmt.Errorf("file %d: %w", a.id, err)
		}
		s.setExtents(n, a.extents)
	}
	if a.upload != nil {
		if a.completed {
			return nil, fmt.Errorf("file %d: a multipart upload, yet complete", a.id)
		}
		s.extFor(n).upload = a.upload
	}
	return n, nil
}

func (s *State) fileInode(f *api.InodeFileEntry) (*inode, error) {
	if f.GetAside() && f.GetCompleted() {
		return nil, fmt.Errorf("file %d: written aside but complete", f.GetId())
	}
	var up *uploadState
	if f.GetUpload() {
		if !f.GetAside() {
			return nil, fmt.Errorf("file %d: a multipart upload not written aside", f.GetId())
		}
		var err error
		if up, err = uploadOf(f); err != nil {
			return nil, fmt.Errorf("file %d: %w", f.GetId(), err)
		}
	}
	return s.newFile(fileAttrs{
		upload: up,
		id:     f.GetId(), name: f.GetName(), mode: f.GetMode(), owner: f.GetOwner(), group: f.GetGroup(),
		ctime: f.GetCreationTimeMs(), mtime: f.GetLastModificationTimeMs(),
		persist: f.GetPersistenceState(), pinned: f.GetPinned(), completed: f.GetCompleted(),
		length: f.GetLength(), blockSize: f.GetBlockSizeBytes(), writeType: f.GetWriteType(),
		fingerprint: f.GetUfsFingerprint(), replMin: f.GetReplicationMin(), replMax: f.GetReplicationMax(),
		ttl: f.GetTtl(), ttlAction: f.GetTtlAction(), xattrs: f.GetXattrs(), extents: extentsOf(f.GetExtents()),
	})
}

func (s *State) applyInodeDirectory(e *api.JournalEntry, d *api.InodeDirectoryEntry) error {
	p, err := s.parentFor(d.GetId(), d.GetParentId(), d.GetName(), false)
	if err != nil {
		return err
	}
	// Building fails before it changes anything.
	n, err := s.dirInode(d)
	if err != nil {
		return err
	}
	s.insert(p, n, e.GetOpTimeMs(), false)
	return nil
}

func (s *State) applyInodeFile(e *api.JournalEntry, f *api.InodeFileEntry) error {
	p, err := s.parentFor(f.GetId(), f.GetParentId(), f.GetName(), f.GetAside())
	if err != nil {
		return err
	}
	if p == nil {
		return fmt.Errorf("the root must be a directory")
	}
	n, err := s.fileInode(f)
	if err != nil {
		return err
	}
	s.insert(p, n, e.GetOpTimeMs(), f.GetAside())
	if n.persisted() && !f.GetAside() {
		persistAncestors(n)
	}
	return nil
}

// loadRecord inserts a checkpoint record as it is: no parent mtime change,
// no derived persistence.
func (s *State) loadRecord(e *api.JournalEntry) error {
	var (
		p     *inode
		n     *inode
		err   error
		aside bool
	)
	switch b := e.GetBody().(type) {
	case *api.JournalEntry_InodeDirectory:
		d := b.InodeDirectory
		if p, err = s.parentFor(d.GetId(), d.GetParentId(), d.GetName(), false); err == nil {
			n, err = s.dirInode(d)
		}
	case *api.JournalEntry_InodeFile:
		f := b.InodeFile
		aside = f.GetAside()
		if p, err = s.parentFor(f.GetId(), f.GetParentId(), f.GetName(), aside); err == nil {
			if p == nil {
				return fmt.Errorf("the root must be a directory")
			}
			n, err = s.fileInode(f)
		}
	default:
		return fmt.Errorf("record holds %T, not an inode", b)
	}
	if err != nil {
		return err
	}
	s.insert(p, n, 0, aside)
	return nil
}

// persistAncestors marks the directories above a persisted inode persisted:
// the UFS holds them as soon as it holds anything below them.
func persistAncestors(n *inode) {
	for p := n.parent; p != nil && !p.persisted(); p = p.parent {
		p.setPersist(api.PersistenceState_PERSISTED)
	}
}

func (s *State) file(id int64) (*inode, error) {
	n := s.get(id)
	switch {
	case n == nil:
		return nil, fmt.Errorf("inode %d does not exist", id)
	case n.dir():
		return nil, fmt.Errorf("inode %d is a directory", id)
	}
	return n, nil
}

func (s *State) applyCompleteFile(e *api.JournalEntry, c *api.CompleteFileEntry) error {
	n, err := s.file(c.GetId())
	if err != nil {
		return err
	}
	if n.completed() {
		return fmt.Errorf("file %d is already complete", n.id)
	}
	if c.GetLength() < 0 {
		return fmt.Errorf("file %d: negative length %d", n.id, c.GetLength())
	}
	aside := s.isAside(n)
	var old *inode
	if aside {
		old = n.parent.child(n.name)
		switch {
		case old == nil && c.GetReplacesId() != 0:
			return fmt.Errorf("file %d replaces %d, but %q in %d is free", n.id, c.GetReplacesId(), n.name, n.parent.id)
		case old != nil && old.id != c.GetReplacesId():
			return fmt.Errorf("file %d replaces %d, but %q in %d is inode %d", n.id, c.GetReplacesId(), n.name, n.parent.id, old.id)
		case old != nil && old.dir():
			return fmt.Errorf("file %d cannot replace directory %d", n.id, old.id)
		}
	} else if c.GetReplacesId() != 0 {
		return fmt.Errorf("file %d replaces %d but was not written aside", n.id, c.GetReplacesId())
	}
	ex, err := s.uploadExtents(n, c.GetParts(), c.GetLength())
	if err != nil {
		return err
	}
	if old != nil {
		s.removeChild(n.parent, old)
		s.unindex(old)
		old.parent = nil
	}
	if aside {
		// Swapped in: from now on a file like any other.
		delete(s.asides, n.id)
		s.addChild(n.parent, n)
		n.parent.mtime = e.GetOpTimeMs()
		s.indexTTL(n)
	}
	s.finishUpload(n, ex)
	n.setFlag(bitCompleted, true)
	s.setLength(n, c.GetLength())
	n.mtime = e.GetOpTimeMs()
	if mt := c.GetLastModificationTimeMs(); mt > 0 {
		n.mtime = mt
	}
	if fp := c.GetUfsFingerprint(); fp != "" {
		s.setFingerprint(n, fp)
		n.setPersist(api.PersistenceState_PERSISTED)
		persistAncestors(n)
	}
	s.setXattrs(n, c.GetXattrs())
	s.recordCompletion(e, n, false)
	return nil
}

// unindex forgets every inode at or below n (already unlinked from its
// parent).
func (s *State) unindex(n *inode) {
	walk(n, func(x *inode) bool {
		s.inodes.remove(x.id)
		delete(s.ttls, x.id)
		delete(s.fresh, x.id)
		s.dropExt(x)
		return true
	})
}

func (s *State) applyDeleteInode(e *api.JournalEntry, d *api.DeleteInodeEntry) error {
	n := s.get(d.GetId())
	switch {
	case n == nil:
		return fmt.Errorf("inode %d does not exist", d.GetId())
	case n.parent == nil:
		return fmt.Errorf("the root cannot be deleted")
	}
	if s.isAside(n) {
		// An abandoned overwrite: its directory never showed it.
		delete(s.asides, n.id)
		s.unindex(n)
		n.parent = nil
		return nil
	}
	s.removeChild(n.parent, n)
	n.parent.mtime = e.GetOpTimeMs()
	s.unindex(n)
	n.parent = nil
	// Overwrites in flight in the deleted directories go with them.
	for id, a := range s.asides {
		if s.get(a.parent.id) != a.parent {
			delete(s.asides, id)
			s.unindex(a)
			a.parent = nil
		}
	}
	return nil
}

// asidesBelow lists the files written aside in n's subtree (n a directory).
func (s *State) asidesBelow(n *inode) []int64 {
	var ids []int64
	for id, a := range s.asides {
		if isAncestor(n, a.parent) {
			ids = append(ids, id)
		}
	}
	return ids
}

func (s *State) applyRename(e *api.JournalEntry, r *api.RenameEntry) error {
	n := s.get(r.GetId())
	if n == nil {
		return fmt.Errorf("inode %d does not exist", r.GetId())
	}
	if n.parent == nil {
		return fmt.Errorf("the root cannot be renamed")
	}
	if s.isAside(n) {
		return fmt.Errorf("inode %d is being written aside", n.id)
	}
	np := s.get(r.GetNewParentId())
	switch {
	case np == nil:
		return fmt.Errorf("new parent %d does not exist", r.GetNewParentId())
	case !np.dir():
		return fmt.Errorf("new parent %d is a file", np.id)
	case !validName(r.GetNewName()):
		return fmt.Errorf("invalid name %q", r.GetNewName())
	case isAncestor(n, np):
		return fmt.Errorf("inode %d cannot move below itself", n.id)
	}
	if c := np.child(r.GetNewName()); c != nil && c != n {
		return fmt.Errorf("%q exists in %d", r.GetNewName(), np.id)
	}
	old := n.parent
	s.removeChild(old, n)
	n.name = r.GetNewName()
	s.addChild(np, n)
	old.mtime = e.GetOpTimeMs()
	np.mtime = e.GetOpTimeMs()
	return nil
}

func (s *State) applySetAttribute(e *api.JournalEntry, a *api.SetAttributeEntry) error {
	n := s.get(a.GetId())
	if n == nil {
		return fmt.Errorf("inode %d does not exist", a.GetId())
	}
	mode, persist := n.mode(), n.persist()
	if a.Mode != nil {
		mode = a.GetMode()
	}
	if a.PersistenceState != nil {
		persist = a.GetPersistenceState()
	}
	if err := checkEnums(mode, persist, 0); err != nil {
		return fmt.Errorf("inode %d: %w", n.id, err)
	}
	n.setMode(mode)
	if a.Owner != nil || a.Group != nil {
		owner, group := s.owner(n), s.group(n)
		if a.Owner != nil {
			owner = a.GetOwner()
		}
		if a.Group != nil {
			group = a.GetGroup()
		}
		s.setOwner(n, owner, group)
	}
	if a.Pinned != nil {
		n.setFlag(bitPinned, a.GetPinned())
	}
	if a.ReplicationMin != nil || a.ReplicationMax != nil {
		lo, hi := s.replication(n)
		if a.ReplicationMin != nil {
			lo = a.GetReplicationMin()
		}
		if a.ReplicationMax != nil {
			hi = a.GetReplicationMax()
		}
		s.setReplication(n, lo, hi)
	}
	if a.Ttl != nil {
		s.setTTL(n, a.GetTtl())
	}
	if a.TtlAction != nil {
		s.setTTLAction(n, a.GetTtlAction())
	}
	s.setXattrs(n, a.GetXattrs())
	if a.UfsFingerprint != nil {
		s.setFingerprint(n, a.GetUfsFingerprint())
	}
	if a.PersistenceState != nil {
		n.setPersist(persist)
		if n.persisted() {
			persistAncestors(n)
		}
	}
	return nil
}

func (s *State) applyUpdateDirectory(e *api.JournalEntry, u *api.UpdateDirectoryEntry) error {
	n := s.get(u.GetId())
	switch {
	case n == nil:
		return fmt.Errorf("inode %d does not exist", u.GetId())
	case !n.dir():
		return fmt.Errorf("inode %d is a file", u.GetId())
	}
	if u.ChildrenLoaded != nil {
		n.setFlag(bitLoaded, u.GetChildrenLoaded())
		if u.GetChildrenLoaded() {
			delete(s.fresh, n.id)
		}
	}
	return nil
}

// applyUfsChildren adds a page of children found in a directory's UFS.
// Every child is checked before the first is added.
func (s *State) applyUfsChildren(e *api.JournalEntry, u *api.UfsChildrenEntry) error {
	p := s.get(u.GetParentId())
	switch {
	case p == nil:
		return fmt.Errorf("parent %d does not exist", u.GetParentId())
	case !p.dir():
		return fmt.Errorf("parent %d is a file", u.GetParentId())
	}
	kids := u.GetChildren()
	first := u.GetFirstId()
	if len(kids) > 0 && (first <= 0 || first > math.MaxInt64-int64(len(kids))) {
		return fmt.Errorf("first inode id %d of %d children", first, len(kids))
	}
	files := false
	for i, c := range kids {
		id := first + int64(i)
		switch {
		case s.get(id) != nil:
			return fmt.Errorf("inode %d exists", id)
		case !validName(c.GetName()):
			return fmt.Errorf("invalid name %q", c.GetName())
		case p.child(c.GetName()) != nil:
			return fmt.Errorf("%q exists in %d", c.GetName(), p.id)
		case c.GetMode()&^bitsModeMask != 0:
			return fmt.Errorf("child %q: mode %o is not a permission mode", c.GetName(), c.GetMode())
		case !c.GetDirectory() && c.GetLength() < 0:
			return fmt.Errorf("child %q: negative length %d", c.GetName(), c.GetLength())
		}
		files = files || !c.GetDirectory()
	}
	if u.GetAnnounce() && len(kids) > 1 {
		// Each announced child is one feed event, with a sequence of its own.
		return fmt.Errorf("an announcing entry holds %d children, want at most one", len(kids))
	}
	if files && u.GetBlockSizeBytes() <= 0 {
		return fmt.Errorf("block size %d", u.GetBlockSizeBytes())
	}
	if len(kids) > 1 {
		// Learning writes the children in name order: a duplicate is then
		// next to its twin. Any other order is checked on a sorted copy.
		byName := func(a, b *api.UfsChild) int { return strings.Compare(a.GetName(), b.GetName()) }
		sorted := kids
		if !slices.IsSortedFunc(kids, byName) {
			sorted = slices.SortedFunc(slices.Values(kids), byName)
		}
		for i := 1; i < len(sorted); i++ {
			if sorted[i].GetName() == sorted[i-1].GetName() {
				return fmt.Errorf("%q twice among the children", sorted[i].GetName())
			}
		}
	}
	// Valid: building and inserting cannot fail now.
	now := u.GetCreationTimeMs()
	var aFile *inode
	for i, c := range kids {
		id := first + int64(i)
		var n *inode
		var err error
		if c.GetDirectory() {
			n, err = s.newDir(dirAttrs{id: id, name: c.GetName(), mode: c.GetMode(), owner: u.GetOwner(), group: u.GetGroup(),
				ctime: now, persist: api.PersistenceState_PERSISTED})
		} else {
			ct := now
			if c.MtimeMs != nil {
				ct = c.GetMtimeMs()
			}
			n, err = s.newFile(fileAttrs{id: id, name: c.GetName(), mode: c.GetMode(), owner: u.GetOwner(), group: u.GetGroup(),
				ctime: ct, persist: api.PersistenceState_PERSISTED, completed: true, length: c.GetLength(),
				blockSize: u.GetBlockSizeBytes(), writeType: api.WriteType_THROUGH, fingerprint: c.GetUfsFingerprint(), replMax: -1})
			aFile = n
		}
		if err != nil {
			return fmt.Errorf("child %q: %w (bug: checked before)", c.GetName(), err)
		}
		s.insert(p, n, e.GetOpTimeMs(), false)
		if u.GetAnnounce() {
			if n.dir() {
				s.fresh[n.id] = struct{}{}
			} else {
				s.recordCompletion(e, n, true)
			}
		}
	}
	if aFile != nil {
		persistAncestors(aFile)
	}
	if u.GetChildrenLoaded() {
		p.setFlag(bitLoaded, true)
		delete(s.fresh, p.id)
	}
	return nil
}

func (s *State) applyAddMountPoint(e *api.JournalEntry, a *api.AddMountPointEntry) error {
	m := a.GetMount()
	if m == nil {
		return fmt.Errorf("mount entry without a mount")
	}
	p, err := paths.Clean(m.GetAlluviumPath())
	if err != nil || p != m.GetAlluviumPath() {
		return fmt.Errorf("mount path %q is not clean", m.GetAlluviumPath())
	}
	if _, ok := s.mounts[p]; ok {
		return fmt.Errorf("mount %s exists", p)
	}
	if m.GetMountId() <= 0 {
		return fmt.Errorf("mount %s: id %d", p, m.GetMountId())
	}
	s.mounts[p] = cloneMount(m)
	if m.GetMountId() >= s.nextMountID {
		s.nextMountID = m.GetMountId() + 1
	}
	return nil
}

func (s *State) applyDeleteMountPoint(e *api.JournalEntry, d *api.DeleteMountPointEntry) error {
	if _, ok := s.mounts[d.GetAlluviumPath()]; !ok {
		return fmt.Errorf("mount %s does not exist", d.GetAlluviumPath())
	}
	delete(s.mounts, d.GetAlluviumPath())
	return nil
}

func (s *State) applyWorkerID(e *api.JournalEntry, w *api.WorkerIdEntry) error {
	if w.GetAddress() == "" || w.GetWorkerId() <= 0 {
		return fmt.Errorf("worker id entry %q → %d", w.GetAddress(), w.GetWorkerId())
	}
	s.workerIDs[w.GetAddress()] = w.GetWorkerId()
	if w.GetWorkerId() >= s.nextWorkerID {
		s.nextWorkerID = w.GetWorkerId() + 1
	}
	return nil
}

func cloneMount(m *api.MountPointInfo) *api.MountPointInfo {
	c := &api.MountPointInfo{
		AlluviumPath: m.GetAlluviumPath(), UfsUri: m.GetUfsUri(),
		ReadOnly: m.GetReadOnly(), Shared: m.GetShared(), MountId: m.GetMountId(),
	}
	if len(m.GetOptions()) > 0 {
		c.Options = make(map[string]string, len(m.GetOptions()))
		for k, v := range m.GetOptions() {
			c.Options[k] = v
		}
	}
	return c
}

// mountOf returns the mount that holds the clean path p (the longest mount
// path that is p or an ancestor) and p relative to the mount's root.
func (s *State) mountOf(p string) (*api.MountPointInfo, string) {
	var best *api.MountPointInfo
	for mp, m := range s.mounts {
		if paths.IsAncestor(mp, p) && (best == nil || len(mp) > len(best.GetAlluviumPath())) {
			best = m
		}
	}
	if best == nil {
		return nil, ""
	}
	return best, paths.Rel(best.GetAlluviumPath(), p)
}
