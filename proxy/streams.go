package proxy

import (
	"crypto/rand"
	"encoding/binary"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"

	"github.com/alluvium/alluvium/sdk"
)

// stream is an open file behind a REST stream id: a writer from
// create-file or a reader from open-file. It belongs to the caller that
// opened it: nobody else can read, write or close it, or learn it exists.
type stream struct {
	id    int64
	owner string // the caller's user; "" for the cluster token
	path  string
	w     *sdk.FileWriter
	r     *sdk.FileReader

	mu sync.Mutex // one call on the stream at a time

	// Guarded by the table's mutex.
	last time.Time
	busy int
}

// streamTable holds the open streams. A stream no call touched for the
// timeout is closed by the janitor: a reader is released, a writer is
// aborted (its file never appears) — a client that walked away must not
// leave a half-written file that looks whole.
//
// Stream ids are random (53 bits: an integer a JSON double holds exactly,
// as Alluxio's clients parse it), so one cannot be guessed; and a call on a
// stream by anyone but its owner is answered as if it did not exist.
type streamTable struct {
	mu      sync.Mutex
	m       map[int64]*stream
	perUser map[string]int // streams open, and being opened, per owner
	maxUser int            // proxy.max-streams-per-user
	timeout time.Duration
	log     *zap.Logger
	onCount func(n int)
}

func newStreamTable(timeout time.Duration, maxPerUser int, log *zap.Logger, onCount func(int)) *streamTable {
	if onCount == nil {
		onCount = func(int) {}
	}
	return &streamTable{m: map[int64]*stream{}, perUser: map[string]int{}, maxUser: maxPerUser,
		timeout: timeout, log: log, onCount: onCount}
}

// maxStreamID bounds stream ids below 2^53, the integers a JSON number
// (a double) holds exactly.
const maxStreamID = 1<<53 - 1

// randomID returns a random id in [1, maxStreamID].
func randomID() int64 {
	for {
		var b [8]byte
		_, _ = rand.Read(b[:]) // never fails (crypto/rand)
		if id := int64(binary.BigEndian.Uint64(b[:]) & maxStreamID); id != 0 {
			return id
		}
	}
}

// reserve takes one of owner's stream slots before a stream is opened, so
// the bound holds however many open at once; add uses it, unreserve gives
// it back when the open failed.
func (t *streamTable) reserve(owner string) *restError {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.maxUser > 0 && t.perUser[owner] >= t.maxUser {
		who := "user " + owner
		if owner == "" {
			who = "the cluster token"
		}
		return restErrorf(codes.ResourceExhausted, "%s holds %d open REST streams (proxy.max-streams-per-user %d): close some (POST /api/v1/streams/{id}/close) or let them expire", who, t.perUser[owner], t.maxUser)
	}
	t.perUser[owner]++
	return nil
}

func (t *streamTable) unreserve(owner string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.release1(owner)
}

// release1 gives back one of owner's slots. Call with t.mu held.
func (t *streamTable) release1(owner string) {
	if t.perUser[owner]--; t.perUser[owner] <= 0 {
		delete(t.perUser, owner)
	}
}

// add registers s (its owner holding a slot from reserve) under a fresh
// random id.
func (t *streamTable) add(s *stream) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	id := randomID()
	for t.m[id] != nil {
		id = randomID()
	}
	s.id = id
	s.last = time.Now()
	t.m[s.id] = s
	t.onCount(len(t.m))
	return s.id
}

func streamGone(id int64) *restError {
	return notFound("stream %d does not exist (never opened, closed, or expired after being idle)", id)
}

// acquire returns stream id, when caller owns it, for one call; release
// it after.
func (t *streamTable) acquire(id int64, caller string) (*stream, *restError) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.m[id]
	if s == nil || s.owner != caller {
		return nil, streamGone(id)
	}
	s.busy++
	return s, nil
}

func (t *streamTable) release(s *stream) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s.busy--
	s.last = time.Now()
}

// remove takes stream id, when caller owns it, out of the table.
func (t *streamTable) remove(id int64, caller string) (*stream, *restError) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.m[id]
	if s == nil || s.owner != caller {
		return nil, streamGone(id)
	}
	delete(t.m, id)
	t.release1(s.owner)
	t.onCount(len(t.m))
	return s, nil
}

// expire closes the streams idle since before now-timeout.
func (t *streamTable) expire(now time.Time) int {
	t.mu.Lock()
	var idle []*stream
	for id, s := range t.m {
		if s.busy == 0 && now.Sub(s.last) > t.timeout {
			idle = append(idle, s)
			delete(t.m, id)
			t.release1(s.owner)
		}
	}
	t.onCount(len(t.m))
	t.mu.Unlock()
	for _, s := range idle {
		t.log.Info("closing an idle REST stream", zap.Int64("stream", s.id), zap.String("path", s.path), zap.String("owner", s.owner), zap.Duration("idle", t.timeout))
		s.discard()
	}
	return len(idle)
}

// closeAll discards every stream (the proxy is stopping).
func (t *streamTable) closeAll() {
	t.mu.Lock()
	all := t.m
	t.m = map[int64]*stream{}
	t.perUser = map[string]int{}
	t.onCount(0)
	t.mu.Unlock()
	for _, s := range all {
		s.discard()
	}
}

// discard aborts a writer or closes a reader.
func (s *stream) discard() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w != nil {
		s.w.Abort()
	}
	if s.r != nil {
		_ = s.r.Close()
	}
}

func (s *stream) kind() string {
	if s.w != nil {
		return "write"
	}
	return "read"
}

func wrongKind(s *stream, want string) *restError {
	return restErrorf(codes.InvalidArgument, "stream %d of %s was opened for %sing, not %sing", s.id, s.path, s.kind(), want)
}
