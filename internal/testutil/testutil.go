// Package testutil starts real Alluvium processes (and MinIO) for tests:
// it builds the binary once, hands out port ranges that concurrent test
// binaries never share, and captures each process's log in the test's
// temp dir, printing it when the test fails. Cluster (cluster.go) runs a
// whole cluster of them for the end-to-end suites.
package testutil

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RepoRoot returns the directory holding go.mod.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("testutil: go.mod not found above the working directory")
		}
		dir = parent
	}
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary returns the path of the alluvium binary: $ALLUVIUM_BIN when set
// (make test builds it once), else a fresh build of ./cmd/alluvium.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("ALLUVIUM_BIN"); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		return abs
	}
	root := RepoRoot(t)
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "alluvium-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "alluvium")
		cmd := exec.Command("go", "build", "-race", "-o", binPath, "./cmd/alluvium")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// PortBase returns the base of 200 free loopback ports reserved for this
// test binary (an flock on a file under the temp dir keeps concurrent test
// binaries apart). The ranges lie outside the kernel's ephemeral port
// range, so an outgoing connection of any process can never take a port a
// test server is about to listen on.
func PortBase(t testing.TB) int {
	t.Helper()
	lockDir := filepath.Join(os.TempDir(), "alluvium-test-ports")
	_ = os.MkdirAll(lockDir, 0o777)
	bases := portBases()
	for attempt := 0; attempt < 200; attempt++ {
		base := bases[rand.IntN(len(bases))]
		f, err := os.OpenFile(filepath.Join(lockDir, fmt.Sprint(base)), os.O_CREATE|os.O_RDWR, 0o666)
		if err != nil {
			continue
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
			f.Close()
			continue
		}
		if !portsFree(base, 200) {
			f.Close()
			continue
		}
		t.Cleanup(func() { f.Close() })
		return base
	}
	t.Fatal("testutil: no free port range")
	return 0
}

// portBases lists the 200-port ranges in [20000, 65536) that do not meet
// the ephemeral port range (Linux: net.ipv4.ip_local_port_range).
func portBases() []int {
	lo, hi := 32768, 60999
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		var l, h int
		if n, _ := fmt.Sscan(string(b), &l, &h); n == 2 && l <= h {
			lo, hi = l, h
		}
	}
	var out []int
	for b := 20000; b+200 <= 65536; b += 200 {
		if b+200 <= lo || b > hi {
			out = append(out, b)
		}
	}
	if len(out) < 16 { // an ephemeral range over nearly everything
		out = out[:0]
		for b := 20000; b < 60000; b += 200 {
			out = append(out, b)
		}
	}
	return out
}

func portsFree(base, n int) bool {
	for p := base; p < base+n; p++ {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			return false
		}
		l.Close()
	}
	return true
}

// Process is a started child process whose output goes to a log file.
type Process struct {
	Name    string
	Cmd     *exec.Cmd
	LogPath string
	t       testing.TB
	done    chan struct{}
	err     error
}

// Start runs bin with args and env (added to the current environment).
// The process is killed when the test ends; its log is printed if the test
// failed.
func Start(t testing.TB, name, bin string, env []string, args ...string) *Process {
	t.Helper()
	logDir := filepath.Join(os.TempDir(), "alluvium-test-logs")
	_ = os.MkdirAll(logDir, 0o777)
	logPath := filepath.Join(logDir, fmt.Sprintf("%s-%s-%d.log", sanitize(t.Name()), name, time.Now().UnixNano()))
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), raceEnv(withToken(env))...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &Process{Name: name, Cmd: cmd, LogPath: logPath, t: t, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("---- log of %s (%s) ----\n%s", name, logPath, tail(p.Log(), 200))
		}
	})
	return p
}

func sanitize(s string) string {
	return strings.NewReplacer("/", "_", " ", "_").Replace(s)
}

func tail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// Log returns what the process has written so far.
func (p *Process) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// Running reports whether the process has not exited.
func (p *Process) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Kill sends SIGKILL to the process group and waits for the exit.
func (p *Process) Kill() {
	if p.Running() {
		_ = syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
	}
	<-p.done
}

// Signal sends sig to the process only.
func (p *Process) Signal(sig syscall.Signal) error { return p.Cmd.Process.Signal(sig) }

// Stop sends SIGTERM and waits up to timeout for a clean exit, then kills.
// It returns the process's exit error (nil for status 0).
func (p *Process) Stop(timeout time.Duration) error {
	if p.Running() {
		_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.t.Errorf("%s did not stop within %s of SIGTERM; killing it", p.Name, timeout)
		p.Kill()
	}
	return p.err
}

// Wait waits for the process to exit by itself.
func (p *Process) Wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		return fmt.Errorf("%s still running after %s", p.Name, timeout)
	}
}

// WaitLog waits until the log contains substr.
func (p *Process) WaitLog(substr string, timeout time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(p.Log(), substr) {
			return
		}
		if !p.Running() {
			p.t.Fatalf("%s exited (%v) before logging %q:\n%s", p.Name, p.err, substr, tail(p.Log(), 60))
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.t.Fatalf("%s did not log %q within %s:\n%s", p.Name, substr, timeout, tail(p.Log(), 60))
}

// WaitPort waits until addr accepts TCP connections.
func WaitPort(t testing.TB, addr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("nothing listens on %s after %s", addr, timeout)
}

// Eventually retries f until it returns nil or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("condition not met within %s: %v", timeout, err)
}

// Run runs the binary to completion and returns stdout, stderr and the exit
// code.
func Run(t testing.TB, bin string, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), raceEnv(withToken(env))...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code = 0
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else {
			t.Fatalf("run %s %v: %v", bin, args, err)
		}
	}
	return o.String(), e.String(), code
}

var (
	tokenOnce sync.Once
	token     string
)

// ClusterToken is the cluster token of every process Start and Run launch
// (as ALLUVIUM_TOKEN) unless their env names one: processes of a test with
// separate homes then share it, as a real cluster's do. Clients in the test
// pass it (sdk.WithToken, rpc.ClientOptions.Token, Authorization: Bearer).
// An env with "ALLUVIUM_TOKEN=" runs a process without a token.
func ClusterToken() string {
	tokenOnce.Do(func() {
		b := make([]byte, 16)
		for i := range b {
			b[i] = byte(rand.IntN(256))
		}
		token = fmt.Sprintf("test-%x", b)
	})
	return token
}

func withToken(env []string) []string {
	for _, e := range env {
		if strings.HasPrefix(e, "ALLUVIUM_TOKEN=") {
			return env
		}
	}
	return append(append([]string(nil), env...), "ALLUVIUM_TOKEN="+ClusterToken())
}

// raceEnv stops a race-enabled binary from sleeping a second at every exit
// (the CLI runs many short processes), unless the caller set GORACE.
func raceEnv(env []string) []string {
	for _, e := range env {
		if strings.HasPrefix(e, "GORACE=") {
			return env
		}
	}
	if os.Getenv("GORACE") != "" {
		return env
	}
	return append(append([]string(nil), env...), "GORACE=atexit_sleep_ms=0 halt_on_error=1")
}

// HTTPGet is http.Get with the ClusterToken as bearer token (a role's
// /metrics and JSON APIs need it; /healthz does not).
func HTTPGet(url string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+ClusterToken())
	return http.DefaultClient.Do(req)
}
