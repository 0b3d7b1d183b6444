package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/sdk"
)

// BenchmarkEventToJob measures an event policy's reaction: a file written
// through Alluvium (MUST_CACHE, 4 KiB) under a directory an event policy
// watches with --debounce 0, from its Close (the completion durable) to
// the policy's persist job seen RUNNING or later (the SDK polling the
// job's id every millisecond), one file after another (p50, p99 of 200),
// on `alluvium local --workers 1`. The reference, in the same run, is the
// same client doing the policy's work by hand: right after its Close it
// submits the same persist job (the file by path and id) and waits for it
// the same way — the job service without the completion feed and the
// policy's raft entry. Goal: p50 <= 100 ms.
func BenchmarkEventToJob(b *testing.B) {
	lc, jobs := startPolicyBench(b, "landed", "/landing", nil)
	ctx := context.Background()
	if _, err := lc.c.Mkdir(ctx, "/byhand", sdk.MkdirOptions{}); err != nil {
		b.Fatal(err)
	}
	data := make([]byte, 4096)
	write := func(p string) *sdk.FileInfo {
		putCached(b, lc.c, p, data)
		fi, err := lc.c.Stat(ctx, p)
		if err != nil {
			b.Fatal(err)
		}
		return fi
	}
	running := func(id int64) *sdk.JobInfo { return jobRunning(b, jobs, id) }
	// last is the newest job's id: jobs here come one at a time.
	last := newestJob(b, jobs)
	const warm, n = 10, 200
	var lat, ref []float64
	b.ResetTimer()
	for i := range warm + n {
		putCached(b, lc.c, fmt.Sprintf("/landing/f%04d", i), data)
		start := time.Now()
		last++
		j := running(last)
		took := time.Since(start)
		if j.GetPolicy() != "landed" || j.GetPlan() != "persist" {
			b.Fatalf("job %d is not the policy's: %v", last, j)
		}
		if _, err := jobs.Wait(ctx, last, nil); err != nil {
			b.Fatal(err)
		}

		// By hand: the same persist job, submitted right after Close.
		q := fmt.Sprintf("/byhand/f%04d", i)
		fi := write(q)
		start = time.Now()
		id, err := jobs.Submit(ctx, "persist", map[string]any{"files": []map[string]any{{"path": q, "id": fi.GetFileId()}}})
		if err != nil {
			b.Fatal(err)
		}
		running(id)
		byHand := time.Since(start)
		if _, err := jobs.Wait(ctx, id, nil); err != nil {
			b.Fatal(err)
		}
		last = id
		if i >= warm {
			lat = append(lat, ms(took))
			ref = append(ref, ms(byHand))
		}
	}
	b.StopTimer()
	reportLatencies(b, lat, ref, "byhand")
	reference(b, "*", "the same client submitting the same persist job itself right after Close and waiting for it the same way (byhand-p50-ms, byhand-p99-ms): the job service without the completion feed and the policy's raft entry")
}

// BenchmarkUFSDropToJob measures an event policy's reaction to a file
// dropped into the local UFS behind Alluvium's back: a 4 KiB file written
// with os.WriteFile into the UFS directory of /landing, which an event
// policy watches with --debounce 0, from the write's return to the
// policy's persist job seen RUNNING or later (polled every millisecond),
// one file after another (p50, p99 of 200), on `alluvium local --workers
// 1` with the default fsmaster.ufs-watch settings. The leader learns it
// from inotify (IN_CLOSE_WRITE), lists the directory and journals it as a
// completion. The reference, in the same run, is the same policy's
// reaction to a file written through Alluvium (MUST_CACHE, 4 KiB, from
// Close; write-p50-ms, write-p99-ms): the path without the UFS watcher.
func BenchmarkUFSDropToJob(b *testing.B) {
	dir := ""
	lc, jobs := startPolicyBench(b, "dropped", "/landing", func(lc *localCluster) {
		dir = filepath.Join(lc.ufs, "landing")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
	})
	ctx := context.Background()
	data := make([]byte, 4096)
	// next waits for the policy's next job (ids come one at a time here)
	// to exist and leave CREATED, then for it to end.
	last := newestJob(b, jobs)
	next := func(start time.Time) time.Duration {
		last++
		j := jobRunning(b, jobs, last)
		took := time.Since(start)
		if j.GetPolicy() != "dropped" {
			b.Fatalf("job %d is not the policy's: %v", last, j)
		}
		if _, err := jobs.Wait(ctx, last, nil); err != nil {
			b.Fatal(err)
		}
		return took
	}
	const warm, n = 10, 200
	var lat, ref []float64
	b.ResetTimer()
	for i := range warm + n {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("u%04d", i)), data, 0o644); err != nil {
			b.Fatal(err)
		}
		took := next(time.Now())

		putCached(b, lc.c, fmt.Sprintf("/landing/w%04d", i), data)
		written := next(time.Now())
		if i >= warm {
			lat = append(lat, ms(took))
			ref = append(ref, ms(written))
		}
	}
	b.StopTimer()
	reportLatencies(b, lat, ref, "write")
	reference(b, "*", "the same policy's reaction to a 4 KiB file written through Alluvium (MUST_CACHE) instead, from its Close (write-p50-ms, write-p99-ms): the same feed, policy and job path without the UFS watcher")
}

// startPolicyBench starts `alluvium local --workers 1` with directory d
// made and an event policy name on it (--debounce 0) that persists d on
// every file completed under it; before the policy is added, prepare (if
// not nil) readies the cluster further.
func startPolicyBench(b *testing.B, name, d string, prepare func(*localCluster)) (*localCluster, *sdk.Jobs) {
	b.Helper()
	lc := startLocal(b, 1)
	ctx := context.Background()
	jobs, err := lc.c.Jobs()
	if err != nil {
		b.Fatal(err)
	}
	ps, err := lc.c.Policies()
	if err != nil {
		b.Fatal(err)
	}
	if _, err := lc.c.Mkdir(ctx, d, sdk.MkdirOptions{}); err != nil {
		b.Fatal(err)
	}
	if prepare != nil {
		prepare(lc)
	}
	if _, err := ps.Add(ctx, sdk.PolicySpec{Name: name, OnCreate: d, Plan: "persist",
		Config: map[string]any{"path": d}, Overlap: sdk.OverlapAllow}); err != nil {
		b.Fatal(err)
	}
	return lc, jobs
}

// putCached writes data to p through Alluvium (MUST_CACHE).
func putCached(b *testing.B, c *sdk.Client, p string, data []byte) {
	w, err := c.Create(context.Background(), p, sdk.CreateOptions{WriteType: api.WriteType_MUST_CACHE})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		b.Fatal(err)
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
}

// jobRunning waits until job id exists and has left CREATED (polling
// every millisecond, for up to a minute).
func jobRunning(b *testing.B, jobs *sdk.Jobs, id int64) *sdk.JobInfo {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		j, err := jobs.Get(context.Background(), id, false)
		if err == nil && j.GetStatus() != api.JobInfo_CREATED {
			return j
		}
		time.Sleep(time.Millisecond)
	}
	b.Fatalf("job %d not running after a minute", id)
	return nil
}

// newestJob is the id of the newest job (0: none yet).
func newestJob(b *testing.B, jobs *sdk.Jobs) int64 {
	for j, err := range jobs.List(context.Background(), sdk.ListJobsOptions{NewestFirst: true, PageSize: 1}) {
		if err != nil {
			b.Fatal(err)
		}
		return j.GetId()
	}
	return 0
}

// reportLatencies reports p50-ms and p99-ms of lat, and those of the
// reference ref as <refName>-p50-ms and <refName>-p99-ms.
func reportLatencies(b *testing.B, lat, ref []float64, refName string) {
	b.ReportMetric(percentile(lat, 0.5), "p50-ms")
	b.ReportMetric(percentile(lat, 0.99), "p99-ms")
	b.ReportMetric(percentile(ref, 0.5), refName+"-p50-ms")
	b.ReportMetric(percentile(ref, 0.99), refName+"-p99-ms")
}
