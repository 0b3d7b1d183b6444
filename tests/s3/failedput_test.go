package s3

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/signer"

	"github.com/alluvium/alluvium/internal/testutil"
)

// TestFailedPutKeepsOldObject (issue 13, item 6, the S3 half): a PUT over
// an existing key whose body fails — a Content-MD5 or x-amz-content-sha256
// that does not match, a chunk signature that does not verify, a client
// that disconnects mid-body — leaves the old object as it was: its bytes,
// ETag and metadata through the gateway, and its UFS file. While such a
// PUT is in flight, GET and HEAD serve the old object.
func TestFailedPutKeepsOldObject(t *testing.T) {
	c := startLocal(t)
	mc := minioClient(t, c.s3Host, token)
	ctx := context.Background()
	const bucket, key = "keep", "dir/obj.bin"
	if err := mc.MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	old := testutil.RandBytes(3<<20 + 17)
	first, err := mc.PutObject(ctx, bucket, key, bytes.NewReader(old), int64(len(old)), minio.PutObjectOptions{
		UserMetadata: map[string]string{"generation": "old"}, DisableMultipart: true})
	if err != nil {
		t.Fatal(err)
	}
	url := c.s3 + "/" + bucket + "/" + key
	ufsFile := filepath.Join(c.ufs, bucket, "dir", "obj.bin")
	intact := func(when string) {
		t.Helper()
		st, err := mc.StatObject(ctx, bucket, key, minio.StatObjectOptions{})
		if err != nil || st.ETag != first.ETag || st.Size != int64(len(old)) || st.UserMetadata["Generation"] != "old" {
			t.Fatalf("%s: HEAD = %+v (%v), want the old object (ETag %s, %d bytes)", when, st, err, first.ETag, len(old))
		}
		obj, err := mc.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
		if err != nil {
			t.Fatalf("%s: GET: %v", when, err)
		}
		got, err := io.ReadAll(obj)
		if err != nil || !bytes.Equal(got, old) {
			t.Fatalf("%s: GET read %d bytes (%v), want the old %d", when, len(got), err, len(old))
		}
		if b, err := os.ReadFile(ufsFile); err != nil || !bytes.Equal(b, old) {
			t.Fatalf("%s: the UFS file holds %d bytes (%v), want the old %d", when, len(b), err, len(old))
		}
	}
	// send signs req with the payload hash given (not the body's) and
	// returns the status and body of the answer.
	send := func(req *http.Request, payloadHash string) (int, string) {
		t.Helper()
		req.Header.Set("X-Amz-Content-Sha256", payloadHash)
		req = signer.SignV4(*req, "tester", token, "", "us-east-1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	newBody := bytes.Repeat([]byte("new"), 1<<20)
	sum := sha256.Sum256(newBody)
	bodyHash := hex.EncodeToString(sum[:])

	// 1. A Content-MD5 that is not the body's.
	req, _ := http.NewRequest(http.MethodPut, url, bytes.NewReader(newBody))
	req.Header.Set("Content-Md5", "AAAAAAAAAAAAAAAAAAAAAA==")
	if code, body := send(req, bodyHash); code != 400 || !strings.Contains(body, "BadDigest") {
		t.Fatalf("PUT with a wrong Content-MD5: %d %s, want 400 BadDigest", code, body)
	}
	intact("after a PUT with a wrong Content-MD5")

	// 2. An x-amz-content-sha256 that is not the body's (it is signed, so
	// the signature holds; the bytes do not).
	other := sha256.Sum256([]byte("other bytes"))
	req, _ = http.NewRequest(http.MethodPut, url, bytes.NewReader(newBody))
	if code, body := send(req, hex.EncodeToString(other[:])); code != 400 || !strings.Contains(body, "XAmzContentSHA256Mismatch") {
		t.Fatalf("PUT with a wrong x-amz-content-sha256: %d %s, want 400 XAmzContentSHA256Mismatch", code, body)
	}
	intact("after a PUT with a wrong x-amz-content-sha256")

	// 3. A streaming (aws-chunked) body whose chunk signature is forged:
	// the request itself is signed correctly.
	const forged = "0000000000000000000000000000000000000000000000000000000000000000"
	chunked := fmt.Sprintf("%x;chunk-signature=%s\r\n%s\r\n0;chunk-signature=%s\r\n\r\n", len("planted"), forged, "planted", forged)
	req, _ = http.NewRequest(http.MethodPut, url, strings.NewReader(chunked))
	req.ContentLength = int64(len(chunked))
	req.Header.Set("Content-Encoding", "aws-chunked")
	req.Header.Set("X-Amz-Decoded-Content-Length", fmt.Sprint(len("planted")))
	if code, body := send(req, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"); code != 403 || !strings.Contains(body, "SignatureDoesNotMatch") {
		t.Fatalf("PUT with a forged chunk signature: %d %s, want 403 SignatureDoesNotMatch", code, body)
	}
	intact("after a PUT with a forged chunk signature")

	// 4. A client that sends 1 MiB of a 9 MiB body and disconnects. While
	// the body comes, GET and HEAD serve the old object.
	pr, pw := io.Pipe()
	req, _ = http.NewRequestWithContext(ctx, http.MethodPut, url, pr)
	req.ContentLength = int64(len(newBody))
	req.Header.Set("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD")
	req = signer.SignV4(*req, "tester", token, "", "us-east-1")
	done := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			err = fmt.Errorf("the cut PUT was answered %s", resp.Status)
		}
		done <- err
	}()
	if _, err := pw.Write(newBody[:1<<20]); err != nil {
		t.Fatal(err)
	}
	intact("while a PUT over it is in flight")
	cut := errors.New("the client went away")
	pw.CloseWithError(cut)
	if err := <-done; !errors.Is(err, cut) {
		t.Logf("the cut PUT: %v", err)
	}
	intact("after a PUT whose client disconnected mid-body")
	// The abandoned write is dropped: no temporary file stays beside the
	// object in the UFS.
	testutil.Eventually(t, 30*time.Second, func() error {
		ents, err := os.ReadDir(filepath.Dir(ufsFile))
		if err != nil {
			return err
		}
		if len(ents) != 1 {
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			return fmt.Errorf("the object's UFS directory holds %v, want obj.bin alone", names)
		}
		return nil
	})

	// A good PUT still replaces it.
	if _, err := mc.PutObject(ctx, bucket, key, bytes.NewReader(newBody), int64(len(newBody)), minio.PutObjectOptions{DisableMultipart: true}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(ufsFile); err != nil || !bytes.Equal(b, newBody) {
		t.Fatalf("after a good PUT the UFS file holds %d bytes (%v), want the new %d", len(b), err, len(newBody))
	}
}
