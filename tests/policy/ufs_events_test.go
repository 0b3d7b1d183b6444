package policy

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/testutil"
	"github.com/alluvium/alluvium/sdk"
)

// Event policies on files that appear in a mount's UFS behind Alluvium's
// back: the leading FS master watches the UFS under the policy's path
// (inotify on a local UFS, a listing diff on S3) and the files it learns
// are completion events like the files written through Alluvium.

// dropLocal writes files from..to-1 under rel in the local UFS directory
// with plain os.WriteFile (8 writers, 10 subdirectories made on the way)
// and returns their bytes by Alluvium path.
func (c *cluster) dropLocal(rel string, from, to int) map[string][]byte {
	c.t.Helper()
	return c.dropping(rel, from, to)()
}

// dropping starts dropLocal's writers; the function it returns waits for
// them and returns the bytes by path.
func (c *cluster) dropping(rel string, from, to int) func() map[string][]byte {
	c.t.Helper()
	return c.dropAsync(from, to, func(i int) (string, []byte, error) {
		name := fmt.Sprintf("%s/d%d/f%04d", rel, i%10, i)
		data := []byte(fmt.Sprintf("file %d dropped into the UFS\n", i))
		full := filepath.Join(c.UFSDir, name)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return "", nil, err
		}
		return "/" + name, data, os.WriteFile(full, data, 0o644)
	})
}

// drop runs put for i in from..to-1 from 8 goroutines and collects what
// each wrote.
func (c *cluster) drop(from, to int, put func(i int) (string, []byte, error)) map[string][]byte {
	c.t.Helper()
	return c.dropAsync(from, to, put)()
}

// dropAsync is drop that returns at once: the function it returns waits.
func (c *cluster) dropAsync(from, to int, put func(i int) (string, []byte, error)) func() map[string][]byte {
	c.t.Helper()
	want := map[string][]byte{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, to-from)
	next := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				p, data, err := put(i)
				if err != nil {
					errs <- fmt.Errorf("drop %d: %w", i, err)
					continue
				}
				mu.Lock()
				want[p] = data
				mu.Unlock()
			}
		}()
	}
	go func() {
		for i := from; i < to; i++ {
			next <- i
		}
		close(next)
	}()
	return func() map[string][]byte {
		c.t.Helper()
		wg.Wait()
		close(errs)
		for err := range errs {
			c.t.Fatal(err)
		}
		return want
	}
}

// slowLocal writes a file under the local UFS in chunks, pausing between
// them (longer than the watcher's settle), with one open file.
func (c *cluster) slowLocal(rel string, chunks int) (string, []byte) {
	c.t.Helper()
	full := filepath.Join(c.UFSDir, rel)
	f, err := os.Create(full)
	if err != nil {
		c.t.Fatal(err)
	}
	var all []byte
	for i := range chunks {
		chunk := []byte(fmt.Sprintf("chunk %d of %s\n", i, rel))
		if _, err := f.Write(chunk); err != nil {
			c.t.Fatal(err)
		}
		all = append(all, chunk...)
		time.Sleep(250 * time.Millisecond) // a slow writer; no test waits on it
	}
	if err := f.Close(); err != nil {
		c.t.Fatal(err)
	}
	return "/" + rel, all
}

// TestEventPolicyUFSDrop: 1,000 files dropped into the local UFS directory
// under /landing behind Alluvium's back (os.WriteFile from 8 writers, into
// 10 new subdirectories), a few written slowly in chunks and a directory
// of files moved in whole, with --debounce 2s: a few runs, not one per
// file; every file in exactly one run — written slowly, it is one event,
// not one per chunk — and the files that were there before the policy fire
// nothing.
func TestEventPolicyUFSDrop(t *testing.T) {
	c := startCluster(t, 1)
	before := c.UFSTree("landing/old", map[string]int{"a": 10, "b": 20, "sub/c": 30})
	// The slow writers' directory is there (and watched) before they
	// start, so the watcher sees them open their files: each is one event
	// however long a writer stalls between chunks.
	if err := os.MkdirAll(filepath.Join(c.UFSDir, "landing/slow"), 0o755); err != nil {
		t.Fatal(err)
	}
	c.mustCLI("fs", "ls", "/landing")
	c.mustCLI("policy", "add", "dropped", "--on-create", "/landing", "--debounce", "2s", "persist", "/landing")
	// A first file, once in a run, says the watcher's first walk is done.
	want := c.UFSTree("landing/slow", map[string]int{"probe": 1})
	testutil.Eventually(t, 60*time.Second, func() error {
		p, err := c.eventPolicyErr("dropped")
		if err == nil && p.Events == 0 {
			err = fmt.Errorf("the probe is in no run yet")
		}
		return err
	})

	var slowMu sync.Mutex
	slow := map[string][]byte{}
	var slowWG sync.WaitGroup
	for i := range 3 {
		slowWG.Add(1)
		go func() {
			defer slowWG.Done()
			p, data := c.slowLocal(fmt.Sprintf("landing/slow/s%d", i), 6)
			slowMu.Lock()
			slow[p] = data
			slowMu.Unlock()
		}()
	}
	maps.Copy(want, c.dropLocal("landing", 0, 1000))
	// A directory of files built outside /landing and moved in whole.
	staged := c.UFSTree("staging/batch", map[string]int{"x": 5, "y": 6, "deep/z": 7})
	if err := os.Rename(filepath.Join(c.UFSDir, "staging/batch"), filepath.Join(c.UFSDir, "landing/batch")); err != nil {
		t.Fatal(err)
	}
	for p, data := range staged {
		want["/landing/batch/"+strings.TrimPrefix(p, "/staging/batch/")] = data
	}
	slowWG.Wait()
	for p, data := range slow {
		want[p] = data
	}
	jobs, files := c.eventRuns("dropped", len(want))
	t.Logf("%d files dropped into the UFS: %d runs", len(want), len(jobs))
	if len(jobs) > 100 {
		t.Fatalf("%d runs for %d files with a 2s debounce: want a few", len(jobs), len(want))
	}
	c.checkOnce(want, jobs, files)
	for old := range before {
		for _, fs := range files {
			for _, p := range fs {
				if p == old {
					t.Errorf("%s was there before the policy, yet a run has it", p)
				}
			}
		}
	}
	// Every event came from the UFS.
	ctx := context.Background()
	evs, err := c.Client.WatchCompletions(ctx, "/landing", 0, sdk.WatchOptions{MaxEvents: 10000})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs.Events {
		if e.GetSource() != "ufs" {
			t.Fatalf("event %v: source %q, want ufs", e, e.GetSource())
		}
	}
}

// TestEventPolicyUFSWriteThrough: a file written through Alluvium into the
// watched local UFS (CACHE_THROUGH: its UFS copy appears as it is written)
// fires once, not a second time when the watcher sees the UFS copy.
func TestEventPolicyUFSWriteThrough(t *testing.T) {
	c := startCluster(t, 1)
	c.mustCLI("fs", "mkdir", "/landing")
	c.mustCLI("policy", "add", "through", "--on-create", "/landing", "--debounce", "300ms", "persist", "/landing")
	want := map[string][]byte{}
	ctx := context.Background()
	for i := range 20 {
		p := fmt.Sprintf("/landing/w%02d", i)
		data := bytes.Repeat([]byte{byte('a' + i)}, 1000*(i+1))
		w, err := c.Client.Create(ctx, p, sdk.CreateOptions{WriteType: api.WriteType_CACHE_THROUGH})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		want[p] = data
	}
	maps := c.dropLocal("landing", 0, 20)
	for p, d := range maps {
		want[p] = d
	}
	c.eventRuns("through", len(want))
	// A forced re-sync of every directory finds nothing new; then one
	// more file dropped: when its run is launched, every event before it
	// was read (the feed is in order), and there must be no other.
	c.mustCLI("fs", "ls", "-R", "--sync", "/landing")
	marker := c.UFSTree("landing/marker", map[string]int{"m": 1})
	for p, d := range marker {
		want[p] = d
	}
	jobs, files := c.eventRuns("through", len(want))
	c.checkOnce(want, jobs, files)
	evs, err := c.Client.WatchCompletions(ctx, "/landing", 0, sdk.WatchOptions{MaxEvents: 10000})
	if err != nil {
		t.Fatal(err)
	}
	src := map[string]string{}
	for _, e := range evs.Events {
		if prev, dup := src[e.GetPath()]; dup {
			t.Fatalf("%s is two events (%s, %s)", e.GetPath(), prev, e.GetSource())
		}
		src[e.GetPath()] = e.GetSource()
	}
	for p := range want {
		if wantSrc := map[bool]string{true: "write", false: "ufs"}[strings.HasPrefix(p, "/landing/w")]; src[p] != wantSrc {
			t.Errorf("%s: source %q, want %q", p, src[p], wantSrc)
		}
	}
}

// TestEventPolicyUFSMinIO: 1,000 objects put straight into the MinIO
// bucket mounted at /s3 (not through Alluvium) fire the policy on
// /s3/landing — the FS master lists the watched prefix every interval and
// announces what is new — each in exactly one run; objects there before
// the policy fire nothing.
func TestEventPolicyUFSMinIO(t *testing.T) {
	c := &cluster{Cluster: testutil.StartCluster(t, testutil.ClusterOptions{Workers: 1, JobMasters: 1,
		Env: []string{"ALLUVIUM_FSMASTER_UFS_WATCH_INTERVAL=300ms"}}), t: t}
	mi := testutil.StartMinIO(t)
	s3, err := minio.New(mi.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(mi.AccessKey, mi.SecretKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const bucket = "landing"
	if err := s3.MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	put := func(key string, data []byte) error {
		_, err := s3.PutObject(ctx, bucket, key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{})
		return err
	}
	for _, k := range []string{"pre/landing/old1", "pre/landing/sub/old2"} {
		if err := put(k, []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	c.mustCLI("fs", "mount", "/s3", "s3://"+bucket+"/pre",
		"--option", "s3.endpoint=http://"+mi.Endpoint, "--option", "s3.access-key="+mi.AccessKey,
		"--option", "s3.secret-key="+mi.SecretKey, "--option", "s3.path-style=true")
	c.mustCLI("fs", "ls", "/s3/landing")
	c.mustCLI("policy", "add", "objects", "--on-create", "/s3/landing", "--debounce", "2s", "persist", "/s3/landing")
	want := c.drop(0, 1000, func(i int) (string, []byte, error) {
		key := fmt.Sprintf("landing/d%d/o%04d", i%10, i)
		data := []byte(fmt.Sprintf("object %d put behind Alluvium's back\n", i))
		return "/s3/" + key, data, put("pre/"+key, data)
	})
	jobs, files := c.eventRuns("objects", len(want))
	t.Logf("%d objects put into MinIO: %d runs", len(want), len(jobs))
	if len(jobs) > 100 {
		t.Fatalf("%d runs for %d objects with a 2s debounce: want a few", len(jobs), len(want))
	}
	seen := map[string]int64{}
	for _, j := range jobs {
		if j.GetStatus() != api.JobInfo_COMPLETED {
			t.Errorf("job %d: %v %s", j.GetId(), j.GetStatus(), j.GetError())
		}
		for _, p := range files[j.GetId()] {
			if first, dup := seen[p]; dup {
				t.Errorf("%s is in job %d and job %d", p, first, j.GetId())
			}
			if _, ok := want[p]; !ok {
				t.Errorf("job %d has %s, which was not put after the policy", j.GetId(), p)
			}
			seen[p] = j.GetId()
		}
	}
	if len(seen) != len(want) {
		t.Fatalf("runs name %d objects, %d were put", len(seen), len(want))
	}
	// Read through Alluvium: the bytes are the objects'.
	for _, p := range []string{"/s3/landing/d0/o0000", "/s3/landing/d9/o0999"} {
		r, err := c.Client.Open(ctx, p, sdk.OpenOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		_, err = b.ReadFrom(r)
		r.Close()
		if err != nil || !bytes.Equal(b.Bytes(), want[p]) {
			t.Fatalf("%s: %q %v, want %q", p, b.Bytes(), err, want[p])
		}
	}
}

// TestEventPolicyUFSFailover: the job-master leader (of three) is
// SIGKILLed in the middle of a burst of files dropped into the local UFS;
// every file is still in exactly one run.
func TestEventPolicyUFSFailover(t *testing.T) {
	c := startCluster(t, 3)
	c.mustCLI("fs", "mkdir", "/landing")
	c.burstFailover(400, func(from, to int) func() map[string][]byte { return c.dropping("landing", from, to) },
		func() { c.KillJobMasterLeader() }, "job-master leader killed mid UFS burst")
}

// TestEventPolicyUFSFSMasterFailover: the FS-master leader (of three,
// sharing an embedded journal) is SIGKILLed in the middle of a burst of
// files dropped into the local UFS; the new leader watches the UFS when
// the job master's feed reads reach it, lists the path once and announces
// what the old one had not learned (or not committed): every file is in
// exactly one run.
func TestEventPolicyUFSFSMasterFailover(t *testing.T) {
	c := &cluster{Cluster: testutil.StartCluster(t, testutil.ClusterOptions{Workers: 1, JobMasters: 1, FSMasters: 3}), t: t}
	c.mustCLI("fs", "mkdir", "/landing")
	c.burstFailover(400, func(from, to int) func() map[string][]byte { return c.dropping("landing", from, to) },
		func() { c.FSMasters[c.WaitFSLeader()].Kill() }, "FS-master leader killed mid UFS burst")
}
