package fsmaster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/paths"
	"github.com/alluvium/alluvium/ufs"
)

// appender is what the namespace needs of the journal: Append gives the
// entry its sequence number (call it holding the state lock), the returned
// waiter returns once the entry is durable (call it after unlocking).
type appender interface {
	Append(e *api.JournalEntry) waiter
}

// holder is what a journal that can keep entries together offers: the
// entries appended between Hold and its release go to disk in one commit
// (a batch call's, so that its callers wait for one fsync, not two).
type holder interface {
	Hold() (release func() (wake func()))
}

// hold keeps the entries appended until release together in one commit,
// when the journal can; release is never nil. Call release under ns.mu,
// then the wake it returns after unlocking (see journal.Journal.Hold).
func (ns *namespace) hold() (release func() (wake func())) {
	if h, ok := ns.j.(holder); ok {
		return h.Hold()
	}
	return func() func() { return func() {} }
}

type waiter interface {
	Wait(ctx context.Context) error
}

// nsConfig are the defaults the namespace applies to calls.
type nsConfig struct {
	blockSize   int64
	writeType   api.WriteType
	owner       string
	group       string
	defaultPage int
	maxPage     int
	perm        permConfig
	pathLimits  paths.Limits
	// syncInterval re-syncs a directory with its UFS when it is listed
	// this long after its last sync; 0: only the first listing loads it.
	syncInterval time.Duration
	// maxStagedBytes bounds the bytes a user has staged in multipart
	// uploads (0: no bound).
	maxStagedBytes int64
	// watch is fsmaster.ufs-watch.* (ufswatch.go).
	watch ufsWatchConfig
	// learnWidth: directories a recursive listing learns at once (0:
	// the default, learnWidth; 1: one at a time).
	learnWidth int
}

// namespace is the live inode tree of the master: State behind the state
// lock, the journal, the UFS of each mount and the block map.
type namespace struct {
	mu   sync.RWMutex
	st   *State
	j    appender
	last waiter // of the last appended entry
	// learnLast is the txn of the newest UFS learning (learnChildren),
	// under mu: a listing waits for the one it saw before it answers, so
	// no inode on a page is answered before it is durable, whoever
	// learned it (list.go).
	learnLast *txn
	// Learn-ahead of recursive listings (list.go), under aheadMu:
	// learning holds the directories being learned by a listing or a
	// learn-ahead (path → closed when done); aheadRun counts the
	// learn-aheads running; aheads holds each one's state by listing and
	// page, so the page it learned for knows whether its listing's tree
	// is still being learned (then it learns ahead again). aheadCtx ends
	// them (stopAhead).
	aheadMu   sync.Mutex
	learning  map[string]chan struct{}
	aheadRun  int
	aheads    map[aheadKey]*aheadState
	aheadCtx  context.Context
	aheadStop context.CancelFunc
	aheadWG   sync.WaitGroup
	broken    error // a journal write failed: refuse everything from now on
	// standby, with an embedded journal, is why this master takes no
	// calls now (it does not lead); nil while it leads, and always with a
	// local journal.
	standby error

	cfg    nsConfig
	log    *zap.Logger
	blocks *blockMap
	now    func() time.Time
	onOp   func(op string) // metrics hook; may be nil
	onFail func(error)     // called once when the journal fails; may be nil
	// onToBePersist hears of files that became TO_BE_PERSISTED (complete
	// ASYNC_THROUGH files) once durable; may be nil.
	onToBePersist func(ids ...int64)

	ufsMu sync.Mutex
	ufs   map[int64]ufs.FileSystem // mount id → opened UFS

	gate *gate // bounds expensive calls; nil: no bound

	// feed serves the completion feed: the journal's durable watermark
	// and the long polls waiting on it (completions.go).
	feed *feed
	// ufsw is the leader's registry of watched UFS prefixes (ufswatch.go);
	// nil when not leading or fsmaster.ufs-watch.enabled is off.
	ufsw atomic.Pointer[ufsWatch]

	superGroups []string // the system identity's groups: {cfg.group}
}

func newNamespace(st *State, j appender, cfg nsConfig, blocks *blockMap, log *zap.Logger) *namespace {
	if log == nil {
		log = zap.NewNop()
	}
	if cfg.blockSize <= 0 {
		cfg.blockSize = 64 << 20
	}
	if cfg.writeType == api.WriteType_WRITE_TYPE_UNSPECIFIED {
		cfg.writeType = api.WriteType_CACHE_THROUGH
	}
	if cfg.defaultPage <= 0 {
		cfg.defaultPage = 1000
	}
	if cfg.learnWidth <= 0 {
		cfg.learnWidth = learnWidth
	}
	if cfg.maxPage <= 0 {
		cfg.maxPage = 10000
	}
	if blocks == nil {
		blocks = newBlockMap(time.Now)
	}
	ns := &namespace{st: st, j: j, cfg: cfg, log: log, blocks: blocks, now: time.Now, ufs: map[int64]ufs.FileSystem{},
		superGroups: []string{cfg.group}, feed: newFeed(st.lastSeq), learning: map[string]chan struct{}{},
		aheads: map[aheadKey]*aheadState{}}
	ns.aheadCtx, ns.aheadStop = context.WithCancel(context.Background())
	blocks.keep = ns.keepBlock
	return ns
}

// errf builds a gRPC status error "op path: reason".
func errf(c codes.Code, op, p, format string, a ...any) error {
	return status.Errorf(c, "%s %s: %s", op, p, fmt.Sprintf(format, a...))
}

func (ns *namespace) op(name string) {
	if ns.onOp != nil {
		ns.onOp(name)
	}
}

// txn collects the entries of one call. It is used while holding ns.mu.
type txn struct {
	ns   *namespace
	now  int64
	last waiter
}

func (ns *namespace) begin() *txn {
	t := ns.newTxn()
	return &t
}

// newTxn is a txn begun now, by value: for a caller that allocates it
// together with its entries (createAlloc, completeAlloc).
func (ns *namespace) newTxn() txn { return txn{ns: ns, now: ns.now().UnixMilli()} }

// add applies one entry and appends it to the journal. Validation happened
// before, so a failing Apply is a bug; it leaves the state unchanged.
func (t *txn) add(e *api.JournalEntry) error {
	e.OpTimeMs = t.now
	if err := t.ns.st.Apply(e); err != nil {
		t.ns.log.Error("entry does not apply (bug)", zap.Error(err))
		return status.Errorf(codes.Internal, "internal error: %v", err)
	}
	w := t.ns.j.Append(e)
	switch e.GetBody().(type) {
	case *api.JournalEntry_CompleteFile, *api.JournalEntry_UfsChildren: // the entries that record completions
		t.ns.st.done.stamp(e.GetSequence())
	}
	t.ns.st.lastSeq = e.GetSequence()
	t.ns.last = w
	t.last = w
	return nil
}

// wait returns once every entry of the txn is durable. Call it after
// releasing ns.mu. A journal failure stops the master from taking writes:
// memory may now hold a change the disk does not.
func (t *txn) wait(ctx context.Context) error {
	if t == nil || t.last == nil {
		return nil
	}
	err := t.last.Wait(ctx)
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return status.FromContextError(ctx.Err()).Err()
	}
	var te transientError
	if errors.As(err, &te) {
		// Embedded journal: leadership ended; the master rebuilds its
		// state from raft and goes on as a standby.
		return te
	}
	t.ns.fail(err)
	return status.Errorf(codes.Unavailable, "journal write failed: %v", err)
}

// fail marks the namespace broken after a journal write error.
func (ns *namespace) fail(err error) {
	ns.mu.Lock()
	first := ns.failLocked(err)
	ns.mu.Unlock()
	if first && ns.onFail != nil {
		ns.onFail(err)
	}
}

// failLocked marks the namespace broken (call with ns.mu held) and
// reports whether this was the first failure; the caller runs onFail
// after unlocking.
func (ns *namespace) failLocked(err error) bool {
	if ns.broken != nil {
		return false
	}
	ns.broken = err
	ns.log.Error("journal write failed; refusing all calls until restart", zap.Error(err))
	return true
}

// usable returns an error once the journal failed, or while this master
// does not lead (embedded journal). Call with ns.mu held.
func (ns *namespace) usable() error {
	if ns.broken != nil {
		return status.Errorf(codes.Unavailable, "FS master journal failed (%v); restart the master", ns.broken)
	}
	return ns.standby
}

// lockUsable takes ns.mu for a write when the namespace is usable; else it
// returns why not, holding nothing.
func (ns *namespace) lockUsable() error {
	ns.mu.Lock()
	if err := ns.usable(); err != nil {
		ns.mu.Unlock()
		return err
	}
	return nil
}

func dirEntry(d *api.InodeDirectoryEntry) *api.JournalEntry {
	return &api.JournalEntry{Body: &api.JournalEntry_InodeDirectory{InodeDirectory: d}}
}

func fileEntry(f *api.InodeFileEntry) *api.JournalEntry {
	return &api.JournalEntry{Body: &api.JournalEntry_InodeFile{InodeFile: f}}
}

func setAttrEntry(a *api.SetAttributeEntry) *api.JournalEntry {
	return &api.JournalEntry{Body: &api.JournalEntry_SetAttribute{SetAttribute: a}}
}

func deleteEntry(id int64) *api.JournalEntry {
	return &api.JournalEntry{Body: &api.JournalEntry_DeleteInode{DeleteInode: &api.DeleteInodeEntry{Id: id}}}
}

func (ns *namespace) writeType(wt api.WriteType) (api.WriteType, error) {
	if wt == api.WriteType_WRITE_TYPE_UNSPECIFIED {
		return ns.cfg.writeType, nil
	}
	if _, ok := api.WriteType_name[int32(wt)]; !ok {
		return 0, fmt.Errorf("unknown write type %d", wt)
	}
	return wt, nil
}

func throughUFS(wt api.WriteType) bool {
	return wt == api.WriteType_THROUGH || wt == api.WriteType_CACHE_THROUGH
}

// fsFor returns the opened UFS of a mount.
func (ns *namespace) fsFor(ctx context.Context, m *api.MountPointInfo) (ufs.FileSystem, error) {
	ns.ufsMu.Lock()
	defer ns.ufsMu.Unlock()
	if fs, ok := ns.ufs[m.GetMountId()]; ok {
		return fs, nil
	}
	fs, err := ufs.Open(ctx, m.GetUfsUri(), m.GetOptions())
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "mount %s: %v", m.GetAlluviumPath(), err)
	}
	ns.ufs[m.GetMountId()] = fs
	return fs, nil
}

func (ns *namespace) dropUFS(mountID int64) {
	ns.ufsMu.Lock()
	fs := ns.ufs[mountID]
	delete(ns.ufs, mountID)
	ns.ufsMu.Unlock()
	if fs != nil {
		_ = fs.Close()
	}
}

func (ns *namespace) closeUFS() {
	ns.stopAhead() // they would open the UFS again
	ns.ufsMu.Lock()
	defer ns.ufsMu.Unlock()
	for id, fs := range ns.ufs {
		_ = fs.Close()
		delete(ns.ufs, id)
	}
}

// ufsErr turns a UFS failure into a status error.
func ufsErr(op, p string, err error) error {
	switch {
	case errors.Is(err, ufs.ErrNotFound):
		return errf(codes.NotFound, op, p, "in the UFS: %v", err)
	case errors.Is(err, ufs.ErrExist):
		return errf(codes.AlreadyExists, op, p, "in the UFS: %v", err)
	case errors.Is(err, ufs.ErrNotEmpty), errors.Is(err, ufs.ErrNotDir), errors.Is(err, ufs.ErrIsDir):
		return errf(codes.FailedPrecondition, op, p, "in the UFS: %v", err)
	case errors.Is(err, ufs.ErrEscape):
		return errf(codes.InvalidArgument, op, p, "%v", err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	}
	return errf(codes.Unavailable, op, p, "UFS: %v", err)
}

// readOnly refuses a change under a read-only mount. Call with ns.mu held.
func (ns *namespace) readOnly(op, p string) error {
	if m, _ := ns.st.mountOf(p); m != nil && m.GetReadOnly() {
		return errf(codes.PermissionDenied, op, p, "mount %s is read-only", m.GetAlluviumPath())
	}
	return nil
}

// mountsBelow returns the mount points strictly below p.
func (ns *namespace) mountsBelow(p string) []string {
	var out []string
	for mp := range ns.st.mounts {
		if mp != p && paths.IsAncestor(p, mp) {
			out = append(out, mp)
		}
	}
	return out
}

// filesBelow returns the ids of the files at or below n, the overwrites
// being written aside in its directories included.
func (s *State) filesBelow(n *inode) []int64 {
	var ids []int64
	walk(n, func(x *inode) bool {
		if !x.dir() {
			ids = append(ids, x.id)
		}
		return true
	})
	if n.dir() && len(s.asides) > 0 {
		ids = append(ids, s.asidesBelow(n)...)
	}
	return ids
}

// ---- metadata from the UFS ----

// ensureLoaded makes sure that, if p (or its deepest ancestor) exists in the
// UFS but not yet in the namespace, it is loaded: missing directories on the
// way are created as persisted directories whose children are not loaded,
// and a file appears persisted and complete with its UFS length and
// fingerprint. Nothing happens when the deepest known ancestor already has
// its children loaded (unless lt is ALWAYS) or lt is NEVER.
func (ns *namespace) ensureLoaded(ctx context.Context, p string, lt api.LoadMetadataType) error {
	t, err := ns.learnPath(ctx, p, lt)
	if err != nil {
		return err
	}
	return t.wait(ctx)
}

// learnPath is ensureLoaded without the wait for the journal: it returns
// the txn of the entries it made (nil when it made none) for its caller to
// wait on — a batch waits once, for its last, the entries being durable in
// order.
func (ns *namespace) learnPath(ctx context.Context, p string, lt api.LoadMetadataType) (*txn, error) {
	if lt == api.LoadMetadataType_NEVER {
		return nil, nil
	}
	ns.mu.RLock()
	n, depth, comps := ns.st.lookupPrefix(p)
	need := n != nil && depth < len(comps) && n.dir() && (!n.childrenLoaded() || lt == api.LoadMetadataType_ALWAYS)
	var m *api.MountPointInfo
	if need {
		m, _ = ns.st.mountOf(p)
		m = cloneMount(m)
	}
	ns.mu.RUnlock()
	if !need {
		return nil, nil
	}
	fs, err := ns.fsFor(ctx, m)
	if err != nil {
		return nil, err
	}
	// Find the deepest prefix of p the UFS has, from p upwards.
	var found ufs.FileStatus
	k := len(comps)
	for ; k > depth; k-- {
		sub := "/" + strings.Join(comps[:k], "/")
		_, rel := mountRel(m, sub)
		st, err := fs.Stat(ctx, rel)
		if err == nil {
			found = st
			break
		}
		if !errors.Is(err, ufs.ErrNotFound) && !errors.Is(err, ufs.ErrNotDir) {
			return nil, ufsErr("load", sub, err)
		}
	}
	if k == depth {
		return nil, nil
	}
	ns.mu.Lock()
	if err := ns.usable(); err != nil {
		ns.mu.Unlock()
		return nil, err
	}
	t := ns.begin()
	n, d2, _ := ns.st.lookupPrefix("/" + strings.Join(comps[:k], "/"))
	if cur, _ := ns.st.mountOf(p); cur == nil || cur.GetMountId() != m.GetMountId() || !n.dir() {
		ns.mu.Unlock()
		return nil, nil
	}
	parent := n
	// Learned below a directory already listed (or itself news): news.
	announce := n.childrenLoaded() || ns.st.isFresh(n.id)
	for i := d2; i < k; i++ {
		id := ns.st.nextInodeID
		st := ufs.FileStatus{Name: comps[i], IsDir: true} // a directory on the way
		if i == k-1 {
			st = found
			st.Name = comps[i]
		}
		if err := t.add(ns.ufsEntry(id, parent.id, st, t.now, announce)); err != nil {
			ns.mu.Unlock()
			return nil, err
		}
		parent = ns.st.get(id)
	}
	ns.mu.Unlock()
	ns.op("load-metadata")
	return t, nil
}

func mountRel(m *api.MountPointInfo, p string) (*api.MountPointInfo, string) {
	return m, paths.Rel(m.GetAlluviumPath(), p)
}

func (ns *namespace) ufsFileEntry(id, parentID int64, name string, st ufs.FileStatus, now int64) *api.InodeFileEntry {
	mode := st.Mode
	if mode == 0 {
		mode = 0o644
	}
	mt := st.ModTime.UnixMilli()
	if st.ModTime.IsZero() {
		mt = now
	}
	return &api.InodeFileEntry{
		Id: id, ParentId: parentID, Name: name, Mode: mode, Owner: ns.cfg.owner, Group: ns.cfg.group,
		CreationTimeMs: mt, PersistenceState: api.PersistenceState_PERSISTED,
		BlockSizeBytes: ns.cfg.blockSize, WriteType: api.WriteType_THROUGH, Completed: true,
		Length: st.Size, UfsFingerprint: st.Fingerprint, ReplicationMax: -1,
	}
}

// ---- mutations ----

// CreateDirectory implements mkdir (with parents when recursive).
func (ns *namespace) CreateDirectory(ctx context.Context, req *api.CreateDirectoryRequest) (*api.FileInfo, error) {
	const op = "mkdir"
	ns.op(op)
	p, err := ns.clean(op, req.GetPath())
	if err != nil {
		return nil, err
	}
	wt, err := ns.writeType(req.GetWriteType())
	if err != nil {
		return nil, errf(codes.InvalidArgument, op, p, "%v", err)
	}
	if req.GetMode() > 0o7777 {
		return nil, errf(codes.InvalidArgument, op, p, "mode %o is not a permission mode", req.GetMode())
	}
	if err := checkXattrNames(op, p, req.GetXattrs()); err != nil {
		return nil, err
	}
	if err := ns.ensureLoaded(ctx, p, api.LoadMetadataType_ONCE); err != nil {
		return nil, err
	}
	pr := ns.caller(ctx)
	owner, group := req.GetOwner(), req.GetGroup()
	if (owner != "" || group != "") && !pr.super {
		return nil, errf(codes.PermissionDenied, op, p, "only a superuser may create a directory for another owner (%s asked for owner %q, group %q)", pr.user, owner, group)
	}
	if owner == "" {
		owner = pr.user
	}
	if group == "" {
		group = pr.groups[0]
		if owner != pr.user {
			group = ns.primaryGroup(owner)
		}
	}
	// validate returns the deepest existing inode and depth, or the answer.
	validate := func() (*inode, int, []string, *api.FileInfo, error) {
		if err := ns.usable(); err != nil {
			return nil, 0, nil, nil, err
		}
		n, depth, comps := ns.st.lookupPrefix(p)
		if depth == len(comps) || !n.dir() {
			if err := ns.traverse(op, p, pr, n); err != nil {
				return nil, 0, nil, nil, err
			}
		} else if err := ns.traverse(op, p, pr, n); err != nil {
			return nil, 0, nil, nil, err
		} else if err := ns.need(op, p, pr, n, permW|permX); err != nil {
			return nil, 0, nil, nil, err
		}
		switch {
		case depth == len(comps):
			if n.dir() && req.GetAllowExists() {
				return nil, 0, nil, ns.info(n, p, false), nil
			}
			return nil, 0, nil, nil, errf(codes.AlreadyExists, op, p, "already exists")
		case !n.dir():
			return nil, 0, nil, nil, errf(codes.FailedPrecondition, op, p, "%s is a file", ns.st.pathOf(n))
		case depth < len(comps)-1 && !req.GetRecursive():
			parent, _ := paths.Split(p)
			return nil, 0, nil, nil, errf(codes.NotFound, op, p, "parent %s does not exist (use recursive, mkdir -p)", parent)
		}
		if err := ns.readOnly(op, p); err != nil {
			return nil, 0, nil, nil, err
		}
		return n, depth, comps, nil, nil
	}
	if throughUFS(wt) {
		// The UFS directory first, outside the lock (Mkdirs is idempotent).
		ns.mu.RLock()
		_, _, _, done, err := validate()
		m, rel := ns.st.mountOf(p)
		m = cloneMount(m)
		ns.mu.RUnlock()
		if err != nil || done != nil {
			return done, err
		}
		fs, err := ns.fsFor(ctx, m)
		if err != nil {
			return nil, err
		}
		if err := fs.Mkdirs(ctx, rel); err != nil {
			return nil, ufsErr(op, p, err)
		}
	}
	ns.mu.Lock()
	n, depth, comps, done, err := validate()
	if err != nil || done != nil {
		ns.mu.Unlock()
		return done, err
	}
	persist := api.PersistenceState_NOT_PERSISTED
	if throughUFS(wt) {
		persist = api.PersistenceState_PERSISTED
	}
	t := ns.begin()
	parent := n
	for i := depth; i < len(comps); i++ {
		mode := uint32(0o755)
		o, g := pr.user, pr.groups[0]
		var xattrs map[string][]byte
		if i == len(comps)-1 {
			if req.GetMode() != 0 {
				mode = req.GetMode()
			}
			o, g, xattrs = owner, group, req.GetXattrs()
		}
		id := ns.st.nextInodeID
		if err := t.add(dirEntry(&api.InodeDirectoryEntry{
			Id: id, ParentId: parent.id, Name: comps[i], Mode: mode, Owner: o, Group: g,
			CreationTimeMs: t.now, PersistenceState: persist, ChildrenLoaded: true, Xattrs: xattrs,
		})); err != nil {
			ns.mu.Unlock()
			return nil, err
		}
		parent = ns.st.get(id)
	}
	info := ns.info(parent, p, false)
	ns.mu.Unlock()
	return info, t.wait(ctx)
}

// CreateFile creates an incomplete file (parents too when recursive).
func (ns *namespace) CreateFile(ctx context.Context, req *api.CreateFileRequest) (*api.FileInfo, error) {
	ns.op("create")
	a, err := ns.createArgs(ctx, req)
	if err != nil {
		return nil, err
	}
	ns.mu.Lock()
	info, t, err := ns.createCompleteLocked(ctx, a, req, &api.FileInfo{})
	ns.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return info, t.wait(ctx)
}

// createReq is a checked CreateFile request.
type createReq struct {
	p       string
	wt      api.WriteType
	bs      int64
	replMax int32
	load    string // the path whose metadata is loaded before the create
}

// createArgs checks a CreateFile request and loads its path's metadata.
func (ns *namespace) createArgs(ctx context.Context, req *api.CreateFileRequest) (createReq, error) {
	a, err := ns.createCheck(req)
	if err != nil {
		return createReq{}, err
	}
	if err := ns.ensureLoaded(ctx, a.load, api.LoadMetadataType_ONCE); err != nil {
		return createReq{}, err
	}
	return a, nil
}

// createCheck checks a CreateFile request and names the path whose
// metadata must be loaded before it is created (createReq.load).
func (ns *namespace) createCheck(req *api.CreateFileRequest) (createReq, error) {
	const op = "create"
	p, err := ns.clean(op, req.GetPath())
	if err != nil {
		return createReq{}, err
	}
	if p == "/" {
		return createReq{}, errf(codes.AlreadyExists, op, p, "the root is a directory")
	}
	if err := uploadCreate(op, p, req); err != nil {
		return createReq{}, err
	}
	wt, err := ns.writeType(req.GetWriteType())
	if err != nil {
		return createReq{}, errf(codes.InvalidArgument, op, p, "%v", err)
	}
	bs := req.GetBlockSizeBytes()
	if bs == 0 {
		bs = ns.cfg.blockSize
	}
	replMax := req.GetReplicationMax()
	if replMax == 0 {
		replMax = -1
	}
	switch {
	case bs < 0:
		return createReq{}, errf(codes.InvalidArgument, op, p, "block size %d is negative", bs)
	case req.GetMode() > 0o7777:
		return createReq{}, errf(codes.InvalidArgument, op, p, "mode %o is not a permission mode", req.GetMode())
	case req.GetReplicationMin() < 0 || replMax < -1 || replMax >= 0 && req.GetReplicationMin() > replMax:
		return createReq{}, errf(codes.InvalidArgument, op, p, "replication min %d / max %d", req.GetReplicationMin(), replMax)
	case req.GetTtl() < 0:
		return createReq{}, errf(codes.InvalidArgument, op, p, "negative ttl %d", req.GetTtl())
	case ttlEnd(ns.now().UnixMilli(), req.GetTtl()) > maxTimeMs:
		return createReq{}, errf(codes.InvalidArgument, op, p, "ttl %d ms ends after the year 9999", req.GetTtl())
	case req.GetTtlAction() != "" && req.GetTtlAction() != ttlFree && req.GetTtlAction() != ttlDelete:
		return createReq{}, errf(codes.InvalidArgument, op, p, "ttl action %q: want FREE or DELETE", req.GetTtlAction())
	case req.GetLastModificationTimeMs() < 0:
		return createReq{}, errf(codes.InvalidArgument, op, p, "negative modification time %d", req.GetLastModificationTimeMs())
	case req.GetComplete() && (req.GetLength() < 0 || req.GetUfsFingerprint() == ""):
		return createReq{}, errf(codes.InvalidArgument, op, p, "complete needs a length >= 0 and the UFS fingerprint")
	case req.GetComplete() && bs > 0 && (req.GetLength()+bs-1)/bs > api.MaxBlocksPerFile:
		return createReq{}, errf(codes.InvalidArgument, op, p, "length %d needs more than %d blocks of %d bytes", req.GetLength(), api.MaxBlocksPerFile, bs)
	}
	if err := checkXattrNames(op, p, req.GetXattrs()); err != nil {
		return createReq{}, err
	}
	if err := ns.st.checkXattrTotal(op, p, &inode{}, req.GetXattrs()); err != nil {
		return createReq{}, err
	}
	load := p
	if req.GetComplete() && req.GetOverwrite() {
		// The caller has just written the file's UFS copy and replaces
		// whatever was there: only its directories need loading, not the
		// file it wrote.
		load, _ = paths.Split(p)
	}
	return createReq{p: p, wt: wt, bs: bs, replMax: replMax, load: load}, nil
}

// createCompleteLocked creates the file (born complete when the request
// says so, see createLocked). Call with ns.mu held. fi is the zero
// FileInfo the answer is written into (a batch's come from one slab).
func (ns *namespace) createCompleteLocked(ctx context.Context, a createReq, req *api.CreateFileRequest, fi *api.FileInfo) (*api.FileInfo, *txn, error) {
	return ns.createLocked(ctx, a.p, req, a.wt, a.bs, a.replMax, fi)
}

func (ns *namespace) createLocked(ctx context.Context, p string, req *api.CreateFileRequest, wt api.WriteType, bs int64, replMax int32, fi *api.FileInfo) (*api.FileInfo, *txn, error) {
	const op = "create"
	if err := ns.usable(); err != nil {
		return nil, nil, err
	}
	n, depth, comps := ns.st.lookupPrefix(p)
	pr := ns.caller(ctx)
	// Whether something is at p is not told to a caller who may not search
	// the directory it would be in (open(2) answers EACCES there too).
	var serr error
	switch {
	case depth < len(comps) && !n.dir(): // a file on the way
		serr = ns.traverse(op, p, pr, n)
	case depth == len(comps): // never the root: createArgs refuses "/"
		serr = ns.traverseTo(op, p, pr, n.parent)
	default:
		serr = ns.traverseTo(op, p, pr, n)
	}
	if serr != nil {
		return nil, nil, serr
	}
	var old *inode
	switch {
	case depth == len(comps) && n.dir():
		return nil, nil, errf(codes.AlreadyExists, op, p, "a directory exists there")
	case depth == len(comps) && !req.GetOverwrite():
		return nil, nil, errf(codes.AlreadyExists, op, p, "already exists (use overwrite)")
	case depth == len(comps):
		old = n
		n = n.parent
		depth--
	case !n.dir():
		return nil, nil, errf(codes.FailedPrecondition, op, p, "%s is a file", ns.st.pathOf(n))
	case depth < len(comps)-1 && !req.GetRecursive():
		parent, _ := paths.Split(p)
		return nil, nil, errf(codes.NotFound, op, p, "parent %s does not exist (use recursive)", parent)
	}
	// n is now the deepest existing directory: the new file (or its first
	// new parent) goes in it.
	if err := ns.traverse(op, p, pr, n); err != nil {
		return nil, nil, err
	}
	if err := ns.need(op, p, pr, n, permW|permX); err != nil {
		return nil, nil, err
	}
	if old != nil {
		// Replacing a file changes its bytes: write permission on it too,
		// not only on its directory.
		if err := ns.need(op, p, pr, old, permW); err != nil {
			return nil, nil, err
		}
	}
	if err := ns.readOnly(op, p); err != nil {
		return nil, nil, err
	}
	// An overwrite is written aside and swapped in when complete (see
	// completeAsideLocked); a file born complete replaces the old one now.
	aside := req.GetOverwrite() && !req.GetComplete()
	if aside {
		old = nil
	}
	if old != nil && old.persisted() && !throughUFS(wt) {
		// The new bytes will not replace the old ones in the UFS: drop them so
		// the path never shows stale content.
		m, rel := ns.st.mountOf(p)
		fs, err := ns.fsFor(ctx, m)
		if err != nil {
			return nil, nil, err
		}
		if err := fs.Delete(ctx, rel); err != nil && !errors.Is(err, ufs.ErrNotFound) {
			return nil, nil, ufsErr(op, p, err)
		}
	}
	// The create's txn and its file entry, in one allocation (a batch
	// makes thousands a second; the inode keeps none of them).
	ca := &createAlloc{t: ns.newTxn()}
	t := &ca.t
	if old != nil {
		if err := t.add(deleteEntry(old.id)); err != nil {
			return nil, nil, err
		}
		ns.blocks.removeFiles([]int64{old.id})
	}
	parent := n
	for i := depth; i < len(comps)-1; i++ {
		id := ns.st.nextInodeID
		if err := t.add(dirEntry(&api.InodeDirectoryEntry{
			Id: id, ParentId: parent.id, Name: comps[i], Mode: 0o755, Owner: pr.user, Group: pr.groups[0],
			CreationTimeMs: t.now, PersistenceState: api.PersistenceState_NOT_PERSISTED, ChildrenLoaded: true,
		})); err != nil {
			return nil, nil, err
		}
		parent = ns.st.get(id)
	}
	persist := api.PersistenceState_NOT_PERSISTED
	if wt == api.WriteType_ASYNC_THROUGH {
		persist = api.PersistenceState_TO_BE_PERSISTED
	}
	mode := req.GetMode()
	if mode == 0 {
		mode = 0o644
	}
	id := ns.st.nextInodeID
	fe := &ca.f
	*fe = api.InodeFileEntry{
		Id: id, ParentId: parent.id, Name: comps[len(comps)-1], Mode: mode, Owner: pr.user, Group: pr.groups[0],
		CreationTimeMs: t.now, PersistenceState: persist, BlockSizeBytes: bs, WriteType: wt,
		ReplicationMin: req.GetReplicationMin(), ReplicationMax: replMax, Pinned: req.GetPinned(), Ttl: req.GetTtl(),
		TtlAction: req.GetTtlAction(), Aside: aside, Xattrs: req.GetXattrs(), Upload: req.GetUpload(),
	}
	if req.GetComplete() {
		// Its bytes are already in the UFS (a copy): born complete.
		fe.Completed, fe.Length, fe.UfsFingerprint = true, req.GetLength(), req.GetUfsFingerprint()
		fe.LastModificationTimeMs = req.GetLastModificationTimeMs()
		fe.PersistenceState = api.PersistenceState_PERSISTED
	}
	ca.b.InodeFile = fe
	ca.e.Body = &ca.b
	if err := t.add(&ca.e); err != nil {
		return nil, nil, err
	}
	return ns.fillInfo(fi, ns.st.get(id), p, false, nil), t, nil
}

// createAlloc is what createLocked allocates for a new file, together.
type createAlloc struct {
	t txn
	e api.JournalEntry
	b api.JournalEntry_InodeFile
	f api.InodeFileEntry
}

// completeAlloc is what completeLocked allocates to seal a file, together.
type completeAlloc struct {
	t txn
	e api.JournalEntry
	b api.JournalEntry_CompleteFile
	c api.CompleteFileEntry
}

// CompleteFile seals a file with its final length.
func (ns *namespace) CompleteFile(ctx context.Context, req *api.CompleteFileRequest) (*api.FileInfo, error) {
	const op = "complete"
	ns.op(op)
	p, err := ns.clean(op, req.GetPath())
	if err != nil {
		return nil, err
	}
	if err := ns.lockUsable(); err != nil {
		return nil, err
	}
	c, err := ns.completeLocked(ctx, p, req, &api.FileInfo{})
	ns.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if err := c.t.wait(ctx); err != nil {
		return c.info, err
	}
	ns.afterComplete(c)
	return c.info, nil
}

// completed is a file completeLocked sealed: its info, the txn to wait
// for, and whether it waits to be persisted (ASYNC_THROUGH).
type completed struct {
	info  *api.FileInfo
	t     *txn
	async bool
}

// afterComplete hands a sealed file, once durable, to the persister when
// it waits to be persisted.
func (ns *namespace) afterComplete(c completed) {
	if c.async && ns.onToBePersist != nil {
		ns.onToBePersist(c.info.GetFileId())
	}
}

// completeLocked checks and seals the file at p (clean). Call with ns.mu
// held, after usable. fi is as createCompleteLocked's.
func (ns *namespace) completeLocked(ctx context.Context, p string, req *api.CompleteFileRequest, fi *api.FileInfo) (completed, error) {
	const op = "complete"
	n := ns.aside(p, req.GetFileId())
	if n == nil {
		n = ns.st.lookup(p)
	}
	pr := ns.caller(ctx)
	var verr error
	switch {
	case n == nil && req.GetFileId() != 0:
		verr = errf(codes.NotFound, op, p, "no such file (file %d was deleted, or the directory it was written in)", req.GetFileId())
	case n == nil:
		verr = ns.missing(op, p, p, pr, "no such file")
	case ns.traverse(op, p, pr, n) != nil:
		verr = ns.traverse(op, p, pr, n)
	case ns.st.owner(n) != pr.user && !ns.may(pr, n, permW):
		verr = ns.denied(op, p, pr, n, permW)
	case n.dir():
		verr = errf(codes.InvalidArgument, op, p, "is a directory")
	case req.GetFileId() != 0 && req.GetFileId() != n.id:
		verr = errf(codes.FailedPrecondition, op, p, "file %d was replaced by file %d", req.GetFileId(), n.id)
	case n.completed():
		verr = errf(codes.FailedPrecondition, op, p, "already complete")
	case req.GetLength() < 0:
		verr = errf(codes.InvalidArgument, op, p, "negative length %d", req.GetLength())
	case req.GetLastModificationTimeMs() < 0:
		verr = errf(codes.InvalidArgument, op, p, "negative modification time %d", req.GetLastModificationTimeMs())
	case (req.GetLength()+ns.st.blockSize(n)-1)/ns.st.blockSize(n) > api.MaxBlocksPerFile:
		verr = errf(codes.InvalidArgument, op, p, "length %d needs more than %d blocks of %d bytes", req.GetLength(), api.MaxBlocksPerFile, ns.st.blockSize(n))
	default:
		if verr = checkXattrNames(op, p, req.GetXattrs()); verr == nil {
			verr = ns.st.checkXattrTotal(op, p, n, req.GetXattrs())
		}
		if verr == nil {
			verr = ns.checkReplaces(op, p, n, req.GetIfReplaces())
		}
		if verr == nil {
			verr = ns.checkUploadComplete(op, p, n, req.GetParts(), req.GetLength(), req.GetUfsInPlace())
		}
	}
	if verr != nil {
		return completed{}, verr
	}
	var t *txn
	if ns.st.isAside(n) {
		t, verr = ns.completeAsideLocked(ctx, p, n, req)
	} else {
		ca := &completeAlloc{t: ns.newTxn()}
		ca.c = api.CompleteFileEntry{
			Id: n.id, Length: req.GetLength(), UfsFingerprint: req.GetUfsFingerprint(), Xattrs: req.GetXattrs(), Parts: partNumbers(req.GetParts()),
			LastModificationTimeMs: req.GetLastModificationTimeMs(),
		}
		ca.b.CompleteFile = &ca.c
		ca.e.Body = &ca.b
		t = &ca.t
		verr = t.add(&ca.e)
	}
	if verr != nil {
		return completed{}, verr
	}
	ns.blocks.trimFile(n.id, func(idx int64) bool { return ns.st.hasBlock(n, idx) })
	ns.blocks.reconcile([]int64{n.id}) // complete now, perhaps persisted
	return completed{info: ns.fillInfo(fi, n, p, false, nil), t: t, async: n.persist() == api.PersistenceState_TO_BE_PERSISTED}, nil
}

// GetStatus returns the status of a path, loading it from the UFS on first
// sight.
func (ns *namespace) GetStatus(ctx context.Context, req *api.GetStatusRequest) (*api.FileInfo, error) {
	return ns.getStatus(ctx, req, false)
}

// getStatus is GetStatus; learned: the caller has learned the path from
// the UFS already (and waited for the journal): a batch's first pass.
func (ns *namespace) getStatus(ctx context.Context, req *api.GetStatusRequest, learned bool) (*api.FileInfo, error) {
	const op = "stat"
	ns.op(op)
	p, err := ns.clean(op, req.GetPath())
	if err != nil {
		return nil, err
	}
	lt := req.GetLoadMetadataType()
	if lt != api.LoadMetadataType_ALWAYS {
		// The common case, a path the namespace holds: one read lock, one
		// walk of the path.
		ns.mu.RLock()
		if n := ns.st.lookup(p); n != nil && ns.usable() == nil {
			info, err := ns.statLocked(ctx, op, p, n, req)
			ns.mu.RUnlock()
			return info, err
		}
		ns.mu.RUnlock()
	}
	if !learned {
		if err := ns.ensureLoaded(ctx, p, lt); err != nil {
			return nil, err
		}
	}
	if lt == api.LoadMetadataType_ALWAYS {
		if err := ns.syncPath(ctx, p); err != nil {
			return nil, err
		}
	}
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	if err := ns.usable(); err != nil {
		return nil, err
	}
	n, depth, comps := ns.st.lookupPrefix(p)
	if depth < len(comps) {
		return nil, ns.missing(op, p, p, ns.caller(ctx), "no such file or directory")
	}
	return ns.statLocked(ctx, op, p, n, req)
}

// statLocked answers GetStatus for inode n at p. Call with ns.mu held.
func (ns *namespace) statLocked(ctx context.Context, op, p string, n *inode, req *api.GetStatusRequest) (*api.FileInfo, error) {
	return ns.statLockedInto(ctx, op, p, n, req, &api.FileInfo{})
}

// statLockedInto is statLocked filling fi, a zero FileInfo.
func (ns *namespace) statLockedInto(ctx context.Context, op, p string, n *inode, req *api.GetStatusRequest, fi *api.FileInfo) (*api.FileInfo, error) {
	pr := ns.caller(ctx)
	if err := ns.traverse(op, p, pr, n); err != nil {
		return nil, err
	}
	if want := req.GetAccess(); want != 0 {
		if want > 7 {
			return nil, errf(codes.InvalidArgument, op, p, "access bits %d: want 0..7 (4 read, 2 write, 1 execute)", want)
		}
		if err := ns.need("open", p, pr, n, want); err != nil {
			return nil, err
		}
	}
	return ns.fillInfo(fi, n, p, true, nil), nil
}

// Delete removes a file or directory (its subtree when recursive) and,
// unless alluvium_only, the same path in the UFS.
func (ns *namespace) Delete(ctx context.Context, req *api.DeleteRequest) error {
	const op = "delete"
	ns.op(op)
	p, err := ns.clean(op, req.GetPath())
	if err != nil {
		return err
	}
	if p == "/" {
		return errf(codes.InvalidArgument, op, p, "the root cannot be deleted")
	}
	if err := ns.ensureLoaded(ctx, p, api.LoadMetadataType_ONCE); err != nil {
		return err
	}
	if !req.GetRecursive() {
		// Emptiness counts the UFS children too.
		ns.mu.RLock()
		n := ns.st.lookup(p)
		need := n != nil && ns.syncPolicy(api.LoadMetadataType_ONCE, ns.now()).needs(n) && !n.mountPoint()
		ns.mu.RUnlock()
		if need {
			if err := ns.loadChildren(ctx, p); err != nil {
				return err
			}
		}
	}
	ns.mu.Lock()
	if err := ns.usable(); err != nil {
		ns.mu.Unlock()
		return err
	}
	if a := ns.aside(p, req.GetFileId()); a != nil {
		t, err := ns.dropAsideLocked(ctx, p, a)
		ns.mu.Unlock()
		if err != nil {
			return err
		}
		return t.wait(ctx)
	}
	n := ns.st.lookup(p)
	pr := ns.caller(ctx)
	var verr error
	switch {
	case n == nil:
		verr = ns.missing(op, p, p, pr, "no such file or directory")
	case req.GetFileId() != 0 && n.id != req.GetFileId():
		verr = errf(codes.FailedPrecondition, op, p, "the path is now file %d, not file %d", n.id, req.GetFileId())
	case ns.traverse(op, p, pr, n) != nil:
		verr = ns.traverse(op, p, pr, n)
	case ns.need(op, p, pr, n.parent, permW|permX) != nil:
		verr = ns.need(op, p, pr, n.parent, permW|permX)
	case n.dir() && n.childCount() > 0 && ns.subtree(op, p, pr, n, permR|permW|permX) != nil:
		// rm -r empties every directory below: each needs read, write and
		// execute, as POSIX asks of the one who removes their entries.
		verr = ns.subtree(op, p, pr, n, permR|permW|permX)
	case n.mountPoint():
		verr = errf(codes.InvalidArgument, op, p, "is a mount point (use unmount)")
	case req.GetUnlessWriting() && n.dir() && len(ns.st.asidesBelow(n)) > 0:
		verr = errf(codes.FailedPrecondition, op, p, "files are being written in it (unless_writing)")
	case n.dir() && n.childCount() > 0 && !req.GetRecursive():
		verr = errf(codes.FailedPrecondition, op, p, "directory not empty (use recursive, rm -r)")
	case len(ns.mountsBelow(p)) > 0:
		verr = errf(codes.FailedPrecondition, op, p, "contains mount point %s (unmount it first)", ns.mountsBelow(p)[0])
	case !req.GetAlluviumOnly():
		verr = ns.readOnly(op, p)
	}
	if verr != nil {
		ns.mu.Unlock()
		return verr
	}
	if !req.GetAlluviumOnly() {
		m, rel := ns.st.mountOf(p)
		fs, err := ns.fsFor(ctx, m)
		if err != nil {
			ns.mu.Unlock()
			return err
		}
		if n.dir() && req.GetRecursive() {
			err = fs.DeleteAll(ctx, rel)
		} else {
			// A directory empty in the namespace may still hold UFS files
			// it does not know yet: a copy writes a file's UFS bytes before
			// entering it, an overwrite its aside bytes. The UFS refuses to
			// remove a directory that is not empty, and so must we; only rm
			// -r removes what is in it.
			err = fs.Delete(ctx, rel)
			if errors.Is(err, ufs.ErrNotFound) || n.dir() && errors.Is(err, ufs.ErrNotDir) {
				err = nil // not in the UFS (a file is where its parent would be)
			}
		}
		if err != nil {
			ns.mu.Unlock()
			return ufsErr(op, p, err)
		}
	}
	ids := ns.st.filesBelow(n)
	t := ns.begin()
	if err := t.add(deleteEntry(n.id)); err != nil {
		ns.mu.Unlock()
		return err
	}
	ns.blocks.removeFiles(ids)
	ns.mu.Unlock()
	return t.wait(ctx)
}

// Rename moves src to dst atomically (in the UFS too when src is persisted).
func (ns *namespace) Rename(ctx context.Context, req *api.RenameRequest) (*api.FileInfo, error) {
	const op = "rename"
	ns.op(op)
	src, err := ns.clean(op, req.GetSrc())
	if err != nil {
		return nil, err
	}
	dst, err := ns.clean(op, req.GetDst())
	if err != nil {
		return nil, err
	}
	what := src + " to " + dst
	switch {
	case src == "/":
		return nil, errf(codes.InvalidArgument, op, what, "the root cannot be renamed")
	case dst == "/":
		return nil, errf(codes.AlreadyExists, op, what, "the destination is the root")
	case src != dst && paths.IsAncestor(src, dst):
		return nil, errf(codes.InvalidArgument, op, what, "the destination is inside the source")
	}
	if err := ns.ensureLoaded(ctx, src, api.LoadMetadataType_ONCE); err != nil {
		return nil, err
	}
	if err := ns.ensureLoaded(ctx, dst, api.LoadMetadataType_ONCE); err != nil {
		return nil, err
	}
	ns.mu.Lock()
	if err := ns.usable(); err != nil {
		ns.mu.Unlock()
		return nil, err
	}
	n := ns.st.lookup(src)
	old := ns.st.lookup(dst) // replaced with overwrite
	dparentPath, dname := paths.Split(dst)
	dp := ns.st.lookup(dparentPath)
	ms, srel := ns.st.mountOf(src)
	md, drel := ns.st.mountOf(dst)
	pr := ns.caller(ctx)
	var verr error
	switch {
	case n == nil:
		verr = ns.missing(op, src, what, pr, src+" does not exist")
	case src == dst:
		info := ns.info(n, src, false)
		ns.mu.Unlock()
		return info, nil
	case n.mountPoint():
		verr = errf(codes.InvalidArgument, op, what, "%s is a mount point", src)
	case len(ns.mountsBelow(src)) > 0:
		verr = errf(codes.FailedPrecondition, op, what, "%s contains mount point %s", src, ns.mountsBelow(src)[0])
	case dp == nil:
		verr = ns.missing(op, dparentPath, what, pr, "parent "+dparentPath+" does not exist")
	case !dp.dir():
		verr = errf(codes.FailedPrecondition, op, what, "parent %s is a file", dparentPath)
	case old != nil && !req.GetOverwrite():
		verr = errf(codes.AlreadyExists, op, what, "%s exists", dst)
	case old != nil && (old.dir() || n.dir()):
		verr = errf(codes.AlreadyExists, op, what, "%s exists (overwrite replaces a file by a file only)", dst)
	case ms.GetMountId() != md.GetMountId():
		verr = errf(codes.InvalidArgument, op, what, "across mounts (%s and %s): copy with the job service instead", ms.GetAlluviumPath(), md.GetAlluviumPath())
	}
	if verr == nil {
		// Both parents change: each needs write and execute, and every
		// directory above them execute.
		if verr = ns.traverse(op, what, pr, n); verr == nil {
			if verr = ns.need(op, what, pr, n.parent, permW|permX); verr == nil {
				if verr = ns.traverse(op, what, pr, dp); verr == nil {
					verr = ns.need(op, what, pr, dp, permW|permX)
				}
				if verr == nil && old != nil {
					// Replacing a file changes its bytes.
					verr = ns.need(op, what, pr, old, permW)
				}
			}
		}
	}
	if verr == nil {
		verr = ns.readOnly(op, src)
	}
	if verr != nil {
		ns.mu.Unlock()
		return nil, verr
	}
	if n.persisted() {
		fs, err := ns.fsFor(ctx, ms)
		if err == nil {
			if parent, _ := paths.Split("/" + drel); parent != "/" {
				err = fs.Mkdirs(ctx, parent[1:])
			}
		}
		if err == nil {
			if old != nil {
				err = ufs.Replace(ctx, fs, srel, drel)
			} else {
				err = fs.Rename(ctx, srel, drel)
			}
			if errors.Is(err, ufs.ErrNotFound) {
				ns.log.Warn("rename: source missing in the UFS; renaming in Alluvium only", zap.String("src", src), zap.Error(err))
				err = nil
			}
		}
		if err != nil {
			ns.mu.Unlock()
			return nil, ufsErr(op, what, err)
		}
	} else if old != nil && old.persisted() {
		// The new file is not in the UFS: the old one's bytes must not
		// show through there.
		fs, err := ns.fsFor(ctx, md)
		if err == nil {
			if err = fs.Delete(ctx, drel); errors.Is(err, ufs.ErrNotFound) {
				err = nil
			}
		}
		if err != nil {
			ns.mu.Unlock()
			return nil, ufsErr(op, what, err)
		}
	}
	t := ns.begin()
	if old != nil {
		if err := t.add(deleteEntry(old.id)); err != nil {
			ns.mu.Unlock()
			return nil, err
		}
		ns.blocks.removeFiles([]int64{old.id})
	}
	if err := t.add(&api.JournalEntry{Body: &api.JournalEntry_Rename{Rename: &api.RenameEntry{Id: n.id, NewParentId: dp.id, NewName: dname}}}); err != nil {
		ns.mu.Unlock()
		return nil, err
	}
	if n.persisted() {
		persisted := api.PersistenceState_PERSISTED
		for a := dp; a != nil && !a.persisted(); a = a.parent {
			if err := t.add(setAttrEntry(&api.SetAttributeEntry{Id: a.id, PersistenceState: &persisted})); err != nil {
				ns.mu.Unlock()
				return nil, err
			}
		}
	}
	info := ns.info(n, dst, false)
	ns.mu.Unlock()
	return info, t.wait(ctx)
}

// SetAttribute changes the attributes a request sets, on one inode or a
// whole subtree.
func (ns *namespace) SetAttribute(ctx context.Context, req *api.SetAttributeRequest) (*api.FileInfo, error) {
	const op = "setattr"
	ns.op(op)
	p, err := ns.clean(op, req.GetPath())
	if err != nil {
		return nil, err
	}
	switch {
	case req.Mode != nil && req.GetMode() > 0o7777:
		return nil, errf(codes.InvalidArgument, op, p, "mode %o is not a permission mode", req.GetMode())
	case req.Owner != nil && req.GetOwner() == "":
		return nil, errf(codes.InvalidArgument, op, p, "empty owner")
	case req.Group != nil && req.GetGroup() == "":
		return nil, errf(codes.InvalidArgument, op, p, "empty group")
	case req.PersistenceState != nil && (req.GetPersistenceState() == api.PersistenceState_PERSISTENCE_STATE_UNSPECIFIED || api.PersistenceState_name[int32(req.GetPersistenceState())] == ""):
		return nil, errf(codes.InvalidArgument, op, p, "persistence state %v", req.GetPersistenceState())
	case req.ReplicationMin != nil && req.GetReplicationMin() < 0:
		return nil, errf(codes.InvalidArgument, op, p, "replication min %d", req.GetReplicationMin())
	case req.ReplicationMax != nil && req.GetReplicationMax() < -1:
		return nil, errf(codes.InvalidArgument, op, p, "replication max %d (-1: no maximum)", req.GetReplicationMax())
	case req.ReplicationMin != nil && req.ReplicationMax != nil && req.GetReplicationMax() >= 0 && req.GetReplicationMin() > req.GetReplicationMax():
		return nil, errf(codes.InvalidArgument, op, p, "replication min %d above max %d", req.GetReplicationMin(), req.GetReplicationMax())
	case req.Ttl != nil && req.GetTtl() < 0:
		return nil, errf(codes.InvalidArgument, op, p, "negative ttl %d", req.GetTtl())
	case req.TtlAction != nil && req.GetTtlAction() != "" && req.GetTtlAction() != "FREE" && req.GetTtlAction() != "DELETE":
		return nil, errf(codes.InvalidArgument, op, p, "ttl action %q: want FREE or DELETE", req.GetTtlAction())
	case len(req.GetXattrs()) > 0 && req.GetRecursive():
		return nil, errf(codes.InvalidArgument, op, p, "extended attributes are set on one inode, not recursively")
	}
	if err := checkXattrNames(op, p, req.GetXattrs()); err != nil {
		return nil, err
	}
	if err := ns.ensureLoaded(ctx, p, api.LoadMetadataType_ONCE); err != nil {
		return nil, err
	}
	ns.mu.Lock()
	if err := ns.usable(); err != nil {
		ns.mu.Unlock()
		return nil, err
	}
	n := ns.st.lookup(p)
	if n == nil || req.GetFileId() != 0 && n.id != req.GetFileId() {
		if req.GetPersistFrom() != "" {
			ns.dropPersistTemp(ctx, p, req.GetPersistFrom())
		}
		var merr error
		if n == nil {
			merr = ns.missing(op, p, p, ns.caller(ctx), "no such file or directory")
		}
		ns.mu.Unlock()
		if n == nil {
			return nil, merr
		}
		return nil, errf(codes.FailedPrecondition, op, p, "file %d is gone: the path is now file %d (deleted, renamed or re-created)", req.GetFileId(), n.id)
	}
	var ids []int64
	if req.GetRecursive() {
		walk(n, func(x *inode) bool { ids = append(ids, x.id); return true })
	} else {
		ids = []int64{n.id}
	}
	pr := ns.caller(ctx)
	perr := ns.traverse(op, p, pr, n)
	if perr == nil {
		perr = ns.setattrAccess(op, p, pr, req, ids)
	}
	if perr == nil && req.GetTtl() > 0 {
		perr = ns.checkTTLEnd(op, p, req.GetTtl(), ids)
	}
	if perr == nil {
		perr = ns.st.checkXattrTotal(op, p, n, req.GetXattrs())
	}
	if perr != nil {
		if req.GetPersistFrom() != "" {
			ns.dropPersistTemp(ctx, p, req.GetPersistFrom())
		}
		ns.mu.Unlock()
		return nil, perr
	}
	if req.GetPersistFrom() != "" {
		info, t, err := ns.commitPersistLocked(ctx, p, n, req)
		ns.mu.Unlock()
		if err != nil || t == nil {
			return info, err
		}
		return info, t.wait(ctx)
	}
	t := ns.begin()
	entryFor := func(id int64) *api.JournalEntry {
		return setAttrEntry(&api.SetAttributeEntry{
			Id: id, Mode: req.Mode, Owner: req.Owner, Group: req.Group, Pinned: req.Pinned,
			PersistenceState: req.PersistenceState, ReplicationMin: req.ReplicationMin,
			ReplicationMax: req.ReplicationMax, Ttl: req.Ttl, TtlAction: req.TtlAction,
			UfsFingerprint: req.UfsFingerprint, Xattrs: req.GetXattrs(),
		})
	}
	var async []int64
	for _, id := range ids {
		if err := t.add(entryFor(id)); err != nil {
			ns.mu.Unlock()
			return nil, err
		}
		if req.Pinned != nil || req.PersistenceState != nil {
			ns.blocks.reconcile([]int64{id})
		}
		if x := ns.st.get(id); x != nil && !x.dir() && x.completed() && x.persist() == api.PersistenceState_TO_BE_PERSISTED {
			async = append(async, id)
		}
	}
	info := ns.info(n, p, false)
	ns.mu.Unlock()
	if err := t.wait(ctx); err != nil {
		return info, err
	}
	if len(async) > 0 && ns.onToBePersist != nil {
		ns.onToBePersist(async...)
	}
	return info, nil
}

// Mount attaches a UFS at a new path.
func (ns *namespace) Mount(ctx context.Context, req *api.MountRequest) (*api.MountPointInfo, error) {
	const op = "mount"
	ns.op(op)
	p, err := ns.clean(op, req.GetAlluviumPath())
	if err != nil {
		return nil, err
	}
	if p == "/" {
		return nil, errf(codes.AlreadyExists, op, p, "the root is mounted when the journal is formatted")
	}
	// A mount reaches any UFS the master can (file:///etc, any bucket): only
	// a superuser may add or remove one.
	if err := ns.superOnly(ctx, op, p); err != nil {
		return nil, err
	}
	uri := strings.TrimSpace(req.GetUfsUri())
	if uri == "" {
		return nil, errf(codes.InvalidArgument, op, p, "empty UFS URI")
	}
	fs, err := ufs.Open(ctx, uri, req.GetOptions())
	if err != nil {
		return nil, errf(codes.InvalidArgument, op, p, "%v", err)
	}
	if st, err := fs.Stat(ctx, ""); err != nil || !st.IsDir {
		fs.Close()
		if err == nil {
			err = fmt.Errorf("not a directory")
		}
		return nil, errf(codes.InvalidArgument, op, p, "UFS %s is not usable: %v", uri, err)
	}
	keep := false
	defer func() {
		if !keep {
			fs.Close()
		}
	}()
	if err := ns.ensureLoaded(ctx, p, api.LoadMetadataType_ONCE); err != nil {
		return nil, err
	}
	ns.mu.Lock()
	if err := ns.usable(); err != nil {
		ns.mu.Unlock()
		return nil, err
	}
	parentPath, name := paths.Split(p)
	parent := ns.st.lookup(parentPath)
	var verr error
	switch {
	case ns.st.lookup(p) != nil:
		verr = errf(codes.AlreadyExists, op, p, "path exists (mount on a new path)")
	case parent == nil:
		verr = errf(codes.NotFound, op, p, "parent %s does not exist", parentPath)
	case !parent.dir():
		verr = errf(codes.FailedPrecondition, op, p, "parent %s is a file", parentPath)
	}
	if verr == nil {
		for mp, m := range ns.st.mounts {
			if uriOverlaps(m.GetUfsUri(), uri) {
				verr = errf(codes.InvalidArgument, op, p, "UFS %s overlaps mount %s (%s)", uri, mp, m.GetUfsUri())
				break
			}
		}
	}
	if verr != nil {
		ns.mu.Unlock()
		return nil, verr
	}
	mount := &api.MountPointInfo{
		AlluviumPath: p, UfsUri: uri, Options: req.GetOptions(), ReadOnly: req.GetReadOnly(),
		Shared: req.GetShared(), MountId: ns.st.nextMountID,
	}
	t := ns.begin()
	if err := t.add(&api.JournalEntry{Body: &api.JournalEntry_AddMountPoint{AddMountPoint: &api.AddMountPointEntry{Mount: mount}}}); err != nil {
		ns.mu.Unlock()
		return nil, err
	}
	if err := t.add(dirEntry(&api.InodeDirectoryEntry{
		Id: ns.st.nextInodeID, ParentId: parent.id, Name: name, Mode: 0o755, Owner: ns.cfg.owner, Group: ns.cfg.group,
		CreationTimeMs: t.now, PersistenceState: api.PersistenceState_PERSISTED, MountPoint: true,
	})); err != nil {
		ns.mu.Unlock()
		return nil, err
	}
	ns.ufsMu.Lock()
	ns.ufs[mount.MountId] = fs
	ns.ufsMu.Unlock()
	keep = true
	out := cloneMount(mount)
	ns.mu.Unlock()
	return out, t.wait(ctx)
}

// uriOverlaps reports whether one UFS URI is the other or inside it.
func uriOverlaps(a, b string) bool {
	a, b = strings.TrimRight(a, "/")+"/", strings.TrimRight(b, "/")+"/"
	return strings.HasPrefix(a, b) || strings.HasPrefix(b, a)
}

// Unmount detaches a mount: its inodes leave the namespace, the UFS keeps
// its files.
func (ns *namespace) Unmount(ctx context.Context, req *api.UnmountRequest) error {
	const op = "unmount"
	ns.op(op)
	p, err := ns.clean(op, req.GetAlluviumPath())
	if err != nil {
		return err
	}
	if p == "/" {
		return errf(codes.InvalidArgument, op, p, "the root mount cannot be unmounted")
	}
	if err := ns.superOnly(ctx, op, p); err != nil {
		return err
	}
	ns.mu.Lock()
	if err := ns.usable(); err != nil {
		ns.mu.Unlock()
		return err
	}
	m, ok := ns.st.mounts[p]
	var verr error
	switch {
	case !ok:
		verr = errf(codes.NotFound, op, p, "not a mount point")
	case len(ns.mountsBelow(p)) > 0:
		verr = errf(codes.FailedPrecondition, op, p, "mount %s is inside it (unmount it first)", ns.mountsBelow(p)[0])
	}
	if verr != nil {
		ns.mu.Unlock()
		return verr
	}
	n := ns.st.lookup(p)
	ids := ns.st.filesBelow(n)
	t := ns.begin()
	if err := t.add(deleteEntry(n.id)); err != nil {
		ns.mu.Unlock()
		return err
	}
	if err := t.add(&api.JournalEntry{Body: &api.JournalEntry_DeleteMountPoint{DeleteMountPoint: &api.DeleteMountPointEntry{AlluviumPath: p}}}); err != nil {
		ns.mu.Unlock()
		return err
	}
	ns.blocks.removeFiles(ids)
	id := m.GetMountId()
	ns.mu.Unlock()
	ns.dropUFS(id)
	return t.wait(ctx)
}

// MountTable returns the mounts sorted by path.
func (ns *namespace) MountTable() []*api.MountPointInfo {
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	out := make([]*api.MountPointInfo, 0, len(ns.st.mounts))
	for _, m := range ns.st.mounts {
		out = append(out, cloneMount(m))
	}
	sortMounts(out)
	return out
}

// Free drops the cached copies of the blocks under a path.
func (ns *namespace) Free(ctx context.Context, req *api.FreeRequest) (int64, error) {
	const op = "free"
	ns.op(op)
	p, err := ns.clean(op, req.GetPath())
	if err != nil {
		return 0, err
	}
	if err := ns.ensureLoaded(ctx, p, api.LoadMetadataType_ONCE); err != nil {
		return 0, err
	}
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	if err := ns.usable(); err != nil {
		return 0, err
	}
	n := ns.st.lookup(p)
	pr := ns.caller(ctx)
	switch {
	case n == nil:
		return 0, ns.missing(op, p, p, pr, "no such file or directory")
	case ns.traverse(op, p, pr, n) != nil:
		return 0, ns.traverse(op, p, pr, n)
	case ns.need(op, p, pr, n, permW) != nil:
		// Freeing drops what others read from the cache: it takes write.
		return 0, ns.need(op, p, pr, n, permW)
	case n.dir() && !req.GetRecursive():
		return 0, errf(codes.InvalidArgument, op, p, "is a directory (use recursive)")
	}
	var ids []int64
	var verr error
	walk(n, func(x *inode) bool {
		if verr != nil {
			return false
		}
		if x.dir() {
			return true
		}
		switch {
		case req.GetForce():
		case !x.persisted():
			verr = errf(codes.FailedPrecondition, op, ns.st.pathOf(x), "not persisted: freeing would drop the only copy (use force)")
		case x.pinned():
			verr = errf(codes.FailedPrecondition, op, ns.st.pathOf(x), "pinned (unpin it or use force)")
		}
		ids = append(ids, x.id)
		return true
	})
	if verr != nil {
		return 0, verr
	}
	return ns.blocks.free(ids), nil
}

// workerID returns the stable id of the worker at addr, journaling a new one
// the first time.
func (ns *namespace) workerID(ctx context.Context, addr string) (int64, error) {
	ns.mu.RLock()
	id, ok := ns.st.workerIDs[addr]
	ns.mu.RUnlock()
	if ok {
		return id, nil
	}
	ns.mu.Lock()
	if err := ns.usable(); err != nil {
		ns.mu.Unlock()
		return 0, err
	}
	if id, ok := ns.st.workerIDs[addr]; ok {
		ns.mu.Unlock()
		return id, nil
	}
	id = ns.st.nextWorkerID
	t := ns.begin()
	if err := t.add(&api.JournalEntry{Body: &api.JournalEntry_WorkerId{WorkerId: &api.WorkerIdEntry{Address: addr, WorkerId: id}}}); err != nil {
		ns.mu.Unlock()
		return 0, err
	}
	ns.mu.Unlock()
	return id, t.wait(ctx)
}

// bootstrap creates the root directory and the root mount in an empty
// state (a freshly formatted journal).
func (ns *namespace) bootstrap(ctx context.Context, rootURI string, opts map[string]string) error {
	if rootURI == "" {
		return fmt.Errorf("no root UFS (set fsmaster.ufs or --ufs)")
	}
	fs, err := ufs.Open(ctx, rootURI, opts)
	if err != nil {
		return fmt.Errorf("root UFS: %w", err)
	}
	fs.Close()
	ns.mu.Lock()
	if ns.st.HasRoot() {
		ns.mu.Unlock()
		return nil
	}
	t := ns.begin()
	err = t.add(dirEntry(&api.InodeDirectoryEntry{
		Id: ns.st.nextInodeID, Name: "", Mode: 0o755, Owner: ns.cfg.owner, Group: ns.cfg.group,
		CreationTimeMs: t.now, PersistenceState: api.PersistenceState_PERSISTED, MountPoint: true,
	}))
	if err == nil {
		err = t.add(&api.JournalEntry{Body: &api.JournalEntry_AddMountPoint{AddMountPoint: &api.AddMountPointEntry{Mount: &api.MountPointInfo{
			AlluviumPath: "/", UfsUri: rootURI, Options: opts, MountId: ns.st.nextMountID,
		}}}})
	}
	ns.mu.Unlock()
	if err != nil {
		return err
	}
	return t.wait(ctx)
}
