package plans

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/plans/spec"
)

// Load caches every block under a path in the block workers, up to
// Replication copies each. Each block of a file of a block or more is a task
// of its own; small files (shorter than a block) are batched, up to
// BatchFiles files or BatchBytes bytes per task. A task goes
// to the job worker beside the block worker that will hold its data, and
// block workers are chosen so the planned bytes spread evenly.
type Load struct{}

// blocksInParallel is how many CacheBlock calls one task keeps in flight.
const blocksInParallel = 4

// Name implements Plan.
func (Load) Name() string { return "load" }

// RunsRemotely: a load task's work is its block workers' (CacheBlocks,
// CacheBlock: they fill and commit); the job worker only waits.
func (Load) RunsRemotely() bool { return true }

// Validate implements Plan: the path must exist and enough block workers
// must be eligible for the replication asked.
func (Load) Validate(ctx context.Context, env Env, config []byte) (spec.Valid, error) {
	c, err := spec.DecodeLoad(config)
	if err != nil {
		return spec.Valid{}, err
	}
	// The block workers are listed while the path is checked: two round
	// trips to the FS master (each, on a job master, shared with the other
	// submits of the moment) that need not wait for each other.
	listed := make(chan workersListed, 1)
	go func() {
		all, err := liveBlockWorkers(ctx, env)
		listed <- workersListed{all, err}
	}()
	// Loading reads: the submitter must be able to read all of it.
	if _, err := statReadable(ctx, env, "load", c.Path); err != nil {
		return spec.Valid{}, err
	}
	l := <-listed
	all, err := l.all, l.err
	if err != nil {
		return spec.Valid{}, err
	}
	for _, name := range c.Workers {
		if !anyMatches(all, name) {
			return spec.Valid{}, spec.Invalidf("load %s: --workers %s: no live block worker has that id, host or address", c.Path, name)
		}
	}
	eligible := eligibleWorkers(all, c.Limits().Proto())
	if len(eligible) == 0 {
		return spec.Valid{}, status.Errorf(codes.FailedPrecondition, "load %s: no eligible live block worker", c.Path)
	}
	if c.Replication > len(eligible) {
		return spec.Valid{}, status.Errorf(codes.FailedPrecondition, "load %s: --replication %d is more than the %d eligible live block worker(s)", c.Path, c.Replication, len(eligible))
	}
	v, err := spec.Accept(c)
	if err == nil {
		keepDecoded(ctx, v.Config, c) // the submit's planner reads it (decodedAs)
	}
	return v, err
}

// Done implements Plan: with --verify the first round is followed by one
// that re-checks every block and re-loads what is missing — unless the
// first round planned no task: it found every block cached as asked, which
// is what the second would check again (over ten million files, a second
// listing of them all).
func (Load) Done(ctx context.Context, env Env, job Job) (bool, error) {
	c, err := spec.DecodeLoad(job.Config)
	if err != nil {
		return true, err
	}
	return !(c.Verify && job.Round == 0 && job.Tasks > 0) || c.DryRun, nil
}

// loadBlock is one block a load task caches: a load task's element.
type loadBlock struct {
	ID          int64  `json:"id"`
	Path        string `json:"p"`
	UFS         string `json:"u"`
	Mount       int64  `json:"m,omitempty"`
	Offset      int64  `json:"o,omitempty"`
	Length      int64  `json:"l"`
	Fingerprint string `json:"f,omitempty"`
}

// loadArgs are one load task's arguments: the shared planner's (itemArgs),
// each element a loadBlock, decoded in the same pass. Tasks planned before
// load used the shared planner carry their blocks under "b" instead.
type loadArgs struct {
	Worker  int64       `json:"w,omitempty"`
	Address string      `json:"a,omitempty"`
	Items   []loadBlock `json:"i"`
	Blocks  []loadBlock `json:"b,omitempty"`
}

// decodeLoadArgs reads a load task's arguments, its blocks in a.Blocks.
func decodeLoadArgs(args []byte) (loadArgs, error) {
	var a loadArgs
	if err := json.Unmarshal(args, &a); err != nil {
		return a, err
	}
	if len(a.Blocks) == 0 {
		a.Blocks = a.Items // the usual case: no copy
	} else {
		a.Blocks = append(a.Blocks, a.Items...)
	}
	a.Items = nil
	return a, nil
}

// BlockRef names one block and its length.
type BlockRef struct {
	ID, Length int64
}

// LoadTaskBlocks returns what one load task caches: the block worker it
// targets and its blocks. The task format stays private to this package;
// tools standing in for job workers (the worker simulator, internal/sim)
// read tasks through this.
func LoadTaskBlocks(args []byte) (worker int64, blocks []BlockRef, err error) {
	a, err := decodeLoadArgs(args)
	if err != nil {
		return 0, nil, fmt.Errorf("load task: %w", err)
	}
	blocks = make([]BlockRef, len(a.Blocks))
	for i, b := range a.Blocks {
		blocks[i] = BlockRef{ID: b.ID, Length: b.Length}
	}
	return a.Worker, blocks, nil
}

// NewPlanner implements Plan: the shared planner over the tree (synced
// with the UFS as it is listed, in the first round), each block short of
// copies an item (loadItems), on the workers the job may use.
func (Load) NewPlanner(ctx context.Context, env Env, job Job) (Planner, error) {
	c, ok := decodedAs[spec.LoadConfig](ctx, job.Config)
	if !ok {
		var err error
		if c, err = spec.DecodeLoad(job.Config); err != nil {
			return nil, err
		}
	}
	sel, err := c.Filter.Compile(job.CreatedMs)
	if err != nil {
		return nil, err
	}
	// The verify round re-checks blocks of what round 0 synced.
	wo := walkOpts{Root: c.Path, PageSize: c.PageSize, Blocks: true, Sync: !c.NoSync && job.Round == 0}
	var scratch []item // the planner is done with a file's items before the next file's
	p, err := newItemPlanner(env, "load", job, wo, c.Batching, func(_ context.Context, f *api.FileInfo, workers []blockWorker) ([]item, []*api.FailedPath, error) {
		var failed []*api.FailedPath
		scratch, failed = loadItems(scratch[:0], c, sel, f, workers)
		return scratch, failed, nil
	})
	if err != nil {
		return nil, err
	}
	return p.onWorkers(c.Limits().Proto(), "load "+c.Path), nil
}

// loadItems appends to items the block copies f still needs: an item per
// block with fewer than c.Replication copies on the workers the job may
// use, placed by the planner on others. Blocks of a file of a block or
// more are tasks of their own; a small file's one block is batched. A file
// with every block cached as often as asked is counted skipped.
func loadItems(items []item, c spec.LoadConfig, sel *spec.Selector, f *api.FileInfo, workers []blockWorker) ([]item, []*api.FailedPath) {
	if !selects(sel, c.Path, f) {
		return items, nil
	}
	skipped := item{Skip: true, Bytes: f.GetLength(), Desc: f.GetPath()}
	if f.GetLength() <= 0 {
		return append(items, skipped), nil
	}
	bs := f.GetBlockSizeBytes()
	if bs <= 0 {
		bs = f.GetLength()
	}
	layout := api.LayoutOf(f)
	nblocks := layout.Count()
	fbis := f.GetFileBlockInfos()
	hasUFS := f.GetPersistenceState() != api.PersistenceState_NOT_PERSISTED && f.GetPersistenceState() != api.PersistenceState_TO_BE_PERSISTED && f.GetUfsPath() != ""
	n := len(items)
	files := int64(1) // the file counts in its first block's task
	for i := int64(0); i < nblocks; i++ {
		sp := layout.Block(i)
		b := loadBlock{ID: sp.ID, Path: f.GetPath(), UFS: f.GetUfsPath(), Mount: f.GetMountId(), Offset: sp.Offset, Length: sp.Length, Fingerprint: f.GetUfsFingerprint()}
		var have []int64 // eligible workers caching it
		if int(i) < len(fbis) && fbis[i].GetBlockInfo() != nil {
			bi := fbis[i].GetBlockInfo()
			b.ID = bi.GetBlockId()
			if bi.GetLength() > 0 {
				b.Length = bi.GetLength()
			}
			if fbis[i].GetOffset() > 0 {
				b.Offset = fbis[i].GetOffset()
			}
			for _, l := range bi.GetLocations() {
				id := l.GetWorkerId()
				if _, ok := findWorker(workers, id); ok && !slices.Contains(have, id) {
					have = append(have, id)
				}
			}
		}
		need := c.Replication - len(have)
		if need <= 0 {
			continue
		}
		if !hasUFS {
			return items, []*api.FailedPath{failedf(f.GetPath(), "block %d is not cached and the file is not persisted: no UFS copy to load from", i)}
		}
		// Only small files (one block, shorter than a block) are batched: a
		// file's blocks are then either all emitted at once or all waiting
		// in one batch.
		full := nblocks > 1 || b.Length >= bs
		desc := b.Path
		if full && b.Offset > 0 {
			desc = fmt.Sprintf("%s block@%d", b.Path, b.Offset)
		}
		items = append(items, item{Elem: b, Bytes: b.Length, Files: files, Copies: need, Avoid: have, Batch: !full, Desc: desc})
		files = 0
	}
	if len(items) == n {
		return append(items, skipped), nil
	}
	return items, nil
}

// Run implements Plan: cache each block of the task on its block worker,
// a batch in one call; block by block (the shared runner) when the
// target cannot take the batch. A block worker that is gone is replaced by
// this job worker's own (or another live one), so a task outlives the
// worker it was planned for.
func (Load) Run(ctx context.Context, env Env, t *Task) (Result, error) {
	a, err := decodeLoadArgs(t.Args)
	if err != nil {
		return Result{}, fmt.Errorf("load task %d/%d: bad args: %w", t.JobID, t.TaskID, err)
	}
	if t.Attempt > 1 {
		// A task run again most often ran first beside a worker that was
		// declared lost: go straight to a live one instead of waiting on it.
		a.Address = liveTarget(ctx, env, t, a.Address)
	}
	if len(a.Blocks) > 1 {
		res, ok, err := cacheBatch(ctx, env, t, a)
		if ok {
			return res, err
		}
		a.Address = liveTarget(ctx, env, t, a.Address)
	}
	return runEach(ctx, t, len(a.Blocks), blocksInParallel, func(ctx context.Context, i int) itemResult {
		b := a.Blocks[i]
		if err := cacheOne(ctx, env, t, a, b); err != nil {
			return failedResult(wrapf(err, "load %s", b.Path), &api.FailedPath{Path: b.Path, Error: err.Error()})
		}
		return itemResult{bytes: b.Length}
	})
}

// cacheBatch caches a batch of small blocks with one CacheBlocks call (the
// worker fills them at once and commits them to the FS master in one
// call). ok is false when the target cannot take the call (gone, or too
// old): the caller then goes block by block, with its fallbacks.
func cacheBatch(ctx context.Context, env Env, t *Task, a loadArgs) (res Result, ok bool, err error) {
	req := &api.CacheBlocksRequest{Blocks: make([]*api.CacheBlockRequest, len(a.Blocks))}
	// The messages in two slabs, not two allocations a block.
	reqs := make([]api.CacheBlockRequest, len(a.Blocks))
	srcs := make([]api.UfsBlockSource, len(a.Blocks))
	for i, b := range a.Blocks {
		r, src := &reqs[i], &srcs[i]
		src.MountId, src.UfsPath, src.Offset, src.Length, src.UfsFingerprint = b.Mount, b.UFS, b.Offset, b.Length, b.Fingerprint
		r.BlockId, r.Source = b.ID, src
		req.Blocks[i] = r
	}
	bw, err := env.BlockWorker(a.Address)
	if err != nil {
		return Result{}, false, nil
	}
	resp, err := bw.CacheBlocks(ctx, req)
	if err != nil {
		if ctx.Err() != nil {
			return Result{}, true, ctx.Err()
		}
		if gone(err) || status.Code(err) == codes.Unimplemented {
			return Result{}, false, nil
		}
		return Result{}, true, err
	}
	var first string
	for i, r := range resp.GetResults() {
		if i >= len(a.Blocks) {
			break
		}
		if r.GetError() != "" {
			res.Failed = append(res.Failed, &api.FailedPath{Path: a.Blocks[i].Path, Error: r.GetError()})
			if first == "" {
				first = r.GetError()
			}
			continue
		}
		res.Bytes += a.Blocks[i].Length
	}
	if t.Progress != nil {
		t.Progress(res.Bytes)
	}
	if len(res.Failed) > 0 {
		return res, true, fmt.Errorf("%d of %d block(s) failed, first: %s: %s", len(res.Failed), len(a.Blocks), res.Failed[0].Path, first)
	}
	return res, true, nil
}

func cacheOne(ctx context.Context, env Env, t *Task, a loadArgs, b loadBlock) error {
	req := &api.CacheBlockRequest{BlockId: b.ID, Source: &api.UfsBlockSource{
		MountId: b.Mount, UfsPath: b.UFS, Offset: b.Offset, Length: b.Length, UfsFingerprint: b.Fingerprint,
	}}
	addr := a.Address
	err := cacheAt(ctx, env, addr, req)
	if err == nil || !gone(err) || ctx.Err() != nil {
		return err
	}
	// The target is unreachable: cache on another live block worker that
	// does not hold the block yet, this job worker's own first.
	alt, aerr := otherTarget(ctx, env, t.LocalBlockWorker, addr, b.ID)
	if aerr != nil || alt == "" {
		return fmt.Errorf("block %d on %s: %w", b.ID, addr, err)
	}
	if err2 := cacheAt(ctx, env, alt, req); err2 != nil {
		return fmt.Errorf("block %d on %s (instead of unreachable %s): %w", b.ID, alt, addr, err2)
	}
	return nil
}

func cacheAt(ctx context.Context, env Env, addr string, req *api.CacheBlockRequest) error {
	bw, err := env.BlockWorker(addr)
	if err != nil {
		return err
	}
	_, err = bw.CacheBlock(ctx, req)
	return err
}

// liveTarget is addr when the FS master counts that block worker LIVE,
// else this job worker's own block worker, else another live one (the same
// for every block of the task). On any doubt it keeps addr.
func liveTarget(ctx context.Context, env Env, t *Task, addr string) string {
	ws, err := liveBlockWorkers(ctx, env)
	if err != nil || len(ws) == 0 {
		return addr
	}
	for _, w := range ws {
		if w.addr == addr {
			return addr
		}
	}
	for _, w := range ws {
		if w.addr == t.LocalBlockWorker {
			return w.addr
		}
	}
	return ws[int(t.TaskID%int64(len(ws)))].addr
}

func otherTarget(ctx context.Context, env Env, local, dead string, blockID int64) (string, error) {
	ws, err := liveBlockWorkers(ctx, env)
	if err != nil {
		return "", err
	}
	holds := map[int64]bool{}
	if bi, err := env.BlockMaster().GetBlockInfo(ctx, &api.GetBlockInfoRequest{BlockId: blockID}); err == nil {
		for _, l := range bi.GetInfo().GetLocations() {
			holds[l.GetWorkerId()] = true
		}
	}
	var cands []string
	for _, w := range ws {
		if w.addr == dead || holds[w.id] {
			continue
		}
		if w.addr == local {
			return w.addr, nil
		}
		cands = append(cands, w.addr)
	}
	if len(cands) == 0 {
		return "", nil
	}
	return cands[int(blockID%int64(len(cands)))], nil
}
