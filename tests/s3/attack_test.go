package s3

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
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
	"github.com/alluvium/alluvium/sdk"
)

// startLocalUsers runs `alluvium local` with users alice and bob, and a
// bound of 12 MiB on the bytes each may stage in multipart uploads.
func startLocalUsers(t *testing.T) (*cluster, *sdk.Client) {
	t.Helper()
	bin := testutil.Binary(t)
	base := testutil.PortBase(t)
	root := t.TempDir()
	c := &cluster{bin: bin, home: filepath.Join(root, "home"), ufs: filepath.Join(root, "ufs")}
	if err := os.MkdirAll(c.ufs, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := testutil.WriteFile(t, filepath.Join(root, "alluvium.yaml"), []byte(fmt.Sprintf(`
security:
  users:
    %s: %s
    %s: %s
fsmaster:
  multipart:
    max-staged-bytes: %d
`, aliceKey, aliceToken, bobKey, bobToken, 12<<20)))
	p := testutil.Start(t, "local", bin, nil, "local", "--home", c.home, "--ufs", c.ufs, "--workers", "1",
		"--port-base", fmt.Sprint(base), "--token", token, "--config", conf)
	p.WaitLog("ready", 90*time.Second)
	c.s3Host = fmt.Sprintf("127.0.0.1:%d", base+7)
	c.s3 = "http://" + c.s3Host
	sc, err := sdk.Dial(context.Background(), sdk.WithMaster(fmt.Sprintf("localhost:%d", base)), sdk.WithToken(token))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close() })
	return c, sc
}

// signedAs signs req as key/secret (SigV4 over its body's SHA-256) and
// returns the status and body of the answer.
func signedAs(t *testing.T, req *http.Request, key, secret string) (int, string) {
	t.Helper()
	var body []byte
	if req.Body != nil {
		body, _ = io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
	}
	h := sha256.Sum256(body)
	req.Header.Set("X-Amz-Content-Sha256", hex.EncodeToString(h[:]))
	req = signer.SignV4(*req, key, secret, "", "us-east-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestS3TwoUsers plays alice against bob through the S3 gateway: every
// way to read, list, copy, overwrite, delete or take over bob's buckets,
// objects and multipart uploads is refused, leaks nothing, and changes
// nothing; then bob finishes his upload and reads everything back intact.
func TestS3TwoUsers(t *testing.T) {
	c, root := startLocalUsers(t)
	ctx := context.Background()
	alice := userClient(t, c.s3Host, aliceKey, aliceToken)
	bob := userClient(t, c.s3Host, bobKey, bobToken)
	const bb, ab = "bob-bucket", "alice-bucket"
	for _, x := range []struct {
		c *minio.Core
		b string
	}{{bob, bb}, {alice, ab}} {
		if err := x.c.MakeBucket(ctx, x.b, minio.MakeBucketOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	secret := []byte("bob's secret bytes")
	if _, err := bob.PutObject(ctx, bb, "dir/secret.txt", bytes.NewReader(secret), int64(len(secret)), "", "", minio.PutObjectOptions{UserMetadata: map[string]string{"owner": "bob"}}); err != nil {
		t.Fatal(err)
	}
	// Bob's upload in flight: part 1 of 5 MiB.
	part1 := testutil.RandBytes(5 << 20)
	bobUp, err := bob.NewMultipartUpload(ctx, bb, "big.bin", minio.PutObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bp1, err := bob.PutObjectPart(ctx, bb, "big.bin", bobUp, 1, bytes.NewReader(part1), int64(len(part1)), minio.PutObjectPartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// A shared bucket (the superuser's, open to all) with bob's private
	// directory in it: a bucket open to alice does not open bob's keys.
	if _, err := root.Mkdir(ctx, "/team", sdk.MkdirOptions{Mode: 0o777}); err != nil {
		t.Fatal(err)
	}
	if _, err := root.Mkdir(sdk.AsUser(ctx, bobKey), "/team/bob", sdk.MkdirOptions{Mode: 0o700}); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.PutObject(ctx, "team", "bob/plan.txt", bytes.NewReader(secret), int64(len(secret)), "", "", minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	// Bob's upload in his private directory of the shared bucket.
	if _, err := bob.NewMultipartUpload(ctx, "team", "bob/inflight", minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	// Alice's own upload, to try to splice bob's bytes into.
	aliceUp, err := alice.NewMultipartUpload(ctx, ab, "mine.bin", minio.PutObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, root)

	// Each attack must fail with one of the codes given; its error must not
	// carry bob's bytes or key names beyond the one the request named.
	type attack struct {
		name  string
		codes []string
		do    func() error
	}
	denied := []string{"AccessDenied"}
	raw := func(method, path, body string, hdr map[string]string) func() error {
		return func() error {
			req, _ := http.NewRequest(method, c.s3+path, strings.NewReader(body))
			for k, v := range hdr {
				req.Header.Set(k, v)
			}
			code, out := signedAs(t, req, aliceKey, aliceToken)
			if code < 300 {
				return nil
			}
			if strings.Contains(out, string(secret)) || strings.Contains(out, "plan.txt") && !strings.Contains(path, "plan.txt") {
				t.Errorf("%s %s: the refusal leaks bob's data: %s", method, path, out)
			}
			return minio.ErrorResponse{Code: xmlCode(out), StatusCode: code, Message: out}
		}
	}
	read := func(b, k string, o minio.GetObjectOptions) func() error {
		return func() error {
			r, _, _, err := alice.GetObject(ctx, b, k, o)
			if err != nil {
				return err
			}
			got, err := io.ReadAll(r)
			r.Close()
			if len(got) > 0 {
				t.Errorf("alice read %d bytes of %s/%s", len(got), b, k)
			}
			return err
		}
	}
	bobPart := func(n int) func() error {
		return func() error {
			_, err := alice.PutObjectPart(ctx, bb, "big.bin", bobUp, n, bytes.NewReader([]byte("alice's bytes")), 13, minio.PutObjectPartOptions{})
			return err
		}
	}
	attacks := []attack{
		// Buckets.
		{"list buckets shows bob's", nil, func() error {
			bs, err := alice.ListBuckets(ctx)
			for _, b := range bs {
				if b.Name == bb {
					return fmt.Errorf("alice's ListBuckets shows %s", bb)
				}
			}
			if err != nil {
				return err
			}
			return errRefused
		}},
		{"head bob's bucket", []string{"AccessDenied", "Forbidden"}, func() error { _, err := alice.BucketExists(ctx, bb); return err }},
		{"create bob's bucket", []string{"BucketAlreadyExists"}, func() error { return alice.MakeBucket(ctx, bb, minio.MakeBucketOptions{}) }},
		{"delete bob's bucket", denied, func() error { return alice.RemoveBucket(ctx, bb) }},
		{"bob's bucket location", denied, raw("GET", "/"+bb+"?location", "", nil)},
		{"bob's bucket ACL", denied, raw("GET", "/"+bb+"?acl", "", nil)},
		{"set bob's bucket ACL", denied, raw("PUT", "/"+bb+"?acl", "", map[string]string{"x-amz-acl": "private"})},
		// Listings.
		{"list v1", denied, func() error { _, err := alice.ListObjects(bb, "", "", "", 100); return err }},
		{"list v2", denied, func() error { _, err := alice.ListObjectsV2(bb, "", "", "", "", 100); return err }},
		{"list with max-keys 0", denied, raw("GET", "/"+bb+"?list-type=2&max-keys=0", "", nil)},
		{"bob's bucket versioning", denied, raw("GET", "/"+bb+"?versioning", "", nil)},
		{"list versions", denied, raw("GET", "/"+bb+"?versions", "", nil)},
		{"list bob's private prefix in a shared bucket", denied, func() error { _, err := alice.ListObjectsV2("team", "bob/", "", "", "", 100); return err }},
		{"list the shared bucket recursively", denied, func() error { _, err := alice.ListObjectsV2("team", "", "", "", "", 100); return err }},
		// Reads.
		{"get", denied, read(bb, "dir/secret.txt", minio.GetObjectOptions{})},
		{"get a range", denied, func() error {
			o := minio.GetObjectOptions{}
			_ = o.SetRange(0, 3)
			return read(bb, "dir/secret.txt", o)()
		}},
		{"get part 1", denied, raw("GET", "/"+bb+"/dir/secret.txt?partNumber=1", "", nil)},
		{"head", denied, func() error {
			_, err := alice.StatObject(ctx, bb, "dir/secret.txt", minio.StatObjectOptions{})
			return err
		}},
		{"attributes", denied, raw("GET", "/"+bb+"/dir/secret.txt?attributes", "", map[string]string{"x-amz-object-attributes": "ETag,ObjectSize"})},
		{"object ACL", denied, raw("GET", "/"+bb+"/dir/secret.txt?acl", "", nil)},
		{"get in bob's private directory of a shared bucket", denied, read("team", "bob/plan.txt", minio.GetObjectOptions{})},
		{"presigned get", denied, func() error {
			u, err := alice.PresignedGetObject(ctx, bb, "dir/secret.txt", time.Minute, nil)
			if err != nil {
				return err
			}
			resp, err := http.Get(u.String())
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode < 300 {
				t.Errorf("alice's presigned URL read %q", b)
				return nil
			}
			return minio.ErrorResponse{Code: xmlCode(string(b)), StatusCode: resp.StatusCode}
		}},
		// Copies: bob's bytes into alice's bucket or upload.
		{"copy bob's object to alice's bucket", denied, func() error {
			_, err := alice.CopyObject(ctx, bb, "dir/secret.txt", ab, "stolen", nil, minio.CopySrcOptions{Bucket: bb, Object: "dir/secret.txt"}, minio.PutObjectOptions{})
			return err
		}},
		{"copy bob's object as a part of alice's upload", denied, func() error {
			_, err := alice.CopyObjectPart(ctx, bb, "dir/secret.txt", ab, "mine.bin", aliceUp, 1, 0, -1, nil)
			return err
		}},
		// Writes and deletes.
		{"overwrite", denied, func() error {
			_, err := alice.PutObject(ctx, bb, "dir/secret.txt", strings.NewReader("x"), 1, "", "", minio.PutObjectOptions{})
			return err
		}},
		{"write a new key", denied, func() error {
			_, err := alice.PutObject(ctx, bb, "planted", strings.NewReader("x"), 1, "", "", minio.PutObjectOptions{})
			return err
		}},
		{"write in bob's private directory of a shared bucket", denied, func() error {
			_, err := alice.PutObject(ctx, "team", "bob/planted", strings.NewReader("x"), 1, "", "", minio.PutObjectOptions{})
			return err
		}},
		{"copy onto bob's object", denied, func() error {
			if _, err := alice.PutObject(ctx, ab, "src", strings.NewReader("y"), 1, "", "", minio.PutObjectOptions{}); err != nil {
				return err
			}
			_, err := alice.CopyObject(ctx, ab, "src", bb, "dir/secret.txt", nil, minio.CopySrcOptions{Bucket: ab, Object: "src"}, minio.PutObjectOptions{})
			return err
		}},
		{"delete", denied, func() error {
			if err := alice.RemoveObject(ctx, bb, "dir/secret.txt", minio.RemoveObjectOptions{}); err != nil {
				return err
			}
			return nil
		}},
		{"delete in bob's private directory of a shared bucket", denied, func() error {
			return alice.RemoveObject(ctx, "team", "bob/plan.txt", minio.RemoveObjectOptions{})
		}},
		{"multi-object delete", denied, func() error {
			body := `<Delete><Object><Key>dir/secret.txt</Key></Object><Object><Key>big.bin</Key></Object></Delete>`
			req, _ := http.NewRequest("POST", c.s3+"/"+bb+"?delete", strings.NewReader(body))
			req.Header.Set("Content-Md5", md5B64(body))
			code, out := signedAs(t, req, aliceKey, aliceToken)
			if code < 300 && !strings.Contains(out, "<Deleted>") {
				// Refused key by key (S3 answers 200 with an <Error> each).
				return minio.ErrorResponse{Code: xmlCode(out), StatusCode: code}
			}
			return minio.ErrorResponse{Code: xmlCode(out), StatusCode: code, Message: out}
		}},
		{"set bob's object ACL", denied, raw("PUT", "/"+bb+"/dir/secret.txt?acl", "", map[string]string{"x-amz-acl": "private"})},
		// Bob's multipart upload.
		{"list uploads of bob's bucket", denied, func() error {
			_, err := alice.ListMultipartUploads(ctx, bb, "", "", "", "", 100)
			return err
		}},
		{"list uploads of the shared bucket shows bob's", nil, func() error {
			r, err := alice.ListMultipartUploads(ctx, "team", "", "", "", "", 100)
			if err != nil {
				return err
			}
			if len(r.Uploads) > 0 {
				return fmt.Errorf("alice lists %d uploads of others: %+v", len(r.Uploads), r.Uploads)
			}
			return errRefused
		}},
		{"list parts of bob's upload", []string{"AccessDenied", "NoSuchUpload"}, func() error {
			_, err := alice.ListObjectParts(ctx, bb, "big.bin", bobUp, 0, 100)
			return err
		}},
		{"replace part 1 of bob's upload", []string{"AccessDenied", "NoSuchUpload"}, bobPart(1)},
		{"add part 2 to bob's upload", []string{"AccessDenied", "NoSuchUpload"}, bobPart(2)},
		{"complete bob's upload", []string{"AccessDenied", "NoSuchUpload"}, func() error {
			_, err := alice.CompleteMultipartUpload(ctx, bb, "big.bin", bobUp, []minio.CompletePart{{PartNumber: 1, ETag: bp1.ETag}}, minio.PutObjectOptions{})
			return err
		}},
		{"abort bob's upload", []string{"AccessDenied", "NoSuchUpload"}, func() error { return alice.AbortMultipartUpload(ctx, bb, "big.bin", bobUp) }},
		{"bob's upload id with alice's bucket and key", []string{"NoSuchUpload", "AccessDenied"}, func() error {
			_, err := alice.PutObjectPart(ctx, ab, "mine.bin", bobUp, 1, strings.NewReader("z"), 1, minio.PutObjectPartOptions{})
			return err
		}},
		{"begin an upload in bob's bucket", denied, func() error {
			_, err := alice.NewMultipartUpload(ctx, bb, "x", minio.PutObjectOptions{})
			return err
		}},
		{"begin an upload in bob's private directory of a shared bucket", denied, func() error {
			_, err := alice.NewMultipartUpload(ctx, "team", "bob/x", minio.PutObjectOptions{})
			return err
		}},
		// Alice's own resources are bounded: 12 MiB staged at most.
		{"stage more than the per-user bound", []string{"XAlluviumStagedBytesExceeded"}, func() error {
			big := testutil.RandBytes(5 << 20)
			for n := 1; n <= 3; n++ {
				if _, err := alice.PutObjectPart(ctx, ab, "mine.bin", aliceUp, n, bytes.NewReader(big), int64(len(big)), minio.PutObjectPartOptions{}); err != nil {
					return err
				}
			}
			return nil
		}},
	}
	failed := 0
	for _, a := range attacks {
		err := a.do()
		switch {
		case err == errRefused:
			// A check that answered by itself (what a listing shows).
			continue
		case err == nil:
			t.Errorf("attack %q succeeded", a.name)
		case len(a.codes) > 0 && !contains(a.codes, errCode(err)):
			t.Errorf("attack %q: %v (code %q), want one of %v", a.name, err, errCode(err), a.codes)
		default:
			continue
		}
		failed++
	}
	t.Logf("%d attacks by alice on bob's S3 data: %d refused, %d not", len(attacks), len(attacks)-failed, failed)
	if after := snapshot(t, root); after != before {
		t.Errorf("the attacks changed bob's data:\nbefore %s\nafter  %s", before, after)
	}
	// Bob's things are intact and his: he reads his object, completes his
	// upload with the part he sent, and reads it back.
	r, _, _, err := bob.GetObject(ctx, bb, "dir/secret.txt", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(r)
	r.Close()
	if !bytes.Equal(got, secret) {
		t.Fatalf("bob's object now holds %q", got)
	}
	if _, err := bob.CompleteMultipartUpload(ctx, bb, "big.bin", bobUp, []minio.CompletePart{{PartNumber: 1, ETag: bp1.ETag}}, minio.PutObjectOptions{}); err != nil {
		t.Fatalf("bob completes his upload: %v", err)
	}
	r, _, _, err = bob.GetObject(ctx, bb, "big.bin", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, _ = io.ReadAll(r)
	r.Close()
	if !bytes.Equal(got, part1) {
		t.Fatalf("bob's completed upload has %d bytes, want his %d", len(got), len(part1))
	}
	// Objects are private to their owner: mode 0600 in a 0700 bucket.
	info, err := root.Stat(ctx, "/"+bb+"/dir/secret.txt")
	if err != nil || info.GetOwner() != bobKey || info.GetMode() != 0o600 {
		t.Fatalf("bob's object: owner %q mode %o (%v), want bob 0600", info.GetOwner(), info.GetMode(), err)
	}
	if b, err := root.Stat(ctx, "/"+bb); err != nil || b.GetOwner() != bobKey || b.GetMode() != 0o700 {
		t.Fatalf("bob's bucket: owner %q mode %o (%v), want bob 0700", b.GetOwner(), b.GetMode(), err)
	}
}

var errRefused = fmt.Errorf("refused")

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// xmlCode returns the <Code> of an S3 error document.
func xmlCode(body string) string {
	_, rest, ok := strings.Cut(body, "<Code>")
	if !ok {
		return ""
	}
	code, _, _ := strings.Cut(rest, "</Code>")
	return code
}

func md5B64(s string) string {
	h := md5.Sum([]byte(s))
	return base64.StdEncoding.EncodeToString(h[:])
}

// snapshot renders what bob has: every file under his bucket and his
// directory of the shared bucket (path, id, length, xattrs) and his
// uploads with their parts.
func snapshot(t *testing.T, c *sdk.Client) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	for _, dir := range []string{"/bob-bucket", "/team/bob"} {
		for fi, err := range c.List(ctx, dir, sdk.ListOptions{Recursive: true, XAttrs: []string{"s3"}}) {
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "%s id=%d len=%d s3=%s; ", fi.GetPath(), fi.GetFileId(), fi.GetLength(), fi.GetXattrs()["s3"])
		}
	}
	ups, err := c.Uploads(ctx, "/")
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range ups {
		if u.GetOwner() != bobKey {
			continue
		}
		_, parts, err := c.UploadParts(ctx, u.GetPath(), u.GetFileId())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "upload %s id=%d:", u.GetPath(), u.GetFileId())
		for _, p := range parts {
			fmt.Fprintf(&b, " %d@%d+%d", p.GetPartNumber(), p.GetFirstBlock(), p.GetLength())
		}
		b.WriteString("; ")
	}
	return b.String()
}
