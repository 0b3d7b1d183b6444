package blockworker

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/client"
	"github.com/alluvium/alluvium/internal/coalesce"
)

// masterLink keeps the FS master's view of this worker current: a full
// report on (re)registration, then heartbeats with the blocks added and
// removed since the last one. It hears store changes as the store's
// Listener (with the store's lock held, so the deltas are in the store's
// order).
type masterLink struct {
	bm api.BlockMasterClient
	// stream carries the heartbeats over one stream to the leader
	// (run's goroutine only).
	stream  client.Heartbeats
	store   *Store
	log     *zap.Logger
	address func() *api.WorkerNetAddress
	onCmd   func(ctx context.Context, ids []int64) // REMOVE_BLOCKS
	onPin   func(ids []int64, pinned bool)         // PIN_BLOCKS, UNPIN_BLOCKS

	mu         sync.Mutex
	id         int64
	registered bool
	interval   time.Duration
	spreadNext time.Duration // wait this long before the next registration (asked to register again)
	added      map[int64]BlockMeta
	removed    map[int64]struct{}
	// beats counts the heartbeats sent; storedAt holds, for each block
	// stored since the last reply, the count when it was stored. A removal
	// in the reply to heartbeat n is stale for a block stored after n was
	// sent: the master decided it without the block's commit, which may
	// have cancelled it (see heartbeat).
	beats      uint64
	storedAt   map[int64]uint64
	firstReg   chan struct{}
	regOnce    sync.Once
	lastErr    error
	kick       chan struct{}
	hbCount    int64
	failCount  int
	defaultInt time.Duration
	// reportChunk bounds the blocks one registration or heartbeat carries
	// (default maxReportBlocks); the rest follow in the next heartbeats,
	// sent at once.
	reportChunk int
	commits     *coalesce.Group[BlockMeta, struct{}] // see commit
}

// maxReportBlocks is how many blocks one registration or heartbeat
// reports: about 2.5 MB of message, far below the masters' 16 MiB limit, so
// a worker caching millions of small files still registers (its full
// report would not fit one message).
const maxReportBlocks = 100000

func newMasterLink(bm api.BlockMasterClient, store *Store, log *zap.Logger, interval time.Duration, address func() *api.WorkerNetAddress) *masterLink {
	if interval <= 0 {
		interval = time.Second
	}
	l := &masterLink{
		bm: bm, store: store, log: log, address: address,
		interval: interval, defaultInt: interval,
		added: map[int64]BlockMeta{}, removed: map[int64]struct{}{}, storedAt: map[int64]uint64{},
		firstReg: make(chan struct{}), kick: make(chan struct{}, 1),
		reportChunk: maxReportBlocks,
	}
	// Gathering: the CacheBlocks calls of a wave end close together, and
	// a plain group sent the first one's commit alone while the others
	// waited for its round trip.
	l.commits = coalesce.NewGathering(l.commitBatch)
	return l
}

// BlockAdded implements Listener.
func (l *masterLink) BlockAdded(m BlockMeta) {
	l.mu.Lock()
	delete(l.removed, m.ID)
	l.added[m.ID] = m
	l.storedAt[m.ID] = l.beats
	l.mu.Unlock()
}

// BlockRemoved implements Listener.
func (l *masterLink) BlockRemoved(id int64) {
	l.mu.Lock()
	delete(l.added, id)
	l.removed[id] = struct{}{}
	l.mu.Unlock()
}

// ID returns the worker id the master gave, 0 before the first
// registration.
func (l *masterLink) ID() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.id
}

func (l *masterLink) isRegistered() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.registered
}

func tierUsage(ts []TierStat) []*api.TierUsage {
	out := make([]*api.TierUsage, len(ts))
	for i, t := range ts {
		out[i] = &api.TierUsage{Alias: t.Alias, CapacityBytes: t.Capacity, UsedBytes: t.Used}
	}
	return out
}

// register sends a full report. The deltas collected so far are dropped in
// the same store snapshot, since the report supersedes them.
func (l *masterLink) register(ctx context.Context) error {
	blocks, usage := l.store.Report(func() {
		l.mu.Lock()
		l.added = map[int64]BlockMeta{}
		l.removed = map[int64]struct{}{}
		l.mu.Unlock()
	})
	req := &api.RegisterWorkerRequest{Address: l.address(), Tiers: tierUsage(usage)}
	// A report bigger than a chunk registers with its first chunk; the
	// rest goes as added blocks with the heartbeats that follow at once.
	rest := blocks[min(len(blocks), l.reportChunk):]
	blocks = blocks[:min(len(blocks), l.reportChunk)]
	req.Blocks = make([]*api.BlockReport, len(blocks))
	for i, b := range blocks {
		req.Blocks[i] = &api.BlockReport{BlockId: b.ID, Length: b.Length, Tier: b.Tier, Pinned: b.Pinned}
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := l.bm.RegisterWorker(cctx, req)
	if err != nil {
		return err
	}
	l.mu.Lock()
	for _, b := range rest {
		// A newer change of the block since the report wins.
		if _, newer := l.added[b.ID]; newer {
			continue
		}
		if _, gone := l.removed[b.ID]; gone {
			continue
		}
		l.added[b.ID] = b
	}
	l.id = resp.GetWorkerId()
	l.registered = true
	if ms := resp.GetHeartbeatIntervalMs(); ms > 0 {
		l.interval = time.Duration(ms) * time.Millisecond
	} else {
		l.interval = l.defaultInt
	}
	l.mu.Unlock()
	l.regOnce.Do(func() { close(l.firstReg) })
	l.log.Info("registered with the FS master", zap.Int64("worker_id", resp.GetWorkerId()), zap.Int("blocks", len(blocks)+len(rest)))
	if len(rest) > 0 {
		l.heartbeatNow()
	}
	return nil
}

// takeDeltasLocked takes up to a chunk of the added and of the removed
// blocks for one heartbeat, and reports whether more are left. Call with
// l.mu held.
func (l *masterLink) takeDeltasLocked() (added map[int64]BlockMeta, removed map[int64]struct{}, more bool) {
	added, removed = l.added, l.removed
	l.added, l.removed = spill(added, l.reportChunk), spill(removed, l.reportChunk)
	return added, removed, len(l.added) > 0 || len(l.removed) > 0
}

// spill moves the entries of m beyond the first n (in map order) to the
// map it returns (empty when m holds no more than n).
func spill[V any](m map[int64]V, n int) map[int64]V {
	rest := map[int64]V{}
	for id, v := range m {
		if len(m) <= n {
			break
		}
		rest[id] = v
		delete(m, id)
	}
	return rest
}

// heartbeat sends the deltas (a chunk of them; the rest follow at once);
// on failure they are merged back under any newer change of the same
// block.
func (l *masterLink) heartbeat(ctx context.Context) error {
	l.mu.Lock()
	id := l.id
	added, removed, more := l.takeDeltasLocked()
	l.beats++
	beat := l.beats
	l.mu.Unlock()
	req := &api.WorkerHeartbeatRequest{WorkerId: id, Tiers: tierUsage(l.store.Usage())}
	for _, m := range added {
		req.AddedBlocks = append(req.AddedBlocks, &api.BlockReport{BlockId: m.ID, Length: m.Length, Tier: m.Tier, Pinned: m.Pinned})
	}
	for bid := range removed {
		req.RemovedBlockIds = append(req.RemovedBlockIds, bid)
	}
	resp, err := l.stream.Beat(ctx, l.bm, req, 10*time.Second)
	if err != nil {
		l.mu.Lock()
		for bid, m := range added {
			if _, newer := l.added[bid]; !newer {
				if _, gone := l.removed[bid]; !gone {
					l.added[bid] = m
				}
			}
		}
		for bid := range removed {
			if _, newer := l.added[bid]; !newer {
				l.removed[bid] = struct{}{}
			}
		}
		if status.Code(err) == codes.NotFound {
			l.registered = false
		}
		l.mu.Unlock()
		return err
	}
	l.mu.Lock()
	l.hbCount++
	// The interval grows with the number of workers (the master hands it
	// out with every reply).
	if ms := resp.GetHeartbeatIntervalMs(); ms > 0 {
		l.interval = time.Duration(ms) * time.Millisecond
	}
	l.mu.Unlock()
	if more {
		l.heartbeatNow() // the rest of the deltas, without waiting a beat
	}
	defer l.forgetStoredBefore(beat)
	for _, c := range resp.GetCommands() {
		switch c.GetType() {
		case api.WorkerCommand_REGISTER:
			l.log.Info("the FS master asks for a new registration")
			l.mu.Lock()
			l.registered = false
			l.spreadNext = client.Spread(l.interval)
			l.mu.Unlock()
		case api.WorkerCommand_REMOVE_BLOCKS:
			if ids := l.notStoredSince(beat, c.GetBlockIds()); len(ids) > 0 {
				l.onCmd(ctx, ids)
			}
		case api.WorkerCommand_PIN_BLOCKS, api.WorkerCommand_UNPIN_BLOCKS:
			if l.onPin != nil {
				l.onPin(c.GetBlockIds(), c.GetType() == api.WorkerCommand_PIN_BLOCKS)
			}
		}
	}
	return nil
}

// notStoredSince keeps the ids of a REMOVE_BLOCKS command in the reply to
// heartbeat beat that are not stale: a block stored after that heartbeat
// was sent (a load re-caching it right after a free, its commit racing
// the reply) stays, and goes to the master again as added, so the master
// decides once more knowing the block is here (it asks again if the
// removal still holds, e.g. the file was deleted).
func (l *masterLink) notStoredSince(beat uint64, ids []int64) []int64 {
	l.mu.Lock()
	keep, stale := ids[:0:0], []int64(nil)
	for _, id := range ids {
		if at, ok := l.storedAt[id]; ok && at >= beat {
			stale = append(stale, id)
		} else {
			keep = append(keep, id)
		}
	}
	l.mu.Unlock()
	if len(stale) == 0 {
		return keep
	}
	// The store calls the link with its lock held: ask it without ours.
	metas := make([]BlockMeta, 0, len(stale))
	for _, id := range stale {
		if m, ok := l.store.Stat(id); ok {
			metas = append(metas, m)
		}
	}
	l.mu.Lock()
	for _, m := range metas {
		_, newer := l.added[m.ID]
		_, gone := l.removed[m.ID]
		if !newer && !gone {
			l.added[m.ID] = m
		}
	}
	l.mu.Unlock()
	l.log.Debug("kept blocks stored after the heartbeat whose reply removes them", zap.Int("kept", len(stale)))
	l.heartbeatNow()
	return keep
}

// forgetStoredBefore drops the store counts no later reply can find stale.
func (l *masterLink) forgetStoredBefore(beat uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, at := range l.storedAt {
		if at < beat {
			delete(l.storedAt, id)
		}
	}
}

// commit tells the master about a block just stored, so its location is
// visible before the call that stored it returns. Commits made at the same
// time go together (internal/coalesce): one made while another is in
// flight waits for the next call, which carries every block stored
// meanwhile in one CommitBlocks — under many concurrent fills (tiny loads)
// a round trip to the FS master per wave, not per block. On failure the
// blocks stay in the delta for the next heartbeat.
func (l *masterLink) commit(ctx context.Context, m BlockMeta) {
	l.commits.Do(context.WithoutCancel(ctx), m)
}

// commitAll tells the master about the blocks one call stored (a
// CacheBlocks), with the commits of other calls made meanwhile: one
// CommitBlocks for every call of a wave, answered before it returns.
func (l *masterLink) commitAll(ctx context.Context, ms []BlockMeta) {
	l.commits.DoAll(context.WithoutCancel(ctx), ms)
}

// commitBatch sends one wave of commits: CommitBlock for a lone block (an
// idle worker), CommitBlocks for more.
func (l *masterLink) commitBatch(ms []BlockMeta) struct{} {
	if len(ms) == 1 {
		l.commitOne(context.Background(), ms[0])
	} else {
		l.commitMany(context.Background(), ms)
	}
	return struct{}{}
}

// commitOne commits one block with CommitBlock.
func (l *masterLink) commitOne(ctx context.Context, m BlockMeta) {
	l.mu.Lock()
	id, ok := l.id, l.registered
	l.mu.Unlock()
	if !ok {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_, err := l.bm.CommitBlock(cctx, &api.CommitBlockRequest{WorkerId: id, BlockId: m.ID, Length: m.Length, Tier: m.Tier, Pinned: m.Pinned})
	if err != nil {
		l.log.Debug("commit block to the FS master failed; the next heartbeat reports it", zap.Int64("block", m.ID), zap.Error(err))
		return
	}
	l.mu.Lock()
	if a, ok := l.added[m.ID]; ok && a == m {
		delete(l.added, m.ID)
	}
	l.mu.Unlock()
}

// run registers and heartbeats until ctx ends.
func (l *masterLink) run(ctx context.Context) {
	defer l.stream.Close()
	backoff := client.NewBackoff(100*time.Millisecond, 2*time.Second)
	for ctx.Err() == nil {
		if !l.isRegistered() {
			// Asked to register again (the master restarted, or counted
			// this worker LOST): wait a random part of the interval first,
			// so the thousands asked at once do not all report at once.
			l.mu.Lock()
			wait := l.spreadNext
			l.spreadNext = 0
			l.mu.Unlock()
			if !sleep(ctx, wait) {
				return
			}
			if err := l.register(ctx); err != nil {
				l.noteErr("register with the FS master", err)
				backoff.Cap(min(l.currentInterval(), 2*time.Second))
				if !sleep(ctx, backoff.Next()) {
					return
				}
				continue
			}
			backoff.Reset()
			l.clearErr()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(l.currentInterval()):
		case <-l.kick:
		}
		if err := l.heartbeat(ctx); err != nil {
			if errors.Is(err, context.Canceled) {
				return
			}
			l.noteErr("heartbeat to the FS master", err)
			continue
		}
		l.clearErr()
	}
}

func (l *masterLink) currentInterval() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.interval
}

// noteErr logs the first failure of a streak and then every 30th, so a
// master that is down does not flood the log.
func (l *masterLink) noteErr(what string, err error) {
	l.mu.Lock()
	l.lastErr = err
	l.failCount++
	n := l.failCount
	l.mu.Unlock()
	if n == 1 || n%30 == 0 {
		l.log.Warn(what+" failed; retrying", zap.Int("failures", n), zap.Error(err))
	}
}

func (l *masterLink) clearErr() {
	l.mu.Lock()
	if l.failCount > 0 {
		l.log.Info("FS master reachable again", zap.Int("after_failures", l.failCount))
	}
	l.lastErr = nil
	l.failCount = 0
	l.mu.Unlock()
}

// heartbeatNow asks the loop for a heartbeat without waiting for the tick.
func (l *masterLink) heartbeatNow() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
