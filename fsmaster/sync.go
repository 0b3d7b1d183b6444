package fsmaster

import (
	"context"
	"errors"
	"iter"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/paths"
	"github.com/alluvium/alluvium/ufs"
)

// Metadata sync: a directory's children are merged from its UFS the first
// time it is listed, and synced again when a call asks for it (ALWAYS) or
// when fsmaster.ufs.sync-interval has passed since the last sync. A sync
// adds what the UFS gained, replaces persisted files whose UFS fingerprint
// changed (their cached blocks go with the old inode) and drops persisted
// entries the UFS lost. What exists only in Alluvium (not persisted, or a
// directory holding such files or a mount) is never dropped.

// loadBatch is how many UFS children are merged per lock hold.
const loadBatch = 1000

// learnBatches recycles learnChildren's batches.
var learnBatches = sync.Pool{New: func() any { return new([]ufs.FileStatus) }}

// syncPolicy says which directories a call re-lists from the UFS: those
// never merged, and those last synced before `before` (unix ns; 0: none).
type syncPolicy struct {
	never  bool
	before int64
}

// syncPolicy returns the policy of one call that began at start. ALWAYS
// syncs each directory the call visits once (not once per page).
func (ns *namespace) syncPolicy(lt api.LoadMetadataType, start time.Time) syncPolicy {
	switch lt {
	case api.LoadMetadataType_NEVER:
		return syncPolicy{never: true}
	case api.LoadMetadataType_ALWAYS:
		return syncPolicy{before: start.UnixNano()}
	}
	if ns.cfg.syncInterval > 0 {
		return syncPolicy{before: start.Add(-ns.cfg.syncInterval).UnixNano()}
	}
	return syncPolicy{}
}

// needs reports whether listing directory n must sync it with the UFS first.
func (sp syncPolicy) needs(n *inode) bool {
	if sp.never || !n.dir() {
		return false
	}
	return !n.childrenLoaded() || n.syncedAt() < sp.before
}

// loadChildren merges the children of directory p from its UFS (the first
// time) or syncs them with it (later), marks it loaded, and waits until
// that is durable.
func (ns *namespace) loadChildren(ctx context.Context, p string) error {
	t, err := ns.learnChildren(ctx, p)
	if err != nil || t == nil {
		return err
	}
	return t.wait(ctx)
}

// learnChildren is loadChildren without the wait: it returns the last txn
// it journaled (nil if none), so that a listing that learns many
// directories waits for the journal once, before it answers.
//
// The UFS listing streams in batches and is never held whole; each batch's
// new children are one journal entry (UfsChildrenEntry). A re-sync only
// remembers the names it saw, to find what the UFS lost.
func (ns *namespace) learnChildren(ctx context.Context, p string) (*txn, error) {
	ns.mu.RLock()
	n := ns.st.lookup(p)
	if n == nil || !n.dir() {
		ns.mu.RUnlock()
		return nil, nil
	}
	id := n.id
	// The first load only merges; a re-sync also reconciles what the
	// namespace holds with what the UFS now has.
	resync := n.childrenLoaded()
	// What a re-sync finds appeared behind Alluvium's back: it is
	// announced (a completion event), as is everything in a directory
	// that itself appeared so (fresh). A first listing otherwise
	// announces nothing: what was there before is not news.
	announce := resync || ns.st.isFresh(id)
	m, rel := ns.st.mountOf(p)
	m = cloneMount(m)
	ns.mu.RUnlock()
	fs, err := ns.fsFor(ctx, m)
	if err != nil {
		return nil, err
	}
	settled := ns.settledCheck(fs)
	var (
		last     *txn
		added    int
		seen     = map[string]struct{}{}
		suspects []string // children whose UFS entry looks different
	)
	// Grown as the listing goes (most directories hold far fewer than
	// loadBatch entries, and a full batch per directory was most of what
	// learning a tree allocated), and recycled: growing one per directory
	// was the next most.
	bp := learnBatches.Get().(*[]ufs.FileStatus)
	batch, used := (*bp)[:0], 0
	defer func() {
		clear(batch[:used]) // keep no names alive
		*bp = batch[:0]
		learnBatches.Put(bp)
	}()
	gone := errors.New("directory went away")
	flush := func(final bool) error {
		// In name order: the directory's children then fill in order (no
		// insertion in the middle of a chunk) and the entry's duplicate
		// check needs no sort. Sorted before the state lock: the page
		// listings and the other learners wait for nothing else.
		slices.SortFunc(batch, func(a, b ufs.FileStatus) int { return strings.Compare(a.Name, b.Name) })
		// The page's records in one allocation (and their mtimes in
		// another), not two per file: the entry holds them until the
		// journal has written it.
		kids := make([]api.UfsChild, 0, len(batch))
		mtimes := make([]int64, 0, len(batch))
		ns.mu.Lock()
		defer ns.mu.Unlock()
		if err := ns.usable(); err != nil {
			return err
		}
		d := ns.st.get(id)
		if d == nil || !d.dir() {
			return gone
		}
		t := ns.begin()
		u := &api.UfsChildrenEntry{
			ParentId: id, FirstId: ns.st.nextInodeID, Owner: ns.cfg.owner, Group: ns.cfg.group,
			BlockSizeBytes: ns.cfg.blockSize, CreationTimeMs: t.now,
			// The first listing's last page marks the directory loaded.
			ChildrenLoaded: final && !resync && !d.childrenLoaded(),
			Announce:       announce,
		}
		for _, st := range batch {
			if !validName(st.Name) {
				continue
			}
			if resync {
				seen[st.Name] = struct{}{}
			}
			if c := d.child(st.Name); c != nil {
				if resync && ns.st.stale(c, st) {
					suspects = append(suspects, st.Name)
				}
				continue
			}
			if announce && !settled(paths.Join(p, st.Name), st) {
				continue // still being written: learned (and announced) once it is not
			}
			kids = kids[:len(kids)+1]
			c := &kids[len(kids)-1]
			fillUfsChild(c, st, &mtimes)
			u.Children = append(u.Children, c)
		}
		batch = batch[:0]
		if len(u.Children) == 0 && !u.ChildrenLoaded {
			return nil
		}
		for e := range splitAnnounced(u, ns.st) {
			if err := t.add(e); err != nil {
				return err
			}
		}
		added += len(u.Children)
		last = t
		ns.learnLast = t
		return nil
	}
	listed := true
	err = fs.List(ctx, rel, func(st ufs.FileStatus) error {
		batch = append(batch, st)
		used = max(used, len(batch))
		if len(batch) == loadBatch {
			return flush(false)
		}
		return nil
	})
	switch {
	case errors.Is(err, gone):
		return last, nil
	case errors.Is(err, ufs.ErrNotFound), errors.Is(err, ufs.ErrNotDir):
		// Nothing in the UFS (a directory not persisted yet): nothing to
		// merge, and nothing to drop either.
		batch, listed = batch[:0], false
	case err != nil:
		return last, ufsErr("load", p, err)
	}
	if err := flush(true); err != nil {
		if errors.Is(err, gone) {
			return last, nil
		}
		return last, err
	}
	if listed && resync {
		ns.mu.RLock()
		if d := ns.st.get(id); d != nil && d.dir() {
			d.kids.ascend("", func(c *inode) bool {
				if _, ok := seen[c.name]; !ok && c.persisted() && !c.mountPoint() {
					suspects = append(suspects, c.name)
				}
				return true
			})
		}
		ns.mu.RUnlock()
	}
	seen = nil
	changed, removed, err := ns.reconcile(ctx, id, p, m, fs, suspects)
	if err != nil {
		return last, err
	}
	if changed+removed+added > 0 {
		ns.log.Info("metadata synced with the UFS", zap.String("path", p),
			zap.Int("added", added), zap.Int("updated", changed), zap.Int("removed", removed))
	}
	ns.mu.Lock()
	if d := ns.st.get(id); d != nil && d.dir() {
		if !d.childrenLoaded() {
			// A re-sync of a directory someone marked unloaded meanwhile,
			// or a listing cut short: mark it now.
			t := ns.begin()
			loaded := true
			if err := t.add(&api.JournalEntry{Body: &api.JournalEntry_UpdateDirectory{UpdateDirectory: &api.UpdateDirectoryEntry{Id: id, ChildrenLoaded: &loaded}}}); err != nil {
				ns.mu.Unlock()
				return last, err
			}
			last = t
			ns.learnLast = t
		}
		d.setSyncedAt(ns.now().UnixNano())
		if added > 0 {
			d.kids.compact()
		}
	}
	ns.mu.Unlock()
	ns.op("load-children")
	return last, nil
}

// splitAnnounced returns the journal entries of page u: itself, or, when
// it announces, one entry per child — each feed event has a sequence of
// its own (a cursor is a sequence, so a page of the feed never splits an
// entry). s gives the ids; it must see each entry applied before the next
// is built, so the entries are built lazily, in order.
func splitAnnounced(u *api.UfsChildrenEntry, s *State) iter.Seq[*api.JournalEntry] {
	return func(yield func(*api.JournalEntry) bool) {
		if !u.Announce || len(u.Children) <= 1 {
			yield(&api.JournalEntry{Body: &api.JournalEntry_UfsChildren{UfsChildren: u}})
			return
		}
		for i, c := range u.Children {
			one := &api.UfsChildrenEntry{
				ParentId: u.ParentId, FirstId: s.nextInodeID, Owner: u.Owner, Group: u.Group,
				BlockSizeBytes: u.BlockSizeBytes, CreationTimeMs: u.CreationTimeMs, Children: []*api.UfsChild{c},
				ChildrenLoaded: u.ChildrenLoaded && i == len(u.Children)-1, Announce: true,
			}
			if !yield(&api.JournalEntry{Body: &api.JournalEntry_UfsChildren{UfsChildren: one}}) {
				return
			}
		}
	}
}

// ufsChild is the journal record of one UFS entry learned.
func ufsChild(st ufs.FileStatus) *api.UfsChild {
	c := &api.UfsChild{}
	fillUfsChild(c, st, nil)
	return c
}

// fillUfsChild makes c, a zero UfsChild, the record of st; its mtime goes
// at the end of *mtimes (nil: a new int64), which must not grow: c points
// into it.
func fillUfsChild(c *api.UfsChild, st ufs.FileStatus, mtimes *[]int64) {
	c.Name, c.Directory, c.Mode = st.Name, st.IsDir, st.Mode
	if st.IsDir {
		if c.Mode == 0 {
			c.Mode = 0o755
		}
		return
	}
	if c.Mode == 0 {
		c.Mode = 0o644
	}
	c.Length, c.UfsFingerprint = st.Size, st.Fingerprint
	if !st.ModTime.IsZero() {
		if mtimes == nil || len(*mtimes) == cap(*mtimes) {
			c.MtimeMs = new(st.ModTime.UnixMilli())
			return
		}
		*mtimes = append(*mtimes, st.ModTime.UnixMilli())
		c.MtimeMs = &(*mtimes)[len(*mtimes)-1]
	}
}

// stale reports whether the UFS entry st may no longer be what the
// persisted inode c recorded: its kind or its file fingerprint differ.
func (s *State) stale(c *inode, st ufs.FileStatus) bool {
	if c.persist() != api.PersistenceState_PERSISTED || c.mountPoint() {
		return false
	}
	if c.dir() != st.IsDir {
		return true
	}
	if c.dir() || !c.completed() || st.Fingerprint == "" {
		return false
	}
	if c.flag(bitFPLocal) {
		ns, ok := compactFingerprint(st.Fingerprint, c.length)
		return !ok || ns != c.fpNs
	}
	fp := s.fingerprint(c)
	return fp != "" && fp != st.Fingerprint
}

// reconcile looks again at the UFS entry of each named child of directory
// id (a listing may be older than a write that went through Alluvium
// meanwhile) and then drops the persisted children the UFS lost and
// replaces those it changed. It returns how many it replaced and dropped.
func (ns *namespace) reconcile(ctx context.Context, id int64, p string, m *api.MountPointInfo, fs ufs.FileSystem, names []string) (changed, removed int, err error) {
	for len(names) > 0 {
		k := min(len(names), loadBatch)
		looks := make([]ufsLook, 0, k)
		for _, name := range names[:k] {
			cp := paths.Join(p, name)
			_, rel := mountRel(m, cp)
			st, err := fs.Stat(ctx, rel)
			switch {
			case err == nil:
				st.Name = name
				looks = append(looks, ufsLook{st: st})
			case errors.Is(err, ufs.ErrNotFound), errors.Is(err, ufs.ErrNotDir):
				looks = append(looks, ufsLook{st: ufs.FileStatus{Name: name}, missing: true})
			default:
				return changed, removed, ufsErr("load", cp, err)
			}
		}
		names = names[k:]
		t, c, r, err := ns.applyLooks(id, p, looks, ns.settledCheck(fs))
		changed, removed = changed+c, removed+r
		if err != nil {
			return changed, removed, err
		}
		if t != nil {
			if err := t.wait(ctx); err != nil {
				return changed, removed, err
			}
		}
	}
	return changed, removed, nil
}

// ufsLook is what a fresh UFS Stat of one child found.
type ufsLook struct {
	st      ufs.FileStatus // Name is always set
	missing bool
}

// applyLooks acts on fresh UFS looks at children of directory id under the
// state lock: a child still persisted and droppable is removed when the
// UFS lost it, or replaced by a fresh inode when its entry changed.
func (ns *namespace) applyLooks(id int64, p string, looks []ufsLook, settled func(string, ufs.FileStatus) bool) (*txn, int, int, error) {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if err := ns.usable(); err != nil {
		return nil, 0, 0, err
	}
	d := ns.st.get(id)
	if d == nil || !d.dir() {
		return nil, 0, 0, nil
	}
	var changed, removed int
	t := ns.begin()
	for _, l := range looks {
		st, missing := l.st, l.missing
		c := d.child(st.Name)
		if c == nil || (!missing && !ns.st.stale(c, st)) || !ns.droppable(c, paths.Join(p, c.name)) {
			continue
		}
		if !missing && !settled(paths.Join(p, c.name), st) {
			continue // being rewritten: replaced (and announced) once it is not
		}
		ids := ns.st.filesBelow(c)
		if err := t.add(deleteEntry(c.id)); err != nil {
			return nil, changed, removed, err
		}
		ns.blocks.removeFiles(ids)
		if missing {
			removed++
			continue
		}
		// A file the UFS changed behind Alluvium's back is news.
		if err := t.add(ns.ufsEntry(ns.st.nextInodeID, id, st, t.now, true)); err != nil {
			return nil, changed, removed, err
		}
		changed++
	}
	if t.last == nil {
		return nil, 0, 0, nil
	}
	return t, changed, removed, nil
}

// droppable reports whether inode n at path p exists only as a copy of the
// UFS: it and everything below are persisted and no mount lies below.
func (ns *namespace) droppable(n *inode, p string) bool {
	if n.mountPoint() || (n.dir() && len(ns.mountsBelow(p)) > 0) {
		return false
	}
	ok := true
	walk(n, func(x *inode) bool {
		if x.persist() != api.PersistenceState_PERSISTED {
			ok = false
		}
		return ok
	})
	return ok
}

// ufsEntry is the journal entry that creates inode id below parentID for
// the UFS entry st: a persisted directory whose children are not loaded
// yet, or a persisted complete file. announce: st is news (it appeared or
// changed behind Alluvium's back): an announcing UfsChildrenEntry of it.
func (ns *namespace) ufsEntry(id, parentID int64, st ufs.FileStatus, now int64, announce bool) *api.JournalEntry {
	if announce {
		return &api.JournalEntry{Body: &api.JournalEntry_UfsChildren{UfsChildren: &api.UfsChildrenEntry{
			ParentId: parentID, FirstId: id, Owner: ns.cfg.owner, Group: ns.cfg.group,
			BlockSizeBytes: ns.cfg.blockSize, CreationTimeMs: now, Children: []*api.UfsChild{ufsChild(st)}, Announce: true,
		}}}
	}
	if !st.IsDir {
		return fileEntry(ns.ufsFileEntry(id, parentID, st.Name, st, now))
	}
	mode := st.Mode
	if mode == 0 {
		mode = 0o755
	}
	return dirEntry(&api.InodeDirectoryEntry{
		Id: id, ParentId: parentID, Name: st.Name, Mode: mode, Owner: ns.cfg.owner, Group: ns.cfg.group,
		CreationTimeMs: now, PersistenceState: api.PersistenceState_PERSISTED,
	})
}

// syncPath syncs one persisted inode with its UFS entry: replaced when the
// UFS changed it, dropped when the UFS lost it (GetStatus with ALWAYS).
func (ns *namespace) syncPath(ctx context.Context, p string) error {
	ns.mu.RLock()
	n := ns.st.lookup(p)
	if n == nil || n.parent == nil || n.persist() != api.PersistenceState_PERSISTED || n.mountPoint() {
		ns.mu.RUnlock()
		return nil
	}
	dir, name := paths.Split(p)
	parent := n.parent.id
	m, _ := ns.st.mountOf(dir)
	m = cloneMount(m)
	ns.mu.RUnlock()
	fs, err := ns.fsFor(ctx, m)
	if err != nil {
		return err
	}
	_, _, err = ns.reconcile(ctx, parent, dir, m, fs, []string{name})
	return err
}
