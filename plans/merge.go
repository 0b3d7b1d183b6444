package plans

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/paths"
	"github.com/alluvium/alluvium/plans/spec"
)

// Copy, move and sync walk their source and their destination together:
// both walks list in the same order (depth first, children by name), so
// one pass over both pairs each source file with what is at its place
// under the destination — a few listing pages of each tree at a time,
// never a whole listing, and no call per file. What it yields is a merge
// of the two sorted streams: a source file with its destination file (or
// nothing there), a destination file or directory the source lacks (what
// sync deletes), and the conflicts (a file where the other side has a
// directory). The filter is applied here, to both sides, so a file it
// leaves out is neither copied nor deleted.

// pair is one place of the merge: rel is the path below both roots ("":
// the roots themselves, when the source is a file).
type pair struct {
	rel      string
	src, dst *api.FileInfo // nil: nothing there
}

// srcOnly, dstOnly and both say which sides hold the place.
func (p pair) srcOnly() bool { return p.src != nil && p.dst == nil }
func (p pair) dstOnly() bool { return p.src == nil && p.dst != nil }

// treeWalk is one side of the merge.
type treeWalk struct {
	w    *walker
	root string
	next *api.FileInfo // peeked; nil with eof
	rel  string        // next's rel
	eof  bool
	prev string // the last rel taken, to check the order
	any  bool
}

// peek makes next the walk's next entry.
func (t *treeWalk) peek(ctx context.Context) error {
	if t.next != nil || t.eof {
		return nil
	}
	f, err := t.w.Next(ctx)
	switch {
	case errors.Is(err, io.EOF):
		t.eof = true
		return nil
	case err != nil:
		return err
	}
	rel := ""
	if f.GetPath() != t.root {
		if !paths.IsAncestor(t.root, f.GetPath()) {
			return status.Errorf(codes.Internal, "listing %s returned %s, outside it", t.root, f.GetPath())
		}
		rel = paths.Rel(t.root, f.GetPath())
	}
	// The merge is only right on sorted walks: a listing out of order
	// must stop the job, never pair (or delete) the wrong files.
	if t.any && relCompare(t.prev, rel) >= 0 {
		return status.Errorf(codes.Internal, "listing %s: %q came after %q, out of order; stopping", t.root, rel, t.prev)
	}
	t.next, t.rel, t.prev, t.any = f, rel, rel, true
	return nil
}

// take consumes next.
func (t *treeWalk) take() *api.FileInfo {
	f := t.next
	t.next = nil
	return f
}

// relCompare orders relative paths as the walks list them: component by
// component ("a/x" before "a.txt", a directory before what it holds).
func relCompare(a, b string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		ca, cb := a[i], b[i]
		if ca == cb {
			continue
		}
		switch {
		case ca == '/':
			return -1
		case cb == '/':
			return 1
		case ca < cb:
			return -1
		}
		return 1
	}
	return len(a) - len(b)
}

// joinRel is the path rel below root ("": root itself).
func joinRel(root, rel string) string {
	if rel == "" {
		return root
	}
	return paths.Join(root, rel)
}

// under reports whether rel is inside the directory dir (both relative).
func under(dir, rel string) bool {
	return dir == "" && rel != "" || len(rel) > len(dir) && rel[len(dir)] == '/' && strings.HasPrefix(rel, dir)
}

// merger merges the walks of a source and a destination tree.
type merger struct {
	src, dst treeWalk
	sel      *spec.Selector
	env      Env
	cur      pair
	lastFile string // the last place of a file yielded, as a source path (the resume point)
	// skip: a subtree (rel) one side holds as a directory where the other
	// has a file; its entries are passed over (the conflict was yielded).
	skip    string
	skipSet bool
	started bool
}

// start stats both roots: the source must exist (a source that cannot be
// listed is never taken for an empty one), a destination that does not is
// an empty tree, and a file is never merged with a directory.
func (m *merger) start(ctx context.Context, env Env) error {
	m.started = true
	s, err := env.FS().GetStatus(ctx, &api.GetStatusRequest{Path: m.src.root})
	if err != nil {
		return wrapf(err, "stat the source %s", m.src.root)
	}
	d, err := exists(ctx, env, m.dst.root)
	switch {
	case err != nil:
		return wrapf(err, "stat the destination %s", m.dst.root)
	case d == nil:
		m.dst.eof = true
	case d.GetFolder() != s.GetInfo().GetFolder():
		return status.Errorf(codes.FailedPrecondition, "%s and %s are not both files or both directories now", m.src.root, m.dst.root)
	}
	return nil
}

// newMerger walks src and dst after the source path after ("" : from the
// start); with dirs, directories present on one side only are yielded too.
func newMerger(env Env, srcRoot, dstRoot, after string, pageSize int, sync bool, sel *spec.Selector) *merger {
	if pageSize < 1 {
		pageSize = spec.DefaultPageSize
	}
	dstAfter := ""
	if after != "" {
		dstAfter = joinAfter(srcRoot, dstRoot, after)
	}
	m := &merger{
		env:      env,
		src:      treeWalk{w: newWalker(env.FS(), srcRoot, after, int32(pageSize), true), root: srcRoot},
		dst:      treeWalk{w: newWalker(env.FS(), dstRoot, dstAfter, int32(pageSize), false), root: dstRoot},
		sel:      sel,
		lastFile: after,
	}
	for _, w := range []*walker{m.src.w, m.dst.w} {
		w.sync, w.dirs = sync, true
	}
	return m
}

// Next implements fileSource: it returns the next place's source file (or
// the destination's when the source has none there); Pair says all.
func (m *merger) Next(ctx context.Context) (*api.FileInfo, error) {
	if !m.started {
		if err := m.start(ctx, m.env); err != nil {
			return nil, err
		}
	}
	for {
		if err := m.src.peek(ctx); err != nil {
			return nil, err
		}
		if err := m.dst.peek(ctx); err != nil {
			return nil, wrapf(err, "list the destination %s", m.dst.root)
		}
		var p pair
		switch {
		case m.src.eof && m.dst.eof:
			return nil, io.EOF
		case m.dst.eof || !m.src.eof && relCompare(m.src.rel, m.dst.rel) < 0:
			p = pair{rel: m.src.rel, src: m.src.take()}
		case m.src.eof || relCompare(m.src.rel, m.dst.rel) > 0:
			p = pair{rel: m.dst.rel, dst: m.dst.take()}
		default:
			p = pair{rel: m.src.rel, src: m.src.take(), dst: m.dst.take()}
		}
		if m.skipSet {
			if under(m.skip, p.rel) {
				continue
			}
			m.skipSet = false
		}
		isDir := func(f *api.FileInfo) bool { return f != nil && f.GetFolder() }
		switch {
		case isDir(p.src) && isDir(p.dst):
			continue // both directories: their contents pair up next
		case p.src != nil && p.dst != nil && isDir(p.src) != isDir(p.dst):
			// A file against a directory: yielded once (the plan reports
			// it), the directory's subtree passed over.
			if !m.selected(p) {
				continue
			}
			m.skip, m.skipSet = p.rel, true
		case isDir(p.src):
			continue // its files come next, each on its own
		case !m.selected(p):
			continue
		}
		m.cur = p
		if !isDir(p.src) && !isDir(p.dst) {
			m.lastFile = joinRel(m.src.root, p.rel)
		}
		if p.src != nil {
			return p.src, nil
		}
		return p.dst, nil
	}
}

// selected applies the filter to a place: to the source's file when there
// is one, else the destination's; a directory by its path alone.
func (m *merger) selected(p pair) bool {
	if m.sel == nil {
		return true
	}
	f := p.src
	if f == nil {
		f = p.dst
	}
	rel := p.rel
	if rel == "" {
		rel = f.GetName() // the root is a file: match its name
	}
	if f.GetFolder() {
		return true // what is inside is filtered file by file
	}
	return m.sel.Selects(rel, f.GetLength(), f.GetLastModificationTimeMs())
}

// Pair is the place Next returned last.
func (m *merger) Pair() pair { return m.cur }

// Pos implements fileSource: the last file yielded, as a path under the
// source root, so a resumed merge starts after it on both sides. A
// directory yielded is not a resume point: resuming after it would pass
// over what it holds.
func (m *merger) Pos() string { return m.lastFile }

func (m *merger) String() string { return fmt.Sprintf("merge %s with %s", m.src.root, m.dst.root) }
