package plans

import (
	"context"
	"fmt"
	"io"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/paths"
)

// walker lists the files under a root depth-first, one directory page at a
// time, so memory holds at most one page per directory level however big
// the tree. The FS master lists a directory's children in name order and
// its page token is the last name returned; so resuming "after /r/a/b/c"
// lists /r/a/b after "c", then /r/a after "b", then /r after "a" — a few
// calls, whatever came before.
type walker struct {
	fs       api.FileSystemMasterClient
	root     string
	pageSize int32
	blocks   bool // ask for block locations
	// sync has the FS master sync each directory with its UFS when the
	// walk first lists it, so a walk sees what the UFS holds now.
	sync bool

	started    bool
	stack      []*dirIter
	after      []string // resume point below root, as components; nil: none
	rootDone   bool     // resuming after the root itself (a file)
	rootIsFile *api.FileInfo
}

type dirIter struct {
	path  string
	token string
	page  []*api.FileInfo
	i     int
	last  bool // no page after this one
}

func newWalker(fs api.FileSystemMasterClient, root, after string, pageSize int32, blocks bool) *walker {
	w := &walker{fs: fs, root: root, pageSize: pageSize, blocks: blocks}
	switch {
	case after == root:
		w.rootDone = true
	case after != "" && paths.IsAncestor(root, after):
		w.after = paths.Components("/" + paths.Rel(root, after))
	}
	return w
}

// start stats the root: a file walks as itself, a directory as its subtree.
func (w *walker) start(ctx context.Context) error {
	w.started = true
	resp, err := w.fs.GetStatus(ctx, &api.GetStatusRequest{Path: w.root})
	if err != nil {
		return fmt.Errorf("stat %s: %w", w.root, err)
	}
	if !resp.Info.GetFolder() {
		if !w.rootDone {
			w.rootIsFile = resp.Info
		}
		return nil
	}
	dir := w.root
	if len(w.after) == 0 {
		w.stack = append(w.stack, &dirIter{path: dir})
		return nil
	}
	// One iterator per level of the resume path, each starting after the
	// name on that path; the deepest is on top and goes first.
	for _, name := range w.after {
		w.stack = append(w.stack, &dirIter{path: dir, token: name})
		dir = paths.Join(dir, name)
	}
	return nil
}

// Next returns the next file, or io.EOF after the last.
func (w *walker) Next(ctx context.Context) (*api.FileInfo, error) {
	if !w.started {
		if err := w.start(ctx); err != nil {
			return nil, err
		}
		if w.rootIsFile != nil {
			f := w.rootIsFile
			w.rootIsFile = nil
			return f, nil
		}
	}
	for len(w.stack) > 0 {
		d := w.stack[len(w.stack)-1]
		if d.i >= len(d.page) {
			if d.last {
				w.stack = w.stack[:len(w.stack)-1]
				continue
			}
			if err := w.fetch(ctx, d); err != nil {
				return nil, err
			}
			continue
		}
		info := d.page[d.i]
		d.i++
		if info.GetFolder() {
			w.stack = append(w.stack, &dirIter{path: childPath(d.path, info)})
			continue
		}
		return info, nil
	}
	return nil, io.EOF
}

func childPath(dir string, info *api.FileInfo) string {
	if p := info.GetPath(); p != "" {
		return p
	}
	return paths.Join(dir, info.GetName())
}

func (w *walker) fetch(ctx context.Context, d *dirIter) error {
	req := &api.ListStatusRequest{Path: d.path, PageSize: w.pageSize, PageToken: d.token, IncludeBlocks: w.blocks}
	if w.sync && d.token == "" {
		req.LoadMetadataType = api.LoadMetadataType_ALWAYS
	}
	resp, err := w.fs.ListStatus(ctx, req)
	if err != nil {
		if status.Code(err) == codes.NotFound && d.path != w.root {
			// Deleted while we walked (or before a resume): nothing left.
			d.page, d.i, d.last = nil, 0, true
			return nil
		}
		return fmt.Errorf("list %s: %w", d.path, err)
	}
	d.page, d.i = resp.Infos, 0
	d.token = resp.NextPageToken
	d.last = resp.NextPageToken == ""
	return nil
}
