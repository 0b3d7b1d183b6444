package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/blockworker"
	"github.com/alluvium/alluvium/fsmaster"
	"github.com/alluvium/alluvium/internal/config"
	"github.com/alluvium/alluvium/internal/gcfloor"
	"github.com/alluvium/alluvium/internal/rpc"
	"github.com/alluvium/alluvium/jobmaster"
	"github.com/alluvium/alluvium/jobworker"
)

// rcloneVersion is the rclone the copy benchmarks compare with.
const rcloneVersion = "v1.76.0"

// rclone returns the rclone binary, installing it into the tool cache with
// `go install` when it is missing (never vendored into this repository).
func rclone(b *testing.B) string {
	b.Helper()
	home, err := os.UserHomeDir()
	if err != nil {
		b.Skipf("no home directory for the tool cache: %v", err)
	}
	dir := filepath.Join(home, ".cache", "alluvium-tools", "bin")
	bin := filepath.Join(dir, "rclone")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	b.Logf("installing rclone %s into %s", rcloneVersion, dir)
	cmd := exec.Command("go", "install", "github.com/rclone/rclone@"+rcloneVersion)
	cmd.Env = append(os.Environ(), "GOBIN="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Skipf("rclone %s could not be installed (go install: %v)\n%s", rcloneVersion, err, out)
	}
	return bin
}

// rcloneCopy times `rclone copy src dst [flags]` between local
// directories, with an empty config so nothing of the user's applies.
func rcloneCopy(b *testing.B, bin, src, dst string, flags ...string) (time.Duration, time.Duration) {
	b.Helper()
	_ = os.RemoveAll(dst)
	took, cpu := rcloneRun(b, bin, "copy", src, dst, flags...)
	_ = os.RemoveAll(dst)
	return took, cpu
}

// rcloneRun times `rclone CMD src dst [flags]` (copy, sync) with an empty
// config; it returns the wall and the CPU time.
func rcloneRun(b *testing.B, bin, cmdName, src, dst string, flags ...string) (time.Duration, time.Duration) {
	b.Helper()
	cmd := exec.Command(bin, append([]string{cmdName, src, dst, "--config", "/dev/null"}, flags...)...)
	cmd.Env = append(os.Environ(), "RCLONE_CONFIG=/dev/null")
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("rclone %s: %v\n%s", cmdName, err, out)
	}
	return time.Since(start), cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
}

// cpuTime is this process's CPU time so far (user + system).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// mallocs is how many heap objects this process has allocated so far.
func mallocs() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.Mallocs
}

// startJobCluster is an in-process FS master whose root UFS is ufsDir, one
// block worker (its tier under tierDir), a job master and the job worker
// beside the block worker: what the load and copy benchmarks run on.
func startJobCluster(b *testing.B, ufsDir, tierDir string) api.JobMasterClient {
	b.Helper()
	home := b.TempDir()
	log := zap.NewNop()
	l := config.NewLoader()
	l.Set("home", home)
	l.Set("log.level", "warn")
	l.Set("fsmaster.rpc-port", 0)
	l.Set("fsmaster.http-port", 0)
	l.Set("fsmaster.ufs", "file://"+ufsDir)
	l.Set("fsmaster.job-master", "")
	mcfg, err := l.Load()
	if err != nil {
		b.Fatal(err)
	}
	// The roles run here as in `alluvium local`: with the server processes'
	// heap floor (process.gc-heap-floor; off when GOGC is set, as there).
	b.Cleanup(gcfloor.Start(mcfg.Process.HeapFloor()))
	m, err := fsmaster.New(mcfg, log)
	if err != nil {
		b.Fatal(err)
	}
	if err := asRole("fsmaster", m.Start); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = m.Stop(context.Background()) })

	wl := config.NewLoader()
	wl.Set("home", home)
	wl.Set("worker.rpc-port", 0)
	wl.Set("worker.http-port", 0)
	wl.Set("worker.master", m.RPCAddr())
	wl.Set("worker.tiers", []map[string]any{{"alias": "MEM", "path": tierDir, "quota": "3GiB"}})
	wcfg, err := wl.Load()
	if err != nil {
		b.Fatal(err)
	}
	w, err := blockworker.New(wcfg, log)
	if err != nil {
		b.Fatal(err)
	}
	if err := asRole("blockworker", w.Start); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = w.Stop(context.Background()) })
	if err := w.WaitRegistered(context.Background()); err != nil {
		b.Fatal(err)
	}

	jcfg := benchConfig(b)
	jcfg.JobMaster.Master = m.RPCAddr()
	jm, err := jobmaster.New(jcfg, log)
	if err != nil {
		b.Fatal(err)
	}
	if err := asRole("jobmaster", jm.Start); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = jm.Stop(context.Background()) })
	for deadline := time.Now().Add(10 * time.Second); !jm.IsLeader(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatal("no job master leader")
		}
	}
	jwcfg := benchConfig(b)
	jwcfg.Worker.Master = m.RPCAddr()
	jwcfg.JobWorker.JobMaster = jm.RPCAddr()
	jwcfg.JobWorker.RPCPort = 0
	_, port, _ := net.SplitHostPort(w.RPCAddr())
	jw, err := jobworker.New(jwcfg, log, jobworker.Colocated{BlockWorkerID: w.ID(), BlockWorkerAddress: net.JoinHostPort(wcfg.Worker.Host, port)})
	if err != nil {
		b.Fatal(err)
	}
	if err := asRole("jobworker", jw.Start); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = jw.Stop(context.Background()) })
	cc, err := rpc.Dial(jm.RPCAddr(), rpc.ClientOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cc.Close() })
	return api.NewJobMasterClient(cc)
}

// runJob submits a job and follows it to the end.
func runJob(b *testing.B, jobs api.JobMasterClient, plan, cfg string) (time.Duration, *api.JobInfo) {
	b.Helper()
	start := time.Now()
	resp, err := jobs.SubmitJob(context.Background(), &api.SubmitJobRequest{Plan: plan, ConfigJson: cfg})
	if err != nil {
		b.Fatal(err)
	}
	st, err := jobs.WatchJob(context.Background(), &api.WatchJobRequest{JobId: resp.JobId, MinIntervalMs: 10})
	if err != nil {
		b.Fatal(err)
	}
	var last *api.JobInfo
	tl := newJobTimeline()
	for {
		j, err := st.Recv()
		if err != nil {
			break
		}
		last = j
		tl.see(j)
	}
	took := time.Since(start)
	tl.report(plan + " " + cfg)
	if last == nil || last.Status != api.JobInfo_COMPLETED {
		b.Fatalf("%s %s ended as %v", plan, cfg, last)
	}
	return took, last
}

// treeBytes sums the sizes of the regular files under dir.
func treeBytes(b *testing.B, dir string) (files int, bytes int64) {
	b.Helper()
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		files++
		bytes += fi.Size()
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return files, bytes
}

// benchCopyVsRclone copies files×size bytes local → local with a copy job
// (listing, planning, tasks, each file read from the UFS and written to
// its new UFS path under a temporary name by the block worker, and entered
// in the namespace) and with rclone on the same source in the same run, as
// two pairs that do the same work: the copy job (no verification) against
// `rclone copy --ignore-checksum` (sizes only), and the copy job with
// --checksum (each copy read back and compared byte for byte before its
// rename: from 1 MiB with the source, below with the bytes it streamed;
// no hash) against
// rclone's default (an MD5 of each side compared). Source and
// destinations share one file system: tmpfs when the machine has one (so
// neither pays for the disk; our UFS writes also fsync, rclone's do not),
// else the test's temp dir. The source is read once first so both read
// from the page cache. A run is copyRounds rounds, each running all four
// (ours first in even rounds, rclone first in odd ones), each ratio taken
// within its round; the figures are the rounds' medians, so a moment when
// the machine (or rclone, whose own time spreads widely) is slow decides
// no ratio.
func benchCopyVsRclone(b *testing.B, files, size int) {
	rc := rclone(b)
	root := tierRoot(b)
	ufs := filepath.Join(root, "ufs")
	src := filepath.Join(ufs, "data")
	writeTree(b, src, files, size)
	jobs := startJobCluster(b, ufs, filepath.Join(root, "tier"))
	runtime.GC()
	cpR(b, src, filepath.Join(root, "warm")) // warm the page cache
	copyJob := func(dst string, checksum bool, profile bool) (time.Duration, time.Duration) {
		cfg := fmt.Sprintf(`{"src":"/data","dst":%q,"checksum":%v}`, dst, checksum)
		stop := func() {}
		if profile {
			stop = profileRun(b, map[bool]string{false: "copy", true: "copy-checksum"}[checksum])
		}
		cpu0 := cpuTime()
		took, job := runJob(b, jobs, "copy", cfg)
		cpu := cpuTime() - cpu0
		stop()
		n, total := treeBytes(b, filepath.Join(ufs, dst))
		if n != files || total != int64(files*size) || job.BytesDone != total {
			b.Fatalf("copy %s: %d files, %d bytes (job says %d); want %d files, %d bytes", cfg, n, total, job.BytesDone, files, files*size)
		}
		// Gone before the next run, as rclone's copies are: every run
		// starts with the same tmpfs in use (the source only).
		_ = os.RemoveAll(filepath.Join(ufs, dst))
		b.ReportMetric(float64(job.TasksTotal), "tasks")
		return took, cpu
	}
	rcDst := filepath.Join(root, "rclone-dst")
	var (
		took, cpu, rcTook, rcCPU, ckTook, ckCPU, ckRcTook, ckRcCPU []float64
		ratio, ckRatio                                             []float64
		cpTook                                                     []float64
	)
	add := func(to *[]float64, d time.Duration) { *to = append(*to, d.Seconds()) }
	b.ResetTimer()
	for r := range copyRounds {
		profile := r == copyRounds/2
		// A destination of its own each round: the namespace still knows
		// the last round's (only its UFS files were removed).
		dst, ckDst := fmt.Sprintf("/copy-%d", r), fmt.Sprintf("/copy-checksum-%d", r)
		// pair runs our copy and rclone's back to back, ours first in
		// even rounds and rclone first in odd ones, and records both.
		pair := func(to [4]*[]float64, ratios *[]float64, ours func() (time.Duration, time.Duration), rcloneArgs ...string) {
			var t, c, rt, rcpu time.Duration
			if r%2 == 0 {
				t, c = ours()
				rt, rcpu = rcloneCopy(b, rc, src, rcDst, rcloneArgs...)
			} else {
				rt, rcpu = rcloneCopy(b, rc, src, rcDst, rcloneArgs...)
				t, c = ours()
			}
			add(to[0], t)
			add(to[1], c)
			add(to[2], rt)
			add(to[3], rcpu)
			*ratios = append(*ratios, t.Seconds()/rt.Seconds())
		}
		pair([4]*[]float64{&took, &cpu, &rcTook, &rcCPU}, &ratio,
			func() (time.Duration, time.Duration) { return copyJob(dst, false, profile) }, "--ignore-checksum")
		pair([4]*[]float64{&ckTook, &ckCPU, &ckRcTook, &ckRcCPU}, &ckRatio,
			func() (time.Duration, time.Duration) { return copyJob(ckDst, true, profile) })
		// The kernel's floor for one copier: cp -r of the same tree onto
		// the same file system (no fsync, no verify; coreutils copies each
		// file in the kernel too), so a reader sees how near both sides
		// run to what the machine's memory and page allocation allow.
		add(&cpTook, cpR(b, src, filepath.Join(root, "cp-dst")))
	}
	b.StopTimer()
	mb := float64(files*size) / 1e6
	b.ReportMetric(medianOf(took), "copy-s")
	b.ReportMetric(medianOf(rcTook), "rclone-nocheck-s")
	b.ReportMetric(medianOf(ratio), "ratio-copy/rclone-nocheck")
	b.ReportMetric(medianOf(ckTook), "copy-checksum-s")
	b.ReportMetric(medianOf(ckRcTook), "rclone-s")
	b.ReportMetric(medianOf(ckRatio), "ratio-checksum/rclone")
	b.ReportMetric(mb/medianOf(took), "copy-MB/s")
	b.ReportMetric(medianOf(cpTook), "cp-s")
	b.ReportMetric(medianOf(took)/medianOf(cpTook), "ratio-copy/cp")
	// CPU time is the fairer figure on a busy machine: every part of the
	// cluster runs in this process.
	b.ReportMetric(medianOf(cpu), "copy-cpu-s")
	b.ReportMetric(medianOf(rcCPU), "rclone-nocheck-cpu-s")
	b.ReportMetric(medianOf(ckCPU), "copy-checksum-cpu-s")
	b.ReportMetric(medianOf(ckRcCPU), "rclone-cpu-s")
	reference(b, "*", "rclone copy of the same tree between the same file systems, interleaved with ours in each round")
	reference(b, "copy-s", "rclone copy --ignore-checksum (rclone-nocheck-s): neither verifies the bytes")
	reference(b, "ratio-copy/rclone-nocheck", "copy job (no verification) over rclone copy --ignore-checksum (sizes only), the median of the rounds' ratios")
	reference(b, "copy-checksum-s", "rclone copy, default (rclone-s): both verify every file")
	reference(b, "cp-s", "a reference itself: cp -r (coreutils) of the same tree onto the same file system, once a round after the pairs")
	reference(b, "ratio-copy/cp", "copy job (no verification) over cp -r of the same tree onto the same file system (one file at a time, no fsync, no verify: the floor of one copier): the median copy time over the median cp -r time, cp -r running once a round after the pairs")
	reference(b, "ratio-checksum/rclone", "copy job --checksum (each copy read back and compared byte for byte before its rename, no hash) over rclone copy's default (MD5 of each side), the median of the rounds' ratios")
	b.Logf("NOTE: %s: both sides copy a page-cached tree to a new directory on the same file system (tmpfs when there is one, where fsync costs nothing). The copy job writes each file under a temp name, fsyncs it, renames it, fsyncs its directory (once per directory per task for small files) and checks its length (a local range nobody caches goes file to file in the kernel, copy_file_range); with --checksum it checks each copy before the rename: a file of 1 MiB or more is copied in the kernel in 256 KiB pieces, each read back from both files and compared byte for byte; a smaller one is streamed, its bytes kept and compared with the copy read back; no hash (the job records none). All roles run in the benchmark's process with the server roles' GC heap floor (process.gc-heap-floor), as `alluvium local` does. Each copy is removed before the next (rclone's too). rclone %s --ignore-checksum checks sizes only; by default it also compares an MD5 of each side; it never fsyncs. Pairs: copy vs --ignore-checksum, copy --checksum vs default. Each run is %d rounds, each running all four, ours and rclone's alternating which goes first; each ratio is taken within its round and the figures are the rounds' medians", b.Name(), rcloneVersion, copyRounds)
}

// copyRounds is how many rounds a copy benchmark's run takes (its figures
// are their medians).
const copyRounds = 5

// BenchmarkCopy1GiB64Files: goals ratio-copy/rclone-nocheck <= 0.6 and
// ratio-checksum/rclone <= 0.5.
func BenchmarkCopy1GiB64Files(b *testing.B) { benchCopyVsRclone(b, 64, 16<<20) }

// BenchmarkCopy10000SmallFiles (16 KiB each): goals <= 0.8 for both pairs.
func BenchmarkCopy10000SmallFiles(b *testing.B) { benchCopyVsRclone(b, 10000, 16<<10) }

// BenchmarkCopyAgain10000SmallFiles is the second run of a nightly copy:
// 10,000 files of 16 KiB copied local → local once, then copied again with
// nothing changed (every file skipped: both trees listed — each directory
// synced with its UFS — and compared by size and modification time), and
// the same with sync (nothing to copy, nothing to delete). The references,
// in the same run: the second `rclone copy` and `rclone sync` of the same
// unchanged tree onto rclone's own earlier copy (default settings: size
// and modification time). Goal ratio-copy/rclone <= 0.5.
func BenchmarkCopyAgain10000SmallFiles(b *testing.B) {
	const files, size = 10000, 16 << 10
	rc := rclone(b)
	root := tierRoot(b)
	ufs := filepath.Join(root, "ufs")
	src := filepath.Join(ufs, "data")
	writeTree(b, src, files, size)
	jobs := startJobCluster(b, ufs, filepath.Join(root, "tier"))
	rdst := filepath.Join(root, "rclone-dst")
	runJob(b, jobs, "copy", `{"src":"/data","dst":"/copy"}`) // the first runs: untimed
	rcloneRun(b, rc, "copy", src, rdst)
	runtime.GC()
	b.ResetTimer()
	cpu0 := cpuTime()
	took, job := runJob(b, jobs, "copy", `{"src":"/data","dst":"/copy"}`)
	cpu := cpuTime() - cpu0
	cpu0 = cpuTime()
	syncTook, sjob := runJob(b, jobs, "sync", `{"src":"/data","dst":"/copy"}`)
	syncCPU := cpuTime() - cpu0
	b.StopTimer()
	rcTook, rcCPU := rcloneRun(b, rc, "copy", src, rdst)
	rsTook, rsCPU := rcloneRun(b, rc, "sync", src, rdst)
	for _, j := range []*api.JobInfo{job, sjob} {
		if j.FilesSkipped != files || j.FilesTotal != 0 || j.BytesDone != 0 || j.Deletes != 0 {
			b.Fatalf("%s again: %d files copied (%d bytes), %d skipped, %d deletes; want all %d skipped", j.Plan, j.FilesTotal, j.BytesDone, j.FilesSkipped, j.Deletes, files)
		}
	}
	if n, total := treeBytes(b, filepath.Join(ufs, "copy")); n != files || total != int64(files*size) {
		b.Fatalf("the copy holds %d files, %d bytes", n, total)
	}
	b.ReportMetric(took.Seconds(), "copy-s")
	b.ReportMetric(rcTook.Seconds(), "rclone-copy-s")
	b.ReportMetric(took.Seconds()/rcTook.Seconds(), "ratio-copy/rclone")
	b.ReportMetric(syncTook.Seconds(), "sync-s")
	b.ReportMetric(rsTook.Seconds(), "rclone-sync-s")
	b.ReportMetric(syncTook.Seconds()/rsTook.Seconds(), "ratio-sync/rclone")
	b.ReportMetric(cpu.Seconds(), "copy-cpu-s")
	b.ReportMetric(rcCPU.Seconds(), "rclone-copy-cpu-s")
	b.ReportMetric(syncCPU.Seconds(), "sync-cpu-s")
	b.ReportMetric(rsCPU.Seconds(), "rclone-sync-cpu-s")
	reference(b, "*", "the second rclone copy / rclone sync of the same unchanged tree between the same file systems")
	b.Logf("NOTE: %s: the second run with nothing changed; both sides list source and destination and compare size and modification time; nothing is read, written or hashed. Alluvium's jobs sync each listed directory with its UFS (the default), rclone %s has default settings", b.Name(), rcloneVersion)
}
