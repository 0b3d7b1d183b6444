package plans

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/jobview"
	"github.com/alluvium/alluvium/internal/testutil"
	"github.com/alluvium/alluvium/sdk"
)

// ufsFiles lists the files under UFSDir/dir: relative path → bytes.
func (c *cluster) ufsFiles(dir string) map[string][]byte {
	c.t.Helper()
	root := filepath.Join(c.UFSDir, dir)
	out := map[string][]byte{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(root, p)
		out[rel] = b
		return err
	})
	if err != nil && !os.IsNotExist(err) {
		c.t.Fatal(err)
	}
	return out
}

// ufsDirs lists the directories under UFSDir/dir (relative).
func (c *cluster) ufsDirs(dir string) []string {
	c.t.Helper()
	root := filepath.Join(c.UFSDir, dir)
	var out []string
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && p != root {
			rel, _ := filepath.Rel(root, p)
			out = append(out, rel)
		}
		return nil
	})
	sort.Strings(out)
	return out
}

// find runs find(1) in UFSDir/dir with the predicates given and returns
// the relative paths of the files it prints.
func (c *cluster) find(dir string, preds ...string) []string {
	c.t.Helper()
	cmd := exec.Command("find", append([]string{".", "-type", "f"}, preds...)...)
	cmd.Dir = filepath.Join(c.UFSDir, dir) // paths as ./rel
	out, err := cmd.Output()
	if err != nil {
		c.t.Fatalf("find %v: %v", preds, err)
	}
	var rels []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" {
			rels = append(rels, strings.TrimPrefix(l, "./"))
		}
	}
	sort.Strings(rels)
	return rels
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// sameTree compares two UFS trees byte for byte.
func (c *cluster) sameTree(src, dst string) {
	c.t.Helper()
	a, b := c.ufsFiles(src), c.ufsFiles(dst)
	if fmt.Sprint(keys(a)) != fmt.Sprint(keys(b)) {
		c.t.Fatalf("%s holds %d files, %s %d: %v vs %v", src, len(a), dst, len(b), keys(a), keys(b))
	}
	for k, v := range a {
		if !equalBytes(v, b[k]) {
			c.t.Errorf("%s/%s differs from %s/%s", dst, k, src, k)
		}
	}
}

func jobCounts(j jobview.Job) string {
	return fmt.Sprintf("files %d (%d bytes), skipped %d (%d bytes), deletes %d, bytes done %d, status %s %s",
		j.FilesTotal, j.BytesTotal, j.FilesSkipped, j.BytesSkipped, j.Deletes, j.BytesDone, j.Status, j.Error)
}

// The second run of a copy — as a nightly policy would run it — copies
// only what changed; the same across a local → MinIO mount. Sync deletes
// what the source lost, guarded by --max-delete; filters select exactly
// what find(1) selects; a dry run reports what the real run then does and
// changes nothing; a source that cannot be listed deletes nothing.
func TestIncrementalCopyAndSync(t *testing.T) {
	c := startCluster(t)

	const n = 1000
	sizes := map[string]int{}
	for i := 0; i < n; i++ {
		sizes[fmt.Sprintf("d%02d/f%04d", i%20, i)] = 100 + (i*37)%4000
	}
	sizes["big/multi.bin"] = 2*blockSize + 99 // a file of several blocks
	c.UFSTree("inc", sizes)
	total := len(sizes)

	t.Run("copy, copy again, change 10 and add 5", func(t *testing.T) {
		for _, dst := range []string{"/incdst", "/s3/inc"} {
			j := c.MustJob("job", "submit", "copy", "/inc", dst)
			if j.FilesTotal != int64(total) || j.FilesSkipped != 0 {
				t.Fatalf("first copy to %s: %s", dst, jobCounts(j))
			}
			j = c.MustJob("job", "submit", "copy", "/inc", dst)
			if j.FilesTotal != 0 || j.FilesSkipped != int64(total) || j.BytesDone != 0 || j.TasksTotal != 0 {
				t.Fatalf("second copy to %s: %s (want 0 files copied, %d skipped)", dst, jobCounts(j), total)
			}
		}
		c.sameTree("inc", "incdst")
		// 10 changed: 5 of another size, 5 of the same size (a later time).
		later := time.Now().Add(time.Hour)
		for i := 0; i < 10; i++ {
			p := filepath.Join(c.UFSDir, "inc", fmt.Sprintf("d%02d/f%04d", (i*7)%20, i*7))
			old, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			nb := testutil.RandBytes(len(old) + i%2*(i+1))
			testutil.WriteFile(t, p, nb)
			if err := os.Chtimes(p, later, later); err != nil {
				t.Fatal(err)
			}
		}
		for i := 0; i < 5; i++ {
			testutil.WriteFile(t, filepath.Join(c.UFSDir, "inc", fmt.Sprintf("new/n%d", i)), testutil.RandBytes(500+i))
		}
		for _, dst := range []string{"/incdst", "/s3/inc"} {
			j := c.MustJob("job", "submit", "copy", "/inc", dst)
			if j.FilesTotal != 15 || j.FilesSkipped != int64(total-10) {
				t.Fatalf("copy to %s after changing 10 and adding 5: %s (want exactly 15 copied)", dst, jobCounts(j))
			}
		}
		c.sameTree("inc", "incdst")
		for rel, b := range c.ufsFiles("inc") {
			if got := c.object("pre/inc/" + rel); !equalBytes(got, b) {
				t.Errorf("s3 pre/inc/%s: %d bytes, want %d", rel, len(got), len(b))
			}
		}
		// --ignore-existing copies nothing more; --overwrite all again.
		if j := c.MustJob("job", "submit", "copy", "/inc", "/incdst", "--ignore-existing"); j.FilesTotal != 0 {
			t.Errorf("--ignore-existing: %s", jobCounts(j))
		}
		if j := c.MustJob("job", "submit", "copy", "/inc/d00", "/incdst/d00", "--overwrite"); j.FilesTotal != int64(n/20) || j.FilesSkipped != 0 {
			t.Errorf("--overwrite: %s", jobCounts(j))
		}
		// --checksum: same contents are skipped, whatever the times.
		if j := c.MustJob("job", "submit", "copy", "/inc/d01", "/incdst/d01", "--checksum"); j.FilesTotal != 0 || j.FilesSkipped != int64(n/20) {
			t.Errorf("--checksum onto equal files: %s", jobCounts(j))
		}
	})

	t.Run("sync deletes what the source lost; dry run first; --max-delete", func(t *testing.T) {
		c.UFSTree("sy", map[string]int{"a/1": 10, "a/2": 20, "b/3": 30, "keep.log": 5, "c/4": 4})
		c.MustJob("job", "submit", "sync", "/sy", "/sydst")
		c.sameTree("sy", "sydst")
		// The source loses 3 files and a directory; gains one.
		for _, p := range []string{"a/1", "b/3", "keep.log", "c/4"} {
			if err := os.Remove(filepath.Join(c.UFSDir, "sy", p)); err != nil {
				t.Fatal(err)
			}
		}
		os.Remove(filepath.Join(c.UFSDir, "sy", "c"))
		testutil.WriteFile(t, filepath.Join(c.UFSDir, "sy", "b/new"), testutil.RandBytes(77))
		// --max-delete 3 with 4 to delete: the job fails, nothing deleted
		// (what is new is copied, as rclone does).
		j, errOut, code := c.JobJSON("job", "submit", "sync", "/sy", "/sydst", "--max-delete", "3", "--wait")
		if code == 0 || j.Status != "FAILED" || !strings.Contains(j.Error, "--max-delete 3") || j.Deletes != 4 {
			t.Fatalf("--max-delete 3 with 4 deletes: exit %d %s\n%s", code, jobCounts(j), errOut)
		}
		before := c.ufsFiles("sydst")
		for _, p := range []string{"a/1", "b/3", "keep.log", "c/4"} {
			if _, ok := before[p]; !ok {
				t.Fatalf("the sync that failed its --max-delete deleted %s", p)
			}
		}
		// A dry run: the counts, and nothing changed (the new file not
		// copied, nothing deleted).
		dry := c.MustJob("job", "submit", "sync", "/sy", "/sydst", "--exclude", "*.log", "--dry-run")
		if dry.FilesTotal != 0 || dry.Deletes != 3 || dry.FilesSkipped != 2 || !dry.DryRun || dry.TasksTotal != 0 {
			t.Fatalf("dry run: %s", jobCounts(dry))
		}
		after := c.ufsFiles("sydst")
		if fmt.Sprint(keys(after)) != fmt.Sprint(keys(before)) {
			t.Fatalf("the dry run changed DST: %v, was %v", keys(after), keys(before))
		}
		real := c.MustJob("job", "submit", "sync", "/sy", "/sydst", "--exclude", "*.log")
		if real.FilesTotal != dry.FilesTotal || real.Deletes != dry.Deletes || real.FilesSkipped != dry.FilesSkipped || real.BytesTotal != dry.BytesTotal {
			t.Fatalf("the real run differs from its dry run:\n%s\n%s", jobCounts(real), jobCounts(dry))
		}
		got := keys(c.ufsFiles("sydst"))
		if want := []string{"a/2", "b/new", "keep.log"}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("after sync DST holds %v, want %v (keep.log excluded: neither copied nor deleted)", got, want)
		}
		if dirs := c.ufsDirs("sydst"); fmt.Sprint(dirs) != "[a b]" {
			t.Errorf("directories after sync: %v, want [a b]", dirs)
		}
		// Without the filter keep.log goes too; then nothing to do.
		c.MustJob("job", "submit", "sync", "/sy", "/sydst")
		c.sameTree("sy", "sydst")
		if j := c.MustJob("job", "submit", "sync", "/sy", "/sydst"); j.FilesTotal != 0 || j.Deletes != 0 {
			t.Errorf("sync of synced trees: %s", jobCounts(j))
		}
	})

	t.Run("filters select what find selects", func(t *testing.T) {
		now := time.Now()
		files := map[string]struct {
			size int
			age  time.Duration
		}{
			"a.parquet": {100, 24 * time.Hour}, "x/b.parquet": {3000, 3 * 24 * time.Hour}, "x/y/c.parquet": {50, 10 * 24 * time.Hour},
			"a.csv": {10, time.Hour}, "tmp/d.parquet": {1000, 2 * time.Hour}, "x/e.log": {6000, 30 * 24 * time.Hour},
			"x/tmp/f.csv": {2000, 5 * 24 * time.Hour}, "g.PARQUET": {700, 24 * time.Hour},
		}
		for rel, f := range files {
			p := testutil.WriteFile(t, filepath.Join(c.UFSDir, "flt", rel), testutil.RandBytes(f.size))
			mt := now.Add(-f.age - time.Minute)
			if err := os.Chtimes(p, mt, mt); err != nil {
				t.Fatal(err)
			}
		}
		for i, tc := range []struct {
			flags, find []string
		}{
			{[]string{"--include", "*.parquet"}, []string{"-name", "*.parquet"}},
			{[]string{"--include", "/*.parquet"}, []string{"-path", "./*.parquet", "!", "-path", "./*/*"}},
			{[]string{"--exclude", "tmp/", "--exclude", "*.log"}, []string{"!", "-path", "*/tmp/*", "!", "-name", "*.log"}},
			{[]string{"--include", "x/**"}, []string{"-path", "./x/*"}},
			{[]string{"--min-size", "1000", "--max-size", "5000"}, []string{"-size", "+999c", "-size", "-5001c"}},
			{[]string{"--max-age", "2d"}, []string{"-mmin", "-2880"}},
			{[]string{"--min-age", "4d", "--include", "*.{csv,log}"}, []string{"-mmin", "+5760", "(", "-name", "*.csv", "-o", "-name", "*.log", ")"}},
		} {
			dst := fmt.Sprintf("fltout%d", i)
			j := c.MustJob(append([]string{"job", "submit", "copy", "/flt", "/" + dst}, tc.flags...)...)
			want := c.find("flt", tc.find...)
			got := keys(c.ufsFiles(dst))
			if fmt.Sprint(got) != fmt.Sprint(want) || j.FilesTotal != int64(len(want)) {
				t.Errorf("copy %v: copied %v (%d files), find %v selects %v", tc.flags, got, j.FilesTotal, tc.find, want)
			}
			// Load (dry run) plans the same files.
			l := c.MustJob(append([]string{"job", "submit", "load", "/flt", "--dry-run"}, tc.flags...)...)
			if l.FilesTotal+l.FilesSkipped != int64(len(want)) {
				t.Errorf("load %v --dry-run: %s, want %d files", tc.flags, jobCounts(l), len(want))
			}
		}
		// Bad filters are refused at submit, naming the flag.
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"--include", "[a"}, "--include"},
			{[]string{"--max-age", "7x"}, "--max-age"},
			{[]string{"--min-size", "10", "--max-size", "5"}, "--max-size"},
			{[]string{"--min-size", "lots"}, "--min-size"},
			{[]string{"--overwrite", "--ignore-existing"}, "contradict"},
		} {
			_, errOut, code := c.CLI(append([]string{"job", "submit", "copy", "/flt", "/fltbad"}, tc.args...)...)
			if code != 2 || !strings.Contains(errOut, tc.want) {
				t.Errorf("copy %v: exit %d, %s (want exit 2 naming %s)", tc.args, code, errOut, tc.want)
			}
		}
	})

	t.Run("a nightly copy policy and a pipeline copy only what changed", func(t *testing.T) {
		c.UFSTree("pol", map[string]int{"a": 100, "b/c": 200, "b/d": 300})
		c.MustCLI("policy", "add", "nightly", "--cron", "*/2 * * * * *", "copy", "/pol", "/poldst")
		// runs waits for the policy's completed runs and returns them.
		runs := func(n int) []*api.JobInfo {
			var done []*api.JobInfo
			testutil.Eventually(t, 60*time.Second, func() error {
				done = nil
				for j, err := range c.Jobs.List(context.Background(), sdk.ListJobsOptions{PageSize: 500}) {
					if err != nil {
						return err
					}
					if j.GetPolicy() == "nightly" && sdk.IsTerminal(j.GetStatus()) {
						done = append(done, j)
					}
				}
				if len(done) < n {
					return fmt.Errorf("%d runs ended", len(done))
				}
				return nil
			})
			sort.Slice(done, func(a, b int) bool { return done[a].GetId() < done[b].GetId() })
			return done
		}
		first := runs(2)
		for i, j := range first {
			if j.GetStatus() != api.JobInfo_COMPLETED {
				t.Fatalf("run %d of the nightly copy: %s %s", i, j.GetStatus(), j.GetError())
			}
			if i > 0 && (j.GetFilesTotal() != 0 || j.GetFilesSkipped() != 3) {
				t.Fatalf("run %d of the nightly copy into the same destination: %d copied, %d skipped; want 0 and 3", i, j.GetFilesTotal(), j.GetFilesSkipped())
			}
		}
		testutil.WriteFile(t, filepath.Join(c.UFSDir, "pol", "b", "e"), testutil.RandBytes(42))
		testutil.Eventually(t, 60*time.Second, func() error {
			for _, j := range runs(len(first)) {
				if j.GetFilesTotal() == 1 && j.GetFilesSkipped() == 3 && j.GetStatus() == api.JobInfo_COMPLETED {
					return nil
				}
			}
			return fmt.Errorf("no run copied just the new file yet")
		})
		c.MustCLI("policy", "rm", "nightly")
		c.sameTree("pol", "poldst")

		p := sdk.NewPipeline("again")
		p.Job("copy", sdk.JobSpec{Plan: "copy", Config: sdk.CopyConfig{Src: "/pol", Dst: "/pipedst"}})
		for i, want := range []int64{4, 0} {
			rep, err := p.Run(context.Background(), c.Client)
			if err != nil || !rep.OK() {
				t.Fatalf("pipeline run %d: %v\n%s", i, err, rep)
			}
			st, _ := rep.Step("copy")
			if st.Job.GetFilesTotal() != want || st.Job.GetFilesSkipped() != 4-want {
				t.Fatalf("pipeline run %d: copied %d, skipped %d; want %d copied", i, st.Job.GetFilesTotal(), st.Job.GetFilesSkipped(), want)
			}
		}
	})

	t.Run("a source that cannot be listed deletes nothing", func(t *testing.T) {
		// A mount of its own that gives up on S3 after one retry.
		c.MustCLI("fs", "mount", "/s3b", "s3://"+c.bucket+"/pre2",
			"--option", "s3.endpoint=http://"+c.minio.Endpoint, "--option", "s3.access-key="+c.minio.AccessKey,
			"--option", "s3.secret-key="+c.minio.SecretKey, "--option", "s3.path-style=true", "--option", "s3.max-retries=1")
		c.UFSTree("s3src", map[string]int{"p/1": 100, "p/2": 200, "q": 300})
		c.MustJob("job", "submit", "copy", "/s3src", "/s3b/src")
		c.MustJob("job", "submit", "sync", "/s3b/src", "/mirror")
		before := c.ufsFiles("mirror")
		if len(before) != 3 {
			t.Fatalf("mirror holds %v", keys(before))
		}
		c.minio.Proc.Kill() // the S3 source is gone: listing it fails
		j, errOut, code := c.JobJSON("job", "submit", "sync", "/s3b/src", "/mirror", "--wait")
		if code == 0 && j.Deletes > 0 {
			t.Fatalf("sync from an unreachable source: exit %d %s\n%s", code, jobCounts(j), errOut)
		}
		if after := c.ufsFiles("mirror"); fmt.Sprint(keys(after)) != fmt.Sprint(keys(before)) {
			t.Fatalf("sync from an unreachable source deleted: %v, was %v (%s)", keys(after), keys(before), jobCounts(j))
		}
		t.Logf("sync from an unreachable source: exit %d, %s", code, jobCounts(j))
	})
}
