package bench

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/alluvium/alluvium/fsmaster"
	"github.com/alluvium/alluvium/internal/config"
	"github.com/alluvium/alluvium/sdk"
	"github.com/alluvium/alluvium/tests/scale"
)

// BenchmarkFSMasterLearn measures a recursive listing of a UFS tree the FS
// master has not seen (it learns and journals every entry on the way) and
// of the same tree once known, through the SDK's List as `fs ls -R` lists
// (pages of sdk.RecursivePageSize, the next asked for while one is
// consumed), beside find of the tree in the same run. The tree: 200,000
// empty files in the scale run's layout (wide, deep and middling
// directories), synced to disk once built, so the master's journal fsyncs
// do not write back the benchmark's own creates. Master and client share
// this process: cpu-us/file is their CPU time per file, the figure a busy
// machine does not distort.
func BenchmarkFSMasterLearn(b *testing.B) {
	tree := scale.Tree{Files: 200000, Version: scale.TreeVersion}
	for range b.N {
		root := filepath.Join(b.TempDir(), "ufs")
		if err := os.Mkdir(root, 0o755); err != nil {
			b.Fatal(err)
		}
		if err := tree.Build(root); err != nil {
			b.Fatal(err)
		}
		syscall.Sync()
		entries := tree.Files + tree.Dirs()
		find := func(args ...string) time.Duration {
			start := time.Now()
			cmd := exec.Command("find", append([]string{root}, args...)...)
			out, _ := cmd.StdoutPipe()
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			n := 0
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				n++
			}
			if err := cmd.Wait(); err != nil || n != entries+1 {
				b.Fatalf("find: %v, %d lines, want %d", err, n, entries+1)
			}
			return time.Since(start)
		}
		find() // warm the dentry cache for both
		findTook := find()
		statTook := find(scale.FindStatFlags()...)

		l := config.NewLoader()
		l.Set("home", b.TempDir())
		l.Set("fsmaster.rpc-port", 0)
		l.Set("fsmaster.http-port", 0)
		l.Set("fsmaster.ufs", "file://"+root)
		l.Set("log.level", "warn")
		cfg, err := l.Load()
		if err != nil {
			b.Fatal(err)
		}
		m, err := fsmaster.New(cfg, nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := m.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
		c, err := sdk.Dial(context.Background(), sdk.WithMaster(m.RPCAddr()))
		if err != nil {
			b.Fatal(err)
		}
		list := func() (time.Duration, time.Duration) {
			runtime.GC()
			cpu0, start := cpuTime(), time.Now()
			n := 0
			for _, err := range c.List(context.Background(), "/", sdk.ListOptions{Recursive: true}) {
				if err != nil {
					b.Fatal(err)
				}
				n++
			}
			if n != entries {
				b.Fatalf("listed %d entries, want %d", n, entries)
			}
			return time.Since(start), cpuTime() - cpu0
		}
		learnTook, learnCPU := list()
		knownTook, knownCPU := list()
		c.Close()
		_ = m.Stop(context.Background())

		files := float64(tree.Files)
		b.ReportMetric(files/learnTook.Seconds(), "learn-files/s")
		b.ReportMetric(files/findTook.Seconds(), "find-files/s")
		b.ReportMetric(learnTook.Seconds()/findTook.Seconds(), "ratio-learn/find")
		b.ReportMetric(files/statTook.Seconds(), "find-stat-files/s")
		b.ReportMetric(learnTook.Seconds()/statTook.Seconds(), "ratio-learn/find-stat")
		b.ReportMetric(float64(learnCPU.Microseconds())/files, "learn-cpu-us/file")
		b.ReportMetric(files/knownTook.Seconds(), "list-files/s")
		b.ReportMetric(float64(knownCPU.Microseconds())/files, "list-cpu-us/file")
	}
	reference(b, "*", "find of the same tree in the same run (find-files/s): both go through every entry with a warm dentry cache; find stats nothing, the FS master stats, learns and journals (fsync) each")
	reference(b, "find-files/s", "the reference itself (find of the tree, warm dentry cache)")
	reference(b, "find-stat-files/s", "the like-with-like reference of learn-files/s: find printing each file's size, so it stats every file (one at a time) as learning must; warm inodes, as the learning listing finds them")
	reference(b, "ratio-learn/find-stat", "learn time over the stat-ing find's time, same tree, same run, both warm")
	reference(b, "list-files/s", "find-files/s (the same tree once known: no UFS access, no journal)")
	reference(b, "list-cpu-us/file", "learn-cpu-us/file (the same listing while learning)")
	b.Logf("NOTE: FSMasterLearn: a recursive listing through the SDK as fs ls -R lists (pages of 5,000 over gRPC, the next asked for while one is consumed) of a local UFS of 200,000 empty files the FS master has not seen — it stats, learns and journals (fsync) every entry — and of the same tree once known, against find of the tree (warm dentry cache; find prints, we count); the tree is synced to disk once built, before either side runs; master and client in one process")
}
