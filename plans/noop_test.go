package plans

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/alluvium/alluvium/plans/spec"
)

// Noop plans every file once, batched per block worker caching it, and
// its tasks count their files and bytes without touching them.
func TestNoopPlansEveryFileBesideItsData(t *testing.T) {
	x := newXFake(3)
	ctx := context.Background()
	var total int64
	for i := 0; i < 25; i++ {
		n := 100 + i
		x.put(fmt.Sprintf("/n/d%d/f%02d", i%3, i), content(fmt.Sprint(i), n), 1000, true, int64(i%3+1))
		total += int64(n)
	}
	cfg := js(t, spec.NoopConfig{Path: "/n", Batching: spec.Batching{BatchFiles: 4}})
	v, err := Noop{}.Validate(ctx, xenv{x}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	st, err := runJobStats(ctx, Noop{}, xenv{x}, cfg, 1, "")
	if err != nil || len(st.failed) > 0 {
		t.Fatalf("noop: %v %v", err, st.failed)
	}
	if st.files != 25 || st.bytes != total {
		t.Errorf("noop planned %d files, covered %d bytes; want 25, %d", st.files, st.bytes, total)
	}
	// Every task holds files of the worker it is placed beside only.
	pl, err := Noop{}.NewPlanner(ctx, xenv{x}, Job{ID: 1, Config: v.Config})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for {
		b, err := pl.Next(ctx, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range b.Tasks {
			var a itemArgs
			if err := json.Unmarshal(s.Args, &a); err != nil {
				t.Fatal(err)
			}
			if len(a.Items) > 4 {
				t.Errorf("task of %d files, batchFiles 4", len(a.Items))
			}
			for _, raw := range a.Items {
				var it NoopItem
				_ = json.Unmarshal(raw, &it)
				if seen[it.Path] {
					t.Errorf("%s planned twice", it.Path)
				}
				seen[it.Path] = true
				if f := x.node(it.Path); f == nil || !cachedOn(x, f.GetBlockIds()[0], s.BlockWorkerID) {
					t.Errorf("%s planned beside worker %d, which does not cache it", it.Path, s.BlockWorkerID)
				}
			}
			res, err := Noop{}.Run(ctx, xenv{x}, &Task{Args: s.Args, Config: v.Config})
			var out NoopOutput
			if err != nil || json.Unmarshal(res.Output, &out) != nil || out.Files != len(a.Items) {
				t.Errorf("run: %v, output %s, want %d files", err, res.Output, len(a.Items))
			}
		}
		if b.Done {
			break
		}
	}
	if len(seen) != 25 {
		t.Errorf("%d files planned, want 25", len(seen))
	}
	// Bad input changes nothing and names what is wrong.
	for _, bad := range []string{`{}`, `{"path":"/n","bogus":1}`, `{"path":"/n","pageSize":-1}`} {
		if _, err := (Noop{}).Validate(ctx, xenv{x}, []byte(bad)); err == nil {
			t.Errorf("config %s accepted", bad)
		}
	}
	if _, err := (Noop{}).Validate(ctx, xenv{x}, []byte(`{"path":"/missing"}`)); err == nil {
		t.Error("a missing path accepted")
	}
}

func cachedOn(x *xfake, block, worker int64) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.locs[block][worker]
}
