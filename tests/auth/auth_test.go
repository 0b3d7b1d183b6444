// Package auth tests authentication, permissions and limits end to end on
// `alluvium local` and separate processes: the cluster token generated on
// first start, users from security.users with POSIX permissions that jobs
// respect too, mTLS, and the limits that answer ResourceExhausted or
// InvalidArgument and change nothing.
package auth

import (
	"bufio"
	"bytes"
	"context"
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
	"github.com/minio/minio-go/v7/pkg/credentials"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/alluvium/alluvium/api"
	"github.com/alluvium/alluvium/internal/rpc"
	"github.com/alluvium/alluvium/internal/testutil"
	"github.com/alluvium/alluvium/sdk"
)

const (
	aliceToken = "alice-token-0123456789abcdef"
	bobToken   = "bob-token-0123456789abcdef00"
)

type cluster struct {
	bin, home, ufs, conf string
	base                 int
	token                string // the cluster token (from <home>/env)
	master, jobMaster    string
	proc                 *testutil.Process
}

// startLocal runs `alluvium local` with the YAML config given (may be
// empty) and no token in its environment, so it makes its own.
func startLocal(t *testing.T, yaml string, env ...string) *cluster {
	t.Helper()
	c := &cluster{bin: testutil.Binary(t), base: testutil.PortBase(t)}
	root := t.TempDir()
	c.home, c.ufs = filepath.Join(root, "home"), filepath.Join(root, "ufs")
	if err := os.MkdirAll(c.ufs, 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{"local", "--home", c.home, "--ufs", c.ufs, "--workers", "1", "--port-base", fmt.Sprint(c.base)}
	if yaml != "" {
		c.conf = filepath.Join(root, "alluvium.yaml")
		if err := os.WriteFile(c.conf, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--config", c.conf)
	}
	c.proc = testutil.Start(t, "local", c.bin, append([]string{"ALLUVIUM_TOKEN="}, env...), args...)
	c.proc.WaitLog("ready", 90*time.Second)
	vars := readEnv(t, filepath.Join(c.home, "env"))
	c.token, c.master, c.jobMaster = vars["ALLUVIUM_TOKEN"], vars["ALLUVIUM_MASTER"], vars["ALLUVIUM_JOB_MASTER"]
	if c.token == "" {
		t.Fatalf("%s/env has no ALLUVIUM_TOKEN: %v", c.home, vars)
	}
	return c
}

func readEnv(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "export "), "=")
		if ok {
			out[k] = v
		}
	}
	return out
}

// cli runs the CLI as the holder of token ("" : no token at all).
func (c *cluster) cli(t *testing.T, token string, args ...string) (string, string, int) {
	t.Helper()
	env := []string{"ALLUVIUM_MASTER=" + c.master, "ALLUVIUM_JOB_MASTER=" + c.jobMaster, "ALLUVIUM_TOKEN=" + token}
	return testutil.Run(t, c.bin, env, args...)
}

// must runs the CLI and fails the test unless it exits 0.
func (c *cluster) must(t *testing.T, token string, args ...string) string {
	t.Helper()
	out, errOut, code := c.cli(t, token, args...)
	if code != 0 {
		t.Fatalf("alluvium %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

// refused runs the CLI, wants exit 1 with one line on stderr containing
// every word of want, and returns that line.
func (c *cluster) refused(t *testing.T, token string, want []string, args ...string) string {
	t.Helper()
	out, errOut, code := c.cli(t, token, args...)
	line := strings.TrimSpace(errOut)
	if code != 1 || strings.Count(line, "\n") != 0 {
		t.Fatalf("alluvium %s: exit %d, stdout %q, stderr %q; want exit 1 and one line", strings.Join(args, " "), code, out, errOut)
	}
	for _, w := range want {
		if !strings.Contains(line, w) {
			t.Fatalf("alluvium %s: %q does not say %q", strings.Join(args, " "), line, w)
		}
	}
	return line
}

func (c *cluster) client(t *testing.T, token string, opts ...sdk.Option) *sdk.Client {
	t.Helper()
	cl, err := sdk.Dial(context.Background(), append([]sdk.Option{sdk.WithMaster(c.master), sdk.WithJobMasters(c.jobMaster),
		sdk.WithToken(token), sdk.WithTimeout(20 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

func jobs(t *testing.T, cl *sdk.Client) *sdk.Jobs {
	t.Helper()
	j, err := cl.Jobs()
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func httpStatus(t *testing.T, url, token string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestTokenByDefault: a fresh `alluvium local` makes a 0600 token and
// requires it everywhere; the CLI without it fails with one line naming
// ALLUVIUM_TOKEN, with it works; a wrong token is logged with its peer;
// /healthz alone is open; a worker started apart without a token refuses
// to run.
func TestTokenByDefault(t *testing.T) {
	c := startLocal(t, "")
	st, err := os.Stat(filepath.Join(c.home, "token"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %o, want 600", st.Mode().Perm())
	}
	b, _ := os.ReadFile(filepath.Join(c.home, "token"))
	if strings.TrimSpace(string(b)) != c.token || len(c.token) < 32 {
		t.Errorf("token file %q and env token %q differ or are short", b, c.token)
	}

	c.refused(t, "", []string{"ALLUVIUM_TOKEN", "no token"}, "fs", "ls", "/")
	c.refused(t, "", []string{"ALLUVIUM_TOKEN"}, "job", "ls")
	c.refused(t, "wrong-token-wrong-token", []string{"ALLUVIUM_TOKEN", "wrong token"}, "fs", "mkdir", "/nope")
	testutil.Eventually(t, 30*time.Second, func() error {
		if !strings.Contains(c.proc.Log(), "wrong token") || !strings.Contains(c.proc.Log(), "127.0.0.1:") {
			return fmt.Errorf("no log line of the refused call naming its peer")
		}
		return nil
	})
	c.must(t, c.token, "fs", "mkdir", "/ok")
	if out := c.must(t, c.token, "fs", "ls", "/"); !strings.Contains(out, "ok") {
		t.Errorf("ls / with the token: %q", out)
	}
	if _, _, code := c.cli(t, c.token, "fs", "stat", "/nope"); code != 1 {
		t.Errorf("the refused mkdir made /nope")
	}

	for _, port := range []int{c.base + 1, c.base + 4} { // FS master and job master http
		if code := httpStatus(t, fmt.Sprintf("http://127.0.0.1:%d/healthz", port), ""); code != 200 {
			t.Errorf("port %d /healthz without token: %d", port, code)
		}
		if code := httpStatus(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", port), ""); code != 401 {
			t.Errorf("port %d /metrics without token: %d, want 401", port, code)
		}
		if code := httpStatus(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", port), c.token); code != 200 {
			t.Errorf("port %d /metrics with the token: %d", port, code)
		}
	}

	// A separate server without the token refuses to start (exit 2).
	_, errOut, code := testutil.Run(t, c.bin, []string{"ALLUVIUM_TOKEN="}, "worker", "--home", t.TempDir(), "--master", c.master,
		"--port-base", fmt.Sprint(c.base+100))
	if code != 2 || !strings.Contains(errOut, "ALLUVIUM_TOKEN") || !strings.Contains(errOut, "no cluster token") {
		t.Errorf("worker without a token: exit %d, %q", code, errOut)
	}
	// The same worker with the token joins the cluster.
	w := testutil.Start(t, "worker2", c.bin, []string{"ALLUVIUM_TOKEN=" + c.token}, "worker", "--home", t.TempDir(),
		"--master", c.master, "--job-master", c.jobMaster, "--port-base", fmt.Sprint(c.base), "--index", "5")
	w.WaitLog("worker ready", 60*time.Second)
	cl := c.client(t, c.token)
	testutil.Eventually(t, 20*time.Second, func() error {
		ws, err := cl.Workers(context.Background())
		if err != nil {
			return err
		}
		if len(ws) != 2 {
			return fmt.Errorf("%d block workers, want 2", len(ws))
		}
		return nil
	})
	// A restart of the same home keeps the token.
	_ = c.proc.Stop(30 * time.Second)
	p2 := testutil.Start(t, "local-again", c.bin, []string{"ALLUVIUM_TOKEN="}, "local", "--home", c.home, "--ufs", c.ufs,
		"--workers", "1", "--port-base", fmt.Sprint(c.base))
	p2.WaitLog("ready", 90*time.Second)
	if again := readEnv(t, filepath.Join(c.home, "env"))["ALLUVIUM_TOKEN"]; again != c.token {
		t.Errorf("token after restart %q, want the same %q", again, c.token)
	}
}

// The separate FS master process makes the token on a fresh home too, and
// `alluvium format` does.
func TestFormatAndFSMasterMakeAToken(t *testing.T) {
	bin := testutil.Binary(t)
	home := t.TempDir()
	_, errOut, code := testutil.Run(t, bin, []string{"ALLUVIUM_TOKEN="}, "format", "--home", home)
	if code != 0 {
		t.Fatalf("format: exit %d: %s", code, errOut)
	}
	st, err := os.Stat(filepath.Join(home, "token"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token after format: %v %v", st, err)
	}
	first, _ := os.ReadFile(filepath.Join(home, "token"))

	home2 := t.TempDir()
	base := testutil.PortBase(t)
	m := testutil.Start(t, "fsmaster", bin, []string{"ALLUVIUM_TOKEN="}, "fsmaster", "--home", home2, "--port-base", fmt.Sprint(base))
	m.WaitLog("fsmaster ready", 60*time.Second)
	tok, err := os.ReadFile(filepath.Join(home2, "token"))
	if err != nil || len(bytes.TrimSpace(tok)) < 32 || bytes.Equal(tok, first) {
		t.Fatalf("fsmaster's token: %q %v", tok, err)
	}
	env := []string{fmt.Sprintf("ALLUVIUM_MASTER=localhost:%d", base)}
	if _, errOut, code := testutil.Run(t, bin, append(env, "ALLUVIUM_TOKEN="), "fs", "ls", "/"); code != 1 || !strings.Contains(errOut, "ALLUVIUM_TOKEN") {
		t.Errorf("ls without token: exit %d %q", code, errOut)
	}
	// The token file is a way to give clients the token too.
	if _, errOut, code := testutil.Run(t, bin, append(env, "ALLUVIUM_TOKEN=", "ALLUVIUM_SECURITY_TOKEN_FILE="+filepath.Join(home2, "token")), "fs", "ls", "/"); code != 0 {
		t.Errorf("ls with security.token-file: exit %d %q", code, errOut)
	}
}

const usersYAML = `
security:
  users:
    alice: ` + aliceToken + `
    bob: ` + bobToken + `
  groups:
    alice: alice,staff
    bob: bob,staff
jobmaster:
  job:
    max-in-flight-per-user: 2
fsmaster:
  path:
    max-depth: 16
  list:
    max-page-size: 5
limits:
  max-request-bytes: 4194304
jobworker:
  exec:
    allow: [cat]
`

// TestUsersAndPermissions: alice cannot read bob's 0700 directory, list it,
// load or copy it through a job (refused at submit), nor act as bob; after
// bob's chmod she can, and what her job writes is hers.
func TestUsersAndPermissions(t *testing.T) {
	c := startLocal(t, usersYAML)
	ctx := context.Background()
	// The superuser gives each user a home.
	c.must(t, c.token, "fs", "mkdir", "-p", "/home/alice", "/home/bob")
	c.must(t, c.token, "fs", "chown", "alice:alice", "/home/alice")
	c.must(t, c.token, "fs", "chown", "bob:bob", "/home/bob")

	// bob writes a file into a private directory.
	data := bytes.Repeat([]byte("bob's data\n"), 3000)
	local := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(local, data, 0o644); err != nil {
		t.Fatal(err)
	}
	c.must(t, bobToken, "fs", "mkdir", "/home/bob/data")
	c.must(t, bobToken, "fs", "put", local, "/home/bob/data/f")
	c.must(t, bobToken, "fs", "chmod", "700", "/home/bob/data")
	if fi, err := c.client(t, bobToken).Stat(ctx, "/home/bob/data/f"); err != nil || fi.GetOwner() != "bob" || fi.GetGroup() != "bob" {
		t.Errorf("bob's file: %v %v, want owned by bob:bob", fi, err)
	}

	denied := []string{"permission denied", "alice", "/home/bob/data"}
	c.refused(t, aliceToken, denied, "fs", "cat", "/home/bob/data/f")
	c.refused(t, aliceToken, denied, "fs", "ls", "/home/bob/data")
	c.refused(t, aliceToken, denied, "fs", "rm", "/home/bob/data/f")
	c.refused(t, aliceToken, denied, "job", "submit", "load", "/home/bob/data", "--wait")
	c.refused(t, aliceToken, denied, "job", "submit", "copy", "/home/bob/data", "/home/alice/copy", "--wait")
	c.refused(t, aliceToken, []string{"permission denied"}, "fs", "chmod", "777", "/home/bob/data")
	c.refused(t, aliceToken, []string{"permission denied"}, "fs", "mkdir", "/top")
	c.refused(t, aliceToken, []string{"permission denied", "superuser"}, "fs", "mount", "/mnt", "file://"+t.TempDir())
	aliceJobs := jobs(t, c.client(t, aliceToken))
	if n := countJobs(t, aliceJobs); n != 0 {
		t.Fatalf("%d jobs exist after refused submits", n)
	}
	if _, err := c.client(t, c.token).Stat(ctx, "/home/alice/copy"); !isCode(err, codes.NotFound) {
		t.Fatalf("the refused copy left /home/alice/copy: %v", err)
	}

	// alice may not act as bob, with her own token.
	asBob := c.client(t, aliceToken, sdk.WithUser("bob"))
	if _, err := asBob.Stat(ctx, "/home/bob/data/f"); !isCode(err, codes.PermissionDenied) {
		t.Fatalf("alice acting as bob: %v", err)
	}
	// The cluster token acting for alice (as the proxy and job workers do)
	// is checked as alice.
	sysForAlice := c.client(t, c.token, sdk.WithUser("alice"))
	if _, err := sysForAlice.Stat(ctx, "/home/bob/data/f"); !isCode(err, codes.PermissionDenied) {
		t.Fatalf("the system acting for alice read bob's file: %v", err)
	}

	// Through the proxy: alice's token (REST) or her name and token as S3
	// credentials act as alice; bob's the same as bob.
	rest := fmt.Sprintf("http://127.0.0.1:%d/api/v1/paths/home/bob/data/list-status", c.base+6)
	if code := restPost(t, rest, aliceToken); code != http.StatusForbidden {
		t.Errorf("REST list-status of bob's dir as alice: %d, want 403", code)
	}
	if code := restPost(t, rest, bobToken); code != http.StatusOK {
		t.Errorf("REST list-status of bob's dir as bob: %d, want 200", code)
	}
	s3 := fmt.Sprintf("127.0.0.1:%d", c.base+7)
	if _, err := s3Get(t, s3, "alice", aliceToken, "home", "bob/data/f"); minio.ToErrorResponse(err).Code != "AccessDenied" {
		t.Errorf("S3 GET of bob's file as alice: %v, want AccessDenied", err)
	}
	if got, err := s3Get(t, s3, "bob", bobToken, "home", "bob/data/f"); err != nil || !bytes.Equal(got, data) {
		t.Errorf("S3 GET of bob's file as bob: %d bytes, %v", len(got), err)
	}

	// bob's jobs are his: alice may not cancel one.
	bobJobs := jobs(t, c.client(t, bobToken))
	id, err := bobJobs.Submit(ctx, "load", sdk.LoadConfig{Path: "/home/bob/data"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bobJobs.Wait(ctx, id, nil); err != nil {
		t.Fatal(err)
	}
	// She does not even see it (jobmaster.job.visible-to-all is off).
	if err := aliceJobs.Cancel(ctx, id); !isCode(err, codes.NotFound) {
		t.Fatalf("alice cancels bob's job: %v, want NotFound", err)
	}
	j, err := bobJobs.Get(ctx, id, false)
	if err != nil || j.GetSubmitter() != "bob" || j.GetRunAs() != "bob" || j.GetStatus() != api.JobInfo_COMPLETED {
		t.Fatalf("bob's job: %v %v", j, err)
	}

	// After chmod alice can read, load and copy; the copy is hers.
	c.must(t, bobToken, "fs", "chmod", "750", "/home/bob/data")
	c.must(t, bobToken, "fs", "chown", ":staff", "/home/bob/data")
	if out := c.must(t, aliceToken, "fs", "cat", "/home/bob/data/f"); out != string(data) {
		t.Fatalf("alice reads %d bytes, want %d", len(out), len(data))
	}
	c.must(t, aliceToken, "job", "submit", "load", "/home/bob/data", "--wait")
	c.must(t, aliceToken, "job", "submit", "copy", "/home/bob/data", "/home/alice/copy", "--wait")
	if out := c.must(t, aliceToken, "fs", "cat", "/home/alice/copy/f"); out != string(data) {
		t.Fatalf("copied file: %d bytes, want %d", len(out), len(data))
	}
	fi, err := c.client(t, aliceToken).Stat(ctx, "/home/alice/copy/f")
	if err != nil || fi.GetOwner() != "alice" {
		t.Fatalf("the copy's owner: %v %v", fi.GetOwner(), err)
	}
	// A copy into bob's directory is refused at submit: she may not write there.
	c.refused(t, aliceToken, []string{"permission denied"}, "job", "submit", "copy", "/home/alice/copy", "/home/bob/data/mine", "--wait")
}

func restPost(t *testing.T, url, token string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func s3Get(t *testing.T, endpoint, key, secret, bucket, object string) ([]byte, error) {
	t.Helper()
	mc, err := minio.New(endpoint, &minio.Options{Creds: credentials.NewStaticV4(key, secret, ""), Region: "us-east-1",
		BucketLookup: minio.BucketLookupPath})
	if err != nil {
		t.Fatal(err)
	}
	o, err := mc.GetObject(context.Background(), bucket, object, minio.GetObjectOptions{})
	if err != nil {
		return nil, err
	}
	defer o.Close()
	return io.ReadAll(o)
}

func countJobs(t *testing.T, j *sdk.Jobs) int {
	t.Helper()
	n := 0
	for _, err := range j.List(context.Background(), sdk.ListJobsOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	return n
}

func isCode(err error, c codes.Code) bool {
	if err == nil {
		return c == codes.OK
	}
	if status.Code(err) == c {
		return true
	}
	var se *sdk.Error
	if errors.As(err, &se) {
		return se.Code == c
	}
	return false
}

// TestLimits: an oversize request is ResourceExhausted, a too-deep path
// InvalidArgument, the jobs-per-user cap ResourceExhausted, a listing page
// is cut to the cap — and nothing changes on a refusal.
func TestLimits(t *testing.T) {
	c := startLocal(t, usersYAML)
	ctx := context.Background()
	root := c.client(t, c.token)
	if _, err := root.Mkdir(ctx, "/shared", sdk.MkdirOptions{Mode: 0o777}); err != nil {
		t.Fatal(err)
	}
	seq := func() int64 {
		t.Helper()
		info, err := root.MasterInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.GetJournalSequence()
	}

	// Oversize: a 5 MiB request to servers that take 4 MiB.
	before := seq()
	cc, err := rpc.Dial(c.master, rpc.ClientOptions{Token: c.token, MaxSendMsgSize: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	_, err = api.NewFileSystemMasterClient(cc).CreateDirectory(ctx, &api.CreateDirectoryRequest{Path: "/shared/" + strings.Repeat("x", 5<<20)})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("5 MiB request: %v, want ResourceExhausted", err)
	}
	if after := seq(); after != before {
		t.Errorf("journal moved %d → %d after the refused request", before, after)
	}

	// Too deep: 20 levels with fsmaster.path.max-depth 16.
	deep := "/shared" + strings.Repeat("/d", 19)
	before = seq()
	_, errOut, code := c.cli(t, aliceToken, "fs", "mkdir", "-p", deep)
	if code == 0 || !strings.Contains(errOut, "deeper than 16") {
		t.Fatalf("mkdir -p of 20 levels: exit %d %q", code, errOut)
	}
	if _, err := root.Mkdir(ctx, deep, sdk.MkdirOptions{Parents: true}); !isCode(err, codes.InvalidArgument) {
		t.Fatalf("SDK mkdir of 20 levels: %v, want InvalidArgument", err)
	}
	if _, err := root.Stat(ctx, "/shared/d"); !isCode(err, codes.NotFound) {
		t.Fatalf("a refused deep mkdir left /shared/d: %v", err)
	}
	if after := seq(); after != before {
		t.Errorf("journal moved %d → %d after the refused mkdirs", before, after)
	}

	// Listing pages are cut to fsmaster.list.max-page-size (5).
	for i := range 8 {
		c.must(t, c.token, "fs", "mkdir", fmt.Sprintf("/shared/e%d", i))
	}
	cc2 := api.NewFileSystemMasterClient(cc)
	page, err := cc2.ListStatus(ctx, &api.ListStatusRequest{Path: "/shared", PageSize: 1000000})
	if err != nil || len(page.GetInfos()) != 5 || page.GetNextPageToken() == "" {
		t.Fatalf("a page of 1000000 asked: %d entries, next %q, %v; want 5 and a next page", len(page.GetInfos()), page.GetNextPageToken(), err)
	}

	// Jobs in flight per user: 2. Two slow loads of alice's run; a third is
	// refused and no job is created; bob is not affected.
	data := bytes.Repeat([]byte("z"), 256<<10)
	local := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(local, data, 0o644); err != nil {
		t.Fatal(err)
	}
	// Written THROUGH (never cached): the slow loads move every byte at
	// their 1 KiB/s. Bandwidth is spent on the bytes that flow, so a block
	// still cached (a free the worker has not carried out yet) would let a
	// load end at once.
	c.must(t, aliceToken, "fs", "put", "--write-type", "THROUGH", local, "/shared/big")
	alice := jobs(t, c.client(t, aliceToken))
	var ids []int64
	for range 2 {
		id, err := alice.Submit(ctx, "load", sdk.LoadConfig{Path: "/shared/big", Bandwidth: 1024})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	n := countJobs(t, alice)
	_, err = alice.Submit(ctx, "load", sdk.LoadConfig{Path: "/shared/big", Bandwidth: 1024})
	if !isCode(err, codes.ResourceExhausted) || !strings.Contains(err.Error(), "max-in-flight-per-user") {
		t.Fatalf("a third job of alice: %v, want ResourceExhausted naming the key", err)
	}
	if got := countJobs(t, alice); got != n {
		t.Errorf("jobs %d → %d after a refused submit", n, got)
	}
	_, errOut, code = c.cli(t, aliceToken, "job", "submit", "load", "/shared/big")
	if code != 1 || !strings.Contains(errOut, "max-in-flight-per-user") {
		t.Errorf("CLI third submit: exit %d %q", code, errOut)
	}
	bob := jobs(t, c.client(t, bobToken))
	if _, err := bob.Submit(ctx, "load", sdk.LoadConfig{Path: "/shared/big"}); err != nil {
		t.Errorf("bob's job while alice is at her cap: %v", err)
	}
	// When one of hers ends she may submit again.
	if err := alice.Cancel(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, func() error {
		_, err := alice.Submit(ctx, "load", sdk.LoadConfig{Path: "/shared/big", Bandwidth: 1024})
		return err
	})
	for _, id := range ids[1:] {
		_ = alice.Cancel(ctx, id)
	}
}
