package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/testutil"
	"github.com/alluvium/alluvium/sdk"
)

// quotaWrite is one file a writer tried.
type quotaWrite struct {
	path   string
	data   []byte
	wt     api.WriteType
	pinned bool
	err    error // nil: acknowledged
}

// TestTierFullDuringWrites: one worker with 2 MiB of MEM and 3 MiB of
// HDD; eight clients write 64 files (about 60 MiB: twelve times the
// cache) at once, CACHE_THROUGH, MUST_CACHE and pinned MUST_CACHE mixed.
// Every write either succeeds or fails cleanly with ResourceExhausted
// naming the file (and leaves no file behind); tier usage never passes its
// quota; every acknowledged file reads back byte-exact (an unpinned
// MUST_CACHE file may instead be reported lost — evicted — but never
// returns other bytes); every block file on the worker's disk is
// byte-exact, and no block of a failed write stays.
func TestTierFullDuringWrites(t *testing.T) {
	c := startCluster(t, testutil.ClusterOptions{Workers: 1, MemQuota: "2MiB", HDDQuota: "3MiB"})
	ctx := context.Background()

	// Sample the tiers while the writes run.
	var over atomic.Value
	stop := make(chan struct{})
	sampled := make(chan int)
	go func() {
		n := 0
		defer func() { sampled <- n }()
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			m, err := testutil.Metrics(c.WorkerHTTP(0))
			if err != nil {
				continue
			}
			n++
			for _, tier := range []string{"MEM", "HDD"} {
				used := m[fmt.Sprintf(`alluvium_worker_tier_used_bytes{tier="%s"}`, tier)]
				capacity := m[fmt.Sprintf(`alluvium_worker_tier_capacity_bytes{tier="%s"}`, tier)]
				if capacity <= 0 || used > capacity {
					over.Store(fmt.Sprintf("tier %s: %v used of %v", tier, used, capacity))
				}
			}
		}
	}()

	var (
		mu     sync.Mutex
		writes []*quotaWrite
		wg     sync.WaitGroup
	)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 8 {
				q := &quotaWrite{path: fmt.Sprintf("/q/w%d/f%d", w, i), wt: api.WriteType_CACHE_THROUGH}
				switch {
				case w == 0 && i < 2:
					q.wt, q.pinned = api.WriteType_MUST_CACHE, true
					q.data = testutil.RandBytes(blockSize / 2)
				case (w+i)%3 == 0:
					q.wt = api.WriteType_MUST_CACHE
					q.data = testutil.RandBytes(blockSize/3 + 1000*i)
				default:
					q.data = testutil.RandBytes(blockSize/2 + (w*i*97_000)%(2*blockSize))
				}
				q.err = writeAll(ctx, c.Client, q)
				mu.Lock()
				writes = append(writes, q)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(stop)
	if n := <-sampled; n < 5 {
		t.Errorf("only %d tier samples during the writes", n)
	}
	if o := over.Load(); o != nil {
		t.Errorf("a tier went over its quota: %v", o)
	}

	acked, exhausted := 0, 0
	for _, q := range writes {
		if q.err == nil {
			acked++
			continue
		}
		if !errors.Is(q.err, sdk.ErrResourceExhausted) || !strings.Contains(q.err.Error(), q.path) {
			t.Errorf("%s (%s): unclean failure %v; want ResourceExhausted naming the file", q.path, q.wt, q.err)
		}
		exhausted++
		if exhausted <= 3 {
			t.Logf("refused: %s (%s): %v", q.path, q.wt, q.err)
		}
		if _, err := c.Client.Stat(ctx, q.path); !errors.Is(err, sdk.ErrNotFound) {
			t.Errorf("failed write of %s left it visible: %v", q.path, err)
		}
	}
	t.Logf("%d writes acknowledged, %d refused with ResourceExhausted", acked, exhausted)
	// Refusals are expected while other writes hold reservations (eight
	// writers can reserve 8 MiB of a 5 MiB cache), but evicting finished
	// blocks must let most writes through.
	if acked < len(writes)/4 {
		t.Fatalf("only %d of %d writes succeeded: eviction is not making room", acked, len(writes))
	}
	if m := testutil.Metric(t, c.WorkerHTTP(0), "alluvium_worker_evictions_total"); m <= 0 {
		t.Errorf("no eviction although the writes were twelve times the cache")
	}

	// Read every acknowledged file back.
	content := map[int64][]byte{}
	lost := 0
	for _, q := range writes {
		if q.err != nil {
			continue
		}
		fi, err := c.Client.Stat(ctx, q.path)
		if err != nil {
			t.Errorf("stat of acknowledged %s: %v", q.path, err)
			continue
		}
		content[fi.FileId] = q.data
		if fi.Length != int64(len(q.data)) {
			t.Errorf("%s: length %d, wrote %d", q.path, fi.Length, len(q.data))
		}
		got, err := readAll(ctx, c.Client, q.path)
		switch {
		case err == nil && bytes.Equal(got, q.data):
		case err == nil:
			t.Errorf("%s (%s): read back %d bytes that differ from the %d written", q.path, q.wt, len(got), len(q.data))
		case q.wt == api.WriteType_MUST_CACHE && !q.pinned && (errors.Is(err, sdk.ErrNotFound) || errors.Is(err, sdk.ErrUnavailable) || errors.Is(err, sdk.ErrFailedPrecondition)):
			lost++ // evicted cache-only data: reported, not corrupt
		default:
			t.Errorf("%s (%s, pinned %v): %v", q.path, q.wt, q.pinned, err)
		}
		if q.pinned && fi.CachedPercent != 100 {
			t.Errorf("pinned %s is %d%% cached", q.path, fi.CachedPercent)
		}
	}
	if lost > 0 {
		t.Logf("%d unpinned MUST_CACHE files were evicted (reported lost, as they must be)", lost)
	}

	// The worker's disk: every block byte-exact, none from a failed write,
	// no temp block left, and usage equal to the block files.
	var onDisk int64
	for _, tier := range []string{"mem", "hdd"} {
		dir := filepath.Join(c.WorkerDir(0), tier)
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if e.Type().IsRegular() {
				fi, _ := e.Info()
				onDisk += fi.Size()
			}
		}
		if tmp, _ := os.ReadDir(filepath.Join(dir, ".tmp")); len(tmp) != 0 {
			t.Errorf("tier %s keeps %d temp blocks after the writes", tier, len(tmp))
		}
	}
	orphans := 0
	n := c.checkDiskBlocks(0, func(id int64) []byte {
		if b, ok := content[id]; ok {
			return b
		}
		orphans++
		return nil
	})
	if orphans > 0 {
		t.Errorf("%d block files belong to no acknowledged file", orphans)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		m, err := testutil.Metrics(c.WorkerHTTP(0))
		if err != nil {
			return err
		}
		used := m[`alluvium_worker_tier_used_bytes{tier="MEM"}`] + m[`alluvium_worker_tier_used_bytes{tier="HDD"}`]
		if int64(used) != onDisk {
			return fmt.Errorf("worker reports %v bytes used, its tier dirs hold %d", used, onDisk)
		}
		return nil
	})
	t.Logf("%d block files (%d bytes) on disk, all byte-exact", n, onDisk)
}

func writeAll(ctx context.Context, c *sdk.Client, q *quotaWrite) error {
	w, err := c.Create(ctx, q.path, sdk.CreateOptions{WriteType: q.wt, Pinned: q.pinned, Recursive: true})
	if err != nil {
		return err
	}
	if _, err := w.Write(q.data); err != nil {
		w.Abort()
		return err
	}
	return w.Close()
}

func readAll(ctx context.Context, c *sdk.Client, p string) ([]byte, error) {
	r, err := c.Open(ctx, p, sdk.OpenOptions{})
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}
