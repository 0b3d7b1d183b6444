package bench

import (
	"context"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/blockworker"
	"github.com/alluvium/alluvium/fsmaster"
	"github.com/alluvium/alluvium/internal/config"
	"github.com/alluvium/alluvium/sdk"
)

// readCluster is an in-process FS master and one block worker whose MEM
// tier is on tmpfs (/dev/shm) when the machine has one.
type readCluster struct {
	master *fsmaster.Master
	worker *blockworker.Worker
	memDir string
}

func startReadCluster(b *testing.B, memQuota string) *readCluster {
	b.Helper()
	home := b.TempDir()
	memDir := filepath.Join(home, "mem")
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		d, err := os.MkdirTemp("/dev/shm", "alluvium-bench-")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(d) })
		memDir = d
	}
	l := config.NewLoader()
	l.Set("home", home)
	l.Set("log.level", "warn")
	l.Set("fsmaster.rpc-port", 0)
	l.Set("fsmaster.http-port", 0)
	mcfg, err := l.Load()
	if err != nil {
		b.Fatal(err)
	}
	m, err := fsmaster.New(mcfg, zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = m.Stop(context.Background()) })

	wl := config.NewLoader()
	wl.Set("home", home)
	wl.Set("worker.rpc-port", 0)
	wl.Set("worker.http-port", 0)
	wl.Set("worker.role", "block")
	wl.Set("worker.master", m.RPCAddr())
	wl.Set("worker.tiers", []map[string]any{{"alias": "MEM", "path": memDir, "quota": memQuota}})
	wcfg, err := wl.Load()
	if err != nil {
		b.Fatal(err)
	}
	w, err := blockworker.New(wcfg, zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	if err := w.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = w.Stop(context.Background()) })
	if err := w.WaitRegistered(context.Background()); err != nil {
		b.Fatal(err)
	}
	return &readCluster{master: m, worker: w, memDir: memDir}
}

// BenchmarkBlockRead reads a cached 1 GiB file (16 blocks of 64 MiB in the
// MEM tier) sequentially through the SDK, by the worker's gRPC stream and by
// a short-circuit read of the block files, and compares both with `cat` of
// the same block files to /dev/null in the same run. ratio-stream/cat is
// the goal of the read path (>= 0.8).
func BenchmarkBlockRead(b *testing.B) {
	const size = 1 << 30
	const blockSize = 64 << 20
	ctx := context.Background()
	rc := startReadCluster(b, "1536MiB")
	master := rc.master.RPCAddr()
	stream, err := sdk.Dial(ctx, sdk.WithMaster(master), sdk.WithShortCircuit(false))
	if err != nil {
		b.Fatal(err)
	}
	defer stream.Close()
	short, err := sdk.Dial(ctx, sdk.WithMaster(master))
	if err != nil {
		b.Fatal(err)
	}
	defer short.Close()
	tcp, err := sdk.Dial(ctx, sdk.WithMaster(master), sdk.WithShortCircuit(false), sdk.WithDomainSocket(false))
	if err != nil {
		b.Fatal(err)
	}
	defer tcp.Close()

	// Write the file once: 1 MiB of random bytes, repeated.
	chunk := make([]byte, 1<<20)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range chunk {
		chunk[i] = byte(r.Uint32())
	}
	writeStart := time.Now()
	w, err := stream.Create(ctx, "/bench/1g", sdk.CreateOptions{WriteType: api.WriteType_MUST_CACHE, BlockSize: blockSize, Recursive: true})
	if err != nil {
		b.Fatal(err)
	}
	for n := 0; n < size; n += len(chunk) {
		if _, err := w.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	tWrite := time.Since(writeStart)
	// The write's reference: the same bytes into a plain file in the same
	// tier directory, in the same 1 MiB writes, closed without fsync.
	fileStart := time.Now()
	plain, err := os.Create(filepath.Join(rc.memDir, "reference-write"))
	if err != nil {
		b.Fatal(err)
	}
	for n := 0; n < size; n += len(chunk) {
		if _, err := plain.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	if err := plain.Close(); err != nil {
		b.Fatal(err)
	}
	tFileWrite := time.Since(fileStart)
	if err := os.Remove(plain.Name()); err != nil {
		b.Fatal(err)
	}
	info := w.Info()
	if info.GetCachedPercent() != 100 {
		b.Fatalf("the file is %d%% cached", info.GetCachedPercent())
	}
	var files []string
	for i := int64(0); i < size/blockSize; i++ {
		files = append(files, filepath.Join(rc.memDir, strconv.FormatInt(api.BlockID(info.GetFileId(), i), 10)))
	}

	mbps := func(d time.Duration) float64 { return float64(size) / 1e6 / d.Seconds() }
	catOnce := func() time.Duration {
		devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			b.Fatal(err)
		}
		defer devnull.Close()
		cmd := exec.Command("cat", files...)
		cmd.Stdout = devnull
		cmd.Stderr = os.Stderr
		start := time.Now()
		if err := cmd.Run(); err != nil {
			b.Fatalf("cat: %v", err)
		}
		return time.Since(start)
	}
	readOnce := func(c *sdk.Client) time.Duration {
		start := time.Now()
		f, err := c.Open(ctx, "/bench/1g", sdk.OpenOptions{})
		if err != nil {
			b.Fatal(err)
		}
		buf := make([]byte, 1<<20)
		n, err := io.CopyBuffer(io.Discard, f, buf)
		f.Close()
		if err != nil || n != size {
			b.Fatalf("read %d bytes: %v", n, err)
		}
		return time.Since(start)
	}
	catOnce() // warm the page cache on a disk tier
	readOnce(stream)

	readOnce(tcp)

	var tCat, tStream, tTCP, tShort time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tCat += catOnce()
		tStream += readOnce(stream)
		tTCP += readOnce(tcp)
		tShort += readOnce(short)
	}
	b.StopTimer()
	n := time.Duration(b.N)
	b.ReportMetric(mbps(tWrite), "MB/s-write")
	b.ReportMetric(mbps(tFileWrite), "MB/s-file-write")
	b.ReportMetric(float64(tFileWrite)/float64(tWrite), "ratio-write/file-write")
	reference(b, "*", "cat of the same block files to /dev/null")
	reference(b, "MB/s-cat", "the reference itself (cat of the block files)")
	reference(b, "MB/s-write", "MB/s-file-write: the same bytes written to a file in the same tier dir")
	reference(b, "MB/s-file-write", "the reference itself (a plain file write, no fsync)")
	reference(b, "ratio-write/file-write", "MB/s-file-write: the same bytes written to a file in the same tier dir")
	b.ReportMetric(mbps(tCat/n), "MB/s-cat")
	b.ReportMetric(mbps(tStream/n), "MB/s-stream")
	b.ReportMetric(mbps(tTCP/n), "MB/s-stream-tcp")
	b.ReportMetric(mbps(tShort/n), "MB/s-shortcircuit")
	b.ReportMetric(float64(tCat)/float64(tStream), "ratio-stream/cat")
	b.ReportMetric(float64(tCat)/float64(tTCP), "ratio-stream-tcp/cat")
	b.ReportMetric(float64(tCat)/float64(tShort), "ratio-shortcircuit/cat")
	b.Logf("NOTE: BlockRead: 1 GiB in 16 blocks of 64 MiB in a MEM tier on tmpfs, read with io.Copy through the SDK; worker and client in one process. stream: gRPC over the worker's unix socket (what a client on the worker's host gets with short circuit off or on a miss); stream-tcp: over loopback TCP (a remote client's path); shortcircuit: the block files read directly under a lease; write: the file written once, MUST_CACHE, over the unix socket (blocks to a temp file linked into place, no fsync; create and complete journaled and fsynced) against file-write, the same bytes written to a plain file in the tier dir and closed without fsync. No side verifies a checksum")
}
