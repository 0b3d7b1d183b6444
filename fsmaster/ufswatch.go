package fsmaster

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"time"
	"unsafe"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/alluvium/alluvium/internal/paths"
	"github.com/alluvium/alluvium/ufs"
)

// UFS watching (fsmaster.ufs-watch.*): files that appear in a mount's UFS
// behind Alluvium's back reach the completion feed where someone watches
// it. What is news is decided where the namespace learns from the UFS
// (sync.go): a re-sync of a directory already listed announces what it
// adds or replaces, and so does the first listing of a directory that
// itself appeared so (State.fresh); the leader marks the journal entry
// (UfsChildrenEntry.announce), and applying it records the events, so
// replay, checkpoints and standbys hold the same ones. This file only
// makes those re-syncs happen soon, where it matters:
//
//   - The leader keeps a registry of watched prefixes: the paths of
//     WatchCompletions calls, each kept for watchKeep after its last call
//     (the job master's event policies long-poll theirs).
//   - A prefix that becomes watched (a new policy, a job master or an FS
//     master that starts leading) is walked once: every directory under it
//     is listed — a catch-up, announcing what appeared while nobody
//     watched (a file already learned is never announced again).
//   - A local UFS is watched with inotify on every directory under the
//     prefix (new ones added as they appear). A file is learned once its
//     writer closed it (IN_CLOSE_WRITE) or it was moved in (IN_MOVED_TO),
//     so one written in chunks is one event, not one per chunk; a file
//     with no such event (written before its directory was watched, a hard
//     link) once its mtime is settle old. A directory's events are gathered
//     for watchGather before it is listed. fsnotify (in go.mod through
//     viper) does not export the close-write op in v1.9, hence x/sys/unix.
//   - Any other UFS (S3) is listed again every interval: the walk's
//     re-syncs are the listing diff. So is a local one whose events were
//     lost (queue overflow).
//
// policy add --on-create PATH takes its cursor with WatchCompletions
// from_now, which first lists PATH's tree (a baseline: what is there is
// not news), so a policy never fires for files that were there before.

// ufsWatchConfig is fsmaster.ufs-watch.*.
type ufsWatchConfig struct {
	enabled  bool
	interval time.Duration // relisting of prefixes without notifications (S3)
	settle   time.Duration // a local file no writer was seen closing is learned once its mtime is this old
	maxDirs  int           // directories watched per prefix
}

const (
	// watchKeep is how long a prefix stays watched after its last
	// WatchCompletions call (two of the longest long polls).
	watchKeep = 2 * completionMaxWait
	// busyMax: a file being written (inotify) with no event for this long
	// is looked at anyway.
	busyMax = time.Minute
	// watchGather: a watched directory's inotify events are gathered this
	// long before it is listed (one listing for a burst).
	watchGather = 50 * time.Millisecond
	// inotifyMask is what a watched directory reports.
	inotifyMask = unix.IN_CREATE | unix.IN_MODIFY | unix.IN_CLOSE_WRITE | unix.IN_MOVED_TO | unix.IN_MOVED_FROM |
		unix.IN_DELETE | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ONLYDIR | unix.IN_DONT_FOLLOW
)

// ufsWatch is one leadership term's registry of watched prefixes.
type ufsWatch struct {
	ns  *namespace
	log *zap.Logger
	cfg ufsWatchConfig
	ctx context.Context // the term: done when this master stops leading
	wg  sync.WaitGroup

	mu       sync.Mutex
	prefixes map[string]*watchedPrefix
	busy     map[string]time.Time // local files being written (inotify), by Alluvium path: last event
	closed   map[string]time.Time // local files their writer closed (or moved in): when
	retry    map[string]struct{}  // directories holding files not settled yet: list again
}

type watchedPrefix struct {
	last   time.Time
	cancel context.CancelFunc
}

func newUFSWatch(ctx context.Context, ns *namespace, cfg ufsWatchConfig, log *zap.Logger) *ufsWatch {
	if cfg.interval <= 0 {
		cfg.interval = 10 * time.Second
	}
	if cfg.maxDirs <= 0 {
		cfg.maxDirs = 10000
	}
	return &ufsWatch{ns: ns, log: log, cfg: cfg, ctx: ctx, prefixes: map[string]*watchedPrefix{},
		busy: map[string]time.Time{}, closed: map[string]time.Time{}, retry: map[string]struct{}{}}
}

// ufsWatchLoop runs the registry while this master leads.
func (m *Master) ufsWatchLoop(ctx context.Context) {
	defer m.wg.Done()
	cfg := m.ns.cfg.watch
	if !cfg.enabled {
		return
	}
	w := newUFSWatch(ctx, m.ns, cfg, m.log.Named("ufs-watch"))
	m.ns.ufsw.Store(w)
	defer func() {
		m.ns.ufsw.CompareAndSwap(w, nil)
		w.wg.Wait()
	}()
	t := time.NewTicker(watchKeep / 8)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.expire(time.Now())
		}
	}
}

// watchUFS notes that someone watches the completion feed under p.
func (ns *namespace) watchUFS(p string) {
	if w := ns.ufsw.Load(); w != nil {
		w.touch(p)
	}
}

// touch keeps p watched for watchKeep, starting its watcher if it is new.
func (w *ufsWatch) touch(p string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if wp, ok := w.prefixes[p]; ok {
		wp.last = time.Now()
		return
	}
	if w.ctx.Err() != nil {
		return
	}
	ctx, cancel := context.WithCancel(w.ctx)
	w.prefixes[p] = &watchedPrefix{last: time.Now(), cancel: cancel}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		w.log.Info("watching the UFS", zap.String("path", p))
		r := &prefixRun{w: w, p: p, wds: map[int32]string{}, dirs: map[string]int32{}, due: map[string]struct{}{}}
		r.run(ctx)
	}()
}

// expire stops watching the prefixes nobody asked about for watchKeep.
func (w *ufsWatch) expire(now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for p, wp := range w.prefixes {
		if now.Sub(wp.last) > watchKeep {
			wp.cancel()
			delete(w.prefixes, p)
			w.log.Info("no longer watching the UFS (nobody watches the feed there)", zap.String("path", p))
		}
	}
	for p, t := range w.closed {
		if now.Sub(t) > busyMax {
			delete(w.closed, p)
		}
	}
	// Marks under no watched prefix any more have nobody to act on them.
	for d := range w.retry {
		if !w.watchedLocked(d) {
			delete(w.retry, d)
		}
	}
	for p := range w.busy {
		if !w.watchedLocked(p) {
			delete(w.busy, p)
		}
	}
}

func (w *ufsWatch) watchedLocked(p string) bool {
	for wp := range w.prefixes {
		if paths.IsAncestor(wp, p) {
			return true
		}
	}
	return false
}

// settledCheck returns what tells, for the UFS fs, whether a file found
// there may be learned as news now (see settled).
func (ns *namespace) settledCheck(fs ufs.FileSystem) func(string, ufs.FileStatus) bool {
	w := ns.ufsw.Load()
	if w == nil {
		return func(string, ufs.FileStatus) bool { return true }
	}
	_, local := fs.(*ufs.Local)
	return func(p string, st ufs.FileStatus) bool { return w.settled(p, st, local) }
}

// settled reports whether the file st at Alluvium path p is done being
// written, as far as the watcher knows: not while its writer has it open
// (inotify), and, on a local UFS with no close seen, not before its mtime
// is settle old (then its directory is listed again). Elsewhere than under
// a watched prefix, always.
func (w *ufsWatch) settled(p string, st ufs.FileStatus, local bool) bool {
	if st.IsDir {
		return true
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.watchedLocked(p) {
		return true
	}
	if _, ok := w.busy[p]; ok {
		return false // its close (or busyMax) brings it back
	}
	if _, ok := w.closed[p]; ok {
		return true
	}
	if local && !st.ModTime.IsZero() && time.Since(st.ModTime) < w.cfg.settle {
		dir, _ := paths.Split(p)
		w.retry[dir] = struct{}{}
		return false
	}
	return true
}

// mark records an inotify event about file p.
func (w *ufsWatch) mark(p string, busy bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if busy {
		w.busy[p] = time.Now()
		delete(w.closed, p)
		return
	}
	delete(w.busy, p)
	w.closed[p] = time.Now()
}

// due takes the directories under prefix to list again: those with files
// not settled, and those of files busy for busyMax.
func (w *ufsWatch) due(prefix string, now time.Time, into map[string]struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for d := range w.retry {
		if paths.IsAncestor(prefix, d) {
			into[d] = struct{}{}
			delete(w.retry, d)
		}
	}
	for p, t := range w.busy {
		if now.Sub(t) > busyMax && paths.IsAncestor(prefix, p) {
			delete(w.busy, p)
			dir, _ := paths.Split(p)
			into[dir] = struct{}{}
		}
	}
}

// prefixRun watches one prefix.
type prefixRun struct {
	w      *ufsWatch
	p      string
	in     *inotify         // nil until a local directory is met
	wds    map[int32]string // inotify watch → Alluvium directory
	dirs   map[string]int32 // directories watched: inotify watch, or -1 (listed every interval)
	poll   bool             // list the prefix every interval (a UFS without notifications; lost events)
	absent bool             // a directory was not in the UFS when watched: list again at the next interval
	capped bool
	inErr  bool                // inotify failed (logged once)
	due    map[string]struct{} // directories to list once their events are gathered (watchGather)
}

func (r *prefixRun) run(ctx context.Context) {
	defer func() {
		if r.in != nil {
			r.in.close()
		}
	}()
	r.walk(ctx, r.p) // the catch-up
	settle := time.NewTimer(time.Hour)
	settle.Stop()
	armed := false
	tick := time.NewTicker(max(r.w.cfg.settle/4, watchGather))
	defer tick.Stop()
	poll := time.NewTicker(r.w.cfg.interval)
	defer poll.Stop()
	for {
		// Listings (a walk included) read the events queued meanwhile:
		// what they add waits its gather window too.
		if !armed && len(r.due) > 0 {
			settle.Reset(watchGather)
			armed = true
		}
		var events <-chan []inotifyEvent
		if r.in != nil {
			events = r.in.events
		}
		select {
		case <-ctx.Done():
			return
		case evs, ok := <-events:
			r.take(evs, ok)
		case <-settle.C:
			armed = false
			dirs := r.due
			r.due = map[string]struct{}{}
			for d := range dirs {
				r.reconcile(ctx, d)
			}
		case now := <-tick.C:
			r.w.due(r.p, now, r.due)
		case <-poll.C:
			if r.poll || r.absent {
				r.absent = false
				r.walk(ctx, r.p)
			}
		}
	}
}

// take handles one read of inotify events (ok false: inotify stopped).
func (r *prefixRun) take(evs []inotifyEvent, ok bool) {
	if !ok {
		r.w.log.Warn("inotify stopped; listing the prefix every interval instead", zap.String("path", r.p))
		r.in.close()
		r.in, r.inErr, r.poll = nil, true, true
		return
	}
	for _, ev := range evs {
		r.handle(ev)
	}
}

// drain handles the inotify events already queued, without waiting: a
// listing must know which files are still being written (busy), or a long
// walk would learn half-written files whose "busy" events sat in the queue.
func (r *prefixRun) drain() {
	for r.in != nil {
		select {
		case evs, ok := <-r.in.events:
			r.take(evs, ok)
		default:
			return
		}
	}
}

// handle notes one inotify event; the directories to list go to due.
func (r *prefixRun) handle(ev inotifyEvent) {
	if ev.mask&unix.IN_Q_OVERFLOW != 0 {
		r.w.log.Warn("inotify queue overflowed: events were lost; listing the prefix every interval from now on", zap.String("path", r.p))
		r.poll = true
		return
	}
	dir, ok := r.wds[ev.wd]
	if !ok {
		return
	}
	if ev.mask&(unix.IN_IGNORED|unix.IN_DELETE_SELF|unix.IN_MOVE_SELF) != 0 {
		r.forget(ev.wd, dir)
		if dir != r.p {
			parent, _ := paths.Split(dir)
			r.due[parent] = struct{}{}
		}
		return
	}
	if ev.name == "" || ufs.IsTemp(ev.name) || !validName(ev.name) {
		return
	}
	p := paths.Join(dir, ev.name)
	isDir := ev.mask&unix.IN_ISDIR != 0
	switch {
	case isDir:
		r.due[dir] = struct{}{}
	case ev.mask&(unix.IN_CLOSE_WRITE|unix.IN_MOVED_TO) != 0:
		r.w.mark(p, false)
		r.due[dir] = struct{}{}
	case ev.mask&(unix.IN_CREATE|unix.IN_MODIFY) != 0:
		r.w.mark(p, true)
	case ev.mask&(unix.IN_DELETE|unix.IN_MOVED_FROM) != 0:
		r.w.mark(p, false)
		r.due[dir] = struct{}{}
	}
}

func (r *prefixRun) forget(wd int32, dir string) {
	if r.in != nil {
		r.in.rm(wd)
	}
	delete(r.wds, wd)
	if r.dirs[dir] == wd {
		delete(r.dirs, dir)
	}
}

// reconcile lists directory d again and walks its subdirectories not
// watched yet (new ones: their contents are news too).
func (r *prefixRun) reconcile(ctx context.Context, d string) {
	if !r.load(ctx, d) {
		return
	}
	for _, k := range r.w.ns.childDirs(d) {
		if _, ok := r.dirs[k]; !ok {
			r.walk(ctx, k)
		}
	}
}

// walk lists every directory at or below d, watching each.
func (r *prefixRun) walk(ctx context.Context, d string) {
	visit := func(d string) (bool, error) {
		// Watched before it is listed: a file still being written shows
		// in the events from then on (busy, then closed).
		r.watch(ctx, d)
		return r.load(ctx, d), nil
	}
	full := func(queued int) bool {
		if len(r.dirs)+queued < r.w.cfg.maxDirs {
			return false
		}
		if !r.capped {
			r.capped = true
			r.w.log.Error("too many directories to watch under this path: those past the limit are not watched (files appearing there are learned only when listed; raise fsmaster.ufs-watch.max-dirs)",
				zap.String("path", r.p), zap.Int("max-dirs", r.w.cfg.maxDirs))
		}
		return true
	}
	_ = r.w.ns.walkDirs(ctx, d, visit, full)
}

// walkDirs visits d and the directories below it, breadth first: visit
// lists one (false: not a directory to descend into); once full says the
// queue is as long as it may be, no more directories are queued.
func (ns *namespace) walkDirs(ctx context.Context, d string, visit func(string) (bool, error), full func(queued int) bool) error {
	queue := []string{d}
	for len(queue) > 0 && ctx.Err() == nil {
		d := queue[0]
		queue = queue[1:]
		descend, err := visit(d)
		if err != nil {
			return err
		}
		if !descend {
			continue
		}
		for _, k := range ns.childDirs(d) {
			if full(len(queue)) {
				break
			}
			queue = append(queue, k)
		}
	}
	return nil
}

// load lists directory d from its UFS (announcing what is news); false
// when d is gone or the listing failed (logged).
func (r *prefixRun) load(ctx context.Context, d string) bool {
	r.drain()
	err := r.w.ns.loadChildren(ctx, d)
	if err != nil && ctx.Err() == nil {
		r.w.log.Warn("listing a watched directory failed", zap.String("path", d), zap.Error(err))
	}
	return err == nil && r.w.ns.isDir(d)
}

// watch adds directory d to what the prefix watches: an inotify watch on
// a local UFS, else the interval's listing.
func (r *prefixRun) watch(ctx context.Context, d string) {
	if _, ok := r.dirs[d]; ok {
		return
	}
	r.w.ns.mu.RLock()
	m, rel := r.w.ns.st.mountOf(d)
	m = cloneMount(m)
	r.w.ns.mu.RUnlock()
	if m == nil {
		return
	}
	fs, err := r.w.ns.fsFor(ctx, m)
	if err != nil {
		return
	}
	l, ok := fs.(*ufs.Local)
	if !ok {
		r.dirs[d] = -1
		r.poll = true
		return
	}
	host, err := l.HostPath(rel)
	if err != nil {
		return
	}
	if r.in == nil && !r.inErr {
		if r.in, err = newInotify(); err != nil {
			r.inErr, r.poll = true, true
			r.w.log.Error("inotify unavailable: listing the prefix every interval instead", zap.String("path", r.p), zap.Error(err))
		}
	}
	if r.in == nil {
		r.dirs[d] = -1
		return
	}
	wd, err := r.in.add(host)
	switch {
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENOTDIR):
		// Not in the UFS (yet: a directory made only in Alluvium): its
		// parent's event, or the next interval's walk, watches it once it
		// is there.
		r.absent = true
		r.w.log.Debug("watched directory not in the UFS yet", zap.String("path", d))
	case errors.Is(err, unix.ENOSPC):
		if !r.capped {
			r.capped = true
			r.w.log.Error("inotify watch limit reached (fs.inotify.max_user_watches): directories past it are listed every interval instead",
				zap.String("path", r.p), zap.String("dir", host))
		}
		r.dirs[d] = -1
		r.poll = true
	case err != nil:
		r.w.log.Warn("inotify watch failed: listing it every interval instead", zap.String("dir", host), zap.Error(err))
		r.dirs[d] = -1
		r.poll = true
	default:
		if old, ok := r.wds[wd]; ok && old != d {
			delete(r.dirs, old) // the same host directory under another path (moved)
		}
		r.wds[wd] = d
		r.dirs[d] = wd
	}
}

// childDirs returns the paths of directory d's subdirectories.
func (ns *namespace) childDirs(d string) []string {
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	n := ns.st.lookup(d)
	if n == nil || !n.dir() || n.kids == nil {
		return nil
	}
	var out []string
	n.kids.ascend("", func(c *inode) bool {
		if c.dir() {
			out = append(out, paths.Join(d, c.name))
		}
		return true
	})
	return out
}

func (ns *namespace) isDir(p string) bool {
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	n := ns.st.lookup(p)
	return n != nil && n.dir()
}

// baseline lists every directory at or below p (up to max-dirs of them),
// so that what is there now is known — not news — before a consumer takes
// its from-now cursor.
func (ns *namespace) baseline(ctx context.Context, p string) error {
	if !ns.cfg.watch.enabled {
		return nil
	}
	maxDirs := ns.cfg.watch.maxDirs
	if maxDirs <= 0 {
		maxDirs = 10000
	}
	listed, warned := 0, false
	visit := func(d string) (bool, error) {
		listed++
		return true, ns.loadChildren(ctx, d)
	}
	full := func(queued int) bool {
		if listed+queued < maxDirs {
			return false
		}
		if !warned {
			warned = true
			ns.log.Warn("baseline listing stopped at fsmaster.ufs-watch.max-dirs directories", zap.String("path", p), zap.Int("max-dirs", maxDirs))
		}
		return true
	}
	if err := ns.walkDirs(ctx, p, visit, full); err != nil {
		return err
	}
	return ctx.Err()
}

// inotify is one inotify instance and the goroutine reading it.
type inotify struct {
	fd     int
	f      *os.File
	events chan []inotifyEvent
}

type inotifyEvent struct {
	wd   int32
	mask uint32
	name string
}

func newInotify() (*inotify, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, err
	}
	// Non-blocking: os.File reads through the runtime poller, and Close
	// ends a read in progress.
	in := &inotify{fd: fd, f: os.NewFile(uintptr(fd), "inotify"), events: make(chan []inotifyEvent, 64)}
	go in.read()
	return in, nil
}

func (in *inotify) read() {
	defer close(in.events)
	buf := make([]byte, 64<<10)
	for {
		n, err := in.f.Read(buf)
		if err != nil || n < unix.SizeofInotifyEvent {
			return
		}
		var evs []inotifyEvent
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			raw := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			end := off + unix.SizeofInotifyEvent + int(raw.Len)
			if end > n {
				break
			}
			name := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:end]), "\x00")
			evs = append(evs, inotifyEvent{wd: raw.Wd, mask: raw.Mask, name: name})
			off = end
		}
		in.events <- evs
	}
}

func (in *inotify) add(path string) (int32, error) {
	wd, err := unix.InotifyAddWatch(in.fd, path, inotifyMask)
	return int32(wd), err
}

func (in *inotify) rm(wd int32) { _, _ = unix.InotifyRmWatch(in.fd, uint32(wd)) }

// close ends the reader (which closes events once it drains).
func (in *inotify) close() {
	_ = in.f.Close()
	go func() {
		for range in.events { //nolint:revive // drain so the reader can exit
		}
	}()
}
