package s3

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/signer"
)

func minioClient(t *testing.T, endpoint, secret string) *minio.Client {
	t.Helper()
	mc, err := minio.New(endpoint, &minio.Options{Creds: credentials.NewStaticV4("tester", secret, ""), Secure: false, Region: "us-east-1",
		BucketLookup: minio.BucketLookupPath})
	if err != nil {
		t.Fatal(err)
	}
	return mc
}

func errCode(err error) string {
	return minio.ToErrorResponse(err).Code
}

// refList is S3's listing of keys, computed the obvious way: sorted keys
// after `after` with the prefix, those with the delimiter past the prefix
// rolled into common prefixes (marked with a leading "CP:").
func refList(keys []string, prefix, delim, after string) []string {
	sorted := append([]string(nil), keys...)
	sort.Strings(sorted)
	var out []string
	last := ""
	for _, k := range sorted {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		if delim != "" {
			if i := strings.Index(k[len(prefix):], delim); i >= 0 {
				cp := k[:len(prefix)+i+len(delim)]
				if cp != last && cp > after {
					out = append(out, "CP:"+cp)
				}
				last = cp
				continue
			}
		}
		if k > after {
			out = append(out, k)
		}
	}
	return out
}

// TestListingMatchesS3 puts keys whose S3 order differs from a directory
// walk's ("a-b" < "a/b" < "a0"), and checks every listing — v1 and v2,
// with and without delimiters, prefixes, start-after, and pages of every
// size — against S3's rules.
func TestListingMatchesS3(t *testing.T) {
	c := startLocal(t)
	mc := minioClient(t, c.s3Host, token)
	core := &minio.Core{Client: mc}
	ctx := context.Background()
	const bucket = "listing"
	if err := mc.MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	// ("a" and "a/b" cannot both be: a file is not a directory.)
	keys := []string{"a-b", "a.c", "a/b", "a/c/d", "a/c-e", "a0", "a!x/y", "b/x", "dir/sub/deep/f", "dir/sub/g",
		"dir/sub0", "dir/sub-1/h", "sp ace/ünï", "z", "zz/zz/zz", "plus+sign", "empty/"}
	for _, k := range keys {
		if _, err := mc.PutObject(ctx, bucket, k, bytes.NewReader(nil), 0, minio.PutObjectOptions{}); err != nil {
			t.Fatalf("put %q: %v", k, err)
		}
	}
	type q struct{ prefix, delim, after string }
	queries := []q{{"", "", ""}, {"", "/", ""}, {"a", "/", ""}, {"a/", "/", ""}, {"a/", "", ""}, {"dir/", "/", ""},
		{"dir/sub", "/", ""}, {"dir/sub", "", ""}, {"", "", "a/b"}, {"", "/", "a"}, {"", "/", "a/"}, {"", "", "dir/sub/deep/f"},
		{"", "-", ""}, {"a", "-", ""}, {"nope", "/", ""}, {"dir/sub/", "/", ""}, {"empty/", "/", ""}, {"", "/", "zz/"}}
	for _, qq := range queries {
		want := refList(keys, qq.prefix, qq.delim, qq.after)
		for _, page := range []int{1, 2, 3, 1000} {
			// v2, following continuation tokens.
			var got []string
			token := ""
			for i := 0; ; i++ {
				if i > 100 {
					t.Fatalf("v2 %+v page %d: no end", qq, page)
				}
				res, err := core.ListObjectsV2(bucket, qq.prefix, qq.after, token, qq.delim, page)
				if err != nil {
					t.Fatalf("v2 %+v: %v", qq, err)
				}
				for _, o := range res.Contents {
					got = append(got, o.Key)
				}
				for _, p := range res.CommonPrefixes {
					got = append(got, "CP:"+p.Prefix)
				}
				if len(res.Contents)+len(res.CommonPrefixes) > page {
					t.Fatalf("v2 %+v: %d entries in a page of %d", qq, len(res.Contents)+len(res.CommonPrefixes), page)
				}
				if !res.IsTruncated {
					break
				}
				token = res.NextContinuationToken
			}
			sortEntries(got)
			if strings.Join(got, "|") != strings.Join(want, "|") {
				t.Fatalf("v2 %+v page %d:\n got %q\nwant %q", qq, page, got, want)
			}
			// v1, following markers.
			got = nil
			marker := qq.after
			for i := 0; ; i++ {
				if i > 100 {
					t.Fatalf("v1 %+v: no end", qq)
				}
				res, err := core.ListObjects(bucket, qq.prefix, marker, qq.delim, page)
				if err != nil {
					t.Fatalf("v1 %+v: %v", qq, err)
				}
				last := ""
				for _, o := range res.Contents {
					got = append(got, o.Key)
					last = max(last, o.Key)
				}
				for _, p := range res.CommonPrefixes {
					got = append(got, "CP:"+p.Prefix)
					last = max(last, p.Prefix)
				}
				if !res.IsTruncated {
					break
				}
				marker = res.NextMarker
				if marker == "" {
					marker = last
				}
			}
			sortEntries(got)
			if strings.Join(got, "|") != strings.Join(want, "|") {
				t.Fatalf("v1 %+v page %d:\n got %q\nwant %q", qq, page, got, want)
			}
		}
	}
	// The high-level iterator (what most Go programs use), recursive.
	var all []string
	for o := range mc.ListObjects(ctx, bucket, minio.ListObjectsOptions{Recursive: true, MaxKeys: 4}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		all = append(all, o.Key)
	}
	sorted := append([]string(nil), keys...)
	sort.Strings(sorted)
	if strings.Join(all, "|") != strings.Join(sorted, "|") {
		t.Fatalf("ListObjects recursive, in order:\n got %q\nwant %q", all, sorted)
	}
}

// sortEntries orders a listing the way S3 interleaves keys and prefixes.
func sortEntries(e []string) {
	sort.Slice(e, func(i, j int) bool { return strings.TrimPrefix(e[i], "CP:") < strings.TrimPrefix(e[j], "CP:") })
}

// TestS3API checks the API corners with minio-go: errors and their
// codes, metadata, conditional and range requests, copies, batch delete,
// checksums, streaming-signed uploads, presigned URLs, and the gateway on
// the REST port.
func TestS3API(t *testing.T) {
	c := startLocal(t)
	mc := minioClient(t, c.s3Host, token)
	ctx := context.Background()
	const bucket = "api-bucket"
	if err := mc.MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	// Re-creating one's own bucket succeeds in us-east-1, as on AWS.
	if err := mc.MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("second MakeBucket of one's own bucket (us-east-1): %v", err)
	}
	if err := mc.MakeBucket(ctx, "Bad_Name", minio.MakeBucketOptions{}); err == nil {
		t.Fatal("MakeBucket Bad_Name succeeded")
	}
	if ok, err := mc.BucketExists(ctx, bucket); err != nil || !ok {
		t.Fatalf("BucketExists: %v %v", ok, err)
	}
	if ok, err := mc.BucketExists(ctx, "no-such-bucket"); err != nil || ok {
		t.Fatalf("BucketExists(no-such-bucket): %v %v", ok, err)
	}
	req, _ := http.NewRequest("GET", c.s3+"/no-such-bucket/k", nil)
	if code, body := signedDo(t, req, token); code != 404 || !strings.Contains(body, "<Code>NoSuchBucket</Code>") {
		t.Fatalf("GET in a missing bucket: %d %s", code, body)
	}
	req, _ = http.NewRequest("GET", c.s3+"/"+bucket+"/no/such/key", nil)
	if code, body := signedDo(t, req, token); code != 404 || !strings.Contains(body, "<Code>NoSuchKey</Code>") || !strings.Contains(body, "<Key>no/such/key</Key>") {
		t.Fatalf("GET of a missing key: %d %s", code, body)
	}
	if _, err := mc.PutObject(ctx, "no-such-bucket", "k", bytes.NewReader([]byte("x")), 1, minio.PutObjectOptions{}); errCode(err) != "NoSuchBucket" {
		t.Fatalf("PutObject to a missing bucket: %v", err)
	}

	// A 40 MiB upload: minio-go signs its chunks (STREAMING-AWS4-HMAC-SHA256-PAYLOAD over http).
	big := make([]byte, 40<<20+3)
	_, _ = rand.Read(big)
	info, err := mc.PutObject(ctx, bucket, "big/object.bin", bytes.NewReader(big), int64(len(big)), minio.PutObjectOptions{
		ContentType: "application/x-test", UserMetadata: map[string]string{"Color": "blue"}, PartSize: 64 << 20, DisableMultipart: true})
	if err != nil {
		t.Fatal(err)
	}
	sum := md5.Sum(big)
	if info.ETag != hex.EncodeToString(sum[:]) {
		t.Fatalf("PutObject ETag %q, want the MD5 %x", info.ETag, sum)
	}
	st, err := mc.StatObject(ctx, bucket, "big/object.bin", minio.StatObjectOptions{})
	if err != nil || st.Size != int64(len(big)) || st.ETag != info.ETag || st.ContentType != "application/x-test" || st.UserMetadata["Color"] != "blue" {
		t.Fatalf("StatObject = %+v, %v", st, err)
	}
	obj, err := mc.GetObject(ctx, bucket, "big/object.bin", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(obj)
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("GetObject: %d bytes, %v", len(got), err)
	}
	// Range, and a range past the end.
	ro := minio.GetObjectOptions{}
	_ = ro.SetRange(1000, 1999)
	obj, _ = mc.GetObject(ctx, bucket, "big/object.bin", ro)
	if got, err := io.ReadAll(obj); err != nil || !bytes.Equal(got, big[1000:2000]) {
		t.Fatalf("range GetObject: %d bytes, %v", len(got), err)
	}
	req, _ = http.NewRequest("GET", c.s3+"/"+bucket+"/big/object.bin", nil)
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-", len(big)+10))
	if code, body := signedDo(t, req, token); code != 416 || !strings.Contains(body, "InvalidRange") {
		t.Fatalf("range past the end: %d %s", code, body)
	}
	// Conditional GET: a matching If-None-Match is 304, a failing If-Match 412.
	co := minio.GetObjectOptions{}
	_ = co.SetMatchETagExcept(info.ETag)
	if _, err := mc.StatObject(ctx, bucket, "big/object.bin", minio.StatObjectOptions(co)); err == nil {
		t.Fatal("If-None-Match with the ETag did not fail")
	}
	co = minio.GetObjectOptions{}
	_ = co.SetMatchETag("0123")
	if _, err := mc.StatObject(ctx, bucket, "big/object.bin", minio.StatObjectOptions(co)); errCode(err) != "PreconditionFailed" {
		t.Fatalf("If-Match another ETag: %v", err)
	}

	// Checksums sent as trailers (aws-chunked) are verified and echoed.
	small := []byte("checksummed contents")
	tmc, err := minio.New(c.s3Host, &minio.Options{Creds: credentials.NewStaticV4("tester", token, ""), Region: "us-east-1",
		BucketLookup: minio.BucketLookupPath, TrailingHeaders: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, ck := range []minio.ChecksumType{minio.ChecksumCRC32C, minio.ChecksumCRC64NVME, minio.ChecksumSHA256} {
		up, err := tmc.PutObject(ctx, bucket, "ck/"+ck.String(), bytes.NewReader(small), int64(len(small)), minio.PutObjectOptions{Checksum: ck})
		if err != nil {
			t.Fatalf("PutObject with %s: %v", ck, err)
		}
		if up.ChecksumCRC32C == "" && up.ChecksumCRC64NVME == "" && up.ChecksumSHA256 == "" {
			t.Fatalf("PutObject with %s: no checksum echoed: %+v", ck, up)
		}
	}
	// A wrong Content-MD5 is BadDigest and writes nothing.
	req, _ = http.NewRequest("PUT", c.s3+"/"+bucket+"/bad-md5", strings.NewReader("abc"))
	req.Header.Set("Content-Md5", "AAAAAAAAAAAAAAAAAAAAAA==")
	if code, body := signedDo(t, req, token); code != 400 || !strings.Contains(body, "BadDigest") {
		t.Fatalf("bad Content-MD5: %d %s", code, body)
	}
	if _, err := mc.StatObject(ctx, bucket, "bad-md5", minio.StatObjectOptions{}); errCode(err) != "NoSuchKey" && errCode(err) != "NotFound" {
		t.Fatalf("bad-md5 object exists: %v", err)
	}
	// If-None-Match: * refuses to overwrite.
	req, _ = http.NewRequest("PUT", c.s3+"/"+bucket+"/ck/CRC32C", strings.NewReader("overwrite"))
	req.Header.Set("If-None-Match", "*")
	if code, body := signedDo(t, req, token); code != 412 {
		t.Fatalf("If-None-Match * over an object: %d %s", code, body)
	}

	// Copy, with metadata copied or replaced; copy onto itself only with REPLACE.
	if _, err := mc.CopyObject(ctx, minio.CopyDestOptions{Bucket: bucket, Object: "copy/one.bin"}, minio.CopySrcOptions{Bucket: bucket, Object: "big/object.bin"}); err != nil {
		t.Fatal(err)
	}
	st, err = mc.StatObject(ctx, bucket, "copy/one.bin", minio.StatObjectOptions{})
	if err != nil || st.Size != int64(len(big)) || st.ETag != info.ETag || st.UserMetadata["Color"] != "blue" {
		t.Fatalf("copy: %+v %v", st, err)
	}
	if _, err := mc.CopyObject(ctx, minio.CopyDestOptions{Bucket: bucket, Object: "copy/one.bin", ReplaceMetadata: true, UserMetadata: map[string]string{"Color": "red"}},
		minio.CopySrcOptions{Bucket: bucket, Object: "copy/one.bin"}); err != nil {
		t.Fatal(err)
	}
	if st, _ := mc.StatObject(ctx, bucket, "copy/one.bin", minio.StatObjectOptions{}); st.UserMetadata["Color"] != "red" {
		t.Fatalf("metadata after a REPLACE copy onto itself: %v", st.UserMetadata)
	}
	if _, err := mc.CopyObject(ctx, minio.CopyDestOptions{Bucket: bucket, Object: "copy/x"}, minio.CopySrcOptions{Bucket: bucket, Object: "missing"}); errCode(err) != "NoSuchKey" {
		t.Fatalf("copy of a missing key: %v", err)
	}

	// A folder marker is a directory; keys that are not paths are refused.
	if _, err := mc.PutObject(ctx, bucket, "folder/", bytes.NewReader(nil), 0, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(c.ufs, bucket, "folder")); err != nil || !st.IsDir() {
		t.Fatalf("folder marker in the UFS: %v", err)
	}
	for _, k := range []string{"a//b", "x/../y", "./z"} {
		if _, err := mc.PutObject(ctx, bucket, k, bytes.NewReader([]byte("x")), 1, minio.PutObjectOptions{}); err == nil {
			t.Fatalf("PutObject %q succeeded", k)
		}
	}

	// Batch delete; the bucket is not empty until everything is gone.
	if err := mc.RemoveBucket(ctx, bucket); errCode(err) != "BucketNotEmpty" {
		t.Fatalf("RemoveBucket non-empty: %v", err)
	}
	objs := make(chan minio.ObjectInfo)
	go func() {
		defer close(objs)
		for o := range mc.ListObjects(ctx, bucket, minio.ListObjectsOptions{Recursive: true}) {
			objs <- o
		}
	}()
	for e := range mc.RemoveObjects(ctx, bucket, objs, minio.RemoveObjectsOptions{}) {
		t.Fatalf("RemoveObjects: %v", e.Err)
	}
	if err := mc.RemoveBucket(ctx, bucket); err != nil {
		t.Fatalf("RemoveBucket after emptying: %v", err)
	}
	if _, err := os.Stat(filepath.Join(c.ufs, bucket)); !os.IsNotExist(err) {
		t.Fatalf("the bucket dir remains: %v", err)
	}

	// A presigned URL needs no client; a wrong secret and no signature are refused.
	if err := mc.MakeBucket(ctx, "presign", minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := mc.PutObject(ctx, "presign", "p.txt", strings.NewReader("presigned"), 9, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	u, err := mc.PresignedGetObject(ctx, "presign", "p.txt", time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(u.String())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "presigned" {
		t.Fatalf("presigned GET: %d %q", resp.StatusCode, b)
	}
	bad := minioClient(t, c.s3Host, "wrong")
	if _, err := bad.ListBuckets(ctx); errCode(err) != "SignatureDoesNotMatch" {
		t.Fatalf("wrong secret: %v", err)
	}
	resp, err = http.Get(c.s3 + "/presign/p.txt")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Fatalf("anonymous GET: %d", resp.StatusCode)
	}

	// The same gateway under /api/v1/s3/ on the REST port (the signature
	// covers the whole path).
	req, _ = http.NewRequest("GET", c.rest+"/api/v1/s3/", nil)
	if code, body := signedDo(t, req, token); code != 200 || !strings.Contains(body, "<Name>presign</Name>") {
		t.Fatalf("ListBuckets on the REST port: %d %s", code, body)
	}
	req, _ = http.NewRequest("PUT", c.rest+"/api/v1/s3/presign/via/rest.txt", strings.NewReader("hello"))
	if code, body := signedDo(t, req, token); code != 200 {
		t.Fatalf("PutObject on the REST port: %d %s", code, body)
	}
	obj, _ = mc.GetObject(ctx, "presign", "via/rest.txt", minio.GetObjectOptions{})
	if b, err := io.ReadAll(obj); err != nil || string(b) != "hello" {
		t.Fatalf("object put via the REST port: %q %v", b, err)
	}
	req, _ = http.NewRequest("GET", c.rest+"/api/v1/s3/presign/via/rest.txt", nil)
	if code, body := signedDo(t, req, "wrong"); code != 403 || !strings.Contains(body, "SignatureDoesNotMatch") {
		t.Fatalf("wrong secret on the REST port: %d %s", code, body)
	}

	// The REST API wants the cluster token.
	resp, err = http.Post(c.rest+"/api/v1/paths///list-status", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("REST without the token: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	req, _ = http.NewRequest("POST", c.rest+"/api/v1/paths///list-status", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("REST with the token: %d", resp.StatusCode)
	}
}

// signedDo signs req with SigV4 (access key "tester", secret) over its
// body's SHA-256 and returns the status and body of the answer.
func signedDo(t *testing.T, req *http.Request, secret string) (int, string) {
	t.Helper()
	var body []byte
	if req.Body != nil {
		body, _ = io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
	}
	h := sha256.Sum256(body)
	req.Header.Set("X-Amz-Content-Sha256", hex.EncodeToString(h[:]))
	req = signer.SignV4(*req, "tester", secret, "", "us-east-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
