package plans

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/plans/spec"
)

// Replicate brings every block under a path to exactly Replication cached
// copies, each on a different block worker. A block short of copies is
// copied from a worker that has it (worker to worker; from the UFS only
// when no worker has it); one with too many loses the extra copies. Blocks
// of pinned files keep their extra copies. Each block that needs a change
// is one task, which looks at the block's copies again when it runs, so a
// retry, or a worker lost meanwhile, never takes a block below the target.
type Replicate struct{}

// Name implements Plan.
func (Replicate) Name() string { return "replicate" }

// Validate implements Plan: the path exists and there are enough live
// block workers for the copies asked.
func (Replicate) Validate(ctx context.Context, env Env, config []byte) (spec.Valid, error) {
	c, err := spec.DecodeReplicate(config)
	if err != nil {
		return spec.Valid{}, err
	}
	if _, err := statPath(ctx, env, "replicate", c.Path); err != nil {
		return spec.Valid{}, err
	}
	if err := requireAccess(ctx, env, "replicate", c.Path, accessRead, true); err != nil {
		return spec.Valid{}, err
	}
	ws, err := liveBlockWorkers(ctx, env)
	if err != nil {
		return spec.Valid{}, err
	}
	if c.Replication > len(ws) {
		return spec.Valid{}, status.Errorf(codes.FailedPrecondition, "replicate %s: --replication %d is more than the %d live block worker(s)", c.Path, c.Replication, len(ws))
	}
	return spec.Accept(c)
}

// Done implements Plan: one round.
func (Replicate) Done(context.Context, Env, Job) (bool, error) { return true, nil }

// replicateElem is one block to bring to N copies.
type replicateElem struct {
	Block  int64               `json:"b"`
	Path   string              `json:"p"`
	Index  int                 `json:"i"`
	Length int64               `json:"l"`
	N      int                 `json:"n"`
	Pinned bool                `json:"pin,omitempty"`
	Ufs    *api.UfsBlockSource `json:"u,omitempty"`
	Hint   string              `json:"h,omitempty"` // planned target (copy) or victim (evict)
}

// NewPlanner implements Plan.
func (Replicate) NewPlanner(ctx context.Context, env Env, job Job) (Planner, error) {
	c, err := spec.DecodeReplicate(job.Config)
	if err != nil {
		return nil, err
	}
	gen := func(ctx context.Context, f *api.FileInfo, workers []blockWorker) ([]item, []*api.FailedPath, error) {
		var items []item
		for i, b := range fileBlocks(f) {
			if b.Length <= 0 {
				continue
			}
			var have []blockWorker
			for _, id := range b.IDs {
				if w, ok := findWorker(workers, id); ok {
					have = append(have, w)
				}
			}
			e := replicateElem{Block: b.ID, Path: f.GetPath(), Index: i, Length: b.Length, N: c.Replication, Pinned: f.GetPinned()}
			if persisted(f) {
				e.Ufs = &api.UfsBlockSource{MountId: f.GetMountId(), UfsPath: f.GetUfsPath(), Offset: b.Offset, Length: b.Length, UfsFingerprint: f.GetUfsFingerprint()}
			}
			desc := fmt.Sprintf("%s block %d", f.GetPath(), i)
			switch {
			case len(have) == c.Replication:
				continue
			case len(have) > c.Replication:
				if f.GetPinned() {
					continue // pinned: its copies stay
				}
				victim := have[len(have)-1]
				e.Hint = victim.addr
				items = append(items, item{Elem: e, Target: victim, Desc: desc})
			default:
				if len(have) == 0 && e.Ufs == nil {
					return items, []*api.FailedPath{failedf(f.GetPath(), "block %d is cached nowhere and the file was never persisted: nothing to copy", i)}, nil
				}
				// The planner places it on the worker with the fewest bytes
				// planned that holds no copy (the task's target: Run's hint).
				avoid := make([]int64, len(have))
				for j, w := range have {
					avoid[j] = w.id
				}
				items = append(items, item{Elem: e, Bytes: b.Length * int64(c.Replication-len(have)), Avoid: avoid, Desc: desc})
			}
		}
		return items, nil, nil
	}
	return newItemPlanner(env, "replicate", job, walkOpts{Root: c.Path, PageSize: c.PageSize, Blocks: true}, oneByOne, gen)
}

// Run implements Plan.
func (Replicate) Run(ctx context.Context, env Env, t *Task) (Result, error) {
	var a itemArgs
	if err := json.Unmarshal(t.Args, &a); err != nil {
		return Result{}, fmt.Errorf("replicate task %d/%d: bad args: %w", t.JobID, t.TaskID, err)
	}
	return runEach(ctx, t, len(a.Items), 1, func(ctx context.Context, i int) itemResult {
		var e replicateElem
		if err := json.Unmarshal(a.Items[i], &e); err != nil {
			return itemResult{err: fmt.Errorf("replicate: bad task element: %w", err)}
		}
		if e.Hint == "" {
			e.Hint = a.Address // the copy's planned target is the task's
		}
		n, err := replicateOne(ctx, env, t.LocalBlockWorker, e)
		if err != nil {
			return failedResult(wrapf(err, "replicate %s block %d", e.Path, e.Index), failedf(e.Path, "block %d: %s", e.Index, msg(err)))
		}
		return itemResult{bytes: n}
	})
}

// replicateOne looks at the block's copies now and adds or removes copies,
// one at a time, until there are e.N.
func replicateOne(ctx context.Context, env Env, local string, e replicateElem) (int64, error) {
	bi, err := env.BlockMaster().GetBlockInfo(ctx, &api.GetBlockInfoRequest{BlockId: e.Block})
	if status.Code(err) == codes.NotFound {
		return 0, fmt.Errorf("the file is gone")
	}
	if err != nil {
		return 0, err
	}
	ws, err := liveBlockWorkers(ctx, env)
	if err != nil {
		return 0, err
	}
	live := map[int64]blockWorker{}
	for _, w := range ws {
		live[w.id] = w
	}
	var have []blockWorker
	holds := map[int64]bool{}
	for _, l := range bi.GetInfo().GetLocations() {
		if w, ok := live[l.GetWorkerId()]; ok && !holds[w.id] {
			have = append(have, w)
			holds[w.id] = true
		}
	}
	var done int64
	if len(have) > e.N {
		if e.Pinned {
			return 0, nil
		}
		// Evict the planned victim first, then the highest ids.
		sort.SliceStable(have, func(i, j int) bool {
			if (have[i].addr == e.Hint) != (have[j].addr == e.Hint) {
				return have[i].addr == e.Hint
			}
			return have[i].id > have[j].id
		})
		for _, v := range have[:len(have)-e.N] {
			bw, err := env.BlockWorker(v.addr)
			if err != nil {
				return done, err
			}
			if _, err := bw.RemoveBlock(ctx, &api.RemoveBlockRequest{BlockId: e.Block}); err != nil && status.Code(err) != codes.NotFound {
				return done, fmt.Errorf("remove the copy on %s: %s", v.addr, msg(err))
			}
		}
		return 0, nil
	}
	// Copy where short: the planned target first, then this job worker's
	// block worker, then the others by id.
	var cands []blockWorker
	for _, w := range ws {
		if !holds[w.id] {
			cands = append(cands, w)
		}
	}
	rank := func(w blockWorker) int {
		switch w.addr {
		case e.Hint:
			return 0
		case local:
			return 1
		}
		return 2
	}
	sort.SliceStable(cands, func(i, j int) bool { return rank(cands[i]) < rank(cands[j]) })
	need := e.N - len(have)
	if need > len(cands) {
		return 0, status.Errorf(codes.FailedPrecondition, "%d copies wanted, only %d live block workers", e.N, len(ws))
	}
	for _, target := range cands[:need] {
		bw, err := env.BlockWorker(target.addr)
		if err != nil {
			return done, err
		}
		if len(have) == 0 {
			if e.Ufs == nil {
				return done, fmt.Errorf("cached nowhere and never persisted: nothing to copy")
			}
			if _, err := bw.CacheBlock(ctx, &api.CacheBlockRequest{BlockId: e.Block, Source: e.Ufs, Pinned: e.Pinned}); err != nil {
				return done, fmt.Errorf("cache from the UFS on %s: %s", target.addr, msg(err))
			}
		} else {
			var last error
			ok := false
			for _, src := range have { // any copy will do; the next if one fails
				if _, err := bw.CopyBlockFrom(ctx, &api.CopyBlockFromRequest{BlockId: e.Block, Source: src.addr, Length: e.Length, Pinned: e.Pinned}); err != nil {
					last = fmt.Errorf("copy from %s to %s: %s", src.addr, target.addr, msg(err))
					continue
				}
				ok = true
				break
			}
			if !ok {
				return done, last
			}
		}
		have = append(have, target)
		done += e.Length
	}
	return done, nil
}
