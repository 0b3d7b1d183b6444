package journal

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"
	"go.uber.org/zap"

	"github.com/alluvium/alluvium/api"
)

// Defaults used when Options leave a field zero (they match the config
// defaults fsmaster.journal.segment-entries and max-batch-entries).
const (
	DefaultSegmentEntries = 100000
	DefaultMaxBatch       = 4096
)

// ErrClosed is returned by Append/Wait/Rotate after Close.
var ErrClosed = errors.New("journal: closed")

// Options configure a Journal.
type Options struct {
	Dir            string // journal dir; segments in Dir/logs, checkpoints in Dir/checkpoints
	SegmentEntries int64  // entries per segment before it is closed (rotated)
	MaxBatch       int    // max entries per group commit (one bbolt tx, one fsync)
	// MaxLinger bounds how long the writer waits, after a commit that
	// released many callers (lingerMinCallers) or several batches
	// (lingerMinBatches), for them to append again before the next fsync
	// (0: DefaultMaxLinger; negative: never wait). A commit of a lone
	// caller, one batch or one single call, never waits.
	MaxLinger time.Duration
	// WriterNice, if not 0, is the nice value the writer's OS thread asks
	// for: the writer runs locked to a thread of its own, whose priority
	// the master's RPC threads do not share (see setThreadNice). Raising a
	// priority needs CAP_SYS_NICE or an RLIMIT_NICE that allows it;
	// without, the writer logs once and runs as it would at 0.
	WriterNice int
	Logger     *zap.Logger
	// OnDurable, if set, hears the last sequence of each commit once it is
	// durable (from the writer goroutine: it must not block).
	OnDurable func(last int64)
}

// DefaultMaxLinger is about two fsyncs of a fast disk: long enough for
// callers behind gRPC to come back, short against the fsync they share.
const DefaultMaxLinger = time.Millisecond

// lingerMinCallers is the fewest callers a commit must have released for
// the writer to wait for them on the clock. Many independent callers
// (clients with one RPC each) come back spread over a round trip: waiting
// for them fills the next fsync (31-34 entries per fsync rather than 9-15 at 64
// clients, quiet machine). Callers carrying batches (an SDK client's
// joined creates and closes: each batch waits for its last entry only) are
// waited for once at least lingerMinBatches of them, lingerMinCallers
// entries or more, were released, until lingerBatchShare of the entries in
// flight are back (lingerTarget). Committing at once instead splits them
// into two groups that alternate (29-30 entries per fsync at 64
// goroutines through one SDK client, against 40-45 waiting), which costs
// CPU (more fsyncs and batch RPCs, each smaller: 53 against 48 us a
// create) and, when an fsync outlasts the callers' round trip (a busy
// disk, 0.6-1 ms commits), a quarter of the rate: 13.4k against 18.1k
// creates/s; with 0.4-0.5 ms commits the two did the same, 22.2k against
// 21.7k (FSMasterCreate/sdk/clients=64, medians of four interleaved pairs
// each, shared 2-core machine). A lone caller (a single call, one batch,
// one learning directory's) never waits: nobody else is coming back.
const lingerMinCallers = 8

// lingerMinBatches is the fewest batch callers a commit must have released
// to be waited for; lingerBatchShare the share of the entries then in
// flight the writer waits for: the last of them come back behind the
// others' next batches, and waiting for all (61 entries per fsync, the
// writer idle two thirds of the run) was no faster.
const (
	lingerMinBatches = 2
	lingerBatchShare = 0.75
)

// Stats are the journal's counters since Open.
type Stats struct {
	Entries      int64 // entries made durable
	Batches      int64 // bbolt commits (each one fsync of data + meta) that carried entries
	MaxBatch     int64 // largest batch so far
	Rotations    int64 // segments closed
	LastSequence int64
	// CommitTime is the writer's time in those commits: the bbolt
	// transaction (puts, page writes, both fdatasyncs) and the
	// acknowledgement of its entries. CommitTime/Batches against a bare
	// bbolt transaction of the same entries shows what the commit costs
	// beyond bbolt's; CommitTime over a run's time, how much of it the
	// single writer was busy (the rest it waited for entries).
	CommitTime time.Duration
}

// CommitAvg is CommitTime/Batches (0 before the first batch).
func (s Stats) CommitAvg() time.Duration {
	if s.Batches == 0 {
		return 0
	}
	return s.CommitTime / time.Duration(s.Batches)
}

// EntriesPerFsync is Entries/Batches (0 before the first batch).
func (s Stats) EntriesPerFsync() float64 {
	if s.Batches == 0 {
		return 0
	}
	return float64(s.Entries) / float64(s.Batches)
}

// Journal is the FS master's write-ahead journal: an ordered sequence of
// entries in bbolt segment files, appended by one writer goroutine that
// group-commits whatever callers queued while the previous fsync ran.
type Journal struct {
	opts    Options
	log     *zap.Logger
	dir     string
	logsDir string
	lock    *os.File

	mu      sync.Mutex // guards the fields below
	nextSeq int64
	queue   []*Pending
	rotates []rotateReq // Rotate calls waiting for the writer
	failed  error       // sticky: once a commit fails, everything fails
	closing bool
	// holds counts the open Holds; while any is open the writer commits
	// only the entries before holdFrom (the first one appended under the
	// oldest open Hold), so that a hold's entries go in one commit.
	holds    int
	holdFrom int64
	isClosed bool

	kick       chan struct{} // cap 1: wakes the writer (new work, Rotate, Close)
	linger     time.Duration // MaxLinger (<= 0: never wait on the clock)
	writerDone chan struct{}

	segMu  sync.RWMutex  // guards closed, open; held for writing only while rotating or deleting
	closed []SegmentInfo // closed segments, by First
	open   *openSegment

	// The next segment's file, prepared in the background (prepareSpare)
	// once the open one is half full, so that rotating (closing a full
	// segment) does not create a bbolt file and write its first zeros
	// while callers wait: spares carries it (or nil if preparing failed)
	// to the writer; preparing (writer only) is set from the start of a
	// preparation until the writer takes its result.
	spares    chan *openSegment
	preparing bool
	prepWG    sync.WaitGroup

	lastDurable atomic.Int64
	entries     atomic.Int64
	batches     atomic.Int64
	maxBatch    atomic.Int64
	rotations   atomic.Int64
	commitNanos atomic.Int64
}

// rotateReq asks the writer to close the segment holding upTo once it is
// durable.
type rotateReq struct {
	upTo int64
	ch   chan error
}

type openSegment struct {
	path  string
	first int64
	last  int64 // last durable entry in it; first-1 when empty
	db    *bbolt.DB
	// zfile and zeroed: the zeros written ahead of bbolt's pages
	// (zeroAhead): the fd they go through and the offset they reach.
	zfile  *os.File
	zeroed int64
}

// Pending is an appended entry on its way to disk.
type Pending struct {
	seq  int64
	val  []byte
	done chan struct{}
	err  error
	// waited: a caller waits for this entry (Wait before it was durable):
	// the writer counts the callers a commit released by it.
	waited atomic.Bool
}

// Sequence is the sequence number assigned to the entry (0 if Append
// failed at once).
func (p *Pending) Sequence() int64 { return p.seq }

// Wait returns nil once the entry is fsynced, the journal's error if it
// failed (then the entry is not durable and never will be: the journal is
// dead and the master must stop), or ctx's error (then the entry may still
// become durable).
func (p *Pending) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.err
	default:
	}
	p.waited.Store(true)
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func failedPending(err error) *Pending {
	p := &Pending{done: make(chan struct{}), err: err}
	close(p.done)
	return p
}

// Open opens the journal in opts.Dir for writing. See the package doc for
// what it checks and repairs. It does not replay.
func Open(opts Options) (*Journal, error) {
	if opts.Dir == "" {
		return nil, errors.New("journal: no journal dir configured")
	}
	if opts.SegmentEntries <= 0 {
		opts.SegmentEntries = DefaultSegmentEntries
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if err := checkLayout(opts.Dir); err != nil {
		return nil, err
	}
	lock, err := lockDir(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	j := &Journal{
		opts:       opts,
		log:        opts.Logger,
		dir:        opts.Dir,
		logsDir:    filepath.Join(opts.Dir, logsDirName),
		lock:       lock,
		kick:       make(chan struct{}, 1),
		writerDone: make(chan struct{}),
		spares:     make(chan *openSegment, 1),
		linger:     opts.MaxLinger,
	}
	if j.linger == 0 {
		j.linger = DefaultMaxLinger
	}
	if err := j.repair(); err != nil {
		if j.open != nil {
			j.open.closeZeroer()
			j.open.db.Close()
		}
		lock.Close()
		return nil, err
	}
	go j.writer()
	return j, nil
}

// repair checks the segments, repairs the tail and opens a fresh segment
// for appending after the last good entry.
func (j *Journal) repair() error {
	segs, superseded, other, err := listSegments(j.logsDir)
	if err != nil {
		return err
	}
	for _, p := range superseded {
		// A rewrite of the tail finished but its source was not removed yet.
		j.log.Warn("journal: removing segment superseded by a rewritten one", zap.String("segment", p))
		if err := os.Remove(p); err != nil {
			return fmt.Errorf("journal: remove %s: %w", p, err)
		}
	}
	for _, p := range other {
		if filepath.Base(p)[0] == '.' && len(filepath.Base(p)) > len(tmpPrefix) && filepath.Base(p)[:len(tmpPrefix)] == tmpPrefix {
			j.log.Info("journal: removing leftover temp file", zap.String("file", p))
			if err := os.Remove(p); err != nil {
				return fmt.Errorf("journal: remove %s: %w", p, err)
			}
			continue
		}
		j.log.Warn("journal: ignoring unknown file in the logs dir", zap.String("file", p))
	}
	if err := checkContiguous(segs); err != nil {
		return err
	}
	last := int64(0)
	if n := len(segs); n > 0 {
		// Every segment but the newest: cheap structural check (meta pages,
		// first and last keys as the name says). Entry checksums are
		// verified as Replay reads them.
		for _, s := range segs[:n-1] {
			if err := checkClosedSegment(s); err != nil {
				return fmt.Errorf("journal: segment %s is damaged and is not the tail, so cutting it would lose entries: %w", s.Path, err)
			}
		}
		j.closed = append(j.closed, segs[:n-1]...)
		tail, err := j.recoverTail(segs[n-1])
		if err != nil {
			return err
		}
		if tail != nil {
			j.closed = append(j.closed, *tail)
			last = tail.Last
		} else {
			last = segs[n-1].First - 1
		}
	}
	if err := j.openNewSegment(last + 1); err != nil {
		return err
	}
	j.nextSeq = last + 1
	j.lastDurable.Store(last)
	j.log.Info("journal: opened", zap.String("dir", j.dir), zap.Int64("last_sequence", last),
		zap.Int("closed_segments", len(j.closed)))
	return nil
}

// checkClosedSegment checks a closed segment that is not the tail: bbolt
// can map it, and its first and last keys are the ones its name gives.
func checkClosedSegment(s SegmentInfo) error {
	db, err := openBoltReadOnly(s.Path)
	if err != nil {
		return err
	}
	defer db.Close()
	err = guarded(func() error {
		return db.View(func(tx *bbolt.Tx) error {
			b := tx.Bucket(entriesBucket)
			if b == nil {
				return fmt.Errorf("%w: no %q bucket", ErrCorrupt, entriesBucket)
			}
			c := b.Cursor()
			k, _ := c.First()
			if k == nil || string(k) != string(seqKey(s.First)) {
				return fmt.Errorf("%w: first entry is not %d", ErrCorrupt, s.First)
			}
			k, _ = c.Last()
			if string(k) != string(seqKey(s.Last)) {
				return fmt.Errorf("%w: last entry is not %d", ErrCorrupt, s.Last)
			}
			if n := b.Stats().KeyN; int64(n) != s.Last-s.First+1 {
				return fmt.Errorf("%w: holds %d entries, its name says %d", ErrCorrupt, n, s.Last-s.First+1)
			}
			return nil
		})
	})
	return err
}

// recoverTail validates the newest segment entry by entry, cuts a torn or
// corrupt end, and closes it. It returns the closed segment, or nil if no
// entry of it survived (the file is then removed).
func (j *Journal) recoverTail(s SegmentInfo) (*SegmentInfo, error) {
	capLast := int64(math.MaxInt64)
	if s.Closed {
		capLast = s.Last
	}
	res, err := scanSegment(s, capLast, false)
	if err != nil {
		return nil, err
	}
	if res.damage != nil {
		// Cut: rewrite the good run into a clean file.
		damage := res.damage
		res, err = scanSegment(s, res.lastGood, true)
		if err != nil {
			return nil, err
		}
		reason := "corrupt entry"
		if res.salvaged {
			reason = "torn or unreadable file; entries salvaged from its pages"
		}
		j.log.Warn("journal: cut the torn/corrupt tail of the journal",
			zap.String("segment", s.Path),
			zap.Int64("last_good_sequence", res.lastGood),
			zap.String("reason", reason),
			zap.Error(damage))
		if res.count == 0 {
			if err := os.Remove(s.Path); err != nil {
				return nil, fmt.Errorf("journal: remove %s: %w", s.Path, err)
			}
			return nil, syncDir(j.logsDir)
		}
		out := SegmentInfo{Path: filepath.Join(j.logsDir, closedSegmentName(s.First, res.lastGood)), First: s.First, Last: res.lastGood, Closed: true}
		if err := writeSegmentFile(out.Path, s.First, res.lastGood, res.values); err != nil {
			return nil, err
		}
		if out.Path != s.Path {
			if err := os.Remove(s.Path); err != nil {
				return nil, fmt.Errorf("journal: remove %s: %w", s.Path, err)
			}
			if err := syncDir(j.logsDir); err != nil {
				return nil, err
			}
		}
		return &out, nil
	}
	if res.count == 0 {
		// An open segment with nothing in it: start it afresh.
		if err := os.Remove(s.Path); err != nil {
			return nil, fmt.Errorf("journal: remove %s: %w", s.Path, err)
		}
		return nil, syncDir(j.logsDir)
	}
	if s.Closed {
		return &s, nil
	}
	// The open segment of the previous run: close it as it is. A new run
	// never appends to an old file, so that stale pages of a transaction
	// that was in flight at a crash can never be mistaken for new entries.
	if err := cutClosedTail(s.Path); err != nil {
		return nil, fmt.Errorf("journal: close segment %s: %w", s.Path, err)
	}
	out := SegmentInfo{Path: filepath.Join(j.logsDir, closedSegmentName(s.First, res.lastGood)), First: s.First, Last: res.lastGood, Closed: true}
	if err := os.Rename(s.Path, out.Path); err != nil {
		return nil, fmt.Errorf("journal: close segment %s: %w", s.Path, err)
	}
	if err := syncDir(j.logsDir); err != nil {
		return nil, err
	}
	return &out, nil
}

// openNewSegment creates <first>-open.bolt and makes it the open segment.
func (j *Journal) openNewSegment(first int64) error {
	path := filepath.Join(j.logsDir, openSegmentName(first))
	_ = os.Remove(path)
	db, err := bbolt.Open(path, 0o644, segmentOptions())
	if err != nil {
		return fmt.Errorf("journal: create segment %s: %w", path, err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucket(entriesBucket)
		return err
	}); err != nil {
		db.Close()
		return fmt.Errorf("journal: create segment %s: %w", path, err)
	}
	if err := syncDir(j.logsDir); err != nil {
		db.Close()
		return fmt.Errorf("journal: %w", err)
	}
	j.open = &openSegment{path: path, first: first, last: first - 1, db: db}
	j.writeAhead(0)
	return nil
}

// writeAhead keeps zeros written ahead of the open segment's pages
// (zeroAhead), hwm being bbolt's high-water mark in bytes. A failure
// (a full disk, say) is no failure of the journal: bbolt grows the file
// as it would without, so the writer logs it and stops writing ahead in
// this segment.
func (j *Journal) writeAhead(hwm int64) {
	o := j.open
	if err := o.zeroAhead(hwm); err != nil {
		j.log.Warn("journal: cannot write ahead of the open segment's pages; its commits may be slower", zap.Error(err))
		o.zeroed = math.MaxInt64
		o.closeZeroer()
	}
}

// LastSequence is the last durable sequence.
func (j *Journal) LastSequence() int64 { return j.lastDurable.Load() }

// Append assigns the next sequence to e (it sets e.Sequence), queues it
// for the writer and returns at once. Call it while holding the lock that
// orders your state changes, so that journal order is apply order; then
// release that lock and Wait. e must not be modified afterwards.
func (j *Journal) Append(e *api.JournalEntry) *Pending {
	if e == nil {
		return failedPending(errors.New("journal: append of a nil entry"))
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.failed != nil {
		return failedPending(j.failed)
	}
	if j.closing {
		return failedPending(ErrClosed)
	}
	e.Sequence = j.nextSeq // never below 1 (Open)
	val, err := encodeValue(e)
	if err != nil {
		e.Sequence = 0
		return failedPending(err)
	}
	j.nextSeq++
	p := &Pending{seq: e.Sequence, val: val, done: make(chan struct{})}
	j.queue = append(j.queue, p)
	if j.holds == 0 {
		// Under a Hold the writer could not take it: the release wakes it,
		// and a writer woken now (its thread preferred by the scheduler:
		// WriterNice) would only take a CPU from the caller still appending.
		j.wake()
	}
	return p
}

// Hold keeps the entries appended from now until release is called out of
// any commit until then, so that they go to disk together: a batch call's
// entries, appended one at a time under the caller's lock, would otherwise
// be split between the commit the writer starts meanwhile and the next,
// and the batch's callers would wait for two fsyncs. Entries appended
// before the Hold are committed as usual. Call release soon and exactly
// once, then the wake it returns once the caller's own lock is released:
// the writer waits for that wake. Waking the writer under that lock would
// have the unlock's waiter (the next batch, to be applied) ready after it,
// and run before it: the writer, idle, would wait out that batch's apply
// before its commit of this one.
func (j *Journal) Hold() (release func() (wake func())) {
	j.mu.Lock()
	if j.holds == 0 {
		j.holdFrom = j.nextSeq
	}
	j.holds++
	j.mu.Unlock()
	return func() func() {
		j.mu.Lock()
		j.holds--
		last := j.holds == 0
		j.mu.Unlock()
		if !last {
			return func() {}
		}
		return j.wake
	}
}

// takeableLocked is how many queued entries the writer may commit now:
// those before an open Hold's first.
func (j *Journal) takeableLocked() int {
	if j.holds == 0 || len(j.queue) == 0 {
		return len(j.queue)
	}
	return int(max(0, min(int64(len(j.queue)), j.holdFrom-j.queue[0].seq)))
}

// wake tells the writer there is something to do (never blocks).
func (j *Journal) wake() {
	select {
	case j.kick <- struct{}{}:
	default:
	}
}

// Lingering: with closed-loop callers (each appends again as soon as its
// previous entry is acknowledged) a writer that commits whatever is queued
// the instant the previous commit ends splits the callers into two groups
// that alternate (one is fsynced while the other queues), halving the
// entries per fsync. So after a batch of n > 1 entries the writer yields
// (runtime.Gosched) to let those n callers run, for as long as the queue
// keeps growing, at most lingerYields times, and stops once as many are
// queued as were in flight when the commit ended. Yielding costs
// microseconds, never an fsync's worth of latency; timers are no use here
// (an idle Go runtime sleeps at least 1ms for any timer under 1ms).
const lingerYields = 8

// lingerTarget is how many queued entries the writer waits for (on the
// clock, up to MaxLinger) after a commit of released entries that had
// callers waiting for them, inFlight being those entries plus the ones
// queued when it ended; 0: it does not wait.
func lingerTarget(callers, released, inFlight int) int {
	switch {
	case callers >= lingerMinCallers:
		return inFlight
	case callers >= lingerMinBatches && released >= lingerMinCallers:
		return int(float64(inFlight) * lingerBatchShare)
	}
	return 0
}

// writer is the one goroutine that writes segments. Each turn it takes
// everything queued (up to MaxBatch, and no further than the segment's
// end) and commits it in one bbolt transaction: one fsync for all.
func (j *Journal) writer() {
	defer close(j.writerDone)
	if n := j.opts.WriterNice; n != 0 {
		// The thread is never unlocked: it exits with the writer, so no
		// other goroutine ever runs at its priority.
		runtime.LockOSThread()
		if err := setThreadNice(n); err != nil {
			runtime.UnlockOSThread()
			j.log.Info("journal: the writer runs at the process's priority (fsmaster.journal.writer-nice not applied)",
				zap.Int("nice", n), zap.Error(err))
		}
	}
	batch := make([]*Pending, 0, 64)
	callers := 0  // callers (Wait) the last commit released
	released := 0 // its entries
	inFlight := 0 // its entries plus those queued when it ended
	for {
		j.mu.Lock()
		// Held entries (and rotations, which may need them) wait for the
		// Hold's release, which kicks.
		for j.takeableLocked() == 0 && (len(j.rotates) == 0 || j.holds > 0) && (!j.closing || j.holds > 0) {
			j.mu.Unlock()
			<-j.kick
			j.mu.Lock()
		}
		if want := lingerTarget(callers, released, inFlight); want > 0 && j.linger > 0 && j.failed == nil && !j.closing {
			room := j.opts.SegmentEntries - (j.open.last - j.open.first + 1)
			target := int(min(int64(want), int64(j.opts.MaxBatch), room))
			for i := 0; i < lingerYields && len(j.queue) < target && !j.closing; i++ {
				n0 := len(j.queue)
				j.mu.Unlock()
				runtime.Gosched()
				j.mu.Lock()
				if len(j.queue) == n0 {
					break // nobody came back
				}
			}
			// Callers behind an RPC take longer than a few yields to come
			// back; wait for them on the clock, bounded by MaxLinger.
			if len(j.queue) < target && !j.closing {
				deadline := time.Now().Add(j.linger)
				timer := time.NewTimer(j.linger)
				for len(j.queue) < target && !j.closing && j.failed == nil {
					j.mu.Unlock()
					select {
					case <-j.kick:
					case <-timer.C:
					}
					j.mu.Lock()
					if !time.Now().Before(deadline) {
						break
					}
				}
				timer.Stop()
			}
		}
		callers, released = 0, 0
		if j.failed != nil {
			j.failAllLocked(j.failed)
			closing := j.closing
			j.mu.Unlock()
			if closing {
				return
			}
			continue
		}
		room := j.opts.SegmentEntries - (j.open.last - j.open.first + 1)
		n := min(j.takeableLocked(), j.opts.MaxBatch, int(min(room, math.MaxInt32)))
		batch = append(batch[:0], j.queue[:n]...)
		rest := copy(j.queue, j.queue[n:])
		clear(j.queue[rest:])
		j.queue = j.queue[:rest]
		upTo := j.lastDurable.Load()
		if n > 0 {
			upTo = batch[n-1].seq
		}
		// Rotations whose entries are all in this batch or already durable.
		var ready []rotateReq
		keep := j.rotates[:0]
		for _, r := range j.rotates {
			if r.upTo <= upTo {
				ready = append(ready, r)
			} else {
				keep = append(keep, r)
			}
		}
		j.rotates = keep
		exit := j.closing && len(j.queue) == 0 && n == 0
		j.mu.Unlock()

		var err error
		if n > 0 {
			var queued int
			err = j.commit(batch, &queued)
			inFlight = n + queued
			released = n
			for _, p := range batch[:n] {
				if p.waited.Load() {
					callers++
				}
			}
		}
		if err == nil && !j.preparing && 2*(j.open.last-j.open.first+1) >= j.opts.SegmentEntries {
			j.preparing = true
			j.prepWG.Add(1)
			go j.prepareSpare()
		}
		if err == nil {
			full := j.open.last-j.open.first+1 >= j.opts.SegmentEntries
			asked := false
			for _, r := range ready {
				// Only if the entries asked for are in the open segment.
				asked = asked || (r.upTo >= j.open.first && j.open.last >= j.open.first)
			}
			if full || asked {
				err = j.rotate()
			}
		}
		for _, r := range ready {
			r.ch <- err
		}
		if err != nil {
			j.log.Error("journal: write failed; the journal is stopped", zap.String("dir", j.dir), zap.Error(err))
			j.mu.Lock()
			if j.failed == nil {
				j.failed = fmt.Errorf("journal %s failed: %w", j.dir, err)
			}
			j.mu.Unlock()
			continue
		}
		if exit {
			return
		}
	}
}

// failAllLocked fails every queued entry and rotation with err.
func (j *Journal) failAllLocked(err error) {
	for _, p := range j.queue {
		p.err = err
		close(p.done)
	}
	clear(j.queue)
	j.queue = j.queue[:0]
	for _, r := range j.rotates {
		r.ch <- err
	}
	j.rotates = nil
}

// commit writes batch in one bbolt transaction and acknowledges it.
// It stores in *queued how many entries were queued when the commit ended
// (before the batch was acknowledged).
func (j *Journal) commit(batch []*Pending, queued *int) error {
	start := time.Now()
	var hwm int64
	err := j.open.db.Update(func(tx *bbolt.Tx) error {
		hwm = tx.Size()
		b := tx.Bucket(entriesBucket)
		if b == nil {
			return fmt.Errorf("segment %s has no %q bucket", j.open.path, entriesBucket)
		}
		b.FillPercent = 1.0 // keys only ever grow: pack leaves full
		// One key buffer for the batch: Put copies the key it is given.
		var key [8]byte
		for _, p := range batch {
			binary.BigEndian.PutUint64(key[:], uint64(p.seq))
			if err := b.Put(key[:], p.val); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		err = fmt.Errorf("commit entries %d..%d to %s: %w", batch[0].seq, batch[len(batch)-1].seq, j.open.path, err)
		for _, p := range batch {
			p.err = err
			close(p.done)
		}
		return err
	}
	last := batch[len(batch)-1].seq
	j.segMu.Lock()
	j.open.last = last
	j.segMu.Unlock()
	j.lastDurable.Store(last)
	if j.opts.OnDurable != nil {
		j.opts.OnDurable(last)
	}
	j.entries.Add(int64(len(batch)))
	j.batches.Add(1)
	if n := int64(len(batch)); n > j.maxBatch.Load() {
		j.maxBatch.Store(n)
	}
	j.mu.Lock()
	*queued = len(j.queue)
	j.mu.Unlock()
	for _, p := range batch {
		p.val = nil
		close(p.done)
	}
	// hwm is the mark before this commit: it added a few pages at most,
	// far less than zeroAheadMin.
	j.writeAhead(hwm)
	j.commitNanos.Add(int64(time.Since(start)))
	return nil
}

// rotate closes the open segment (renaming it <first>-<last>.bolt) and
// opens the next one. Called by the writer only.
func (j *Journal) rotate() error {
	j.segMu.Lock()
	defer j.segMu.Unlock()
	o := j.open
	if err := o.closeDB(); err != nil {
		return fmt.Errorf("close segment %s: %w", o.path, err)
	}
	closed := SegmentInfo{Path: filepath.Join(j.logsDir, closedSegmentName(o.first, o.last)), First: o.first, Last: o.last, Closed: true}
	if err := os.Rename(o.path, closed.Path); err != nil {
		return fmt.Errorf("close segment %s: %w", o.path, err)
	}
	if err := syncDir(j.logsDir); err != nil {
		return err
	}
	j.closed = append(j.closed, closed)
	j.open = nil
	if !j.useSpare(closed.Last + 1) {
		if err := j.openNewSegment(closed.Last + 1); err != nil {
			return err
		}
	}
	j.rotations.Add(1)
	j.log.Debug("journal: segment closed", zap.String("segment", closed.Path))
	return nil
}

// Rotate closes the current segment now (after writing everything appended
// before the call), so that all entries so far are in closed segments. It
// does nothing if the open segment is empty.
func (j *Journal) Rotate() error {
	ch := make(chan error, 1)
	j.mu.Lock()
	if j.failed != nil {
		err := j.failed
		j.mu.Unlock()
		return err
	}
	if j.closing {
		j.mu.Unlock()
		return ErrClosed
	}
	j.rotates = append(j.rotates, rotateReq{upTo: j.nextSeq - 1, ch: ch})
	j.wake()
	j.mu.Unlock()
	return <-ch
}

// Segments lists the segments, oldest first; the last one is the open one.
func (j *Journal) Segments() []SegmentInfo {
	j.segMu.RLock()
	defer j.segMu.RUnlock()
	out := append([]SegmentInfo(nil), j.closed...)
	if j.open != nil {
		out = append(out, SegmentInfo{Path: j.open.path, First: j.open.first, Last: j.open.last})
	}
	return out
}

// DeleteCoveredSegments deletes the closed segments whose entries are all
// at or below seq (covered by a checkpoint at seq) and returns how many it
// deleted. The open segment is never deleted.
func (j *Journal) DeleteCoveredSegments(seq int64) (int, error) {
	j.segMu.Lock()
	defer j.segMu.Unlock()
	n := 0
	for n < len(j.closed) && j.closed[n].Last <= seq {
		if err := os.Remove(j.closed[n].Path); err != nil && !errors.Is(err, os.ErrNotExist) {
			j.closed = j.closed[n:]
			return n, fmt.Errorf("journal: delete segment: %w", err)
		}
		n++
	}
	j.closed = append(j.closed[:0:0], j.closed[n:]...)
	if n > 0 {
		if err := syncDir(j.logsDir); err != nil {
			return n, fmt.Errorf("journal: %w", err)
		}
		j.log.Info("journal: deleted segments covered by a checkpoint", zap.Int("segments", n), zap.Int64("checkpoint_sequence", seq))
	}
	return n, nil
}

// Stats returns the journal's counters.
func (j *Journal) Stats() Stats {
	return Stats{
		Entries:      j.entries.Load(),
		Batches:      j.batches.Load(),
		MaxBatch:     j.maxBatch.Load(),
		Rotations:    j.rotations.Load(),
		LastSequence: j.lastDurable.Load(),
		CommitTime:   time.Duration(j.commitNanos.Load()),
	}
}

// Replay calls fn, in order, for every entry with sequence > after, up to
// the last sequence durable when Replay started, from closed and open
// segments. Every entry's checksum is verified; a corrupt or missing entry
// is an error naming the segment file and sequence. fn runs without any
// journal lock held but must not wait for an Append (Replay is for start
// up). It is an error if after+1 is before the oldest segment still on
// disk (the entries were deleted: load a newer checkpoint) or after is
// beyond the end of the journal (the checkpoint is ahead of the journal).
func (j *Journal) Replay(ctx context.Context, after int64, fn func(*api.JournalEntry) error) error {
	end := j.LastSequence()
	if after > end {
		return fmt.Errorf("journal: %w: asked to replay after %d but the journal in %s ends at %d", ErrCorrupt, after, j.dir, end)
	}
	next := after + 1
	for next <= end {
		if err := ctx.Err(); err != nil {
			return err
		}
		seg, db, ok := j.segmentFor(next)
		if !ok {
			return fmt.Errorf("journal: entry %d is no longer in %s (its segment was deleted after a checkpoint; load a newer checkpoint)", next, j.logsDir)
		}
		if seg.Closed {
			to := min(seg.Last, end)
			if err := replaySegmentFile(ctx, seg, next, to, fn); err != nil {
				return err
			}
			next = to + 1
			continue
		}
		// The open segment: read a chunk under the read lock (it keeps the
		// writer from closing the db under us), call fn without it.
		chunk, err := readChunk(db, seg.Path, next, min(seg.Last, end), replayChunk)
		j.segMu.RUnlock()
		if err != nil {
			return err
		}
		for _, e := range chunk {
			if err := fn(e); err != nil {
				return err
			}
		}
		next += int64(len(chunk))
	}
	return nil
}

// segmentFor finds the segment holding seq. For the open segment it returns
// its db with segMu read-locked; the caller unlocks.
func (j *Journal) segmentFor(seq int64) (SegmentInfo, *bbolt.DB, bool) {
	j.segMu.RLock()
	for _, s := range j.closed {
		if s.First <= seq && seq <= s.Last {
			j.segMu.RUnlock()
			return s, nil, true
		}
	}
	if o := j.open; o != nil && o.first <= seq && seq <= o.last {
		return SegmentInfo{Path: o.path, First: o.first, Last: o.last}, o.db, true
	}
	j.segMu.RUnlock()
	return SegmentInfo{}, nil, false
}

// Close writes what is queued, closes the open segment (it stays
// <first>-open.bolt; the next Open closes it) and releases the dir lock.
func (j *Journal) Close() error {
	j.mu.Lock()
	if j.isClosed {
		j.mu.Unlock()
		return nil
	}
	j.isClosed = true
	j.closing = true
	j.wake()
	j.mu.Unlock()
	<-j.writerDone
	j.prepWG.Wait()
	select {
	case o := <-j.spares:
		j.discardSpare(o)
	default:
	}
	j.segMu.Lock()
	var err error
	if j.open != nil {
		err = j.open.closeDB()
		j.open.db = nil
	}
	j.segMu.Unlock()
	if cerr := j.lock.Close(); err == nil {
		err = cerr
	}
	return err
}
