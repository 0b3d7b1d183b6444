package plans

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/testutil"
	"github.com/alluvium/alluvium/sdk"
)

// One cluster for every plan; the subtests run in order and the last kills
// a worker.
func TestPlans(t *testing.T) {
	c := startCluster(t)
	ctx := context.Background()

	t.Run("copy local to S3 and back, byte for byte", func(t *testing.T) {
		files := c.UFSTree("cp", mixed())
		var total int64
		for _, b := range files {
			total += int64(len(b))
		}
		j := c.MustJob("job", "submit", "copy", "/cp", "/s3/cp", "--checksum")
		if j.BytesDone != total || j.TasksFailed != 0 {
			t.Fatalf("copy job %+v: want %d bytes", j, total)
		}
		for p, b := range files {
			key := "pre/cp" + strings.TrimPrefix(p, "/cp")
			if got := c.object(key); !equalBytes(got, b) {
				t.Errorf("s3 %s: %d bytes, sha256 %s; want %d, %s", key, len(got), testutil.SHA256(got)[:12], len(b), testutil.SHA256(b)[:12])
			}
			if f := c.FSStat("/s3/cp" + strings.TrimPrefix(p, "/cp")); !f.Persisted || f.Length != int64(len(b)) {
				t.Errorf("%s: %+v", p, f)
			}
		}
		for _, k := range c.objects("pre/") {
			if strings.Contains(k, ".alluvium-tmp") {
				t.Errorf("temporary object left: %s", k)
			}
		}
		c.MustJob("fs", "distributedCp", "/s3/cp", "/cpback")
		for p, b := range files {
			local := filepath.Join(c.UFSDir, "cpback", strings.TrimPrefix(p, "/cp/"))
			got, err := os.ReadFile(local)
			if err != nil || testutil.SHA256(got) != testutil.SHA256(b) {
				t.Errorf("%s: %v, sha256 %s want %s", local, err, testutil.SHA256(got)[:12], testutil.SHA256(b)[:12])
			}
		}
		c.checkTree(files, "/cp", "/cpback")
	})

	t.Run("copy local to local --checksum, byte for byte, nothing left aside", func(t *testing.T) {
		// A file of one block of 1 MiB is copied in the kernel and compared
		// with its source in place; a smaller one streamed through
		// SHA-256 and read back; one of several blocks assembled and
		// compared by SHA-256.
		files := c.UFSTree("cpl", map[string]int{"one": blockSize, "small": 100 << 10, "multi": 2*blockSize + 7, "d/one": blockSize})
		j := c.MustJob("job", "submit", "copy", "/cpl", "/cpldst", "--checksum")
		if j.TasksFailed != 0 || j.FilesTotal != int64(len(files)) {
			t.Fatalf("copy --checksum: %+v", j)
		}
		for p, b := range files {
			local := filepath.Join(c.UFSDir, "cpldst", strings.TrimPrefix(p, "/cpl/"))
			if got, err := os.ReadFile(local); err != nil || !equalBytes(got, b) {
				t.Errorf("%s: %v, %d bytes, want %d", local, err, len(got), len(b))
			}
		}
		c.checkTree(files, "/cpl", "/cpldst")
		_ = filepath.WalkDir(filepath.Join(c.UFSDir, "cpldst"), func(p string, d os.DirEntry, err error) error {
			if err == nil && strings.HasPrefix(d.Name(), ".alluvium") {
				t.Errorf("temporary file left: %s", p)
			}
			return nil
		})
	})

	t.Run("move local to S3 and back keeps the bytes and the cache", func(t *testing.T) {
		files := c.UFSTree("mv", mixed())
		c.MustJob("job", "submit", "load", "/mv")
		c.MustJob("fs", "distributedMv", "/mv", "/s3/mv")
		if _, _, code := c.CLI("fs", "stat", "/mv"); code == 0 {
			t.Error("/mv still exists after the move")
		}
		if _, err := os.Stat(filepath.Join(c.UFSDir, "mv")); !os.IsNotExist(err) {
			t.Errorf("the source is still in the UFS: %v", err)
		}
		for p, b := range files {
			key := "pre/mv" + strings.TrimPrefix(p, "/mv")
			if got := c.object(key); !equalBytes(got, b) {
				t.Errorf("s3 %s: %d bytes, want %d", key, len(got), len(b))
			}
		}
		if f := c.FSStat("/s3/mv/big/a.bin"); f.CachedPercent != 100 {
			t.Errorf("moved file %d%% cached, want the cache kept (100%%)", f.CachedPercent)
		}
		c.MustJob("job", "submit", "move", "/s3/mv", "/mvback")
		if keys := c.objects("pre/mv/"); len(keys) != 0 {
			t.Errorf("objects left at the source: %v", keys)
		}
		c.checkTree(files, "/mv", "/mvback")
		// Within a mount: one rename, one task.
		j := c.MustJob("job", "submit", "move", "/mvback", "/mvsame")
		if j.TasksTotal != 1 {
			t.Errorf("same-mount move took %d tasks, want 1 rename", j.TasksTotal)
		}
		c.checkTree(files, "/mv", "/mvsame")
	})

	t.Run("persist cache-only files to S3", func(t *testing.T) {
		want := map[string][]byte{"/s3/p/a.bin": testutil.RandBytes(2*blockSize + 77), "/s3/p/d/b.bin": testutil.RandBytes(4000), "/s3/p/e": nil}
		for _, p := range testutil.SortedKeys(want) {
			w, err := c.Client.Create(ctx, p, sdk.CreateOptions{WriteType: api.WriteType_MUST_CACHE, Recursive: true})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(want[p]); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if f := c.FSStat(p); f.Persisted {
				t.Fatalf("%s persisted before the job", p)
			}
		}
		c.MustJob("fs", "persist", "/s3/p")
		for p, b := range want {
			key := "pre" + strings.TrimPrefix(p, "/s3")
			if got := c.object(key); !equalBytes(got, b) || (b == nil && !contains(c.objects("pre/p/"), key)) {
				t.Errorf("s3 %s: %d bytes, want %d", key, len(got), len(b))
			}
			if !c.FSStat(p).Persisted {
				t.Errorf("%s not PERSISTED", p)
			}
		}
	})

	t.Run("ASYNC_THROUGH writes are persisted with no job submitted", func(t *testing.T) {
		local := filepath.Join(t.TempDir(), "a.bin")
		data := testutil.RandBytes(blockSize + 999)
		testutil.WriteFile(t, local, data)
		dsts := []string{"/async/a.bin", "/s3/async/a.bin"}
		state := func(p string) api.PersistenceState {
			t.Helper()
			fi, err := c.Client.Stat(ctx, p)
			if err != nil {
				t.Fatalf("stat %s: %v", p, err)
			}
			return fi.GetPersistenceState()
		}
		// Taken before the writes: each file completes after it, so the FS
		// master may hand it to a persist job only persistDelay later.
		before := time.Now()
		ids := map[string]int64{}
		for _, dst := range dsts {
			c.MustCLI("fs", "put", "--write-type", "ASYNC_THROUGH", local, dst)
			// Never NOT_PERSISTED; PERSISTED already only on a slow machine.
			if st := state(dst); st != api.PersistenceState_TO_BE_PERSISTED && st != api.PersistenceState_PERSISTED {
				t.Fatalf("%s after an ASYNC_THROUGH put: %v, want TO_BE_PERSISTED", dst, st)
			}
			fi, err := c.Client.Stat(ctx, dst)
			if err != nil {
				t.Fatal(err)
			}
			ids[dst] = fi.GetFileId()
		}
		testutil.Eventually(t, 30*time.Second, func() error {
			for _, dst := range dsts {
				if st := state(dst); st != api.PersistenceState_PERSISTED {
					return fmt.Errorf("%s is %v", dst, st)
				}
			}
			return nil
		})
		if got, err := os.ReadFile(filepath.Join(c.UFSDir, "async", "a.bin")); err != nil || testutil.SHA256(got) != testutil.SHA256(data) {
			t.Errorf("local UFS copy: %v (%d bytes)", err, len(got))
		}
		if got := c.object("pre/async/a.bin"); testutil.SHA256(got) != testutil.SHA256(data) {
			t.Errorf("S3 copy: %d bytes", len(got))
		}
		// The persist job that did it is the FS master's, for these very
		// files (by path and inode id), COMPLETED, and made no sooner than
		// the delay allows (the persister sends files due within half a
		// tick — delay/4 — with a batch).
		// (The file is PERSISTED by its task before the job hears of it:
		// the job's COMPLETED may come a moment later.)
		for _, dst := range dsts {
			var job *sdk.JobInfo
			testutil.Eventually(t, 30*time.Second, func() error {
				job = persistJobOf(t, c, dst, ids[dst])
				if job == nil {
					return fmt.Errorf("no COMPLETED persist job names %s (id %d)", dst, ids[dst])
				}
				return nil
			})
			if earliest := before.Add(persistDelay * 3 / 4); job.GetCreatedMs() < earliest.UnixMilli() {
				t.Errorf("persist job %d for %s created at %d ms, before the delay allows (%d ms)", job.GetId(), dst, job.GetCreatedMs(), earliest.UnixMilli())
			}
		}
	})

	t.Run("bad input is refused and changes nothing", func(t *testing.T) {
		files := c.UFSTree("bad", map[string]int{"x/a": 1000, "y": 2000})
		jobsBefore := c.CountJobs()
		for _, tc := range []struct {
			args []string
			code int
			want string
		}{
			{[]string{"job", "submit", "copy", "/bad", "/bad"}, 2, "the destination is the source itself"},
			{[]string{"job", "submit", "copy", "/bad", "/bad/x/in"}, 2, "into itself"},
			{[]string{"job", "submit", "move", "/bad", "/bad/x"}, 2, "into itself"},
			{[]string{"job", "submit", "copy", "/bad/x/a", "/bad/y", "--overwrite", "--ignore-existing"}, 2, "contradict each other"},
			{[]string{"fs", "distributedMv", "/bad/x/a", "/bad/y", "--min-size", "2k", "--max-size", "1k"}, 2, "more than --max-size"},
			{[]string{"job", "submit", "sync", "/bad", "/bad2", "--max-delete", "-2"}, 2, "--max-delete -2"},
			{[]string{"job", "submit", "copy", "/bad/x", "/bad/y"}, 1, "/bad/y is a file; a directory cannot replace it"},
			{[]string{"job", "submit", "replicate", "/bad", "--replication", "0"}, 2, "--replication 0"},
			{[]string{"fs", "setReplication", "/bad", "--replication", "-1"}, 2, "--replication -1"},
			{[]string{"job", "submit", "replicate", "/bad", "--replication", "4"}, 1, "more than the 3 live block worker"},
			{[]string{"job", "submit", "copy", "/nope", "/n2"}, 1, "/nope: no such file"},
			{[]string{"job", "submit", "copy", "/bad"}, 2, "SRC DST"},
		} {
			out, errOut, code := c.CLI(tc.args...)
			if code != tc.code || !strings.Contains(errOut, tc.want) || strings.Count(strings.TrimSpace(errOut), "\n") > 0 {
				t.Errorf("alluvium %s: exit %d (want %d)\n%s%s(want one line with %q)", strings.Join(tc.args, " "), code, tc.code, out, errOut, tc.want)
			}
		}
		if n := c.CountJobs(); n != jobsBefore {
			t.Errorf("%d jobs after bad submits, was %d", n, jobsBefore)
		}
		for p, b := range files {
			if got := c.read(p); testutil.SHA256(got) != testutil.SHA256(b) {
				t.Errorf("%s changed", p)
			}
		}
		// A file onto a file that differs replaces it; again, it is skipped.
		c.MustJob("job", "submit", "copy", "/bad/x/a", "/bad/y")
		if got := c.read("/bad/y"); testutil.SHA256(got) != testutil.SHA256(files["/bad/x/a"]) {
			t.Error("copy did not replace the different /bad/y")
		}
		if j := c.MustJob("job", "submit", "copy", "/bad/x/a", "/bad/y"); j.FilesSkipped != 1 || j.FilesTotal != 0 {
			t.Errorf("copy onto its own copy: %+v", j)
		}
	})

	t.Run("replicate up to 3 and down to 1", func(t *testing.T) {
		files := c.UFSTree("rep", map[string]int{"a": 2*blockSize + 500, "b": 10000})
		c.MustJob("job", "submit", "load", "/rep")
		c.MustJob("job", "submit", "replicate", "/rep", "--replication", "3")
		c.checkCopies(files, 3)
		c.MustJob("fs", "setReplication", "/rep", "--replication", "1")
		testutil.Eventually(t, 10*time.Second, func() error { return c.copies(files, 1) })
	})

	t.Run("an unwritable destination fails the job and leaves nothing", func(t *testing.T) {
		files := c.UFSTree("src9", map[string]int{"a": 3000, "b/c": 4000, "big": 2*blockSize + 1})
		// A file where the destination's directory should be (chmod would
		// not stop root, which these tests may run as).
		c.MustCLI("fs", "mkdir", "/blocked")
		blocked := filepath.Join(c.UFSDir, "blocked")
		if err := os.RemoveAll(blocked); err != nil {
			t.Fatal(err)
		}
		testutil.WriteFile(t, blocked, []byte("in the way"))
		j, errOut, code := c.JobJSON("job", "submit", "copy", "/src9", "/blocked/out", "--wait")
		if code != 1 || j.Status != "FAILED" {
			t.Fatalf("copy into a blocked dir: exit %d %+v\n%s", code, j, errOut)
		}
		out := c.MustCLI("job", "stat", fmt.Sprint(j.ID), "-v")
		for p := range files {
			if !strings.Contains(out, p+": ") {
				t.Errorf("job stat -v does not list %s:\n%s", p, out)
			}
		}
		if _, _, code := c.CLI("fs", "stat", "/blocked/out"); code == 0 {
			t.Errorf("/blocked/out exists after the failed copy:\n%s", c.MustCLI("fs", "ls", "/blocked"))
		}
		if b, err := os.ReadFile(blocked); err != nil || string(b) != "in the way" {
			t.Errorf("the UFS file in the way changed: %v %q", err, b)
		}
		if os.Geteuid() != 0 {
			// Not root: a read-only UFS directory stops the writes too.
			c.MustCLI("fs", "mkdir", "/ro")
			ro := filepath.Join(c.UFSDir, "ro")
			if err := os.Chmod(ro, 0o500); err != nil {
				t.Fatal(err)
			}
			defer os.Chmod(ro, 0o755)
			j, errOut, code := c.JobJSON("job", "submit", "copy", "/src9", "/ro/out", "--wait")
			if code != 1 || j.Status != "FAILED" || len(j.Failed) == 0 {
				t.Fatalf("copy into a read-only dir: exit %d %+v\n%s", code, j, errOut)
			}
			if ents, _ := os.ReadDir(ro); len(ents) != 0 {
				t.Errorf("the read-only dir holds %d entries after the failed copy", len(ents))
			}
		}
	})

	t.Run("a load syncs an S3 mount: new, rewritten and deleted objects", func(t *testing.T) {
		put := func(key string, n int) []byte {
			t.Helper()
			b := testutil.RandBytes(n)
			if _, err := c.s3.PutObject(ctx, c.bucket, "pre/sync/"+key, bytes.NewReader(b), int64(n), minio.PutObjectOptions{}); err != nil {
				t.Fatal(err)
			}
			return b
		}
		put("a", 1000)
		put("b", 2000)
		c.MustJob("job", "submit", "load", "/s3/sync")
		if f := c.FSStat("/s3/sync/b"); f.CachedPercent != 100 {
			t.Fatalf("b after the first load: %+v", f)
		}
		a := put("a", 3000) // rewritten behind Alluvium's back
		cc := put("c", 500) // new
		if err := c.s3.RemoveObject(ctx, c.bucket, "pre/sync/b", minio.RemoveObjectOptions{}); err != nil {
			t.Fatal(err)
		}
		c.MustJob("job", "submit", "load", "/s3/sync")
		for name, want := range map[string][]byte{"a": a, "c": cc} {
			if f := c.FSStat("/s3/sync/" + name); f.Length != int64(len(want)) || f.CachedPercent != 100 {
				t.Errorf("%s after the syncing load: %+v, want %d bytes cached", name, f, len(want))
			}
			if got := c.read("/s3/sync/" + name); !bytes.Equal(got, want) {
				t.Errorf("%s reads %d bytes that differ from the object", name, len(got))
			}
		}
		if _, errOut, code := c.CLI("fs", "stat", "/s3/sync/b"); code != 1 {
			t.Errorf("b was deleted from the bucket but fs stat exits %d: %s", code, errOut)
		}
	})

	t.Run("a job worker killed mid-copy: the job still completes, bytes exact", func(t *testing.T) {
		sizes := map[string]int{}
		for i := 0; i < 12; i++ {
			sizes[fmt.Sprintf("f%02d", i)] = 5*blockSize + 1000*i // 6 blocks: a task each
		}
		for i := 0; i < 40; i++ {
			sizes[fmt.Sprintf("s/%02d", i)] = 20000 + i
		}
		files := c.UFSTree("kill", sizes)
		j, errOut, code := c.JobJSON("job", "submit", "copy", "/kill", "/killed")
		if code != 0 {
			t.Fatalf("submit: exit %d\n%s", code, errOut)
		}
		kill := c.KillWorkerWithRunningTask(j.ID, 0, 30*time.Second)
		final, errOut, code := c.JobJSON("job", "wait", fmt.Sprint(j.ID))
		if code != 0 || final.Status != "COMPLETED" {
			t.Fatalf("job after worker %d was killed: exit %d %+v\n%s", kill.Worker, code, final, errOut)
		}
		c.RequireRetried(kill)
		// Reads go to cached copies first: wait until the FS master has
		// dropped the dead worker's.
		c.WaitWorkers(2)
		c.checkTree(files, "/kill", "/killed")
		for p, b := range files {
			got, err := os.ReadFile(filepath.Join(c.UFSDir, "killed", strings.TrimPrefix(p, "/kill/")))
			if err != nil || testutil.SHA256(got) != testutil.SHA256(b) {
				t.Errorf("UFS copy of %s: %v", p, err)
			}
		}
		entries, _ := os.ReadDir(filepath.Join(c.UFSDir, "killed"))
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".alluvium-tmp") {
				t.Logf("leftover temporary file of the killed attempt (hidden from listings): %s", e.Name())
			}
		}
	})
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

// copies checks every block of files has n copies on distinct workers, as
// `fs stat --output json` reports.
func (c *cluster) copies(files map[string][]byte, n int) error {
	for _, p := range testutil.SortedKeys(files) {
		f := c.FSStat(p)
		for _, b := range f.Blocks {
			seen := map[int64]bool{}
			for _, l := range b.Locations {
				seen[l.WorkerID] = true
			}
			if len(seen) != n || len(b.Locations) != n {
				return fmt.Errorf("%s block %d: %d locations on %d workers, want %d", p, b.ID, len(b.Locations), len(seen), n)
			}
		}
	}
	return nil
}

func (c *cluster) checkCopies(files map[string][]byte, n int) {
	c.t.Helper()
	if err := c.copies(files, n); err != nil {
		c.t.Fatal(err)
	}
}

// persistJobOf finds the COMPLETED persist job that names the file dst of
// inode id (nil: none yet).
func persistJobOf(t *testing.T, c *cluster, dst string, id int64) *sdk.JobInfo {
	t.Helper()
	var job *sdk.JobInfo
	for j, err := range c.Jobs.List(context.Background(), sdk.ListJobsOptions{Plan: "persist"}) {
		if err != nil {
			t.Fatal(err)
		}
		var cfg struct {
			Files []struct {
				Path string `json:"path"`
				ID   int64  `json:"id"`
			} `json:"files"`
		}
		if json.Unmarshal([]byte(j.GetConfigJson()), &cfg) != nil {
			continue
		}
		for _, f := range cfg.Files {
			if f.Path == dst && f.ID == id && j.GetStatus() == api.JobInfo_COMPLETED {
				job = j
			}
		}
	}
	return job
}
