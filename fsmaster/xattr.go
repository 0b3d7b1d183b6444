package fsmaster

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
)

// Extended attributes: name → bytes on any inode, journaled with the
// change that sets them (a file's creation or completion, SetAttribute) and
// kept in checkpoints. The S3 gateway keeps an object's ETag, headers and
// user metadata in them, so that every gateway sees them and they change
// with the object's bytes in one step. Few inodes have any: they live in
// the inode's rare attributes (inodeExt).

// Limits of extended attributes: a name, one value, and all of an inode's.
const (
	maxXattrName  = 255
	maxXattrValue = 256 << 10
	maxXattrTotal = 1 << 20
)

// checkXattrNames refuses names an inode cannot carry. Call before the
// change; the State applies whatever passed.
func checkXattrNames(op, p string, set map[string][]byte) error {
	for k, v := range set {
		switch {
		case k == "" || len(k) > maxXattrName || strings.ContainsRune(k, 0):
			return errf(codes.InvalidArgument, op, p, "extended attribute name %q: want 1 to %d bytes, no NUL", k, maxXattrName)
		case len(v) > maxXattrValue:
			return errf(codes.InvalidArgument, op, p, "extended attribute %q has %d bytes; the limit is %d", k, len(v), maxXattrValue)
		}
	}
	return nil
}

// checkXattrTotal refuses a change that would leave n with more than
// maxXattrTotal bytes of extended attributes.
func (s *State) checkXattrTotal(op, p string, n *inode, set map[string][]byte) error {
	if len(set) == 0 {
		return nil
	}
	total := 0
	for k, v := range s.xattrs(n) {
		if _, replaced := set[k]; !replaced {
			total += len(k) + len(v)
		}
	}
	for k, v := range set {
		if len(v) > 0 {
			total += len(k) + len(v)
		}
	}
	if total > maxXattrTotal {
		return errf(codes.InvalidArgument, op, p, "extended attributes of %d bytes; the limit is %d", total, maxXattrTotal)
	}
	return nil
}

// xattrs returns n's extended attributes (nil when none). The map and its
// values belong to the State: read, never change them.
func (s *State) xattrs(n *inode) map[string][]byte {
	if e := s.ext(n); e != nil {
		return e.xattrs
	}
	return nil
}

// setXattrs merges set into n's extended attributes: a name with an empty
// value is removed. Values are kept as given (never changed in place).
func (s *State) setXattrs(n *inode, set map[string][]byte) {
	if len(set) == 0 {
		return
	}
	e := s.extFor(n)
	for k, v := range set {
		if len(v) == 0 {
			delete(e.xattrs, k)
			continue
		}
		if e.xattrs == nil {
			e.xattrs = map[string][]byte{}
		}
		e.xattrs[k] = v
	}
	if len(e.xattrs) == 0 {
		e.xattrs = nil
	}
	s.tidyExt(n)
}

// xattrsCopy returns a copy of n's extended attributes (nil: none), for
// an answer built under ns.mu and sent after it.
func (s *State) xattrsCopy(n *inode) map[string][]byte {
	all := s.xattrs(n)
	if len(all) == 0 {
		return nil
	}
	return maps.Clone(all)
}

// pickXattrs returns the attributes of x that names names (nil: none).
func pickXattrs(x map[string][]byte, names []string) map[string][]byte {
	var out map[string][]byte
	for _, k := range names {
		if v, ok := x[k]; ok {
			if out == nil {
				out = map[string][]byte{}
			}
			out[k] = v
		}
	}
	return out
}

// dumpXattrs renders extended attributes canonically (Dump).
func dumpXattrs(x map[string][]byte) string {
	if len(x) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString(" xattrs")
	for _, k := range slices.Sorted(maps.Keys(x)) {
		fmt.Fprintf(&b, " %q=%x", k, x[k])
	}
	return b.String()
}
