package plans

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/plans/spec"
)

// filesUnder lists the files (not directories) of the fake under root.
func (x *xfake) filesUnder(root string) []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	var out []string
	for p, n := range x.nodes {
		if !n.Folder && strings.HasPrefix(p, root+"/") {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

// touch gives the file at p new bytes (a new inode, a later time), as a
// user rewriting it would.
func (x *xfake) rewrite(p string, data []byte) {
	x.mu.Lock()
	x.removeLocked(p, false)
	x.mu.Unlock()
	x.put(p, data, 1000, true)
}

// A copy into an existing tree copies only what differs: again right
// after, nothing; after changing some files and adding some, exactly
// those. A dry run counts the same and changes nothing.
func TestCopyIncremental(t *testing.T) {
	x := newXFake(3)
	x.mount("/s3", "s3://bucket/pre", 2)
	ctx := context.Background()
	env := xenv{x}
	files := copyTree(x, "/src")
	cfg := spec.CopyConfig{Src: "/src", Dst: "/s3/dst"}
	st, err := runJobStats(ctx, Copy{}, env, js(t, cfg), 2, "")
	if err != nil || len(st.failed) > 0 || st.files != int64(len(files)) || st.skipped != 0 {
		t.Fatalf("first copy: %+v %v", st, err)
	}
	checkCopied(t, x, files, "/src", "/s3/dst")
	ids := map[string]int64{}
	for _, p := range x.filesUnder("/s3/dst") {
		ids[p] = x.node(p).FileId
	}
	st, err = runJobStats(ctx, Copy{}, env, js(t, cfg), 2, "")
	if err != nil || len(st.failed) > 0 || st.files != 0 || st.skipped != int64(len(files)) || st.bytes != 0 || st.tasks != 0 {
		t.Fatalf("second copy: %+v %v", st, err)
	}
	var total int64
	for _, b := range files {
		total += int64(len(b))
	}
	if st.bytesSkipped != total {
		t.Errorf("second copy skipped %d bytes, want %d", st.bytesSkipped, total)
	}
	// Change two, add three.
	changed := []string{"/src/d0/f03", "/src/big"}
	for _, p := range changed {
		files[p] = content(p+" v2", len(files[p]))
		x.rewrite(p, files[p])
	}
	for i := 0; i < 3; i++ {
		p := fmt.Sprintf("/src/new/n%d", i)
		files[p] = content(p, 100+i)
		x.put(p, files[p], 1000, true)
		changed = append(changed, p)
	}
	dry := cfg
	dry.DryRun = true
	dst, err := runJobStats(ctx, Copy{}, env, js(t, dry), 2, "")
	if err != nil || dst.files != int64(len(changed)) || dst.skipped != int64(len(files)-len(changed)) || dst.tasks != 0 {
		t.Fatalf("dry run: %+v %v", dst, err)
	}
	if x.node("/s3/dst/new/n0") != nil {
		t.Fatal("a dry run copied")
	}
	st, err = runJobStats(ctx, Copy{}, env, js(t, cfg), 2, "")
	if err != nil || len(st.failed) > 0 || st.files != dst.files || st.skipped != dst.skipped || st.bytesSkipped != dst.bytesSkipped {
		t.Fatalf("third copy: %+v (dry run: %+v) %v", st, dst, err)
	}
	checkCopied(t, x, files, "/src", "/s3/dst")
	for p, id := range ids {
		n := x.node(p)
		if was := "/src" + strings.TrimPrefix(p, "/s3/dst"); n.FileId != id && !contains(changed, was) {
			t.Errorf("%s was copied again though unchanged", p)
		}
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// Sync copies like copy, then deletes what DST has and SRC lacks — only
// under DST, never what a filter leaves out; --max-delete fails the job
// before deleting anything; a source that cannot be listed deletes nothing.
func TestSync(t *testing.T) {
	x := newXFake(3)
	ctx := context.Background()
	env := xenv{x}
	files := copyTree(x, "/src")
	x.put("/dst/extra/a", content("a", 10), 1000, true)
	x.put("/dst/extra/deep/b", content("b", 10), 1000, true)
	x.put("/dst/d0/stale", content("s", 10), 1000, true)
	x.put("/dst/keep.log", content("k", 10), 1000, true)
	x.put("/outside", content("o", 10), 1000, true)
	cfg := spec.SyncConfig{CopyConfig: spec.CopyConfig{Src: "/src", Dst: "/dst"}}
	max := int64(3)
	guarded := cfg
	guarded.MaxDelete = &max
	st, err := runJobStats(ctx, Sync{}, env, js(t, guarded), 1, "")
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "--max-delete 3") || st.deletes != 4 {
		t.Fatalf("--max-delete 3 with 4 deletes: %+v %v", st, err)
	}
	if x.node("/dst/extra/a") == nil || x.node("/dst/d0/stale") == nil {
		t.Fatal("--max-delete: deleted anyway")
	}
	// Filtered: *.log files are neither copied nor deleted.
	filtered := cfg
	filtered.Exclude = []string{"*.log"}
	dry := filtered
	dry.DryRun = true
	dst, err := runJobStats(ctx, Sync{}, env, js(t, dry), 1, "")
	if err != nil || dst.deletes != 3 || dst.tasks != 0 {
		t.Fatalf("dry run: %+v %v", dst, err)
	}
	if x.node("/dst/extra/a") == nil {
		t.Fatal("a dry run deleted")
	}
	st, err = runJobStats(ctx, Sync{}, env, js(t, filtered), 1, "")
	if err != nil || len(st.failed) > 0 || st.deletes != dst.deletes || st.files != dst.files || st.skipped != dst.skipped {
		t.Fatalf("sync: %+v (dry run %+v) %v", st, dst, err)
	}
	checkCopied(t, x, files, "/src", "/dst")
	want := []string{"/dst/keep.log"}
	for p := range files {
		want = append(want, "/dst"+strings.TrimPrefix(p, "/src"))
	}
	sort.Strings(want)
	if got := x.filesUnder("/dst"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after sync DST holds\n%v\nwant\n%v", got, want)
	}
	if x.node("/dst/extra") != nil {
		t.Error("the directory SRC lacks is still there")
	}
	if x.node("/outside") == nil {
		t.Fatal("sync deleted outside DST")
	}
	// Nothing changed: nothing copied, nothing deleted.
	st, err = runJobStats(ctx, Sync{}, env, js(t, filtered), 1, "")
	if err != nil || st.files != 0 || st.deletes != 0 || st.skipped != int64(len(files)) {
		t.Fatalf("sync again: %+v %v", st, err)
	}
	// A source that fails to list: the job fails, nothing is deleted.
	x.put("/dst/more", content("m", 3), 1000, true)
	x.mu.Lock()
	x.listErr = map[string]error{"/src": status.Error(codes.Unavailable, "ufs down")}
	x.mu.Unlock()
	_, err = runJobStats(ctx, Sync{}, env, js(t, cfg), 1, "")
	if err == nil {
		t.Fatal("sync with a failing source listing succeeded")
	}
	x.mu.Lock()
	x.listErr = nil
	x.mu.Unlock()
	if x.node("/dst/more") == nil || x.node("/dst/d1/f01") == nil {
		t.Fatal("a failed source listing deleted files")
	}
}

// Filters select, while listing, exactly the files they match.
func TestFilters(t *testing.T) {
	x := newXFake(2)
	ctx := context.Background()
	env := xenv{x}
	for _, f := range []struct {
		p    string
		n    int
		ageD int64 // days before the job's creation
	}{
		{"/t/a.parquet", 100, 1}, {"/t/x/b.parquet", 2000, 3}, {"/t/x/y/c.parquet", 50, 10},
		{"/t/a.csv", 10, 1}, {"/t/tmp/d.parquet", 100, 1}, {"/t/x/e.log", 5000, 30},
	} {
		fi := x.put(f.p, content(f.p, f.n), 1000, true)
		x.mu.Lock()
		fi.LastModificationTimeMs = fakeNowMs - f.ageD*86_400_000 - 1000
		x.mu.Unlock()
	}
	for _, tc := range []struct {
		f    spec.Filter
		want []string
	}{
		{spec.Filter{Include: []string{"*.parquet"}}, []string{"a.parquet", "tmp/d.parquet", "x/b.parquet", "x/y/c.parquet"}},
		{spec.Filter{Include: []string{"/*.parquet"}}, []string{"a.parquet"}},
		{spec.Filter{Include: []string{"x/**"}, Exclude: []string{"*.log"}}, []string{"x/b.parquet", "x/y/c.parquet"}},
		{spec.Filter{Exclude: []string{"tmp/", "*.{csv,log}"}}, []string{"a.parquet", "x/b.parquet", "x/y/c.parquet"}},
		{spec.Filter{MinSize: 100, MaxSize: 2000}, []string{"a.parquet", "tmp/d.parquet", "x/b.parquet"}},
		{spec.Filter{MaxAge: "2d"}, []string{"a.csv", "a.parquet", "tmp/d.parquet"}},
		{spec.Filter{MinAge: "1w", Include: []string{"**.parquet"}}, []string{"x/y/c.parquet"}},
	} {
		dst := fmt.Sprintf("/out%d", len(tc.want))
		x.mu.Lock()
		x.removeLocked(dst, false)
		x.mu.Unlock()
		st, err := runJobStats(ctx, Copy{}, env, js(t, spec.CopyConfig{Src: "/t", Dst: dst, Filter: tc.f}), 1, "")
		if err != nil || len(st.failed) > 0 {
			t.Fatalf("%+v: %v %v", tc.f, err, st.failed)
		}
		var got []string
		for _, p := range x.filesUnder(dst) {
			got = append(got, strings.TrimPrefix(p, dst+"/"))
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) || st.files != int64(len(tc.want)) {
			t.Errorf("filter %+v copied %v (%d files), want %v", tc.f, got, st.files, tc.want)
		}
		// Load with the same filter plans the same files.
		lst, err := runJobStats(ctx, Load{}, env, js(t, spec.LoadConfig{Path: "/t", Replication: 1, Filter: tc.f, DryRun: true}), 1, "")
		if err != nil || lst.files+lst.skipped != int64(len(tc.want)) {
			t.Errorf("load with filter %+v: %+v %v, want %d files", tc.f, lst, err, len(tc.want))
		}
	}
	x.noTemps(t)
	if b, _ := x.ufsBytes("file:///ufs/out1/x/y/c.parquet"); !bytes.Equal(b, content("/t/x/y/c.parquet", 50)) {
		t.Error("filtered copy: bytes differ")
	}
}
