package bench

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/alluvium/alluvium/internal/raftgroup"
	"github.com/alluvium/alluvium/internal/testutil"
)

var (
	plainBinOnce sync.Once
	plainBin     string
	plainBinErr  error
)

// TestMain removes the plain binary the benchmarks built (41 MB a run, in
// the system's temp dir) once they are done.
func TestMain(m *testing.M) {
	code := m.Run()
	if plainBin != "" {
		_ = os.RemoveAll(filepath.Dir(plainBin))
	}
	os.Exit(code)
}

// plainBinary is the alluvium binary built without the race detector
// (start-up is what is measured), once per run.
func plainBinary(b *testing.B) string {
	b.Helper()
	root := testutil.RepoRoot(b)
	plainBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "alluvium-bench-bin-")
		if err != nil {
			plainBinErr = err
			return
		}
		plainBin = filepath.Join(dir, "alluvium")
		cmd := exec.Command("go", "build", "-o", plainBin, "./cmd/alluvium")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			plainBinErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if plainBinErr != nil {
		b.Fatal(plainBinErr)
	}
	return plainBin
}

// BenchmarkLocalReady times `alluvium local --workers 2` from exec to its
// "ready" line (fresh home each start; median of 5 starts), and beside it
// what a lone raft node needs to lead: standing for election at once
// (raftgroup.StandIfAlone, as the job master does) and, the reference,
// waiting out raft's heartbeat timeout as hashicorp/raft does by itself
// (the default 1 s: one to two seconds). Both raft figures use the same
// in-memory stores and transport.
func BenchmarkLocalReady(b *testing.B) {
	bin := plainBinary(b)
	base := testutil.PortBase(b)
	const starts = 5
	var ready []float64
	for i := 0; i < starts; i++ {
		ready = append(ready, localReady(b, bin, base).Seconds())
	}
	var stand, wait []float64
	for i := 0; i < 3; i++ {
		stand = append(stand, loneLeader(b, true).Seconds())
		wait = append(wait, loneLeader(b, false).Seconds())
	}
	b.ReportMetric(medianOf(ready), "ready-s")
	b.ReportMetric(medianOf(stand), "raft-lead-s")
	b.ReportMetric(medianOf(wait), "raft-lead-waiting-s")
	reference(b, "ready-s", "none measured: raft-lead-s is the part of it a lone raft node needs to lead")
	reference(b, "raft-lead-s", "raft-lead-waiting-s: the same node waiting out raft's heartbeat timeout")
	reference(b, "raft-lead-waiting-s", "the reference itself (hashicorp/raft's own behaviour)")
	b.Logf("NOTE: %s: ready-s: exec of the plain (non-race) binary to its ready line, `alluvium local --workers 2` on a fresh home (FS master with journal fsyncs, secondary, a one-node job master on bbolt, 2 workers, proxy), median of %d starts. raft-lead-s and raft-lead-waiting-s: bootstrap to leadership of a one-voter raft group on in-memory stores and transport with raft's default timeouts, with and without raftgroup.StandIfAlone, median of 3 each", strings.TrimPrefix(b.Name(), "Benchmark"), starts)
}

func medianOf(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

// localReady starts `alluvium local`, waits for its ready line and stops it.
func localReady(b *testing.B, bin string, base int) time.Duration {
	b.Helper()
	home := filepath.Join(b.TempDir(), "home")
	cmd := exec.Command(bin, "local", "--home", home, "--workers", "2", "--port-base", fmt.Sprint(base), "--log-level", "warn")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		testutil.RemoveMemTiers(home)
	}()
	found := make(chan time.Duration, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "ready") {
				found <- time.Since(start)
				break
			}
		}
		_, _ = io.Copy(io.Discard, out)
		close(found)
	}()
	select {
	case d, ok := <-found:
		if !ok {
			b.Fatalf("alluvium local exited before ready:\n%s", stderr.String())
		}
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			b.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			b.Fatalf("alluvium local after SIGTERM: %v\n%s", err, stderr.String())
		}
		return d
	case <-time.After(2 * time.Minute):
		b.Fatalf("alluvium local not ready after 2 minutes:\n%s", stderr.String())
		return 0
	}
}

type benchFSM struct{}

func (benchFSM) Apply(*raft.Log) any                 { return nil }
func (benchFSM) Snapshot() (raft.FSMSnapshot, error) { return nil, io.EOF }
func (benchFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }

// loneLeader bootstraps a one-voter raft group with raft's default timeouts
// and returns how long the node takes to lead, with or without
// raftgroup.StandIfAlone.
func loneLeader(b *testing.B, stand bool) time.Duration {
	b.Helper()
	rc := raft.DefaultConfig()
	rc.LocalID = "lone"
	rc.LogLevel = "error"
	logs, snaps := raft.NewInmemStore(), raft.NewInmemSnapshotStore()
	_, trans := raft.NewInmemTransport("lone")
	conf := raft.Configuration{Servers: []raft.Server{{ID: "lone", Address: "lone"}}}
	if err := raft.BootstrapCluster(rc, logs, logs, snaps, trans, conf); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	r, err := raft.NewRaft(rc, benchFSM{}, logs, logs, snaps, trans)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = r.Shutdown().Error() }()
	if stand && !raftgroup.StandIfAlone(r, rc) {
		b.Fatal("StandIfAlone did nothing for a lone voter")
	}
	select {
	case <-r.LeaderCh():
	case <-time.After(time.Minute):
		b.Fatal("a lone raft voter did not lead within a minute")
	}
	return time.Since(start)
}
