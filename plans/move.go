package plans

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/paths"
	"github.com/alluvium/alluvium/plans/spec"
)

// Move moves a file or a tree to a new path. Within one mount, onto a DST
// that does not exist, it is one rename in the FS master (the UFS renamed
// too, every block staying cached): one task. Otherwise each file is a
// task: within a mount a rename of the file; across mounts a copy that is
// verified (SHA-256 of the source against the destination read back),
// whose cached blocks are copied beside the source's on the same workers,
// and only then the source deleted. Into an existing DST, as copy does: a
// file whose copy at DST has its size and modification time is not moved
// again — its source is removed; one that differs is replaced in one step
// (--overwrite replaces every file; --ignore-existing leaves a file DST
// has where it is, at the source). A second round removes the emptied
// source directories once every file moved (a move that leaves files
// behind, by a filter or --ignore-existing, leaves their directories).
// Moving a directory into itself is refused at submit.
type Move struct{}

// Name implements Plan.
func (Move) Name() string { return "move" }

// Validate implements Plan.
func (Move) Validate(ctx context.Context, env Env, config []byte) (spec.Valid, error) {
	c, err := spec.DecodeMove(config)
	if err != nil {
		return spec.Valid{}, err
	}
	src, dst, err := checkSrcDst(ctx, env, "move", c.Src, c.Dst)
	if err != nil {
		return spec.Valid{}, err
	}
	if src.GetMountPoint() {
		return spec.Valid{}, status.Errorf(codes.FailedPrecondition, "move %s: it is a mount point (unmount it, or move what is inside)", c.Src)
	}
	// A move reads the source, takes it out of its directory and puts it
	// in the destination's.
	if err := requireAccess(ctx, env, "move", c.Src, accessRead, true); err != nil {
		return spec.Valid{}, err
	}
	if err := requireParentWrite(ctx, env, "move", c.Src); err != nil {
		return spec.Valid{}, err
	}
	mounts, err := mountTable(ctx, env)
	if err != nil {
		return spec.Valid{}, err
	}
	ms, _ := mountFor(mounts, c.Src)
	md, _ := mountFor(mounts, c.Dst)
	if md != nil && md.GetReadOnly() {
		return spec.Valid{}, status.Errorf(codes.FailedPrecondition, "move %s to %s: %s is in the read-only mount %s", c.Src, c.Dst, c.Dst, md.GetAlluviumPath())
	}
	if ms != nil && ms.GetReadOnly() {
		return spec.Valid{}, status.Errorf(codes.FailedPrecondition, "move %s: it is in the read-only mount %s", c.Src, ms.GetAlluviumPath())
	}
	same := ms != nil && md != nil && ms.GetMountId() == md.GetMountId()
	c.DstExisted = dst != nil
	c.Whole = same && dst == nil && c.Filter.Empty()
	return spec.Accept(c)
}

// Done implements Plan: a file-by-file move that moved every file goes on
// to a round that removes the emptied source tree.
func (Move) Done(ctx context.Context, env Env, job Job) (bool, error) {
	c, err := spec.DecodeMove(job.Config)
	if err != nil {
		return true, err
	}
	return c.Whole || c.DryRun || job.Round > 0 || job.RoundFailed > 0, nil
}

// moveElem is one move task element.
type moveElem struct {
	Op  string `json:"op"` // whole, rename, copy, drop, cleanup
	Src string `json:"s"`
	Dst string `json:"d"`
	// ID and DstID: the files at Src and Dst when planned (0: none);
	// Length and MTime: Src's then (drop).
	ID     int64     `json:"id,omitempty"`
	DstID  int64     `json:"di,omitempty"`
	Length int64     `json:"l,omitempty"`
	MTime  int64     `json:"mt,omitempty"`
	Copy   *copyElem `json:"c,omitempty"`
	// Partial (cleanup): files were meant to stay behind (a filter,
	// --ignore-existing), so a source still holding some is no error.
	Partial bool `json:"p,omitempty"`
}

// moveCount is a whole move's planning state: the files it walked (a
// rename moves them all).
type moveCount struct {
	Files int64 `json:"files"`
}

// NewPlanner implements Plan.
func (Move) NewPlanner(ctx context.Context, env Env, job Job) (Planner, error) {
	c, err := spec.DecodeMove(job.Config)
	if err != nil {
		return nil, err
	}
	if job.Round > 0 {
		p, err := newItemPlannerFrom(env, "move", job, func(itemCursor) fileSource { return emptySource{} }, oneByOne, nil)
		if err != nil {
			return nil, err
		}
		partial := !c.Filter.Empty() || c.IgnoreExisting
		return p.withFinal(item{Elem: moveElem{Op: "cleanup", Src: c.Src, Dst: c.Dst, Partial: partial}, Desc: c.Src}), nil
	}
	if c.Whole {
		// One rename; the walk only counts the files it moves.
		var n moveCount
		p, err := newItemPlanner(env, "move", job, walkOpts{Root: c.Src, PageSize: c.PageSize}, oneByOne,
			func(context.Context, *api.FileInfo, []blockWorker) ([]item, []*api.FailedPath, error) {
				n.Files++
				return nil, nil, nil
			})
		if err != nil {
			return nil, err
		}
		if _, err := p.withState(&n); err != nil {
			return nil, err
		}
		p.onDone = func(context.Context) ([]item, error) {
			return []item{{Elem: moveElem{Op: "whole", Src: c.Src, Dst: c.Dst}, Files: n.Files, Desc: c.Src}}, nil
		}
		return p, nil
	}
	sel, err := c.Filter.Compile(job.CreatedMs)
	if err != nil {
		return nil, err
	}
	pp := newPairPlanner(env, c.Src, c.Dst, compare{overwrite: c.Overwrite, ignoreExisting: c.IgnoreExisting})
	gen := func(ctx context.Context, _ *api.FileInfo, workers []blockWorker) ([]item, []*api.FailedPath, error) {
		return pp.moveItems(ctx, pp.merge.Pair(), workers)
	}
	return newItemPlannerFrom(env, "move", job, pp.source(c.PageSize, !c.NoSync, sel), spec.Batching{}, gen)
}

// moveItems plans the source file of p: left where it is, dropped (its
// copy at DST is the same), renamed (one mount) or copied and removed.
func (pp *pairPlanner) moveItems(ctx context.Context, p pair, workers []blockWorker) ([]item, []*api.FailedPath, error) {
	if p.src == nil {
		return nil, nil, nil
	}
	if f := conflict(p); f != nil {
		return nil, []*api.FailedPath{f}, nil
	}
	if pp.mounts == nil {
		m, err := mountTable(ctx, pp.env)
		if err != nil {
			return nil, nil, err
		}
		pp.mounts = m
	}
	f, d := p.src, joinRel(pp.dst, p.rel)
	e := moveElem{Src: f.GetPath(), Dst: d, ID: f.GetFileId(), DstID: p.dst.GetFileId(), Length: f.GetLength(), MTime: f.GetLastModificationTimeMs()}
	switch pp.cmp.judge(f, p.dst) {
	case skipIt:
		if pp.cmp.ignoreExisting {
			return []item{{Skip: true, Bytes: f.GetLength(), Desc: f.GetPath()}}, nil, nil
		}
		e.Op = "drop"
		return []item{{Elem: e, Skip: true, Bytes: f.GetLength(), Batch: true, Desc: f.GetPath()}}, nil, nil
	}
	ms, _ := mountFor(pp.mounts, f.GetPath())
	md, _ := mountFor(pp.mounts, d)
	if ms != nil && md != nil && ms.GetMountId() == md.GetMountId() {
		e.Op = "rename"
		return []item{{Elem: e, Files: 1, Batch: true, Desc: f.GetPath()}}, nil, nil
	}
	items, failed, err := pp.copyItems(ctx, pair{rel: p.rel, src: f}, workers)
	for i := range items {
		ce := items[i].Elem.(copyElem)
		ce.DstID = e.DstID
		e.Op, e.Copy = "copy", &ce
		items[i].Elem = e
	}
	return items, failed, err
}

// withFinal makes the planner end with one more item.
func (p *itemPlanner) withFinal(it item) *itemPlanner {
	p.onDone = func(context.Context) ([]item, error) { return []item{it}, nil }
	return p
}

// emptySource yields nothing.
type emptySource struct{}

func (emptySource) Next(context.Context) (*api.FileInfo, error) { return nil, io.EOF }
func (emptySource) Pos() string                                 { return "" }

// Run implements Plan.
func (Move) Run(ctx context.Context, env Env, t *Task) (Result, error) {
	c, err := spec.DecodeMove(t.Config)
	if err != nil {
		return Result{}, err
	}
	return runItems(ctx, t, itemParallelism, func(ctx context.Context, raw json.RawMessage) itemResult {
		var e moveElem
		if err := json.Unmarshal(raw, &e); err != nil {
			return itemResult{err: fmt.Errorf("move: bad task element: %w", err)}
		}
		n, err := moveOne(ctx, env, t, c, e)
		if err != nil {
			return failedResult(wrapf(err, "move %s to %s", e.Src, e.Dst), failedf(e.Src, "%s", msg(err)))
		}
		return itemResult{bytes: n}
	})
}

func moveOne(ctx context.Context, env Env, t *Task, c spec.MoveConfig, e moveElem) (int64, error) {
	fs := env.FS()
	switch e.Op {
	case "whole":
		return 0, renameOver(ctx, env, e.Src, e.Dst, false)
	case "rename":
		// Replaces only what was planned to be replaced: a file that
		// appeared at DST since is not clobbered.
		return 0, renameOver(ctx, env, e.Src, e.Dst, e.DstID != 0 || c.Overwrite)
	case "drop":
		return 0, dropSource(ctx, env, e)
	case "cleanup":
		return 0, removeEmptied(ctx, env, e.Src, e.Partial)
	case "copy":
	default:
		return 0, fmt.Errorf("unknown move step %q", e.Op)
	}
	ce := *e.Copy
	// The source must still be the file planned; a retry after the source
	// was deleted by an earlier attempt finds the copy done.
	src, err := exists(ctx, env, ce.Src)
	if err != nil {
		return 0, err
	}
	if src == nil {
		if d, _ := exists(ctx, env, ce.Dst); d != nil && !d.GetFolder() && d.GetLength() == ce.Length && t.Attempt > 1 {
			return 0, nil
		}
		return 0, status.Errorf(codes.NotFound, "%s is gone", ce.Src)
	}
	if src.GetFileId() != ce.ID {
		return 0, status.Errorf(codes.FailedPrecondition, "%s was replaced by another file while moving", ce.Src)
	}
	// Fresh locations: the copy reads cached blocks where they are now.
	ce.Blocks, ce.Parts = fileBlocks(src), len(src.GetExtents()) > 0
	if persisted(src) {
		ce.Ufs, ce.Mount, ce.FP = src.GetUfsPath(), src.GetMountId(), src.GetUfsFingerprint()
	}
	cp := copier{env: env, t: t, cmp: compare{overwrite: c.Overwrite, checksum: true}}
	dst, _, err := cp.copyFile(ctx, ce)
	if err != nil {
		return 0, err
	}
	keepCache(ctx, env, ce, dst)
	// Only the file that was copied is deleted (and its UFS copy with it).
	if now, err := exists(ctx, env, ce.Src); err != nil {
		return 0, err
	} else if now != nil && now.GetFileId() != ce.ID {
		return 0, status.Errorf(codes.FailedPrecondition, "%s was replaced while moving; the new one is left in place", ce.Src)
	} else if now != nil {
		if _, err := fs.Delete(ctx, &api.DeleteRequest{Path: ce.Src, FileId: ce.ID}); err != nil && status.Code(err) != codes.NotFound {
			return 0, wrapf(err, "copied, but deleting the source failed")
		}
	}
	return ce.Length, nil
}

// dropSource removes a source file whose copy at DST already is the same
// (size and modification time), after checking both are still what was
// planned.
func dropSource(ctx context.Context, env Env, e moveElem) error {
	d, err := exists(ctx, env, e.Dst)
	if err != nil {
		return err
	}
	if !sameCopy(d, copyElem{Length: e.Length, MTime: e.MTime}) {
		return status.Errorf(codes.FailedPrecondition, "%s changed since the job was planned; %s is left in place", e.Dst, e.Src)
	}
	_, err = env.FS().Delete(ctx, &api.DeleteRequest{Path: e.Src, FileId: e.ID})
	switch status.Code(err) {
	case codes.OK, codes.NotFound:
		return nil
	case codes.FailedPrecondition:
		return status.Errorf(codes.FailedPrecondition, "%s was replaced while moving; the new one is left in place", e.Src)
	}
	return wrapf(err, "delete %s", e.Src)
}

// keepCache copies the source's cached blocks, on the workers that hold
// them, as the blocks of the moved file: the move keeps the cache warm.
// Best effort.
func keepCache(ctx context.Context, env Env, e copyElem, dst *api.FileInfo) {
	if dst == nil || dst.GetFileId() == 0 || dst.GetBlockSizeBytes() != e.BlockSize || e.Parts {
		// Another geometry: the source's blocks are not the copy's.
		return
	}
	for i, b := range e.Blocks {
		for _, a := range b.Workers {
			bw, err := env.BlockWorker(a)
			if err != nil {
				continue
			}
			_, _ = bw.CopyBlockFrom(ctx, &api.CopyBlockFromRequest{BlockId: api.BlockID(dst.GetFileId(), int64(i)), SourceBlockId: b.ID, Length: b.Length})
		}
	}
}

// renameOver renames src onto dst — replacing a dst file in one step when
// overwrite — creating dst's parents.
func renameOver(ctx context.Context, env Env, src, dst string, overwrite bool) error {
	fs := env.FS()
	if parent, _ := paths.Split(dst); parent != "/" {
		if _, err := fs.CreateDirectory(ctx, &api.CreateDirectoryRequest{Path: parent, Recursive: true, AllowExists: true}); err != nil {
			return wrapf(err, "create %s", parent)
		}
	}
	_, err := fs.Rename(ctx, &api.RenameRequest{Src: src, Dst: dst, Overwrite: overwrite})
	if status.Code(err) == codes.NotFound {
		// A retry after the rename went through finds the source gone.
		if s, _ := exists(ctx, env, src); s == nil {
			if d, _ := exists(ctx, env, dst); d != nil {
				return nil
			}
		}
	}
	return err
}

// removeEmptied deletes the source tree once no file is left in it. With
// partial, files were meant to stay (a filter, --ignore-existing): a tree
// still holding some is left as it is.
func removeEmptied(ctx context.Context, env Env, src string, partial bool) error {
	w := newWalker(env.FS(), src, "", spec.DefaultPageSize, false)
	f, err := w.Next(ctx)
	switch {
	case err == io.EOF:
	case status.Code(err) == codes.NotFound:
		return nil // already gone
	case err != nil:
		return err
	case partial:
		return nil
	default:
		return status.Errorf(codes.FailedPrecondition, "%s still holds %s: not removed", src, f.GetPath())
	}
	_, err = env.FS().Delete(ctx, &api.DeleteRequest{Path: src, Recursive: true})
	if status.Code(err) == codes.NotFound {
		return nil
	}
	return err
}
