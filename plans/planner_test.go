package plans

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
)

// The shared planner gives every plan load's placement: items that name no
// block worker fill one worker's batch before the next worker's starts,
// and the bytes stay even over many workers (exec, over uncached files).
func TestItemPlannerFillsBatchesAcrossManyWorkers(t *testing.T) {
	c := newFakeCluster(300)
	const files, batch = 6000, 32
	for i := range files {
		c.file(fmt.Sprintf("/e/d%02d/f%05d", i/500, i), 10, 1000)
	}
	cfg := []byte(fmt.Sprintf(`{"path":"/e","command":["true"],"batchFiles":%d}`, batch))
	tasks := planAllOf(t, Exec{}, fakeEnv{c}, cfg, 1000, 0, nil)
	n := 0
	for _, ts := range tasks {
		var a itemArgs
		if err := json.Unmarshal(ts.Args, &a); err != nil {
			t.Fatal(err)
		}
		if a.Worker != ts.BlockWorkerID || a.Worker == 0 {
			t.Fatalf("task on worker %d, args say %d", ts.BlockWorkerID, a.Worker)
		}
		n += len(a.Items)
	}
	if n != files {
		t.Fatalf("%d files planned, want %d", n, files)
	}
	// Ideally 188 full tasks. Each Next hands over what it gathered within
	// its time budget, cutting the one filling batch short, so a slow
	// machine makes a few more; spreading item by item made one per worker
	// and Next (300 here).
	if max := files/batch + 100; len(tasks) > max {
		t.Fatalf("%d tasks for %d small files (batches of %d): want at most %d", len(tasks), files, batch, max)
	}
	requireEven(t, c, tasks, 10*batch)
}

// A load task planned before load moved onto the shared planner (its
// blocks under "b") still runs.
func TestLoadRunsTasksOfTheOldFormat(t *testing.T) {
	c := newFakeCluster(1)
	f := c.file("/old/a", 500, 1000)
	g := c.file("/old/b", 700, 1000)
	args := fmt.Sprintf(`{"w":1,"a":%q,"b":[{"id":%d,"p":"/old/a","u":"file:///ufs/old/a","l":500},{"id":%d,"p":"/old/b","u":"file:///ufs/old/b","l":700}]}`,
		waddr(1), f.BlockIds[0], g.BlockIds[0])
	res, err := Load{}.Run(context.Background(), fakeEnv{c}, &Task{Args: []byte(args)})
	if err != nil || res.Bytes != 1200 {
		t.Fatalf("run: %d bytes, %v", res.Bytes, err)
	}
	for _, id := range []int64{f.BlockIds[0], g.BlockIds[0]} {
		if !c.locs[id][1] {
			t.Fatalf("block %d not cached", id)
		}
	}
	w, blocks, err := LoadTaskBlocks([]byte(args))
	if err != nil || w != 1 || len(blocks) != 2 {
		t.Fatalf("LoadTaskBlocks: %d %v %v", w, blocks, err)
	}
}

// A task's address is written as json.Marshal writes it.
func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "h1:29999", "[::1]:29999", `a"b\c`, "<x>&", "tab\there", "héllo", "\x7f"} {
		want, _ := json.Marshal(s)
		if got := appendJSONString([]byte("x"), s); string(got) != "x"+string(want) {
			t.Errorf("appendJSONString(%q) = %s, want x%s", s, got, want)
		}
	}
}
