package blockworker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/rpc"
	"github.com/alluvium/alluvium/ufs"
)

// Chunk sizes of block streams.
const (
	DefaultChunkSize = 1 << 20
	minChunkSize     = 16 << 10
	maxChunkSize     = 4 << 20
)

// service implements api.BlockWorkerServer over a Worker.
type service struct {
	api.UnimplementedBlockWorkerServer
	w *Worker
}

// storeStatus maps store and UFS errors to gRPC codes.
func storeStatus(op string, id int64, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codes.Internal
	switch {
	case errors.Is(err, ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, ErrExists):
		code = codes.AlreadyExists
	case errors.Is(err, ErrNoSpace):
		code = codes.ResourceExhausted
	case errors.Is(err, ErrBusy):
		code = codes.FailedPrecondition
	case errors.Is(err, ErrWriting):
		code = codes.Aborted
	case errors.Is(err, errUnknownTier):
		code = codes.InvalidArgument
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	}
	return status.Errorf(code, "%s block %d: %v", op, id, err)
}

// ufsStatus maps a UFS error on uri to a gRPC status.
func ufsStatus(uri string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codes.Unavailable // network trouble with the UFS, mostly
	switch {
	case errors.Is(err, ufs.ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, ufs.ErrExist):
		code = codes.AlreadyExists
	case errors.Is(err, ufs.ErrIsDir), errors.Is(err, ufs.ErrNotDir), errors.Is(err, ufs.ErrEscape):
		code = codes.InvalidArgument
	case errors.Is(err, ufs.ErrNotEmpty):
		code = codes.FailedPrecondition
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	}
	return status.Errorf(code, "ufs %s: %v", uri, err)
}

func (s *service) chunkSize(req int32) int {
	switch {
	case req <= 0:
		return s.w.chunk
	case req < minChunkSize:
		return minChunkSize
	case req > maxChunkSize:
		return maxChunkSize
	}
	return int(req)
}

// span checks [off, off+n) against a block of length total; n < 0 means to
// the end.
func span(id, off, n, total int64) (int64, error) {
	if n < 0 {
		n = total - off
	}
	if off < 0 || n < 0 || off+n > total {
		return 0, status.Errorf(codes.OutOfRange, "read block %d: range [%d, %d) is outside the block (length %d)", id, off, off+n, total)
	}
	return n, nil
}

// ReadBlock implements api.BlockWorkerServer.
func (s *service) ReadBlock(req *api.ReadBlockRequest, stream api.BlockWorker_ReadBlockServer) error {
	w := s.w
	id := req.GetBlockId()
	info, err := w.access.check(stream.Context(), "read", id, false)
	if err != nil {
		return err
	}
	if src := req.GetUfs(); src != nil {
		if err := sameUFSFile("read", id, info, src.GetMountId(), src.GetUfsPath()); err != nil {
			return err
		}
	}
	chunk := s.chunkSize(req.GetChunkSize())
	for attempt := 0; attempt < 2; attempt++ {
		h, err := w.store.Open(id)
		if err == nil {
			defer h.Release()
			n, err := span(id, req.GetOffset(), req.GetLength(), h.Length)
			if err != nil {
				return err
			}
			if req.GetReadType() == api.ReadType_CACHE_PROMOTE && h.Tier != w.store.TopTier() {
				w.promote(id)
			}
			return s.sendFile(stream, h, id, req.GetOffset(), n, chunk)
		}
		if !errors.Is(err, ErrNotFound) {
			return storeStatus("read", id, err)
		}
		src := req.GetUfs()
		if src == nil {
			return status.Errorf(codes.NotFound, "read block %d: not cached on worker %d and the request names no UFS source", id, w.ID())
		}
		n, err := span(id, req.GetOffset(), req.GetLength(), src.GetLength())
		if err != nil {
			return err
		}
		if req.GetReadType() == api.ReadType_NO_CACHE {
			return s.sendUFS(stream, id, src, req.GetOffset(), n, chunk)
		}
		f, cached, err := w.startFill(id, src, false, "")
		switch {
		case cached:
			continue // committed meanwhile: read it from the store
		case errors.Is(err, ErrNoSpace), errors.Is(err, ErrWriting):
			w.log.Debug("reading through without caching", zap.Int64("block", id), zap.Error(err))
			return s.sendUFS(stream, id, src, req.GetOffset(), n, chunk)
		case err != nil:
			return storeStatus("read", id, err)
		}
		if f.rf == nil {
			// A fill with no read side (CacheBlock's): wait for the block.
			err := f.wait(stream.Context())
			f.leave()
			if err != nil {
				return storeStatus("read", id, err)
			}
			continue
		}
		defer f.leave()
		return s.sendFill(stream, f, req.GetOffset(), n, chunk)
	}
	return status.Errorf(codes.Unavailable, "read block %d: cached and evicted again while opening; retry", id)
}

func (s *service) sendFile(stream api.BlockWorker_ReadBlockServer, h *Handle, id, off, n int64, chunk int) error {
	pool := s.w.chunks
	for n > 0 {
		c := int(min(int64(chunk), n))
		buf := pool.Get(c)
		got, err := h.ReadAt(*buf, off)
		if got < c {
			pool.Put(buf)
			if err == nil || err == io.EOF {
				err = fmt.Errorf("block file ends at %d", off+int64(got))
			}
			return status.Errorf(codes.DataLoss, "read block %d at %d: %v", id, off, err)
		}
		// The buffer goes to the transport without a copy; it comes back
		// to the pool once written.
		if err := stream.SendMsg(&rpc.OwnedChunk{Buf: buf, Pool: pool}); err != nil {
			return err
		}
		s.w.metrics.bytesReadCache.Add(float64(c))
		off += int64(c)
		n -= int64(c)
	}
	return nil
}

func (s *service) sendFill(stream api.BlockWorker_ReadBlockServer, f *fill, off, n int64, chunk int) error {
	ctx := stream.Context()
	pool := s.w.chunks
	for n > 0 {
		want := min(int64(chunk), n)
		avail, err := f.waitFor(ctx, off+want)
		if err != nil {
			return storeStatus("read", f.id, err)
		}
		c := min(want, avail-off)
		if c <= 0 {
			return status.Errorf(codes.DataLoss, "read block %d: the UFS gave %d bytes, want %d", f.id, avail, off+want)
		}
		buf := pool.Get(int(c))
		got, err := f.rf.ReadAt(*buf, off)
		if int64(got) < c {
			pool.Put(buf)
			return status.Errorf(codes.Internal, "read block %d at %d from the fill: %v", f.id, off, err)
		}
		if err := stream.SendMsg(&rpc.OwnedChunk{Buf: buf, Pool: pool}); err != nil {
			return err
		}
		s.w.metrics.bytesReadUFS.Add(float64(c))
		off += c
		n -= c
	}
	return nil
}

// sendUFS streams a block range straight from the UFS, caching nothing.
func (s *service) sendUFS(stream api.BlockWorker_ReadBlockServer, id int64, src *api.UfsBlockSource, off, n int64, chunk int) error {
	ctx := stream.Context()
	fs, rel, err := s.w.mounts.resolve(ctx, src.GetMountId(), src.GetUfsPath())
	if err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	rc, err := fs.Open(ctx, rel, src.GetOffset()+off, n)
	if err != nil {
		return ufsStatus(src.GetUfsPath(), err)
	}
	defer rc.Close()
	pool := s.w.chunks
	for n > 0 {
		buf := pool.Get(int(min(int64(chunk), n)))
		c, err := io.ReadFull(rc, *buf)
		if c > 0 {
			*buf = (*buf)[:c]
			if err := stream.SendMsg(&rpc.OwnedChunk{Buf: buf, Pool: pool}); err != nil {
				return err
			}
			s.w.metrics.bytesReadUFS.Add(float64(c))
			n -= int64(c)
		} else {
			pool.Put(buf)
		}
		if err != nil {
			if n > 0 {
				if err == io.EOF || err == io.ErrUnexpectedEOF {
					return status.Errorf(codes.FailedPrecondition, "ufs %s: block %d ends %d bytes early (file changed?)", src.GetUfsPath(), id, n)
				}
				return ufsStatus(src.GetUfsPath(), err)
			}
			break
		}
	}
	return nil
}

// WriteBlock implements api.BlockWorkerServer.
func (s *service) WriteBlock(stream api.BlockWorker_WriteBlockServer) error {
	w := s.w
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	hdr := first.GetHeader()
	if hdr == nil {
		return status.Error(codes.InvalidArgument, "write block: the first message must be the header")
	}
	id := hdr.GetBlockId()
	if _, err := w.access.check(stream.Context(), "write", id, true); err != nil {
		return err
	}
	// A block of a part written in place also goes to its region of the
	// object's UFS file, from this one stream.
	var region ufs.Writer
	var uri string
	if uh := hdr.GetUfs(); uh != nil {
		if !uh.GetInPlace() {
			return status.Errorf(codes.InvalidArgument, "write block %d: a UFS copy within a block's stream must be in_place (a region of the file)", id)
		}
		if region, uri, err = s.openUFSWriter(stream.Context(), uh); err != nil {
			return err
		}
		defer func() {
			if region != nil {
				_ = region.Abort()
			}
		}()
	}
	tb, err := w.store.CreateUpTo(id, hdr.GetLengthHint(), hdr.GetTier(), hdr.GetPinned())
	if err != nil {
		return storeStatus("write", id, err)
	}
	ok := false
	defer func() {
		if !ok {
			tb.Abort()
		}
	}()
	var n int64
	m := &api.WriteBlockRequest{} // reused: the codec refills its chunk buffer
	for {
		err := stream.RecvMsg(m)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		c := m.GetChunk()
		if m.GetHeader() != nil {
			return status.Errorf(codes.InvalidArgument, "write block %d: a second header", id)
		}
		if _, err := tb.Write(c); err != nil {
			return storeStatus("write", id, err)
		}
		if region != nil {
			if _, err := region.Write(c); err != nil {
				return ufsStatus(uri, err)
			}
		}
		n += int64(len(c))
		w.metrics.bytesWritten.Add(float64(len(c)))
	}
	resp := &api.WriteBlockResponse{}
	if region != nil {
		// The region is durable before the block commits: a part recorded
		// in place has its bytes in the UFS file.
		_, err := region.Commit()
		region = nil
		if err != nil {
			return ufsStatus(uri, err)
		}
		resp.UfsLength = n
		w.metrics.bytesUFSWritten.Add(float64(n))
	}
	meta, err := tb.Commit()
	ok = true
	if err != nil {
		return storeStatus("write", id, err)
	}
	w.link.commit(stream.Context(), meta)
	resp.Length, resp.Tier = meta.Length, meta.Tier
	return stream.SendAndClose(resp)
}

// CacheBlock implements api.BlockWorkerServer.
func (s *service) CacheBlock(ctx context.Context, req *api.CacheBlockRequest) (*api.CacheBlockResponse, error) {
	id := req.GetBlockId()
	src := req.GetSource()
	if src == nil || src.GetUfsPath() == "" || src.GetLength() < 0 || src.GetOffset() < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "cache block %d: need a UFS source with a path, offset >= 0 and length >= 0", id)
	}
	var (
		f      *fill
		cached bool
		err    error
	)
	if th := s.w.throttles.of(ctx); inlinable(src, th) {
		f, cached, err = s.w.startFillInline(id, src, req.GetPinned(), req.GetTier(), false)
	} else {
		f, cached, err = s.w.startCacheFill(id, src, req.GetPinned(), req.GetTier(), th)
	}
	if cached {
		// Commit again: the master may have just dropped this copy (a free
		// whose removal has not reached us yet) and must see it is here.
		if m, ok := s.w.store.Stat(id); ok {
			s.w.link.commit(ctx, m)
		}
		return &api.CacheBlockResponse{AlreadyCached: true}, nil
	}
	if err != nil {
		return nil, storeStatus("cache", id, err)
	}
	defer f.leave()
	if err := f.wait(ctx); err != nil {
		return nil, storeStatus("cache", id, err)
	}
	return &api.CacheBlockResponse{Bytes: src.GetLength()}, nil
}

// RemoveBlock implements api.BlockWorkerServer.
func (s *service) RemoveBlock(ctx context.Context, req *api.RemoveBlockRequest) (*api.RemoveBlockResponse, error) {
	// A writer cleaning up after a failed write (its file still incomplete).
	if _, err := s.w.access.check(ctx, "remove", req.GetBlockId(), true); err != nil {
		return nil, err
	}
	if err := s.w.store.Remove(req.GetBlockId()); err != nil {
		return nil, storeStatus("remove", req.GetBlockId(), err)
	}
	// Tell the master soon: a job that evicted copies checks the result.
	s.w.link.heartbeatNow()
	return &api.RemoveBlockResponse{}, nil
}

// MoveBlock implements api.BlockWorkerServer.
func (s *service) MoveBlock(ctx context.Context, req *api.MoveBlockRequest) (*api.MoveBlockResponse, error) {
	if err := s.w.store.Move(req.GetBlockId(), req.GetTier()); err != nil {
		return nil, storeStatus("move", req.GetBlockId(), err)
	}
	return &api.MoveBlockResponse{}, nil
}

// WriteUfsFile implements api.BlockWorkerServer.
func (s *service) WriteUfsFile(stream api.BlockWorker_WriteUfsFileServer) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	hdr := first.GetHeader()
	if hdr == nil || hdr.GetUfsPath() == "" {
		return status.Error(codes.InvalidArgument, "write ufs file: the first message must be a header with ufs_path")
	}
	wr, uri, err := s.openUFSWriter(ctx, hdr)
	if err != nil {
		return err
	}
	committed := false
	defer func() {
		if !committed {
			_ = wr.Abort()
		}
	}()
	var n int64
	m := &api.WriteUfsFileRequest{} // reused: the codec refills its chunk buffer
	for {
		err := stream.RecvMsg(m)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if m.GetHeader() != nil {
			return status.Errorf(codes.InvalidArgument, "write ufs file %s: a second header", uri)
		}
		if _, err := wr.Write(m.GetChunk()); err != nil {
			return ufsStatus(uri, err)
		}
		n += int64(len(m.GetChunk()))
	}
	committed = true
	st, err := wr.Commit()
	if err != nil {
		return ufsStatus(uri, err)
	}
	s.w.metrics.bytesUFSWritten.Add(float64(n))
	if hdr.GetInPlace() {
		// The file holds other regions too: say what this call wrote.
		return stream.SendAndClose(&api.WriteUfsFileResponse{Length: n})
	}
	return stream.SendAndClose(&api.WriteUfsFileResponse{Length: st.Size, UfsFingerprint: st.Fingerprint})
}

// openUFSWriter checks hdr (the caller may write its UFS path) and opens
// the writer it asks for: a file created aside and renamed into place at
// commit, or a region written in place. uri is hdr's path, for errors.
func (s *service) openUFSWriter(ctx context.Context, hdr *api.WriteUfsFileHeader) (wr ufs.Writer, uri string, err error) {
	uri = hdr.GetUfsPath()
	if uri == "" {
		return nil, uri, status.Error(codes.InvalidArgument, "write ufs file: the header has no ufs_path")
	}
	if err := s.authorizeUFSWrite(ctx, hdr); err != nil {
		return nil, uri, err
	}
	fs, rel, err := s.w.mounts.resolve(ctx, hdr.GetMountId(), uri)
	if err != nil {
		return nil, uri, err
	}
	if rel == "" {
		return nil, uri, status.Errorf(codes.InvalidArgument, "write ufs file %s: that is the mount root", uri)
	}
	if hdr.GetInPlace() {
		rw, ok := fs.(ufs.RegionWriter)
		if !ok {
			return nil, uri, status.Errorf(codes.InvalidArgument, "write ufs file %s: this UFS cannot write a region of a file in place", uri)
		}
		wr, err = rw.WriteRegion(ctx, rel, hdr.GetOffset(), hdr.GetMode())
	} else {
		wr, err = fs.Create(ctx, rel, ufs.CreateOptions{Overwrite: hdr.GetOverwrite(), CreateParent: hdr.GetCreateParent(), Mode: hdr.GetMode()})
	}
	if err != nil {
		return nil, uri, ufsStatus(uri, err)
	}
	return wr, uri, nil
}

// authorizeUFSWrite lets a user write through only to the UFS path of a
// file it is writing (hdr.file_id, incomplete, its own or writable).
func (s *service) authorizeUFSWrite(ctx context.Context, hdr *api.WriteUfsFileHeader) error {
	if id, ok := rpc.IdentityFrom(ctx); !ok || id.System {
		return nil
	}
	if hdr.GetFileId() <= 0 {
		return status.Errorf(codes.PermissionDenied, "write ufs file %s: the header names no file_id (only the cluster itself may write a UFS path directly)", hdr.GetUfsPath())
	}
	block := api.BlockID(hdr.GetFileId(), 0)
	info, err := s.w.access.check(ctx, "write ufs", block, true)
	if err != nil {
		return err
	}
	return sameUFSFile("write ufs", block, info, hdr.GetMountId(), hdr.GetUfsPath())
}

// OpenLocalBlock implements api.BlockWorkerServer.
func (s *service) OpenLocalBlock(ctx context.Context, req *api.OpenLocalBlockRequest) (*api.OpenLocalBlockResponse, error) {
	if _, err := s.w.access.check(ctx, "open local", req.GetBlockId(), false); err != nil {
		return nil, err
	}
	path, length, err := s.w.store.Lease(req.GetBlockId())
	if err != nil {
		return nil, storeStatus("open local", req.GetBlockId(), err)
	}
	lid := s.w.leases.add(req.GetBlockId())
	s.w.metrics.bytesReadShort.Add(float64(length))
	return &api.OpenLocalBlockResponse{Path: path, Length: length, LeaseId: lid}, nil
}

// CloseLocalBlock implements api.BlockWorkerServer.
func (s *service) CloseLocalBlock(ctx context.Context, req *api.CloseLocalBlockRequest) (*api.CloseLocalBlockResponse, error) {
	if id, ok := s.w.leases.remove(req.GetLeaseId()); ok {
		s.w.store.Unlease(id)
	}
	return &api.CloseLocalBlockResponse{}, nil
}

// GetWorkerStatus implements api.BlockWorkerServer.
func (s *service) GetWorkerStatus(ctx context.Context, req *api.GetWorkerStatusRequest) (*api.GetWorkerStatusResponse, error) {
	return &api.GetWorkerStatusResponse{
		WorkerId:     s.w.ID(),
		Address:      s.w.Address(),
		Tiers:        tierUsage(s.w.store.Usage()),
		BlockCount:   int64(s.w.store.Count()),
		DomainSocket: s.w.DomainSocket(),
	}, nil
}

// leaseTable tracks short-circuit leases; expired ones are released by the
// reaper so a client that died does not pin a block forever.
type leaseTable struct {
	mu      sync.Mutex
	next    int64
	ttl     time.Duration
	entries map[int64]leaseEntry
}

type leaseEntry struct {
	block   int64
	expires time.Time
}

func newLeaseTable(ttl time.Duration) *leaseTable {
	return &leaseTable{ttl: ttl, entries: map[int64]leaseEntry{}}
}

func (t *leaseTable) add(block int64) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.next++
	t.entries[t.next] = leaseEntry{block: block, expires: time.Now().Add(t.ttl)}
	return t.next
}

func (t *leaseTable) remove(id int64) (int64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.entries[id]
	delete(t.entries, id)
	return e.block, ok
}

// expired removes and returns the blocks of leases past their time.
func (t *leaseTable) expired(now time.Time) []int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []int64
	for id, e := range t.entries {
		if now.After(e.expires) {
			out = append(out, e.block)
			delete(t.entries, id)
		}
	}
	return out
}
