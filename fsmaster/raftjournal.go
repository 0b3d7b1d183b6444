package fsmaster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/fsmaster/journal"
)

// raftJournal is the namespace's appender with an embedded journal: the
// leading master applies a change to its state under the state lock (as
// with a local journal), appends its entries here, and waits. One batcher
// goroutine takes everything queued and makes it one raft entry (one log
// write and one fsync on each master for all of them: the group commit),
// with up to raftWindow entries in flight so that the leader's fsync of
// one batch overlaps the followers' of the one before. An entry's Wait
// returns once raft has committed its batch.
//
// Entries belong to the leader's epoch (a random id drawn each time it
// establishes leadership): when the epoch ends — leadership lost, or a
// batch refused — everything not yet committed fails, the master stops
// taking writes and rebuilds its state from raft (raftfsm.go), since it
// may hold changes the group never committed.
type raftJournal struct {
	r        *raft.Raft
	maxBatch int
	log      *zap.Logger
	// onFail hears that an epoch failed (from the completer goroutine).
	onFail func(epoch uint64, err error)

	mu      sync.Mutex
	epoch   uint64 // 0: not leading; Append fails
	nextSeq int64
	queue   []*rpending
	failed  error // the epoch failed: Append refuses until the next epoch
	closing bool

	kick     chan struct{}
	inflight chan *rbatch
	stop     chan struct{} // closed by close: stop waiting on raft
	done     chan struct{}

	entries atomic.Int64 // entries committed
	batches atomic.Int64 // raft entries that carried them
	largest atomic.Int64
}

// raftWindow is how many batches may be in flight at once.
const raftWindow = 4

type rpending struct {
	seq  int64
	val  []byte
	done chan struct{}
	err  error
}

func (p *rpending) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.err
	default:
	}
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *rpending) finish(err error) {
	p.err = err
	p.val = nil
	close(p.done)
}

type rbatch struct {
	epoch uint64
	f     raft.ApplyFuture
	ps    []*rpending
}

// notLeaderError says this master does not lead: the call was not
// executed, and the client may retry it on the leader (the server names it
// in the alluvium-leader trailer).
type notLeaderError struct{ msg string }

func (e *notLeaderError) Error() string { return e.msg }

// GRPCStatus makes it an Unavailable status for gRPC.
func (e *notLeaderError) GRPCStatus() *status.Status { return status.New(codes.Unavailable, e.msg) }

func (e *notLeaderError) transient() {}

// uncertainError says leadership was lost while a change was being
// replicated: the group may or may not have committed it. No leader is
// named, so only idempotent calls are retried.
type uncertainError struct{ msg string }

func (e *uncertainError) Error() string { return e.msg }

// GRPCStatus makes it an Unavailable status for gRPC.
func (e *uncertainError) GRPCStatus() *status.Status { return status.New(codes.Unavailable, e.msg) }

func (e *uncertainError) transient() {}

// transientError marks journal errors after which the master goes on
// (it rebuilds its state from raft) rather than stopping for good.
type transientError interface {
	error
	transient()
}

var errNotLeadingNow = &notLeaderError{msg: "this FS master stopped leading before the change was replicated; it was not applied (retry on the leader)"}

func newRaftJournal(maxBatch int, log *zap.Logger) *raftJournal {
	if maxBatch <= 0 {
		maxBatch = journal.DefaultMaxBatch
	}
	j := &raftJournal{maxBatch: maxBatch, log: log, kick: make(chan struct{}, 1),
		inflight: make(chan *rbatch, raftWindow-1), stop: make(chan struct{}), done: make(chan struct{})}
	return j
}

// start runs the batcher and completer on r.
func (j *raftJournal) start(r *raft.Raft) {
	j.r = r
	completed := make(chan struct{})
	go func() { defer close(completed); j.completer() }()
	go func() { defer close(j.done); j.batcher(); close(j.inflight); <-completed }()
}

// begin opens epoch: entries from next on. Call with the state lock held.
func (j *raftJournal) begin(epoch uint64, next int64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.epoch, j.nextSeq, j.failed = epoch, next, nil
}

// end closes the current epoch: queued entries fail (not executed). Call
// with the state lock held.
func (j *raftJournal) end(err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.epoch = 0
	for _, p := range j.queue {
		p.finish(err)
	}
	clear(j.queue)
	j.queue = j.queue[:0]
}

// Append gives e the next sequence and queues it. Call it holding the
// state lock, after applying e.
func (j *raftJournal) Append(e *api.JournalEntry) waiter {
	j.mu.Lock()
	defer j.mu.Unlock()
	fail := func(err error) waiter {
		p := &rpending{done: make(chan struct{})}
		p.finish(err)
		return p
	}
	switch {
	case j.closing:
		return fail(journal.ErrClosed)
	case j.failed != nil:
		// A batch of this epoch failed: this change never reaches raft
		// (the state it was applied to is rebuilt), so it was not applied
		// and may go to the next leader.
		return fail(errNotLeadingNow)
	case j.epoch == 0:
		return fail(errNotLeadingNow)
	}
	e.Sequence = j.nextSeq
	_, val, err := journal.EncodeEntry(e)
	if err != nil {
		e.Sequence = 0
		return fail(err)
	}
	j.nextSeq++
	j.queue = append(j.queue, &rpending{seq: e.Sequence, val: val, done: make(chan struct{})})
	select {
	case j.kick <- struct{}{}:
	default:
	}
	return j.queue[len(j.queue)-1]
}

// batcher makes raft entries of what is queued. Apply is called holding
// j.mu, so that an entry of an ended epoch is never submitted after the
// epoch's end.
func (j *raftJournal) batcher() {
	for {
		j.mu.Lock()
		for len(j.queue) == 0 && !j.closing {
			j.mu.Unlock()
			<-j.kick
			j.mu.Lock()
		}
		if j.closing {
			for _, p := range j.queue {
				p.finish(journal.ErrClosed)
			}
			j.queue = nil
			j.mu.Unlock()
			return
		}
		n := min(len(j.queue), j.maxBatch)
		ps := append([]*rpending(nil), j.queue[:n]...)
		rest := copy(j.queue, j.queue[n:])
		clear(j.queue[rest:])
		j.queue = j.queue[:rest]
		vals := make([][]byte, n)
		for i, p := range ps {
			vals[i] = p.val
		}
		epoch := j.epoch
		f := j.r.Apply(encodeBatch(epoch, ps[0].seq, vals), 0)
		j.mu.Unlock()
		// A full window holds the batcher here while callers queue: the
		// next batch grows.
		j.inflight <- &rbatch{epoch: epoch, f: f, ps: ps}
	}
}

// completer answers the waiters of each batch, in order.
func (j *raftJournal) completer() {
	for b := range j.inflight {
		// raft answers every future eventually, except entries committed
		// and queued for the FSM when it shuts down: never let close wait
		// on one of those.
		res := make(chan error, 1)
		go func() { res <- b.f.Error() }()
		var err error
		select {
		case err = <-res:
		case <-j.stop:
			err = raft.ErrRaftShutdown
		}
		if err == nil {
			if e, ok := b.f.Response().(error); ok && e != nil {
				err = e
			}
		}
		if err != nil {
			werr := classifyApplyErr(err)
			for _, p := range b.ps {
				p.finish(werr)
			}
			j.mu.Lock()
			first := j.epoch == b.epoch && j.failed == nil
			if first {
				j.failed = werr
			}
			j.mu.Unlock()
			if first && j.onFail != nil {
				j.onFail(b.epoch, err)
			}
			continue
		}
		for _, p := range b.ps {
			p.finish(nil)
		}
		n := int64(len(b.ps))
		j.entries.Add(n)
		j.batches.Add(1)
		if n > j.largest.Load() {
			j.largest.Store(n)
		}
	}
}

// classifyApplyErr turns raft's answer into what the caller may conclude.
func classifyApplyErr(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		// Refused before it reached the log.
		return &notLeaderError{msg: fmt.Sprintf("this FS master does not lead (%v): the change was not applied; retry on the leader", err)}
	case errors.Is(err, errBatchGap):
		return &notLeaderError{msg: fmt.Sprintf("the change was not applied (%v); retry", err)}
	}
	return &uncertainError{msg: fmt.Sprintf("FS master leadership was lost while the change was being replicated (%v): it may or may not have been applied", err)}
}

// epochFailed reports whether a batch of the current epoch failed.
func (j *raftJournal) epochFailed() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.failed != nil
}

// close stops the goroutines; queued entries fail.
func (j *raftJournal) close() {
	j.mu.Lock()
	if j.closing {
		j.mu.Unlock()
		return
	}
	j.closing = true
	close(j.stop)
	j.mu.Unlock()
	select {
	case j.kick <- struct{}{}:
	default:
	}
	if j.r != nil {
		<-j.done
	}
}

// stats are the counters for reports and benchmarks.
func (j *raftJournal) stats() journal.Stats {
	return journal.Stats{Entries: j.entries.Load(), Batches: j.batches.Load(), MaxBatch: j.largest.Load()}
}
