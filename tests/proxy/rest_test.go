// Package proxy tests the REST proxy of `alluvium local` the way existing
// Alluxio REST clients use it: raw HTTP, paths built as
// /api/v1/paths/ + path + /action (so /api/v1/paths//dir/exists and, for
// the root, /api/v1/paths///list-status), JSON option bodies (or "null"),
// streams written, closed, opened and read — checking status codes, the
// exact content type and Alluxio's field names.
package proxy

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alluvium/alluvium/internal/testutil"
)

type cluster struct {
	rest string // http://host:port
	home string
	ufs  string
}

// startLocal runs `alluvium local` with one worker and a short stream
// timeout, and returns its REST URL.
func startLocal(t *testing.T, extraEnv ...string) *cluster {
	t.Helper()
	bin := testutil.Binary(t)
	base := testutil.PortBase(t)
	root := t.TempDir()
	c := &cluster{home: filepath.Join(root, "home"), ufs: filepath.Join(root, "ufs")}
	if err := os.MkdirAll(filepath.Join(c.ufs, "warm"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.ufs, "warm", "seed.txt"), []byte("from the UFS\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := append([]string{"ALLUVIUM_PROXY_STREAM_TIMEOUT=2s", "ALLUVIUM_PROXY_REST_OPEN=true"}, extraEnv...)
	p := testutil.Start(t, "local", bin, env, "local", "--home", c.home, "--ufs", c.ufs, "--workers", "1",
		"--port-base", fmt.Sprint(base))
	p.WaitLog("ready", 90*time.Second)
	c.rest = fmt.Sprintf("http://127.0.0.1:%d", base+6)
	return c
}

type response struct {
	status int
	ctype  string
	body   []byte
	header http.Header
}

func do(t *testing.T, method, url string, body io.Reader, ctype string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return response{status: resp.StatusCode, ctype: resp.Header.Get("Content-Type"), body: b, header: resp.Header}
}

// call POSTs opts (JSON; nil sends no body) to /api/v1/paths/{path}/{action}
// exactly as alluxio-py builds it: 'paths/%s/%s' % (path, action).
func (c *cluster) call(t *testing.T, path, action string, opts any, query string) response {
	t.Helper()
	url := c.rest + "/api/v1/paths/" + path + "/" + action
	if query != "" {
		url += "?" + query
	}
	var body io.Reader
	if opts != nil {
		b, _ := json.Marshal(opts)
		body = bytes.NewReader(b)
	}
	return do(t, "POST", url, body, "application/json")
}

// ok checks a 200 with the exact JSON content type and decodes the body
// into v (when not nil).
func ok(t *testing.T, what string, r response, v any) {
	t.Helper()
	if r.status != 200 {
		t.Fatalf("%s: status %d, body %s", what, r.status, r.body)
	}
	if r.ctype != "application/json" {
		t.Fatalf("%s: Content-Type %q, want exactly application/json", what, r.ctype)
	}
	if v != nil {
		if err := json.Unmarshal(r.body, v); err != nil {
			t.Fatalf("%s: body %q: %v", what, r.body, err)
		}
	}
}

// fails checks a non-200 Alluxio error body with the given statusCode.
func fails(t *testing.T, what string, r response, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: status %d (body %s), want %d", what, r.status, r.body, status)
	}
	if r.ctype != "application/json" {
		t.Fatalf("%s: Content-Type %q, want exactly application/json", what, r.ctype)
	}
	var e map[string]any
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("%s: error body %q: %v", what, r.body, err)
	}
	if e["statusCode"] != code || e["message"] == "" || e["message"] == nil {
		t.Fatalf("%s: error body %s, want statusCode %s and a message", what, r.body, code)
	}
}

// fileStatusFields are the names Alluxio's URIStatus JSON has and its
// clients read.
var fileStatusFields = []string{"blockIds", "blockSizeBytes", "cacheable", "completed", "creationTimeMs",
	"fileBlockInfos", "fileId", "folder", "owner", "group", "inMemoryPercentage", "inAlluxioPercentage",
	"lastModificationTimeMs", "length", "name", "path", "ufsPath", "pinned", "persisted", "persistenceState",
	"mode", "mountPoint", "ttl", "ttlAction"}

func checkFields(t *testing.T, what string, m map[string]any) {
	t.Helper()
	for _, f := range fileStatusFields {
		if _, ok := m[f]; !ok {
			t.Fatalf("%s: file status lacks %q: %v", what, f, m)
		}
	}
}

func TestRESTLikeAlluxioClients(t *testing.T) {
	c := startLocal(t)

	// The root, as /api/v1/paths///list-status; the UFS dir shows.
	var root []map[string]any
	ok(t, "list-status /", c.call(t, "/", "list-status", nil, ""), &root)
	found := false
	for _, e := range root {
		checkFields(t, "list-status /", e)
		if e["name"] == "warm" && e["folder"] == true && e["path"] == "/warm" {
			found = true
		}
	}
	if !found {
		t.Fatalf("list-status / = %v, want /warm from the UFS", root)
	}
	// A client that strips the leading slash lists the root as paths//list-status.
	ok(t, "list-status ''", c.call(t, "", "list-status", nil, ""), &root)

	// create-directory answers 200 with an empty body.
	r := c.call(t, "/dir/sub", "create-directory", map[string]any{"recursive": true, "writeType": "cache_through", "allowExists": false}, "")
	ok(t, "create-directory", r, nil)
	if len(r.body) != 0 {
		t.Fatalf("create-directory body %q, want none", r.body)
	}
	fails(t, "create-directory again", c.call(t, "/dir/sub", "create-directory", nil, ""), 409, "ALREADY_EXISTS")
	ok(t, "create-directory allowExists", c.call(t, "/dir/sub", "create-directory", map[string]any{"allowExists": true}, ""), nil)

	var exists bool
	ok(t, "exists", c.call(t, "/dir/sub", "exists", nil, ""), &exists)
	if !exists {
		t.Fatal("exists /dir/sub = false")
	}
	ok(t, "exists missing", c.call(t, "/no/such", "exists", map[string]any{}, ""), &exists)
	if exists {
		t.Fatal("exists /no/such = true")
	}

	// Stream write → close → open → read, in two writes, 2.5 MiB over
	// 1 MiB blocks.
	data := make([]byte, 5<<19)
	_, _ = rand.Read(data)
	var id int
	ok(t, "create-file", c.call(t, "/dir/sub/f.bin", "create-file", map[string]any{"writeType": "CACHE_THROUGH", "blockSizeBytes": 1 << 20, "recursive": false}, ""), &id)
	for _, part := range [][]byte{data[:1<<20+77], data[1<<20+77:]} {
		var n int
		ok(t, "streams write", do(t, "POST", fmt.Sprintf("%s/api/v1/streams/%d/write", c.rest, id), bytes.NewReader(part), "application/octet-stream"), &n)
		if n != len(part) {
			t.Fatalf("write returned %d, sent %d", n, len(part))
		}
	}
	ok(t, "streams close", do(t, "POST", fmt.Sprintf("%s/api/v1/streams/%d/close", c.rest, id), nil, ""), nil)
	fails(t, "close again", do(t, "POST", fmt.Sprintf("%s/api/v1/streams/%d/close", c.rest, id), nil, ""), 404, "NOT_FOUND")

	var st map[string]any
	ok(t, "get-status", c.call(t, "/dir/sub/f.bin", "get-status", nil, ""), &st)
	checkFields(t, "get-status", st)
	if st["length"] != float64(len(data)) || st["completed"] != true || st["persisted"] != true ||
		st["persistenceState"] != "PERSISTED" || st["name"] != "f.bin" || st["folder"] != false || st["blockSizeBytes"] != float64(1<<20) {
		t.Fatalf("get-status = %v", st)
	}
	fbi := st["fileBlockInfos"].([]any)
	if len(fbi) != 3 || len(st["blockIds"].([]any)) != 3 {
		t.Fatalf("fileBlockInfos %v, want 3 blocks", fbi)
	}
	b0 := fbi[0].(map[string]any)
	bi := b0["blockInfo"].(map[string]any)
	locs := bi["locations"].([]any)
	if len(locs) == 0 {
		t.Fatalf("block 0 has no locations: %v", b0)
	}
	loc := locs[0].(map[string]any)
	addr := loc["workerAddress"].(map[string]any)
	for _, f := range []string{"host", "rpcPort", "dataPort", "webPort"} {
		if _, ok := addr[f]; !ok {
			t.Fatalf("workerAddress lacks %s: %v", f, addr)
		}
	}
	if _, ok := loc["workerId"]; !ok || loc["tierAlias"] == "" || bi["blockId"] == nil || bi["length"] != float64(1<<20) {
		t.Fatalf("block location %v", b0)
	}
	if _, ok := b0["offset"]; !ok {
		t.Fatalf("fileBlockInfo lacks offset: %v", b0)
	}
	if _, ok := b0["ufsLocations"]; !ok {
		t.Fatalf("fileBlockInfo lacks ufsLocations: %v", b0)
	}

	// open-file → read (octet-stream, every byte) → close.
	ok(t, "open-file", c.call(t, "/dir/sub/f.bin", "open-file", map[string]any{"readType": "no_cache"}, ""), &id)
	rr := do(t, "POST", fmt.Sprintf("%s/api/v1/streams/%d/read", c.rest, id), nil, "")
	if rr.status != 200 || !bytes.Equal(rr.body, data) {
		t.Fatalf("streams read: status %d, %d bytes (want %d, equal)", rr.status, len(rr.body), len(data))
	}
	fails(t, "write to a read stream", do(t, "POST", fmt.Sprintf("%s/api/v1/streams/%d/write", c.rest, id), strings.NewReader("x"), "application/octet-stream"), 400, "INVALID_ARGUMENT")
	ok(t, "close read stream", do(t, "POST", fmt.Sprintf("%s/api/v1/streams/%d/close", c.rest, id), nil, ""), nil)
	fails(t, "read closed stream", do(t, "POST", fmt.Sprintf("%s/api/v1/streams/%d/read", c.rest, id), nil, ""), 404, "NOT_FOUND")

	// download-file is a GET of the whole file.
	dr := do(t, "GET", c.rest+"/api/v1/paths//dir/sub/f.bin/download-file", nil, "")
	if dr.status != 200 || !bytes.Equal(dr.body, data) || !strings.Contains(dr.header.Get("Content-Disposition"), "f.bin") {
		t.Fatalf("download-file: status %d, %d bytes, disposition %q", dr.status, len(dr.body), dr.header.Get("Content-Disposition"))
	}

	var list []map[string]any
	ok(t, "list-status dir", c.call(t, "/dir/sub", "list-status", map[string]any{"loadMetadataType": "Always"}, ""), &list)
	if len(list) != 1 || list[0]["name"] != "f.bin" || list[0]["path"] != "/dir/sub/f.bin" {
		t.Fatalf("list-status /dir/sub = %v", list)
	}

	// rename ?dst=, then the old path is NOT_FOUND.
	ok(t, "rename", c.call(t, "/dir/sub/f.bin", "rename", nil, "dst=/dir/sub/g.bin"), nil)
	fails(t, "get-status renamed", c.call(t, "/dir/sub/f.bin", "get-status", nil, ""), 404, "NOT_FOUND")
	fails(t, "rename without dst", c.call(t, "/dir/sub/g.bin", "rename", nil, ""), 400, "INVALID_ARGUMENT")

	// set-attribute with Alluxio's mode object and enum names in any case.
	ok(t, "set-attribute", c.call(t, "/dir/sub/g.bin", "set-attribute", map[string]any{
		"pinned": true, "mode": map[string]string{"ownerBits": "ALL", "groupBits": "read_execute", "otherBits": "NONE"},
		"ttl": -1, "unknownOption": 42,
	}, ""), nil)
	ok(t, "get-status after set-attribute", c.call(t, "/dir/sub/g.bin", "get-status", nil, ""), &st)
	if st["pinned"] != true || st["mode"] != float64(0o750) || st["ttl"] != float64(-1) {
		t.Fatalf("after set-attribute: pinned %v mode %v ttl %v", st["pinned"], st["mode"], st["ttl"])
	}
	ok(t, "unpin", c.call(t, "/dir/sub/g.bin", "set-attribute", map[string]any{"pinned": false}, ""), nil)

	// free drops the cached copies; the bytes stay readable from the UFS.
	ok(t, "free", c.call(t, "/dir", "free", map[string]any{"recursive": true}, ""), nil)
	testutil.Eventually(t, 15*time.Second, func() error {
		var st map[string]any
		r := c.call(t, "/dir/sub/g.bin", "get-status", nil, "")
		if err := json.Unmarshal(r.body, &st); err != nil {
			return err
		}
		if st["inAlluxioPercentage"] != float64(0) {
			return fmt.Errorf("inAlluxioPercentage %v after free", st["inAlluxioPercentage"])
		}
		return nil
	})
	if dr := do(t, "GET", c.rest+"/api/v1/paths//dir/sub/g.bin/download-file", nil, ""); !bytes.Equal(dr.body, data) {
		t.Fatalf("after free: download %d bytes, want the original %d", len(dr.body), len(data))
	}

	// mount ?src= a second UFS dir; its file lists; unmount.
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, "m.txt"), []byte("mounted"), 0o644); err != nil {
		t.Fatal(err)
	}
	ok(t, "mount", c.call(t, "/mnt", "mount", map[string]any{"readOnly": false, "properties": map[string]string{}}, "src=file://"+other), nil)
	ok(t, "list-status mount", c.call(t, "/mnt", "list-status", nil, ""), &list)
	if len(list) != 1 || list[0]["name"] != "m.txt" {
		t.Fatalf("list-status /mnt = %v", list)
	}
	ok(t, "get-status mount point", c.call(t, "/mnt", "get-status", nil, ""), &st)
	if st["mountPoint"] != true {
		t.Fatalf("/mnt mountPoint = %v", st["mountPoint"])
	}
	ok(t, "unmount", c.call(t, "/mnt", "unmount", nil, ""), nil)
	fails(t, "mount without src", c.call(t, "/mnt2", "mount", nil, ""), 400, "INVALID_ARGUMENT")

	// delete, recursive.
	fails(t, "delete non-empty", c.call(t, "/dir", "delete", nil, ""), 409, "FAILED_PRECONDITION")
	ok(t, "delete", c.call(t, "/dir", "delete", map[string]any{"recursive": true}, ""), nil)
	ok(t, "exists deleted", c.call(t, "/dir", "exists", nil, ""), &exists)
	if exists {
		t.Fatal("/dir exists after delete")
	}
	if _, err := os.Stat(filepath.Join(c.ufs, "dir")); !os.IsNotExist(err) {
		t.Fatalf("UFS dir after delete: %v", err)
	}
}

// Bodies and URLs as different clients send them, and the errors bad ones
// get.
func TestRESTRequestShapesAndErrors(t *testing.T) {
	c := startLocal(t)
	// alluxio-go JSON-encodes a nil options pointer: the body is "null".
	r := do(t, "POST", c.rest+"/api/v1/paths//warm/exists?", strings.NewReader("null"), "application/json")
	var exists bool
	ok(t, "exists with null body", r, &exists)
	if !exists {
		t.Fatal("/warm does not exist")
	}
	// Percent-encoded names.
	ok(t, "create-directory encoded", c.call(t, "/with%20space", "create-directory", nil, ""), nil)
	ok(t, "exists encoded", c.call(t, "/with space", "exists", nil, ""), &exists)
	if !exists {
		t.Fatal(`"/with space" does not exist`)
	}

	fails(t, "bad JSON", do(t, "POST", c.rest+"/api/v1/paths//x/create-directory", strings.NewReader("{not json"), "application/json"), 400, "INVALID_ARGUMENT")
	fails(t, "bad enum", c.call(t, "/x", "create-file", map[string]any{"writeType": "SOMETIMES"}, ""), 400, "INVALID_ARGUMENT")
	fails(t, "bad mode", c.call(t, "/x", "create-directory", map[string]any{"mode": map[string]string{"ownerBits": "EVERYTHING"}}, ""), 400, "INVALID_ARGUMENT")
	fails(t, "unknown action", c.call(t, "/x", "explode", nil, ""), 404, "NOT_FOUND")
	fails(t, "no such stream", do(t, "POST", c.rest+"/api/v1/streams/99999/read", nil, ""), 404, "NOT_FOUND")
	fails(t, "stream id not a number", do(t, "POST", c.rest+"/api/v1/streams/abc/read", nil, ""), 400, "INVALID_ARGUMENT")
	fails(t, "escaping path", c.call(t, "/../../etc/passwd", "get-status", nil, ""), 404, "NOT_FOUND")
	fails(t, "control character", c.call(t, "/a%01b", "get-status", nil, ""), 400, "INVALID_ARGUMENT")
	r = do(t, "GET", c.rest+"/api/v1/paths//warm/get-status", nil, "")
	if r.status != 405 || r.ctype != "application/json" {
		t.Fatalf("GET get-status: %d %q", r.status, r.ctype)
	}
	fails(t, "create-file over a file", c.call(t, "/warm/seed.txt", "create-file", nil, ""), 409, "ALREADY_EXISTS")
	fails(t, "open a directory", c.call(t, "/warm", "open-file", nil, ""), 400, "INVALID_ARGUMENT")
	fails(t, "persisted=true", c.call(t, "/warm/seed.txt", "set-attribute", map[string]any{"persisted": true}, ""), 400, "INVALID_ARGUMENT")
	if r := do(t, "GET", c.rest+"/healthz", nil, ""); r.status != 200 {
		t.Fatalf("/healthz: %d", r.status)
	}
	if r := do(t, "GET", c.rest+"/metrics", nil, ""); r.status != 200 || !strings.Contains(string(r.body), "alluvium_proxy_requests_total") {
		t.Fatalf("/metrics: %d", r.status)
	}
}

// A stream nobody closes expires: a writer's file never appears, a reader
// is released.
func TestRESTStreamsExpire(t *testing.T) {
	c := startLocal(t)
	var w, rd int
	ok(t, "create-file", c.call(t, "/abandoned.bin", "create-file", nil, ""), &w)
	var n int
	ok(t, "write", do(t, "POST", fmt.Sprintf("%s/api/v1/streams/%d/write", c.rest, w), strings.NewReader("half a file"), "application/octet-stream"), &n)
	ok(t, "open-file", c.call(t, "/warm/seed.txt", "open-file", nil, ""), &rd)
	// A stream in use does not expire: keep the reader busy past the
	// timeout with calls.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		fails(t, "read-only touch", do(t, "POST", fmt.Sprintf("%s/api/v1/streams/%d/write", c.rest, rd), strings.NewReader(""), "application/octet-stream"), 400, "INVALID_ARGUMENT")
		time.Sleep(500 * time.Millisecond)
	}
	fails(t, "write to the expired stream", do(t, "POST", fmt.Sprintf("%s/api/v1/streams/%d/write", c.rest, w), strings.NewReader("more"), "application/octet-stream"), 404, "NOT_FOUND")
	var exists bool
	ok(t, "exists abandoned", c.call(t, "/abandoned.bin", "exists", nil, ""), &exists)
	if exists {
		t.Fatal("the abandoned half-written file exists")
	}
	r := do(t, "POST", fmt.Sprintf("%s/api/v1/streams/%d/read", c.rest, rd), nil, "")
	if r.status != 200 || string(r.body) != "from the UFS\n" {
		t.Fatalf("busy reader: %d %q", r.status, r.body)
	}
	ok(t, "close reader", do(t, "POST", fmt.Sprintf("%s/api/v1/streams/%d/close", c.rest, rd), nil, ""), nil)
}

type jobJSON struct {
	ID          int64  `json:"id"`
	Plan        string `json:"plan"`
	Status      string `json:"status"`
	TasksTotal  int64  `json:"tasksTotal"`
	TasksDone   int64  `json:"tasksDone"`
	TasksFailed int64  `json:"tasksFailed"`
	BytesTotal  int64  `json:"bytesTotal"`
	BytesDone   int64  `json:"bytesDone"`
	Error       string `json:"error"`
}

func TestRESTJobs(t *testing.T) {
	c := startLocal(t)
	var job jobJSON
	r := do(t, "POST", c.rest+"/api/v1/jobs", strings.NewReader(`{"plan": "load", "config": {"path": "/warm"}}`), "application/json")
	ok(t, "submit", r, &job)
	for _, f := range []string{"id", "plan", "status", "tasksTotal", "tasksDone", "tasksFailed", "bytesTotal", "bytesDone", "error"} {
		if !strings.Contains(string(r.body), `"`+f+`"`) {
			t.Fatalf("job JSON lacks %q: %s", f, r.body)
		}
	}
	if job.ID == 0 || job.Plan != "load" {
		t.Fatalf("submitted %+v", job)
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		ok(t, "get", do(t, "GET", fmt.Sprintf("%s/api/v1/jobs/%d", c.rest, job.ID), nil, ""), &job)
		if job.Status != "COMPLETED" {
			return fmt.Errorf("job %d is %s", job.ID, job.Status)
		}
		return nil
	})
	if job.TasksDone == 0 || job.BytesDone != int64(len("from the UFS\n")) {
		t.Fatalf("completed load %+v", job)
	}
	var st map[string]any
	ok(t, "get-status loaded", c.call(t, "/warm/seed.txt", "get-status", nil, ""), &st)
	if st["inAlluxioPercentage"] != float64(100) {
		t.Fatalf("after the load job: inAlluxioPercentage %v", st["inAlluxioPercentage"])
	}
	var list struct {
		Jobs []jobJSON `json:"jobs"`
	}
	ok(t, "list", do(t, "GET", c.rest+"/api/v1/jobs?status=completed&plan=load", nil, ""), &list)
	if len(list.Jobs) != 1 || list.Jobs[0].ID != job.ID {
		t.Fatalf("job list %+v", list)
	}
	fails(t, "cancel finished", do(t, "POST", fmt.Sprintf("%s/api/v1/jobs/%d/cancel", c.rest, job.ID), nil, ""), 409, "FAILED_PRECONDITION")

	// A slow load (a MiB at 64 KiB/s) is cancelled while it runs.
	var id int
	ok(t, "create-file", c.call(t, "/slow.bin", "create-file", map[string]any{"writeType": "THROUGH"}, ""), &id)
	ok(t, "write", do(t, "POST", fmt.Sprintf("%s/api/v1/streams/%d/write", c.rest, id), bytes.NewReader(make([]byte, 1<<20)), "application/octet-stream"), nil)
	ok(t, "close", do(t, "POST", fmt.Sprintf("%s/api/v1/streams/%d/close", c.rest, id), nil, ""), nil)
	var slow jobJSON
	ok(t, "submit slow", do(t, "POST", c.rest+"/api/v1/jobs", strings.NewReader(`{"plan": "load", "config": {"path": "/slow.bin", "bandwidth": 65536}, "requestId": "slow-1"}`), "application/json"), &slow)
	var again jobJSON
	ok(t, "submit slow again", do(t, "POST", c.rest+"/api/v1/jobs", strings.NewReader(`{"plan": "load", "config": {"path": "/slow.bin", "bandwidth": 65536}, "requestId": "slow-1"}`), "application/json"), &again)
	if again.ID != slow.ID {
		t.Fatalf("the same requestId made job %d and job %d", slow.ID, again.ID)
	}
	ok(t, "cancel", do(t, "POST", fmt.Sprintf("%s/api/v1/jobs/%d/cancel", c.rest, slow.ID), nil, ""), &slow)
	testutil.Eventually(t, 20*time.Second, func() error {
		ok(t, "get", do(t, "GET", fmt.Sprintf("%s/api/v1/jobs/%d", c.rest, slow.ID), nil, ""), &slow)
		if slow.Status != "CANCELED" {
			return fmt.Errorf("cancelled job is %s", slow.Status)
		}
		return nil
	})
	ok(t, "delete = cancel", do(t, "DELETE", fmt.Sprintf("%s/api/v1/jobs/%d", c.rest, slow.ID), nil, ""), &slow)
	fails(t, "no such job", do(t, "GET", c.rest+"/api/v1/jobs/424242", nil, ""), 404, "NOT_FOUND")
	fails(t, "bad plan", do(t, "POST", c.rest+"/api/v1/jobs", strings.NewReader(`{"plan": "teleport", "config": {"path": "/warm"}}`), "application/json"), 400, "INVALID_ARGUMENT")
	fails(t, "no config", do(t, "POST", c.rest+"/api/v1/jobs", strings.NewReader(`{"plan": "load"}`), "application/json"), 400, "INVALID_ARGUMENT")
	fails(t, "bad status filter", do(t, "GET", c.rest+"/api/v1/jobs?status=SLEEPING", nil, ""), 400, "INVALID_ARGUMENT")

	// A dry run over REST: counts what a copy would do, does nothing.
	var dry struct {
		jobJSON
		FilesTotal int64 `json:"filesTotal"`
		DryRun     bool  `json:"dryRun"`
	}
	ok(t, "submit dry run", do(t, "POST", c.rest+"/api/v1/jobs", strings.NewReader(`{"plan": "copy", "config": {"src": "/warm", "dst": "/warm-copy", "dryRun": true}}`), "application/json"), &dry)
	testutil.Eventually(t, 30*time.Second, func() error {
		ok(t, "get dry run", do(t, "GET", fmt.Sprintf("%s/api/v1/jobs/%d", c.rest, dry.ID), nil, ""), &dry)
		if dry.Status != "COMPLETED" {
			return fmt.Errorf("dry run job %d is %s", dry.ID, dry.Status)
		}
		return nil
	})
	if !dry.DryRun || dry.FilesTotal != 1 || dry.BytesTotal != int64(len("from the UFS\n")) || dry.TasksTotal != 0 {
		t.Fatalf("dry run of a copy: %+v", dry)
	}
	fails(t, "the dry run copied nothing", c.call(t, "/warm-copy", "get-status", nil, ""), 404, "NOT_FOUND")
}
