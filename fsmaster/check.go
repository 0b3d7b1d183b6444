package fsmaster

import (
	"fmt"
	"sort"
	"strings"

	"github.com/alluvium/alluvium/api"
)

// CheckInvariants walks the tree and reports the first broken invariant:
// every child points at its parent, ids are unique and below the id counter,
// there are no cycles, names are valid and unique per directory (the sorted
// child index is strictly increasing), files have no children, the id map
// holds exactly the reachable inodes, and every mount has its mount-point
// directory (and every mount-point directory its mount).
func (s *State) CheckInvariants() error {
	if s.root == nil {
		if len(s.inodes) != 0 {
			return fmt.Errorf("no root but %d inodes", len(s.inodes))
		}
		return nil
	}
	if s.root.parent != nil || !s.root.dir || s.root.name != "" {
		return fmt.Errorf("root is malformed: parent %v dir %v name %q", s.root.parent, s.root.dir, s.root.name)
	}
	seen := make(map[int64]bool, len(s.inodes))
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
		if m, ok := s.inodes[n.id]; !ok || m != n {
			err = fmt.Errorf("inode %d (%s) is not in the id map", n.id, s.pathOf(n))
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
		if !n.dir {
			if n.children != nil {
				err = fmt.Errorf("file %d (%s) has children", n.id, s.pathOf(n))
			}
			return
		}
		if n.children != nil && n.children.Len() == 0 {
			err = fmt.Errorf("dir %d keeps an empty child index", n.id)
			return
		}
		if n.mountPoint {
			if _, ok := s.mounts[s.pathOf(n)]; !ok {
				err = fmt.Errorf("mount-point dir %s has no mount", s.pathOf(n))
				return
			}
		}
		prev := ""
		first := true
		if n.children == nil {
			return
		}
		n.children.Ascend(func(c *inode) bool {
			if c.parent != n {
				err = fmt.Errorf("child %d (%q) of %d points at another parent", c.id, c.name, n.id)
				return false
			}
			if !first && c.name <= prev {
				err = fmt.Errorf("children of %d out of order or duplicate: %q after %q", n.id, c.name, prev)
				return false
			}
			first, prev = false, c.name
			visit(c, depth+1)
			return err == nil
		})
	}
	visit(s.root, 0)
	if err != nil {
		return err
	}
	if len(seen) != len(s.inodes) {
		for id := range s.inodes {
			if !seen[id] {
				return fmt.Errorf("inode %d is in the id map but not in the tree", id)
			}
		}
	}
	for p, m := range s.mounts {
		n := s.lookup(p)
		if n == nil || !n.dir || !n.mountPoint {
			return fmt.Errorf("mount %s has no mount-point directory", p)
		}
		if m.GetMountId() >= s.nextMountID {
			return fmt.Errorf("mount %s id %d not below counter %d", p, m.GetMountId(), s.nextMountID)
		}
	}
	if _, ok := s.mounts["/"]; !ok {
		return fmt.Errorf("no root mount")
	}
	for id, n := range s.inodes {
		if _, in := s.ttls[id]; in != (n.ttl > 0) {
			return fmt.Errorf("inode %d (%s) has ttl %d but the TTL index says %v", id, s.pathOf(n), n.ttl, in)
		}
	}
	for id, n := range s.ttls {
		if s.inodes[id] != n {
			return fmt.Errorf("the TTL index holds inode %d, which is not in the namespace", id)
		}
	}
	for a, id := range s.workerIDs {
		if id >= s.nextWorkerID {
			return fmt.Errorf("worker %s id %d not below counter %d", a, id, s.nextWorkerID)
		}
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
			fmt.Fprintf(&b, "%s id=%d dir=%v mode=%o owner=%q group=%q ctime=%d mtime=%d persist=%v pinned=%v",
				s.pathOf(n), n.id, n.dir, n.mode, n.owner, n.group, n.ctime, n.mtime, n.persist, n.pinned)
			if n.dir {
				fmt.Fprintf(&b, " loaded=%v mountpoint=%v children=%d ttl=%d/%q\n", n.childrenLoaded, n.mountPoint, n.childCount(), n.ttl, n.ttlAction)
			} else {
				fmt.Fprintf(&b, " len=%d bs=%d wt=%v complete=%v fp=%q repl=%d..%d ttl=%d/%q\n",
					n.length, n.blockSize, n.writeType, n.completed, n.fingerprint, n.replMin, n.replMax, n.ttl, n.ttlAction)
			}
			return true
		})
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
	return b.String()
}

// persisted reports whether n's bytes (or directory) are in the UFS.
func (n *inode) persisted() bool { return n.persist == api.PersistenceState_PERSISTED }
