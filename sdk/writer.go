package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/alluvium/alluvium/api"
)

// CreateOptions tune Create.
type CreateOptions struct {
	// WriteType: MUST_CACHE, CACHE_THROUGH, THROUGH or ASYNC_THROUGH.
	// Unset: the client's default (WithWriteType), else the master's
	// (fsmaster.user.write-type).
	WriteType api.WriteType
	BlockSize int64 // 0: the master's default (fsmaster.user.block-size)
	// Overwrite replaces a file at the path when Close completes the new
	// one (atomically; the last overwrite to complete wins). Until then, and
	// for good if the write fails, the path keeps its old file.
	Overwrite bool
	Recursive bool // create missing parent directories
	Pinned    bool // cached blocks are never evicted
	Mode      uint32
	// ReplicationMin/Max are recorded on the file for the replicate plan.
	ReplicationMin int32
	ReplicationMax int32
	TTL            int64  // ms; 0: none
	TTLAction      string // what happens once TTL has passed: "FREE" or "DELETE" ("": DELETE)
	Tier           string // preferred tier of cached blocks (MEM, SSD, HDD)
	// Worker (host:port) caches every block; "" picks a worker on this host
	// first, else spreads blocks over the workers.
	Worker string
	// XAttrs are extended attributes the file is created with (more can
	// be set as it completes: FileWriter.SetXAttrs).
	XAttrs map[string][]byte
	// IfReplaces makes Close (completing the file) conditional on what is
	// at the path then: -1 nothing, N > 0 file N (as Stat saw it); 0 no
	// condition. A condition that no longer holds fails Close with
	// ErrFailedPrecondition (S3's conditional writes).
	IfReplaces int64
}

// createRequest is the CreateFileRequest of o at path, with the client's
// write type and block size where o leaves them unset (Create and
// CreateUpload).
func (c *Client) createRequest(path string, o CreateOptions) *api.CreateFileRequest {
	wt := o.WriteType
	if wt == api.WriteType_WRITE_TYPE_UNSPECIFIED {
		wt = c.o.writeType
	}
	bs := o.BlockSize
	if bs == 0 {
		bs = c.o.blockSize
	}
	return &api.CreateFileRequest{
		Path: path, BlockSizeBytes: bs, WriteType: wt, Recursive: o.Recursive,
		Overwrite: o.Overwrite, Mode: o.Mode, ReplicationMin: o.ReplicationMin,
		ReplicationMax: o.ReplicationMax, Pinned: o.Pinned, Ttl: o.TTL, TtlAction: o.TTLAction,
		Xattrs: o.XAttrs,
	}
}

// FileWriter writes a new file. Bytes become visible only when Close
// succeeds; a failed write (or Abort) removes the file, its cached blocks
// and its half-written UFS copy. With Overwrite, the path shows the old
// file (or nothing) until Close swaps the new one in, in one step; a failed
// or abandoned overwrite leaves the old file as it was.
type FileWriter struct {
	c *Client
	// ctx is the caller's context; the streams run under sctx, a child
	// made when the first one opens (streamCtx) and canceled by cancel as
	// the writer ends, so a file written with no stream (an empty one)
	// costs no context of its own and its completion none of the joiner's
	// watching of a cancelable context (coalesce.WhileAnyWaits).
	ctx     context.Context
	sctx    context.Context
	cancel  context.CancelFunc
	path    string
	info    *FileInfo
	o       CreateOptions
	cache   bool // blocks go to workers
	through bool // the whole file goes to the UFS
	// keep pins the blocks on their workers from the first byte: the file
	// is pinned, or its cached blocks are the only copy of its bytes
	// (MUST_CACHE, ASYNC_THROUGH until persisted). The FS master unpins
	// them once that ends.
	keep bool
	bs   int64

	pos       int64 // bytes accepted
	blockFill int64 // bytes of the current block accepted
	nblocks   int64 // blocks finished
	buf       []byte
	blk       *blockWriter
	written   []writtenBlock
	ufs       api.BlockWorker_WriteUfsFileClient
	err       error
	closed    bool
	xattrs    map[string][]byte // set as the file completes
	// part: the writer writes one part of a multipart upload (WritePart)
	// of partLen bytes: its blocks start at block partFirst, and giving up
	// removes them, never the upload.
	part      bool
	partFirst int64
	partLen   int64
	// region: a part also written into the upload's UFS file from
	// ufs_offset (AllocateUploadBlocksResponse.in_place), each block by its
	// worker from the block's stream.
	region *api.AllocateUploadBlocksResponse
}

type blockWriter struct {
	id   int64
	addr string
	st   api.BlockWorker_WriteBlockClient
}

type writtenBlock struct {
	id   int64
	addr string
}

// writeChunk is the size of the messages a writer sends.
const writeChunk = 1 << 20

// Create creates path and returns a writer for its bytes. Close the writer
// to complete the file.
//
//	w, err := c.Create(ctx, "/data/f", sdk.CreateOptions{WriteType: api.WriteType_CACHE_THROUGH})
//	if err != nil { ... }
//	if _, err := io.Copy(w, src); err != nil { w.Abort(); ... }
//	if err := w.Close(); err != nil { ... }
func (c *Client) Create(ctx context.Context, path string, o CreateOptions) (*FileWriter, error) {
	req := c.createRequest(path, o)
	info, err := c.creates.do(ctx, "create", path, req)
	if err != nil {
		return nil, err
	}
	wt := info.GetWriteType()
	w := &FileWriter{
		c: c, ctx: ctx, path: info.GetPath(), info: info, o: o,
		cache:   wt != api.WriteType_THROUGH,
		through: wt == api.WriteType_THROUGH || wt == api.WriteType_CACHE_THROUGH,
		keep:    o.Pinned || wt == api.WriteType_MUST_CACHE || wt == api.WriteType_ASYNC_THROUGH,
		bs:      info.GetBlockSizeBytes(),
		// buf grows as needed up to writeChunk: a small file costs a small
		// buffer, not a zeroed 1 MiB one.
	}
	if w.path == "" {
		w.path = path
	}
	if w.cache && w.bs <= 0 {
		w.abort()
		return nil, &Error{Op: "create", Path: path, Code: codes.Internal, Message: fmt.Sprintf("the master gave block size %d", w.bs), kind: ErrInternal}
	}
	return w, nil
}

// SetXAttrs names extended attributes to set as Close completes the file,
// in the same step (an empty value removes a name): metadata computed from
// the bytes, such as a digest, changes with them.
func (w *FileWriter) SetXAttrs(x map[string][]byte) { w.xattrs = x }

// Info returns the file's status as created (or, after Close, completed).
func (w *FileWriter) Info() *FileInfo { return w.info }

// Write implements io.Writer.
func (w *FileWriter) Write(p []byte) (int, error) {
	if w.closed {
		return 0, &Error{Op: "write", Path: w.path, Code: codes.FailedPrecondition, Message: "writer is closed", kind: ErrFailedPrecondition}
	}
	if w.err != nil {
		return 0, w.err
	}
	total := len(p)
	for len(p) > 0 {
		limit := int64(len(p))
		if w.cache {
			limit = min(limit, w.bs-w.blockFill)
		}
		var err error
		if len(w.buf) == 0 && limit >= writeChunk {
			// Large writes skip the buffer.
			n := int64(writeChunk)
			err = w.send(p[:n])
			p = p[n:]
			w.pos += n
			w.blockFill += n
		} else {
			n := min(limit, int64(writeChunk-len(w.buf)))
			w.buf = append(w.buf, p[:n]...)
			p = p[n:]
			w.pos += n
			w.blockFill += n
			if len(w.buf) == writeChunk {
				err = w.flush()
			}
		}
		if err == nil && w.cache && w.blockFill == w.bs {
			err = w.finishBlock()
		}
		if err != nil {
			w.err = err
			return total - len(p), err
		}
	}
	return total, nil
}

func (w *FileWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	err := w.send(w.buf)
	w.buf = w.buf[:0]
	return err
}

// send streams data to the current block and to the UFS.
func (w *FileWriter) send(data []byte) error {
	if w.cache {
		if w.blk == nil {
			if err := w.openBlock(); err != nil {
				return err
			}
		}
		if err := w.blk.st.Send(&api.WriteBlockRequest{Msg: &api.WriteBlockRequest_Chunk{Chunk: data}}); err != nil {
			_, rerr := w.blk.st.CloseAndRecv()
			return w.opErr("write block", w.blk.addr, firstErr(rerr, err))
		}
	}
	if w.through {
		if w.ufs == nil {
			if err := w.openUFS(); err != nil {
				return err
			}
		}
		if err := w.ufs.Send(&api.WriteUfsFileRequest{Msg: &api.WriteUfsFileRequest_Chunk{Chunk: data}}); err != nil {
			_, rerr := w.ufs.CloseAndRecv()
			return w.opErr("write ufs", w.info.GetUfsPath(), firstErr(rerr, err))
		}
	}
	return nil
}

func firstErr(a, b error) error {
	if a != nil && !errors.Is(a, io.EOF) {
		return a
	}
	return b
}

func (w *FileWriter) opErr(op, at string, err error) error {
	e := wrapErr("write", w.path, err)
	var se *Error
	if errors.As(e, &se) && at != "" {
		se.Message = fmt.Sprintf("%s (%s %s)", se.Message, op, at)
	}
	return e
}

func (w *FileWriter) worker(ctx context.Context, key, need int64) (string, api.BlockWorkerClient, error) {
	addr := w.o.Worker
	if addr == "" {
		wi, err := w.c.pickWorker(ctx, key, need, nil)
		if err != nil {
			return "", nil, wrapErr("write", w.path, err)
		}
		addr = workerAddr(wi.GetAddress())
	}
	bw, err := w.c.dataWorker(ctx, addr)
	if err != nil {
		return "", nil, wrapErr("write", w.path, err)
	}
	return addr, bw, nil
}

func (w *FileWriter) openBlock() error {
	id := api.BlockID(w.info.GetFileId(), w.nblocks)
	ctx := w.streamCtx()
	addr, bw, err := w.worker(ctx, id, w.bs)
	if err != nil {
		return err
	}
	st, err := bw.WriteBlock(ctx)
	if err != nil {
		return w.opErr("write block", addr, err)
	}
	hint := w.bs
	if w.part {
		// Reserve what this block of the part will hold, not a whole
		// block: parts are often much smaller than blocks.
		hint = min(w.bs, w.partLen-(w.nblocks-w.partFirst)*w.bs)
	}
	hdr := &api.WriteBlockHeader{BlockId: id, Tier: w.o.Tier, LengthHint: hint, Pinned: w.keep}
	if r := w.region; r != nil {
		hdr.Ufs = &api.WriteUfsFileHeader{MountId: r.GetMountId(), UfsPath: r.GetUfsPath(), Mode: w.info.GetMode(),
			CreateParent: true, FileId: w.info.GetFileId(), InPlace: true,
			Offset: r.GetUfsOffset() + (w.nblocks-w.partFirst)*w.bs}
	}
	if err := st.Send(&api.WriteBlockRequest{Msg: &api.WriteBlockRequest_Header{Header: hdr}}); err != nil {
		_, rerr := st.CloseAndRecv()
		return w.opErr("write block", addr, firstErr(rerr, err))
	}
	w.blk = &blockWriter{id: id, addr: addr, st: st}
	return nil
}

func (w *FileWriter) finishBlock() error {
	if err := w.flush(); err != nil {
		return err
	}
	if !w.cache {
		return nil
	}
	if w.blk == nil {
		if w.blockFill == 0 {
			return nil
		}
		return fmt.Errorf("write %s: block %d has bytes but no stream", w.path, w.nblocks)
	}
	blk := w.blk
	w.blk = nil
	resp, err := blk.st.CloseAndRecv()
	if err != nil {
		return w.opErr("write block", blk.addr, err)
	}
	if resp.GetLength() != w.blockFill {
		return &Error{Op: "write", Path: w.path, Code: codes.DataLoss, kind: ErrInternal,
			Message: fmt.Sprintf("worker %s stored %d bytes of block %d, sent %d", blk.addr, resp.GetLength(), blk.id, w.blockFill)}
	}
	if w.region != nil && resp.GetUfsLength() != w.blockFill {
		// A worker that does not know WriteBlockHeader.ufs (older) stores
		// the block alone: the part would lack its UFS bytes.
		return &Error{Op: "write", Path: w.path, Code: codes.DataLoss, kind: ErrInternal,
			Message: fmt.Sprintf("worker %s wrote %d bytes of block %d to the UFS file %s, sent %d", blk.addr, resp.GetUfsLength(), blk.id, w.region.GetUfsPath(), w.blockFill)}
	}
	w.written = append(w.written, writtenBlock{id: blk.id, addr: blk.addr})
	w.nblocks++
	w.blockFill = 0
	return nil
}

func (w *FileWriter) openUFS() error {
	ctx := w.streamCtx()
	addr, bw, err := w.worker(ctx, w.info.GetFileId(), 0)
	if err != nil {
		return err
	}
	st, err := bw.WriteUfsFile(ctx)
	if err != nil {
		return w.opErr("write ufs", addr, err)
	}
	hdr := &api.WriteUfsFileHeader{MountId: w.info.GetMountId(), UfsPath: w.info.GetUfsPath(),
		Overwrite: w.o.Overwrite, Mode: w.info.GetMode(), CreateParent: true,
		FileId: w.info.GetFileId()}
	if err := st.Send(&api.WriteUfsFileRequest{Msg: &api.WriteUfsFileRequest_Header{Header: hdr}}); err != nil {
		_, rerr := st.CloseAndRecv()
		return w.opErr("write ufs", w.info.GetUfsPath(), firstErr(rerr, err))
	}
	w.ufs = st
	return nil
}

// finishUFS ends the stream of bytes to the UFS and returns the file's
// fingerprint.
func (w *FileWriter) finishUFS() (string, error) {
	if w.ufs == nil {
		if err := w.openUFS(); err != nil {
			return "", err
		}
	}
	resp, err := w.ufs.CloseAndRecv()
	if err != nil {
		return "", w.opErr("write ufs", w.info.GetUfsPath(), err)
	}
	if resp.GetLength() != w.pos {
		return "", &Error{Op: "write", Path: w.path, Code: codes.DataLoss, kind: ErrInternal,
			Message: fmt.Sprintf("the UFS file %s has %d bytes, sent %d", w.info.GetUfsPath(), resp.GetLength(), w.pos)}
	}
	return resp.GetUfsFingerprint(), nil
}

// Close finishes the last block, the UFS copy, and completes the file.
// On any failure the file is removed and the error returned.
func (w *FileWriter) Close() error {
	if w.closed {
		return w.err
	}
	w.closed = true
	err := w.err
	if err == nil {
		err = w.finishBlock()
	}
	var fp string
	if err == nil && w.through {
		fp, err = w.finishUFS()
	}
	if err == nil {
		var info *FileInfo
		info, err = w.c.completes.do(w.ctx, "write", w.path, &api.CompleteFileRequest{Path: w.path, Length: w.pos, UfsFingerprint: fp, FileId: w.info.GetFileId(), Xattrs: w.xattrs, IfReplaces: w.o.IfReplaces})
		if err == nil {
			w.info = info
		}
	}
	if err != nil {
		w.err = err
		w.abort()
		return err
	}
	w.stopStreams()
	return nil
}

// streamCtx is the context the writer's streams run under, made on first
// use.
func (w *FileWriter) streamCtx() context.Context {
	if w.sctx == nil {
		w.sctx, w.cancel = context.WithCancel(w.ctx)
	}
	return w.sctx
}

// stopStreams cancels the writer's streams, if it opened any.
func (w *FileWriter) stopStreams() {
	if w.cancel != nil {
		w.cancel()
	}
}

// Abort discards the file: nothing of it stays visible.
func (w *FileWriter) Abort() {
	if w.closed {
		return
	}
	w.closed = true
	if w.err == nil {
		w.err = &Error{Op: "write", Path: w.path, Code: codes.Canceled, Message: "aborted", kind: ErrCanceled}
	}
	w.abort()
}

// removeBlocks removes the blocks written so far from their workers.
func (w *FileWriter) removeBlocks() {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(w.ctx), 10*time.Second)
	defer cancel()
	for _, b := range w.written {
		if bw, err := w.c.dataWorker(ctx, b.addr); err == nil {
			_, _ = bw.RemoveBlock(ctx, &api.RemoveBlockRequest{BlockId: b.id})
		}
	}
}

// abort cancels the streams (the workers drop the temp block and the UFS
// temp file), removes committed blocks, and deletes the incomplete file.
func (w *FileWriter) abort() {
	w.stopStreams()
	w.removeBlocks()
	if w.part {
		return // the upload stays; only this part's blocks go
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(w.ctx), 10*time.Second)
	defer cancel()
	// Only our own incomplete file (by its id: a concurrent writer may own
	// the path now); an overwrite written aside is dropped the same way and
	// the path keeps the file it had.
	info, err := w.c.Stat(ctx, w.path)
	if err == nil && info.GetFileId() == w.info.GetFileId() && info.GetCompleted() {
		return
	}
	if err == nil || errors.Is(err, ErrNotFound) {
		_ = w.c.Delete(ctx, w.path, DeleteOptions{AlluviumOnly: true, FileID: w.info.GetFileId()})
	}
}
