package datapath

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/testutil"
	"github.com/alluvium/alluvium/sdk"
)

// shortCircuitBytes reads worker i's count of bytes leased to local
// clients (short circuit) from its /metrics.
func shortCircuitBytes(t *testing.T, c *cluster, i int) int64 {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+c.WorkerHTTP(i)+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testutil.ClusterToken())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("worker %d /metrics: %s", i, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), `alluvium_worker_bytes_read_total{source="shortcircuit"} `); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric value %q: %v", v, err)
			}
			return int64(f)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return 0
}

// A client's defaults apply to every call that does not choose: the write
// type and block size of Create, the read type of Open, and which hosts
// count as this machine (where block files may be read directly).
func TestClientDefaults(t *testing.T) {
	c := startCluster(t, testutil.ClusterOptions{Workers: 1})
	ctx := context.Background()
	const bs = 256 << 10
	d, err := sdk.Dial(ctx, sdk.WithMaster(c.Master), sdk.WithToken(testutil.ClusterToken()),
		sdk.WithWriteType(api.WriteType_THROUGH), sdk.WithBlockSize(bs),
		sdk.WithReadType(api.ReadType_NO_CACHE), sdk.WithLocalHosts("elsewhere.invalid"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()

	data := testutil.RandBytes(3*bs + 7)
	w, err := d.Create(ctx, "/defaults/f", sdk.CreateOptions{Recursive: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	read := func(cl *sdk.Client) {
		t.Helper()
		r, err := cl.Open(ctx, "/defaults/f", sdk.OpenOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		got, err := io.ReadAll(r)
		if err != nil || testutil.SHA256(got) != testutil.SHA256(data) {
			t.Fatalf("read back: %d bytes, %v", len(got), err)
		}
	}
	stat := func() *sdk.FileInfo {
		t.Helper()
		info, err := d.Stat(ctx, "/defaults/f")
		if err != nil {
			t.Fatal(err)
		}
		return info
	}
	// WithWriteType(THROUGH), WithBlockSize: in the UFS only, in blocks of bs.
	if info := stat(); info.GetPersistenceState() != api.PersistenceState_PERSISTED || info.GetCachedPercent() != 0 || info.GetBlockSizeBytes() != bs {
		t.Fatalf("created with the client's defaults: %s, %d%% cached, block size %d; want PERSISTED, 0%%, %d",
			info.GetPersistenceState(), info.GetCachedPercent(), info.GetBlockSizeBytes(), bs)
	}
	// WithReadType(NO_CACHE): reading leaves nothing cached.
	read(d)
	if info := stat(); info.GetCachedPercent() != 0 {
		t.Fatalf("after a read with the client's NO_CACHE default: %d%% cached", info.GetCachedPercent())
	}
	// A client with the default read type (CACHE) caches what it reads.
	read(c.Client)
	testutil.Eventually(t, 10*time.Second, func() error {
		if p := stat().GetCachedPercent(); p != 100 {
			return fmt.Errorf("%d%% cached after a CACHE read", p)
		}
		return nil
	})
	// WithLocalHosts: the worker on 127.0.0.1 is not "this machine" for d,
	// so its reads stream over gRPC; c.Client's read the block files.
	before := shortCircuitBytes(t, c, 0)
	read(d)
	if after := shortCircuitBytes(t, c, 0); after != before {
		t.Fatalf("a client whose local hosts exclude the worker read %d bytes by short circuit", after-before)
	}
	read(c.Client)
	if after := shortCircuitBytes(t, c, 0); after < before+int64(len(data)) {
		t.Fatalf("the default client read %d bytes by short circuit, want the whole %d", after-before, len(data))
	}
}
