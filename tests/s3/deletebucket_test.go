package s3

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/alluvium/alluvium/internal/testutil"
)

// TestDeleteBucketWithUploadsInFlight: a bucket whose only content is a
// multipart upload in flight (a part already written in place in the
// bucket's UFS directory) is deleted, as S3 deletes it, and the upload
// goes with it — in the namespace and in the UFS. (An upload to a key
// under a prefix makes the prefix's directory, so that bucket is not
// empty here: README, not done.) A bucket that also holds
// an object is not: BucketNotEmpty, and its upload stays usable.
func TestDeleteBucketWithUploadsInFlight(t *testing.T) {
	c := startLocal(t)
	mc := minioClient(t, c.s3Host, token)
	core := &minio.Core{Client: mc}
	ctx := context.Background()
	part := testutil.RandBytes(5<<20 + 3)
	begin := func(bucket, key string) string {
		t.Helper()
		if err := mc.MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
			t.Fatal(err)
		}
		id, err := core.NewMultipartUpload(ctx, bucket, key, minio.PutObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := core.PutObjectPart(ctx, bucket, key, id, 1, bytes.NewReader(part), int64(len(part)), minio.PutObjectPartOptions{}); err != nil {
			t.Fatal(err)
		}
		return id
	}

	// Only an upload in flight: the bucket goes, the upload with it.
	begin("only-uploads", "big.obj")
	if err := mc.RemoveBucket(ctx, "only-uploads"); err != nil {
		t.Fatalf("DeleteBucket of a bucket holding only an upload in flight: %v", err)
	}
	if ok, err := mc.BucketExists(ctx, "only-uploads"); err != nil || ok {
		t.Fatalf("the bucket still exists (%v, %v)", ok, err)
	}
	if _, err := os.Stat(filepath.Join(c.ufs, "only-uploads")); !os.IsNotExist(err) {
		t.Fatalf("the bucket's UFS directory is still there: %v", err)
	}

	// An object and an upload: BucketNotEmpty, and the upload completes.
	id := begin("with-object", "big/obj")
	if _, err := mc.PutObject(ctx, "with-object", "small", bytes.NewReader([]byte("x")), 1, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := mc.RemoveBucket(ctx, "with-object"); errCode(err) != "BucketNotEmpty" {
		t.Fatalf("DeleteBucket of a bucket holding an object: %v, want BucketNotEmpty", err)
	}
	parts, err := core.ListObjectParts(ctx, "with-object", "big/obj", id, 0, 10)
	if err != nil || len(parts.ObjectParts) != 1 {
		t.Fatalf("the upload's parts after a refused DeleteBucket: %+v (%v)", parts, err)
	}
	if _, err := core.CompleteMultipartUpload(ctx, "with-object", "big/obj", id,
		[]minio.CompletePart{{PartNumber: 1, ETag: parts.ObjectParts[0].ETag}}, minio.PutObjectOptions{}); err != nil {
		t.Fatalf("completing the upload after a refused DeleteBucket: %v", err)
	}
	obj, err := mc.GetObject(ctx, "with-object", "big/obj", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	var got bytes.Buffer
	if _, err := got.ReadFrom(obj); err != nil || !bytes.Equal(got.Bytes(), part) {
		t.Fatalf("the completed object: %d bytes (%v), want the part's %d", got.Len(), err, len(part))
	}
}
