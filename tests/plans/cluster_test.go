// Package plans tests the persist, replicate, move and copy plans end to
// end on real processes: an FS master with a local root mount and a MinIO
// S3 mount beside it, three block+job workers and a job master, each its
// own alluvium process on loopback (testutil.Cluster).
package plans

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/testutil"
	"github.com/alluvium/alluvium/sdk"
)

const blockSize = testutil.BlockSize // small blocks: multi-block files from little data

// persistDelay is the FS master's fsmaster.persist.delay: how long an
// ASYNC_THROUGH file waits before a persist job takes it.
const persistDelay = time.Second

// cluster is testutil.Cluster with the MinIO bucket mounted at /s3.
type cluster struct {
	*testutil.Cluster
	t      *testing.T
	minio  *testutil.MinIO
	s3     *minio.Client
	bucket string
}

// startCluster starts MinIO, the FS master (root on a local dir, /s3 on a
// MinIO bucket, ASYNC_THROUGH files persisted through the job master after
// 1s), one job master and three workers.
func startCluster(t *testing.T) *cluster {
	t.Helper()
	c := &cluster{t: t, bucket: "plans", minio: testutil.StartMinIO(t)}
	c.Cluster = testutil.StartCluster(t, testutil.ClusterOptions{
		Workers:           3,
		JobMasters:        1,
		FSMasterJobMaster: true,
		Env:               []string{"ALLUVIUM_FSMASTER_PERSIST_DELAY=" + persistDelay.String()},
		ClientTimeout:     30 * time.Second,
	})
	var err error
	c.s3, err = minio.New(c.minio.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(c.minio.AccessKey, c.minio.SecretKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	c.MustCLI("fs", "mount", "/s3", "s3://"+c.bucket+"/pre",
		"--option", "s3.endpoint=http://"+c.minio.Endpoint, "--option", "s3.access-key="+c.minio.AccessKey,
		"--option", "s3.secret-key="+c.minio.SecretKey, "--option", "s3.path-style=true", "--option", "s3.create-bucket=true")
	return c
}

// read returns a file's bytes through Alluvium.
func (c *cluster) read(p string) []byte {
	c.t.Helper()
	r, err := c.Client.Open(context.Background(), p, sdk.OpenOptions{ReadType: api.ReadType_NO_CACHE})
	if err != nil {
		c.t.Fatalf("open %s: %v", p, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		c.t.Fatalf("read %s: %v", p, err)
	}
	return b
}

// object returns an object's bytes straight from MinIO (nil when absent).
func (c *cluster) object(key string) []byte {
	c.t.Helper()
	o, err := c.s3.GetObject(context.Background(), c.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	defer o.Close()
	b, err := io.ReadAll(o)
	if err != nil {
		if minio.ToErrorResponse(err).Code == "NoSuchKey" {
			return nil
		}
		c.t.Fatalf("get %s: %v", key, err)
	}
	return b
}

// objects lists the keys under a prefix.
func (c *cluster) objects(prefix string) []string {
	var keys []string
	for o := range c.s3.ListObjects(context.Background(), c.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			c.t.Fatal(o.Err)
		}
		keys = append(keys, o.Key)
	}
	sort.Strings(keys)
	return keys
}

// mixed is a tree of small files in nested directories, two multi-block
// files and an empty one.
func mixed() map[string]int {
	m := map[string]int{
		"big/a.bin": 2*blockSize + 12345, // 3 blocks
		"big/b.bin": 3 * blockSize,       // 3 full blocks
		"empty":     0,
	}
	for i := 0; i < 24; i++ {
		m[fmt.Sprintf("s/%d/f%02d", i%4, i)] = 100 + 1777*i
	}
	return m
}

// checkTree reads every file of want (src path → bytes) at its place under
// dst through Alluvium and compares SHA-256s.
func (c *cluster) checkTree(want map[string][]byte, src, dst string) {
	c.t.Helper()
	for p, b := range want {
		d := dst + strings.TrimPrefix(p, src)
		if got := c.read(d); testutil.SHA256(got) != testutil.SHA256(b) {
			c.t.Errorf("%s: sha256 %s (%d bytes), want %s (%d bytes)", d, testutil.SHA256(got)[:12], len(got), testutil.SHA256(b)[:12], len(b))
		}
	}
}

func equalBytes(a, b []byte) bool { return bytes.Equal(a, b) }
