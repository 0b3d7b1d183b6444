package fsmaster

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
)

// CheckInvariants walks the tree and reports the first broken invariant:
// every child points at its parent, ids are unique and below the id counter,
// there are no cycles, names are valid and unique per directory (the sorted
// child index is strictly increasing), files have no children, the id index
// holds exactly the reachable inodes, the rare-attribute and TTL indexes
// exactly the inodes flagged for them, and every mount has its mount-point
// directory (and every mount-point directory its mount).
func (s *State) CheckInvariants() error {
	if s.root == nil {
		if s.inodes.len() != 0 {
			return fmt.Errorf("no root but %d inodes", s.inodes.len())
		}
		return nil
	}
	if s.root.parent != nil || !s.root.dir() || s.root.name != "" {
		return fmt.Errorf("root is malformed: parent %v dir %v name %q", s.root.parent, s.root.dir(), s.root.name)
	}
	seen := make(map[int64]bool, s.inodes.len())
	var err error
	var visit func(n *inode, depth int)
	visit = func(n *inode, depth int) {
		if err != nil {
			return
		}
		if depth > 10000 {
			err = fmt.Errorf("inode %d: depth over 10000 (cycle?)", n.id)
			return
		}
		if seen[n.id] {
			err = fmt.Errorf("inode %d reached twice (duplicate id or cycle)", n.id)
			return
		}
		seen[n.id] = true
		if m := s.get(n.id); m != n {
			err = fmt.Errorf("inode %d (%s) is not in the id index", n.id, s.pathOf(n))
			return
		}
		if n.id >= s.nextInodeID {
			err = fmt.Errorf("inode %d is not below the id counter %d", n.id, s.nextInodeID)
			return
		}
		if n != s.root && !validName(n.name) {
			err = fmt.Errorf("inode %d has invalid name %q", n.id, n.name)
			return
		}
		if err = s.checkPacked(n); err != nil {
			return
		}
		if !n.dir() {
			if n.kids != nil {
				err = fmt.Errorf("file %d (%s) has children", n.id, s.pathOf(n))
			}
			return
		}
		if n.kids != nil {
			if err = n.kids.check(); err != nil {
				err = fmt.Errorf("dir %d (%s): %w", n.id, s.pathOf(n), err)
				return
			}
		}
		if n.mountPoint() {
			if _, ok := s.mounts[s.pathOf(n)]; !ok {
				err = fmt.Errorf("mount-point dir %s has no mount", s.pathOf(n))
				return
			}
		}
		n.kids.ascend("", func(c *inode) bool {
			if c.parent != n {
				err = fmt.Errorf("child %d (%q) of %d points at another parent", c.id, c.name, n.id)
				return false
			}
			visit(c, depth+1)
			return err == nil
		})
	}
	visit(s.root, 0)
	if err != nil {
		return err
	}
	for id, a := range s.asides {
		switch {
		case s.get(id) != a:
			return fmt.Errorf("file %d written aside is not in the id index", id)
		case a.dir() || a.completed():
			return fmt.Errorf("file %d written aside: dir %v complete %v", id, a.dir(), a.completed())
		case a.parent == nil || s.get(a.parent.id) != a.parent || !a.parent.dir():
			return fmt.Errorf("file %d written aside has no directory to go in", id)
		case a.parent.child(a.name) == a:
			return fmt.Errorf("file %d written aside is in its directory's children", id)
		case !validName(a.name):
			return fmt.Errorf("file %d written aside has invalid name %q", id, a.name)
		case id >= s.nextInodeID:
			return fmt.Errorf("file %d written aside is not below the id counter %d", id, s.nextInodeID)
		case seen[id]:
			return fmt.Errorf("file %d written aside is in the tree too", id)
		}
		if err := s.checkPacked(a); err != nil {
			return err
		}
		seen[id] = true
	}
	for id, e := range s.exts {
		if e.upload != nil && s.asides[id] == nil {
			return fmt.Errorf("inode %d has a multipart upload's state but is not written aside", id)
		}
		if len(e.extents) > 0 {
			n := s.get(id)
			if n == nil || !n.completed() {
				return fmt.Errorf("inode %d has extents but is not a complete file", id)
			}
			if err := checkExtents(e.extents, n.length, s.blockSize(n)); err != nil {
				return fmt.Errorf("file %d: %w", id, err)
			}
		}
	}
	if len(seen) != s.inodes.len() {
		var stray error
		s.inodes.each(func(n *inode) bool {
			if !seen[n.id] {
				stray = fmt.Errorf("inode %d is in the id index but not in the tree", n.id)
			}
			return stray == nil
		})
		if stray != nil {
			return stray
		}
		return fmt.Errorf("the id index counts %d inodes, the tree holds %d", s.inodes.len(), len(seen))
	}
	for p, m := range s.mounts {
		n := s.lookup(p)
		if n == nil || !n.dir() || !n.mountPoint() {
			return fmt.Errorf("mount %s has no mount-point directory", p)
		}
		if m.GetMountId() >= s.nextMountID {
			return fmt.Errorf("mount %s id %d not below counter %d", p, m.GetMountId(), s.nextMountID)
		}
	}
	if _, ok := s.mounts["/"]; !ok {
		return fmt.Errorf("no root mount")
	}
	var terr error
	s.inodes.each(func(n *inode) bool {
		ttl, _ := s.ttl(n)
		if _, in := s.ttls[n.id]; in != (ttl > 0 && !s.isAside(n)) {
			terr = fmt.Errorf("inode %d (%s) has ttl %d but the TTL index says %v", n.id, s.pathOf(n), ttl, in)
		}
		return terr == nil
	})
	if terr != nil {
		return terr
	}
	for id, n := range s.ttls {
		if s.get(id) != n {
			return fmt.Errorf("the TTL index holds inode %d, which is not in the namespace", id)
		}
	}
	for id := range s.exts {
		if n := s.get(id); n == nil || !n.flag(bitExt) {
			return fmt.Errorf("rare attributes kept for inode %d, which does not exist or is not flagged", id)
		}
	}
	for a, id := range s.workerIDs {
		if id >= s.nextWorkerID {
			return fmt.Errorf("worker %s id %d not below counter %d", a, id, s.nextWorkerID)
		}
	}
	return nil
}

// asideIDs lists the files written aside, in id order.
func (s *State) asideIDs() []int64 { return slices.Sorted(maps.Keys(s.asides)) }

// checkPacked checks n's packed fields against the State's tables.
func (s *State) checkPacked(n *inode) error {
	if int(n.own) >= len(s.owners.pairs) {
		return fmt.Errorf("inode %d: owner index %d out of range", n.id, n.own)
	}
	if n.flag(bitExt) && s.exts[n.id] == nil {
		return fmt.Errorf("inode %d is flagged with rare attributes but has none", n.id)
	}
	i := int(n.bits & maskBlockSize >> shiftBlockSize)
	if i > len(s.sizes.sizes) {
		return fmt.Errorf("inode %d: block size index %d out of range", n.id, i)
	}
	if n.dir() {
		if n.flag(bitCompleted) || n.flag(bitFPLocal) || i != 0 {
			return fmt.Errorf("directory %d has file attributes (bits %x)", n.id, n.bits)
		}
		return nil
	}
	if n.flag(bitLoaded) || n.flag(bitMountPoint) {
		return fmt.Errorf("file %d has directory attributes (bits %x)", n.id, n.bits)
	}
	if s.blockSize(n) <= 0 {
		return fmt.Errorf("file %d has block size %d", n.id, s.blockSize(n))
	}
	if n.flag(bitFPLocal) && s.ext(n) != nil && s.ext(n).fingerprint != "" {
		return fmt.Errorf("file %d has two fingerprints", n.id)
	}
	return nil
}

// Dump renders the whole state canonically (sorted, every field), so two
// states are equal exactly when their dumps are.
func (s *State) Dump() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seq %d next-inode %d next-mount %d next-worker %d\n", s.lastSeq, s.nextInodeID, s.nextMountID, s.nextWorkerID)
	if s.root != nil {
		walk(s.root, func(n *inode) bool {
			ttl, action := s.ttl(n)
			fmt.Fprintf(&b, "%s id=%d dir=%v mode=%o owner=%q group=%q ctime=%d mtime=%d persist=%v pinned=%v",
				s.pathOf(n), n.id, n.dir(), n.mode(), s.owner(n), s.group(n), n.ctime, n.mtime, n.persist(), n.pinned())
			b.WriteString(dumpXattrs(s.xattrs(n)))
			if n.dir() {
				fmt.Fprintf(&b, " loaded=%v mountpoint=%v children=%d ttl=%d/%q\n", n.childrenLoaded(), n.mountPoint(), n.childCount(), ttl, action)
			} else {
				lo, hi := s.replication(n)
				fmt.Fprintf(&b, " len=%d bs=%d wt=%v complete=%v fp=%q repl=%d..%d ttl=%d/%q%s\n",
					n.length, s.blockSize(n), n.writeType(), n.completed(), s.fingerprint(n), lo, hi, ttl, action, dumpExtents(s.extents(n))+dumpUpload(s.upload(n)))
			}
			return true
		})
	}
	for _, id := range s.asideIDs() {
		n := s.asides[id]
		ttl, action := s.ttl(n)
		lo, hi := s.replication(n)
		fmt.Fprintf(&b, "aside %s in %s id=%d mode=%o owner=%q group=%q ctime=%d mtime=%d persist=%v pinned=%v len=%d bs=%d wt=%v fp=%q repl=%d..%d ttl=%d/%q%s%s\n",
			n.name, s.pathOf(n.parent), n.id, n.mode(), s.owner(n), s.group(n), n.ctime, n.mtime, n.persist(), n.pinned(),
			n.length, s.blockSize(n), n.writeType(), s.fingerprint(n), lo, hi, ttl, action, dumpXattrs(s.xattrs(n)), dumpUpload(s.upload(n)))
	}
	mps := make([]string, 0, len(s.mounts))
	for p := range s.mounts {
		mps = append(mps, p)
	}
	sort.Strings(mps)
	for _, p := range mps {
		m := s.mounts[p]
		keys := make([]string, 0, len(m.GetOptions()))
		for k := range m.GetOptions() {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var opts []string
		for _, k := range keys {
			opts = append(opts, k+"="+m.GetOptions()[k])
		}
		fmt.Fprintf(&b, "mount %s -> %s id=%d ro=%v shared=%v opts=%v\n", p, m.GetUfsUri(), m.GetMountId(), m.GetReadOnly(), m.GetShared(), opts)
	}
	addrs := make([]string, 0, len(s.workerIDs))
	for a := range s.workerIDs {
		addrs = append(addrs, a)
	}
	sort.Strings(addrs)
	for _, a := range addrs {
		fmt.Fprintf(&b, "worker %s id=%d\n", a, s.workerIDs[a])
	}
	fmt.Fprintf(&b, "completions after %d: %d\n", s.done.floor, s.done.len())
	for i := range s.done.len() {
		e := s.done.at(i)
		fmt.Fprintf(&b, "completion %d %s id=%d len=%d time=%d\n", e.seq, e.path, e.id, e.length, e.timeMs)
	}
	return b.String()
}
