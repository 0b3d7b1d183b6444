package plans

import (
	"context"
	"fmt"
	"io"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/paths"
)

// walker lists the files under a root in depth-first order, children by
// name, with recursive listings of the FS master: a page holds up to
// pageSize entries across however many directories, so a tree of many
// small directories costs a call per page, not one per directory. The
// page token is the last path returned, so resuming "after /r/a/b/c"
// starts right after it, and memory holds two pages whatever the tree:
// the one being walked and the next, asked for meanwhile so that the FS
// master lists while the planner plans.
type walker struct {
	fs       api.FileSystemMasterClient
	root     string
	pageSize int32
	blocks   bool // ask for block locations
	// sync has the FS master sync each directory with its UFS when the
	// walk first lists it, so a walk sees what the UFS holds now.
	sync bool
	// dirs: Next returns directories too, each before what it holds (the
	// order of the recursive listing).
	dirs bool

	started    bool
	token      string // the last path listed ("" before the first page)
	page       []*api.FileInfo
	i          int
	last       bool // no page after this one
	rootIsFile *api.FileInfo
	ahead      chan listed // the next page, under way; nil: none asked
	stop       context.CancelFunc
}

type listed struct {
	resp *api.ListStatusResponse
	err  error
}

func newWalker(fs api.FileSystemMasterClient, root, after string, pageSize int32, blocks bool) *walker {
	w := &walker{fs: fs, root: root, pageSize: pageSize, blocks: blocks}
	switch {
	case after == root:
		w.last = true // resuming after the root itself (a file)
		w.started = true
	case after != "" && paths.IsAncestor(root, after):
		w.token = after
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
		w.rootIsFile, w.last = resp.Info, true
	}
	return nil
}

// Next returns the next file, or io.EOF after the last.
func (w *walker) Next(ctx context.Context) (*api.FileInfo, error) {
	if !w.started {
		if err := w.start(ctx); err != nil {
			return nil, err
		}
	}
	if f := w.rootIsFile; f != nil {
		w.rootIsFile = nil
		return f, nil
	}
	for {
		for w.i < len(w.page) {
			info := w.page[w.i]
			w.page[w.i] = nil // the page's infos go as they are returned
			w.i++
			if !info.GetFolder() || w.dirs {
				return info, nil
			}
		}
		if w.last {
			return nil, io.EOF
		}
		if err := w.fetch(ctx); err != nil {
			return nil, err
		}
	}
}

func (w *walker) fetch(ctx context.Context) error {
	var resp *api.ListStatusResponse
	var err error
	if w.ahead != nil {
		r := <-w.ahead
		w.ahead = nil
		resp, err = r.resp, r.err
		if err != nil && ctx.Err() == nil {
			resp, err = w.list(ctx, w.token) // once more, in this call's context
		}
	} else {
		resp, err = w.list(ctx, w.token)
	}
	if err != nil {
		return err
	}
	w.page, w.i = resp.Infos, 0
	w.token = resp.NextPageToken // the last path listed
	w.last = w.token == ""
	if !w.last {
		if w.stop == nil {
			ctx, w.stop = context.WithCancel(ctx)
		}
		ch := make(chan listed, 1)
		w.ahead = ch
		go func(token string) {
			resp, err := w.list(ctx, token)
			ch <- listed{resp, err}
		}(w.token)
	}
	return nil
}

func (w *walker) list(ctx context.Context, token string) (*api.ListStatusResponse, error) {
	req := &api.ListStatusRequest{Path: w.root, Recursive: true, PageSize: w.pageSize, PageToken: token, IncludeBlocks: w.blocks}
	if w.sync {
		// The FS master syncs each directory once per walk: those a page
		// enters, not those it resumes inside.
		req.LoadMetadataType = api.LoadMetadataType_ALWAYS
	}
	resp, err := w.fs.ListStatus(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", w.root, err)
	}
	return resp, nil
}

// close stops a listing under way.
func (w *walker) close() {
	if w.stop != nil {
		w.stop()
	}
}
