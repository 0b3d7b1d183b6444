package plans

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/alluvium/alluvium/internal/testutil"
)

// TestCopyBandwidth: a 10 s copy, 100 MiB with --bandwidth 10MiB on two
// workers (the 500 MiB at 50MiB is beyond what a -race cluster on
// a loaded 2-core machine moves at all, ~20 MiB/s; docs/BENCHMARKS.md has
// that run on the plain binary). The budget is the job's, split over the
// workers running its tasks and enforced on the bytes inside the block
// workers: sampled about every second from their
// alluvium_worker_throttled_bytes_total, no second carries more than 1.5×
// the limit, the whole job takes no less than its bytes at 1.1× the limit
// (±10%), every byte is counted once (the parts a big file's copy fetches
// are not counted again when it assembles them), and the copy is
// byte-exact. A loaded machine can only be slower than the limit, so only
// the upper side is checked (how close to the limit a quiet machine gets
// is BenchmarkCopyBandwidth's question) and the rate achieved is logged.
func TestCopyBandwidth(t *testing.T) {
	if testing.Short() {
		t.Skip("a 10 s rate test")
	}
	c := testutil.StartCluster(t, testutil.ClusterOptions{Workers: 2, JobMasters: 1, ClientTimeout: 30 * time.Second})
	const (
		limit = 10 << 20
		big   = 4 * blockSize // copied in parts, fetched in parallel, then assembled
		small = blockSize / 2 // copied together
		nBig  = 20
		total = nBig*big + 40*small
	)
	// Random bytes, each file its own (a counter in its first bytes).
	buf := testutil.RandBytes(big)
	seq := uint64(0)
	write := func(rel string, n int) {
		seq++
		binary.LittleEndian.PutUint64(buf, seq)
		testutil.WriteFile(t, filepath.Join(c.UFSDir, "bw", rel), buf[:n])
	}
	for i := range nBig {
		write(fmt.Sprintf("big/f%03d", i), big)
	}
	for i := range 40 {
		write(fmt.Sprintf("small/s%02d", i), small)
	}

	throttled := func() float64 {
		var sum float64
		for i := range 2 {
			m, err := testutil.Metrics(c.WorkerHTTP(i))
			if err != nil {
				t.Errorf("metrics of worker %d: %v", i, err)
				return 0
			}
			sum += m["alluvium_worker_throttled_bytes_total"]
		}
		return sum
	}
	// A sample's counters were read at some moment between start and end
	// (a loaded machine may stall the reads): the bytes between two samples
	// flowed within end of the later minus start of the earlier, so their
	// rate over that span is never more than the real one.
	type sample struct {
		start, end time.Time
		bytes      float64
	}
	var (
		mu      sync.Mutex
		samples []sample
	)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			s := sample{start: time.Now()}
			s.bytes = throttled()
			s.end = time.Now()
			mu.Lock()
			samples = append(samples, s)
			mu.Unlock()
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	j := c.MustJob("job", "submit", "copy", "/bw", "/bwc", "--bandwidth", "10MiB")
	close(stop)
	<-done
	end := sample{start: time.Now()}
	end.bytes = throttled()
	end.end = time.Now()
	samples = append(samples, end)

	took := time.Duration(j.FinishedMs-j.CreatedMs) * time.Millisecond
	rate := float64(total) / took.Seconds()
	t.Logf("copied %d MiB in %s: %.1f MiB/s at a limit of %d MiB/s", total>>20, took, rate/(1<<20), limit>>20)
	if j.BytesDone != total || j.TasksFailed != 0 {
		t.Fatalf("copy job %+v: want %d bytes, no failure", j, total)
	}
	if rate > 1.1*limit {
		t.Errorf("the job ran at %.1f MiB/s, more than 1.1× its limit", rate/(1<<20))
	}
	if got := end.bytes; got < total || got > total+total/100 {
		t.Errorf("%.0f bytes drew from the budget, want %d (each once)", got, total)
	}
	for i := 1; i < len(samples); i++ {
		d := samples[i].end.Sub(samples[i-1].start)
		if d < 500*time.Millisecond {
			continue // the last, short interval
		}
		if r := (samples[i].bytes - samples[i-1].bytes) / d.Seconds(); r > 1.5*limit {
			t.Errorf("second %d: %.1f MiB/s, more than 1.5× the limit", i, r/(1<<20))
		}
	}

	// Byte-exact.
	sum := func(p string) [32]byte {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			t.Fatal(err)
		}
		return [32]byte(h.Sum(nil))
	}
	err := filepath.WalkDir(filepath.Join(c.UFSDir, "bw"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(filepath.Join(c.UFSDir, "bw"), p)
		if sum(p) != sum(filepath.Join(c.UFSDir, "bwc", rel)) {
			t.Errorf("copy of %s differs", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
