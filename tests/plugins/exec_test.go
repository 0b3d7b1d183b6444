// Package plugins tests the plans users bring themselves end to end on
// real processes: the built-in exec plan (allowed commands run beside the
// data) and plan plugins loaded from plans.dir (the example checksum
// plugin, built by the test).
package plugins

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alluvium/alluvium/internal/jobview"
	"github.com/alluvium/alluvium/internal/testutil"
)

const (
	aliceToken = "alice-token-0123456789abcdef0123456789"
	bobToken   = "bob-token-0123456789abcdef0123456789ab"
)

// local is an `alluvium local` cluster with users and a config.
type local struct {
	bin, home, ufs    string
	token             string
	master, jobMaster string
	proc              *testutil.Process
}

func startLocal(t *testing.T, workers int, yaml string) *local {
	t.Helper()
	c := &local{bin: testutil.Binary(t)}
	root := t.TempDir()
	c.home, c.ufs = filepath.Join(root, "home"), filepath.Join(root, "ufs")
	if err := os.MkdirAll(c.ufs, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(root, "alluvium.yaml")
	testutil.WriteFile(t, conf, []byte(yaml))
	c.proc = testutil.Start(t, "local", c.bin, []string{"ALLUVIUM_TOKEN=", fmt.Sprintf("ALLUVIUM_FSMASTER_USER_BLOCK_SIZE=%d", testutil.BlockSize)},
		"local", "--home", c.home, "--ufs", c.ufs, "--workers", fmt.Sprint(workers),
		"--port-base", fmt.Sprint(testutil.PortBase(t)), "--config", conf)
	c.proc.WaitLog("ready", 90*time.Second)
	vars := map[string]string{}
	f, err := os.Open(filepath.Join(c.home, "env"))
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "export "), "="); ok {
			vars[k] = v
		}
	}
	f.Close()
	c.token, c.master, c.jobMaster = vars["ALLUVIUM_TOKEN"], vars["ALLUVIUM_MASTER"], vars["ALLUVIUM_JOB_MASTER"]
	if c.token == "" {
		t.Fatalf("%s/env has no token: %v", c.home, vars)
	}
	return c
}

func (c *local) cli(t *testing.T, token string, args ...string) (string, string, int) {
	t.Helper()
	return testutil.Run(t, c.bin, []string{"ALLUVIUM_MASTER=" + c.master, "ALLUVIUM_JOB_MASTER=" + c.jobMaster, "ALLUVIUM_TOKEN=" + token}, args...)
}

func (c *local) must(t *testing.T, token string, args ...string) string {
	t.Helper()
	out, errOut, code := c.cli(t, token, args...)
	if code != 0 {
		t.Fatalf("alluvium %s: exit %d: %s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// refused wants exit 1 and a stderr holding every word of want.
func (c *local) refused(t *testing.T, token string, want []string, args ...string) {
	t.Helper()
	out, errOut, code := c.cli(t, token, args...)
	if code != 1 {
		t.Fatalf("alluvium %s: exit %d, stdout %q, stderr %q; want exit 1", strings.Join(args, " "), code, out, errOut)
	}
	for _, w := range want {
		if !strings.Contains(errOut, w) {
			t.Fatalf("alluvium %s: %q does not say %q", strings.Join(args, " "), errOut, w)
		}
	}
}

// job runs a job command with --output json and returns the job printed.
func (c *local) job(t *testing.T, token string, args ...string) (jobview.Job, int) {
	t.Helper()
	out, errOut, code := c.cli(t, token, withFlags(args, "--output", "json")...)
	var j jobview.Job
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		t.Fatalf("alluvium %s: not one JSON job (exit %d): %v\n%s%s", strings.Join(args, " "), code, err, out, errOut)
	}
	return j, code
}

// withFlags puts flags before a "--" in args (after it they would be the
// command's).
func withFlags(args []string, flags ...string) []string {
	for i, a := range args {
		if a == "--" {
			return append(append(append([]string(nil), args[:i]...), flags...), args[i:]...)
		}
	}
	return append(append([]string(nil), args...), flags...)
}

// execRun is one run of exec's task output (plans.ExecRun as JSON).
type execRun struct {
	Path         string `json:"path"`
	Exit         int    `json:"exit"`
	Output       string `json:"output"`
	Error        string `json:"error"`
	ShortCircuit bool   `json:"shortCircuit"`
}

// runs collects every run of a finished job's tasks, by path.
func (c *local) runs(t *testing.T, token string, id int64) map[string]execRun {
	t.Helper()
	j, code := c.job(t, token, "job", "stat", fmt.Sprint(id), "-v")
	if code != 0 {
		t.Fatalf("job stat %d: exit %d", id, code)
	}
	out := map[string]execRun{}
	for _, task := range j.Tasks {
		var rs []execRun
		if err := json.Unmarshal(task.Result, &rs); err != nil {
			t.Fatalf("task %d result %q: %v", task.ID, task.Result, err)
		}
		for _, r := range rs {
			if _, dup := out[r.Path]; dup {
				t.Errorf("%s ran twice", r.Path)
			}
			out[r.Path] = r
		}
	}
	return out
}

const execYAML = `
security:
  users:
    alice: ` + aliceToken + `
    bob: ` + bobToken + `
jobworker:
  exec:
    allow: [sha256sum, wc, "false", env]
`

// TestExecPlan: allowed commands run once per file beside its data, with
// the file as the cached block file itself (short-circuit) or on stdin;
// exit codes and outputs show in job stat -v; a command not allowed, and a
// file the submitter may not read, are refused at submit.
func TestExecPlan(t *testing.T) {
	c := startLocal(t, 2, execYAML)
	local := t.TempDir()
	files := map[string][]byte{}
	for i := 0; i < 12; i++ {
		name := fmt.Sprintf("f%02d", i)
		b := testutil.RandBytes(100 + i*97)
		if i == 11 {
			b = testutil.RandBytes(3*testutil.BlockSize + 5) // several blocks: spooled, not short-circuit
		}
		files["/data/"+name] = b
		testutil.WriteFile(t, filepath.Join(local, "data", name), b)
	}
	c.must(t, c.token, "fs", "put", filepath.Join(local, "data"), "/data")

	t.Run("sha256sum on each file, beside its data", func(t *testing.T) {
		j, code := c.job(t, c.token, "job", "submit", "exec", "/data", "--wait", "--", "sha256sum")
		if code != 0 || j.Status != "COMPLETED" {
			t.Fatalf("exec job: exit %d, %+v", code, j)
		}
		runs := c.runs(t, c.token, j.ID)
		if len(runs) != len(files) {
			t.Fatalf("%d runs, want one per file (%d)", len(runs), len(files))
		}
		short := 0
		for p, b := range files {
			r, ok := runs[p]
			sum := sha256.Sum256(b)
			if !ok || r.Exit != 0 || !strings.HasPrefix(r.Output, hex.EncodeToString(sum[:])) {
				t.Errorf("%s: %+v, want exit 0 and output starting %x", p, r, sum[:6])
			}
			if r.ShortCircuit {
				short++
			}
		}
		if runs["/data/f11"].ShortCircuit {
			t.Errorf("a 3-block file was given as a block file")
		}
		if short != len(files)-1 {
			t.Errorf("%d of %d one-block cached files went short-circuit", short, len(files)-1)
		}
		// The text view lists each file's exit code and output.
		out := c.must(t, c.token, "job", "stat", fmt.Sprint(j.ID), "-v")
		if !strings.Contains(out, "/data/f03\texit 0") && !strings.Contains(out, "/data/f03  exit 0") {
			t.Errorf("job stat -v does not list /data/f03 with exit 0:\n%s", out)
		}
	})

	t.Run("stdin input", func(t *testing.T) {
		j, code := c.job(t, c.token, "job", "submit", "exec", "/data", "--input", "stdin", "--wait", "--", "wc", "-c")
		if code != 0 || j.Status != "COMPLETED" {
			t.Fatalf("exec job: exit %d, %+v", code, j)
		}
		for p, r := range c.runs(t, c.token, j.ID) {
			if strings.TrimSpace(r.Output) != fmt.Sprint(len(files[p])) {
				t.Errorf("%s: wc -c said %q, want %d", p, r.Output, len(files[p]))
			}
		}
	})

	t.Run("a failing command fails its files with the exit code", func(t *testing.T) {
		j, code := c.job(t, c.token, "job", "submit", "exec", "/data/f01", "--wait", "--", "false")
		if code == 0 || j.Status != "FAILED" {
			t.Fatalf("exec false: exit %d, %+v; want FAILED", code, j)
		}
		if r := c.runs(t, c.token, j.ID)["/data/f01"]; r.Exit != 1 {
			t.Errorf("false: %+v, want exit 1", r)
		}
	})

	t.Run("a command not allowed is refused at submit", func(t *testing.T) {
		c.refused(t, c.token, []string{"not allowed", "jobworker.exec.allow", "sha256sum"}, "job", "submit", "exec", "/data", "--", "rm", "-rf", "/")
		c.refused(t, c.token, []string{"not allowed"}, "job", "submit", "exec", "/data", "--", "/usr/bin/sha256sum")
	})

	t.Run("a user who cannot read a file cannot run a command on it", func(t *testing.T) {
		c.must(t, c.token, "fs", "mkdir", "-p", "/home/alice")
		c.must(t, c.token, "fs", "chown", "alice:alice", "/home/alice")
		secret := filepath.Join(local, "secret")
		testutil.WriteFile(t, secret, []byte("alice's secret\n"))
		c.must(t, aliceToken, "fs", "put", secret, "/home/alice/secret")
		c.must(t, aliceToken, "fs", "chmod", "600", "/home/alice/secret")
		c.refused(t, bobToken, []string{"permission denied", "/home/alice"}, "job", "submit", "exec", "/home/alice/secret", "--", "wc", "-c")
		c.refused(t, bobToken, []string{"permission denied"}, "job", "submit", "exec", "/home/alice", "--", "wc", "-c")
		// alice herself may.
		j, code := c.job(t, aliceToken, "job", "submit", "exec", "/home/alice/secret", "--input", "stdin", "--wait", "--", "wc", "-c")
		if code != 0 || j.Status != "COMPLETED" {
			t.Fatalf("alice's exec: exit %d, %+v", code, j)
		}
		if r := c.runs(t, aliceToken, j.ID)["/home/alice/secret"]; strings.TrimSpace(r.Output) != "15" {
			t.Errorf("alice's wc -c: %+v", r)
		}
	})

	t.Run("the command does not see the cluster token", func(t *testing.T) {
		j, code := c.job(t, c.token, "job", "submit", "exec", "/data/f00", "--input", "stdin", "--wait", "--", "env")
		if code != 0 || j.Status != "COMPLETED" {
			t.Fatalf("exec env: exit %d, %+v", code, j)
		}
		r := c.runs(t, c.token, j.ID)["/data/f00"]
		if !strings.Contains(r.Output, "ALLUVIUM_PATH=/data/f00") {
			t.Fatalf("env printed %q, want ALLUVIUM_PATH", r.Output)
		}
		if strings.Contains(r.Output, c.token) || strings.Contains(r.Output, "ALLUVIUM_TOKEN") || strings.Contains(r.Output, "ALLUVIUM_MASTER") {
			t.Errorf("the command's environment holds the worker's: %q", r.Output)
		}
	})
}
