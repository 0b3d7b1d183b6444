package plans

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/paths"
	"github.com/alluvium/alluvium/internal/rpc"
	"github.com/alluvium/alluvium/plans/spec"
)

// Copy copies a file or a tree to a new path, across mounts and UFS kinds
// (local, S3). DST names the copy itself: SRC's files land at the same
// relative paths under DST. Into an existing DST only what differs is
// copied (rclone's copy): the planner lists SRC and DST together
// (merge.go) and skips each file whose copy has its size and modification
// time — with --checksum, its size and content, compared when its task
// runs — so copying again copies nothing and a nightly copy copies what
// changed; --overwrite copies every file again, --ignore-existing none
// that exists at DST. A copy keeps its source's modification time. Each
// file to copy is a task (small files batched per worker):
//
//   - a file of one block is written by one block worker straight from the
//     source (its cache, a peer's, or the source UFS) into the destination
//     UFS under a temporary name renamed into place, then entered in the
//     namespace — an existing DST file is replaced only once the new bytes
//     are complete;
//   - a larger file is split by blocks: it is created aside (an overwrite
//     the FS master swaps in when complete, the old file staying in place
//     until then), its blocks fetched in parallel by several block workers
//     into the cache, written to the UFS by the worker holding most of
//     them, and completed, which replaces DST in one step (staying cached).
//
// --checksum also checks each copy against its source before the copy
// takes its name (a file of one block: written, then read back and
// compared byte for byte — with the source where both are local files of
// 1 MiB or more, else with the bytes it streamed when small, else by
// SHA-256 of both; a split file: the SHA-256 of the assembled copy
// against that of the source). Copying onto itself, a directory into itself or a tree into one
// that holds it, or a file onto a directory (or back) is refused at submit.
type Copy struct{}

// Name implements Plan.
func (Copy) Name() string { return "copy" }

// checkSrcDst is what copy, move and sync check at submit: SRC exists and
// is not the root, neither path holds the other, DST (when it exists) is
// of SRC's kind, and DST's nearest existing ancestor is a directory.
func checkSrcDst(ctx context.Context, env Env, plan, src, dst string) (srcInfo, dstInfo *api.FileInfo, err error) {
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
	if paths.IsAncestor(dst, src) {
		return nil, nil, spec.Invalidf("%s %s to %s: the destination holds the source", plan, src, dst)
	}
	dstInfo, err = exists(ctx, env, dst)
	if err != nil {
		return nil, nil, status.Errorf(status.Code(err), "%s %s: stat: %s", plan, dst, msg(err))
	}
	if dstInfo != nil {
		switch {
		case dstInfo.GetFolder() && !srcInfo.GetFolder():
			return nil, nil, status.Errorf(codes.FailedPrecondition, "%s %s to %s: %s is a directory; a file cannot replace it", plan, src, dst, dst)
		case !dstInfo.GetFolder() && srcInfo.GetFolder():
			return nil, nil, status.Errorf(codes.FailedPrecondition, "%s %s to %s: %s is a file; a directory cannot replace it", plan, src, dst, dst)
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
	if c, err = validateCopy(ctx, env, "copy", c); err != nil {
		return spec.Valid{}, err
	}
	return spec.Accept(c)
}

// validateCopy checks a copy (or sync) config against the cluster.
func validateCopy(ctx context.Context, env Env, plan string, c spec.CopyConfig) (spec.CopyConfig, error) {
	_, dstInfo, err := checkSrcDst(ctx, env, plan, c.Src, c.Dst)
	if err != nil {
		return c, err
	}
	// A copy reads the source and adds entries where DST goes (in DST
	// itself when it is a directory being merged into).
	if err := requireAccess(ctx, env, plan, c.Src, accessRead, true); err != nil {
		return c, err
	}
	if dstInfo != nil && dstInfo.GetFolder() {
		err = requireAccess(ctx, env, plan, c.Dst, accessWrite|accessExecute, false)
	} else {
		err = requireAncestorWrite(ctx, env, plan, c.Dst)
	}
	if err != nil {
		return c, err
	}
	if ws, err := liveBlockWorkers(ctx, env); err != nil {
		return c, err
	} else if len(ws) == 0 && !c.DryRun {
		return c, status.Errorf(codes.FailedPrecondition, "%s %s: no live block worker", plan, c.Src)
	}
	c.DstExisted = dstInfo != nil
	return c, nil
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
	MTime     int64       `json:"mt,omitempty"` // the source's modification time, kept by the copy
	Ufs       string      `json:"u,omitempty"`  // empty: not persisted
	Mount     int64       `json:"m,omitempty"`
	FP        string      `json:"f,omitempty"`
	Blocks    []fileBlock `json:"b,omitempty"`
	// DstID is the file at Dst when planned (0: none); Check: its size is
	// the source's, so --checksum compares contents before copying.
	DstID int64 `json:"di,omitempty"`
	Check bool  `json:"ck,omitempty"`
	// Parts: the source was assembled from parts (api.Layout explicit),
	// its blocks are not those of a file of BlockSize: it is copied by
	// one worker writing the destination from the blocks in order.
	Parts bool `json:"x,omitempty"`
}

// compare says what an incremental copy does with a source file given
// what is at its place in the destination.
type compare struct {
	overwrite, ignoreExisting, checksum bool
}

// verdicts of compare.judge.
type verdict int

const (
	copyIt  verdict = iota // new, or differs: copy (replacing DST)
	skipIt                 // DST already is the copy: leave it
	checkIt                // same size, --checksum: compare contents when the task runs
)

// judge compares the source file src with dst (nil: none), both as the
// namespace lists them.
func (m compare) judge(src, dst *api.FileInfo) verdict {
	switch {
	case dst == nil:
		return copyIt
	case m.ignoreExisting:
		return skipIt
	case m.overwrite, !dst.GetCompleted(), dst.GetLength() != src.GetLength():
		return copyIt
	case m.checksum:
		return checkIt
	case src.GetLastModificationTimeMs() != 0 && dst.GetLastModificationTimeMs() == src.GetLastModificationTimeMs():
		// (A time of 0 is unknown: never taken for a match.)
		return skipIt
	}
	return copyIt
}

// sameCopy reports whether d (DST now) is the copy of e: complete, of e's
// length and modification time.
func sameCopy(d *api.FileInfo, e copyElem) bool {
	return d != nil && !d.GetFolder() && d.GetCompleted() && d.GetLength() == e.Length && e.MTime != 0 && d.GetLastModificationTimeMs() == e.MTime
}

// pairPlanner plans copy, sync and move from the merge of SRC and DST.
type pairPlanner struct {
	env      Env
	src, dst string
	cmp      compare
	sel      *spec.Selector // what the merge lists (set by newCopyPairs)
	merge    *merger
	mounts   []*api.MountPointInfo
}

func newPairPlanner(env Env, src, dst string, cmp compare) *pairPlanner {
	return &pairPlanner{env: env, src: src, dst: dst, cmp: cmp}
}

// source is the merge of SRC and DST, resumed after cur (a fileSource for
// the item planner).
func (pp *pairPlanner) source(pageSize int, sync bool, sel *spec.Selector) func(cur itemCursor) fileSource {
	return func(cur itemCursor) fileSource {
		pp.merge = newMerger(pp.env, pp.src, pp.dst, cur.After, pageSize, sync, sel)
		return pp.merge
	}
}

// conflict reports a place that is a file on one side and a directory on
// the other.
func conflict(p pair) *api.FailedPath {
	if p.src == nil || p.dst == nil || p.src.GetFolder() == p.dst.GetFolder() {
		return nil
	}
	if p.src.GetFolder() {
		return failedf(p.src.GetPath(), "a directory, but %s is a file", p.dst.GetPath())
	}
	return failedf(p.src.GetPath(), "a file, but %s is a directory", p.dst.GetPath())
}

// copyItems plans the source file of p: skipped, or copied.
func (pp *pairPlanner) copyItems(ctx context.Context, p pair, workers []blockWorker) ([]item, []*api.FailedPath, error) {
	if p.src == nil {
		return nil, nil, nil
	}
	if f := conflict(p); f != nil {
		return nil, []*api.FailedPath{f}, nil
	}
	v := pp.cmp.judge(p.src, p.dst)
	if v == skipIt {
		return []item{{Skip: true, Bytes: p.src.GetLength(), Desc: p.src.GetPath()}}, nil, nil
	}
	if pp.mounts == nil {
		m, err := mountTable(ctx, pp.env)
		if err != nil {
			return nil, nil, err
		}
		pp.mounts = m
	}
	e, failed := newCopyElem(p.src, joinRel(pp.dst, p.rel), pp.mounts)
	if failed != nil {
		return nil, []*api.FailedPath{failed}, nil
	}
	e.DstID, e.Check = p.dst.GetFileId(), v == checkIt
	return []item{{
		Elem: e, Bytes: e.Length, Files: 1, Target: holder(e.Blocks, workers, ""),
		Batch: len(e.Blocks) <= 1 && e.Length <= smallFileBytes, Desc: e.Src,
	}}, nil, nil
}

func newCopyElem(f *api.FileInfo, d string, mounts []*api.MountPointInfo) (copyElem, *api.FailedPath) {
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
		BlockSize: f.GetBlockSizeBytes(), Mode: f.GetMode(), MTime: f.GetLastModificationTimeMs(), Blocks: blocks, Parts: len(f.GetExtents()) > 0}
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
	pp, src, err := newCopyPairs(env, job, c)
	if err != nil {
		return nil, err
	}
	return newItemPlannerFrom(env, "copy", job, src, c.Batching,
		func(ctx context.Context, _ *api.FileInfo, workers []blockWorker) ([]item, []*api.FailedPath, error) {
			return pp.copyItems(ctx, pp.merge.Pair(), workers)
		})
}

// Run implements Plan.
func (Copy) Run(ctx context.Context, env Env, t *Task) (Result, error) {
	c, err := spec.DecodeCopy(t.Config)
	if err != nil {
		return Result{}, err
	}
	return runCopy(ctx, env, t, "copy", compareOf(c))
}

// compareOf is how a copy (or sync) job compares a file with its copy.
func compareOf(c spec.CopyConfig) compare {
	return compare{overwrite: c.Overwrite, ignoreExisting: c.IgnoreExisting, checksum: c.Checksum}
}

// newCopyPairs is the pair planner of a copy (or sync) job and the merge
// of SRC and DST it plans from, filtered and synced as c asks.
func newCopyPairs(env Env, job Job, c spec.CopyConfig) (*pairPlanner, func(itemCursor) fileSource, error) {
	sel, err := c.Filter.Compile(job.CreatedMs)
	if err != nil {
		return nil, nil, err
	}
	pp := newPairPlanner(env, c.Src, c.Dst, compareOf(c))
	pp.sel = sel
	return pp, pp.source(c.PageSize, !c.NoSync, sel), nil
}

// runCopy runs a task of copy elements (copy, and sync's first round).
func runCopy(ctx context.Context, env Env, t *Task, plan string, cmp compare) (Result, error) {
	// itemArgs with its elements decoded in the same pass.
	var a struct {
		Items []copyElem `json:"i"`
	}
	if err := json.Unmarshal(t.Args, &a); err != nil {
		return Result{}, fmt.Errorf("%s task %d/%d: bad args: %w", plan, t.JobID, t.TaskID, err)
	}
	ws, err := liveBlockWorkers(ctx, env)
	if err != nil {
		return Result{}, err
	}
	cp := copier{env: env, t: t, cmp: cmp, workers: ws}
	elems := a.Items
	// Files of a block or less go together: one call writes them all to
	// the UFS, one call enters them all in the namespace.
	var small []int
	for i, e := range elems {
		if len(e.Blocks) <= 1 && !e.Check {
			small = append(small, i)
		}
	}
	batched := map[int]copyOutcome{}
	if len(small) > 1 {
		batched = cp.copySmall(ctx, elems, small)
	}
	return runEach(ctx, t, len(elems), itemParallelism, func(ctx context.Context, i int) itemResult {
		e := elems[i]
		o, done := batched[i]
		if !done {
			_, o.skipped, o.err = cp.copyFile(ctx, e)
		}
		switch {
		case o.err != nil:
			return failedResult(wrapf(o.err, "%s %s to %s", plan, e.Src, e.Dst), failedf(e.Src, "%s", msg(o.err)))
		case o.skipped:
			return skippedResult(e.Length)
		}
		return itemResult{bytes: e.Length}
	})
}

// copyOutcome is what became of one file of a task.
type copyOutcome struct {
	skipped bool // DST already was the copy
	err     error
}

// copySmall copies small files with one WriteUfsFilesFrom call per block
// worker and one CreateFiles call, and returns each file's outcome (a file
// it leaves out of the map is copied on its own).
func (cp copier) copySmall(ctx context.Context, elems []copyElem, idx []int) map[int]copyOutcome {
	out := map[int]copyOutcome{}
	var todo []int
	for _, i := range idx {
		e := elems[i]
		if cp.mayExist(e) {
			st, err := cp.existing(ctx, e)
			if err != nil || st != dstCopy {
				out[i] = copyOutcome{skipped: st == dstSkip, err: err}
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
			req.Files[k] = elems[i].writeRequest(cp.cmp.checksum)
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
				out[i] = copyOutcome{err: status.Errorf(codes.Code(r.GetCode()), "write %s on %s: %s", elems[i].DstUfs, addr, r.GetError())}
			case r.GetResponse().GetLength() != elems[i].Length:
				out[i] = copyOutcome{err: status.Errorf(codes.DataLoss, "wrote %d bytes, the source has %d (changed?)", r.GetResponse().GetLength(), elems[i].Length)}
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
			out[i] = copyOutcome{err: wrapf(err, "create %s", elems[i].Dst)}
		}
		return out
	}
	for k, r := range cresp.GetResults() {
		if k >= len(written) {
			break
		}
		i := written[k]
		if r.GetError() != "" {
			out[i] = copyOutcome{err: status.Errorf(codes.Code(r.GetCode()), "%s", r.GetError())}
			continue
		}
		out[i] = copyOutcome{err: cp.checkMount(ctx, elems[i], r.GetInfo())}
	}
	return out
}

// What existing finds at a file's destination.
type dstState int

const (
	dstCopy dstState = iota // copy the file (nothing there, or it differs)
	dstDone                 // an earlier attempt of this task copied it
	dstSkip                 // it already is the copy (or --ignore-existing)
)

// mayExist: DST may hold a file the copy must look at first (planned so,
// or an earlier attempt of the task may have written it).
func (cp copier) mayExist(e copyElem) bool { return e.DstID != 0 || cp.t.Attempt > 1 || e.Check }

// existing looks at DST before a file is copied, as planned or as an
// earlier attempt left it: whether it must still be copied, or already is
// the copy; an error when it may not be replaced.
func (cp copier) existing(ctx context.Context, e copyElem) (dstState, error) {
	d, err := exists(ctx, cp.env, e.Dst)
	if err != nil || d == nil {
		return dstCopy, err
	}
	switch {
	case d.GetFolder():
		return dstCopy, status.Errorf(codes.FailedPrecondition, "%s is a directory", e.Dst)
	case cp.cmp.ignoreExisting:
		return dstSkip, nil
	case sameCopy(d, e) && d.GetFileId() != e.DstID:
		// Made since planning: by an earlier attempt of this task, or by
		// someone else copying the same file.
		if cp.t.Attempt > 1 {
			return dstDone, nil
		}
		return dstSkip, nil
	case e.Check && d.GetCompleted() && d.GetLength() == e.Length:
		same, err := cp.sameContent(ctx, e, d)
		if err != nil {
			return dstCopy, err
		}
		if same {
			return dstSkip, nil
		}
	}
	return dstCopy, nil
}

// sameContent compares the SHA-256 of e's source with that of d, its
// destination, both hashed by one block worker.
func (cp copier) sameContent(ctx context.Context, e copyElem, d *api.FileInfo) (bool, error) {
	addr, err := cp.worker(ctx, e.Blocks)
	if err != nil {
		return false, err
	}
	bw, err := cp.env.BlockWorker(addr)
	if err != nil {
		return false, err
	}
	de := copyElem{Length: d.GetLength(), Blocks: fileBlocks(d), Ufs: d.GetUfsPath(), Mount: d.GetMountId(), FP: d.GetUfsFingerprint()}
	if !persisted(d) {
		de.Ufs = ""
	}
	var (
		sums [2]string
		errs [2]error
		wg   sync.WaitGroup
	)
	for i, x := range []copyElem{e, de} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h, err := bw.HashBlocks(ctx, &api.HashBlocksRequest{Sources: x.sources()})
			if err != nil {
				errs[i] = wrapf(err, "checksum of %s", []string{e.Src, e.Dst}[i])
				return
			}
			sums[i] = h.GetSha256()
		}()
	}
	wg.Wait()
	if err := errors.Join(errs[0], errs[1]); err != nil {
		return false, err
	}
	return sums[0] == sums[1], nil
}

// writeRequest writes e's bytes to its destination UFS path; with
// checksum, checked before the file takes its name. The copy needs the
// check, not the sum (no_sha256): a local file copied in the kernel is
// compared with its source byte for byte instead of both being hashed.
func (e copyElem) writeRequest(checksum bool) *api.WriteUfsFileFromRequest {
	return &api.WriteUfsFileFromRequest{
		Dest: &api.WriteUfsFileHeader{MountId: e.DstMount, UfsPath: e.DstUfs, Overwrite: true, CreateParent: true, Mode: e.Mode,
			LastModificationTimeMs: e.MTime},
		Sources:  e.sources(),
		Checksum: checksum,
		NoSha256: checksum,
	}
}

// createRequest enters e's written copy in the namespace, complete.
func (e copyElem) createRequest(w *api.WriteUfsFileFromResponse) *api.CreateFileRequest {
	return &api.CreateFileRequest{Path: e.Dst, BlockSizeBytes: max(e.BlockSize, 0), WriteType: api.WriteType_THROUGH,
		Recursive: true, Overwrite: true, Mode: e.Mode, Complete: true, Length: w.GetLength(), UfsFingerprint: w.GetUfsFingerprint(),
		LastModificationTimeMs: e.MTime}
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
	env     Env
	t       *Task
	cmp     compare       // how an existing DST is judged (overwrite, ...)
	workers []blockWorker // live block workers; nil: look them up
}

// copyFile copies e.Src to e.Dst and returns the new file's status, and
// skipped when DST already was the copy (or exists, --ignore-existing). A
// DST an earlier attempt of this task completed counts as copied.
func (cp copier) copyFile(ctx context.Context, e copyElem) (info *api.FileInfo, skipped bool, err error) {
	if cp.mayExist(e) {
		st, err := cp.existing(ctx, e)
		if err != nil {
			return nil, false, err
		}
		if st != dstCopy {
			d, err := exists(ctx, cp.env, e.Dst)
			return d, st == dstSkip, err
		}
	}
	if len(e.Blocks) > 1 && !e.Parts {
		info, err = cp.copyLarge(ctx, e)
	} else {
		info, err = cp.copyDirect(ctx, e)
	}
	return info, false, err
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
	wr, err := bw.WriteUfsFileFrom(ctx, e.writeRequest(cp.cmp.checksum))
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

// partParallelism is how many parts of a large file are fetched at once.
const partParallelism = 4

// copyLarge splits a multi-block file by blocks. DST is created aside (an
// overwrite: the FS master keeps showing the old DST, or nothing, until
// the new file completes, and then swaps it in at once); each block is
// fetched by a block worker (spread over the live ones, the holder of a
// cached source block first) into the cache as a block of the new file;
// the worker holding most parts writes them to the new file's temporary
// UFS path; completing the file renames that onto DST's and replaces the
// old DST in one step, its blocks staying cached. A part that could not be
// fetched is read from the source during the assembly. A copy that fails
// drops the file it wrote aside: DST is untouched.
func (cp copier) copyLarge(ctx context.Context, e copyElem) (info *api.FileInfo, err error) {
	fs := cp.env.FS()
	// The directories creating DST makes, deepest first: a failed copy
	// removes them again (when still empty).
	var made []string
	for d, _ := paths.Split(e.Dst); d != "/"; d, _ = paths.Split(d) {
		x, err := exists(ctx, cp.env, d)
		if err != nil {
			return nil, wrapf(err, "stat %s", d)
		}
		if x != nil {
			break
		}
		made = append(made, d)
	}
	cr, err := fs.CreateFile(ctx, &api.CreateFileRequest{Path: e.Dst, BlockSizeBytes: e.BlockSize, WriteType: api.WriteType_MUST_CACHE,
		Recursive: true, Overwrite: true, Mode: e.Mode})
	if err != nil {
		return nil, wrapf(err, "create %s", e.Dst)
	}
	tinfo := cr.GetInfo()
	defer func() {
		if err != nil {
			// Nothing half-made stays: the file written aside goes (its
			// UFS copy and cached blocks with it), by id — only the file
			// this copy made, never the DST it would have replaced.
			dctx := context.WithoutCancel(ctx)
			_ = remove(dctx, fs, e.Dst, tinfo.GetFileId())
			for _, d := range made {
				// Never past the UFS's word (remove would drop the
				// namespace entry alone): other tasks of the job may be
				// writing files into the directory this one made.
				if _, err := fs.Delete(dctx, &api.DeleteRequest{Path: d}); err != nil && status.Code(err) != codes.NotFound {
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
	)
	eachLimit(ctx, len(e.Blocks), partParallelism, func(i int) {
		b := e.Blocks[i]
		target, from := ws[(i+int(cp.t.TaskID))%len(ws)].addr, ""
		for _, a := range b.Workers {
			if live[a] {
				target, from = a, a // a local copy on the holder: no network
				break
			}
		}
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
	})
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
	actx := ctx
	if !slices.Contains(parts, "") {
		// Every part was fetched under the job's bandwidth: the assembly
		// moves the same bytes again and does not count them twice.
		actx = rpc.WithoutRate(ctx)
	}
	wr, err := bw.WriteUfsFileFrom(actx, &api.WriteUfsFileFromRequest{
		Dest: &api.WriteUfsFileHeader{MountId: tinfo.GetMountId(), UfsPath: tinfo.GetUfsPath(), Overwrite: true, CreateParent: true, Mode: e.Mode,
			LastModificationTimeMs: e.MTime},
		Sources:  asm,
		Checksum: cp.cmp.checksum,
	})
	if err != nil {
		return nil, wrapf(err, "assemble %s on %s", e.Dst, best)
	}
	if wr.GetLength() != e.Length {
		return nil, status.Errorf(codes.DataLoss, "assembled %d bytes, the source has %d (changed?)", wr.GetLength(), e.Length)
	}
	if cp.cmp.checksum {
		// The parts are copies: compare with the source itself.
		h, err := bw.HashBlocks(ctx, &api.HashBlocksRequest{Sources: srcs})
		if err != nil {
			return nil, wrapf(err, "checksum of the source")
		}
		if h.GetSha256() != wr.GetSha256() {
			return nil, status.Errorf(codes.DataLoss, "checksum mismatch: source sha256 %s, copy %s", h.GetSha256(), wr.GetSha256())
		}
	}
	// Completing swaps the new file in, replacing whatever DST is then.
	cf, err := fs.CompleteFile(ctx, &api.CompleteFileRequest{Path: e.Dst, Length: wr.GetLength(), UfsFingerprint: wr.GetUfsFingerprint(),
		FileId: tinfo.GetFileId(), LastModificationTimeMs: e.MTime})
	if err != nil {
		return nil, wrapf(err, "complete %s", e.Dst)
	}
	return cf.GetInfo(), nil
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
