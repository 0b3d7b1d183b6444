package ufs_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/alluvium/alluvium/internal/testutil"
	"github.com/alluvium/alluvium/ufs"
	"github.com/alluvium/alluvium/ufs/ufstest"
)

func TestLocalConformance(t *testing.T) {
	ufstest.Run(t, func(t *testing.T) ufs.FileSystem {
		fs, err := ufs.Open(context.Background(), "file://"+t.TempDir(), nil)
		if err != nil {
			t.Fatal(err)
		}
		return fs
	})
}

func minioOptions(m *testutil.MinIO) map[string]string {
	return map[string]string{
		ufs.S3Endpoint:   "http://" + m.Endpoint,
		ufs.S3AccessKey:  m.AccessKey,
		ufs.S3SecretKey:  m.SecretKey,
		ufs.S3Region:     "us-east-1",
		ufs.S3PathStyle:  "true",
		ufs.S3PartSize:   fmt.Sprint(5 << 20),
		ufs.S3MaxRetries: "1",
	}
}

func makeBucket(t *testing.T, m *testutil.MinIO, bucket string) {
	t.Helper()
	c, err := minio.New(m.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(m.AccessKey, m.SecretKey, ""), Region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.MakeBucket(context.Background(), bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestS3Conformance(t *testing.T) {
	m := testutil.StartMinIO(t)
	makeBucket(t, m, "conformance")
	var n atomic.Int64
	ufstest.Run(t, func(t *testing.T) ufs.FileSystem {
		// Each subtest gets its own prefix, so they never see each other.
		uri := fmt.Sprintf("s3://conformance/run%d/nested", n.Add(1))
		fs, err := ufs.Open(context.Background(), uri, minioOptions(m))
		if err != nil {
			t.Fatal(err)
		}
		return fs
	})
	t.Run("BucketRoot", func(t *testing.T) {
		makeBucket(t, m, "rootbucket")
		fs, err := ufs.Open(context.Background(), "s3://rootbucket", minioOptions(m))
		if err != nil {
			t.Fatal(err)
		}
		defer fs.Close()
		ctx := context.Background()
		w, err := fs.Create(ctx, "/x/y", ufs.CreateOptions{CreateParent: true})
		if err != nil {
			t.Fatal(err)
		}
		_, _ = w.Write([]byte("hello"))
		if _, err := w.Commit(); err != nil {
			t.Fatal(err)
		}
		var got []string
		if err := fs.List(ctx, "/", func(st ufs.FileStatus) error { got = append(got, st.Name); return nil }); err != nil {
			t.Fatal(err)
		}
		if strings.Join(got, ",") != "x" {
			t.Errorf("List(/) of a bucket root = %v", got)
		}
		if fs.URI("/x/y") != "s3://rootbucket/x/y" {
			t.Errorf("URI = %s", fs.URI("/x/y"))
		}
	})
	t.Run("MissingBucket", func(t *testing.T) {
		_, err := ufs.Open(context.Background(), "s3://no-such-bucket/p", minioOptions(m))
		if err == nil || !strings.Contains(err.Error(), "no-such-bucket") || !strings.Contains(err.Error(), "does not exist") {
			t.Errorf("open of a missing bucket: %v", err)
		}
		o := minioOptions(m)
		o[ufs.S3CreateBucket] = "true"
		fs, err := ufs.Open(context.Background(), "s3://made-on-open/p", o)
		if err != nil {
			t.Fatalf("s3.create-bucket=true: %v", err)
		}
		fs.Close()
	})
	t.Run("WrongCredentials", func(t *testing.T) {
		o := minioOptions(m)
		o[ufs.S3SecretKey] = "wrong"
		_, err := ufs.Open(context.Background(), "s3://conformance/p", o)
		if err == nil || !strings.Contains(err.Error(), m.Endpoint) {
			t.Errorf("open with a wrong secret: %v", err)
		}
	})
}

// An endpoint where nothing listens fails at once, naming the endpoint.
func TestS3UnreachableEndpoint(t *testing.T) {
	base := testutil.PortBase(t)
	opts := map[string]string{
		ufs.S3Endpoint:       fmt.Sprintf("http://127.0.0.1:%d", base+199),
		ufs.S3AccessKey:      "k",
		ufs.S3SecretKey:      "s",
		ufs.S3Region:         "us-east-1",
		ufs.S3ConnectTimeout: "2s",
	}
	start := time.Now()
	_, err := ufs.Open(context.Background(), "s3://bucket/p", opts)
	if err == nil {
		t.Fatal("open of an unreachable endpoint succeeded")
	}
	if !strings.Contains(err.Error(), fmt.Sprint(base+199)) || !strings.Contains(err.Error(), "unreachable") {
		t.Errorf("error does not name the endpoint as unreachable: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %s to fail; want it bounded by the 2s connect timeout, not hung", d)
	}
}

// An endpoint that accepts connections but never answers fails within the
// bound, naming the endpoint.
func TestS3SilentEndpoint(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close() // hold it open, say nothing
		}
	}()
	opts := map[string]string{
		ufs.S3Endpoint: "http://" + l.Addr().String(), ufs.S3AccessKey: "k", ufs.S3SecretKey: "s",
		ufs.S3Region: "us-east-1", ufs.S3ConnectTimeout: "1s",
	}
	start := time.Now()
	_, err = ufs.Open(context.Background(), "s3://bucket/p", opts)
	if err == nil || !strings.Contains(err.Error(), l.Addr().String()) || !strings.Contains(err.Error(), "unreachable") {
		t.Errorf("open of a silent endpoint: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %s to fail; want it bounded by the 1s connect timeout, not hung", d)
	}
}

func TestParseS3Options(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "envkey")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "envsecret")
	t.Setenv("AWS_REGION", "eu-west-1")
	t.Setenv("AWS_ENDPOINT_URL", "")
	t.Setenv("AWS_ENDPOINT_URL_S3", "")
	o, err := ufs.ParseS3Options(nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.AccessKey != "envkey" || o.SecretKey != "envsecret" || o.Region != "eu-west-1" || !o.Secure || o.Endpoint != "s3.amazonaws.com" {
		t.Errorf("env fallback: %+v", o)
	}
	o, err = ufs.ParseS3Options(map[string]string{ufs.S3Endpoint: "http://minio:9000", ufs.S3AccessKey: "k", ufs.S3PartSize: "8388608"})
	if err != nil {
		t.Fatal(err)
	}
	if o.Endpoint != "minio:9000" || o.Secure || o.AccessKey != "k" || o.PartSize != 8<<20 {
		t.Errorf("explicit options: %+v", o)
	}
	for _, bad := range []map[string]string{
		{ufs.S3Secure: "maybe"},
		{ufs.S3Endpoint: "ftp://x"},
		{ufs.S3ConnectTimeout: "soon"},
		{ufs.S3PartSize: "1024"},
		{ufs.S3MaxRetries: "-1"},
	} {
		if _, err := ufs.ParseS3Options(bad); err == nil {
			t.Errorf("ParseS3Options(%v) accepted bad input", bad)
		} else {
			for k := range bad {
				if !strings.Contains(err.Error(), k) {
					t.Errorf("error %q does not name %s", err, k)
				}
			}
		}
	}
}
