package s3

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/alluvium/alluvium/internal/testutil"
	"github.com/alluvium/alluvium/sdk"
)

const (
	aliceKey   = "alice"
	aliceToken = "alice-token-0123456789abcdef"
	bobKey     = "bob"
	bobToken   = "bob-token-0123456789abcdef00"
)

// startProxy runs `alluvium proxy` for cluster c with its REST and S3
// ports at c.PortBase+off and +off+1, users alice and bob.
func startProxy(t *testing.T, c *testutil.Cluster, name string, off int) (*testutil.Process, string) {
	t.Helper()
	home := filepath.Join(c.Home, name)
	s3Port := c.PortBase + off + 1
	conf := testutil.WriteFile(t, filepath.Join(home, "proxy.yaml"), []byte(fmt.Sprintf(`
client:
  master: %s
proxy:
  rest-port: %d
  s3-port: %d
security:
  users:
    %s: %s
    %s: %s
`, c.Master, c.PortBase+off, s3Port, aliceKey, aliceToken, bobKey, bobToken)))
	p := testutil.Start(t, name, c.Bin, c.Env, "proxy", "--home", home, "--config", conf)
	p.WaitLog("proxy ready", 30*time.Second)
	return p, fmt.Sprintf("127.0.0.1:%d", s3Port)
}

func userClient(t *testing.T, endpoint, key, secret string) *minio.Core {
	t.Helper()
	mc, err := minio.New(endpoint, &minio.Options{Creds: credentials.NewStaticV4(key, secret, ""), Region: "us-east-1",
		BucketLookup: minio.BucketLookupPath})
	if err != nil {
		t.Fatal(err)
	}
	return &minio.Core{Client: mc}
}

// gatedReader gives the first n bytes of b, says so on reached, and then
// blocks until release is closed.
type gatedReader struct {
	b       []byte
	n       int
	off     int
	once    sync.Once
	reached chan struct{}
	release chan struct{}
}

func (g *gatedReader) Read(p []byte) (int, error) {
	if g.off >= len(g.b) {
		return 0, io.EOF
	}
	if g.off >= g.n {
		g.once.Do(func() { close(g.reached) })
		<-g.release
		return 0, io.ErrUnexpectedEOF
	}
	k := copy(p, g.b[g.off:min(len(g.b), g.n)])
	g.off += k
	return k, nil
}

// TestMultipartAcrossProxies: one upload, parts through two gateways; one
// is SIGKILLed in the middle of a part; the other lists what was stored,
// uploads the lost part again and completes. Nothing of the upload lived
// in the gateway that died.
func TestMultipartAcrossProxies(t *testing.T) {
	c := testutil.StartCluster(t, testutil.ClusterOptions{Workers: 2, MemQuota: "96MiB"})
	pa, addrA := startProxy(t, c, "proxy-a", 6)
	_, addrB := startProxy(t, c, "proxy-b", 8)
	a := userClient(t, addrA, aliceKey, aliceToken)
	b := userClient(t, addrB, aliceKey, aliceToken)
	ctx := context.Background()
	const bucket, key = "multi", "big/object.bin"
	if err := a.MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	const partSize = 5<<20 + 12345               // not a multiple of the block size (1 MiB)
	data := testutil.RandBytes(3*partSize - 777) // part 3 is the shorter last one
	part := func(i int) []byte { return data[(i-1)*partSize : min(len(data), i*partSize)] }

	id, err := a.NewMultipartUpload(ctx, bucket, key, minio.PutObjectOptions{ContentType: "application/x-test", UserMetadata: map[string]string{"origin": "proxy-a"}})
	if err != nil {
		t.Fatal(err)
	}
	p1, err := a.PutObjectPart(ctx, bucket, key, id, 1, bytes.NewReader(part(1)), int64(len(part(1))), minio.PutObjectPartOptions{})
	if err != nil {
		t.Fatalf("part 1 through proxy A: %v", err)
	}
	p2, err := b.PutObjectPart(ctx, bucket, key, id, 2, bytes.NewReader(part(2)), int64(len(part(2))), minio.PutObjectPartOptions{})
	if err != nil {
		t.Fatalf("part 2 through proxy B: %v", err)
	}
	// Part 3 through A, which dies with half of it received.
	g := &gatedReader{b: part(3), n: len(part(3)) / 2, reached: make(chan struct{}), release: make(chan struct{})}
	failed := make(chan error, 1)
	go func() {
		_, err := a.PutObjectPart(ctx, bucket, key, id, 3, g, int64(len(part(3))), minio.PutObjectPartOptions{})
		failed <- err
	}()
	select {
	case <-g.reached:
	case <-time.After(60 * time.Second):
		t.Fatal("proxy A never took half of part 3")
	}
	pa.Kill()
	close(g.release)
	if err := <-failed; err == nil {
		t.Fatal("part 3 through the killed proxy A succeeded")
	}
	// Proxy B sees the upload and the two parts stored, not the lost one.
	lp, err := b.ListObjectParts(ctx, bucket, key, id, 0, 100)
	if err != nil {
		t.Fatalf("list parts through proxy B: %v", err)
	}
	unq := func(s string) string { return strings.Trim(s, `"`) }
	if len(lp.ObjectParts) != 2 || unq(lp.ObjectParts[0].ETag) != unq(p1.ETag) || unq(lp.ObjectParts[1].ETag) != unq(p2.ETag) {
		t.Fatalf("parts seen through B: %+v, want parts 1 (%s) and 2 (%s)", lp.ObjectParts, p1.ETag, p2.ETag)
	}
	ups, err := b.ListMultipartUploads(ctx, bucket, "", "", "", "", 100)
	if err != nil || len(ups.Uploads) != 1 || ups.Uploads[0].UploadID != id {
		t.Fatalf("uploads seen through B: %+v, %v", ups.Uploads, err)
	}
	p3, err := b.PutObjectPart(ctx, bucket, key, id, 3, bytes.NewReader(part(3)), int64(len(part(3))), minio.PutObjectPartOptions{})
	if err != nil {
		t.Fatalf("part 3 again through proxy B: %v", err)
	}
	parts := []minio.CompletePart{{PartNumber: 1, ETag: p1.ETag}, {PartNumber: 2, ETag: p2.ETag}, {PartNumber: 3, ETag: p3.ETag}}
	if _, err := b.CompleteMultipartUpload(ctx, bucket, key, id, parts, minio.PutObjectOptions{}); err != nil {
		t.Fatalf("complete through proxy B: %v", err)
	}
	obj, _, _, err := b.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(obj)
	obj.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("object through B: %d bytes (%v), want %d bytes equal to the parts", len(got), err, len(data))
	}
	st, err := b.StatObject(ctx, bucket, key, minio.StatObjectOptions{})
	if err != nil || st.ContentType != "application/x-test" || st.UserMetadata["Origin"] != "proxy-a" {
		t.Fatalf("metadata set through A, read through B: %+v %v", st, err)
	}
	// The bytes in the cluster, read without any gateway: the file is the
	// parts, in the blocks they were written to.
	r, err := c.Client.Open(ctx, "/"+bucket+"/"+key, sdk.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err = io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("file read with the SDK: %d bytes (%v)", len(got), err)
	}
	if n := len(r.Info().GetExtents()); n != 3 {
		t.Fatalf("the object has %d extents, want its 3 parts", n)
	}
	if fs, err := os.ReadFile(filepath.Join(c.UFSDir, bucket, key)); err != nil || !bytes.Equal(fs, data) {
		t.Fatalf("the UFS copy has %d bytes (%v), want the object's %d", len(fs), err, len(data))
	}
	// No upload is left.
	if ups, err := b.ListMultipartUploads(ctx, bucket, "", "", "", "", 100); err != nil || len(ups.Uploads) != 0 {
		t.Fatalf("uploads left after completion: %+v %v", ups.Uploads, err)
	}
}
