package plans

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/paths"
	"github.com/alluvium/alluvium/plans/spec"
)

// Persist writes files that are only in the cache to their UFS path and
// marks them PERSISTED. The bytes go from the block worker holding most of
// a file's blocks (reading the rest from its peers) straight into the UFS
// under a temporary name; the FS master then renames it into place and
// records PERSISTED under its namespace lock, guarded by the file id, so a
// file deleted, renamed or re-created meanwhile ends consistent (and is
// listed as failed). Each file is a task, small files batched per worker.
//
// The FS master submits persist jobs itself for ASYNC_THROUGH files, with
// Files instead of Path: files gone or replaced by then are skipped
// quietly (the master keeps track of them).
type Persist struct{}

// Persist limits.
const (
	smallFileBytes  = 4 << 20 // files up to this share tasks
	itemParallelism = 8       // items of one task run at once
)

// Name implements Plan.
func (Persist) Name() string { return "persist" }

// Validate implements Plan: a path must exist.
func (Persist) Validate(ctx context.Context, env Env, config []byte) (spec.Valid, error) {
	c, err := spec.DecodePersist(config)
	if err != nil {
		return spec.Valid{}, err
	}
	if c.Path != "" {
		if _, err := statPath(ctx, env, "persist", c.Path); err != nil {
			return spec.Valid{}, err
		}
		// Persisting reads the cached bytes and changes each file's state.
		if err := requireAccess(ctx, env, "persist", c.Path, accessRead|accessWrite, true); err != nil {
			return spec.Valid{}, err
		}
	}
	return spec.Accept(c)
}

// Done implements Plan: one round.
func (Persist) Done(context.Context, Env, Job) (bool, error) { return true, nil }

// persistElem is one file of a persist task.
type persistElem struct {
	Path   string `json:"p"`
	ID     int64  `json:"id"`
	Length int64  `json:"l"`
	Quiet  bool   `json:"q,omitempty"` // async: a file gone is no failure
}

// NewPlanner implements Plan.
func (Persist) NewPlanner(ctx context.Context, env Env, job Job) (Planner, error) {
	c, err := spec.DecodePersist(job.Config)
	if err != nil {
		return nil, err
	}
	sel, err := c.Filter.Compile(job.CreatedMs)
	if err != nil {
		return nil, err
	}
	gen := func(ctx context.Context, f *api.FileInfo, workers []blockWorker) ([]item, []*api.FailedPath, error) {
		if f.GetFolder() || !selects(sel, c.Path, f) {
			return nil, nil, nil
		}
		if persisted(f) {
			if len(c.Files) > 0 {
				return nil, nil, nil
			}
			return []item{{Skip: true, Bytes: f.GetLength(), Desc: f.GetPath()}}, nil, nil
		}
		if !f.GetCompleted() {
			if len(c.Files) > 0 {
				return nil, nil, nil // the master queues it again when complete
			}
			return nil, []*api.FailedPath{failedf(f.GetPath(), "still being written: persist it once complete")}, nil
		}
		blocks := fileBlocks(f)
		for i, b := range blocks {
			if len(b.Workers) == 0 && b.Length > 0 {
				return nil, []*api.FailedPath{failedf(f.GetPath(), "block %d is cached nowhere and the file was never persisted: its bytes are lost", i)}, nil
			}
		}
		return []item{{
			Elem:   persistElem{Path: f.GetPath(), ID: f.GetFileId(), Length: f.GetLength(), Quiet: len(c.Files) > 0},
			Bytes:  f.GetLength(),
			Files:  1,
			Target: holder(blocks, workers, ""),
			Batch:  f.GetLength() <= smallFileBytes,
			Desc:   f.GetPath(),
		}}, nil, nil
	}
	if len(c.Files) > 0 {
		files := c.Files
		return newItemPlannerFrom(env, "persist", job, func(cur itemCursor) fileSource {
			next := 0
			if cur.After != "" {
				next, _ = strconv.Atoi(cur.After)
			}
			return &listSource{fs: env.FS(), files: files, next: next}
		}, c.Batching, gen)
	}
	return newItemPlanner(env, "persist", job, walkOpts{Root: c.Path, PageSize: c.PageSize, Blocks: true}, c.Batching, gen)
}

// selects applies a plan's selector to f, a file under root (a listed
// file, or the root itself).
func selects(sel *spec.Selector, root string, f *api.FileInfo) bool {
	if sel == nil {
		return true
	}
	rel := f.GetName()
	if root != "" && f.GetPath() != root && paths.IsAncestor(root, f.GetPath()) {
		rel = paths.Rel(root, f.GetPath())
	}
	return sel.Selects(rel, f.GetLength(), f.GetLastModificationTimeMs())
}

// listSource yields the files of a list that still are what the list says
// (same path, same inode); the others are skipped.
type listSource struct {
	fs    api.FileSystemMasterClient
	files []spec.PersistFile
	next  int
}

func (s *listSource) Next(ctx context.Context) (*api.FileInfo, error) {
	for s.next < len(s.files) {
		f := s.files[s.next]
		s.next++
		resp, err := s.fs.GetStatus(ctx, &api.GetStatusRequest{Path: f.Path, LoadMetadataType: api.LoadMetadataType_NEVER})
		if status.Code(err) == codes.NotFound {
			continue
		}
		if err != nil {
			s.next--
			return nil, wrapf(err, "stat %s", f.Path)
		}
		if resp.GetInfo().GetFileId() != f.ID {
			continue
		}
		return resp.GetInfo(), nil
	}
	return nil, io.EOF
}

func (s *listSource) Pos() string { return strconv.Itoa(s.next) }

// Run implements Plan.
func (Persist) Run(ctx context.Context, env Env, t *Task) (Result, error) {
	ws, err := liveBlockWorkers(ctx, env)
	if err != nil {
		return Result{}, err
	}
	return runItems(ctx, t, itemParallelism, func(ctx context.Context, raw json.RawMessage) itemResult {
		var e persistElem
		if err := json.Unmarshal(raw, &e); err != nil {
			return itemResult{err: fmt.Errorf("persist: bad task element: %w", err)}
		}
		n, err := persistOne(ctx, env, ws, t.LocalBlockWorker, e)
		if err != nil {
			return failedResult(wrapf(err, "persist %s", e.Path), failedf(e.Path, "%s", msg(err)))
		}
		return itemResult{bytes: n}
	})
}

// persistOne persists one file; already persisted is a success.
func persistOne(ctx context.Context, env Env, ws []blockWorker, local string, e persistElem) (int64, error) {
	resp, err := env.FS().GetStatus(ctx, &api.GetStatusRequest{Path: e.Path, LoadMetadataType: api.LoadMetadataType_NEVER})
	if status.Code(err) == codes.NotFound {
		if e.Quiet {
			return 0, nil
		}
		return 0, status.Error(codes.NotFound, "deleted or renamed before it could be persisted")
	}
	if err != nil {
		return 0, err
	}
	f := resp.GetInfo()
	switch {
	case f.GetFileId() != e.ID:
		if e.Quiet {
			return 0, nil
		}
		return 0, status.Errorf(codes.FailedPrecondition, "replaced by another file (id %d, was %d) before it could be persisted", f.GetFileId(), e.ID)
	case persisted(f):
		return 0, nil // an earlier attempt (or someone else) did it
	case f.GetFolder():
		return 0, fmt.Errorf("is a directory now")
	case !f.GetCompleted():
		return 0, fmt.Errorf("still being written")
	case f.GetUfsPath() == "":
		return 0, fmt.Errorf("no mount holds it")
	}
	blocks := fileBlocks(f)
	h := holder(blocks, ws, local)
	addr := h.addr
	if addr == "" {
		if f.GetLength() > 0 {
			return 0, fmt.Errorf("no live block worker caches it and it was never persisted: its bytes are lost")
		}
		addr = local // an empty file: any worker writes it
		if addr == "" && len(ws) > 0 {
			addr = ws[0].addr
		}
	}
	srcs := make([]*api.BlockSource, len(blocks))
	for i, b := range blocks {
		if len(b.Workers) == 0 && b.Length > 0 {
			return 0, fmt.Errorf("block %d is cached nowhere: its bytes are lost", i)
		}
		srcs[i] = &api.BlockSource{BlockId: b.ID, Length: b.Length, Workers: b.Workers}
	}
	bw, err := env.BlockWorker(addr)
	if err != nil {
		return 0, err
	}
	tmp := persistTemp(f.GetUfsPath(), f.GetFileId())
	wr, err := bw.WriteUfsFileFrom(ctx, &api.WriteUfsFileFromRequest{
		Dest:    &api.WriteUfsFileHeader{MountId: f.GetMountId(), UfsPath: tmp, Overwrite: true, CreateParent: true, Mode: f.GetMode()},
		Sources: srcs,
	})
	if err != nil {
		return 0, fmt.Errorf("write the UFS copy on %s: %s", addr, msg(err))
	}
	if wr.GetLength() != f.GetLength() {
		return 0, fmt.Errorf("wrote %d bytes, the file has %d", wr.GetLength(), f.GetLength())
	}
	st := api.PersistenceState_PERSISTED
	_, err = env.FS().SetAttribute(ctx, &api.SetAttributeRequest{Path: e.Path, FileId: e.ID, PersistenceState: &st, PersistFrom: tmp})
	if err != nil {
		switch status.Code(err) {
		case codes.NotFound, codes.FailedPrecondition:
			if e.Quiet && (status.Code(err) == codes.NotFound || strings.Contains(msg(err), "is gone")) {
				return 0, nil // the master follows the file to wherever it went
			}
			return 0, fmt.Errorf("deleted, renamed or re-created while it was persisted; nothing of it was kept in the UFS (%s)", msg(err))
		}
		return 0, fmt.Errorf("mark persisted: %s", msg(err))
	}
	return f.GetLength(), nil
}

// persistTemp is the temporary UFS name a file is persisted under, beside
// its UFS path: hidden from listings (ufs.IsTemp), and the same for every
// attempt, so a retry replaces a leftover rather than adding one.
func persistTemp(ufsPath string, id int64) string {
	i := strings.LastIndexByte(ufsPath, '/')
	return fmt.Sprintf("%s/.alluvium-tmp-persist-%d", ufsPath[:i], id)
}
