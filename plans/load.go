package plans

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"sync"
	"time"

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

// Validate implements Plan: the path must exist and enough block workers
// must be eligible for the replication asked.
func (Load) Validate(ctx context.Context, env Env, config []byte) (spec.Valid, error) {
	c, err := spec.DecodeLoad(config)
	if err != nil {
		return spec.Valid{}, err
	}
	if _, err := env.FS().GetStatus(ctx, &api.GetStatusRequest{Path: c.Path}); err != nil {
		if status.Code(err) == codes.NotFound {
			return spec.Valid{}, status.Errorf(codes.NotFound, "load %s: no such file or directory", c.Path)
		}
		return spec.Valid{}, status.Errorf(status.Code(err), "load %s: stat: %v", c.Path, status.Convert(err).Message())
	}
	// Loading reads: the submitter must be able to read all of it.
	if err := requireAccess(ctx, env, "load", c.Path, accessRead, true); err != nil {
		return spec.Valid{}, err
	}
	all, err := liveBlockWorkers(ctx, env)
	if err != nil {
		return spec.Valid{}, err
	}
	for _, name := range c.Workers {
		if !anyMatches(all, name) {
			return spec.Valid{}, spec.Invalidf("load %s: --workers %s: no live block worker has that id, host or address", c.Path, name)
		}
	}
	eligible := filterWorkers(all, c)
	if len(eligible) == 0 {
		return spec.Valid{}, status.Errorf(codes.FailedPrecondition, "load %s: no eligible live block worker", c.Path)
	}
	if c.Replication > len(eligible) {
		return spec.Valid{}, status.Errorf(codes.FailedPrecondition, "load %s: --replication %d is more than the %d eligible live block worker(s)", c.Path, c.Replication, len(eligible))
	}
	return spec.Accept(c)
}

// Done implements Plan: with --verify the first round is followed by one
// that re-checks every block and re-loads what is missing.
func (Load) Done(ctx context.Context, env Env, job Job) (bool, error) {
	c, err := spec.DecodeLoad(job.Config)
	if err != nil {
		return true, err
	}
	return !(c.Verify && job.Round == 0) || c.DryRun, nil
}

// blockWorker is a block worker as the load plan sees it.
type blockWorker struct {
	id   int64
	addr string // host:rpc-port
}

func liveBlockWorkers(ctx context.Context, env Env) ([]blockWorker, error) {
	resp, err := env.BlockMaster().GetWorkerInfoList(ctx, &api.GetWorkerInfoListRequest{})
	if err != nil {
		return nil, fmt.Errorf("list block workers: %w", err)
	}
	var out []blockWorker
	for _, w := range resp.Workers {
		if w.GetState() != api.WorkerState_LIVE && w.GetState() != api.WorkerState_WORKER_STATE_UNSPECIFIED {
			continue
		}
		a := w.GetAddress()
		out = append(out, blockWorker{id: w.GetId(), addr: fmt.Sprintf("%s:%d", a.GetHost(), a.GetRpcPort())})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out, nil
}

func anyMatches(ws []blockWorker, name string) bool {
	for _, w := range ws {
		if api.WorkerNamed(name, w.id, w.addr) {
			return true
		}
	}
	return false
}

// filterWorkers keeps the workers the job's limits allow.
func filterWorkers(all []blockWorker, c spec.LoadConfig) []blockWorker {
	lim := c.Limits().Proto()
	var out []blockWorker
	for _, w := range all {
		if lim.AllowsWorker(w.id, w.addr) {
			out = append(out, w)
		}
	}
	return out
}

// loadArgs are one load task's arguments: blocks to cache on one worker.
type loadArgs struct {
	Worker  int64       `json:"w"`
	Address string      `json:"a"`
	Blocks  []loadBlock `json:"b"`
}

type loadBlock struct {
	ID          int64  `json:"id"`
	Path        string `json:"p"`
	UFS         string `json:"u"`
	Mount       int64  `json:"m,omitempty"`
	Offset      int64  `json:"o,omitempty"`
	Length      int64  `json:"l"`
	Fingerprint string `json:"f,omitempty"`
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
	var a loadArgs
	if err := json.Unmarshal(args, &a); err != nil {
		return 0, nil, fmt.Errorf("load task: %w", err)
	}
	blocks = make([]BlockRef, len(a.Blocks))
	for i, b := range a.Blocks {
		blocks[i] = BlockRef{ID: b.ID, Length: b.Length}
	}
	return a.Worker, blocks, nil
}

// loadCursor is where planning stands: every file up to After (in walk
// order) has its tasks committed; Planned is the bytes committed per block
// worker id, which keeps the spread even across a failover.
type loadCursor struct {
	After   string          `json:"after,omitempty"`
	Planned map[int64]int64 `json:"planned,omitempty"`
}

// NewPlanner implements Plan.
func (Load) NewPlanner(ctx context.Context, env Env, job Job) (Planner, error) {
	c, err := spec.DecodeLoad(job.Config)
	if err != nil {
		return nil, err
	}
	var cur loadCursor
	if len(job.Cursor) > 0 {
		if err := json.Unmarshal(job.Cursor, &cur); err != nil {
			return nil, fmt.Errorf("load job %d: bad cursor: %w", job.ID, err)
		}
	}
	if cur.Planned == nil {
		cur.Planned = map[int64]int64{}
	}
	sel, err := c.Filter.Compile(job.CreatedMs)
	if err != nil {
		return nil, err
	}
	p := &loadPlanner{
		env:     env,
		cfg:     c,
		sel:     sel,
		cursor:  cur,
		walk:    newWalker(env.FS(), c.Path, cur.After, int32(c.PageSize), true),
		open:    map[int64]*openBatch{},
		pending: map[int64]int64{},
	}
	// The verify round re-checks blocks of what round 0 synced.
	p.walk.sync = !c.NoSync && job.Round == 0
	return p, nil
}

type loadPlanner struct {
	env    Env
	cfg    spec.LoadConfig
	sel    *spec.Selector // nil: every file
	cursor loadCursor
	walk   *walker

	workers   []blockWorker
	refreshed time.Time
	loads     *workerLoads // the workers by bytes planned
	filling   *loadedWorker
	have      []int64 // scratch: eligible workers holding a block

	open    map[int64]*openBatch // by target block worker id
	pending map[int64]int64      // bytes in open batches, by worker id
	marks   []*fileMark          // files in walk order whose blocks are not all emitted
	out     []TaskSpec
	failed  []*api.FailedPath
	eof     bool
	calls   int
	// Files this Next found cached already (Batch.FilesSkipped ...).
	filesSkipped, bytesSkipped int64
}

// fileMark counts a file's block copies still sitting in open batches.
type fileMark struct {
	path    string
	pending int
	failed  bool
	counted bool // in some task's Files already
}

type openBatch struct {
	target blockWorker
	blocks []loadBlock
	marks  []*fileMark
	bytes  int64
}

const (
	workerRefresh = 10 * time.Second
	firstBudget   = 10 * time.Millisecond
	nextBudget    = 100 * time.Millisecond
)

func (p *loadPlanner) Close() error {
	p.walk.close()
	return nil
}

// planBudget is how long the calls-th Next of a planner may gather tasks
// before handing them over: 10 ms for the first, doubling to 100 ms, so
// the workers start within milliseconds and are fed in growing batches
// while they are still warming up, instead of idling through a first long
// gather.
func planBudget(calls int) time.Duration {
	if calls >= 4 {
		return nextBudget
	}
	return min(firstBudget<<calls, nextBudget)
}

// Next implements Planner.
func (p *loadPlanner) Next(ctx context.Context, max int) (Batch, error) {
	if max < 1 {
		max = 1
	}
	p.out, p.failed = nil, nil
	p.filesSkipped, p.bytesSkipped = 0, 0
	scanned := 0
	// Hand tasks over soon: the first batch within milliseconds so the
	// workers start while the listing goes on, later ones at least every
	// nextBudget.
	start, budget := time.Now(), planBudget(p.calls)
	p.calls++
	for !p.eof && len(p.out) < max && scanned < 16*max && (len(p.out) == 0 || time.Since(start) < budget) {
		if p.workers == nil || time.Since(p.refreshed) > workerRefresh {
			if err := p.refreshWorkers(ctx); err != nil {
				return Batch{}, err
			}
		}
		f, err := p.walk.Next(ctx)
		if errors.Is(err, io.EOF) {
			p.eof = true
			break
		}
		if err != nil {
			return Batch{}, err
		}
		scanned++
		p.planFile(f)
	}
	// Every Next ends with nothing pending, so the cursor (the last file
	// listed) is exact: no file's blocks are half emitted, none is emitted
	// after one still waiting. A batch of small files thus never spans two
	// calls; Next covers thousands of files, so few batches are cut short.
	ids := make([]int64, 0, len(p.open))
	for id := range p.open {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		p.flush(id)
	}
	p.advance()
	cur, err := json.Marshal(p.cursor)
	if err != nil {
		return Batch{}, err
	}
	return Batch{Tasks: p.out, Cursor: cur, Done: p.eof, Failed: p.failed, FilesSkipped: p.filesSkipped, BytesSkipped: p.bytesSkipped}, nil
}

func (p *loadPlanner) refreshWorkers(ctx context.Context) error {
	all, err := liveBlockWorkers(ctx, p.env)
	if err != nil {
		return err
	}
	p.workers = filterWorkers(all, p.cfg)
	p.refreshed = time.Now()
	p.loads = newWorkerLoads(p.workers, func(id int64) int64 { return p.cursor.Planned[id] + p.pending[id] })
	p.filling = nil
	if len(p.workers) == 0 {
		return status.Errorf(codes.FailedPrecondition, "load %s: no eligible live block worker", p.cfg.Path)
	}
	return nil
}

// planFile adds the block copies f still needs to the open batches.
func (p *loadPlanner) planFile(f *api.FileInfo) {
	mark := &fileMark{path: f.GetPath()}
	p.marks = append(p.marks, mark)
	if !selects(p.sel, p.cfg.Path, f) {
		return
	}
	planned := false // a copy of some block is planned
	defer func() {
		if !planned && !mark.failed {
			// Every block cached as often as asked already.
			p.filesSkipped++
			p.bytesSkipped += f.GetLength()
		}
	}()
	if f.GetLength() <= 0 {
		return
	}
	bs := f.GetBlockSizeBytes()
	if bs <= 0 {
		bs = f.GetLength()
	}
	layout := api.LayoutOf(f)
	nblocks := layout.Count()
	fbis := f.GetFileBlockInfos()
	persisted := f.GetPersistenceState() != api.PersistenceState_NOT_PERSISTED && f.GetPersistenceState() != api.PersistenceState_TO_BE_PERSISTED
	for i := int64(0); i < nblocks; i++ {
		sp := layout.Block(i)
		b := loadBlock{Path: f.GetPath(), UFS: f.GetUfsPath(), Mount: f.GetMountId(), Offset: sp.Offset, Length: sp.Length, Fingerprint: f.GetUfsFingerprint()}
		have := p.have[:0]
		switch {
		case int(i) < len(fbis) && fbis[i].GetBlockInfo() != nil:
			bi := fbis[i].GetBlockInfo()
			b.ID = bi.GetBlockId()
			if bi.GetLength() > 0 {
				b.Length = bi.GetLength()
			}
			if fbis[i].GetOffset() > 0 {
				b.Offset = fbis[i].GetOffset()
			}
			for _, l := range bi.GetLocations() {
				if p.loads.has(l.GetWorkerId()) && !slices.Contains(have, l.GetWorkerId()) {
					have = append(have, l.GetWorkerId())
				}
			}
		default:
			b.ID = sp.ID
		}
		need := p.cfg.Replication - len(have)
		if need <= 0 {
			continue
		}
		if !persisted || b.UFS == "" {
			p.failed = append(p.failed, &api.FailedPath{Path: f.GetPath(), Error: fmt.Sprintf("block %d is not cached and the file is not persisted: no UFS copy to load from", i)})
			mark.failed = true
			break
		}
		// Only small files (one block, shorter than a block) are batched: a
		// file's blocks are then either all emitted at once or all waiting
		// in one batch, which keeps the resume cursor exact.
		full := nblocks > 1 || b.Length >= bs
		for _, t := range p.targets(need, have, !full) {
			planned = true
			if full {
				p.single(t, b, mark)
			} else {
				p.add(t, b, mark)
			}
		}
		p.have = have
	}
}

// targets picks need block workers not holding the block, least loaded
// (bytes planned by this job) first. A small block (batched) goes to the
// worker whose batch is filling while that one may take it, so batches
// fill before the next worker's starts: the spread stays even at batch
// granularity, and tasks stay full however many workers there are.
func (p *loadPlanner) targets(need int, have []int64, small bool) []blockWorker {
	if small && need == 1 && p.filling != nil && !slices.Contains(have, p.filling.w.id) {
		if ob := p.open[p.filling.w.id]; ob != nil && len(ob.blocks) < p.cfg.BatchFiles {
			return []blockWorker{p.filling.w}
		}
	}
	picked := p.loads.least(need, have)
	if small && len(picked) == 1 {
		p.filling = picked[0]
	}
	out := make([]blockWorker, len(picked))
	for i, lw := range picked {
		out[i] = lw.w
	}
	return out
}

func (p *loadPlanner) add(t blockWorker, b loadBlock, mark *fileMark) {
	ob := p.open[t.id]
	if ob != nil && (len(ob.blocks) >= p.cfg.BatchFiles || ob.bytes+b.Length > p.cfg.BatchBytes) {
		p.flush(t.id)
		ob = nil
	}
	if ob == nil {
		ob = &openBatch{target: t}
		p.open[t.id] = ob
	}
	ob.blocks = append(ob.blocks, b)
	ob.marks = append(ob.marks, mark)
	ob.bytes += b.Length
	p.pending[t.id] += b.Length
	p.loads.add(t.id, b.Length)
	mark.pending++
	if len(ob.blocks) >= p.cfg.BatchFiles || ob.bytes >= p.cfg.BatchBytes {
		p.flush(t.id)
	}
}

// single makes a task of one full block: full blocks are big enough to be
// a task each, and spread better so.
func (p *loadPlanner) single(t blockWorker, b loadBlock, mark *fileMark) {
	ob := &openBatch{target: t, blocks: []loadBlock{b}, marks: []*fileMark{mark}, bytes: b.Length}
	mark.pending++
	p.pending[t.id] += b.Length
	p.loads.add(t.id, b.Length)
	p.emit(ob)
}

// flush turns the open batch of worker id into a task.
func (p *loadPlanner) flush(id int64) {
	ob := p.open[id]
	if ob == nil {
		return
	}
	delete(p.open, id)
	p.emit(ob)
}

func (p *loadPlanner) emit(ob *openBatch) {
	id := ob.target.id
	p.pending[id] -= ob.bytes
	p.cursor.Planned[id] += ob.bytes
	args, _ := json.Marshal(loadArgs{Worker: ob.target.id, Address: ob.target.addr, Blocks: ob.blocks})
	desc := ob.blocks[0].Path
	if len(ob.blocks) > 1 {
		desc = fmt.Sprintf("%s (+%d more blocks)", desc, len(ob.blocks)-1)
	} else if ob.blocks[0].Offset > 0 || ob.blocks[0].Length < ob.bytes {
		desc = fmt.Sprintf("%s block@%d", desc, ob.blocks[0].Offset)
	}
	var files int64 // files whose first planned copy is in this task
	for _, m := range ob.marks {
		m.pending--
		if !m.counted {
			m.counted = true
			files++
		}
	}
	p.out = append(p.out, TaskSpec{
		Args: args, Description: desc, Bytes: ob.bytes, Files: files,
		BlockWorkerID: ob.target.id, BlockWorkerAddress: ob.target.addr,
	})
}

// advance moves the cursor over the leading files whose copies are all in
// emitted tasks.
func (p *loadPlanner) advance() {
	i := 0
	for i < len(p.marks) && p.marks[i].pending == 0 {
		p.cursor.After = p.marks[i].path
		i++
	}
	p.marks = p.marks[i:]
}

// Run implements Plan: cache each block of the task on its block worker. A
// block worker that is gone is replaced by this job worker's own (or
// another live one), so a task outlives the worker it was planned for.
func (Load) Run(ctx context.Context, env Env, t *Task) (Result, error) {
	var a loadArgs
	if err := json.Unmarshal(t.Args, &a); err != nil {
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
	var (
		mu     sync.Mutex
		done   int64
		failed []*api.FailedPath
		first  error
	)
	eachLimit(ctx, len(a.Blocks), blocksInParallel, func(i int) {
		b := a.Blocks[i]
		err := cacheOne(ctx, env, t, a, b)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			if ctx.Err() == nil {
				failed = append(failed, &api.FailedPath{Path: b.Path, Error: err.Error()})
			}
			if first == nil {
				first = err
			}
			return
		}
		done += b.Length
		if t.Progress != nil {
			t.Progress(done)
		}
	})
	res := Result{Bytes: done, Failed: failed}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	if len(failed) > 0 {
		return res, fmt.Errorf("%d of %d block(s) failed, first: %s: %w", len(failed), len(a.Blocks), failed[0].Path, first)
	}
	return res, nil
}

// cacheBatch caches a batch of small blocks with one CacheBlocks call (the
// worker fills them at once and commits them to the FS master in one
// call). ok is false when the target cannot take the call (gone, or too
// old): the caller then goes block by block, with its fallbacks.
func cacheBatch(ctx context.Context, env Env, t *Task, a loadArgs) (res Result, ok bool, err error) {
	req := &api.CacheBlocksRequest{Blocks: make([]*api.CacheBlockRequest, len(a.Blocks))}
	for i, b := range a.Blocks {
		req.Blocks[i] = &api.CacheBlockRequest{BlockId: b.ID, Source: &api.UfsBlockSource{
			MountId: b.Mount, UfsPath: b.UFS, Offset: b.Offset, Length: b.Length, UfsFingerprint: b.Fingerprint,
		}}
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

// gone reports whether err says the worker itself is not there (as opposed
// to a problem with the block or the UFS). Canceled, when the caller's
// context is not, is the connection closed under the call: the job worker
// dropped it because the worker was declared LOST.
func gone(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return true
	}
	return false
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
