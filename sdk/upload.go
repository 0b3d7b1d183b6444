package sdk

import (
	"context"
	"fmt"
	"io"

	"google.golang.org/grpc/codes"

	"github.com/alluvium/alluvium/api"
)

// A multipart upload (an S3 gateway's, or any client's) writes a file from
// parts sent independently — in any order, from any client of the cluster,
// each retried or replaced at will — and completes it from the parts it
// names, in order. The upload lives in the FS master, so nothing is lost
// when the client that began it goes away. Until it completes, the path
// keeps the file it had (or nothing). Only the user who began it sees or
// changes it.
//
//	up, _ := c.CreateUpload(ctx, "/b/big", sdk.CreateOptions{})
//	p1, _ := c.WritePart(ctx, up, 1, r1, n1, nil)
//	p2, _ := c.WritePart(ctx, up, 2, r2, n2, nil)
//	info, _ := c.CompleteUpload(ctx, up, []*api.UploadPart{p1, p2}, sdk.CompleteOptions{})

// UploadPart is one recorded part of an upload.
type UploadPart = api.UploadPart

// CreateUpload begins a multipart upload to path (its parents are made as
// needed). o's WriteType, BlockSize, Mode, Pinned and XAttrs apply to the
// file completed; Overwrite and Recursive are implied.
func (c *Client) CreateUpload(ctx context.Context, path string, o CreateOptions) (*FileInfo, error) {
	req := c.createRequest(path, o)
	req.Recursive, req.Overwrite, req.Upload = true, true, true
	var resp *api.CreateFileResponse
	err := c.call(ctx, "create upload", path, false, func(ctx context.Context) (err error) {
		resp, err = c.fs.CreateFile(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp.GetInfo(), nil
}

// WritePart writes part number num (1..10000) of upload up: exactly
// length bytes read from src, stored as blocks of the upload on block
// workers (a worker on this host first), then recorded with the tag tag
// returns once the bytes are in (a digest of them, say; tag may be nil).
// A part of the same number written before is replaced. Nothing is
// recorded when the part fails.
func (c *Client) WritePart(ctx context.Context, up *FileInfo, num int32, src io.Reader, length int64, tag func() []byte) (*UploadPart, error) {
	path := up.GetPath()
	var alloc *api.AllocateUploadBlocksResponse
	err := c.call(ctx, "upload part", path, false, func(ctx context.Context) (err error) {
		alloc, err = c.fs.AllocateUploadBlocks(ctx, &api.AllocateUploadBlocksRequest{Path: path, FileId: up.GetFileId(), Length: length, PartNumber: num})
		return err
	})
	if err != nil {
		return nil, err
	}
	w := &FileWriter{
		c: c, ctx: ctx, path: path, info: up, cache: true,
		bs: alloc.GetBlockSize(), nblocks: alloc.GetFirstBlock(), part: true, partFirst: alloc.GetFirstBlock(), partLen: length,
		// Until the upload completes a part's blocks are the only copy of
		// its bytes, unless they go to the UFS file in place too.
		keep: !alloc.GetInPlace(),
	}
	if alloc.GetInPlace() {
		// The part's bytes also go where they belong in the object's UFS
		// file, as they come: completing then copies nothing. Each block's
		// worker writes its bytes there too, from the block's stream.
		w.region = alloc
	}
	n, err := io.Copy(w, io.LimitReader(src, length))
	if err == nil && n != length {
		err = &Error{Op: "upload part", Path: path, Code: codes.InvalidArgument, kind: ErrInvalidArgument,
			Message: fmt.Sprintf("part %d: %d bytes, the part was announced with %d", num, n, length)}
	}
	if err == nil {
		err = w.finishBlock()
	}
	if err != nil {
		w.err = err
		w.closed = true
		w.abort()
		return nil, err
	}
	w.closed = true
	w.stopStreams()
	var t []byte
	if tag != nil {
		t = tag()
	}
	var resp *api.CommitUploadPartResponse
	err = c.call(ctx, "upload part", path, false, func(ctx context.Context) (err error) {
		resp, err = c.fs.CommitUploadPart(ctx, &api.CommitUploadPartRequest{Path: path, FileId: up.GetFileId(), PartNumber: num,
			FirstBlock: alloc.GetFirstBlock(), Length: length, Tag: t})
		return err
	})
	if err != nil {
		w.removeBlocks()
		return nil, err
	}
	return resp.GetPart(), nil
}

// UploadParts returns an upload (with the locations of its blocks) and
// its parts by number.
func (c *Client) UploadParts(ctx context.Context, path string, fileID int64) (*FileInfo, []*UploadPart, error) {
	var resp *api.ListUploadPartsResponse
	err := c.call(ctx, "list parts", path, true, func(ctx context.Context) (err error) {
		resp, err = c.fs.ListUploadParts(ctx, &api.ListUploadPartsRequest{Path: path, FileId: fileID})
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	return resp.GetUpload(), resp.GetParts(), nil
}

// Uploads lists the caller's uploads in flight to paths below directory
// dir (a superuser's: everyone's), by path.
func (c *Client) Uploads(ctx context.Context, dir string) ([]*FileInfo, error) {
	var resp *api.ListUploadsResponse
	err := c.call(ctx, "list uploads", dir, true, func(ctx context.Context) (err error) {
		resp, err = c.fs.ListUploads(ctx, &api.ListUploadsRequest{Path: dir})
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp.GetUploads(), nil
}

// CompleteOptions tune CompleteUpload.
type CompleteOptions struct {
	// XAttrs are set as the file completes (see FileWriter.SetXAttrs).
	XAttrs map[string][]byte
	// IfReplaces: as CreateOptions.IfReplaces.
	IfReplaces int64
	// UFSWorker (host:port) writes the file's UFS copy for write types
	// that have one; "" picks the worker holding most of its blocks.
	UFSWorker string
}

// CompleteUpload completes upload up from parts, in order (each as
// WritePart or UploadParts returned it: a part written again since fails
// the call, ErrFailedPrecondition). The file's blocks are the parts'
// blocks; no byte moves between workers. For write types with a UFS copy
// (CACHE_THROUGH, THROUGH) one worker first writes it from the blocks.
func (c *Client) CompleteUpload(ctx context.Context, up *FileInfo, parts []*UploadPart, o CompleteOptions) (*FileInfo, error) {
	path := up.GetPath()
	refs := make([]*api.UploadPartRef, len(parts))
	exts := make([]*api.FileExtent, len(parts))
	var length int64
	for i, p := range parts {
		refs[i] = &api.UploadPartRef{PartNumber: p.GetPartNumber(), FirstBlock: p.GetFirstBlock()}
		exts[i] = &api.FileExtent{FirstBlock: p.GetFirstBlock(), Length: p.GetLength()}
		length += p.GetLength()
	}
	var fp string
	wt := up.GetWriteType()
	inPlace := false
	if wt == api.WriteType_THROUGH || wt == api.WriteType_CACHE_THROUGH {
		// The parts are in the UFS file already when each was written in
		// place where the one before it ends; else one worker writes the
		// UFS file from the blocks.
		inPlace = true
		var at int64
		for _, p := range parts {
			if !p.GetInPlace() || p.GetUfsOffset() != at {
				inPlace = false
				break
			}
			at += p.GetLength()
		}
		if !inPlace {
			var err error
			if fp, err = c.writeUploadUFS(ctx, up, exts, length, o.UFSWorker); err != nil {
				return nil, err
			}
		}
	}
	var resp *api.CompleteFileResponse
	err := c.call(ctx, "complete upload", path, false, func(ctx context.Context) (err error) {
		resp, err = c.fs.CompleteFile(ctx, &api.CompleteFileRequest{Path: path, FileId: up.GetFileId(), Length: length,
			UfsFingerprint: fp, Xattrs: o.XAttrs, IfReplaces: o.IfReplaces, Parts: refs, UfsInPlace: inPlace})
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp.GetInfo(), nil
}

// writeUploadUFS has one worker write an upload's UFS copy (at the
// temporary UFS path the FS master renames onto the file's as it
// completes) from its blocks in order, and returns its fingerprint.
func (c *Client) writeUploadUFS(ctx context.Context, up *FileInfo, exts []*api.FileExtent, length int64, worker string) (string, error) {
	path := up.GetPath()
	// Where the blocks are now.
	cur, _, err := c.UploadParts(ctx, path, up.GetFileId())
	if err != nil {
		return "", err
	}
	where := map[int64][]string{}
	for _, fb := range cur.GetFileBlockInfos() {
		for _, l := range fb.GetBlockInfo().GetLocations() {
			where[fb.GetBlockInfo().GetBlockId()] = append(where[fb.GetBlockInfo().GetBlockId()], workerAddr(l.GetAddress()))
		}
	}
	layout := api.NewLayout(up.GetFileId(), length, up.GetBlockSizeBytes(), exts)
	srcs := make([]*api.BlockSource, layout.Count())
	held := map[string]int64{}
	for i := range srcs {
		b := layout.Block(int64(i))
		srcs[i] = &api.BlockSource{BlockId: b.ID, Length: b.Length, Workers: where[b.ID]}
		for _, a := range where[b.ID] {
			held[a] += b.Length
		}
	}
	if worker == "" {
		var most int64 = -1
		for a, n := range held {
			if n > most || n == most && a < worker {
				worker, most = a, n
			}
		}
	}
	if worker == "" {
		return "", &Error{Op: "complete upload", Path: path, Code: codes.DataLoss, kind: ErrInternal,
			Message: "no worker holds any block of the upload's parts"}
	}
	bw, err := c.dataWorker(ctx, worker)
	if err != nil {
		return "", wrapErr("complete upload", path, err)
	}
	var resp *api.WriteUfsFileFromResponse
	err = c.call(ctx, "complete upload", path, false, func(ctx context.Context) (err error) {
		resp, err = bw.WriteUfsFileFrom(ctx, &api.WriteUfsFileFromRequest{
			Dest: &api.WriteUfsFileHeader{MountId: up.GetMountId(), UfsPath: up.GetUfsPath(), Overwrite: true, CreateParent: true,
				Mode: up.GetMode(), FileId: up.GetFileId()},
			Sources: srcs,
		})
		return err
	})
	if err != nil {
		return "", err
	}
	if resp.GetLength() != length {
		return "", &Error{Op: "complete upload", Path: path, Code: codes.DataLoss, kind: ErrInternal,
			Message: fmt.Sprintf("the UFS copy has %d bytes, the parts %d", resp.GetLength(), length)}
	}
	return resp.GetUfsFingerprint(), nil
}

// AbortUpload drops an upload and its parts; the path keeps its file.
func (c *Client) AbortUpload(ctx context.Context, path string, fileID int64) error {
	return c.Delete(ctx, path, DeleteOptions{AlluviumOnly: true, FileID: fileID})
}
