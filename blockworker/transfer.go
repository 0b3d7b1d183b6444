package blockworker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	iofs "io/fs"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/ufs"
)

// The job service's data paths (transfer.go): batched caching from the
// UFS, block copies between workers, and UFS files written from blocks —
// all run here, beside the bytes, so they never pass through a job worker.

// defaultCacheParallelism is how many blocks CacheBlocks fills at once.
const defaultCacheParallelism = 8

// selfAddr is this worker's rpc address as the FS master lists it.
func (w *Worker) selfAddr() string {
	a := w.Address()
	return w.cfg.Worker.Host + ":" + strconv.Itoa(int(a.GetRpcPort()))
}

// readCounts says where the bytes of a read came from.
type readCounts struct{ cache, ufs int64 }

// readSource streams the bytes of one block source to fn, trying this
// worker's store, then each listed worker, then the UFS range. A source
// that fails part-way is resumed by the next at the same offset, so fn sees
// every byte exactly once.
func (w *Worker) readSource(ctx context.Context, src *api.BlockSource, fn func([]byte) error) (readCounts, error) {
	var rc readCounts
	id, want := src.GetBlockId(), src.GetLength()
	var done int64
	emit := func(b []byte) error {
		if done+int64(len(b)) > want {
			return status.Errorf(codes.DataLoss, "block %d: the source has more than the %d bytes expected", id, want)
		}
		done += int64(len(b))
		return fn(b)
	}
	var errs []string
	note := func(from string, err error) {
		errs = append(errs, fmt.Sprintf("%s: %v", from, status.Convert(err).Message()))
	}
	// This worker's store.
	if id != 0 {
		if h, err := w.store.Open(id); err == nil {
			n, err := w.readHandle(h, done, want, emit)
			h.Release()
			rc.cache += n
			if err == nil {
				return rc, nil
			}
			if ctx.Err() != nil || isEmitErr(err) {
				return rc, err
			}
			note("local cache", err)
		}
	}
	self := w.selfAddr()
	for _, addr := range src.GetWorkers() {
		if addr == "" || addr == self || done == want && want > 0 {
			continue
		}
		n, err := w.readPeer(ctx, addr, id, done, want, emit)
		rc.cache += n
		if err == nil {
			return rc, nil
		}
		if ctx.Err() != nil || isEmitErr(err) {
			return rc, err
		}
		note(addr, err)
	}
	if u := src.GetUfs(); u != nil && u.GetUfsPath() != "" {
		n, err := w.readUFS(ctx, u, done, want, emit)
		rc.ufs += n
		if err == nil {
			return rc, nil
		}
		if ctx.Err() != nil || isEmitErr(err) {
			return rc, err
		}
		note("ufs "+u.GetUfsPath(), err)
	}
	if want == 0 && len(errs) == 0 {
		return rc, nil // an empty block needs no source
	}
	if len(errs) == 0 {
		return rc, status.Errorf(codes.NotFound, "block %d: cached nowhere it was looked for and no UFS copy named", id)
	}
	return rc, status.Errorf(codes.Unavailable, "block %d: no source could be read (%s)", id, joinErrs(errs))
}

func joinErrs(errs []string) string {
	out := ""
	for i, e := range errs {
		if i > 0 {
			out += "; "
		}
		out += e
	}
	return out
}

// emitErr marks an error of the consumer (the destination), which trying
// another source cannot cure.
type emitErr struct{ err error }

func (e emitErr) Error() string { return e.err.Error() }
func (e emitErr) Unwrap() error { return e.err }

func isEmitErr(err error) bool {
	var e emitErr
	return errors.As(err, &e)
}

func wrapEmit(fn func([]byte) error) func([]byte) error {
	return func(b []byte) error {
		if err := fn(b); err != nil {
			return emitErr{err}
		}
		return nil
	}
}

// readHandle sends [off, want) of a cached block.
func (w *Worker) readHandle(h *Handle, off, want int64, emit func([]byte) error) (int64, error) {
	if h.Length != want {
		return 0, status.Errorf(codes.DataLoss, "cached block is %d bytes, want %d", h.Length, want)
	}
	bp := w.chunks.Get(w.chunks.Size())
	defer w.chunks.Put(bp)
	var n int64
	for off < want {
		c := min(int64(len(*bp)), want-off)
		got, err := h.ReadAt((*bp)[:c], off)
		if int64(got) < c {
			if err == nil || err == io.EOF {
				err = fmt.Errorf("block file ends at %d", off+int64(got))
			}
			return n, status.Errorf(codes.DataLoss, "read cached block at %d: %v", off, err)
		}
		if err := wrapEmit(emit)((*bp)[:c]); err != nil {
			return n, err
		}
		off += c
		n += c
	}
	return n, nil
}

// readPeer streams [off, want) of block id from the worker at addr.
func (w *Worker) readPeer(ctx context.Context, addr string, id, off, want int64, emit func([]byte) error) (int64, error) {
	if off >= want {
		return 0, nil
	}
	bw, err := w.peers.BlockWorker(addr)
	if err != nil {
		return 0, err
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := bw.ReadBlock(cctx, &api.ReadBlockRequest{BlockId: id, Offset: off, Length: want - off, ChunkSize: int32(w.chunk)})
	if err != nil {
		return 0, err
	}
	var n int64
	m := &api.ReadBlockResponse{}
	for {
		err := st.RecvMsg(m)
		if err == io.EOF {
			break
		}
		if err != nil {
			return n, err
		}
		if err := wrapEmit(emit)(m.GetChunk()); err != nil {
			return n, err
		}
		n += int64(len(m.GetChunk()))
	}
	if off+n != want {
		return n, status.Errorf(codes.DataLoss, "worker %s sent %d bytes of block %d, want %d", addr, off+n, id, want)
	}
	return n, nil
}

// readUFS streams [off, want) of a block from its UFS range.
func (w *Worker) readUFS(ctx context.Context, u *api.UfsBlockSource, off, want int64, emit func([]byte) error) (int64, error) {
	if off >= want {
		return 0, nil
	}
	fs, rel, err := w.mounts.resolve(ctx, u.GetMountId(), u.GetUfsPath())
	if err != nil {
		return 0, err
	}
	r, err := fs.Open(ctx, rel, u.GetOffset()+off, want-off)
	if err != nil {
		return 0, ufsStatus(u.GetUfsPath(), err)
	}
	defer r.Close()
	if err := checkFingerprint(ctx, fs, rel, r, u); err != nil {
		return 0, err
	}
	bp := w.chunks.Get(w.chunks.Size())
	defer w.chunks.Put(bp)
	var n int64
	for off+n < want {
		c := min(int64(len(*bp)), want-off-n)
		got, rerr := io.ReadFull(r, (*bp)[:c])
		if got > 0 {
			if err := wrapEmit(emit)((*bp)[:got]); err != nil {
				return n, err
			}
			n += int64(got)
		}
		if rerr != nil {
			if off+n < want {
				if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
					return n, status.Errorf(codes.FailedPrecondition, "ufs %s ends %d bytes early (changed?)", u.GetUfsPath(), want-off-n)
				}
				return n, ufsStatus(u.GetUfsPath(), rerr)
			}
			break
		}
	}
	w.metrics.bytesReadUFS.Add(float64(n))
	return n, nil
}

// WriteUfsFileFrom implements api.BlockWorkerServer.
func (s *service) WriteUfsFileFrom(ctx context.Context, req *api.WriteUfsFileFromRequest) (*api.WriteUfsFileFromResponse, error) {
	return s.w.writeUfsFrom(ctx, req)
}

// WriteUfsFilesFrom implements api.BlockWorkerServer.
func (s *service) WriteUfsFilesFrom(ctx context.Context, req *api.WriteUfsFilesFromRequest) (*api.WriteUfsFilesFromResponse, error) {
	par := int(req.GetParallelism())
	if par <= 0 {
		par = defaultCacheParallelism
	}
	files := req.GetFiles()
	resp := &api.WriteUfsFilesFromResponse{Results: make([]*api.WriteUfsFileFromResult, len(files))}
	// The files are written in batches (one a file system): a directory
	// is opened once for all the files going to it, and fsynced once,
	// before this call answers — nobody learns of a file before its name
	// is durable.
	bs := &ufsBatches{m: map[string]ufs.Batch{}}
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	for i, f := range files {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			resp.Results[i] = &api.WriteUfsFileFromResult{Code: int32(codes.Canceled), Error: ctx.Err().Error()}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			r, err := s.w.writeUfsFromIn(ctx, f, bs)
			if err != nil {
				st := status.Convert(err)
				resp.Results[i] = &api.WriteUfsFileFromResult{Code: int32(st.Code()), Error: st.Message()}
				return
			}
			resp.Results[i] = &api.WriteUfsFileFromResult{Response: r}
		}()
	}
	wg.Wait()
	bs.close()
	return resp, nil
}

// ufsBatches are the UFS batches of one WriteUfsFilesFrom, by file system
// (its root URI).
type ufsBatches struct {
	mu sync.Mutex
	m  map[string]ufs.Batch
}

// create creates rel on fs through fs's batch (bs nil: on its own).
func (bs *ufsBatches) create(ctx context.Context, fs ufs.FileSystem, rel string, opts ufs.CreateOptions) (ufs.Writer, error) {
	if bs == nil {
		return fs.Create(ctx, rel, opts)
	}
	key := fs.URI("")
	bs.mu.Lock()
	b := bs.m[key]
	if b == nil {
		b = ufs.NewBatch(fs)
		bs.m[key] = b
	}
	bs.mu.Unlock()
	return b.Create(ctx, rel, opts)
}

// close closes every batch: the names committed are durable after it.
func (bs *ufsBatches) close() {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	for k, b := range bs.m {
		_ = b.Close()
		delete(bs.m, k)
	}
}

// writeUfsFrom writes one UFS file from its block sources.
func (w *Worker) writeUfsFrom(ctx context.Context, req *api.WriteUfsFileFromRequest) (*api.WriteUfsFileFromResponse, error) {
	return w.writeUfsFromIn(ctx, req, nil)
}

// writeUfsFromIn is writeUfsFrom creating the file through bs (nil: on
// its own); the caller closes bs before it tells anyone of the file.
func (w *Worker) writeUfsFromIn(ctx context.Context, req *api.WriteUfsFileFromRequest, bs *ufsBatches) (*api.WriteUfsFileFromResponse, error) {
	hdr := req.GetDest()
	if hdr == nil || hdr.GetUfsPath() == "" {
		return nil, status.Error(codes.InvalidArgument, "write ufs file from blocks: need a destination ufs_path")
	}
	uri := hdr.GetUfsPath()
	for i, src := range req.GetSources() {
		if src.GetLength() < 0 {
			return nil, status.Errorf(codes.InvalidArgument, "write ufs file %s: source %d has negative length", uri, i)
		}
	}
	fs, rel, err := w.mounts.resolve(ctx, hdr.GetMountId(), uri)
	if err != nil {
		return nil, err
	}
	if rel == "" {
		return nil, status.Errorf(codes.InvalidArgument, "write ufs file %s: that is the mount root", uri)
	}
	opts := ufs.CreateOptions{Overwrite: hdr.GetOverwrite(), CreateParent: hdr.GetCreateParent(), Mode: hdr.GetMode()}
	if mt := hdr.GetLastModificationTimeMs(); mt > 0 {
		opts.ModTime = time.UnixMilli(mt)
	}
	wr, err := bs.create(ctx, fs, rel, opts)
	if err != nil {
		return nil, ufsStatus(uri, err)
	}
	committed := false
	var cached []*TempBlock
	defer func() {
		if !committed {
			_ = wr.Abort()
		}
		for _, tb := range cached {
			tb.Abort() // no-op once committed
		}
	}()
	// With a checksum, sum takes every byte read, unless the copy is
	// checked without it: a range compared with its source in place (a
	// local file copied in the kernel), or a small file whose bytes are
	// kept and compared with it read back. Then only a caller who wants
	// the SHA-256 back pays for it (inPlace, summed: every byte went
	// into sum). compared: every range so far was checked in place (no
	// read-back needed).
	var sum, inPlace hash.Hash
	verify := req.GetChecksum()
	if verify {
		sum = sha256.New()
		if !req.GetNoSha256() || len(req.GetSources()) > 1 {
			inPlace = sum
		}
	}
	compared, summed := verify, verify
	var kept *[]byte
	if _, ok := wr.(ufs.WrittenHasher); ok && verify && keepsBytes(req.GetSources()) {
		kept = keptBufs.Get().(*[]byte)
		*kept = (*kept)[:0]
		defer keptBufs.Put(kept)
	}
	resp := &api.WriteUfsFileFromResponse{}
	var metas []BlockMeta
	th := w.throttles.of(ctx)
	for i, src := range req.GetSources() {
		var tb *TempBlock
		if cf := req.GetCacheFileId(); cf > 0 {
			// Keeping the cache is best effort: no room is no error.
			if t, err := w.store.Create(api.BlockID(cf, int64(i)), src.GetLength(), "", false); err == nil {
				tb = t
				cached = append(cached, t)
			}
		}
		if tb == nil && th == nil && (!verify || src.GetLength() >= hashInKernelAtLeast) {
			// Nothing to see on the way (or a checksum: the copy is then
			// compared with the source file where both lie): a local UFS
			// file goes to a local UFS file in the kernel.
			if n, ok, err := w.copyUFSInKernel(ctx, src, wr, uri, verify, inPlace); ok {
				summed = summed && inPlace != nil
				resp.BytesFromUfs += n
				if err != nil {
					return nil, sourceErr(uri, i, src, err)
				}
				resp.Length += n
				continue
			}
		}
		compared = false
		hashIt := verify && (kept == nil || inPlace != nil)
		summed = summed && hashIt
		rc, err := w.readSource(ctx, src, func(b []byte) error {
			if err := th.take(ctx, len(b)); err != nil {
				return err
			}
			if _, err := wr.Write(b); err != nil {
				return ufsStatus(uri, err)
			}
			if hashIt {
				sum.Write(b)
			}
			if kept != nil {
				*kept = append(*kept, b...)
			}
			if tb != nil {
				if _, err := tb.Write(b); err != nil {
					tb.Abort()
					tb = nil
				}
			}
			return nil
		})
		resp.BytesFromCache += rc.cache
		resp.BytesFromUfs += rc.ufs
		if err != nil {
			return nil, sourceErr(uri, i, src, err)
		}
		resp.Length += src.GetLength()
		if tb != nil {
			if m, err := tb.Commit(); err == nil {
				metas = append(metas, m)
			}
		}
	}
	var back string
	if rb, ok := wr.(ufs.WrittenHasher); ok && verify && !compared && kept != nil {
		// Read back before the copy takes its name and compared with the
		// bytes written: a copy that reads back wrong never replaces what
		// is there.
		c := &sameBytes{want: *kept, diff: -1}
		if _, err := rb.HashWritten(c); err != nil {
			return nil, ufsStatus(uri, fmt.Errorf("reading back for the checksum: %w", err))
		}
		if at, ok := c.same(); !ok {
			return nil, status.Errorf(codes.DataLoss, "write ufs file %s: checksum mismatch: the copy read back differs from the bytes written at byte %d (not kept)", uri, at)
		}
		back = "compared"
	} else if ok && verify && !compared {
		// Read back before the copy takes its name: a copy that reads
		// back wrong never replaces what is there.
		h := sha256.New()
		if _, err := rb.HashWritten(h); err != nil {
			return nil, ufsStatus(uri, fmt.Errorf("reading back for the checksum: %w", err))
		}
		back = hex.EncodeToString(h.Sum(nil))
		if want := hex.EncodeToString(sum.Sum(nil)); back != want {
			return nil, status.Errorf(codes.DataLoss, "write ufs file %s: checksum mismatch: wrote sha256 %s, read back %s (not kept)", uri, want, back)
		}
	}
	committed = true
	st, err := wr.Commit()
	if err != nil {
		return nil, ufsStatus(uri, err)
	}
	w.metrics.bytesUFSWritten.Add(float64(resp.Length))
	if st.Size != resp.Length {
		_ = fs.Delete(context.WithoutCancel(ctx), rel)
		return nil, status.Errorf(codes.DataLoss, "write ufs file %s: the UFS holds %d bytes, %d were written", uri, st.Size, resp.Length)
	}
	resp.UfsFingerprint = st.Fingerprint
	if summed {
		resp.Sha256 = hex.EncodeToString(sum.Sum(nil))
	}
	if verify && !compared && back == "" {
		back, err := hashUFS(ctx, fs, rel)
		if err != nil {
			return nil, ufsStatus(uri, fmt.Errorf("reading back for the checksum: %w", err))
		}
		if back != resp.Sha256 {
			_ = fs.Delete(context.WithoutCancel(ctx), rel)
			return nil, status.Errorf(codes.DataLoss, "write ufs file %s: checksum mismatch: wrote sha256 %s, read back %s (file removed)", uri, resp.Sha256, back)
		}
	}
	if len(metas) > 0 {
		w.link.commitMany(ctx, metas)
	}
	return resp, nil
}

// hashInKernelAtLeast: with a checksum, a source this long is copied in
// the kernel and compared with the source in place; a shorter one is
// streamed (its bytes kept for the read-back, or hashed).
const hashInKernelAtLeast = 1 << 20

// keepAtMost: a checked file of at most this many bytes, all its sources
// streamed, keeps its bytes to compare the read-back with (no hash).
const keepAtMost = 1 << 20

// keptBufs are the kept bytes of small checked files.
var keptBufs = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

// keepsBytes: a checked file of these sources keeps its bytes for the
// read-back (small, and every source streamed, none copied in place).
func keepsBytes(srcs []*api.BlockSource) bool {
	var total int64
	for _, s := range srcs {
		if s.GetLength() >= hashInKernelAtLeast {
			return false
		}
		total += s.GetLength()
	}
	return total <= keepAtMost
}

// sameBytes is an io.Writer that checks that what is written to it is
// want, in order.
type sameBytes struct {
	want []byte
	n    int // bytes written so far
	diff int // the first byte that differs; -1: none yet
}

func (s *sameBytes) Write(b []byte) (int, error) {
	if s.diff < 0 {
		rest := s.want[min(s.n, len(s.want)):]
		if len(b) > len(rest) || !bytes.Equal(b, rest[:len(b)]) {
			k := 0
			for k < len(b) && k < len(rest) && b[k] == rest[k] {
				k++
			}
			s.diff = s.n + k
		}
	}
	s.n += len(b)
	return len(b), nil
}

// same reports whether exactly want was written, else where it differs.
func (s *sameBytes) same() (int, bool) {
	switch {
	case s.diff >= 0:
		return s.diff, false
	case s.n != len(s.want):
		return s.n, false
	}
	return 0, true
}

// copyUFSInKernel copies a source read from its UFS into wr (the UFS file
// dst) without passing its bytes through this process (ufs.FileCopier: a
// local UFS file into a local UFS file, copy_file_range), which halves the
// memory traffic of a large local copy; with check, the copy is then
// compared with the source byte for byte (both mapped), its bytes written
// to sum (when not nil) in the same pass. ok is false when it does not apply —
// the block is cached here or on a peer (readSource prefers those), wr
// cannot, the source cannot be opened as it should — and nothing was
// written: the caller streams the source.
func (w *Worker) copyUFSInKernel(ctx context.Context, src *api.BlockSource, wr ufs.Writer, dst string, check bool, sum hash.Hash) (n int64, ok bool, err error) {
	fc, can := wr.(ufs.FileCopier)
	u := src.GetUfs()
	if !can || u == nil || u.GetUfsPath() == "" || src.GetLength() <= 0 {
		return 0, false, nil
	}
	self := w.selfAddr()
	for _, a := range src.GetWorkers() {
		if a != "" && a != self {
			return 0, false, nil
		}
	}
	if id := src.GetBlockId(); id != 0 && w.store.Has(id) {
		return 0, false, nil
	}
	fs, rel, err := w.mounts.resolve(ctx, u.GetMountId(), u.GetUfsPath())
	if err != nil {
		return 0, false, nil
	}
	r, err := fs.Open(ctx, rel, u.GetOffset(), src.GetLength())
	if err != nil {
		return 0, false, nil
	}
	defer r.Close()
	if checkFingerprint(ctx, fs, rel, r, u) != nil {
		return 0, false, nil
	}
	n, ok, err = fc.CopyFrom(r, check, sum)
	if !ok {
		return 0, false, nil
	}
	w.metrics.bytesReadUFS.Add(float64(n))
	var pe *iofs.PathError
	switch {
	case err != nil && errors.As(err, &pe) && pe.Op == "copy_file_range":
		// A failed copy is the destination's, mostly (no room).
		return n, true, emitErr{ufsStatus(dst, err)}
	case errors.Is(err, ufs.ErrCopyDiffers):
		return n, true, emitErr{status.Errorf(codes.DataLoss, "checksum mismatch: %v (not kept)", err)}
	case err != nil:
		// Reading the source back failed (it changed under the mapping).
		return n, true, status.Errorf(codes.Unavailable, "block %d: no source could be read (ufs %s: %v)", src.GetBlockId(), u.GetUfsPath(), err)
	case n != src.GetLength():
		// As readSource says it when the UFS was the only source.
		return n, true, status.Errorf(codes.Unavailable, "block %d: no source could be read (ufs %s: ufs %s ends %d bytes early (changed?))",
			src.GetBlockId(), u.GetUfsPath(), u.GetUfsPath(), src.GetLength()-n)
	}
	return n, true, nil
}

func sourceErr(uri string, i int, src *api.BlockSource, err error) error {
	if isEmitErr(err) {
		var e emitErr
		errors.As(err, &e)
		err = e.err
	}
	st := status.Convert(err)
	code := st.Code()
	if code == codes.Unknown {
		code = codes.Internal
	}
	return status.Errorf(code, "write ufs file %s: block %d (id %d): %s", uri, i, src.GetBlockId(), st.Message())
}

// hashUFS returns the hex SHA-256 of a UFS file's bytes.
func hashUFS(ctx context.Context, fs ufs.FileSystem, rel string) (string, error) {
	r, err := fs.Open(ctx, rel, 0, -1)
	if err != nil {
		return "", err
	}
	defer r.Close()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// HashBlocks implements api.BlockWorkerServer.
func (s *service) HashBlocks(ctx context.Context, req *api.HashBlocksRequest) (*api.HashBlocksResponse, error) {
	h := sha256.New()
	var n int64
	for i, src := range req.GetSources() {
		if _, err := s.w.readSource(ctx, src, func(b []byte) error { h.Write(b); return nil }); err != nil {
			st := status.Convert(err)
			return nil, status.Errorf(st.Code(), "hash blocks: source %d (block %d): %s", i, src.GetBlockId(), st.Message())
		}
		n += src.GetLength()
	}
	return &api.HashBlocksResponse{Length: n, Sha256: hex.EncodeToString(h.Sum(nil))}, nil
}

// CopyBlockFrom implements api.BlockWorkerServer.
func (s *service) CopyBlockFrom(ctx context.Context, req *api.CopyBlockFromRequest) (*api.CopyBlockFromResponse, error) {
	w := s.w
	id := req.GetBlockId()
	srcID := req.GetSourceBlockId()
	if srcID == 0 {
		srcID = id
	}
	if w.store.Has(id) {
		return &api.CopyBlockFromResponse{AlreadyCached: true}, nil
	}
	length := req.GetLength()
	from := req.GetSource()
	if from == w.selfAddr() {
		from = ""
	}
	if from == "" && srcID == id {
		return nil, status.Errorf(codes.InvalidArgument, "copy block %d: the source is this worker and the same block", id)
	}
	if length <= 0 {
		// Ask the source how long the block is.
		if from == "" {
			m, ok := w.store.Stat(srcID)
			if !ok {
				return nil, status.Errorf(codes.NotFound, "copy block %d: source block %d is not cached on this worker", id, srcID)
			}
			length = m.Length
		} else {
			length = -1 // whatever the peer has
		}
	}
	tb, err := w.store.Create(id, max(length, 0), req.GetTier(), req.GetPinned())
	if errors.Is(err, ErrExists) {
		return &api.CopyBlockFromResponse{AlreadyCached: true}, nil
	}
	if err != nil {
		return nil, storeStatus("copy", id, err)
	}
	ok := false
	defer func() {
		if !ok {
			tb.Abort()
		}
	}()
	th := w.throttles.of(ctx)
	write := func(b []byte) error {
		if err := th.take(ctx, len(b)); err != nil {
			return err
		}
		_, err := tb.Write(b)
		return err
	}
	var n int64
	if from == "" {
		h, err := w.store.Open(srcID)
		if err != nil {
			return nil, storeStatus("copy from", srcID, err)
		}
		n, err = w.readHandle(h, 0, h.Length, write)
		h.Release()
		if err != nil {
			return nil, status.Errorf(status.Code(err), "copy block %d from block %d: %s", id, srcID, status.Convert(err).Message())
		}
	} else {
		if length < 0 {
			n, err = w.readPeerAll(ctx, from, srcID, write)
		} else {
			n, err = w.readPeer(ctx, from, srcID, 0, length, wrapEmit(write))
		}
		if err != nil {
			if isEmitErr(err) {
				return nil, storeStatus("copy", id, errors.Unwrap(err))
			}
			return nil, status.Errorf(status.Code(err), "copy block %d from %s: %s", id, from, status.Convert(err).Message())
		}
	}
	if length > 0 && n != length {
		return nil, status.Errorf(codes.DataLoss, "copy block %d: got %d bytes, want %d", id, n, length)
	}
	meta, err := tb.Commit()
	ok = true
	if errors.Is(err, ErrExists) {
		return &api.CopyBlockFromResponse{AlreadyCached: true}, nil
	}
	if err != nil {
		return nil, storeStatus("copy", id, err)
	}
	w.metrics.bytesWritten.Add(float64(n))
	w.link.commit(ctx, meta)
	return &api.CopyBlockFromResponse{Bytes: n}, nil
}

// readPeerAll streams a whole block of unknown length from a peer.
func (w *Worker) readPeerAll(ctx context.Context, addr string, id int64, fn func([]byte) error) (int64, error) {
	bw, err := w.peers.BlockWorker(addr)
	if err != nil {
		return 0, err
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := bw.ReadBlock(cctx, &api.ReadBlockRequest{BlockId: id, Length: -1, ChunkSize: int32(w.chunk)})
	if err != nil {
		return 0, err
	}
	var n int64
	m := &api.ReadBlockResponse{}
	for {
		err := st.RecvMsg(m)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		if err := fn(m.GetChunk()); err != nil {
			return n, emitErr{err}
		}
		n += int64(len(m.GetChunk()))
	}
}

// CacheBlocks implements api.BlockWorkerServer: the fills run at once (up
// to the parallelism, each of that many goroutines filling block after
// block), and the blocks this call stored are committed to the FS master
// before it returns, in one CommitBlocks with those of the calls that
// commit meanwhile.
func (s *service) CacheBlocks(ctx context.Context, req *api.CacheBlocksRequest) (*api.CacheBlocksResponse, error) {
	w := s.w
	par := int(req.GetParallelism())
	if par <= 0 {
		par = defaultCacheParallelism
	}
	blocks := req.GetBlocks()
	results := make([]*api.CacheBlockResult, len(blocks))
	slab := make([]api.CacheBlockResult, len(blocks)) // one allocation, not one a block
	todo := make([]int, 0, len(blocks))
	for i, b := range blocks {
		res := &slab[i]
		res.BlockId = b.GetBlockId()
		results[i] = res
		src := b.GetSource()
		if src == nil || src.GetUfsPath() == "" || src.GetLength() < 0 || src.GetOffset() < 0 {
			res.Code = int32(codes.InvalidArgument)
			res.Error = fmt.Sprintf("cache block %d: need a UFS source with a path, offset >= 0 and length >= 0", b.GetBlockId())
			continue
		}
		todo = append(todo, i)
	}
	var (
		mu    sync.Mutex
		metas = make([]BlockMeta, 0, len(todo))
		next  atomic.Int64
	)
	th := w.throttles.of(ctx)
	one := func(b *api.CacheBlockRequest, res *api.CacheBlockResult) {
		src := b.GetSource()
		var (
			f      *fill
			cached bool
			err    error
		)
		if inlinable(src, th) {
			f, cached, err = w.startFillInline(b.GetBlockId(), src, b.GetPinned(), b.GetTier(), true)
		} else {
			f, cached, err = w.startFillBatched(b.GetBlockId(), src, b.GetPinned(), b.GetTier(), th)
		}
		if cached {
			res.AlreadyCached = true
			if m, ok := w.store.Stat(b.GetBlockId()); ok { // see CacheBlock
				mu.Lock()
				metas = append(metas, m)
				mu.Unlock()
			}
			return
		}
		if err == nil {
			err = f.wait(ctx)
			f.leave()
		}
		if err != nil {
			st := status.Convert(storeStatus("cache", b.GetBlockId(), err))
			res.Code, res.Error = int32(st.Code()), st.Message()
			return
		}
		res.Bytes = src.GetLength()
		if m, ok := f.batchedMeta(); ok {
			mu.Lock()
			metas = append(metas, m)
			mu.Unlock()
		}
	}
	run := func() {
		for {
			k := int(next.Add(1)) - 1
			if k >= len(todo) {
				return
			}
			i := todo[k]
			if err := ctx.Err(); err != nil {
				results[i].Code, results[i].Error = int32(codes.Canceled), err.Error()
				continue
			}
			one(blocks[i], results[i])
		}
	}
	if n := min(par, len(todo)); n <= 1 {
		run()
	} else {
		var wg sync.WaitGroup
		for range n {
			wg.Go(run)
		}
		wg.Wait()
	}
	if len(metas) > 0 {
		w.link.commitAll(ctx, metas)
	}
	return &api.CacheBlocksResponse{Results: results}, nil
}

// commitMany tells the master about many blocks just stored, in one call;
// what fails stays in the delta for the next heartbeat, and so does every
// block of a call that skipped some (a block of a file deleted meanwhile:
// the heartbeat tells the master again, and the master has it removed, as
// a failed CommitBlock does).
func (l *masterLink) commitMany(ctx context.Context, ms []BlockMeta) {
	l.mu.Lock()
	id, ok := l.id, l.registered
	l.mu.Unlock()
	if !ok {
		return
	}
	req := &api.CommitBlocksRequest{WorkerId: id, Blocks: make([]*api.BlockReport, len(ms))}
	reps := make([]api.BlockReport, len(ms)) // one allocation, not one a block
	for i, m := range ms {
		r := &reps[i]
		r.BlockId, r.Length, r.Tier, r.Pinned = m.ID, m.Length, m.Tier, m.Pinned
		req.Blocks[i] = r
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	resp, err := l.bm.CommitBlocks(cctx, req)
	if status.Code(err) == codes.Unimplemented {
		for _, m := range ms {
			l.commitOne(ctx, m)
		}
		return
	}
	if err != nil {
		l.log.Debug("commit blocks to the FS master failed; the next heartbeat reports them", zap.Int("blocks", len(ms)), zap.Error(err))
		return
	}
	if resp.GetSkipped() > 0 {
		l.log.Debug("commit blocks: some belong to files gone; the next heartbeat reports them all", zap.Int("blocks", len(ms)), zap.Int32("skipped", resp.GetSkipped()))
		return
	}
	l.mu.Lock()
	for _, m := range ms {
		if a, ok := l.added[m.ID]; ok && a == m {
			delete(l.added, m.ID)
		}
	}
	l.mu.Unlock()
}
