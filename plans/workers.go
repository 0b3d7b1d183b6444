package plans

import (
	"container/heap"
	"context"
	"fmt"
	"slices"
	"sort"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
)

// blockWorker is a block worker as the plans see it.
type blockWorker struct {
	id   int64
	addr string // host:rpc-port
}

// liveBlockWorkers lists the live block workers, sorted by id. It only
// reads the listing: the job master hands one answer to every submit of a
// moment.
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

// workersListed is liveBlockWorkers' answer, passed from the goroutine
// that asked it.
type workersListed struct {
	all []blockWorker
	err error
}

func anyMatches(ws []blockWorker, name string) bool {
	for _, w := range ws {
		if api.WorkerNamed(name, w.id, w.addr) {
			return true
		}
	}
	return false
}

// eligibleWorkers keeps the workers a job's limits allow (all of them
// when lim is nil), in their order.
func eligibleWorkers(all []blockWorker, lim *api.JobLimits) []blockWorker {
	if lim == nil {
		return all
	}
	var out []blockWorker
	for _, w := range all {
		if lim.AllowsWorker(w.id, w.addr) {
			out = append(out, w)
		}
	}
	return out
}

// holder returns the live worker caching most of a file's bytes (zero
// when none caches any), preferring prefer on a tie. It looks up only the
// few workers holding blocks (by binary search: workers come sorted by id
// from liveBlockWorkers), never every worker per file.
func holder(blocks []fileBlock, workers []blockWorker, prefer string) blockWorker {
	bytes := map[int64]int64{}
	for _, b := range blocks {
		for _, id := range b.IDs {
			bytes[id] += max(b.Length, 1)
		}
	}
	var best blockWorker
	var most int64
	for id, n := range bytes {
		w, ok := findWorker(workers, id)
		if !ok {
			continue
		}
		if n > most || n == most && (w.addr == prefer || best.addr != prefer && w.id < best.id) {
			best, most = w, n
		}
	}
	return best
}

// findWorker finds worker id in ws, sorted by id (as liveBlockWorkers and
// eligibleWorkers return them), by binary search.
func findWorker(ws []blockWorker, id int64) (blockWorker, bool) {
	i := sort.Search(len(ws), func(i int) bool { return ws[i].id >= id })
	if i < len(ws) && ws[i].id == id {
		return ws[i], true
	}
	return blockWorker{}, false
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

// workerLoads keeps the eligible block workers in a heap by the bytes a
// planner has given each, ties to the one chosen least recently: picking
// the least loaded costs O(log workers), where scanning every worker for
// every file cost a job of millions of files over thousands of workers
// hours of planning.
type workerLoads struct {
	ws   []*loadedWorker
	byID map[int64]*loadedWorker
	seq  uint64
	// scratch for least
	out, held []*loadedWorker
}

type loadedWorker struct {
	w    blockWorker
	load int64
	seq  uint64 // when last chosen
	idx  int
}

// newWorkerLoads makes the heap of ws with their loads so far. Among
// workers equally loaded, the one first%len(ws) places after the lowest id
// comes first, then the next in id order: a job of one small file (a tiny
// load) has one task, and were every job's first pick the lowest id, one
// worker would get every such job's block and task while the others idle.
func newWorkerLoads(ws []blockWorker, load func(id int64) int64, first uint64) *workerLoads {
	l := &workerLoads{byID: make(map[int64]*loadedWorker, len(ws)), seq: uint64(len(ws))}
	start := 0
	if len(ws) > 0 {
		start = int(first % uint64(len(ws)))
	}
	for i, w := range ws {
		// As if chosen in id order from start on, the longest ago first.
		seq := uint64((i - start + len(ws)) % len(ws))
		lw := &loadedWorker{w: w, load: load(w.id), idx: i, seq: seq}
		l.ws = append(l.ws, lw)
		l.byID[w.id] = lw
	}
	heap.Init(l)
	return l
}

// add gives worker id bytes more.
func (l *workerLoads) add(id, bytes int64) {
	lw := l.byID[id]
	if lw == nil {
		return
	}
	lw.load += bytes
	heap.Fix(l, lw.idx)
}

// least returns up to need workers not in skip, least loaded first, and
// marks them chosen. The slice is valid until the next call.
func (l *workerLoads) least(need int, skip []int64) []*loadedWorker {
	out, held := l.out[:0], l.held[:0]
	for len(out) < need && len(l.ws) > 0 {
		lw := heap.Pop(l).(*loadedWorker)
		held = append(held, lw)
		if !slices.Contains(skip, lw.w.id) {
			out = append(out, lw)
		}
	}
	for _, lw := range out {
		l.seq++
		lw.seq = l.seq
	}
	for _, lw := range held {
		heap.Push(l, lw)
	}
	l.out, l.held = out, held
	return out
}

// heap.Interface.
func (l *workerLoads) Len() int { return len(l.ws) }
func (l *workerLoads) Less(i, j int) bool {
	a, b := l.ws[i], l.ws[j]
	if a.load != b.load {
		return a.load < b.load
	}
	if a.seq != b.seq {
		return a.seq < b.seq
	}
	return a.w.id < b.w.id
}
func (l *workerLoads) Swap(i, j int) {
	l.ws[i], l.ws[j] = l.ws[j], l.ws[i]
	l.ws[i].idx, l.ws[j].idx = i, j
}
func (l *workerLoads) Push(x any) {
	lw := x.(*loadedWorker)
	lw.idx = len(l.ws)
	l.ws = append(l.ws, lw)
}
func (l *workerLoads) Pop() any {
	n := len(l.ws)
	lw := l.ws[n-1]
	l.ws = l.ws[:n-1]
	return lw
}
