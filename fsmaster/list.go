package fsmaster

import (
	"context"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

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
	// Directories learned from the UFS on the way are journaled as the
	// listing goes; it waits for the journal once, before it answers:
	// for its own entries (learned) and for the newest a learn-ahead had
	// made when the page was built (seen), which covers every learned
	// inode on the page (journal order is durability order).
	var learned, seen *txn
	resp, err := ns.listStatus(ctx, req, &learned, &seen, nil)
	if err == nil {
		ns.learnAhead(ctx, req, resp, learned != nil)
	}
	if learned != nil {
		if werr := learned.wait(ctx); werr != nil {
			return nil, werr
		}
	}
	if seen != nil && seen != learned {
		if werr := seen.wait(ctx); werr != nil {
			if ctx.Err() == nil {
				// Failed (and said so once): a txn of an earlier lead must
				// not fail every later listing.
				ns.mu.Lock()
				if ns.learnLast == seen {
					ns.learnLast = nil
				}
				ns.mu.Unlock()
			}
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

// maxAhead bounds the learn-aheads running at once (over all listings).
const maxAhead = 2

// aheadDepth is how many pages a listing's learn-aheads run ahead of the
// pages it has asked for.
const aheadDepth = 2

// learnAhead starts learning, in the background, the directories the next
// pages of a recursive listing that is learning a tree will need: their
// UFS listings and journal entries then overlap this page's fsync, its
// answer on the wire and the caller's next call instead of following them
// (the next page meets them learned, or waits for the directory being
// learned: learnShared). A learn-ahead that learned something goes on to
// the page after its own, up to aheadDepth pages ahead of the listing, so
// the learning does not stop while a page travels to the caller and the
// caller asks for the next one. It lists nothing (dry) and keeps the
// caller's identity (its permissions stop it as they would the listing);
// errors are left for the next page to meet. A listing that syncs every
// directory (ALWAYS) gets no learn-ahead: it would sync them twice.
func (ns *namespace) learnAhead(ctx context.Context, req *api.ListStatusRequest, resp *api.ListStatusResponse, learned bool) {
	if !req.GetRecursive() || resp.NextPageToken == "" || req.GetLoadMetadataType() == api.LoadMetadataType_ALWAYS {
		return
	}
	p := req.GetPath()
	ns.aheadMu.Lock()
	defer ns.aheadMu.Unlock()
	// Whether this listing is still learning its tree: this page learned,
	// or the learn-ahead of this page learned or is still at it. Once
	// neither, the tree is known: no more learn-aheads for this listing
	// (another listing's learning says nothing about this one's tree).
	k := aheadKey{path: p, token: req.GetPageToken()}
	if prev := ns.aheads[k]; prev != nil {
		delete(ns.aheads, k)
		learned = learned || prev.running || prev.more
	}
	if !learned {
		return
	}
	// Go on from the last page learned ahead, unless a learn-ahead is
	// still at it (it goes on by itself, now this many pages ahead of the
	// listing) or the tree turned out known.
	k.token = resp.NextPageToken
	for depth := 1; depth <= aheadDepth; depth++ {
		st := ns.aheads[k]
		if st == nil {
			ns.startAhead(ctx, req, k, depth)
			return
		}
		st.depth = min(st.depth, depth)
		if st.running || !st.more || st.next == "" {
			return
		}
		k.token = st.next
	}
}

// startAhead starts the learn-ahead of the page after token k.token of
// the listing req, depth pages ahead of the page that asked, unless too
// many run. Call with aheadMu held.
func (ns *namespace) startAhead(ctx context.Context, req *api.ListStatusRequest, k aheadKey, depth int) {
	if ns.aheadRun >= maxAhead || ns.aheadCtx.Err() != nil || ns.aheads[k] != nil {
		return
	}
	if len(ns.aheads) >= maxAheadsKept {
		// Listings given up mid-way leave theirs behind: forget the
		// finished ones (a listing that loses its own only stops
		// learning ahead until one of its pages learns again).
		for k, s := range ns.aheads {
			if !s.running {
				delete(ns.aheads, k)
			}
		}
	}
	next := &api.ListStatusRequest{Path: req.GetPath(), Recursive: true, PageSize: req.GetPageSize(),
		PageToken: k.token, LoadMetadataType: req.GetLoadMetadataType()}
	st := &aheadState{running: true, depth: depth}
	ns.aheads[k] = st
	ns.aheadRun++
	ns.aheadWG.Add(1)
	// The call's values (its identity), not its end: the learning
	// outlives the answer, until the namespace closes.
	bctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ns.aheadCtx, cancel)
	go func() {
		defer ns.aheadWG.Done()
		defer cancel()
		defer stop()
		var t, seen *txn
		out := &dryPage{}
		resp, err := ns.listStatus(bctx, next, &t, &seen, out)
		ns.aheadMu.Lock()
		defer ns.aheadMu.Unlock()
		ns.aheadRun--
		st.running = false
		if err != nil || resp == nil {
			return
		}
		// A page of files only (a directory bigger than a page) says
		// nothing about whether the tree is known yet.
		st.more, st.next = t != nil || out.dirs == 0, resp.NextPageToken
		if st.more && st.next != "" && st.depth < aheadDepth {
			ns.startAhead(bctx, next, aheadKey{path: k.path, token: st.next}, st.depth+1)
		}
	}()
}

// aheadKey names the learn-ahead of one page of a listing: the path
// listed and the page token the page starts after.
type aheadKey struct{ path, token string }

// aheadState is what one learn-ahead did, under aheadMu.
type aheadState struct {
	running bool
	// more: its listing's tree may still be unknown further on (it
	// journaled something, or met no directory); next is its page's end.
	more bool
	next string
	// depth: how many pages ahead of its listing's last page it is (the
	// listing's pages bring it closer); it goes on while below aheadDepth.
	depth int
}

// maxAheadsKept bounds the learn-ahead states kept for listings that have
// not asked for their next page yet.
const maxAheadsKept = 64

// stopAhead ends the learn-aheads and waits for them.
func (ns *namespace) stopAhead() {
	ns.aheadMu.Lock()
	ns.aheadStop()
	ns.aheadMu.Unlock()
	ns.aheadWG.Wait()
}

// learnShared is learnChildren for listings: a directory a listing or a
// learn-ahead is learning already is waited for, not learned twice (the
// caller looks again: it may still need learning if that failed).
func (ns *namespace) learnShared(ctx context.Context, p string) (*txn, error) {
	ns.aheadMu.Lock()
	if ch, ok := ns.learning[p]; ok {
		ns.aheadMu.Unlock()
		select {
		case <-ch:
			return nil, nil
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	ch := make(chan struct{})
	ns.learning[p] = ch
	ns.aheadMu.Unlock()
	defer func() {
		ns.aheadMu.Lock()
		delete(ns.learning, p)
		ns.aheadMu.Unlock()
		close(ch)
	}()
	return ns.learnChildren(ctx, p)
}

// listStatus lists one page; a dry one (dry not nil) only learns what the
// page needs (it returns no infos, only the page's end in NextPageToken)
// and counts in dry the directories it met. seen is
// set to the newest learning txn when the page was built: every learned
// inode on the page is durable once it is.
func (ns *namespace) listStatus(ctx context.Context, req *api.ListStatusRequest, learned, seen **txn, dry *dryPage) (*api.ListStatusResponse, error) {
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
	pg := &page{resp: resp, dry: dry}
	if lt != api.LoadMetadataType_ALWAYS {
		// Up to learnWidth directories learned at once: the one the page
		// needs next and those the walk meets after it.
		pg.gather = ns.cfg.learnWidth
	}
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
		*seen = ns.learnLast
		if !n.dir() {
			if token == "" && dry == nil {
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
			full, load, deny = ns.listTree(n, p, after, size, sp, req.GetIncludeBlocks(), pg, pr)
			if deny != nil {
				ns.mu.RUnlock()
				return nil, deny
			}
			if load == "" {
				ns.mu.RUnlock()
				if full {
					resp.NextPageToken = pg.lastPath()
				}
				return resp, nil
			}
		}
		ns.mu.RUnlock()
		var t *txn
		if lt == api.LoadMetadataType_ALWAYS {
			// A sync of its own: one under way may have read the UFS
			// before this call began.
			t, err = ns.learnChildren(ctx, load)
		} else {
			t, err = ns.learnSiblings(ctx, load, pg.extra)
			pg.extra = pg.extra[:0]
		}
		if t != nil {
			*learned = t
		}
		if err != nil {
			return nil, err
		}
		if req.GetRecursive() && pg.n > 0 {
			after = relComponents(p, pg.lastPath())
		}
	}
}

// page is a recursive listing's page as it is built: a dry one (a
// learn-ahead's) counts its entries and keeps no infos.
type page struct {
	resp *api.ListStatusResponse
	dry  *dryPage // nil: not dry
	n    int      // entries on the page
	slab infoSlab
	strs strSlab
	// last is the last entry's path; a dry page joins it only when asked
	// (lastPath) from its directory and name: a path a file was most of
	// what a learn-ahead's walk allocated.
	last, lastDir, lastName string
	// gather: how many directories to learn at once (0, 1: one); extra:
	// those the walk met after the one it stopped at (see listTree).
	gather int
	extra  []string
}

// lastPath is the path of the page's last entry ("" if none).
func (pg *page) lastPath() string {
	if pg.last == "" && pg.lastName != "" {
		pg.last = paths.Join(pg.lastDir, pg.lastName)
	}
	return pg.last
}

// learnWidth is how many directories a listing learns at once: the one
// its walk must learn to go on and the next ones it meets that need
// learning too (siblings, cousins, the next chains of a deep tree). A
// directory's learning is mostly serial (a small one's stats one at a
// time, its journal entries, its children applied under the state lock),
// so one learner at a time leaves a core idle; a cold tree (its stats on
// the kernel's CPU or the disk) gains most.
const learnWidth = 4

// learnSiblings learns directory p and, at the same time, the directories
// in extra (each at most once at a time, as learnShared does). Only p's
// error is returned: an extra that failed is still unknown, and the walk
// meets it (and its error) in its turn. The txn is p's, or an extra's when
// p journaled nothing: the caller's page waits for the newest learning
// entry it saw anyway, which is after all of them.
func (ns *namespace) learnSiblings(ctx context.Context, p string, extra []string) (*txn, error) {
	if len(extra) == 0 {
		return ns.learnShared(ctx, p)
	}
	ts := make([]*txn, len(extra))
	var wg sync.WaitGroup
	for i, e := range extra {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ts[i], _ = ns.learnShared(ctx, e)
		}()
	}
	t, err := ns.learnShared(ctx, p)
	wg.Wait()
	for _, x := range ts {
		if t == nil {
			t = x
		}
	}
	return t, err
}

// dryPage is what a dry page (a learn-ahead's) met.
type dryPage struct {
	dirs int // directories on the page
}

// relComponents returns the names of clean path b below its ancestor a.
func relComponents(a, b string) []string {
	return paths.Components("/" + paths.Rel(a, b))
}

// listDir appends up to size children of n after name token; it reports
// whether more children follow.
func (ns *namespace) listDir(n *inode, p, token string, size int, blocks bool, resp *api.ListStatusResponse) (more bool) {
	var (
		slab infoSlab
		strs strSlab
	)
	visit := func(c *inode) bool {
		if c.name == token && token != "" {
			return true
		}
		if len(resp.Infos) == size {
			more = true
			return false
		}
		left := min(size, n.childCount()) - len(resp.Infos)
		resp.Infos = append(resp.Infos, ns.fillInfo(slab.next(left), c, strs.join(p, c.name), blocks, &strs))
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
func (ns *namespace) listTree(n *inode, p string, after []string, size int, sp syncPolicy, blocks bool, pg *page, pr principal) (full bool, load string, deny error) {
	// resumed: d is on the page token's path (or is its last entry), so an
	// earlier page synced it.
	//
	// Gathering (pg.gather > 1): once it met the directory to load, the
	// walk goes on past it (its children unknown) to find up to
	// pg.gather-1 more that need learning (pg.extra), for the caller to
	// learn at once; the page is then taken back to where it stopped.
	var (
		markN    int
		markLast string
	)
	gathering := func() bool { return load != "" }
	var visit func(d *inode, dp string, after []string, resumed bool) bool // false: stop
	visit = func(d *inode, dp string, after []string, resumed bool) bool {
		// Every directory listed needs read and execute: a subtree the
		// caller may not list stops the listing (it is never skipped
		// silently, so a job never works on part of a tree unknowingly).
		if d != n && !ns.may(pr, d, permR|permX) {
			if !gathering() {
				deny = ns.denied("ls", p, pr, d, permR|permX)
			} // else: the walk meets it in its turn, after load
			return false
		}
		// A directory the page token lies in, or ends at, was synced by an
		// earlier page.
		if !resumed && sp.needs(d) {
			if !gathering() {
				load = dp
				if pg.gather <= 1 {
					return false
				}
				markN, markLast = pg.n, pg.lastPath()
				return true // past it, its children unknown
			}
			pg.extra = append(pg.extra, dp)
			return len(pg.extra) < pg.gather-1
		}
		if d.kids == nil {
			return true
		}
		cont := true
		each := func(c *inode) bool {
			var cp string // a dry page's files need none
			if pg.dry == nil || c.dir() {
				cp = pg.strs.join(dp, c.name)
			}
			if len(after) > 0 && c.name == after[0] {
				// Already returned: only its subtree may be left.
				if c.dir() {
					cont = visit(c, cp, after[1:], true)
				}
				return cont
			}
			if pg.n == size {
				full = true
				cont = false
				return false
			}
			pg.n++
			pg.last, pg.lastDir, pg.lastName = cp, dp, c.name
			if pg.dry == nil && !gathering() {
				pg.resp.Infos = append(pg.resp.Infos, ns.fillInfo(pg.slab.next(size-pg.n+1), c, cp, blocks, &pg.strs))
			}
			if c.dir() {
				if pg.dry != nil && !gathering() {
					pg.dry.dirs++
				}
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
	if gathering() && pg.gather > 1 {
		// Back to where the walk met load: the caller learns it (and the
		// extras) and resumes after its entry.
		pg.n, pg.last, pg.lastName, full = markN, markLast, "", false
	}
	return full, load, deny
}
