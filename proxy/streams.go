package proxy

import (
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"

	"github.com/alluvium/alluvium/sdk"
)

// stream is an open file behind a REST stream id: a writer from
// create-file or a reader from open-file.
type stream struct {
	id   int64
	path string
	w    *sdk.FileWriter
	r    *sdk.FileReader

	mu sync.Mutex // one call on the stream at a time

	// Guarded by the table's mutex.
	last time.Time
	busy int
}

// streamTable holds the open streams. A stream no call touched for the
// timeout is closed by the janitor: a reader is released, a writer is
// aborted (its file never appears) — a client that walked away must not
// leave a half-written file that looks whole.
type streamTable struct {
	mu      sync.Mutex
	m       map[int64]*stream
	next    int64
	timeout time.Duration
	log     *zap.Logger
	onCount func(n int)
}

func newStreamTable(timeout time.Duration, log *zap.Logger, onCount func(int)) *streamTable {
	if onCount == nil {
		onCount = func(int) {}
	}
	return &streamTable{m: map[int64]*stream{}, timeout: timeout, log: log, onCount: onCount}
}

func (t *streamTable) add(s *stream) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.next++
	// Alluxio's ids are Java ints; stay in that range.
	if t.next > 1<<31-1 {
		t.next = 1
	}
	for t.m[t.next] != nil {
		t.next++
	}
	s.id = t.next
	s.last = time.Now()
	t.m[s.id] = s
	t.onCount(len(t.m))
	return s.id
}

func streamGone(id int64) *restError {
	return notFound("stream %d does not exist (never opened, closed, or expired after being idle)", id)
}

// acquire returns stream id for one call; release it after.
func (t *streamTable) acquire(id int64) (*stream, *restError) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.m[id]
	if s == nil {
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

func (t *streamTable) remove(id int64) (*stream, *restError) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.m[id]
	if s == nil {
		return nil, streamGone(id)
	}
	delete(t.m, id)
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
		}
	}
	t.onCount(len(t.m))
	t.mu.Unlock()
	for _, s := range idle {
		t.log.Info("closing an idle REST stream", zap.Int64("stream", s.id), zap.String("path", s.path), zap.Duration("idle", t.timeout))
		s.discard()
	}
	return len(idle)
}

// closeAll discards every stream (the proxy is stopping).
func (t *streamTable) closeAll() {
	t.mu.Lock()
	all := t.m
	t.m = map[int64]*stream{}
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
