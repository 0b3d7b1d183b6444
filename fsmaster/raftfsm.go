package fsmaster

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/fsmaster/journal"
)

// raftFSM is the FS masters' raft FSM (embedded journal). Every master
// applies committed journal batches to its State through State.Apply —
// standbys as they arrive, and the leader too, except for the batches of
// its own current epoch: it applied those already, under the state lock,
// when it made them (as with a local journal), and only notes that they
// are committed. So live apply, standby apply, restart and snapshot
// restore are one code path (applyCommitted).
//
// A leader whose epoch ends with changes in its state that the group may
// not have committed is dirty: it rebuilds its state from the newest raft
// snapshot and the log up to what it has seen committed, before it answers
// anything again.
//
// Lock order: ns.mu, then f.mu.
type raftFSM struct {
	m     *Master
	ns    *namespace
	log   *zap.Logger
	logs  raft.LogStore
	snaps raft.SnapshotStore
	dir   string // journal dir: checkpoints/ holds the snapshot bases

	mu           sync.Mutex
	epoch        uint64 // this master's leadership epoch; 0 while it does not lead
	applied      uint64 // the last raft command processed
	committedSeq int64  // the last journal sequence committed (and in the state)
	dirty        bool   // the state may hold changes that were never committed
	peers        map[string]*api.SetPeerCommand
	bases        []base // newest first
	commitCond   *sync.Cond

	appliedIdx atomic.Uint64 // applied, for readers without the lock
	rebuilds   atomic.Int64
}

func newRaftFSM(m *Master, ns *namespace, logs raft.LogStore, snaps raft.SnapshotStore) *raftFSM {
	f := &raftFSM{m: m, ns: ns, log: m.log.Named("raftfsm"), logs: logs, snaps: snaps, dir: m.dir,
		peers: map[string]*api.SetPeerCommand{}}
	f.commitCond = sync.NewCond(&f.mu)
	return f
}

// Apply implements raft.FSM.
func (f *raftFSM) Apply(l *raft.Log) any {
	if len(l.Data) == 0 {
		return fmt.Errorf("%w: empty", errBadCommand)
	}
	switch l.Data[0] {
	case cmdSetPeer:
		c, err := decodeSetPeer(l.Data)
		f.mu.Lock()
		defer f.mu.Unlock()
		f.setApplied(l.Index)
		if err != nil {
			f.log.Error("skipping a set-peer entry that does not decode", zap.Uint64("index", l.Index), zap.Error(err))
			return err
		}
		if c.GetRemove() {
			delete(f.peers, c.GetId())
		} else {
			f.peers[c.GetId()] = c
		}
		return nil
	case cmdJournal:
		return f.applyBatch(l)
	}
	// A newer command type: skip it (older masters ignore what they do
	// not know; the leader's build decides what it writes).
	f.mu.Lock()
	f.setApplied(l.Index)
	f.mu.Unlock()
	f.log.Warn("skipping a raft command of an unknown type", zap.Uint64("index", l.Index), zap.Uint8("type", l.Data[0]))
	return nil
}

// setCommitted records the last committed journal sequence, which is
// also the completion feed's durable watermark. Call with f.mu held.
func (f *raftFSM) setCommitted(seq int64) {
	f.committedSeq = seq
	f.ns.feed.reset(seq)
}

func (f *raftFSM) setApplied(i uint64) {
	f.applied = i
	f.appliedIdx.Store(i)
}

func (f *raftFSM) applyBatch(l *raft.Log) any {
	b, err := decodeBatch(l.Data)
	if err != nil {
		// A committed entry every master must apply: stop rather than
		// diverge.
		err = fmt.Errorf("raft entry %d: %w", l.Index, err)
		f.ns.fail(err)
		return err
	}
	f.mu.Lock()
	if b.epoch != 0 && b.epoch == f.epoch {
		// Ours: already in the state.
		defer f.mu.Unlock()
		f.setApplied(l.Index)
		if b.first() != f.committedSeq+1 {
			f.log.Error("skipping a journal batch that does not follow the last committed sequence",
				zap.Uint64("index", l.Index), zap.Int64("first", b.first()), zap.Int64("committed", f.committedSeq))
			return errBatchGap
		}
		f.setCommitted(b.last())
		f.commitCond.Broadcast()
		return nil
	}
	f.mu.Unlock()
	// Someone else's (or an ended epoch's): apply it.
	f.ns.mu.Lock()
	defer f.ns.mu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dirty {
		if err := f.rebuildLocked(); err != nil {
			f.ns.failAsync(err)
			return err
		}
	}
	f.setApplied(l.Index)
	ok, err := applyCommitted(f.ns.st, b)
	if err != nil {
		err = fmt.Errorf("raft entry %d: %w", l.Index, err)
		f.ns.failAsync(err)
		return err
	}
	if !ok {
		f.log.Error("skipping a journal batch that does not follow the last sequence",
			zap.Uint64("index", l.Index), zap.Int64("first", b.first()), zap.Int64("last", f.ns.st.lastSeq))
		return errBatchGap
	}
	f.setCommitted(f.ns.st.lastSeq)
	f.commitCond.Broadcast()
	return nil
}

// beginEpoch makes this master's state writable under a new epoch. Call
// with ns.mu held, after a barrier (every earlier entry applied).
func (f *raftFSM) beginEpoch(epoch uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dirty || f.ns.st.lastSeq != f.committedSeq {
		f.dirty = true
		if err := f.rebuildLocked(); err != nil {
			return err
		}
	}
	f.epoch = epoch
	return nil
}

// endEpoch ends this master's epoch; with uncommitted changes in its state
// it rebuilds it. Call with ns.mu held.
func (f *raftFSM) endEpoch() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.epoch = 0
	f.commitCond.Broadcast()
	if f.ns.st.lastSeq != f.committedSeq {
		f.dirty = true
	}
	if f.dirty {
		return f.rebuildLocked()
	}
	return nil
}

// rebuildLocked replaces the state with the newest raft snapshot plus the
// committed log up to f.applied. Call with ns.mu and f.mu held.
func (f *raftFSM) rebuildLocked() error {
	t0 := time.Now()
	st, err := f.committedState()
	for attempt := 1; errors.Is(err, errCompactedUnderUs) && attempt < 5; attempt++ {
		// raft persisted a newer snapshot and compacted the log while we
		// read the older one (snapshots are persisted outside our locks):
		// the newer snapshot holds what the log no longer does.
		st, err = f.committedState()
	}
	if err != nil {
		return err
	}
	dropped := f.ns.st.lastSeq - st.lastSeq
	f.ns.st = st
	f.setCommitted(st.lastSeq)
	f.dirty = false
	f.rebuilds.Add(1)
	f.log.Warn("state rebuilt from raft: changes the group did not commit are gone",
		zap.Int64("sequence", st.lastSeq), zap.Int64("uncommitted_dropped", dropped),
		zap.Uint64("applied_index", f.applied), zap.Duration("took", time.Since(t0)))
	return nil
}

// errCompactedUnderUs: a log entry after the snapshot a rebuild started
// from is gone, and a newer snapshot exists that covers it.
var errCompactedUnderUs = errors.New("raft log compacted during the rebuild")

// committedState is the state of the newest raft snapshot plus the
// committed log after it up to f.applied. Call with f.mu held.
func (f *raftFSM) committedState() (*State, error) {
	st := NewState()
	from := uint64(0)
	snapID := ""
	metas, err := f.snaps.List()
	if err != nil {
		return nil, fmt.Errorf("rebuild: raft snapshots: %w", err)
	}
	if len(metas) > 0 {
		meta, rc, err := f.snaps.Open(metas[0].ID)
		if err != nil {
			return nil, fmt.Errorf("rebuild: raft snapshot %s: %w", metas[0].ID, err)
		}
		snap, err := readSnapshot(rc, journal.CheckpointsDir(f.dir))
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("rebuild: raft snapshot %s: %w", metas[0].ID, err)
		}
		if snap.base != "" {
			os.Remove(snap.base)
		}
		st, from, snapID = snap.st, meta.Index, meta.ID
	}
	var l raft.Log
	for i := from + 1; i <= f.applied; i++ {
		if err := f.logs.GetLog(i, &l); err != nil {
			if errors.Is(err, raft.ErrLogNotFound) {
				if now, lerr := f.snaps.List(); lerr == nil && len(now) > 0 && now[0].ID != snapID && now[0].Index >= i {
					return nil, fmt.Errorf("rebuild: raft log entry %d (after snapshot %s; now in %s): %w", i, snapID, now[0].ID, errCompactedUnderUs)
				}
			}
			return nil, fmt.Errorf("rebuild: raft log entry %d: %w", i, err)
		}
		if l.Type != raft.LogCommand || len(l.Data) == 0 || l.Data[0] != cmdJournal {
			continue
		}
		b, err := decodeBatch(l.Data)
		if err != nil {
			return nil, fmt.Errorf("rebuild: raft entry %d: %w", i, err)
		}
		if _, err := applyCommitted(st, b); err != nil {
			return nil, fmt.Errorf("rebuild: raft entry %d: %w", i, err)
		}
	}
	return st, nil
}

// waitCommitted waits until every change in the state is committed (the
// leader's in-flight batches), with ns.mu held for reading so no new one
// starts. It fails when the epoch ends first or after timeout.
func (f *raftFSM) waitCommitted(timeout time.Duration, failed func() bool) error {
	deadline := time.Now().Add(timeout)
	f.mu.Lock()
	defer f.mu.Unlock()
	target := f.ns.st.lastSeq
	epoch := f.epoch
	stopTimer := time.AfterFunc(timeout, func() {
		f.mu.Lock()
		f.commitCond.Broadcast()
		f.mu.Unlock()
	})
	defer stopTimer.Stop()
	for f.committedSeq < target {
		if f.epoch != epoch || failed() {
			return errors.New("leadership ended before the changes were committed")
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("changes up to %d not committed after %v (committed: %d)", target, timeout, f.committedSeq)
		}
		f.commitCond.Wait()
	}
	return nil
}

// wake wakes waitCommitted (an epoch failed).
func (f *raftFSM) wake() {
	f.mu.Lock()
	f.commitCond.Broadcast()
	f.mu.Unlock()
}

// position is the raft index and journal sequence the committed state is
// at.
func (f *raftFSM) position() (uint64, int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied, f.committedSeq
}

// Snapshot implements raft.FSM: it never reads the live state. The
// snapshot is the newest base checkpoint at or before the applied index
// plus the log after it.
func (f *raftFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := &fsmSnapshot{f: f, hdr: &api.RaftSnapshotHeader{Index: f.applied, Sequence: f.committedSeq}}
	for _, p := range f.peers {
		s.hdr.Peers = append(s.hdr.Peers, &api.SetPeerCommand{Id: p.GetId(), RaftAddress: p.GetRaftAddress(), RpcAddress: p.GetRpcAddress()})
	}
	for _, b := range f.bases {
		if b.index > f.applied || b.seq > f.committedSeq {
			continue
		}
		fh, err := os.Open(b.path)
		if err != nil {
			continue // removed meanwhile: an older one will do
		}
		st, err := fh.Stat()
		if err != nil {
			fh.Close()
			continue
		}
		s.base, s.hdr.BaseIndex, s.hdr.BaseSequence, s.hdr.BaseBytes = fh, b.index, b.seq, st.Size()
		break
	}
	return s, nil
}

type fsmSnapshot struct {
	f    *raftFSM
	hdr  *api.RaftSnapshotHeader
	base *os.File // open at Snapshot time, so retention cannot remove it under us
}

// Persist implements raft.FSMSnapshot.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	err := s.write(sink)
	if err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("FS master snapshot at %d: %w", s.hdr.GetIndex(), err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) write(w io.Writer) error {
	sw := &snapshotWriter{w: bufio.NewWriterSize(w, 1<<20)}
	if err := sw.header(s.hdr); err != nil {
		return err
	}
	if s.base != nil {
		n, err := io.Copy(sw.w, s.base)
		if err != nil {
			return fmt.Errorf("base %s: %w", s.base.Name(), err)
		}
		if n != s.hdr.GetBaseBytes() {
			return fmt.Errorf("base %s: %d bytes, expected %d", s.base.Name(), n, s.hdr.GetBaseBytes())
		}
	}
	if err := snapshotTail(s.f.snaps, s.f.logs, s.hdr.GetBaseIndex(), s.hdr.GetIndex(), sw.record); err != nil {
		return err
	}
	return sw.end()
}

// Release implements raft.FSMSnapshot.
func (s *fsmSnapshot) Release() {
	if s.base != nil {
		s.base.Close()
	}
}

// Restore implements raft.FSM: the state becomes the snapshot's (at start,
// or when the leader sends one to a standby that fell behind what its log
// still holds). The base is kept as a local checkpoint.
func (f *raftFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	t0 := time.Now()
	snap, err := readSnapshot(rc, journal.CheckpointsDir(f.dir))
	if err != nil {
		return fmt.Errorf("restore FS master snapshot: %w", err)
	}
	f.ns.mu.Lock()
	f.mu.Lock()
	f.ns.st = snap.st
	f.setApplied(snap.hdr.GetIndex())
	f.setCommitted(snap.st.lastSeq)
	f.dirty = false
	f.peers = map[string]*api.SetPeerCommand{}
	for _, p := range snap.hdr.GetPeers() {
		f.peers[p.GetId()] = p
	}
	f.commitCond.Broadcast()
	f.mu.Unlock()
	f.ns.mu.Unlock()
	if snap.base != "" {
		f.adoptBaseFile(snap.base, snap.hdr.GetBaseSequence(), snap.hdr.GetBaseIndex())
	}
	f.log.Info("restored a raft snapshot", zap.Uint64("index", snap.hdr.GetIndex()), zap.Int64("sequence", snap.st.lastSeq),
		zap.Int("inodes", snap.st.InodeCount()), zap.Duration("took", time.Since(t0)))
	return nil
}

// adoptBaseFile makes a verified checkpoint file (a temp file in the
// checkpoints dir) a base of this master, unless it has it already.
func (f *raftFSM) adoptBaseFile(tmp string, seq int64, index uint64) {
	final := journal.CheckpointPath(f.dir, seq)
	if _, err := os.Stat(final); err == nil {
		os.Remove(tmp)
		return
	}
	if err := os.Rename(tmp, final); err != nil {
		os.Remove(tmp)
		f.log.Warn("could not keep a checkpoint", zap.String("path", final), zap.Error(err))
		return
	}
	f.addBase(base{path: final, seq: seq, index: index})
}

// addBase records a new base checkpoint and removes old ones.
func (f *raftFSM) addBase(b base) {
	f.mu.Lock()
	bs := append([]base{b}, f.bases...)
	for i := 1; i < len(bs); i++ {
		if bs[i].seq >= bs[0].seq {
			bs[0], bs[i] = bs[i], bs[0]
		}
	}
	f.bases = bs
	f.mu.Unlock()
	f.m.setCheckpoint(b.path, b.seq)
	if err := journal.RemoveOldCheckpoints(f.dir, f.m.cfg.FSMaster.Journal.CheckpointsRetained); err != nil {
		f.log.Warn("could not remove old checkpoints", zap.Error(err))
	}
	f.refreshBases()
}

// refreshBases re-reads the bases on disk.
func (f *raftFSM) refreshBases() {
	bs, err := listBases(f.dir)
	if err != nil {
		f.log.Warn("could not list checkpoints", zap.Error(err))
		return
	}
	f.mu.Lock()
	f.bases = bs
	f.mu.Unlock()
}

// newestBase is the newest base checkpoint (ok=false without one).
func (f *raftFSM) newestBase() (base, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.bases) == 0 {
		return base{}, false
	}
	return f.bases[0], true
}

// peerRPCAddr is a member's rpc address as SET_PEER recorded it.
func (f *raftFSM) peerRPCAddr(id string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p := f.peers[id]; p != nil {
		return p.GetRpcAddress()
	}
	return ""
}
