// Package s3 tests the S3 gateway of `alluvium local` with real S3
// clients: the AWS CLI and s3cmd from Debian's packages (shelled out, with
// a temp HOME and config, pointed at 127.0.0.1 only), and minio-go for the
// API corners. Objects are compared byte for byte (sha256), and checked to
// be files in the namespace (and files to be objects).
package s3

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alluvium/alluvium/internal/config"
	"github.com/alluvium/alluvium/internal/testutil"
)

const token = "s3-test-token"

type cluster struct {
	bin    string
	home   string
	ufs    string
	s3     string // http://127.0.0.1:P+7
	s3Host string // 127.0.0.1:P+7
	rest   string
	cliEnv []string // for the alluvium CLI
	// workerHTTP is the (one) worker's http address (/metrics).
	workerHTTP string
}

func startLocal(t *testing.T) *cluster {
	t.Helper()
	bin := testutil.Binary(t)
	base := testutil.PortBase(t)
	root := t.TempDir()
	c := &cluster{bin: bin, home: filepath.Join(root, "home"), ufs: filepath.Join(root, "ufs")}
	if err := os.MkdirAll(c.ufs, 0o755); err != nil {
		t.Fatal(err)
	}
	p := testutil.Start(t, "local", bin, nil, "local", "--home", c.home, "--ufs", c.ufs, "--workers", "1",
		"--port-base", fmt.Sprint(base), "--token", token)
	p.WaitLog("ready", 90*time.Second)
	c.s3Host = fmt.Sprintf("127.0.0.1:%d", base+7)
	c.s3 = "http://" + c.s3Host
	c.rest = fmt.Sprintf("http://127.0.0.1:%d", base+6)
	_, whttp, _ := config.WorkerPorts(base, 0)
	c.workerHTTP = fmt.Sprintf("127.0.0.1:%d", whttp)
	c.cliEnv = []string{fmt.Sprintf("ALLUVIUM_MASTER=localhost:%d", base), fmt.Sprintf("ALLUVIUM_JOB_MASTER=localhost:%d", base+3),
		"ALLUVIUM_TOKEN=" + token}
	return c
}

// alluvium runs the CLI against the cluster and returns stdout.
func (c *cluster) alluvium(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := testutil.Run(t, c.bin, c.cliEnv, args...)
	if code != 0 {
		t.Fatalf("alluvium %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

// clientTool finds a third-party client: Debian's package first, then
// $PATH. Missing, it skips loudly outside CI and fails in CI.
func clientTool(t *testing.T, name string) []string {
	t.Helper()
	var found []string
	seen := map[string]bool{}
	for _, p := range []string{"/usr/bin/" + name} {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			found = append(found, p)
			if r, err := filepath.EvalSymlinks(p); err == nil {
				seen[r] = true
			}
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		if r, err := filepath.EvalSymlinks(p); err == nil && !seen[r] {
			found = append(found, p)
		}
	}
	if len(found) == 0 {
		msg := name + " is not installed (apt-get install -y awscli s3cmd; .ci/run does it): S3 CLIENT TESTS DID NOT RUN"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip("!!! " + msg)
	}
	return found
}

// run runs a client command with env and returns stdout, stderr and the
// exit code; a hang fails the test.
func run(t *testing.T, env []string, name string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s %s: timed out\n%s", name, strings.Join(args, " "), stderr.String())
	}
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("%s: %v", name, err)
		}
		code = ee.ExitCode()
	}
	return stdout.String(), stderr.String(), code
}

func mustRun(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	out, errOut, code := run(t, env, name, args...)
	if code != 0 {
		t.Fatalf("%s %s: exit %d\nstdout: %s\nstderr: %s", filepath.Base(name), strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// baseEnv is a minimal environment with a temp HOME, so no client reads or
// writes the machine's own configuration.
func baseEnv(t *testing.T) []string {
	home := t.TempDir()
	env := []string{"HOME=" + home, "PATH=" + os.Getenv("PATH"), "LANG=C.UTF-8", "LC_ALL=C.UTF-8", "TMPDIR=" + os.TempDir()}
	// A pyenv shim needs its root, which it otherwise finds under HOME.
	if r := os.Getenv("PYENV_ROOT"); r != "" {
		env = append(env, "PYENV_ROOT="+r)
	} else if h, err := os.UserHomeDir(); err == nil {
		if st, err := os.Stat(filepath.Join(h, ".pyenv")); err == nil && st.IsDir() {
			env = append(env, "PYENV_ROOT="+filepath.Join(h, ".pyenv"))
		}
	}
	return env
}

// randomFile writes size random bytes to path and returns them.
func randomFile(t *testing.T, path string, size int) []byte {
	t.Helper()
	b := testutil.RandBytes(size)
	testutil.WriteFile(t, path, b)
	return b
}

func fileSHA(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return testutil.SHA256(b)
}

// waitWorkerSettled waits until the worker holds exactly the blocks the FS
// master places on it (fsadmin report): a free the master has recorded
// has then reached the worker, which drops the blocks on its next
// heartbeat.
func (c *cluster) waitWorkerSettled(t *testing.T) {
	t.Helper()
	testutil.Eventually(t, 20*time.Second, func() error {
		var r struct {
			Workers []struct {
				Blocks int64 `json:"blocks"`
			} `json:"workers"`
		}
		if err := json.Unmarshal([]byte(c.alluvium(t, "fsadmin", "report", "--output", "json")), &r); err != nil {
			return err
		}
		var want int64
		for _, w := range r.Workers {
			want += w.Blocks
		}
		m, err := testutil.MetricsWithToken(c.workerHTTP, token)
		if err != nil {
			return err
		}
		if have, ok := m["alluvium_worker_blocks"]; !ok || int64(have) != want {
			return fmt.Errorf("the worker holds %v blocks, the FS master places %d on it", have, want)
		}
		return nil
	})
}
