package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/alluvium/alluvium/internal/testutil"
	"github.com/alluvium/alluvium/sdk"
)

// localCluster is `alluvium local` (the non-race binary) run for a
// benchmark, and an SDK client of it.
type localCluster struct {
	ufs string
	c   *sdk.Client
	cmd *exec.Cmd
}

// startLocal runs `alluvium local --workers N` over a fresh UFS dir, waits
// for its ready line and connects an SDK client with its env file.
func startLocal(b *testing.B, workers int, args ...string) *localCluster {
	b.Helper()
	bin := plainBinary(b)
	home := filepath.Join(b.TempDir(), "home")
	lc := &localCluster{ufs: filepath.Join(b.TempDir(), "ufs")}
	if err := os.MkdirAll(lc.ufs, 0o755); err != nil {
		b.Fatal(err)
	}
	argv := append([]string{"local", "--home", home, "--ufs", lc.ufs, "--workers", fmt.Sprint(workers),
		"--port-base", fmt.Sprint(testutil.PortBase(b)), "--log-level", "warn"}, args...)
	cmd := exec.Command(bin, argv...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	lc.cmd = cmd
	b.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "ready") {
				ready <- true
				break
			}
		}
		_, _ = io.Copy(io.Discard, out)
		close(ready)
	}()
	select {
	case ok := <-ready:
		if !ok {
			b.Fatalf("alluvium local exited before ready:\n%s", stderr.String())
		}
	case <-time.After(2 * time.Minute):
		b.Fatalf("alluvium local not ready after 2 minutes:\n%s", stderr.String())
	}
	env, err := os.ReadFile(filepath.Join(home, "env"))
	if err != nil {
		b.Fatal(err)
	}
	opts := []sdk.Option{}
	for _, line := range strings.Split(string(env), "\n") {
		k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "=")
		if !ok {
			continue
		}
		switch k {
		case "ALLUVIUM_MASTER":
			opts = append(opts, sdk.WithMaster(v))
		case "ALLUVIUM_JOB_MASTER":
			opts = append(opts, sdk.WithJobMasters(sdk.SplitAddrs(v)...))
		case "ALLUVIUM_TOKEN":
			opts = append(opts, sdk.WithToken(v))
		}
	}
	lc.c, err = sdk.Dial(context.Background(), opts...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { lc.c.Close() })
	return lc
}

// tinyFiles writes n files of size bytes under <ufs>/dir.
func (lc *localCluster) tinyFiles(b *testing.B, dir string, n, size int) []string {
	b.Helper()
	buf := make([]byte, size)
	var out []string
	for i := 0; i < n; i++ {
		p := filepath.Join(lc.ufs, dir, fmt.Sprintf("f%05d", i))
		if i == 0 {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				b.Fatal(err)
			}
		}
		buf[0], buf[1] = byte(i), byte(i>>8)
		if err := os.WriteFile(p, buf, 0o644); err != nil {
			b.Fatal(err)
		}
		out = append(out, "/"+dir+"/"+filepath.Base(p))
	}
	return out
}

// loadWait submits a load of path and waits for it to complete.
func (lc *localCluster) loadWait(b *testing.B, jobs *sdk.Jobs, path string) *sdk.JobInfo {
	id, err := jobs.Submit(context.Background(), "load", map[string]any{"path": path})
	if err != nil {
		b.Fatal(err)
	}
	j, err := jobs.Wait(context.Background(), id, nil)
	if err != nil {
		b.Fatal(err)
	}
	return j
}

func percentile(v []float64, p float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	i := int(p*float64(len(s))+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BenchmarkTinyJobs measures what a pipeline or policy feels: a load job
// of one 4 KiB file that is not cached, from submit to a watched
// COMPLETED, on `alluvium local --workers 2`, by one SDK client one after
// another (p50, p99 of 200), and the rate of 64 submitters each doing so
// (jobs/s). The reference, in the same run, is the same client reading a
// fresh 4 KiB file of the same UFS through the SDK (CACHE read type: the
// metadata loaded from the UFS, the block filled on a worker and committed
// to the FS master), which is the work of the job without the job
// service. Goals: p50 <= 15 ms, p99 <= 50 ms, >= 3,000 jobs/s.
func BenchmarkTinyJobs(b *testing.B) {
	lc := startLocal(b, 2)
	jobs, err := lc.c.Jobs()
	if err != nil {
		b.Fatal(err)
	}
	const seq, conc, per = 200, 64, 40
	files := lc.tinyFiles(b, "seq", seq+20, 4096)
	direct := lc.tinyFiles(b, "direct", seq+20, 4096)
	for _, p := range files[:20] { // warm up connections and code paths
		lc.loadWait(b, jobs, p)
	}
	read := func(p string) {
		r, err := lc.c.Open(context.Background(), p, sdk.OpenOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if n, err := io.Copy(io.Discard, r); err != nil || n != 4096 {
			b.Fatalf("read %s: %d bytes, %v", p, n, err)
		}
		r.Close()
	}
	for _, p := range direct[:20] {
		read(p)
	}
	var lat, ref []float64
	b.ResetTimer()
	for i := 0; i < seq; i++ {
		start := time.Now()
		j := lc.loadWait(b, jobs, files[20+i])
		lat = append(lat, ms(time.Since(start)))
		if j.GetTasksDone() != 1 || j.GetBytesDone() != 4096 {
			b.Fatalf("tiny load: %+v", j)
		}
		start = time.Now()
		read(direct[20+i])
		ref = append(ref, ms(time.Since(start)))
	}
	b.StopTimer()
	b.ReportMetric(percentile(lat, 0.5), "p50-ms")
	b.ReportMetric(percentile(lat, 0.99), "p99-ms")
	b.ReportMetric(percentile(ref, 0.5), "read-p50-ms")
	b.ReportMetric(percentile(ref, 0.99), "read-p99-ms")

	// 64 submitters, each loading its own files one after another.
	many := lc.tinyFiles(b, "many", conc*per, 4096)
	var done atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for s := 0; s < conc; s++ {
		wg.Add(1)
		go func(s int) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				lc.loadWait(b, jobs, many[s*per+i])
				done.Add(1)
			}
		}(s)
	}
	wg.Wait()
	took := time.Since(start)
	b.ReportMetric(float64(done.Load())/took.Seconds(), "jobs/s-64")
	reference(b, "*", "the same client reading a fresh 4 KiB UFS file through the SDK (read-p50-ms, read-p99-ms): the fill without the job service")
}
