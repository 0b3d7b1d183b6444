package plans

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/paths"
	"github.com/alluvium/alluvium/plans/spec"
)

// Every plan of this package but plugins plans with one streaming planner
// (itemPlanner) and runs its tasks with one runner (runItems; noop's
// tasks, which do nothing, only count their items). The planner
// walks its files page by page (walk.go, or a plan's own fileSource), asks
// the plan for the work items of each file, and turns them into tasks — a
// big item alone, small ones batched per block worker (up to batchFiles
// items or batchBytes bytes) — placed on the job worker beside the block
// worker the item names or, when it names none, on the eligible block
// worker with the fewest bytes planned (workerLoads: O(log workers) a
// pick), filling one worker's batch before starting the next one's. Every
// Next ends with its batches flushed, so the cursor (the last file walked,
// with the bytes planned per worker) is exact and small: a planner resumed
// from it after a failover plans no file twice and skips none, and memory
// holds two listing pages and the open batches whatever the tree.

// item is one unit of work the plan found for a file. Skip counts a file
// (of Bytes) left alone as already done, Deletes files to delete; an item
// without an Elem is only counted, one with an Elem is also a task element
// (a skipped one of no bytes: move drops a source its copy already
// matches).
type item struct {
	Elem   any   // the task element, marshalled to JSON
	Bytes  int64 // for progress and spreading
	Files  int64 // files it works on (the job's filesTotal)
	Target blockWorker
	// With no Target the planner places the item on Copies (0: one)
	// different eligible workers, none in Avoid (those holding it
	// already): load's replicas. Its Files count in the first copy's task.
	Copies int
	Avoid  []int64
	Batch  bool   // small: may share a task with others
	Desc   string // the path it works on

	Skip    bool
	Deletes int64
}

// itemCursor is where planning stands: every file up to After (in walk
// order) has its tasks committed; Planned is the bytes committed per block
// worker id, which keeps the spread even across a failover. Plans keep
// their own state in Aux.
type itemCursor struct {
	After   string          `json:"after,omitempty"`
	Planned map[int64]int64 `json:"planned,omitempty"`
	Aux     json.RawMessage `json:"aux,omitempty"`
}

// itemArgs are a per-file task's arguments.
type itemArgs struct {
	Worker  int64             `json:"w,omitempty"`
	Address string            `json:"a,omitempty"`
	Items   []json.RawMessage `json:"i"`
}

// itemGen returns the items of one file (and paths it cannot handle);
// workers are the live block workers the job may use, sorted by id.
type itemGen func(ctx context.Context, f *api.FileInfo, workers []blockWorker) ([]item, []*api.FailedPath, error)

// eachFileHeld is the itemGen of plans that run once per file beside its
// data: one batched item per file (folders skipped), for the worker caching
// most of it. elem makes the file's task element, or says why it fails.
func eachFileHeld(elem func(f *api.FileInfo) (any, *api.FailedPath)) itemGen {
	return func(_ context.Context, f *api.FileInfo, workers []blockWorker) ([]item, []*api.FailedPath, error) {
		if f.GetFolder() {
			return nil, nil, nil
		}
		e, failed := elem(f)
		if failed != nil {
			return nil, []*api.FailedPath{failed}, nil
		}
		return []item{{
			Elem:   e,
			Bytes:  f.GetLength(),
			Files:  1,
			Target: holder(fileBlocks(f), workers, ""),
			Batch:  true,
			Desc:   f.GetPath(),
		}}, nil, nil
	}
}

// fileSource yields the files a plan works on: a tree walk, or a list.
type fileSource interface {
	Next(ctx context.Context) (*api.FileInfo, error) // io.EOF after the last
	Pos() string                                     // resume point after the last file returned
}

// walkSource is a tree walk as a fileSource.
type walkSource struct {
	w    *walker
	last string
}

func (s *walkSource) Next(ctx context.Context) (*api.FileInfo, error) {
	f, err := s.w.Next(ctx)
	if err == nil {
		s.last = f.GetPath()
	}
	return f, err
}

func (s *walkSource) Pos() string { return s.last }

// walkOpts says what a planner walks: the tree under Root, listed PageSize
// entries a call, with block locations (Blocks) and synced with the UFS as
// it goes (Sync).
type walkOpts struct {
	Root         string
	PageSize     int
	Blocks, Sync bool
}

// source is the walk resumed after cur.
func (wo walkOpts) source(env Env) func(itemCursor) fileSource {
	return func(cur itemCursor) fileSource {
		size := wo.PageSize
		if size < 1 {
			size = spec.DefaultPageSize
		}
		w := newWalker(env.FS(), wo.Root, cur.After, int32(size), wo.Blocks)
		w.sync = wo.Sync
		return &walkSource{w: w, last: cur.After}
	}
}

type itemPlanner struct {
	env  Env
	name string // the plan, for errors
	// first picks, per job, which of equally loaded workers comes first
	// (workerLoads): a job's own spread starts from it, and the many
	// one-file jobs of a workload spread over the workers instead of all
	// going to the lowest id.
	first      uint64
	walk       fileSource
	cur        itemCursor
	gen        itemGen
	batchFiles int
	batchBytes int64
	// onDone runs once the walk ends, before the last batch is returned:
	// a plan may add final items (move's clean-up).
	onDone func(ctx context.Context) ([]item, error)
	// state is the plan's own planning state (a pointer), kept in the
	// cursor: read back from it on a resume, saved with every batch.
	state any
	// limits, with need set (onWorkers), are the block workers the job
	// may use; planning fails when none of them is live.
	limits *api.JobLimits
	need   string // the job, for that error ("load /data")

	workers   []blockWorker // live, eligible, by id
	refreshed time.Time
	loads     *workerLoads // workers by bytes planned
	filling   *loadedWorker
	targets   []blockWorker        // scratch: place's answer
	open      map[int64]*itemBatch // by target worker id
	elem      bytes.Buffer         // scratch: an item's element, encoded by enc
	enc       *json.Encoder
	pending   map[int64]int64 // bytes in open batches, by worker id
	out       []TaskSpec
	failed    []*api.FailedPath
	eof       bool
	calls     int
	lastArgs  int // the length of the last batched task's arguments: the next batch's room
	// What this Next counted without tasks (Batch.FilesSkipped, ...).
	filesSkipped, bytesSkipped, deletes int64
}

// itemBatch is a task being filled: its arguments are written as its
// items come (itemArgs' JSON, up to the items' closing "]}"), so a task
// costs one buffer, whatever its items.
type itemBatch struct {
	target blockWorker
	args   []byte
	n      int    // items
	desc   string // the first item's
	bytes  int64
	files  int64
}

// newItemBatch starts a task for t with room for room bytes of items.
func newItemBatch(t blockWorker, room int) *itemBatch {
	ob := &itemBatch{target: t, args: make([]byte, 0, 48+len(t.addr)+room)}
	ob.args = append(ob.args, '{')
	if t.id != 0 {
		ob.args = strconv.AppendInt(append(ob.args, `"w":`...), t.id, 10)
		ob.args = append(ob.args, ',')
	}
	if t.addr != "" {
		ob.args = appendJSONString(append(ob.args, `"a":`...), t.addr)
		ob.args = append(ob.args, ',')
	}
	ob.args = append(ob.args, `"i":[`...)
	return ob
}

// appendJSONString appends s as a JSON string, as json.Marshal writes it.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	return append(append(append(b, '"'), s...), '"')
}

// add appends an item (its element's JSON) to the batch.
func (ob *itemBatch) add(elem []byte, it item) {
	if ob.n > 0 {
		ob.args = append(ob.args, ',')
	} else {
		ob.desc = it.Desc
	}
	ob.args = append(ob.args, elem...)
	ob.n++
	ob.bytes += it.Bytes
	ob.files += it.Files
}

const (
	workerRefresh = 10 * time.Second
	firstBudget   = 10 * time.Millisecond
	nextBudget    = 100 * time.Millisecond
)

// PlanBudget is how long the calls-th Next of a planner may gather tasks
// before handing them over: 10 ms for the first, doubling to 100 ms, so
// the workers start within milliseconds and are fed in growing batches
// while they are still warming up, instead of idling through a first long
// gather. Plugin plans' planners (plans/plugin) gather by the same rule.
func PlanBudget(calls int) time.Duration {
	if calls >= 4 {
		return nextBudget
	}
	return min(firstBudget<<calls, nextBudget)
}

// newItemPlanner plans the files of a tree walk.
func newItemPlanner(env Env, name string, job Job, wo walkOpts, b spec.Batching, gen itemGen) (*itemPlanner, error) {
	return newItemPlannerFrom(env, name, job, wo.source(env), b, gen)
}

// newItemPlannerFrom plans the files source yields, resumed after a
// cursor.
func newItemPlannerFrom(env Env, name string, job Job, source func(itemCursor) fileSource, b spec.Batching, gen itemGen) (*itemPlanner, error) {
	var cur itemCursor
	if len(job.Cursor) > 0 {
		if err := json.Unmarshal(job.Cursor, &cur); err != nil {
			return nil, fmt.Errorf("%s job %d: bad cursor: %w", name, job.ID, err)
		}
	}
	if cur.Planned == nil {
		cur.Planned = map[int64]int64{}
	}
	if b.BatchFiles < 1 {
		b.BatchFiles = spec.DefaultBatchFiles
	}
	if b.BatchBytes < 1 {
		b.BatchBytes = spec.DefaultBatchBytes
	}
	p := &itemPlanner{
		env: env, name: name, first: jobSeed(job), cur: cur, gen: gen, batchFiles: b.BatchFiles, batchBytes: b.BatchBytes,
		walk: source(cur), open: map[int64]*itemBatch{}, pending: map[int64]int64{},
		loads: newWorkerLoads(nil, nil, 0), // until the workers are listed
	}
	p.enc = json.NewEncoder(&p.elem)
	return p, nil
}

// jobSeed is a number of the job's own (its config, submit time and id):
// the same for every planner of the job (a resumed one starts where the
// first did), different from job to job.
func jobSeed(job Job) uint64 {
	h := fnv.New64a()
	_, _ = h.Write(job.Config)
	_, _ = h.Write([]byte(strconv.FormatInt(job.CreatedMs, 10) + "/" + strconv.FormatInt(job.ID, 10)))
	return h.Sum64()
}

// oneByOne is the batching of plans whose every item is a task of its own.
var oneByOne = spec.Batching{BatchFiles: 1, BatchBytes: 1}

func (p *itemPlanner) Close() error {
	if w, ok := p.walk.(*walkSource); ok {
		w.w.close()
	}
	return nil
}

// withState keeps the plan's planning state *st in the cursor: it is read
// back from the cursor now (a resumed planner goes on from it) and saved
// with every batch, so it always matches the files planned.
func (p *itemPlanner) withState(st any) (*itemPlanner, error) {
	if len(p.cur.Aux) > 0 {
		if err := json.Unmarshal(p.cur.Aux, st); err != nil {
			return nil, fmt.Errorf("%s: bad planning state in the cursor: %w", p.name, err)
		}
	}
	p.state = st
	return p, nil
}

// onWorkers has the job place its tasks only on the block workers lim
// allows, and fail to plan (naming the job, what) while none of them is
// live.
func (p *itemPlanner) onWorkers(lim *api.JobLimits, what string) *itemPlanner {
	p.limits, p.need = lim, what
	return p
}

// Next implements Planner.
func (p *itemPlanner) Next(ctx context.Context, max int) (Batch, error) {
	if max < 1 {
		max = 1
	}
	p.out, p.failed = nil, nil
	p.filesSkipped, p.bytesSkipped, p.deletes = 0, 0, 0
	// Hand tasks over soon: the first batch within milliseconds so the
	// workers start while the listing goes on, later ones at least every
	// nextBudget.
	start, budget := time.Now(), PlanBudget(p.calls)
	p.calls++
	scanned := 0
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
			if status.Code(err) == codes.NotFound {
				return Batch{}, status.Errorf(codes.NotFound, "%s: %v", p.name, status.Convert(err).Message())
			}
			return Batch{}, err
		}
		scanned++
		items, failed, err := p.gen(ctx, f, p.workers)
		if err != nil {
			return Batch{}, err
		}
		p.failed = append(p.failed, failed...)
		for _, it := range items {
			if err := p.add(it); err != nil {
				return Batch{}, err
			}
		}
		p.cur.After = p.walk.Pos()
	}
	if p.eof && p.onDone != nil {
		items, err := p.onDone(ctx)
		if err != nil {
			return Batch{}, err
		}
		p.onDone = nil
		for _, it := range items {
			if err := p.add(it); err != nil {
				return Batch{}, err
			}
		}
	}
	// Every Next ends with nothing pending, so the cursor (the last file
	// listed) is exact: no file's items are half emitted, none is emitted
	// after one still waiting. A batch of small files thus never spans two
	// calls; Next covers thousands of files, so few batches are cut short.
	ids := make([]int64, 0, len(p.open))
	for id := range p.open {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		p.flush(id)
	}
	if p.state != nil {
		aux, err := json.Marshal(p.state)
		if err != nil {
			return Batch{}, err
		}
		p.cur.Aux = aux
	}
	cur, err := json.Marshal(p.cur)
	if err != nil {
		return Batch{}, err
	}
	return Batch{Tasks: p.out, Cursor: cur, Done: p.eof, Failed: p.failed,
		FilesSkipped: p.filesSkipped, BytesSkipped: p.bytesSkipped, Deletes: p.deletes}, nil
}

// refreshWorkers lists the live workers the job may use again, and rebuilds
// their loads from the bytes planned (committed and open).
func (p *itemPlanner) refreshWorkers(ctx context.Context) error {
	all, err := liveBlockWorkers(ctx, p.env)
	if err != nil {
		return err
	}
	p.workers, p.refreshed = eligibleWorkers(all, p.limits), time.Now()
	if p.workers == nil {
		p.workers = []blockWorker{} // listed: none
	}
	p.loads = newWorkerLoads(p.workers, func(id int64) int64 { return p.cur.Planned[id] + p.pending[id] }, p.first)
	p.filling = nil
	if len(p.workers) == 0 && p.need != "" {
		return status.Errorf(codes.FailedPrecondition, "%s: no eligible live block worker", p.need)
	}
	return nil
}

// place picks the workers an item goes to: its Target, else the least
// loaded eligible ones not holding it. A small item goes to the worker
// whose batch is filling while that one may take it, so batches fill
// before the next worker's starts: the spread stays even at batch
// granularity, and tasks stay full however many workers there are. With
// no live worker at all an item is placed nowhere (the job master runs it
// anywhere).
func (p *itemPlanner) place(it item) []blockWorker {
	if t := it.Target; t.id != 0 || t.addr != "" || p.loads.Len() == 0 {
		return append(p.targets[:0], t)
	}
	copies := max(it.Copies, 1)
	if it.Batch && copies == 1 && p.filling != nil && !slices.Contains(it.Avoid, p.filling.w.id) {
		if ob := p.open[p.filling.w.id]; ob != nil && ob.n < p.batchFiles {
			return append(p.targets[:0], p.filling.w)
		}
	}
	picked := p.loads.least(copies, it.Avoid)
	if it.Batch && len(picked) == 1 {
		p.filling = picked[0]
	}
	p.targets = p.targets[:0]
	for _, lw := range picked {
		p.targets = append(p.targets, lw.w)
	}
	return p.targets
}

func (p *itemPlanner) add(it item) error {
	if it.Skip {
		p.filesSkipped++
		p.bytesSkipped += it.Bytes
		it.Bytes = 0
	}
	p.deletes += it.Deletes
	if it.Elem == nil {
		return nil
	}
	// Encoded once into the planner's scratch buffer, copied into each task
	// it goes to: no allocation an item.
	p.elem.Reset()
	if err := p.enc.Encode(it.Elem); err != nil {
		return fmt.Errorf("%s: task element: %w", p.name, err)
	}
	elem := bytes.TrimSuffix(p.elem.Bytes(), []byte{'\n'})
	for _, t := range p.place(it) {
		p.put(t, elem, it)
		it.Files = 0 // counted in the first copy's task
	}
	return nil
}

// put adds an item's element to a task for worker t: a task of its own, or
// the worker's open batch.
func (p *itemPlanner) put(t blockWorker, elem []byte, it item) {
	p.pending[t.id] += it.Bytes
	p.loads.add(t.id, it.Bytes)
	if !it.Batch {
		ob := newItemBatch(t, len(elem)+2)
		ob.add(elem, it)
		p.emit(ob)
		return
	}
	ob := p.open[t.id]
	if ob != nil && (ob.n >= p.batchFiles || ob.bytes+it.Bytes > p.batchBytes) {
		p.flush(t.id)
		ob = nil
	}
	if ob == nil {
		// Room for as many items as the last batch took (up to 64 KiB), so
		// a big load's batches rarely grow, while a job of one file (the
		// first batch of every planner) does not allocate — and zero — a
		// full batch's room for its one item: a batch starts with room for
		// a few items and grows as items come.
		room := (len(elem) + 1) * min(p.batchFiles, 4)
		if p.lastArgs > room {
			room = min(p.lastArgs, 64<<10)
		}
		ob = newItemBatch(t, room)
		p.open[t.id] = ob
	}
	ob.add(elem, it)
	if ob.n >= p.batchFiles || ob.bytes >= p.batchBytes {
		p.flush(t.id)
	}
}

func (p *itemPlanner) flush(id int64) {
	if ob := p.open[id]; ob != nil {
		delete(p.open, id)
		p.emit(ob)
	}
}

func (p *itemPlanner) emit(ob *itemBatch) {
	id := ob.target.id
	p.pending[id] -= ob.bytes
	p.cur.Planned[id] += ob.bytes
	args := append(ob.args, "]}"...)
	desc := ob.desc
	if ob.n > 1 {
		p.lastArgs = len(args)
		desc = fmt.Sprintf("%s (+%d more)", desc, ob.n-1)
	}
	p.out = append(p.out, TaskSpec{Args: args, Description: desc, Bytes: ob.bytes, Files: ob.files, BlockWorkerID: ob.target.id, BlockWorkerAddress: ob.target.addr})
}

// itemResult is what one item of a task did.
type itemResult struct {
	bytes int64
	// skipped: the item found its file already done, of these bytes (not
	// in bytes); it counts in Result.FilesSkipped.
	skipped int64
	skip    bool
	failed  []*api.FailedPath // the paths that failed, when err is set
	err     error
}

// failedResult is an item that failed with err, on paths.
func failedResult(err error, paths ...*api.FailedPath) itemResult {
	return itemResult{err: err, failed: paths}
}

// skippedResult is an item that found its file of n bytes already done.
func skippedResult(n int64) itemResult { return itemResult{skipped: n, skip: true} }

// runItems runs a task's items, par at a time, and sums them up (runEach).
func runItems(ctx context.Context, t *Task, par int, fn func(ctx context.Context, raw json.RawMessage) itemResult) (Result, error) {
	var a itemArgs
	if err := json.Unmarshal(t.Args, &a); err != nil {
		return Result{}, fmt.Errorf("task %d/%d: bad args: %w", t.JobID, t.TaskID, err)
	}
	return runEach(ctx, t, len(a.Items), par, func(ctx context.Context, i int) itemResult { return fn(ctx, a.Items[i]) })
}

// runEach runs a task's n items, par at a time, reports the bytes done as
// they end, and sums them up: the task fails (and is retried) when any
// item failed; the failed paths say which.
func runEach(ctx context.Context, t *Task, n, par int, fn func(ctx context.Context, i int) itemResult) (Result, error) {
	var (
		mu     sync.Mutex
		done   int64
		skip   Result // its FilesSkipped and BytesSkipped
		failed []*api.FailedPath
		first  error
	)
	eachLimit(ctx, n, par, func(i int) {
		r := fn(ctx, i)
		mu.Lock()
		defer mu.Unlock()
		done += r.bytes
		if r.skip {
			skip.FilesSkipped++
			skip.BytesSkipped += r.skipped
		}
		if r.err != nil {
			if ctx.Err() == nil {
				failed = append(failed, r.failed...)
			}
			if first == nil {
				first = r.err
			}
			return
		}
		if t.Progress != nil {
			t.Progress(done)
		}
	})
	res := Result{Bytes: done, Failed: failed, FilesSkipped: skip.FilesSkipped, BytesSkipped: skip.BytesSkipped}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	if first != nil {
		if n == 1 {
			return res, first
		}
		return res, status.Errorf(status.Code(first), "%d of %d item(s) failed, first: %s", max(len(failed), 1), n, msg(first))
	}
	return res, nil
}

// eachLimit calls fn(i) for each i in [0, n), par (at least 1) at a time,
// and returns once every call has: the tasks' bounded fan-out. Once ctx is
// done it starts no more calls; those running see ctx themselves.
func eachLimit(ctx context.Context, n, par int, fn func(i int)) {
	if n == 1 || par <= 1 {
		// One at a time (a tiny job's one block): on the caller's goroutine.
		for i := range n {
			if ctx.Err() != nil {
				return
			}
			fn(i)
		}
		return
	}
	var g errgroup.Group
	g.SetLimit(max(par, 1))
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		g.Go(func() error {
			// Go may have waited for a slot while ctx ended.
			if ctx.Err() == nil {
				fn(i)
			}
			return nil
		})
	}
	_ = g.Wait()
}

// statPath stats p for a plan's Validate, with errors naming the plan.
func statPath(ctx context.Context, env Env, plan, p string) (*api.FileInfo, error) {
	resp, err := env.FS().GetStatus(ctx, &api.GetStatusRequest{Path: p})
	if err != nil {
		if status.Code(err) == codes.NotFound {
			return nil, status.Errorf(codes.NotFound, "%s %s: no such file or directory", plan, p)
		}
		return nil, status.Errorf(status.Code(err), "%s %s: stat: %v", plan, p, status.Convert(err).Message())
	}
	return resp.GetInfo(), nil
}

// exists stats p: (nil, nil) when it does not exist.
func exists(ctx context.Context, env Env, p string) (*api.FileInfo, error) {
	resp, err := env.FS().GetStatus(ctx, &api.GetStatusRequest{Path: p})
	if status.Code(err) == codes.NotFound {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return resp.GetInfo(), nil
}

// addrOf is a worker's rpc address as host:port.
func addrOf(a *api.WorkerNetAddress) string {
	if a == nil || a.GetHost() == "" {
		return ""
	}
	return fmt.Sprintf("%s:%d", a.GetHost(), a.GetRpcPort())
}

// fileBlock is one block of a file as the plans see it.
type fileBlock struct {
	ID      int64    `json:"id"`
	Offset  int64    `json:"o,omitempty"`
	Length  int64    `json:"l"`
	Workers []string `json:"w,omitempty"` // addresses caching it
	IDs     []int64  `json:"-"`           // their worker ids
}

// fileBlocks lists a file's blocks with their cached locations.
func fileBlocks(f *api.FileInfo) []fileBlock {
	layout := api.LayoutOf(f)
	n := layout.Count()
	fbis := f.GetFileBlockInfos()
	out := make([]fileBlock, 0, n)
	for i := int64(0); i < n; i++ {
		sp := layout.Block(i)
		b := fileBlock{ID: sp.ID, Offset: sp.Offset, Length: sp.Length}
		switch {
		case int(i) < len(fbis) && fbis[i].GetBlockInfo() != nil:
			bi := fbis[i].GetBlockInfo()
			b.ID = bi.GetBlockId()
			if bi.GetLength() > 0 {
				b.Length = bi.GetLength()
			}
			for _, l := range bi.GetLocations() {
				if a := addrOf(l.GetAddress()); a != "" {
					b.Workers = append(b.Workers, a)
					b.IDs = append(b.IDs, l.GetWorkerId())
				}
			}
		}
		out = append(out, b)
	}
	return out
}

// persisted says whether a file's bytes are in its UFS.
func persisted(f *api.FileInfo) bool {
	return f.GetPersistenceState() == api.PersistenceState_PERSISTED
}

// joinAfter maps a path under src to the same place under dst.
func joinAfter(src, dst, p string) string {
	rel := paths.Rel(src, p)
	if rel == "" {
		return dst
	}
	if dst == "/" {
		return "/" + rel
	}
	return dst + "/" + rel
}

// mountFor returns the mount holding the clean path p, and p's UFS URI.
func mountFor(mounts []*api.MountPointInfo, p string) (*api.MountPointInfo, string) {
	var best *api.MountPointInfo
	for _, m := range mounts {
		if paths.IsAncestor(m.GetAlluviumPath(), p) && (best == nil || len(m.GetAlluviumPath()) > len(best.GetAlluviumPath())) {
			best = m
		}
	}
	if best == nil {
		return nil, ""
	}
	rel := strings.Trim(paths.Rel(best.GetAlluviumPath(), p), "/")
	uri := best.GetUfsUri()
	if rel != "" {
		uri = strings.TrimRight(uri, "/") + "/" + rel
	}
	return best, uri
}

func mountTable(ctx context.Context, env Env) ([]*api.MountPointInfo, error) {
	resp, err := env.FS().GetMountTable(ctx, &api.GetMountTableRequest{})
	if err != nil {
		return nil, fmt.Errorf("mount table: %w", err)
	}
	return resp.GetMounts(), nil
}

// failedf is a FailedPath.
func failedf(p, format string, a ...any) *api.FailedPath {
	return &api.FailedPath{Path: p, Error: fmt.Sprintf(format, a...)}
}

// wrapf prefixes err's message, keeping its gRPC code, so nested calls
// read as one line ("copy /a: write ...: ufs ...: reason").
func wrapf(err error, format string, a ...any) error {
	code := status.Code(err)
	if code == codes.Unknown {
		if errors.Is(err, context.Canceled) {
			code = codes.Canceled
		} else if errors.Is(err, context.DeadlineExceeded) {
			code = codes.DeadlineExceeded
		}
	}
	return status.Errorf(code, "%s: %s", fmt.Sprintf(format, a...), msg(err))
}

// msg is the message of a (gRPC) error.
func msg(err error) string {
	if s, ok := status.FromError(err); ok && errors.Unwrap(err) == nil {
		return s.Message()
	}
	return err.Error()
}
