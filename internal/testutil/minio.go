package testutil

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// MinIO is a MinIO server started for a test on 127.0.0.1.
type MinIO struct {
	Endpoint  string // host:port
	AccessKey string
	SecretKey string
	Proc      *Process
}

// MinIOBinary finds the minio server: $MINIO_BIN, then the tool cache
// (.ci/run installs it there), then $PATH. It returns "" when absent.
func MinIOBinary() string {
	if p := os.Getenv("MINIO_BIN"); p != "" {
		return p
	}
	return Tool("minio")
}

// Tool finds a tool the tests run (minio, helm): in the tool cache
// ($ALLUVIUM_TOOLS/bin, ~/.cache/alluvium-tools/bin, where .ci/run builds
// them), then on $PATH. It returns "" when absent.
func Tool(name string) string {
	for _, dir := range toolDirs() {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	return ""
}

func toolDirs() []string {
	var dirs []string
	if d := os.Getenv("ALLUVIUM_TOOLS"); d != "" {
		dirs = append(dirs, filepath.Join(d, "bin"))
	}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, ".cache", "alluvium-tools", "bin"))
	}
	return dirs
}

// StartMinIO starts MinIO with its data in a temp dir. Outside CI a missing
// binary skips the test with a loud message; in CI ($CI set) it fails.
func StartMinIO(t testing.TB) *MinIO {
	t.Helper()
	bin := MinIOBinary()
	if bin == "" {
		msg := "MinIO is not installed (run .ci/run, or go install github.com/minio/minio@latest with GOBIN=~/.cache/alluvium-tools/bin): S3 TESTS DID NOT RUN"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip("!!! " + msg)
	}
	port := FreePort(t)
	console := FreePort(t)
	m := &MinIO{
		Endpoint:  fmt.Sprintf("127.0.0.1:%d", port),
		AccessKey: "alluvium-test",
		SecretKey: "alluvium-test-secret",
	}
	env := []string{
		"MINIO_ROOT_USER=" + m.AccessKey,
		"MINIO_ROOT_PASSWORD=" + m.SecretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
		"MINIO_CI_CD=1",
	}
	m.Proc = Start(t, "minio", bin, env, "server", "--quiet", "--address", m.Endpoint,
		"--console-address", fmt.Sprintf("127.0.0.1:%d", console), t.TempDir())
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + m.Endpoint + "/minio/health/live")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return m
			}
		}
		if !m.Proc.Running() {
			t.Fatalf("minio exited:\n%s", m.Proc.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("minio not healthy after 60s:\n%s", m.Proc.Log())
	return nil
}
