// Package python runs the Python client's tests (sdk/python/tests) with
// python3 against a real `alluvium local` this test starts.
package python

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alluvium/alluvium/internal/testutil"
)

func TestPythonClient(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err == nil {
		// The client needs Python 3.9 or newer.
		out, verr := exec.Command(py, "-c", "import sys; assert sys.version_info >= (3, 9), sys.version").CombinedOutput()
		if verr != nil {
			err = fmt.Errorf("%s is too old: %s", py, out)
		}
	}
	if err != nil {
		msg := fmt.Sprintf("python3 (>= 3.9) is needed for sdk/python's tests (%v): PYTHON CLIENT TESTS DID NOT RUN", err)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip("!!! " + msg)
	}
	bin := testutil.Binary(t)
	base := testutil.PortBase(t)
	root := t.TempDir()
	ufs := filepath.Join(root, "ufs")
	if err := os.MkdirAll(ufs, 0o755); err != nil {
		t.Fatal(err)
	}
	const token = "python-test-token"
	p := testutil.Start(t, "local", bin, []string{"ALLUVIUM_PROXY_STREAM_TIMEOUT=2s"}, "local", "--home", filepath.Join(root, "home"),
		"--ufs", ufs, "--workers", "1", "--port-base", fmt.Sprint(base), "--token", token)
	p.WaitLog("ready", 90*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "-m", "unittest", "discover", "-s", "tests", "-t", ".", "-v")
	cmd.Dir = filepath.Join(testutil.RepoRoot(t), "sdk", "python")
	cmd.Env = append(os.Environ(),
		fmt.Sprintf("ALLUVIUM_PROXY=http://127.0.0.1:%d", base+6),
		"ALLUVIUM_TOKEN="+token,
		"ALLUVIUM_TEST_UFS="+ufs,
		"PYTHONDONTWRITEBYTECODE=1",
	)
	out, err := cmd.CombinedOutput()
	t.Logf("python3 -m unittest:\n%s", out)
	if ctx.Err() != nil {
		t.Fatal("the Python tests timed out")
	}
	if err != nil {
		t.Fatalf("the Python client's tests failed: %v", err)
	}
	if !strings.Contains(string(out), "OK") || strings.Contains(string(out), "skipped") {
		t.Fatalf("the Python tests did not all run and pass")
	}
}
