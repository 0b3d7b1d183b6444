// Package datapath holds the end-to-end tests of the data path: an FS
// master and block workers run as separate alluvium processes; files go in
// and out through the CLI and the SDK, on a local UFS and on MinIO.
package datapath

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/testutil"
	"github.com/alluvium/alluvium/sdk"
	"github.com/alluvium/alluvium/ufs"
)

// ufsCase is one under storage the round trips run on.
type ufsCase struct {
	name string
	dir  string                                // Alluvium directory on it
	read func(t *testing.T, rel string) []byte // UFS bytes of dir/rel, nil when absent
}

func localCase(c *cluster) ufsCase {
	return ufsCase{name: "local", dir: "/local", read: func(t *testing.T, rel string) []byte {
		b, err := os.ReadFile(filepath.Join(c.UFSDir, "local", rel))
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			t.Fatal(err)
		}
		return b
	}}
}

func minioOptions(m *testutil.MinIO) map[string]string {
	return map[string]string{
		ufs.S3Endpoint: "http://" + m.Endpoint, ufs.S3AccessKey: m.AccessKey, ufs.S3SecretKey: m.SecretKey,
		ufs.S3Region: "us-east-1", ufs.S3PathStyle: "true",
	}
}

// minioCase starts MinIO, makes a bucket and mounts it at /s3.
func minioCase(t *testing.T, c *cluster) ufsCase {
	m := testutil.StartMinIO(t)
	mc, err := minio.New(m.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(m.AccessKey, m.SecretKey, ""), Region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := mc.MakeBucket(ctx, "datapath", minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.Mount(ctx, "/s3", "s3://datapath/mnt", sdk.MountOptions{Options: minioOptions(m)}); err != nil {
		t.Fatalf("mount MinIO: %v", err)
	}
	return ufsCase{name: "minio", dir: "/s3", read: func(t *testing.T, rel string) []byte {
		obj, err := mc.GetObject(ctx, "datapath", "mnt/"+rel, minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer obj.Close()
		b, err := io.ReadAll(obj)
		if minio.ToErrorResponse(err).Code == "NoSuchKey" {
			return nil
		}
		if err != nil {
			t.Fatal(err)
		}
		return b
	}}
}

// checkState checks what a write type promises right after the write.
func checkState(t *testing.T, c *cluster, uc ufsCase, p, rel string, wt api.WriteType, data []byte) {
	t.Helper()
	info, err := c.Client.Stat(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if info.GetLength() != int64(len(data)) || !info.GetCompleted() {
		t.Errorf("%s: length %d completed %v, want %d true", p, info.GetLength(), info.GetCompleted(), len(data))
	}
	want := map[api.WriteType]api.PersistenceState{
		api.WriteType_MUST_CACHE:    api.PersistenceState_NOT_PERSISTED,
		api.WriteType_CACHE_THROUGH: api.PersistenceState_PERSISTED,
		api.WriteType_THROUGH:       api.PersistenceState_PERSISTED,
		api.WriteType_ASYNC_THROUGH: api.PersistenceState_TO_BE_PERSISTED,
	}[wt]
	if info.GetPersistenceState() != want {
		t.Errorf("%s written %s is %s, want %s", p, wt, info.GetPersistenceState(), want)
	}
	inUFS := uc.read(t, rel)
	switch wt {
	case api.WriteType_CACHE_THROUGH, api.WriteType_THROUGH:
		if inUFS == nil || !bytes.Equal(inUFS, data) {
			t.Errorf("%s written %s: the UFS holds %d bytes, want the %d written", p, wt, len(inUFS), len(data))
		}
	default:
		if inUFS != nil {
			t.Errorf("%s written %s is in the UFS already", p, wt)
		}
	}
	if len(data) == 0 {
		return
	}
	cached := int32(100)
	if wt == api.WriteType_THROUGH {
		cached = 0
	}
	if info.GetCachedPercent() != cached {
		t.Errorf("%s written %s is %d%% cached, want %d%%", p, wt, info.GetCachedPercent(), cached)
	}
}

func TestRoundTrips(t *testing.T) {
	c := startCluster(t, testutil.ClusterOptions{Workers: 2})
	ctx := context.Background()
	cases := []ufsCase{localCase(c)}
	if testutil.MinIOBinary() != "" || os.Getenv("CI") != "" {
		cases = append(cases, minioCase(t, c))
	} else {
		t.Log("!!! MinIO is not installed: the S3 round trips DID NOT RUN")
	}
	local := t.TempDir()
	noSC, err := sdk.Dial(ctx, sdk.WithMaster(c.Master), sdk.WithShortCircuit(false), sdk.WithToken(testutil.ClusterToken()))
	if err != nil {
		t.Fatal(err)
	}
	defer noSC.Close()
	for _, uc := range cases {
		t.Run(uc.name, func(t *testing.T) {
			for _, wt := range writeTypes {
				for _, sz := range sizes {
					data := testutil.RandBytes(sz.n)
					rel := fmt.Sprintf("%s/%s", wt, sz.name)

					// CLI: put, then get, compare sha256.
					src := writeLocal(t, local, fmt.Sprintf("%s-%s-%s", uc.name, wt, sz.name), data)
					p := uc.dir + "/cli/" + rel
					c.MustCLI("fs", "put", "--write-type", wt.String(), src, p)
					checkState(t, c, uc, p, "cli/"+rel, wt, data)
					dst := src + ".out"
					c.MustCLI("fs", "get", p, dst)
					got, err := os.ReadFile(dst)
					if err != nil || testutil.SHA256(got) != testutil.SHA256(data) {
						t.Errorf("fs put/get %s: sha256 %s, want %s (%v)", p, testutil.SHA256(got), testutil.SHA256(data), err)
					}
					if wt == api.WriteType_THROUGH && sz.n > 0 {
						// The read cached it.
						testutil.Eventually(t, 10*time.Second, func() error {
							info, err := c.Client.Stat(ctx, p)
							if err != nil {
								return err
							}
							if info.GetCachedPercent() != 100 {
								return fmt.Errorf("%s is %d%% cached after a read", p, info.GetCachedPercent())
							}
							return nil
						})
					}

					// SDK: Create/Write/Close, then Read (short circuit) and
					// ReadAt (stream).
					p = uc.dir + "/sdk/" + rel
					w, err := c.Client.Create(ctx, p, sdk.CreateOptions{WriteType: wt, BlockSize: blockSize, Recursive: true})
					if err != nil {
						t.Fatalf("create %s: %v", p, err)
					}
					// Odd-sized writes cross block and chunk boundaries.
					for rest := data; len(rest) > 0; {
						n := min(len(rest), 300007)
						if _, err := w.Write(rest[:n]); err != nil {
							t.Fatalf("write %s: %v", p, err)
						}
						rest = rest[n:]
					}
					if err := w.Close(); err != nil {
						t.Fatalf("close %s: %v", p, err)
					}
					checkState(t, c, uc, p, "sdk/"+rel, wt, data)
					r, err := c.Client.Open(ctx, p, sdk.OpenOptions{})
					if err != nil {
						t.Fatal(err)
					}
					got, err = io.ReadAll(r)
					r.Close()
					if err != nil || testutil.SHA256(got) != testutil.SHA256(data) {
						t.Errorf("sdk read %s: %d bytes, sha256 match %v, err %v", p, len(got), testutil.SHA256(got) == testutil.SHA256(data), err)
					}
					r2, err := noSC.Open(ctx, p, sdk.OpenOptions{ReadType: api.ReadType_NO_CACHE})
					if err != nil {
						t.Fatal(err)
					}
					if sz.n > 2 {
						off := int64(sz.n / 3)
						buf := make([]byte, sz.n-int(off)-1)
						if n, err := r2.ReadAt(buf, off); err != nil || n != len(buf) || !bytes.Equal(buf, data[off:off+int64(len(buf))]) {
							t.Errorf("sdk ReadAt %s at %d: %d bytes, %v", p, off, n, err)
						}
					}
					got, err = io.ReadAll(r2)
					r2.Close()
					if err != nil || testutil.SHA256(got) != testutil.SHA256(data) {
						t.Errorf("sdk stream read %s: %d bytes, sha256 match %v, err %v", p, len(got), testutil.SHA256(got) == testutil.SHA256(data), err)
					}
				}
			}
		})
	}
}

func TestEvictionUnderSmallQuota(t *testing.T) {
	// One worker with 2 MiB of MEM and 3 MiB of HDD: 5 blocks in all.
	c := startCluster(t, testutil.ClusterOptions{Workers: 1, MemQuota: "2MiB", HDDQuota: "3MiB"})
	ctx := context.Background()
	local := t.TempDir()
	pinned := testutil.RandBytes(2 * blockSize)
	c.MustCLI("fs", "put", "--pin", "--write-type", "MUST_CACHE", writeLocal(t, local, "pinned", pinned), "/pinned")

	// Files that together are three times the quota, written and read back.
	files := map[string][]byte{}
	for i := 0; i < 3; i++ {
		p := fmt.Sprintf("/big%d", i)
		files[p] = testutil.RandBytes(blockSize*5/2 + i)
		c.MustCLI("fs", "put", "--write-type", "CACHE_THROUGH", writeLocal(t, local, p[1:], files[p]), p)
	}
	// One file bigger than the whole cache.
	files["/huge"] = testutil.RandBytes(7 * blockSize)
	w, err := c.Client.Create(ctx, "/huge", sdk.CreateOptions{WriteType: api.WriteType_CACHE_THROUGH})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(files["/huge"]); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("writing 7 MiB through a 5 MiB cache: %v", err)
	}
	for round := 0; round < 2; round++ {
		for p, want := range files {
			got := c.MustCLI("fs", "cat", p)
			if testutil.SHA256([]byte(got)) != testutil.SHA256(want) {
				t.Errorf("round %d: %s read back differs", round, p)
			}
		}
	}
	if n := testutil.Metric(t, c.WorkerHTTP(0), "alluvium_worker_evictions_total"); n == 0 {
		t.Errorf("no evictions counted")
	}
	// The pinned blocks never left.
	info, err := c.Client.Stat(ctx, "/pinned")
	if err != nil {
		t.Fatal(err)
	}
	if info.GetCachedPercent() != 100 {
		t.Errorf("/pinned is %d%% cached after the churn", info.GetCachedPercent())
	}
	if got := c.MustCLI("fs", "cat", "/pinned"); testutil.SHA256([]byte(got)) != testutil.SHA256(pinned) {
		t.Errorf("/pinned differs")
	}
	// Usage never exceeded the quota.
	ws, err := c.Client.Workers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, tu := range ws[0].GetTiers() {
		if tu.GetUsedBytes() > tu.GetCapacityBytes() {
			t.Errorf("tier %s uses %d of %d", tu.GetAlias(), tu.GetUsedBytes(), tu.GetCapacityBytes())
		}
	}
	// With the cache full of pinned blocks a cache-only write cannot fit: a
	// clear error, and nothing of the file stays.
	c.MustCLI("fs", "put", "--pin", "--write-type", "MUST_CACHE", writeLocal(t, local, "pinned2", testutil.RandBytes(3*blockSize)), "/pinned2")
	_, errOut, code := c.CLI("fs", "put", "--write-type", "MUST_CACHE", writeLocal(t, local, "nofit", testutil.RandBytes(blockSize)), "/nofit")
	if code != 1 || !strings.Contains(errOut, "/nofit") || !strings.Contains(strings.ToLower(errOut), "room") {
		t.Errorf("MUST_CACHE write into a cache full of pinned blocks: exit %d, %q", code, errOut)
	}
	if _, err := c.Client.Stat(ctx, "/nofit"); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("a failed write left /nofit visible: %v", err)
	}
}

func TestWorkerLostAndUFSFallback(t *testing.T) {
	c := startCluster(t, testutil.ClusterOptions{Workers: 2})
	ctx := context.Background()
	persisted := testutil.RandBytes(blockSize*5/2 + 3)
	cacheOnly := testutil.RandBytes(blockSize + 5)
	for p, o := range map[string]struct {
		data []byte
		wt   api.WriteType
	}{"/persisted": {persisted, api.WriteType_CACHE_THROUGH}, "/cacheonly": {cacheOnly, api.WriteType_MUST_CACHE}} {
		w, err := c.Client.Create(ctx, p, sdk.CreateOptions{WriteType: o.wt, Worker: c.WorkerAddr(0)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(o.data); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	loc := c.MustCLI("fs", "location", "/persisted")
	if !strings.Contains(loc, c.WorkerAddr(0)) || strings.Contains(loc, c.WorkerAddr(1)) {
		t.Fatalf("blocks not on worker 0 only:\n%s", loc)
	}
	st := c.FSStat("/persisted")
	if st.CachedPercent != 100 || len(st.Blocks) != 3 || !st.Persisted {
		t.Errorf("fs stat --output json before the loss: %+v", st)
	}
	for _, b := range st.Blocks {
		if len(b.Locations) != 1 || fmt.Sprintf("%s:%d", b.Locations[0].Host, b.Locations[0].RPCPort) != c.WorkerAddr(0) {
			t.Errorf("block %d locations %+v, want worker 0", b.ID, b.Locations)
		}
	}
	c.Workers[0].Kill() // SIGKILL
	killed := time.Now()
	testutil.Eventually(t, 15*time.Second, func() error {
		ws, err := c.Client.Workers(ctx)
		if err != nil {
			return err
		}
		for _, w := range ws {
			if fmt.Sprintf("%s:%d", w.GetAddress().GetHost(), w.GetAddress().GetRpcPort()) == c.WorkerAddr(0) {
				if w.GetState() == api.WorkerState_LOST {
					return nil
				}
				return fmt.Errorf("worker 0 is %s", w.GetState())
			}
		}
		return errors.New("worker 0 not listed")
	})
	t.Logf("worker 0 LOST %s after SIGKILL (timeout 2s)", time.Since(killed).Round(100*time.Millisecond))
	info, err := c.Client.Stat(ctx, "/persisted")
	if err != nil {
		t.Fatal(err)
	}
	if info.GetCachedPercent() != 0 {
		t.Errorf("/persisted still %d%% cached after its only worker was lost", info.GetCachedPercent())
	}
	for _, fb := range info.GetFileBlockInfos() {
		if n := len(fb.GetBlockInfo().GetLocations()); n != 0 {
			t.Errorf("block %d keeps %d locations", fb.GetBlockInfo().GetBlockId(), n)
		}
	}
	if st := c.FSStat("/persisted"); st.CachedPercent != 0 || len(st.Blocks) != 3 || len(st.Blocks[0].Locations) != 0 {
		t.Errorf("fs stat --output json after the loss: %+v", st)
	}
	// The persisted file is read from the UFS again, through worker 1,
	// which caches it.
	got := c.MustCLI("fs", "cat", "/persisted")
	if testutil.SHA256([]byte(got)) != testutil.SHA256(persisted) {
		t.Errorf("/persisted read after the loss differs")
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		out := c.MustCLI("fs", "location", "/persisted")
		if strings.Count(out, c.WorkerAddr(1)) != 3 {
			return fmt.Errorf("blocks not re-cached on worker 1:\n%s", out)
		}
		return nil
	})
	// The cache-only file is gone with the worker: a clear error.
	_, errOut, code := c.CLI("fs", "cat", "/cacheonly")
	if code != 1 || !strings.Contains(errOut, "/cacheonly") || !strings.Contains(errOut, "not persisted") {
		t.Errorf("cat of a lost cache-only file: exit %d, %q", code, errOut)
	}
	// The restarted worker re-registers; its blocks come back.
	c.StartWorker(0)
	testutil.Eventually(t, 15*time.Second, func() error {
		out := c.MustCLI("fs", "location", "/cacheonly")
		if !strings.Contains(out, c.WorkerAddr(0)) {
			return fmt.Errorf("cache-only blocks not reported again:\n%s", out)
		}
		return nil
	})
	if got := c.MustCLI("fs", "cat", "/cacheonly"); testutil.SHA256([]byte(got)) != testutil.SHA256(cacheOnly) {
		t.Errorf("/cacheonly after the worker restarted differs")
	}
}

func TestBadInput(t *testing.T) {
	c := startCluster(t, testutil.ClusterOptions{Workers: 1})
	ctx := context.Background()
	local := t.TempDir()
	data := testutil.RandBytes(blockSize + 10)
	c.MustCLI("fs", "put", writeLocal(t, local, "f", data), "/f")

	t.Run("ReadPastEOF", func(t *testing.T) {
		r, err := c.Client.Open(ctx, "/f", sdk.OpenOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if _, err := r.Seek(int64(len(data)), io.SeekStart); err != nil {
			t.Fatal(err)
		}
		if n, err := r.Read(make([]byte, 10)); n != 0 || err != io.EOF {
			t.Errorf("Read at the end = %d, %v; want 0, io.EOF", n, err)
		}
		if _, err := r.Seek(100, io.SeekEnd); err != nil {
			t.Fatal(err)
		}
		if n, err := r.Read(make([]byte, 10)); n != 0 || err != io.EOF {
			t.Errorf("Read past the end = %d, %v; want 0, io.EOF", n, err)
		}
		buf := make([]byte, 20)
		n, err := r.ReadAt(buf, int64(len(data))-5)
		if n != 5 || err != io.EOF || !bytes.Equal(buf[:5], data[len(data)-5:]) {
			t.Errorf("ReadAt across the end = %d, %v; want 5, io.EOF", n, err)
		}
		_, err = r.ReadAt(buf, int64(len(data))+1)
		if !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), fmt.Sprint(len(data))) || !strings.Contains(err.Error(), "/f") {
			t.Errorf("ReadAt beyond the length: %v; want ErrInvalidArgument naming /f and its length", err)
		}
	})

	t.Run("WriteToExistingPath", func(t *testing.T) {
		_, errOut, code := c.CLI("fs", "put", writeLocal(t, local, "g", []byte("other")), "/f")
		if code != 1 || !strings.Contains(errOut, "/f") || !strings.Contains(errOut, "exists") {
			t.Errorf("put onto an existing file: exit %d, %q", code, errOut)
		}
		_, err := c.Client.Create(ctx, "/f", sdk.CreateOptions{})
		if !errors.Is(err, sdk.ErrAlreadyExists) {
			t.Errorf("Create of an existing file: %v", err)
		}
		if got := c.MustCLI("fs", "cat", "/f"); testutil.SHA256([]byte(got)) != testutil.SHA256(data) {
			t.Errorf("a refused write changed /f")
		}
		// With --overwrite it is replaced.
		c.MustCLI("fs", "put", "-f", writeLocal(t, local, "h", []byte("replaced")), "/f")
		if got := c.MustCLI("fs", "cat", "/f"); got != "replaced" {
			t.Errorf("after put -f /f holds %q", got)
		}
	})

	t.Run("MountOverNonEmptyDir", func(t *testing.T) {
		c.MustCLI("fs", "put", writeLocal(t, local, "x", []byte("x")), "/dir/x")
		other := t.TempDir()
		_, err := c.Client.Mount(ctx, "/dir", "file://"+other, sdk.MountOptions{})
		if err == nil || !strings.Contains(err.Error(), "/dir") {
			t.Errorf("mount over a non-empty dir: %v", err)
		}
		if got := c.MustCLI("fs", "cat", "/dir/x"); got != "x" {
			t.Errorf("/dir/x after the refused mount: %q", got)
		}
	})

	t.Run("UnreachableS3", func(t *testing.T) {
		closed := fmt.Sprintf("127.0.0.1:%d", c.PortBase+199)
		start := time.Now()
		_, err := c.Client.Mount(ctx, "/bads3", "s3://bucket/p", sdk.MountOptions{Options: map[string]string{
			ufs.S3Endpoint: "http://" + closed, ufs.S3AccessKey: "k", ufs.S3SecretKey: "s", ufs.S3Region: "us-east-1", ufs.S3ConnectTimeout: "2s",
		}})
		if err == nil || !strings.Contains(err.Error(), closed) || !strings.Contains(err.Error(), "unreachable") {
			t.Errorf("mount of an unreachable S3 endpoint: %v", err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("the unreachable endpoint took %s to fail", d)
		}
		if _, err := c.Client.Stat(ctx, "/bads3"); !errors.Is(err, sdk.ErrNotFound) {
			t.Errorf("a failed mount left /bads3: %v", err)
		}
		ms, err := c.Client.Mounts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			if m.GetAlluviumPath() == "/bads3" {
				t.Errorf("a failed mount is in the mount table")
			}
		}
	})

	t.Run("FailedWriteLeavesNothing", func(t *testing.T) {
		for _, wt := range writeTypes {
			p := "/aborted-" + wt.String()
			w, err := c.Client.Create(ctx, p, sdk.CreateOptions{WriteType: wt})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(testutil.RandBytes(blockSize*3/2 + 1)); err != nil {
				t.Fatal(err)
			}
			w.Abort()
			if _, err := c.Client.Stat(ctx, p); !errors.Is(err, sdk.ErrNotFound) {
				t.Errorf("an aborted %s write left %s: %v", wt, p, err)
			}
			if _, err := os.Stat(filepath.Join(c.UFSDir, p)); err == nil {
				t.Errorf("an aborted %s write left %s in the UFS", wt, p)
			}
		}
		testutil.Eventually(t, 10*time.Second, func() error {
			var tmp []string
			_ = filepath.WalkDir(c.UFSDir, func(p string, d os.DirEntry, err error) error {
				if err == nil && ufs.IsTemp(d.Name()) {
					tmp = append(tmp, p)
				}
				return nil
			})
			if len(tmp) > 0 {
				return fmt.Errorf("temp files left in the UFS: %v", tmp)
			}
			return nil
		})
		// The workers hold only /f's blocks (and /dir/x's): nothing of the
		// aborted files.
		testutil.Eventually(t, 10*time.Second, func() error {
			ws, err := c.Client.Workers(ctx)
			if err != nil {
				return err
			}
			if n := ws[0].GetBlockCount(); n != 2 {
				return fmt.Errorf("worker holds %d blocks, want 2", n)
			}
			return nil
		})
		// A missing local source: exit 1, nothing created.
		_, errOut, code := c.CLI("fs", "put", filepath.Join(local, "missing"), "/missing")
		if code != 1 || !strings.Contains(errOut, "missing") {
			t.Errorf("put of a missing local file: exit %d, %q", code, errOut)
		}
		if _, err := c.Client.Stat(ctx, "/missing"); !errors.Is(err, sdk.ErrNotFound) {
			t.Errorf("/missing exists: %v", err)
		}
		// Bad usage: exit 2.
		if _, errOut, code := c.CLI("fs", "put", "--write-type", "SOMETIMES", "a", "/b"); code != 2 || !strings.Contains(errOut, "--write-type") {
			t.Errorf("bad --write-type: exit %d, %q", code, errOut)
		}
		if _, errOut, code := c.CLI("fs", "cat", "/dir"); code != 1 || !strings.Contains(errOut, "directory") {
			t.Errorf("cat of a directory: exit %d, %q", code, errOut)
		}
	})
}
