package blockworker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/ufs"
)

// fill copies one block from the UFS into the store. Every CacheBlock and
// caching ReadBlock of the block while it runs shares it: the block is read
// from the UFS once, and readers stream the bytes from the temp file as they
// arrive. It runs under the worker's lifetime, not a caller's request, so a
// reader that goes away does not waste the work of the others.
type fill struct {
	id     int64
	length int64
	tb     *TempBlock
	rf     *os.File // read side of the temp file, shared by readers; nil: none (wait, then read the store)

	mu      sync.Mutex
	written int64
	done    bool
	err     error
	// notify is closed on the next change; made by the first waiter after
	// the last change (nil: nobody waits — a small block's fill mostly
	// runs with nobody waiting, and would make a channel every update).
	notify  chan struct{}
	readers int
	closed  bool

	// batched: the caller that started the fill commits the block to the
	// master itself, with others (CacheBlocks); meta is what it commits.
	batched bool
	meta    BlockMeta
	stored  bool // committed to the store by this fill
	claimed bool // meta handed to the batch

	// th is the bandwidth budget of the call that started the fill (nil:
	// none): the bytes read from the UFS draw from it as they come. Such a
	// fill is a job's work at the job's pace: when every caller waiting for
	// it has gone (the task was cancelled), stop ends it.
	th   *throttle
	ctx  context.Context
	stop context.CancelFunc
}

// batchedMeta returns, once, the block a batched fill stored.
func (f *fill) batchedMeta() (BlockMeta, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.batched || !f.stored || f.claimed {
		return BlockMeta{}, false
	}
	f.claimed = true
	return f.meta, true
}

func (f *fill) update(n int64, done bool, err error) {
	f.mu.Lock()
	f.written += n
	if done {
		f.done, f.err = true, err
		f.maybeClose()
	}
	if f.notify != nil {
		close(f.notify)
		f.notify = nil
	}
	f.mu.Unlock()
}

// maybeClose closes the read side once the fill is over and unread
// (with f.mu held).
func (f *fill) maybeClose() {
	if f.done && f.readers == 0 && !f.closed {
		f.closed = true
		if f.rf != nil {
			f.rf.Close()
		}
	}
}

// join registers a reader; false when the fill is over and closed (the
// block is then committed or failed).
func (f *fill) join() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.readers++
	return true
}

func (f *fill) leave() {
	f.mu.Lock()
	f.readers--
	if f.readers == 0 && !f.done && f.th != nil {
		f.stop()
	}
	f.maybeClose()
	f.mu.Unlock()
}

// waitFor blocks until at least end bytes are in or the fill ended. It
// returns the bytes available.
func (f *fill) waitFor(ctx context.Context, end int64) (int64, error) {
	for {
		f.mu.Lock()
		written, done, err := f.written, f.done, f.err
		if err != nil || written >= end || done {
			f.mu.Unlock()
			return written, err
		}
		if f.notify == nil {
			f.notify = make(chan struct{})
		}
		ch := f.notify
		f.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return written, ctx.Err()
		}
	}
}

// wait blocks until the fill ends.
func (f *fill) wait(ctx context.Context) error {
	_, err := f.waitFor(ctx, f.length+1)
	return err
}

// fillsRunning is how many blocks are being cached from the UFS now.
func (w *Worker) fillsRunning() int {
	w.fillMu.Lock()
	defer w.fillMu.Unlock()
	return len(w.fills)
}

// startFill returns the running fill of block id, starting one when the
// block is neither cached nor being filled. cached is true when the block
// is already in the store.
func (w *Worker) startFill(id int64, src *api.UfsBlockSource, pinned bool, alias string) (f *fill, cached bool, err error) {
	return w.startFillAs(id, src, pinned, alias, false, true, nil)
}

// startCacheFill is startFill for a caller that only waits for the block
// (CacheBlock): no read side is opened. A reader joining such a fill waits
// for it to end and reads the block from the store.
// A fill it starts draws from th.
func (w *Worker) startCacheFill(id int64, src *api.UfsBlockSource, pinned bool, alias string, th *throttle) (f *fill, cached bool, err error) {
	return w.startFillAs(id, src, pinned, alias, false, false, th)
}

// startFillBatched is startFill for CacheBlocks: a fill it starts leaves
// the commit to the master to the caller (batchedMeta).
func (w *Worker) startFillBatched(id int64, src *api.UfsBlockSource, pinned bool, alias string, th *throttle) (f *fill, cached bool, err error) {
	return w.startFillAs(id, src, pinned, alias, true, false, th)
}

// inlineFillMax is the longest block a cache call fills on its own
// goroutine (startFillInline) when no budget throttles it: a small
// block's fill is a few syscalls, less than the hand-off to a goroutine of
// its own and the caller's wake-up when it ends.
const inlineFillMax = 1 << 20

// inlinable says whether a cache call's fill of src may run on the
// caller's goroutine: short, and not a job's throttled work (such a fill
// ends when its callers go, which the caller's own goroutine cannot see).
func inlinable(src *api.UfsBlockSource, th *throttle) bool {
	return th == nil && src.GetLength() <= inlineFillMax
}

func (w *Worker) startFillAs(id int64, src *api.UfsBlockSource, pinned bool, alias string, batched, reader bool, th *throttle) (f *fill, cached bool, err error) {
	return w.newFill(id, src, pinned, alias, batched, reader, th, false)
}

// startFillInline is startFill for a cache call (CacheBlock; batched:
// CacheBlocks) of a small unthrottled block (inlinable): a fill it starts
// runs at once on the caller's goroutine and has ended when it returns; a
// fill already running is joined as startFill would.
func (w *Worker) startFillInline(id int64, src *api.UfsBlockSource, pinned bool, alias string, batched bool) (f *fill, cached bool, err error) {
	return w.newFill(id, src, pinned, alias, batched, false, nil, true)
}

// newFill joins the fill of block id or starts one; inline runs one it
// starts on the caller's goroutine before returning.
func (w *Worker) newFill(id int64, src *api.UfsBlockSource, pinned bool, alias string, batched, reader bool, th *throttle, inline bool) (f *fill, cached bool, err error) {
	w.fillMu.Lock()
	if f := w.fills[id]; f != nil && f.join() {
		w.fillMu.Unlock()
		return f, false, nil
	}
	if w.store.Has(id) {
		w.fillMu.Unlock()
		return nil, true, nil
	}
	tb, err := w.store.Create(id, src.GetLength(), alias, pinned)
	if errors.Is(err, ErrExists) {
		w.fillMu.Unlock()
		return nil, true, nil
	}
	if err != nil {
		w.fillMu.Unlock()
		return nil, false, err
	}
	var rf *os.File
	if reader {
		if rf, err = os.Open(tb.Path()); err != nil {
			w.fillMu.Unlock()
			tb.Abort()
			return nil, false, fmt.Errorf("block %d: %w", id, err)
		}
	}
	f = &fill{id: id, length: src.GetLength(), tb: tb, rf: rf, readers: 1, batched: batched, th: th}
	if th != nil {
		f.ctx, f.stop = context.WithCancel(w.ctx)
	} else {
		// Only a throttled fill is ever stopped before it ends (leave): any
		// other runs under the worker's context as it is — a cancel context
		// of its own would be a registration with the worker's, under its
		// lock, shared by every fill (20,000 a small-file load).
		f.ctx, f.stop = w.ctx, func() {}
	}
	w.fills[id] = f
	w.wg.Add(1)
	w.fillMu.Unlock()
	if inline {
		defer w.wg.Done()
		w.runFill(f, src)
		return f, false, nil
	}
	go func() {
		defer w.wg.Done()
		w.runFill(f, src)
	}()
	return f, false, nil
}

func (w *Worker) runFill(f *fill, src *api.UfsBlockSource) {
	defer f.stop()
	err := w.copyFromUFS(f, src)
	var meta BlockMeta
	committed := false
	if err == nil {
		meta, err = f.tb.Commit()
		committed = err == nil
		if errors.Is(err, ErrExists) {
			err = nil // a writer got there first: the block is cached
		}
	} else {
		f.tb.Abort()
	}
	if committed {
		w.metrics.bytesCached.Add(float64(meta.Length))
		w.metrics.blocksCached.Inc()
		if f.batched {
			// CacheBlocks commits it with the others of its call.
			f.mu.Lock()
			f.meta, f.stored = meta, true
			f.mu.Unlock()
		} else {
			w.link.commit(w.ctx, meta)
		}
	}
	if err != nil {
		w.log.Warn("caching a block from the UFS failed", zap.Int64("block", f.id), zap.String("ufs", src.GetUfsPath()), zap.Error(err))
	}
	w.fillMu.Lock()
	delete(w.fills, f.id)
	w.fillMu.Unlock()
	f.update(0, true, err)
}

func (w *Worker) copyFromUFS(f *fill, src *api.UfsBlockSource) error {
	ctx := f.ctx
	fs, rel, err := w.mounts.resolve(ctx, src.GetMountId(), src.GetUfsPath())
	if err != nil {
		return err
	}
	rc, err := fs.Open(ctx, rel, src.GetOffset(), src.GetLength())
	if err != nil {
		return ufsStatus(src.GetUfsPath(), err)
	}
	defer rc.Close()
	if err := checkFingerprint(ctx, fs, rel, rc, src); err != nil {
		return err
	}
	bp := w.chunks.Get(w.chunks.Size())
	defer w.chunks.Put(bp)
	buf := *bp
	for {
		n, rerr := io.ReadFull(rc, buf)
		if n > 0 {
			if err := f.th.take(ctx, n); err != nil {
				return err
			}
			if _, err := f.tb.Write(buf[:n]); err != nil {
				return err
			}
			f.update(int64(n), false, nil)
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return ufsStatus(src.GetUfsPath(), rerr)
		}
	}
	if got := f.tb.Written(); got != src.GetLength() {
		return status.Errorf(codes.FailedPrecondition, "ufs %s: block %d wants %d bytes at offset %d, the file gave %d (changed or truncated?)", src.GetUfsPath(), f.id, src.GetLength(), src.GetOffset(), got)
	}
	return nil
}

// checkFingerprint refuses a UFS file that changed since Alluvium loaded
// it: the status of the open file when the reader knows it (no second
// lookup of the path), else a stat.
func checkFingerprint(ctx context.Context, fs ufs.FileSystem, rel string, rc io.Reader, src *api.UfsBlockSource) error {
	fp := src.GetUfsFingerprint()
	if fp == "" {
		return nil
	}
	var st ufs.FileStatus
	if s, ok := rc.(ufs.Statter); ok {
		st = s.Status()
	} else {
		var err error
		if st, err = fs.Stat(ctx, rel); err != nil {
			return ufsStatus(src.GetUfsPath(), err)
		}
	}
	if st.Fingerprint != fp {
		return status.Errorf(codes.FailedPrecondition, "ufs %s changed since Alluvium loaded it (fingerprint %s, was %s): reload its metadata", src.GetUfsPath(), st.Fingerprint, fp)
	}
	return nil
}
