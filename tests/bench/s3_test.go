package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"go.uber.org/zap"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/config"
	"github.com/alluvium/alluvium/internal/testutil"
	"github.com/alluvium/alluvium/proxy"
	"github.com/alluvium/alluvium/sdk"
)

const (
	s3BenchKey    = "bench"
	s3BenchSecret = "bench-secret"
)

// startGateway runs the proxy in this process against rc, signing with
// one access key (so every request pays for SigV4 as in production).
// BENCH_S3_WRITE_TYPE sets the gateway's write type (default: the FS
// master's, CACHE_THROUGH).
func startGateway(b *testing.B, rc *readCluster) *proxy.Proxy {
	b.Helper()
	l := config.NewLoader()
	l.Set("home", b.TempDir())
	l.Set("log.level", "warn")
	l.Set("client.master", rc.master.RPCAddr())
	l.Set("proxy.rest-port", 0)
	l.Set("proxy.s3-port", 0)
	l.Set("proxy.s3.users", map[string]string{s3BenchKey: s3BenchSecret})
	if wt := os.Getenv("BENCH_S3_WRITE_TYPE"); wt != "" {
		l.Set("proxy.s3.write-type", wt)
	}
	cfg, err := l.Load()
	if err != nil {
		b.Fatal(err)
	}
	px, err := proxy.New(cfg, zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	if err := px.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = px.Stop(context.Background()) })
	return px
}

func s3Client(b *testing.B, endpoint, key, secret string) *minio.Client {
	b.Helper()
	mc, err := minio.New(endpoint, &minio.Options{Creds: credentials.NewStaticV4(key, secret, ""), Region: "us-east-1",
		BucketLookup: minio.BucketLookupPath})
	if err != nil {
		b.Fatal(err)
	}
	return mc
}

// drain reads r to its end into a 1 MiB buffer, as a program that uses
// the bytes would (io.Discard's ReadFrom would read 8 KiB at a time).
func drain(r io.Reader) (int64, error) {
	buf := make([]byte, 1<<20)
	var n int64
	for {
		m, err := r.Read(buf)
		n += int64(m)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// BenchmarkS3Get reads a cached 1 GiB object (16 blocks of 64 MiB in a
// MEM tier) through the S3 gateway with minio-go, and the same file
// through the Go SDK, in the same run. ratio-s3get/sdk is the gateway's
// share of the SDK's throughput (goal >= 0.8).
func BenchmarkS3Get(b *testing.B) {
	const size = 1 << 30
	const blockSize = 64 << 20
	ctx := context.Background()
	rc := startReadCluster(b, "1536MiB")
	px := startGateway(b, rc)
	c, err := sdk.Dial(ctx, sdk.WithMaster(rc.master.RPCAddr()))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Mkdir(ctx, "/bucket", sdk.MkdirOptions{Parents: true}); err != nil {
		b.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range chunk {
		chunk[i] = byte(r.Uint32())
	}
	w, err := c.Create(ctx, "/bucket/1g", sdk.CreateOptions{WriteType: api.WriteType_MUST_CACHE, BlockSize: blockSize})
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
	if w.Info().GetCachedPercent() != 100 {
		b.Fatalf("the file is %d%% cached", w.Info().GetCachedPercent())
	}
	mc := s3Client(b, px.S3Addr(), s3BenchKey, s3BenchSecret)
	// A client elsewhere reads over TCP: no short circuit, no unix socket.
	remote, err := sdk.Dial(ctx, sdk.WithMaster(rc.master.RPCAddr()), sdk.WithShortCircuit(false), sdk.WithDomainSocket(false))
	if err != nil {
		b.Fatal(err)
	}
	defer remote.Close()

	readSDK := func(c *sdk.Client) time.Duration {
		start := time.Now()
		f, err := c.Open(ctx, "/bucket/1g", sdk.OpenOptions{})
		if err != nil {
			b.Fatal(err)
		}
		n, err := drain(f)
		f.Close()
		if err != nil || n != size {
			b.Fatalf("SDK read %d bytes: %v", n, err)
		}
		return time.Since(start)
	}
	readS3 := func() time.Duration {
		start := time.Now()
		obj, err := mc.GetObject(ctx, "bucket", "1g", minio.GetObjectOptions{})
		if err != nil {
			b.Fatal(err)
		}
		n, err := drain(obj)
		obj.Close()
		if err != nil || n != size {
			b.Fatalf("S3 GET %d bytes: %v", n, err)
		}
		return time.Since(start)
	}
	// The ceiling of HTTP on this machine: net/http sending the block
	// files themselves (sendfile) to a client reading 1 MiB at a time.
	var blockFiles []string
	for i := int64(0); i < size/blockSize; i++ {
		blockFiles = append(blockFiles, filepath.Join(rc.memDir, strconv.FormatInt(api.BlockID(w.Info().GetFileId(), i), 10)))
	}
	raw := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("Content-Length", strconv.Itoa(size))
		for _, p := range blockFiles {
			f, err := os.Open(p)
			if err != nil {
				return
			}
			_, _ = io.Copy(rw, f)
			f.Close()
		}
	}))
	defer raw.Close()
	readRaw := func() time.Duration {
		start := time.Now()
		resp, err := http.Get(raw.URL)
		if err != nil {
			b.Fatal(err)
		}
		n, err := drain(resp.Body)
		resp.Body.Close()
		if err != nil || n != size {
			b.Fatalf("raw HTTP %d bytes: %v", n, err)
		}
		return time.Since(start)
	}
	readSDK(c)
	readSDK(remote)
	readS3()
	var tSDK, tRemote, tS3, tRaw time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tSDK += readSDK(c)
		tRemote += readSDK(remote)
		tS3 += readS3()
		tRaw += readRaw()
	}
	b.StopTimer()
	n := time.Duration(b.N)
	mbps := func(d time.Duration) float64 { return float64(size) / 1e6 / d.Seconds() }
	b.ReportMetric(mbps(tS3/n), "MB/s-s3get")
	b.ReportMetric(mbps(tRemote/n), "MB/s-sdk")
	b.ReportMetric(mbps(tSDK/n), "MB/s-sdk-local")
	b.ReportMetric(mbps(tRaw/n), "MB/s-http-ceiling")
	b.ReportMetric(float64(tRemote)/float64(tS3), "ratio-s3get/sdk")
	b.ReportMetric(float64(tSDK)/float64(tS3), "ratio-s3get/sdk-local")
	b.ReportMetric(float64(tRaw)/float64(tS3), "ratio-s3get/http-ceiling")
	reference(b, "*", "sdk: the Go SDK reading the same cached file over TCP")
	reference(b, "MB/s-sdk", "the reference itself (the Go SDK over TCP)")
	reference(b, "MB/s-sdk-local", "sdk over TCP; sdk-local is the same SDK with short circuit, for scale")
	reference(b, "MB/s-http-ceiling", "the reference itself (net/http sendfile of the block files)")
	reference(b, "ratio-s3get/http-ceiling", "http-ceiling: net/http sendfile of the block files")
	reference(b, "ratio-s3get/sdk-local", "sdk-local: the Go SDK with short circuit")
	b.Logf("NOTE: S3Get: a cached 1 GiB object (16 x 64 MiB blocks in a MEM tier on tmpfs) read whole into a 1 MiB buffer: s3get by minio-go through the S3 gateway (a SigV4-signed GET over loopback TCP; the gateway reads the blocks with the SDK, short circuit); sdk by the Go SDK over TCP as a client on another host reads (gRPC stream, no short circuit, no unix socket); sdk-local by the Go SDK on the worker's host (short circuit: the block files read directly, no network); http-ceiling: net/http sending the block files (sendfile) over loopback to the same reading loop, the most any HTTP server can do here. ratio-s3get/sdk compares the two network clients; master, worker, gateway and clients in one process. Every side reads page-cached blocks (tmpfs) and none verifies a checksum (minio-go checks no MD5 on GET)")
}

// BenchmarkS3Put sends 1,000 small objects (4 KiB) with minio-go through
// the S3 gateway and to MinIO on the same machine in the same run, 16 at a
// time. ratio-put/minio is the gateway's PUT rate over MinIO's (goal >= 1.0).
func BenchmarkS3Put(b *testing.B) {
	const objects = 1000
	const objSize = 4 << 10
	const parallel = 16
	ctx := context.Background()
	rc := startReadCluster(b, "1GiB")
	px := startGateway(b, rc)
	gw := s3Client(b, px.S3Addr(), s3BenchKey, s3BenchSecret)
	mi := testutil.StartMinIO(b)
	ref := s3Client(b, mi.Endpoint, mi.AccessKey, mi.SecretKey)
	for _, mc := range []*minio.Client{gw, ref} {
		if err := mc.MakeBucket(ctx, "puts", minio.MakeBucketOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	body := make([]byte, objSize)
	rr := rand.New(rand.NewPCG(5, 6))
	for i := range body {
		body[i] = byte(rr.Uint32())
	}
	round := 0
	putAll := func(mc *minio.Client) time.Duration {
		round++
		var next atomic.Int64
		var wg sync.WaitGroup
		var failed atomic.Value
		start := time.Now()
		for w := 0; w < parallel; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := next.Add(1) - 1
					if i >= objects {
						return
					}
					key := fmt.Sprintf("r%d/d%02d/obj-%05d", round, i%50, i)
					if _, err := mc.PutObject(ctx, "puts", key, bytes.NewReader(body), objSize, minio.PutObjectOptions{}); err != nil {
						failed.Store(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		if err, _ := failed.Load().(error); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	putAll(gw)
	putAll(ref)
	var tGW, tRef time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tGW += putAll(gw)
		tRef += putAll(ref)
	}
	b.StopTimer()
	n := time.Duration(b.N)
	rate := func(d time.Duration) float64 { return objects / d.Seconds() }
	b.ReportMetric(rate(tGW/n), "PUT/s-gateway")
	b.ReportMetric(rate(tRef/n), "PUT/s-minio")
	b.ReportMetric(float64(tRef)/float64(tGW), "ratio-put/minio")
	reference(b, "*", "MinIO (single drive) taking the same PUTs")
	reference(b, "PUT/s-minio", "the reference itself (MinIO, single drive)")
	b.Logf("NOTE: S3Put: 1,000 PUTs of 4 KiB objects (50 prefixes), 16 in flight, by minio-go (SigV4 streaming-signed bodies over http; both servers check the chunk signatures) to the S3 gateway and to MinIO (single drive in a temp dir) on the same machine in the same run; master, worker and gateway in this process, MinIO in its own. Durability when the PUT is answered: the gateway writes the object CACHE_THROUGH — the UFS file (local dir) fsynced with its directory, create and complete (with the ETag and headers) journaled and fsynced, a MEM-tier block (not durable: a cache); MinIO stores a small object inline in its xl.meta, written with fdatasync before the rename that publishes it (the rename's directory is not fsynced)")
}

// BenchmarkS3Upload512MiB copies one 512 MiB file with `aws s3 cp` (the
// AWS CLI from Debian: a multipart upload of 8 MiB parts, 10 in flight)
// to the S3 gateway and to MinIO on the same machine, in the same run.
// ratio-cp/minio is the gateway's time over MinIO's (goal <= 1.0).
func BenchmarkS3Upload512MiB(b *testing.B) {
	const size = 512 << 20
	aws := "/usr/bin/aws"
	if _, err := os.Stat(aws); err != nil {
		b.Skip("the AWS CLI is not installed (apt-get install awscli)")
	}
	ctx := context.Background()
	rc := startReadCluster(b, "1536MiB")
	px := startGateway(b, rc)
	mi := testutil.StartMinIO(b)
	src := filepath.Join(b.TempDir(), "big.bin")
	f, err := os.Create(src)
	if err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(7, 8))
	chunk := make([]byte, 1<<20)
	for n := 0; n < size; n += len(chunk) {
		for i := range chunk {
			chunk[i] = byte(r.Uint32())
		}
		if _, err := f.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	for _, s := range []struct{ ep, key, secret string }{{px.S3Addr(), s3BenchKey, s3BenchSecret}, {mi.Endpoint, mi.AccessKey, mi.SecretKey}} {
		if err := s3Client(b, s.ep, s.key, s.secret).MakeBucket(ctx, "upload", minio.MakeBucketOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	home := b.TempDir()
	cp := func(ep, key, secret string) time.Duration {
		cmd := exec.Command(aws, "--endpoint-url", "http://"+ep, "s3", "cp", "--only-show-errors", src, "s3://upload/big.bin")
		cmd.Env = []string{"HOME=" + home, "PATH=/usr/bin:/bin", "AWS_ACCESS_KEY_ID=" + key, "AWS_SECRET_ACCESS_KEY=" + secret,
			"AWS_DEFAULT_REGION=us-east-1", "AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null"}
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("aws s3 cp to %s: %v\n%s", ep, err, out)
		}
		return time.Since(start)
	}
	check := func(ep, key, secret string) {
		st, err := s3Client(b, ep, key, secret).StatObject(ctx, "upload", "big.bin", minio.StatObjectOptions{})
		if err != nil || st.Size != size {
			b.Fatalf("after the copy %s holds %d bytes (%v)", ep, st.Size, err)
		}
	}
	cp(px.S3Addr(), s3BenchKey, s3BenchSecret)
	cp(mi.Endpoint, mi.AccessKey, mi.SecretKey)
	var tGW, tRef time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tGW += cp(px.S3Addr(), s3BenchKey, s3BenchSecret)
		tRef += cp(mi.Endpoint, mi.AccessKey, mi.SecretKey)
	}
	b.StopTimer()
	check(px.S3Addr(), s3BenchKey, s3BenchSecret)
	check(mi.Endpoint, mi.AccessKey, mi.SecretKey)
	n := time.Duration(b.N)
	b.ReportMetric((tGW / n).Seconds(), "s-gateway")
	b.ReportMetric((tRef / n).Seconds(), "s-minio")
	b.ReportMetric(float64(tGW)/float64(tRef), "ratio-cp/minio")
	reference(b, "*", "MinIO (single drive) taking the same aws s3 cp")
	reference(b, "s-minio", "the reference itself (MinIO, single drive)")
	b.Logf("NOTE: S3Upload512MiB: `aws s3 cp` (Debian's AWS CLI 1.x: 64 parts of 8 MiB, 10 in flight, SigV4 with each part's SHA-256 over http) of one 512 MiB file from a temp dir on disk, to the S3 gateway and to MinIO (single drive in a temp dir on the same disk) in the same run, alternating; master, worker and gateway in this process, MinIO in its own. Both check each part's SHA-256 and compute its MD5 (the ETag). When the upload is answered: the gateway's object is CACHE_THROUGH — each part went in one gRPC stream to its block in the MEM tier (where it stays; completion moves none) and, by the same worker, to its place in the object's UFS file (local dir; whole pages with O_DIRECT), that region fsynced before the part was answered; every part and the completion journaled and fsynced; the UFS file renamed into place and its directory fsynced. MinIO has written each part to a file of its own through the page cache (no O_DIRECT here: strace shows the part files opened O_WRONLY|O_CREAT|O_EXCL), fdatasynced it, and renames the parts into the object at completion without fsyncing a directory")
}
