package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/alluvium/alluvium/internal/testutil"
	"github.com/alluvium/alluvium/sdk"
)

// restCall sends one REST request to the proxy as the holder of token and
// returns the status, body and headers.
func restCall(t *testing.T, method, url, token string, body []byte) (int, []byte, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, url, err)
	}
	return resp.StatusCode, b, resp.Header
}

// restURL is the proxy's REST URL of path and action.
func (c *cluster) restURL(path, action string) string {
	return fmt.Sprintf("http://127.0.0.1:%d/api/v1/paths/%s/%s", c.base+6, path, action)
}

func (c *cluster) streamURL(id int64, action string) string {
	return fmt.Sprintf("http://127.0.0.1:%d/api/v1/streams/%d/%s", c.base+6, id, action)
}

// TestOverwriteIsAtomic: an overwrite replaces a file only once the new one
// is complete. A CLI killed mid-put, an SDK writer aborted, a REST stream
// abandoned until it expires: each leaves the old file as it was, readable,
// with its UFS copy. Two concurrent overwrites both succeed; the last to
// complete wins.
func TestOverwriteIsAtomic(t *testing.T) {
	c := startLocal(t, usersYAML, "ALLUVIUM_PROXY_STREAM_TIMEOUT=2s")
	ctx := context.Background()
	c.must(t, c.token, "fs", "mkdir", "-p", "/home/alice")
	c.must(t, c.token, "fs", "chown", "alice:alice", "/home/alice")
	const p = "/home/alice/f"
	old := bytes.Repeat([]byte("the old bytes\n"), 1000)
	local := filepath.Join(t.TempDir(), "old")
	if err := os.WriteFile(local, old, 0o644); err != nil {
		t.Fatal(err)
	}
	c.must(t, aliceToken, "fs", "put", local, p)
	alice := c.client(t, aliceToken)
	first, err := alice.Stat(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	intact := func(when string) {
		t.Helper()
		if out := c.must(t, aliceToken, "fs", "cat", p); out != string(old) {
			t.Fatalf("%s: %s holds %d bytes, want the old %d", when, p, len(out), len(old))
		}
		fi, err := alice.Stat(ctx, p)
		if err != nil || fi.GetFileId() != first.GetFileId() {
			t.Fatalf("%s: %s is now %v (%v), want the old file %d", when, p, fi, err, first.GetFileId())
		}
		if b, err := os.ReadFile(filepath.Join(c.ufs, "home", "alice", "f")); err != nil || !bytes.Equal(b, old) {
			t.Fatalf("%s: the UFS copy holds %d bytes (%v), want the old %d", when, len(b), err, len(old))
		}
	}

	// 1. The CLI killed in the middle of `fs put -f`: its input is a FIFO
	// that gets 3 MiB, then the process is killed.
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	put := testutil.Start(t, "put", c.bin, []string{"ALLUVIUM_MASTER=" + c.master, "ALLUVIUM_JOB_MASTER=" + c.jobMaster,
		"ALLUVIUM_TOKEN=" + aliceToken}, "fs", "put", "-f", fifo, p)
	fw, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The pipe holds 64 KiB: once this returns the CLI has read (and sent
	// on) at least 3 MiB less that.
	if _, err := fw.Write(bytes.Repeat([]byte("new"), 1<<20)); err != nil {
		t.Fatalf("feeding the put: %v\n%s", err, put.Log())
	}
	put.Kill()
	fw.Close()
	intact("after the CLI was killed mid-put")

	// 2. An SDK writer: while it writes the old file is what readers see;
	// aborted, nothing changes.
	w, err := alice.Create(ctx, p, sdk.CreateOptions{Overwrite: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(bytes.Repeat([]byte("x"), 2<<20)); err != nil {
		t.Fatal(err)
	}
	intact("while an SDK overwrite is in flight")
	w.Abort()
	intact("after the SDK overwrite was aborted")

	// 3. A REST create-file {"overwrite": true} whose stream is written to
	// but never closed: it expires (proxy.stream-timeout 2s) and leaves the
	// old file.
	st, body, _ := restCall(t, http.MethodPost, c.restURL(p, "create-file"), aliceToken, []byte(`{"overwrite": true}`))
	if st != http.StatusOK {
		t.Fatalf("REST create-file overwrite: %d %s", st, body)
	}
	id, err := strconv.ParseInt(string(bytes.TrimSpace(body)), 10, 64)
	if err != nil {
		t.Fatalf("stream id %q: %v", body, err)
	}
	if st, body, _ := restCall(t, http.MethodPost, c.streamURL(id, "write"), aliceToken, []byte("half a file")); st != http.StatusOK {
		t.Fatalf("REST stream write: %d %s", st, body)
	}
	intact("while a REST overwrite is in flight")
	c.proc.WaitLog("closing an idle REST stream", 30*time.Second) // a call on it would keep it alive
	if st, _, _ := restCall(t, http.MethodPost, c.streamURL(id, "write"), aliceToken, []byte("more")); st != http.StatusNotFound {
		t.Fatalf("expired stream %d answers %d, want 404", id, st)
	}
	intact("after the REST overwrite expired")

	// 4. Two overwrites at once: both succeed, the last to complete wins.
	one, two := bytes.Repeat([]byte("1"), 3<<20), bytes.Repeat([]byte("2"), 100)
	w1, err := alice.Create(ctx, p, sdk.CreateOptions{Overwrite: true})
	if err != nil {
		t.Fatal(err)
	}
	w2, err := c.client(t, aliceToken).Create(ctx, p, sdk.CreateOptions{Overwrite: true})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, wr := range []struct {
		w    *sdk.FileWriter
		data []byte
	}{{w1, one}, {w2, two}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = wr.w.Write(wr.data)
		}()
	}
	wg.Wait()
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("concurrent overwrite writes: %v", errs)
	}
	intact("while two overwrites are in flight")
	if err := w2.Close(); err != nil {
		t.Fatalf("the first overwrite to complete: %v", err)
	}
	if err := w1.Close(); err != nil {
		t.Fatalf("the second overwrite to complete: %v", err)
	}
	if out := c.must(t, aliceToken, "fs", "cat", p); out != string(one) {
		t.Fatalf("after both overwrites %s holds %d bytes, want the last completed (%d)", p, len(out), len(one))
	}
	if b, err := os.ReadFile(filepath.Join(c.ufs, "home", "alice", "f")); err != nil || !bytes.Equal(b, one) {
		t.Fatalf("the UFS copy after both overwrites: %d bytes %v", len(b), err)
	}
	// Nothing of the abandoned writes shows in a listing.
	var names []string
	out := c.must(t, aliceToken, "fs", "ls", "--output", "json", "/home/alice")
	var entries []struct{ Path string }
	if err := json.Unmarshal([]byte(out), &entries); err != nil {
		t.Fatalf("ls --output json: %v: %s", err, out)
	}
	for _, e := range entries {
		names = append(names, e.Path)
	}
	if len(names) != 1 || names[0] != p {
		t.Fatalf("/home/alice lists %v, want only %s", names, p)
	}
}
