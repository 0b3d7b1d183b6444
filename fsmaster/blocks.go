package fsmaster

import (
	"fmt"
	"maps"
	"net"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/config"
)

// The block map is soft state: which worker holds which block in which
// tier, and what each worker reported last. Nothing here is journaled;
// workers report their blocks again when they (re-)register.
//
// Lock order: the namespace lock (when needed) before blockMap.mu.

type blockLoc struct {
	worker int64
	tier   string
	pinned bool // the worker said it never evicts this copy
}

type blockEntry struct {
	length int64
	locs   []blockLoc
}

type workerState struct {
	id   int64
	addr *api.WorkerNetAddress
	key  string // host:rpc_port
	// tiers, lastHB and ttl are atomics: an empty heartbeat (the common
	// one) stores them under the read lock (heartbeatFast).
	tiers    atomic.Pointer[[]*api.TierUsage]
	lastHB   atomic.Int64 // unix ns of the last heartbeat (or registration, commit)
	ttl      atomic.Int64 // ns: silent longer than this after lastHB, LOST
	start    time.Time
	state    api.WorkerState
	blocks   map[int64]struct{}
	toRemove []int64 // sent with the next heartbeat reply, once
	// toPin and toUnpin are copies whose pin is not what their file needs
	// (see blockMap.keep), sent with the next heartbeat reply.
	toPin, toUnpin map[int64]struct{}
	// lostBlocks are the blocks it held when it was declared LOST: what
	// survives of them is counted again when it registers; other blocks it
	// reports then, that another worker cached meanwhile, are not.
	lostBlocks map[int64]struct{}
	lostReason string
	// Confirming a silence with the job master (markLost): checking while
	// it is asked; graceUntil, once it answered that the process's job
	// worker still calls it, is when the one more TTL it gave ends; spared
	// says that happened since the last heartbeat (once per silence).
	checking   bool
	spared     bool
	graceUntil time.Time
}

type blockMap struct {
	mu      sync.RWMutex
	blocks  map[int64]*blockEntry
	files   map[int64][]int64 // file id → block ids with at least one location
	workers map[int64]*workerState
	live    int // workers LIVE
	// lostTotal counts LOST declarations since start (a metric).
	lostTotal atomic.Int64
	now       func() time.Time
	// keep says whether every copy of a block must be pinned on its worker
	// (never evicted): its file is pinned, or not in the UFS yet. Set by
	// the namespace; called with the namespace lock held (as every caller
	// of addLoc and reconcile holds it). nil: nothing is kept.
	keep func(blockID int64) bool

	// Liveness handed to workers (config.Liveness).
	interval, timeout time.Duration
	maxPerSecond      float64
	// removeChunk bounds the block ids one heartbeat reply carries
	// (removals, pins and unpins together; default maxRemoveIDs); the rest
	// go with the next replies.
	removeChunk int
}

// maxRemoveIDs is how many block ids (removals, pins and unpins) one
// heartbeat reply carries: about 5 MB, below the 16 MiB a message may hold
// (freeing, deleting or pinning millions of cached files queues more than
// one reply can).
const maxRemoveIDs = 500000

func newBlockMap(now func() time.Time) *blockMap {
	return &blockMap{
		blocks:      map[int64]*blockEntry{},
		files:       map[int64][]int64{},
		workers:     map[int64]*workerState{},
		now:         now,
		interval:    time.Second,
		timeout:     config.DefaultWorkerTimeout,
		removeChunk: maxRemoveIDs,
	}
}

// setLiveness sets the heartbeat interval, the timeout and the rate they
// are scaled by (fsmaster.worker.*).
func (b *blockMap) setLiveness(interval, timeout time.Duration, maxPerSecond float64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if interval > 0 {
		b.interval = interval
	}
	if timeout > 0 {
		b.timeout = timeout
	}
	b.maxPerSecond = maxPerSecond
}

// timingLocked is the heartbeat interval and TTL for the workers now LIVE
// (call with mu held).
func (b *blockMap) timingLocked() (every, ttl time.Duration) {
	return config.Liveness(b.interval, b.timeout, b.maxPerSecond, max(b.live, 1))
}

// timing is timingLocked for a reply to a worker.
func (b *blockMap) timing() (every, ttl time.Duration) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.timingLocked()
}

// reset forgets every location and worker: a master that takes the lead
// (embedded journal) starts from what the workers report to it.
func (b *blockMap) reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.blocks = map[int64]*blockEntry{}
	b.files = map[int64][]int64{}
	b.workers = map[int64]*workerState{}
	b.live = 0
}

// workerKey is the stable identity of a worker: host:rpc_port.
func workerKey(a *api.WorkerNetAddress) string {
	return net.JoinHostPort(a.GetHost(), strconv.Itoa(int(a.GetRpcPort())))
}

// forgetPin drops a queued pin or unpin of block id (the copy is gone).
func (w *workerState) forgetPin(id int64) {
	delete(w.toPin, id)
	delete(w.toUnpin, id)
}

// wantPin queues a PIN or UNPIN of w's copy l of block id when its pin is
// not keep. Call with mu held.
func (b *blockMap) wantPin(w *workerState, l *blockLoc, id int64, keep bool) {
	if w == nil {
		return
	}
	if w.toPin == nil {
		w.toPin, w.toUnpin = map[int64]struct{}{}, map[int64]struct{}{}
	}
	w.forgetPin(id)
	switch {
	case keep && !l.pinned:
		w.toPin[id] = struct{}{}
	case !keep && l.pinned:
		w.toUnpin[id] = struct{}{}
	}
}

// reconcile queues the pins and unpins that make every cached copy of the
// files' blocks kept exactly when keep says (after a pin or persistence
// change). Call with the namespace lock held.
func (b *blockMap) reconcile(fileIDs []int64) {
	if b.keep == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, f := range fileIDs {
		b.reconcileLocked(b.files[f])
	}
}

// reconcileBlocks is reconcile for some blocks of a file.
func (b *blockMap) reconcileBlocks(ids []int64) {
	if b.keep == nil || len(ids) == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reconcileLocked(ids)
}

func (b *blockMap) reconcileLocked(ids []int64) {
	for _, id := range ids {
		e := b.blocks[id]
		if e == nil {
			continue
		}
		keep := b.keep(id)
		for i := range e.locs {
			b.wantPin(b.workers[e.locs[i].worker], &e.locs[i], id, keep)
		}
	}
}

// addLoc records that worker w holds block id (call with mu held), and
// whether the worker pinned it.
func (b *blockMap) addLoc(w *workerState, id, length int64, tier string, pinned bool) {
	keep := b.keep != nil && b.keep(id)
	e := b.blocks[id]
	if e == nil {
		e = &blockEntry{length: length}
		b.blocks[id] = e
		f := api.FileIDOfBlock(id)
		b.files[f] = append(b.files[f], id)
	}
	if length > 0 {
		e.length = length
	}
	for i := range e.locs {
		if e.locs[i].worker == w.id {
			e.locs[i].tier, e.locs[i].pinned = tier, pinned
			w.blocks[id] = struct{}{}
			b.wantPin(w, &e.locs[i], id, keep)
			return
		}
	}
	e.locs = append(e.locs, blockLoc{worker: w.id, tier: tier, pinned: pinned})
	w.blocks[id] = struct{}{}
	b.wantPin(w, &e.locs[len(e.locs)-1], id, keep)
}

// dropLoc forgets that worker wid holds block id (call with mu held).
func (b *blockMap) dropLoc(wid, id int64) {
	if w := b.workers[wid]; w != nil {
		delete(w.blocks, id)
		w.forgetPin(id)
	}
	e := b.blocks[id]
	if e == nil {
		return
	}
	e.locs = slices.DeleteFunc(e.locs, func(l blockLoc) bool { return l.worker == wid })
	if len(e.locs) == 0 {
		b.dropBlock(id)
	}
}

func (b *blockMap) dropBlock(id int64) {
	delete(b.blocks, id)
	f := api.FileIDOfBlock(id)
	ids := slices.DeleteFunc(b.files[f], func(x int64) bool { return x == id })
	if len(ids) == 0 {
		delete(b.files, f)
	} else {
		b.files[f] = ids
	}
}

// evict drops every location of the given blocks and tells their workers to
// remove them. It returns how many (block, worker) copies it dropped.
func (b *blockMap) evict(ids []int64) int64 {
	var n int64
	for _, id := range ids {
		e := b.blocks[id]
		if e == nil {
			continue
		}
		for _, l := range e.locs {
			if w := b.workers[l.worker]; w != nil {
				delete(w.blocks, id)
				w.forgetPin(id)
				w.toRemove = append(w.toRemove, id)
			}
			n++
		}
		b.dropBlock(id)
	}
	return n
}

// removeFiles forgets the blocks of deleted files; their workers are told to
// remove them.
func (b *blockMap) removeFiles(fileIDs []int64) {
	b.free(fileIDs)
}

// free evicts every cached block of the files and returns how many blocks
// had at least one copy.
func (b *blockMap) free(fileIDs []int64) int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	var blocks int64
	for _, f := range fileIDs {
		ids := slices.Clone(b.files[f])
		blocks += int64(len(ids))
		b.evict(ids)
	}
	return blocks
}

// removeBlocks evicts blocks (a replaced part's).
func (b *blockMap) removeBlocks(ids []int64) {
	if len(ids) == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.evict(ids)
}

// trimFile evicts the blocks of a file that keep refuses (bytes of
// an abandoned longer write).
func (b *blockMap) trimFile(fileID int64, keep func(idx int64) bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var extra []int64
	for _, id := range b.files[fileID] {
		if !keep(api.BlockIndex(id)) {
			extra = append(extra, id)
		}
	}
	b.evict(extra)
}

// blockValidity says whether a reported block belongs to a live file: the
// file exists and, when complete, has a block at that index.
type blockValidity func(blockID int64) bool

// register replaces everything known about worker id with a full report.
// Blocks that belong to no file are not recorded; the returned commands tell
// the worker to remove them.
func (b *blockMap) register(id int64, addr *api.WorkerNetAddress, tiers []*api.TierUsage, report []*api.BlockReport, valid blockValidity) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	w := b.workers[id]
	if w != nil {
		for bid := range w.blocks {
			b.dropLoc(id, bid)
		}
	} else {
		w = &workerState{id: id, start: now}
		b.workers[id] = w
	}
	if w.state != api.WorkerState_LIVE {
		b.live++
	}
	w.addr = addr
	w.key = workerKey(addr)
	w.tiers.Store(&tiers)
	w.lastHB.Store(now.UnixNano())
	w.spared, w.graceUntil = false, time.Time{}
	w.state = api.WorkerState_LIVE
	w.setTTL(b.timingLocked())
	w.blocks = make(map[int64]struct{}, len(report))
	w.toRemove, w.toPin, w.toUnpin = nil, nil, nil
	lost := w.lostBlocks
	w.lostBlocks, w.lostReason = nil, ""
	for _, r := range report {
		id := r.GetBlockId()
		if !valid(id) {
			w.toRemove = append(w.toRemove, id)
			continue
		}
		if _, held := lost[id]; lost != nil && !held && b.blocks[id] != nil {
			// Stored while the cluster counted this worker lost, and cached
			// elsewhere meanwhile (a task that ran here was run again on
			// another worker): that copy replaced this one.
			w.toRemove = append(w.toRemove, id)
			continue
		}
		b.addLoc(w, id, r.GetLength(), r.GetTier(), r.GetPinned())
	}
}

func (w *workerState) setTTL(_, ttl time.Duration) { w.ttl.Store(int64(ttl)) }

// silentFor is how long w has not been heard from at now.
func (w *workerState) silentFor(now time.Time) time.Duration {
	return now.Sub(time.Unix(0, w.lastHB.Load()))
}

// heartbeatFast is heartbeat for the common case — a LIVE worker with no
// block changes to report and no commands waiting for it — under the read
// lock only, so that thousands of workers' heartbeats do not queue one
// behind the other (nor behind the namespace lock, which validating
// blocks needs). ok false: take the full path.
func (b *blockMap) heartbeatFast(id int64, tiers []*api.TierUsage, added []*api.BlockReport, removed []int64) (ok bool) {
	if len(added) > 0 || len(removed) > 0 {
		return false
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	w := b.workers[id]
	if w == nil || w.state != api.WorkerState_LIVE || w.spared || w.checking ||
		len(w.toRemove) > 0 || len(w.toPin) > 0 || len(w.toUnpin) > 0 {
		return false
	}
	w.lastHB.Store(b.now().UnixNano())
	w.setTTL(b.timingLocked())
	if len(tiers) > 0 {
		w.tiers.Store(&tiers)
	}
	return true
}

// heartbeat applies a worker's incremental report and returns the commands
// for it. An unknown or LOST worker is told to register again.
func (b *blockMap) heartbeat(id int64, tiers []*api.TierUsage, added []*api.BlockReport, removed []int64, valid blockValidity) []*api.WorkerCommand {
	b.mu.Lock()
	defer b.mu.Unlock()
	w := b.workers[id]
	if w == nil || w.state != api.WorkerState_LIVE {
		return []*api.WorkerCommand{{Type: api.WorkerCommand_REGISTER}}
	}
	w.lastHB.Store(b.now().UnixNano())
	w.spared, w.graceUntil = false, time.Time{}
	w.setTTL(b.timingLocked())
	if len(tiers) > 0 {
		w.tiers.Store(&tiers)
	}
	for _, bid := range removed {
		b.dropLoc(id, bid)
	}
	for _, r := range added {
		if valid(r.GetBlockId()) {
			b.addLoc(w, r.GetBlockId(), r.GetLength(), r.GetTier(), r.GetPinned())
		} else {
			w.toRemove = append(w.toRemove, r.GetBlockId())
		}
	}
	budget := b.removeChunk
	var cmds []*api.WorkerCommand
	if len(w.toRemove) > 0 {
		ids := w.toRemove
		w.toRemove = nil
		slices.Sort(ids)
		ids = slices.Compact(ids)
		if len(ids) > budget {
			w.toRemove = slices.Clone(ids[budget:])
			ids = ids[:budget]
		}
		budget -= len(ids)
		cmds = append(cmds, &api.WorkerCommand{Type: api.WorkerCommand_REMOVE_BLOCKS, BlockIds: ids})
	}
	for _, q := range []struct {
		t   api.WorkerCommand_Type
		ids map[int64]struct{}
	}{{api.WorkerCommand_PIN_BLOCKS, w.toPin}, {api.WorkerCommand_UNPIN_BLOCKS, w.toUnpin}} {
		if len(q.ids) > 0 && budget > 0 {
			ids := slices.Sorted(maps.Keys(q.ids))
			if len(ids) > budget {
				ids = ids[:budget]
			}
			for _, id := range ids {
				delete(q.ids, id)
			}
			budget -= len(ids)
			cmds = append(cmds, &api.WorkerCommand{Type: q.t, BlockIds: ids})
		}
	}
	return cmds
}

// commit records one block a worker has just stored (pinned or not).
func (b *blockMap) commit(id, blockID, length int64, tier string, pinned, valid bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	w := b.workers[id]
	if w == nil || w.state != api.WorkerState_LIVE {
		return fmt.Errorf("worker %d is not registered", id)
	}
	if !valid {
		w.toRemove = append(w.toRemove, blockID)
		return fmt.Errorf("block %d belongs to no file (file %d deleted?)", blockID, api.FileIDOfBlock(blockID))
	}
	w.lastHB.Store(b.now().UnixNano())
	b.addLoc(w, blockID, length, tier, pinned)
	// A commit is fresh news: the worker holds the block now (e.g. a load
	// right after a free re-cached it), so a removal still waiting for the
	// next heartbeat reply must not delete it.
	w.toRemove = slices.DeleteFunc(w.toRemove, func(x int64) bool { return x == blockID })
	return nil
}

// markLost turns workers silent for longer than their TTL LOST and drops
// their block locations. It returns them (copies) in id order. With
// confirm, a worker silent for the first time since its last heartbeat is
// not declared but returned among suspects (marked checking): the caller
// asks the job master whether the process still calls it, and ends the
// check with spare or confirmLost.
func (b *blockMap) markLost(confirm bool) (lost, suspects []*api.WorkerInfo) {
	// The pass over every worker runs under the read lock, which the
	// heartbeats' fast path shares: under the write lock, each pass (every
	// second, over 10,000 workers) held every heartbeat arriving meanwhile
	// — the most waited-on lock of the FS master at that scale. The write
	// lock is taken only when some worker is silent, which is rare.
	if !b.anySilent() {
		return nil, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	for _, w := range b.workers {
		if !w.silentPast(now) {
			continue
		}
		if confirm && !w.spared {
			w.checking = true
			suspects = append(suspects, w.info())
			continue
		}
		b.loseLocked(w, fmt.Sprintf("no heartbeat for %s", time.Duration(w.ttl.Load())))
		lost = append(lost, w.info())
	}
	sort.Slice(lost, func(i, j int) bool { return lost[i].Id < lost[j].Id })
	return lost, suspects
}

// silentPast reports whether w is a LIVE worker, not being checked,
// silent past its TTL and its grace. Call with b.mu held (read or write).
func (w *workerState) silentPast(now time.Time) bool {
	return w.state == api.WorkerState_LIVE && !w.checking && w.silentFor(now) > time.Duration(w.ttl.Load()) && !now.Before(w.graceUntil)
}

// anySilent reports whether markLost has a worker to look at.
func (b *blockMap) anySilent() bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	now := b.now()
	for _, w := range b.workers {
		if w.silentPast(now) {
			return true
		}
	}
	return false
}

// spare ends the check of a suspect whose process the job master still
// hears from: one more TTL, once per silence.
func (b *blockMap) spare(id int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if w := b.workers[id]; w != nil && w.checking {
		w.checking, w.spared = false, true
		w.graceUntil = b.now().Add(time.Duration(w.ttl.Load()))
	}
}

// confirmLost ends the check of a suspect the job master has not heard
// from either: LOST, unless it heartbeated meanwhile. It reports whether
// it declared it.
func (b *blockMap) confirmLost(id int64) (*api.WorkerInfo, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	w := b.workers[id]
	if w == nil || !w.checking {
		return nil, false
	}
	w.checking = false
	if w.state != api.WorkerState_LIVE || w.silentFor(b.now()) <= time.Duration(w.ttl.Load()) {
		return nil, false
	}
	b.loseLocked(w, fmt.Sprintf("no heartbeat for %s", time.Duration(w.ttl.Load())))
	return w.info(), true
}

// declareLost makes worker id LOST now (the job master found the process
// silent) unless it heartbeated within unlessWithin (> 0): then heard, and
// nothing changes. wasLive reports whether the worker was LIVE.
func (b *blockMap) declareLost(id int64, reason string, unlessWithin time.Duration) (wasLive, heard bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	w := b.workers[id]
	if w == nil || w.state != api.WorkerState_LIVE {
		return false, false
	}
	if unlessWithin > 0 && w.silentFor(b.now()) < unlessWithin {
		return true, true
	}
	b.loseLocked(w, reason)
	return true, false
}

// loseLocked drops w's block locations and marks it LOST, keeping the set
// of blocks it held for its return (register).
func (b *blockMap) loseLocked(w *workerState, reason string) {
	w.state = api.WorkerState_LOST
	b.live--
	b.lostTotal.Add(1)
	// The set it held becomes lostBlocks as it is: no copy (a worker may
	// hold millions, and this runs under mu).
	held := w.blocks
	w.blocks = map[int64]struct{}{}
	for bid := range held {
		b.dropLoc(w.id, bid)
	}
	w.lostBlocks, w.lostReason = held, reason
	w.toRemove, w.toPin, w.toUnpin = nil, nil, nil
}

// locations returns the locations of a block, MEM copies first, then by
// worker id.
func (b *blockMap) locations(id int64) []*api.BlockLocation {
	e := b.blocks[id]
	if e == nil {
		return nil
	}
	out := make([]*api.BlockLocation, 0, len(e.locs))
	for _, l := range e.locs {
		w := b.workers[l.worker]
		if w == nil {
			continue
		}
		out = append(out, &api.BlockLocation{WorkerId: l.worker, Address: w.addr, Tier: l.tier})
	}
	sort.Slice(out, func(i, j int) bool {
		mi, mj := out[i].Tier == "MEM", out[j].Tier == "MEM"
		if mi != mj {
			return mi
		}
		return out[i].WorkerId < out[j].WorkerId
	})
	return out
}

// cached reports whether a block has a copy, and one in memory.
func (b *blockMap) cached(id int64) (any, mem bool) {
	e := b.blocks[id]
	if e == nil {
		return false, false
	}
	for _, l := range e.locs {
		if l.tier == "MEM" {
			return true, true
		}
	}
	return len(e.locs) > 0, false
}

// fileBlocks returns the block ids with a location of a file, sorted.
func (b *blockMap) fileBlocks(fileID int64) []int64 {
	ids := slices.Clone(b.files[fileID])
	slices.Sort(ids)
	return ids
}

func (w *workerState) tierList() []*api.TierUsage {
	if t := w.tiers.Load(); t != nil {
		return *t
	}
	return nil
}

func (w *workerState) info() *api.WorkerInfo {
	return &api.WorkerInfo{
		Id: w.id, Address: w.addr, State: w.state, Tiers: w.tierList(),
		LastHeartbeatMs: time.Unix(0, w.lastHB.Load()).UnixMilli(), StartTimeMs: w.start.UnixMilli(), BlockCount: int64(len(w.blocks)),
	}
}

// workerInfos lists the workers by id.
func (b *blockMap) workerInfos() []*api.WorkerInfo {
	b.mu.RLock()
	defer b.mu.RUnlock()
	out := make([]*api.WorkerInfo, 0, len(b.workers))
	for _, w := range b.workers {
		out = append(out, w.info())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Id < out[j].Id })
	return out
}

// summary counts live and lost workers and sums live capacity per tier.
func (b *blockMap) summary() (live, lost int, capacity []*api.TierUsage) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	sum := map[string]*api.TierUsage{}
	for _, w := range b.workers {
		switch w.state {
		case api.WorkerState_LIVE:
			live++
			for _, t := range w.tierList() {
				s := sum[t.GetAlias()]
				if s == nil {
					s = &api.TierUsage{Alias: t.GetAlias()}
					sum[t.GetAlias()] = s
				}
				s.CapacityBytes += t.GetCapacityBytes()
				s.UsedBytes += t.GetUsedBytes()
			}
		case api.WorkerState_LOST:
			lost++
		}
	}
	for _, alias := range []string{"MEM", "SSD", "HDD"} {
		if s := sum[alias]; s != nil {
			capacity = append(capacity, s)
			delete(sum, alias)
		}
	}
	for _, s := range sum {
		capacity = append(capacity, s)
	}
	return live, lost, capacity
}

// blockCount is the number of blocks with at least one location.
func (b *blockMap) blockCount() int {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return len(b.blocks)
}
