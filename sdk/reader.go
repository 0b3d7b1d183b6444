package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/rpc"
)

// OpenOptions tune Open.
type OpenOptions struct {
	// ReadType: CACHE (a miss caches the block on the worker that reads it
	// from the UFS), NO_CACHE, or CACHE_PROMOTE. Unset: the client's
	// default (WithReadType), else CACHE.
	ReadType api.ReadType
}

// FileReader reads a complete file: cached blocks from the worker holding
// them (one on this host first, by a short-circuit read of the block file
// when allowed), missing blocks from the UFS through a worker. It is an
// io.Reader, io.ReaderAt, io.Seeker and io.Closer; Read and Seek are not
// safe for concurrent use, ReadAt is.
type FileReader struct {
	c    *Client
	ctx  context.Context
	info *FileInfo
	path string
	rt   api.ReadType
	// layout: which block holds which bytes (ordinals 0..Count-1).
	layout api.Layout

	pos int64
	cur *blockStream // sequential reader of the block holding pos

	mu      sync.Mutex
	leases  map[int64]*localBlock // short-circuit blocks for ReadAt
	locs    map[int64][]*api.BlockLocation
	noShort map[string]bool // workers whose block files we cannot open
	closed  bool
}

// Open opens a complete file for reading.
func (c *Client) Open(ctx context.Context, path string, o OpenOptions) (*FileReader, error) {
	info, err := c.stat(ctx, "open", path, 4) // read, as open(2) checks
	if err != nil {
		return nil, err
	}
	switch {
	case info.GetFolder():
		return nil, &Error{Op: "open", Path: path, Code: codes.InvalidArgument, Message: "is a directory", kind: ErrInvalidArgument}
	case !info.GetCompleted():
		return nil, &Error{Op: "open", Path: path, Code: codes.FailedPrecondition, Message: "the file is still being written", kind: ErrFailedPrecondition}
	}
	rt := o.ReadType
	if rt == api.ReadType_READ_TYPE_UNSPECIFIED {
		rt = c.o.readType
	}
	if rt == api.ReadType_READ_TYPE_UNSPECIFIED {
		rt = api.ReadType_CACHE
	}
	r := &FileReader{c: c, ctx: ctx, info: info, path: info.GetPath(), rt: rt,
		leases: map[int64]*localBlock{}, locs: map[int64][]*api.BlockLocation{}, noShort: map[string]bool{}}
	if r.path == "" {
		r.path = path
	}
	r.layout = api.LayoutOf(info)
	// FileBlockInfos follow the layout's order (block ordinals).
	for i, fb := range info.GetFileBlockInfos() {
		r.locs[int64(i)] = fb.GetBlockInfo().GetLocations()
	}
	return r, nil
}

// Info returns the file's status at Open.
func (r *FileReader) Info() *FileInfo { return r.info }

// Length returns the file's length.
func (r *FileReader) Length() int64 { return r.info.GetLength() }

// blockLen is the length of block idx (its ordinal in the file's layout;
// the reader's blocks are always ordinals, their ids come from the layout).
func (r *FileReader) blockLen(idx int64) int64 { return r.layout.Block(idx).Length }

// blockID is the id of block idx.
func (r *FileReader) blockID(idx int64) int64 { return r.layout.Block(idx).ID }

func (r *FileReader) errf(op string, code codes.Code, kind error, format string, a ...any) error {
	return &Error{Op: op, Path: r.path, Code: code, Message: fmt.Sprintf(format, a...), kind: kind}
}

// Read implements io.Reader: io.EOF at the end of the file.
func (r *FileReader) Read(p []byte) (int, error) {
	if r.closed {
		return 0, r.errf("read", codes.FailedPrecondition, ErrFailedPrecondition, "reader is closed")
	}
	if r.pos >= r.info.GetLength() {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	end, err := r.ensureCur()
	if err != nil {
		return 0, err
	}
	n, err := r.cur.read(p[:min(int64(len(p)), end-r.pos)])
	r.pos += int64(n)
	return n, r.afterRead(end, err)
}

// ensureCur makes r.cur the reader of the block holding r.pos and returns
// the file offset where that block ends.
func (r *FileReader) ensureCur() (int64, error) {
	idx := r.layout.Find(r.pos)
	b := r.layout.Block(idx)
	if r.cur != nil && (r.cur.idx != idx || r.cur.pos != r.pos) {
		r.cur.close()
		r.cur = nil
	}
	if r.cur == nil {
		bsm, err := r.openStream(idx, r.pos-b.Offset)
		if err != nil {
			return 0, err
		}
		r.cur = bsm
	}
	return b.Offset + b.Length, nil
}

// afterRead closes the block reader at the block's end or on error; io.EOF
// from a block before its end is data loss.
func (r *FileReader) afterRead(end int64, err error) error {
	if err == io.EOF {
		if r.pos != end {
			err = r.errf("read", codes.DataLoss, ErrInternal, "block %d ended at byte %d of the file, want %d", r.cur.id, r.pos, end)
		} else {
			err = nil
		}
		r.cur.close()
		r.cur = nil
	}
	if err != nil {
		if r.cur != nil {
			r.cur.close()
			r.cur = nil
		}
		return wrapErr("read", r.path, err)
	}
	if r.pos == end && r.cur != nil {
		r.cur.close()
		r.cur = nil
	}
	return nil
}

// WriteTo implements io.WriterTo, which io.Copy prefers: each received
// chunk goes to w as it is, without the copy into a caller's buffer.
func (r *FileReader) WriteTo(w io.Writer) (int64, error) {
	if r.closed {
		return 0, r.errf("read", codes.FailedPrecondition, ErrFailedPrecondition, "reader is closed")
	}
	var total int64
	var local []byte
	for r.pos < r.info.GetLength() {
		end, err := r.ensureCur()
		if err != nil {
			return total, err
		}
		var werr error
		if r.cur.sec != nil {
			if local == nil {
				local = make([]byte, writeChunk)
			}
			n, rerr := r.cur.read(local[:min(int64(len(local)), end-r.pos)])
			err = rerr
			if n > 0 {
				var wn int
				wn, werr = w.Write(local[:n])
				total += int64(wn)
				r.pos += int64(wn)
			}
		} else {
			if r.cur.ref.Len() == 0 {
				err = r.cur.fill()
			}
			// The transport's buffers go to w as they are.
			wn, e := r.cur.ref.WriteTo(w, int(end-r.pos))
			werr = e
			total += int64(wn)
			r.pos += int64(wn)
			r.cur.pos += int64(wn)
		}
		if werr != nil {
			r.cur.close()
			r.cur = nil
			return total, werr
		}
		if err := r.afterRead(end, err); err != nil {
			return total, err
		}
	}
	return total, nil
}

// Seek implements io.Seeker. Seeking past the end is allowed; Read then
// returns io.EOF.
func (r *FileReader) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = r.pos + offset
	case io.SeekEnd:
		abs = r.info.GetLength() + offset
	default:
		return r.pos, r.errf("seek", codes.InvalidArgument, ErrInvalidArgument, "bad whence %d", whence)
	}
	if abs < 0 {
		return r.pos, r.errf("seek", codes.InvalidArgument, ErrInvalidArgument, "negative position %d", abs)
	}
	r.pos = abs
	return abs, nil
}

// ReadAt implements io.ReaderAt. Reading at the end returns 0, io.EOF; an
// offset beyond the end is an error (ErrInvalidArgument) naming the length.
func (r *FileReader) ReadAt(p []byte, off int64) (int, error) {
	length := r.info.GetLength()
	switch {
	case r.isClosed():
		return 0, r.errf("readat", codes.FailedPrecondition, ErrFailedPrecondition, "reader is closed")
	case off < 0:
		return 0, r.errf("readat", codes.InvalidArgument, ErrInvalidArgument, "negative offset %d", off)
	case off > length:
		return 0, r.errf("readat", codes.OutOfRange, ErrInvalidArgument, "offset %d is beyond the end of the file (length %d)", off, length)
	case off == length:
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	n := 0
	want := min(int64(len(p)), length-off)
	for int64(n) < want {
		at := off + int64(n)
		idx := r.layout.Find(at)
		b := r.layout.Block(idx)
		inBlock := at - b.Offset
		c := min(want-int64(n), b.Length-inBlock)
		if err := r.readRange(idx, inBlock, p[n:n+int(c)]); err != nil {
			return n, err
		}
		n += int(c)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (r *FileReader) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// Close releases the reader's streams and leases.
func (r *FileReader) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	leases := r.leases
	r.leases = nil
	r.mu.Unlock()
	if r.cur != nil {
		r.cur.close()
		r.cur = nil
	}
	for _, lb := range leases {
		lb.close(r.ctx)
	}
	return nil
}

// blockLocations returns the locations of block idx, local workers first;
// fresh asks the master again.
func (r *FileReader) blockLocations(idx int64, fresh bool) ([]*api.BlockLocation, error) {
	r.mu.Lock()
	locs, ok := r.locs[idx]
	r.mu.Unlock()
	if !ok || fresh {
		id := r.blockID(idx)
		var resp *api.GetBlockInfoResponse
		err := r.c.call(r.ctx, "read", r.path, true, func(ctx context.Context) (err error) {
			resp, err = r.c.blocks.GetBlockInfo(ctx, &api.GetBlockInfoRequest{BlockId: id})
			return err
		})
		switch {
		case err == nil:
			locs = resp.GetInfo().GetLocations()
		case errors.Is(err, ErrNotFound):
			locs = nil
		default:
			return nil, err
		}
		r.mu.Lock()
		r.locs[idx] = locs
		r.mu.Unlock()
	}
	out := make([]*api.BlockLocation, 0, len(locs))
	for _, l := range locs {
		if r.c.isLocalHost(l.GetAddress().GetHost()) {
			out = append(out, l)
		}
	}
	for _, l := range locs {
		if !r.c.isLocalHost(l.GetAddress().GetHost()) {
			out = append(out, l)
		}
	}
	return out, nil
}

// ufsSource says where block idx lives in the UFS, or nil when the file
// is not persisted.
func (r *FileReader) ufsSource(idx int64) *api.UfsBlockSource {
	if r.info.GetPersistenceState() != api.PersistenceState_PERSISTED || r.info.GetUfsPath() == "" {
		return nil
	}
	return &api.UfsBlockSource{
		MountId: r.info.GetMountId(), UfsPath: r.info.GetUfsPath(),
		Offset: r.layout.Block(idx).Offset, Length: r.blockLen(idx),
		UfsFingerprint: r.info.GetUfsFingerprint(),
	}
}

func (r *FileReader) shortCircuitOK(l *api.BlockLocation) bool {
	if !r.c.o.shortCircuit || !r.c.isLocalHost(l.GetAddress().GetHost()) {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return !r.noShort[workerAddr(l.GetAddress())]
}

// readRange fills p with block idx's bytes from off (ReadAt).
func (r *FileReader) readRange(idx, off int64, p []byte) error {
	var lastErr error
	for attempt := 0; attempt < 2; attempt++ {
		locs, err := r.blockLocations(idx, attempt > 0)
		if err != nil {
			return err
		}
		for _, l := range locs {
			if r.shortCircuitOK(l) {
				lb, err := r.lease(idx, l)
				if err == nil {
					if _, err = lb.f.ReadAt(p, off); err == nil {
						return nil
					}
				}
				lastErr = err
				continue
			}
			// With the UFS source a worker that evicted the block meanwhile
			// reads it through instead of failing.
			if err := r.streamInto(idx, off, p, l, r.ufsSource(idx)); err == nil {
				return nil
			} else {
				lastErr = err
			}
		}
	}
	if src := r.ufsSource(idx); src != nil {
		bsm, err := r.viaUFS(idx, off, int64(len(p)), src)
		if err != nil {
			return err
		}
		defer bsm.close()
		if _, err := io.ReadFull(readerFunc(bsm.read), p); err != nil {
			return wrapErr("read", r.path, err)
		}
		return nil
	}
	return r.lostErr(idx, lastErr)
}

// viaUFS opens a stream of a range read through a worker from the UFS
// (primed with its first chunk), trying other workers when the chosen one
// does not answer: one that died is listed live until the master notices.
func (r *FileReader) viaUFS(idx, off, n int64, src *api.UfsBlockSource) (*blockStream, error) {
	exclude := map[string]bool{}
	var lastErr error
	for try := 0; try < 3; try++ {
		wi, err := r.c.pickWorker(r.ctx, r.blockID(idx), src.GetLength(), exclude)
		if err != nil {
			if lastErr != nil {
				return nil, lastErr
			}
			return nil, wrapErr("read", r.path, err)
		}
		bsm, err := r.newStream(idx, off, n, &api.BlockLocation{WorkerId: wi.GetId(), Address: wi.GetAddress()}, src)
		if err == nil {
			if err = bsm.fill(); err == nil || err == io.EOF {
				return bsm, nil
			}
			bsm.close()
		}
		lastErr = wrapErr("read", r.path, err)
		exclude[workerAddr(wi.GetAddress())] = true
	}
	return nil, lastErr
}

func (r *FileReader) lostErr(idx int64, cause error) error {
	msg := fmt.Sprintf("block %d (index %d) has no cached copy and the file is not persisted to the UFS", r.blockID(idx), idx)
	if cause != nil {
		msg += fmt.Sprintf(" (last error: %v)", cause)
	}
	return r.errf("read", codes.Unavailable, ErrUnavailable, "%s", msg)
}

// streamInto reads a range with one ReadBlock call, from the location l or
// (l nil) through a chosen worker from src.
func (r *FileReader) streamInto(idx, off int64, p []byte, l *api.BlockLocation, src *api.UfsBlockSource) error {
	bsm, err := r.newStream(idx, off, int64(len(p)), l, src)
	if err != nil {
		return err
	}
	defer bsm.close()
	if _, err := io.ReadFull(readerFunc(bsm.read), p); err != nil {
		return wrapErr("read", r.path, err)
	}
	return nil
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// openStream opens a sequential reader of block idx from off to its end,
// trying the locations in order, then the UFS.
func (r *FileReader) openStream(idx, off int64) (*blockStream, error) {
	n := r.blockLen(idx) - off
	var lastErr error
	for attempt := 0; attempt < 2; attempt++ {
		locs, err := r.blockLocations(idx, attempt > 0)
		if err != nil {
			return nil, err
		}
		for _, l := range locs {
			if r.shortCircuitOK(l) {
				bsm, err := r.openLocal(idx, off, n, l)
				if err == nil {
					return bsm, nil
				}
				lastErr = err
				continue
			}
			bsm, err := r.newStream(idx, off, n, l, r.ufsSource(idx))
			if err == nil {
				// A stream fails at its first message, not at open: peek.
				if err = bsm.fill(); err == nil || err == io.EOF {
					return bsm, nil
				}
				bsm.close()
			}
			lastErr = err
		}
	}
	src := r.ufsSource(idx)
	if src == nil {
		return nil, r.lostErr(idx, lastErr)
	}
	return r.viaUFS(idx, off, n, src)
}

// blockStream reads one block range sequentially from a ReadBlock stream or
// from a leased local block file.
type blockStream struct {
	idx, id int64
	pos     int64 // file offset of the next byte
	cancel  context.CancelFunc
	st      api.BlockWorker_ReadBlockClient
	ref     rpc.ChunkRef // the received chunk, still in the transport's buffers
	local   *localBlock
	sec     *io.SectionReader
	err     error
}

func (r *FileReader) newStream(idx, off, n int64, l *api.BlockLocation, src *api.UfsBlockSource) (*blockStream, error) {
	var addr string
	if l != nil {
		addr = workerAddr(l.GetAddress())
	} else {
		wi, err := r.c.pickWorker(r.ctx, r.blockID(idx), src.GetLength(), nil)
		if err != nil {
			return nil, wrapErr("read", r.path, err)
		}
		addr = workerAddr(wi.GetAddress())
	}
	bw, err := r.c.dataWorker(r.ctx, addr)
	if err != nil {
		return nil, wrapErr("read", r.path, err)
	}
	ctx, cancel := context.WithCancel(r.ctx)
	id := r.blockID(idx)
	st, err := bw.ReadBlock(ctx, &api.ReadBlockRequest{BlockId: id, Offset: off, Length: n, Ufs: src, ReadType: r.rt})
	if err != nil {
		cancel()
		return nil, wrapErr("read", r.path, err)
	}
	return &blockStream{idx: idx, id: id, pos: r.layout.Block(idx).Offset + off, cancel: cancel, st: st}, nil
}

// fill receives the next chunk into ref.
func (b *blockStream) fill() error {
	if b.err != nil {
		return b.err
	}
	if err := b.st.RecvMsg(&b.ref); err != nil {
		b.err = err
		return err
	}
	return nil
}

func (b *blockStream) read(p []byte) (int, error) {
	if b.sec != nil {
		n, err := b.sec.Read(p)
		b.pos += int64(n)
		return n, err
	}
	n := 0
	for n < len(p) {
		if b.ref.Len() == 0 {
			if err := b.fill(); err != nil {
				if n > 0 && err == io.EOF {
					break
				}
				return n, err
			}
			continue
		}
		c := b.ref.Read(p[n:])
		n += c
		b.pos += int64(c)
		if b.ref.Len() == 0 {
			break // hand back what we have rather than wait on the network
		}
	}
	return n, nil
}

func (b *blockStream) close() {
	if b.cancel != nil {
		b.cancel()
	}
	b.ref.Free()
	if b.local != nil {
		b.local.close(context.Background())
	}
}

// localBlock is a leased block file read directly (short circuit).
type localBlock struct {
	bw      api.BlockWorkerClient
	leaseID int64
	f       *os.File
	once    sync.Once
}

func (lb *localBlock) close(ctx context.Context) {
	lb.once.Do(func() {
		lb.f.Close()
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_, _ = lb.bw.CloseLocalBlock(cctx, &api.CloseLocalBlockRequest{LeaseId: lb.leaseID})
	})
}

// openLease leases block idx at location l and opens its file.
func (r *FileReader) openLease(idx int64, l *api.BlockLocation) (*localBlock, error) {
	addr := workerAddr(l.GetAddress())
	bw, err := r.c.dataWorker(r.ctx, addr)
	if err != nil {
		return nil, err
	}
	resp, err := bw.OpenLocalBlock(r.ctx, &api.OpenLocalBlockRequest{BlockId: r.blockID(idx)})
	if err != nil {
		return nil, wrapErr("read", r.path, err)
	}
	f, err := os.Open(resp.GetPath())
	if err != nil {
		// Not our file system after all (a container, another host with
		// the same name): stream from this worker from now on.
		r.mu.Lock()
		r.noShort[addr] = true
		r.mu.Unlock()
		cctx, cancel := context.WithTimeout(context.WithoutCancel(r.ctx), 5*time.Second)
		defer cancel()
		_, _ = bw.CloseLocalBlock(cctx, &api.CloseLocalBlockRequest{LeaseId: resp.GetLeaseId()})
		return nil, err
	}
	return &localBlock{bw: bw, leaseID: resp.GetLeaseId(), f: f}, nil
}

func (r *FileReader) openLocal(idx, off, n int64, l *api.BlockLocation) (*blockStream, error) {
	lb, err := r.openLease(idx, l)
	if err != nil {
		return nil, err
	}
	return &blockStream{idx: idx, id: r.blockID(idx), pos: r.layout.Block(idx).Offset + off,
		local: lb, sec: io.NewSectionReader(lb.f, off, n)}, nil
}

// maxLeases bounds the block files a reader keeps leased for ReadAt.
const maxLeases = 8

// lease returns a leased local block for ReadAt, reusing open ones.
func (r *FileReader) lease(idx int64, l *api.BlockLocation) (*localBlock, error) {
	r.mu.Lock()
	if lb := r.leases[idx]; lb != nil {
		r.mu.Unlock()
		return lb, nil
	}
	r.mu.Unlock()
	lb, err := r.openLease(idx, l)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		lb.close(r.ctx)
		return nil, r.errf("readat", codes.FailedPrecondition, ErrFailedPrecondition, "reader is closed")
	}
	if old := r.leases[idx]; old != nil {
		lb.close(r.ctx)
		return old, nil
	}
	if len(r.leases) >= maxLeases {
		for k, old := range r.leases {
			old.close(r.ctx)
			delete(r.leases, k)
			break
		}
	}
	r.leases[idx] = lb
	return lb, nil
}
