package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"google.golang.org/grpc/codes"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/testutil"
	"github.com/alluvium/alluvium/sdk"
)

// TestBadNumbersAreRefused: a TTL whose end does not fit before the year
// 9999 (the 9223372036854775807 wrapped into the past, and the next
// TTL check deleted the file) and an int32 option beyond its range (the
// issue's replicationMax 10000000000 was stored as 1410065408) are refused
// with 400 naming them, through REST, the CLI and the SDK, and change
// nothing — while a TTL check runs and deletes a canary, so a stored bad
// TTL would have shown.
func TestBadNumbersAreRefused(t *testing.T) {
	c := startLocal(t, usersYAML, "ALLUVIUM_FSMASTER_TTL_CHECK_INTERVAL=200ms")
	ctx := context.Background()
	c.must(t, c.token, "fs", "mkdir", "-p", "/users/alice")
	c.must(t, c.token, "fs", "chown", "alice:alice", "/users/alice")
	alice := c.client(t, aliceToken)
	for _, p := range []string{"/users/alice/f", "/users/alice/canary"} {
		w, err := alice.Create(ctx, p, sdk.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte("bytes"))
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	before, err := alice.Stat(ctx, "/users/alice/f")
	if err != nil {
		t.Fatal(err)
	}
	refusals := 0
	bad := func(what string, st int, body []byte, words ...string) {
		t.Helper()
		if st != http.StatusBadRequest {
			t.Errorf("%s: %d %s; want 400", what, st, body)
			return
		}
		for _, w := range words {
			if !strings.Contains(string(body), w) {
				t.Errorf("%s: %s does not say %q", what, body, w)
				return
			}
		}
		refusals++
	}
	url := c.restURL("/users/alice/f", "set-attribute")
	for _, ttl := range []string{"9223372036854775807", "9223372036854775000", "253402300799999"} {
		st, b, _ := restCall(t, "POST", url, aliceToken, []byte(`{"ttl": `+ttl+`, "ttlAction": "DELETE"}`))
		bad("REST set-attribute ttl "+ttl, st, b, "ttl", "9999")
	}
	st, b, _ := restCall(t, "POST", url, aliceToken, []byte(`{"replicationMax": 10000000000}`))
	bad("REST set-attribute replicationMax 10000000000", st, b, "replicationMax", "2147483647")
	st, b, _ = restCall(t, "POST", url, aliceToken, []byte(`{"replicationMin": -5}`))
	bad("REST set-attribute replicationMin -5", st, b, "replicationMin")
	st, b, _ = restCall(t, "POST", c.restURL("/users/alice/g", "create-file"), aliceToken, []byte(`{"replicationMax": 10000000000}`))
	bad("REST create-file replicationMax 10000000000", st, b, "replicationMax")
	st, b, _ = restCall(t, "POST", c.restURL("/users/alice/g", "create-file"), aliceToken, []byte(`{"ttl": 9223372036854775807}`))
	bad("REST create-file ttl MaxInt64", st, b, "9999")
	st, b, _ = restCall(t, "GET", fmt.Sprintf("http://127.0.0.1:%d/api/v1/jobs?pageSize=10000000000", c.base+6), aliceToken, nil)
	bad("REST jobs pageSize 10000000000", st, b, "pageSize")
	if _, errOut, code := c.cli(t, aliceToken, "fs", "setTtl", "/users/alice/f", "9223372036854775807"); code != 1 || !strings.Contains(errOut, "9999") {
		t.Errorf("CLI setTtl MaxInt64: exit %d %q", code, errOut)
	} else {
		refusals++
	}
	if _, err := alice.Create(ctx, "/users/alice/g", sdk.CreateOptions{TTL: 1 << 62}); !isCode(err, codes.InvalidArgument) {
		t.Errorf("SDK create with ttl 2^62: %v", err)
	} else {
		refusals++
	}
	// A TTL check runs (the canary goes)...
	c.must(t, aliceToken, "fs", "setTtl", "/users/alice/canary", "1")
	testutil.Eventually(t, 30*time.Second, func() error {
		if _, err := alice.Stat(ctx, "/users/alice/canary"); err == nil {
			return errors.New("the canary is still there")
		}
		return nil
	})
	// ...and the file the refused TTLs named is as it was.
	after, err := alice.Stat(ctx, "/users/alice/f")
	if err != nil || after.GetTtl() != before.GetTtl() || after.GetReplicationMax() != before.GetReplicationMax() || after.GetReplicationMin() != before.GetReplicationMin() {
		t.Errorf("after the refused calls: %v (%v), before %v", after, err, before)
	}
	if _, err := alice.Stat(ctx, "/users/alice/g"); !isCode(err, codes.NotFound) {
		t.Errorf("a refused create made /users/alice/g: %v", err)
	}
	t.Logf("%d bad numbers refused", refusals)
}

// TestSlowBodiesAndBusyAnswers: a request body trickled a byte every
// half second — faster than any idle timeout would notice — is cut on the
// REST port and on the S3 port (proxy.body-read-timeout 2s here); and a
// limit reached (the per-user job bound) answers 429 with Retry-After.
func TestSlowBodiesAndBusyAnswers(t *testing.T) {
	c := startLocal(t, usersYAML, "ALLUVIUM_PROXY_BODY_READ_TIMEOUT=2s")
	ctx := context.Background()
	c.must(t, c.token, "fs", "mkdir", "-p", "/users/alice")
	c.must(t, c.token, "fs", "chown", "alice:alice", "/users/alice")

	// REST: a stream write whose body trickles.
	id := restStream(t, c, aliceToken, c.restURL("/users/alice/slow", "create-file"), nil)
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", c.base+6))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /api/v1/streams/%d/write HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n", id, aliceToken)
	cut := trickle(t, conn, 500*time.Millisecond, 2*time.Minute)
	if !strings.Contains(cut, "408") && cut != "closed" {
		t.Errorf("REST trickled body: the server answered %q; want 408 or the connection closed", cut)
	}

	// S3: a PUT whose body stalls after its first bytes.
	mc, err := minio.New(fmt.Sprintf("127.0.0.1:%d", c.base+7), &minio.Options{Creds: credentials.NewStaticV4("alice", aliceToken, ""),
		Region: "us-east-1", BucketLookup: minio.BucketLookupPath, MaxRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	stall := &stallReader{first: []byte("a few bytes"), stop: make(chan struct{})}
	defer close(stall.stop)
	go func() {
		_, err := mc.PutObject(ctx, "users", "alice/slow-s3", stall, 1<<20, minio.PutObjectOptions{DisableContentSha256: true})
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Errorf("an S3 PUT whose body stalled succeeded")
		}
		t.Logf("the S3 PUT whose body stalled: %v", err)
	case <-time.After(2 * time.Minute):
		t.Errorf("an S3 PUT whose body stalled still holds its connection after 2 minutes")
	}

	// 429: alice at her bound of 2 unfinished jobs (usersYAML), through REST.
	// Written THROUGH (never cached): the slow loads move every byte at
	// their 1 KiB/s (bandwidth is enforced on the bytes that flow, so a
	// block still cached — a free not yet carried out — would cost none).
	big := bytes.Repeat([]byte("z"), 256<<10)
	w, err := c.client(t, aliceToken).Create(ctx, "/users/alice/big", sdk.CreateOptions{WriteType: api.WriteType_THROUGH})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(big)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	jobsURL := fmt.Sprintf("http://127.0.0.1:%d/api/v1/jobs", c.base+6)
	slow := []byte(`{"plan": "load", "config": {"path": "/users/alice/big", "bandwidth": 1024}}`)
	for range 2 {
		if st, b, _ := restCall(t, "POST", jobsURL, aliceToken, slow); st != 200 {
			t.Fatalf("a slow load: %d %s", st, b)
		}
	}
	st, b, hdr := restCall(t, "POST", jobsURL, aliceToken, slow)
	if st != http.StatusTooManyRequests || hdr.Get("Retry-After") == "" || !strings.Contains(string(b), "max-in-flight-per-user") {
		t.Errorf("a third job past the bound: %d %v %s; want 429 with Retry-After naming the key", st, hdr, b)
	}
	aj := jobs(t, c.client(t, aliceToken))
	for j, err := range aj.List(ctx, sdk.ListJobsOptions{}) {
		if err == nil {
			_ = aj.Cancel(ctx, j.GetId())
		}
	}
}

// trickle writes one byte every gap until the server answers or closes
// (returning the status line, or "closed"), failing after limit.
func trickle(t *testing.T, conn net.Conn, gap, limit time.Duration) string {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		buf := make([]byte, 512)
		n, err := conn.Read(buf)
		if n > 0 {
			got <- strings.SplitN(string(buf[:n]), "\r\n", 2)[0]
			return
		}
		if err != nil {
			got <- "closed"
		}
	}()
	deadline := time.After(limit)
	tick := time.NewTicker(gap)
	defer tick.Stop()
	sent := 0
	for {
		select {
		case s := <-got:
			t.Logf("trickled %d bytes before the server answered %q", sent, s)
			return s
		case <-deadline:
			t.Fatalf("a body trickled a byte every %s still holds its connection after %s (%d bytes sent)", gap, limit, sent)
		case <-tick.C:
			if _, err := conn.Write([]byte("x")); err != nil {
				return "closed"
			}
			sent++
		}
	}
}

// stallReader gives a few bytes, then blocks until stop.
type stallReader struct {
	first []byte
	stop  chan struct{}
}

func (r *stallReader) Read(p []byte) (int, error) {
	if len(r.first) > 0 {
		n := copy(p, r.first)
		r.first = r.first[n:]
		return n, nil
	}
	<-r.stop
	return 0, io.ErrUnexpectedEOF
}
