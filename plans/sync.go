package plans

import (
	"context"
	"encoding/json"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/paths"
	"github.com/alluvium/alluvium/plans/spec"
)

// Sync makes DST mirror SRC, across mounts and UFS kinds: what is new or
// changed is copied as copy does (round 0), and what DST holds that SRC
// no longer has is deleted (round 1), as rclone's sync. Round 0 only
// counts the deletes (the job's deletes); the delete round starts only
// when every copy succeeded, and not at all when there are more deletes
// than --max-delete — the job fails before deleting anything. So a source
// that cannot be listed (an error, a missing mount) deletes nothing: its
// listing error fails the job in round 0. The delete round lists both
// trees again and deletes each file DST has and SRC lacks — a directory
// SRC lacks as a whole, in one call, when no filter is set — never more
// than --max-delete in all (should SRC have lost more since round 0, it
// stops there and fails), never outside DST, and only what is still as it
// was listed (by inode id) and still missing from SRC when its task runs.
// A file the filter leaves out is neither copied nor deleted.
type Sync struct{}

// Name implements Plan.
func (Sync) Name() string { return "sync" }

// Validate implements Plan.
func (Sync) Validate(ctx context.Context, env Env, config []byte) (spec.Valid, error) {
	c, err := spec.DecodeSync(config)
	if err != nil {
		return spec.Valid{}, err
	}
	if c.CopyConfig, err = validateCopy(ctx, env, "sync", c.CopyConfig); err != nil {
		return spec.Valid{}, err
	}
	return spec.Accept(c)
}

// Done implements Plan: after the copy round, the delete round — unless a
// copy failed (the job fails, nothing deleted), there is nothing to
// delete, it is a dry run, or --max-delete would be passed (the job
// fails, nothing deleted).
func (Sync) Done(ctx context.Context, env Env, job Job) (bool, error) {
	c, err := spec.DecodeSync(job.Config)
	if err != nil {
		return true, err
	}
	if job.Round > 0 || job.RoundFailed > 0 {
		return true, nil
	}
	if c.MaxDelete != nil && job.Deletes > *c.MaxDelete {
		would := ""
		if c.DryRun {
			would = " (dry run)"
		}
		return true, status.Errorf(codes.FailedPrecondition, "sync %s to %s%s: %d file(s) to delete, more than --max-delete %d: nothing was deleted",
			c.Src, c.Dst, would, job.Deletes, *c.MaxDelete)
	}
	return c.DryRun || job.Deletes == 0, nil
}

// syncDelete is one delete of the second round: Path (under DST) is
// deleted if it still is the inode ID and Src (its place in SRC) still
// does not exist.
type syncDelete struct {
	Path  string `json:"p"`
	ID    int64  `json:"id"`
	Src   string `json:"s"`
	Dir   bool   `json:"dir,omitempty"`
	Files int64  `json:"n,omitempty"` // files under a directory deleted whole
}

// syncDeletes is the delete round's planning state, kept in its cursor: the
// files planned for deletion so far (for --max-delete) and the directory
// SRC lacks whose subtree is being walked, deleted whole once it has been
// counted.
type syncDeletes struct {
	Planned int64  `json:"planned,omitempty"`
	Dir     string `json:"dir,omitempty"` // rel; "" none
	DirID   int64  `json:"dirId,omitempty"`
	Files   int64  `json:"files,omitempty"`
}

// NewPlanner implements Plan.
func (Sync) NewPlanner(ctx context.Context, env Env, job Job) (Planner, error) {
	c, err := spec.DecodeSync(job.Config)
	if err != nil {
		return nil, err
	}
	pp, src, err := newCopyPairs(env, job, c.CopyConfig)
	if err != nil {
		return nil, err
	}
	if job.Round == 0 {
		return newItemPlannerFrom(env, "sync", job, src, c.Batching,
			func(ctx context.Context, _ *api.FileInfo, workers []blockWorker) ([]item, []*api.FailedPath, error) {
				p := pp.merge.Pair()
				if p.dstOnly() {
					if p.dst.GetFolder() {
						return nil, nil, nil // its files are counted one by one
					}
					return []item{{Deletes: 1, Desc: p.dst.GetPath()}}, nil, nil
				}
				return pp.copyItems(ctx, p, workers)
			})
	}
	var st syncDeletes
	// A directory SRC lacks goes in one call only when every file in it
	// was listed and goes: no filter keeps some, the listing was synced
	// with the UFS (else DST may hold files never counted).
	whole := !pp.sel.Partial() && !c.NoSync
	limit := int64(-1)
	if c.MaxDelete != nil {
		limit = *c.MaxDelete
	}
	over := func(n int64) error {
		if limit >= 0 && n > limit {
			return status.Errorf(codes.FailedPrecondition, "sync %s to %s: more than --max-delete %d file(s) to delete (the source lost files since the job began?); stopped",
				c.Src, c.Dst, limit)
		}
		return nil
	}
	// flush plans the delete of the directory being counted.
	flush := func() ([]item, error) {
		if st.Dir == "" {
			return nil, nil
		}
		d := syncDelete{Path: joinRel(c.Dst, st.Dir), ID: st.DirID, Src: joinRel(c.Src, st.Dir), Dir: true, Files: st.Files}
		st.Planned += st.Files
		st.Dir, st.DirID, st.Files = "", 0, 0
		return []item{{Elem: d, Batch: true, Desc: d.Path}}, nil
	}
	gen := func(ctx context.Context, _ *api.FileInfo, _ []blockWorker) ([]item, []*api.FailedPath, error) {
		p := pp.merge.Pair()
		if st.Dir != "" && p.rel == st.Dir {
			return nil, nil, nil // listed again after a resume: being counted
		}
		var out []item
		if st.Dir != "" && !under(st.Dir, p.rel) {
			items, err := flush()
			if err != nil {
				return nil, nil, err
			}
			out = items
		}
		if !p.dstOnly() {
			return out, nil, nil
		}
		switch f := p.dst; {
		case st.Dir != "" && f.GetFolder():
			// inside the directory deleted whole
		case st.Dir != "":
			st.Files++
			if err := over(st.Planned + st.Files); err != nil {
				return nil, nil, err
			}
		case f.GetFolder():
			if whole && !f.GetMountPoint() {
				st.Dir, st.DirID, st.Files = p.rel, f.GetFileId(), 0
			}
		default:
			if err := over(st.Planned + 1); err != nil {
				return nil, nil, err
			}
			st.Planned++
			d := syncDelete{Path: f.GetPath(), ID: f.GetFileId(), Src: joinRel(c.Src, p.rel)}
			out = append(out, item{Elem: d, Batch: true, Desc: d.Path})
		}
		return out, nil, nil
	}
	p, err := newItemPlannerFrom(env, "sync", job, src, c.Batching, gen)
	if err != nil {
		return nil, err
	}
	p.onDone = func(context.Context) ([]item, error) { return flush() }
	return p.withState(&st)
}

// Run implements Plan.
func (Sync) Run(ctx context.Context, env Env, t *Task) (Result, error) {
	c, err := spec.DecodeSync(t.Config)
	if err != nil {
		return Result{}, err
	}
	var a itemArgs
	if err := json.Unmarshal(t.Args, &a); err != nil {
		return Result{}, fmt.Errorf("sync task %d/%d: bad args: %w", t.JobID, t.TaskID, err)
	}
	if len(a.Items) == 0 {
		return Result{}, nil
	}
	var probe struct {
		Path *string `json:"p"`
	}
	if err := json.Unmarshal(a.Items[0], &probe); err != nil {
		return Result{}, fmt.Errorf("sync: bad task element: %w", err)
	}
	if probe.Path == nil {
		// The copy round's elements (copyElem has no "p").
		return runCopy(ctx, env, t, "sync", compareOf(c.CopyConfig))
	}
	return runItems(ctx, t, itemParallelism, func(ctx context.Context, raw json.RawMessage) itemResult {
		var d syncDelete
		if err := json.Unmarshal(raw, &d); err != nil {
			return itemResult{err: fmt.Errorf("sync: bad task element: %w", err)}
		}
		if err := syncDeleteOne(ctx, env, c, d); err != nil {
			return failedResult(wrapf(err, "sync: delete %s", d.Path), failedf(d.Path, "%s", msg(err)))
		}
		return itemResult{}
	})
}

// syncDeleteOne deletes d.Path if it is still what was listed and SRC
// still lacks its place. Never anything outside DST, nor DST itself.
func syncDeleteOne(ctx context.Context, env Env, c spec.SyncConfig, d syncDelete) error {
	if d.Path == c.Dst || !paths.IsAncestor(c.Dst, d.Path) || d.ID == 0 {
		return status.Errorf(codes.InvalidArgument, "%s is not inside the destination %s: not deleted", d.Path, c.Dst)
	}
	s, err := exists(ctx, env, d.Src)
	if err != nil {
		// Unsure whether SRC has it: never delete on a doubt.
		return wrapf(err, "stat %s", d.Src)
	}
	if s != nil {
		return nil // SRC has it again: the next sync copies it
	}
	_, err = env.FS().Delete(ctx, &api.DeleteRequest{Path: d.Path, Recursive: d.Dir, FileId: d.ID})
	switch status.Code(err) {
	case codes.OK, codes.NotFound:
		if !d.Dir {
			removeEmptiedParents(ctx, env, c, d.Path)
		}
		return nil
	case codes.FailedPrecondition:
		if s, _ := exists(ctx, env, d.Path); s != nil && s.GetFileId() != d.ID {
			return nil // replaced since it was listed: someone wrote it; left alone
		}
	}
	return err
}

// removeEmptiedParents removes the directories above a deleted file, up to
// DST (not included), that SRC lacks and that are empty now — as rclone's
// sync leaves no directory the source does not have. A directory still
// holding something (a file the filter leaves out, one being deleted by
// another task) stays: its delete is not recursive.
func removeEmptiedParents(ctx context.Context, env Env, c spec.SyncConfig, p string) {
	for d, _ := paths.Split(p); d != c.Dst && paths.IsAncestor(c.Dst, d); d, _ = paths.Split(d) {
		if s, err := exists(ctx, env, joinAfter(c.Dst, c.Src, d)); err != nil || s != nil {
			return
		}
		if _, err := env.FS().Delete(ctx, &api.DeleteRequest{Path: d}); err != nil && status.Code(err) != codes.NotFound {
			return
		}
	}
}
