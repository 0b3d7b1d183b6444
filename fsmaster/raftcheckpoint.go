package fsmaster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/fsmaster/journal"
	"github.com/alluvium/alluvium/internal/raftgroup"
)

// Checkpoints of an embedded journal. A checkpoint here is a snapshot
// base (snapshot.go): a standby writes one from its own state every
// fsmaster.journal.checkpoint-period-entries entries — its applying
// pauses meanwhile, the leader's writes never do — and the leader fetches
// the newest one from a standby when its own is that far behind. Only a
// leader without standbys writes its own, holding writes off as a local
// master without a secondary does.

const checkpointChunk = 1 << 20

// baseLoop keeps this master's base checkpoint within the period.
func (e *embedded) baseLoop() {
	poll := e.m.cfg.FSMaster.Journal.CheckpointPollInterval
	if poll <= 0 {
		poll = time.Second
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		select {
		case <-e.shutdown:
			return
		case <-t.C:
		}
		period := e.m.cfg.FSMaster.Journal.CheckpointPeriodEntries
		if period <= 0 {
			continue
		}
		_, seq := e.fsm.position()
		var have int64
		if b, ok := e.fsm.newestBase(); ok {
			have = b.seq
		}
		if seq-have < period {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), e.m.cfg.FSMaster.Journal.CheckpointTimeout)
		var err error
		if e.isLeader() {
			_, err = e.leaderBase(ctx, have+1, 4*period)
		} else {
			_, err = e.writeOwnBase(ctx, have+1)
		}
		cancel()
		if err != nil {
			e.m.log.Warn("checkpoint failed; retrying", zap.Error(err))
		}
	}
}

// leaderBase gets the leader a base at sequence min or later: from a
// standby, or — when none can give one and the log since the last base is
// longer than selfAfter entries (or selfAfter is 0) — by writing its own.
func (e *embedded) leaderBase(ctx context.Context, min, selfAfter int64) (base, error) {
	b, err := e.fetchBase(ctx, min)
	if err == nil {
		return b, nil
	}
	_, seq := e.fsm.position()
	have, _ := e.fsm.newestBase()
	if selfAfter > 0 && seq-have.seq < selfAfter && e.voters() > 1 {
		return base{}, fmt.Errorf("no standby gave a checkpoint (%v); waiting for one", err)
	}
	e.m.log.Info("writing the checkpoint on the leader (writes wait meanwhile)", zap.NamedError("standbys", err))
	return e.writeOwnBase(ctx, min)
}

// voters counts the voting members.
func (e *embedded) voters() int {
	n := 0
	if f := e.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			if s.Suffrage == raft.Voter {
				n++
			}
		}
	}
	return n
}

// writeOwnBase writes a base checkpoint of this master's state once it
// holds sequence min. Writers (a leader's) and the FSM (a standby's)
// wait while it is written.
func (e *embedded) writeOwnBase(ctx context.Context, min int64) (base, error) {
	if err := e.awaitSequence(ctx, min); err != nil {
		return base{}, err
	}
	ns := e.m.ns
	b, err := func() (base, error) {
		ns.mu.RLock()
		defer ns.mu.RUnlock()
		if ns.broken != nil {
			return base{}, ns.usable()
		}
		if e.isLeader() {
			// In-flight batches only: nothing new starts under the lock.
			if err := e.fsm.waitCommitted(30*time.Second, e.rj.epochFailed); err != nil {
				return base{}, err
			}
		}
		idx, seq := e.fsm.position()
		if seq != ns.st.lastSeq {
			return base{}, fmt.Errorf("the state is at %d but %d is committed; not writing it", ns.st.lastSeq, seq)
		}
		t0 := time.Now()
		b, err := writeBaseCheckpoint(e.m.dir, ns.st, idx)
		if err == nil {
			e.m.log.Info("wrote checkpoint", zap.String("path", b.path), zap.Int64("sequence", b.seq),
				zap.Uint64("raft_index", b.index), zap.Duration("took", time.Since(t0)))
		}
		return b, err
	}()
	if err != nil {
		return base{}, err
	}
	e.fsm.addBase(b)
	return b, nil
}

// awaitSequence waits until this master's committed state holds min.
func (e *embedded) awaitSequence(ctx context.Context, min int64) error {
	for {
		if _, seq := e.fsm.position(); seq >= min {
			return nil
		}
		select {
		case <-ctx.Done():
			_, seq := e.fsm.position()
			return fmt.Errorf("this master's state is at sequence %d, not yet %d: %w", seq, min, ctx.Err())
		case <-e.shutdown:
			return errors.New("stopping")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// fetchBase asks the other members, in turn, for a base at min or later
// and keeps the first one received.
func (e *embedded) fetchBase(ctx context.Context, min int64) (base, error) {
	f := e.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return base{}, err
	}
	var errs []error
	for _, s := range f.Configuration().Servers {
		id := string(s.ID)
		if id == e.self.ID {
			continue
		}
		addr := e.rpcAddrOf(id)
		if addr == "" {
			continue
		}
		b, err := e.fetchBaseFrom(ctx, id, addr, min)
		if err == nil {
			return b, nil
		}
		errs = append(errs, fmt.Errorf("%s at %s: %w", id, addr, err))
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) == 0 {
		return base{}, errors.New("no other member")
	}
	return base{}, errors.Join(errs...)
}

func (e *embedded) fetchBaseFrom(ctx context.Context, id, addr string, min int64) (base, error) {
	_, ej, err := e.conns.FSMasterMember(addr)
	if err != nil {
		return base{}, err
	}
	stream, err := ej.GetCheckpoint(ctx, &api.GetCheckpointRequest{MinSequence: min})
	if err != nil {
		return base{}, err
	}
	first, err := stream.Recv()
	if err != nil {
		return base{}, err
	}
	seq, idx, size := first.GetSequence(), first.GetRaftIndex(), first.GetSize()
	if seq < min || size <= 0 {
		return base{}, fmt.Errorf("sent a checkpoint at sequence %d of %d bytes (asked for %d or later)", seq, size, min)
	}
	f, err := os.CreateTemp(journal.CheckpointsDir(e.m.dir), fmt.Sprintf(".tmp-fetch-%d-*.bolt", seq))
	if err != nil {
		return base{}, err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	var n int64
	for msg := first; ; {
		k, err := f.Write(msg.GetData())
		n += int64(k)
		if err != nil {
			return base{}, err
		}
		if n > size {
			return base{}, fmt.Errorf("sent more than the %d bytes announced", size)
		}
		if msg, err = stream.Recv(); err == io.EOF {
			break
		} else if err != nil {
			return base{}, err
		}
	}
	if n != size {
		return base{}, fmt.Errorf("sent %d of %d bytes", n, size)
	}
	if err := f.Sync(); err != nil {
		return base{}, err
	}
	if err := f.Close(); err != nil {
		return base{}, err
	}
	if err := journal.VerifyCheckpoint(tmp, seq); err != nil {
		return base{}, err
	}
	got, err := readBaseIndex(tmp)
	if err != nil {
		return base{}, err
	}
	if got != idx {
		return base{}, fmt.Errorf("checkpoint at raft index %d, announced %d", got, idx)
	}
	ok = true
	e.fsm.adoptBaseFile(tmp, seq, idx)
	b := base{path: journal.CheckpointPath(e.m.dir, seq), seq: seq, index: idx}
	e.m.log.Info("fetched a checkpoint from a standby", zap.String("from", id), zap.Int64("sequence", seq),
		zap.Uint64("raft_index", idx), zap.Int64("bytes", size))
	return b, nil
}

// getCheckpoint is GetCheckpoint: this master's newest base at min or
// later, written first when it has none.
func (e *embedded) getCheckpoint(req *api.GetCheckpointRequest, stream api.EmbeddedJournal_GetCheckpointServer) error {
	const op = "get checkpoint"
	if err := raftgroup.SystemOnly(stream.Context(), op); err != nil {
		return err
	}
	min := req.GetMinSequence()
	b, ok := e.fsm.newestBase()
	if !ok || b.seq < min {
		if e.isLeader() {
			return status.Errorf(codes.FailedPrecondition, "%s: %s leads and writes no checkpoints for others", op, e.self.ID)
		}
		timeout := e.m.cfg.FSMaster.Journal.CheckpointTimeout
		ctx, cancel := context.WithTimeout(stream.Context(), timeout)
		var err error
		b, err = e.writeOwnBase(ctx, min)
		cancel()
		if err != nil {
			return status.Errorf(codes.Unavailable, "%s at %d: %v", op, min, err)
		}
	}
	f, err := os.Open(b.path)
	if err != nil {
		return status.Errorf(codes.Unavailable, "%s: %v", op, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return status.Errorf(codes.Internal, "%s: %v", op, err)
	}
	buf := make([]byte, checkpointChunk)
	msg := &api.GetCheckpointResponse{Sequence: b.seq, RaftIndex: b.index, Size: st.Size()}
	for {
		k, err := io.ReadFull(f, buf)
		if k > 0 {
			msg.Data = buf[:k]
			if err := stream.Send(msg); err != nil {
				return err
			}
			msg = &api.GetCheckpointResponse{}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil
		}
		if err != nil {
			return status.Errorf(codes.Internal, "%s %s: %v", op, b.path, err)
		}
	}
}

// checkpoint is `fsadmin checkpoint` with an embedded journal (on the
// leader): a base covering every change so far — from a standby when one
// can give it — and a raft snapshot on it, so the log before it can go.
func (e *embedded) checkpoint(ctx context.Context) (string, int64, error) {
	ns := e.m.ns
	ns.mu.RLock()
	target := ns.st.lastSeq
	ns.mu.RUnlock()
	if err := e.awaitSequence(ctx, target); err != nil {
		return "", 0, err
	}
	b, ok := e.fsm.newestBase()
	if !ok || b.seq < target {
		var err error
		if b, err = e.leaderBase(ctx, target, 0); err != nil {
			return "", 0, err
		}
	}
	if err := e.raft.Snapshot().Error(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
		return "", 0, fmt.Errorf("raft snapshot: %w", err)
	}
	return b.path, b.seq, nil
}
