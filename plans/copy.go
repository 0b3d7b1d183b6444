package plans

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/paths"
	"github.com/alluvium/alluvium/plans/spec"
)

// Copy copies a file or a tree to a new path, across mounts and UFS kinds
// (local, S3). DST names the copy itself: SRC's files land at the same
// relative paths under DST. Each file is a task (small files batched per
// worker):
//
//   - a file of one block is written by one block worker straight from the
//     source (its cache, a peer's, or the source UFS) into the destination
//     UFS under a temporary name renamed into place, then entered in the
//     namespace — an existing DST file is replaced only once the new bytes
//     are complete;
//   - a larger file is split by blocks: its blocks are fetched in parallel
//     by several block workers into the cache as blocks of a temporary
//     file beside DST, which the worker holding most of them then writes to
//     the UFS and which is renamed onto DST (staying cached).
//
// --checksum compares the SHA-256 of the source with the destination read
// back. DST must not exist unless --overwrite; copying onto itself or a
// directory into itself is refused at submit.
type Copy struct{}

// Name implements Plan.
func (Copy) Name() string { return "copy" }

// checkSrcDst is what copy and move check at submit: SRC exists, DST is
// not inside a directory SRC, DST exists only with overwrite and then is
// of SRC's kind, and DST's parent is not a file.
func checkSrcDst(ctx context.Context, env Env, plan, src, dst string, overwrite bool) (srcInfo, dstInfo *api.FileInfo, err error) {
	srcInfo, err = statPath(ctx, env, plan, src)
	if err != nil {
		return nil, nil, err
	}
	if src == "/" {
		return nil, nil, spec.Invalidf("%s /: the root cannot be the source", plan)
	}
	if srcInfo.GetFolder() && paths.IsAncestor(src, dst) {
		return nil, nil, spec.Invalidf("%s %s to %s: cannot %s a directory into itself", plan, src, dst, plan)
	}
	dstInfo, err = exists(ctx, env, dst)
	if err != nil {
		return nil, nil, status.Errorf(status.Code(err), "%s %s: stat: %s", plan, dst, msg(err))
	}
	if dstInfo != nil {
		switch {
		case !overwrite:
			return nil, nil, status.Errorf(codes.FailedPrecondition, "%s %s to %s: %s exists (use --overwrite to replace it)", plan, src, dst, dst)
		case dstInfo.GetFolder() && !srcInfo.GetFolder():
			return nil, nil, status.Errorf(codes.FailedPrecondition, "%s %s to %s: %s is a directory; a file cannot overwrite it", plan, src, dst, dst)
		case !dstInfo.GetFolder() && srcInfo.GetFolder():
			return nil, nil, status.Errorf(codes.FailedPrecondition, "%s %s to %s: %s is a file; a directory cannot overwrite it", plan, src, dst, dst)
		case dstInfo.GetMountPoint() || dst == "/":
			return nil, nil, status.Errorf(codes.FailedPrecondition, "%s %s to %s: %s is a mount point", plan, src, dst, dst)
		}
		return srcInfo, dstInfo, nil
	}
	// The nearest existing ancestor of DST must be a directory.
	for p := dst; p != "/"; {
		p, _ = paths.Split(p)
		a, err := exists(ctx, env, p)
		if err != nil {
			return nil, nil, status.Errorf(status.Code(err), "%s %s: stat %s: %s", plan, dst, p, msg(err))
		}
		if a != nil {
			if !a.GetFolder() {
				return nil, nil, status.Errorf(codes.FailedPrecondition, "%s %s to %s: %s is a file", plan, src, dst, p)
			}
			break
		}
	}
	return srcInfo, nil, nil
}

// Validate implements Plan.
func (Copy) Validate(ctx context.Context, env Env, config []byte) (spec.Valid, error) {
	c, err := spec.DecodeCopy(config)
	if err != nil {
		return spec.Valid{}, err
	}
	_, dstInfo, err := checkSrcDst(ctx, env, "copy", c.Src, c.Dst, c.Overwrite)
	if err != nil {
		return spec.Valid{}, err
	}
	// A copy reads the source and adds entries where DST goes (in DST
	// itself when it is a directory being merged into).
	if err := requireAccess(ctx, env, "copy", c.Src, accessRead, true); err != nil {
		return spec.Valid{}, err
	}
	if dstInfo != nil && dstInfo.GetFolder() {
		err = requireAccess(ctx, env, "copy", c.Dst, accessWrite|accessExecute, false)
	} else {
		err = requireAncestorWrite(ctx, env, "copy", c.Dst)
	}
	if err != nil {
		return spec.Valid{}, err
	}
	if ws, err := liveBlockWorkers(ctx, env); err != nil {
		return spec.Valid{}, err
	} else if len(ws) == 0 {
		return spec.Valid{}, status.Errorf(codes.FailedPrecondition, "copy %s: no live block worker", c.Src)
	}
	c.DstExisted = dstInfo != nil
	return spec.Accept(c)
}

// Done implements Plan: one round.
func (Copy) Done(context.Context, Env, Job) (bool, error) { return true, nil }

// copyElem is one file of a copy (or cross-mount move) task: the source as
// planned, and where it goes.
type copyElem struct {
	Src       string      `json:"s"`
	Dst       string      `json:"d"`
	DstUfs    string      `json:"du"`
	DstMount  int64       `json:"dm"`
	ID        int64       `json:"id"`
	Length    int64       `json:"l"`
	BlockSize int64       `json:"bs"`
	Mode      uint32      `json:"md,omitempty"`
	Ufs       string      `json:"u,omitempty"` // empty: not persisted
	Mount     int64       `json:"m,omitempty"`
	FP        string      `json:"f,omitempty"`
	Blocks    []fileBlock `json:"b,omitempty"`
}

// copyGen plans the files of a copy from src to dst.
func copyGen(env Env, src, dst string) itemGen {
	var mounts []*api.MountPointInfo
	return func(ctx context.Context, f *api.FileInfo, workers []blockWorker) ([]item, []*api.FailedPath, error) {
		if mounts == nil {
			m, err := mountTable(ctx, env)
			if err != nil {
				return nil, nil, err
			}
			mounts = m
		}
		e, failed := newCopyElem(f, src, dst, mounts)
		if failed != nil {
			return nil, []*api.FailedPath{failed}, nil
		}
		blocks := fileBlocks(f)
		return []item{{
			Elem: e, Bytes: f.GetLength(), Target: holder(blocks, workers, ""),
			Batch: len(blocks) <= 1 && f.GetLength() <= smallFileBytes, Desc: f.GetPath(),
		}}, nil, nil
	}
}

func newCopyElem(f *api.FileInfo, src, dst string, mounts []*api.MountPointInfo) (copyElem, *api.FailedPath) {
	d := joinAfter(src, dst, f.GetPath())
	m, uri := mountFor(mounts, d)
	switch {
	case !f.GetCompleted():
		return copyElem{}, failedf(f.GetPath(), "still being written")
	case m == nil:
		return copyElem{}, failedf(f.GetPath(), "no mount holds the destination %s", d)
	case m.GetReadOnly():
		return copyElem{}, failedf(f.GetPath(), "the destination %s is in the read-only mount %s", d, m.GetAlluviumPath())
	}
	blocks := fileBlocks(f)
	if !persisted(f) {
		for i, b := range blocks {
			if len(b.Workers) == 0 && b.Length > 0 {
				return copyElem{}, failedf(f.GetPath(), "block %d is cached nowhere and the file was never persisted: nothing to copy from", i)
			}
		}
	}
	e := copyElem{Src: f.GetPath(), Dst: d, DstUfs: uri, DstMount: m.GetMountId(), ID: f.GetFileId(), Length: f.GetLength(),
		BlockSize: f.GetBlockSizeBytes(), Mode: f.GetMode(), Blocks: blocks}
	if persisted(f) {
		e.Ufs, e.Mount, e.FP = f.GetUfsPath(), f.GetMountId(), f.GetUfsFingerprint()
	}
	return e, nil
}

// NewPlanner implements Plan.
func (Copy) NewPlanner(ctx context.Context, env Env, job Job) (Planner, error) {
	c, err := spec.DecodeCopy(job.Config)
	if err != nil {
		return nil, err
	}
	return newItemPlanner(env, "copy", job, c.Src, c.PageSize, true, c.BatchFiles, c.BatchBytes, copyGen(env, c.Src, c.Dst))
}

// Run implements Plan.
func (Copy) Run(ctx context.Context, env Env, t *Task) (Result, error) {
	c, err := spec.DecodeCopy(t.Config)
	if err != nil {
		return Result{}, err
	}
	var a itemArgs
	if err := json.Unmarshal(t.Args, &a); err != nil {
		return Result{}, fmt.Errorf("copy task %d/%d: bad args: %w", t.JobID, t.TaskID, err)
	}
	ws, err := liveBlockWorkers(ctx, env)
	if err != nil {
		return Result{}, err
	}
	cp := copier{env: env, t: t, overwrite: c.Overwrite, checkDst: c.DstExisted || t.Attempt > 1, checksum: c.Checksum, workers: ws}
	elems := make([]copyElem, len(a.Items))
	for i, raw := range a.Items {
		if err := json.Unmarshal(raw, &elems[i]); err != nil {
			return Result{}, fmt.Errorf("copy: bad task element: %w", err)
		}
	}
	// Files of a block or less go together: one call writes them all to
	// the UFS, one call enters them all in the namespace.
	var small []int
	for i, e := range elems {
		if len(e.Blocks) <= 1 {
			small = append(small, i)
		}
	}
	batched := map[int]error{}
	if len(small) > 1 {
		batched = cp.copySmall(ctx, elems, small)
	}
	index := map[string]int{}
	for i, raw := range a.Items {
		index[string(raw)] = i
	}
	return runItems(ctx, t, itemParallelism, func(ctx context.Context, raw json.RawMessage) itemResult {
		i := index[string(raw)]
		e := elems[i]
		err, done := batched[i]
		if !done {
			_, err = cp.copyFile(ctx, e)
		}
		if err != nil {
			return itemResult{failed: failedf(e.Src, "%s", msg(err)), err: wrapf(err, "copy %s to %s", e.Src, e.Dst)}
		}
		return itemResult{bytes: e.Length}
	})
}

// copySmall copies small files with one WriteUfsFilesFrom call per block
// worker and one CreateFiles call, and returns each file's outcome (a file
// it leaves out of the map is copied on its own).
func (cp copier) copySmall(ctx context.Context, elems []copyElem, idx []int) map[int]error {
	out := map[int]error{}
	var todo []int
	for _, i := range idx {
		e := elems[i]
		if cp.checkDst {
			done, err := cp.dstDone(ctx, e)
			if err != nil || done {
				out[i] = err
				continue
			}
		}
		todo = append(todo, i)
	}
	// By block worker: a cached source's holder writes it, else the one
	// beside this job worker.
	groups := map[string][]int{}
	for _, i := range todo {
		addr, err := cp.worker(ctx, elems[i].Blocks)
		if err != nil {
			return out // the rest one by one
		}
		groups[addr] = append(groups[addr], i)
	}
	var written []int
	fps := map[int]*api.WriteUfsFileFromResponse{}
	for addr, is := range groups {
		bw, err := cp.env.BlockWorker(addr)
		if err != nil {
			continue
		}
		req := &api.WriteUfsFilesFromRequest{Files: make([]*api.WriteUfsFileFromRequest, len(is))}
		for k, i := range is {
			req.Files[k] = elems[i].writeRequest(cp.checksum)
		}
		resp, err := bw.WriteUfsFilesFrom(ctx, req)
		if err != nil {
			continue // one by one, which picks a worker again
		}
		for k, r := range resp.GetResults() {
			if k >= len(is) {
				break
			}
			i := is[k]
			switch {
			case r.GetError() != "":
				out[i] = status.Errorf(codes.Code(r.GetCode()), "write %s on %s: %s", elems[i].DstUfs, addr, r.GetError())
			case r.GetResponse().GetLength() != elems[i].Length:
				out[i] = status.Errorf(codes.DataLoss, "wrote %d bytes, the source has %d (changed?)", r.GetResponse().GetLength(), elems[i].Length)
			default:
				written = append(written, i)
				fps[i] = r.GetResponse()
			}
		}
	}
	if len(written) == 0 {
		return out
	}
	creq := &api.CreateFilesRequest{Files: make([]*api.CreateFileRequest, len(written))}
	for k, i := range written {
		creq.Files[k] = elems[i].createRequest(fps[i])
	}
	cresp, err := cp.env.FS().CreateFiles(ctx, creq)
	if err != nil {
		for _, i := range written {
			out[i] = wrapf(err, "create %s", elems[i].Dst)
		}
		return out
	}
	for k, r := range cresp.GetResults() {
		if k >= len(written) {
			break
		}
		i := written[k]
		if r.GetError() != "" {
			out[i] = status.Errorf(codes.Code(r.GetCode()), "%s", r.GetError())
			continue
		}
		out[i] = cp.checkMount(ctx, elems[i], r.GetInfo())
	}
	return out
}

// dstDone looks at an existing DST before a file is copied: done when an
// earlier attempt of this task finished it; an error when it may not be
// replaced.
func (cp copier) dstDone(ctx context.Context, e copyElem) (bool, error) {
	d, err := exists(ctx, cp.env, e.Dst)
	if err != nil || d == nil {
		return false, err
	}
	switch {
	case d.GetFolder():
		return false, status.Errorf(codes.FailedPrecondition, "%s is a directory", e.Dst)
	case cp.t.Attempt > 1 && !cp.overwrite && d.GetCompleted() && persisted(d) && d.GetLength() == e.Length:
		return true, nil
	case !cp.overwrite:
		return false, status.Errorf(codes.FailedPrecondition, "%s exists (use --overwrite to replace it)", e.Dst)
	}
	return false, nil
}

// writeRequest writes e's bytes to its destination UFS path.
func (e copyElem) writeRequest(checksum bool) *api.WriteUfsFileFromRequest {
	return &api.WriteUfsFileFromRequest{
		Dest:     &api.WriteUfsFileHeader{MountId: e.DstMount, UfsPath: e.DstUfs, Overwrite: true, CreateParent: true, Mode: e.Mode},
		Sources:  e.sources(),
		Checksum: checksum,
	}
}

// createRequest enters e's written copy in the namespace, complete.
func (e copyElem) createRequest(w *api.WriteUfsFileFromResponse) *api.CreateFileRequest {
	return &api.CreateFileRequest{Path: e.Dst, BlockSizeBytes: max(e.BlockSize, 0), WriteType: api.WriteType_THROUGH,
		Recursive: true, Overwrite: true, Mode: e.Mode, Complete: true, Length: w.GetLength(), UfsFingerprint: w.GetUfsFingerprint()}
}

// checkMount makes sure the namespace put DST where the bytes were
// written (the mount table may have changed since planning).
func (cp copier) checkMount(ctx context.Context, e copyElem, info *api.FileInfo) error {
	if info.GetUfsPath() == e.DstUfs {
		return nil
	}
	_, _ = cp.env.FS().Delete(context.WithoutCancel(ctx), &api.DeleteRequest{Path: e.Dst, AlluviumOnly: true})
	return status.Errorf(codes.Aborted, "the mounts changed while copying: %s is now %s, not %s", e.Dst, info.GetUfsPath(), e.DstUfs)
}

// copier copies one file; move uses it across mounts.
type copier struct {
	env       Env
	t         *Task
	overwrite bool
	checkDst  bool // DST may exist: look before writing
	checksum  bool
	workers   []blockWorker // live block workers; nil: look them up
}

// copyFile copies e.Src to e.Dst and returns the new file's status. A DST
// that already is a complete copy from an earlier attempt of this task
// counts as done.
func (cp copier) copyFile(ctx context.Context, e copyElem) (*api.FileInfo, error) {
	if cp.checkDst {
		done, err := cp.dstDone(ctx, e)
		if err != nil {
			return nil, err
		}
		if done {
			return exists(ctx, cp.env, e.Dst)
		}
	}
	if len(e.Blocks) > 1 {
		return cp.copyLarge(ctx, e)
	}
	return cp.copyDirect(ctx, e)
}

// sources are the block sources of e's file: cached copies, then its UFS.
// A file of several blocks is read with its fingerprint checked, so blocks
// from the cache and from a UFS copy changed since are never mixed; a file
// of one block is read whole from one place, and a changed length is
// caught after the write.
func (e copyElem) sources() []*api.BlockSource {
	out := make([]*api.BlockSource, len(e.Blocks))
	fp := ""
	if len(e.Blocks) > 1 {
		fp = e.FP
	}
	for i, b := range e.Blocks {
		s := &api.BlockSource{BlockId: b.ID, Length: b.Length, Workers: b.Workers}
		if e.Ufs != "" {
			s.Ufs = &api.UfsBlockSource{MountId: e.Mount, UfsPath: e.Ufs, Offset: b.Offset, Length: b.Length, UfsFingerprint: fp}
		}
		out[i] = s
	}
	return out
}

// worker picks the block worker that runs a transfer: the one caching most
// of the file, else the one beside this job worker, else any live one.
func (cp copier) worker(ctx context.Context, blocks []fileBlock) (string, error) {
	ws := cp.workers
	if ws == nil {
		var err error
		if ws, err = liveBlockWorkers(ctx, cp.env); err != nil {
			return "", err
		}
	}
	if h := holder(blocks, ws, cp.t.LocalBlockWorker); h.addr != "" {
		return h.addr, nil
	}
	for _, w := range ws {
		if w.addr == cp.t.LocalBlockWorker {
			return w.addr, nil
		}
	}
	if len(ws) == 0 {
		return "", status.Error(codes.Unavailable, "no live block worker")
	}
	return ws[int(cp.t.TaskID)%len(ws)].addr, nil
}

// copyDirect writes the destination UFS file straight from the source,
// then enters it in the namespace (replacing an older DST only now).
func (cp copier) copyDirect(ctx context.Context, e copyElem) (*api.FileInfo, error) {
	addr, err := cp.worker(ctx, e.Blocks)
	if err != nil {
		return nil, err
	}
	bw, err := cp.env.BlockWorker(addr)
	if err != nil {
		return nil, err
	}
	wr, err := bw.WriteUfsFileFrom(ctx, e.writeRequest(cp.checksum))
	if err != nil {
		return nil, wrapf(err, "write %s on %s", e.DstUfs, addr)
	}
	if wr.GetLength() != e.Length {
		return nil, status.Errorf(codes.DataLoss, "wrote %d bytes, the source has %d (changed?)", wr.GetLength(), e.Length)
	}
	cr, err := cp.env.FS().CreateFile(ctx, e.createRequest(wr))
	if err != nil {
		return nil, wrapf(err, "create %s", e.Dst)
	}
	if err := cp.checkMount(ctx, e, cr.GetInfo()); err != nil {
		return nil, err
	}
	return cr.GetInfo(), nil
}

// copyTemp is the temporary namespace name a large copy is assembled
// under, beside DST; the same for every attempt of the job.
func (cp copier) copyTemp(dst string) string {
	dir, name := paths.Split(dst)
	return paths.Join(dir, fmt.Sprintf(".alluvium-tmp-copy-%d-%s", cp.t.JobID, name))
}

// partParallelism is how many parts of a large file are fetched at once.
const partParallelism = 4

// copyLarge splits a multi-block file by blocks: each block is fetched by
// a block worker (spread over the live ones, the holder of a cached source
// block first) into the cache as a block of a temporary file beside DST;
// the worker holding most parts writes them to the UFS; the temporary file
// is completed and renamed onto DST, keeping its blocks cached. A part that
// could not be fetched is read from the source during the assembly.
func (cp copier) copyLarge(ctx context.Context, e copyElem) (info *api.FileInfo, err error) {
	fs := cp.env.FS()
	tmp := cp.copyTemp(e.Dst)
	// The directories creating tmp makes, deepest first: a failed copy
	// removes them again (when still empty).
	var made []string
	for d, _ := paths.Split(tmp); d != "/"; d, _ = paths.Split(d) {
		x, err := exists(ctx, cp.env, d)
		if err != nil {
			return nil, wrapf(err, "stat %s", d)
		}
		if x != nil {
			break
		}
		made = append(made, d)
	}
	cr, err := fs.CreateFile(ctx, &api.CreateFileRequest{Path: tmp, BlockSizeBytes: e.BlockSize, WriteType: api.WriteType_MUST_CACHE,
		Recursive: true, Overwrite: true, Mode: e.Mode})
	if err != nil {
		return nil, wrapf(err, "create %s", tmp)
	}
	tinfo := cr.GetInfo()
	replaced := false // DST is gone: keep the finished copy under tmp if the rename fails
	defer func() {
		if err != nil && !replaced {
			// Nothing half-made stays: the temporary file goes (its UFS
			// copy and cached blocks with it).
			dctx := context.WithoutCancel(ctx)
			// By id: an overwrite is written aside until complete, and
			// only the file this copy made may go.
			_ = remove(dctx, fs, tmp, tinfo.GetFileId())
			for _, d := range made {
				if remove(dctx, fs, d, 0) != nil {
					break // not empty: someone else's now
				}
			}
		}
	}()
	ws, err := liveBlockWorkers(ctx, cp.env)
	if err != nil {
		return nil, err
	}
	if len(ws) == 0 {
		return nil, status.Error(codes.Unavailable, "no live block worker")
	}
	live := map[string]bool{}
	for _, w := range ws {
		live[w.addr] = true
	}
	parts := make([]string, len(e.Blocks)) // where part i is cached ("": nowhere)
	var (
		mu   sync.Mutex
		done int64
		wg   sync.WaitGroup
	)
	sem := make(chan struct{}, partParallelism)
	for i, b := range e.Blocks {
		target, from := ws[(i+int(cp.t.TaskID))%len(ws)].addr, ""
		for _, a := range b.Workers {
			if live[a] {
				target, from = a, a // a local copy on the holder: no network
				break
			}
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func(i int, b fileBlock) {
			defer wg.Done()
			defer func() { <-sem }()
			id := api.BlockID(tinfo.GetFileId(), int64(i))
			bw, err := cp.env.BlockWorker(target)
			if err == nil {
				if from != "" {
					_, err = bw.CopyBlockFrom(ctx, &api.CopyBlockFromRequest{BlockId: id, SourceBlockId: b.ID, Source: from, Length: b.Length})
				} else if e.Ufs != "" {
					_, err = bw.CacheBlock(ctx, &api.CacheBlockRequest{BlockId: id, Source: &api.UfsBlockSource{
						MountId: e.Mount, UfsPath: e.Ufs, Offset: b.Offset, Length: b.Length, UfsFingerprint: e.FP}})
				} else {
					err = fmt.Errorf("block %d is cached nowhere", i)
				}
			}
			if err != nil {
				return // the assembly reads it from the source
			}
			mu.Lock()
			parts[i] = target
			done += b.Length / 2 // half the work: it is written once more
			if cp.t.Progress != nil {
				cp.t.Progress(done)
			}
			mu.Unlock()
		}(i, b)
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// Assemble on the worker holding most parts (this job worker's own on a tie).
	count := map[string]int{}
	best := ""
	for _, a := range parts {
		if a == "" {
			continue
		}
		count[a]++
		if best == "" || count[a] > count[best] || count[a] == count[best] && a == cp.t.LocalBlockWorker {
			best = a
		}
	}
	if best == "" {
		if best, err = cp.worker(ctx, e.Blocks); err != nil {
			return nil, err
		}
	}
	srcs := e.sources()
	asm := make([]*api.BlockSource, len(e.Blocks))
	for i, b := range e.Blocks {
		s := &api.BlockSource{BlockId: api.BlockID(tinfo.GetFileId(), int64(i)), Length: b.Length, Ufs: srcs[i].GetUfs()}
		if parts[i] != "" {
			s.Workers = []string{parts[i]}
		} else if s.Ufs == nil {
			// Not fetched and not in a UFS: read the source's cached block.
			s = srcs[i]
		}
		asm[i] = s
	}
	bw, err := cp.env.BlockWorker(best)
	if err != nil {
		return nil, err
	}
	wr, err := bw.WriteUfsFileFrom(ctx, &api.WriteUfsFileFromRequest{
		Dest:     &api.WriteUfsFileHeader{MountId: tinfo.GetMountId(), UfsPath: tinfo.GetUfsPath(), Overwrite: true, CreateParent: true, Mode: e.Mode},
		Sources:  asm,
		Checksum: cp.checksum,
	})
	if err != nil {
		return nil, wrapf(err, "assemble %s on %s", tmp, best)
	}
	if wr.GetLength() != e.Length {
		return nil, status.Errorf(codes.DataLoss, "assembled %d bytes, the source has %d (changed?)", wr.GetLength(), e.Length)
	}
	if cp.checksum {
		// The parts are copies: compare with the source itself.
		h, err := bw.HashBlocks(ctx, &api.HashBlocksRequest{Sources: srcs})
		if err != nil {
			return nil, wrapf(err, "checksum of the source")
		}
		if h.GetSha256() != wr.GetSha256() {
			return nil, status.Errorf(codes.DataLoss, "checksum mismatch: source sha256 %s, copy %s", h.GetSha256(), wr.GetSha256())
		}
	}
	if _, err := fs.CompleteFile(ctx, &api.CompleteFileRequest{Path: tmp, Length: wr.GetLength(), UfsFingerprint: wr.GetUfsFingerprint(), FileId: tinfo.GetFileId()}); err != nil {
		return nil, wrapf(err, "complete %s", tmp)
	}
	if cp.overwrite {
		if _, err := fs.Delete(ctx, &api.DeleteRequest{Path: e.Dst}); err != nil && status.Code(err) != codes.NotFound {
			return nil, wrapf(err, "replace %s", e.Dst)
		}
		replaced = true
	}
	rr, err := fs.Rename(ctx, &api.RenameRequest{Src: tmp, Dst: e.Dst})
	if err != nil {
		return nil, wrapf(err, "rename %s to %s", tmp, e.Dst)
	}
	return rr.GetInfo(), nil
}

// remove deletes p (not recursively) from the namespace and the UFS; when
// the UFS side refuses (never made there, or something else is in the
// way) the namespace entry still goes. Gone already is fine. A non-zero id
// deletes only that file (see DeleteRequest.file_id).
func remove(ctx context.Context, fs api.FileSystemMasterClient, p string, id int64) error {
	_, err := fs.Delete(ctx, &api.DeleteRequest{Path: p, FileId: id})
	gone := func(err error) bool {
		// With an id, FailedPrecondition: the path holds another file now.
		return status.Code(err) == codes.NotFound || id != 0 && status.Code(err) == codes.FailedPrecondition
	}
	if err != nil && !gone(err) {
		_, err = fs.Delete(ctx, &api.DeleteRequest{Path: p, AlluviumOnly: true, FileId: id})
	}
	if gone(err) {
		return nil
	}
	return err
}

// requireAncestorWrite checks write access on the nearest existing
// directory above p: where p (and its missing parents) will be created.
func requireAncestorWrite(ctx context.Context, env Env, op, p string) error {
	for d := p; d != "/"; {
		d, _ = paths.Split(d)
		a, err := exists(ctx, env, d)
		if err != nil {
			return wrapf(err, "%s %s: stat %s", op, p, d)
		}
		if a != nil {
			return requireAccess(ctx, env, op, d, accessWrite|accessExecute, false)
		}
	}
	return nil
}
