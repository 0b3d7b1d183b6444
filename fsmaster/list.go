package fsmaster

import (
	"context"

	"google.golang.org/grpc/codes"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/paths"
)

// ListStatus returns one page of the children of a directory (or of its
// whole subtree, in pre-order with children by name, when recursive). The
// page token is the last name (or, recursive, the last path) returned, so a
// page is found again by a btree seek however the directory changed since,
// and no listing is ever built whole.
func (ns *namespace) ListStatus(ctx context.Context, req *api.ListStatusRequest) (*api.ListStatusResponse, error) {
	ns.op("ls")
	// What an earlier listing learned ahead may be on this page: it is
	// answered once that is durable too.
	ns.aheadMu.Lock()
	prevAhead, more := ns.ahead, ns.aheadMore
	ns.aheadMu.Unlock()
	// Directories learned from the UFS on the way are journaled as the
	// listing goes; it waits for the journal once, before it answers.
	var learned *txn
	resp, err := ns.listStatus(ctx, req, &learned, false)
	if err == nil && (learned != nil || more) {
		ns.learnAhead(ctx, req, resp)
	}
	if learned != nil {
		if werr := learned.wait(ctx); werr != nil {
			return nil, werr
		}
	}
	if prevAhead != nil {
		werr := prevAhead.wait(ctx)
		if werr == nil || ctx.Err() == nil {
			// Durable, or failed (and said so once): no listing need wait
			// for it again. A txn of an earlier lead must not fail
			// every later listing.
			ns.aheadMu.Lock()
			if ns.ahead == prevAhead {
				ns.ahead = nil
			}
			ns.aheadMu.Unlock()
		}
		if werr != nil {
			return nil, werr
		}
	}
	if resp != nil {
		// A listing carries only the extended attributes asked for.
		for _, fi := range resp.Infos {
			if len(fi.Xattrs) > 0 {
				fi.Xattrs = pickXattrs(fi.Xattrs, req.GetXattrs())
			}
		}
	}
	return resp, err
}

// learnAhead learns, while the journal makes this page's learned entries
// durable, the directories the next page of a recursive listing that is
// learning a tree will need: their UFS listings and journal entries then
// overlap this page's fsync and the caller's round trip instead of
// following them. It lists nothing (dry); errors are left for the next
// page to meet. A listing that syncs every directory (ALWAYS) gets no
// learn-ahead: it would sync them twice.
func (ns *namespace) learnAhead(ctx context.Context, req *api.ListStatusRequest, resp *api.ListStatusResponse) {
	if !req.GetRecursive() || resp.NextPageToken == "" || req.GetLoadMetadataType() == api.LoadMetadataType_ALWAYS {
		return
	}
	next := &api.ListStatusRequest{Path: req.GetPath(), Recursive: true, PageSize: req.GetPageSize(),
		PageToken: resp.NextPageToken, LoadMetadataType: req.GetLoadMetadataType()}
	var t *txn
	_, _ = ns.listStatus(ctx, next, &t, true)
	ns.aheadMu.Lock()
	defer ns.aheadMu.Unlock()
	ns.aheadMore = t != nil
	if t != nil {
		// Journal order is durability order: waiting for the newest
		// learn-ahead covers the ones before it.
		ns.ahead = t
	}
}

// listStatus lists one page; a dry one only learns what the page needs
// (its infos carry nothing but their paths).
func (ns *namespace) listStatus(ctx context.Context, req *api.ListStatusRequest, learned **txn, dry bool) (*api.ListStatusResponse, error) {
	const op = "ls"
	p, err := ns.clean(op, req.GetPath())
	if err != nil {
		return nil, err
	}
	size := int(req.GetPageSize())
	switch {
	case size < 0:
		return nil, errf(codes.InvalidArgument, op, p, "negative page size %d", size)
	case size == 0:
		size = ns.cfg.defaultPage
	case size > ns.cfg.maxPage:
		size = ns.cfg.maxPage
	}
	token := req.GetPageToken()
	var after []string // recursive: the token's components below p
	if req.GetRecursive() && token != "" {
		t, err := paths.Clean(token)
		if err != nil || t == p || !paths.IsAncestor(p, t) {
			return nil, errf(codes.InvalidArgument, op, p, "page token %q is not a path below %s", token, p)
		}
		after = relComponents(p, t)
	}
	lt := req.GetLoadMetadataType()
	if err := ns.ensureLoaded(ctx, p, lt); err != nil {
		return nil, err
	}
	sp := ns.syncPolicy(lt, ns.now())
	resp := &api.ListStatusResponse{}
	pr := ns.caller(ctx)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		ns.mu.RLock()
		if err := ns.usable(); err != nil {
			ns.mu.RUnlock()
			return nil, err
		}
		n := ns.st.lookup(p)
		if n == nil {
			err := ns.missing(op, p, p, pr, "no such file or directory")
			ns.mu.RUnlock()
			return nil, err
		}
		perr := ns.traverse(op, p, pr, n)
		if perr == nil && n.dir() {
			perr = ns.need(op, p, pr, n, permR|permX)
		}
		if perr != nil {
			ns.mu.RUnlock()
			return nil, perr
		}
		if !n.dir() {
			if token == "" {
				resp.Infos = append(resp.Infos, ns.info(n, p, req.GetIncludeBlocks()))
			}
			ns.mu.RUnlock()
			return resp, nil
		}
		var load string // a directory to merge from the UFS before going on
		if !req.GetRecursive() {
			if sp.needs(n) && token == "" && len(resp.Infos) == 0 {
				load = p
			} else {
				more := ns.listDir(n, p, token, size, req.GetIncludeBlocks(), resp)
				ns.mu.RUnlock()
				if more {
					resp.NextPageToken = resp.Infos[len(resp.Infos)-1].GetName()
				}
				return resp, nil
			}
		} else {
			var full bool
			var deny error
			full, load, deny = ns.listTree(n, p, after, size, sp, req.GetIncludeBlocks(), resp, pr, dry)
			if deny != nil {
				ns.mu.RUnlock()
				return nil, deny
			}
			if load == "" {
				ns.mu.RUnlock()
				if full {
					resp.NextPageToken = resp.Infos[len(resp.Infos)-1].GetPath()
				}
				return resp, nil
			}
		}
		ns.mu.RUnlock()
		t, err := ns.learnChildren(ctx, load)
		if t != nil {
			*learned = t
		}
		if err != nil {
			return nil, err
		}
		if req.GetRecursive() && len(resp.Infos) > 0 {
			after = relComponents(p, resp.Infos[len(resp.Infos)-1].GetPath())
		}
	}
}

// relComponents returns the names of clean path b below its ancestor a.
func relComponents(a, b string) []string {
	return paths.Components("/" + paths.Rel(a, b))
}

// listDir appends up to size children of n after name token; it reports
// whether more children follow.
func (ns *namespace) listDir(n *inode, p, token string, size int, blocks bool, resp *api.ListStatusResponse) (more bool) {
	visit := func(c *inode) bool {
		if c.name == token && token != "" {
			return true
		}
		if len(resp.Infos) == size {
			more = true
			return false
		}
		resp.Infos = append(resp.Infos, ns.info(c, paths.Join(p, c.name), blocks))
		return true
	}
	n.kids.ascend(token, visit)
	return more
}

// listTree appends the subtree of n in pre-order, starting after the
// position `after` (components relative to n), until the page holds size
// infos (full) or a directory must be merged from the UFS before its
// children can be listed (load names it; the caller merges it and resumes
// after the last info of the page).
func (ns *namespace) listTree(n *inode, p string, after []string, size int, sp syncPolicy, blocks bool, resp *api.ListStatusResponse, pr principal, dry bool) (full bool, load string, deny error) {
	// resumed: d is on the page token's path (or is its last entry), so an
	// earlier page synced it.
	var visit func(d *inode, dp string, after []string, resumed bool) bool // false: stop
	visit = func(d *inode, dp string, after []string, resumed bool) bool {
		// Every directory listed needs read and execute: a subtree the
		// caller may not list stops the listing (it is never skipped
		// silently, so a job never works on part of a tree unknowingly).
		if d != n && !ns.may(pr, d, permR|permX) {
			deny = ns.denied("ls", p, pr, d, permR|permX)
			return false
		}
		// A directory the page token lies in, or ends at, was synced by an
		// earlier page.
		if !resumed && sp.needs(d) {
			load = dp
			return false
		}
		if d.kids == nil {
			return true
		}
		cont := true
		each := func(c *inode) bool {
			cp := paths.Join(dp, c.name)
			if len(after) > 0 && c.name == after[0] {
				// Already returned: only its subtree may be left.
				if c.dir() {
					cont = visit(c, cp, after[1:], true)
				}
				return cont
			}
			if len(resp.Infos) == size {
				full = true
				cont = false
				return false
			}
			if dry {
				resp.Infos = append(resp.Infos, &api.FileInfo{Path: cp})
			} else {
				resp.Infos = append(resp.Infos, ns.info(c, cp, blocks))
			}
			if c.dir() {
				cont = visit(c, cp, nil, false)
			}
			return cont
		}
		from := ""
		if len(after) > 0 {
			from = after[0]
		}
		d.kids.ascend(from, each)
		return cont
	}
	// The directory being listed itself was checked by the caller's
	// ensureLoaded; its children may still need merging.
	visit(n, p, after, len(after) > 0)
	return full, load, deny
}
