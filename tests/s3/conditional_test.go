package s3

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/signer"

	"github.com/alluvium/alluvium/internal/testutil"
)

// TestConditionalWrites covers what ceph/s3-tests cannot send with
// Debian's botocore: PUT and CompleteMultipartUpload with If-Match and
// If-None-Match, DeleteObject(s) with their conditions, and a write whose
// condition held when it began but not when it completed.
func TestConditionalWrites(t *testing.T) {
	c := startLocal(t)
	mc := minioClient(t, c.s3Host, token)
	core := &minio.Core{Client: mc}
	ctx := context.Background()
	const bucket = "cond"
	if err := mc.MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	put := func(key, body string, set func(*minio.PutObjectOptions)) (string, error) {
		o := minio.PutObjectOptions{}
		if set != nil {
			set(&o)
		}
		info, err := mc.PutObject(ctx, bucket, key, strings.NewReader(body), int64(len(body)), o)
		return info.ETag, err
	}
	want := func(what string, err error, code string) {
		t.Helper()
		if got := errCode(err); got != code {
			t.Fatalf("%s: %v (code %q), want %s", what, err, got, code)
		}
	}
	// PUT.
	etagA, err := put("k", "A", func(o *minio.PutObjectOptions) { o.SetMatchETagExcept("*") })
	if err != nil {
		t.Fatalf("If-None-Match: * on a free key: %v", err)
	}
	_, err = put("k", "B", func(o *minio.PutObjectOptions) { o.SetMatchETagExcept("*") })
	want("If-None-Match: * on an object", err, "PreconditionFailed")
	_, err = put("k", "B", func(o *minio.PutObjectOptions) { o.SetMatchETagExcept(etagA) })
	want("If-None-Match: its ETag", err, "PreconditionFailed")
	_, err = put("k", "B", func(o *minio.PutObjectOptions) { o.SetMatchETag("badetag") })
	want("If-Match: another ETag", err, "PreconditionFailed")
	_, err = put("free", "B", func(o *minio.PutObjectOptions) { o.SetMatchETag("*") })
	want("If-Match: * on a free key", err, "NoSuchKey")
	etagB, err := put("k", "B", func(o *minio.PutObjectOptions) { o.SetMatchETag(etagA) })
	if err != nil {
		t.Fatalf("If-Match: its ETag: %v", err)
	}
	if _, err := put("k", "C", func(o *minio.PutObjectOptions) { o.SetMatchETagExcept("badetag") }); err != nil {
		t.Fatalf("If-None-Match: another ETag: %v", err)
	}
	_ = etagB

	// The condition is checked again as the write completes: a PUT whose
	// If-Match held when it began fails if the object changed meanwhile.
	// The PUT asks for 100 Continue, which the gateway sends once it has
	// checked the condition and begun the write; only then does the other
	// write replace the object, and only then does the body follow.
	etagC, _ := put("race", "C", nil)
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("PUT", c.s3+"/"+bucket+"/race", pr)
	req.ContentLength = 1 << 20
	req.Header.Set("If-Match", `"`+etagC+`"`)
	req.Header.Set("Expect", "100-continue")
	req.Header.Set("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD")
	req = signer.SignV4(*req, "tester", token, "", "us-east-1")
	checked := make(chan struct{})
	req = req.WithContext(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{Got100Continue: func() { close(checked) }}))
	done := make(chan *http.Response, 1)
	go func() {
		tr := &http.Transport{ExpectContinueTimeout: time.Minute}
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			t.Error(err)
			close(done)
			return
		}
		done <- resp
	}()
	<-checked
	if _, err := put("race", "D", nil); err != nil {
		t.Fatal(err)
	}
	go func() { pw.Write(testutil.RandBytes(1 << 20)); pw.Close() }()
	resp := <-done
	if resp == nil {
		t.FailNow()
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPreconditionFailed || xmlCode(string(b)) != "PreconditionFailed" {
		t.Fatalf("If-Match that held at the start, not at completion: %d %s", resp.StatusCode, b)
	}
	if got := get(t, mc, bucket, "race"); got != "D" {
		t.Fatalf("after the failed conditional write the object holds %q, want D", got)
	}

	// CompleteMultipartUpload.
	complete := func(key string, hdr map[string]string) error {
		id, err := core.NewMultipartUpload(ctx, bucket, key, minio.PutObjectOptions{})
		if err != nil {
			return err
		}
		p, err := core.PutObjectPart(ctx, bucket, key, id, 1, strings.NewReader("mp"), 2, minio.PutObjectPartOptions{})
		if err != nil {
			return err
		}
		body := fmt.Sprintf(`<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>%s</ETag></Part></CompleteMultipartUpload>`, p.ETag)
		req, _ := http.NewRequest("POST", c.s3+"/"+bucket+"/"+key+"?uploadId="+id, strings.NewReader(body))
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		code, out := signedDo(t, req, token)
		if code >= 300 || strings.Contains(out, "<Error>") {
			return minio.ErrorResponse{Code: xmlCode(out), StatusCode: code, Message: out}
		}
		return nil
	}
	want("complete with If-None-Match: * on an object", complete("k", map[string]string{"If-None-Match": "*"}), "PreconditionFailed")
	want("complete with If-Match: * on a free key", complete("mp-free", map[string]string{"If-Match": "*"}), "NoSuchKey")
	if err := complete("mp-free", map[string]string{"If-None-Match": "*"}); err != nil {
		t.Fatalf("complete with If-None-Match: * on a free key: %v", err)
	}
	etagK := stat(t, mc, bucket, "k")
	want("complete with If-Match: another ETag", complete("k", map[string]string{"If-Match": `"bad"`}), "PreconditionFailed")
	if err := complete("k", map[string]string{"If-Match": `"` + etagK + `"`}); err != nil {
		t.Fatalf("complete with If-Match: its ETag: %v", err)
	}

	// DeleteObject.
	del := func(key string, hdr map[string]string) (int, string) {
		req, _ := http.NewRequest("DELETE", c.s3+"/"+bucket+"/"+key, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		return signedDo(t, req, token)
	}
	etag, _ := put("d", "data", nil)
	st, err := mc.StatObject(ctx, bucket, "d", minio.StatObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []map[string]string{
		{"If-Match": `"badetag"`},
		{"x-amz-if-match-size": "5"},
		{"x-amz-if-match-last-modified-time": st.LastModified.Add(-3600e9).UTC().Format(http.TimeFormat)},
	} {
		if code, out := del("d", h); code != http.StatusPreconditionFailed || xmlCode(out) != "PreconditionFailed" {
			t.Fatalf("delete with %v: %d %s, want 412 PreconditionFailed", h, code, out)
		}
	}
	if code, out := del("d", map[string]string{"If-Match": `"` + etag + `"`, "x-amz-if-match-size": "4",
		"x-amz-if-match-last-modified-time": st.LastModified.UTC().Format(http.TimeFormat)}); code != http.StatusNoContent {
		t.Fatalf("delete with conditions that hold: %d %s", code, out)
	}
	if code, _ := del("d", map[string]string{"If-Match": `"badetag"`}); code != http.StatusNoContent {
		t.Fatalf("a conditional delete of a missing key: %d, want 204 (S3)", code)
	}
	// DeleteObjects.
	etag, _ = put("m1", "m1", nil)
	put("m2", "m2", nil)
	body := fmt.Sprintf(`<Delete><Object><Key>m1</Key><ETag>%s</ETag></Object><Object><Key>m2</Key><ETag>badetag</ETag></Object><Object><Key>m2</Key><Size>9</Size></Object></Delete>`, etag)
	req, _ = http.NewRequest("POST", c.s3+"/"+bucket+"?delete", strings.NewReader(body))
	req.Header.Set("Content-Md5", md5B64(body))
	code, out := signedDo(t, req, token)
	if code != 200 || !strings.Contains(out, "<Deleted><Key>m1</Key>") || strings.Count(out, "<Code>PreconditionFailed</Code>") != 2 {
		t.Fatalf("DeleteObjects with conditions: %d %s", code, out)
	}
	if get(t, mc, bucket, "m2") != "m2" {
		t.Fatal("m2 was deleted although its conditions did not hold")
	}
}

// TestListBucketsPages: ListBuckets with max-buckets pages with
// continuation tokens and lists only the caller's buckets.
func TestListBucketsPages(t *testing.T) {
	c, _ := startLocalUsers(t)
	alice := userClient(t, c.s3Host, aliceKey, aliceToken)
	bob := userClient(t, c.s3Host, bobKey, bobToken)
	ctx := context.Background()
	for _, b := range []string{"a-one", "a-three", "a-two"} {
		if err := alice.MakeBucket(ctx, b, minio.MakeBucketOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := bob.MakeBucket(ctx, "b-bob", minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	var names []string
	tok := ""
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("ListBuckets does not end")
		}
		u := c.s3 + "/?max-buckets=2"
		if tok != "" {
			u += "&continuation-token=" + tok
		}
		req, _ := http.NewRequest("GET", u, nil)
		code, out := signedAs(t, req, aliceKey, aliceToken)
		if code != 200 {
			t.Fatalf("ListBuckets: %d %s", code, out)
		}
		for _, part := range strings.Split(out, "<Name>")[1:] {
			name, _, _ := strings.Cut(part, "</Name>")
			names = append(names, name)
		}
		_, rest, ok := strings.Cut(out, "<ContinuationToken>")
		if !ok {
			break
		}
		tok, _, _ = strings.Cut(rest, "</ContinuationToken>")
	}
	if got := strings.Join(names, ","); got != "a-one,a-three,a-two" {
		t.Fatalf("alice's buckets in pages of 2: %s", got)
	}
}

func get(t *testing.T, mc *minio.Client, bucket, key string) string {
	t.Helper()
	o, err := mc.GetObject(context.Background(), bucket, key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	b, err := io.ReadAll(o)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	return string(b)
}

func stat(t *testing.T, mc *minio.Client, bucket, key string) string {
	t.Helper()
	st, err := mc.StatObject(context.Background(), bucket, key, minio.StatObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return st.ETag
}
