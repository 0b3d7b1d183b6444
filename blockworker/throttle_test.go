package blockworker

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc/metadata"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/rpc"
)

// incoming is the server side of a call from the cluster naming a budget.
func incoming(key string, bps int64) context.Context {
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs(rpc.RateHeader, key+" "+strconv.FormatInt(bps, 10)))
	return rpc.WithIdentity(ctx, rpc.Identity{User: "root", System: true})
}

// One budget per key, at the rate of the latest call naming it; none for
// a call naming none; a cancelled wait ends at once.
func TestThrottlesPerKey(t *testing.T) {
	var flowed int
	ts := newThrottles(func(n int) { flowed += n })
	if th := ts.of(context.Background()); th != nil {
		t.Fatal("a call naming no budget got one")
	}
	a := ts.of(incoming("job-1", 1000))
	if a == nil || a.lim.Limit() != 1000 {
		t.Fatalf("budget %+v, want 1000 B/s", a)
	}
	if b := ts.of(incoming("job-1", 4000)); b != a || a.lim.Limit() != 4000 || a.lim.Burst() != throttleBurst(4000) {
		t.Fatalf("the same job at a new rate: %p (%v) vs %p", b, a.lim.Limit(), a)
	}
	if c := ts.of(incoming("job-2", 4000)); c == a {
		t.Fatal("two jobs share a budget")
	}
	// The bucket starts full: its burst flows at once, then a cancelled
	// wait ends with the context's error.
	ctx, cancel := context.WithCancel(context.Background())
	if err := a.take(ctx, a.lim.Burst()); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := a.take(ctx, 10*a.lim.Burst()); err == nil {
		t.Fatal("a cancelled wait went on")
	}
	if flowed != throttleBurst(4000) {
		t.Fatalf("%d bytes counted as flowed, want %d", flowed, throttleBurst(4000))
	}
	var nilTh *throttle
	if err := nilTh.take(ctx, 1<<30); err != nil {
		t.Fatal("no budget waited")
	}
}

// The bytes of fills (CacheBlocks), copies (CopyBlockFrom) and UFS writes
// (WriteUfsFileFrom) draw from the budget a call names as they flow: at
// 2 MiB/s, 2 MiB of fills take at least ~0.9 s, and 3 MiB of copy and
// write running at once (one budget) at least ~1.4 s; every byte is
// counted in alluvium_worker_throttled_bytes_total, and a call without a
// budget draws nothing. (Lower bounds only: a loaded machine is slower,
// never faster.)
func TestBandwidthOnTheBytes(t *testing.T) {
	m, addr := startFakeMaster(t)
	w := startWorker(t, t.TempDir(), addr)
	dir, _ := setupUFS(t, m, w, 0)
	const rate = 2 * mib
	data := randBytes(3 * mib)
	if err := os.WriteFile(filepath.Join(dir, "src"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	uri := "file://" + dir + "/src"
	ctx := rpc.WithRate(context.Background(), "job-9", func() int64 { return rate })
	burst := float64(throttleBurst(rate))
	atLeast := func(what string, start time.Time, n int) {
		t.Helper()
		min := time.Duration((float64(n) - burst) / rate * float64(time.Second) * 0.95)
		if took := time.Since(start); took < min {
			t.Errorf("%s: %d bytes in %s at %d B/s, want at least %s", what, n, took, rate, min)
		}
	}
	start := time.Now()
	resp, err := w.client.CacheBlocks(ctx, &api.CacheBlocksRequest{Blocks: []*api.CacheBlockRequest{
		{BlockId: 1, Source: &api.UfsBlockSource{MountId: 1, UfsPath: uri, Offset: 0, Length: mib}},
		{BlockId: 2, Source: &api.UfsBlockSource{MountId: 1, UfsPath: uri, Offset: mib, Length: mib}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range resp.GetResults() {
		if r.GetError() != "" {
			t.Fatal(r.GetError())
		}
	}
	atLeast("fills", start, 2*mib)
	// Both draw from one budget, while a call without one goes free.
	start = time.Now()
	var wg sync.WaitGroup
	errs := make([]error, 3)
	wg.Add(2)
	go func() {
		defer wg.Done()
		_, errs[0] = w.client.CopyBlockFrom(ctx, &api.CopyBlockFromRequest{BlockId: 3, SourceBlockId: 1, Length: mib})
	}()
	go func() {
		defer wg.Done()
		_, errs[1] = w.client.WriteUfsFileFrom(ctx, &api.WriteUfsFileFromRequest{
			Dest:    &api.WriteUfsFileHeader{MountId: 1, UfsPath: "file://" + dir + "/dst", Overwrite: true},
			Sources: []*api.BlockSource{{BlockId: 1, Length: mib}, {BlockId: 2, Length: mib}},
		})
	}()
	_, errs[2] = w.client.CacheBlock(context.Background(), &api.CacheBlockRequest{BlockId: 4, Source: &api.UfsBlockSource{MountId: 1, UfsPath: uri, Offset: 2 * mib, Length: mib}})
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	atLeast("copy and write", start, 3*mib)
	if got, err := os.ReadFile(filepath.Join(dir, "dst")); err != nil || !bytes.Equal(got, data[:2*mib]) {
		t.Fatalf("written file: %v", err)
	}
	var got dto.Metric
	if err := w.metrics.bytesThrottled.Write(&got); err != nil {
		t.Fatal(err)
	}
	if n := got.GetCounter().GetValue(); n != 5*mib {
		t.Fatalf("throttled bytes %v, want %d (not the unthrottled fill)", n, 5*mib)
	}
}
