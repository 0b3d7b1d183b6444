package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/proxy"
	"github.com/alluvium/alluvium/sdk"
)

// The victim's world, made by setupVictim: bob's 0600 file and 0700
// directory hold bytes and a name that must never reach alice.
const (
	bobPrivate    = "/users/bob/private.txt" // 0600
	bobSecDir     = "/users/bob/sec"         // 0700
	bobSecFile    = "/users/bob/sec/hidden-name-q7"
	secretPrivate = "bob-private-bytes-1f3a"
	secretSec     = "bob-sec-bytes-77c2"
	// A name in bob's private directory alice never sends: it must never
	// come back to her either.
	bobSecOther = "/users/bob/sec/unnamed-z9"
	secretName  = "unnamed-z9"
)

// victim is bob's world as set up for an attack.
type victim struct {
	c          *cluster
	bob, root  *sdk.Client
	job        int64 // a job of bob's
	jobRequest string
}

// setupVictim gives alice and bob homes and bob a private file, a private
// directory, and a job (a load of his private directory).
func setupVictim(t *testing.T, c *cluster) *victim {
	t.Helper()
	ctx := context.Background()
	v := &victim{c: c, bob: c.client(t, bobToken), root: c.client(t, c.token), jobRequest: "bobs-request-1"}
	c.must(t, c.token, "fs", "mkdir", "-p", "/users/alice", "/users/bob")
	c.must(t, c.token, "fs", "chown", "alice:alice", "/users/alice")
	c.must(t, c.token, "fs", "chown", "bob:bob", "/users/bob")
	put := func(p, data string, mode uint32) {
		w, err := v.bob.Create(ctx, p, sdk.CreateOptions{Mode: mode, Recursive: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(data)); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	put(bobPrivate, secretPrivate, 0o600)
	if _, err := v.bob.Mkdir(ctx, bobSecDir, sdk.MkdirOptions{Mode: 0o700}); err != nil {
		t.Fatal(err)
	}
	put(bobSecFile, secretSec, 0o644)
	put(bobSecOther, secretSec, 0o644)
	jobs := jobs(t, v.bob)
	id, err := jobs.Submit(ctx, "load", sdk.LoadConfig{Path: bobSecDir}, sdk.WithRequestID(v.jobRequest))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jobs.Wait(ctx, id, nil); err != nil {
		t.Fatal(err)
	}
	v.job = id
	return v
}

// snapshot is everything of bob's an attack could change: each entry's
// identity and attributes, the bytes of each file, and his UFS directory.
func (v *victim) snapshot(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	for fi, err := range v.root.List(ctx, "/users", sdk.ListOptions{Recursive: true}) {
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s id=%d owner=%s:%s mode=%o len=%d complete=%v pinned=%v ttl=%d repl=%d..%d persist=%v\n",
			fi.GetPath(), fi.GetFileId(), fi.GetOwner(), fi.GetGroup(), fi.GetMode(), fi.GetLength(), fi.GetCompleted(),
			fi.GetPinned(), fi.GetTtl(), fi.GetReplicationMin(), fi.GetReplicationMax(), fi.GetPersistenceState())
		if !fi.GetFolder() && fi.GetCompleted() {
			r, err := v.root.Open(ctx, fi.GetPath(), sdk.OpenOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			_, err = buf.ReadFrom(r)
			r.Close()
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "  bytes %q\n", buf.String())
		}
	}
	_ = filepath.WalkDir(filepath.Join(v.c.ufs, "users"), func(p string, d os.DirEntry, err error) error {
		if err == nil {
			rel, _ := filepath.Rel(v.c.ufs, p)
			fmt.Fprintf(&b, "ufs %s\n", rel)
		}
		return nil
	})
	mounts, err := v.root.Mounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mounts {
		fmt.Fprintf(&b, "mount %s %s\n", m.GetAlluviumPath(), m.GetUfsUri())
	}
	j, err := jobs(t, v.root).Get(ctx, v.job, false)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&b, "job %d %s %s\n", j.GetId(), j.GetStatus(), j.GetSubmitter())
	return b.String()
}

// restAttack is one request alice sends to take, change or learn something
// of bob's. It is refused when its status is one of refusal and its body
// holds none of the secrets.
type restAttack struct {
	action  string // the path or stream action it exercises, or "jobs", "jobmaster-http"
	name    string
	method  string
	url     string
	body    []byte
	header  http.Header
	refusal []int
}

// TestRESTAttacker plays alice against bob on the REST port: every path
// action and every stream action (the table must cover each one the proxy
// routes, so a new one cannot forget the caller's identity unnoticed), the
// jobs API and the job master's http API. Each attack must be refused with
// nothing read, written or leaked; then bob's world must be exactly as it
// was, and bob's own streams and job still his. Alongside: alice's own
// creations are hers, stream ids are random, and streams are capped per
// user.
func TestRESTAttacker(t *testing.T) {
	c := startLocal(t, usersYAML, "ALLUVIUM_PROXY_MAX_STREAMS_PER_USER=6")
	ctx := context.Background()
	v := setupVictim(t, c)
	mountDir := t.TempDir()
	if _, err := v.root.Mount(ctx, "/users/bob/mnt", "file://"+mountDir, sdk.MountOptions{}); err != nil {
		t.Fatal(err)
	}
	v.root.SetAttribute(ctx, &api.SetAttributeRequest{Path: "/users/bob/mnt", Owner: ptr("bob"), Group: ptr("bob")})
	paths := func(p, action string) string { return c.restURL(p, action) }

	// bob's own streams: one reading his private file, one writing into
	// his private directory.
	bobOpen := restStream(t, c, bobToken, paths(bobSecFile, "open-file"), nil)
	bobCreate := restStream(t, c, bobToken, paths(bobSecDir+"/new-by-bob", "create-file"), nil)
	if st, b, _ := restCall(t, "POST", c.streamURL(bobCreate, "write"), bobToken, []byte("bob's new bytes")); st != 200 {
		t.Fatalf("bob writes his stream: %d %s", st, b)
	}
	before := v.snapshot(t)

	json := func(s string) []byte { return []byte(s) }
	forbidden := []int{http.StatusForbidden}
	gone := []int{http.StatusNotFound}
	var attacks []restAttack
	add := func(action, name, method, url string, body []byte, refusal []int) {
		attacks = append(attacks, restAttack{action: action, name: name, method: method, url: url, body: body, refusal: refusal})
	}
	// Metadata of bob's 0600 file in his 0755 home is anyone's to see (as
	// stat(2) shows it); of anything in his 0700 directory, present or
	// not, nobody's.
	for _, p := range []string{bobSecFile, bobSecDir + "/no-such-file"} {
		add("get-status", "stat "+p, "POST", paths(p, "get-status"), nil, forbidden)
		add("exists", "exists "+p, "POST", paths(p, "exists"), nil, forbidden)
		add("create-file", "create "+p+" (no overwrite)", "POST", paths(p, "create-file"), nil, forbidden)
	}
	// Creating over bob's file without overwrite: it exists (alice may
	// see that much), and nothing is written.
	add("create-file", "create "+bobPrivate+" (no overwrite)", "POST", paths(bobPrivate, "create-file"), nil, []int{http.StatusConflict})
	for _, p := range []string{bobPrivate, bobSecFile, bobSecDir + "/no-such-file"} {
		add("download-file", "download "+p, "GET", paths(p, "download-file"), nil, forbidden)
		add("download-file", "download (HEAD) "+p, "HEAD", paths(p, "download-file"), nil, forbidden)
		add("open-file", "open "+p, "POST", paths(p, "open-file"), nil, forbidden)
		add("free", "free "+p, "POST", paths(p, "free"), nil, forbidden)
		add("delete", "delete "+p, "POST", paths(p, "delete"), nil, forbidden)
		add("create-file", "overwrite "+p, "POST", paths(p, "create-file"), json(`{"overwrite": true}`), forbidden)
		add("rename", "rename "+p+" to alice's", "POST", paths(p, "rename")+"?dst=/users/alice/stolen", nil, forbidden)
		add("set-attribute", "chmod 777 "+p, "POST", paths(p, "set-attribute"), json(`{"mode": 511}`), forbidden)
		add("set-attribute", "chown alice "+p, "POST", paths(p, "set-attribute"), json(`{"owner": "alice"}`), forbidden)
		add("set-attribute", "ttl "+p, "POST", paths(p, "set-attribute"), json(`{"ttl": 1, "ttlAction": "DELETE"}`), forbidden)
		add("set-attribute", "pin "+p, "POST", paths(p, "set-attribute"), json(`{"pinned": true}`), forbidden)
		add("set-attribute", "replication "+p, "POST", paths(p, "set-attribute"), json(`{"replicationMin": 2}`), forbidden)
	}
	add("list-status", "ls "+bobSecDir, "POST", paths(bobSecDir, "list-status"), nil, forbidden)
	add("list-status", "ls -R /users/bob", "POST", paths("/users/bob", "list-status"), json(`{"recursive": true}`), forbidden)
	add("list-status", "ls -R /users", "POST", paths("/users", "list-status"), json(`{"recursive": true}`), forbidden)
	add("list-status", "ls with ALWAYS sync "+bobSecDir, "POST", paths(bobSecDir, "list-status"), json(`{"loadMetadataType": "ALWAYS"}`), forbidden)
	add("create-directory", "mkdir in "+bobSecDir, "POST", paths(bobSecDir+"/x", "create-directory"), nil, forbidden)
	add("create-directory", "mkdir in /users/bob", "POST", paths("/users/bob/x", "create-directory"), json(`{"recursive": true}`), forbidden)
	add("create-file", "create in /users/bob", "POST", paths("/users/bob/planted", "create-file"), nil, forbidden)
	add("create-file", "create in "+bobSecDir, "POST", paths(bobSecDir+"/planted", "create-file"), json(`{"recursive": true}`), forbidden)
	add("delete", "rm -r "+bobSecDir, "POST", paths(bobSecDir, "delete"), json(`{"recursive": true}`), forbidden)
	add("delete", "rm -r /users/bob", "POST", paths("/users/bob", "delete"), json(`{"recursive": true, "alluxioOnly": true}`), forbidden)
	add("rename", "move "+bobSecDir+" out", "POST", paths(bobSecDir, "rename")+"?dst=/users/alice/sec", nil, forbidden)
	add("set-attribute", "chmod -R "+bobSecDir, "POST", paths(bobSecDir, "set-attribute"), json(`{"mode": 511, "recursive": true}`), forbidden)
	add("free", "free -r "+bobSecDir, "POST", paths(bobSecDir, "free"), json(`{"recursive": true}`), forbidden)
	add("mount", "mount into "+bobSecDir, "POST", paths(bobSecDir+"/m", "mount")+"?src=file://"+t.TempDir(), nil, forbidden)
	add("mount", "mount over alice's home", "POST", paths("/users/alice/m", "mount")+"?src=file://"+mountDir, nil, forbidden)
	add("unmount", "unmount bob's mount", "POST", paths("/users/bob/mnt", "unmount"), nil, forbidden)
	// Streams: bob's (whose ids alice learnt somehow), and ids guessed
	// around them.
	for _, id := range []int64{bobOpen, bobCreate} {
		for _, a := range proxy.StreamActions() {
			add(a, fmt.Sprintf("%s bob's stream %d", a, id), "POST", c.streamURL(id, a), json("planted"), gone)
		}
	}
	for _, id := range []int64{bobOpen - 1, bobOpen + 1, bobCreate - 1, bobCreate + 1, 1, 2, 3} {
		add("read", fmt.Sprintf("read guessed stream %d", id), "POST", c.streamURL(id, "read"), nil, gone)
	}
	// Jobs, through the proxy and on the job master's own http port.
	jobsURL := fmt.Sprintf("http://127.0.0.1:%d/api/v1/jobs", c.base+6)
	jmURL := fmt.Sprintf("http://127.0.0.1:%d/api/v1/jobs", c.base+4)
	add("jobs", "read bob's job", "GET", fmt.Sprintf("%s/%d", jobsURL, v.job), nil, gone)
	add("jobs", "read bob's job verbose", "GET", fmt.Sprintf("%s/%d?verbose=true", jobsURL, v.job), nil, gone)
	add("jobs", "cancel bob's job", "POST", fmt.Sprintf("%s/%d/cancel", jobsURL, v.job), nil, gone)
	add("jobs", "delete bob's job", "DELETE", fmt.Sprintf("%s/%d", jobsURL, v.job), nil, gone)
	add("jobs", "load bob's directory", "POST", jobsURL, json(`{"plan": "load", "config": {"path": "/users/bob/sec"}}`), forbidden)
	add("jobs", "copy bob's directory out", "POST", jobsURL, json(`{"plan": "copy", "config": {"src": "/users/bob/sec", "dst": "/users/alice/loot"}}`), forbidden)
	add("jobs", "persist bob's file", "POST", jobsURL, json(`{"plan": "persist", "config": {"path": "/users/bob/private.txt"}}`), forbidden)
	add("jobs", "move bob's file", "POST", jobsURL, json(`{"plan": "move", "config": {"src": "/users/bob/private.txt", "dst": "/users/alice/loot"}}`), forbidden)
	add("jobs", "replicate bob's file", "POST", jobsURL, json(`{"plan": "replicate", "config": {"path": "/users/bob/private.txt", "replication": 1}}`), forbidden)
	add("jobs", "bob's request id", "POST", jobsURL, json(`{"plan": "load", "config": {"path": "/users/alice"}, "requestId": "`+v.jobRequest+`"}`), []int{http.StatusConflict})
	add("jobmaster-http", "read bob's job on the job master", "GET", fmt.Sprintf("%s/%d", jmURL, v.job), nil, gone)
	add("jobmaster-http", "read bob's job on the job master verbose", "GET", fmt.Sprintf("%s/%d?verbose=true", jmURL, v.job), nil, gone)
	// Naming bob in a header changes nothing: alice's token is alice.
	attacks = append(attacks, restAttack{action: "get-status", name: "stat as bob by header", method: "POST", url: paths(bobSecFile, "get-status"),
		header: http.Header{"X-Alluvium-User": {"bob"}}, refusal: forbidden})

	// Every routed action is attacked.
	covered := map[string]bool{}
	for _, a := range attacks {
		covered[a.action] = true
	}
	for _, a := range append(proxy.PathActions(), proxy.StreamActions()...) {
		if !covered[a] {
			t.Errorf("REST action %q has no attack in this table: add one (as alice against bob's files)", a)
		}
	}

	secrets := []string{secretPrivate, secretSec, secretName, "new-by-bob", "bob's new bytes"}
	refused := 0
	for _, a := range attacks {
		st, body, _ := restDo(t, a.method, a.url, aliceToken, a.body, a.header)
		leak := ""
		for _, s := range secrets {
			if bytes.Contains(body, []byte(s)) {
				leak = s
			}
		}
		switch {
		case !slices.Contains(a.refusal, st):
			t.Errorf("attack %q (%s %s): %d %s; want %v", a.name, a.method, a.url, st, body, a.refusal)
		case leak != "":
			t.Errorf("attack %q (%s %s) was refused (%d) but its answer leaks %q: %s", a.name, a.method, a.url, st, leak, body)
		default:
			refused++
		}
	}
	// Listing jobs shows alice none of bob's.
	for _, u := range []string{jobsURL, jmURL, jobsURL + "?status=COMPLETED", jmURL + "?status=COMPLETED&pageSize=1000"} {
		st, body, _ := restCall(t, "GET", u, aliceToken, nil)
		if st != 200 || bytes.Contains(body, []byte("/users/bob")) || bytes.Contains(body, []byte(fmt.Sprintf(`"id":%d,`, v.job))) {
			t.Errorf("alice lists %s: %d, and sees bob's job: %s", u, st, body)
		} else {
			refused++
		}
	}
	t.Logf("REST: %d attacks, %d refused", len(attacks)+4, refused)
	if refused != len(attacks)+4 {
		t.Errorf("%d of %d REST attacks were not refused", len(attacks)+4-refused, len(attacks)+4)
	}

	// bob's world is as it was, and his streams still work for him.
	if after := v.snapshot(t); after != before {
		t.Errorf("the attacks changed bob's world:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if st, b, _ := restCall(t, "POST", c.streamURL(bobOpen, "read"), bobToken, nil); st != 200 || string(b) != secretSec {
		t.Errorf("bob reads his stream: %d %q", st, b)
	}
	if st, b, _ := restCall(t, "POST", c.streamURL(bobCreate, "close"), bobToken, nil); st != 200 {
		t.Errorf("bob closes his create stream: %d %s", st, b)
	}
	fi, err := v.bob.Stat(ctx, bobSecDir+"/new-by-bob")
	if err != nil || fi.GetOwner() != "bob" || fi.GetLength() != int64(len("bob's new bytes")) {
		t.Errorf("bob's file written through his stream: %v %v", fi, err)
	}
	// The owner is not refused what alice was: the refusals are about who
	// asks, not a broken endpoint.
	for _, a := range []string{"get-status", "exists", "open-file", "list-status"} {
		p := bobSecFile
		if a == "list-status" {
			p = bobSecDir
		}
		if st, b, _ := restCall(t, "POST", paths(p, a), bobToken, nil); st != 200 {
			t.Errorf("bob's own %s %s: %d %s", a, p, st, b)
		}
	}
	if st, b, _ := restCall(t, "GET", fmt.Sprintf("%s/%d", jobsURL, v.job), bobToken, nil); st != 200 {
		t.Errorf("bob reads his job: %d %s", st, b)
	}

	// What alice may create is hers, through a stream as through the SDK,
	// finished or not.
	mine := restStream(t, c, aliceToken, paths("/users/alice/mine", "create-file"), json(`{"mode": "0600"}`))
	restCall(t, "POST", c.streamURL(mine, "write"), aliceToken, []byte("alice's"))
	pending := restStream(t, c, aliceToken, paths("/users/alice/pending", "create-file"), nil)
	if fi, err := v.root.Stat(ctx, "/users/alice/pending"); err != nil || fi.GetOwner() != "alice" || fi.GetGroup() != "alice" {
		t.Errorf("alice's file being written: %v %v, want owned by alice", fi, err)
	}
	if st, b, _ := restCall(t, "POST", c.streamURL(mine, "close"), aliceToken, nil); st != 200 {
		t.Fatalf("alice closes her stream: %d %s", st, b)
	}
	if fi, err := v.root.Stat(ctx, "/users/alice/mine"); err != nil || fi.GetOwner() != "alice" || fi.GetMode() != 0o600 {
		t.Errorf("alice's file: %v %v, want alice's, 0600", fi, err)
	}
	// Stream ids: random, below 2^53, never sequential; at most 6 per
	// user (429 with Retry-After beyond), bob unaffected.
	ids := []int64{pending}
	for len(ids) < 6 {
		ids = append(ids, restStream(t, c, aliceToken, paths("/users/alice/mine", "open-file"), nil))
	}
	for i, id := range ids {
		if id <= 0 || id >= 1<<53 {
			t.Errorf("stream id %d is not in [1, 2^53)", id)
		}
		if i > 0 && (id == ids[i-1]+1 || id == ids[i-1]-1) {
			t.Errorf("stream ids %d then %d: sequential", ids[i-1], id)
		}
	}
	st, body, hdr := restCall(t, "POST", paths("/users/alice/mine", "open-file"), aliceToken, nil)
	if st != http.StatusTooManyRequests || hdr.Get("Retry-After") == "" || !strings.Contains(string(body), "proxy.max-streams-per-user") {
		t.Errorf("alice's 7th stream: %d %v %s; want 429, Retry-After, naming proxy.max-streams-per-user", st, hdr, body)
	}
	restStream(t, c, bobToken, paths(bobSecFile, "open-file"), nil) // bob has his own allowance
	restCall(t, "POST", c.streamURL(ids[1], "close"), aliceToken, nil)
	restStream(t, c, aliceToken, paths("/users/alice/mine", "open-file"), nil)
}

// restStream opens a stream (open-file or create-file URL) and returns its id.
func restStream(t *testing.T, c *cluster, token, url string, body []byte) int64 {
	t.Helper()
	st, b, _ := restCall(t, "POST", url, token, body)
	if st != 200 {
		t.Fatalf("POST %s: %d %s", url, st, b)
	}
	var id int64
	if err := json.Unmarshal(b, &id); err != nil {
		t.Fatalf("stream id %s: %v", b, err)
	}
	return id
}

// restDo is restCall with extra headers.
func restDo(t *testing.T, method, url, token string, body []byte, h http.Header) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range h {
		req.Header[k] = vs
	}
	req.Header.Set("Authorization", "Bearer "+token)
	cl := &http.Client{Timeout: time.Minute}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.Bytes(), resp.Header
}

func ptr[T any](v T) *T { return &v }
