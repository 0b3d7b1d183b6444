package plans

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/paths"
	"github.com/alluvium/alluvium/plans/spec"
)

// A fake cluster for the load plan's unit tests: an FS master that lists
// directories in name order with name page tokens (as fsmaster does), a
// block master, and block workers that cache blocks.

type fakeCluster struct {
	mu      sync.Mutex
	nodes   map[string]*api.FileInfo // path → info
	workers []*api.WorkerInfo
	locs    map[int64]map[int64]bool // block → worker ids
	dead    map[string]bool          // block worker addresses that do not answer
	cached  map[string]int           // address → CacheBlock calls that cached
	nextID  int64
	maxPage int32
	kids    map[string][]*api.FileInfo
	kidsN   int
	listErr map[string]error // directory → the error listing it returns
}

func newFakeCluster(workers int) *fakeCluster {
	c := &fakeCluster{nodes: map[string]*api.FileInfo{}, locs: map[int64]map[int64]bool{}, dead: map[string]bool{}, cached: map[string]int{}, nextID: 1}
	c.nodes["/"] = &api.FileInfo{Path: "/", Name: "", Folder: true, FileId: 0}
	for i := 1; i <= workers; i++ {
		c.workers = append(c.workers, &api.WorkerInfo{Id: int64(i), State: api.WorkerState_LIVE,
			Address: &api.WorkerNetAddress{Host: fmt.Sprintf("h%d", i), RpcPort: 29999}})
	}
	return c
}

func waddr(i int) string { return fmt.Sprintf("h%d:29999", i) }

// file adds a persisted file (and its parents) of length n with block size bs.
func (c *fakeCluster) file(p string, n, bs int64) *api.FileInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mkdirsLocked(parentOf(p))
	id := c.nextID
	c.nextID++
	_, name := paths.Split(p)
	fi := &api.FileInfo{Path: p, Name: name, FileId: id, Length: n, BlockSizeBytes: bs, Completed: true,
		PersistenceState: api.PersistenceState_PERSISTED, UfsPath: "file:///ufs" + p, MountId: 1, UfsFingerprint: "fp",
		LastModificationTimeMs: 1_000_000 + id} // distinct per file, as written at different times
	for i := int64(0); i*bs < n; i++ {
		fi.BlockIds = append(fi.BlockIds, api.BlockID(id, i))
	}
	c.nodes[p] = fi
	return fi
}

func parentOf(p string) string {
	d, _ := paths.Split(p)
	return d
}

func (c *fakeCluster) mkdirsLocked(p string) {
	for p != "/" && p != "" {
		if _, ok := c.nodes[p]; ok {
			return
		}
		_, name := paths.Split(p)
		c.nodes[p] = &api.FileInfo{Path: p, Name: name, Folder: true}
		p = parentOf(p)
	}
}

// withBlocks fills file block infos with the current locations.
func (c *fakeCluster) withBlocks(fi *api.FileInfo) *api.FileInfo {
	out := proto.Clone(fi).(*api.FileInfo)
	out.FileBlockInfos = nil
	for i, id := range fi.GetBlockIds() {
		bi := &api.BlockInfo{BlockId: id, Length: min(fi.BlockSizeBytes, fi.Length-int64(i)*fi.BlockSizeBytes)}
		var ws []int64
		for w := range c.locs[id] {
			ws = append(ws, w)
		}
		sort.Slice(ws, func(a, b int) bool { return ws[a] < ws[b] })
		for _, w := range ws {
			bi.Locations = append(bi.Locations, &api.BlockLocation{WorkerId: w})
		}
		out.FileBlockInfos = append(out.FileBlockInfos, &api.FileBlockInfo{BlockInfo: bi, Offset: int64(i) * fi.BlockSizeBytes})
	}
	return out
}

// childrenLocked lists dir's children by name (cached until a change).
func (c *fakeCluster) childrenLocked(dir string) []*api.FileInfo {
	if c.kids == nil || c.kidsN != len(c.nodes) {
		c.kids, c.kidsN = map[string][]*api.FileInfo{}, len(c.nodes)
		for p, fi := range c.nodes {
			if p != "/" {
				c.kids[parentOf(p)] = append(c.kids[parentOf(p)], fi)
			}
		}
		for _, ks := range c.kids {
			sort.Slice(ks, func(a, b int) bool { return ks[a].Name < ks[b].Name })
		}
	}
	return c.kids[dir]
}

type fakeFS struct {
	api.FileSystemMasterClient
	c *fakeCluster
}

func (f fakeFS) GetStatus(_ context.Context, req *api.GetStatusRequest, _ ...grpc.CallOption) (*api.GetStatusResponse, error) {
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	fi, ok := f.c.nodes[req.GetPath()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "stat %s: no such file or directory", req.GetPath())
	}
	return &api.GetStatusResponse{Info: f.c.withBlocks(fi)}, nil
}

func (f fakeFS) ListStatus(_ context.Context, req *api.ListStatusRequest, _ ...grpc.CallOption) (*api.ListStatusResponse, error) {
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	f.c.maxPage = max(f.c.maxPage, req.GetPageSize())
	dir := req.GetPath()
	if err := f.c.listErr[dir]; err != nil {
		return nil, err
	}
	if _, ok := f.c.nodes[dir]; !ok {
		return nil, status.Errorf(codes.NotFound, "ls %s: no such file or directory", dir)
	}
	resp := &api.ListStatusResponse{}
	if req.GetRecursive() {
		// Pre-order, children by name; the token is the last path listed.
		var all []*api.FileInfo
		var walk func(d string)
		walk = func(d string) {
			for _, k := range f.c.childrenLocked(d) {
				all = append(all, k)
				if k.Folder {
					walk(k.Path)
				}
			}
		}
		walk(dir)
		for _, k := range all {
			if req.GetPageToken() != "" && !preorderAfter(k.Path, req.GetPageToken()) {
				continue
			}
			if int32(len(resp.Infos)) == req.GetPageSize() {
				resp.NextPageToken = resp.Infos[len(resp.Infos)-1].Path
				break
			}
			resp.Infos = append(resp.Infos, f.c.withBlocks(k))
		}
		return resp, nil
	}
	kids := f.c.childrenLocked(dir)
	for _, k := range kids {
		if req.GetPageToken() != "" && k.Name <= req.GetPageToken() {
			continue
		}
		if int32(len(resp.Infos)) == req.GetPageSize() {
			resp.NextPageToken = resp.Infos[len(resp.Infos)-1].Name
			break
		}
		resp.Infos = append(resp.Infos, f.c.withBlocks(k))
	}
	return resp, nil
}

// preorderAfter reports whether path a comes after b in a pre-order walk
// with children by name (a parent before its children).
func preorderAfter(a, b string) bool {
	ca, cb := paths.Components(a), paths.Components(b)
	for i := range min(len(ca), len(cb)) {
		if ca[i] != cb[i] {
			return ca[i] > cb[i]
		}
	}
	return len(ca) > len(cb)
}

type fakeBM struct {
	api.BlockMasterClient
	c *fakeCluster
}

func (b fakeBM) GetWorkerInfoList(context.Context, *api.GetWorkerInfoListRequest, ...grpc.CallOption) (*api.GetWorkerInfoListResponse, error) {
	b.c.mu.Lock()
	defer b.c.mu.Unlock()
	return &api.GetWorkerInfoListResponse{Workers: b.c.workers}, nil
}

func (b fakeBM) GetBlockInfo(_ context.Context, req *api.GetBlockInfoRequest, _ ...grpc.CallOption) (*api.GetBlockInfoResponse, error) {
	b.c.mu.Lock()
	defer b.c.mu.Unlock()
	bi := &api.BlockInfo{BlockId: req.GetBlockId()}
	for w := range b.c.locs[req.GetBlockId()] {
		bi.Locations = append(bi.Locations, &api.BlockLocation{WorkerId: w})
	}
	return &api.GetBlockInfoResponse{Info: bi}, nil
}

type fakeBW struct {
	api.BlockWorkerClient
	c    *fakeCluster
	addr string
}

func (w fakeBW) CacheBlock(ctx context.Context, req *api.CacheBlockRequest, _ ...grpc.CallOption) (*api.CacheBlockResponse, error) {
	w.c.mu.Lock()
	defer w.c.mu.Unlock()
	if w.c.dead[w.addr] {
		return nil, status.Error(codes.Unavailable, "connection refused")
	}
	var id int64
	for _, wi := range w.c.workers {
		if fmt.Sprintf("%s:%d", wi.Address.Host, wi.Address.RpcPort) == w.addr {
			id = wi.Id
		}
	}
	if w.c.locs[req.GetBlockId()] == nil {
		w.c.locs[req.GetBlockId()] = map[int64]bool{}
	}
	w.c.locs[req.GetBlockId()][id] = true
	w.c.cached[w.addr]++
	return &api.CacheBlockResponse{Bytes: req.GetSource().GetLength()}, nil
}

type fakeEnv struct{ c *fakeCluster }

func (e fakeEnv) FS() api.FileSystemMasterClient     { return fakeFS{c: e.c} }
func (e fakeEnv) BlockMaster() api.BlockMasterClient { return fakeBM{c: e.c} }
func (e fakeEnv) BlockWorker(addr string) (api.BlockWorkerClient, error) {
	return fakeBW{c: e.c, addr: addr}, nil
}

func cfgJSON(t testing.TB, c spec.LoadConfig) []byte {
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// planAll runs a planner to the end, restarting it from the committed
// cursor after a batch with probability restart (a failover), and returns
// every task.
func planAll(t *testing.T, env Env, cfg []byte, max int, restart float64, rng *rand.Rand) []TaskSpec {
	t.Helper()
	return planAllOf(t, Load{}, env, cfg, max, restart, rng)
}

// planAllOf is planAll for any plan.
func planAllOf(t *testing.T, plan Plan, env Env, cfg []byte, max int, restart float64, rng *rand.Rand) []TaskSpec {
	t.Helper()
	ctx := context.Background()
	var cursor []byte
	var out []TaskSpec
	p, err := plan.NewPlanner(ctx, env, Job{ID: 1, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		if i > 100000 {
			t.Fatal("planning does not end")
		}
		b, err := p.Next(ctx, max)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b.Tasks...)
		cursor = b.Cursor
		if b.Done {
			return out
		}
		if rng != nil && rng.Float64() < restart {
			p, err = plan.NewPlanner(ctx, env, Job{ID: 1, Config: cfg, Cursor: cursor})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
}

func blocksOf(t *testing.T, tasks []TaskSpec) map[string]int {
	t.Helper()
	m := map[string]int{}
	for _, ts := range tasks {
		a, err := decodeLoadArgs(ts.Args)
		if err != nil {
			t.Fatal(err)
		}
		if a.Worker != ts.BlockWorkerID || a.Address != ts.BlockWorkerAddress {
			t.Fatalf("task placed on %d/%s but caches on %d/%s", ts.BlockWorkerID, ts.BlockWorkerAddress, a.Worker, a.Address)
		}
		for _, b := range a.Blocks {
			m[fmt.Sprintf("%d@%d", b.ID, a.Worker)]++
		}
	}
	return m
}

// Planning streams a big tree in small pages and, restarted at random from
// its committed cursor, plans every block exactly once.
func TestLoadPlannerResumesWithoutDuplicatesOrGaps(t *testing.T) {
	c := newFakeCluster(3)
	rng := rand.New(rand.NewPCG(1, 2))
	want := 0
	for d := 0; d < 12; d++ {
		for f := 0; f < 40+d; f++ {
			size := int64(rng.IntN(3000)) + 1
			if f%9 == 0 {
				size = 3*1000 + 7 // 4 blocks of 1000
			}
			c.file(fmt.Sprintf("/data/d%02d/sub%d/f%03d", d, f%3, f), size, 1000)
			want += int((size + 999) / 1000)
		}
	}
	c.file("/data/zzz", 10, 1000)
	want++
	cfg := cfgJSON(t, spec.LoadConfig{Path: "/data", Batching: spec.Batching{PageSize: 7, BatchFiles: 5, BatchBytes: 2500}})
	for _, restart := range []float64{0, 0.3, 1} {
		got := blocksOf(t, planAll(t, fakeEnv{c}, cfg, 3, restart, rng))
		if len(got) != want {
			t.Fatalf("restart %.1f: %d distinct block copies planned, want %d", restart, len(got), want)
		}
		for k, n := range got {
			if n != 1 {
				t.Fatalf("restart %.1f: block %s planned %d times", restart, k, n)
			}
		}
	}
	// Under the lock: a walk's page read ahead may still be listing.
	c.mu.Lock()
	maxPage := c.maxPage
	c.mu.Unlock()
	if maxPage != 7 {
		t.Fatalf("listing pages of %d entries, want the configured 7", maxPage)
	}
}

// Full blocks are one task each; small files share tasks within the limits;
// planned bytes spread evenly over the workers.
func TestLoadPlannerBatchesAndSpreads(t *testing.T) {
	c := newFakeCluster(3)
	for i := 0; i < 30; i++ {
		c.file(fmt.Sprintf("/big/f%02d", i), 4000, 1000) // 4 full blocks each
	}
	for i := 0; i < 200; i++ {
		c.file(fmt.Sprintf("/small/f%03d", i), 10, 1000)
	}
	tasks := planAll(t, fakeEnv{c}, cfgJSON(t, spec.LoadConfig{Path: "/big"}), 50, 0, nil)
	if len(tasks) != 120 {
		t.Fatalf("%d tasks for 120 full blocks", len(tasks))
	}
	per := map[int64]int64{}
	for _, ts := range tasks {
		per[ts.BlockWorkerID] += ts.Bytes
	}
	for w, b := range per {
		if b != 40*1000 {
			t.Errorf("worker %d got %d bytes, want an even 40000: %v", w, b, per)
		}
	}
	tasks = planAll(t, fakeEnv{c}, cfgJSON(t, spec.LoadConfig{Path: "/small", Batching: spec.Batching{BatchFiles: 16}}), 50, 0, nil)
	n := 0
	for _, ts := range tasks {
		a, _ := decodeLoadArgs(ts.Args)
		if len(a.Blocks) > 16 {
			t.Fatalf("a task of %d small files (batchFiles 16)", len(a.Blocks))
		}
		n += len(a.Blocks)
	}
	if n != 200 || len(tasks) > 200/16+3 {
		t.Fatalf("%d small files in %d tasks", n, len(tasks))
	}
}

// Jobs of one small file each (tiny loads: what pipelines and policies
// submit) spread over the workers: each job's planner starts its spread
// from a worker of its own (jobSeed), where every one used to pick the
// lowest id — one worker caching every such block and running every such
// task while the others idled. A job's planner picks the same worker each
// time it is made (a resumed planning goes on from it).
func TestLoadPlannerSpreadsOneFileJobs(t *testing.T) {
	const workers, jobs = 3, 300
	c := newFakeCluster(workers)
	per := map[int64]int{}
	for i := range jobs {
		p := fmt.Sprintf("/tiny/f%03d", i)
		c.file(p, 10, 1000)
		cfg := cfgJSON(t, spec.LoadConfig{Path: p})
		job := Job{Config: cfg, CreatedMs: 1_700_000_000_000 + int64(i/8)} // 8 submitted each ms
		var first int64
		for try := range 2 {
			pl, err := Load{}.NewPlanner(context.Background(), fakeEnv{c}, job)
			if err != nil {
				t.Fatal(err)
			}
			b, err := pl.Next(context.Background(), 10)
			if err != nil || !b.Done || len(b.Tasks) != 1 {
				t.Fatalf("%s: %d tasks, done %v, %v", p, len(b.Tasks), b.Done, err)
			}
			w := b.Tasks[0].BlockWorkerID
			if try == 0 {
				first = w
				per[w]++
			} else if w != first {
				t.Fatalf("%s: planned on worker %d, then on %d", p, first, w)
			}
		}
	}
	for w := int64(1); w <= workers; w++ {
		// An even share is 100; hashing gives each roughly that.
		if per[w] < jobs/workers/2 {
			t.Errorf("worker %d got %d of %d one-file jobs: %v", w, per[w], jobs, per)
		}
	}
}

// With many more workers than a batch's worth of files, small files still
// fill their tasks: a batch fills on one worker before the next worker's
// starts (spreading block by block made a task per file or two), and the
// bytes stay even to within a batch.
func TestLoadPlannerFillsBatchesAcrossManyWorkers(t *testing.T) {
	c := newFakeCluster(400)
	const files, batch = 20000, 64
	for i := range files {
		c.file(fmt.Sprintf("/s/d%03d/f%05d", i/500, i), 10, 1000)
	}
	tasks := planAll(t, fakeEnv{c}, cfgJSON(t, spec.LoadConfig{Path: "/s", Batching: spec.Batching{BatchFiles: batch}}), 1000, 0, nil)
	if got := len(blocksOf(t, tasks)); got != files {
		t.Fatalf("%d blocks planned, want %d", got, files)
	}
	// Each Next hands over what it gathered within its time budget, so a
	// slow machine cuts a few more batches short; never most of them.
	if max := 2 * files / batch; len(tasks) > max {
		t.Fatalf("%d tasks for %d small files (batches of %d): want at most %d", len(tasks), files, batch, max)
	}
	requireEven(t, c, tasks, 10*batch)
}

// requireEven fails unless the bytes of tasks per worker of c are within
// slack of each other.
func requireEven(t *testing.T, c *fakeCluster, tasks []TaskSpec, slack int64) {
	t.Helper()
	per := map[int64]int64{}
	for _, ts := range tasks {
		per[ts.BlockWorkerID] += ts.Bytes
	}
	lo, hi := int64(-1), int64(0)
	for _, w := range c.workers {
		b := per[w.Id]
		if lo < 0 || b < lo {
			lo = b
		}
		hi = max(hi, b)
	}
	if hi-lo > slack {
		t.Fatalf("bytes per worker from %d to %d: more than %d apart", lo, hi, slack)
	}
}

// Replication counts copies already cached and places the missing ones on
// other workers; --workers and --exclude-workers limit the choice.
func TestLoadPlannerReplicationAndWorkerFilters(t *testing.T) {
	c := newFakeCluster(4)
	f := c.file("/r/a", 3000, 1000)
	c.locs[f.BlockIds[0]] = map[int64]bool{1: true, 2: true} // fully replicated
	c.locs[f.BlockIds[1]] = map[int64]bool{3: true}          // one copy short
	got := blocksOf(t, planAll(t, fakeEnv{c}, cfgJSON(t, spec.LoadConfig{Path: "/r", Replication: 2}), 10, 0, nil))
	if len(got) != 3 {
		t.Fatalf("planned %v: want 1 copy of block 1 and 2 of block 2", got)
	}
	for k := range got {
		if strings.HasPrefix(k, fmt.Sprintf("%d@", f.BlockIds[0])) || k == fmt.Sprintf("%d@3", f.BlockIds[1]) {
			t.Fatalf("planned a copy that exists: %s", k)
		}
	}
	got = blocksOf(t, planAll(t, fakeEnv{c}, cfgJSON(t, spec.LoadConfig{Path: "/r", Workers: []string{"h4", "2"}}), 10, 0, nil))
	for k := range got {
		if !strings.HasSuffix(k, "@4") && !strings.HasSuffix(k, "@2") {
			t.Fatalf("--workers h4,2 but planned %s", k)
		}
	}
	got = blocksOf(t, planAll(t, fakeEnv{c}, cfgJSON(t, spec.LoadConfig{Path: "/r", Replication: 3, ExcludeWorkers: []string{"h1:29999"}}), 10, 0, nil))
	for k := range got {
		if strings.HasSuffix(k, "@1") {
			t.Fatalf("--exclude-workers h1 but planned %s", k)
		}
	}
}

// A block that is cached nowhere and has no UFS copy is a failed path.
func TestLoadPlannerReportsUnpersisted(t *testing.T) {
	c := newFakeCluster(2)
	f := c.file("/u/lost", 100, 1000)
	f.PersistenceState = api.PersistenceState_NOT_PERSISTED
	c.file("/u/ok", 100, 1000)
	ctx := context.Background()
	p, err := Load{}.NewPlanner(ctx, fakeEnv{c}, Job{Config: cfgJSON(t, spec.LoadConfig{Path: "/u"})})
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.Next(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if !b.Done || len(b.Failed) != 1 || b.Failed[0].Path != "/u/lost" || !strings.Contains(b.Failed[0].Error, "not persisted") || len(b.Tasks) != 1 {
		t.Fatalf("batch %+v", b)
	}
}

func TestLoadValidate(t *testing.T) {
	c := newFakeCluster(2)
	c.file("/v/a", 10, 1000)
	ctx := context.Background()
	env := fakeEnv{c}
	v, err := Load{}.Validate(ctx, env, []byte(`{"path":"/v/../v"}`))
	norm := v.Config
	if err != nil {
		t.Fatal(err)
	}
	got, _ := spec.DecodeLoad(norm)
	if got.Path != "/v" || got.Replication != 1 || got.BatchFiles != spec.DefaultBatchFiles || got.PageSize != spec.DefaultPageSize {
		t.Fatalf("normalized config %+v", got)
	}
	for _, tc := range []struct {
		cfg  string
		code codes.Code
		want string
	}{
		{`{"path":"/nope"}`, codes.NotFound, "load /nope: no such file or directory"},
		{`{"path":"/v","replication":3}`, codes.FailedPrecondition, "--replication 3 is more than the 2"},
		{`{"path":"/v","workers":["h9"]}`, codes.InvalidArgument, "--workers h9"},
		{`{"path":"/v","replication":2,"excludeWorkers":["h1"]}`, codes.FailedPrecondition, "more than the 1 eligible"},
		{`{"path":"/v","excludeWorkers":["h1","h2"]}`, codes.FailedPrecondition, "no eligible"},
		{`{"path":"v"}`, codes.InvalidArgument, "not absolute"},
		{`{}`, codes.InvalidArgument, "path is required"},
		{`{"path":"/v","speed":1}`, codes.InvalidArgument, `unknown field "speed"`},
		{`{"path":"/v"} {}`, codes.InvalidArgument, "trailing data"},
		{`{"path":"/v","bandwidth":-1}`, codes.InvalidArgument, "--bandwidth"},
		{`{"path":"/v","replication":-2}`, codes.InvalidArgument, "--replication"},
	} {
		_, err := Load{}.Validate(ctx, env, []byte(tc.cfg))
		if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%s) = %v, want %s with %q", tc.cfg, err, tc.code, tc.want)
		}
	}
}

// Run caches each block on its worker, falls back to another worker when
// the target is gone, and reports progress.
func TestLoadRunCachesAndFallsBack(t *testing.T) {
	c := newFakeCluster(3)
	for i := 0; i < 6; i++ {
		c.file(fmt.Sprintf("/run/f%d", i), 500, 1000)
	}
	tasks := planAll(t, fakeEnv{c}, cfgJSON(t, spec.LoadConfig{Path: "/run", Batching: spec.Batching{BatchFiles: 2}}), 100, 0, nil)
	c.dead[waddr(1)] = true
	var progress []int64
	for _, ts := range tasks {
		task := &Task{JobID: 1, TaskID: 1, Attempt: 1, Args: ts.Args, LocalBlockWorker: waddr(3),
			Progress: func(b int64) { progress = append(progress, b) }}
		res, err := Load{}.Run(context.Background(), fakeEnv{c}, task)
		if err != nil {
			t.Fatalf("task %s: %v", ts.Description, err)
		}
		if res.Bytes != ts.Bytes {
			t.Fatalf("task %s: %d bytes done, want %d", ts.Description, res.Bytes, ts.Bytes)
		}
	}
	if c.cached[waddr(1)] != 0 || c.cached[waddr(3)] == 0 {
		t.Fatalf("cached per worker %v: worker 1 is dead, its blocks belong on the local worker 3", c.cached)
	}
	for _, f := range []string{"/run/f0", "/run/f5"} {
		if len(c.locs[c.nodes[f].BlockIds[0]]) != 1 {
			t.Fatalf("%s not cached once", f)
		}
	}
	if len(progress) == 0 {
		t.Fatal("no progress reported")
	}
	// With every worker gone the task fails and names the paths.
	c.dead[waddr(2)], c.dead[waddr(3)] = true, true
	delete(c.locs, c.nodes["/run/f0"].BlockIds[0])
	res, err := Load{}.Run(context.Background(), fakeEnv{c}, &Task{Args: tasks[0].Args, LocalBlockWorker: waddr(3)})
	if err == nil || len(res.Failed) == 0 {
		t.Fatalf("run with every worker dead: %v %+v", err, res)
	}
}

// Resuming the walk after any file yields exactly the files after it.
func TestWalkerResume(t *testing.T) {
	c := newFakeCluster(1)
	var all []string
	for _, p := range []string{"/w/a", "/w/b/c", "/w/b/d/e", "/w/b/d/f", "/w/b/g", "/w/ba", "/w/c/x", "/w/c/y", "/w/z"} {
		c.file(p, 1, 1000)
		all = append(all, p)
	}
	walk := func(after string) []string {
		w := newWalker(fakeFS{c: c}, "/w", after, 2, false)
		var out []string
		for {
			f, err := w.Next(context.Background())
			if err != nil {
				return out
			}
			out = append(out, f.GetPath())
		}
	}
	if got := walk(""); strings.Join(got, ",") != strings.Join(all, ",") {
		t.Fatalf("walk: %v", got)
	}
	for i, p := range all {
		if got := walk(p); strings.Join(got, ",") != strings.Join(all[i+1:], ",") {
			t.Fatalf("walk after %s: %v, want %v", p, got, all[i+1:])
		}
	}
	// A single file as the root walks as itself.
	w := newWalker(fakeFS{c: c}, "/w/a", "", 2, false)
	if f, err := w.Next(context.Background()); err != nil || f.GetPath() != "/w/a" {
		t.Fatalf("file root: %v %v", f, err)
	}
}

// syncSpy records which listings asked the FS master to sync.
type syncSpy struct {
	fakeFS
	synced, plain []string
}

func (s *syncSpy) ListStatus(ctx context.Context, req *api.ListStatusRequest, o ...grpc.CallOption) (*api.ListStatusResponse, error) {
	what := req.GetPath() + "@" + req.GetPageToken()
	if req.GetLoadMetadataType() == api.LoadMetadataType_ALWAYS {
		s.synced = append(s.synced, what)
	} else {
		s.plain = append(s.plain, what)
	}
	return s.fakeFS.ListStatus(ctx, req, o...)
}

// A walk lists the tree with recursive pages (one call per page however
// many directories a page spans); a syncing walk asks the FS master to
// sync (which syncs each directory a page enters once), a plain one never
// does.
func TestWalkerPagesAndSync(t *testing.T) {
	c := newFakeCluster(1)
	for _, p := range []string{"/w/a", "/w/b", "/w/c", "/w/d/x", "/w/d/y", "/w/d/z"} {
		c.file(p, 1, 1000)
	}
	for _, sync := range []bool{true, false} {
		spy := &syncSpy{fakeFS: fakeFS{c: c}}
		w := newWalker(spy, "/w", "", 3, false)
		w.sync = sync
		var files []string
		for {
			f, err := w.Next(context.Background())
			if err != nil {
				break
			}
			files = append(files, f.GetPath())
		}
		if got := strings.Join(files, ","); got != "/w/a,/w/b,/w/c,/w/d/x,/w/d/y,/w/d/z" {
			t.Fatalf("sync=%v: walked %s", sync, got)
		}
		// 7 entries (the directory /w/d too) in pages of 3.
		calls := "/w@,/w@/w/c,/w@/w/d/y"
		wantSynced, wantPlain := calls, ""
		if !sync {
			wantSynced, wantPlain = "", calls
		}
		if got := strings.Join(spy.synced, ","); got != wantSynced {
			t.Errorf("sync=%v: synced listings %q, want %q", sync, got, wantSynced)
		}
		if got := strings.Join(spy.plain, ","); got != wantPlain {
			t.Errorf("sync=%v: plain listings %q, want %q", sync, got, wantPlain)
		}
	}
}

// overlapEnv's listing of block workers waits until the path's stat has
// begun, and the stat until the listing has: Validate returns only if it
// asks both at once.
type overlapEnv struct {
	fakeEnv
	statted, listed chan struct{}
}

type overlapFS struct {
	api.FileSystemMasterClient
	e overlapEnv
}

func (f overlapFS) GetStatus(ctx context.Context, req *api.GetStatusRequest, opts ...grpc.CallOption) (*api.GetStatusResponse, error) {
	close(f.e.statted)
	<-f.e.listed
	return f.FileSystemMasterClient.GetStatus(ctx, req, opts...)
}

type overlapBM struct {
	api.BlockMasterClient
	e overlapEnv
}

func (b overlapBM) GetWorkerInfoList(ctx context.Context, req *api.GetWorkerInfoListRequest, opts ...grpc.CallOption) (*api.GetWorkerInfoListResponse, error) {
	close(b.e.listed)
	<-b.e.statted
	return b.BlockMasterClient.GetWorkerInfoList(ctx, req, opts...)
}

func (e overlapEnv) FS() api.FileSystemMasterClient     { return overlapFS{e.fakeEnv.FS(), e} }
func (e overlapEnv) BlockMaster() api.BlockMasterClient { return overlapBM{e.fakeEnv.BlockMaster(), e} }

// A load's validation lists the block workers while it checks the path:
// two round trips to the FS master that need not wait for each other.
func TestLoadValidateAsksPathAndWorkersAtOnce(t *testing.T) {
	c := newFakeCluster(2)
	c.file("/v/a", 10, 1000)
	env := overlapEnv{fakeEnv: fakeEnv{c}, statted: make(chan struct{}), listed: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := Load{}.Validate(ctx, env, []byte(`{"path":"/v"}`))
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("Validate asked the path and the block workers one after the other (it waited a minute)")
	}
}
