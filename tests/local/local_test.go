// Package local tests `alluvium local`, the all-in-one cluster a newcomer
// starts first: it must come up, serve files and jobs, write <home>/env,
// stop cleanly on SIGTERM, and keep namespace and cache across a restart.
package local

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alluvium/alluvium/internal/testutil"
)

type fileJSON struct {
	Path          string `json:"path"`
	Length        int64  `json:"length"`
	Persisted     bool   `json:"persisted"`
	CachedPercent int    `json:"cachedPercent"`
	FileID        int64  `json:"fileId"`
}

type jobJSON struct {
	ID        int64  `json:"id"`
	Plan      string `json:"plan"`
	Status    string `json:"status"`
	TasksDone int64  `json:"tasksDone"`
}

func TestLocalClusterLifecycle(t *testing.T) {
	bin := testutil.Binary(t)
	base := testutil.PortBase(t)
	root := t.TempDir()
	home, ufsDir := filepath.Join(root, "home"), filepath.Join(root, "ufs")
	data := make([]byte, 3<<20+12345)
	_, _ = rand.Read(data)
	if err := os.MkdirAll(filepath.Join(ufsDir, "warm"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ufsDir, "warm", "big.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	deep := []byte("a file two levels down\n")
	if err := os.MkdirAll(filepath.Join(ufsDir, "warm", "sub", "subsub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ufsDir, "warm", "sub", "subsub", "deep.txt"), deep, 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"local", "--home", home, "--ufs", ufsDir, "--workers", "2", "--port-base", fmt.Sprint(base)}
	p := testutil.Start(t, "local", bin, nil, args...)
	p.WaitLog("ready", 90*time.Second)

	cli, env := newLocalCLI(t, bin, home)
	run := cli.must
	for _, k := range []string{"ALLUVIUM_MASTER", "ALLUVIUM_JOB_MASTER"} {
		addr := env[k]
		var port int
		if _, err := fmt.Sscanf(addr[strings.LastIndex(addr, ":")+1:], "%d", &port); err != nil || port < base || port >= base+200 {
			t.Fatalf("%s=%q: port outside [%d, %d)", k, addr, base, base+200)
		}
	}
	if env["ALLUVIUM_MASTER"] != fmt.Sprintf("localhost:%d", base) || env["ALLUVIUM_JOB_MASTER"] != fmt.Sprintf("localhost:%d", base+3) {
		t.Fatalf("env = %v; want FS master on P and job master on P+3", env)
	}
	// The web console: on the FS master's http port (P+1), named in the
	// env and the ready line, and behind a login.
	ui := fmt.Sprintf("http://127.0.0.1:%d/ui/", base+1)
	if env["ALLUVIUM_UI"] != ui || !strings.Contains(p.Log(), "console "+ui) {
		t.Fatalf("ALLUVIUM_UI=%q and ready line %q; want %s in both", env["ALLUVIUM_UI"], p.Log(), ui)
	}
	if resp, err := http.Get(ui); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET %s without a token: %v %v, want 401 (the login form)", ui, resp, err)
	} else {
		resp.Body.Close()
	}
	if resp, err := testutil.HTTPGet(ui); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s with the token: %v %v, want 200", ui, resp, err)
	} else {
		resp.Body.Close()
	}

	// A UFS file appears on first ls, is loaded by a job, and reads back.
	if out := run("fs", "ls", "/warm"); !strings.Contains(out, "big.bin") {
		t.Fatalf("fs ls /warm = %q", out)
	}
	var job jobJSON
	if err := json.Unmarshal([]byte(run("job", "submit", "load", "/warm", "--wait", "--output", "json")), &job); err != nil {
		t.Fatal(err)
	}
	if job.Status != "COMPLETED" || job.Plan != "load" || job.TasksDone == 0 {
		t.Fatalf("load job = %+v", job)
	}
	var st fileJSON
	if err := json.Unmarshal([]byte(run("fs", "stat", "/warm/big.bin", "--output", "json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.CachedPercent != 100 || !st.Persisted || st.Length != int64(len(data)) {
		t.Fatalf("after load: %+v", st)
	}
	if got := run("fs", "cat", "/warm/big.bin"); !bytes.Equal([]byte(got), data) {
		t.Fatalf("fs cat returned %d bytes that differ from the UFS file", len(got))
	}
	src := filepath.Join(root, "local.txt")
	if err := os.WriteFile(src, []byte("written through alluvium local\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run("fs", "put", src, "/new/local.txt", "--write-type", "MUST_CACHE")

	// SIGTERM stops every role and exits 0.
	if err := p.Stop(30 * time.Second); err != nil {
		t.Fatalf("alluvium local exited with %v after SIGTERM", err)
	}

	// A restart with the same home keeps the namespace and the cache.
	p2 := testutil.Start(t, "local-restart", bin, nil, args...)
	p2.WaitLog("ready", 90*time.Second)
	if got := run("fs", "cat", "/new/local.txt"); got != "written through alluvium local\n" {
		t.Fatalf("MUST_CACHE file after restart = %q", got)
	}
	testutil.Eventually(t, 20*time.Second, func() error {
		var st fileJSON
		if err := json.Unmarshal([]byte(run("fs", "stat", "/warm/big.bin", "--output", "json")), &st); err != nil {
			return err
		}
		if st.CachedPercent != 100 {
			return fmt.Errorf("cachedPercent after restart = %d, want 100", st.CachedPercent)
		}
		return nil
	})

	// `fs free DIR` frees every file under it, as Alluxio's free does (it
	// used to refuse a directory without -r); the UFS still serves them.
	cached := func(path string) int {
		var st fileJSON
		if err := json.Unmarshal([]byte(run("fs", "stat", path, "--output", "json")), &st); err != nil {
			t.Fatal(err)
		}
		return st.CachedPercent
	}
	if c := cached("/warm/sub/subsub/deep.txt"); c != 100 {
		t.Fatalf("deep.txt cachedPercent = %d before free; the load should have cached it", c)
	}
	if out := run("fs", "free", "/warm"); !strings.Contains(out, "freed") {
		t.Fatalf("fs free /warm = %q", out)
	}
	for _, f := range []string{"/warm/big.bin", "/warm/sub/subsub/deep.txt"} {
		if c := cached(f); c != 0 {
			t.Errorf("%s cachedPercent = %d after fs free /warm, want 0", f, c)
		}
	}
	if got := run("fs", "cat", "/warm/sub/subsub/deep.txt"); got != string(deep) {
		t.Fatalf("deep.txt after free = %q", got)
	}
	// A file not persisted is still refused without --force, and the
	// refusal frees nothing.
	if _, errOut, code := cli.run("fs", "free", "/new"); code == 0 || !strings.Contains(errOut, "not persisted") {
		t.Fatalf("fs free /new (MUST_CACHE file): exit %d, %q; want a refusal naming it not persisted", code, errOut)
	}
	if c := cached("/new/local.txt"); c != 100 {
		t.Fatalf("/new/local.txt cachedPercent = %d after a refused free", c)
	}
	if err := p2.Stop(30 * time.Second); err != nil {
		t.Fatalf("second run exited with %v", err)
	}
}

func TestLocalBadFlags(t *testing.T) {
	bin := testutil.Binary(t)
	for _, args := range [][]string{
		{"local", "--workers", "0"},
		{"local", "--workers", "1000"},
		{"local", "--port-base", "-5"},
		{"local", "--no-such-flag"},
	} {
		_, errOut, code := testutil.Run(t, bin, nil, args...)
		if code != 2 || !strings.Contains(errOut, "--") {
			t.Errorf("alluvium %s: exit %d, stderr %q; want exit 2 naming the flag", strings.Join(args, " "), code, errOut)
		}
	}
}

// localCLI runs the CLI with the environment `alluvium local` wrote.
type localCLI struct {
	t   *testing.T
	bin string
	env []string
}

// newLocalCLI reads <home>/env of a ready `alluvium local`.
func newLocalCLI(t *testing.T, bin, home string) (*localCLI, map[string]string) {
	t.Helper()
	env := readEnv(t, filepath.Join(home, "env"))
	c := &localCLI{t: t, bin: bin}
	for k, v := range env {
		c.env = append(c.env, k+"="+v)
	}
	return c, env
}

func (c *localCLI) run(args ...string) (stdout, stderr string, code int) {
	c.t.Helper()
	return testutil.Run(c.t, c.bin, c.env, args...)
}

// must runs the CLI and fails the test unless it exits 0; it returns stdout.
func (c *localCLI) must(args ...string) string {
	c.t.Helper()
	out, errOut, code := c.run(args...)
	if code != 0 {
		c.t.Fatalf("alluvium %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

func readEnv(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("env file: %v", err)
	}
	env := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		line = strings.TrimPrefix(line, "export ")
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("env line %q is not an export", line)
		}
		env[k] = v
	}
	return env
}
