package fsmaster

import (
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/paths"
)

// The completion feed (WatchCompletions): every file a CompleteFileEntry
// seals is an event whose cursor is that entry's journal sequence, and so
// is every file an announcing UfsChildrenEntry learns (one per entry: it
// appeared in the UFS behind Alluvium's back; ufswatch.go). The
// events are part of the State — recorded by applyCompleteFile, so live
// calls, replay, the secondary's checkpoints and every member of an
// embedded group hold the same ones — and kept in checkpoints, so a
// restart or a failover of the FS masters keeps the cursor meaningful.
// Only entries known durable (committed, for an embedded journal) are
// served: a leader's state runs ahead of its journal by the entries in
// flight, and an embedded leader that loses its lead drops the ones never
// committed; no consumer can have seen those.
//
// The State keeps the last completionRetention events; floor is the
// sequence at or below which it no longer knows every completion. A
// cursor older than floor is refused (OutOfRange, COMPLETIONS_EXPIRED)
// rather than answered with a silent gap.

// completionRetention is how many completions the FS master keeps.
const completionRetention = 50000

// Feed request bounds.
const (
	completionDefaultMax = 1000
	completionMaxEvents  = 10000
	completionMaxWait    = 60 * time.Second
)

// completion is one event of the feed.
type completion struct {
	seq    int64 // 0: applied live, not yet given its sequence (stamp)
	id     int64
	length int64
	timeMs int64
	path   string
	ufs    bool // learned from the UFS (source "ufs"), not written through Alluvium
}

// Sources of CompletionEvent.source.
const (
	sourceWrite = "write"
	sourceUFS   = "ufs"
)

func (e *completion) event() *api.CompletionEvent {
	src := sourceWrite
	if e.ufs {
		src = sourceUFS
	}
	return &api.CompletionEvent{Sequence: e.seq, Path: e.path, FileId: e.id, Length: e.length, TimeMs: e.timeMs, Source: src}
}

// completions is the State's ring of recent completion events, in
// sequence order. It is changed under the state lock, like the rest of
// the State.
type completions struct {
	ring  []completion // capacity completionRetention once full
	head  int          // index of the oldest event once the ring is full
	floor int64        // completions at or below it are not all known
	max   int          // retention (tests lower it)
}

func (c *completions) capacity() int {
	if c.max > 0 {
		return c.max
	}
	return completionRetention
}

func (c *completions) len() int { return len(c.ring) }

// at returns the i-th oldest event.
func (c *completions) at(i int) *completion { return &c.ring[(c.head+i)%len(c.ring)] }

// add records an event, dropping the oldest beyond the retention.
func (c *completions) add(e completion) {
	if len(c.ring) < c.capacity() {
		if len(c.ring) == cap(c.ring) {
			// Doubling, not append's quarter steps once large: the ring
			// grows under the state lock, and each step copies it all.
			grown := make([]completion, len(c.ring), min(c.capacity(), max(2*cap(c.ring), 1024)))
			copy(grown, c.ring)
			c.ring = grown
		}
		c.ring = append(c.ring, e)
		return
	}
	old := &c.ring[c.head]
	c.floor = max(c.floor, old.seq)
	*old = e
	c.head = (c.head + 1) % len(c.ring)
}

// stamp gives the events applied live their entry's sequence, once the
// journal assigned it; seq 0 (the append failed) drops them: the entry is
// not in the journal.
func (c *completions) stamp(seq int64) {
	for n := c.len(); n > 0; n-- {
		e := c.at(n - 1)
		if e.seq != 0 {
			return
		}
		if seq != 0 {
			e.seq = seq
			continue
		}
		// Drop the newest (only the tail can be unstamped). In a wrapped
		// ring the newest is before head, not at the slice's end: unwrap
		// it first (a failed append is rare; the master then stops).
		if c.head != 0 {
			c.ring = append(slices.Clone(c.ring[c.head:]), c.ring[:c.head]...)
			c.head = 0
		}
		c.ring = c.ring[:len(c.ring)-1]
	}
}

// after returns the index of the first event with a sequence after seq.
func (c *completions) after(seq int64) int {
	return sort.Search(c.len(), func(i int) bool { return c.at(i).seq > seq })
}

// recordCompletion adds the event of file n completed by entry e (ufs:
// learned from the UFS as news, not written through Alluvium).
func (s *State) recordCompletion(e *api.JournalEntry, n *inode, ufs bool) {
	t := e.GetOpTimeMs()
	if n.mtime > t {
		t = n.mtime
	}
	s.done.add(completion{seq: e.GetSequence(), id: n.id, length: n.length, timeMs: t, path: s.pathOf(n), ufs: ufs})
}

// Checkpoint form: bucket "completions", sequence (8-byte BE) → a
// CompletionEvent; the floor in meta. A checkpoint without them (written
// before the feed existed) knows no completion up to its sequence. The
// fresh directories (State.fresh) are their ids, 8-byte BE each, under
// meta's "ufs-fresh".
var (
	bucketCompletions = []byte("completions")
	keyCompletionFlr  = []byte("completions-floor")
	keyUFSFresh       = []byte("ufs-fresh")
)

func (s *State) writeCompletions(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if err := meta.Put(keyCompletionFlr, u64(uint64(s.done.floor))); err != nil {
		return err
	}
	fresh := make([]byte, 0, 8*len(s.fresh))
	for _, id := range slices.Sorted(maps.Keys(s.fresh)) {
		fresh = binary.BigEndian.AppendUint64(fresh, uint64(id))
	}
	if err := meta.Put(keyUFSFresh, fresh); err != nil {
		return err
	}
	b, err := tx.CreateBucketIfNotExists(bucketCompletions)
	if err != nil {
		return err
	}
	b.FillPercent = 1.0
	for i := range s.done.len() {
		e := s.done.at(i)
		if e.seq == 0 {
			continue // not in the journal (yet): not in the checkpoint either
		}
		v, err := proto.Marshal(e.event())
		if err != nil {
			return err
		}
		if err := b.Put(u64(uint64(e.seq)), v); err != nil {
			return err
		}
	}
	return nil
}

func (s *State) loadCompletions(tx *bolt.Tx) error {
	fresh := tx.Bucket(bucketMeta).Get(keyUFSFresh)
	if len(fresh)%8 != 0 {
		return fmt.Errorf("checkpoint %s: %d bytes, not ids", keyUFSFresh, len(fresh))
	}
	for ; len(fresh) > 0; fresh = fresh[8:] {
		id := int64(binary.BigEndian.Uint64(fresh))
		if n := s.get(id); n == nil || !n.dir() {
			return fmt.Errorf("checkpoint %s: %d is no directory", keyUFSFresh, id)
		}
		s.fresh[id] = struct{}{}
	}
	b := tx.Bucket(bucketCompletions)
	v := tx.Bucket(bucketMeta).Get(keyCompletionFlr)
	if b == nil || len(v) != 8 {
		s.done = completions{floor: s.lastSeq, max: s.done.max}
		return nil
	}
	s.done.floor = int64(binary.BigEndian.Uint64(v))
	return b.ForEach(func(k, v []byte) error {
		var e api.CompletionEvent
		if err := proto.Unmarshal(v, &e); err != nil || len(k) != 8 || int64(binary.BigEndian.Uint64(k)) != e.GetSequence() {
			return fmt.Errorf("checkpoint completion %x: bad record", k)
		}
		if n := s.done.len(); n > 0 && s.done.at(n-1).seq >= e.GetSequence() {
			return fmt.Errorf("checkpoint completion %d: out of order", e.GetSequence())
		}
		s.done.add(completion{seq: e.GetSequence(), id: e.GetFileId(), length: e.GetLength(), timeMs: e.GetTimeMs(), path: e.GetPath(),
			ufs: e.GetSource() == sourceUFS})
		return nil
	})
}

// feed is the serving side: the durable watermark and the long polls
// waiting for it to move.
type feed struct {
	durable atomic.Int64
	mu      sync.Mutex
	moved   chan struct{} // closed (and replaced) when durable moves or leadership changes
	stop    chan struct{} // closed when the master stops: long polls end
	once    sync.Once
}

func newFeed(durable int64) *feed {
	f := &feed{moved: make(chan struct{}), stop: make(chan struct{})}
	f.durable.Store(durable)
	return f
}

// advance records that every entry up to seq is durable.
func (f *feed) advance(seq int64) {
	for {
		cur := f.durable.Load()
		if seq <= cur {
			return
		}
		if f.durable.CompareAndSwap(cur, seq) {
			f.kick()
			return
		}
	}
}

// reset sets the watermark (a master that starts leading: everything it
// has applied is committed).
func (f *feed) reset(seq int64) {
	f.durable.Store(seq)
	f.kick()
}

// kick wakes every long poll (to look again, or to find the master no
// longer leads).
func (f *feed) kick() {
	f.mu.Lock()
	close(f.moved)
	f.moved = make(chan struct{})
	f.mu.Unlock()
}

// close ends every long poll, now and later (the master stops; a graceful
// stop must not wait for them).
func (f *feed) close() { f.once.Do(func() { close(f.stop) }) }

func (f *feed) wait() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.moved
}

// WatchCompletions answers the completion feed.
func (ns *namespace) WatchCompletions(ctx context.Context, req *api.WatchCompletionsRequest) (*api.WatchCompletionsResponse, error) {
	const op = "watch completions"
	p := req.GetPath()
	if p == "" {
		p = "/"
	}
	p, err := ns.clean(op, p)
	if err != nil {
		return nil, err
	}
	limit := int(req.GetMaxEvents())
	switch {
	case limit < 0 || limit > completionMaxEvents:
		return nil, errf(codes.InvalidArgument, op, p, "max_events %d: want 0..%d", limit, completionMaxEvents)
	case limit == 0:
		limit = completionDefaultMax
	}
	wait := time.Duration(req.GetWaitMs()) * time.Millisecond
	if wait < 0 || wait > completionMaxWait {
		return nil, errf(codes.InvalidArgument, op, p, "wait_ms %d: want 0..%d", req.GetWaitMs(), completionMaxWait.Milliseconds())
	}
	after := req.GetAfter()
	if req.GetFromNow() {
		after, wait = -1, 0
	} else if after < 0 {
		return nil, errf(codes.InvalidArgument, op, p, "cursor %d is negative", after)
	}
	pr := ns.caller(ctx)
	if after == -1 {
		// A new consumer: what is under p now is not news to it, so p's
		// tree is listed (a baseline) before its cursor is taken — else the
		// first re-sync would announce what was there all along. The
		// caller must be able to list p first.
		if _, err := ns.scanCompletions(op, p, pr, after, limit); err != nil {
			return nil, err
		}
		if err := ns.baseline(ctx, p); err != nil {
			return nil, err
		}
	}
	var deadline <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		deadline = t.C
	}
	for {
		moved := ns.feed.wait()
		resp, err := ns.scanCompletions(op, p, pr, after, limit)
		if err == nil {
			// Someone watches p: so does the leader, in p's UFS.
			ns.watchUFS(p)
		}
		if err != nil || len(resp.Events) > 0 || wait == 0 {
			return resp, err
		}
		select {
		case <-moved:
		case <-deadline:
			return ns.scanCompletions(op, p, pr, after, limit)
		case <-ns.feed.stop:
			return nil, status.Errorf(codes.Unavailable, "%s %s: this FS master is stopping; retry", op, p)
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
}

// scanCompletions is one look at the feed.
func (ns *namespace) scanCompletions(op, p string, pr principal, after int64, limit int) (*api.WatchCompletionsResponse, error) {
	ns.mu.RLock()
	defer ns.mu.RUnlock()
	if err := ns.usable(); err != nil {
		return nil, err
	}
	durable := ns.feed.durable.Load()
	d := &ns.st.done
	resp := &api.WatchCompletionsResponse{Oldest: d.floor, Cursor: durable}
	switch {
	case after == -1: // from now: checked below, no events
	case after < d.floor:
		err := errf(codes.OutOfRange, op, p,
			"cursor %d is older than the completions this FS master keeps (the last %d, after sequence %d): completions in between may be missed; rescan %s and resume from %d",
			after, d.capacity(), d.floor, p, d.floor)
		return nil, api.WithReason(err, api.ReasonCompletionsExpired,
			map[string]string{api.MetaCompletionsOldest: strconv.FormatInt(d.floor, 10)})
	case after > durable:
		return nil, errf(codes.OutOfRange, op, p, "cursor %d is ahead of the journal (at sequence %d): a cursor of another cluster, or of a journal formatted since?", after, durable)
	}
	// The caller lists p, as ls would: a path that does not exist (yet)
	// only for whom permissions do not apply.
	if n := ns.st.lookup(p); n == nil {
		if !pr.super && ns.cfg.perm.enabled {
			return nil, ns.missing(op, p, p, pr, "no such directory")
		}
	} else if n.dir() {
		if err := ns.traverseTo(op, p, pr, n); err != nil {
			return nil, err
		}
		if err := ns.need(op, p, pr, n, permR); err != nil {
			return nil, err
		}
	} else if err := ns.traverse(op, p, pr, n); err != nil {
		return nil, err
	}
	if after == -1 {
		return resp, nil
	}
	for i := d.after(after); i < d.len(); i++ {
		e := d.at(i)
		if e.seq == 0 || e.seq > durable {
			break
		}
		if !paths.IsAncestor(p, e.path) || !ns.searchable(pr, e.path) {
			continue
		}
		resp.Events = append(resp.Events, e.event())
		if len(resp.Events) == limit {
			resp.Cursor = e.seq
			break
		}
	}
	return resp, nil
}

// searchable reports whether pr may search every directory above path as
// the namespace is now (up to the deepest that still exists): an event is
// shown only to whom a stat of its path would not be refused. Call with
// ns.mu held.
func (ns *namespace) searchable(pr principal, path string) bool {
	if pr.super || !ns.cfg.perm.enabled {
		return true
	}
	dir, _ := paths.Split(path)
	n, depth, comps := ns.st.lookupPrefix(dir)
	if n == nil {
		return false
	}
	if depth == len(comps) || n.dir() {
		return ns.traverseTo("", dir, pr, n) == nil
	}
	return ns.traverse("", dir, pr, n) == nil
}
