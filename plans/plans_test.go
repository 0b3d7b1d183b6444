package plans

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/plans/spec"
)

func js(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (x *xfake) node(p string) *api.FileInfo {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.nodes[p]
}

func (x *xfake) ufsBytes(uri string) ([]byte, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	b, ok := x.ufs[uri]
	return b, ok
}

// noTemps fails when a temporary name is left in the namespace or the UFS.
func (x *xfake) noTemps(t *testing.T) {
	t.Helper()
	x.mu.Lock()
	defer x.mu.Unlock()
	for p := range x.nodes {
		if strings.Contains(p, ".alluvium-tmp-") {
			t.Errorf("temporary file left in the namespace: %s", p)
		}
	}
	for u := range x.ufs {
		if strings.Contains(u, ".alluvium-tmp-") {
			t.Errorf("temporary file left in the UFS: %s", u)
		}
	}
}

// Persist writes cache-only files to the UFS from the worker holding them,
// marks them PERSISTED, skips persisted ones, and is idempotent.
func TestPersistPersistsCacheOnlyFiles(t *testing.T) {
	x := newXFake(3)
	ctx := context.Background()
	want := map[string][]byte{}
	for i := 0; i < 10; i++ {
		p := fmt.Sprintf("/p/small/f%d", i)
		want[p] = content(p, 100+i*37)
		x.put(p, want[p], 1000, false, int64(i%3+1))
	}
	big := content("big", 3500) // 4 blocks, cached over two workers
	fi := x.put("/p/big", big, 1000, false, 2)
	x.locs[fi.BlockIds[3]] = map[int64]bool{3: true}
	want["/p/big"] = big
	x.put("/p/done", content("done", 50), 1000, true)
	empty := x.put("/p/empty", nil, 1000, false)
	want["/p/empty"] = nil
	_ = empty

	_, failed, err := runJob(ctx, Persist{}, xenv{x}, js(t, spec.PersistConfig{Path: "/p", Batching: spec.Batching{BatchFiles: 4}}), 3, "")
	if err != nil || len(failed) > 0 {
		t.Fatalf("persist: %v %v", err, failed)
	}
	for p, b := range want {
		n := x.node(p)
		if n.PersistenceState != api.PersistenceState_PERSISTED {
			t.Errorf("%s: %v after persist", p, n.PersistenceState)
		}
		got, ok := x.ufsBytes(n.UfsPath)
		if !ok || !bytes.Equal(got, b) {
			t.Errorf("%s: UFS holds %d bytes (present %v), want %d", p, len(got), ok, len(b))
		}
	}
	if x.writes[waddr(2)] == 0 {
		t.Errorf("the big file (3 of 4 blocks on worker 2) was not written by worker 2: %v", x.writes)
	}
	x.noTemps(t)
	// Again: nothing left to do.
	tasks, failed, err := runJob(ctx, Persist{}, xenv{x}, js(t, spec.PersistConfig{Path: "/p"}), 3, "")
	if err != nil || len(failed) > 0 || tasks != 0 {
		t.Fatalf("second persist: %d tasks, %v %v", tasks, err, failed)
	}
}

// A file deleted or renamed while it is persisted ends consistent: nothing
// of it in the UFS, the path in the failed list. A file whose bytes are
// cached nowhere is failed at planning.
func TestPersistRacesAndLostFiles(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		race func(x *xfake)
	}{
		{"deleted", func(x *xfake) { x.mu.Lock(); x.removeLocked("/r/a", true); x.mu.Unlock() }},
		{"renamed", func(x *xfake) {
			_, _ = xenv{x}.FS().Rename(ctx, &api.RenameRequest{Src: "/r/a", Dst: "/r/b"})
		}},
		{"re-created", func(x *xfake) {
			x.mu.Lock()
			x.removeLocked("/r/a", true)
			x.mu.Unlock()
			x.put("/r/a", content("new", 700), 1000, true) // same length: only the id tells them apart
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := newXFake(2)
			x.put("/r/a", content("a", 700), 1000, false, 1)
			raced := false
			x.onCopy = func() {
				if !raced {
					raced = true
					tc.race(x)
				}
			}
			_, failed, err := runJob(ctx, Persist{}, xenv{x}, js(t, spec.PersistConfig{Path: "/r/a"}), 2, "")
			if err != nil {
				t.Fatal(err)
			}
			if len(failed) != 1 || failed[0].Path != "/r/a" {
				t.Fatalf("failed %v, want /r/a", failed)
			}
			if b, ok := x.ufsBytes("file:///ufs/r/a"); ok && tc.name != "re-created" {
				t.Fatalf("UFS holds %d bytes at the old path", len(b))
			} else if ok && !bytes.Equal(b, content("new", 700)) {
				t.Fatal("the persist overwrote the re-created file's UFS bytes")
			}
			if n := x.node("/r/b"); n != nil && n.PersistenceState == api.PersistenceState_PERSISTED {
				t.Fatal("the renamed file is marked PERSISTED")
			}
			x.noTemps(t)
		})
	}
	t.Run("async list skips what is gone", func(t *testing.T) {
		x := newXFake(2)
		a := x.put("/q/a", content("a", 10), 1000, false, 1)
		b := x.put("/q/b", content("b", 10), 1000, false, 2)
		x.mu.Lock()
		x.removeLocked("/q/b", true)
		x.mu.Unlock()
		cfg := spec.PersistConfig{Files: []spec.PersistFile{{Path: "/q/a", ID: a.FileId}, {Path: "/q/b", ID: b.FileId}, {Path: "/q/a", ID: 999}}}
		_, failed, err := runJob(ctx, Persist{}, xenv{x}, js(t, cfg), 1, "")
		if err != nil || len(failed) > 0 {
			t.Fatalf("%v %v", err, failed)
		}
		if x.node("/q/a").PersistenceState != api.PersistenceState_PERSISTED {
			t.Fatal("/q/a not persisted")
		}
	})
	t.Run("lost", func(t *testing.T) {
		x := newXFake(2)
		x.put("/l/a", content("a", 10), 1000, false) // cached nowhere
		_, failed, err := runJob(ctx, Persist{}, xenv{x}, js(t, spec.PersistConfig{Path: "/l"}), 1, "")
		if err != nil || len(failed) != 1 || !strings.Contains(failed[0].Error, "lost") {
			t.Fatalf("%v %v", err, failed)
		}
	})
}

// copyTree writes a tree with small, multi-block, cache-only and empty
// files and returns path → bytes.
func copyTree(x *xfake, root string) map[string][]byte {
	m := map[string][]byte{}
	for i := 0; i < 12; i++ {
		p := fmt.Sprintf("%s/d%d/f%02d", root, i%3, i)
		m[p] = content(p, 50+i*80)
		x.put(p, m[p], 1000, true)
	}
	m[root+"/big"] = content("big", 4321) // 5 blocks, one cached
	f := x.put(root+"/big", m[root+"/big"], 1000, true)
	x.locs[f.BlockIds[1]] = map[int64]bool{2: true}
	m[root+"/cacheonly"] = content("co", 2500) // 3 blocks, not persisted
	x.put(root+"/cacheonly", m[root+"/cacheonly"], 1000, false, 3)
	m[root+"/empty"] = nil
	x.put(root+"/empty", nil, 1000, true)
	return m
}

func checkCopied(t *testing.T, x *xfake, files map[string][]byte, src, dst string) {
	t.Helper()
	for p, b := range files {
		d := joinAfter(src, dst, p)
		n := x.node(d)
		if n == nil || !n.Completed || n.PersistenceState != api.PersistenceState_PERSISTED || n.Length != int64(len(b)) {
			t.Errorf("%s: %+v", d, n)
			continue
		}
		got, ok := x.ufsBytes(n.UfsPath)
		if !ok || !bytes.Equal(got, b) {
			t.Errorf("%s: UFS %s holds %d bytes, want %d", d, n.UfsPath, len(got), len(b))
		}
	}
	x.noTemps(t)
}

// Copy copies a tree byte for byte, across mounts and back, small files
// batched, a large file split into parts fetched by several workers and
// kept cached under its new name.
func TestCopyTreeAcrossMounts(t *testing.T) {
	x := newXFake(3)
	x.mount("/s3", "s3://bucket/pre", 2)
	ctx := context.Background()
	files := copyTree(x, "/src")
	tasks, failed, err := runJob(ctx, Copy{}, xenv{x}, js(t, spec.CopyConfig{Src: "/src", Dst: "/s3/copy", Checksum: true, Batching: spec.Batching{BatchFiles: 5}}), 3, "")
	if err != nil || len(failed) > 0 {
		t.Fatalf("copy: %v %v", err, failed)
	}
	if tasks >= len(files) || x.batches == 0 {
		t.Errorf("%d tasks for %d files, %d CreateFiles calls: small files should share tasks and calls", tasks, len(files), x.batches)
	}
	checkCopied(t, x, files, "/src", "/s3/copy")
	if u := x.node("/s3/copy/big").UfsPath; u != "s3://bucket/pre/copy/big" {
		t.Errorf("big copied to %s", u)
	}
	// The large copy's blocks stay cached, on more than one worker.
	on := map[int64]bool{}
	for _, id := range x.node("/s3/copy/big").BlockIds {
		for w := range x.locs[id] {
			on[w] = true
		}
	}
	if len(on) < 2 {
		t.Errorf("the large copy's parts are on %d worker(s), want them spread", len(on))
	}
	// And back, into the local mount.
	_, failed, err = runJob(ctx, Copy{}, xenv{x}, js(t, spec.CopyConfig{Src: "/s3/copy", Dst: "/back"}), 3, "")
	if err != nil || len(failed) > 0 {
		t.Fatalf("copy back: %v %v", err, failed)
	}
	checkCopied(t, x, files, "/src", "/back")
	// A single file onto a new name.
	_, failed, err = runJob(ctx, Copy{}, xenv{x}, js(t, spec.CopyConfig{Src: "/src/d0/f00", Dst: "/one"}), 3, "")
	if err != nil || len(failed) > 0 {
		t.Fatal(err, failed)
	}
	checkCopied(t, x, map[string][]byte{"/src/d0/f00": files["/src/d0/f00"]}, "/src/d0/f00", "/one")
}

// Bad input is refused at submit and changes nothing; --overwrite
// replaces; a retried task finds its own finished copy.
func TestCopyRefusalsOverwriteAndRetry(t *testing.T) {
	x := newXFake(2)
	ctx := context.Background()
	env := xenv{x}
	x.put("/a/f", content("f", 100), 1000, true)
	x.put("/a/g", content("g", 100), 1000, true)
	x.put("/b", content("b", 10), 1000, true)
	x.put("/dir/x", content("x", 10), 1000, true)
	for _, tc := range []struct {
		cfg  spec.CopyConfig
		code codes.Code
		want string
	}{
		{spec.CopyConfig{Src: "/a", Dst: "/a"}, codes.InvalidArgument, "the source itself"},
		{spec.CopyConfig{Src: "/a/../a", Dst: "/a"}, codes.InvalidArgument, "the source itself"},
		{spec.CopyConfig{Src: "/a", Dst: "/a/sub"}, codes.InvalidArgument, "into itself"},
		{spec.CopyConfig{Src: "/a/f", Dst: "/b", Overwrite: true, IgnoreExisting: true}, codes.InvalidArgument, "contradict"},
		{spec.CopyConfig{Src: "/a/f", Dst: "/dir", Overwrite: true}, codes.FailedPrecondition, "is a directory"},
		{spec.CopyConfig{Src: "/a", Dst: "/b", Overwrite: true}, codes.FailedPrecondition, "is a file"},
		{spec.CopyConfig{Src: "/a/f", Dst: "/b/x"}, codes.FailedPrecondition, "/b is a file"},
		{spec.CopyConfig{Src: "/nope", Dst: "/z"}, codes.NotFound, "no such file"},
		{spec.CopyConfig{Src: "/a", Dst: "rel"}, codes.InvalidArgument, "dst"},
	} {
		_, err := Copy{}.Validate(ctx, env, js(t, tc.cfg))
		if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want %s %q", tc.cfg, err, tc.code, tc.want)
		}
	}
	if b, _ := x.ufsBytes("file:///ufs/b"); !bytes.Equal(b, content("b", 10)) {
		t.Fatal("a refused copy changed /b")
	}
	// --ignore-existing leaves /b as it is; by default /b differs (its
	// size), so it is replaced.
	st, err := runJobStats(ctx, Copy{}, env, js(t, spec.CopyConfig{Src: "/a/f", Dst: "/b", IgnoreExisting: true}), 1, "")
	if err != nil || len(st.failed) > 0 || st.skipped != 1 || st.files != 0 {
		t.Fatalf("--ignore-existing: %+v %v", st, err)
	}
	if b, _ := x.ufsBytes("file:///ufs/b"); !bytes.Equal(b, content("b", 10)) {
		t.Fatal("--ignore-existing replaced /b")
	}
	st, err = runJobStats(ctx, Copy{}, env, js(t, spec.CopyConfig{Src: "/a/f", Dst: "/b"}), 1, "")
	if err != nil || len(st.failed) > 0 || st.files != 1 || st.bytes != 100 {
		t.Fatalf("copy onto a different /b: %+v %v", st, err)
	}
	if b, _ := x.ufsBytes("file:///ufs/b"); !bytes.Equal(b, content("f", 100)) {
		t.Fatal("a copy onto a different /b did not replace it")
	}
	// Now /b is /a/f's copy (size and time): skipped, unless --overwrite.
	st, err = runJobStats(ctx, Copy{}, env, js(t, spec.CopyConfig{Src: "/a/f", Dst: "/b"}), 1, "")
	if err != nil || st.files != 0 || st.skipped != 1 || st.bytesSkipped != 100 || st.tasks != 0 {
		t.Fatalf("copy onto its own copy: %+v %v", st, err)
	}
	before := x.node("/b").FileId
	st, err = runJobStats(ctx, Copy{}, env, js(t, spec.CopyConfig{Src: "/a/f", Dst: "/b", Overwrite: true}), 1, "")
	if err != nil || st.files != 1 || st.skipped != 0 || x.node("/b").FileId == before {
		t.Fatalf("--overwrite onto its own copy: %+v %v", st, err)
	}
	// Attempt 2 of a task whose attempt 1 finished: same result, no error.
	v, _ := Copy{}.Validate(ctx, env, js(t, spec.CopyConfig{Src: "/a", Dst: "/c"}))
	norm := v.Config
	p, _ := Copy{}.NewPlanner(ctx, env, Job{ID: 3, Config: norm})
	bt, _ := p.Next(ctx, 10)
	for attempt := int32(1); attempt <= 2; attempt++ {
		for _, s := range bt.Tasks {
			if _, err := (Copy{}).Run(ctx, env, &Task{JobID: 3, TaskID: 1, Attempt: attempt, Args: s.Args, Config: norm}); err != nil {
				t.Fatalf("attempt %d: %v", attempt, err)
			}
		}
	}
	checkCopied(t, x, map[string][]byte{"/a/f": content("f", 100), "/a/g": content("g", 100)}, "/a", "/c")
}

// A destination that cannot be written fails the job with every file
// listed, and leaves nothing half-made; a corrupt write is caught by
// --checksum.
func TestCopyFailures(t *testing.T) {
	x := newXFake(2)
	ctx := context.Background()
	files := copyTree(x, "/src")
	x.failUFS["file:///ufs/ro"] = "permission denied"
	_, failed, err := runJob(ctx, Copy{}, xenv{x}, js(t, spec.CopyConfig{Src: "/src", Dst: "/ro"}), 2, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(failed) != len(files) {
		t.Fatalf("%d failed paths, want all %d: %v", len(failed), len(files), failed)
	}
	for _, f := range failed {
		if !strings.Contains(f.Error, "permission denied") {
			t.Errorf("%s: %s", f.Path, f.Error)
		}
	}
	x.mu.Lock()
	for p := range x.nodes {
		if p == "/ro" || strings.HasPrefix(p, "/ro/") {
			t.Errorf("%s visible after the failed copy", p)
		}
	}
	x.mu.Unlock()
	x.noTemps(t)

	x.corrupt = true
	_, failed, _ = runJob(ctx, Copy{}, xenv{x}, js(t, spec.CopyConfig{Src: "/src/d0", Dst: "/sum", Checksum: true}), 1, "")
	if len(failed) == 0 || !strings.Contains(failed[0].Error, "checksum") {
		t.Fatalf("corrupt copy with --checksum: %v", failed)
	}
}

// A move within a mount is one rename keeping the cache; across mounts each
// file is copied, verified and deleted, the cache kept, and the emptied
// source tree removed.
func TestMove(t *testing.T) {
	x := newXFake(3)
	x.mount("/s3", "s3://bucket/pre", 2)
	ctx := context.Background()
	env := xenv{x}
	files := copyTree(x, "/m")
	big := x.node("/m/big")
	tasks, failed, err := runJob(ctx, Move{}, env, js(t, spec.MoveConfig{Src: "/m", Dst: "/moved"}), 2, "")
	if err != nil || len(failed) > 0 || tasks != 1 {
		t.Fatalf("same-mount move: %d tasks, %v %v", tasks, err, failed)
	}
	checkCopied(t, x, map[string][]byte{"/m/d0/f00": files["/m/d0/f00"], "/m/big": files["/m/big"]}, "/m", "/moved")
	if x.node("/m") != nil || x.node("/moved/big").FileId != big.FileId || len(x.locs[big.BlockIds[1]]) != 1 {
		t.Fatal("the rename did not keep the inode and its cache")
	}
	// Across mounts.
	cached := x.node("/moved/cacheonly")
	_, failed, err = runJob(ctx, Move{}, env, js(t, spec.MoveConfig{Src: "/moved", Dst: "/s3/moved"}), 2, "")
	if err != nil || len(failed) > 0 {
		t.Fatalf("cross-mount move: %v %v", err, failed)
	}
	for p, b := range files {
		d := joinAfter("/m", "/s3/moved", p)
		n := x.node(d)
		if n == nil {
			t.Fatalf("%s missing", d)
		}
		if got, _ := x.ufsBytes(n.UfsPath); !bytes.Equal(got, b) {
			t.Errorf("%s: bytes differ", d)
		}
	}
	if x.node("/moved") != nil {
		t.Error("the emptied source tree is still there")
	}
	if _, ok := x.ufsBytes("file:///ufs/moved/big"); ok {
		t.Error("the source's UFS copy is still there")
	}
	n := x.node("/s3/moved/cacheonly")
	for i, id := range n.BlockIds {
		if len(x.locs[id]) == 0 {
			t.Errorf("block %d of the moved cache-only file is not cached (was on %v)", i, x.locs[cached.BlockIds[i]])
		}
	}
	// DST exists: merged into, a differing file replaced, one DST has
	// already (its copy: same size and time) dropped at the source.
	x.put("/o/a", content("new a", 10), 1000, true)
	x.put("/t/a", content("old a", 20), 1000, true)
	x.put("/t/keep", content("keep", 5), 1000, true)
	x.put("/o/same", content("same", 7), 1000, true)
	same := x.put("/t/same", content("same", 7), 1000, true)
	x.mu.Lock()
	same.LastModificationTimeMs = x.nodes["/o/same"].LastModificationTimeMs
	x.mu.Unlock()
	if _, err := (Move{}).Validate(ctx, env, js(t, spec.MoveConfig{Src: "/o", Dst: "/o/in"})); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("move into itself: %v", err)
	}
	st, err := runJobStats(ctx, Move{}, env, js(t, spec.MoveConfig{Src: "/o", Dst: "/t"}), 2, "")
	if err != nil || len(st.failed) > 0 || st.files != 1 || st.skipped != 1 {
		t.Fatal(st, err)
	}
	if b, _ := x.ufsBytes("file:///ufs/t/a"); !bytes.Equal(b, content("new a", 10)) || x.node("/t/keep") == nil || x.node("/o") != nil {
		t.Fatal("move onto a directory did not merge")
	}
	if x.node("/t/same").FileId != same.FileId {
		t.Fatal("move replaced a file whose copy was already there")
	}
}

func locCount(x *xfake, id int64) int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.locs[id])
}

// Replicate copies worker to worker up to N, from the UFS only for blocks
// cached nowhere, evicts down to N, keeps pinned files' copies, and refuses
// impossible targets at submit.
func TestReplicate(t *testing.T) {
	x := newXFake(3)
	ctx := context.Background()
	env := xenv{x}
	a := x.put("/rep/a", content("a", 2500), 1000, true, 1)
	b := x.put("/rep/b", content("b", 10), 1000, true) // cached nowhere
	pin := x.put("/rep/pinned", content("p", 10), 1000, true, 1, 2, 3)
	pin.Pinned = true
	_, failed, err := runJob(ctx, Replicate{}, env, js(t, spec.ReplicateConfig{Path: "/rep", Replication: 3}), 2, "")
	if err != nil || len(failed) > 0 {
		t.Fatal(err, failed)
	}
	for _, id := range append(a.BlockIds, b.BlockIds...) {
		if n := locCount(x, id); n != 3 {
			t.Fatalf("block %d: %d copies after replicate 3", id, n)
		}
	}
	if x.ufsReads > 0 {
		t.Errorf("%d block reads from the UFS; only /rep/b (1 block) should be cached from it", x.ufsReads)
	}
	if x.copies != 2*3+2 {
		t.Errorf("%d worker-to-worker copies, want 8", x.copies)
	}
	_, failed, err = runJob(ctx, Replicate{}, env, js(t, spec.ReplicateConfig{Path: "/rep", Replication: 1}), 2, "")
	if err != nil || len(failed) > 0 {
		t.Fatal(err, failed)
	}
	for _, id := range append(a.BlockIds, b.BlockIds...) {
		if n := locCount(x, id); n != 1 {
			t.Fatalf("block %d: %d copies after replicate 1", id, n)
		}
	}
	if n := locCount(x, pin.BlockIds[0]); n != 3 {
		t.Fatalf("pinned block: %d copies, want its 3 kept", n)
	}
	for _, tc := range []struct {
		cfg  string
		code codes.Code
	}{
		{`{"path":"/rep","replication":0}`, codes.InvalidArgument},
		{`{"path":"/rep","replication":-1}`, codes.InvalidArgument},
		{`{"path":"/rep","replication":4}`, codes.FailedPrecondition},
		{`{"path":"/none","replication":1}`, codes.NotFound},
	} {
		if _, err := (Replicate{}).Validate(ctx, env, []byte(tc.cfg)); status.Code(err) != tc.code {
			t.Errorf("Validate(%s) = %v, want %s", tc.cfg, err, tc.code)
		}
	}
	// A worker lost after planning: the task looks again and never goes
	// below the target.
	c := x.put("/rep2/c", content("c", 10), 1000, true, 1, 2, 3)
	v, _ := Replicate{}.Validate(ctx, env, js(t, spec.ReplicateConfig{Path: "/rep2", Replication: 2}))
	norm := v.Config
	p, _ := Replicate{}.NewPlanner(ctx, env, Job{ID: 1, Config: norm})
	bt, _ := p.Next(ctx, 10)
	x.mu.Lock()
	delete(x.locs[c.BlockIds[0]], 3) // worker 3's copy is gone meanwhile
	x.mu.Unlock()
	for _, s := range bt.Tasks {
		if _, err := (Replicate{}).Run(ctx, env, &Task{Args: s.Args, Config: norm, Attempt: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if n := locCount(x, c.BlockIds[0]); n != 2 {
		t.Fatalf("%d copies, want 2", n)
	}
}

// Load caches a batch of small files with one CacheBlocks call.
// TestLoadVerifyRound: --verify adds a round that checks every block
// again after a load that cached something; a load that found everything
// cached already planned no task, and that was the check: one round.
func TestLoadVerifyRound(t *testing.T) {
	x := newXFake(1)
	for i := 0; i < 5; i++ {
		x.put(fmt.Sprintf("/v/f%02d", i), content(fmt.Sprint(i), 100), 1000, true)
	}
	cfg := js(t, spec.LoadConfig{Path: "/v", Verify: true})
	st, err := runJobStats(context.Background(), Load{}, xenv{x}, cfg, 1, "")
	if err != nil || len(st.failed) > 0 || st.tasks == 0 || st.rounds != 2 {
		t.Fatalf("first load with --verify: %d tasks in %d rounds, %v %v; want tasks in 2 rounds", st.tasks, st.rounds, err, st.failed)
	}
	st, err = runJobStats(context.Background(), Load{}, xenv{x}, cfg, 1, "")
	if err != nil || len(st.failed) > 0 || st.tasks != 0 || st.rounds != 1 || st.skipped != 5 {
		t.Fatalf("load with --verify of what is cached: %d tasks in %d rounds, %d skipped, %v %v; want none in 1 round, 5 skipped", st.tasks, st.rounds, st.skipped, err, st.failed)
	}
}

func TestLoadBatchesSmallFilesIntoOneCall(t *testing.T) {
	x := newXFake(1)
	for i := 0; i < 20; i++ {
		x.put(fmt.Sprintf("/sm/f%02d", i), content(fmt.Sprint(i), 100), 1000, true)
	}
	_, failed, err := runJob(context.Background(), Load{}, xenv{x}, js(t, spec.LoadConfig{Path: "/sm", Batching: spec.Batching{BatchFiles: 10}}), 1, "")
	if err != nil || len(failed) > 0 {
		t.Fatal(err, failed)
	}
	if n := x.cached[waddr(1)+"/batch"]; n != 2 {
		t.Fatalf("%d CacheBlocks calls for 20 files in batches of 10", n)
	}
	for i := 0; i < 20; i++ {
		if locCount(x, x.node(fmt.Sprintf("/sm/f%02d", i)).BlockIds[0]) != 1 {
			t.Fatalf("f%02d not cached", i)
		}
	}
}
